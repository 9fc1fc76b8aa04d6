//! What one measured iteration records ([`Sample`]: the headline, its phases, pager and
//! host-memory counters); the report summarises these.
use serde::Serialize;
use std::time::Duration;

/// Pager counters of one lazily restored instance.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PagerSample {
    /// Faults served up to the end of the first invoke.
    pub faults: u64,
    /// Bytes installed before the vCPU ran (VMM areas + prefetched working set).
    pub prefetch_bytes: u64,
    /// Bytes installed by faults during the first invoke.
    pub fault_bytes: u64,
    /// Installs of zero chunks.
    pub zero_installs: u64,
    /// Total time the pager spent serving faults, in microseconds.
    pub fault_us_total: u64,
}

/// Host memory of an idle instance's guest RAM mapping, in KiB (from /proc/self/smaps).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MemorySample {
    pub guest_kib: u64,
    /// Resident small pages plus hugetlb pages (smaps does not count hugetlb in Rss).
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// Private small pages plus private hugetlb pages: what this clone holds alone.
    pub private_kib: u64,
    pub hugetlb_kib: u64,
}

/// One measured iteration.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// The headline: restore-to-first-response, or the invoke time for `warm`, or
    /// lease-to-response for `provisioned`.
    pub total: Duration,
    /// `open_snapshot` (not in the headline).
    pub open: Duration,
    /// Phases in order; they sum to `total`.
    pub phases: Vec<(&'static str, Duration)>,
    pub pager: Option<PagerSample>,
    /// Guest bytes written before the first response (eager: every data chunk; lazy: pager).
    pub bytes_installed: Option<u64>,
    pub memory: Option<MemorySample>,
    /// `provisioned`: how the lease was served (`warm` or `restore`).
    pub start: Option<&'static str>,
}
