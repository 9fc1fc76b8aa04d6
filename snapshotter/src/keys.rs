//! The store's index layout in the [`KvStore`](crate::KvStore): the key of every record kind
//! and the chunk refcount record, so the store, the writer and maintenance spell them once.
//!
//! - `m/<snapshot>` -> the manifest; `w/<snapshot>` / `wp/<snapshot>` -> the recorded and the
//!   provisional working set; `b/<snapshot>` -> marked bad (failed verification).
//! - `c/<chunk>` -> [`ChunkRecord`]; `f/<function key>` -> the function's current snapshot.

use crate::ids::{ChunkId, FunctionKey, SnapshotId};

/// A chunk's index entry: 24 bytes, three little-endian `u64`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ChunkRecord {
    /// Manifest entries naming the chunk (a chunk used twice in one snapshot counts twice).
    pub refs: u64,
    /// Uncompressed length.
    pub raw_len: u64,
    /// Compressed length on disk.
    pub stored_len: u64,
}

impl ChunkRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        [self.refs, self.raw_len, self.stored_len]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        let f = |i: usize| {
            Some(u64::from_le_bytes(
                b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        Some(Self {
            refs: f(0)?,
            raw_len: f(1)?,
            stored_len: f(2)?,
        })
    }
}

pub(crate) fn manifest_key(id: &SnapshotId) -> Vec<u8> {
    format!("m/{id}").into_bytes()
}
pub(crate) fn working_set_key(id: &SnapshotId) -> Vec<u8> {
    format!("w/{id}").into_bytes()
}
pub(crate) fn provisional_working_set_key(id: &SnapshotId) -> Vec<u8> {
    format!("wp/{id}").into_bytes()
}
pub(crate) fn bad_key(id: &SnapshotId) -> Vec<u8> {
    format!("b/{id}").into_bytes()
}
pub(crate) fn chunk_key(id: &ChunkId) -> Vec<u8> {
    format!("c/{id}").into_bytes()
}
pub(crate) fn function_key(f: &FunctionKey) -> Vec<u8> {
    format!("f/{f}").into_bytes()
}
