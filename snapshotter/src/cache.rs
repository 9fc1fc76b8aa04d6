//! A small byte-bounded LRU cache of decompressed, verified chunks, so repeated reads of hot
//! chunks (many clones restoring one snapshot) skip zstd and blake3.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ids::ChunkId;

/// Least-recently-used cache bounded by the total bytes it holds.
#[derive(Debug)]
pub(crate) struct ChunkCache {
    capacity: usize,
    used: usize,
    tick: u64,
    entries: HashMap<ChunkId, (Arc<Vec<u8>>, u64)>,
}

impl ChunkCache {
    /// A cache holding at most `capacity` bytes (0 disables it).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
        }
    }

    /// The cached bytes of `id`, marking them recently used.
    /// Whether `id` is held (does not count as a use).
    pub(crate) fn contains(&self, id: &ChunkId) -> bool {
        self.entries.contains_key(id)
    }

    pub(crate) fn get(&mut self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(id).map(|(bytes, used)| {
            *used = tick;
            bytes.clone()
        })
    }

    /// Adds verified bytes, evicting the least recently used entries to stay under capacity.
    pub(crate) fn insert(&mut self, id: ChunkId, bytes: Arc<Vec<u8>>) {
        if bytes.len() > self.capacity || self.entries.contains_key(&id) {
            return;
        }
        while self.used + bytes.len() > self.capacity {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.remove(&oldest);
        }
        self.tick += 1;
        self.used += bytes.len();
        self.entries.insert(id, (bytes, self.tick));
    }

    /// Drops `id` if cached.
    pub(crate) fn remove(&mut self, id: &ChunkId) {
        if let Some((bytes, _)) = self.entries.remove(id) {
            self.used -= bytes.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_evicts_least_recently_used() {
        let mut c = ChunkCache::new(20);
        let (a, b, d) = (ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([3; 32]));
        c.insert(a, Arc::new(vec![0; 10]));
        c.insert(b, Arc::new(vec![0; 10]));
        assert!(c.get(&a).is_some());
        c.insert(d, Arc::new(vec![0; 10]));
        assert!(c.get(&b).is_none());
        assert!(c.get(&a).is_some() && c.get(&d).is_some());
        c.insert(ChunkId([4; 32]), Arc::new(vec![0; 30]));
        assert_eq!(c.used, 20);
    }
}
