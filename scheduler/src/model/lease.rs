//! What a lease reports: how its instance was obtained and why none could be leased.

use crate::factory::FactoryError;
use crate::model::{PlacementError, ThrottleReason};

/// How the leased instance was obtained (the `faas.coldstart` / start-type metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartType {
    /// An idle instance (provisioned or kept warm) was reused.
    Warm,
    /// An instance was restored from its snapshot for this lease (spillover).
    Restore,
}

impl StartType {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StartType::Warm => "warm",
            StartType::Restore => "restore",
        }
    }
}

/// Why no instance could be leased.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// A concurrency limit is reached: answer 429 with `reason`.
    #[error("throttled: {reason}")]
    Throttled {
        /// Lambda's 429 `Reason`.
        reason: ThrottleReason,
    },
    /// The host's memory budget is full of instances that cannot be evicted.
    #[error("no capacity on this host")]
    NoCapacity(#[source] PlacementError),
    /// The on-demand restore failed.
    #[error("restore failed")]
    Restore(#[source] FactoryError),
}

impl LeaseError {
    /// The 429 `Reason` to answer with, if this is a throttle. A full host is reported as
    /// `ConcurrentInvocationLimitExceeded`: Lambda has no reason for it and clients retry either.
    pub fn throttle_reason(&self) -> Option<ThrottleReason> {
        match self {
            LeaseError::Throttled { reason } => Some(*reason),
            LeaseError::NoCapacity(_) => Some(ThrottleReason::ConcurrentInvocationLimitExceeded),
            LeaseError::Restore(_) => None,
        }
    }
}
