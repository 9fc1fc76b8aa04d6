//! The page source: where the pager gets a chunk's decompressed bytes.
//!
//! The pager defines the trait; `worker/` implements it over the snapshot store (chunk index ->
//! chunk id -> decompressed bytes). [`VecSource`] is an in-memory implementation for tests and
//! benchmarks.
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// `dst` was filled with the chunk's bytes.
    Data,
    /// The chunk is all zeroes; `dst` may be left untouched (the pager zero-fills or maps the
    /// zero page itself).
    Zero,
}

/// Why a source could not produce a chunk. Every variant names the chunk.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading the chunk's stored bytes failed (I/O, the store's index).
    #[error("cannot read chunk {index}")]
    ReadChunk {
        /// Chunk index.
        index: usize,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The chunk's bytes failed an integrity check or did not decompress to `chunk_size` bytes.
    #[error("chunk {index} is corrupt: {detail}")]
    CorruptChunk {
        /// Chunk index.
        index: usize,
        /// What was wrong.
        detail: String,
    },
    /// The index is past the end of the image.
    #[error("chunk {index} is out of range ({chunks} chunks)")]
    OutOfRange {
        /// Chunk index.
        index: usize,
        /// Number of chunks in the image.
        chunks: usize,
    },
}

impl SourceError {
    /// True when the chunk's stored bytes are bad (not an I/O or range problem): the snapshot
    /// they belong to must be rebuilt.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, SourceError::CorruptChunk { .. })
    }

    /// The chunk the error is about.
    pub fn chunk(&self) -> usize {
        match self {
            SourceError::ReadChunk { index, .. }
            | SourceError::CorruptChunk { index, .. }
            | SourceError::OutOfRange { index, .. } => *index,
        }
    }
}

/// A memory image cut into fixed-size chunks, readable from any thread.
///
/// Called from the pager's handler and prefetch threads; implementations must be cheap to call
/// concurrently (the worker's store does its own caching of compressed data).
pub trait PageSource: Send + Sync {
    /// Size of every chunk in bytes: a power of two, at least 4 KiB.
    fn chunk_size(&self) -> usize;

    /// Image length in bytes (a multiple of `chunk_size`).
    fn len(&self) -> usize;

    /// Whether the image is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decompress chunk `index` into `dst` (exactly `chunk_size` bytes) or report it all-zero.
    fn read_chunk(&self, index: usize, dst: &mut [u8]) -> Result<ChunkKind, SourceError>;

    /// Chunk `index` as bytes the source already holds in memory (a decompressed
    /// cache), so installs copy once, straight from them. The default (and
    /// `Unavailable`) falls back to `read_chunk` into a staging buffer.
    fn shared_chunk(&self, index: usize) -> Result<SharedChunk, SourceError> {
        let _ = index;
        Ok(SharedChunk::Unavailable)
    }
}

/// What [`PageSource::shared_chunk`] returns.
#[derive(Debug, Clone)]
pub enum SharedChunk {
    /// The chunk's bytes (exactly `chunk_size` of them).
    Data(Arc<Vec<u8>>),
    /// The chunk's bytes in a published hugetlbfs image (a working-set image shared
    /// across processes): `chunk_size` bytes at `offset`. Images are never written once
    /// published.
    Image {
        /// The image.
        image: Arc<crate::HugeMemfd>,
        /// Where the chunk starts in it.
        offset: usize,
    },
    /// An all-zero chunk.
    Zero,
    /// Not held in memory: use `read_chunk`.
    Unavailable,
}

/// An in-memory source for tests and benchmarks: all-zero chunks are reported as `Zero`.
#[derive(Debug)]
pub struct VecSource {
    data: Vec<u8>,
    chunk_size: usize,
    reads: AtomicU64,
}

impl VecSource {
    /// Wrap `data` (its length must be a multiple of `chunk_size`).
    pub fn new(data: Vec<u8>, chunk_size: usize) -> VecSource {
        assert!(chunk_size.is_power_of_two() && chunk_size >= crate::SMALL_PAGE_SIZE);
        assert_eq!(
            data.len() % chunk_size,
            0,
            "image length is not a chunk multiple"
        );
        VecSource {
            data,
            chunk_size,
            reads: AtomicU64::new(0),
        }
    }

    /// A deterministic pseudo-random image where every chunk index in `zero_chunks` is zero.
    pub fn patterned(len: usize, chunk_size: usize, zero_chunks: &[usize]) -> VecSource {
        let mut data = vec![0u8; len];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for word in data.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        for &z in zero_chunks {
            data[z * chunk_size..(z + 1) * chunk_size].fill(0);
        }
        VecSource::new(data, chunk_size)
    }

    /// The whole image, to compare guest memory against.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// How many `read_chunk` calls were served.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

impl PageSource for VecSource {
    fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    fn len(&self) -> usize {
        self.data.len()
    }

    fn read_chunk(&self, index: usize, dst: &mut [u8]) -> Result<ChunkKind, SourceError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let chunks = self.data.len() / self.chunk_size;
        if index >= chunks {
            return Err(SourceError::OutOfRange { index, chunks });
        }
        let src = &self.data[index * self.chunk_size..(index + 1) * self.chunk_size];
        if src.iter().all(|&b| b == 0) {
            return Ok(ChunkKind::Zero);
        }
        dst.copy_from_slice(src);
        Ok(ChunkKind::Data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_vec_source_reports_zero_and_data_chunks() {
        let src = VecSource::patterned(4 * 4096, 4096, &[2]);
        let mut buf = vec![0u8; 4096];
        assert_eq!(src.read_chunk(1, &mut buf).unwrap(), ChunkKind::Data);
        assert_eq!(&buf[..], &src.bytes()[4096..8192]);
        assert_eq!(src.read_chunk(2, &mut buf).unwrap(), ChunkKind::Zero);
        let err = src.read_chunk(9, &mut buf).unwrap_err();
        assert_eq!(err.chunk(), 9);
        assert_eq!(src.reads(), 3);
    }
}
