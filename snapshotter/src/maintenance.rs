//! Whole-store maintenance: [`Store::stats`], [`Store::verify`] (re-hash every chunk, check every
//! manifest and reference count) and [`Store::gc`] (delete chunk files nothing references).

use std::collections::{HashMap, HashSet};

use crate::ids::{ChunkId, SnapshotId};
use crate::keys::{chunk_key, ChunkRecord};
use crate::kv::KvOp;
use crate::manifest;
use crate::store::{Store, StoreError};

/// Sizes and counts of a store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStats {
    /// Committed snapshots.
    pub snapshots: u64,
    /// Distinct chunks referenced by at least one snapshot.
    pub chunks: u64,
    /// Guest memory covered by all snapshots' regions.
    pub raw_bytes: u64,
    /// Of `raw_bytes`, bytes in all-zero chunks (not stored).
    pub zero_bytes: u64,
    /// Uncompressed bytes of the distinct chunks.
    pub unique_bytes: u64,
    /// Compressed bytes of the distinct chunks on disk.
    pub stored_bytes: u64,
    /// Non-zero raw bytes over unique bytes: how much dedup saved (1.0 = nothing).
    pub dedup_ratio: f64,
}

/// One problem [`Store::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyProblem {
    /// A chunk file is unreadable or does not match its hash (it was moved aside).
    CorruptChunk { id: ChunkId, reason: String },
    /// A snapshot references a chunk with no file.
    MissingChunk { snapshot: SnapshotId, id: ChunkId },
    /// A manifest record does not decode.
    BadManifest {
        snapshot: SnapshotId,
        reason: String,
    },
    /// A chunk's recorded reference count differs from the manifests' count.
    RefCount {
        id: ChunkId,
        recorded: u64,
        actual: u64,
    },
}

/// What [`Store::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Snapshots whose manifests were checked.
    pub snapshots_checked: u64,
    /// Chunk files re-hashed.
    pub chunks_checked: u64,
    /// Everything wrong, empty for a healthy store.
    pub problems: Vec<VerifyProblem>,
    /// Snapshots marked bad because a chunk of theirs is missing or corrupt.
    pub marked_bad: Vec<SnapshotId>,
}

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Chunk and leftover temp files deleted.
    pub files_removed: u64,
    /// Bytes those files held.
    pub bytes_freed: u64,
}

impl Store {
    fn chunk_records(&self) -> Result<HashMap<ChunkId, ChunkRecord>, StoreError> {
        let rows = self
            .inner
            .kv
            .scan_prefix(b"c/")
            .map_err(StoreError::ReadIndex)?;
        Ok(rows
            .iter()
            .filter_map(|(k, v)| {
                let id = std::str::from_utf8(&k[2..]).ok()?.parse().ok()?;
                Some((id, ChunkRecord::decode(v)?))
            })
            .collect())
    }

    /// Counts and sizes over the whole store.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let ids = self.snapshots()?;
        let (mut raw_bytes, mut zero_bytes) = (0, 0);
        for id in &ids {
            let m = self.manifest(id)?;
            raw_bytes += m.raw_len();
            zero_bytes += m
                .chunks()
                .filter(|c| c.id.is_none())
                .map(|c| c.len)
                .sum::<u64>();
        }
        let live: Vec<_> = self
            .chunk_records()?
            .into_values()
            .filter(|r| r.refs > 0)
            .collect();
        let unique_bytes = live.iter().map(|r| r.raw_len).sum::<u64>();
        let nonzero = raw_bytes - zero_bytes;
        Ok(StoreStats {
            snapshots: ids.len() as u64,
            chunks: live.len() as u64,
            raw_bytes,
            zero_bytes,
            unique_bytes,
            stored_bytes: live.iter().map(|r| r.stored_len).sum(),
            dedup_ratio: if unique_bytes == 0 {
                1.0
            } else {
                nonzero as f64 / unique_bytes as f64
            },
        })
    }

    /// Checks the whole store: every chunk file re-hashed (corrupt ones moved aside), every
    /// manifest decoded and its chunks present, every reference count recounted. Snapshots that
    /// lost a chunk are marked bad.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let mut good: HashSet<ChunkId> = HashSet::new();
        let files = self.inner.chunks.list().map_err(StoreError::ScanChunks)?;
        for f in files.iter().filter(|f| !f.is_temp) {
            let Some(id) = f.id else { continue };
            report.chunks_checked += 1;
            match self.read_chunk_uncached(&id) {
                Ok(_) => {
                    good.insert(id);
                }
                Err(e) => report.problems.push(VerifyProblem::CorruptChunk {
                    id,
                    reason: std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                }),
            }
        }
        let mut actual: HashMap<ChunkId, u64> = HashMap::new();
        let rows = self
            .inner
            .kv
            .scan_prefix(b"m/")
            .map_err(StoreError::ReadIndex)?;
        for (k, rec) in rows {
            let Some(snapshot) = std::str::from_utf8(&k[2..])
                .ok()
                .and_then(|s| s.parse().ok())
            else {
                continue;
            };
            report.snapshots_checked += 1;
            let m = match manifest::decode_record(snapshot, &rec) {
                Ok(m) => m,
                Err(e) => {
                    let reason = e.to_string();
                    report
                        .problems
                        .push(VerifyProblem::BadManifest { snapshot, reason });
                    continue;
                }
            };
            let mut lost = false;
            for id in m.chunks().filter_map(|c| c.id) {
                *actual.entry(id).or_default() += 1;
                if !good.contains(&id) {
                    lost = true;
                    report
                        .problems
                        .push(VerifyProblem::MissingChunk { snapshot, id });
                }
            }
            if lost {
                self.mark_bad(&snapshot, "verify found missing or corrupt chunks")?;
                report.marked_bad.push(snapshot);
            }
        }
        for (id, rec) in self.chunk_records()? {
            let n = actual.remove(&id).unwrap_or(0);
            if rec.refs != n {
                report.problems.push(VerifyProblem::RefCount {
                    id,
                    recorded: rec.refs,
                    actual: n,
                });
            }
        }
        for (id, n) in actual {
            report.problems.push(VerifyProblem::RefCount {
                id,
                recorded: 0,
                actual: n,
            });
        }
        Ok(report)
    }

    /// Deletes chunk files no snapshot references (reference count 0 or no record), leftover temp
    /// and quarantined files, and the records of dead chunks. Chunks an uncommitted writer relies
    /// on are kept.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _index = self.inner.index_lock.lock();
        let pending = self.inner.pending.lock();
        let records = self.chunk_records()?;
        let mut report = GcReport::default();
        let files = self.inner.chunks.list().map_err(StoreError::ScanChunks)?;
        for f in &files {
            if f.id.is_some_and(|id| pending.contains_key(&id)) {
                continue;
            }
            let live = !f.is_temp
                && f.id
                    .is_some_and(|id| records.get(&id).is_some_and(|r| r.refs > 0));
            if !live {
                self.inner
                    .chunks
                    .remove(f)
                    .map_err(StoreError::ScanChunks)?;
                report.files_removed += 1;
                report.bytes_freed += f.len;
            }
        }
        let dead: Vec<KvOp> = records
            .iter()
            .filter(|(id, r)| r.refs == 0 && !pending.contains_key(id))
            .map(|(id, _)| KvOp::Delete(chunk_key(id)))
            .collect();
        if !dead.is_empty() {
            self.write(dead)?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{mem_store, memory, meta, CS};
    use crate::{StoreError, VerifyProblem};

    #[test]
    fn test_gc_removes_orphans_and_keeps_live_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let mut w = store.begin(meta("f"));
        w.add_region(0, &memory(3, 1)).unwrap();
        let id = w.commit().unwrap();
        // An abandoned writer leaves orphans, which gc keeps while the writer is alive.
        let mut w = store.begin(meta("f"));
        w.add_region(0, &memory(2, 20)).unwrap();
        assert_eq!(store.gc().unwrap().files_removed, 0);
        drop(w);
        let r = store.gc().unwrap();
        assert_eq!(r.files_removed, 2);
        assert!(r.bytes_freed > 0);
        assert_eq!(store.gc().unwrap().files_removed, 0);
        let out = dir.path().join("m.img");
        store.materialize(&id, &out).unwrap();
    }

    #[test]
    fn test_verify_reports_missing_and_corrupt_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = mem_store(dir.path(), None);
        let mut w = store.begin(meta("f"));
        w.add_region(0, &memory(3, 1)).unwrap();
        let id = w.commit().unwrap();
        let report = store.verify().unwrap();
        assert_eq!((report.chunks_checked, report.snapshots_checked), (3, 1));
        assert!(report.problems.is_empty());

        let chunks = store.manifest(&id).unwrap().regions[0].chunks.clone();
        let (a, b) = (chunks[0].unwrap(), chunks[1].unwrap());
        std::fs::remove_file(store.inner.chunks.path(&a)).unwrap();
        std::fs::write(store.inner.chunks.path(&b), b"garbage").unwrap();
        let report = store.verify().unwrap();
        assert!(report.problems.contains(&VerifyProblem::MissingChunk {
            snapshot: id,
            id: a
        }));
        assert!(report
            .problems
            .iter()
            .any(|p| matches!(p, VerifyProblem::CorruptChunk { id, .. } if *id == b)));
        assert_eq!(report.marked_bad, vec![id]);
        assert!(matches!(
            store.materialize(&id, &dir.path().join("x")),
            Err(StoreError::SnapshotBad { .. })
        ));
    }

    #[test]
    fn test_stats_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = mem_store(dir.path(), None).stats().unwrap();
        assert_eq!(
            (s.snapshots, s.chunks, s.stored_bytes, s.dedup_ratio),
            (0, 0, 0, 1.0)
        );
        let _ = CS;
    }
}
