//! The invocation log: stdout and stderr are appended to the shared log buffer and
//! handed to the VMM with the next hypercall (or a `Log` call when it fills up), so a
//! chatty handler costs one exit per megabyte rather than one per line.
use core::sync::atomic::{AtomicUsize, Ordering};
use thaw_abi::layout;

static LEN: AtomicUsize = AtomicUsize::new(0);

/// Bytes in the log buffer not yet taken by the VMM.
pub fn pending() -> u64 {
    LEN.load(Ordering::Relaxed) as u64
}

/// Marks the buffer empty after a hypercall took `pending()` bytes.
pub fn taken() {
    LEN.store(0, Ordering::Relaxed);
}

/// Appends bytes, flushing whenever the buffer is full.
pub fn write(mut data: &[u8]) {
    let cap = layout::LOG_SIZE as usize;
    while !data.is_empty() {
        let len = LEN.load(Ordering::Relaxed);
        if len == cap {
            crate::hc::log(len as u64);
            taken();
            continue;
        }
        let n = data.len().min(cap - len);
        // SAFETY: [LOG + len, LOG + len + n) lies inside the mapped log buffer
        // (len + n <= cap); the guest is single-threaded.
        unsafe {
            core::ptr::copy_nonoverlapping(
                data.as_ptr(),
                (layout::LOG as usize + len) as *mut u8,
                n,
            )
        };
        LEN.store(len + n, Ordering::Relaxed);
        data = &data[n..];
    }
}

/// Reports a fatal error, with the log not yet handed over, and never returns.
pub fn abort(msg: &str) -> ! {
    crate::hc::abort(msg, pending())
}
