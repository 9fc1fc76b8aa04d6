//! The registry's key layout in the [`KvStore`](thaw_snapshotter::KvStore): one function per
//! record kind, so no other file spells a key. Function names never contain `/`, so a
//! function's keys never collide with a longer name's.
//!
//! - `v/<name>/<version>`: `$LATEST` or the version zero-padded to 10 digits, so `$LATEST`
//!   sorts first and numbers in order.
//! - `c/<name>/<sha256 hex>`, `a/<name>/<alias>`, `p/<name>/<version>`, `r/<name>`, `t/<name>`.
//! - `i/`, `u/`, `y/<name>/<qualifier or "$LATEST">`.
//! - `e/<seq, 20 digits>`.

/// Key prefixes, one per record kind, for the scans `Registry::open` runs.
pub(super) mod prefix {
    pub const VERSION: &[u8] = b"v/";
    pub const ALIAS: &[u8] = b"a/";
    pub const PROVISIONED: &[u8] = b"p/";
    pub const RESERVED: &[u8] = b"r/";
    pub const TAGS: &[u8] = b"t/";
    pub const INVOKE_CONFIG: &[u8] = b"i/";
    pub const URL: &[u8] = b"u/";
    pub const POLICY: &[u8] = b"y/";
    pub const EVENT: &[u8] = b"e/";
}

/// `$LATEST`, or a version number zero-padded so keys sort numerically.
pub(super) fn version_key(version: &str) -> String {
    match version.parse::<u64>() {
        Ok(n) => format!("{n:010}"),
        Err(_) => version.to_string(),
    }
}

/// The key part of a per-qualifier setting (URL, policy): the qualifier or `$LATEST`.
pub(super) fn qualifier_key(qualifier: Option<&str>) -> String {
    qualifier.unwrap_or("$LATEST").to_string()
}

/// The part of a key after its one-letter prefix and `/` (a function name for `r/` and `t/`,
/// a sequence number for `e/`).
pub(super) fn suffix(key: &[u8]) -> String {
    String::from_utf8_lossy(key.get(2..).unwrap_or_default()).into_owned()
}

pub(super) fn version(name: &str, version: &str) -> Vec<u8> {
    format!("v/{name}/{}", version_key(version)).into_bytes()
}

pub(super) fn code(name: &str, hex: &str) -> Vec<u8> {
    format!("c/{name}/{hex}").into_bytes()
}

pub(super) fn alias(function: &str, name: &str) -> Vec<u8> {
    format!("a/{function}/{name}").into_bytes()
}

pub(super) fn provisioned(function: &str, version: &str) -> Vec<u8> {
    format!("p/{function}/{version}").into_bytes()
}

pub(super) fn reserved(function: &str) -> Vec<u8> {
    format!("r/{function}").into_bytes()
}

pub(super) fn tags(function: &str) -> Vec<u8> {
    format!("t/{function}").into_bytes()
}

pub(super) fn invoke_config(function: &str, qualifier: &str) -> Vec<u8> {
    format!("i/{function}/{qualifier}").into_bytes()
}

pub(super) fn url(function: &str, qualifier: &str) -> Vec<u8> {
    format!("u/{function}/{qualifier}").into_bytes()
}

pub(super) fn policy(function: &str, qualifier: &str) -> Vec<u8> {
    format!("y/{function}/{qualifier}").into_bytes()
}

pub(super) fn event(seq: u64) -> Vec<u8> {
    format!("e/{seq:020}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically_after_latest() {
        let mut keys = [
            version("f", "10"),
            version("f", "9"),
            version("f", "$LATEST"),
        ];
        keys.sort();
        assert_eq!(keys[0], b"v/f/$LATEST");
        assert_eq!(keys[1], b"v/f/0000000009");
        assert_eq!(keys[2], b"v/f/0000000010");
    }

    #[test]
    fn every_key_starts_with_its_prefix() {
        assert!(version("f", "1").starts_with(prefix::VERSION));
        assert!(alias("f", "a").starts_with(prefix::ALIAS));
        assert!(provisioned("f", "1").starts_with(prefix::PROVISIONED));
        assert!(reserved("f").starts_with(prefix::RESERVED));
        assert!(tags("f").starts_with(prefix::TAGS));
        assert!(invoke_config("f", "$LATEST").starts_with(prefix::INVOKE_CONFIG));
        assert!(url("f", "$LATEST").starts_with(prefix::URL));
        assert!(policy("f", "$LATEST").starts_with(prefix::POLICY));
        assert!(event(7).starts_with(prefix::EVENT));
        assert_eq!(suffix(&reserved("fn-1")), "fn-1");
        assert_eq!(suffix(&event(7)).parse::<u64>().unwrap(), 7);
        assert_eq!(suffix(b"r"), "");
    }

    #[test]
    fn qualifier_defaults_to_latest() {
        assert_eq!(qualifier_key(None), "$LATEST");
        assert_eq!(qualifier_key(Some("live")), "live");
    }
}
