//! Working-set images: per snapshot, a hugetlbfs file holding the decompressed blocks a
//! `uffd+prefetch` restore installs before its vCPU resumes (the VMM's hot chunks and
//! the recorded working set outside the runtime's module region), shared by every
//! process on the host.
//!
//! Without one, a process's first restore of a snapshot decompresses and verifies those
//! ~13 blocks (~26 MiB of zstd and blake3, ~11 ms on this host's 2 cores), because its
//! decompressed-chunk cache starts empty. With one, it copies them straight from the
//! image, as a restore in a running service copies them from its cache.
//!
//! - **Built** in the background from the chunk cache, as soon as a recording restore
//!   stores the snapshot's final working set ([`BuildOnRecord`]; it just read every one of
//!   those blocks through the store), or after a later restore that installed the set
//!   through the store and found no image; written under a temporary name, renamed into
//!   place when complete.
//! - **Named** by a hash of the block list (chunk indices and content hashes), so an
//!   image is exactly the bytes of the chunks it names and never goes stale: a new
//!   working set or a rebuilt snapshot names a different file.
//! - **Trusted** only if this user owns it and nobody else may write it
//!   (`HugeMemfd::open_file`). Its bytes were verified against their hashes when they
//!   were read to build it; restores copy from it and never map it, so no guest writes it.
//! - **Bounded**: at most [`MAX_IMAGES`] files on the mount (least recently used removed
//!   first), built only while at least [`FREE_FLOOR`] huge pages stay free, and every
//!   image removed when a restore finds the pool short (they are a cache; guests come
//!   first). Off when the store keeps no decompressed chunks (`cache_bytes = 0`: the
//!   evicted-cache benchmark, tests that must read their own chunks) or for a worker
//!   handle without snapshot caches.
use super::shells::vmm_chunks;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use thaw_pager::HugeMemfd;
use thaw_snapshotter::{ChunkId, Manifest, Store};

/// Most working-set images kept on the hugetlbfs mount (~13 huge pages each for hello).
pub const MAX_IMAGES: usize = 32;

/// Huge pages that must stay free after an image is built (restores need them more).
pub const FREE_FLOOR: usize = 512;

/// An image used more recently than this is never removed to make room for a new one:
/// with more snapshots in use than [`MAX_IMAGES`], images would otherwise replace each
/// other on every restore.
pub const KEEP_RECENT: std::time::Duration = std::time::Duration::from_secs(60);

/// How often a process marks an image it keeps using as used (the file's mtime, which
/// every process's least-recently-used cleanup reads).
const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How long this process waits before building an image again after a failed build.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// File name prefix on the hugetlbfs mount.
const PREFIX: &str = "thaw-ws-";

/// What a restore's image would hold: the blocks, in image order, and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePlan {
    key: String,
    blocks: Vec<(u32, ChunkId)>,
    chunk_size: usize,
}

impl ImagePlan {
    /// The image a `uffd+prefetch` restore of `manifest` would copy from: the VMM's
    /// chunks, then `working_set` outside `module` (chunk indices the module image maps),
    /// each once, all-zero chunks left out (they are installed as zeroes). `None` when
    /// chunks are not 2 MiB (an image holds whole huge pages) or nothing is left.
    pub fn new(
        manifest: &Manifest,
        working_set: &[u32],
        module: std::ops::Range<u32>,
    ) -> Option<ImagePlan> {
        let chunks: Vec<Option<ChunkId>> = manifest.chunks().map(|c| c.id).collect();
        Self::from_chunks(&chunks, manifest.chunk_size, working_set, module)
    }

    /// [`ImagePlan::new`] over a snapshot's chunk ids (`None`: an all-zero chunk).
    pub fn from_chunks(
        chunks: &[Option<ChunkId>],
        cs: u64,
        working_set: &[u32],
        module: std::ops::Range<u32>,
    ) -> Option<ImagePlan> {
        if cs != thaw_abi::PAGE_2M {
            return None;
        }
        let mut seen = std::collections::HashSet::new();
        let blocks: Vec<(u32, ChunkId)> = vmm_chunks(cs)
            .chain(working_set.iter().copied().filter(|i| !module.contains(i)))
            .filter(|&i| seen.insert(i))
            .filter_map(|i| Some((i, (*chunks.get(i as usize)?)?)))
            .collect();
        if blocks.is_empty() {
            return None;
        }
        let mut h = blake3::Hasher::new();
        h.update(b"thaw working-set image v1\0");
        h.update(&cs.to_le_bytes());
        for (i, id) in &blocks {
            h.update(&i.to_le_bytes());
            h.update(&id.0);
        }
        Some(ImagePlan {
            key: h.finalize().to_hex()[..32].to_string(),
            blocks,
            chunk_size: cs as usize,
        })
    }

    /// Bytes the image holds.
    pub fn len(&self) -> usize {
        self.blocks.len() * self.chunk_size
    }

    /// Whether it holds nothing (never: `new` refuses that).
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The chunk indices it holds, in image order.
    pub fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.blocks.iter().map(|(i, _)| *i)
    }

    /// Its file name on the hugetlbfs mount.
    pub fn file_name(&self) -> String {
        file_name(&self.key)
    }

    /// The chunk ids it holds, in image order.
    pub fn chunk_ids(&self) -> impl Iterator<Item = &ChunkId> + '_ {
        self.blocks.iter().map(|(_, id)| id)
    }
}

/// What a recording restore needs to build its snapshot's image the moment the final
/// working set is recorded (the blocks are all in the chunk cache then: the restore
/// just read them), so the next process's first restore finds it even when this
/// process's later restores are served by reset VMs and never install the set again.
pub struct BuildOnRecord {
    pub images: Arc<WorkingSetImages>,
    pub store: Store,
    pub chunks: Vec<Option<ChunkId>>,
    pub chunk_size: u64,
    pub module: std::ops::Range<u32>,
}

impl std::fmt::Debug for BuildOnRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOnRecord")
            .field("chunks", &self.chunks.len())
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl BuildOnRecord {
    /// The final working set `ws` was recorded: start building its image.
    pub fn recorded(self, ws: &[u32]) {
        if let Some(plan) = ImagePlan::from_chunks(&self.chunks, self.chunk_size, ws, self.module) {
            self.images.build_in_background(&self.store, plan);
        }
    }
}

/// The file name on the hugetlbfs mount of the image keyed `key`.
fn file_name(key: &str) -> String {
    format!("{PREFIX}{key}")
}

/// Marks the image file at `path` used now (its mtime, which every process's
/// least-recently-used cleanup reads).
fn mark_used(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// A published image and where each chunk sits in it.
#[derive(Debug)]
pub struct WorkingSetImage {
    mem: Arc<HugeMemfd>,
    slots: HashMap<u32, usize>,
    /// Its file, and when this process last marked it used.
    path: Option<PathBuf>,
    touched: Mutex<std::time::Instant>,
}

impl WorkingSetImage {
    fn new(mem: Arc<HugeMemfd>, plan: &ImagePlan) -> Self {
        let slots = plan
            .indices()
            .enumerate()
            .map(|(n, i)| (i, n * plan.chunk_size))
            .collect();
        Self {
            mem,
            slots,
            path: thaw_pager::hugetlbfs_dir().map(|d| d.join(plan.file_name())),
            touched: Mutex::new(std::time::Instant::now()),
        }
    }

    /// Marks the file used (its mtime) if this process has not done so for
    /// [`TOUCH_EVERY`].
    fn touch(&self) {
        let mut at = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        if at.elapsed() < TOUCH_EVERY {
            return;
        }
        *at = std::time::Instant::now();
        if let Some(p) = &self.path {
            mark_used(p);
        }
    }

    /// Chunk `index` in the image: the image and the chunk's offset, if it holds it.
    pub fn chunk(&self, index: u32) -> Option<(Arc<HugeMemfd>, usize)> {
        self.slots.get(&index).map(|&off| (self.mem.clone(), off))
    }

    /// Copies chunk `index` into `dst` (a chunk's length); false if the image lacks it.
    pub fn read_into(&self, index: u32, dst: &mut [u8]) -> bool {
        match self.slots.get(&index) {
            Some(&off) => self.mem.read_at(off, dst).is_ok(),
            None => false,
        }
    }

    /// Whether the image holds chunk `index`.
    pub fn holds(&self, index: u32) -> bool {
        self.slots.contains_key(&index)
    }
}

#[derive(Debug)]
enum Entry {
    Building,
    /// The image and when it was last used (a tick of [`Inner::tick`]).
    Ready(Arc<WorkingSetImage>, u64),
    /// Building failed, or the pool was too low, at this time: this process tries
    /// again after [`RETRY_AFTER`].
    Failed(std::time::Instant),
}

#[derive(Debug, Default)]
struct Inner {
    images: HashMap<String, Entry>,
    tick: u64,
}

/// This process's working-set images (see the module doc).
#[derive(Debug, Default)]
pub struct WorkingSetImages {
    inner: Mutex<Inner>,
    disabled: AtomicBool,
    restores: std::sync::atomic::AtomicU64,
    built: std::sync::atomic::AtomicU64,
}

/// What `/metrics` shows of a worker's working-set images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageStats {
    /// Images this process maps now.
    pub mapped: usize,
    /// Bytes of huge pages they hold (shared with every process that maps them).
    pub mapped_bytes: u64,
    /// Restores whose working set was copied from an image.
    pub restores: u64,
    /// Images this process built and published.
    pub built: u64,
}

impl WorkingSetImages {
    /// The numbers `/metrics` shows.
    pub fn stats(&self) -> ImageStats {
        let inner = self.lock();
        let (mapped, mapped_bytes) = inner
            .images
            .values()
            .filter_map(|e| match e {
                Entry::Ready(img, _) => Some(img.mem.len() as u64),
                _ => None,
            })
            .fold((0, 0), |(n, b), len| (n + 1, b + len));
        ImageStats {
            mapped,
            mapped_bytes,
            restores: self.restores.load(Ordering::Relaxed),
            built: self.built.load(Ordering::Relaxed),
        }
    }

    /// Turns the images on (the default) or off for this handle.
    pub fn set_enabled(&self, on: bool) {
        self.disabled.store(!on, Ordering::Relaxed);
    }

    /// Whether restores from `store` use and build images: on, a store that caches
    /// decompressed chunks, and a hugetlbfs mount to share them on.
    pub fn enabled(&self, store: &Store) -> bool {
        !self.disabled.load(Ordering::Relaxed)
            && store.options().cache_bytes > 0
            && thaw_pager::hugetlbfs_dir().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The image `plan` names, if it is built: by this process, or by another one on the
    /// hugetlbfs mount. Counted as a restore served by an image.
    pub fn ready(&self, plan: &ImagePlan) -> Option<Arc<WorkingSetImage>> {
        let img = self.find(plan)?;
        self.restores.fetch_add(1, Ordering::Relaxed);
        Some(img)
    }

    fn find(&self, plan: &ImagePlan) -> Option<Arc<WorkingSetImage>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        match inner.images.get_mut(&plan.key) {
            Some(Entry::Ready(img, used)) => {
                *used = tick;
                img.touch();
                return Some(img.clone());
            }
            Some(Entry::Building) => return None,
            // Another process may have built it.
            Some(Entry::Failed(_)) | None => {}
        }
        let path = thaw_pager::hugetlbfs_dir()?.join(plan.file_name());
        let mem = HugeMemfd::open_file(&path, plan.len()).ok()?;
        mark_used(&path);
        let img = Arc::new(WorkingSetImage::new(Arc::new(mem), plan));
        inner
            .images
            .insert(plan.key.clone(), Entry::Ready(img.clone(), tick));
        trim(&mut inner);
        Some(img)
    }

    /// Starts building `plan`'s image on a background thread, unless this process built,
    /// is building or failed to build it. Called once a restore has read the blocks and
    /// is done with the CPU: the thread copies them from the store's chunk cache, taken
    /// here (so it holds no store handle: a store can be reopened the moment its worker
    /// is gone); if the cache no longer holds one of them, no image is built.
    pub fn build_in_background(self: &Arc<Self>, store: &Store, plan: ImagePlan) {
        let mut inner = self.lock();
        match inner.images.get(&plan.key) {
            Some(Entry::Failed(at)) if at.elapsed() >= RETRY_AFTER => {}
            Some(_) => return,
            None => {}
        }
        let Some(chunks) = plan
            .blocks
            .iter()
            .map(|(_, id)| store.cached_chunk(id))
            .collect::<Option<Vec<_>>>()
        else {
            return;
        };
        inner.images.insert(plan.key.clone(), Entry::Building);
        let (images, plan2) = (Arc::downgrade(self), plan.clone());
        let spawned = std::thread::Builder::new()
            .name("thaw-ws-image".into())
            .spawn(move || {
                let built = build(&plan2, &chunks);
                if let Some(images) = images.upgrade() {
                    let mut inner = images.lock();
                    inner.tick += 1;
                    let entry = match built {
                        Some(mem) => {
                            images.built.fetch_add(1, Ordering::Relaxed);
                            Entry::Ready(Arc::new(WorkingSetImage::new(mem, &plan2)), inner.tick)
                        }
                        None => Entry::Failed(std::time::Instant::now()),
                    };
                    inner.images.insert(plan2.key, entry);
                    trim(&mut inner);
                }
            });
        if spawned.is_err() {
            inner
                .images
                .insert(plan.key, Entry::Failed(std::time::Instant::now()));
        }
    }

    /// Waits until no image is being built (`thaw run` before it exits, tests, benchmarks).
    pub fn wait_built(&self) {
        let building = || {
            self.lock()
                .images
                .values()
                .any(|e| matches!(e, Entry::Building))
        };
        while building() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Lets every image go: this process's mappings and every image file on the mount
    /// (a restore found the huge-page pool short). Pages another process still maps are
    /// freed when it lets go of them too.
    pub fn release_all(&self) {
        self.lock()
            .images
            .retain(|_, e| matches!(e, Entry::Building));
        if let Some(dir) = thaw_pager::hugetlbfs_dir() {
            for (path, _) in published(&dir) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Lets go of the images this handle maps and deletes their files (tests, and a
    /// caller that knows they are no longer wanted); other images stay.
    pub fn remove_mapped(&self) {
        let mut inner = self.lock();
        let dir = thaw_pager::hugetlbfs_dir();
        inner.images.retain(|key, e| {
            if !matches!(e, Entry::Ready(..)) {
                return true;
            }
            if let Some(dir) = &dir {
                let _ = std::fs::remove_file(dir.join(file_name(key)));
            }
            false
        });
    }
}

/// Keeps this process's map bounded: at most [`MAX_IMAGES`] mapped (least recently used
/// dropped) and a bounded number of remembered failures.
fn trim(inner: &mut Inner) {
    loop {
        let ready: Vec<(&String, u64)> = inner
            .images
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Ready(_, used) => Some((k, *used)),
                _ => None,
            })
            .collect();
        if ready.len() <= MAX_IMAGES {
            break;
        }
        let Some(oldest) = ready
            .iter()
            .min_by_key(|(_, t)| *t)
            .map(|(k, _)| (*k).clone())
        else {
            break;
        };
        inner.images.remove(&oldest);
    }
    if inner.images.len() > 4 * MAX_IMAGES {
        inner.images.retain(|_, e| !matches!(e, Entry::Failed(_)));
    }
}

/// The published images on the mount, with their last-use times.
fn published(dir: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(PREFIX) && !n.ends_with(".tmp"))
        })
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.modified().ok()?)))
        .collect()
}

/// Whether a new image may be published in `dir`: fewer than [`MAX_IMAGES`] are there,
/// or the least recently used one was last used [`KEEP_RECENT`] ago or longer.
fn room_for_one_more(dir: &Path) -> bool {
    let files = published(dir);
    files.len() < MAX_IMAGES
        || files
            .iter()
            .map(|(_, t)| *t)
            .min()
            .is_some_and(|oldest| oldest.elapsed().is_ok_and(|age| age >= KEEP_RECENT))
}

/// Removes the least recently used published images until at most `keep` are left.
fn evict_to(dir: &Path, keep: usize) {
    let mut files = published(dir);
    if files.len() <= keep {
        return;
    }
    files.sort_by_key(|(_, t)| *t);
    let extra = files.len() - keep;
    for (path, _) in files.into_iter().take(extra) {
        let _ = std::fs::remove_file(path);
    }
}

/// Builds `plan`'s image as a file on the hugetlbfs mount from `chunks` (its blocks'
/// verified bytes, in order, from the store's chunk cache), written under a temporary
/// name, older images evicted to make room, then renamed into place.
fn build(plan: &ImagePlan, chunks: &[Arc<Vec<u8>>]) -> Option<Arc<HugeMemfd>> {
    let dir = thaw_pager::hugetlbfs_dir()?;
    let pages = plan.len() / thaw_pager::HUGE_PAGE_SIZE;
    if thaw_pager::free_huge_pages() < pages + FREE_FLOOR || !room_for_one_more(&dir) {
        return None;
    }
    super::images::remove_abandoned_builds(&dir, PREFIX);
    let path = dir.join(plan.file_name());
    let tmp = super::images::build_temp_path(&path);
    let mut mem = HugeMemfd::create_file(&tmp, plan.len()).ok()?;
    let filled = mem.fill_parallel(plan.chunk_size, 1, |slot, dst| {
        let bytes = chunks.get(slot).ok_or(())?;
        let n = bytes.len().min(dst.len());
        dst[..n].copy_from_slice(&bytes[..n]);
        Ok::<(), ()>(())
    });
    let published = filled.is_ok() && {
        evict_to(&dir, MAX_IMAGES - 1);
        std::fs::rename(&tmp, &path).is_ok()
    };
    if !published {
        let _ = std::fs::remove_file(&tmp);
        return None;
    }
    Some(Arc::new(mem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, age_s: u64) {
        std::fs::write(path, b"x").unwrap();
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(age_s);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn test_eviction_removes_the_least_recently_used_images_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, age) in [("thaw-ws-a", 30), ("thaw-ws-b", 10), ("thaw-ws-c", 20)] {
            touch(&d.join(name), age);
        }
        // Not images: a build under way, the module image, a stranger's file.
        touch(&d.join("thaw-ws-d.123-0.tmp"), 99);
        touch(&d.join("thaw-module-x"), 99);
        touch(&d.join("other"), 99);
        evict_to(d, 1);
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["other", "thaw-module-x", "thaw-ws-b", "thaw-ws-d.123-0.tmp"]
        );
    }

    #[test]
    fn test_recently_used_images_are_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for k in 0..MAX_IMAGES - 1 {
            touch(&d.join(format!("thaw-ws-{k}")), 5);
        }
        assert!(room_for_one_more(d), "below the limit");
        touch(&d.join("thaw-ws-last"), 5);
        assert!(!room_for_one_more(d), "all in use within KEEP_RECENT");
        touch(&d.join("thaw-ws-0"), KEEP_RECENT.as_secs() + 5);
        assert!(room_for_one_more(d), "the oldest may go");
        evict_to(d, MAX_IMAGES - 1);
        assert!(!d.join("thaw-ws-0").exists());
    }

    #[test]
    fn test_the_in_process_map_stays_bounded() {
        let mut inner = Inner::default();
        let mem = match HugeMemfd::create(thaw_pager::HUGE_PAGE_SIZE) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                eprintln!("SKIPPED: no huge page for the test image ({e})");
                return;
            }
        };
        let plan = |k: usize| ImagePlan {
            key: format!("{k:032}"),
            blocks: vec![(0, ChunkId([k as u8; 32]))],
            chunk_size: thaw_pager::HUGE_PAGE_SIZE,
        };
        for k in 0..MAX_IMAGES + 5 {
            let img = Arc::new(WorkingSetImage::new(mem.clone(), &plan(k)));
            inner
                .images
                .insert(plan(k).key, Entry::Ready(img, k as u64));
            trim(&mut inner);
        }
        for k in 0..5 * MAX_IMAGES {
            inner.images.insert(
                format!("failed{k}"),
                Entry::Failed(std::time::Instant::now()),
            );
            trim(&mut inner);
        }
        let ready = |k: usize| matches!(inner.images.get(&plan(k).key), Some(Entry::Ready(..)));
        assert!((0..5).all(|k| !ready(k)), "the oldest were dropped");
        assert!((5..MAX_IMAGES + 5).all(ready));
        assert!(inner.images.len() <= 4 * MAX_IMAGES + 1);
    }
}
