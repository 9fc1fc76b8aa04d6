//! What the service needs from the host's instances beyond the scheduler's
//! [`InstanceFactory`]: registering versions, building them, invoking a leased instance, and how a
//! fresh instance started. Implemented here for the worker's [`WorkerFactory`] (microVMs); tests
//! without KVM implement it over the scheduler's fake.
use std::future::Future;
use std::sync::Arc;
use thaw_scheduler::{FunctionVersion, InstanceFactory};
use thaw_worker::factory::{ColdStart, WorkerFactory};
use thaw_worker::{FunctionSpec, InvokeOutcome, InvokeRequest, WorkerError};

/// The service's view of a host's instances.
pub trait Backend: InstanceFactory<Instance: Sync> {
    /// Registers (or replaces) what `fv` runs.
    fn define(&self, fv: &FunctionVersion, spec: Arc<FunctionSpec>);
    /// Forgets `fv`.
    fn forget(&self, fv: &FunctionVersion);
    /// Prepares `spec` as `fv` (boots it, runs init, takes its snapshot) without registering
    /// it: until [`Backend::define`] registers it, instances come from the previous spec.
    fn build(
        &self,
        fv: &FunctionVersion,
        spec: Arc<FunctionSpec>,
    ) -> impl Future<Output = Result<ColdStart, WorkerError>> + Send;
    /// Runs one invocation; `Err` means the instance died (crash or timeout).
    fn invoke(
        &self,
        instance: &Self::Instance,
        req: InvokeRequest,
    ) -> impl Future<Output = Result<InvokeOutcome, WorkerError>> + Send;
    /// How `instance` was made.
    fn cold_start(&self, instance: &Self::Instance) -> ColdStart;
    /// The most memory `instance`'s runtime has used so far, bytes (REPORT's
    /// `Max Memory Used`).
    fn max_memory_used(&self, instance: &Self::Instance) -> u64;
    /// The host's pool of VMs reset for reuse (`/metrics`); none without one.
    fn recycle_stats(&self) -> thaw_worker::RecycleStats {
        thaw_worker::RecycleStats::default()
    }
    /// The host's working-set images (`/metrics`); none without them.
    fn image_stats(&self) -> thaw_worker::ImageStats {
        thaw_worker::ImageStats::default()
    }
}

impl Backend for WorkerFactory {
    fn define(&self, fv: &FunctionVersion, spec: Arc<FunctionSpec>) {
        WorkerFactory::define(self, fv, spec)
    }

    fn forget(&self, fv: &FunctionVersion) {
        WorkerFactory::forget(self, fv)
    }

    fn build(
        &self,
        fv: &FunctionVersion,
        spec: Arc<FunctionSpec>,
    ) -> impl Future<Output = Result<ColdStart, WorkerError>> + Send {
        WorkerFactory::build(self, fv, spec)
    }

    fn invoke(
        &self,
        instance: &Self::Instance,
        req: InvokeRequest,
    ) -> impl Future<Output = Result<InvokeOutcome, WorkerError>> + Send {
        WorkerFactory::invoke(self, instance, req)
    }

    fn cold_start(&self, instance: &Self::Instance) -> ColdStart {
        instance.cold_start()
    }

    fn max_memory_used(&self, instance: &Self::Instance) -> u64 {
        instance.max_memory_used()
    }

    fn recycle_stats(&self) -> thaw_worker::RecycleStats {
        self.worker().recycle_stats()
    }

    fn image_stats(&self) -> thaw_worker::ImageStats {
        self.worker().image_stats()
    }
}
