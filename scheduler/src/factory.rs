//! The trait the scheduler drives to create and destroy instances. `worker/` implements it with
//! snapshot restores; tests implement it with `fake::FakeFactory`. The scheduler never
//! learns what an instance is.

use std::error::Error as StdError;
use std::future::Future;

use crate::ids::FunctionVersion;

/// Why an instance is being restored; the worker passes it to the guest as
/// `AWS_LAMBDA_INITIALIZATION_TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestoreKind {
    /// Restored for a waiting invocation (spillover).
    OnDemand,
    /// Restored ahead of time for a provisioned-concurrency pool.
    Provisioned,
}

impl RestoreKind {
    /// The value of `AWS_LAMBDA_INITIALIZATION_TYPE` for this kind.
    pub fn initialization_type(self) -> &'static str {
        match self {
            RestoreKind::OnDemand => "on-demand",
            RestoreKind::Provisioned => "provisioned-concurrency",
        }
    }
}

/// Creates and destroys instances of function versions.
///
/// Contract:
/// - `restore` may be slow (the worker runs it on `spawn_blocking`); its future must be `Send`. If the
///   future is dropped before it completes, the implementation must free whatever it created.
/// - `memory_bytes` is called with the scheduler's lock held: it must be cheap and must not call back
///   into the scheduler. Its answer for a version is cached until [`crate::Scheduler::invalidate`].
/// - `discard` is called outside the lock, possibly from a `Lease`'s `Drop` on an async thread: it
///   must not block for long (hand heavy teardown to a thread).
pub trait InstanceFactory: Send + Sync + 'static {
    /// One restored, ready-to-invoke instance (a microVM on the worker side).
    type Instance: Send + 'static;

    /// Restores one instance of `fv`.
    fn restore(
        &self,
        fv: &FunctionVersion,
        kind: RestoreKind,
    ) -> impl Future<Output = Result<Self::Instance, FactoryError>> + Send;

    /// Host memory one live instance of `fv` is charged against the scheduler's memory budget.
    fn memory_bytes(&self, fv: &FunctionVersion) -> u64;

    /// What `instance` costs the host now (its private memory), measured cheaply after an
    /// invocation; `None` when this factory cannot tell (then the version stays charged its
    /// `memory_bytes`). Called outside the scheduler's lock, on the releasing thread.
    fn measured_bytes(&self, instance: &Self::Instance) -> Option<u64> {
        let _ = instance;
        None
    }

    /// Destroys an instance the scheduler no longer wants (evicted, unhealthy, excess, stale).
    fn discard(&self, instance: Self::Instance);
}

/// A failed restore, as reported by the factory.
#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    /// The worker has no snapshot for the version.
    #[error("no snapshot for {0}")]
    UnknownVersion(FunctionVersion),
    /// Restoring failed.
    #[error("{message}")]
    Restore {
        /// What went wrong, for humans (becomes a provisioned config's `StatusReason`).
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
}

impl FactoryError {
    /// A restore failure with a message and no source.
    pub fn restore(message: impl Into<String>) -> Self {
        FactoryError::Restore {
            message: message.into(),
            source: None,
        }
    }

    /// A restore failure with a message and an underlying error.
    pub fn restore_with(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        FactoryError::Restore {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The error and its sources joined by `": "`, for a `StatusReason`.
    pub fn reason(&self) -> String {
        let mut out = self.to_string();
        let mut next = self.source();
        while let Some(err) = next {
            out.push_str(": ");
            out.push_str(&err.to_string());
            next = err.source();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_reason_joins_sources() {
        let io = std::io::Error::other("disk on fire");
        let err = FactoryError::restore_with("read memory image", io);
        assert_eq!(err.reason(), "read memory image: disk on fire");
        assert_eq!(
            RestoreKind::Provisioned.initialization_type(),
            "provisioned-concurrency"
        );
    }
}
