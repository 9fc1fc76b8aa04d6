//! A point-in-time snapshot of the scheduler for metrics: per function-version instance counts,
//! provisioned counts and monotonic counters (leases by start type, throttles, evictions).

use crate::ids::FunctionVersion;

/// Monotonic counters of one function version (reset only when a removed function's pool is dropped).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolCounters {
    /// Leases served by an idle instance (provisioned included).
    pub leases_warm: u64,
    /// Of `leases_warm`, those served by a provisioned instance.
    pub leases_provisioned: u64,
    /// Leases that restored an instance on demand.
    pub leases_restore: u64,
    /// Leases refused for the function's reserved concurrency.
    pub throttles_reserved: u64,
    /// Leases refused for the account's concurrency.
    pub throttles_account: u64,
    /// Restores refused for the memory budget (on demand or provisioned).
    pub no_capacity: u64,
    /// Restores the factory failed (on demand or provisioned).
    pub restore_failures: u64,
    /// Idle instances evicted by the keep-warm TTL.
    pub evicted_ttl: u64,
    /// Idle instances evicted to make room in the memory budget.
    pub evicted_memory: u64,
    /// Instances released unhealthy (crashed, timed out) and discarded.
    pub discarded_unhealthy: u64,
}

/// One function version's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// The pool's function version.
    pub function_version: FunctionVersion,
    /// Idle on-demand instances.
    pub idle: u32,
    /// Busy on-demand instances.
    pub busy: u32,
    /// On-demand restores in flight.
    pub restoring: u32,
    /// Requested provisioned concurrency (0 without a config).
    pub provisioned_requested: u32,
    /// Provisioned instances that exist.
    pub provisioned_allocated: u32,
    /// Idle provisioned instances.
    pub provisioned_available: u32,
    /// Provisioned restores in flight, including those waiting for a permit or for memory.
    pub provisioned_restoring: u32,
    /// Concurrency charged to this version (busy + restoring + provisioned slots).
    pub concurrency: u32,
    /// Bytes each instance is charged against the memory budget now.
    pub memory_charged_per_instance: u64,
    /// The most an instance was measured to cost the host (0: not measured).
    pub memory_measured_per_instance: u64,
    /// Counters.
    pub counters: PoolCounters,
}

/// The whole scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Pools sorted by function version.
    pub pools: Vec<PoolStats>,
    /// Bytes charged against the memory budget.
    pub memory_used: u64,
    /// The memory budget.
    pub memory_budget: u64,
    /// The overcommit policy in force.
    pub admission: crate::model::Admission,
    /// Concurrency used by functions without reserved concurrency.
    pub unreserved_concurrency_used: u32,
    /// Sum of reserved concurrency.
    pub reserved_concurrency_total: u32,
}

impl SchedulerStats {
    /// The pool of `fv`, if the scheduler has seen it.
    pub fn pool(&self, fv: &FunctionVersion) -> Option<&PoolStats> {
        self.pools.iter().find(|p| &p.function_version == fv)
    }

    /// Counters summed over all pools.
    pub fn totals(&self) -> PoolCounters {
        self.pools.iter().fold(PoolCounters::default(), |mut t, p| {
            let c = &p.counters;
            t.leases_warm += c.leases_warm;
            t.leases_provisioned += c.leases_provisioned;
            t.leases_restore += c.leases_restore;
            t.throttles_reserved += c.throttles_reserved;
            t.throttles_account += c.throttles_account;
            t.no_capacity += c.no_capacity;
            t.restore_failures += c.restore_failures;
            t.evicted_ttl += c.evicted_ttl;
            t.evicted_memory += c.evicted_memory;
            t.discarded_unhealthy += c.discarded_unhealthy;
            t
        })
    }
}
