//! Starting the service over a registry a previous process may have left ([`Service::start`]):
//! 1. open the registry and build the scheduler (`Service::open`); start the reaper;
//! 2. re-register every active version and rebuild the ones a restart interrupted (`Pending`,
//!    or an update `InProgress`);
//! 3. re-apply reserved and provisioned concurrency;
//! 4. load the stored async events and start the executor with them.
use crate::async_queue;
use crate::backend::Backend;
use crate::config::Config;
use crate::registry::{FunctionState, UpdateStatus};
use crate::service::{Service, ServiceError};
use std::sync::Arc;
use std::time::Duration;
use thaw_snapshotter::KvStore;
use tokio::task::JoinHandle;

impl<B: Backend> Service<B> {
    /// Opens the registry in `kv`, builds the scheduler over `backend`, re-registers every
    /// version, restarts interrupted builds, re-applies reserved and provisioned concurrency, and
    /// starts the async executor with the queued events (its task is returned; it ends after
    /// [`Service::stop`]). Must run inside a tokio runtime.
    pub fn start(
        config: Config,
        backend: B,
        kv: Arc<dyn KvStore>,
    ) -> Result<(Arc<Self>, JoinHandle<()>), ServiceError> {
        let (svc, rx) = Self::open(config, backend, kv)?;
        let _reaper = svc.scheduler.spawn_reaper(Duration::from_secs(1));
        for cfg in svc.registry.all_versions() {
            let interrupted = cfg.state == FunctionState::Pending
                || cfg.last_update_status == UpdateStatus::InProgress;
            let serving = cfg.serving();
            if serving.state == FunctionState::Active {
                if let Err(e) = svc.define(serving) {
                    tracing::error!(function = %cfg.name, version = %cfg.version, error = %e, "cannot register version");
                }
            }
            if interrupted {
                svc.spawn_build(cfg);
            }
        }
        for (name, n) in svc.registry.all_reserved() {
            if let Err(e) = svc.scheduler.put_reserved(&name, n) {
                tracing::error!(function = %name, error = %e, "cannot re-apply reserved concurrency");
            }
        }
        for rec in svc.registry.all_provisioned() {
            let fv =
                thaw_scheduler::FunctionVersion::new(rec.function.clone(), rec.version.clone());
            match svc.scheduler.put_provisioned(&fv, rec.requested) {
                Ok(_) => {
                    tracing::info!(fv = %fv, n = rec.requested, "re-applied provisioned concurrency")
                }
                Err(e) => {
                    tracing::error!(fv = %fv, error = %e, "cannot re-apply provisioned concurrency")
                }
            }
        }
        let backlog = svc.registry.load_events()?;
        svc.events_resumed(backlog.len());
        if !backlog.is_empty() {
            tracing::info!(events = backlog.len(), "resuming queued async events");
        }
        let executor = async_queue::spawn_executor(Arc::clone(&svc), rx, backlog);
        Ok((svc, executor))
    }
}
