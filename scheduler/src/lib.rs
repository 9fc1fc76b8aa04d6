//! thaw-scheduler: the worker manager, placement and counting service, as pure policy.
//!
//! It keeps per function-version pools of restored instances, implements provisioned concurrency
//! (restored ahead of time, IN_PROGRESS -> READY | FAILED), restores on demand when no idle
//! instance exists (spillover), evicts idle instances after a keep-warm TTL (scale to zero),
//! enforces reserved and account concurrency with Lambda's 429 reasons, and keeps live instances
//! within a host memory budget. It names no KVM, userfaultfd or RocksDB: it drives the
//! [`InstanceFactory`] trait that `worker/` implements, and reads time through a [`Clock`] so the
//! policy is unit-testable with [`FakeClock`] and [`fake::FakeFactory`].
//!
//! Layers, each depending only on those above it: `ids`, `clock`, `factory` (the trait);
//! `model/` (data types: knobs, verdicts, errors, stats); `state/` (the synchronous ledger under
//! one lock: pools, counting, placement); `scheduler/` (the async engine: leases, provisioned
//! restores, reserved concurrency, keep-warm, stats).
//!
//! Choices worth knowing:
//! - Lease order (Lambda's): a free provisioned instance, then an on-demand slot from the
//!   function's reserved concurrency or else the account's unreserved pool, then a warm idle
//!   instance or a restore. Provisioned concurrency holds its slots whether busy or idle, so a
//!   provisioned lease is never throttled and `reserved >= provisioned` is enforced at config time.
//! - A lease waiting on its restore holds its concurrency slot and its memory.
//! - A full memory budget is `LeaseError::NoCapacity`, distinct from throttles so metrics can tell
//!   them apart; `LeaseError::throttle_reason` maps it to `ConcurrentInvocationLimitExceeded` for
//!   the 429 body.
//! - One `parking_lot` mutex guards all state and is never held across an await or a factory
//!   `restore`/`discard`; a warm lease + release costs about 1 us (benches/lease.rs).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use thaw_scheduler::{fake::FakeFactory, FunctionVersion, Limits, Scheduler, SystemClock};
//! let scheduler = Scheduler::new(FakeFactory::new(64 << 20), SystemClock, Limits::default());
//! let _reaper = scheduler.spawn_reaper(std::time::Duration::from_secs(1));
//! let fv = FunctionVersion::new("hello", "1");
//! scheduler.put_provisioned(&fv, 2)?;
//! let lease = scheduler.lease(&fv).await?; // Err(LeaseError::Throttled { reason }) -> 429
//! let _instance = lease.instance(); // invoke it
//! lease.release(true); // false after a crash or timeout: discarded (and replaced if provisioned)
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod clock;
mod factory;
pub mod fake;
mod ids;
mod model;
mod scheduler;
mod state;

pub use clock::{Clock, FakeClock, SystemClock};
pub use factory::{FactoryError, InstanceFactory, RestoreKind};
pub use ids::{FunctionVersion, InstanceId};
pub use model::{
    Admission, LeaseError, Limits, PlacementError, PoolCounters, PoolStats, ProvisionedConfig,
    ProvisionedError, ProvisionedStatus, ReservedError, SchedulerStats, StartType, ThrottleReason,
};
pub use scheduler::{Lease, Scheduler, TickReport};
