//! The scheduler's metrics snapshot: every pool's counts and the counting and placement totals
//! read under the lock at once.

use super::Scheduler;
use crate::factory::InstanceFactory;
use crate::model::{PoolStats, SchedulerStats};

impl<F: InstanceFactory> Scheduler<F> {
    /// A consistent snapshot of every pool and the counting and placement totals.
    pub fn stats(&self) -> SchedulerStats {
        let st = self.inner.state.lock();
        let mut pools: Vec<PoolStats> = st
            .functions
            .values()
            .flat_map(|fs| fs.versions.values())
            .map(|p| PoolStats {
                function_version: (*p.key).clone(),
                idle: p.idle.len() as u32,
                busy: p.busy,
                restoring: p.restoring,
                provisioned_requested: p.requested(),
                provisioned_allocated: p.prov_live(),
                provisioned_available: p.prov_idle.len() as u32,
                provisioned_restoring: p.prov_restoring,
                concurrency: p.usage(),
                memory_charged_per_instance: p.cost,
                memory_measured_per_instance: p.measured,
                counters: p.counters,
            })
            .collect();
        pools.sort_by(|a, b| a.function_version.cmp(&b.function_version));
        SchedulerStats {
            pools,
            memory_used: st.memory_used,
            memory_budget: self.inner.limits.memory_budget_bytes,
            admission: self.inner.limits.admission,
            unreserved_concurrency_used: st.unreserved_used,
            reserved_concurrency_total: st.reserved_total,
        }
    }
}
