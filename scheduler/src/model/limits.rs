//! The counting service's and placement's knobs and verdicts: [`Limits`], the overcommit
//! policy [`Admission`], Lambda's throttle reasons and the reserved-concurrency errors.
//!
//!
//! Capacity model, as in Lambda: a function with reserved concurrency `R` may use at most `R`
//! (provisioned slots included); every other function shares the unreserved pool,
//! `account_concurrency - sum(R)`, which its provisioned slots also draw on. Provisioned slots are
//! checked when configured, so leasing a provisioned instance is never throttled.

use std::fmt;
use std::time::Duration;

/// Policy knobs of one scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent leases allowed across all functions (Lambda's default is 1000).
    pub account_concurrency: u32,
    /// Unreserved concurrency that reserved and provisioned configs must leave (Lambda: 100).
    pub min_unreserved_concurrency: u32,
    /// Host memory all live and restoring instances may be charged.
    pub memory_budget_bytes: u64,
    /// How long an idle on-demand instance is kept warm before it is evicted (scale to zero).
    pub keep_warm_ttl: Duration,
    /// Provisioned restores run at once (keeps READY-time restores from starving on-demand ones).
    pub provision_parallelism: usize,
    /// What an instance is charged against the memory budget.
    pub admission: Admission,
}

/// The overcommit policy: what one live instance is charged against the memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Its version's full `memory_bytes` (MemorySize plus overhead): no overcommit.
    MemorySize,
    /// What instances of its version were measured to cost the host (the largest
    /// measurement so far, [`InstanceFactory::measured_bytes`]), plus `margin_pct`
    /// percent, at least `floor_bytes`, never more than `memory_bytes`. Until the first
    /// measurement, `memory_bytes`.
    Measured {
        /// Safety margin on top of the measurement, in percent.
        margin_pct: u32,
        /// The least an instance is charged.
        floor_bytes: u64,
    },
}

impl Admission {
    /// The default policy: measured use plus 50%, at least 4 MiB.
    pub const DEFAULT: Admission = Admission::Measured {
        margin_pct: 50,
        floor_bytes: 4 << 20,
    };

    /// The charge for a version declared at `declared` bytes whose instances were
    /// measured at most `measured` (0: not yet).
    pub fn charge(self, declared: u64, measured: u64) -> u64 {
        match self {
            Admission::MemorySize => declared,
            Admission::Measured { .. } if measured == 0 => declared,
            Admission::Measured {
                margin_pct,
                floor_bytes,
            } => {
                let with_margin = measured.saturating_add(measured / 100 * u64::from(margin_pct));
                // Whole MiB, so small measurement changes do not churn the ledger.
                let mib = with_margin.div_ceil(1 << 20) << 20;
                mib.max(floor_bytes).min(declared)
            }
        }
    }

    /// `memory_size` or `measured` (the metrics' label).
    pub fn as_str(self) -> &'static str {
        match self {
            Admission::MemorySize => "memory_size",
            Admission::Measured { .. } => "measured",
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            account_concurrency: 1000,
            min_unreserved_concurrency: 100,
            memory_budget_bytes: 8 << 30,
            keep_warm_ttl: Duration::from_secs(600),
            provision_parallelism: 4,
            admission: Admission::DEFAULT,
        }
    }
}

/// Why a lease was throttled; the strings are Lambda's `Reason` values for a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleReason {
    /// The function's reserved concurrency is in use (or is 0).
    ReservedFunctionConcurrentInvocationLimitExceeded,
    /// The account's unreserved concurrency is in use.
    ConcurrentInvocationLimitExceeded,
}

impl ThrottleReason {
    /// Lambda's `Reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReservedFunctionConcurrentInvocationLimitExceeded => {
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            }
            Self::ConcurrentInvocationLimitExceeded => "ConcurrentInvocationLimitExceeded",
        }
    }
}

impl fmt::Display for ThrottleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reserved-concurrency change that the account cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservedError {
    /// Reserving would leave less than the minimum unreserved concurrency.
    #[error("reserving {requested} would leave less than the minimum unreserved concurrency ({available} available)")]
    ExceedsUnreserved {
        /// The reservation asked for.
        requested: u32,
        /// The most that could be reserved.
        available: u32,
    },
    /// The function's provisioned concurrency needs more than the reservation.
    #[error("reserved concurrency {requested} is below the function's provisioned concurrency {provisioned}")]
    BelowProvisioned {
        /// The reservation asked for.
        requested: u32,
        /// Provisioned concurrency configured over the function's versions.
        provisioned: u32,
    },
}
