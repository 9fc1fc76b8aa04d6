//! The snapshot store: opening it, reading snapshots back (manifests, verified chunks, a
//! materialised memory file), function -> snapshot mappings, bad marks and deletion.
//! Writing lives in `writer.rs`; stats, verify and gc in `maintenance.rs`; `materialize` in
//! `materialize.rs`.
//!
//! A store directory holds `index/` (the [`KvStore`], RocksDB by default) and `chunks/`
//! (see `chunks.rs`). Index keys (built in `keys.rs`):
//! - `m/<snapshot>`: manifest record (codec `MANI` v1), immutable once written;
//! - `w/<snapshot>`: working set (codec `WSET` v1);
//! - `b/<snapshot>`: why the snapshot is bad (UTF-8), if it is;
//! - `c/<chunk>`: [`ChunkRecord`] (reference count, raw and stored length);
//! - `f/<function key>`: the function's current snapshot id.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::cache::ChunkCache;
use crate::chunks::{ChunkError, ChunkFiles, FailPoint};
use crate::ids::{ChunkId, FunctionKey, SnapshotId};
use crate::keys::{
    bad_key, chunk_key, function_key, manifest_key, provisional_working_set_key, working_set_key,
    ChunkRecord,
};
use crate::kv::{KvError, KvOp, KvStore};
use crate::manifest::{self, Manifest, ManifestError};

/// Default chunk size, 2 MiB. Why:
/// 1. the pager installs guest memory in 2 MiB huge pages (DESIGN.md: first touches ~50x cheaper
///    than with 4 KiB pages; one 2 MiB UFFDIO_COPY per fault), so one chunk is one fault's worth;
/// 2. encode throughput is no worse than smaller chunks. `benches/chunking.rs`, one thread, input
///    python-3.12.0.wasm cycled to 32 MiB (zero check + blake3 + zstd):
///
///    | chunk   | zstd 1            | zstd 3            |
///    |---------|-------------------|-------------------|
///    | 64 KiB  | 429 MiB/s, 2.22x  | 305 MiB/s, 2.30x  |
///    | 256 KiB | 434 MiB/s, 2.30x  | 289 MiB/s, 2.46x  |
///    | 2 MiB   | 474 MiB/s, 2.30x  | 280 MiB/s, 2.57x  |
///
///    (`THAW_BENCH_INPUT=python.wasm cargo bench -p thaw-snapshotter --bench chunking`; the
///    machine was shared, so expect +-15%);
/// 3. a 512 MiB guest is 256 chunks: small manifests, few index keys, few files and fsyncs.
///
/// The cost is coarser dedup and zero detection: one changed byte stores 2 MiB again. Measure
/// shared chunks between real functions before shrinking it; the store supports any size per
/// snapshot (`StoreOptions::chunk_size`, recorded in each manifest).
pub const DEFAULT_CHUNK_SIZE: u64 = 2 << 20;
/// Default zstd level: 1. At 2 MiB chunks level 1 encodes ~1.7x faster than level 3 (474 vs 280
/// MiB/s per thread) for ~11% more stored bytes (2.30x vs 2.57x), and snapshot create time is a
/// target (512 MiB under 1 s on 2 cores) while disk is cheap. Whole-snapshot write of the same
/// 32 MiB input, 2 threads, with fsyncs: ~175 ms (~183 MiB/s, disk-bound).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening the index failed.
    #[error("cannot open the store index")]
    OpenIndex(#[source] KvError),
    /// Opening the chunk directory failed.
    #[error("cannot open the chunk directory")]
    OpenChunks(#[source] ChunkError),
    /// Reading the index failed.
    #[error("cannot read the store index")]
    ReadIndex(#[source] KvError),
    /// Writing the index failed; nothing of that write is applied.
    #[error("cannot write the store index")]
    WriteIndex(#[source] KvError),
    /// A chunk is missing, unreadable or does not match its hash.
    #[error("chunk {id} is missing or corrupt")]
    CorruptChunk { id: ChunkId, source: ChunkError },
    /// Listing or removing chunk files failed.
    #[error("cannot scan the chunk directory")]
    ScanChunks(#[source] ChunkError),
    /// No snapshot has this id.
    #[error("no snapshot {0}")]
    NoSuchSnapshot(SnapshotId),
    /// The snapshot's manifest record does not decode.
    #[error("manifest of snapshot {id} is unreadable")]
    DecodeManifest {
        id: SnapshotId,
        source: ManifestError,
    },
    /// The snapshot was marked bad; rebuild it from a cold boot.
    #[error("snapshot {id} is marked bad: {reason}")]
    SnapshotBad { id: SnapshotId, reason: String },
    /// The snapshot is some function's current snapshot and cannot be deleted.
    #[error("snapshot {id} is current for function {function}")]
    DeleteCurrent {
        id: SnapshotId,
        function: FunctionKey,
    },
    /// A working-set index is past the snapshot's last chunk.
    #[error("working-set index {index} is out of range ({chunks} chunks)")]
    SetWorkingSet { index: u32, chunks: usize },
    /// Creating or writing the materialised memory file failed.
    #[error("cannot write memory file {0}")]
    Materialize(PathBuf, #[source] std::io::Error),
}

impl StoreError {
    /// True when stored snapshot data failed verification (a chunk or the manifest): the
    /// snapshot must be rebuilt, never restored.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            StoreError::CorruptChunk { .. } | StoreError::DecodeManifest { .. }
        )
    }
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Bytes per chunk for new snapshots (default [`DEFAULT_CHUNK_SIZE`]).
    pub chunk_size: u64,
    /// zstd level for new chunks (default [`DEFAULT_ZSTD_LEVEL`]).
    pub zstd_level: i32,
    /// Threads hashing and compressing chunks, and decompressing in `materialize`.
    pub threads: usize,
    /// Bytes of decompressed chunks kept by `read_chunk`'s cache (0 disables it).
    pub cache_bytes: usize,
    /// Test hook: make chunk writes fail after N successes.
    pub fail_point: Option<FailPoint>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            threads: cores.clamp(1, 2),
            cache_bytes: 256 << 20,
            fail_point: None,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) kv: Arc<dyn KvStore>,
    pub(crate) chunks: ChunkFiles,
    pub(crate) opts: StoreOptions,
    /// Serialises read-modify-write of refcounts (commit, delete, gc).
    pub(crate) index_lock: Mutex<()>,
    /// Chunks that uncommitted writers rely on; gc leaves them alone. Held by gc throughout.
    pub(crate) pending: Mutex<HashMap<ChunkId, usize>>,
    cache: Mutex<ChunkCache>,
}

/// A content-addressed snapshot store. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("kv", &self.inner.kv)
            .field("opts", &self.inner.opts)
            .finish()
    }
}

impl Store {
    /// A store over any [`KvStore`] (tests use [`MemKv`](crate::MemKv)) and a chunk directory.
    pub fn with_kv(
        kv: Arc<dyn KvStore>,
        chunks_dir: &Path,
        opts: StoreOptions,
    ) -> Result<Store, StoreError> {
        let chunks = ChunkFiles::open(chunks_dir, opts.fail_point.clone())
            .map_err(StoreError::OpenChunks)?;
        let cache = Mutex::new(ChunkCache::new(opts.cache_bytes));
        let inner = Inner {
            kv,
            chunks,
            opts,
            index_lock: Mutex::new(()),
            pending: Mutex::new(HashMap::new()),
            cache,
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.opts
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.kv.get(key).map_err(StoreError::ReadIndex)
    }

    pub(crate) fn write(&self, ops: Vec<KvOp>) -> Result<(), StoreError> {
        self.inner.kv.write(ops).map_err(StoreError::WriteIndex)
    }

    /// The manifest of snapshot `id`, with its working set if one was set.
    pub fn manifest(&self, id: &SnapshotId) -> Result<Manifest, StoreError> {
        let rec = self
            .get(&manifest_key(id))?
            .ok_or(StoreError::NoSuchSnapshot(*id))?;
        let mut m = manifest::decode_record(*id, &rec)
            .map_err(|source| StoreError::DecodeManifest { id: *id, source })?;
        let decode = |ws: Vec<u8>| {
            manifest::decode_working_set(&ws)
                .map_err(|source| StoreError::DecodeManifest { id: *id, source })
        };
        if let Some(ws) = self.get(&working_set_key(id))? {
            m.working_set = Some(decode(ws)?);
        }
        if let Some(ws) = self.get(&provisional_working_set_key(id))? {
            m.provisional_working_set = Some(decode(ws)?);
        }
        Ok(m)
    }

    /// Every committed snapshot id.
    pub fn snapshots(&self) -> Result<Vec<SnapshotId>, StoreError> {
        let rows = self
            .inner
            .kv
            .scan_prefix(b"m/")
            .map_err(StoreError::ReadIndex)?;
        Ok(rows
            .iter()
            .filter_map(|(k, _)| std::str::from_utf8(&k[2..]).ok()?.parse().ok())
            .collect())
    }

    /// Records the working set (global chunk indices in first-touch order) of snapshot `id`.
    pub fn set_working_set(&self, id: &SnapshotId, ws: &[u32]) -> Result<(), StoreError> {
        self.put_working_set(working_set_key(id), id, ws)
    }

    /// Records a provisional working set of snapshot `id` (see
    /// [`Manifest::provisional_working_set`]).
    pub fn set_provisional_working_set(
        &self,
        id: &SnapshotId,
        ws: &[u32],
    ) -> Result<(), StoreError> {
        self.put_working_set(provisional_working_set_key(id), id, ws)
    }

    fn put_working_set(&self, key: Vec<u8>, id: &SnapshotId, ws: &[u32]) -> Result<(), StoreError> {
        let m = self.manifest(id)?;
        let chunks = m.chunk_count();
        if let Some(&index) = ws.iter().find(|&&i| i as usize >= chunks) {
            return Err(StoreError::SetWorkingSet { index, chunks });
        }
        self.write(vec![KvOp::Put(key, manifest::encode_working_set(ws))])
    }

    /// Reads chunk `id`, decompressed and checked against its hash. A corrupt chunk file is moved
    /// aside (`<hex>.corrupt`, removed by gc) so a rebuild writes it afresh.
    pub fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        Ok(self.read_chunk_shared(id)?.as_ref().clone())
    }

    /// Like [`read_chunk`](Self::read_chunk) but copies into `out`, which must be the chunk's
    /// length; returns that length. Saves an allocation per chunk for the pager.
    pub fn read_chunk_into(&self, id: &ChunkId, out: &mut [u8]) -> Result<usize, StoreError> {
        let bytes = self.read_chunk_shared(id)?;
        let n = bytes.len().min(out.len());
        out[..n].copy_from_slice(&bytes[..n]);
        Ok(n)
    }

    /// Starts reading the files of the chunks in `ids` that the decompressed-chunk
    /// cache does not hold, all at once, so their disk reads overlap each other and
    /// the decompression of the first ones (a restore about to read them in turn).
    pub fn readahead<'a>(&self, ids: impl IntoIterator<Item = &'a ChunkId>) {
        let missing: Vec<ChunkId> = {
            let cache = self.inner.cache.lock();
            ids.into_iter()
                .filter(|id| !cache.contains(id))
                .copied()
                .collect()
        };
        for id in &missing {
            self.inner.chunks.readahead(id);
        }
    }

    /// A chunk's verified bytes, shared with the decompressed-chunk cache (no copy on a hit).
    pub fn read_chunk_shared(&self, id: &ChunkId) -> Result<Arc<Vec<u8>>, StoreError> {
        if let Some(hit) = self.inner.cache.lock().get(id) {
            return Ok(hit);
        }
        let bytes = Arc::new(self.read_chunk_uncached(id)?);
        self.inner.cache.lock().insert(*id, bytes.clone());
        Ok(bytes)
    }

    /// A chunk's verified bytes if the decompressed-chunk cache holds them (never reads
    /// the disk).
    pub fn cached_chunk(&self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        self.inner.cache.lock().get(id)
    }

    /// Like [`read_chunk_into`](Self::read_chunk_into), but a chunk the cache does not
    /// hold is decompressed straight into `out` and not cached: for data a process reads
    /// once and keeps elsewhere (the module image), it saves a buffer, a copy and
    /// cache space.
    pub fn read_chunk_into_uncached(
        &self,
        id: &ChunkId,
        out: &mut [u8],
    ) -> Result<usize, StoreError> {
        if let Some(hit) = self.inner.cache.lock().get(id) {
            let n = hit.len().min(out.len());
            out[..n].copy_from_slice(&hit[..n]);
            return Ok(n);
        }
        self.inner
            .chunks
            .read_into(id, out)
            .map_err(|source| self.corrupt(id, source))
    }

    pub(crate) fn read_chunk_uncached(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        self.inner
            .chunks
            .read(id)
            .map_err(|source| self.corrupt(id, source))
    }

    /// A failed chunk read as a store error; a damaged (not merely unreadable) file is
    /// quarantined.
    fn corrupt(&self, id: &ChunkId, source: ChunkError) -> StoreError {
        if !matches!(source, ChunkError::Read(..)) {
            self.quarantine(id);
        }
        StoreError::CorruptChunk { id: *id, source }
    }

    pub(crate) fn quarantine(&self, id: &ChunkId) {
        self.inner.cache.lock().remove(id);
        let path = self.inner.chunks.path(id);
        let _ = fs::rename(&path, path.with_extension("corrupt"));
    }

    /// Marks snapshot `id` bad: restores refuse it until it is rebuilt.
    pub fn mark_bad(&self, id: &SnapshotId, reason: &str) -> Result<(), StoreError> {
        self.write(vec![KvOp::Put(bad_key(id), reason.as_bytes().to_vec())])
    }

    /// Why snapshot `id` is bad, or `None` if it is not.
    pub fn is_bad(&self, id: &SnapshotId) -> Result<Option<String>, StoreError> {
        Ok(self
            .get(&bad_key(id))?
            .map(|r| String::from_utf8_lossy(&r).into_owned()))
    }

    /// Points `function` at snapshot `id` (which must exist).
    pub fn set_current(&self, function: &FunctionKey, id: &SnapshotId) -> Result<(), StoreError> {
        if self.get(&manifest_key(id))?.is_none() {
            return Err(StoreError::NoSuchSnapshot(*id));
        }
        self.write(vec![KvOp::Put(
            function_key(function),
            id.to_hex().into_bytes(),
        )])
    }

    /// The current snapshot of `function`, if any.
    pub fn current(&self, function: &FunctionKey) -> Result<Option<SnapshotId>, StoreError> {
        Ok(self
            .get(&function_key(function))?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
    }

    /// Deletes snapshot `id` and releases its chunks (gc frees their files). Refused while the
    /// snapshot is some function's current one.
    pub fn delete_snapshot(&self, id: &SnapshotId) -> Result<(), StoreError> {
        let _guard = self.inner.index_lock.lock();
        let mappings = self
            .inner
            .kv
            .scan_prefix(b"f/")
            .map_err(StoreError::ReadIndex)?;
        if let Some((k, _)) = mappings
            .iter()
            .find(|(_, v)| v.as_slice() == id.to_hex().as_bytes())
        {
            let function = FunctionKey(String::from_utf8_lossy(&k[2..]).into_owned());
            return Err(StoreError::DeleteCurrent { id: *id, function });
        }
        let m = self.manifest(id)?;
        let mut uses: HashMap<ChunkId, u64> = HashMap::new();
        for c in m.chunks().filter_map(|c| c.id) {
            *uses.entry(c).or_default() += 1;
        }
        let mut ops = vec![
            KvOp::Delete(manifest_key(id)),
            KvOp::Delete(working_set_key(id)),
            KvOp::Delete(provisional_working_set_key(id)),
            KvOp::Delete(bad_key(id)),
        ];
        for (c, n) in uses {
            let key = chunk_key(&c);
            let mut rec = self
                .get(&key)?
                .and_then(|r| ChunkRecord::decode(&r))
                .unwrap_or_default();
            rec.refs = rec.refs.saturating_sub(n);
            ops.push(KvOp::Put(key, rec.encode()));
        }
        self.write(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mem_store, memory, meta, CS};

    fn one_snapshot(store: &Store) -> SnapshotId {
        let mut w = store.begin(meta("f"));
        w.add_region(0, &memory(4, 1)).unwrap();
        w.commit().unwrap()
    }

    #[test]
    fn test_corrupt_chunk_is_named_and_marks_snapshot_bad() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let id = one_snapshot(&store);
        let victim = store.manifest(&id).unwrap().regions[0].chunks[1].unwrap();
        let path = store.inner.chunks.path(&victim);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(&path, bytes).unwrap();

        let err = store.read_chunk(&victim).unwrap_err();
        assert!(
            matches!(err, StoreError::CorruptChunk { id, .. } if id == victim),
            "{err}"
        );
        assert!(err.to_string().contains(&victim.to_string()));
        // Moved aside: the next read reports it missing, still naming it.
        assert!(
            matches!(store.read_chunk(&victim), Err(StoreError::CorruptChunk { id, .. }) if id == victim)
        );
        let err = store
            .materialize(&id, &dir.path().join("m.img"))
            .unwrap_err();
        assert!(err.to_string().contains(&victim.to_string()), "{err}");
        assert!(store.is_bad(&id).unwrap().is_some());
        assert!(!dir.path().join("m.img").exists());
        assert!(matches!(
            store.materialize(&id, &dir.path().join("m.img")),
            Err(StoreError::SnapshotBad { .. })
        ));

        // A rebuild rewrites the chunk and clears the mark.
        let rebuilt = one_snapshot(&store);
        assert_eq!(rebuilt, id);
        assert_eq!(store.is_bad(&id).unwrap(), None);
        store.materialize(&id, &dir.path().join("m.img")).unwrap();
    }

    #[test]
    fn test_mapping_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let f = FunctionKey::new("f");
        assert_eq!(store.current(&f).unwrap(), None);
        assert!(matches!(
            store.set_current(&f, &SnapshotId([1; 32])),
            Err(StoreError::NoSuchSnapshot(_))
        ));
        let a = one_snapshot(&store);
        store.set_current(&f, &a).unwrap();
        assert_eq!(store.current(&f).unwrap(), Some(a));
        assert!(matches!(
            store.delete_snapshot(&a),
            Err(StoreError::DeleteCurrent { .. })
        ));

        let mut w = store.begin(meta("f"));
        w.add_region(0, &memory(4, 2)).unwrap(); // shares 3 of 4 chunks with `a`
        let b = w.commit().unwrap();
        store.set_current(&f, &b).unwrap();
        store.delete_snapshot(&a).unwrap();
        assert_eq!(store.snapshots().unwrap(), vec![b]);
        let freed = store.gc().unwrap();
        assert_eq!(freed.files_removed, 1);
        assert!(store.verify().unwrap().problems.is_empty());
        assert_eq!(store.stats().unwrap().unique_bytes, 4 * CS);
    }

    #[test]
    fn test_working_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let id = one_snapshot(&store);
        assert_eq!(store.manifest(&id).unwrap().working_set, None);
        store.set_working_set(&id, &[3, 0, 2]).unwrap();
        assert_eq!(
            store.manifest(&id).unwrap().working_set,
            Some(vec![3, 0, 2])
        );
        assert!(matches!(
            store.set_working_set(&id, &[4]),
            Err(StoreError::SetWorkingSet { index: 4, .. })
        ));
        // The provisional set is kept apart from the final one.
        assert_eq!(store.manifest(&id).unwrap().provisional_working_set, None);
        store.set_provisional_working_set(&id, &[1]).unwrap();
        let m = store.manifest(&id).unwrap();
        assert_eq!(
            (m.working_set, m.provisional_working_set),
            (Some(vec![3, 0, 2]), Some(vec![1]))
        );
        assert!(matches!(
            store.set_provisional_working_set(&id, &[9]),
            Err(StoreError::SetWorkingSet { index: 9, .. })
        ));
    }

    #[test]
    fn test_read_chunk_into_and_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let id = one_snapshot(&store);
        let c = store.manifest(&id).unwrap().regions[0].chunks[0].unwrap();
        let mut buf = vec![0u8; CS as usize];
        assert_eq!(store.read_chunk_into(&c, &mut buf).unwrap(), CS as usize);
        assert_eq!(buf, memory(1, 1));
        fs::remove_file(store.inner.chunks.path(&c)).unwrap();
        assert_eq!(store.read_chunk(&c).unwrap(), buf, "served from the cache");
    }

    #[test]
    fn test_read_chunk_into_uncached_decompresses_in_place_and_keeps_the_cache_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let id = one_snapshot(&store);
        let chunks = &store.manifest(&id).unwrap().regions[0].chunks;
        let (c0, c1) = (chunks[0].unwrap(), chunks[1].unwrap());
        let mut buf = vec![0xAAu8; CS as usize + 100];
        assert_eq!(
            store.read_chunk_into_uncached(&c0, &mut buf).unwrap(),
            CS as usize
        );
        assert_eq!(&buf[..CS as usize], &memory(1, 1)[..]);
        assert!(!store.inner.cache.lock().contains(&c0), "not cached");
        // A damaged file is reported as corrupt and moved aside.
        let path = store.inner.chunks.path(&c1);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let err = store.read_chunk_into_uncached(&c1, &mut buf).unwrap_err();
        assert!(matches!(err, StoreError::CorruptChunk { .. }), "{err}");
        assert!(!path.exists() && path.with_extension("corrupt").exists());
        // Too small a buffer is an error, not a panic.
        let mut small = vec![0u8; 4096];
        assert!(store.read_chunk_into_uncached(&c0, &mut small).is_err());
    }

    #[test]
    fn test_cached_chunk_never_reads_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let id = one_snapshot(&store);
        let c0 = store.manifest(&id).unwrap().regions[0].chunks[0].unwrap();
        store.inner.cache.lock().remove(&c0);
        assert!(store.cached_chunk(&c0).is_none());
        let read = store.read_chunk_shared(&c0).unwrap();
        assert_eq!(store.cached_chunk(&c0).as_deref(), Some(&*read));
    }

    #[test]
    fn test_chunk_record_encoding() {
        let r = ChunkRecord {
            refs: 3,
            raw_len: 4,
            stored_len: 5,
        };
        assert_eq!(ChunkRecord::decode(&r.encode()), Some(r));
        assert_eq!(ChunkRecord::decode(&[1, 2]), None);
    }
}
