//! The JSON shapes of the Lambda API that boto3 reads: FunctionConfiguration, GetFunction,
//! aliases, provisioned-concurrency configs, event-invoke configs and function URL configs.
use crate::registry::{Alias, EventInvokeConfig, LogFormat, UrlConfig, VersionConfig};
use crate::time::lambda_timestamp;
use serde_json::{json, Value};
use thaw_scheduler::ProvisionedConfig;

/// Region and account used in ARNs.
#[derive(Debug, Clone)]
pub struct ArnBase {
    pub region: String,
    pub account_id: String,
}

impl ArnBase {
    /// `arn:aws:lambda:<region>:<account>:function:<name>`.
    pub fn function(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.region, self.account_id
        )
    }

    /// The ARN of a version (unqualified for `$LATEST`, as Lambda reports it).
    pub fn version(&self, cfg: &VersionConfig) -> String {
        if cfg.version == "$LATEST" {
            self.function(&cfg.name)
        } else {
            format!("{}:{}", self.function(&cfg.name), cfg.version)
        }
    }
}

/// FunctionConfiguration.
pub fn configuration(arn: &ArnBase, cfg: &VersionConfig) -> Value {
    let mut v = json!({
        "FunctionName": cfg.name,
        "FunctionArn": arn.version(cfg),
        "Runtime": cfg.runtime,
        "Role": cfg.role,
        "Handler": cfg.handler,
        "CodeSize": cfg.code_size,
        "Description": cfg.description,
        "Timeout": cfg.timeout_s,
        "MemorySize": cfg.memory_mb,
        "LastModified": lambda_timestamp(cfg.last_modified_ms),
        "CodeSha256": cfg.code_sha256,
        "Version": cfg.version,
        "Environment": {"Variables": cfg.env},
        "RevisionId": cfg.revision_id,
        "State": cfg.state.as_str(),
        "LastUpdateStatus": cfg.last_update_status.as_str(),
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": cfg.ephemeral_mb},
        "TracingConfig": {"Mode": "PassThrough"},
        "SnapStart": {
            "ApplyOn": cfg.snap_start.as_str(),
            "OptimizationStatus": if cfg.snap_start_on() { "On" } else { "Off" },
        },
        "LoggingConfig": logging(cfg),
    });
    let obj = v.as_object_mut().expect("object literal");
    if let Some(t) = &cfg.dead_letter_target {
        obj.insert("DeadLetterConfig".into(), json!({"TargetArn": t}));
    }
    if let Some(r) = &cfg.state_reason {
        obj.insert("StateReason".into(), json!(r));
    }
    if let Some(r) = &cfg.state_reason_code {
        obj.insert("StateReasonCode".into(), json!(r));
    }
    if let Some(r) = &cfg.last_update_status_reason {
        obj.insert("LastUpdateStatusReason".into(), json!(r));
    }
    v
}

/// `LoggingConfig` (levels only with the JSON format, as Lambda reports them).
fn logging(cfg: &VersionConfig) -> Value {
    let l = &cfg.logging;
    let mut v = json!({
        "LogFormat": match l.log_format { LogFormat::Text => "Text", LogFormat::Json => "JSON" },
        "LogGroup": l.log_group.clone().unwrap_or_else(|| format!("/aws/lambda/{}", cfg.name)),
    });
    if l.log_format == LogFormat::Json {
        v["ApplicationLogLevel"] = json!(l.application_level().as_str());
        v["SystemLogLevel"] = json!(l.system_level().as_str());
    }
    v
}

/// GetFunction's response.
pub fn get_function(
    arn: &ArnBase,
    cfg: &VersionConfig,
    reserved: Option<u32>,
    tags: &std::collections::BTreeMap<String, String>,
) -> Value {
    let mut v = json!({
        "Configuration": configuration(arn, cfg),
        "Code": {"RepositoryType": "S3", "Location": format!("thaw://code/{}/{}", cfg.name, cfg.code_hex)},
    });
    if let Some(n) = reserved {
        v["Concurrency"] = json!({"ReservedConcurrentExecutions": n});
    }
    if !tags.is_empty() {
        v["Tags"] = json!(tags);
    }
    v
}

/// AliasConfiguration.
pub fn alias(arn: &ArnBase, a: &Alias) -> Value {
    let mut v = json!({
        "AliasArn": format!("{}:{}", arn.function(&a.function), a.name),
        "Name": a.name,
        "FunctionVersion": a.version,
        "Description": a.description,
        "RevisionId": a.revision_id,
    });
    if !a.weights.is_empty() {
        v["RoutingConfig"] = json!({"AdditionalVersionWeights": a.weights});
    }
    v
}

/// FunctionEventInvokeConfig.
pub fn invoke_config(arn: &ArnBase, c: &EventInvokeConfig) -> Value {
    let mut v = json!({
        "FunctionArn": format!("{}:{}", arn.function(&c.function), c.qualifier),
        "LastModified": c.last_modified_ms as f64 / 1000.0,
        "DestinationConfig": {},
    });
    if let Some(n) = c.maximum_retry_attempts {
        v["MaximumRetryAttempts"] = json!(n);
    }
    if let Some(n) = c.maximum_event_age_s {
        v["MaximumEventAgeInSeconds"] = json!(n);
    }
    if let Some(d) = &c.on_success {
        v["DestinationConfig"]["OnSuccess"] = json!({"Destination": d});
    }
    if let Some(d) = &c.on_failure {
        v["DestinationConfig"]["OnFailure"] = json!({"Destination": d});
    }
    v
}

/// FunctionUrlConfig (`url`: its public URL).
pub fn url_config(arn: &ArnBase, u: &UrlConfig, url: &str) -> Value {
    let function_arn = match &u.qualifier {
        Some(q) => format!("{}:{q}", arn.function(&u.function)),
        None => arn.function(&u.function),
    };
    let mut v = json!({
        "FunctionUrl": url,
        "FunctionArn": function_arn,
        "AuthType": u.auth_type.as_str(),
        "CreationTime": crate::time::iso_timestamp(u.created_ms),
        "LastModifiedTime": crate::time::iso_timestamp(u.last_modified_ms),
        "InvokeMode": u.invoke_mode,
    });
    if let Some(c) = &u.cors {
        v["Cors"] = serde_json::to_value(c).unwrap_or(Value::Null);
    }
    v
}

/// Get/PutProvisionedConcurrencyConfig's response.
pub fn provisioned(c: &ProvisionedConfig) -> Value {
    let mut v = json!({
        "RequestedProvisionedConcurrentExecutions": c.requested,
        "AllocatedProvisionedConcurrentExecutions": c.allocated,
        "AvailableProvisionedConcurrentExecutions": c.available,
        "Status": c.status.as_str(),
        "LastModified": lambda_timestamp(crate::time::system_ms(c.last_modified)),
    });
    if let Some(r) = &c.status_reason {
        v["StatusReason"] = json!(r);
    }
    v
}
