//! The snapshot store as the pager sees it: [`StoreSource`] serves a snapshot's chunks,
//! verified against their hashes (a corrupt chunk named as such), and [`pager_fault`]
//! turns a block the pager could not serve into the worker's error, marking the
//! snapshot bad when a chunk was corrupt.
use super::wsimage::WorkingSetImage;
use super::OpenedSnapshot;
use crate::error::WorkerError;
use std::sync::Arc;
use thaw_pager::{ChunkKind, PageSource, SourceError};
use thaw_snapshotter::{ChunkId, SnapshotId, Store, StoreError};

/// Serves a snapshot's chunks to the pager, verified against their hashes (or, for the
/// chunks its working-set image holds, copied from the image, whose bytes were verified
/// when it was built).
#[derive(Debug)]
pub struct StoreSource {
    store: Store,
    chunks: Vec<Option<ChunkId>>,
    chunk_size: usize,
    len: usize,
    image: Option<Arc<WorkingSetImage>>,
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
            image: None,
        }
    }

    /// Serves the chunks `image` holds from it.
    pub fn with_image(mut self, image: Option<Arc<WorkingSetImage>>) -> Self {
        self.image = image;
        self
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
        if let Some(img) = &self.image {
            if dst.len() == self.chunk_size && img.read_into(index as u32, dst) {
                return Ok(ChunkKind::Data);
            }
        }
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
        if let Some((image, offset)) = self.image.as_ref().and_then(|i| i.chunk(index as u32)) {
            return Ok(thaw_pager::SharedChunk::Image { image, offset });
        }
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
