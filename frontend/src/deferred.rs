//! A [`WorkerFactory`] that is still being made, so `thaw serve` listens at once: the worker's
//! first start on an empty data directory compiles CPython (~15-30 s), and the API answers
//! meanwhile (functions stay `Pending` until their build can run; `/health` is up).
//!
//! 1. [`DeferredFactory::new`] starts a thread that makes the factory (opening the worker
//!    compiles or loads the runtime), showing a spinner on a terminal and logging progress
//!    every few seconds otherwise.
//! 2. Until it is ready, `define`/`forget` are recorded; builds and restores wait for it.
//! 3. When it is ready, the recorded specs are registered (under the same lock `define`
//!    takes, so none is lost) and the waiters go on. If making it failed, every wait fails
//!    with the reason (builds go `Failed`, the service keeps answering).
use crate::backend::Backend;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use thaw_scheduler::{FactoryError, FunctionVersion, InstanceFactory, RestoreKind};
use thaw_worker::factory::{ColdStart, WorkerFactory, WorkerInstance};
use thaw_worker::{FunctionSpec, InvokeOutcome, InvokeRequest, WorkerError};
use tokio::sync::watch;

/// How often progress is logged while the runtime loads (without a terminal).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Inner {
    factory: OnceLock<Result<WorkerFactory, String>>,
    /// Specs defined before the factory was ready (replayed into it, then unused).
    pending: Mutex<HashMap<FunctionVersion, Arc<FunctionSpec>>>,
    ready: watch::Sender<bool>,
    overhead_bytes: u64,
}

/// The worker's factory, available once made (see the module doc).
#[derive(Debug, Clone)]
pub struct DeferredFactory {
    inner: Arc<Inner>,
}

impl DeferredFactory {
    /// Makes the factory with `make` on a thread, describing the wait as `what`;
    /// `overhead_bytes` is what `make` will charge per instance besides guest RAM.
    pub fn new(
        what: &'static str,
        overhead_bytes: u64,
        make: impl FnOnce() -> Result<WorkerFactory, String> + Send + 'static,
    ) -> Self {
        let inner = Arc::new(Inner {
            factory: OnceLock::new(),
            pending: Mutex::new(HashMap::new()),
            ready: watch::channel(false).0,
            overhead_bytes,
        });
        let this = Self { inner };
        let worker = this.clone();
        std::thread::Builder::new()
            .name("thaw-runtime-load".into())
            .spawn(move || worker.make(what, make))
            .expect("spawning the runtime loader thread");
        this
    }

    fn make(&self, what: &str, make: impl FnOnce() -> Result<WorkerFactory, String>) {
        // 1.
        let t0 = Instant::now();
        tracing::info!("{what}");
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let spinner = tty.then(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            {
                pb.set_style(style);
            }
            pb.set_message(what.to_string());
            pb.enable_steady_tick(Duration::from_millis(100));
            pb
        });
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        if !tty {
            let what = what.to_string();
            std::thread::spawn(move || {
                // Until `done_tx` is dropped (Disconnected ends the loop).
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    done_rx.recv_timeout(PROGRESS_EVERY)
                {
                    tracing::info!(elapsed_s = t0.elapsed().as_secs(), "still {what}");
                }
            });
        }
        let made = make();
        drop(done_tx);
        if let Some(pb) = spinner {
            pb.finish_and_clear();
        }
        // 3.
        let mut pending = self.inner.pending.lock();
        match &made {
            Ok(f) => {
                for (fv, spec) in pending.drain() {
                    f.define(&fv, spec);
                }
                tracing::info!(ms = t0.elapsed().as_millis() as u64, "runtime ready");
            }
            Err(e) => tracing::error!(error = %e, "the runtime could not be loaded"),
        }
        let _ = self.inner.factory.set(made);
        drop(pending);
        self.inner.ready.send_replace(true);
    }

    /// The factory if it is made.
    fn get(&self) -> Option<&WorkerFactory> {
        self.inner.factory.get()?.as_ref().ok()
    }

    /// Waits until the factory is made; its failure as the error.
    async fn wait(&self) -> Result<&WorkerFactory, String> {
        let mut rx = self.inner.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
        match self.inner.factory.get() {
            Some(Ok(f)) => Ok(f),
            Some(Err(e)) => Err(e.clone()),
            None => Err("the runtime loader stopped".into()),
        }
    }

    /// Whether the factory is made (and working).
    pub fn is_ready(&self) -> bool {
        self.get().is_some()
    }
}

impl InstanceFactory for DeferredFactory {
    type Instance = WorkerInstance;

    async fn restore(
        &self,
        fv: &FunctionVersion,
        kind: RestoreKind,
    ) -> Result<WorkerInstance, FactoryError> {
        let f = self.wait().await.map_err(FactoryError::restore)?;
        f.restore(fv, kind).await
    }

    fn memory_bytes(&self, fv: &FunctionVersion) -> u64 {
        if let Some(f) = self.get() {
            return f.memory_bytes(fv);
        }
        let memory_mb = self
            .inner
            .pending
            .lock()
            .get(fv)
            .map_or(512, |s| s.memory_mb);
        (u64::from(memory_mb) << 20) + self.inner.overhead_bytes
    }

    fn measured_bytes(&self, instance: &WorkerInstance) -> Option<u64> {
        self.get()?.measured_bytes(instance)
    }

    fn discard(&self, instance: WorkerInstance) {
        if let Some(f) = self.get() {
            f.discard(instance);
        }
    }
}

impl Backend for DeferredFactory {
    fn define(&self, fv: &FunctionVersion, spec: Arc<FunctionSpec>) {
        // 2. (the loader replays `pending` under this lock)
        let mut pending = self.inner.pending.lock();
        match self.get() {
            Some(f) => f.define(fv, spec),
            None => {
                pending.insert(fv.clone(), spec);
            }
        }
    }

    fn forget(&self, fv: &FunctionVersion) {
        let mut pending = self.inner.pending.lock();
        pending.remove(fv);
        if let Some(f) = self.get() {
            f.forget(fv);
        }
    }

    async fn build(
        &self,
        fv: &FunctionVersion,
        spec: Arc<FunctionSpec>,
    ) -> Result<ColdStart, WorkerError> {
        let f = self.wait().await.map_err(|message| WorkerError::Crashed {
            message,
            log: Vec::new(),
        })?;
        f.build(fv, spec).await
    }

    async fn invoke(
        &self,
        instance: &WorkerInstance,
        req: InvokeRequest,
    ) -> Result<InvokeOutcome, WorkerError> {
        // An instance exists only once the factory does.
        let f = self.get().ok_or(WorkerError::NotReady)?;
        f.invoke(instance, req).await
    }

    fn cold_start(&self, instance: &WorkerInstance) -> ColdStart {
        instance.cold_start()
    }

    fn max_memory_used(&self, instance: &WorkerInstance) -> u64 {
        instance.max_memory_used()
    }

    fn recycle_stats(&self) -> thaw_worker::RecycleStats {
        self.get()
            .map(|f| f.worker().recycle_stats())
            .unwrap_or_default()
    }

    fn image_stats(&self) -> thaw_worker::ImageStats {
        self.get()
            .map(|f| f.worker().image_stats())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_a_runtime_that_cannot_load_fails_builds_and_restores_with_the_reason() {
        let f = DeferredFactory::new("loading nothing", 1 << 20, || {
            Err("no CPython at /nowhere".to_string())
        });
        let fv = FunctionVersion::new("f", "$LATEST");
        let mut spec = FunctionSpec::new("f", "app.handler", thaw_worker::FunctionCode::default());
        spec.memory_mb = 256;
        let spec = Arc::new(spec);
        // Defining before (or while) the loader runs records the spec: its memory is known.
        f.define(&fv, Arc::clone(&spec));
        assert_eq!(f.memory_bytes(&fv), (256 << 20) + (1 << 20));
        let err = f.build(&fv, spec).await.unwrap_err();
        assert!(
            format!("{err:?}").contains("no CPython at /nowhere"),
            "{err:?}"
        );
        let err = f.restore(&fv, RestoreKind::OnDemand).await.unwrap_err();
        assert!(err.to_string().contains("no CPython at /nowhere"), "{err}");
        assert!(!f.is_ready());
        // Still usable for bookkeeping after the failure.
        f.forget(&fv);
        assert_eq!(f.memory_bytes(&fv), (512 << 20) + (1 << 20));
    }
}
