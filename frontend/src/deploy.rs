//! Control-plane operations deploy tools call beyond functions and versions: aliases (with
//! routing weights), tags, event-invoke configs (retries, event age, destinations), function
//! URL configs and the account's settings. Validation follows Lambda's rules and wording where
//! Lambda has them; storage is the registry's ([`crate::registry`]).
use crate::backend::Backend;
use crate::errors::ApiError;
use crate::names::{self, validate_alias};
use crate::registry::{
    revision_id, Alias, EventInvokeConfig, RegistryError, UrlAuthType, UrlConfig,
};
use crate::service::Service;
use crate::time::now_ms;
use crate::url_event::Cors;
use std::collections::BTreeMap;

/// Checks alias routing weights: at most one additional version, a published one other than
/// the primary, with a weight in [0, 1].
fn check_weights(primary: &str, weights: &BTreeMap<String, f64>) -> Result<(), ApiError> {
    if weights.len() > 1 {
        return Err(ApiError::InvalidParameter(
            "RoutingConfig.AdditionalVersionWeights: an alias can route to at most one additional version".into(),
        ));
    }
    for (v, w) in weights {
        if v.parse::<u64>().is_err() || primary.parse::<u64>().is_err() {
            return Err(ApiError::InvalidParameter(
                "RoutingConfig: an alias can only route between published versions (not $LATEST)"
                    .into(),
            ));
        }
        if v == primary {
            return Err(ApiError::InvalidParameter(format!(
                "RoutingConfig: version {v} is the alias's primary version"
            )));
        }
        if !(0.0..=1.0).contains(w) || w.is_nan() {
            return Err(ApiError::InvalidParameter(format!(
                "RoutingConfig: the weight of version {v} must be between 0.0 and 1.0 (got {w})"
            )));
        }
    }
    Ok(())
}

/// A destination must be a thaw function (by ARN, name or partial ARN), never the same
/// function and qualifier as the source.
fn check_destination(arn: &str) -> Result<(), ApiError> {
    if arn.starts_with("arn:") && !arn.contains(":lambda:") {
        return Err(ApiError::InvalidParameter(format!(
            "The destination ARN {arn} is invalid: thaw delivers to Lambda functions only (not SQS, SNS or EventBridge)"
        )));
    }
    names::parse(arn, None).map(|_| ())
}

/// The event-invoke settings a Put/Update carries (`None` leaves a setting as it is on
/// Update, and clears it on Put).
#[derive(Debug, Default, Clone)]
pub struct InvokeConfigChange {
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_s: Option<u32>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

/// A function URL's settings on Create/Update.
#[derive(Debug, Default, Clone)]
pub struct UrlChange {
    pub auth_type: Option<UrlAuthType>,
    pub cors: Option<Cors>,
    pub invoke_mode: Option<String>,
}

/// A new URL id: 32 lower-case letters and digits, as Lambda's.
fn new_url_id() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    // Hex is [0-9a-f]; spread over [a-z0-9] from two uuids' bits.
    a.bytes()
        .zip(b.bytes())
        .map(|(x, y)| {
            let n = (u32::from(x) * 31 + u32::from(y)) % 36;
            char::from_digit(n, 36).unwrap_or('0')
        })
        .collect()
}

impl<B: Backend> Service<B> {
    /// CreateAlias.
    pub fn create_alias(
        &self,
        function: &str,
        name: &str,
        version: &str,
        description: &str,
        weights: BTreeMap<String, f64>,
    ) -> Result<Alias, ApiError> {
        validate_alias(name)?;
        check_weights(version, &weights)?;
        Ok(self.registry.create_alias(Alias {
            function: function.into(),
            name: name.into(),
            version: version.into(),
            description: description.into(),
            revision_id: revision_id(),
            weights,
        })?)
    }

    /// UpdateAlias: the settings given replace the alias's.
    pub fn update_alias(
        &self,
        function: &str,
        name: &str,
        version: Option<String>,
        description: Option<String>,
        weights: Option<BTreeMap<String, f64>>,
        expected_revision: Option<&str>,
    ) -> Result<Alias, ApiError> {
        let current = self.registry.get_alias(function, name)?;
        if expected_revision.is_some_and(|r| r != current.revision_id) {
            return Err(RegistryError::RevisionMismatch.into());
        }
        let primary = version.clone().unwrap_or(current.version);
        let new_weights = weights.clone().unwrap_or(current.weights);
        check_weights(&primary, &new_weights)?;
        Ok(self
            .registry
            .update_alias(function, name, expected_revision, |a| {
                if let Some(v) = version {
                    a.version = v;
                }
                if let Some(d) = description {
                    a.description = d;
                }
                a.weights = new_weights;
            })?)
    }

    /// DeleteAlias (its provisioned concurrency is released).
    pub fn delete_alias(&self, function: &str, name: &str) -> Result<(), ApiError> {
        let alias = self.registry.get_alias(function, name)?;
        let prov = self
            .registry
            .provisioned(function, &alias.version)
            .filter(|p| p.qualifier.as_deref() == Some(name));
        self.registry.delete_alias(function, name)?;
        if prov.is_some() {
            let fv = thaw_scheduler::FunctionVersion::new(function.to_string(), alias.version);
            let _ = self.scheduler.delete_provisioned(&fv);
        }
        Ok(())
    }

    /// TagResource.
    pub fn tag(&self, function: &str, tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
        let mut all = self.registry.tags(function)?;
        all.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        crate::validate::tags(&all)?;
        self.registry.change_tags(function, tags, &[])?;
        Ok(())
    }

    /// UntagResource.
    pub fn untag(&self, function: &str, keys: &[String]) -> Result<(), ApiError> {
        self.registry
            .change_tags(function, &BTreeMap::new(), keys)?;
        Ok(())
    }

    /// Put (`merge` false: unset settings are cleared) or Update (`merge` true)
    /// FunctionEventInvokeConfig. The qualifier must exist.
    pub fn put_invoke_config(
        &self,
        function: &str,
        qualifier: Option<&str>,
        change: InvokeConfigChange,
        merge: bool,
    ) -> Result<EventInvokeConfig, ApiError> {
        let q = qualifier.unwrap_or("$LATEST");
        self.registry.resolve(function, Some(q))?;
        if change.maximum_retry_attempts.is_some_and(|n| n > 2) {
            return Err(ApiError::InvalidParameter(
                "MaximumRetryAttempts must be between 0 and 2".into(),
            ));
        }
        if change
            .maximum_event_age_s
            .is_some_and(|s| !(60..=21600).contains(&s))
        {
            return Err(ApiError::InvalidParameter(
                "MaximumEventAgeInSeconds must be between 60 and 21600".into(),
            ));
        }
        for d in [&change.on_success, &change.on_failure]
            .into_iter()
            .flatten()
        {
            check_destination(d)?;
        }
        // Update merges into the existing config (which must exist); Put replaces it.
        let old = if merge {
            Some(self.registry.invoke_config(function, q)?)
        } else {
            None
        };
        let old = old.as_ref();
        let cfg = EventInvokeConfig {
            function: function.to_string(),
            qualifier: q.to_string(),
            maximum_retry_attempts: change
                .maximum_retry_attempts
                .or(old.and_then(|o| o.maximum_retry_attempts)),
            maximum_event_age_s: change
                .maximum_event_age_s
                .or(old.and_then(|o| o.maximum_event_age_s)),
            on_success: change
                .on_success
                .or_else(|| old.and_then(|o| o.on_success.clone())),
            on_failure: change
                .on_failure
                .or_else(|| old.and_then(|o| o.on_failure.clone())),
            last_modified_ms: now_ms(),
        };
        Ok(self.registry.put_invoke_config(cfg)?)
    }

    /// CreateFunctionUrlConfig: the qualifier, if any, must be an alias.
    pub fn create_url(
        &self,
        function: &str,
        qualifier: Option<&str>,
        change: UrlChange,
    ) -> Result<UrlConfig, ApiError> {
        self.registry.resolve(function, None)?;
        if let Some(q) = qualifier.filter(|q| *q != "$LATEST") {
            if q.parse::<u64>().is_ok() {
                return Err(ApiError::InvalidParameter(
                    "A function URL's qualifier must be an alias, not a version".into(),
                ));
            }
        }
        let auth_type = change.auth_type.ok_or_else(|| {
            ApiError::InvalidParameter("AuthType is required (NONE or AWS_IAM)".into())
        })?;
        if let Some(c) = &change.cors {
            c.validate().map_err(ApiError::InvalidParameter)?;
        }
        let now = now_ms();
        let cfg = UrlConfig {
            function: function.to_string(),
            qualifier: qualifier.filter(|q| *q != "$LATEST").map(str::to_string),
            url_id: new_url_id(),
            auth_type,
            cors: change.cors,
            invoke_mode: check_invoke_mode(change.invoke_mode)?,
            created_ms: now,
            last_modified_ms: now,
        };
        Ok(self.registry.create_url(cfg)?)
    }

    /// UpdateFunctionUrlConfig.
    pub fn update_url(
        &self,
        function: &str,
        qualifier: Option<&str>,
        change: UrlChange,
    ) -> Result<UrlConfig, ApiError> {
        if let Some(c) = &change.cors {
            c.validate().map_err(ApiError::InvalidParameter)?;
        }
        let mode = match change.invoke_mode {
            Some(m) => Some(check_invoke_mode(Some(m))?),
            None => None,
        };
        let q = qualifier.filter(|q| *q != "$LATEST");
        Ok(self.registry.update_url(function, q, |u| {
            if let Some(a) = change.auth_type {
                u.auth_type = a;
            }
            if let Some(c) = change.cors {
                u.cors = Some(c);
            }
            if let Some(m) = mode {
                u.invoke_mode = m;
            }
            u.last_modified_ms = now_ms();
        })?)
    }

    /// The public URL of a function URL config (path-based on the URL listener).
    pub fn url_of(&self, u: &UrlConfig) -> String {
        format!("{}/{}/", self.url_base(), u.url_id)
    }
}

fn check_invoke_mode(mode: Option<String>) -> Result<String, ApiError> {
    match mode.as_deref() {
        None | Some("BUFFERED") => Ok("BUFFERED".into()),
        Some("RESPONSE_STREAM") => Err(ApiError::InvalidParameter(
            "InvokeMode RESPONSE_STREAM is not supported by thaw (BUFFERED only)".into(),
        )),
        Some(other) => Err(ApiError::InvalidParameter(format!(
            "InvokeMode must be BUFFERED or RESPONSE_STREAM (got {other})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_alias_weights_are_checked_as_lambda_does() {
        let w = |v: &str, x: f64| BTreeMap::from([(v.to_string(), x)]);
        check_weights("1", &BTreeMap::new()).unwrap();
        check_weights("1", &w("2", 0.25)).unwrap();
        check_weights("$LATEST", &BTreeMap::new()).unwrap();
        for (primary, weights) in [
            ("1", w("1", 0.5)),
            ("1", w("2", 1.5)),
            ("1", w("2", -0.1)),
            ("1", w("$LATEST", 0.1)),
            ("$LATEST", w("2", 0.1)),
            ("1", w("2", f64::NAN)),
        ] {
            assert!(
                check_weights(primary, &weights).is_err(),
                "{primary} {weights:?}"
            );
        }
        let two = BTreeMap::from([("2".to_string(), 0.1), ("3".to_string(), 0.1)]);
        assert!(check_weights("1", &two).is_err());
    }

    #[test]
    fn test_destinations() {
        check_destination("arn:aws:lambda:us-east-1:000000000000:function:sink").unwrap();
        check_destination("sink").unwrap();
        assert!(check_destination("arn:aws:sqs:us-east-1:000000000000:queue").is_err());
    }

    #[test]
    fn test_url_ids_look_like_lambdas() {
        let a = new_url_id();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(a, new_url_id());
    }
}
