//! The lazy restore modes on the userfaultfd pager: `uffd` (fill on first touch
//! from the chunk store), `uffd+prefetch` (REAP: record the working set on the
//! first restore, install it in bulk on later ones) and `shared` (clones share one
//! lazily filled image, private copy-on-write).
//!
//! Restore steps (`lazy_restore`):
//! 1. Map guest RAM: hugetlbfs (2 MiB pages: ~50x cheaper first touch here) when
//!    enough huge pages are free, else anonymous 4 KiB memory with a warning; in
//!    `shared` mode a private mapping of the snapshot's shared image. In the uffd
//!    modes the runtime's module region is mapped from one shared hugetlbfs image
//!    per runtime once that is built (built in the background after the first
//!    restore of a process; until then the module is paged in like the rest).
//! 2. Start this VM's pager over it, recording touched chunks when the snapshot
//!    has no working set yet (plus, read off the page tables after the first
//!    response, the module chunks the guest used through the shared image).
//! 3. Read ahead every chunk steps 3-4 install; install the chunks the VMM itself
//!    touches on every invocation (boot info, mailboxes, log, the first chunk of the
//!    request and of the response area) before the vCPU runs, so a corrupt chunk
//!    fails the restore cleanly; the rest of the payload areas is paged in on demand.
//! 4. `uffd+prefetch`: install the recorded working set in bulk on every core
//!    (minus the module chunks when the shared image is mapped).
//! 5. Load the vCPU state; the guest resumes at once and faults in the rest.
use crate::error::WorkerError;
use crate::restore::{MemoryMode, OpenedSnapshot};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use thaw_pager::{
    ChunkKind, GuestRegion, PageSource, Pager, PagerHandle, PagerOptions, SharedImage, SourceError,
};
use thaw_snapshotter::{ChunkId, SnapshotId, Store, StoreError};
use thaw_vmm::{Backing, GuestRam, Vm};

/// Serves a snapshot's chunks to the pager, verified against their hashes.
#[derive(Debug)]
pub struct StoreSource {
    store: Store,
    chunks: Vec<Option<ChunkId>>,
    chunk_size: usize,
    len: usize,
}

impl StoreSource {
    pub fn new(store: Store, snap: &OpenedSnapshot) -> Self {
        let chunks = snap.manifest.chunks().map(|c| c.id).collect();
        let chunk_size = snap.manifest.chunk_size as usize;
        Self {
            store,
            chunks,
            chunk_size,
            len: snap.manifest.meta.memory_size as usize,
        }
    }
}

impl StoreSource {
    /// The chunk id at `index` (`None`: an all-zero chunk).
    fn lookup(&self, index: usize) -> Result<Option<&ChunkId>, SourceError> {
        let chunks = self.chunks.len();
        self.chunks
            .get(index)
            .map(Option::as_ref)
            .ok_or(SourceError::OutOfRange { index, chunks })
    }
}

/// A store failure as the pager sees it (corruption named as such).
fn source_error(index: usize, e: StoreError) -> SourceError {
    match e {
        e @ StoreError::CorruptChunk { .. } => SourceError::CorruptChunk {
            index,
            detail: e.to_string(),
        },
        e => SourceError::ReadChunk {
            index,
            source: Box::new(e),
        },
    }
}

impl PageSource for StoreSource {
    fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    fn len(&self) -> usize {
        self.len
    }

    fn read_chunk(&self, index: usize, dst: &mut [u8]) -> Result<ChunkKind, SourceError> {
        let Some(id) = self.lookup(index)? else {
            return Ok(ChunkKind::Zero);
        };
        let n = self
            .store
            .read_chunk_into(id, dst)
            .map_err(|e| source_error(index, e))?;
        dst[n..].fill(0);
        Ok(ChunkKind::Data)
    }

    fn shared_chunk(&self, index: usize) -> Result<thaw_pager::SharedChunk, SourceError> {
        let Some(id) = self.lookup(index)? else {
            return Ok(thaw_pager::SharedChunk::Zero);
        };
        let bytes = self
            .store
            .read_chunk_shared(id)
            .map_err(|e| source_error(index, e))?;
        Ok(if bytes.len() == self.chunk_size {
            thaw_pager::SharedChunk::Data(bytes)
        } else {
            thaw_pager::SharedChunk::Unavailable
        })
    }
}

/// The pager side of a lazily restored instance. Declared before the VM in
/// `Instance`, so it stops before guest RAM is unmapped.
#[derive(Debug)]
pub struct LazyMemory {
    pub handle: PagerHandle,
    /// The snapshot the pager serves (marked bad when a fault finds a corrupt chunk).
    pub snapshot: (Store, SnapshotId),
    /// Where to store the working set after the first response, when recording.
    pub record_to: Option<(Store, SnapshotId)>,
    /// The provisional working set this restore prefetched and records on top of
    /// (empty without one): the stored set is it plus what faulted.
    pub base: Vec<u32>,
    /// Store what is recorded as the snapshot's provisional working set (a build-time
    /// probe, [`crate::Instance::probe_runtime`]) rather than its final one.
    pub provisional: bool,
    pub mode: MemoryMode,
    /// When recording with the module image mapped: where the module region is in
    /// host memory and its first chunk index. Its pages never fault into the pager,
    /// so the chunks the guest used there are read off the page tables instead.
    pub module_probe: Option<ModuleProbe>,
}

/// The module region of a recording restore (see [`LazyMemory::module_probe`]).
#[derive(Debug, Clone, Copy)]
pub struct ModuleProbe {
    pub addr: thaw_pager::HostAddr,
    pub len: usize,
    pub first_chunk: u32,
    pub chunk_size: usize,
}

impl LazyMemory {
    /// After the first response: store the recorded working set (first restore
    /// only): the chunks faults touched, then the module chunks the guest used. A
    /// restore in a process without the module image yet prefetches all of them.
    pub fn first_response_done(&mut self) {
        if let Some((store, id)) = self.record_to.take() {
            let mut ws = std::mem::take(&mut self.base);
            let faulted = self.handle.take_working_set();
            ws.extend(
                faulted
                    .into_iter()
                    .filter(|c| !ws.contains(c))
                    .collect::<Vec<_>>(),
            );
            if let Some(p) = self.module_probe {
                match thaw_pager::present_blocks(p.addr, p.len, p.chunk_size) {
                    Ok(present) => {
                        let used = present.iter().enumerate().filter(|(_, &t)| t);
                        let module: Vec<u32> =
                            used.map(|(i, _)| p.first_chunk + i as u32).collect();
                        ws.extend(
                            module
                                .into_iter()
                                .filter(|c| !ws.contains(c))
                                .collect::<Vec<_>>(),
                        );
                    }
                    Err(e) => eprintln!("thaw: reading which module pages {id} used: {e}"),
                }
            }
            let stored = if self.provisional {
                store.set_provisional_working_set(&id, &ws)
            } else {
                store.set_working_set(&id, &ws)
            };
            if let Err(e) = stored {
                eprintln!("thaw: storing the working set of {id}: {e}");
            }
        }
    }
}

/// Shared images per snapshot (`shared` mode), kept by the worker.
#[derive(Debug, Default)]
pub struct SharedImages(Mutex<HashMap<SnapshotId, Arc<SharedImage>>>);

impl SharedImages {
    fn get(&self, id: &SnapshotId, len: usize) -> Result<Arc<SharedImage>, WorkerError> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(img) = map.get(id) {
            return Ok(img.clone());
        }
        // shmem, not hugetlbfs: clones map the image MAP_PRIVATE, and a hugetlb
        // copy-on-write or fill that finds the pool empty raises SIGBUS in whoever
        // touched the page (possibly the VMM itself), which would take the host
        // process down. shmem pages never run out that way.
        let img = Arc::new(SharedImage::create(len, false).map_err(WorkerError::SharedImage)?);
        map.insert(*id, img.clone());
        Ok(img)
    }
}

/// Hugetlbfs images of the precompiled module's region, shared by every lazily
/// restored clone whose snapshot holds the same chunks there (one runtime = one
/// image): the module is read-only after load, so clones map it privately and
/// read it for free instead of each copying ~60 MiB through the pager.
///
/// An image is built on a background thread the first time a restore asks for it;
/// restores before it is ready page the module region in like the rest of memory
/// (the working set includes the module chunks the function uses), so the first
/// restore in a fresh process does not wait for 60 MiB to be read and decompressed.
#[derive(Debug, Default)]
pub struct ModuleImages(
    Mutex<HashMap<Vec<Option<ChunkId>>, ModuleImage>>,
    /// Keep images private to this process (no hugetlbfs files shared across processes).
    std::sync::atomic::AtomicBool,
);

#[derive(Debug)]
enum ModuleImage {
    Building,
    Ready(Arc<thaw_pager::HugeMemfd>),
    /// The build failed (no huge pages, a bad chunk): restores page the module in.
    Failed,
}

/// Where the image of `chunks` is shared across processes (a hugetlbfs file named by the
/// chunks' content hashes), if a hugetlbfs mount is available (`pager::hugetlbfs_dir`).
fn shared_image_path(chunks: &[Option<ChunkId>]) -> Option<std::path::PathBuf> {
    let dir = thaw_pager::hugetlbfs_dir()?;
    let mut h = blake3::Hasher::new();
    for c in chunks {
        h.update(c.map_or_else(String::new, |c| c.to_string()).as_bytes());
        h.update(b"/");
    }
    Some(dir.join(format!("thaw-module-{}", &h.finalize().to_hex()[..32])))
}

/// Removes temporary module images (`thaw-module-<key>.<pid>.tmp`) whose builder process
/// is gone: a process that exits mid-build leaves one behind, and hugetlbfs files hold
/// their huge pages until deleted.
fn remove_abandoned_builds(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("thaw-module-")) else {
            continue;
        };
        let pid = rest
            .strip_suffix(".tmp")
            .and_then(|r| r.rsplit_once('.'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl ModuleImages {
    /// Keeps this worker's module images to itself: no hugetlbfs file is opened or
    /// published (tests that must see their own chunks read).
    pub fn set_private_only(&self, private: bool) {
        self.1.store(private, std::sync::atomic::Ordering::Relaxed);
    }

    fn private_only(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The image for `chunks` (a 2 MiB-aligned run of the snapshot), if it is built: in
    /// this process, or by another one on the hugetlbfs mount (so the first restore of a
    /// fresh process maps the module instead of paging ~60 MiB in).
    fn ready(
        &self,
        chunks: &[Option<ChunkId>],
        chunk_size: usize,
    ) -> Option<Arc<thaw_pager::HugeMemfd>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(chunks) {
            Some(ModuleImage::Ready(img)) => return Some(img.clone()),
            Some(_) => return None,
            None => {}
        }
        if self.private_only() {
            return None;
        }
        let path = shared_image_path(chunks)?;
        let img =
            Arc::new(thaw_pager::HugeMemfd::open_file(&path, chunks.len() * chunk_size).ok()?);
        map.insert(chunks.to_vec(), ModuleImage::Ready(img.clone()));
        Some(img)
    }

    /// Starts building the image for `chunks` on a background thread, unless it is
    /// built, being built or failed before. Called once a restore is done with the
    /// CPU, so the build does not slow it down.
    fn build_in_background(
        self: &Arc<Self>,
        store: &Store,
        chunks: &[Option<ChunkId>],
        chunk_size: usize,
    ) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(chunks) {
            return;
        }
        map.insert(chunks.to_vec(), ModuleImage::Building);
        let (images, store, key) = (Arc::downgrade(self), store.clone(), chunks.to_vec());
        let shared = !self.private_only();
        let spawned = std::thread::Builder::new()
            .name("thaw-module-image".into())
            .spawn(move || {
                let built = Self::build(&store, &key, chunk_size, shared);
                if let Some(images) = images.upgrade() {
                    let mut map = images.0.lock().unwrap_or_else(|e| e.into_inner());
                    map.insert(key, built.map_or(ModuleImage::Failed, ModuleImage::Ready));
                }
            });
        if spawned.is_err() {
            map.insert(chunks.to_vec(), ModuleImage::Failed);
        }
    }

    /// Waits until no image is being built (tests and benchmarks that want the
    /// steady state).
    pub fn wait_built(&self) {
        let building = || {
            let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.values().any(|m| matches!(m, ModuleImage::Building))
        };
        while building() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Reads every chunk of the run into a new hugetlbfs image: the disk reads all
    /// at once, then each chunk decompressed straight into the image (no buffer, no
    /// copy, not cached: the image is the cache), on one thread (restores keep the
    /// other cores). All-zero chunks stay untouched (hugetlbfs pages start zeroed).
    ///
    /// With a hugetlbfs mount the image is a file there, written under a temporary name
    /// and renamed into place when complete, so other processes (and this one's later
    /// runs) map it instead of building their own; else a private memfd.
    fn build(
        store: &Store,
        chunks: &[Option<ChunkId>],
        cs: usize,
        shared: bool,
    ) -> Option<Arc<thaw_pager::HugeMemfd>> {
        let len = chunks.len() * cs;
        let shared = shared
            .then(|| shared_image_path(chunks))
            .flatten()
            .and_then(|path| {
                remove_abandoned_builds(path.parent()?);
                let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
                let _ = std::fs::remove_file(&tmp);
                thaw_pager::HugeMemfd::create_file(&tmp, len)
                    .ok()
                    .map(|img| (img, tmp, path))
            });
        let (mut img, publish) = match shared {
            Some((img, tmp, path)) => (img, Some((tmp, path))),
            None => (thaw_pager::HugeMemfd::create(len).ok()?, None),
        };
        store.readahead(chunks.iter().flatten());
        let filled = img.fill_parallel(cs, 1, |i, dst| match chunks.get(i) {
            Some(Some(id)) => store.read_chunk_into_uncached(id, dst).map(drop),
            _ => Ok(()),
        });
        match filled {
            Ok(()) => {
                if let Some((tmp, path)) = publish {
                    if let Err(e) = std::fs::rename(&tmp, &path) {
                        eprintln!("thaw: publishing the module image {}: {e}", path.display());
                        let _ = std::fs::remove_file(&tmp);
                    }
                }
                Some(Arc::new(img))
            }
            Err(e) => {
                if let Some((tmp, _)) = publish {
                    let _ = std::fs::remove_file(&tmp);
                }
                eprintln!("thaw: building the module image: {e} (restores page the module in)");
                None
            }
        }
    }
}

/// The lazy modes' per-worker state.
#[derive(Debug, Default)]
pub struct LazyCaches {
    /// Per snapshot: shared clone images.
    pub shared: SharedImages,
    /// Per runtime: the module image (shared by every snapshot of the runtime).
    pub modules: Arc<ModuleImages>,
    /// Per worker: ready VM shells.
    pub shells: ShellPool,
    /// Working sets by snapshot, once recorded or read.
    pub working_sets: Mutex<HashMap<SnapshotId, Arc<Vec<u32>>>>,
    /// Guest range of the runtime's precompiled module (2 MiB aligned), if known.
    pub module_region: Option<(u64, u64)>,
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

/// The chunks the VMM touches on every restore and invocation (step 3): the one
/// holding the boot info, the mailboxes and the log, and the first chunk of the
/// request and of the response areas. The rest of those areas (only large payloads
/// reach it) is paged in on demand like guest memory: the VMM's own accesses fault
/// into the pager too, which always serves them (small pages when no huge page is
/// free), so they are not backed up front (18 MiB of huge pages per instance).
fn vmm_chunks(chunk_size: u64) -> impl Iterator<Item = u32> + Clone {
    use thaw_abi::layout::{BOOT_INFO, LOG, LOG_SIZE, REQUEST, RESPONSE};
    let span = move |lo: u64, hi: u64| (lo / chunk_size) as u32..hi.div_ceil(chunk_size) as u32;
    let mut chunks: Vec<u32> = span(BOOT_INFO, LOG + LOG_SIZE)
        .chain(span(REQUEST, REQUEST + 1))
        .chain(span(RESPONSE, RESPONSE + 1))
        .collect();
    chunks.dedup();
    chunks.into_iter()
}

/// Restores a VM whose memory the pager fills lazily (see the module doc).
pub fn lazy_restore(
    store: &Store,
    snap: &OpenedSnapshot,
    mode: MemoryMode,
    caches: &LazyCaches,
) -> Result<(Vm, LazyMemory, std::time::Duration), WorkerError> {
    let t0 = std::time::Instant::now();
    let len = snap.manifest.meta.memory_size;
    let cs = snap.manifest.chunk_size;
    // The working set may have been recorded since `snap` was read. A provisional
    // one (recorded at build time) is prefetched and recorded on top of.
    let (working_set, provisional) = match &snap.manifest.working_set {
        Some(ws) => (Some(ws.clone()), false),
        None => match caches.working_set(store, &snap.manifest.id)? {
            Some((ws, provisional)) => (Some(ws), provisional),
            None => (None, false),
        },
    };
    // Huge pages this restore installs right away (the VMM's areas and the working
    // set) plus room for the guest to grow: with fewer free, 4 KiB pages instead,
    // so a full pool slows restores down rather than failing them.
    let huge_pages_needed = vmm_chunks(cs).count()
        + working_set.as_ref().map_or(0, Vec::len) * cs as usize / thaw_abi::PAGE_2M as usize
        + HUGE_PAGE_HEADROOM;
    let huge_pages_ok = || thaw_pager::free_huge_pages() >= huge_pages_needed;
    // 1. The VM and its guest RAM: a ready shell from the pool when there is one.
    let (mut vm, mut backing, mut registered) = match mode {
        MemoryMode::Shared => {
            let image = caches.shared.get(&snap.manifest.id, len as usize)?;
            let ram = GuestRam::new(
                len,
                Backing::FilePrivate(std::os::fd::AsFd::as_fd(image.fd())),
            )?;
            (
                Vm::with_ram(ram)?,
                thaw_pager::Backing::SharedMemfd(image),
                None,
            )
        }
        _ if !huge_pages_ok() => private_vm(len, false)?,
        _ => match caches.shells.take(len) {
            Some(shell) => (
                shell.vm,
                thaw_pager::Backing::Hugetlb,
                Some(shell.registered),
            ),
            None => private_vm(len, true)?,
        },
    };
    // 1b. The module's region, mapped privately from the shared hugetlbfs image
    //     when it is built (else paged in like the rest; it is built after step 4).
    let module_run: Option<(u64, u64, Vec<Option<ChunkId>>)> =
        // Also over 4 KiB guest RAM (a short pool): the image is already built, and
        // mapping it saves each such instance ~60 MiB of private module pages.
        match (mode, caches.module_region) {
            (MemoryMode::Uffd | MemoryMode::UffdPrefetch, Some((lo, hi)))
                if lo % cs == 0 && hi % cs == 0 =>
            {
                let ids: Vec<Option<ChunkId>> = snap.manifest.chunks().map(|c| c.id).collect();
                ids.get((lo / cs) as usize..(hi / cs) as usize)
                    .map(|run| (lo, hi, run.to_vec()))
            }
            _ => None,
        };
    let module_chunks = match &module_run {
        Some((lo, hi, run)) => match caches.modules.ready(run, cs as usize) {
            Some(image) => {
                let fd = std::os::fd::AsFd::as_fd(image.fd());
                match vm.ram_mut().map_image_private(*lo, hi - lo, fd) {
                    Ok(()) => (lo / cs) as u32..(hi / cs) as u32,
                    // No huge pages left to reserve for the mapping: start over on
                    // fresh RAM (this one may have lost the range) and page the
                    // module in like the rest.
                    Err(thaw_vmm::VmError::MapMemory(e))
                        if e.raw_os_error() == Some(libc::ENOMEM) =>
                    {
                        warn_once(&format!(
                            "no huge pages left to map the module image ({e}); paging it in instead (slower restores)"
                        ));
                        (vm, backing, registered) = private_vm(len, huge_pages_ok())?;
                        0..0
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => 0..0,
        },
        None => 0..0,
    };
    let hugetlb = backing_is_hugetlb(&backing);
    // 2b. Start the disk reads of every chunk steps 3-4 install, all at once (a
    //     no-op for chunks the decompressed-chunk cache holds).
    let ahead: Vec<ChunkId> = vmm_chunks(cs)
        .chain(
            working_set
                .iter()
                .flatten()
                .copied()
                .filter(|i| mode == MemoryMode::UffdPrefetch && !module_chunks.contains(i)),
        )
        .filter_map(|i| snap.manifest.chunk(i)?.id)
        .collect();
    store.readahead(&ahead);
    // 3 (before the pager registers the range, on hugetlbfs). What the VMM
    //    touches itself: populated first (a pool shell comes populated; running
    //    out of huge pages fails here, not with a SIGBUS in the VMM thread later),
    //    then the data chunks copied in. On 4 KiB backings the pager installs them
    //    instead (below): populating 18 MiB of small pages costs far more.
    if hugetlb {
        for i in vmm_chunks(cs) {
            let Some(c) = snap.manifest.chunk(i) else {
                continue;
            };
            if let Some(id) = c.id {
                // Straight from the chunk cache into guest RAM (one copy).
                vm.ram_mut()
                    .fill_with(c.guest_addr, c.len, |dst| store.read_chunk_into(&id, dst))?
                    .map_err(|e| crate::restore::corrupt(store, &snap.manifest, e))?;
            }
        }
    }
    // 2. The pager.
    let record = matches!(mode, MemoryMode::Uffd | MemoryMode::UffdPrefetch)
        && (working_set.is_none() || provisional);
    let region = GuestRegion {
        host_addr: thaw_pager::HostAddr(vm.ram().host_addr().0),
        len: len as usize,
        backing,
    };
    let source = Arc::new(StoreSource::new(store.clone(), snap));
    let opts = PagerOptions {
        record,
        ..Default::default()
    };
    let handle = match registered {
        // A pool shell: registered ahead of time over this same RAM.
        Some(registered) => Pager::start_registered(registered, source, opts),
        None => {
            #[allow(unsafe_code)]
            // SAFETY: guest RAM is a 2 MiB-aligned mapping of `len` bytes of the kind
            // `backing` names, populated only where step 3 filled it (the pager
            // never overwrites present pages). It is owned by `vm`, which lives in
            // the same `Instance` as the returned `LazyMemory`, declared before the
            // VM, so the pager stops before the mapping is unmapped. The VMM never
            // holds Rust references into guest RAM (it copies through raw
            // pointers), and it touches only the areas step 3 (or the blocking
            // prefetch below) installed.
            unsafe {
                Pager::start(region, source, opts)
            }
        }
    }
    .map_err(WorkerError::Pager)?;
    if !hugetlb {
        let vmm: Vec<u32> = vmm_chunks(cs).collect();
        handle
            .prefetch_blocking(&vmm)
            .map_err(|e| pager_fault(store, &snap.manifest.id, e))?;
    }
    // 4. The working set (minus what the module image already maps), installed
    //    before the vCPU resumes: with the module shared it is ~10 blocks, and a
    //    background prefetch mostly lost the race to the vCPU's own faults.
    if mode == MemoryMode::UffdPrefetch {
        if let Some(ws) = &working_set {
            let ws: Vec<u32> = ws
                .iter()
                .copied()
                .filter(|i| !module_chunks.contains(i))
                .collect();
            handle
                .prefetch_blocking(&ws)
                .map_err(|e| pager_fault(store, &snap.manifest.id, e))?;
        }
    }
    // 4b. No module image yet (a fresh process): build it now that this restore
    //     is done with the CPU, for the restores after it.
    if let (Some((_, _, run)), true) = (&module_run, module_chunks.is_empty()) {
        caches.modules.build_in_background(store, run, cs as usize);
    }
    // 5. The vCPU.
    let memory_ready = t0.elapsed();
    vm.load_state(&snap.vm_state)?;
    let record_to = record.then(|| (store.clone(), snap.manifest.id));
    let module_probe = (record && !module_chunks.is_empty()).then(|| ModuleProbe {
        addr: thaw_pager::HostAddr(
            vm.ram().host_addr().0 + u64::from(module_chunks.start) as usize * cs as usize,
        ),
        len: module_chunks.len() * cs as usize,
        first_chunk: module_chunks.start,
        chunk_size: cs as usize,
    });
    Ok((
        vm,
        LazyMemory {
            handle,
            snapshot: (store.clone(), snap.manifest.id),
            record_to,
            base: match (&working_set, provisional && record) {
                (Some(ws), true) => ws.clone(),
                _ => Vec::new(),
            },
            provisional: false,
            mode,
            module_probe,
        },
        memory_ready,
    ))
}

/// A VM over fresh guest RAM of its own: on hugetlbfs (if `huge` and the VMM's areas
/// can be backed there now), else on 4 KiB pages (with a warning).
fn private_vm(
    len: u64,
    huge: bool,
) -> Result<(Vm, thaw_pager::Backing, Option<thaw_pager::Registered>), WorkerError> {
    let why = match huge.then(|| GuestRam::new(len, Backing::Hugetlb)) {
        Some(Ok(ram)) => match populate_vmm_areas(&ram) {
            Ok(()) => return Ok((Vm::with_ram(ram)?, thaw_pager::Backing::Hugetlb, None)),
            Err(e) => e.to_string(),
        },
        Some(Err(e)) => e.to_string(),
        None => "too few free huge pages".into(),
    };
    warn_once(&format!(
        "no huge pages for a {} MiB guest ({why}); using 4 KiB pages (slower first touch)",
        len >> 20
    ));
    let ram = GuestRam::new(len, Backing::Anonymous)?;
    Ok((Vm::with_ram(ram)?, thaw_pager::Backing::Anonymous, None))
}

/// Backs the chunks the VMM touches on every invocation ([`vmm_chunks`]) with
/// (zeroed) memory.
fn populate_vmm_areas(ram: &GuestRam) -> Result<(), WorkerError> {
    let cs = thaw_abi::PAGE_2M;
    for c in vmm_chunks(cs) {
        ram.populate(u64::from(c) * cs, cs)?;
    }
    Ok(())
}

/// Ready VM shells for lazy restores: a KVM VM and vCPU over unpopulated hugetlbfs
/// guest RAM whose VMM areas are already backed. A background thread keeps
/// [`SHELLS_PER_SIZE`] of the last requested size, so a restore skips VM creation
/// and page allocation (~2 ms here). Empty pool: the restore builds its own.
#[derive(Debug, Default, Clone)]
pub struct ShellPool(Arc<PoolInner>);

/// Shells kept ready per guest size.
pub const SHELLS_PER_SIZE: usize = 2;

#[derive(Debug, Default)]
struct PoolInner {
    state: Mutex<PoolState>,
    wake: std::sync::Condvar,
}

/// A ready VM: its RAM already registered with a userfaultfd (declared first, so
/// it is closed before the RAM is unmapped).
#[derive(Debug)]
pub struct Shell {
    pub registered: thaw_pager::Registered,
    pub vm: Vm,
}

#[derive(Debug, Default)]
struct PoolState {
    ready: HashMap<u64, Vec<Shell>>,
    /// The guest size to keep shells of (the last one asked for).
    wanted: Option<u64>,
    started: bool,
    /// Building a shell failed (no huge pages): stop refilling until asked again.
    failed: bool,
}

impl ShellPool {
    /// A ready shell of `len` bytes, if any; asks the refill thread for more.
    pub fn take(&self, len: u64) -> Option<Shell> {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.wanted != Some(len) {
            st.ready.clear();
            st.wanted = Some(len);
        }
        st.failed = false;
        if !st.started {
            st.started = true;
            let weak = Arc::downgrade(&self.0);
            let _ = std::thread::Builder::new()
                .name("thaw-shells".into())
                .spawn(move || refill(weak));
        }
        let shell = st.ready.get_mut(&len).and_then(Vec::pop);
        self.0.wake.notify_one();
        shell
    }
}

/// A shell: hugetlbfs RAM with the VMM areas backed, a VM over it, the RAM
/// registered with a userfaultfd.
fn build_shell(len: u64) -> Result<Shell, WorkerError> {
    let ram = GuestRam::new(len, Backing::Hugetlb)?;
    populate_vmm_areas(&ram)?;
    let vm = Vm::with_ram(ram)?;
    let region = GuestRegion {
        host_addr: thaw_pager::HostAddr(vm.ram().host_addr().0),
        len: len as usize,
        backing: thaw_pager::Backing::Hugetlb,
    };
    #[allow(unsafe_code)]
    // SAFETY: the range is the shell VM's own hugetlbfs RAM (2 MiB aligned, `len`
    // bytes), populated only in the VMM areas; the `Registered` lives in the same
    // `Shell` as the VM, declared first, and moves into the restored instance's
    // pager, which is declared before its VM: the mapping outlives both. The VMM
    // touches only the populated areas.
    let registered = unsafe { Pager::register(region) }.map_err(WorkerError::Pager)?;
    Ok(Shell { registered, vm })
}

/// The refill loop: build shells until the pool is full, sleep until woken; exits
/// when the pool is dropped.
fn refill(pool: std::sync::Weak<PoolInner>) {
    loop {
        let Some(inner) = pool.upgrade() else { return };
        let len = {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let need = st.wanted.filter(|l| {
                    !st.failed && st.ready.get(l).map_or(0, Vec::len) < SHELLS_PER_SIZE
                });
                if let Some(len) = need {
                    break len;
                }
                let (next, _) = inner
                    .wake
                    .wait_timeout(st, std::time::Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner());
                st = next;
                if Arc::strong_count(&inner) == 1 {
                    return;
                }
            }
        };
        let shell = build_shell(len);
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        match shell {
            Ok(vm) if st.wanted == Some(len) => st.ready.entry(len).or_default().push(vm),
            Ok(_) => {}
            Err(_) => st.failed = true,
        }
    }
}

/// A block of snapshot `id` the pager could not serve; a corrupt chunk marks the snapshot bad.
pub fn pager_fault(store: &Store, id: &SnapshotId, e: thaw_pager::PagerError) -> WorkerError {
    let e = WorkerError::PagerFault {
        snapshot: id.to_string(),
        source: e,
    };
    if e.is_corrupt() {
        let _ = store.mark_bad(id, &crate::error::error_chain(&e));
    }
    e
}

fn backing_is_hugetlb(b: &thaw_pager::Backing) -> bool {
    matches!(b, thaw_pager::Backing::Hugetlb)
}

fn warn_once(msg: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| eprintln!("thaw: warning: {msg}"));
}
