//! The worker's side of the scheduler: [`WorkerFactory`] implements
//! `thaw_scheduler::InstanceFactory` over this host's microVMs. It keeps the spec of every
//! function version the frontend registered, makes instances of them on blocking threads,
//! invokes them, and tears them down off the async threads.
//!
//! [`WorkerFactory::build`] boots a version once, runs its init and snapshots it; every
//! instance is then made by [`WorkerFactory::make_instance`], which restores that snapshot in
//! the configured memory mode (rebuilding it from a cold boot if it turns out corrupt).
use crate::error::WorkerError;
use crate::host::{StartTimings, Worker};
use crate::instance::{FunctionSpec, Instance, InvokeOutcome, InvokeRequest, Progress};
use crate::restore::MemoryMode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use thaw_scheduler::{FactoryError, FunctionVersion, InstanceFactory, RestoreKind};

/// Host memory charged per instance on top of its guest RAM (VMM structures, page tables, the
/// vCPU thread): an estimate.
pub const DEFAULT_OVERHEAD_BYTES: u64 = 16 << 20;

/// Host memory a lazily restored instance costs besides the guest pages its pager
/// installed (KVM's VM and vCPU structures, shadow page tables, the pager thread, the
/// VMM's buffers): measured with `thaw bench --scenario density` (docs/PERFORMANCE.md).
pub const MEASURED_OVERHEAD_BYTES: u64 = 2 << 20;

/// How long an invocation runs in place on an async worker thread before it is moved to
/// a blocking thread (see [`WorkerFactory::invoke`]).
pub const DEFAULT_INLINE_SLICE: Duration = Duration::from_micros(500);

/// How a fresh instance came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartKind {
    /// Booted cold: runtime init and function init ran.
    Boot,
    /// Restored from a snapshot taken after init.
    Restore,
}

impl StartKind {
    /// `boot` or `restore` (the metrics' start-type label).
    pub fn as_str(self) -> &'static str {
        match self {
            StartKind::Boot => "boot",
            StartKind::Restore => "restore",
        }
    }
}

/// What making an instance cost: reported once, on the instance's first (cold) invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdStart {
    /// Boot or restore.
    pub kind: StartKind,
    /// Wall time to a ready instance (`Init Duration` or `Restore Duration`).
    pub duration: Duration,
}

/// One live instance, shareable with the blocking thread that runs an invocation.
#[derive(Debug)]
pub struct WorkerInstance {
    vm: Arc<Mutex<Instance>>,
    cold: ColdStart,
    /// Releases so far (measurements are taken at the 1st, 2nd, 4th, 8th, ...).
    releases: std::sync::atomic::AtomicU64,
}

impl WorkerInstance {
    /// How this instance was made.
    pub fn cold_start(&self) -> ColdStart {
        self.cold
    }

    /// The most memory its runtime has used so far, bytes (see
    /// `InvokeOutcome::max_memory_used`); known for a crashed instance too.
    pub fn max_memory_used(&self) -> u64 {
        self.vm
            .lock()
            .map_or(0, |instance| instance.vm().guest_memory_peak())
    }
}

/// A version's specs, one per `AWS_LAMBDA_INITIALIZATION_TYPE`.
#[derive(Debug)]
struct Specs {
    on_demand: Arc<FunctionSpec>,
    provisioned: Arc<FunctionSpec>,
}

/// Makes, invokes and discards instances of registered function versions.
#[derive(Debug)]
pub struct WorkerFactory {
    worker: Worker,
    mode: MemoryMode,
    /// The mode of provisioned-concurrency restores.
    provisioned_mode: MemoryMode,
    specs: RwLock<HashMap<FunctionVersion, Specs>>,
    overhead_bytes: u64,
    inline_slice: Duration,
}

impl WorkerFactory {
    /// The worker this factory makes instances with.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// A factory restoring snapshots from `worker`'s store in `mode`, charging
    /// `overhead_bytes` per instance besides guest RAM.
    pub fn new(worker: Worker, mode: MemoryMode, overhead_bytes: u64) -> Self {
        Self {
            worker,
            mode,
            provisioned_mode: mode,
            specs: RwLock::new(HashMap::new()),
            overhead_bytes,
            inline_slice: DEFAULT_INLINE_SLICE,
        }
    }

    /// Restores provisioned-concurrency instances in `mode` (by default the factory's
    /// mode): `shared` packs idle provisioned instances densest (docs/MEMORY.md).
    pub fn with_provisioned_mode(mut self, mode: MemoryMode) -> Self {
        self.provisioned_mode = mode;
        self
    }

    /// Sets how long an invocation may run in place on an async worker thread before
    /// it moves to a blocking thread; zero always moves it.
    pub fn with_inline_slice(mut self, slice: Duration) -> Self {
        self.inline_slice = slice;
        self
    }

    /// Registers (or replaces) what `fv` runs. Instances already made keep their old spec; the
    /// caller invalidates the scheduler's pool when it replaces one.
    pub fn define(&self, fv: &FunctionVersion, spec: Arc<FunctionSpec>) {
        let specs = Specs {
            on_demand: Self::spec_for(fv, &spec, RestoreKind::OnDemand),
            provisioned: Self::spec_for(fv, &spec, RestoreKind::Provisioned),
        };
        self.specs
            .write()
            .expect("spec map poisoned")
            .insert(fv.clone(), specs);
    }

    /// Forgets `fv` (its function or version was deleted).
    pub fn forget(&self, fv: &FunctionVersion) {
        self.specs.write().expect("spec map poisoned").remove(fv);
    }

    /// `spec` as `fv`'s instances of `kind` run it.
    fn spec_for(fv: &FunctionVersion, spec: &FunctionSpec, kind: RestoreKind) -> Arc<FunctionSpec> {
        let mut s = spec.clone();
        s.version = fv.version.clone();
        s.initialization_type = kind.initialization_type().to_string();
        Arc::new(s)
    }

    fn spec(&self, fv: &FunctionVersion, kind: RestoreKind) -> Option<Arc<FunctionSpec>> {
        let specs = self.specs.read().expect("spec map poisoned");
        let s = specs.get(fv)?;
        Some(Arc::clone(match kind {
            RestoreKind::OnDemand => &s.on_demand,
            RestoreKind::Provisioned => &s.provisioned,
        }))
    }

    /// Prepares `spec` as `fv` for fast starts and proves its init works: boot -> init ->
    /// snapshot into the store (it becomes the current snapshot of `spec`'s configuration).
    /// Does not register it: instances keep coming from the spec [`WorkerFactory::define`]
    /// registered until the caller defines this one. Returns the boot's cost.
    pub async fn build(
        &self,
        fv: &FunctionVersion,
        spec: Arc<FunctionSpec>,
    ) -> Result<ColdStart, WorkerError> {
        let spec = Self::spec_for(fv, &spec, RestoreKind::OnDemand);
        let worker = self.worker.clone();
        let (_id, timings) = tokio::task::spawn_blocking(move || worker.snapshot(&spec))
            .await
            .map_err(|e| WorkerError::Crashed {
                message: format!("build thread failed: {e}"),
                log: Vec::new(),
            })??;
        Ok(ColdStart {
            kind: StartKind::Boot,
            duration: timings.boot.total,
        })
    }

    /// The one place an instance of a version is made (blocking): a restore of the
    /// version's snapshot (`boot` mode boots cold instead).
    fn make_instance(
        worker: &Worker,
        spec: Arc<FunctionSpec>,
        mode: MemoryMode,
    ) -> Result<(Instance, ColdStart), WorkerError> {
        let t0 = Instant::now();
        let (instance, start) = worker.restore_or_rebuild(&spec, mode)?;
        let kind = match start {
            StartTimings::Boot(_) => StartKind::Boot,
            StartTimings::Restore(_) => StartKind::Restore,
        };
        Ok((
            instance,
            ColdStart {
                kind,
                duration: t0.elapsed(),
            },
        ))
    }

    /// Runs one invocation. `Err` means the instance is dead (crashed or timed out):
    /// release its lease as unhealthy.
    ///
    /// On a multi-threaded runtime the invocation first runs right here, on the async
    /// worker thread, for the inline slice: a warm invocation of a small handler ends
    /// well inside it and its response goes straight back out on this thread, with no
    /// hand-off between threads (measured: ~50 us of a ~200 us gRPC round trip). One
    /// that needs longer is moved off with `block_in_place` (the runtime gives this
    /// thread's other work to another thread) and finished there. Elsewhere (a
    /// current-thread runtime), a blocking thread runs it.
    ///
    /// The first invocation of a freshly restored instance never runs inline: it is
    /// the one that faults in memory the pager has not installed yet, and a guest
    /// fault must not hold an async thread (the threads that serve HTTP, `/health`
    /// and signals) while the pager reads and installs a block. Warm instances fault
    /// rarely, and the pager serves every fault promptly (a small-page fallback when
    /// no huge page is free, never an endless wait).
    pub async fn invoke(
        &self,
        instance: &WorkerInstance,
        req: InvokeRequest,
    ) -> Result<InvokeOutcome, WorkerError> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            let mut vm = instance.vm.lock().map_err(|_| WorkerError::NotReady)?;
            if self.inline_slice.is_zero() || vm.is_fresh() {
                return tokio::task::block_in_place(|| vm.invoke(&req));
            }
            return match vm.invoke_sliced(&req, self.inline_slice)? {
                Progress::Done(outcome) => Ok(outcome),
                Progress::Yielded(running) => tokio::task::block_in_place(|| vm.resume(running)),
            };
        }
        let vm = Arc::clone(&instance.vm);
        let run = move || vm.lock().map_err(|_| WorkerError::NotReady)?.invoke(&req);
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| WorkerError::Crashed {
                message: format!("invoke thread failed: {e}"),
                log: Vec::new(),
            })?
    }
}

/// Ends an instance on a blocking thread (unmapping guest RAM can take milliseconds):
/// [`Worker::retire`] keeps its VM for reuse when it can be reset, else tears it down.
fn retire_off_thread(worker: &Worker, instance: Instance) {
    let worker = worker.clone();
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || worker.retire(instance));
        }
        Err(_) => worker.retire(instance),
    }
}

impl InstanceFactory for WorkerFactory {
    type Instance = WorkerInstance;

    async fn restore(
        &self,
        fv: &FunctionVersion,
        kind: RestoreKind,
    ) -> Result<WorkerInstance, FactoryError> {
        let spec = self
            .spec(fv, kind)
            .ok_or_else(|| FactoryError::UnknownVersion(fv.clone()))?;
        let mode = match kind {
            RestoreKind::Provisioned => self.provisioned_mode,
            RestoreKind::OnDemand => self.mode,
        };
        let worker = self.worker.clone();
        // If this future is dropped, the blocking task still finishes and drops its instance.
        let made = tokio::task::spawn_blocking(move || Self::make_instance(&worker, spec, mode))
            .await
            .map_err(|e| FactoryError::restore_with("instance thread failed", e))?;
        match made {
            Ok((instance, cold)) => Ok(WorkerInstance {
                vm: Arc::new(Mutex::new(instance)),
                cold,
                releases: std::sync::atomic::AtomicU64::new(0),
            }),
            Err(e) => {
                let message = match &e {
                    WorkerError::InitFailed { body, .. } => {
                        format!("function init failed: {}", String::from_utf8_lossy(body))
                    }
                    other => format!(
                        "starting an instance failed: {}",
                        crate::error::error_chain(other)
                    ),
                };
                Err(FactoryError::restore(message))
            }
        }
    }

    fn memory_bytes(&self, fv: &FunctionVersion) -> u64 {
        let specs = self.specs.read().expect("spec map poisoned");
        let memory_mb = specs.get(fv).map_or(512, |s| s.on_demand.memory_mb);
        (u64::from(memory_mb) << 20) + self.overhead_bytes
    }

    /// A lazily restored instance's private memory plus the VMM overhead: in the uffd
    /// modes what its pager installed (the shared module image is not its own); in
    /// `shared` mode its copy-on-write copies of the shared image (read off the page
    /// tables). Taken at the 1st, 2nd, 4th, 8th, ... release, so a growing instance is
    /// re-measured while the warm path stays cheap. `eager`/`mmap` instances are not
    /// measured (charged their MemorySize).
    fn measured_bytes(&self, instance: &WorkerInstance) -> Option<u64> {
        let n = instance
            .releases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if !n.is_power_of_two() {
            return None;
        }
        let vm = instance.vm.try_lock().ok()?;
        let private = match vm.lazy_mode()? {
            MemoryMode::Shared => vm.private_bytes()?,
            _ => vm.pager_stats()?.bytes_installed,
        };
        Some(private + MEASURED_OVERHEAD_BYTES)
    }

    fn discard(&self, instance: WorkerInstance) {
        // If an invocation thread still holds it (its future was dropped), that thread frees it.
        if let Ok(vm) = Arc::try_unwrap(instance.vm) {
            retire_off_thread(
                &self.worker,
                vm.into_inner().unwrap_or_else(|p| p.into_inner()),
            );
        }
    }
}
