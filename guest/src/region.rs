//! The function's memory region as the engine heap and the linear memory share
//! it (docs/MEMORY.md): the linear memory grows up from the region's start, the
//! heap grows down from its end. This module owns only the counters both sides
//! read, so neither imports the other's internals: the linear memory's size
//! ([`linear_bytes`]), the heap's lowest hold ([`floor`]) and the lowest byte the
//! heap ever wrote ([`dirty_floor`]).
use core::sync::atomic::{AtomicU64, Ordering};

/// Bytes of linear memory in use.
static LINEAR_BYTES: AtomicU64 = AtomicU64::new(0);
/// The lowest address of the memory region the heap holds (the region's end when
/// it holds none): the linear memory may grow up to here.
static FLOOR: AtomicU64 = AtomicU64::new(0);
/// The lowest address of the memory region the heap ever held: bytes above it may
/// be dirty, so the linear memory zeroes them when it grows over them.
static DIRTY_FLOOR: AtomicU64 = AtomicU64::new(0);

/// Bytes of linear memory now.
pub fn linear_bytes() -> u64 {
    LINEAR_BYTES.load(Ordering::Relaxed)
}

/// Records the linear memory's new size.
pub fn set_linear_bytes(n: u64) {
    LINEAR_BYTES.store(n, Ordering::Relaxed);
}

/// Where the heap's hold on the memory region starts.
pub fn floor() -> u64 {
    FLOOR.load(Ordering::Relaxed)
}

/// Where bytes the heap may have written start (see [`DIRTY_FLOOR`]).
pub fn dirty_floor() -> u64 {
    DIRTY_FLOOR.load(Ordering::Relaxed)
}

/// The heap holds none of a region ending at `end` yet.
pub fn reset(end: u64) {
    FLOOR.store(end, Ordering::Relaxed);
    DIRTY_FLOOR.store(end, Ordering::Relaxed);
}

/// The heap's hold now starts at `low` (it grew down to it).
pub fn heap_grew_to(low: u64) {
    FLOOR.store(low, Ordering::Relaxed);
    DIRTY_FLOOR.fetch_min(low, Ordering::Relaxed);
}

/// The heap gave back everything below `low` (the bytes stay dirty).
pub fn heap_shrank_to(low: u64) {
    FLOOR.store(low, Ordering::Relaxed);
}

/// The linear memory now owns everything below `end`: bytes there are no longer
/// ones the heap left behind.
pub fn mark_clean_below(end: u64) {
    DIRTY_FLOOR.fetch_max(end, Ordering::Relaxed);
}
