//! Pager statistics: lock-free counters and a log2 fault-latency histogram, readable any time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Number of latency buckets: bucket `i` counts faults that took `[2^(i-1), 2^i)` us
/// (bucket 0: under 1 us; the last bucket also takes everything slower).
pub const LATENCY_BUCKETS: usize = 24;

/// Live counters, updated by the handler and prefetch threads.
#[derive(Debug, Default)]
pub struct PagerStats {
    faults: AtomicU64,
    fault_blocks: AtomicU64,
    prefetch_blocks: AtomicU64,
    bytes_installed: AtomicU64,
    zero_installs: AtomicU64,
    eexist_races: AtomicU64,
    small_page_blocks: AtomicU64,
    latency_us_total: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Page-fault events read from the userfaultfd.
    pub faults: u64,
    /// Install blocks installed because of a fault.
    pub fault_blocks: u64,
    /// Install blocks installed by prefetch.
    pub prefetch_blocks: u64,
    /// Bytes installed by UFFDIO_COPY / ZEROPAGE / CONTINUE (zero installs included).
    pub bytes_installed: u64,
    /// Blocks installed as zero (ZEROPAGE, zero-buffer copy, or a fallocated shared range).
    pub zero_installs: u64,
    /// Installs that found a page already present (EEXIST: prefetch or fault got there first).
    pub eexist_races: u64,
    /// Blocks backed with small pages because no huge page was free.
    pub small_page_blocks: u64,
    /// Sum of fault service times in microseconds.
    pub latency_us_total: u64,
    /// Fault service time histogram, see [`LATENCY_BUCKETS`].
    pub latency: [u64; LATENCY_BUCKETS],
}

impl StatsSnapshot {
    /// Mean fault service time in microseconds (0 without faults).
    pub fn mean_fault_us(&self) -> f64 {
        if self.faults == 0 {
            0.0
        } else {
            self.latency_us_total as f64 / self.faults as f64
        }
    }

    /// Upper bound in microseconds of the bucket holding the `q` quantile (0.0..=1.0).
    pub fn quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.latency.iter().sum();
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= want {
                return 1u64 << i;
            }
        }
        0
    }
}

impl PagerStats {
    pub(crate) fn fault(&self) {
        self.faults.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn installed(&self, bytes: usize, by_prefetch: bool, zero: bool) {
        let blocks = if by_prefetch {
            &self.prefetch_blocks
        } else {
            &self.fault_blocks
        };
        blocks.fetch_add(1, Ordering::Relaxed);
        self.bytes_installed
            .fetch_add(bytes as u64, Ordering::Relaxed);
        if zero {
            self.zero_installs.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_prefetch_blocks(&self, blocks: usize, bytes: usize) {
        self.prefetch_blocks
            .fetch_add(blocks as u64, Ordering::Relaxed);
        self.bytes_installed
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn eexist(&self, n: usize) {
        self.eexist_races.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn small_page_block(&self) {
        self.small_page_blocks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fault_latency(&self, took: Duration) {
        let us = took.as_micros() as u64;
        self.latency_us_total.fetch_add(us, Ordering::Relaxed);
        let bucket = (64 - us.leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Zeroes every counter, then sets `bytes_installed` in `blocks` installed ahead
    /// of the guest (counted as prefetched).
    pub(crate) fn reset(&self, bytes_installed: u64, blocks: u64) {
        let counters = [
            &self.faults,
            &self.fault_blocks,
            &self.zero_installs,
            &self.eexist_races,
            &self.small_page_blocks,
            &self.latency_us_total,
        ];
        for c in counters.into_iter().chain(self.latency.iter()) {
            c.store(0, Ordering::Relaxed);
        }
        self.bytes_installed
            .store(bytes_installed, Ordering::Relaxed);
        self.prefetch_blocks.store(blocks, Ordering::Relaxed);
    }

    /// Read all counters (each is read atomically; the set is not one atomic snapshot).
    pub fn snapshot(&self) -> StatsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            faults: load(&self.faults),
            fault_blocks: load(&self.fault_blocks),
            prefetch_blocks: load(&self.prefetch_blocks),
            bytes_installed: load(&self.bytes_installed),
            zero_installs: load(&self.zero_installs),
            eexist_races: load(&self.eexist_races),
            small_page_blocks: load(&self.small_page_blocks),
            latency_us_total: load(&self.latency_us_total),
            latency: std::array::from_fn(|i| load(&self.latency[i])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_latency_histogram_buckets_by_log2_microseconds() {
        let s = PagerStats::default();
        s.fault_latency(Duration::from_nanos(500)); // 0 us -> bucket 0
        s.fault_latency(Duration::from_micros(1)); // bucket 1
        s.fault_latency(Duration::from_micros(40)); // 32..64 -> bucket 6
        s.fault_latency(Duration::from_secs(100)); // clamped to the last bucket
        let snap = s.snapshot();
        assert_eq!(snap.latency[0], 1);
        assert_eq!(snap.latency[1], 1);
        assert_eq!(snap.latency[6], 1);
        assert_eq!(snap.latency[LATENCY_BUCKETS - 1], 1);
        assert_eq!(snap.quantile_us(0.5), 2);
    }
}
