//! Images shared by many clones: per snapshot, the `shared` mode's lazily filled memfd
//! ([`SharedImages`]); per runtime, the hugetlbfs image of the precompiled module's region
//! ([`ModuleImages`]), built once in the background and mapped privately by every clone.
use crate::error::WorkerError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use thaw_pager::SharedImage;
use thaw_snapshotter::{ChunkId, SnapshotId, Store};

/// Shared images per snapshot (`shared` mode), kept by the worker.
#[derive(Debug, Default)]
pub struct SharedImages(Mutex<HashMap<SnapshotId, Arc<SharedImage>>>);

impl SharedImages {
    pub(super) fn get(&self, id: &SnapshotId, len: usize) -> Result<Arc<SharedImage>, WorkerError> {
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

/// Where a build of the image at `path` writes before renaming it into place:
/// `<path>.<pid>-<n>.tmp`, unique per build (two workers of one process may build the
/// same image at once, and one must never rename the other's half-filled file), in the
/// form [`remove_abandoned_builds`] reads the builder's pid back from.
pub(super) fn build_temp_path(path: &std::path::Path) -> std::path::PathBuf {
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_extension(format!("{}-{n}.tmp", std::process::id()))
}

/// Removes temporary images (`<prefix><key>.<pid>-<n>.tmp`, e.g. `thaw-module-`) whose
/// builder process is gone: a process that exits mid-build leaves one behind, and
/// hugetlbfs files hold their huge pages until deleted.
pub(super) fn remove_abandoned_builds(dir: &std::path::Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let pid = rest
            .strip_suffix(".tmp")
            .and_then(|r| r.rsplit_once('.'))
            .and_then(|(_, build)| build.split('-').next()?.parse::<u32>().ok());
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
    pub(super) fn ready(
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
    pub(super) fn build_in_background(
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
                remove_abandoned_builds(path.parent()?, "thaw-module-");
                let tmp = build_temp_path(&path);
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

#[cfg(test)]
mod tests {
    use super::remove_abandoned_builds;

    #[test]
    fn test_abandoned_builds_of_dead_processes_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22, so this process cannot exist.
        let dead = dir.path().join("thaw-module-abc.9999999-0.tmp");
        let dead_old_format = dir.path().join("thaw-module-abc.9999998.tmp");
        let live = dir
            .path()
            .join(format!("thaw-module-abc.{}-3.tmp", std::process::id()));
        let published = dir.path().join("thaw-module-abc");
        for f in [&dead, &dead_old_format, &live, &published] {
            std::fs::write(f, b"x").unwrap();
        }
        remove_abandoned_builds(dir.path(), "thaw-module-");
        assert!(!dead.exists() && !dead_old_format.exists());
        assert!(live.exists() && published.exists());
    }
}
