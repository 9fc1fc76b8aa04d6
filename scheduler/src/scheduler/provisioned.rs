//! Provisioned concurrency: per function-version configs (Put/Get/Delete), the background restores
//! that fill a pool to its requested size, and the IN_PROGRESS -> READY | FAILED status.
//!
//! A restore that finds the memory budget full of busy or restoring instances waits for them
//! (IN_PROGRESS) instead of failing: the shortage is transient, and a pool whose config FAILED would
//! stop replacing crashed instances until the next put. Only a budget too small for the
//! provisioned configs themselves, or a factory error, is FAILED.

use std::sync::Arc;
use std::time::Duration;

use super::{Inner, Scheduler};
use crate::factory::{InstanceFactory, RestoreKind};
use crate::ids::{FunctionVersion, InstanceId};
use crate::model::{ProvisionedConfig, ProvisionedError, ProvisionedStatus};
use crate::state::{take_needed, Idle, ProvState};

/// Spawns `n` provisioned restores of `key`, already counted in `prov_restoring`.
pub(crate) fn spawn_provisioners<F: InstanceFactory>(
    inner: &Arc<Inner<F>>,
    key: Arc<FunctionVersion>,
    n: u32,
) {
    for _ in 0..n {
        inner
            .runtime
            .spawn(provision_one(Arc::clone(inner), Arc::clone(&key)));
    }
}

/// First wait before a provisioned restore refused for memory looks again.
const MEMORY_RETRY_FIRST: Duration = Duration::from_millis(2);
/// Longest wait between those looks.
const MEMORY_RETRY_MAX: Duration = Duration::from_millis(50);

/// What step 2 of a provisioned restore decided.
enum Admit<I> {
    /// Memory is charged: restore (after discarding the evicted `victims`).
    Restore {
        id: InstanceId,
        generation: u64,
        victims: Vec<I>,
    },
    /// The pool no longer wants the instance, or the config FAILED; uncounted already.
    Stop,
    /// The budget is full of busy or restoring instances that will be given back: still counted in
    /// `prov_restoring`, look again later.
    Wait,
}

/// One provisioned restore, counted in `prov_restoring` by whoever spawned it.
///
/// 1. Wait for a permit: at most `provision_parallelism` provisioned restores run at once.
/// 2. Under the lock, check the pool still wants the instance (config not deleted, lowered or
///    FAILED meanwhile) and charge the memory budget, evicting idle on-demand instances if needed
///    ([`admit`]). No room: if the provisioned configs alone need more than the budget, fail the
///    config; otherwise the room is held by busy or restoring instances that will come back, so
///    give the permit back, wait (doubling from `MEMORY_RETRY_FIRST` to `MEMORY_RETRY_MAX`) and
///    go to 1. The restore stays counted meanwhile, so the config stays IN_PROGRESS and no
///    duplicate is spawned.
/// 3. Restore outside the lock.
/// 4. Under the lock, add the instance to the idle provisioned list if it is of the current
///    generation and still wanted, else discard it; a restore error fails the config with its
///    reason. Refresh the status and spawn more restores if the pool is short again. Under
///    `Admission::Measured`, fold what the new instance measured into the pool's charge.
///
/// Waiting polls rather than being woken: room appears when any busy instance is released (it
/// becomes evictable) or discarded, from many places, and a missed wake-up would lose the slot.
async fn provision_one<F: InstanceFactory>(inner: Arc<Inner<F>>, key: Arc<FunctionVersion>) {
    let mut delay = MEMORY_RETRY_FIRST;
    let mut refused = false;
    let (_permit, id, generation, victims) = loop {
        // 1.
        let Ok(permit) = inner.provision_permits.acquire().await else {
            return;
        };
        // 2.
        match admit(&inner, &key, refused) {
            Admit::Restore {
                id,
                generation,
                victims,
            } => break (permit, id, generation, victims),
            Admit::Stop => return,
            Admit::Wait => {}
        }
        refused = true;
        drop(permit);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MEMORY_RETRY_MAX);
    };
    inner.discard_all(victims);
    // 3.
    let result = inner.factory.restore(&key, RestoreKind::Provisioned).await;
    // 4. (Provisioned instances may idle long before their first invocation: measure
    //    what they cost right away, so admission by measured use can pack them.)
    let measured = match (&result, inner.limits.admission) {
        (Ok(instance), crate::model::Admission::Measured { .. }) => {
            inner.factory.measured_bytes(instance)
        }
        _ => None,
    };
    let now = inner.clock.now();
    let mut st = inner.state.lock();
    let Some((discard, keep, spawn)) = st.adjust_pool(&key, |p| {
        p.prov_restoring -= 1;
        let (discard, keep) = match result {
            Ok(instance) => {
                if p.generation == generation && !p.retired && p.prov_live() < p.requested() {
                    p.prov_idle.push(Idle {
                        id,
                        instance,
                        since: now,
                    });
                    (None, true)
                } else {
                    (Some(instance), false)
                }
            }
            Err(err) => {
                let reason = err.reason();
                tracing::warn!(fv = %p.key, %reason, "provisioned restore failed");
                p.counters.restore_failures += 1;
                p.fail(reason);
                (None, false)
            }
        };
        p.refresh_status();
        (discard, keep, take_needed(p))
    }) else {
        return;
    };
    if !keep {
        st.uncharge(&key, 1);
    }
    if let (true, Some(bytes)) = (keep, measured) {
        st.observe_cost(&key, generation, bytes, inner.limits.admission);
    }
    drop(st);
    if let Some(instance) = discard {
        inner.factory.discard(instance);
    }
    if let Some(n) = spawn {
        spawn_provisioners(&inner, key, n);
    }
}

/// Step 2 of [`provision_one`], under the lock. `refused_before` keeps a waiting restore from
/// counting (and logging) the same shortage on every look.
fn admit<F: InstanceFactory>(
    inner: &Inner<F>,
    key: &FunctionVersion,
    refused_before: bool,
) -> Admit<F::Instance> {
    let budget = inner.limits.memory_budget_bytes;
    let mut st = inner.state.lock();
    let Some(pool) = st.pool(key) else {
        return Admit::Stop;
    };
    let wanted = pool
        .prov
        .as_ref()
        .is_some_and(|c| c.status != ProvisionedStatus::Failed)
        && pool.prov_live() + pool.prov_restoring <= pool.requested();
    if !wanted {
        st.adjust_pool(key, |p| p.prov_restoring -= 1);
        return Admit::Stop;
    }
    let (generation, cost) = (pool.generation, pool.cost);
    // Under measured admission an unmeasured pool's cost is only an upper bound: while
    // its first restores are still running (and will measure it), it waits rather than
    // failing. (This restore is counted in `prov_restoring`.)
    let unmeasured = pool.measured == 0
        && pool.prov_live() == 0
        && pool.prov_restoring > 1
        && matches!(
            inner.limits.admission,
            crate::model::Admission::Measured { .. }
        );
    let err = match st.reserve_memory(cost, budget) {
        Ok(victims) => {
            st.charge(key);
            return Admit::Restore {
                id: st.next_instance_id(),
                generation,
                victims,
            };
        }
        Err(err) => err,
    };
    if st.provisioned_bytes() > budget && !unmeasured {
        // Only a config change can make room: Lambda's FAILED, sticky until the next put.
        tracing::warn!(fv = %key, error = %err, "provisioned restore refused");
        st.adjust_pool(key, |p| {
            p.prov_restoring -= 1;
            if !refused_before {
                p.counters.no_capacity += 1;
            }
            p.fail(err.to_string());
        });
        return Admit::Stop;
    }
    if !refused_before {
        tracing::info!(fv = %key, error = %err, "provisioned restore waiting for memory");
        if let Some(p) = st.pool_mut(key) {
            p.counters.no_capacity += 1;
        }
    }
    Admit::Wait
}

impl<F: InstanceFactory> Scheduler<F> {
    /// PutProvisionedConcurrencyConfig: keep `n` instances of `fv` restored. Returns at once with
    /// status IN_PROGRESS (or READY if enough exist); restores run in the background. Lowering `n`
    /// discards idle extras now and busy extras when they are released.
    pub fn put_provisioned(
        &self,
        fv: &FunctionVersion,
        n: u32,
    ) -> Result<ProvisionedConfig, ProvisionedError> {
        if fv.is_latest() {
            return Err(ProvisionedError::Latest);
        }
        if n == 0 {
            return Err(ProvisionedError::Zero);
        }
        let inner = &self.inner;
        let limits = &inner.limits;
        let wall = inner.clock.wall();
        let (victims, spawn, config) = {
            let mut st = inner.state.lock();
            let old = st
                .ensure_pool(fv, || inner.factory.memory_bytes(fv))
                .requested();
            let fs = &st.functions[&fv.function];
            if let Some(reserved) = fs.reserved {
                let requested = fs.provisioned_requested() - old + n;
                if requested > reserved {
                    return Err(ProvisionedError::ExceedsReserved {
                        requested,
                        reserved,
                    });
                }
            } else {
                let requested = st.unreserved_provisioned() - old + n;
                let available = limits
                    .account_concurrency
                    .saturating_sub(st.reserved_total + limits.min_unreserved_concurrency);
                if requested > available {
                    return Err(ProvisionedError::ExceedsUnreserved {
                        requested,
                        available,
                    });
                }
            }
            let (victims, spawn, config) = st
                .adjust_pool(fv, |p| {
                    p.prov = Some(ProvState {
                        requested: n,
                        status: ProvisionedStatus::InProgress,
                        reason: None,
                        last_modified: wall,
                    });
                    let mut victims = Vec::new();
                    while p.prov_live() > n {
                        let Some(idle) = p.prov_idle.pop() else { break };
                        victims.push(idle.instance);
                    }
                    p.refresh_status();
                    let spawn = take_needed(p).map(|k| (Arc::clone(&p.key), k));
                    (victims, spawn, p.config())
                })
                .expect("pool ensured above");
            st.uncharge(fv, victims.len());
            (victims, spawn, config)
        };
        inner.discard_all(victims);
        if let Some((key, k)) = spawn {
            spawn_provisioners(inner, key, k);
        }
        Ok(config.expect("config set above"))
    }

    /// GetProvisionedConcurrencyConfig; `None` if `fv` has no config.
    pub fn get_provisioned(&self, fv: &FunctionVersion) -> Option<ProvisionedConfig> {
        self.inner.state.lock().pool(fv)?.config()
    }

    /// DeleteProvisionedConcurrencyConfig: drains the pool. Idle provisioned instances are
    /// discarded now, busy ones when released, in-flight restores when they finish.
    pub fn delete_provisioned(&self, fv: &FunctionVersion) -> Result<(), ProvisionedError> {
        let victims = {
            let mut st = self.inner.state.lock();
            if st.pool(fv).is_none_or(|p| p.prov.is_none()) {
                return Err(ProvisionedError::NotFound(fv.clone()));
            }
            let victims = st
                .adjust_pool(fv, |p| {
                    p.prov = None;
                    p.prov_idle
                        .drain(..)
                        .map(|i| i.instance)
                        .collect::<Vec<_>>()
                })
                .expect("pool checked above");
            st.uncharge(fv, victims.len());
            victims
        };
        self.inner.discard_all(victims);
        Ok(())
    }
}
