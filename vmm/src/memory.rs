//! Guest RAM: one host mapping that KVM sees as a single memslot at guest-physical 0.
//!
//! The mapping is 2 MiB aligned and advised for transparent huge pages: under the
//! 2 MiB guest pages the VMM builds, 2 MiB host pages make the first guest touch of
//! memory ~50x cheaper on this platform (DESIGN.md). All access from the host goes
//! through bounds-checked methods; guest addresses come from a hostile guest.
//!
//! # The memory contract, in types
//! - **The guest runs only under `&mut Vm`** ([`crate::Vm::run`]), and the [`Vm`] owns its
//!   `GuestRam`: so any `&GuestRam` proves the guest is stopped. Shared (`&self`) access
//!   copies bytes in or out through raw pointers and never creates a Rust reference into
//!   guest memory.
//! - **References into guest memory need `&mut self`** ([`GuestRam::fill_with`],
//!   [`GuestRam::bytes`]): no copy and no other borrower can overlap them.
//! - **A pager changes the rules**: once a userfaultfd pager serves the RAM
//!   ([`GuestRam::start_pager`], `paged.rs`), the kernel fills pages concurrently, so the
//!   methods that hand out references (or remap ranges) refuse with
//!   [`VmError::RamPaged`]. The pager holds a lease on the mapping (an `Arc`), so the range
//!   stays mapped until its last thread is done, whatever is dropped first.
//!
//! [`Vm`]: crate::Vm
use crate::error::VmError;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
pub use thaw_abi::addr::{GuestAddress, GuestRange, HostAddr};

/// What backs guest RAM.
#[derive(Debug)]
pub enum Backing<'a> {
    /// Fresh anonymous memory (zero filled), THP advised.
    Anonymous,
    /// A private copy-on-write mapping of `len` bytes of a file or memfd from offset 0.
    FilePrivate(BorrowedFd<'a>),
    /// A shared mapping of a memfd (the pager fills it; clones map it privately).
    FileShared(BorrowedFd<'a>),
    /// A new private hugetlbfs memfd (2 MiB pages), mapped shared without a
    /// reservation: pages are taken from the pool as they are installed, so many
    /// mostly-untouched guests fit; an exhausted pool fails the install (the pager
    /// then ends that VM with an error).
    Hugetlb,
}

/// The host mapping behind guest RAM; unmapped when the last owner (the [`GuestRam`],
/// a pager's lease) drops it.
#[derive(Debug)]
pub(crate) struct Mapping {
    pub(crate) base: *mut u8,
    pub(crate) len: usize,
    /// The raw reservation (base may sit above it for alignment).
    raw: (*mut u8, usize),
}

// SAFETY: a Mapping is only addresses plus the duty to unmap them; it is never
// dereferenced itself (GuestRam does that, under the rules in the module doc), and
// munmap may run on any thread.
unsafe impl Send for Mapping {}
// SAFETY: see Send: shared access to a Mapping reads two addresses.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the reservation this value created; every user of the range
        // (GuestRam, a pager's lease, KVM's memslot through the VM that owns the
        // GuestRam) holds this Mapping alive while it uses the range.
        unsafe { libc::munmap(self.raw.0 as *mut libc::c_void, self.raw.1) };
    }
}

/// How the mapping was made, so a pager can be checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Anonymous,
    /// A private mapping of the file with this (device, inode).
    FilePrivate(u64, u64),
    FileShared,
    Hugetlb,
}

/// Guest RAM mapped into this process.
#[derive(Debug)]
pub struct GuestRam {
    /// A userfaultfd registration made ahead of time (a pool shell), not serving yet.
    /// Declared first: the uffd closes before the mapping may be unmapped.
    pub(crate) pending: Option<thaw_pager::Registered>,
    pub(crate) map: Arc<Mapping>,
    pub(crate) kind: Kind,
    /// A pager serves this RAM (see the module doc): no more references into it.
    pub(crate) paged: bool,
}

// SAFETY: GuestRam owns (a share of) its mapping and the optional registration; the raw
// pointers are dereferenced only through its bounds-checked methods.
unsafe impl Send for GuestRam {}
// SAFETY: `&GuestRam` methods only copy bytes through raw pointers (never a reference
// into guest memory). No guest runs while one exists (a guest runs only under
// `&mut Vm`, which owns the GuestRam), and a pager's concurrent installs (by the kernel)
// only make absent pages present: a copy that reaches an absent page waits in the
// fault until its bytes are there.
unsafe impl Sync for GuestRam {}

const ALIGN: usize = 2 << 20;

impl GuestRam {
    /// Maps `len` bytes (a multiple of 2 MiB) of guest RAM.
    pub fn new(len: u64, backing: Backing<'_>) -> Result<Self, VmError> {
        let len = usize::try_from(len).map_err(|_| VmError::MemorySize(len))?;
        if len == 0 || len % ALIGN != 0 || len as u64 > thaw_abi::layout::MAX_RAM {
            return Err(VmError::MemorySize(len as u64));
        }
        let kind = match &backing {
            Backing::Anonymous => Kind::Anonymous,
            Backing::FilePrivate(fd) => {
                let (dev, ino) = file_identity(*fd)?;
                Kind::FilePrivate(dev, ino)
            }
            Backing::FileShared(_) => Kind::FileShared,
            Backing::Hugetlb => Kind::Hugetlb,
        };
        let reserve = len + ALIGN;
        // SAFETY: an anonymous PROT_NONE reservation has no preconditions; the result
        // is checked against MAP_FAILED.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(VmError::MapMemory(std::io::Error::last_os_error()));
        }
        let aligned = (raw as usize + ALIGN - 1) & !(ALIGN - 1);
        // Owned from here: an early return unmaps the reservation.
        let map = Arc::new(Mapping {
            base: aligned as *mut u8,
            len,
            raw: (raw as *mut u8, reserve),
        });
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let huge_fd = match &backing {
            Backing::Hugetlb => Some(hugetlb_memfd(len)?),
            _ => None,
        };
        let (flags, fd) = match &backing {
            Backing::Hugetlb => (
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                huge_fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
            ),
            Backing::Anonymous => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
            ),
            Backing::FilePrivate(fd) => (libc::MAP_PRIVATE | libc::MAP_NORESERVE, fd.as_raw_fd()),
            Backing::FileShared(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
        };
        // SAFETY: MAP_FIXED over [aligned, aligned+len), which lies inside the
        // reservation we own; nothing else references that range yet.
        let base = unsafe {
            libc::mmap(
                aligned as *mut libc::c_void,
                len,
                prot,
                flags | libc::MAP_FIXED,
                fd,
                0,
            )
        };
        let ram = Self {
            pending: None,
            map,
            kind,
            paged: false,
        };
        if base == libc::MAP_FAILED {
            return Err(VmError::MapMemory(std::io::Error::last_os_error()));
        }
        if matches!(backing, Backing::Anonymous) {
            // SAFETY: advice on our own mapping; failure only loses the optimisation.
            unsafe { libc::madvise(base, len, libc::MADV_HUGEPAGE) };
        }
        Ok(ram)
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.map.len as u64
    }

    /// Never true (RAM has a non-zero size); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.map.len == 0
    }

    /// Host address of guest-physical 0.
    pub fn host_addr(&self) -> HostAddr {
        HostAddr(self.map.base as usize)
    }

    /// The host address of `addr` (checked to lie in guest RAM).
    pub fn host_addr_of(&self, addr: GuestAddress) -> Result<HostAddr, VmError> {
        self.check(addr, 0).map(|at| self.host_addr().offset(at))
    }

    /// True once a pager serves this RAM ([`GuestRam::start_pager`]).
    pub fn is_paged(&self) -> bool {
        self.paged
    }

    /// Checks that `[addr, addr+len)` lies inside guest RAM; returns its offset.
    pub fn check(&self, addr: GuestAddress, len: u64) -> Result<usize, VmError> {
        match addr.raw().checked_add(len) {
            Some(end) if end <= self.len() => Ok(addr.raw() as usize),
            _ => Err(VmError::OutOfRange {
                addr: addr.raw(),
                len,
            }),
        }
    }

    /// A raw pointer to `at` bytes into the mapping (`at` checked by the caller).
    fn ptr(&self, at: usize) -> *mut u8 {
        // SAFETY: callers pass an offset `check` accepted, so the result stays inside
        // the mapping (one past its end at most, for empty ranges).
        unsafe { self.map.base.add(at) }
    }

    /// Copies guest bytes out.
    pub fn read(&self, addr: GuestAddress, out: &mut [u8]) -> Result<(), VmError> {
        let at = self.check(addr, out.len() as u64)?;
        // SAFETY: [at, at+len) is inside the mapping (checked); the destination is a
        // distinct host buffer; no reference into guest memory exists (module doc).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr(at), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Copies `len` guest bytes into a new vector.
    pub fn read_vec(&self, addr: GuestAddress, len: u64) -> Result<Vec<u8>, VmError> {
        self.check(addr, len)?;
        let mut v = vec![0u8; len as usize];
        self.read(addr, &mut v)?;
        Ok(v)
    }

    /// Copies bytes into guest RAM.
    pub fn write(&self, addr: GuestAddress, data: &[u8]) -> Result<(), VmError> {
        let at = self.check(addr, data.len() as u64)?;
        // SAFETY: [at, at+len) is inside the mapping (checked); the source is a
        // distinct host buffer; no reference into guest memory exists (module doc).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr(at), data.len()) };
        Ok(())
    }

    /// Reads a plain-old-data value (any bit pattern valid).
    pub fn read_obj<T: Pod>(&self, addr: GuestAddress) -> Result<T, VmError> {
        let at = self.check(addr, std::mem::size_of::<T>() as u64)?;
        // SAFETY: in bounds (checked); T is Pod, so any bytes are a valid T; the read
        // is unaligned-safe.
        Ok(unsafe { std::ptr::read_unaligned(self.ptr(at) as *const T) })
    }

    /// Writes a plain-old-data value.
    pub fn write_obj<T: Pod>(&self, addr: GuestAddress, value: &T) -> Result<(), VmError> {
        let at = self.check(addr, std::mem::size_of::<T>() as u64)?;
        // SAFETY: in bounds (checked); unaligned write of a Copy value.
        unsafe { std::ptr::write_unaligned(self.ptr(at) as *mut T, *value) };
        Ok(())
    }

    /// Fills a guest range with zero bytes.
    pub fn zero(&self, addr: GuestAddress, len: u64) -> Result<(), VmError> {
        let at = self.check(addr, len)?;
        // SAFETY: in bounds (checked).
        unsafe { std::ptr::write_bytes(self.ptr(at), 0, len as usize) };
        Ok(())
    }

    /// Lends `[addr, addr+len)` mutably to `f` (restores fill RAM in place). Taking
    /// `&mut self` guarantees no VM or other borrower uses the RAM meanwhile; refused
    /// once a pager serves the RAM (the kernel may fill pages under the reference).
    ///
    /// With a pager registered ahead of time but not started, the range must be backed
    /// already (a fault there would wait for the pager): the VMM's own areas are.
    pub fn fill_with<R>(
        &mut self,
        addr: GuestAddress,
        len: u64,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, VmError> {
        let at = self.check(addr, len)?;
        if self.paged {
            return Err(VmError::RamPaged);
        }
        // SAFETY: in bounds (checked); `&mut self` makes this the only access to the
        // mapping for the closure's duration, and no pager fills it (not paged).
        let slice = unsafe { std::slice::from_raw_parts_mut(self.ptr(at), len as usize) };
        Ok(f(slice))
    }

    /// All of guest RAM as bytes (for snapshots). `&mut self`: no copy into the RAM and no
    /// running guest can overlap the borrow; refused once a pager serves the RAM.
    pub fn bytes(&mut self) -> Result<&[u8], VmError> {
        if self.paged {
            return Err(VmError::RamPaged);
        }
        // SAFETY: the mapping is live while `self` is; `&mut self` excludes every other
        // access for the borrow's lifetime, and no pager fills it (not paged).
        Ok(unsafe { std::slice::from_raw_parts(self.map.base, self.map.len) })
    }

    /// Replaces `range` of guest RAM with a private (copy-on-write) mapping of `fd`
    /// from offset 0: clones that map one image this way share its clean pages.
    /// `&mut self`: no VM uses the RAM yet; refused once a pager serves it (the range
    /// would silently leave the pager's registration).
    ///
    /// `MAP_NORESERVE`: on hugetlbfs a private mapping would otherwise reserve huge
    /// pages for every page the guest might write (the whole range, per clone), and
    /// the pool runs out after a few clones although they never write there. Without
    /// the reservation a copy-on-write that finds the pool empty fails the access:
    /// for the guest's accesses (through KVM) that is an EFAULT from KVM_RUN that ends
    /// this VM; the VMM itself must not touch the range (it touches only its own
    /// areas, which are backed up front).
    pub fn map_image_private(
        &mut self,
        range: GuestRange,
        fd: BorrowedFd<'_>,
    ) -> Result<(), VmError> {
        let len = range.len();
        let at = self.check(range.start, len)?;
        if !range.is_aligned(ALIGN as u64) {
            return Err(VmError::OutOfRange {
                addr: range.start.raw(),
                len,
            });
        }
        if self.paged {
            return Err(VmError::RamPaged);
        }
        // SAFETY: MAP_FIXED over a 2 MiB-aligned sub-range of the mapping this value
        // owns (checked); nothing references that range (`&mut self`, not paged).
        let p = unsafe {
            libc::mmap(
                self.ptr(at) as *mut libc::c_void,
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(VmError::MapMemory(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Backs `[addr, addr+len)` with (zero-filled) host memory now
    /// (MADV_POPULATE_WRITE), so later accesses never fault; running out of memory
    /// (e.g. huge pages) is an error here rather than a SIGBUS later.
    pub fn populate(&self, addr: GuestAddress, len: u64) -> Result<(), VmError> {
        let at = self.check(addr, len)?;
        // SAFETY: advice on a sub-range of our own mapping (checked); populating
        // does not change its contents.
        let rc = unsafe {
            libc::madvise(
                self.ptr(at) as *mut libc::c_void,
                len as usize,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if rc != 0 {
            return Err(VmError::MapMemory(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// The (device, inode) of an open file, to tell later which file a mapping shows.
pub(crate) fn file_identity(fd: BorrowedFd<'_>) -> Result<(u64, u64), VmError> {
    let meta = std::fs::File::from(fd.try_clone_to_owned().map_err(VmError::MapMemory)?)
        .metadata()
        .map_err(VmError::MapMemory)?;
    use std::os::unix::fs::MetadataExt;
    Ok((meta.dev(), meta.ino()))
}

/// Creates a hugetlbfs memfd of `len` bytes (closed when the returned fd drops;
/// the mapping keeps the memory alive).
fn hugetlb_memfd(len: usize) -> Result<std::os::fd::OwnedFd, VmError> {
    use std::os::fd::FromRawFd;
    // SAFETY: the name is a NUL-terminated literal; the result is checked.
    let fd = unsafe {
        libc::memfd_create(
            c"thaw-guest-ram".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_HUGETLB | libc::MFD_HUGE_2MB,
        )
    };
    if fd < 0 {
        return Err(VmError::MapMemory(std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate on our own descriptor.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
        return Err(VmError::MapMemory(std::io::Error::last_os_error()));
    }
    Ok(fd)
}

/// Types that may be copied to and from guest RAM byte-for-byte: `#[repr(C)]`,
/// no padding-sensitive invariants, every bit pattern valid.
pub trait Pod: Copy {}
impl Pod for u64 {}
impl Pod for u32 {}
impl Pod for thaw_abi::BootInfo {}
impl Pod for thaw_abi::LogMailbox {}
impl Pod for thaw_abi::NextMailbox {}
impl Pod for thaw_abi::ResponseMailbox {}
impl Pod for thaw_abi::net::NetMailbox {}
impl Pod for thaw_abi::AbortMailbox {}
impl Pod for thaw_abi::PhaseMailbox {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_bounds_are_checked() {
        let ram = GuestRam::new(4 << 20, Backing::Anonymous).unwrap();
        assert!(ram.write(GuestAddress(0), b"abc").is_ok());
        assert!(matches!(
            ram.write(GuestAddress((4 << 20) - 2), b"abc"),
            Err(VmError::OutOfRange { .. })
        ));
        assert!(matches!(
            ram.read_vec(GuestAddress(u64::MAX - 1), 4),
            Err(VmError::OutOfRange { .. })
        ));
        assert!(matches!(
            ram.read_obj::<u64>(GuestAddress(4 << 20)),
            Err(VmError::OutOfRange { .. })
        ));
        let mut b = [0u8; 3];
        ram.read(GuestAddress(0), &mut b).unwrap();
        assert_eq!(&b, b"abc");
        assert_eq!(ram.host_addr().0 % (2 << 20), 0);
    }

    #[test]
    fn test_size_must_be_2m_multiple() {
        assert!(matches!(
            GuestRam::new(3 << 20, Backing::Anonymous),
            Err(VmError::MemorySize(_))
        ));
        assert!(matches!(
            GuestRam::new(0, Backing::Anonymous),
            Err(VmError::MemorySize(_))
        ));
    }
}
