//! The placement verdict: why this host cannot take another instance.

/// The host cannot take another instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The memory budget is full of instances that cannot be evicted.
    #[error("memory budget exhausted: {needed} bytes needed, {used} of {budget} used, {evictable} evictable")]
    NoCapacity {
        /// Bytes the new instance needs.
        needed: u64,
        /// Bytes charged now.
        used: u64,
        /// The budget.
        budget: u64,
        /// Bytes held by idle on-demand instances.
        evictable: u64,
    },
}
