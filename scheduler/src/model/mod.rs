//! The scheduler's data types, and nothing that acts on them: the knobs ([`Limits`],
//! [`Admission`]), the verdicts and errors (throttles, placement, provisioned and reserved
//! concurrency, leases) and the metrics snapshot. The ledger (`state/`) and the engine
//! (`scheduler/`) both depend on this layer; it depends on neither.

mod lease;
mod limits;
mod placement;
mod provisioned;
mod stats;

pub use lease::{LeaseError, StartType};
pub use limits::{Admission, Limits, ReservedError, ThrottleReason};
pub use placement::PlacementError;
pub use provisioned::{ProvisionedConfig, ProvisionedError, ProvisionedStatus};
pub use stats::{PoolCounters, PoolStats, SchedulerStats};
