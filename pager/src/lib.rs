//! thaw-pager: the userfaultfd lazy pager that fills a restored microVM's guest RAM on demand.
//!
//! The crate owns everything between "here is the host address range of guest RAM and a source
//! of snapshot chunks" and "every page the guest (or KVM on its behalf) touches holds the
//! snapshot's bytes":
//! - [`PageSource`]: the trait the worker implements over the snapshot store;
//! - [`Pager::start`] / [`PagerHandle`]: one userfaultfd and one handler thread per VM, zero-page
//!   installs, EEXIST/EAGAIN races, statistics, working-set recording and bulk prefetch;
//! - [`HugeMemfd`] / [`ThpRegion`]: 2 MiB backing memory (hugetlbfs memfd, or THP as a fallback);
//! - [`SharedImage`]: the shared-clone mode, where clones map one lazily filled memfd privately.
//!
//! It depends on no other thaw crate. See README.md for the design and measured numbers.

mod error;
mod handler;
mod huge;
mod install;
mod pager;
mod prefetch;
mod shared;
mod smaps;
mod source;
mod stats;
#[cfg(test)]
mod testutil;

pub use huge::{
    free_huge_pages, hugetlbfs_dir, HugeError, HugeMemfd, Mapping, ThpRegion, HUGE_PAGE_SIZE,
};
pub use install::InstallError;
pub use pager::{FatalCallback, Pager, PagerError, PagerHandle, PagerOptions, Registered};
pub use shared::{PrivateMapping, SharedError, SharedImage};
pub use smaps::{mapping_memory, present_blocks, private_anon_bytes, MappingMemory, SmapsError};
pub use source::{ChunkKind, PageSource, SharedChunk, SourceError, VecSource};
pub use stats::{PagerStats, StatsSnapshot, LATENCY_BUCKETS};

use std::sync::Arc;

/// Size of a base (small) host page.
pub const SMALL_PAGE_SIZE: usize = 4096;

/// A host virtual address (an address in the VMM process, not a guest-physical address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostAddr(pub usize);

impl HostAddr {
    /// The address `off` bytes above this one.
    pub fn offset(self, off: usize) -> HostAddr {
        HostAddr(self.0 + off)
    }

    /// The address as a raw pointer, for syscalls.
    pub fn as_ptr(self) -> *mut libc::c_void {
        self.0 as *mut libc::c_void
    }
}

/// What memory backs the guest RAM range, which decides the install ioctls and the page size.
#[derive(Debug, Clone)]
pub enum Backing {
    /// Private anonymous memory (4 KiB pages): MISSING faults, UFFDIO_COPY / UFFDIO_ZEROPAGE.
    Anonymous,
    /// A hugetlbfs mapping with 2 MiB pages (see [`HugeMemfd`]): MISSING faults, 2 MiB
    /// UFFDIO_COPY; zero chunks are copied from a zero buffer (hugetlb has no ZEROPAGE).
    Hugetlb,
    /// A `MAP_PRIVATE` mapping of a [`SharedImage`] (see [`SharedImage::map_private`]):
    /// MISSING + MINOR faults, the image's page cache is filled once for all clones and mapped
    /// with UFFDIO_CONTINUE; clones' writes are private copy-on-write copies.
    SharedMemfd(Arc<SharedImage>),
}

impl Backing {
    /// The host page size of this backing: the smallest unit an install ioctl accepts.
    pub fn page_size(&self) -> usize {
        match self {
            Backing::Anonymous => SMALL_PAGE_SIZE,
            Backing::Hugetlb => HUGE_PAGE_SIZE,
            Backing::SharedMemfd(image) => image.page_size(),
        }
    }
}

/// The host range of guest RAM the pager serves.
#[derive(Debug, Clone)]
pub struct GuestRegion {
    /// Start of the mapping (aligned to the backing's page size).
    pub host_addr: HostAddr,
    /// Length in bytes (a multiple of the install block, see [`PagerHandle::block_size`]).
    pub len: usize,
    /// The kind of memory mapped there.
    pub backing: Backing,
}
