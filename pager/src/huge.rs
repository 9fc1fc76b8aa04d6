//! 2 MiB backing memory for guest RAM: a hugetlbfs memfd ([`HugeMemfd`], the fast path:
//! userfaultfd installs whole 2 MiB pages) and anonymous THP memory ([`ThpRegion`], the
//! fallback when no huge pages are reserved).
//!
//! Note: UFFDIO_COPY into anonymous memory always installs 4 KiB PTEs, so a THP region only
//! gets huge pages when it is filled without userfaultfd (eager copy) or later by khugepaged.

use crate::HostAddr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// Size of a huge page.
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// Why huge-page memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HugeError {
    /// Not enough free 2 MiB pages in the hugetlb pool.
    #[error("need {needed} free 2 MiB huge pages but {free} are free (reserve them: echo N > /proc/sys/vm/nr_hugepages)")]
    NoHugePages {
        /// Pages the request needs.
        needed: usize,
        /// Pages free and unreserved.
        free: usize,
    },
    /// The length is zero or not a multiple of 2 MiB.
    #[error("length {0:#x} is not a positive multiple of 2 MiB")]
    CheckLength(usize),
    /// memfd_create(2) failed.
    #[error("memfd_create failed")]
    CreateMemfd(#[source] io::Error),
    /// ftruncate(2) failed.
    #[error("ftruncate of the memfd failed")]
    Truncate(#[source] io::Error),
    /// mmap(2) failed.
    #[error("mmap of {len:#x} bytes failed")]
    Map {
        /// Requested length.
        len: usize,
        /// The syscall error.
        #[source]
        source: io::Error,
    },
    /// A shared image file another user owns or others may write: never mapped.
    #[error("{} is not a trusted image (owner uid {uid}, mode {mode:o}): it must belong to this user and be writable by it alone", path.display())]
    Untrusted {
        /// The file.
        path: std::path::PathBuf,
        /// Its owner.
        uid: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// madvise(MADV_HUGEPAGE) failed.
    #[error("madvise(MADV_HUGEPAGE) failed")]
    Madvise(#[source] io::Error),
}

/// The hugetlbfs mount (2 MiB pages) images shared across processes live on:
/// `$THAW_HUGETLBFS`, else `/dev/hugepages`, if it is a hugetlbfs mount this process may
/// write to; `None` otherwise (images are then private memfds, one per process).
pub fn hugetlbfs_dir() -> Option<std::path::PathBuf> {
    const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
    let dir = std::env::var_os("THAW_HUGETLBFS")
        .map_or_else(|| std::path::PathBuf::from("/dev/hugepages"), Into::into);
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we pass; `c` is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 || st.f_type as i64 != HUGETLBFS_MAGIC {
        return None;
    }
    // SAFETY: access(2) on a NUL-terminated path.
    (unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0).then_some(dir)
}

/// Free, unreserved 2 MiB pages in the hugetlb pool (free - reserved), from sysfs
/// (two small reads: cheap enough for every restore), else /proc/meminfo.
pub fn free_huge_pages() -> usize {
    let sysfs = |name: &str| -> Option<usize> {
        let path = format!("/sys/kernel/mm/hugepages/hugepages-2048kB/{name}");
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    };
    if let (Some(free), Some(resv)) = (sysfs("free_hugepages"), sysfs("resv_hugepages")) {
        return free.saturating_sub(resv);
    }
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> usize {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    field("HugePages_Free:").saturating_sub(field("HugePages_Rsvd:"))
}

/// memfd_create(2) with `flags`, then ftruncate to `len`.
pub(crate) fn memfd(name: &std::ffi::CStr, len: usize, flags: u32) -> Result<OwnedFd, HugeError> {
    // SAFETY: `name` is a valid NUL-terminated string; the result is checked before use.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags | libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(HugeError::CreateMemfd(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate on a descriptor we own; no pointers.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
        return Err(HugeError::Truncate(io::Error::last_os_error()));
    }
    Ok(fd)
}

/// A mapping this process made, unmapped on drop (drop whatever uses its pages first: the
/// pager handle, the VM).
#[derive(Debug)]
pub struct Mapping {
    addr: HostAddr,
    len: usize,
}

impl Mapping {
    /// mmap(2) `len` bytes of `fd` (or anonymous memory when `fd` is -1) read-write.
    pub(crate) fn new(len: usize, flags: i32, fd: i32) -> Result<Mapping, HugeError> {
        Ok(Mapping {
            addr: map(len, flags, fd)?,
            len,
        })
    }

    /// Start of the mapping.
    pub fn addr(&self) -> HostAddr {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: mmap rejects zero).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns; its users are gone (see the
        // type's doc) and nothing else holds references into it.
        unsafe { libc::munmap(self.addr.as_ptr(), self.len) };
    }
}

/// mmap(2) `len` bytes of `fd` (or anonymous memory when `fd` is -1) read-write.
fn map(len: usize, flags: i32, fd: i32) -> Result<HostAddr, HugeError> {
    // SAFETY: a new mapping at an address the kernel chooses; it overlaps nothing we own.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(HugeError::Map {
            len,
            source: io::Error::last_os_error(),
        });
    }
    Ok(HostAddr(p as usize))
}

/// Guest RAM on a hugetlbfs memfd mapped `MAP_SHARED` (the memfd is private to this process;
/// the pages are freed when the mapping and the descriptor are gone).
#[derive(Debug)]
pub struct HugeMemfd {
    fd: OwnedFd,
    map: Mapping,
}

impl HugeMemfd {
    /// Create and map `len` bytes (a multiple of 2 MiB) of hugetlb memory, unpopulated.
    pub fn create(len: usize) -> Result<HugeMemfd, HugeError> {
        if len == 0 || !len.is_multiple_of(HUGE_PAGE_SIZE) {
            return Err(HugeError::CheckLength(len));
        }
        let needed = len / HUGE_PAGE_SIZE;
        let free = free_huge_pages();
        if free < needed {
            return Err(HugeError::NoHugePages { needed, free });
        }
        let fd = memfd(
            c"thaw-guest-ram",
            len,
            libc::MFD_HUGETLB | libc::MFD_HUGE_2MB,
        )?;
        let map = Mapping::new(len, libc::MAP_SHARED, fd.as_raw_fd())?;
        Ok(HugeMemfd { fd, map })
    }

    /// Opens the hugetlbfs file at `path` (a file on a hugetlbfs mount, shared by every
    /// process that opens it while the host is up) and maps it `MAP_SHARED`; it must hold
    /// exactly `len` bytes. Used for images several processes share (the runtime's module).
    pub fn open_file(path: &std::path::Path, len: usize) -> Result<HugeMemfd, HugeError> {
        // Read-write, as the mapping is (the mapping is never written: clones map the
        // file privately).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(HugeError::CreateMemfd)?;
        let meta = file.metadata().map_err(HugeError::CreateMemfd)?;
        // Guest memory is copied from this file: only trust one this user wrote and
        // nobody else may change.
        {
            use std::os::unix::fs::MetadataExt;
            // SAFETY: geteuid(2) has no arguments and cannot fail.
            let me = unsafe { libc::geteuid() };
            if meta.uid() != me || meta.mode() & 0o022 != 0 {
                return Err(HugeError::Untrusted {
                    path: path.to_path_buf(),
                    uid: meta.uid(),
                    mode: meta.mode() & 0o7777,
                });
            }
        }
        let size = meta.len();
        if size != len as u64 || len == 0 || !len.is_multiple_of(HUGE_PAGE_SIZE) {
            return Err(HugeError::CheckLength(size as usize));
        }
        let fd = OwnedFd::from(file);
        let map = Mapping::new(len, libc::MAP_SHARED, fd.as_raw_fd())?;
        // Map every page here too (one read each: they are in the page cache already),
        // as a built image's pages are: smaps then counts clones' views of them as the
        // shared pages they are rather than as each clone's private ones.
        for off in (0..len).step_by(HUGE_PAGE_SIZE) {
            // SAFETY: a read inside the mapping just made (`off < len`).
            unsafe { std::ptr::read_volatile((map.addr().0 + off) as *const u8) };
        }
        Ok(HugeMemfd { fd, map })
    }

    /// Creates the hugetlbfs file at `path` (on a hugetlbfs mount), `len` bytes, mapped
    /// `MAP_SHARED` (reserving its huge pages now: an empty pool fails here, not later).
    /// Publish it under its final name once filled (`std::fs::rename`).
    pub fn create_file(path: &std::path::Path, len: usize) -> Result<HugeMemfd, HugeError> {
        if len == 0 || !len.is_multiple_of(HUGE_PAGE_SIZE) {
            return Err(HugeError::CheckLength(len));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(HugeError::CreateMemfd)?;
        file.set_len(len as u64).map_err(HugeError::Truncate)?;
        let fd = OwnedFd::from(file);
        let map = Mapping::new(len, libc::MAP_SHARED, fd.as_raw_fd())?;
        Ok(HugeMemfd { fd, map })
    }

    /// Start of the mapping.
    pub fn addr(&self) -> HostAddr {
        self.map.addr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never: create rejects zero).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The memfd (for a KVM memslot that wants an fd, or to map it again).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Copies `dst.len()` bytes at `offset` out of the memory (hugetlbfs has no `read(2)`).
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), HugeError> {
        let src = self
            .published_bytes(offset, dst.len())
            .ok_or(HugeError::CheckLength(offset.saturating_add(dst.len())))?;
        dst.copy_from_slice(src);
        Ok(())
    }

    /// `len` bytes at `offset` of a published image (one that is filled and never
    /// written again: [`HugeMemfd::open_file`], or a built image after its fill); `None`
    /// past the end.
    pub(crate) fn published_bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        offset.checked_add(len).filter(|&e| e <= self.len())?;
        // SAFETY: [offset, offset + len) lies inside this value's live mapping (checked
        // above), which lives as long as `&self`. Published images are not written by
        // anyone (their builder renamed them into place after the fill; clones map them
        // privately; `write_at` and `fill_parallel` are only used before publishing).
        Some(unsafe {
            std::slice::from_raw_parts(self.addr().offset(offset).as_ptr() as *const u8, len)
        })
    }

    /// Copies `data` into the memory at `offset` (hugetlbfs has no `write(2)`).
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), HugeError> {
        let end = offset.checked_add(data.len()).filter(|&e| e <= self.len());
        if end.is_none() {
            return Err(HugeError::CheckLength(offset.saturating_add(data.len())));
        }
        // SAFETY: [offset, offset + len) lies inside this value's live mapping
        // (checked above); `data` is a distinct host buffer; nothing else holds a
        // reference into the mapping while it is being filled.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.addr().offset(offset).as_ptr() as *mut u8,
                data.len(),
            )
        };
        Ok(())
    }
}

impl HugeMemfd {
    /// Fills the memory piece by piece: `fill(i, piece)` for each `piece_len`-byte
    /// piece `i`, on `threads` threads (the caller's included) taking pieces in turn.
    /// `&mut self`: nothing else can read or write the memory meanwhile, and every
    /// piece goes to exactly one call. Stops handing out pieces after the first error,
    /// which it returns.
    pub fn fill_parallel<E: Send>(
        &mut self,
        piece_len: usize,
        threads: usize,
        fill: impl Fn(usize, &mut [u8]) -> Result<(), E> + Sync,
    ) -> Result<(), E> {
        // SAFETY: the mapping is `len` bytes, live while `self` is, and `&mut self`
        // makes this the only reference into it until the slice's borrow ends.
        let all =
            unsafe { std::slice::from_raw_parts_mut(self.addr().as_ptr() as *mut u8, self.len()) };
        let pieces = parking_lot::Mutex::new(all.chunks_mut(piece_len.max(1)).enumerate());
        let failed = std::sync::atomic::AtomicBool::new(false);
        let work = || -> Result<(), E> {
            while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                let Some((i, piece)) = pieces.lock().next() else {
                    break;
                };
                if let Err(e) = fill(i, piece) {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err(e);
                }
            }
            Ok(())
        };
        std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads.max(1)).map(|_| s.spawn(work)).collect();
            let mine = work();
            helpers.into_iter().fold(mine, |acc, h| {
                acc.and(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            })
        })
    }
}

/// Anonymous memory aligned to 2 MiB with MADV_HUGEPAGE (transparent huge pages).
#[derive(Debug)]
pub struct ThpRegion {
    map: Mapping,
}

impl ThpRegion {
    /// Map `len` bytes (a multiple of 2 MiB), 2 MiB aligned, advised for THP.
    pub fn create(len: usize) -> Result<ThpRegion, HugeError> {
        if len == 0 || !len.is_multiple_of(HUGE_PAGE_SIZE) {
            return Err(HugeError::CheckLength(len));
        }
        let raw = map(
            len + HUGE_PAGE_SIZE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
        )?;
        let start = raw.0.next_multiple_of(HUGE_PAGE_SIZE);
        let (head, tail) = (start - raw.0, HUGE_PAGE_SIZE - (start - raw.0));
        // SAFETY: trims the unaligned head and tail of the mapping created just above.
        unsafe {
            if head > 0 {
                libc::munmap(raw.as_ptr(), head);
            }
            libc::munmap(HostAddr(start + len).as_ptr(), tail);
        }
        let region = ThpRegion {
            map: Mapping {
                addr: HostAddr(start),
                len,
            },
        };
        // SAFETY: advice on the mapping this function owns.
        if unsafe { libc::madvise(region.addr().as_ptr(), len, libc::MADV_HUGEPAGE) } != 0 {
            return Err(HugeError::Madvise(io::Error::last_os_error()));
        }
        Ok(region)
    }

    /// Start of the mapping (2 MiB aligned).
    pub fn addr(&self) -> HostAddr {
        self.map.addr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never: create rejects zero).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_shared_image_files_others_could_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thaw-ws-test");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(HUGE_PAGE_SIZE as u64).unwrap();
        for mode in [0o666, 0o620, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = HugeMemfd::open_file(&path, HUGE_PAGE_SIZE).unwrap_err();
            assert!(
                matches!(err, HugeError::Untrusted { .. }),
                "{mode:o}: {err}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let img = HugeMemfd::open_file(&path, HUGE_PAGE_SIZE).unwrap();
        let mut byte = [1u8];
        img.read_at(HUGE_PAGE_SIZE - 1, &mut byte).unwrap();
        assert_eq!(byte, [0]);
        assert!(
            img.read_at(HUGE_PAGE_SIZE, &mut byte).is_err(),
            "past the end"
        );
        // The wrong length is refused too.
        assert!(matches!(
            HugeMemfd::open_file(&path, 2 * HUGE_PAGE_SIZE),
            Err(HugeError::CheckLength(_))
        ));
    }

    #[test]
    fn test_thp_region_is_2mib_aligned() {
        let r = ThpRegion::create(4 * HUGE_PAGE_SIZE).unwrap();
        assert_eq!(r.addr().0 % HUGE_PAGE_SIZE, 0);
        // SAFETY: the region is a live, private, writable mapping of r.len() bytes.
        unsafe { std::ptr::write_bytes(r.addr().0 as *mut u8, 7, r.len()) };
    }

    #[test]
    fn test_huge_memfd_fill_parallel_fills_every_piece_once() {
        if free_huge_pages() < 2 {
            eprintln!("SKIPPED: test_huge_memfd_fill_parallel_fills_every_piece_once (no free huge pages)");
            return;
        }
        let mut m = HugeMemfd::create(2 * HUGE_PAGE_SIZE).unwrap();
        let piece = 64 << 10;
        let calls = std::sync::atomic::AtomicUsize::new(0);
        m.fill_parallel(piece, 3, |i, dst| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(dst.len(), piece);
            dst.fill(i as u8);
            Ok::<(), String>(())
        })
        .unwrap();
        let pieces = m.len() / piece;
        assert_eq!(calls.into_inner(), pieces);
        let bytes = crate::testutil::kernel_read(m.addr().0, m.len()).unwrap();
        for (i, p) in bytes.chunks(piece).enumerate() {
            assert!(p.iter().all(|&b| b == i as u8), "piece {i}");
        }
        // The first error is returned and stops the hand-out.
        let err = m
            .fill_parallel(piece, 2, |i, _| if i == 5 { Err(i) } else { Ok(()) })
            .unwrap_err();
        assert_eq!(err, 5);
    }

    #[test]
    fn test_huge_memfd_reports_missing_pages_clearly() {
        let too_many = (free_huge_pages() + 1) * HUGE_PAGE_SIZE;
        let err = HugeMemfd::create(too_many).unwrap_err();
        assert!(matches!(err, HugeError::NoHugePages { .. }), "{err}");
        assert!(err.to_string().contains("nr_hugepages"));
    }
}
