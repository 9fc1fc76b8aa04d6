//! Lambda's input checks on function configuration, applied when a function is created: the
//! handler string (`module.function`, Python identifiers, no dunders), the environment (4 KB
//! in total as Lambda measures it, key names, reserved keys, no NUL) and the tags (also checked
//! when tags change). Violations are `InvalidParameterValueException` with Lambda's wording
//! where Lambda has one.
use crate::errors::ApiError;
use std::collections::BTreeMap;

/// Lambda's limit on the environment, measured as the JSON of the variables map.
pub const MAX_ENV_BYTES: usize = 4096;

/// Keys the runtime sets and users may not (Lambda's reserved set; also any `AWS_LAMBDA_*`).
pub const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

fn is_reserved(key: &str) -> bool {
    RESERVED_ENV.contains(&key) || key.starts_with("AWS_LAMBDA_")
}

/// Lambda's `EnvironmentVariableName` pattern: `[a-zA-Z]([a-zA-Z0-9_])+`.
fn valid_key(key: &str) -> bool {
    let mut b = key.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && key.len() >= 2
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Checks a function's environment variables.
pub fn environment(env: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if let Some(bad) = env.keys().find(|k| !valid_key(k)) {
        return Err(ApiError::InvalidParameter(format!(
            "Environment variable name {:?} does not match [a-zA-Z]([a-zA-Z0-9_])+",
            bad
        )));
    }
    let reserved: Vec<&str> = env
        .keys()
        .map(String::as_str)
        .filter(|k| is_reserved(k))
        .collect();
    if !reserved.is_empty() {
        return Err(ApiError::InvalidParameter(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(", ")
        )));
    }
    if let Some((k, _)) = env.iter().find(|(_, v)| v.contains('\0')) {
        return Err(ApiError::InvalidParameter(format!(
            "Environment variable {k} contains a NUL character, which the environment cannot hold"
        )));
    }
    let measured = serde_json::to_string(env).expect("a string map serializes");
    if measured.len() > MAX_ENV_BYTES {
        return Err(ApiError::InvalidParameter(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {} bytes",
            measured.len()
        )));
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

fn is_dunder(s: &str) -> bool {
    s.len() > 4 && s.starts_with("__") && s.ends_with("__")
}

/// Checks a handler string: `pkg.module.function` (or `dir/module.function`), at most 128
/// characters, each part a Python identifier; no part may be a dunder (`app.__class__`) except
/// a package's `__init__` module.
pub fn handler(h: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        ApiError::InvalidParameter(format!(
            "Value {h:?} at 'handler' failed to satisfy constraint: {why}"
        ))
    };
    if h.is_empty() || h.chars().count() > 128 {
        return Err(bad("Member must have length between 1 and 128"));
    }
    let (module, function) = h
        .rsplit_once('.')
        .ok_or_else(|| bad("it must be of the form module.function"))?;
    if !is_identifier(function) || is_dunder(function) {
        return Err(bad(
            "the function name must be a Python identifier and not a dunder name",
        ));
    }
    for part in module.split(['.', '/']) {
        if !is_identifier(part) || (is_dunder(part) && part != "__init__") {
            return Err(bad(
                "each module path part must be a Python identifier and not a dunder name",
            ));
        }
    }
    Ok(())
}

/// Lambda's limit on tags per function.
pub const MAX_TAGS: usize = 50;

/// Tag keys 1-128 characters not starting with `aws:`, values at most 256.
pub fn tags(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::InvalidParameter(format!(
            "a function can have at most {MAX_TAGS} tags"
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || k.starts_with("aws:") {
            return Err(ApiError::InvalidParameter(format!(
                "invalid tag key {k:?}: 1-128 characters, not starting with aws:"
            )));
        }
        if v.chars().count() > 256 {
            return Err(ApiError::InvalidParameter(format!(
                "the value of tag {k:?} is longer than 256 characters"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn test_handlers() {
        for ok in [
            "app.handler",
            "a.b.c.f",
            "src/app.main",
            "pkg.__init__.h",
            "módulo.f",
            "_x.y",
        ] {
            handler(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "nodot",
            "app.",
            ".f",
            "app.__class__",
            "__main__.f",
            "a..f",
            "app.han dler",
            "app.h-x",
            "a/../b.f",
            "1app.f",
        ] {
            assert!(handler(bad).is_err(), "{bad:?} accepted");
        }
        assert!(handler(&format!("{}.f", "a".repeat(127))).is_err());
    }

    #[test]
    fn test_environment_limits() {
        environment(&env(&[
            ("GREETING", "hi"),
            ("PYTHONPATH", "/opt"),
            ("TZ", "UTC"),
        ]))
        .unwrap();
        for key in [
            "_HANDLER",
            "AWS_REGION",
            "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_RUNTIME_API",
            "LAMBDA_TASK_ROOT",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            let e = environment(&env(&[(key, "x")])).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
        for key in ["1X", "A-B", "X", "A B", ""] {
            assert!(environment(&env(&[(key, "x")])).is_err(), "{key:?}");
        }
        assert!(environment(&env(&[("K1", "a\0b")])).is_err());
        // 4 KB measured as JSON: {"K1":"<v>"} is 9 bytes plus the value.
        environment(&env(&[("K1", &"v".repeat(MAX_ENV_BYTES - 9))])).unwrap();
        let e = environment(&env(&[("K1", &"v".repeat(MAX_ENV_BYTES - 8))])).unwrap_err();
        assert!(e.to_string().contains("4KB limit"), "{e}");
    }

    #[test]
    fn test_tags() {
        let t = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        tags(&t("team", "core")).unwrap();
        assert!(tags(&t("aws:owner", "x")).is_err());
        assert!(tags(&t("", "x")).is_err());
        assert!(tags(&t("k", &"v".repeat(257))).is_err());
        let many: BTreeMap<String, String> =
            (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(tags(&many).is_err());
    }
}
