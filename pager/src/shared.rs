//! Shared-clone mode: one memfd (shmem, or hugetlbfs with 2 MiB pages) holds the decompressed
//! image, filled lazily and once for all clones; each clone maps it `MAP_PRIVATE`.
//!
//! Design (see README.md for the measurements):
//! - every clone's private mapping is registered for MISSING and MINOR faults;
//! - MISSING (the page is not in the memfd's page cache) and MINOR (it is, but this clone has
//!   no PTE yet) both go to [`SharedImage::fill`]: under a per-block lock, the first clone to
//!   need a block decompresses it straight into the image through an unregistered `MAP_SHARED`
//!   "filler" mapping (all-zero blocks are fallocated instead) and marks it filled; later
//!   clones find it filled and do nothing;
//! - then UFFDIO_CONTINUE maps the page-cache pages into the clone read-only; a clone's first
//!   write to a page is an ordinary copy-on-write into a private page.
//!   Clean pages are shared by every clone; only written pages are private.
//! - MINOR (not just MISSING) registration is what makes it race-free: a page enters the page
//!   cache when the filler first touches it, before its bytes are complete, so a clone must not
//!   map a present page before the fill finished; the MINOR event makes it wait for the lock.

use crate::huge::{memfd, HugeError, Mapping, HUGE_PAGE_SIZE};
use crate::SMALL_PAGE_SIZE;
use parking_lot::Mutex;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Stripes of the fill lock.
const LOCKS: usize = 64;

/// Why the shared image could not be created, mapped or filled.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// Creating or mapping the memfd failed (including "no huge pages").
    #[error("cannot create the shared image")]
    CreateImage(#[source] HugeError),
    /// Mapping a clone's private view failed.
    #[error("cannot map a private view of the shared image")]
    MapPrivate(#[source] HugeError),
    /// fallocate(2) of a zero block failed.
    #[error("cannot allocate zero block at offset {offset:#x}")]
    AllocateZero {
        /// Offset in the image.
        offset: usize,
        /// The syscall error.
        #[source]
        source: io::Error,
    },
}

/// The shared, lazily filled decompressed image.
#[derive(Debug)]
pub struct SharedImage {
    fd: OwnedFd,
    len: usize,
    hugetlb: bool,
    /// Unregistered MAP_SHARED mapping of the whole memfd, written only by `fill`.
    filler: Mapping,
    filled: Vec<AtomicU64>,
    locks: Vec<Mutex<()>>,
}

impl SharedImage {
    /// Create an empty image of `len` bytes: hugetlbfs (2 MiB pages) if `hugetlb`, else shmem.
    pub fn create(len: usize, hugetlb: bool) -> Result<SharedImage, SharedError> {
        let page = if hugetlb {
            HUGE_PAGE_SIZE
        } else {
            SMALL_PAGE_SIZE
        };
        if len == 0 || !len.is_multiple_of(page) {
            return Err(SharedError::CreateImage(HugeError::CheckLength(len)));
        }
        let flags = if hugetlb {
            let (needed, free) = (len / HUGE_PAGE_SIZE, crate::free_huge_pages());
            if free < needed {
                return Err(SharedError::CreateImage(HugeError::NoHugePages {
                    needed,
                    free,
                }));
            }
            libc::MFD_HUGETLB | libc::MFD_HUGE_2MB
        } else {
            0
        };
        let fd = memfd(c"thaw-shared-image", len, flags).map_err(SharedError::CreateImage)?;
        let filler = Mapping::new(len, libc::MAP_SHARED, fd.as_raw_fd())
            .map_err(SharedError::CreateImage)?;
        let pages = len / page;
        Ok(SharedImage {
            fd,
            len,
            hugetlb,
            filler,
            filled: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            locks: (0..LOCKS).map(|_| Mutex::new(())).collect(),
        })
    }

    /// Image length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the image is empty (never: create rejects zero).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the image lives on hugetlbfs.
    pub fn is_hugetlb(&self) -> bool {
        self.hugetlb
    }

    /// Page size of the image (and of clones' mappings).
    pub fn page_size(&self) -> usize {
        if self.hugetlb {
            HUGE_PAGE_SIZE
        } else {
            SMALL_PAGE_SIZE
        }
    }

    /// The memfd.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Bytes of the image filled so far.
    pub fn filled_bytes(&self) -> usize {
        let pages: u32 = self
            .filled
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones())
            .sum();
        pages as usize * self.page_size()
    }

    /// Map a clone's view: `MAP_PRIVATE | MAP_NORESERVE` of the whole image. Register it with
    /// a pager using `Backing::SharedMemfd`. (NORESERVE: hugetlb would otherwise reserve a
    /// private huge page per page for copy-on-write at mmap time; without free huge pages a
    /// clone's write then gets SIGBUS, so keep a reserve for the pages clones write.)
    pub fn map_private(&self) -> Result<PrivateMapping, SharedError> {
        Mapping::new(
            self.len,
            libc::MAP_PRIVATE | libc::MAP_NORESERVE,
            self.fd.as_raw_fd(),
        )
        .map_err(SharedError::MapPrivate)
    }

    fn range_filled(&self, off: usize, len: usize) -> bool {
        let page = self.page_size();
        (off / page..(off + len) / page)
            .all(|p| self.filled[p / 64].load(Ordering::Acquire) & (1 << (p % 64)) != 0)
    }

    /// Make `[off, off + len)` (page aligned) hold its bytes: if not filled yet, call `read`
    /// with the image's bytes there (under the range's lock) to write them; `read` returns
    /// `Ok(false)` for an all-zero range without writing. Returns whether the range holds data
    /// (`true` also when it was already filled), or `read`'s error (the range stays unfilled).
    pub(crate) fn fill<E>(
        &self,
        off: usize,
        len: usize,
        read: impl FnOnce(&mut [u8]) -> Result<bool, E>,
    ) -> Result<Result<bool, E>, SharedError> {
        assert!(
            off + len <= self.len
                && off.is_multiple_of(self.page_size())
                && len.is_multiple_of(self.page_size())
        );
        if self.range_filled(off, len) {
            return Ok(Ok(true));
        }
        let _guard = self.locks[(off / len) % LOCKS].lock();
        if self.range_filled(off, len) {
            return Ok(Ok(true));
        }
        // SAFETY: the range lies inside the filler mapping (asserted above), which lives as
        // long as `self`. Only this function writes through it, and only under this range's
        // lock while the range is unfilled; clones map unfilled pages only after this returns
        // (their MINOR/MISSING faults wait in `fill` on the same lock), so nothing else reads
        // or writes these bytes while the slice exists.
        let dst =
            unsafe { std::slice::from_raw_parts_mut((self.filler.addr().0 + off) as *mut u8, len) };
        let data = match read(dst) {
            Ok(data) => data,
            Err(e) => return Ok(Err(e)),
        };
        if !data {
            // SAFETY: fallocate on the memfd we own; allocates zeroed pages, keeps present ones.
            if unsafe {
                libc::fallocate(
                    self.fd.as_raw_fd(),
                    0,
                    off as libc::off_t,
                    len as libc::off_t,
                )
            } != 0
            {
                return Err(SharedError::AllocateZero {
                    offset: off,
                    source: io::Error::last_os_error(),
                });
            }
        }
        let page = self.page_size();
        for p in off / page..(off + len) / page {
            self.filled[p / 64].fetch_or(1 << (p % 64), Ordering::AcqRel);
        }
        Ok(Ok(data))
    }
}

/// One clone's `MAP_PRIVATE` view of a [`SharedImage`]; unmapped on drop (drop the pager
/// handle first).
pub type PrivateMapping = Mapping;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::{
        mapping_memory, Backing, GuestRegion, Pager, PagerHandle, PagerOptions, VecSource,
    };
    use std::sync::Arc;

    fn clone_of(image: &Arc<SharedImage>, src: &Arc<VecSource>) -> (PrivateMapping, PagerHandle) {
        let m = image.map_private().unwrap();
        let region = GuestRegion {
            host_addr: m.addr(),
            len: m.len(),
            backing: Backing::SharedMemfd(image.clone()),
            keep_alive: None,
        };
        // SAFETY: a fresh private mapping of the image that outlives the handle (callers drop
        // the handle first) and is accessed by raw address only.
        let h = unsafe { Pager::start(region, src.clone(), PagerOptions::default()) }.unwrap();
        (m, h)
    }

    fn clones_share_clean_pages(hugetlb: bool) {
        let len = 16 << 20;
        let image = Arc::new(SharedImage::create(len, hugetlb).unwrap());
        let src = Arc::new(VecSource::patterned(len, 64 << 10, &[0, 1, 2]));
        let clones: Vec<_> = (0..3).map(|_| clone_of(&image, &src)).collect();
        for (i, (m, _)) in clones.iter().enumerate() {
            let (base, s) = (m.addr().0, src.clone());
            with_timeout(30, move || {
                for p in shuffle(len / 4096, i as u64 + 1) {
                    assert_eq!(user_read(base + p * 4096 + 3), s.bytes()[p * 4096 + 3]);
                }
                assert_eq!(kernel_read(base, len).unwrap(), s.bytes());
            });
        }
        assert_eq!(
            src.reads() as usize,
            len / (64 << 10),
            "each chunk decompressed once"
        );
        assert_eq!(image.filled_bytes(), len);
        // A clone's write is private: the others and the image keep the snapshot's bytes.
        let w = clones[0].0.addr().0 + (5 << 20);
        with_timeout(10, move || kernel_write(w, b"private").unwrap());
        assert_eq!(kernel_read(w, 7).unwrap(), b"private");
        assert_eq!(
            kernel_read(clones[1].0.addr().0 + (5 << 20), 7).unwrap(),
            &src.bytes()[5 << 20..][..7]
        );
        for (i, (m, h)) in clones.iter().enumerate() {
            let mem = mapping_memory(m.addr(), m.len()).unwrap();
            eprintln!(
                "shared hugetlb={hugetlb} clone {i} ({} MiB, all read): {mem:?} {:?}",
                len >> 20,
                h.stats().faults
            );
            assert!(
                mem.private_total_kib() <= if i == 0 { 2048 } else { 0 },
                "{mem:?}"
            );
        }
        drop(clones);
    }

    #[test]
    fn test_shared_shmem_clones_share_clean_pages() {
        clones_share_clean_pages(false);
    }

    #[test]
    fn test_shared_hugetlb_clones_share_clean_pages() {
        if crate::free_huge_pages() < 24 {
            eprintln!(
                "SKIPPED test_shared_hugetlb_clones_share_clean_pages: {} free huge pages, need 24",
                crate::free_huge_pages()
            );
            return;
        }
        clones_share_clean_pages(true);
    }

    #[test]
    fn test_shared_fill_failure_does_not_hang() {
        let len = 1 << 20;
        let image = Arc::new(SharedImage::create(len, false).unwrap());
        let src = Arc::new(FailingSource {
            inner: VecSource::patterned(len, 4096, &[]),
            bad: vec![9],
        });
        let m = image.map_private().unwrap();
        let region = GuestRegion {
            host_addr: m.addr(),
            len,
            backing: Backing::SharedMemfd(image.clone()),
            keep_alive: None,
        };
        // SAFETY: as in clone_of.
        let h = unsafe { Pager::start(region, src, PagerOptions::default()) }.unwrap();
        let bad = m.addr().0 + 9 * 4096;
        let r = with_timeout(10, move || kernel_read(bad, 8));
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EFAULT));
        assert_eq!(h.error().and_then(|e| e.chunk()), Some(9));
        drop(h);
    }
}
