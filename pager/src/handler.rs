//! The per-VM fault handler: shared pager state ([`Core`]), block reads and installs, and the
//! fault loop of the handler thread.

use crate::error::PagerError;
use crate::install::{self, Installed};
use crate::options::PagerOptions;
use crate::source::{ChunkKind, PageSource};
use crate::stats::PagerStats;
use crate::{Backing, GuestRegion, HostAddr};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use userfaultfd::{Event, EventBuffer, Uffd};

/// State shared by the handle, the handler thread and the prefetch threads.
pub(crate) struct Core {
    pub uffd: Uffd,
    pub region: GuestRegion,
    pub source: Arc<dyn PageSource>,
    pub chunk: usize,
    /// Install unit: max(chunk size, page size).
    pub block: usize,
    pub page: usize,
    pub stats: PagerStats,
    pub error: Mutex<Option<PagerError>>,
    pub prefetch_error: Mutex<Option<PagerError>>,
    on_fatal: Option<crate::options::FatalCallback>,
    recorder: Option<Mutex<(Vec<u32>, Vec<u64>)>>,
    installed: Vec<AtomicU64>,
    /// Serialises small-page fallbacks (see `back_with_small_pages`).
    fallback: Mutex<()>,
    /// Installs under way: from before a block's bytes go in (which may wake the
    /// faulting thread) until its installed bit is set ([`Core::begin_install`]).
    in_flight: AtomicUsize,
    zero_block: Vec<u8>,
    /// Threads of a blocking prefetch (see `PagerOptions::prefetch_threads`).
    pub prefetch_threads: usize,
}

/// An install under way ([`Core::begin_install`]).
pub struct InstallGuard<'a>(&'a AtomicUsize);

impl Drop for InstallGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn bit(map: &[AtomicU64], i: usize) -> bool {
    map[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
}

impl Core {
    pub fn new(
        uffd: Uffd,
        region: GuestRegion,
        source: Arc<dyn PageSource>,
        opts: &PagerOptions,
    ) -> Result<Core, PagerError> {
        let chunk = source.chunk_size();
        let page = region.backing.page_size();
        let block = chunk.max(page);
        let bad = |m: String| Err(PagerError::CheckRegion(m));
        if !chunk.is_power_of_two() || chunk < crate::SMALL_PAGE_SIZE {
            return bad(format!("chunk size {chunk} is not a power of two >= 4 KiB"));
        }
        if !region.host_addr.0.is_multiple_of(page)
            || region.len == 0
            || !region.len.is_multiple_of(block)
        {
            return bad(format!(
                "{:#x}+{:#x} is not aligned to {block:#x}",
                region.host_addr.0, region.len
            ));
        }
        if source.len() < region.len {
            return bad(format!(
                "source holds {:#x} bytes, region is {:#x}",
                source.len(),
                region.len
            ));
        }
        if let Backing::SharedMemfd(image) = &region.backing {
            if image.len() != region.len {
                return bad(format!(
                    "shared image is {:#x} bytes, region is {:#x}",
                    image.len(),
                    region.len
                ));
            }
        }
        let blocks = region.len / block;
        let chunks = region.len / chunk;
        let zero_block = if matches!(region.backing, Backing::Hugetlb) {
            vec![0u8; block]
        } else {
            Vec::new()
        };
        Ok(Core {
            uffd,
            region,
            source,
            chunk,
            block,
            page,
            stats: PagerStats::default(),
            error: Mutex::new(None),
            prefetch_error: Mutex::new(None),
            on_fatal: opts.on_fatal.clone(),
            recorder: opts
                .record
                .then(|| Mutex::new((Vec::new(), vec![0u64; chunks.div_ceil(64)]))),
            installed: (0..blocks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            fallback: Mutex::new(()),
            in_flight: AtomicUsize::new(0),
            zero_block,
            prefetch_threads: match opts.prefetch_threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
                n => n,
            },
        })
    }

    pub fn blocks(&self) -> usize {
        self.region.len / self.block
    }

    pub fn block_addr(&self, b: usize) -> HostAddr {
        self.region.host_addr.offset(b * self.block)
    }

    pub fn is_installed(&self, b: usize) -> bool {
        bit(&self.installed, b)
    }

    /// Counts an install as under way until the guard drops (after its installed bit is
    /// set): the copy wakes the faulting thread before the bit is set, so a guest can run
    /// on past a fault whose bit is still clear.
    pub fn begin_install(&self) -> InstallGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InstallGuard(&self.in_flight)
    }

    /// Waits until no install is under way, at most `timeout`; true when none is. With
    /// every vCPU and VMM access stopped, no new one starts, so the installed bits are
    /// then exactly the blocks installed.
    pub fn quiesce(&self, timeout: std::time::Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.in_flight.load(Ordering::Acquire) > 0 {
            if Instant::now() >= end {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    /// Blocks installed so far, ascending.
    pub fn installed_blocks(&self) -> Vec<u32> {
        (0..self.blocks())
            .filter(|&b| self.is_installed(b))
            .map(|b| b as u32)
            .collect()
    }

    /// Gives block `b`'s pages back and clears its installed bit, so the next touch
    /// faults and installs it afresh from the source. Only for hugetlbfs backings
    /// (the pages of a shared memfd mapping; other backings refuse).
    pub fn discard_block(&self, b: usize) -> Result<(), PagerError> {
        let wrap = |e| PagerError::InstallChunk {
            block: b,
            source: Arc::new(e),
        };
        if !matches!(self.region.backing, Backing::Hugetlb) || b >= self.blocks() {
            return Err(PagerError::CheckRegion(format!(
                "block {b} cannot be discarded from this backing"
            )));
        }
        install::discard(self.block_addr(b), self.block).map_err(wrap)?;
        self.installed[b / 64].fetch_and(!(1 << (b % 64)), Ordering::AcqRel);
        Ok(())
    }

    pub fn mark_installed(&self, first: usize, count: usize) {
        for b in first..first + count {
            self.installed[b / 64].fetch_or(1 << (b % 64), Ordering::AcqRel);
        }
    }

    /// Decompress block `b` into `buf` (`block` bytes). Returns false if it is all zero (then
    /// `buf` is untouched); zero chunks inside a data block are zero-filled.
    pub fn read_block(&self, b: usize, buf: &mut [u8]) -> Result<bool, PagerError> {
        let per = self.block / self.chunk;
        let mut zero = Vec::with_capacity(per);
        for (i, dst) in buf.chunks_exact_mut(self.chunk).enumerate() {
            match self.source.read_chunk(b * per + i, dst) {
                Ok(kind) => zero.push(kind == ChunkKind::Zero),
                Err(e) => {
                    return Err(PagerError::ReadChunk {
                        block: b,
                        source: Arc::new(e),
                    })
                }
            }
        }
        let any_data = zero.iter().any(|z| !z);
        if any_data {
            for (dst, _) in buf
                .chunks_exact_mut(self.chunk)
                .zip(&zero)
                .filter(|(_, z)| **z)
            {
                dst.fill(0);
            }
        }
        Ok(any_data)
    }

    /// Install block `b`. Handles EEXIST (already installed by someone else).
    pub fn install_block(
        &self,
        b: usize,
        data: BlockData<'_>,
        by_prefetch: bool,
    ) -> Result<(), PagerError> {
        let _busy = self.begin_install();
        let dst = self.block_addr(b);
        if self.is_installed(b) {
            // Installed meanwhile (a prefetch, or a small-page fallback whose
            // mapping this uffd no longer covers): only the waiters remain.
            install::wake(&self.uffd, dst, self.block).map_err(|e| PagerError::InstallChunk {
                block: b,
                source: Arc::new(e),
            })?;
            return Ok(());
        }
        let mut zero = matches!(data, BlockData::Zero);
        let res = match (&self.region.backing, data) {
            (Backing::SharedMemfd(image), data) => {
                let filled = image.fill(b * self.block, self.block, |dst| match data {
                    BlockData::Bytes(d) => {
                        dst.copy_from_slice(d);
                        Ok(true)
                    }
                    BlockData::Zero => Ok(false),
                    BlockData::Lazy => self.read_block(b, dst),
                });
                match filled {
                    Ok(Ok(data)) => zero = !data,
                    Ok(Err(e)) => return Err(e),
                    Err(e) => {
                        return Err(PagerError::FillShared {
                            block: b,
                            source: Arc::new(e),
                        })
                    }
                }
                install::cont(&self.uffd, dst, self.block, self.page)
            }
            (_, BlockData::Bytes(d)) => install::copy(&self.uffd, dst, d, self.page),
            (Backing::Hugetlb, _) => install::copy(&self.uffd, dst, &self.zero_block, self.page),
            (_, _) => install::zeropage(&self.uffd, dst, self.block, self.page),
        };
        if matches!(self.region.backing, Backing::Hugetlb) && self.pool_refused(&res, dst) {
            let bytes = match data {
                BlockData::Bytes(d) => Some(d),
                _ => None,
            };
            return self.back_with_small_pages(b, bytes, by_prefetch);
        }
        let done: Installed = res.map_err(|e| PagerError::InstallChunk {
            block: b,
            source: Arc::new(e),
        })?;
        self.stats.eexist(done.eexist);
        if done.bytes > 0 {
            self.stats.installed(done.bytes, by_prefetch, zero);
        }
        self.mark_installed(b, 1);
        Ok(())
    }

    /// Whether a hugetlb install failed for want of a huge page: ENOMEM, or (what
    /// this kernel answers with an empty pool) EEXIST although nothing is mapped at
    /// `dst` (a genuine EEXIST race leaves the page mapped). Waking the fault without
    /// a page would make the guest fault again at once, forever.
    fn pool_refused(&self, res: &Result<Installed, install::InstallError>, dst: HostAddr) -> bool {
        match res {
            Err(e) => e.errno() == Some(libc::ENOMEM),
            Ok(done) if done.bytes == 0 && done.eexist > 0 => !install::mapped(dst),
            Ok(_) => false,
        }
    }

    /// The small-page fallback: block `b` could not get a huge page, so it is
    /// replaced by anonymous memory holding the same bytes (the kernel backs it with
    /// 4 KiB pages, or a transparent huge page when one is free), moved into place
    /// with one `mremap` so the guest never sees it half filled. The new mapping is
    /// not registered with the uffd: the guest's later accesses there are ordinary
    /// faults. One block at a time (`fallback`), so two threads never replace a
    /// block the guest may already have written through the first replacement.
    fn back_with_small_pages(
        &self,
        b: usize,
        bytes: Option<&[u8]>,
        by_prefetch: bool,
    ) -> Result<(), PagerError> {
        let _one = self.fallback.lock();
        let dst = self.block_addr(b);
        if !self.is_installed(b) {
            // SAFETY: `dst` is block `b` of the registered region, which Pager::start's
            // caller lets the pager replace with anonymous memory of the same contents;
            // no other thread installs this block meanwhile (`fallback` lock, and the
            // installed bit is checked under it).
            unsafe { install::replace_with_anonymous(dst, self.block, bytes) }.map_err(|e| {
                PagerError::InstallChunk {
                    block: b,
                    source: Arc::new(e),
                }
            })?;
            self.stats.small_page_block();
            self.stats
                .installed(self.block, by_prefetch, bytes.is_none());
            self.mark_installed(b, 1);
        }
        install::wake(&self.uffd, dst, self.block).map_err(|e| PagerError::InstallChunk {
            block: b,
            source: Arc::new(e),
        })
    }

    fn record(&self, chunk: usize) {
        if let Some(rec) = &self.recorder {
            let mut rec = rec.lock();
            let (order, seen) = &mut *rec;
            if seen[chunk / 64] & (1 << (chunk % 64)) == 0 {
                seen[chunk / 64] |= 1 << (chunk % 64);
                order.push(chunk as u32);
            }
        }
    }

    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    pub fn take_working_set(&self) -> Vec<u32> {
        self.recorder
            .as_ref()
            .map(|r| std::mem::take(&mut r.lock().0))
            .unwrap_or_default()
    }

    /// The fatal path. Order matters: record the error first (so whoever sees the access fail
    /// also sees `error()`), fence the block so the retried access fails, tell the VMM, and
    /// only then wake the faulting threads.
    fn fail(&self, b: usize, err: PagerError) {
        let addr = self.block_addr(b);
        let first = {
            let mut slot = self.error.lock();
            let first = slot.is_none();
            if first {
                *slot = Some(err.clone());
            }
            first
        };
        // SAFETY: the range is one block inside the registered region, which Pager::start's
        // caller allowed the pager to mprotect; the VM is being ended.
        let rc = unsafe { libc::mprotect(addr.as_ptr(), self.block, libc::PROT_NONE) };
        if let (true, Some(cb)) = (first, &self.on_fatal) {
            cb(&err);
            if rc != 0 {
                let source = Arc::new(std::io::Error::last_os_error());
                cb(&PagerError::FenceBlock { block: b, source });
            }
        }
        let _ = install::wake(&self.uffd, addr, self.block);
    }
}

/// What to install in a block.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BlockData<'a> {
    /// These bytes (one block).
    Bytes(&'a [u8]),
    /// Zeroes.
    Zero,
    /// Whatever the source says; read only if needed (shared mode: only if the image lacks it).
    Lazy,
}

/// A few recently decompressed blocks (None: all zero), oldest first.
struct BlockCache {
    cap: usize,
    entries: Vec<(usize, Option<Vec<u8>>)>,
}

impl BlockCache {
    fn get_or_read(&mut self, core: &Core, b: usize) -> Result<Option<&[u8]>, PagerError> {
        let pos = match self.entries.iter().position(|(i, _)| *i == b) {
            Some(p) => p,
            None => {
                let mut buf = if self.entries.len() >= self.cap {
                    self.entries.remove(0).1.unwrap_or_default()
                } else {
                    Vec::new()
                };
                buf.resize(core.block, 0);
                let data = core.read_block(b, &mut buf)?;
                self.entries.push((b, data.then_some(buf)));
                self.entries.len() - 1
            }
        };
        Ok(self.entries[pos].1.as_deref())
    }
}

/// The handler thread: serve faults until the stop eventfd fires.
///
/// 1. poll(2) the uffd and the stop eventfd; stop when the eventfd is readable;
/// 2. read a batch of events (non-blocking; an empty read is a spurious wakeup);
/// 3. for each page fault: round the address down to its block, record the chunk;
/// 4. take the block from the cache, or read and decompress its chunks from the source;
/// 5. install the whole block with one UFFDIO_COPY (ZEROPAGE for zero blocks, a zero-buffer
///    copy on hugetlb, fill + CONTINUE in shared mode); EEXIST means a prefetch or an earlier
///    event installed it first: wake the range; EAGAIN: continue / retry (see install.rs);
/// 6. the ioctls wake the faulting thread; on a source or install error take the fatal path
///    (record, mprotect PROT_NONE, wake, on_fatal) so the access fails instead of hanging.
pub(crate) fn run(core: &Core, stop_fd: i32, cache_blocks: usize) {
    use std::os::fd::AsRawFd;
    let mut cache = BlockCache {
        cap: if cache_blocks == 0 { 4 } else { cache_blocks },
        entries: Vec::new(),
    };
    let mut events = EventBuffer::new(16);
    let base = core.region.host_addr.0;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: core.uffd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop_fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two pollfd structs and the count says two.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            *core.error.lock() = Some(PagerError::PollUffd(Arc::new(e)));
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        let batch = match core.uffd.read_events(&mut events) {
            Ok(it) => it,
            Err(e) => {
                *core.error.lock() = Some(PagerError::ReadEvent(Arc::new(e)));
                return;
            }
        };
        for ev in batch {
            let Ok(Event::Pagefault { addr, .. }) = ev else {
                continue;
            };
            let t0 = Instant::now();
            core.stats.fault();
            let off = (addr as usize).wrapping_sub(base);
            if off >= core.region.len {
                continue;
            }
            let b = off / core.block;
            core.record(off / core.chunk);
            let res = if matches!(core.region.backing, Backing::SharedMemfd(_)) {
                core.install_block(b, BlockData::Lazy, false)
            } else {
                cache.get_or_read(core, b).and_then(|data| {
                    core.install_block(b, data.map_or(BlockData::Zero, BlockData::Bytes), false)
                })
            };
            if let Err(e) = res {
                core.fail(b, e);
            }
            core.stats.fault_latency(t0.elapsed());
        }
    }
}
