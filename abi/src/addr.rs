//! The two address spaces host code deals in, as distinct types: a guest-physical address
//! ([`GuestAddress`], what the guest and the layout constants name) and a host virtual address
//! ([`HostAddr`], where this process mapped something). The VMM, the pager and the worker
//! all use these two types, so an address cannot be passed where the other kind belongs.
//! (Guest virtual addresses equal guest-physical ones: the guest is identity mapped.)

/// A guest-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GuestAddress(pub u64);

impl GuestAddress {
    /// The raw address.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The address `by` bytes above this one, or `None` past the end of the address space.
    pub const fn checked_add(self, by: u64) -> Option<GuestAddress> {
        match self.0.checked_add(by) {
            Some(a) => Some(GuestAddress(a)),
            None => None,
        }
    }

    /// The address `by` bytes above this one (for offsets the caller knows are in range,
    /// such as the layout's own areas; a hostile value goes through [`checked_add`]).
    ///
    /// [`checked_add`]: GuestAddress::checked_add
    pub const fn add(self, by: u64) -> GuestAddress {
        GuestAddress(self.0 + by)
    }
}

impl core::fmt::Display for GuestAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A range of guest-physical memory, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestRange {
    pub start: GuestAddress,
    pub end: GuestAddress,
}

impl GuestRange {
    /// `[start, end)`.
    pub const fn new(start: u64, end: u64) -> GuestRange {
        GuestRange {
            start: GuestAddress(start),
            end: GuestAddress(end),
        }
    }

    /// Bytes in the range (0 when `end <= start`).
    pub const fn len(&self) -> u64 {
        self.end.0.saturating_sub(self.start.0)
    }

    /// True when the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when both ends are multiples of `align`.
    pub const fn is_aligned(&self, align: u64) -> bool {
        self.start.0.is_multiple_of(align) && self.end.0.is_multiple_of(align)
    }
}

/// A host virtual address: an address in this process (the VMM), not in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostAddr(pub usize);

impl HostAddr {
    /// The address `off` bytes above this one.
    pub const fn offset(self, off: usize) -> HostAddr {
        HostAddr(self.0 + off)
    }

    /// The address as a raw pointer, for system calls.
    pub const fn as_ptr(self) -> *mut core::ffi::c_void {
        self.0 as *mut core::ffi::c_void
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_guest_address_arithmetic_is_checked_where_asked() {
        assert_eq!(
            GuestAddress(0x1000).checked_add(0x10),
            Some(GuestAddress(0x1010))
        );
        assert_eq!(GuestAddress(u64::MAX).checked_add(1), None);
        assert_eq!(GuestAddress(0x2000).add(0x1000).raw(), 0x3000);
    }

    #[test]
    fn test_ranges_measure_and_check_alignment() {
        let r = GuestRange::new(2 << 20, 6 << 20);
        assert_eq!(r.len(), 4 << 20);
        assert!(r.is_aligned(2 << 20));
        assert!(!GuestRange::new(4096, 2 << 20).is_aligned(2 << 20));
        assert!(GuestRange::new(8, 4).is_empty());
    }

    #[test]
    fn test_host_addresses_offset() {
        assert_eq!(HostAddr(0x1000).offset(0x234), HostAddr(0x1234));
        assert_eq!(HostAddr(0x1000).as_ptr() as usize, 0x1000);
    }
}
