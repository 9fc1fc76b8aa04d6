//! Writing one snapshot: [`SnapshotWriter`] chunks guest memory regions, skips zero chunks,
//! stores new chunks durably (deduplicated against everything already in the store) and
//! publishes the manifest in one atomic index batch at [`commit`](SnapshotWriter::commit).
//!
//! Ordering: every chunk file is fsynced and renamed into place inside `add_region`, before
//! `commit` writes the manifest, so a crash at any point leaves either no manifest (orphan
//! chunk files, which gc removes) or a manifest whose chunks are all on disk. Chunks a writer
//! relies on are registered as pending so a concurrent gc cannot delete them before commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::chunks::{self, ChunkError, TempChunk};
use crate::ids::{ChunkId, SnapshotId};
use crate::keys::{bad_key, chunk_key, manifest_key, ChunkRecord};
use crate::kv::{KvError, KvOp};
use crate::manifest::{self, Region, SnapshotMeta};
use crate::store::Store;

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The region does not fit in the snapshot's memory size.
    #[error(
        "region at {guest_addr:#x} (+{len:#x}) is outside guest memory of {memory_size:#x} bytes"
    )]
    AddRegionBounds {
        guest_addr: u64,
        len: u64,
        memory_size: u64,
    },
    /// The region overlaps one added earlier.
    #[error("region at {guest_addr:#x} (+{len:#x}) overlaps an earlier region")]
    AddRegionOverlap { guest_addr: u64, len: u64 },
    /// Compressing or storing a chunk failed; the snapshot cannot be committed.
    #[error("cannot store a chunk")]
    StoreChunk(#[source] ChunkError),
    /// An earlier `add_region` failed; this writer can only be dropped.
    #[error("an earlier chunk write failed")]
    Poisoned,
    /// Reading chunk records failed.
    #[error("cannot read the store index")]
    ReadIndex(#[source] KvError),
    /// The atomic manifest batch failed; nothing was published.
    #[error("cannot write the manifest batch")]
    WriteManifest(#[source] KvError),
}

/// An in-progress snapshot. Dropping it without `commit` publishes nothing.
#[derive(Debug)]
pub struct SnapshotWriter {
    store: Store,
    meta: SnapshotMeta,
    regions: Vec<Region>,
    state: Vec<u8>,
    /// Raw and stored length of every distinct non-zero chunk referenced.
    chunk_lens: HashMap<ChunkId, (u64, u64)>,
    /// Chunks registered in the store's pending set (released on drop).
    registered: Vec<ChunkId>,
    poisoned: bool,
}

impl Store {
    /// Starts a new snapshot; nothing is visible until [`SnapshotWriter::commit`].
    pub fn begin(&self, meta: SnapshotMeta) -> SnapshotWriter {
        SnapshotWriter::new(self.clone(), meta)
    }
}

impl SnapshotWriter {
    pub(crate) fn new(store: Store, meta: SnapshotMeta) -> Self {
        Self {
            store,
            meta,
            regions: Vec::new(),
            state: Vec::new(),
            chunk_lens: HashMap::new(),
            registered: Vec::new(),
            poisoned: false,
        }
    }

    /// Adds guest memory at `guest_addr`. Returns once every new chunk of it is durable.
    pub fn add_region(&mut self, guest_addr: u64, bytes: &[u8]) -> Result<(), WriterError> {
        if self.poisoned {
            return Err(WriterError::Poisoned);
        }
        let len = bytes.len() as u64;
        let memory_size = self.meta.memory_size;
        if guest_addr
            .checked_add(len)
            .is_none_or(|end| end > memory_size)
        {
            return Err(WriterError::AddRegionBounds {
                guest_addr,
                len,
                memory_size,
            });
        }
        if self
            .regions
            .iter()
            .any(|r| guest_addr < r.guest_addr + r.len && r.guest_addr < guest_addr + len)
        {
            return Err(WriterError::AddRegionOverlap { guest_addr, len });
        }
        match self.store_chunks(bytes) {
            Ok(chunks) => {
                self.regions.push(Region {
                    guest_addr,
                    len,
                    chunks,
                });
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(WriterError::StoreChunk(e))
            }
        }
    }

    /// Hashes, compresses and writes the chunks of `bytes` on `threads` threads (chunk `i` goes
    /// to thread `i % threads`).
    fn store_chunks(&mut self, bytes: &[u8]) -> Result<Vec<Option<ChunkId>>, ChunkError> {
        let opts = self.store.options().clone();
        let cs = usize::try_from(opts.chunk_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let pieces: Vec<&[u8]> = bytes.chunks(cs).collect();
        let threads = opts.threads.max(1);
        let registered = Mutex::new(Vec::new());
        let abort = AtomicBool::new(false);
        let inner = &self.store.inner;
        type Done = (usize, Option<(ChunkId, u64, u64)>);
        type Out = (Vec<Done>, Vec<TempChunk>);
        let results: Vec<Result<Out, (ChunkError, Vec<TempChunk>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (pieces, registered, abort) = (&pieces, &registered, &abort);
                    s.spawn(move || {
                        let (mut done, mut temps) = (Vec::new(), Vec::new());
                        for (i, piece) in pieces.iter().enumerate().skip(t).step_by(threads) {
                            if abort.load(Ordering::Relaxed) {
                                break;
                            }
                            if chunks::is_zero(piece) {
                                done.push((i, None));
                                continue;
                            }
                            let id = ChunkId::of(piece);
                            // Register before looking, so gc cannot remove what we find.
                            *inner.pending.lock().entry(id).or_default() += 1;
                            registered.lock().push(id);
                            let stored = match inner.chunks.stored_len(&id) {
                                Some(n) => n,
                                None => {
                                    let temp = zstd::bulk::compress(piece, opts.zstd_level)
                                        .map_err(ChunkError::Compress)
                                        .and_then(|z| inner.chunks.write_temp(&id, &z));
                                    match temp {
                                        Ok(temp) => {
                                            let n = temp.len;
                                            temps.push(temp);
                                            n
                                        }
                                        Err(e) => {
                                            abort.store(true, Ordering::Relaxed);
                                            return Err((e, temps));
                                        }
                                    }
                                }
                            };
                            done.push((i, Some((id, piece.len() as u64, stored))));
                        }
                        Ok((done, temps))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        self.registered.extend(registered.into_inner());
        let (mut all_done, mut all_temps, mut first_err) = (Vec::new(), Vec::new(), None);
        for r in results {
            match r {
                Ok((done, temps)) => {
                    all_done.extend(done);
                    all_temps.extend(temps);
                }
                Err((e, temps)) => {
                    all_temps.extend(temps);
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            all_temps.into_iter().for_each(TempChunk::discard);
            return Err(e);
        }
        inner.chunks.persist(all_temps)?;
        let mut out = vec![None; pieces.len()];
        for (i, c) in all_done {
            if let Some((id, raw, stored)) = c {
                self.chunk_lens.insert(id, (raw, stored));
                out[i] = Some(id);
            }
        }
        Ok(out)
    }

    /// Sets the opaque state blob (vCPU and hypercall state, already codec-encoded).
    pub fn set_state(&mut self, blob: Vec<u8>) {
        self.state = blob;
    }

    /// Publishes the snapshot and returns its id.
    ///
    /// 1. All chunks are already durable (`add_region` returned).
    /// 2. Encode the manifest record; its blake3 hash is the snapshot id.
    /// 3. Under the index lock: if that manifest already exists (an identical snapshot), clear its
    ///    bad mark (its chunks were just checked present or rewritten) and return it; otherwise
    ///    one atomic batch writes the manifest and adds this snapshot's chunk references.
    /// 4. Dropping the writer releases its pending chunks.
    pub fn commit(self) -> Result<SnapshotId, WriterError> {
        if self.poisoned {
            return Err(WriterError::Poisoned);
        }
        let chunk_size = self.store.options().chunk_size;
        let record = manifest::encode_record(&self.meta, chunk_size, &self.regions, &self.state);
        let id = SnapshotId(*blake3::hash(&record).as_bytes());
        let kv = &self.store.inner.kv;
        let _guard = self.store.inner.index_lock.lock();
        if kv
            .get(&manifest_key(&id))
            .map_err(WriterError::ReadIndex)?
            .is_some()
        {
            kv.write(vec![KvOp::Delete(bad_key(&id))])
                .map_err(WriterError::WriteManifest)?;
            return Ok(id);
        }
        let mut uses: HashMap<ChunkId, u64> = HashMap::new();
        for c in self.regions.iter().flat_map(|r| r.chunks.iter().flatten()) {
            *uses.entry(*c).or_default() += 1;
        }
        let mut ops = vec![KvOp::Put(manifest_key(&id), record)];
        for (c, n) in uses {
            let key = chunk_key(&c);
            let old = kv.get(&key).map_err(WriterError::ReadIndex)?;
            let mut rec = old
                .and_then(|r| ChunkRecord::decode(&r))
                .unwrap_or_default();
            let (raw, stored) = self.chunk_lens.get(&c).copied().unwrap_or_default();
            rec.refs += n;
            rec.raw_len = raw;
            rec.stored_len = stored;
            ops.push(KvOp::Put(key, rec.encode()));
        }
        kv.write(ops).map_err(WriterError::WriteManifest)?;
        Ok(id)
    }

    /// The distinct chunks referenced so far (for progress reporting).
    pub fn chunk_count(&self) -> usize {
        self.chunk_lens.len()
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        let mut pending = self.store.inner.pending.lock();
        for id in self.registered.drain(..) {
            if let Some(n) = pending.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    pending.remove(&id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{mem_store, memory, meta, CS};
    use crate::{FailPoint, FunctionKey, StoreError, WriterError};

    #[test]
    fn test_multi_region_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let low = memory(3, 1);
        let mut high = memory(2, 10);
        high.truncate(high.len() - 1000); // a short last chunk
        let mut w = store.begin(meta("f"));
        w.add_region(0, &low).unwrap();
        w.add_region(8 << 20, &high).unwrap();
        w.set_state(b"vcpu state".to_vec());
        let id = w.commit().unwrap();

        let m = store.manifest(&id).unwrap();
        assert_eq!(m.state, b"vcpu state");
        assert_eq!(m.meta, meta("f"));
        assert_eq!(m.regions.len(), 2);
        assert_eq!(m.chunk_count(), 5);
        let mut back = Vec::new();
        for c in m.chunks().filter(|c| c.guest_addr >= 8 << 20) {
            back.extend(store.read_chunk(&c.id.unwrap()).unwrap());
        }
        assert_eq!(back, high);

        let out = dir.path().join("mem.img");
        store.materialize(&id, &out).unwrap();
        let img = std::fs::read(&out).unwrap();
        assert_eq!(img.len() as u64, 16 << 20);
        assert_eq!(&img[..low.len()], &low[..]);
        assert_eq!(&img[8 << 20..(8 << 20) + high.len()], &high[..]);
        assert!(img[low.len()..8 << 20].iter().all(|&b| b == 0));
    }

    #[test]
    fn test_zero_chunks_are_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let mut mem = vec![0u8; (4 * CS) as usize];
        mem[(2 * CS) as usize] = 1;
        let mut w = store.begin(meta("f"));
        w.add_region(0, &mem).unwrap();
        let id = w.commit().unwrap();
        let m = store.manifest(&id).unwrap();
        let ids: Vec<_> = m.chunks().map(|c| c.id.is_some()).collect();
        assert_eq!(ids, vec![false, false, true, false]);
        let s = store.stats().unwrap();
        assert_eq!((s.chunks, s.zero_bytes, s.unique_bytes), (1, 3 * CS, CS));
    }

    #[test]
    fn test_dedup_across_snapshots_and_functions() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let a = memory(8, 1);
        let mut b = a.clone();
        b[..CS as usize].copy_from_slice(&memory(1, 100)); // one differing chunk
        let mut w = store.begin(meta("f"));
        w.add_region(0, &a).unwrap();
        w.commit().unwrap();
        let before = store.stats().unwrap();
        let mut w = store.begin(meta("g"));
        w.add_region(0, &b).unwrap();
        w.commit().unwrap();
        let after = store.stats().unwrap();
        assert_eq!(after.chunks, before.chunks + 1);
        assert_eq!(after.unique_bytes, before.unique_bytes + CS);
        let one_chunk_stored = after.stored_bytes - before.stored_bytes;
        assert!(one_chunk_stored > 0 && one_chunk_stored * 4 < before.stored_bytes);
        assert!(after.dedup_ratio > 1.7, "{after:?}");
    }

    #[test]
    fn test_failed_write_leaves_previous_snapshot_current() {
        let dir = tempfile::tempdir().unwrap();
        let fail = FailPoint::after(u64::MAX);
        let store = mem_store(dir.path(), Some(fail.clone()));
        let f = FunctionKey::new("f");
        let mut w = store.begin(meta("f"));
        w.add_region(0, &memory(4, 1)).unwrap();
        let old = w.commit().unwrap();
        store.set_current(&f, &old).unwrap();

        // Fail after two more chunk writes, in the middle of the next snapshot's second region.
        fail.arm(2);
        let mut w = store.begin(meta("f"));
        w.add_region(0, &memory(2, 50)).unwrap();
        let err = w.add_region(1 << 20, &memory(6, 60)).unwrap_err();
        assert!(matches!(err, WriterError::StoreChunk(_)), "{err}");
        assert!(matches!(w.commit(), Err(WriterError::Poisoned)));
        assert_eq!(store.snapshots().unwrap(), vec![old]);
        assert_eq!(store.current(&f).unwrap(), Some(old));
        let out = dir.path().join("old.img");
        store.materialize(&old, &out).unwrap();
        assert_eq!(
            &std::fs::read(&out).unwrap()[..(4 * CS) as usize],
            &memory(4, 1)[..]
        );
        // The failed region left no temp files; the first region's two chunks are orphans for gc.
        fail.disarm();
        assert_eq!(store.gc().unwrap().files_removed, 2);
        assert!(store.verify().unwrap().problems.is_empty());
        assert!(matches!(
            store.manifest(&crate::SnapshotId([9; 32])),
            Err(StoreError::NoSuchSnapshot(_))
        ));
    }

    #[test]
    fn test_region_bounds_and_overlap_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let mut w = store.begin(meta("f"));
        let err = w.add_region((16 << 20) - 10, &[1u8; 20]).unwrap_err();
        assert!(matches!(err, WriterError::AddRegionBounds { .. }));
        w.add_region(0, &[1u8; 100]).unwrap();
        assert!(matches!(
            w.add_region(50, &[1u8; 100]),
            Err(WriterError::AddRegionOverlap { .. })
        ));
    }

    #[test]
    fn test_identical_snapshot_gets_same_id_without_double_counting() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let ids: Vec<_> = (0..2)
            .map(|_| {
                let mut w = store.begin(meta("f"));
                w.add_region(0, &memory(2, 1)).unwrap();
                w.commit().unwrap()
            })
            .collect();
        assert_eq!(ids[0], ids[1]);
        assert!(store.verify().unwrap().problems.is_empty());
    }
}
