//! The lazy restore modes on the userfaultfd pager: `uffd` (fill on first touch
//! from the chunk store), `uffd+prefetch` (REAP: record the working set on the
//! first restore, install it in bulk on later ones) and `shared` (clones share one
//! lazily filled image, private copy-on-write).
//!
//! Restore steps ([`lazy_restore`], one function each):
//! 1. [`map_guest_ram`]: hugetlbfs (2 MiB pages: ~50x cheaper first touch here) when
//!    enough huge pages are free (a ready shell from the pool if there is one), else
//!    anonymous 4 KiB memory with a warning; in `shared` mode a private mapping of the
//!    snapshot's shared image. In the uffd modes the runtime's module region is mapped
//!    from one shared hugetlbfs image per runtime once that is built (built in the
//!    background after the first restore of a process; until then the module is paged
//!    in like the rest).
//! 2. [`read_ahead`]: start the disk reads of every chunk steps 2-4 install; on
//!    hugetlbfs, copy in the chunks the VMM itself touches on every invocation (boot
//!    info, mailboxes, log, the first chunk of the request and of the response area)
//!    now, before the pager serves the range, so a corrupt chunk fails the restore
//!    cleanly; the rest of the payload areas is paged in on demand.
//! 3. [`start_pager`]: this VM's pager over its RAM, recording touched chunks when the
//!    snapshot has no working set yet (plus, read off the page tables after the first
//!    response, the module chunks the guest used through the shared image); on 4 KiB
//!    backings the VMM's chunks are installed through it.
//! 4. [`install_working_set`]: `uffd+prefetch` installs the recorded working set in bulk
//!    on every core (minus the module chunks the shared image maps); a process without
//!    the module image yet starts building it.
//! 5. Load the vCPU state; the guest resumes at once and faults in the rest.
use super::images::ModuleImages;
use super::images::SharedImages;
use super::memory::{LazyMemory, ModuleProbe, RecycleInfo};
use super::recycle::{mode_recycles, ReadyVm, RecycleKey, RecyclePool};
use super::shells::{private_vm, vmm_chunks, ShellPool};
use super::source::{pager_fault, StoreSource};
use super::wsimage::{ImagePlan, WorkingSetImage, WorkingSetImages};
use super::{corrupt, warn_once, MemoryMode, OpenedSnapshot};
use crate::error::WorkerError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use thaw_pager::{PagerHandle, PagerOptions};
use thaw_snapshotter::{ChunkId, SnapshotId, Store};
use thaw_vmm::{Backing, GuestAddress, GuestRam, GuestRange, Vm};

/// The lazy modes' per-worker state.
#[derive(Debug, Default)]
pub struct LazyCaches {
    /// Per snapshot: shared clone images.
    pub shared: SharedImages,
    /// Per runtime: the module image (shared by every snapshot of the runtime).
    pub modules: Arc<ModuleImages>,
    /// Per worker: ready VM shells.
    pub shells: ShellPool,
    /// Per snapshot: VMs of retired instances reset for reuse.
    pub recycled: RecyclePool,
    /// Per snapshot: the decompressed working set, shared across processes.
    pub ws_images: Arc<WorkingSetImages>,
    /// Working sets by snapshot, once recorded or read.
    pub working_sets: Mutex<HashMap<SnapshotId, Arc<Vec<u32>>>>,
    /// Guest range of the runtime's precompiled module (2 MiB aligned), if known.
    pub module_region: Option<GuestRange>,
}

impl LazyCaches {
    /// A snapshot's working set and whether it is only provisional: the final one
    /// from memory, else from the store (a snapshot opened before its working set
    /// was recorded has none in `snap`), else the provisional one.
    fn working_set(
        &self,
        store: &Store,
        id: &SnapshotId,
    ) -> Result<Option<(Vec<u32>, bool)>, WorkerError> {
        let mut known = self.working_sets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ws) = known.get(id) {
            return Ok(Some((ws.as_ref().clone(), false)));
        }
        let m = store.manifest(id).map_err(WorkerError::Store)?;
        if let Some(ws) = m.working_set {
            known.insert(*id, Arc::new(ws.clone()));
            return Ok(Some((ws, false)));
        }
        Ok(m.provisional_working_set.map(|ws| (ws, true)))
    }
}

/// Free huge pages a hugetlbfs-backed restore leaves for the guest to grow into.
const HUGE_PAGE_HEADROOM: usize = 16;

/// What a lazy restore works from: the snapshot's working set, and how many huge pages
/// it needs.
struct Plan<'a> {
    store: &'a Store,
    snap: &'a OpenedSnapshot,
    mode: MemoryMode,
    len: u64,
    cs: u64,
    working_set: Option<Vec<u32>>,
    /// The working set is the provisional one (recorded at build time): prefetched,
    /// and recorded on top of.
    provisional: bool,
    huge_pages_needed: usize,
    /// The working-set image this restore copies from, if one is built.
    image: Option<Arc<WorkingSetImage>>,
    /// The image it would copy from (final working set, images on).
    image_plan: Option<ImagePlan>,
}

impl Plan<'_> {
    /// Enough free huge pages for what this restore installs right away (the VMM's
    /// areas and the working set) plus room for the guest to grow: with fewer, 4 KiB
    /// pages instead, so a full pool slows restores down rather than failing them.
    fn huge_pages_ok(&self) -> bool {
        thaw_pager::free_huge_pages() >= self.huge_pages_needed
    }

    /// Record the chunks faults touch (the snapshot has no final working set yet).
    fn record(&self) -> bool {
        matches!(self.mode, MemoryMode::Uffd | MemoryMode::UffdPrefetch)
            && (self.working_set.is_none() || self.provisional)
    }
}

/// Guest RAM after step 1: the VM over it, what backs it, and the module region mapped
/// from the runtime's shared image (chunk indices; empty when paged in instead).
struct Mapped {
    vm: Vm,
    backing: thaw_pager::Backing,
    module_chunks: std::ops::Range<u32>,
    /// The module's chunks, when the mode maps the module (to build its image).
    module_run: Option<Vec<Option<ChunkId>>>,
}

/// Restores a VM whose memory the pager fills lazily (see the module doc).
pub fn lazy_restore(
    store: &Store,
    snap: &OpenedSnapshot,
    mode: MemoryMode,
    caches: &LazyCaches,
) -> Result<(Vm, LazyMemory, std::time::Duration), WorkerError> {
    let t0 = std::time::Instant::now();
    if mode_recycles(mode) {
        if let Some(ReadyVm { vm, mut lazy }) =
            caches
                .recycled
                .take(&RecycleKey::new(snap.manifest.id, &snap.spec, mode))
        {
            // A reset VM whose pager records (the build's probe clone, or a first
            // restore's): if the snapshot still has only a provisional working set,
            // this restore records the final one on top of it, as a fresh one would.
            lazy.provisional = false;
            if lazy.handle.is_recording() {
                if let Some((ws, true)) = caches.working_set(store, &snap.manifest.id)? {
                    lazy.record_to = Some((store.clone(), snap.manifest.id));
                    lazy.base = ws;
                    lazy.build_image = build_on_record(store, snap, caches);
                }
            }
            return Ok((vm, lazy, t0.elapsed()));
        }
    }
    let cs = snap.manifest.chunk_size;
    // The working set may have been recorded since `snap` was read.
    let (working_set, provisional) = match &snap.manifest.working_set {
        Some(ws) => (Some(ws.clone()), false),
        None => match caches.working_set(store, &snap.manifest.id)? {
            Some((ws, provisional)) => (Some(ws), provisional),
            None => (None, false),
        },
    };
    let huge_pages_needed = vmm_chunks(cs).count()
        + working_set.as_ref().map_or(0, Vec::len) * cs as usize / thaw_abi::PAGE_2M as usize
        + HUGE_PAGE_HEADROOM;
    let image_plan = match &working_set {
        Some(ws)
            if mode == MemoryMode::UffdPrefetch
                && !provisional
                && caches.ws_images.enabled(store) =>
        {
            ImagePlan::new(&snap.manifest, ws, module_chunk_range(caches, cs))
        }
        _ => None,
    };
    let mut plan = Plan {
        store,
        snap,
        mode,
        len: snap.manifest.meta.memory_size,
        cs,
        working_set,
        provisional,
        huge_pages_needed,
        image: None,
        image_plan,
    };
    if !plan.huge_pages_ok() {
        // Reset VMs kept for reuse and working-set images hold huge pages a restore
        // needs more.
        caches.recycled.release_all();
        caches.ws_images.release_all();
    }
    plan.image = plan
        .image_plan
        .as_ref()
        .and_then(|p| caches.ws_images.ready(p));
    let mut mapped = map_guest_ram(&plan, caches)?;
    read_ahead(&plan, &mut mapped)?;
    let handle = start_pager(&plan, &mut mapped)?;
    install_working_set(&plan, &mapped, &handle, caches)?;
    // 5. The vCPU.
    let memory_ready = t0.elapsed();
    let Mapped {
        mut vm,
        module_chunks,
        backing,
        ..
    } = mapped;
    vm.load_state(&snap.vm_state)?;
    let record = plan.record();
    let record_to = record.then(|| (store.clone(), snap.manifest.id));
    let build_image = record
        .then(|| build_on_record(store, snap, caches))
        .flatten();
    let module_probe = (record && !module_chunks.is_empty()).then(|| ModuleProbe {
        addr: vm
            .ram()
            .host_addr()
            .offset(module_chunks.start as usize * cs as usize),
        len: module_chunks.len() * cs as usize,
        first_chunk: module_chunks.start,
        chunk_size: cs as usize,
    });
    let recycle = (mode_recycles(mode) && backing_is_hugetlb(&backing)).then(|| {
        caches.recycled.remember(store, snap);
        let mut info = RecycleInfo {
            kept: vmm_chunks(cs).collect(),
            module_chunks: module_chunks.clone(),
            image: plan.image.clone(),
        };
        if mode == MemoryMode::UffdPrefetch {
            info.keep(plan.working_set.iter().flatten().copied());
        }
        info
    });
    let base = match (plan.working_set, plan.provisional && record) {
        (Some(ws), true) => ws,
        _ => Vec::new(),
    };
    Ok((
        vm,
        LazyMemory {
            handle,
            snapshot: (store.clone(), snap.manifest.id),
            record_to,
            base,
            provisional: false,
            mode,
            module_probe,
            recycle,
            build_image,
        },
        memory_ready,
    ))
}

/// Chunk indices of the runtime's module region (empty when unknown or unaligned).
fn module_chunk_range(caches: &LazyCaches, cs: u64) -> std::ops::Range<u32> {
    caches
        .module_region
        .filter(|r| r.is_aligned(cs))
        .map_or(0..0, |r| {
            (r.start.raw() / cs) as u32..(r.end.raw() / cs) as u32
        })
}

/// For a recording restore: build the snapshot's working-set image as soon as its
/// final working set is stored (images on for `store`).
fn build_on_record(
    store: &Store,
    snap: &OpenedSnapshot,
    caches: &LazyCaches,
) -> Option<super::wsimage::BuildOnRecord> {
    let cs = snap.manifest.chunk_size;
    caches
        .ws_images
        .enabled(store)
        .then(|| super::wsimage::BuildOnRecord {
            images: caches.ws_images.clone(),
            store: store.clone(),
            chunks: snap.manifest.chunks().map(|c| c.id).collect(),
            chunk_size: cs,
            module: module_chunk_range(caches, cs),
        })
}

/// Step 1: the VM and its guest RAM (a ready shell from the pool when there is one),
/// then the module's region mapped privately from the shared hugetlbfs image when that
/// is built (else paged in like the rest; it is built after step 4).
fn map_guest_ram(plan: &Plan<'_>, caches: &LazyCaches) -> Result<Mapped, WorkerError> {
    let (len, cs) = (plan.len, plan.cs);
    let (mut vm, mut backing) = match plan.mode {
        MemoryMode::Shared => {
            let image = caches.shared.get(&plan.snap.manifest.id, len as usize)?;
            let ram = GuestRam::new(
                len,
                Backing::FilePrivate(std::os::fd::AsFd::as_fd(image.fd())),
            )?;
            (Vm::with_ram(ram)?, thaw_pager::Backing::SharedMemfd(image))
        }
        _ if !plan.huge_pages_ok() => private_vm(len, false)?,
        _ => match caches.shells.take(len) {
            Some(shell) => (shell.vm, thaw_pager::Backing::Hugetlb),
            None => private_vm(len, true)?,
        },
    };
    // Also over 4 KiB guest RAM (a short pool): the image is already built, and
    // mapping it saves each such instance ~60 MiB of private module pages.
    let module_run: Option<(GuestRange, Vec<Option<ChunkId>>)> =
        match (plan.mode, caches.module_region) {
            (MemoryMode::Uffd | MemoryMode::UffdPrefetch, Some(range)) if range.is_aligned(cs) => {
                let ids: Vec<Option<ChunkId>> = plan.snap.manifest.chunks().map(|c| c.id).collect();
                ids.get((range.start.raw() / cs) as usize..(range.end.raw() / cs) as usize)
                    .map(|run| (range, run.to_vec()))
            }
            _ => None,
        };
    let mut module_chunks = 0..0;
    if let Some((range, run)) = &module_run {
        if let Some(image) = caches.modules.ready(run, cs as usize) {
            let fd = std::os::fd::AsFd::as_fd(image.fd());
            match vm.ram_mut().map_image_private(*range, fd) {
                Ok(()) => {
                    module_chunks = (range.start.raw() / cs) as u32..(range.end.raw() / cs) as u32
                }
                // No huge pages left to reserve for the mapping: start over on
                // fresh RAM (this one may have lost the range) and page the
                // module in like the rest.
                Err(thaw_vmm::VmError::MapMemory(e)) if e.raw_os_error() == Some(libc::ENOMEM) => {
                    warn_once(&format!(
                        "no huge pages left to map the module image ({e}); paging it in instead (slower restores)"
                    ));
                    (vm, backing) = private_vm(len, plan.huge_pages_ok())?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Mapped {
        vm,
        backing,
        module_chunks,
        module_run: module_run.map(|(_, run)| run),
    })
}

/// Step 2: start the disk reads of every chunk steps 2-4 install, all at once (a no-op
/// for chunks the decompressed-chunk cache holds). On hugetlbfs, before the pager
/// serves the range: what the VMM touches itself, populated first (a pool shell comes
/// populated; running out of huge pages fails here, not with a SIGBUS in the VMM
/// thread later), then the data chunks copied in. On 4 KiB backings the pager
/// installs them instead (step 3): populating 18 MiB of small pages costs far more.
fn read_ahead(plan: &Plan<'_>, mapped: &mut Mapped) -> Result<(), WorkerError> {
    let (store, snap, cs) = (plan.store, plan.snap, plan.cs);
    let prefetched = plan
        .working_set
        .iter()
        .flatten()
        .copied()
        .filter(|i| plan.mode == MemoryMode::UffdPrefetch && !mapped.module_chunks.contains(i));
    let in_image = |i: u32| plan.image.as_ref().is_some_and(|img| img.holds(i));
    let ahead: Vec<ChunkId> = vmm_chunks(cs)
        .chain(prefetched)
        .filter(|&i| !in_image(i))
        .filter_map(|i| snap.manifest.chunk(i)?.id)
        .collect();
    store.readahead(&ahead);
    if !backing_is_hugetlb(&mapped.backing) {
        return Ok(());
    }
    for i in vmm_chunks(cs) {
        let Some(c) = snap.manifest.chunk(i) else {
            continue;
        };
        if let Some(id) = c.id {
            // Straight from the working-set image or the chunk cache into guest RAM
            // (one copy).
            mapped
                .vm
                .ram_mut()
                .fill_with(GuestAddress(c.guest_addr), c.len, |dst| match &plan.image {
                    Some(img) if dst.len() == cs as usize && img.read_into(i, dst) => Ok(dst.len()),
                    _ => store.read_chunk_into(&id, dst),
                })?
                .map_err(|e| corrupt(store, &snap.manifest, e))?;
        }
    }
    Ok(())
}

/// Step 3: the pager over this VM's RAM (taking over a pool shell's registration); on
/// 4 KiB backings it installs the VMM's chunks before the vCPU runs.
fn start_pager(plan: &Plan<'_>, mapped: &mut Mapped) -> Result<PagerHandle, WorkerError> {
    let (store, snap) = (plan.store, plan.snap);
    let source = Arc::new(StoreSource::new(store.clone(), snap).with_image(plan.image.clone()));
    let opts = PagerOptions {
        record: plan.record(),
        ..Default::default()
    };
    let hugetlb = backing_is_hugetlb(&mapped.backing);
    let handle = mapped
        .vm
        .ram_mut()
        .start_pager(mapped.backing.clone(), source, opts)
        .map_err(|e| match e {
            thaw_vmm::VmError::Pager(e) => WorkerError::Pager(e),
            e => WorkerError::Vm(e),
        })?;
    if !hugetlb {
        let vmm: Vec<u32> = vmm_chunks(plan.cs).collect();
        handle
            .prefetch_blocking(&vmm)
            .map_err(|e| pager_fault(store, &snap.manifest.id, e))?;
    }
    Ok(handle)
}

/// Step 4: the working set (minus what the module image already maps), installed
/// before the vCPU resumes: with the module shared it is ~10 blocks, and a background
/// prefetch mostly lost the race to the vCPU's own faults. No module image yet (a fresh
/// process): build it now that this restore is done with the CPU, for the restores
/// after it; the same for the snapshot's working-set image.
fn install_working_set(
    plan: &Plan<'_>,
    mapped: &Mapped,
    handle: &PagerHandle,
    caches: &LazyCaches,
) -> Result<(), WorkerError> {
    let (store, snap) = (plan.store, plan.snap);
    if plan.mode == MemoryMode::UffdPrefetch {
        if let Some(ws) = &plan.working_set {
            let ws: Vec<u32> = ws
                .iter()
                .copied()
                .filter(|i| !mapped.module_chunks.contains(i))
                .collect();
            handle
                .prefetch_blocking(&ws)
                .map_err(|e| pager_fault(store, &snap.manifest.id, e))?;
        }
    }
    if let (Some(run), true) = (&mapped.module_run, mapped.module_chunks.is_empty()) {
        caches
            .modules
            .build_in_background(store, run, plan.cs as usize);
    }
    if let (None, Some(p)) = (&plan.image, &plan.image_plan) {
        caches.ws_images.build_in_background(store, p.clone());
    }
    Ok(())
}

fn backing_is_hugetlb(b: &thaw_pager::Backing) -> bool {
    matches!(b, thaw_pager::Backing::Hugetlb)
}
