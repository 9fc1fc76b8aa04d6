//! The JSON shapes of the Lambda API that boto3 reads: FunctionConfiguration, GetFunction,
//! aliases and provisioned-concurrency configs.
use crate::registry::{Alias, VersionConfig};
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
        "EphemeralStorage": {"Size": 512},
        "TracingConfig": {"Mode": "PassThrough"},
    });
    let obj = v.as_object_mut().expect("object literal");
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

/// GetFunction's response.
pub fn get_function(arn: &ArnBase, cfg: &VersionConfig, reserved: Option<u32>) -> Value {
    let mut v = json!({
        "Configuration": configuration(arn, cfg),
        "Code": {"RepositoryType": "S3", "Location": format!("thaw://code/{}/{}", cfg.name, cfg.code_hex)},
    });
    if let Some(n) = reserved {
        v["Concurrency"] = json!({"ReservedConcurrentExecutions": n});
    }
    v
}

/// AliasConfiguration.
pub fn alias(arn: &ArnBase, a: &Alias) -> Value {
    json!({
        "AliasArn": format!("{}:{}", arn.function(&a.function), a.name),
        "Name": a.name,
        "FunctionVersion": a.version,
        "Description": a.description,
        "RevisionId": a.revision_id,
    })
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
