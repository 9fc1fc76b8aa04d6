//! The guest allocator: talc over the heap range the VMM assigned. The guest is
//! single-threaded (one vCPU, no interrupts), so the lock is a no-op.
use talc::{locking::AssumeUnlockable, ErrOnOom, Span, Talc, Talck};

#[global_allocator]
static ALLOCATOR: Talck<AssumeUnlockable, ErrOnOom> = Talc::new(ErrOnOom).lock();

/// Hands `[start, end)` to the allocator.
pub fn init(start: u64, end: u64) {
    if end <= start {
        crate::hc::abort("boot info has an empty heap");
    }
    let span = Span::new(start as *mut u8, end as *mut u8);
    // SAFETY: the VMM reserves [start, end) of identity-mapped guest RAM for the
    // heap and nothing else uses it; this runs once, before any allocation.
    if unsafe { ALLOCATOR.lock().claim(span) }.is_err() {
        crate::hc::abort("heap range too small for the allocator");
    }
}

/// Bytes the allocator has handed out and not taken back.
pub fn used_bytes() -> u64 {
    ALLOCATOR.lock().get_counters().allocated_bytes as u64
}
