//! AWS Signature Version 4 verification, as botocore signs Lambda requests
//! (`botocore/auth.py` `SigV4Auth`), in two steps so that cheap checks come before the body is read:
//!
//! 1. [`Verifier::precheck`] parses `Authorization`, looks the access key up, checks the date
//!    (`X-Amz-Date`, within [`MAX_SKEW`] of now, equal to the credential scope's date), the scope
//!    (`<date>/<region>/lambda/aws4_request`) and that `host` and `x-amz-date` are signed, and
//!    builds the canonical request up to its payload hash.
//! 2. [`Checked::verify`] adds the payload hash (the body's SHA-256, or `UNSIGNED-PAYLOAD` when the
//!    request declares it and the verifier allows it; a declared `X-Amz-Content-Sha256` must match
//!    the body), derives the signing key, and compares signatures in constant time.
//!
//! Canonical request (one field per line): method, URI (the path as sent, dot segments removed,
//! every byte but unreserved characters and `/` percent-encoded again), query (pairs decoded,
//! re-encoded, sorted), `name:value` per signed header (values trimmed, inner whitespace
//! collapsed, repeats joined by `,`), a blank line, the signed header list, the payload hash.
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm SigV4 defines for HMAC signatures.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash of a request that does not sign its body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The service name in the credential scope.
pub const SERVICE: &str = "lambda";
/// How far `X-Amz-Date` may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a request's signature was refused. Messages follow AWS's where AWS has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No `Authorization` header.
    #[error("Missing Authentication Token")]
    Missing,
    /// `Authorization` is not a well-formed SigV4 header, or a required part is absent.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not configured.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The date is more than [`MAX_SKEW`] in the past.
    #[error("Signature expired: {date} is now earlier than {limit} ({now} - 15 min.)")]
    Expired {
        date: String,
        limit: String,
        now: String,
    },
    /// The date is more than [`MAX_SKEW`] in the future.
    #[error("Signature not yet current: {date} is still later than {limit} ({now} + 15 min.)")]
    NotYetCurrent {
        date: String,
        limit: String,
        now: String,
    },
    /// The credential scope names another day, region or service.
    #[error("{0}")]
    Scope(String),
    /// `X-Amz-Content-Sha256` is not the body's hash.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    PayloadHash,
    /// `UNSIGNED-PAYLOAD` while the verifier requires signed bodies.
    #[error("UNSIGNED-PAYLOAD is not accepted by this server: sign the request body")]
    UnsignedPayload,
    /// The signature does not match.
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")]
    Mismatch,
}

/// A secret access key; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for deriving keys and comparing bearer tokens only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    /// `YYYYMMDD`.
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub terminator: &'a str,
    /// Lower-case, in the order the client listed them.
    pub signed_headers: Vec<&'a str>,
    /// The raw hex signature.
    pub signature: &'a str,
}

fn incomplete(msg: impl Into<String>) -> SigV4Error {
    SigV4Error::Incomplete(msg.into())
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request,
/// SignedHeaders=a;b, Signature=hex` (parts in any order, each once).
pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigV4Error> {
    let value = value.trim();
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            incomplete(format!(
                "Authorization header requires the {ALGORITHM} algorithm."
            ))
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let (k, v) = part.split_once('=').ok_or_else(|| {
            incomplete("Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.")
        })?;
        let slot = match k {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(incomplete("Authorization header has an unknown parameter.")),
        };
        if slot.replace(v).is_some() {
            return Err(incomplete("Authorization header repeats a parameter."));
        }
    }
    let missing =
        |name: &str| incomplete(format!("Authorization header requires '{name}' parameter."));
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    // The access key id may not contain '/', so the last four fields are the scope.
    let fields: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = fields.as_slice() else {
        return Err(incomplete(
            "Credential must have the form <key>/<date>/<region>/<service>/aws4_request.",
        ));
    };
    if access_key_id.is_empty() {
        return Err(incomplete("Credential has an empty access key id."));
    }
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(incomplete(
            "SignedHeaders must be a ';'-separated list of lower-case header names.",
        ));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete("Signature must be 64 hex digits."));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        terminator,
        signed_headers,
        signature,
    })
}

/// Seconds since the epoch of an ISO-8601 basic timestamp `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let d = &s[r];
        d.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| d.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = crate::time::days_from_civil(y as i64, mo as u32, d as u32);
    u64::try_from(days)
        .ok()
        .map(|days| days * 86_400 + h * 3600 + mi * 60 + se)
}

/// `YYYYMMDDTHHMMSSZ` for epoch seconds.
pub fn format_amz_date(secs: u64) -> String {
    let ts = crate::time::lambda_timestamp(secs * 1000);
    // "YYYY-MM-DDTHH:MM:SS.mmm+0000" -> "YYYYMMDDTHHMMSSZ"
    let mut out: String = ts[..19]
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    out.push('Z');
    out
}

/// The pieces of a request the signature covers. `path` and `query` are raw, as sent.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a axum::http::HeaderMap,
}

/// botocore's `normalize_url_path`: dot segments and empty segments removed.
fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let first = if path.starts_with('/') { "/" } else { "" };
    let last = if path.ends_with('/') && !out.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{first}{}{last}", out.join("/"))
}

/// Percent-encodes every byte but `A-Za-z0-9-_.~` (and `/` when `keep_slash`), upper-case hex.
fn uri_encode(bytes: &[u8], keep_slash: bool, out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Decodes `%XX` escapes (malformed escapes stay as they are; `+` is not a space here).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The canonical URI: the normalized path, encoded again.
pub fn canonical_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 16);
    uri_encode(normalize_path(path).as_bytes(), true, &mut out);
    out
}

/// The canonical query string: pairs decoded, re-encoded, sorted by key then value.
pub fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&percent_decode(k), false, &mut ek);
            uri_encode(&percent_decode(v), false, &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    let parts: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("&")
}

/// `name:value` lines of the signed headers (values trimmed, whitespace runs collapsed, repeats
/// joined by `,`), sorted by name, each newline-terminated.
fn canonical_headers(headers: &axum::http::HeaderMap, signed: &[&str]) -> String {
    let mut names: Vec<&str> = signed.to_vec();
    names.sort_unstable();
    names.dedup();
    let mut out = String::new();
    for name in names {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

fn hmac(key: &[u8], msg: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac
}

/// The signing key `HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &Secret, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac(
        format!("AWS4{}", secret.expose()).as_bytes(),
        date.as_bytes(),
    );
    let k = hmac(&k.finalize().into_bytes(), region.as_bytes());
    let k = hmac(&k.finalize().into_bytes(), service.as_bytes());
    let k = hmac(&k.finalize().into_bytes(), b"aws4_request");
    k.finalize().into_bytes().into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    s.len()
        .is_multiple_of(2)
        .then(|| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
                .collect()
        })
        .flatten()
}

/// Verifies SigV4 signatures against a set of credentials for one region.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: HashMap<String, Secret>,
    region: String,
    allow_unsigned_payload: bool,
}

/// A request whose headers passed [`Verifier::precheck`]; its body is still to be checked.
#[derive(Debug)]
pub struct Checked<'v> {
    secret: &'v Secret,
    /// The canonical request without its last line (the payload hash).
    canonical_head: String,
    amz_date: String,
    scope: String,
    /// `X-Amz-Content-Sha256` as sent, if it was.
    declared_hash: Option<String>,
    allow_unsigned_payload: bool,
    signature: Vec<u8>,
    region: String,
}

impl Verifier {
    /// A verifier for `region` over `(access key id, secret)` pairs.
    pub fn new(
        credentials: impl IntoIterator<Item = (String, Secret)>,
        region: &str,
        allow_unsigned_payload: bool,
    ) -> Self {
        Self {
            keys: credentials.into_iter().collect(),
            region: region.into(),
            allow_unsigned_payload,
        }
    }

    /// The secret of `access_key_id`, if configured.
    pub fn secret(&self, access_key_id: &str) -> Option<&Secret> {
        self.keys.get(access_key_id)
    }

    /// Step 1 (see the module docs): everything but the body.
    pub fn precheck(
        &self,
        req: &SignedRequest<'_>,
        now: SystemTime,
    ) -> Result<Checked<'_>, SigV4Error> {
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let raw = req
            .headers
            .get("authorization")
            .ok_or(SigV4Error::Missing)?;
        let raw = raw
            .to_str()
            .map_err(|_| incomplete("Authorization header is not ASCII."))?;
        let auth = parse_authorization(raw)?;
        let secret = self
            .keys
            .get(auth.access_key_id)
            .ok_or(SigV4Error::UnknownKey)?;
        let amz_date = header("x-amz-date").ok_or_else(|| {
            incomplete("Authorization header requires existence of a 'X-Amz-Date' header.")
        })?;
        let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Date {amz_date:?} is not of the form YYYYMMDDTHHMMSSZ."
            ))
        })?;
        let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let skew = MAX_SKEW.as_secs();
        if signed_at + skew < now_s {
            return Err(SigV4Error::Expired {
                date: amz_date.into(),
                limit: format_amz_date(now_s - skew),
                now: format_amz_date(now_s),
            });
        }
        if signed_at > now_s + skew {
            return Err(SigV4Error::NotYetCurrent {
                date: amz_date.into(),
                limit: format_amz_date(now_s + skew),
                now: format_amz_date(now_s),
            });
        }
        if auth.date != &amz_date[..8] {
            return Err(SigV4Error::Scope(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
                auth.date,
                &amz_date[..8]
            )));
        }
        if auth.region != self.region {
            return Err(SigV4Error::Scope(format!(
                "Credential should be scoped to a valid region, not '{}'.",
                auth.region
            )));
        }
        if auth.service != SERVICE {
            return Err(SigV4Error::Scope(format!(
                "Credential should be scoped to correct service: '{SERVICE}'."
            )));
        }
        if auth.terminator != "aws4_request" {
            return Err(SigV4Error::Scope(
                "Credential should be scoped with a valid terminator: 'aws4_request'.".into(),
            ));
        }
        for required in ["host", "x-amz-date"] {
            if !auth.signed_headers.contains(&required) {
                return Err(incomplete(format!("'{required}' must be a signed header.")));
            }
        }
        let mut canonical_head = String::with_capacity(512);
        canonical_head.push_str(req.method);
        canonical_head.push('\n');
        canonical_head.push_str(&canonical_uri(req.path));
        canonical_head.push('\n');
        canonical_head.push_str(&canonical_query(req.query));
        canonical_head.push('\n');
        canonical_head.push_str(&canonical_headers(req.headers, &auth.signed_headers));
        canonical_head.push('\n');
        canonical_head.push_str(&auth.signed_headers.join(";"));
        canonical_head.push('\n');
        Ok(Checked {
            secret,
            canonical_head,
            amz_date: amz_date.into(),
            scope: format!(
                "{}/{}/{}/aws4_request",
                auth.date, auth.region, auth.service
            ),
            declared_hash: header("x-amz-content-sha256").map(str::to_string),
            allow_unsigned_payload: self.allow_unsigned_payload,
            signature: unhex(auth.signature).expect("checked: 64 hex digits"),
            region: auth.region.into(),
        })
    }
}

/// Signs a request as botocore does (for thaw's own clients and tests): sets `x-amz-date` and
/// `authorization` in `headers`, signing `host`, `x-amz-*` and `content-type` if present.
pub fn sign(
    req: &mut SignedRequestMut<'_>,
    body: &[u8],
    access_key_id: &str,
    secret: &Secret,
    region: &str,
    now: SystemTime,
) {
    use axum::http::HeaderValue;
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let amz_date = format_amz_date(secs);
    req.headers.insert(
        "x-amz-date",
        HeaderValue::from_str(&amz_date).expect("ASCII"),
    );
    req.headers.remove("authorization");
    let mut signed: Vec<&str> = req
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| *k == "host" || *k == "content-type" || k.starts_with("x-amz-"))
        .collect();
    signed.sort_unstable();
    signed.dedup();
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        canonical_headers(req.headers, &signed),
        signed.join(";"),
        hex(&Sha256::digest(body))
    );
    let scope = format!("{}/{region}/{SERVICE}/aws4_request", &amz_date[..8]);
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(secret, &amz_date[..8], region, SERVICE);
    let signature = hex(&hmac(&key, string_to_sign.as_bytes())
        .finalize()
        .into_bytes());
    let value = format!(
        "{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={signature}",
        signed.join(";")
    );
    req.headers.insert(
        "authorization",
        HeaderValue::from_str(&value).expect("ASCII"),
    );
}

/// [`SignedRequest`] with headers to add the signature to.
#[derive(Debug)]
pub struct SignedRequestMut<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a mut axum::http::HeaderMap,
}

impl Checked<'_> {
    /// Step 2 (see the module docs): the body and the signature.
    pub fn verify(self, body: &[u8]) -> Result<(), SigV4Error> {
        let computed = hex(&Sha256::digest(body));
        let payload_hash = match self.declared_hash.as_deref() {
            Some(UNSIGNED_PAYLOAD) if self.allow_unsigned_payload => UNSIGNED_PAYLOAD.to_string(),
            Some(UNSIGNED_PAYLOAD) => return Err(SigV4Error::UnsignedPayload),
            Some(declared) if declared != computed => return Err(SigV4Error::PayloadHash),
            _ => computed,
        };
        let canonical = format!("{}{payload_hash}", self.canonical_head);
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let key = signing_key(self.secret, &self.amz_date[..8], &self.region, SERVICE);
        hmac(&key, string_to_sign.as_bytes())
            .verify_slice(&self.signature)
            .map_err(|_| SigV4Error::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    /// 2026-12-02T15:00:00Z, the time the botocore vectors below were signed at.
    fn signed_at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(parse_amz_date("20261202T150000Z").unwrap())
    }

    fn verifier() -> Verifier {
        Verifier::new(
            [("AKIDTHAWTEST".to_string(), Secret::new("thaw/secret+key"))],
            "us-east-1",
            false,
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const GET_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDTHAWTEST/20261202/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=4539d8ddbb17585ff02aa07f620d16b528239317c35e1147b0a8ecdd5d5eae5a";
    const UNSIGNED_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDTHAWTEST/20261202/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=b809d601e6724537b67f180063b46b44363895c3d6bc16cf45c60dbc66605162";
    const POST_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDTHAWTEST/20261202/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date;x-amz-invocation-type;x-amz-log-type, Signature=5616893ed669f6cd8ce7f33e67bc0c3d5d8535bc48cefe86fd1a3f6100adf309";

    fn check(
        v: &Verifier,
        method: &str,
        path: &str,
        query: &str,
        h: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), SigV4Error> {
        let req = SignedRequest {
            method,
            path,
            query,
            headers: h,
        };
        v.precheck(&req, now)?.verify(body)
    }

    /// Vectors signed by botocore 1.43's `SigV4Auth` (query with an escaped space, an escaped
    /// ':' in the path, a header value with runs of spaces).
    #[test]
    fn test_botocore_signatures_verify() {
        let v = verifier();
        let get = headers(&[
            ("host", "127.0.0.1:9000"),
            ("x-amz-date", "20261202T150000Z"),
            ("authorization", GET_AUTH),
        ]);
        let list = "/2015-03-31/functions/";
        let query = "MaxItems=10&Marker=a%20b";
        check(&v, "GET", list, query, &get, b"", signed_at()).unwrap();
        let post = headers(&[
            ("host", "127.0.0.1:9000"),
            ("x-amz-date", "20261202T150000Z"),
            ("x-amz-invocation-type", "Event"),
            ("x-amz-log-type", "  Tail  x"),
            ("authorization", POST_AUTH),
        ]);
        let path = "/2015-03-31/functions/f%3A1/invocations";
        let body = br#"{"x": 1}"#;
        let invoke = |method: &str, path: &str, query: &str, h: &HeaderMap, body: &[u8]| {
            check(&v, method, path, query, h, body, signed_at())
        };
        invoke("POST", path, "Qualifier=1", &post, body).unwrap();
        // Within the skew.
        let later = signed_at() + MAX_SKEW;
        check(&v, "POST", path, "Qualifier=1", &post, body, later).unwrap();

        // Any change to what was signed is a mismatch: body, query, method, path, headers.
        let mismatch = Err(SigV4Error::Mismatch);
        assert_eq!(invoke("POST", path, "Qualifier=1", &post, b"{}"), mismatch);
        assert_eq!(invoke("POST", path, "Qualifier=2", &post, body), mismatch);
        assert_eq!(invoke("PUT", path, "Qualifier=1", &post, body), mismatch);
        let other = "/2015-03-31/functions/g%3A1/invocations";
        assert_eq!(invoke("POST", other, "Qualifier=1", &post, body), mismatch);
        for (name, value) in [("host", "evil:9000"), ("x-amz-invocation-type", "DryRun")] {
            let mut changed = post.clone();
            changed.insert(name, HeaderValue::from_static(value));
            assert_eq!(
                invoke("POST", path, "Qualifier=1", &changed, body),
                mismatch
            );
        }
        // Another secret for the same key.
        let wrong = Verifier::new(
            [("AKIDTHAWTEST".to_string(), Secret::new("other"))],
            "us-east-1",
            false,
        );
        assert_eq!(
            check(&wrong, "GET", list, query, &get, b"", signed_at()),
            mismatch
        );
    }

    #[test]
    fn test_key_date_scope_and_payload_rules() {
        let v = verifier();
        let q = "MaxItems=10&Marker=a%20b";
        let path = "/2015-03-31/functions/";
        let get = |auth: &str, date: &str| {
            headers(&[
                ("host", "127.0.0.1:9000"),
                ("x-amz-date", date),
                ("authorization", auth),
            ])
        };
        let ok = get(GET_AUTH, "20261202T150000Z");
        let e = |h: &HeaderMap, now: SystemTime, body: &[u8]| {
            check(&v, "GET", path, q, h, body, now).unwrap_err()
        };
        // Unknown key, no header, garbage header.
        let unknown = GET_AUTH.replace("AKIDTHAWTEST", "AKIDOTHER");
        assert_eq!(
            e(&get(&unknown, "20261202T150000Z"), signed_at(), b""),
            SigV4Error::UnknownKey
        );
        assert_eq!(
            e(&headers(&[("host", "h")]), signed_at(), b""),
            SigV4Error::Missing
        );
        assert!(matches!(
            e(
                &get("Basic dXNlcjpwdw==", "20261202T150000Z"),
                signed_at(),
                b""
            ),
            SigV4Error::Incomplete(_)
        ));
        // Skew: 15 min and one second either way.
        let late = signed_at() + MAX_SKEW + Duration::from_secs(1);
        let err = e(&ok, late, b"");
        assert!(matches!(err, SigV4Error::Expired { .. }), "{err}");
        assert_eq!(err.to_string(), "Signature expired: 20261202T150000Z is now earlier than 20261202T150001Z (20261202T151501Z - 15 min.)");
        let early = signed_at() - MAX_SKEW - Duration::from_secs(1);
        assert!(matches!(
            e(&ok, early, b""),
            SigV4Error::NotYetCurrent { .. }
        ));
        // X-Amz-Date and scope must agree; region and service must be ours.
        assert!(matches!(
            e(
                &get(GET_AUTH, "20261203T000000Z"),
                UNIX_EPOCH + Duration::from_secs(parse_amz_date("20261203T000000Z").unwrap()),
                b""
            ),
            SigV4Error::Scope(_)
        ));
        let west = Verifier::new(
            [("AKIDTHAWTEST".to_string(), Secret::new("thaw/secret+key"))],
            "eu-west-1",
            false,
        );
        assert!(matches!(
            check(&west, "GET", path, q, &ok, b"", signed_at()),
            Err(SigV4Error::Scope(_))
        ));
        let s3 = GET_AUTH.replace("/lambda/", "/s3/");
        assert!(matches!(
            e(&get(&s3, "20261202T150000Z"), signed_at(), b""),
            SigV4Error::Scope(_)
        ));
        // host must be signed.
        let unsigned_host =
            GET_AUTH.replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date");
        assert!(matches!(
            e(&get(&unsigned_host, "20261202T150000Z"), signed_at(), b""),
            SigV4Error::Incomplete(_)
        ));
        // A declared payload hash must be the body's; UNSIGNED-PAYLOAD only when allowed.
        let mut declared = ok.clone();
        declared.insert("x-amz-content-sha256", HeaderValue::from_static("00"));
        assert_eq!(e(&declared, signed_at(), b""), SigV4Error::PayloadHash);
        declared.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static(UNSIGNED_PAYLOAD),
        );
        assert_eq!(e(&declared, signed_at(), b""), SigV4Error::UnsignedPayload);
    }

    #[test]
    fn test_unsigned_payload_when_allowed() {
        // Signed by botocore with payload signing disabled (X-Amz-Content-SHA256: UNSIGNED-PAYLOAD).
        let v = Verifier::new(
            [("AKIDTHAWTEST".to_string(), Secret::new("thaw/secret+key"))],
            "us-east-1",
            true,
        );
        let h = headers(&[
            ("host", "127.0.0.1:9000"),
            ("x-amz-date", "20261202T150000Z"),
            ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
            ("authorization", UNSIGNED_AUTH),
        ]);
        let path = "/2015-03-31/functions/f/invocations";
        check(&v, "POST", path, "", &h, b"any body at all", signed_at()).unwrap();
        check(&v, "POST", path, "", &h, b"another", signed_at()).unwrap();
        assert_eq!(
            check(&verifier(), "POST", path, "", &h, b"x", signed_at()),
            Err(SigV4Error::UnsignedPayload)
        );
    }

    #[test]
    fn test_sign_matches_botocore_and_verifies() {
        let mut h = headers(&[("host", "127.0.0.1:9000")]);
        let mut req = SignedRequestMut {
            method: "GET",
            path: "/2015-03-31/functions/",
            query: "MaxItems=10&Marker=a%20b",
            headers: &mut h,
        };
        let secret = Secret::new("thaw/secret+key");
        sign(
            &mut req,
            b"",
            "AKIDTHAWTEST",
            &secret,
            "us-east-1",
            signed_at(),
        );
        assert_eq!(h.get("authorization").unwrap(), GET_AUTH);
        let mut h = headers(&[("host", "h:1"), ("content-type", "application/json")]);
        let mut req = SignedRequestMut {
            method: "POST",
            path: "/2015-03-31/functions/f%3A1/invocations",
            query: "",
            headers: &mut h,
        };
        sign(
            &mut req,
            b"{}",
            "AKIDTHAWTEST",
            &secret,
            "us-east-1",
            signed_at(),
        );
        let path = "/2015-03-31/functions/f%3A1/invocations";
        check(&verifier(), "POST", path, "", &h, b"{}", signed_at()).unwrap();
        assert_eq!(
            check(&verifier(), "POST", path, "", &h, b"{ }", signed_at()),
            Err(SigV4Error::Mismatch)
        );
    }

    #[test]
    fn test_canonical_forms() {
        assert_eq!(canonical_uri("/a/./b//../c/"), "/a/c/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/f%3A1 x"), "/f%253A1%20x");
        assert_eq!(canonical_query("b=2&a=%7e&a=1&c"), "a=1&a=~&b=2&c=");
        assert_eq!(canonical_query("k=a+b&z=%zz"), "k=a%2Bb&z=%25zz");
        assert_eq!(
            format_amz_date(parse_amz_date("20240229T235959Z").unwrap()),
            "20240229T235959Z"
        );
        assert_eq!(parse_amz_date("20241301T000000Z"), None);
        assert_eq!(parse_amz_date("2024-01-01T00:00:00Z"), None);
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<redacted>");
    }
}
