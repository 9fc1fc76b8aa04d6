//! `--cache evicted`: drops a snapshot's chunk files and its materialised memory file from the
//! page cache (fdatasync, then `posix_fadvise(POSIX_FADV_DONTNEED)`) before a restore, so the
//! restore reads from the disk. Pages some process still maps are not dropped by the kernel.
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use thaw_snapshotter::{ChunkId, Manifest};

/// What one eviction covered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evicted {
    pub files: usize,
    pub bytes: u64,
}

/// The file of chunk `id` under a store directory (`chunks/<2 hex>/<hex>`, see
/// `thaw_snapshotter::chunks::ChunkFiles::path`).
pub fn chunk_path(store_dir: &Path, id: &ChunkId) -> PathBuf {
    let hex = id.to_hex();
    store_dir.join("chunks").join(&hex[..2]).join(hex.as_str())
}

/// Drops one file from the page cache; a missing file is skipped.
pub fn drop_file(path: &Path) -> std::io::Result<u64> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    // Dirty pages are not dropped: write them back first.
    file.sync_data()?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(file.metadata()?.len())
}

/// Drops every chunk of `manifest` and `<images_dir>/<id>.mem` from the page cache.
pub fn evict_snapshot(
    store_dir: &Path,
    images_dir: &Path,
    manifest: &Manifest,
) -> std::io::Result<Evicted> {
    let mut seen = HashSet::new();
    let mut out = Evicted::default();
    for chunk in manifest.chunks() {
        let Some(id) = chunk.id else { continue };
        if seen.insert(id) {
            out.bytes += drop_file(&chunk_path(store_dir, &id))?;
            out.files += 1;
        }
    }
    let mem = images_dir.join(format!("{}.mem", manifest.id));
    let n = drop_file(&mem)?;
    if n > 0 {
        out.bytes += n;
        out.files += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_drop_file_missing_is_zero() {
        assert_eq!(drop_file(Path::new("/nonexistent/thaw-bench")).unwrap(), 0);
    }

    #[test]
    fn test_drop_file_reports_length() {
        let dir = std::env::temp_dir().join(format!("thaw-bench-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        std::fs::write(&p, vec![7u8; 8192]).unwrap();
        assert_eq!(drop_file(&p).unwrap(), 8192);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
