//! Guest RAM served by a userfaultfd pager (`thaw_pager`): the one place that starts a pager
//! over guest RAM, so the pager's safety contract is met here, by the owner of the mapping,
//! and callers (the worker) need no `unsafe`.
//!
//! What the pager asks of its caller (`thaw_pager::Pager::register`), and why it holds:
//! - *a live mapping of the kind the backing names, aligned to its page size, mapped until
//!   the pager is done*: the range is all of this [`GuestRam`]'s mapping (2 MiB aligned);
//!   the backing is checked against how the mapping was made ([`Kind`]); the pager holds a
//!   lease on the mapping (`GuestRegion::keep_alive`), so it is unmapped only after the
//!   pager's last thread let go, whichever of the VM, the RAM and the pager drops first;
//! - *no Rust reference into the range while the pager fills it*: once started, the RAM is
//!   marked paged and the methods that hand out references or remap ranges
//!   ([`GuestRam::fill_with`], [`GuestRam::bytes`], [`GuestRam::map_image_private`]) refuse;
//!   the rest only copies through raw pointers;
//! - *present pages are never overwritten; a block that cannot be served may become
//!   `PROT_NONE` or, on hugetlbfs, anonymous memory with the same contents*: the VMM never
//!   relies on a page's backing, only on its contents. A host copy that reaches a block the
//!   pager failed to serve faults (SIGSEGV), so the worker installs every block the VMM
//!   touches before the vCPU runs (a restore with a bad chunk there fails cleanly).
//!
//! [`Kind`]: crate::memory::Kind
use crate::error::VmError;
use crate::memory::{GuestRam, Kind};
use std::os::fd::AsFd;
use std::sync::Arc;
use thaw_pager::{Backing, GuestRegion, PageSource, Pager, PagerHandle, PagerOptions};

impl GuestRam {
    /// Registers all of guest RAM with a new userfaultfd now, so a later
    /// [`GuestRam::start_pager`] with the same backing skips the registration (~0.5 ms
    /// for a large range). Faults wait until the pager starts: only the areas already
    /// backed (populated) may be touched meanwhile.
    pub fn register_pager(&mut self, backing: Backing) -> Result<(), VmError> {
        let region = self.region(backing)?;
        // SAFETY: `region` is this RAM's whole mapping, of the kind checked by `region`,
        // kept mapped by the lease it carries; the rest of the contract holds as the
        // module doc explains (references are refused from `start_pager` on; before it
        // no pager thread runs).
        let registered = unsafe { Pager::register(region) }.map_err(VmError::Pager)?;
        self.pending = Some(registered);
        Ok(())
    }

    /// Starts a pager that fills this RAM from `source`, taking the registration
    /// [`GuestRam::register_pager`] made ahead of time if its backing is the same. From
    /// here on the RAM is paged: see the module doc.
    pub fn start_pager(
        &mut self,
        backing: Backing,
        source: Arc<dyn PageSource>,
        opts: PagerOptions,
    ) -> Result<PagerHandle, VmError> {
        if self.paged {
            return Err(VmError::RamPaged);
        }
        let registered = match self.pending.take() {
            Some(r) if same_backing(r.backing(), &backing) => r,
            _ => {
                let region = self.region(backing)?;
                // SAFETY: as in `register_pager`.
                unsafe { Pager::register(region) }.map_err(VmError::Pager)?
            }
        };
        // Paged before the handler thread exists: no reference can be handed out after.
        self.paged = true;
        Pager::start_registered(registered, source, opts).map_err(VmError::Pager)
    }

    /// The pager's view of this RAM, after checking `backing` describes the mapping.
    fn region(&self, backing: Backing) -> Result<GuestRegion, VmError> {
        let fits = match (&backing, self.kind) {
            (Backing::Anonymous, Kind::Anonymous) | (Backing::Hugetlb, Kind::Hugetlb) => true,
            (Backing::SharedMemfd(image), Kind::FilePrivate(dev, ino)) => {
                crate::memory::file_identity(image.fd().as_fd())? == (dev, ino)
                    && image.len() == self.len() as usize
            }
            _ => false,
        };
        if !fits {
            return Err(VmError::PagerBacking(format!(
                "{backing:?} does not describe guest RAM mapped as {:?}",
                self.kind
            )));
        }
        Ok(GuestRegion {
            host_addr: self.host_addr(),
            len: self.len() as usize,
            backing,
            keep_alive: Some(self.map.clone()),
        })
    }
}

/// True when a registration made for `a` serves `b`.
fn same_backing(a: &Backing, b: &Backing) -> bool {
    match (a, b) {
        (Backing::Anonymous, Backing::Anonymous) | (Backing::Hugetlb, Backing::Hugetlb) => true,
        (Backing::SharedMemfd(x), Backing::SharedMemfd(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestAddress;
    use thaw_pager::VecSource;

    const LEN: usize = 4 << 20;

    fn image() -> Vec<u8> {
        (0..LEN).map(|i| (i / 4096) as u8 ^ 0x5a).collect()
    }

    fn mapped(addr: usize) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().any(|l| {
            let (lo, hi) = l.split_once(' ').unwrap().0.split_once('-').unwrap();
            let (lo, hi) = (
                usize::from_str_radix(lo, 16).unwrap(),
                usize::from_str_radix(hi, 16).unwrap(),
            );
            (lo..hi).contains(&addr)
        })
    }

    #[test]
    fn test_a_pager_backing_must_describe_the_mapping() {
        let mut ram = GuestRam::new(LEN as u64, crate::Backing::Anonymous).unwrap();
        let src = Arc::new(VecSource::new(image(), 1 << 16));
        let err = ram
            .start_pager(Backing::Hugetlb, src, PagerOptions::default())
            .unwrap_err();
        assert!(matches!(err, VmError::PagerBacking(_)), "{err:?}");
        assert!(!ram.is_paged());
        assert!(
            ram.bytes().is_ok(),
            "a refused pager leaves the RAM as it was"
        );
    }

    #[test]
    fn test_paged_ram_is_filled_by_the_pager_and_lends_no_references() {
        let mut ram = GuestRam::new(LEN as u64, crate::Backing::Anonymous).unwrap();
        let src = Arc::new(VecSource::new(image(), 1 << 16));
        let handle = ram
            .start_pager(Backing::Anonymous, src.clone(), PagerOptions::default())
            .unwrap();
        assert!(ram.is_paged());
        let mut b = [0u8; 2];
        ram.read(GuestAddress(3 * 4096 + 7), &mut b).unwrap();
        assert_eq!(b, [3 ^ 0x5a, 3 ^ 0x5a], "a copy is served by the pager");
        assert!(matches!(ram.bytes(), Err(VmError::RamPaged)));
        assert!(matches!(
            ram.fill_with(GuestAddress(0), 4096, |_| ()),
            Err(VmError::RamPaged)
        ));
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        assert!(matches!(
            ram.map_image_private(
                crate::memory::GuestRange::new(0, 2 << 20),
                std::os::fd::AsFd::as_fd(&f)
            ),
            Err(VmError::RamPaged)
        ));
        assert!(matches!(
            ram.start_pager(Backing::Anonymous, src, PagerOptions::default()),
            Err(VmError::RamPaged)
        ));
        assert!(handle.error().is_none());
    }

    #[test]
    fn test_the_pager_keeps_guest_ram_mapped_until_it_stops() {
        let mut ram = GuestRam::new(LEN as u64, crate::Backing::Anonymous).unwrap();
        let base = ram.host_addr().0;
        let src = Arc::new(VecSource::new(image(), 1 << 16));
        let handle = ram
            .start_pager(Backing::Anonymous, src, PagerOptions::default())
            .unwrap();
        drop(ram);
        assert!(mapped(base), "the pager's lease keeps the range mapped");
        drop(handle);
        assert!(!mapped(base), "unmapped with the last lease");
    }

    #[test]
    fn test_a_registration_made_ahead_is_used_when_the_backing_matches() {
        let mut ram = GuestRam::new(LEN as u64, crate::Backing::Anonymous).unwrap();
        ram.register_pager(Backing::Anonymous).unwrap();
        assert!(!ram.is_paged(), "registered, not serving yet");
        let src = Arc::new(VecSource::new(image(), 1 << 16));
        let _handle = ram
            .start_pager(Backing::Anonymous, src, PagerOptions::default())
            .unwrap();
        assert!(ram.pending.is_none(), "the pending registration was taken");
        let mut last = [0u8];
        ram.read(GuestAddress(LEN as u64 - 1), &mut last).unwrap();
        assert_eq!(last[0], (LEN / 4096 - 1) as u8 ^ 0x5a);
    }
}
