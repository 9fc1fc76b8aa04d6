//! A leased instance: the guard the caller invokes through, its start type, and how it goes back
//! (to the idle pool, or discarded and, if provisioned, replaced).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::provisioned::spawn_provisioners;
use super::Inner;
use crate::factory::InstanceFactory;
use crate::ids::{FunctionVersion, InstanceId};
use crate::model::StartType;
use crate::state::{take_needed, Idle};

/// One instance, leased for one invocation. Dropping it returns the instance to the pool as
/// healthy; call [`Lease::release`]`(false)` after a crash or timeout to have it discarded.
pub struct Lease<F: InstanceFactory> {
    pub(crate) inner: Arc<Inner<F>>,
    pub(crate) key: Arc<FunctionVersion>,
    pub(crate) id: InstanceId,
    /// `Some` until released; `release` consumes the lease, so the accessors always see `Some`.
    pub(crate) instance: Option<F::Instance>,
    pub(crate) start: StartType,
    pub(crate) provisioned: bool,
    pub(crate) generation: u64,
    pub(crate) restore_duration: Option<Duration>,
}

impl<F: InstanceFactory> Lease<F> {
    /// The instance to invoke.
    pub fn instance(&self) -> &F::Instance {
        self.instance
            .as_ref()
            .expect("a lease holds its instance until released")
    }

    /// The instance to invoke, mutably.
    pub fn instance_mut(&mut self) -> &mut F::Instance {
        self.instance
            .as_mut()
            .expect("a lease holds its instance until released")
    }

    /// The scheduler's id for the instance.
    pub fn id(&self) -> InstanceId {
        self.id
    }

    /// The function version leased.
    pub fn function_version(&self) -> &FunctionVersion {
        &self.key
    }

    /// Warm or restored for this lease.
    pub fn start_type(&self) -> StartType {
        self.start
    }

    /// Whether the instance belongs to the provisioned pool.
    pub fn is_provisioned(&self) -> bool {
        self.provisioned
    }

    /// How long the on-demand restore took (`Restore Duration` in the REPORT line).
    pub fn restore_duration(&self) -> Option<Duration> {
        self.restore_duration
    }

    /// Returns the instance: to the idle pool if `healthy`, otherwise it is discarded and, if it was
    /// provisioned, a replacement is restored in the background.
    pub fn release(mut self, healthy: bool) {
        if let Some(instance) = self.instance.take() {
            self.give_back(instance, healthy);
        }
    }

    /// Release:
    /// 1. Free the lease's slot (busy count).
    /// 2. Keep the instance idle if it is healthy, of the pool's current generation, and still
    ///    wanted (a provisioned pool may have been lowered or deleted meanwhile); otherwise uncharge
    ///    its memory and discard it outside the lock.
    /// 3. If a provisioned pool is now short, start replacement restores.
    /// 4. Under `Admission::Measured`, fold the instance's measured cost into its version's
    ///    charge (re-charging every instance of the pool).
    fn give_back(&self, instance: F::Instance, healthy: bool) {
        let inner = &self.inner;
        let now = inner.clock.now();
        let measured = match inner.limits.admission {
            crate::model::Admission::Measured { .. } if healthy => {
                inner.factory.measured_bytes(&instance)
            }
            _ => None,
        };
        let mut st = inner.state.lock();
        if st.pool(&self.key).is_none() {
            drop(st);
            inner.factory.discard(instance);
            return;
        }
        let (discard, spawn) = st
            .adjust_pool(&self.key, |p| {
                // 1.
                let current = healthy && p.generation == self.generation && !p.retired;
                if !healthy {
                    p.counters.discarded_unhealthy += 1;
                }
                // 2.
                let idle = Idle {
                    id: self.id,
                    instance,
                    since: now,
                };
                let discard = if self.provisioned {
                    p.prov_busy -= 1;
                    if current && p.prov.is_some() && p.prov_live() < p.requested() {
                        p.prov_idle.push(idle);
                        None
                    } else {
                        Some(idle.instance)
                    }
                } else {
                    p.busy -= 1;
                    if current {
                        p.idle.push_back(idle);
                        None
                    } else {
                        Some(idle.instance)
                    }
                };
                // 3.
                p.refresh_status();
                let spawn = take_needed(p).map(|n| (Arc::clone(&p.key), n));
                (discard, spawn)
            })
            .expect("pool checked above");
        if discard.is_some() {
            st.uncharge(&self.key, 1);
        }
        // 4. Admission by measured use: charge the version what its instances cost.
        if let Some(bytes) = measured {
            st.observe_cost(&self.key, self.generation, bytes, inner.limits.admission);
        }
        drop(st);
        if let Some(instance) = discard {
            tracing::debug!(fv = %self.key, id = %self.id, healthy, "discarding released instance");
            inner.factory.discard(instance);
        }
        if let Some((key, n)) = spawn {
            spawn_provisioners(inner, key, n);
        }
    }
}

impl<F: InstanceFactory> Drop for Lease<F> {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take() {
            self.give_back(instance, true);
        }
    }
}

impl<F: InstanceFactory> fmt::Debug for Lease<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("fv", &self.key)
            .field("id", &self.id)
            .field("start", &self.start)
            .field("provisioned", &self.provisioned)
            .finish_non_exhaustive()
    }
}
