//! What a lazily restored instance keeps beside its VM ([`LazyMemory`]): the pager
//! serving its RAM, the working set it records after its first response, and what a
//! reset for reuse needs ([`RecycleInfo`]). Shared by the restore ([`super::lazy`]) and
//! the reuse pool ([`super::recycle`]), so neither imports the other's internals.
use super::MemoryMode;
use std::ops::Range;
use thaw_pager::PagerHandle;
use thaw_snapshotter::{SnapshotId, Store};
use thaw_vmm::HostAddr;

/// The pager side of a lazily restored instance. Declared before the VM in
/// `Instance`, so it stops before guest RAM is unmapped.
#[derive(Debug)]
pub struct LazyMemory {
    pub handle: PagerHandle,
    /// The snapshot the pager serves (marked bad when a fault finds a corrupt chunk).
    pub snapshot: (Store, SnapshotId),
    /// Where to store the working set after the first response, when recording.
    pub record_to: Option<(Store, SnapshotId)>,
    /// The provisional working set this restore prefetched and records on top of
    /// (empty without one): the stored set is it plus what faulted.
    pub base: Vec<u32>,
    /// Store what is recorded as the snapshot's provisional working set (a build-time
    /// probe, [`crate::Instance::probe_runtime`]) rather than its final one.
    pub provisional: bool,
    pub mode: MemoryMode,
    /// When recording with the module image mapped: where the module region is in
    /// host memory and its first chunk index. Its pages never fault into the pager,
    /// so the chunks the guest used there are read off the page tables instead.
    pub module_probe: Option<ModuleProbe>,
    /// What a reset for reuse needs (`None`: this VM is never reused: a recording
    /// restore, 4 KiB backing, `shared` mode).
    pub recycle: Option<RecycleInfo>,
    /// Builds the snapshot's working-set image once the final working set is stored.
    pub build_image: Option<super::wsimage::BuildOnRecord>,
}

/// The module region of a recording restore (see [`LazyMemory::module_probe`]).
#[derive(Debug, Clone, Copy)]
pub struct ModuleProbe {
    pub addr: HostAddr,
    pub len: usize,
    pub first_chunk: u32,
    pub chunk_size: usize,
}

impl LazyMemory {
    /// After the first response: store the recorded working set (first restore
    /// only): the chunks faults touched, then the module chunks the guest used. A
    /// restore in a process without the module image yet prefetches all of them.
    pub fn first_response_done(&mut self) {
        if let Some((store, id)) = self.record_to.take() {
            let mut ws = std::mem::take(&mut self.base);
            let faulted = self.handle.take_working_set();
            ws.extend(
                faulted
                    .into_iter()
                    .filter(|c| !ws.contains(c))
                    .collect::<Vec<_>>(),
            );
            if let Some(p) = self.module_probe {
                match thaw_pager::present_blocks(p.addr, p.len, p.chunk_size) {
                    Ok(present) => {
                        let used = present.iter().enumerate().filter(|(_, &t)| t);
                        let module: Vec<u32> =
                            used.map(|(i, _)| p.first_chunk + i as u32).collect();
                        ws.extend(
                            module
                                .into_iter()
                                .filter(|c| !ws.contains(c))
                                .collect::<Vec<_>>(),
                        );
                    }
                    Err(e) => eprintln!("thaw: reading which module pages {id} used: {e}"),
                }
            }
            if let Some(r) = &mut self.recycle {
                // A reset keeps (rewrites) what the next restore would prefetch.
                r.keep(ws.iter().copied());
            }
            let stored = if self.provisional {
                store.set_provisional_working_set(&id, &ws)
            } else {
                store.set_working_set(&id, &ws)
            };
            match stored {
                Err(e) => eprintln!("thaw: storing the working set of {id}: {e}"),
                Ok(()) if !self.provisional => {
                    if let Some(b) = self.build_image.take() {
                        b.recorded(&ws);
                    }
                }
                Ok(()) => {}
            }
        }
    }
}

/// What a lazily restored VM records for its reuse: the blocks its restore installed
/// up front (overwritten on reset) and the module region mapped from the shared image.
#[derive(Debug, Clone)]
pub struct RecycleInfo {
    pub kept: Vec<u32>,
    pub module_chunks: Range<u32>,
    /// The working-set image the restore copied from: a reset rewrites the blocks it
    /// holds from it (the store's chunk cache may never have seen them).
    pub image: Option<std::sync::Arc<super::wsimage::WorkingSetImage>>,
}

impl RecycleInfo {
    /// Adds `chunks` to the blocks a reset keeps (rewrites), except those the shared
    /// module image maps.
    pub fn keep(&mut self, chunks: impl IntoIterator<Item = u32>) {
        for c in chunks {
            if !self.module_chunks.contains(&c) && !self.kept.contains(&c) {
                self.kept.push(c);
            }
        }
    }
}
