//! Restoring instances from snapshots, in a chosen memory mode.
//!
//! | mode | guest RAM before the vCPU resumes |
//! |---|---|
//! | `boot` | no snapshot: a cold boot + init |
//! | `eager` | every chunk decompressed into fresh anonymous memory |
//! | `mmap` | a private mapping of the decompressed memory file (page cache shared by clones) |
//! | `uffd` | empty; a userfaultfd pager fills chunks from the store on first touch |
//! | `uffd+prefetch` | as `uffd`, plus the recorded working set installed in bulk |
//! | `shared` | clones share one lazily filled memfd image, private copy-on-write |
//!
//! Restore steps: 1. read the manifest and decode the state blob; 2. refuse a
//! snapshot that is marked bad or whose runtime or code changed; 3. prepare guest
//! RAM for the mode; 4. create the VM and load the vCPU state; 5. the instance is
//! parked in `Next` and its first invocation carries fresh entropy, the wall clock
//! and the `restored` flag (so the guest reseeds and runs after-restore hooks).
//!
//! Files: [`mode`] (the modes), [`eager`] (`eager`, `mmap`), [`lazy`] (the userfaultfd
//! modes, as the five steps its doc lists), [`source`] (the pager's view of the store),
//! [`images`] (images shared by clones: `shared` mode's, the runtime module's),
//! [`wsimage`] (per snapshot, the decompressed working set shared across processes) and
//! [`shells`] (VMs made ahead of time). A restore yields a [`Restored`] VM; the caller
//! makes it an `Instance` (so this module does not depend on the instance it feeds).
use crate::error::WorkerError;
use crate::function::FunctionCode;
use crate::spec::FunctionSpec;
use crate::state::decode_state;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thaw_snapshotter::{Manifest, SnapshotId, Store};
use thaw_vmm::Vm;

mod eager;
pub mod images;
pub mod lazy;
pub mod memory;
pub mod mode;
pub mod recycle;
pub mod shells;
pub mod source;
pub mod wsimage;

pub use lazy::LazyCaches;
pub use memory::LazyMemory;
pub use mode::MemoryMode;

/// A restored VM, parked in `Next`, and (lazy modes) the pager filling its RAM.
#[derive(Debug)]
pub struct Restored {
    pub vm: Vm,
    pub lazy: Option<LazyMemory>,
}

/// Where the time of a restore went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreTimings {
    /// Manifest read and state decode.
    pub read_state: Duration,
    /// Guest RAM prepared (copy, map, or pager start).
    pub memory: Duration,
    /// VM, vCPU and state load.
    pub vm_restore: Duration,
    pub total: Duration,
}

/// A snapshot opened for restoring.
#[derive(Debug)]
pub struct OpenedSnapshot {
    pub manifest: Manifest,
    pub spec: Arc<FunctionSpec>,
    pub vm_state: thaw_vmm::state::VmState,
}

/// Reads and checks a snapshot (steps 1-2).
pub fn open_snapshot(
    store: &Store,
    id: &SnapshotId,
    runtime_hash: &str,
    code_hash: Option<&str>,
) -> Result<OpenedSnapshot, WorkerError> {
    if let Some(reason) = store.is_bad(id).map_err(WorkerError::Store)? {
        return Err(WorkerError::SnapshotBad {
            id: id.to_string(),
            reason,
        });
    }
    let manifest = store.manifest(id).map_err(WorkerError::Store)?;
    let (record, code): (_, FunctionCode) = decode_state(&manifest.state)?;
    let code_hash = code_hash.map_or_else(|| code.hash(), str::to_string);
    if !manifest.matches(&code_hash, runtime_hash) {
        return Err(WorkerError::SnapshotStale { id: id.to_string() });
    }
    let spec = Arc::new(record.spec.to_spec(code));
    Ok(OpenedSnapshot {
        manifest,
        spec,
        vm_state: record.vm,
    })
}

/// Marks the snapshot bad when a chunk fails verification.
pub(crate) fn corrupt(
    store: &Store,
    manifest: &Manifest,
    e: thaw_snapshotter::StoreError,
) -> WorkerError {
    if let thaw_snapshotter::StoreError::CorruptChunk { id, .. } = &e {
        let _ = store.mark_bad(&manifest.id, &format!("chunk {id} failed verification"));
    }
    WorkerError::Store(e)
}

/// Restores a VM from an opened snapshot (steps 3-5).
pub fn restore(
    store: &Store,
    snap: &OpenedSnapshot,
    mode: MemoryMode,
    images_dir: &Path,
    caches: &LazyCaches,
) -> Result<(Restored, RestoreTimings), WorkerError> {
    let t0 = Instant::now();
    if matches!(
        mode,
        MemoryMode::Uffd | MemoryMode::UffdPrefetch | MemoryMode::Shared
    ) {
        let (vm, lazy, memory) = lazy::lazy_restore(store, snap, mode, caches)?;
        let total = t0.elapsed();
        let t = RestoreTimings {
            read_state: Duration::ZERO,
            memory,
            vm_restore: total - memory,
            total,
        };
        let lazy = Some(lazy);
        return Ok((Restored { vm, lazy }, t));
    }
    let ram = match mode {
        MemoryMode::Eager => eager::eager_ram(store, &snap.manifest)?,
        MemoryMode::Mmap => eager::mmap_ram(store, &snap.manifest, images_dir)?,
        other => return Err(WorkerError::ModeUnsupported(other.as_str())),
    };
    let memory = t0.elapsed();
    let t1 = Instant::now();
    let vm = Vm::restore(ram, &snap.vm_state)?;
    let vm_restore = t1.elapsed();
    Ok((
        Restored { vm, lazy: None },
        RestoreTimings {
            read_state: Duration::ZERO,
            memory,
            vm_restore,
            total: t0.elapsed(),
        },
    ))
}

/// Prints a warning the first time one is raised in this process (later ones repeat it).
pub(crate) fn warn_once(msg: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| eprintln!("thaw: warning: {msg}"));
}
