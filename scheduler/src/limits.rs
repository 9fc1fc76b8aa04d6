//! The counting service: the account-wide concurrency limit, reserved concurrency per function, and
//! the admission check an on-demand lease passes (Lambda's rules and throttle reasons).
//!
//! Capacity model, as in Lambda: a function with reserved concurrency `R` may use at most `R`
//! (provisioned slots included); every other function shares the unreserved pool,
//! `account_concurrency - sum(R)`, which its provisioned slots also draw on. Provisioned slots are
//! checked when configured, so leasing a provisioned instance is never throttled.

use std::fmt;
use std::time::Duration;

use crate::factory::InstanceFactory;
use crate::scheduler::Scheduler;
use crate::state::State;

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

impl<I> State<I> {
    /// May `function` start one more on-demand lease? Its pool must exist.
    pub fn admit(&self, function: &str, limits: &Limits) -> Result<(), ThrottleReason> {
        let fs = self.functions.get(function);
        match fs.and_then(|fs| fs.reserved) {
            Some(reserved) => {
                let used = fs.map_or(0, |fs| fs.usage());
                if used < reserved {
                    Ok(())
                } else {
                    Err(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded)
                }
            }
            None => {
                let pool = limits
                    .account_concurrency
                    .saturating_sub(self.reserved_total);
                if self.unreserved_used < pool {
                    Ok(())
                } else {
                    Err(ThrottleReason::ConcurrentInvocationLimitExceeded)
                }
            }
        }
    }
}

impl<F: InstanceFactory> Scheduler<F> {
    /// Sets `function`'s reserved concurrency (all versions together); 0 throttles every on-demand
    /// invocation of it.
    pub fn put_reserved(&self, function: &str, n: u32) -> Result<(), ReservedError> {
        let limits = &self.inner.limits;
        let mut st = self.inner.state.lock();
        let st = &mut *st;
        let (old, provisioned, usage) = st.functions.get(function).map_or((None, 0, 0), |fs| {
            (fs.reserved, fs.provisioned_requested(), fs.usage())
        });
        if n < provisioned {
            return Err(ReservedError::BelowProvisioned {
                requested: n,
                provisioned,
            });
        }
        let others_reserved = st.reserved_total - old.unwrap_or(0);
        let others_provisioned =
            st.unreserved_provisioned() - if old.is_none() { provisioned } else { 0 };
        let available = limits.account_concurrency.saturating_sub(
            limits.min_unreserved_concurrency + others_reserved + others_provisioned,
        );
        if n > available {
            return Err(ReservedError::ExceedsUnreserved {
                requested: n,
                available,
            });
        }
        let fs = st
            .functions
            .entry(function.to_owned())
            .or_insert_with(crate::pool::FunctionState::new);
        fs.reserved = Some(n);
        st.reserved_total = others_reserved + n;
        if old.is_none() {
            st.unreserved_used -= usage;
        }
        Ok(())
    }

    /// Removes `function`'s reserved concurrency; it shares the unreserved pool again. Returns the
    /// reservation that was removed, if any.
    pub fn delete_reserved(&self, function: &str) -> Option<u32> {
        let mut st = self.inner.state.lock();
        let st = &mut *st;
        let fs = st.functions.get_mut(function)?;
        let old = fs.reserved.take()?;
        st.reserved_total -= old;
        st.unreserved_used += fs.usage();
        Some(old)
    }

    /// `function`'s reserved concurrency, if set.
    pub fn get_reserved(&self, function: &str) -> Option<u32> {
        self.inner.state.lock().functions.get(function)?.reserved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FunctionVersion;

    #[test]
    fn test_admission_uses_reserved_then_unreserved_pool() {
        let limits = Limits {
            account_concurrency: 10,
            ..Limits::default()
        };
        let mut st: State<u32> = State::new();
        let (a, b) = (
            FunctionVersion::new("a", "1"),
            FunctionVersion::new("b", "1"),
        );
        st.ensure_pool(&a, || 1);
        st.ensure_pool(&b, || 1);
        st.functions.get_mut("b").unwrap().reserved = Some(4);
        st.reserved_total = 4;
        st.adjust_pool(&a, |p| p.busy = 6);
        assert_eq!(
            st.admit("a", &limits),
            Err(ThrottleReason::ConcurrentInvocationLimitExceeded)
        );
        st.adjust_pool(&b, |p| p.busy = 3);
        assert_eq!(st.admit("b", &limits), Ok(()));
        st.adjust_pool(&b, |p| p.busy = 4);
        assert_eq!(
            st.admit("b", &limits).unwrap_err().as_str(),
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        );
    }
}
