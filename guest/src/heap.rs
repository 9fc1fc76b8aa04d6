//! The guest allocator: talc over the heap range the VMM assigned. The guest is
//! single-threaded (one vCPU, no interrupts), so the lock is a no-op.
//!
//! When that range is used up (a large `/tmp`, socket buffers), the allocator grows
//! down from the top of the function's memory region, 2 MiB at a time, while the
//! WebAssembly linear memory grows up from its bottom: both live within MemorySize
//! (docs/MEMORY.md). The lowest byte the heap holds there is the linear memory's
//! ceiling (the `memory` module, a layer above this one, grows up to it);
//! [`release_unused`] gives back what it no longer uses. The counters both sides
//! read live in [`crate::region`].
use crate::region;
use core::alloc::Layout;
use talc::{locking::AssumeUnlockable, OomHandler, Span, Talc, Talck};

/// How much the heap takes from the memory region at a time.
const STEP: usize = 2 << 20;

/// The heap's share of the top of the memory region.
pub struct GrowDown {
    /// Start of the memory region (the linear memory's base).
    region_start: usize,
    /// End of the memory region.
    region_end: usize,
    /// The heap span claimed from the region's top, empty until the first claim.
    ext: Span,
}

#[global_allocator]
static ALLOCATOR: Talck<AssumeUnlockable, GrowDown> = Talc::new(GrowDown {
    region_start: 0,
    region_end: 0,
    ext: Span::empty(),
})
.lock();

impl OomHandler for GrowDown {
    fn handle_oom(talc: &mut Talc<Self>, layout: Layout) -> Result<(), ()> {
        let (region_start, region_end, ext) = {
            let h = &talc.oom_handler;
            (h.region_start, h.region_end, h.ext)
        };
        if region_end == 0 {
            return Err(());
        }
        let top = ext.get_base_acme().map_or(region_end, |(b, _)| b as usize);
        // The allocation, its alignment and talc's per-chunk tags, in whole steps.
        let want = layout
            .size()
            .checked_add(layout.align() + 64)
            .and_then(|n| n.checked_next_multiple_of(STEP))
            .ok_or(())?;
        let linear_end = region_start + region::linear_bytes() as usize;
        let base = top
            .checked_sub(want)
            .filter(|b| *b >= linear_end)
            .ok_or(())?;
        let req = Span::new(base as *mut u8, region_end as *mut u8);
        // SAFETY: `[base, region_end)` lies in the memory region above the linear
        // memory's current end (checked just above), and the linear memory never
        // grows past `region::floor()`; no other heap overlaps it.
        let new = unsafe {
            if ext.is_empty() {
                talc.claim(req)?
            } else {
                talc.extend(ext, req)
            }
        };
        talc.oom_handler.ext = new;
        let low = new
            .get_base_acme()
            .map_or(region_end as u64, |(b, _)| b as u64);
        region::heap_grew_to(low);
        Ok(())
    }
}

/// Why the heap could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapError {
    /// The boot info's heap range is empty.
    Empty,
    /// The range cannot hold the allocator's own metadata.
    TooSmall,
}

impl HeapError {
    /// The abort message.
    pub fn message(self) -> &'static str {
        match self {
            Self::Empty => "boot info has an empty heap",
            Self::TooSmall => "heap range too small for the allocator",
        }
    }
}

/// Hands `[start, end)` to the allocator, and lets it grow down from the top of
/// the memory region `[region_start, region_end)` when that is used up.
pub fn init(start: u64, end: u64, region_start: u64, region_end: u64) -> Result<(), HeapError> {
    if end <= start {
        return Err(HeapError::Empty);
    }
    let span = Span::new(start as *mut u8, end as *mut u8);
    let mut talc = ALLOCATOR.lock();
    talc.oom_handler.region_start = region_start as usize;
    talc.oom_handler.region_end = region_end as usize;
    region::reset(region_end);
    // SAFETY: the VMM reserves [start, end) of identity-mapped guest RAM for the
    // heap and nothing else uses it; this runs once, before any allocation.
    if unsafe { talc.claim(span) }.is_err() {
        return Err(HeapError::TooSmall);
    }
    Ok(())
}

/// Gives back the part of the memory region the heap holds but no longer uses
/// (whole steps below its lowest allocation), so the linear memory can grow there.
pub fn release_unused() {
    let mut talc = ALLOCATOR.lock();
    let ext = talc.oom_handler.ext;
    let Some((base, acme)) = ext.get_base_acme() else {
        return;
    };
    // SAFETY: `ext` is a heap this allocator established (the OOM handler's span).
    let used = unsafe { talc.get_allocated_span(ext) };
    let (base, acme) = (base as usize, acme as usize);
    // Keep at least one step: talc's heaps cannot be released whole.
    let keep_from = used
        .get_base_acme()
        .map_or(acme, |(b, _)| b as usize)
        .min(acme - STEP.min(acme - base));
    let new_base = (keep_from / STEP * STEP).max(base);
    if new_base == base {
        return;
    }
    let req = Span::new(new_base as *mut u8, acme as *mut u8);
    // SAFETY: `req` lies within `ext` and contains every allocation in it (it
    // starts at or below the lowest one).
    let new = unsafe { talc.truncate(ext, req) };
    talc.oom_handler.ext = new;
    let low = new.get_base_acme().map_or(acme as u64, |(b, _)| b as u64);
    region::heap_shrank_to(low);
}

/// Bytes the allocator has handed out and not taken back.
pub fn used_bytes() -> u64 {
    ALLOCATOR.lock().get_counters().allocated_bytes as u64
}
