//! What a function instance runs and how: [`FunctionSpec`] (name, version, handler,
//! MemorySize, EphemeralStorage, timeouts, environment, code, egress context) and
//! Lambda's bounds on it. Plain data: the instance boots from it, snapshots record it,
//! restores rebuild it.
use crate::function::FunctionCode;
use std::collections::BTreeMap;
use std::time::Duration;

/// Lambda's EphemeralStorage bounds, in MB: `/tmp`'s size.
pub const EPHEMERAL_MB: core::ops::RangeInclusive<u32> = 512..=10240;

/// Smallest MemorySize (Lambda's minimum).
pub const MIN_MEMORY_MB: u32 = 128;

/// What to run and how.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub version: String,
    pub handler: String,
    pub memory_mb: u32,
    /// EphemeralStorage: the most `/tmp` may hold, in MB. `/tmp` lives in guest
    /// memory, so what it holds also counts against `memory_mb`.
    pub ephemeral_mb: u32,
    pub timeout: Duration,
    /// Limit on boot + init.
    pub init_timeout: Duration,
    pub env: BTreeMap<String, String>,
    pub region: String,
    pub code: FunctionCode,
    /// `on-demand`, `provisioned-concurrency` or `snap-start`.
    pub initialization_type: String,
    /// The egress policy and TLS roots its sockets use; `None`: the worker's
    /// (which denies all egress unless configured).
    pub net: Option<thaw_net::NetContext>,
    /// Which configuration of the version this is (the registry's revision id): a
    /// version changed in place (`$LATEST`) keeps one snapshot per configuration, so
    /// the old one serves while the new one builds. Empty: the version's only one.
    pub deployment: String,
}

impl FunctionSpec {
    /// A spec with Lambda's defaults (128 MiB is too small for CPython here: 512).
    pub fn new(name: &str, handler: &str, code: FunctionCode) -> Self {
        Self {
            name: name.into(),
            version: "$LATEST".into(),
            handler: handler.into(),
            memory_mb: 512,
            ephemeral_mb: *EPHEMERAL_MB.start(),
            timeout: Duration::from_secs(3),
            init_timeout: Duration::from_secs(60),
            env: BTreeMap::new(),
            region: "us-east-1".into(),
            code,
            initialization_type: "on-demand".into(),
            net: None,
            deployment: String::new(),
        }
    }

    /// The function's ARN.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:000000000000:function:{}",
            self.region, self.name
        )
    }
}
