//! One function version's pool (idle, busy and restoring instances, on-demand and provisioned) and the
//! per-function state that groups a function's pools under its reserved concurrency.
//!
//! Concurrency a pool uses (what the counting service charges):
//! `busy + restoring` on-demand leases (a lease waiting on its restore counts) plus the provisioned
//! slots, `max(requested, provisioned live + restoring)`: provisioned concurrency holds its slots
//! whether its instances are busy or idle, as in Lambda, so leasing a provisioned instance never
//! changes usage and is never throttled.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::ids::{FunctionVersion, InstanceId};
use crate::model::{PoolCounters, ProvisionedConfig, ProvisionedStatus};

/// An idle instance and when it became idle.
pub(crate) struct Idle<I> {
    pub id: InstanceId,
    pub instance: I,
    pub since: Instant,
}

/// A provisioned-concurrency config as stored.
pub(crate) struct ProvState {
    pub requested: u32,
    pub status: ProvisionedStatus,
    pub reason: Option<String>,
    pub last_modified: SystemTime,
}

/// Measurements a pool's charge is the maximum of (see [`Pool::measured`]).
pub(crate) const RECENT_MEASUREMENTS: usize = 16;

pub(crate) struct Pool<I> {
    pub key: Arc<FunctionVersion>,
    /// What each instance is charged now (`Limits::admission` over `declared` and
    /// `measured`).
    pub cost: u64,
    /// `factory.memory_bytes(key)`, cached at creation and on invalidate.
    pub declared: u64,
    /// The most an instance of this generation was measured to cost lately: the largest
    /// of the last [`RECENT_MEASUREMENTS`] measurements (0: not yet). Recent rather than
    /// all-time, so the first instances of a version (which page in what later ones map
    /// from shared images) do not set its charge for good.
    pub measured: u64,
    /// The last measurements, newest last.
    pub recent: VecDeque<u64>,
    /// Instances charged `cost` against the memory budget now (live ones and restores
    /// that reserved their memory; not provisioners still waiting for room).
    pub charged: u32,
    /// Bumped by invalidate: leases and restores from an older generation are discarded.
    pub generation: u64,
    /// Idle on-demand instances, oldest first (lease takes the newest, eviction the oldest).
    pub idle: VecDeque<Idle<I>>,
    pub busy: u32,
    pub restoring: u32,
    pub prov: Option<ProvState>,
    pub prov_idle: Vec<Idle<I>>,
    pub prov_busy: u32,
    pub prov_restoring: u32,
    /// Set when the function was removed; the pool is dropped once nothing references it.
    pub retired: bool,
    pub counters: PoolCounters,
}

impl<I> Pool<I> {
    pub fn new(key: FunctionVersion, cost: u64) -> Self {
        Self {
            key: Arc::new(key),
            cost,
            declared: cost,
            measured: 0,
            recent: VecDeque::new(),
            charged: 0,
            generation: 0,
            idle: VecDeque::new(),
            busy: 0,
            restoring: 0,
            prov: None,
            prov_idle: Vec::new(),
            prov_busy: 0,
            prov_restoring: 0,
            retired: false,
            counters: PoolCounters::default(),
        }
    }

    pub fn requested(&self) -> u32 {
        self.prov.as_ref().map_or(0, |p| p.requested)
    }

    /// Provisioned instances that exist (idle or busy): Lambda's "allocated".
    pub fn prov_live(&self) -> u32 {
        self.prov_idle.len() as u32 + self.prov_busy
    }

    pub fn prov_slots(&self) -> u32 {
        self.requested().max(self.prov_live() + self.prov_restoring)
    }

    /// Concurrency this pool is charged (see the module docs).
    pub fn usage(&self) -> u32 {
        self.busy + self.restoring + self.prov_slots()
    }

    /// Live and restoring instances (restoring counts provisioners still waiting for
    /// memory; [`Pool::charged`] counts what the budget is charged for).
    pub fn instances(&self) -> u32 {
        self.idle.len() as u32 + self.busy + self.restoring + self.prov_live() + self.prov_restoring
    }

    /// How many provisioned restores to start now; none once the config has FAILED.
    pub fn prov_needed(&self) -> u32 {
        match &self.prov {
            Some(p) if p.status != ProvisionedStatus::Failed => p
                .requested
                .saturating_sub(self.prov_live() + self.prov_restoring),
            _ => 0,
        }
    }

    /// IN_PROGRESS while fewer than requested exist, READY when all do; FAILED sticks until the next
    /// put.
    pub fn refresh_status(&mut self) {
        let live = self.prov_live();
        if let Some(p) = &mut self.prov {
            if p.status != ProvisionedStatus::Failed {
                p.status = if live >= p.requested {
                    ProvisionedStatus::Ready
                } else {
                    ProvisionedStatus::InProgress
                };
            }
        }
    }

    pub fn fail(&mut self, reason: String) {
        if let Some(p) = &mut self.prov {
            p.status = ProvisionedStatus::Failed;
            p.reason = Some(reason);
        }
    }

    pub fn config(&self) -> Option<ProvisionedConfig> {
        self.prov.as_ref().map(|p| ProvisionedConfig {
            requested: p.requested,
            allocated: self.prov_live(),
            available: self.prov_idle.len() as u32,
            status: p.status,
            status_reason: p.reason.clone(),
            last_modified: p.last_modified,
        })
    }

    /// Nothing lives, nothing is in flight, nothing is configured.
    pub fn is_unused(&self) -> bool {
        self.instances() == 0 && self.prov.is_none()
    }
}

/// A function's pools and its reserved concurrency.
pub(crate) struct FunctionState<I> {
    pub reserved: Option<u32>,
    pub versions: HashMap<String, Pool<I>>,
}

impl<I> FunctionState<I> {
    pub fn new() -> Self {
        Self {
            reserved: None,
            versions: HashMap::new(),
        }
    }

    pub fn usage(&self) -> u32 {
        self.versions.values().map(Pool::usage).sum()
    }

    pub fn provisioned_requested(&self) -> u32 {
        self.versions.values().map(Pool::requested).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool<u32> {
        Pool::new(FunctionVersion::new("f", "1"), 10)
    }

    #[test]
    fn test_provisioned_slots_are_charged_whether_busy_or_idle() {
        let mut p = pool();
        p.prov = Some(ProvState {
            requested: 3,
            status: ProvisionedStatus::InProgress,
            reason: None,
            last_modified: SystemTime::UNIX_EPOCH,
        });
        assert_eq!(p.usage(), 3);
        assert_eq!(p.prov_needed(), 3);
        p.prov_restoring = 3;
        assert_eq!((p.usage(), p.prov_needed()), (3, 0));
        p.prov_restoring = 0;
        p.prov_busy = 3;
        p.busy = 2;
        assert_eq!(p.usage(), 5);
        p.refresh_status();
        assert_eq!(p.config().unwrap().status, ProvisionedStatus::Ready);
        // Lowering the request leaves busy extras charged until they are released.
        p.prov.as_mut().unwrap().requested = 1;
        assert_eq!(p.usage(), 5);
    }

    #[test]
    fn test_failed_is_sticky_and_stops_restores() {
        let mut p = pool();
        p.prov = Some(ProvState {
            requested: 2,
            status: ProvisionedStatus::InProgress,
            reason: None,
            last_modified: SystemTime::UNIX_EPOCH,
        });
        p.fail("boom".into());
        p.refresh_status();
        assert_eq!(p.prov_needed(), 0);
        assert_eq!(p.config().unwrap().status_reason.as_deref(), Some("boom"));
    }
}
