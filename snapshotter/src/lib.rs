//! thaw-snapshotter: the content-addressed snapshot store.
//!
//! Guest memory is split into chunks (2 MiB by default), all-zero chunks are recorded but not
//! stored, every other chunk is named by its blake3 hash and stored once, zstd-compressed, in
//! `chunks/`. An index behind the narrow [`KvStore`] trait (RocksDB in production) holds
//! manifests, chunk reference counts and function -> snapshot mappings. A snapshot becomes
//! visible only after all its chunks are durable; every chunk read is verified.
//! Saved state blobs go through the versioned [`codec`].
#![forbid(unsafe_code)]

mod cache;
pub mod chunks;
pub mod codec;
mod ids;
mod keys;
pub mod kv;
mod maintenance;
mod manifest;
mod materialize;
mod rocks;
mod store;
mod writer;

pub use chunks::{ChunkError, FailPoint, TempChunk};
pub use codec::CodecError;
pub use ids::{ChunkId, FunctionKey, IdError, SnapshotId};
pub use kv::{KvError, KvOp, KvPairs, KvStore, MemKv};
pub use maintenance::{GcReport, StoreStats, VerifyProblem, VerifyReport};
pub use manifest::{ChunkRef, Manifest, ManifestError, Region, SnapshotMeta};
pub use rocks::RocksKv;
pub use store::{Store, StoreError, StoreOptions, DEFAULT_CHUNK_SIZE, DEFAULT_ZSTD_LEVEL};
pub use writer::{SnapshotWriter, WriterError};

#[cfg(test)]
mod testutil;
