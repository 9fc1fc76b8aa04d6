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
