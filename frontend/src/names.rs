//! Function references as clients send them: `name`, `name:qualifier`, full ARNs
//! (`arn:aws:lambda:region:account:function:name[:qualifier]`) and partial ARNs
//! (`account:function:name`), plus the `Qualifier` query parameter.
use crate::errors::ApiError;

/// A parsed function reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub qualifier: Option<String>,
}

/// Parses `raw` (already percent-decoded) and merges the `Qualifier` query parameter.
pub fn parse(raw: &str, query_qualifier: Option<&str>) -> Result<FunctionRef, ApiError> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (name, qualifier) = match parts.as_slice() {
        [name] => (*name, None),
        [name, q] => (*name, Some(*q)),
        ["arn", _partition, "lambda", _region, _account, "function", name] => (*name, None),
        ["arn", _partition, "lambda", _region, _account, "function", name, q] => (*name, Some(*q)),
        [_account, "function", name] => (*name, None),
        [_account, "function", name, q] => (*name, Some(*q)),
        _ => {
            return Err(ApiError::InvalidParameter(format!(
                "invalid function name: {raw}"
            )))
        }
    };
    validate_name(name)?;
    let qualifier = match (qualifier, query_qualifier.filter(|q| !q.is_empty())) {
        (Some(a), Some(b)) if a != b => return Err(ApiError::InvalidParameter(
            "The derived qualifier from the function name does not match the specified qualifier."
                .into(),
        )),
        (a, b) => a.or(b).map(str::to_string),
    };
    if let Some(q) = &qualifier {
        validate_qualifier(q)?;
    }
    Ok(FunctionRef {
        name: name.to_string(),
        qualifier,
    })
}

/// Function names: 1-64 of `[A-Za-z0-9_-]`.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::InvalidParameter(format!(
            "invalid function name: {name:?} (1-64 letters, digits, - or _)"
        )));
    }
    Ok(())
}

/// Qualifiers: `$LATEST`, a version number or an alias name (1-128 of `[A-Za-z0-9_-]`, not all digits for aliases).
pub fn validate_qualifier(q: &str) -> Result<(), ApiError> {
    if q == "$LATEST"
        || (!q.is_empty()
            && q.len() <= 128
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        Ok(())
    } else {
        Err(ApiError::InvalidParameter(format!(
            "invalid qualifier: {q:?}"
        )))
    }
}

/// An alias name must not look like a version number.
pub fn validate_alias(name: &str) -> Result<(), ApiError> {
    validate_qualifier(name)?;
    if name == "$LATEST" || name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::InvalidParameter(format!(
            "invalid alias name: {name:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_qualifiers_and_arns() {
        let r = |n, q| FunctionRef {
            name: String::from(n),
            qualifier: q,
        };
        assert_eq!(parse("f", None).unwrap(), r("f", None));
        assert_eq!(parse("f:1", None).unwrap(), r("f", Some("1".into())));
        assert_eq!(
            parse("f", Some("live")).unwrap(),
            r("f", Some("live".into()))
        );
        assert_eq!(
            parse(
                "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
                None
            )
            .unwrap(),
            r("f", Some("$LATEST".into()))
        );
        assert_eq!(
            parse("000000000000:function:f", Some("2")).unwrap(),
            r("f", Some("2".into()))
        );
        assert!(parse("f:1", Some("2")).is_err());
        assert!(parse("bad/name", None).is_err());
        assert!(validate_alias("12").is_err());
    }
}
