//! Bulk prefetch of a recorded working set: on the caller's thread (`prefetch_blocking`, before
//! the vCPU resumes) or on a per-VM background thread (`prefetch`, while the guest runs).
//!
//! 1. Map chunk indices to install blocks, keep first-seen order, drop blocks already
//!    installed (a hint; the kernel's EEXIST is the truth).
//! 2. Cut the list into runs of consecutive blocks, at most `MAX_RUN` bytes each.
//! 3. Read and decompress a run's blocks into one buffer; an all-zero block ends the data run
//!    and is installed on its own (ZEROPAGE or a zero copy).
//! 4. Install each data run with one UFFDIO_COPY (shared mode: fill + CONTINUE per block).
//!    Faults racing with it either find the pages present or make the copy skip them (EEXIST).
//!
//! With several threads (a blocking prefetch), steps 3-4 run on each of them: they take
//! runs from a shared queue (runs are cut into single blocks when there are too few to go
//! round), so reading, decompressing and copying proceed side by side; the first error
//! stops the others taking more.

use crate::error::PagerError;
use crate::handler::{BlockData, Core};
use crate::install;
use crate::Backing;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Largest single UFFDIO_COPY a prefetch issues.
const MAX_RUN: usize = 16 << 20;

/// Install the blocks holding `indices` on `threads` threads (the caller's included);
/// stop early when `stop` is set.
pub(crate) fn install_chunks(
    core: &Core,
    indices: &[u32],
    stop: Option<&AtomicBool>,
    threads: usize,
) -> Result<(), PagerError> {
    // Step 1.
    let per = core.block / core.chunk;
    let mut seen = vec![false; core.blocks()];
    let mut blocks = Vec::with_capacity(indices.len());
    for &i in indices {
        let b = i as usize / per;
        if b < seen.len() && !seen[b] && !core.is_installed(b) {
            seen[b] = true;
            blocks.push(b);
        }
    }
    // Step 2.
    let threads = threads.clamp(1, blocks.len().max(1));
    let max_blocks = if threads > 1 {
        // Enough pieces to keep every thread busy to the end.
        (blocks.len() / (threads * 2)).clamp(1, (MAX_RUN / core.block).max(1))
    } else {
        (MAX_RUN / core.block).max(1)
    };
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for b in blocks {
        match runs.last_mut() {
            Some((first, n)) if *first + *n == b && *n < max_blocks => *n += 1,
            _ => runs.push((b, 1)),
        }
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || -> Result<(), PagerError> {
        let mut buf = Vec::new();
        loop {
            let halted = stop.is_some_and(|s| s.load(Ordering::Relaxed));
            if halted || failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some(&(first, n)) = runs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return Ok(());
            };
            let done = if matches!(core.region.backing, Backing::SharedMemfd(_)) {
                (first..first + n).try_for_each(|b| core.install_block(b, BlockData::Lazy, true))
            } else {
                install_run(core, first, n, &mut buf)
            };
            if done.is_err() {
                failed.store(true, Ordering::Relaxed);
                return done;
            }
        }
    };
    if threads == 1 {
        return work();
    }
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mine = work();
        helpers.into_iter().fold(mine, |acc, h| {
            let theirs = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            acc.and(theirs)
        })
    })
}

/// Steps 3 and 4 for one run of private (anonymous or hugetlb) blocks.
fn install_run(core: &Core, first: usize, n: usize, buf: &mut Vec<u8>) -> Result<(), PagerError> {
    let _busy = core.begin_install();
    let mut start = first; // first block of the pending data run
    let flush =
        |start: usize, end: usize, buf: &[u8]| -> Result<(), PagerError> {
            if end == start {
                return Ok(());
            }
            let bytes = &buf[(start - first) * core.block..(end - first) * core.block];
            let done = install::copy(&core.uffd, core.block_addr(start), bytes, core.page)
                .map_err(|e| PagerError::InstallChunk {
                    block: start,
                    source: Arc::new(e),
                })?;
            core.stats.eexist(done.eexist);
            core.stats
                .add_prefetch_blocks(done.bytes.div_ceil(core.block), done.bytes);
            core.mark_installed(start, end - start);
            Ok(())
        };
    for b in first..first + n {
        // A block that is one chunk the source holds in memory: install it straight
        // from there (no staging copy).
        if core.block == core.chunk {
            let shared = core
                .source
                .shared_chunk(b)
                .map_err(|e| PagerError::ReadChunk {
                    block: b,
                    source: Arc::new(e),
                })?;
            match shared {
                crate::SharedChunk::Data(bytes) if bytes.len() == core.block => {
                    flush(start, b, buf)?;
                    core.install_block(b, BlockData::Bytes(&bytes), true)?;
                    start = b + 1;
                    continue;
                }
                crate::SharedChunk::Image { image, offset } => {
                    let Some(bytes) = image.published_bytes(offset, core.block) else {
                        return Err(PagerError::ReadChunk {
                            block: b,
                            source: Arc::new(crate::SourceError::OutOfRange {
                                index: b,
                                chunks: image.len() / core.block,
                            }),
                        });
                    };
                    flush(start, b, buf)?;
                    core.install_block(b, BlockData::Bytes(bytes), true)?;
                    start = b + 1;
                    continue;
                }
                crate::SharedChunk::Zero => {
                    flush(start, b, buf)?;
                    core.install_block(b, BlockData::Zero, true)?;
                    start = b + 1;
                    continue;
                }
                _ => {}
            }
        }
        let at = (b - first) * core.block;
        if buf.len() < (b - first + 1) * core.block {
            buf.resize(n * core.block, 0);
        }
        let data = core.read_block(b, &mut buf[at..at + core.block])?;
        if !data {
            flush(start, b, buf)?;
            core.install_block(b, BlockData::Zero, true)?;
            start = b + 1;
        }
    }
    flush(start, first + n, buf)
}

/// A per-VM background prefetch thread fed through a channel.
pub(crate) struct Prefetcher {
    tx: Option<Sender<Vec<u32>>>,
    stop: Arc<AtomicBool>,
    pending: Arc<(Mutex<usize>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Prefetcher {
    pub fn spawn(core: Arc<Core>) -> Result<Prefetcher, PagerError> {
        let (tx, rx) = channel::<Vec<u32>>();
        let stop = Arc::new(AtomicBool::new(false));
        let pending = Arc::new((Mutex::new(0usize), Condvar::new()));
        let (s, p) = (stop.clone(), pending.clone());
        let thread = std::thread::Builder::new()
            .name("thaw-prefetch".into())
            .spawn(move || {
                for batch in rx {
                    if let Err(e) = install_chunks(&core, &batch, Some(&s), 1) {
                        *core.prefetch_error.lock() = Some(e);
                    }
                    let mut n = p.0.lock();
                    *n -= 1;
                    p.1.notify_all();
                }
            })
            .map_err(|e| PagerError::SpawnThread(Arc::new(e)))?;
        Ok(Prefetcher {
            tx: Some(tx),
            stop,
            pending,
            thread: Some(thread),
        })
    }

    pub fn submit(&self, batch: Vec<u32>) {
        *self.pending.0.lock() += 1;
        if let Some(tx) = &self.tx {
            if tx.send(batch).is_err() {
                *self.pending.0.lock() -= 1;
            }
        }
    }

    pub fn wait_idle(&self) {
        let mut n = self.pending.0.lock();
        while *n > 0 {
            self.pending.1.wait(&mut n);
        }
    }

    /// Abandon queued work, finish the current run, and join the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use crate::{PagerOptions, VecSource};
    use std::sync::Arc;

    #[test]
    fn test_prefetch_blocking_then_no_faults() {
        let len = 4 << 20;
        let map = AnonMap::new(len);
        let src = Arc::new(VecSource::patterned(len, 4096, &[10, 11, 500]));
        let h = start(&map, src.clone(), PagerOptions::default());
        let all: Vec<u32> = (0..(len / 4096) as u32)
            .rev()
            .chain(0..(len / 4096) as u32)
            .collect();
        h.prefetch_blocking(&all).unwrap();
        let base = map.addr.0;
        let s = src.clone();
        with_timeout(30, move || {
            assert_eq!(kernel_read(base, len).unwrap(), s.bytes())
        });
        let st = h.stats();
        assert_eq!(st.faults, 0, "{st:?}");
        assert_eq!(st.bytes_installed, len as u64);
        assert_eq!(st.prefetch_blocks, (len / 4096) as u64);
        assert_eq!(st.zero_installs, 3);
    }

    #[test]
    fn test_prefetch_blocking_on_several_threads_installs_each_block_once() {
        for threads in [1, 2, 4, 7] {
            let len = 8 << 20;
            let map = AnonMap::new(len);
            let src = Arc::new(VecSource::patterned(len, 64 << 10, &[5, 60, 61]));
            let opts = PagerOptions {
                prefetch_threads: threads,
                ..Default::default()
            };
            let h = start(&map, src.clone(), opts);
            // Scattered and repeated indices: runs of several lengths.
            let chunks = (len / (64 << 10)) as u32;
            let set: Vec<u32> = (0..chunks)
                .filter(|i| i % 3 != 1)
                .chain([0, 2, 127])
                .collect();
            h.prefetch_blocking(&set).unwrap();
            let st = h.stats();
            assert_eq!(st.faults, 0, "{threads} threads: {st:?}");
            let distinct = (0..chunks).filter(|i| set.contains(i)).count() as u64;
            assert_eq!(st.bytes_installed, distinct * (64 << 10), "{st:?}");
            assert_eq!(st.eexist_races, 0, "{st:?}");
            let base = map.addr.0;
            let s = src.clone();
            with_timeout(30, move || {
                assert_eq!(kernel_read(base, len).unwrap(), s.bytes())
            });
        }
    }

    #[test]
    fn test_prefetch_blocking_on_several_threads_reports_a_bad_chunk() {
        let len = 4 << 20;
        let map = AnonMap::new(len);
        let src = Arc::new(crate::testutil::FailingSource {
            inner: VecSource::patterned(len, 64 << 10, &[]),
            bad: vec![40],
        });
        let opts = PagerOptions {
            prefetch_threads: 3,
            ..Default::default()
        };
        let h = start(&map, src, opts);
        let all: Vec<u32> = (0..64).collect();
        let err = h.prefetch_blocking(&all).expect_err("chunk 40 is corrupt");
        assert_eq!(err.chunk(), Some(40), "{err}");
    }

    /// A source that also lends its chunks (as a decompressed cache would).
    struct Lending(VecSource);

    impl crate::PageSource for Lending {
        fn chunk_size(&self) -> usize {
            self.0.chunk_size()
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn read_chunk(
            &self,
            index: usize,
            dst: &mut [u8],
        ) -> Result<crate::ChunkKind, crate::SourceError> {
            panic!(
                "chunk {index} was staged although the source lends it ({} bytes)",
                dst.len()
            )
        }
        fn shared_chunk(&self, index: usize) -> Result<crate::SharedChunk, crate::SourceError> {
            let cs = self.0.chunk_size();
            let bytes = &self.0.bytes()[index * cs..(index + 1) * cs];
            Ok(if bytes.iter().all(|&b| b == 0) {
                crate::SharedChunk::Zero
            } else {
                crate::SharedChunk::Data(Arc::new(bytes.to_vec()))
            })
        }
    }

    #[test]
    fn test_prefetch_installs_lent_chunks_without_staging() {
        let len = 4 << 20;
        let map = AnonMap::new(len);
        let inner = VecSource::patterned(len, 4096, &[3, 700]);
        let expect = inner.bytes().to_vec();
        let h = start(&map, Arc::new(Lending(inner)), PagerOptions::default());
        let all: Vec<u32> = (0..(len / 4096) as u32).collect();
        h.prefetch_blocking(&all).unwrap();
        let base = map.addr.0;
        with_timeout(30, move || {
            assert_eq!(kernel_read(base, len).unwrap(), expect)
        });
        let st = h.stats();
        assert_eq!(st.faults, 0, "{st:?}");
        assert_eq!(st.bytes_installed, len as u64);
        assert_eq!(st.zero_installs, 2);
    }

    /// A source whose chunks sit in a published hugetlbfs image (a working-set image);
    /// `shift` moves every offset (past the end: a bad image).
    struct FromImage {
        image: Arc<crate::HugeMemfd>,
        zero: Vec<usize>,
        shift: usize,
    }

    impl crate::PageSource for FromImage {
        fn chunk_size(&self) -> usize {
            4096
        }
        fn len(&self) -> usize {
            1 << 20
        }
        fn read_chunk(
            &self,
            index: usize,
            _dst: &mut [u8],
        ) -> Result<crate::ChunkKind, crate::SourceError> {
            panic!("chunk {index} was staged although the image holds it")
        }
        fn shared_chunk(&self, index: usize) -> Result<crate::SharedChunk, crate::SourceError> {
            Ok(if self.zero.contains(&index) {
                crate::SharedChunk::Zero
            } else {
                crate::SharedChunk::Image {
                    image: self.image.clone(),
                    offset: index * 4096 + self.shift,
                }
            })
        }
    }

    fn image_of(bytes: &[u8]) -> Option<Arc<crate::HugeMemfd>> {
        match crate::HugeMemfd::create(crate::HUGE_PAGE_SIZE) {
            Ok(m) => {
                m.write_at(0, bytes).unwrap();
                Some(Arc::new(m))
            }
            Err(e) => {
                eprintln!("SKIPPED: no huge page for the image ({e})");
                None
            }
        }
    }

    #[test]
    fn test_prefetch_copies_chunks_straight_from_an_image() {
        let len = 1 << 20;
        let inner = VecSource::patterned(len, 4096, &[5, 200]);
        let Some(image) = image_of(inner.bytes()) else {
            return;
        };
        let map = AnonMap::new(len);
        let src = FromImage {
            image,
            zero: vec![5, 200],
            shift: 0,
        };
        let h = start(&map, Arc::new(src), PagerOptions::default());
        h.prefetch_blocking(&(0..256).collect::<Vec<u32>>())
            .unwrap();
        let (base, expect) = (map.addr.0, inner.bytes().to_vec());
        with_timeout(30, move || {
            assert_eq!(kernel_read(base, len).unwrap(), expect)
        });
        let st = h.stats();
        assert_eq!((st.faults, st.zero_installs), (0, 2), "{st:?}");
    }

    #[test]
    fn test_an_image_offset_past_its_end_fails_the_prefetch_cleanly() {
        let Some(image) = image_of(&[7u8; 4096]) else {
            return;
        };
        let map = AnonMap::new(1 << 20);
        let src = FromImage {
            image,
            zero: Vec::new(),
            shift: crate::HUGE_PAGE_SIZE - 4096 * 3,
        };
        let h = start(&map, Arc::new(src), PagerOptions::default());
        // Chunks 0-2 fit in the 2 MiB image, chunk 3 would end past it.
        h.prefetch_blocking(&[0, 1, 2]).unwrap();
        let err = h.prefetch_blocking(&[3]).unwrap_err();
        assert!(
            matches!(err, crate::PagerError::ReadChunk { block: 3, .. }),
            "{err:?}"
        );
        assert!(h.error().is_none(), "a prefetch error is not a fatal fault");
    }

    #[test]
    fn test_prefetch_races_with_faults_and_installs_each_page_once() {
        let len = 16 << 20;
        let map = AnonMap::new(len);
        let src = Arc::new(VecSource::patterned(len, 4096, &[7]));
        let h = start(&map, src.clone(), PagerOptions::default());
        let pages = len / 4096;
        h.prefetch(&(0..pages as u32).collect::<Vec<_>>()).unwrap();
        let base = map.addr.0;
        let readers: Vec<_> = (0..2u64)
            .map(|seed| {
                let s = src.clone();
                std::thread::spawn(move || {
                    for p in shuffle(pages, seed + 3).into_iter().take(pages / 2) {
                        assert_eq!(user_read(base + p * 4096 + 9), s.bytes()[p * 4096 + 9]);
                    }
                })
            })
            .collect();
        with_timeout(60, move || {
            readers.into_iter().for_each(|r| r.join().unwrap())
        });
        h.wait_prefetch();
        let s = src.clone();
        with_timeout(30, move || {
            assert_eq!(kernel_read(base, len).unwrap(), s.bytes())
        });
        assert!(h.prefetch_error().is_none() && h.error().is_none());
        let st = h.finish();
        assert_eq!(
            st.bytes_installed, len as u64,
            "every page installed exactly once: {st:?}"
        );
        eprintln!(
            "race: faults {} prefetch blocks {} eexist {}",
            st.faults, st.prefetch_blocks, st.eexist_races
        );
    }
}
