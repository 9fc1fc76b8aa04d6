//! Install ioctls on one userfaultfd: UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_CONTINUE and
//! UFFDIO_WAKE, with the races resolved.
//!
//! Races, the same for every ioctl:
//! - EEXIST: a page of the range is already mapped (a prefetch, another fault on the same block,
//!   or a shared clone's page): skip that page, keep installing the rest, and wake the range at
//!   the end so a thread that faulted on the skipped page cannot stay asleep.
//! - EAGAIN with some bytes done: continue after them. EAGAIN with nothing done means the
//!   address space is changing (mremap, fork): yield and retry, a bounded number of times.

use crate::HostAddr;
use userfaultfd::{Error as UffdError, Uffd};

/// Retries of an ioctl that made no progress before giving up.
const MAX_RETRIES: u32 = 10_000;

/// An install ioctl failed for a reason other than a resolvable race.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// UFFDIO_COPY failed.
    #[error("UFFDIO_COPY to {addr:#x} failed")]
    CopyChunk {
        /// Destination address of the failing copy.
        addr: usize,
        /// The ioctl error.
        #[source]
        source: UffdError,
    },
    /// UFFDIO_ZEROPAGE failed.
    #[error("UFFDIO_ZEROPAGE at {addr:#x} failed")]
    ZeroChunk {
        /// Start of the failing range.
        addr: usize,
        /// The ioctl error.
        #[source]
        source: UffdError,
    },
    /// UFFDIO_CONTINUE failed.
    #[error("UFFDIO_CONTINUE at {addr:#x} failed")]
    ContinueChunk {
        /// Start of the failing range.
        addr: usize,
        /// The ioctl error.
        #[source]
        source: UffdError,
    },
    /// UFFDIO_WAKE failed.
    #[error("UFFDIO_WAKE at {addr:#x} failed")]
    Wake {
        /// Start of the range.
        addr: usize,
        /// The ioctl error.
        #[source]
        source: UffdError,
    },
    /// Giving a block's pages back (MADV_REMOVE, so its next touch faults again) failed.
    #[error("discarding {addr:#x} failed")]
    Discard {
        /// Start of the block.
        addr: usize,
        /// The syscall error.
        #[source]
        source: std::io::Error,
    },
    /// Replacing a block with anonymous memory (the small-page fallback) failed.
    #[error("replacing {addr:#x} with small pages failed")]
    SmallPages {
        /// Start of the block.
        addr: usize,
        /// The syscall error.
        #[source]
        source: std::io::Error,
    },
    /// An ioctl kept returning EAGAIN without progress.
    #[error("install at {addr:#x} made no progress after {MAX_RETRIES} retries")]
    NoProgress {
        /// Address that could not be installed.
        addr: usize,
    },
}

/// What an install did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Installed {
    /// Bytes this call mapped.
    pub bytes: usize,
    /// Pages skipped because they were already mapped.
    pub eexist: usize,
}

impl InstallError {
    /// The errno of the failed ioctl, if it failed with one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            InstallError::CopyChunk { source, .. }
            | InstallError::ZeroChunk { source, .. }
            | InstallError::ContinueChunk { source, .. }
            | InstallError::Wake { source, .. } => errno_of(source),
            InstallError::SmallPages { source, .. } | InstallError::Discard { source, .. } => {
                source.raw_os_error()
            }
            InstallError::NoProgress { .. } => None,
        }
    }
}

/// Whether the page at `addr` is mapped in this process (mincore(2): for a hugetlb
/// mapping, whether its page table maps a page there).
pub(crate) fn mapped(addr: HostAddr) -> bool {
    let mut vec = [0u8; 1];
    // SAFETY: mincore only reads the page tables of one page-aligned page of our own
    // address space and writes one byte into `vec`.
    let rc = unsafe { libc::mincore(addr.as_ptr(), crate::SMALL_PAGE_SIZE, vec.as_mut_ptr()) };
    rc == 0 && vec[0] & 1 != 0
}

/// Replaces `[dst, dst + len)` (2 MiB aligned) with private anonymous memory holding
/// `bytes` (zeroes when `None`): filled off to the side in a fresh 2 MiB-aligned,
/// THP-advised mapping, then moved over `dst` with one `mremap`, so an access to
/// `dst` sees either the old (unmapped) range or the whole new contents.
///
/// Frees the pages of `[dst, dst + len)` in a shared hugetlbfs mapping (MADV_REMOVE
/// punches the hole in the memfd too, so the range reads as missing again and its
/// next touch faults into the userfaultfd). Contents are lost, not exposed: no
/// reference into guest RAM exists (the caller holds the VM stopped).
pub(crate) fn discard(dst: HostAddr, len: usize) -> Result<(), InstallError> {
    // SAFETY: advice on a block of the registered region; MADV_REMOVE only drops
    // pages (no Rust reference points into guest RAM), and the range stays mapped.
    let rc = unsafe { libc::madvise(dst.as_ptr(), len, libc::MADV_REMOVE) };
    if rc != 0 {
        return Err(InstallError::Discard {
            addr: dst.0,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// # Safety
/// `dst` must be a range of guest RAM the caller may replace (no Rust references into
/// it; nothing else installs there meanwhile).
pub(crate) unsafe fn replace_with_anonymous(
    dst: HostAddr,
    len: usize,
    bytes: Option<&[u8]>,
) -> Result<(), InstallError> {
    let err = |addr: usize| InstallError::SmallPages {
        addr,
        source: std::io::Error::last_os_error(),
    };
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let Some(bytes) = bytes else {
        // Zeroes: a fresh anonymous mapping in place is already right (an access
        // racing with the mmap sees zeroes either way).
        // SAFETY: MAP_FIXED over the caller's block (see the function's contract).
        let p = unsafe { libc::mmap(dst.as_ptr(), len, prot, flags | libc::MAP_FIXED, -1, 0) };
        if p == libc::MAP_FAILED {
            return Err(err(dst.0));
        }
        // SAFETY: advice on the mapping just made; failure only loses the optimisation.
        unsafe { libc::madvise(dst.as_ptr(), len, libc::MADV_HUGEPAGE) };
        return Ok(());
    };
    // SAFETY: a new anonymous mapping at an address the kernel picks.
    let raw = unsafe { libc::mmap(std::ptr::null_mut(), 2 * len, prot, flags, -1, 0) };
    if raw == libc::MAP_FAILED {
        return Err(err(dst.0));
    }
    let raw = raw as usize;
    let side = (raw + len - 1) & !(len - 1);
    // SAFETY: trimming the parts of our own fresh mapping outside [side, side+len).
    unsafe {
        if side > raw {
            libc::munmap(raw as *mut libc::c_void, side - raw);
        }
        let tail = raw + 2 * len - (side + len);
        if tail > 0 {
            libc::munmap((side + len) as *mut libc::c_void, tail);
        }
        libc::madvise(side as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    let n = bytes.len().min(len);
    // SAFETY: [side, side+len) is our own fresh mapping; `bytes` is a distinct buffer.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), side as *mut u8, n) };
    // SAFETY: moves our side mapping over the caller's block (see the contract); on
    // failure the side mapping is unmapped below and `dst` is unchanged.
    let p = unsafe {
        libc::mremap(
            side as *mut libc::c_void,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst.as_ptr(),
        )
    };
    if p == libc::MAP_FAILED {
        let e = err(dst.0);
        // SAFETY: the side mapping is still ours.
        unsafe { libc::munmap(side as *mut libc::c_void, len) };
        return Err(e);
    }
    Ok(())
}

fn errno_of(e: &UffdError) -> Option<i32> {
    match e {
        UffdError::CopyFailed(errno) | UffdError::ZeropageFailed(errno) => Some(*errno as i32),
        UffdError::SystemError(errno) => Some(*errno as i32),
        _ => None,
    }
}

/// One step of an install: the bytes it did or the errno it failed with.
enum Step {
    Done(usize),
    Err(UffdError),
}

/// Drive `op(offset, remaining) -> Step` over `[dst, dst + len)` in `page`-sized units,
/// resolving EEXIST and EAGAIN as described in the module doc.
fn drive(
    uffd: &Uffd,
    dst: HostAddr,
    len: usize,
    page: usize,
    mut op: impl FnMut(usize, usize) -> Step,
    fail: impl Fn(usize, UffdError) -> InstallError,
) -> Result<Installed, InstallError> {
    let mut done = Installed::default();
    let mut off = 0;
    let mut retries = 0;
    while off < len {
        let remaining = len - off;
        match op(off, remaining) {
            Step::Done(n) if n > 0 && n <= remaining && n % page == 0 => {
                done.bytes += n;
                off += n;
            }
            // A partial copy reports EAGAIN with the bytes copied; a negative count (address
            // space changing) arrives as a huge value: retry both.
            Step::Done(_) => {}
            Step::Err(e) => match errno_of(&e) {
                Some(libc::EEXIST) => {
                    done.eexist += 1;
                    off += page;
                    continue;
                }
                Some(libc::EAGAIN) => {}
                _ => return Err(fail(dst.0 + off, e)),
            },
        }
        retries += 1;
        if retries > MAX_RETRIES {
            return Err(InstallError::NoProgress { addr: dst.0 + off });
        }
        if retries % 16 == 0 {
            std::thread::yield_now();
        }
    }
    if done.eexist > 0 {
        wake(uffd, dst, len)?;
    }
    Ok(done)
}

/// UFFDIO_COPY `src` to `dst` (`src.len()` bytes, a multiple of `page`), waking waiters.
pub(crate) fn copy(
    uffd: &Uffd,
    dst: HostAddr,
    src: &[u8],
    page: usize,
) -> Result<Installed, InstallError> {
    let op = |off: usize, remaining: usize| {
        // SAFETY: the source pointer and `remaining` bytes lie inside the live slice `src`
        // (off + remaining == src.len()). The kernel checks that the destination lies in a
        // range registered with this uffd and fails otherwise; the registered range is guest
        // RAM that Pager::start's caller handed over for the pager to fill, so no Rust
        // reference observes these bytes changing.
        let r = unsafe {
            uffd.copy(
                src.as_ptr().add(off).cast(),
                dst.offset(off).as_ptr(),
                remaining,
                true,
            )
        };
        match r {
            Ok(n) => Step::Done(n),
            Err(UffdError::PartiallyCopied(n)) => Step::Done(n),
            Err(e) => Step::Err(e),
        }
    };
    drive(uffd, dst, src.len(), page, op, |addr, source| {
        InstallError::CopyChunk { addr, source }
    })
}

/// UFFDIO_ZEROPAGE `[dst, dst + len)` (anonymous and shmem only; not hugetlb).
pub(crate) fn zeropage(
    uffd: &Uffd,
    dst: HostAddr,
    len: usize,
    page: usize,
) -> Result<Installed, InstallError> {
    let op = |off: usize, remaining: usize| {
        // SAFETY: maps the shared zero page; the kernel checks that the range lies in a range
        // registered with this uffd, which Pager::start's caller handed over to the pager.
        match unsafe { uffd.zeropage(dst.offset(off).as_ptr(), remaining, true) } {
            Ok(n) => Step::Done(n),
            Err(e) => Step::Err(e),
        }
    };
    drive(uffd, dst, len, page, op, |addr, source| {
        InstallError::ZeroChunk { addr, source }
    })
}

/// UFFDIO_CONTINUE `[dst, dst + len)`: map the page-cache pages already there.
pub(crate) fn cont(
    uffd: &Uffd,
    dst: HostAddr,
    len: usize,
    page: usize,
) -> Result<Installed, InstallError> {
    let op = |off: usize, remaining: usize| match uffd.r#continue(
        dst.offset(off).as_ptr(),
        remaining,
        true,
    ) {
        Ok(n) => Step::Done(n as usize),
        Err(e) => Step::Err(e),
    };
    drive(uffd, dst, len, page, op, |addr, source| {
        InstallError::ContinueChunk { addr, source }
    })
}

/// UFFDIO_WAKE `[dst, dst + len)`.
pub(crate) fn wake(uffd: &Uffd, dst: HostAddr, len: usize) -> Result<(), InstallError> {
    uffd.wake(dst.as_ptr(), len)
        .map_err(|source| InstallError::Wake {
            addr: dst.0,
            source,
        })
}
