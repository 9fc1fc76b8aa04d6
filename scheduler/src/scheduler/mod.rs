//! The worker manager: the [`Scheduler`] handle, its shared state, and the lease policy that picks a
//! warm instance, restores one on demand, or throttles.
//!
//! This layer is the async engine over the ledger (`state/`): it owns the lock, the tokio
//! runtime handle and the factory. Its children add the [`Lease`] guard, provisioned restores,
//! reserved concurrency, keep-warm and the metrics snapshot, each as `impl Scheduler` blocks.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::factory::{InstanceFactory, RestoreKind};
use crate::ids::{FunctionVersion, InstanceId};
use crate::model::{LeaseError, Limits, StartType, ThrottleReason};
use crate::state::{take_needed, State};

mod keep_warm;
mod lease;
mod provisioned;
mod reserved;
mod stats;

pub use keep_warm::TickReport;
pub use lease::Lease;
use provisioned::spawn_provisioners;

pub(crate) struct Inner<F: InstanceFactory> {
    pub factory: F,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub runtime: Handle,
    pub provision_permits: Semaphore,
    pub state: Mutex<State<F::Instance>>,
}

impl<F: InstanceFactory> Inner<F> {
    /// Discards instances; call without the state lock held.
    pub fn discard_all(&self, instances: Vec<F::Instance>) {
        for instance in instances {
            self.factory.discard(instance);
        }
    }
}

/// Per function-version pools over an [`InstanceFactory`]. Cheap to clone; clones share state.
pub struct Scheduler<F: InstanceFactory> {
    pub(crate) inner: Arc<Inner<F>>,
}

impl<F: InstanceFactory> Clone for Scheduler<F> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<F: InstanceFactory> fmt::Debug for Scheduler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// What the locked part of a lease decided.
enum Begin<F: InstanceFactory> {
    Leased(Lease<F>),
    Restore {
        key: Arc<FunctionVersion>,
        id: InstanceId,
        generation: u64,
        victims: Vec<F::Instance>,
    },
}

/// Rolls back an on-demand restore's reservation if the lease future is dropped mid-restore.
struct PendingRestore<'a, F: InstanceFactory> {
    inner: &'a Inner<F>,
    key: &'a FunctionVersion,
    armed: bool,
}

impl<F: InstanceFactory> Drop for PendingRestore<'_, F> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut st = self.inner.state.lock();
        st.adjust_pool(self.key, |p| p.restoring -= 1);
        st.uncharge(self.key, 1);
    }
}

impl<F: InstanceFactory> Scheduler<F> {
    /// A scheduler driving `factory`. Must be called inside a tokio runtime: background restores
    /// (provisioned concurrency, replacements) are spawned on it.
    pub fn new(factory: F, clock: impl Clock, limits: Limits) -> Self {
        let permits = Semaphore::new(limits.provision_parallelism.max(1));
        Self {
            inner: Arc::new(Inner {
                factory,
                clock: Arc::new(clock),
                limits,
                runtime: Handle::current(),
                provision_permits: permits,
                state: Mutex::new(State::new()),
            }),
        }
    }

    /// The factory this scheduler drives.
    pub fn factory(&self) -> &F {
        &self.inner.factory
    }

    /// The limits this scheduler enforces.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Leases an instance of `fv` for one invocation. The caller invokes it and then releases the
    /// lease (or drops it, which counts as healthy).
    pub async fn lease(&self, fv: &FunctionVersion) -> Result<Lease<F>, LeaseError> {
        let (key, id, generation, victims) = match self.begin_lease(fv)? {
            Begin::Leased(lease) => return Ok(lease),
            Begin::Restore {
                key,
                id,
                generation,
                victims,
            } => (key, id, generation, victims),
        };
        self.inner.discard_all(victims);
        let mut pending = PendingRestore {
            inner: &self.inner,
            key: &key,
            armed: true,
        };
        let started = Instant::now();
        let result = self
            .inner
            .factory
            .restore(&key, RestoreKind::OnDemand)
            .await;
        let restore_duration = started.elapsed();
        // Completed: the accounting moves from "restoring" to busy or failed below, under the lock.
        pending.armed = false;
        drop(pending);

        let mut st = self.inner.state.lock();
        match result {
            Ok(instance) => {
                st.adjust_pool(&key, |p| {
                    p.restoring -= 1;
                    p.busy += 1;
                    p.counters.leases_restore += 1;
                });
                drop(st);
                Ok(Lease {
                    inner: Arc::clone(&self.inner),
                    key,
                    id,
                    instance: Some(instance),
                    start: StartType::Restore,
                    provisioned: false,
                    generation,
                    restore_duration: Some(restore_duration),
                })
            }
            Err(err) => {
                st.adjust_pool(&key, |p| {
                    p.restoring -= 1;
                    p.counters.restore_failures += 1;
                });
                st.uncharge(&key, 1);
                tracing::warn!(fv = %key, error = %err.reason(), "on-demand restore failed");
                Err(LeaseError::Restore(err))
            }
        }
    }

    /// The locked half of [`Scheduler::lease`].
    ///
    /// 1. Find or create the pool of `fv`.
    /// 2. A free provisioned instance wins: it is already paid for, so it is never throttled.
    /// 3. Otherwise the lease needs an on-demand slot: the function's reserved concurrency if it
    ///    has some, else the account's unreserved pool. None free -> throttle with that reason.
    /// 4. Reuse the most recently idled on-demand instance (warm start; older ones age out).
    /// 5. Otherwise charge the memory budget for a restore, evicting idle on-demand instances LRU
    ///    first; if nothing can make room -> `NoCapacity`.
    /// 6. Count the restore as in flight (it holds its concurrency slot while restoring) and let
    ///    the caller restore outside the lock.
    fn begin_lease(&self, fv: &FunctionVersion) -> Result<Begin<F>, LeaseError> {
        let inner = &self.inner;
        let mut st = inner.state.lock();
        // 1.
        let pool = st.ensure_pool(fv, || inner.factory.memory_bytes(fv));
        let (key, generation, cost) = (Arc::clone(&pool.key), pool.generation, pool.cost);
        let lease = |id, instance, provisioned| Lease {
            inner: Arc::clone(inner),
            key: Arc::clone(&key),
            id,
            instance: Some(instance),
            start: StartType::Warm,
            provisioned,
            generation,
            restore_duration: None,
        };
        // 2.
        if let Some(idle) = st
            .adjust_pool(fv, |p| {
                let idle = p.prov_idle.pop()?;
                p.prov_busy += 1;
                p.counters.leases_warm += 1;
                p.counters.leases_provisioned += 1;
                Some(idle)
            })
            .flatten()
        {
            return Ok(Begin::Leased(lease(idle.id, idle.instance, true)));
        }
        // 3.
        if let Err(reason) = st.admit(&fv.function, &inner.limits) {
            if let Some(p) = st.pool_mut(fv) {
                match reason {
                    ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded => {
                        p.counters.throttles_reserved += 1
                    }
                    ThrottleReason::ConcurrentInvocationLimitExceeded => {
                        p.counters.throttles_account += 1
                    }
                }
            }
            return Err(LeaseError::Throttled { reason });
        }
        // 4.
        if let Some(idle) = st
            .adjust_pool(fv, |p| {
                let idle = p.idle.pop_back()?;
                p.busy += 1;
                p.counters.leases_warm += 1;
                Some(idle)
            })
            .flatten()
        {
            return Ok(Begin::Leased(lease(idle.id, idle.instance, false)));
        }
        // 5.
        let victims = match st.reserve_memory(cost, inner.limits.memory_budget_bytes) {
            Ok(victims) => victims,
            Err(err) => {
                if let Some(p) = st.pool_mut(fv) {
                    p.counters.no_capacity += 1;
                }
                return Err(LeaseError::NoCapacity(err));
            }
        };
        st.charge(fv);
        // 6.
        st.adjust_pool(fv, |p| p.restoring += 1);
        let id = st.next_instance_id();
        Ok(Begin::Restore {
            key,
            id,
            generation,
            victims,
        })
    }

    /// Discards `fv`'s idle instances and makes busy and restoring ones stale (discarded when they
    /// come back), e.g. after `$LATEST`'s code changed. Provisioned pools refill with fresh restores.
    pub fn invalidate(&self, fv: &FunctionVersion) {
        let (victims, spawn) = {
            let mut st = self.inner.state.lock();
            let Some((victims, spawn)) = st.adjust_pool(fv, |p| {
                p.generation += 1;
                let mut victims: Vec<_> = p.idle.drain(..).map(|i| i.instance).collect();
                victims.extend(p.prov_idle.drain(..).map(|i| i.instance));
                p.refresh_status();
                let spawn = take_needed(p).map(|n| (Arc::clone(&p.key), n));
                (victims, spawn)
            }) else {
                return;
            };
            st.uncharge(fv, victims.len());
            // The new generation may cost anything up to its (new) declared size.
            let declared = self.inner.factory.memory_bytes(fv);
            if let Some(()) = st.adjust_pool(fv, |p| {
                p.declared = declared;
                p.measured = 0;
                p.recent.clear();
            }) {
                st.recost(fv, declared);
            }
            (victims, spawn)
        };
        self.inner.discard_all(victims);
        if let Some((key, n)) = spawn {
            spawn_provisioners(&self.inner, key, n);
        }
    }

    /// Forgets `function` (DeleteFunction): drops its reserved and provisioned configs, discards its
    /// idle instances, and marks its pools retired so in-flight instances are discarded on release.
    /// Retired pools are removed by [`Scheduler::tick`] once empty.
    pub fn remove_function(&self, function: &str) {
        let victims = {
            let mut st = self.inner.state.lock();
            let st = &mut *st;
            let Some(fs) = st.functions.get_mut(function) else {
                return;
            };
            if let Some(old) = fs.reserved.take() {
                st.reserved_total -= old;
                st.unreserved_used += fs.usage();
            }
            let versions: Vec<FunctionVersion> =
                fs.versions.values().map(|p| (*p.key).clone()).collect();
            let mut victims = Vec::new();
            for fv in &versions {
                if let Some(v) = st.adjust_pool(fv, |p| {
                    p.generation += 1;
                    p.retired = true;
                    p.prov = None;
                    let v: Vec<_> = p
                        .idle
                        .drain(..)
                        .chain(p.prov_idle.drain(..))
                        .map(|i| i.instance)
                        .collect();
                    v
                }) {
                    st.uncharge(fv, v.len());
                    victims.extend(v);
                }
            }
            victims
        };
        self.inner.discard_all(victims);
    }
}
