//! Clocks from the TSC plus a host-provided anchor: wall time is the anchor's
//! epoch plus TSC ticks since the anchor; the VMM refreshes the anchor at every
//! `Next` so a restored clone sees the current time, not the snapshot's.
use core::sync::atomic::{AtomicU64, Ordering};
use thaw_abi::Clock;

static TSC_KHZ: AtomicU64 = AtomicU64::new(1);
static EPOCH_NS: AtomicU64 = AtomicU64::new(0);
static ANCHOR_TSC: AtomicU64 = AtomicU64::new(0);

/// Sets the TSC frequency and the first anchor.
pub fn init(tsc_khz: u64, clock: Clock) {
    TSC_KHZ.store(tsc_khz.max(1), Ordering::Relaxed);
    set_anchor(clock);
}

/// Replaces the wall-clock anchor (ignored when the VMM sent none).
pub fn set_anchor(clock: Clock) {
    if clock.epoch_ns == 0 {
        return;
    }
    EPOCH_NS.store(clock.epoch_ns, Ordering::Relaxed);
    ANCHOR_TSC.store(clock.tsc, Ordering::Relaxed);
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is allowed at CPL3 (the VMM leaves CR4.TSD clear) and has no
    // memory effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Nanoseconds of TSC time since the anchor.
fn since_anchor_ns() -> u64 {
    let ticks = rdtsc().saturating_sub(ANCHOR_TSC.load(Ordering::Relaxed));
    (u128::from(ticks) * 1_000_000 / u128::from(TSC_KHZ.load(Ordering::Relaxed))) as u64
}

/// Wall clock, nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    EPOCH_NS.load(Ordering::Relaxed) + since_anchor_ns()
}

/// Monotonic clock, nanoseconds since an arbitrary start.
pub fn monotonic_ns() -> u64 {
    (u128::from(rdtsc()) * 1_000_000 / u128::from(TSC_KHZ.load(Ordering::Relaxed))) as u64
}
