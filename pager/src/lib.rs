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
mod options;
mod pager;
mod prefetch;
mod shared;
mod smaps;
mod source;
mod stats;
#[cfg(test)]
mod testutil;

pub use error::PagerError;
pub use huge::{
    free_huge_pages, hugetlbfs_dir, HugeError, HugeMemfd, Mapping, ThpRegion, HUGE_PAGE_SIZE,
};
pub use install::InstallError;
pub use options::{FatalCallback, PagerOptions};
pub use pager::{Pager, PagerHandle, Registered};
pub use shared::{PrivateMapping, SharedError, SharedImage};
pub use smaps::{mapping_memory, present_blocks, private_anon_bytes, MappingMemory, SmapsError};
pub use source::{ChunkKind, PageSource, SharedChunk, SourceError, VecSource};
pub use stats::{PagerStats, StatsSnapshot, LATENCY_BUCKETS};

use std::sync::Arc;

/// Size of a base (small) host page.
pub const SMALL_PAGE_SIZE: usize = 4096;

/// A host virtual address (an address in the VMM process, not a guest-physical address):
/// the one type the VMM, the pager and the worker share.
pub use thaw_abi::addr::HostAddr;

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
#[derive(Clone)]
pub struct GuestRegion {
    /// Start of the mapping (aligned to the backing's page size).
    pub host_addr: HostAddr,
    /// Length in bytes (a multiple of the install block, see [`PagerHandle::block_size`]).
    pub len: usize,
    /// The kind of memory mapped there.
    pub backing: Backing,
    /// What keeps the mapping alive (the owner's lease on it, e.g. the VMM's guest RAM
    /// mapping): held until the pager's last thread is done with the range, so the range
    /// stays mapped however the owner's other handles are dropped. `None` when the caller
    /// guarantees the lifetime itself.
    pub keep_alive: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for GuestRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestRegion")
            .field("host_addr", &self.host_addr)
            .field("len", &self.len)
            .field("backing", &self.backing)
            .field("keep_alive", &self.keep_alive.is_some())
            .finish()
    }
}
