//! The pager's public face: [`Pager::start`] sets up one userfaultfd and one handler thread for
//! one VM's guest RAM and returns a [`PagerHandle`] (stats, error, working set, prefetch, stop).
//!
//! Failure policy (a chunk the source cannot produce): the handler records the first error
//! (`handle.error()`), makes the failing block `PROT_NONE` with mprotect and wakes the waiters,
//! then calls `on_fatal`. The faulting access is retried by the kernel and fails at once: a
//! user-mode access gets SIGSEGV, a kernel-mode access (KVM's guest-memory access, read(2),
//! write(2)) gets EFAULT, so KVM_RUN returns EFAULT and the VMM ends the VM. Nothing hangs.

use crate::error::PagerError;
use crate::handler::{self, Core};
use crate::options::PagerOptions;
use crate::prefetch::{self, Prefetcher};
use crate::source::PageSource;
use crate::stats::StatsSnapshot;
use crate::{Backing, GuestRegion};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use userfaultfd::{FeatureFlags, RegisterMode, Uffd, UffdBuilder};

/// Entry point; see [`Pager::start`].
#[derive(Debug)]
pub struct Pager;

/// A running pager for one VM. Dropping it stops and joins its threads and closes the uffd
/// (drop it only after the vCPUs stopped: afterwards untouched pages read as zero).
pub struct PagerHandle {
    core: Arc<Core>,
    stop: Arc<OwnedFd>,
    handler: Option<JoinHandle<()>>,
    prefetcher: parking_lot::Mutex<Option<Prefetcher>>,
}

impl std::fmt::Debug for PagerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerHandle")
            .field("region", &self.core.region)
            .finish()
    }
}

/// A guest RAM range registered with a new userfaultfd, not yet served: made ahead
/// of time (registration of a large range costs ~0.5 ms here), started with
/// [`Pager::start_registered`] once the page source is known.
pub struct Registered {
    uffd: Uffd,
    region: GuestRegion,
}

impl Registered {
    /// The kind of memory the registered range holds.
    pub fn backing(&self) -> &Backing {
        &self.region.backing
    }
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("region", &self.region)
            .finish()
    }
}

impl Pager {
    /// Register `region` with a new userfaultfd and start its handler thread.
    ///
    /// # Safety
    /// As for [`Pager::register`].
    pub unsafe fn start(
        region: GuestRegion,
        source: Arc<dyn PageSource>,
        opts: PagerOptions,
    ) -> Result<PagerHandle, PagerError> {
        // SAFETY: the caller upholds `register`'s contract (this function's).
        let registered = unsafe { Self::register(region)? };
        Self::start_registered(registered, source, opts)
    }

    /// Register `region` with a new userfaultfd; faults wait until it is started.
    ///
    /// # Safety
    /// - `region` is a live mapping of `region.len` bytes of the kind `region.backing` says,
    ///   aligned to its page size, that stays mapped until the handle (or the `Registered`)
    ///   is dropped (`region.keep_alive`, held that long, may be what keeps it mapped);
    /// - the caller hands the range's contents to the pager: pages present are never
    ///   overwritten, no Rust reference into the range is held while the pager fills it,
    ///   the pager may mprotect a block it cannot serve, and on hugetlb it may replace a
    ///   block it cannot get a huge page for with anonymous memory of the same contents
    ///   (mapped at the same address; the range stays mapped).
    pub unsafe fn register(region: GuestRegion) -> Result<Registered, PagerError> {
        let mut features = FeatureFlags::empty();
        let mut mode = RegisterMode::MISSING;
        if let Backing::SharedMemfd(image) = &region.backing {
            features |= if image.is_hugetlb() {
                FeatureFlags::from_bits_retain(libc_uffd::MINOR_HUGETLBFS)
            } else {
                FeatureFlags::from_bits_retain(libc_uffd::MINOR_SHMEM)
            };
            mode |= RegisterMode::MINOR;
        }
        let uffd = UffdBuilder::new()
            .close_on_exec(true)
            .non_blocking(true)
            .user_mode_only(false)
            .require_features(features)
            .create()
            .map_err(|e| PagerError::CreateUffd(Arc::new(e)))?;
        uffd.register_with_mode(region.host_addr.as_ptr(), region.len, mode)
            .map_err(|e| PagerError::RegisterUffd {
                addr: region.host_addr.0,
                len: region.len,
                source: Arc::new(e),
            })?;
        Ok(Registered { uffd, region })
    }

    /// Start serving a registered range from `source` (one handler thread).
    pub fn start_registered(
        registered: Registered,
        source: Arc<dyn PageSource>,
        opts: PagerOptions,
    ) -> Result<PagerHandle, PagerError> {
        let Registered { uffd, region } = registered;
        let core = Arc::new(Core::new(uffd, region, source, &opts)?);
        // SAFETY: eventfd(2) takes no pointers; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(PagerError::CreateEventfd(Arc::new(
                io::Error::last_os_error(),
            )));
        }
        // SAFETY: `efd` is a fresh descriptor this function owns and nothing else closes.
        let stop = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
        let (c, s) = (core.clone(), stop.clone());
        let handler = std::thread::Builder::new()
            .name("thaw-pager".into())
            .spawn(move || handler::run(&c, s.as_raw_fd(), opts.cache_blocks))
            .map_err(|e| PagerError::SpawnThread(Arc::new(e)))?;
        Ok(PagerHandle {
            core,
            stop,
            handler: Some(handler),
            prefetcher: parking_lot::Mutex::new(None),
        })
    }
}

/// UFFD feature bits the userfaultfd 0.9 crate does not name.
mod libc_uffd {
    pub const MINOR_HUGETLBFS: u64 = 1 << 9;
    pub const MINOR_SHMEM: u64 = 1 << 10;
}

impl PagerHandle {
    /// Bytes one fault installs: max(chunk size, backing page size).
    pub fn block_size(&self) -> usize {
        self.core.block
    }

    /// Bytes of the guest range held in private anonymous pages, counted over the blocks
    /// the pager installed (the guest can touch no others): for a `SharedMemfd` backing, the
    /// clone's copy-on-write copies. Reads /proc/self/pagemap (8 bytes per 4 KiB page of
    /// the installed blocks).
    pub fn private_bytes(&self) -> std::io::Result<u64> {
        let core = &self.core;
        let mut total = 0;
        let mut b = 0;
        while b < core.blocks() {
            if !core.is_installed(b) {
                b += 1;
                continue;
            }
            let first = b;
            while b < core.blocks() && core.is_installed(b) {
                b += 1;
            }
            total +=
                crate::smaps::private_anon_bytes(core.block_addr(first), (b - first) * core.block)?;
        }
        Ok(total)
    }

    /// Install blocks the pager has installed, ascending (every block of the range
    /// the guest or the VMM touched since the pager started, except the ones
    /// [`PagerHandle::discard`] gave back).
    pub fn installed_blocks(&self) -> Vec<u32> {
        self.core.installed_blocks()
    }

    /// Waits (at most `timeout`) until no install is under way; true when none is. The
    /// caller has stopped every access to guest RAM (the vCPU parked), so afterwards
    /// [`PagerHandle::installed_blocks`] is exact: a copy wakes the faulting thread
    /// before it marks its block installed.
    pub fn quiesce(&self, timeout: std::time::Duration) -> bool {
        self.core.quiesce(timeout)
    }

    /// Gives `blocks` back to the host (hugetlbfs backings): their pages are freed and
    /// their next touch faults in the source's bytes again, as on a fresh restore.
    /// The caller holds the VM's vCPU stopped, so no fault races the discard.
    pub fn discard(&self, blocks: &[u32]) -> Result<(), PagerError> {
        blocks
            .iter()
            .try_for_each(|&b| self.core.discard_block(b as usize))
    }

    /// Starts the counters afresh, as if `blocks` had just been prefetched (a reused
    /// VM: its pager reports what this instance holds, not what the last one did).
    pub fn reset_stats(&self, blocks: u64) {
        self.core
            .stats
            .reset(blocks * self.core.block as u64, blocks);
    }

    /// Current statistics.
    pub fn stats(&self) -> StatsSnapshot {
        self.core.stats.snapshot()
    }

    /// The first fatal error, if a fault could not be served.
    pub fn error(&self) -> Option<PagerError> {
        self.core.error.lock().clone()
    }

    /// The last error an asynchronous prefetch hit (the guest may never touch that chunk; a
    /// fault on it goes through the fatal path).
    pub fn prefetch_error(&self) -> Option<PagerError> {
        self.core.prefetch_error.lock().clone()
    }

    /// Whether this pager records the chunks faults touch (`PagerOptions::record`).
    pub fn is_recording(&self) -> bool {
        self.core.is_recording()
    }

    /// Chunk indices faults touched so far, in first-touch order, without duplicates; clears
    /// the list (recording continues). Empty unless `opts.record` was set.
    pub fn take_working_set(&self) -> Vec<u32> {
        self.core.take_working_set()
    }

    /// Install the chunks `indices` (in order, contiguous runs batched) from a background
    /// thread while the guest runs. Returns at once; faults keep priority in the handler.
    pub fn prefetch(&self, indices: &[u32]) -> Result<(), PagerError> {
        let mut p = self.prefetcher.lock();
        if p.is_none() {
            *p = Some(Prefetcher::spawn(self.core.clone())?);
        }
        if let Some(p) = p.as_ref() {
            p.submit(indices.to_vec())
        }
        Ok(())
    }

    /// Install the chunks `indices` now (before resuming the vCPU): on the calling
    /// thread and `opts.prefetch_threads - 1` helpers, which read, decompress and
    /// install blocks side by side.
    pub fn prefetch_blocking(&self, indices: &[u32]) -> Result<(), PagerError> {
        prefetch::install_chunks(&self.core, indices, None, self.core.prefetch_threads)
    }

    /// Stop and join the threads, then return the final statistics (every fault served so far
    /// is counted; `stats()` may lag the last fault by the few instructions after its wake).
    pub fn finish(mut self) -> StatsSnapshot {
        self.shutdown();
        self.core.stats.snapshot()
    }

    fn shutdown(&mut self) {
        // Order: the prefetcher first (it may install while the handler serves), then the
        // handler; the uffd closes when the last Arc<Core> drops, after both joined.
        if let Some(p) = self.prefetcher.lock().take() {
            p.stop();
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the eventfd this handle owns.
        unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(h) = self.handler.take() {
            let _ = h.join();
        }
    }

    /// Wait until every prefetch submitted so far has been processed.
    pub fn wait_prefetch(&self) {
        if let Some(p) = self.prefetcher.lock().as_ref() {
            p.wait_idle();
        }
    }
}

impl Drop for PagerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::FatalCallback;
    use crate::testutil::*;
    use crate::{HugeMemfd, VecSource, HUGE_PAGE_SIZE};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn test_lazy_fill_random_access_reads_back_source() {
        let len = 4 << 20;
        let map = AnonMap::new(len);
        let src = Arc::new(VecSource::patterned(len, 4096, &[3, 100, 1000]));
        let h = start(&map, src.clone(), PagerOptions::default());
        let base = map.addr.0;
        let s = src.clone();
        with_timeout(30, move || {
            for (n, page) in shuffle(len / 4096, 7).into_iter().enumerate() {
                let addr = base + page * 4096;
                if n % 2 == 0 {
                    assert_eq!(
                        kernel_read(addr, 4096).unwrap(),
                        &s.bytes()[page * 4096..][..4096]
                    );
                } else {
                    assert_eq!(user_read(addr + 17), s.bytes()[page * 4096 + 17]);
                }
            }
            assert_eq!(kernel_read(base, len).unwrap(), s.bytes());
        });
        let err = h.error();
        let st = h.finish();
        assert_eq!(st.faults, (len / 4096) as u64);
        assert_eq!(st.zero_installs, 3);
        assert_eq!(st.bytes_installed, len as u64);
        assert!(err.is_none());
    }

    #[test]
    fn test_one_fault_installs_the_whole_chunk_and_zero_chunks() {
        let len = 8 << 20;
        let map = AnonMap::new(len);
        let src = Arc::new(VecSource::patterned(len, 64 << 10, &[1]));
        let h = start(&map, src.clone(), PagerOptions::default());
        let base = map.addr.0;
        let s = src.clone();
        with_timeout(30, move || {
            for off in (0..(256 << 10)).step_by(4096) {
                assert_eq!(user_read(base + off), s.bytes()[off]);
            }
            kernel_write(base + (2 << 20) + 5, b"hello").unwrap();
            assert_eq!(&kernel_read(base + (2 << 20), 8).unwrap()[5..8], b"hel");
        });
        let st = h.finish();
        assert_eq!(st.faults, 5, "4 chunks read + 1 written: {st:?}");
        assert_eq!(st.zero_installs, 1);
        assert_eq!(st.bytes_installed, 5 * (64 << 10));
    }

    #[test]
    fn test_recording_keeps_first_touch_order_without_duplicates() {
        let map = AnonMap::new(1 << 20);
        let src = Arc::new(VecSource::patterned(1 << 20, 4096, &[]));
        let h = start(
            &map,
            src,
            PagerOptions {
                record: true,
                ..Default::default()
            },
        );
        let base = map.addr.0;
        with_timeout(30, move || {
            for page in [5, 2, 9, 2, 7, 5] {
                user_read(base + page * 4096 + 1);
            }
        });
        assert_eq!(h.take_working_set(), vec![5, 2, 9, 7]);
        assert!(h.take_working_set().is_empty());
    }

    #[test]
    fn test_source_failure_fails_faulting_threads_without_hanging() {
        let len = 1 << 20;
        let map = AnonMap::new(len);
        let src = Arc::new(FailingSource {
            inner: VecSource::patterned(len, 64 << 10, &[]),
            bad: vec![3],
        });
        let fatal = Arc::new(AtomicUsize::new(0));
        let f = fatal.clone();
        let on_fatal: FatalCallback = Arc::new(move |_| {
            f.fetch_add(1, Ordering::SeqCst);
        });
        let h = start(
            &map,
            src.clone(),
            PagerOptions {
                on_fatal: Some(on_fatal),
                ..Default::default()
            },
        );
        let bad = map.addr.0 + 3 * (64 << 10);
        let threads: Vec<_> = (0..2)
            .map(|i| std::thread::spawn(move || kernel_read(bad + i * 8192, 16)))
            .collect();
        let results = with_timeout(10, move || {
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Vec<_>>()
        });
        for r in results {
            assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EFAULT));
        }
        let err = h.error().expect("the error is recorded");
        assert_eq!(err.chunk(), Some(3));
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("chunk 3"), "{chain}");
        assert_eq!(fatal.load(Ordering::SeqCst), 1);
        // Other chunks are still served.
        let good = map.addr.0;
        assert_eq!(
            with_timeout(10, move || kernel_read(good, 4).unwrap()),
            src.inner.bytes()[..4]
        );
    }

    #[test]
    fn test_drop_stops_and_joins_the_handler_thread() {
        let map = AnonMap::new(1 << 20);
        let h = start(
            &map,
            Arc::new(VecSource::patterned(1 << 20, 4096, &[])),
            PagerOptions::default(),
        );
        h.prefetch(&[1, 2, 3]).unwrap();
        let core = Arc::downgrade(&h.core);
        assert!(
            Arc::strong_count(&h.core) >= 3,
            "handler and prefetch threads hold the core"
        );
        with_timeout(10, move || drop(h));
        // Both threads were joined and the uffd closed: nothing holds the core any more.
        assert!(core.upgrade().is_none());
    }

    /// A pager over a fresh `len`-byte hugetlbfs mapping serving `src`; `None` (with a
    /// SKIPPED line naming `test`) when no huge pages can be had.
    fn hugetlb_pager(
        test: &str,
        len: usize,
        src: &Arc<VecSource>,
    ) -> Option<(HugeMemfd, PagerHandle)> {
        let mem = match HugeMemfd::create(len) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("SKIPPED {test}: {e}");
                return None;
            }
        };
        let region = GuestRegion {
            host_addr: mem.addr(),
            len,
            backing: Backing::Hugetlb,
            keep_alive: None,
        };
        // SAFETY: a fresh hugetlb mapping that outlives the handle (the caller keeps
        // both and drops the handle first), accessed by raw address only.
        let h = unsafe { Pager::start(region, src.clone(), PagerOptions::default()) }.unwrap();
        Some((mem, h))
    }

    #[test]
    fn test_hugetlb_backing_installs_2mib_pages() {
        let len = 8 << 20;
        let src = Arc::new(VecSource::patterned(
            len,
            4096,
            &(512..1024).collect::<Vec<_>>(),
        ));
        let Some((mem, h)) = hugetlb_pager("test_hugetlb_backing_installs_2mib_pages", len, &src)
        else {
            return;
        };
        assert_eq!(h.block_size(), HUGE_PAGE_SIZE);
        let (base, s) = (mem.addr().0, src.clone());
        with_timeout(30, move || {
            assert_eq!(
                user_read(base + 3 * HUGE_PAGE_SIZE + 5),
                s.bytes()[3 * HUGE_PAGE_SIZE + 5]
            );
            assert_eq!(kernel_read(base, len).unwrap(), s.bytes());
        });
        let st = h.finish();
        assert_eq!(
            (st.faults, st.zero_installs, st.bytes_installed),
            (4, 1, len as u64)
        );
    }

    /// A reused VM's pager: a discarded block's written bytes are gone, its next touch
    /// faults the source's bytes in again; the counters start afresh.
    #[test]
    fn test_discarded_blocks_fault_in_the_source_again() {
        let len = 8 << 20;
        let src = Arc::new(VecSource::patterned(len, 4096, &[]));
        let test = "test_discarded_blocks_fault_in_the_source_again";
        let Some((mem, h)) = hugetlb_pager(test, len, &src) else {
            return;
        };
        let (base, s) = (mem.addr().0, src.clone());
        let block = HUGE_PAGE_SIZE;
        with_timeout(30, move || {
            kernel_write(base + 2 * block + 7, b"written").unwrap();
            assert_eq!(user_read(base + block), s.bytes()[block]);
        });
        // A woken access may be ahead of its block's installed bit: quiesce first.
        assert!(h.quiesce(std::time::Duration::from_secs(5)));
        assert_eq!(h.installed_blocks(), vec![1, 2]);
        h.discard(&[2]).unwrap();
        h.reset_stats(1);
        assert_eq!(h.installed_blocks(), vec![1]);
        let s = src.clone();
        with_timeout(30, move || {
            let got = kernel_read(base + 2 * block, block).unwrap();
            assert_eq!(got, &s.bytes()[2 * block..3 * block], "the write survived");
        });
        assert!(h.quiesce(std::time::Duration::from_secs(5)));
        assert_eq!(h.installed_blocks(), vec![1, 2]);
        let st = h.finish();
        assert_eq!((st.faults, st.bytes_installed), (1, 2 * block as u64));
    }

    #[test]
    fn test_discard_is_refused_on_small_page_backings() {
        let len = 1 << 20;
        let map = AnonMap::new(len);
        let src = Arc::new(VecSource::patterned(len, 4096, &[]));
        let h = start(&map, src, PagerOptions::default());
        assert!(matches!(h.discard(&[0]), Err(PagerError::CheckRegion(_))));
    }
}
