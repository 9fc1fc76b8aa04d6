//! Materialising a snapshot: its guest memory decompressed into a sparse file for the `mmap`
//! restore mode (clones map it MAP_PRIVATE and share clean pages through the page cache).

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::ids::SnapshotId;
use crate::manifest::Manifest;
use crate::store::{Store, StoreError};

impl Store {
    /// Writes snapshot `id`'s memory as a sparse file at `out`: byte `a` of the file is guest
    /// address `a`, zero chunks are holes, every chunk is verified. The file appears atomically
    /// (temp + rename). A corrupt chunk marks the snapshot bad and fails.
    pub fn materialize(&self, id: &SnapshotId, out: &Path) -> Result<(), StoreError> {
        if let Some(reason) = self.is_bad(id)? {
            return Err(StoreError::SnapshotBad { id: *id, reason });
        }
        let m = self.manifest(id)?;
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = out.with_file_name(format!(".{name}.tmp{}", std::process::id()));
        let io_err = |e| StoreError::Materialize(out.to_owned(), e);
        let result = self.materialize_into(&m, &temp, io_err);
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            if let StoreError::CorruptChunk { .. } = e {
                self.mark_bad(id, &e.to_string())?;
            }
            return Err(e);
        }
        fs::rename(&temp, out).map_err(io_err)?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        }
        Ok(())
    }

    fn materialize_into(
        &self,
        m: &Manifest,
        temp: &Path,
        io_err: impl Fn(std::io::Error) -> StoreError + Sync,
    ) -> Result<(), StoreError> {
        let file = File::create(temp).map_err(&io_err)?;
        let end = m
            .regions
            .iter()
            .map(|r| r.guest_addr + r.len)
            .max()
            .unwrap_or(0);
        file.set_len(end.max(m.meta.memory_size)).map_err(&io_err)?;
        let work: Vec<_> = m.chunks().filter(|c| c.id.is_some()).collect();
        let threads = self.inner.opts.threads.max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (work, file, io_err) = (&work, &file, &io_err);
                    s.spawn(move || -> Result<(), StoreError> {
                        for c in work.iter().skip(t).step_by(threads) {
                            let Some(cid) = c.id else { continue };
                            let bytes = self.read_chunk_uncached(&cid)?;
                            file.write_all_at(&bytes, c.guest_addr).map_err(io_err)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })?;
        file.sync_all().map_err(&io_err)
    }
}
