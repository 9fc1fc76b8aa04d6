//! thaw's worker: the instances of one host. It builds a function's instance (boot
//! the microVM, load the runtime and code, run init), invokes it, and tears it
//! down; it is the only crate that joins the VMM with the pager and the snapshot
//! store.
#![forbid(unsafe_code)]
pub mod compile;
pub mod error;
pub mod factory;
pub mod function;
pub mod host;
pub mod instance;
pub mod net;
pub mod restore;
pub mod runtime;
pub mod snapshot;
pub mod spec;
pub mod state;

pub use error::WorkerError;
pub use function::FunctionCode;
pub use host::{DataDir, StartTimings, Worker};
pub use instance::{BootTimings, Instance, InvokeOutcome, InvokeRequest, Progress, Running};
pub use restore::recycle::RecycleStats;
pub use restore::wsimage::ImageStats;
pub use restore::MemoryMode;
pub use runtime::Runtime;
pub use spec::FunctionSpec;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
