//! The hooks wasmtime's no_std "custom platform" needs: two TLS slots (the guest is
//! single-threaded, so plain statics) and code memory that is already executable
//! (guest RAM is mapped RWX, so publishing is a no-op).
use core::sync::atomic::{AtomicPtr, Ordering};

static TLS: [AtomicPtr<u8>; 2] = [
    AtomicPtr::new(core::ptr::null_mut()),
    AtomicPtr::new(core::ptr::null_mut()),
];

#[unsafe(no_mangle)]
extern "C" fn wasmtime_tls_get(slot: usize) -> *mut u8 {
    TLS.get(slot)
        .map_or(core::ptr::null_mut(), |p| p.load(Ordering::Relaxed))
}

#[unsafe(no_mangle)]
extern "C" fn wasmtime_tls_set(slot: usize, ptr: *mut u8) {
    if let Some(p) = TLS.get(slot) {
        p.store(ptr, Ordering::Relaxed);
    }
}

/// Code memory on RWX guest RAM: nothing to publish.
pub struct GuestCodeMemory;

impl wasmtime::CustomCodeMemory for GuestCodeMemory {
    fn required_alignment(&self) -> usize {
        1
    }

    fn publish_executable(&self, _ptr: *const u8, _len: usize) -> wasmtime::Result<()> {
        Ok(())
    }

    fn unpublish_executable(&self, _ptr: *const u8, _len: usize) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// CPU feature detection for wasmtime's compatibility check, from CPUID as the
/// VMM configured it (so a module compiled for features the vCPU lacks is refused).
pub fn detect_feature(name: &str) -> Option<bool> {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let (l1, l7, ext) = (__cpuid(1), __cpuid_count(7, 0), __cpuid(0x8000_0001));
    Some(match name {
        "sse3" => l1.ecx & (1 << 0) != 0,
        "ssse3" => l1.ecx & (1 << 9) != 0,
        "fma" => l1.ecx & (1 << 12) != 0,
        "sse4.1" => l1.ecx & (1 << 19) != 0,
        "sse4.2" => l1.ecx & (1 << 20) != 0,
        "popcnt" => l1.ecx & (1 << 23) != 0,
        "avx" => l1.ecx & (1 << 28) != 0,
        "bmi1" => l7.ebx & (1 << 3) != 0,
        "avx2" => l7.ebx & (1 << 5) != 0,
        "bmi2" => l7.ebx & (1 << 8) != 0,
        "avx512f" => l7.ebx & (1 << 16) != 0,
        "lzcnt" => ext.ecx & (1 << 5) != 0,
        _ => return None,
    })
}
