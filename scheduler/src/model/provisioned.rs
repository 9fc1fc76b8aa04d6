//! Provisioned concurrency as Lambda reports it: the config, its status and the errors a
//! request can get.

use std::time::SystemTime;

use crate::ids::FunctionVersion;

/// Lambda's provisioned-concurrency `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProvisionedStatus {
    /// Fewer instances than requested exist and restores are under way.
    InProgress,
    /// All requested instances exist.
    Ready,
    /// A restore failed, or the provisioned configs need more memory than the host has; see
    /// `status_reason`. Sticky until the next put.
    Failed,
}

impl ProvisionedStatus {
    /// `IN_PROGRESS`, `READY` or `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Ready => "READY",
            Self::Failed => "FAILED",
        }
    }
}

/// A provisioned-concurrency config as GetProvisionedConcurrencyConfig reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedConfig {
    /// `RequestedProvisionedConcurrentExecutions`.
    pub requested: u32,
    /// `AllocatedProvisionedConcurrentExecutions`: provisioned instances that exist (idle or busy).
    pub allocated: u32,
    /// `AvailableProvisionedConcurrentExecutions`: provisioned instances idle right now.
    pub available: u32,
    /// `Status`.
    pub status: ProvisionedStatus,
    /// `StatusReason`, set when FAILED.
    pub status_reason: Option<String>,
    /// `LastModified`.
    pub last_modified: SystemTime,
}

/// A provisioned-concurrency request that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionedError {
    /// `$LATEST` cannot have provisioned concurrency.
    #[error("provisioned concurrency cannot be configured on $LATEST")]
    Latest,
    /// The request was 0 (delete the config instead).
    #[error("provisioned concurrency must be at least 1")]
    Zero,
    /// The function's versions together would need more than its reserved concurrency.
    #[error("provisioned concurrency {requested} exceeds the function's reserved concurrency {reserved}")]
    ExceedsReserved {
        /// Provisioned over the function's versions, with this request.
        requested: u32,
        /// The function's reserved concurrency.
        reserved: u32,
    },
    /// Unreserved functions' provisioned concurrency would eat the minimum unreserved pool.
    #[error("provisioned concurrency {requested} exceeds the account's available unreserved concurrency {available}")]
    ExceedsUnreserved {
        /// Provisioned over all unreserved functions, with this request.
        requested: u32,
        /// The most they may have.
        available: u32,
    },
    /// No config exists for the version.
    #[error("no provisioned concurrency config for {0}")]
    NotFound(FunctionVersion),
}
