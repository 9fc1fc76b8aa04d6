//! Helpers shared by the unit tests: small stores and recognisable memory.

use std::sync::Arc;

use crate::{FailPoint, FunctionKey, MemKv, SnapshotMeta, Store, StoreOptions};

/// Chunk size the tests use, so regions stay small.
pub(crate) const CS: u64 = 64 << 10;

/// A store over [`MemKv`] in `dir` with 64 KiB chunks and an optional fail point.
pub(crate) fn mem_store(dir: &std::path::Path, fail: Option<FailPoint>) -> Store {
    let opts = StoreOptions {
        chunk_size: CS,
        fail_point: fail,
        ..StoreOptions::default()
    };
    Store::with_kv(Arc::new(MemKv::new()), &dir.join("chunks"), opts).unwrap()
}

/// Meta for function `f` with 16 MiB of guest memory.
pub(crate) fn meta(f: &str) -> SnapshotMeta {
    SnapshotMeta {
        function: FunctionKey::new(f),
        code_hash: "code-1".into(),
        runtime_hash: "rt-1".into(),
        memory_size: 16 << 20,
        labels: Default::default(),
    }
}

/// `chunks` chunks of memory; chunk `i` is filled from `seed + i`, or zero if `seed + i` is 0.
pub(crate) fn memory(chunks: u64, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity((chunks * CS) as usize);
    for i in 0..chunks {
        let tag = seed + i;
        let chunk: Vec<u8> = if tag == 0 {
            vec![0; CS as usize]
        } else {
            (0..CS)
                .map(|j| ((j * 31 + tag * 7) % 251) as u8 ^ (tag as u8))
                .collect()
        };
        v.extend_from_slice(&chunk);
    }
    v
}
