//! [`KvStore`] on RocksDB: the store's durable index. Every batch is written with `sync = true`,
//! so a committed manifest survives a crash.

use std::path::Path;

use rocksdb::{Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use crate::kv::{KvError, KvOp, KvPairs, KvStore};
use crate::store::{Store, StoreError, StoreOptions};
use std::sync::Arc;

/// The production store: its index in RocksDB (the store's core only knows [`KvStore`]).
impl Store {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_with_options(dir, StoreOptions::default())
    }

    /// Opens (creating if needed) the store in `dir`: RocksDB in `dir/index`, chunks in `dir/chunks`.
    pub fn open_with_options(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let index = dir.join("index");
        std::fs::create_dir_all(&index)
            .map_err(|e| StoreError::OpenIndex(KvError::Open(Box::new(e))))?;
        let kv = RocksKv::open(&index).map_err(StoreError::OpenIndex)?;
        Self::with_kv(Arc::new(kv), &dir.join("chunks"), opts)
    }
}

/// A RocksDB database used as a [`KvStore`].
pub struct RocksKv {
    db: DB,
}

impl std::fmt::Debug for RocksKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksKv")
            .field("path", &self.db.path())
            .finish()
    }
}

impl RocksKv {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, KvError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, dir).map_err(|e| KvError::Open(Box::new(e)))?;
        Ok(Self { db })
    }
}

impl KvStore for RocksKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.db.get(key).map_err(|e| KvError::Get(Box::new(e)))
    }

    fn write(&self, ops: Vec<KvOp>) -> Result<(), KvError> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                KvOp::Put(k, v) => batch.put(k, v),
                KvOp::Delete(k) => batch.delete(k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| KvError::Write(Box::new(e)))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, KvError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| KvError::Scan(Box::new(e)))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rocks_kv_contract() {
        let dir = tempfile::tempdir().unwrap();
        check(&RocksKv::open(dir.path()).unwrap());
    }

    #[test]
    fn test_rocks_kv_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        RocksKv::open(dir.path()).unwrap().put(b"k", b"v").unwrap();
        let kv = RocksKv::open(dir.path()).unwrap();
        assert_eq!(kv.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    fn check(kv: &dyn KvStore) {
        crate::kv::check_kv_contract(kv);
    }
}
