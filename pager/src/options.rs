//! How a pager is started: [`PagerOptions`] (recording, caches, prefetch threads) and the
//! [`FatalCallback`] the handler calls when a fault cannot be served. Shared by the public
//! face (`pager.rs`), the fault handler and the prefetcher, so those depend on this, not on
//! each other.
use crate::error::PagerError;
use std::sync::Arc;

/// Called once, from the handler thread, when the pager cannot serve a fault.
pub type FatalCallback = Arc<dyn Fn(&PagerError) + Send + Sync>;

/// Options for [`Pager::start`].
#[derive(Clone, Default)]
pub struct PagerOptions {
    /// Record the chunk indices faults touch, in order, deduplicated.
    pub record: bool,
    /// Decompressed blocks the handler keeps (0 means the default, 4).
    pub cache_blocks: usize,
    /// Called when a fault cannot be served (the VMM stops the vCPU).
    pub on_fatal: Option<FatalCallback>,
    /// Threads [`PagerHandle::prefetch_blocking`] reads, decompresses and installs
    /// blocks on (the caller's included); 0 means one per CPU, at most 4.
    pub prefetch_threads: usize,
}

impl std::fmt::Debug for PagerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerOptions")
            .field("record", &self.record)
            .field("cache_blocks", &self.cache_blocks)
            .field("on_fatal", &self.on_fatal.is_some())
            .field("prefetch_threads", &self.prefetch_threads)
            .finish()
    }
}
