//! The records the registry persists: a version's configuration, aliases, provisioned
//! requests, reserved concurrency, queued async events, and the per-function settings deploy
//! tools manage (tags, event-invoke configs, function URLs). Every field added after the first release is
//! `#[serde(default)]`, so records written by an older thaw still load.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Lambda's function `State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FunctionState {
    Pending,
    Active,
    Failed,
}

impl FunctionState {
    /// As Lambda spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Active => "Active",
            Self::Failed => "Failed",
        }
    }
}

/// Lambda's `LastUpdateStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateStatus {
    Successful,
    InProgress,
    Failed,
}

impl UpdateStatus {
    /// As Lambda spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Successful => "Successful",
            Self::InProgress => "InProgress",
            Self::Failed => "Failed",
        }
    }
}

/// `LoggingConfig.LogFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LogFormat {
    #[default]
    Text,
    #[serde(rename = "JSON")]
    Json,
}

/// A log level of `LoggingConfig` (`ApplicationLogLevel`, `SystemLogLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    /// As Lambda spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
        }
    }

    /// Parses Lambda's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "TRACE" => Self::Trace,
            "DEBUG" => Self::Debug,
            "INFO" => Self::Info,
            "WARN" => Self::Warn,
            "ERROR" => Self::Error,
            "FATAL" => Self::Fatal,
            _ => return None,
        })
    }
}

/// A version's `LoggingConfig`. The levels apply only to the JSON format, as on Lambda.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LoggingConfig {
    pub log_format: LogFormat,
    pub application_log_level: Option<LogLevel>,
    pub system_log_level: Option<LogLevel>,
    /// `LogGroup` (reported back; thaw's logs go to its own output).
    pub log_group: Option<String>,
}

impl LoggingConfig {
    /// The application level in force (`INFO` when JSON and unset).
    pub fn application_level(&self) -> LogLevel {
        self.application_log_level.unwrap_or(LogLevel::Info)
    }

    /// The system level in force (`INFO` when JSON and unset).
    pub fn system_level(&self) -> LogLevel {
        self.system_log_level.unwrap_or(LogLevel::Info)
    }
}

/// `SnapStart.ApplyOn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SnapStartApplyOn {
    #[default]
    None,
    PublishedVersions,
}

impl SnapStartApplyOn {
    /// As Lambda spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::PublishedVersions => "PublishedVersions",
        }
    }
}

fn default_ephemeral_mb() -> u32 {
    512
}

/// One version's configuration (`$LATEST` or a published, immutable one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionConfig {
    pub name: String,
    pub version: String,
    pub runtime: String,
    pub handler: String,
    pub description: String,
    pub role: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub env: BTreeMap<String, String>,
    /// Base64 SHA-256 of the zip (`CodeSha256`).
    pub code_sha256: String,
    /// Hex SHA-256 of the zip: the code's key.
    pub code_hex: String,
    pub code_size: u64,
    pub state: FunctionState,
    pub state_reason: Option<String>,
    pub state_reason_code: Option<String>,
    pub last_update_status: UpdateStatus,
    pub last_update_status_reason: Option<String>,
    pub last_modified_ms: u64,
    pub revision_id: String,
    /// `EphemeralStorage.Size`, MB (the guest's `/tmp` limit).
    #[serde(default = "default_ephemeral_mb")]
    pub ephemeral_mb: u32,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub snap_start: SnapStartApplyOn,
    /// `DeadLetterConfig.TargetArn`: a thaw function that receives events that exhausted
    /// their attempts.
    #[serde(default)]
    pub dead_letter_target: Option<String>,
    /// The configuration that serves while this one is being built (`LastUpdateStatus`
    /// `InProgress`) or after its build failed (`Failed`); `None` once this one serves.
    #[serde(default)]
    pub previous: Option<Box<VersionConfig>>,
}

impl VersionConfig {
    /// The scheduler's key for this version.
    pub fn function_version(&self) -> thaw_scheduler::FunctionVersion {
        thaw_scheduler::FunctionVersion::new(self.name.clone(), self.version.clone())
    }

    /// The configuration invocations run: this one, or the previous one while an update of
    /// it builds or after that update failed.
    pub fn serving(&self) -> &VersionConfig {
        match (&self.previous, self.last_update_status) {
            (Some(prev), UpdateStatus::InProgress | UpdateStatus::Failed) => prev,
            _ => self,
        }
    }

    /// Whether two versions would run the same thing (PublishVersion reuses a version then).
    pub(crate) fn same_code_and_config(&self, other: &VersionConfig) -> bool {
        self.code_hex == other.code_hex
            && self.handler == other.handler
            && self.runtime == other.runtime
            && self.memory_mb == other.memory_mb
            && self.timeout_s == other.timeout_s
            && self.env == other.env
            && self.ephemeral_mb == other.ephemeral_mb
            && self.logging == other.logging
            && self.snap_start == other.snap_start
    }

    /// Whether SnapStart optimisation applies (`OptimizationStatus` `On`): published
    /// versions of a function with `ApplyOn = PublishedVersions`.
    pub fn snap_start_on(&self) -> bool {
        self.snap_start == SnapStartApplyOn::PublishedVersions && self.version != "$LATEST"
    }
}

/// An alias pointing at a version, optionally splitting traffic with others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub function: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub revision_id: String,
    /// `RoutingConfig.AdditionalVersionWeights`: version -> share of invocations (0..1); the
    /// primary version gets the rest.
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
}

impl Alias {
    /// The version an invocation runs, given a uniform draw `u` in [0, 1): each additional
    /// version takes its weight's share, the primary version the rest.
    pub fn pick(&self, u: f64) -> &str {
        let mut acc = 0.0;
        for (version, w) in &self.weights {
            acc += w;
            if u < acc {
                return version;
            }
        }
        &self.version
    }
}

/// A persisted provisioned-concurrency request (the live status comes from the scheduler).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvRecord {
    pub function: String,
    pub version: String,
    pub requested: u32,
    pub last_modified_ms: u64,
    /// The qualifier it was put on (an alias or the version number).
    #[serde(default)]
    pub qualifier: Option<String>,
}

/// A function's reserved concurrency (`PutFunctionConcurrency`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservedRecord {
    pub function: String,
    pub reserved: u32,
}

/// A queued asynchronous invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsyncEvent {
    /// Queue position (assigned by [`super::Registry::enqueue_event`]).
    #[serde(default)]
    pub seq: u64,
    pub request_id: String,
    pub function: String,
    /// The resolved version.
    pub version: String,
    /// Base64 of the payload.
    pub payload: String,
    /// Attempts made so far.
    pub attempts: u32,
    pub client_context: Option<serde_json::Value>,
    pub enqueued_ms: u64,
    /// The qualifier the caller used (event-invoke configs are per qualifier).
    #[serde(default)]
    pub qualifier: Option<String>,
}

/// `FunctionEventInvokeConfig` of one function or qualifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub function: String,
    /// `$LATEST`, a version or an alias.
    pub qualifier: String,
    /// Retries after the first attempt (0..=2); `None`: Lambda's default, 2.
    pub maximum_retry_attempts: Option<u32>,
    /// Seconds an event may wait (60..=21600); `None`: 6 hours.
    pub maximum_event_age_s: Option<u32>,
    /// Destination ARN (a thaw function) for successful events.
    pub on_success: Option<String>,
    /// Destination ARN (a thaw function) for events that failed every attempt or aged out.
    pub on_failure: Option<String>,
    pub last_modified_ms: u64,
}

/// `AuthType` of a function URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UrlAuthType {
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "AWS_IAM")]
    AwsIam,
}

impl UrlAuthType {
    /// As Lambda spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::AwsIam => "AWS_IAM",
        }
    }
}

/// A function URL's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlConfig {
    pub function: String,
    /// `None`: the unqualified function (`$LATEST`); else an alias.
    pub qualifier: Option<String>,
    /// The URL's id (32 lower-case letters and digits), its path prefix on the URL listener.
    pub url_id: String,
    pub auth_type: UrlAuthType,
    pub cors: Option<crate::url_event::Cors>,
    /// `BUFFERED` (thaw does not stream responses).
    pub invoke_mode: String,
    pub created_ms: u64,
    pub last_modified_ms: u64,
}

/// One statement of a function's resource-based policy (AddPermission).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Permission {
    /// `StatementId`, unique within the policy.
    pub sid: String,
    /// `lambda:InvokeFunction`, `lambda:InvokeFunctionUrl`, `lambda:*`, ...
    pub action: String,
    /// A service (`s3.amazonaws.com`), an account id, an ARN or `*`.
    pub principal: String,
    #[serde(default)]
    pub source_arn: Option<String>,
    #[serde(default)]
    pub source_account: Option<String>,
    #[serde(default)]
    pub principal_org_id: Option<String>,
    #[serde(default)]
    pub event_source_token: Option<String>,
    /// `NONE` or `AWS_IAM`: the statement applies to function-URL calls of that type.
    #[serde(default)]
    pub function_url_auth_type: Option<String>,
}

/// A function's (or one qualifier's) resource-based policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub function: String,
    /// `None`: the unqualified function.
    pub qualifier: Option<String>,
    pub statements: Vec<Permission>,
    /// Changes with every statement added or removed (AddPermission/RemovePermission's
    /// `RevisionId`).
    pub revision_id: String,
}
