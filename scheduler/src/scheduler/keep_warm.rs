//! Keep-warm: idle on-demand instances older than the TTL are evicted (scale to zero), driven by an
//! explicit [`Scheduler::tick`] or a background reaper task. Provisioned instances are never evicted.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Scheduler;
use crate::factory::InstanceFactory;

/// What one [`Scheduler::tick`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Idle on-demand instances evicted for exceeding the keep-warm TTL.
    pub evicted: u32,
    /// Retired, empty pools dropped.
    pub pools_removed: u32,
}

impl<F: InstanceFactory> Scheduler<F> {
    /// One keep-warm pass.
    ///
    /// 1. Read the clock once.
    /// 2. In every pool, pop idle on-demand instances from the old end while they have been idle for
    ///    at least `keep_warm_ttl` (the list is oldest-first, so the scan stops at the first young
    ///    one); uncharge their memory.
    /// 3. Drop pools of removed functions that are now empty, and functions with nothing left.
    /// 4. Discard the evicted instances outside the lock.
    pub fn tick(&self) -> TickReport {
        // 1.
        let now = self.inner.clock.now();
        let ttl = self.inner.limits.keep_warm_ttl;
        let mut report = TickReport::default();
        let mut victims = Vec::new();
        {
            let mut st = self.inner.state.lock();
            let st = &mut *st;
            // 2.
            let mut freed = 0;
            for pool in st
                .functions
                .values_mut()
                .flat_map(|fs| fs.versions.values_mut())
            {
                while pool
                    .idle
                    .front()
                    .is_some_and(|i| now.saturating_duration_since(i.since) >= ttl)
                {
                    let Some(idle) = pool.idle.pop_front() else {
                        break;
                    };
                    tracing::debug!(fv = %pool.key, id = %idle.id, "keep-warm TTL expired");
                    pool.counters.evicted_ttl += 1;
                    pool.charged = pool.charged.saturating_sub(1);
                    freed += pool.cost;
                    report.evicted += 1;
                    victims.push(idle.instance);
                }
            }
            st.release_memory(freed);
            // 3.
            for fs in st.functions.values_mut() {
                let before = fs.versions.len();
                fs.versions.retain(|_, p| !(p.retired && p.is_unused()));
                report.pools_removed += (before - fs.versions.len()) as u32;
            }
            st.functions
                .retain(|_, fs| !fs.versions.is_empty() || fs.reserved.is_some());
        }
        // 4.
        self.inner.discard_all(victims);
        report
    }

    /// Runs [`Scheduler::tick`] every `period` on the runtime until the scheduler is dropped.
    pub fn spawn_reaper(&self, period: Duration) -> JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        self.inner.runtime.spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                Scheduler { inner }.tick();
            }
        })
    }
}
