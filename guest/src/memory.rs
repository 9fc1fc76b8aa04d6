//! The function's memory, as its MemorySize promises it (docs/MEMORY.md).
//!
//! The WebAssembly linear memory (CPython's whole heap) lives in its own region of
//! guest RAM, `[memory_start, memory_end)`, and grows there in place: no copy on
//! `memory.grow` and no second buffer while it grows, so a function can use nearly
//! all of its MemorySize (wasmtime's default memory, a heap vector, needs the old
//! and the new size at once while it reallocates).
//!
//! The budget: linear memory + the engine heap in use (wasmtime's structures,
//! `/tmp`, socket buffers) stays within the region's length, the MemorySize. A
//! `memory.grow` past it fails (`-1`), which CPython turns into `MemoryError` at
//! once; a `/tmp` write past it fails with `ENOSPC` ([`Budget::fits`]). The runtime
//! image (the precompiled module, the function's files) lies below the heap and is
//! not charged: it is shared and read-only.
//!
//! When the engine heap's own range is full, the heap grows down from the top of
//! this region ([`crate::heap`]); the linear memory grows up to the heap's floor and
//! never past it, and zeroes what the heap gave back before handing it out.
use crate::region;
use alloc::boxed::Box;
use alloc::string::String;
use core::sync::atomic::Ordering;
use wasmtime::{LinearMemory, MemoryCreator, MemoryType, ResourceLimiter};

/// Memory the function uses now: linear memory plus the engine heap in use.
pub fn used_bytes() -> u64 {
    region::linear_bytes() + crate::heap::used_bytes()
}

/// Creates the one linear memory, at the start of the memory region.
pub struct RegionCreator {
    start: u64,
    len: u64,
}

impl RegionCreator {
    /// The region `[start, end)` from the boot info.
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            len: end.saturating_sub(start),
        }
    }
}

// SAFETY: `new_memory` hands out the region once (a second memory is refused), the
// region is zero-filled guest RAM nothing else uses, and growth stays inside it.
unsafe impl MemoryCreator for RegionCreator {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        _maximum: Option<usize>,
        reserved: Option<usize>,
        guard: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        static TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        if guard != 0 || reserved.is_some_and(|r| r as u64 > self.len) {
            return Err(alloc::format!(
                "linear memory wants a {reserved:?}-byte reservation with a {guard}-byte guard; the region is {} bytes without guards",
                self.len
            ));
        }
        if minimum as u64 > self.len {
            return Err(alloc::format!(
                "the module's initial memory ({minimum} bytes) exceeds MemorySize ({} bytes)",
                self.len
            ));
        }
        if TAKEN.swap(true, Ordering::Relaxed) {
            return Err("a second linear memory (the runtime has one)".into());
        }
        region::set_linear_bytes(minimum as u64);
        Ok(Box::new(RegionMemory {
            base: self.start as *mut u8,
            size: minimum,
            capacity: self.len as usize,
        }))
    }
}

/// The linear memory: a fixed base, grown in place up to the region's end.
struct RegionMemory {
    base: *mut u8,
    size: usize,
    capacity: usize,
}

// SAFETY: the guest has one thread; the pointer is to guest RAM that lives as long
// as the VM.
unsafe impl Send for RegionMemory {}
// SAFETY: as for Send.
unsafe impl Sync for RegionMemory {}

// SAFETY: the base is 2 MiB aligned (the boot info's region), the memory never
// moves, and `[base, base + capacity)` is mapped, zero-filled RAM owned by it.
unsafe impl LinearMemory for RegionMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size > self.capacity {
            return Err(wasmtime::format_err!(
                "linear memory of {new_size} bytes exceeds MemorySize"
            ));
        }
        let (old_end, new_end) = (
            self.base as u64 + self.size as u64,
            self.base as u64 + new_size as u64,
        );
        if new_end > region::floor() {
            crate::heap::release_unused();
        }
        if new_end > region::floor() {
            return Err(wasmtime::format_err!(
                "linear memory of {new_size} bytes would overlap the engine heap (MemorySize in use)"
            ));
        }
        // Bytes between the old and the new size are the region's zeroes, except
        // where the heap held them before and gave them back.
        let dirty = region::dirty_floor().max(old_end);
        if new_end > dirty {
            // SAFETY: `[dirty, new_end)` lies inside this memory's region, below the
            // heap's floor (checked above), and is not yet part of the linear memory,
            // so nothing else reads or writes it.
            unsafe { core::ptr::write_bytes(dirty as *mut u8, 0, (new_end - dirty) as usize) };
            region::mark_clean_below(new_end);
        }
        self.size = new_size;
        region::set_linear_bytes(new_size as u64);
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base
    }
}

/// The store's limiter: growth of the linear memory within the budget (see the
/// module doc); tables and instances as wasmtime's defaults.
pub struct Budget {
    /// MemorySize in bytes.
    pub limit: u64,
}

impl Budget {
    /// Whether `extra` more bytes (a `/tmp` file growing) keep the function within
    /// its MemorySize.
    pub fn fits(&self, extra: usize) -> bool {
        used_bytes()
            .checked_add(extra as u64)
            .is_some_and(|n| n <= self.limit)
    }
}

impl ResourceLimiter for Budget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let heap = crate::heap::used_bytes();
        Ok(desired >= current && (desired as u64).saturating_add(heap) <= self.limit)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table entry is a pointer in the engine heap: 10M entries (80 MB) is far
        // beyond any real module and keeps a hostile one from taking the heap.
        Ok(desired <= 10_000_000)
    }
}
