//! The copying modes: `eager` (every chunk decompressed into fresh anonymous RAM) and
//! `mmap` (a private mapping of the snapshot's decompressed memory file, materialised on
//! first use, whose page cache clones share). Guest RAM is complete before the vCPU runs.
use super::corrupt;
use crate::error::WorkerError;
use std::path::Path;
use thaw_snapshotter::{Manifest, Store};
use thaw_vmm::{Backing, GuestAddress, GuestRam};

/// Fills fresh anonymous RAM with every chunk (the `eager` mode).
pub(super) fn eager_ram(store: &Store, manifest: &Manifest) -> Result<GuestRam, WorkerError> {
    let mut ram = GuestRam::new(manifest.meta.memory_size, Backing::Anonymous)?;
    for chunk in manifest.chunks() {
        let Some(id) = chunk.id else { continue };
        ram.fill_with(GuestAddress(chunk.guest_addr), chunk.len, |dst| {
            store.read_chunk_into(&id, dst)
        })?
        .map_err(|e| corrupt(store, manifest, e))?;
    }
    Ok(ram)
}

/// Maps the decompressed memory file privately (the `mmap` mode), materialising it
/// into `images_dir` on first use.
pub(super) fn mmap_ram(
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
