//! Guest RAM: one host mapping that KVM sees as a single memslot at guest-physical 0.
//!
//! The mapping is 2 MiB aligned and advised for transparent huge pages: under the
//! 2 MiB guest pages the VMM builds, 2 MiB host pages make the first guest touch of
//! memory ~50x cheaper on this platform (DESIGN.md). All access from the host goes
//! through bounds-checked methods; guest addresses come from a hostile guest.
use crate::error::VmError;
use std::os::fd::{AsRawFd, BorrowedFd};

/// A host virtual address (inside this process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostAddr(pub usize);

/// A guest-physical address.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct GuestAddress(pub u64);

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

/// Guest RAM mapped into this process.
#[derive(Debug)]
pub struct GuestRam {
    base: *mut u8,
    len: usize,
    /// The raw mmap (base may sit above it for alignment).
    map: (*mut u8, usize),
}

// SAFETY: GuestRam owns its mapping; the raw pointers are only dereferenced through
// bounds-checked methods, and concurrent guest writes are plain memory races the host
// tolerates by copying bytes out before validating them.
unsafe impl Send for GuestRam {}
// SAFETY: see Send; shared access only reads/writes through copies.
unsafe impl Sync for GuestRam {}

const ALIGN: usize = 2 << 20;

impl GuestRam {
    /// Maps `len` bytes (a multiple of 2 MiB) of guest RAM.
    pub fn new(len: u64, backing: Backing<'_>) -> Result<Self, VmError> {
        let len = usize::try_from(len).map_err(|_| VmError::MemorySize(len))?;
        if len == 0 || len % ALIGN != 0 || len as u64 > thaw_abi::layout::MAX_RAM {
            return Err(VmError::MemorySize(len as u64));
        }
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
            base: aligned as *mut u8,
            len,
            map: (raw as *mut u8, reserve),
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
        self.len as u64
    }

    /// Never true (RAM has a non-zero size); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Host address of guest-physical 0.
    pub fn host_addr(&self) -> HostAddr {
        HostAddr(self.base as usize)
    }

    /// Checks that `[addr, addr+len)` lies inside guest RAM.
    pub fn check(&self, addr: u64, len: u64) -> Result<usize, VmError> {
        match addr.checked_add(len) {
            Some(end) if end <= self.len as u64 => Ok(addr as usize),
            _ => Err(VmError::OutOfRange { addr, len }),
        }
    }

    /// Copies guest bytes out.
    pub fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), VmError> {
        let at = self.check(addr, out.len() as u64)?;
        // SAFETY: [at, at+len) is inside the mapping (checked); the destination is a
        // distinct host buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(at), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Copies `len` guest bytes into a new vector.
    pub fn read_vec(&self, addr: u64, len: u64) -> Result<Vec<u8>, VmError> {
        self.check(addr, len)?;
        let mut v = vec![0u8; len as usize];
        self.read(addr, &mut v)?;
        Ok(v)
    }

    /// Copies bytes into guest RAM.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), VmError> {
        let at = self.check(addr, data.len() as u64)?;
        // SAFETY: [at, at+len) is inside the mapping (checked); the source is a
        // distinct host buffer.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(at), data.len()) };
        Ok(())
    }

    /// Reads a plain-old-data value (any bit pattern valid).
    pub fn read_obj<T: Pod>(&self, addr: u64) -> Result<T, VmError> {
        let at = self.check(addr, std::mem::size_of::<T>() as u64)?;
        // SAFETY: in bounds (checked); T is Pod, so any bytes are a valid T; the read
        // is unaligned-safe.
        Ok(unsafe { std::ptr::read_unaligned(self.base.add(at) as *const T) })
    }

    /// Writes a plain-old-data value.
    pub fn write_obj<T: Pod>(&self, addr: u64, value: &T) -> Result<(), VmError> {
        let at = self.check(addr, std::mem::size_of::<T>() as u64)?;
        // SAFETY: in bounds (checked); unaligned write of a Copy value.
        unsafe { std::ptr::write_unaligned(self.base.add(at) as *mut T, *value) };
        Ok(())
    }

    /// Fills a guest range with zero bytes.
    pub fn zero(&self, addr: u64, len: u64) -> Result<(), VmError> {
        let at = self.check(addr, len)?;
        // SAFETY: in bounds (checked).
        unsafe { std::ptr::write_bytes(self.base.add(at), 0, len as usize) };
        Ok(())
    }

    /// Lends `[addr, addr+len)` mutably to `f` (restores fill RAM in place). Taking
    /// `&mut self` guarantees no VM or other borrower uses the RAM meanwhile.
    pub fn fill_with<R>(
        &mut self,
        addr: u64,
        len: u64,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, VmError> {
        let at = self.check(addr, len)?;
        // SAFETY: in bounds (checked); `&mut self` makes this the only access to
        // the mapping for the closure's duration.
        let slice = unsafe { std::slice::from_raw_parts_mut(self.base.add(at), len as usize) };
        Ok(f(slice))
    }

    /// Replaces `[addr, addr+len)` of guest RAM with a private (copy-on-write)
    /// mapping of `fd` from offset 0: clones that map one image this way share its
    /// clean pages. `&mut self`: no VM uses the RAM yet.
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
        addr: u64,
        len: u64,
        fd: BorrowedFd<'_>,
    ) -> Result<(), VmError> {
        let at = self.check(addr, len)?;
        if !at.is_multiple_of(ALIGN) || !(len as usize).is_multiple_of(ALIGN) {
            return Err(VmError::OutOfRange { addr, len });
        }
        // SAFETY: MAP_FIXED over a 2 MiB-aligned sub-range of the mapping this value
        // owns (checked); nothing references that range (`&mut self`, no VM yet).
        let p = unsafe {
            libc::mmap(
                self.base.add(at) as *mut libc::c_void,
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
    pub fn populate(&self, addr: u64, len: u64) -> Result<(), VmError> {
        let at = self.check(addr, len)?;
        // SAFETY: advice on a sub-range of our own mapping (checked); populating
        // does not change its contents.
        let rc = unsafe {
            libc::madvise(
                self.base.add(at) as *mut libc::c_void,
                len as usize,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if rc != 0 {
            return Err(VmError::MapMemory(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Borrows all of guest RAM (for snapshots). The guest must be stopped.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is live for &self's lifetime; callers only use this
        // while the vCPU is not running, so no concurrent writes occur.
        unsafe { std::slice::from_raw_parts(self.base, self.len) }
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: unmapping the reservation we created; no references outlive self.
        unsafe { libc::munmap(self.map.0 as *mut libc::c_void, self.map.1) };
    }
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
        assert!(ram.write(0, b"abc").is_ok());
        assert!(matches!(
            ram.write((4 << 20) - 2, b"abc"),
            Err(VmError::OutOfRange { .. })
        ));
        assert!(matches!(
            ram.read_vec(u64::MAX - 1, 4),
            Err(VmError::OutOfRange { .. })
        ));
        assert!(matches!(
            ram.read_obj::<u64>(4 << 20),
            Err(VmError::OutOfRange { .. })
        ));
        let mut b = [0u8; 3];
        ram.read(0, &mut b).unwrap();
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
