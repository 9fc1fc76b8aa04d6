//! `Worker`: one host's view of a runtime, a snapshot store and local caches, with
//! the high-level operations the CLI, the service and the benchmarks use.
use crate::error::WorkerError;
use crate::instance::{BootTimings, Instance};
use crate::restore::{open_snapshot, restore, MemoryMode, OpenedSnapshot, RestoreTimings};
use crate::runtime::Runtime;
use crate::snapshot::{take_snapshot, SnapshotTimings};
use crate::spec::FunctionSpec;
use crate::state::function_key;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use thaw_snapshotter::{SnapshotId, Store};

/// Decompressed chunks kept in memory: a CPython working set is ~30 chunks of 2 MiB.
pub const CHUNK_CACHE_BYTES: usize = 256 << 20;

/// Layout of the data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// Precompiled modules.
    pub fn module_cache(&self) -> PathBuf {
        self.root.join("cache/modules")
    }
    /// Decompressed memory files for the `mmap` mode.
    pub fn images(&self) -> PathBuf {
        self.root.join("cache/images")
    }
    /// The snapshot store (chunks + RocksDB index).
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }
}

/// A host's runtime, store and caches.
#[derive(Debug, Clone)]
pub struct Worker {
    runtime: Arc<Runtime>,
    store: Store,
    data: DataDir,
    lazy: Arc<crate::restore::LazyCaches>,
    /// Egress policy and TLS roots for instances whose spec names none.
    net: thaw_net::NetContext,
}

/// How an instance came to be.
#[derive(Debug, Clone, serde::Serialize)]
pub enum StartTimings {
    Boot(BootTimings),
    Restore(RestoreTimings),
}

impl Worker {
    /// Opens the store under `data` and loads the python runtime from `runtime_dir`.
    pub fn open(data: DataDir, runtime_dir: &Path) -> Result<Self, WorkerError> {
        let cache = data.module_cache();
        Self::open_with_cache(data, runtime_dir, &cache)
    }

    /// Like `open`, with the precompiled-module cache somewhere else.
    pub fn open_with_cache(
        data: DataDir,
        runtime_dir: &Path,
        module_cache: &Path,
    ) -> Result<Self, WorkerError> {
        let runtime = Arc::new(Runtime::python(runtime_dir, module_cache)?);
        // Decompressed chunks stay cached for the lazy modes' repeated restores.
        let opts = thaw_snapshotter::StoreOptions {
            cache_bytes: CHUNK_CACHE_BYTES,
            ..Default::default()
        };
        let store = Store::open_with_options(&data.store(), opts).map_err(WorkerError::Store)?;
        let runtime2 = runtime.clone();
        Ok(Self {
            runtime,
            store,
            data,
            lazy: Arc::new(lazy_caches(&runtime2)),
            net: crate::net::deny_all(),
        })
    }

    /// Assembles a worker from parts (tests share one runtime; failure injection
    /// passes a store opened with a fail point).
    pub fn from_parts(runtime: Arc<Runtime>, store: Store, data: DataDir) -> Self {
        let runtime2 = runtime.clone();
        Self {
            runtime,
            store,
            data,
            lazy: Arc::new(lazy_caches(&runtime2)),
            net: crate::net::deny_all(),
        }
    }

    /// A handle sharing this worker's runtime-wide state (the store, the module
    /// image, the pool of VM shells) but none of its per-snapshot state (shared
    /// clone images, cached working sets): a restore through it sees a snapshot
    /// as a running service does once that snapshot's data left every cache.
    pub fn without_snapshot_caches(&self) -> Worker {
        let lazy = crate::restore::LazyCaches {
            modules: self.lazy.modules.clone(),
            shells: self.lazy.shells.clone(),
            module_region: self.lazy.module_region,
            ..Default::default()
        };
        lazy.recycled.set_enabled(self.lazy.recycled.enabled());
        lazy.ws_images.set_enabled(false);
        Self {
            runtime: self.runtime.clone(),
            store: self.store.clone(),
            data: self.data.clone(),
            lazy: Arc::new(lazy),
            net: self.net.clone(),
        }
    }

    /// Ends an instance: a lazily restored one parked between invocations goes to the
    /// pool of VMs reset for reuse by the next restore of its snapshot
    /// ([`crate::restore::recycle`]; reset on the pool's own thread), any other is
    /// torn down here.
    pub fn retire(&self, instance: Instance) {
        // With reuse off, `put` drops it.
        if let Some((key, vm)) = instance.into_reusable() {
            self.lazy.recycled.put(key, vm);
        }
    }

    /// Turns the reuse of retired instances' VMs on (the default) or off.
    pub fn set_recycling(&self, on: bool) {
        self.lazy.recycled.set_enabled(on);
    }

    /// Waits (at most `timeout`) until every retired VM handed to the reuse pool is
    /// reset (benchmarks and tests; a service never waits for it).
    pub fn wait_recycled(&self, timeout: std::time::Duration) {
        self.lazy.recycled.wait_idle(timeout);
    }

    /// How often restores were served by a reset VM, and how many are ready.
    pub fn recycle_stats(&self) -> crate::restore::recycle::RecycleStats {
        self.lazy.recycled.stats()
    }

    /// Keeps the runtime's module images private to this worker instead of sharing them
    /// across processes through hugetlbfs files (tests that must read their own chunks).
    pub fn private_module_images(&self) {
        self.lazy.modules.set_private_only(true);
    }

    /// Blocks until no module image is being built in the background (the steady
    /// state of a running service; benchmarks and tests wait for it).
    pub fn wait_module_images(&self) {
        self.lazy.modules.wait_built();
    }

    /// Blocks until no working-set image is being built in the background (`thaw run`
    /// before it exits; benchmarks and tests).
    pub fn wait_working_set_images(&self) {
        self.lazy.ws_images.wait_built();
    }

    /// Turns the working-set images shared across processes on (the default) or off
    /// ([`crate::restore::wsimage`]).
    pub fn set_working_set_images(&self, on: bool) {
        self.lazy.ws_images.set_enabled(on);
    }

    /// Lets go of the working-set images this worker maps and deletes their files.
    pub fn remove_working_set_images(&self) {
        self.lazy.ws_images.remove_mapped();
    }

    /// Lets go of every working-set image and deletes every image file on the mount, as
    /// a restore does when it finds the huge-page pool short.
    pub fn release_working_set_images(&self) {
        self.lazy.ws_images.release_all();
    }

    /// How many working-set images this worker maps.
    pub fn working_set_images(&self) -> usize {
        self.lazy.ws_images.stats().mapped
    }

    /// This worker's working-set images: mapped, their bytes, restores they served,
    /// images built (`/metrics`).
    pub fn image_stats(&self) -> crate::restore::wsimage::ImageStats {
        self.lazy.ws_images.stats()
    }

    /// Sets the egress policy of every instance this worker boots or restores
    /// (unless a spec names its own).
    pub fn set_net(&mut self, net: thaw_net::NetContext) {
        self.net = net;
    }

    /// The egress policy instances get by default.
    pub fn net(&self) -> &thaw_net::NetContext {
        &self.net
    }

    /// `spec` with the worker's network when it names none.
    fn with_net(&self, spec: Arc<FunctionSpec>) -> Arc<FunctionSpec> {
        if spec.net.is_some() {
            return spec;
        }
        let mut s = (*spec).clone();
        s.net = Some(self.net.clone());
        Arc::new(s)
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn data(&self) -> &DataDir {
        &self.data
    }

    /// Cold boot + init (the `boot` mode).
    pub fn boot(&self, spec: Arc<FunctionSpec>) -> Result<(Instance, BootTimings), WorkerError> {
        Instance::boot(&self.runtime, self.with_net(spec))
    }

    /// Boots, inits and snapshots a function version; it becomes the current snapshot.
    pub fn snapshot(
        &self,
        spec: &FunctionSpec,
    ) -> Result<(SnapshotId, SnapshotTimings), WorkerError> {
        spec.code.check_handler(&spec.handler)?;
        let spec = self.with_net(Arc::new(spec.clone()));
        let (id, mut timings) = take_snapshot(&self.runtime, &self.store, &spec)?;
        let t0 = Instant::now();
        if let Err(e) = self.probe_working_set(&id) {
            // Only the first restore gets slower: it records the working set itself.
            eprintln!(
                "thaw: recording a provisional working set of {id}: {}",
                crate::error::error_chain(&e)
            );
        }
        timings.probe = t0.elapsed();
        timings.total += timings.probe;
        Ok((id, timings))
    }

    /// A useful working set before the first request (so the first cold start after
    /// a deploy prefetches like the rest): restore a throwaway clone that records its
    /// faults, run the runtime's invoke path on it without the handler
    /// ([`Instance::probe_runtime`]: the handler may have side effects, so it never
    /// runs on a made-up event), and store what it touched as the snapshot's
    /// provisional working set. The first real restore prefetches it and records the
    /// final set on top of it. It also starts the runtime's shared module image, so
    /// the first real restore in this process finds it built.
    fn probe_working_set(&self, id: &SnapshotId) -> Result<(), WorkerError> {
        let snap = self.open_snapshot(id, None)?;
        let (mut clone, _) = self.restore(&snap, MemoryMode::UffdPrefetch)?;
        let out = clone.probe_runtime()?;
        if out.function_error {
            return Err(WorkerError::Crashed {
                message: format!(
                    "the runtime probe failed: {}",
                    String::from_utf8_lossy(&out.body)
                ),
                log: out.log,
            });
        }
        // Reset to the snapshot, the clone serves the first real restore (which then
        // skips building a VM and records the final working set on top of the probe's).
        self.retire(clone);
        Ok(())
    }

    /// The current snapshot of a function version, if any.
    pub fn current_snapshot(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<SnapshotId>, WorkerError> {
        self.store
            .current(&function_key(name, version))
            .map_err(WorkerError::Store)
    }

    /// Opens a snapshot for restores (checks integrity marks and the runtime).
    pub fn open_snapshot(
        &self,
        id: &SnapshotId,
        code_hash: Option<&str>,
    ) -> Result<OpenedSnapshot, WorkerError> {
        open_snapshot(&self.store, id, &self.runtime.hash(), code_hash)
    }

    /// Restores one instance of an opened snapshot in `mode` (`boot` cold-boots its spec).
    pub fn restore(
        &self,
        snap: &OpenedSnapshot,
        mode: MemoryMode,
    ) -> Result<(Instance, StartTimings), WorkerError> {
        if mode == MemoryMode::Boot {
            let (i, t) = self.boot(snap.spec.clone())?;
            return Ok((i, StartTimings::Boot(t)));
        }
        let t0 = Instant::now();
        let (restored, mut t) = restore(&self.store, snap, mode, &self.data.images(), &self.lazy)?;
        let mut i = Instance::restored(restored, snap.spec.clone());
        i.attach_net(&self.net);
        t.total = t0.elapsed();
        Ok((i, StartTimings::Restore(t)))
    }

    /// Restores from the function version's current snapshot; when that snapshot
    /// is corrupt or missing, rebuilds it from a cold boot of `spec` and restores
    /// from the new one. Never restores from bytes that fail verification.
    pub fn restore_or_rebuild(
        &self,
        spec: &FunctionSpec,
        mode: MemoryMode,
    ) -> Result<(Instance, StartTimings), WorkerError> {
        let code_hash = spec.code.hash();
        let current = self
            .store
            .current(&crate::state::spec_key(spec))
            .map_err(WorkerError::Store)?;
        if let Some(id) = current {
            match self
                .open_snapshot(&id, Some(&code_hash))
                .and_then(|s| self.restore(&s, mode))
            {
                Ok(v) => return Ok(v),
                Err(e) if e.is_snapshot_fault() => {
                    if e.is_corrupt() {
                        // Whichever read found it, the snapshot is not restored again, and
                        // its other corrupt chunk files are moved aside so that the rebuild
                        // writes them afresh (chunks are deduplicated by file).
                        // (`verify` re-hashes every chunk file, moves corrupt ones aside and
                        // marks every snapshot that lost one bad: a rare, whole-store pass.)
                        let _ = self.store.mark_bad(&id, &crate::error::error_chain(&e));
                        match self.store.verify() {
                            Ok(r) => eprintln!(
                                "thaw: store verified after corruption: {} chunks checked, {} problems, {} snapshots marked bad",
                                r.chunks_checked,
                                r.problems.len(),
                                r.marked_bad.len()
                            ),
                            Err(v) => eprintln!(
                                "thaw: verifying the store failed: {}",
                                crate::error::error_chain(&v)
                            ),
                        }
                    }
                    eprintln!(
                        "thaw: snapshot {id} unusable ({}); rebuilding from a cold boot",
                        crate::error::error_chain(&e)
                    );
                }
                Err(e) => return Err(e),
            }
        }
        // A rebuild is a cold boot and init (then a restore of the new snapshot): it is
        // reported as a boot, with the boot's timings.
        let (id, timings) = self.snapshot(spec)?;
        let snap = self.open_snapshot(&id, Some(&code_hash))?;
        let (instance, _) = self.restore(&snap, mode)?;
        Ok((instance, StartTimings::Boot(timings.boot)))
    }
}

/// The lazy modes' caches, with the guest range the runtime's module occupies.
fn lazy_caches(runtime: &Runtime) -> crate::restore::LazyCaches {
    let lo = thaw_abi::layout::IMAGES;
    let hi = (lo + runtime.module.len() as u64).div_ceil(thaw_abi::PAGE_2M) * thaw_abi::PAGE_2M;
    crate::restore::LazyCaches {
        module_region: Some(thaw_vmm::GuestRange::new(lo, hi)),
        ..Default::default()
    }
}
