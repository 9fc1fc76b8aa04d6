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
use crate::error::WorkerError;
use crate::function::FunctionCode;
use crate::instance::{FunctionSpec, Instance};
use crate::snapshot::decode_state;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thaw_snapshotter::{Manifest, SnapshotId, Store};
use thaw_vmm::{Backing, GuestRam, Vm};

/// How guest memory is provided on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MemoryMode {
    Boot,
    Eager,
    Mmap,
    Uffd,
    UffdPrefetch,
    Shared,
}

impl MemoryMode {
    /// Every mode, in benchmark order.
    pub const ALL: [MemoryMode; 6] = [
        Self::Boot,
        Self::Eager,
        Self::Mmap,
        Self::Uffd,
        Self::UffdPrefetch,
        Self::Shared,
    ];

    /// The CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Boot => "boot",
            Self::Eager => "eager",
            Self::Mmap => "mmap",
            Self::Uffd => "uffd",
            Self::UffdPrefetch => "uffd+prefetch",
            Self::Shared => "shared",
        }
    }
}

impl std::fmt::Display for MemoryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MemoryMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown memory mode {s:?} (one of boot, eager, mmap, uffd, uffd+prefetch, shared)"))
    }
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

/// Fills fresh anonymous RAM with every chunk (the `eager` mode).
fn eager_ram(store: &Store, manifest: &Manifest) -> Result<GuestRam, WorkerError> {
    let mut ram = GuestRam::new(manifest.meta.memory_size, Backing::Anonymous)?;
    for chunk in manifest.chunks() {
        let Some(id) = chunk.id else { continue };
        ram.fill_with(chunk.guest_addr, chunk.len, |dst| {
            store.read_chunk_into(&id, dst)
        })?
        .map_err(|e| corrupt(store, manifest, e))?;
    }
    Ok(ram)
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

/// Maps the decompressed memory file privately (the `mmap` mode), materialising it
/// into `images_dir` on first use.
fn mmap_ram(
    store: &Store,
    manifest: &Manifest,
    images_dir: &Path,
) -> Result<GuestRam, WorkerError> {
    let path = images_dir.join(format!("{}.mem", manifest.id));
    if !path.exists() {
        std::fs::create_dir_all(images_dir).map_err(|source| WorkerError::Cache {
            path: images_dir.display().to_string(),
            source,
        })?;
        store
            .materialize(&manifest.id, &path)
            .map_err(|e| corrupt(store, manifest, e))?;
    }
    let file = std::fs::File::open(&path).map_err(|source| WorkerError::Cache {
        path: path.display().to_string(),
        source,
    })?;
    let len = file
        .metadata()
        .map_err(|source| WorkerError::Cache {
            path: path.display().to_string(),
            source,
        })?
        .len();
    if len != manifest.meta.memory_size {
        return Err(WorkerError::Cache {
            path: path.display().to_string(),
            source: std::io::Error::other(format!(
                "memory file has {len} bytes, expected {}",
                manifest.meta.memory_size
            )),
        });
    }
    Ok(GuestRam::new(
        len,
        Backing::FilePrivate(std::os::fd::AsFd::as_fd(&file)),
    )?)
}

/// Restores an instance from an opened snapshot (steps 3-5).
pub fn restore(
    store: &Store,
    snap: &OpenedSnapshot,
    mode: MemoryMode,
    images_dir: &Path,
    caches: &crate::lazy::LazyCaches,
) -> Result<(Instance, RestoreTimings), WorkerError> {
    let t0 = Instant::now();
    if matches!(
        mode,
        MemoryMode::Uffd | MemoryMode::UffdPrefetch | MemoryMode::Shared
    ) {
        let (vm, lazy, memory) = crate::lazy::lazy_restore(store, snap, mode, caches)?;
        let total = t0.elapsed();
        let instance = Instance::restored_lazy(vm, snap.spec.clone(), lazy);
        let t = RestoreTimings {
            read_state: Duration::ZERO,
            memory,
            vm_restore: total - memory,
            total,
        };
        return Ok((instance, t));
    }
    let ram = match mode {
        MemoryMode::Eager => eager_ram(store, &snap.manifest)?,
        MemoryMode::Mmap => mmap_ram(store, &snap.manifest, images_dir)?,
        other => return Err(WorkerError::ModeUnsupported(other.as_str())),
    };
    let memory = t0.elapsed();
    let t1 = Instant::now();
    let vm = Vm::restore(ram, &snap.vm_state)?;
    let vm_restore = t1.elapsed();
    let instance = Instance::restored(vm, snap.spec.clone());
    Ok((
        instance,
        RestoreTimings {
            read_state: Duration::ZERO,
            memory,
            vm_restore,
            total: t0.elapsed(),
        },
    ))
}
