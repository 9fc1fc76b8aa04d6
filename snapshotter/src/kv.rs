//! The narrow key-value interface the store's core uses for its index ([`KvStore`]), and an
//! in-memory implementation ([`MemKv`]) for tests. The RocksDB implementation lives in `rocks.rs`;
//! nothing else in the core names RocksDB.

use std::collections::BTreeMap;
use std::fmt::Debug;

use parking_lot::RwLock;

/// A boxed backend error, so the core never names the backend's error type.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// Key-value pairs returned by a scan.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a key-value operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Opening the backend failed.
    #[error("cannot open the index")]
    Open(#[source] BackendError),
    /// A point read failed.
    #[error("index read failed")]
    Get(#[source] BackendError),
    /// An atomic batch write failed; none of it is applied.
    #[error("index batch write failed")]
    Write(#[source] BackendError),
    /// A prefix scan failed.
    #[error("index scan failed")]
    Scan(#[source] BackendError),
}

/// One operation in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key` (no error if absent).
    Delete(Vec<u8>),
}

/// An ordered, durable key-value store.
pub trait KvStore: Send + Sync + Debug {
    /// The value of `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    /// Applies all of `ops` atomically and durably (synced before returning), or none of them.
    fn write(&self, ops: Vec<KvOp>) -> Result<(), KvError>;
    /// All pairs whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, KvError>;

    /// Sets one key durably.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.write(vec![KvOp::Put(key.to_vec(), value.to_vec())])
    }
    /// Removes one key durably.
    fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        self.write(vec![KvOp::Delete(key.to_vec())])
    }
}

/// An in-memory [`KvStore`] for tests; a batch is applied under one lock, so it is atomic.
#[derive(Debug, Default)]
pub struct MemKv {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvStore for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.map.read().get(key).cloned())
    }

    fn write(&self, ops: Vec<KvOp>) -> Result<(), KvError> {
        let mut map = self.map.write();
        for op in ops {
            match op {
                KvOp::Put(k, v) => {
                    map.insert(k, v);
                }
                KvOp::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, KvError> {
        let map = self.map.read();
        Ok(map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Shared behaviour tests, run against every implementation.
#[cfg(test)]
pub(crate) fn check_kv_contract(kv: &dyn KvStore) {
    assert_eq!(kv.get(b"a").unwrap(), None);
    kv.write(vec![
        KvOp::Put(b"p/1".to_vec(), b"one".to_vec()),
        KvOp::Put(b"p/2".to_vec(), b"two".to_vec()),
        KvOp::Put(b"q/1".to_vec(), b"other".to_vec()),
        KvOp::Put(b"p".to_vec(), b"short".to_vec()),
    ])
    .unwrap();
    assert_eq!(kv.get(b"p/1").unwrap().as_deref(), Some(&b"one"[..]));
    let scan = kv.scan_prefix(b"p/").unwrap();
    let keys: Vec<_> = scan.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, vec![&b"p/1"[..], &b"p/2"[..]]);
    kv.delete(b"p/1").unwrap();
    assert_eq!(kv.get(b"p/1").unwrap(), None);
    kv.write(vec![
        KvOp::Delete(b"p/2".to_vec()),
        KvOp::Put(b"p/3".to_vec(), b"3".to_vec()),
    ])
    .unwrap();
    assert_eq!(kv.scan_prefix(b"p/").unwrap().len(), 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mem_kv_contract() {
        check_kv_contract(&MemKv::new());
    }
}
