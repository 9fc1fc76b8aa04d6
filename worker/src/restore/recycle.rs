//! Reusing a retired instance's VM for the next restore of the same snapshot
//! ([`RecyclePool`]): the VM is reset to the snapshot instead of torn down, so the next
//! cold start skips building a VM, installing its working set and, above all, the
//! guest's first touch of every page it uses (on this hypervisor each 2 MiB page the
//! guest touches first costs a shadow-paging exit; a reset VM keeps them mapped).
//! tinykvm and Hyperlight reset VMs for reuse the same way.
//!
//! Reset steps ([`reset`], on the pool's own thread, never on a restore's path):
//! 1. Wait for the pager's last install to be marked (a copy wakes the guest before its
//!    block's installed bit is set, so a parked guest can be ahead of the bitmap), then
//!    refuse what cannot be reset exactly: a dead VM, an instance that was not parked
//!    in `Next`, a pager that failed or fell back to small pages, a module region the
//!    guest wrote to (copy-on-write copies of the shared image: read off the page
//!    tables).
//! 2. Every block the pager installed beyond the ones the restore installs up front
//!    (the VMM's areas and the working set) is given back (MADV_REMOVE): its next
//!    touch faults in the snapshot's bytes, as on a fresh restore.
//! 3. The blocks installed up front are overwritten with the snapshot's bytes (zero
//!    chunks zeroed), in place, so the guest's mappings of them stay valid.
//! 4. The vCPU gets the snapshot's state and the VM drops the last instance's host
//!    state ([`thaw_vmm::Vm::reset_to`]).
//!
//! Whatever the last instance wrote is gone: guest RAM equals the snapshot's memory
//! (every block either overwritten, given back, or never touched; the module region
//! unmodified) and a CPL3 guest can change no other state of its VM. A VM is reused
//! only for the same snapshot of the same function version. The first invocation of a
//! reused VM is a fresh restore's: new entropy, the `restored` flag, new sockets.
//!
//! Bounds: [`PER_SNAPSHOT`] ready VMs per snapshot, [`MAX_READY`] in all, each given
//! up after [`IDLE`] unused or at once when the huge-page pool runs low
//! ([`RecyclePool::release_all`], called by restores that find the pool short).
use super::memory::LazyMemory;
use super::shells::vmm_chunks;
use super::{MemoryMode, OpenedSnapshot};
use crate::error::WorkerError;
use crate::spec::FunctionSpec;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};
use thaw_snapshotter::{ChunkId, SnapshotId, Store};
use thaw_vmm::state::VmState;
use thaw_vmm::{GuestAddress, Vm};

/// Reset VMs kept per snapshot.
pub const PER_SNAPSHOT: usize = 2;
/// Reset VMs kept in all.
pub const MAX_READY: usize = 8;
/// A reset VM unused this long is torn down.
pub const IDLE: Duration = Duration::from_secs(10);
/// Snapshots whose reset data (vCPU state, chunk list: ~20 KiB each) is kept.
pub const MAX_SNAPSHOTS: usize = 256;
/// Below this many free huge pages no VM is kept for reuse.
pub const LOW_HUGE_PAGES: usize = 64;

/// Which instances may share a reset VM: the same snapshot of the same function version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecycleKey {
    pub snapshot: SnapshotId,
    pub function: String,
    pub version: String,
    pub mode: MemoryMode,
}

impl RecycleKey {
    /// The key of `snapshot` restored for `spec`'s function version in `mode`.
    pub fn new(snapshot: SnapshotId, spec: &FunctionSpec, mode: MemoryMode) -> Self {
        Self {
            snapshot,
            function: spec.name.clone(),
            version: spec.version.clone(),
            mode,
        }
    }
}

/// What a reset needs to know of a snapshot, kept once per snapshot.
#[derive(Debug)]
struct SnapInfo {
    store: Store,
    state: VmState,
    chunks: Vec<Option<ChunkId>>,
    chunk_size: u64,
}

/// A VM and its pager, as a lazy restore hands them out.
#[derive(Debug)]
pub struct ReadyVm {
    /// Declared before `vm`: the pager stops before guest RAM is unmapped.
    pub lazy: LazyMemory,
    pub vm: Vm,
}

#[derive(Debug)]
struct Parked {
    ready: ReadyVm,
    since: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Per snapshot restored lately: what its resets need, and when it was last restored
    /// (at most [`MAX_SNAPSHOTS`], the least recently restored forgotten first).
    snapshots: HashMap<SnapshotId, (Arc<SnapInfo>, Instant)>,
    ready: HashMap<RecycleKey, Vec<Parked>>,
    queue: VecDeque<(RecycleKey, ReadyVm)>,
    /// The pool's thread is resetting a VM.
    busy: bool,
    started: bool,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    wake: Condvar,
    enabled: AtomicBool,
    reused: AtomicU64,
    refused: AtomicU64,
    resets: AtomicU64,
    reset_ns: AtomicU64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            wake: Condvar::new(),
            enabled: AtomicBool::new(true),
            reused: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            reset_ns: AtomicU64::new(0),
        }
    }
}

/// Counters of a [`RecyclePool`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecycleStats {
    /// Restores served by a reset VM.
    pub reused: u64,
    /// Retired instances that could not be reset (torn down instead).
    pub refused: u64,
    /// Reset VMs ready now.
    pub ready: usize,
    /// VMs reset, and the time the pool's thread spent resetting them.
    pub resets: u64,
    pub reset_time: Duration,
}

/// Reset VMs ready for the next restore of their snapshot (see the module doc). One
/// per worker's caches, not cloned: dropping it closes the pool.
#[derive(Debug, Default)]
pub struct RecyclePool(Arc<Inner>);

impl Drop for RecyclePool {
    /// The worker's last handle is gone: its reset VMs (and their store handles) go now.
    fn drop(&mut self) {
        self.close();
    }
}

impl RecyclePool {
    /// Turns reuse on or off (off: retired instances are torn down, ready VMs go).
    pub fn set_enabled(&self, on: bool) {
        self.0.enabled.store(on, Ordering::SeqCst);
        if !on {
            self.release_all();
        }
    }

    pub fn enabled(&self) -> bool {
        self.0.enabled.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> RecycleStats {
        let st = self.lock();
        RecycleStats {
            reused: self.0.reused.load(Ordering::Relaxed),
            refused: self.0.refused.load(Ordering::Relaxed),
            ready: st.ready.values().map(Vec::len).sum(),
            resets: self.0.resets.load(Ordering::Relaxed),
            reset_time: Duration::from_nanos(self.0.reset_ns.load(Ordering::Relaxed)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes what resets of `snap` need (once per snapshot; a restore calls it).
    pub(super) fn remember(&self, store: &Store, snap: &OpenedSnapshot) {
        if !self.enabled() {
            return;
        }
        let mut st = self.lock();
        if let Some((_, seen)) = st.snapshots.get_mut(&snap.manifest.id) {
            *seen = Instant::now();
            return;
        }
        if st.snapshots.len() >= MAX_SNAPSHOTS {
            let oldest = st
                .snapshots
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                st.snapshots.remove(&id);
            }
        }
        let info = SnapInfo {
            store: store.clone(),
            state: snap.vm_state.clone(),
            chunks: snap.manifest.chunks().map(|c| c.id).collect(),
            chunk_size: snap.manifest.chunk_size,
        };
        st.snapshots
            .insert(snap.manifest.id, (Arc::new(info), Instant::now()));
    }

    /// A reset VM of `key`'s snapshot, if one is ready.
    pub(super) fn take(&self, key: &RecycleKey) -> Option<ReadyVm> {
        if !self.enabled() {
            return None;
        }
        let mut st = self.lock();
        let parked = st.ready.get_mut(key)?.pop()?;
        self.0.reused.fetch_add(1, Ordering::Relaxed);
        Some(parked.ready)
    }

    /// Waits until the pool's thread has reset every VM handed to it, or `timeout`.
    pub fn wait_idle(&self, timeout: Duration) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            {
                let st = self.lock();
                if st.queue.is_empty() && !st.busy {
                    return;
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Ends the pool (its worker is gone): every ready and queued VM is torn down,
    /// what it kept of snapshots (store handles) is dropped, and this waits for a
    /// reset in progress, so the store can be opened again at once.
    pub fn close(&self) {
        self.0.enabled.store(false, Ordering::SeqCst);
        let (ready, queue, snapshots) = {
            let mut st = self.lock();
            let ready: Vec<Parked> = st.ready.drain().flat_map(|(_, v)| v).collect();
            (
                ready,
                std::mem::take(&mut st.queue),
                std::mem::take(&mut st.snapshots),
            )
        };
        drop((ready, queue, snapshots));
        self.0.wake.notify_all();
        self.wait_idle(Duration::from_secs(5));
        // A reset that finished as reuse was turned off may have parked its VM.
        self.release_all();
    }

    /// Tears down every ready VM (their huge pages go back to the pool).
    pub fn release_all(&self) {
        let drained: Vec<Parked> = {
            let mut st = self.lock();
            st.ready.drain().flat_map(|(_, v)| v).collect()
        };
        drop(drained);
    }

    /// Hands a retired instance's VM to the pool's thread to be reset for `key`; torn
    /// down instead when reuse is off or the pool holds enough of them.
    pub(crate) fn put(&self, key: RecycleKey, vm: ReadyVm) {
        if !self.enabled() {
            return;
        }
        let mut st = self.lock();
        let held: usize = st.ready.values().map(Vec::len).sum::<usize>() + st.queue.len();
        let mine = st.ready.get(&key).map_or(0, Vec::len)
            + st.queue.iter().filter(|(k, _)| *k == key).count();
        if held >= MAX_READY || mine >= PER_SNAPSHOT || !st.snapshots.contains_key(&key.snapshot) {
            drop(st);
            drop(vm);
            return;
        }
        st.queue.push_back((key, vm));
        if !st.started {
            st.started = true;
            let weak = Arc::downgrade(&self.0);
            let spawned = std::thread::Builder::new()
                .name("thaw-recycle".into())
                .spawn(move || run(weak));
            if spawned.is_err() {
                st.started = false;
                st.queue.clear();
            }
        }
        self.0.wake.notify_one();
    }
}

/// The pool's thread: resets queued VMs, expires idle ones, gives all up when huge
/// pages run low; exits when the pool is dropped.
fn run(pool: Weak<Inner>) {
    loop {
        let Some(inner) = pool.upgrade() else { return };
        let job = {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if !inner.enabled.load(Ordering::SeqCst) {
                    // Reuse is off (or the pool closed): nothing to keep or wait for.
                    st.queue.clear();
                    st.ready.clear();
                    st.started = false;
                    break None;
                }
                if let Some((key, vm)) = st.queue.pop_front() {
                    st.busy = true;
                    let info = st.snapshots.get(&key.snapshot).map(|(i, _)| i.clone());
                    break Some((key, vm, info));
                }
                expire(&mut st);
                let (next, timeout) = inner
                    .wake
                    .wait_timeout(st, Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner());
                st = next;
                if timeout.timed_out() && Arc::strong_count(&inner) == 1 {
                    break None;
                }
            }
        };
        let Some((key, mut vm, info)) = job else {
            return;
        };
        let t0 = Instant::now();
        let ok = match &info {
            Some(info) if thaw_pager::free_huge_pages() >= LOW_HUGE_PAGES => {
                match reset(&mut vm, info) {
                    Ok(()) => {
                        inner.resets.fetch_add(1, Ordering::Relaxed);
                        let ns = t0.elapsed().as_nanos() as u64;
                        inner.reset_ns.fetch_add(ns, Ordering::Relaxed);
                        true
                    }
                    Err(why) => {
                        if std::env::var_os("THAW_DEBUG_RECYCLE").is_some() {
                            eprintln!("thaw: not reusing a VM of {}: {why}", key.snapshot);
                        }
                        false
                    }
                }
            }
            _ => false,
        };
        if !ok {
            inner.refused.fetch_add(1, Ordering::Relaxed);
        }
        // Before `busy` clears: `close` waits for it, and then nothing of the pool may
        // still hold the snapshot's store.
        drop(info);
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        // Reuse turned off (or the pool closed) meanwhile: this VM goes too.
        if ok && inner.enabled.load(Ordering::SeqCst) {
            st.ready.entry(key).or_default().push(Parked {
                ready: vm,
                since: Instant::now(),
            });
        } else {
            drop(st);
            drop(vm);
            st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        }
        st.busy = false;
    }
}

/// Drops ready VMs idle for [`IDLE`], and all of them when huge pages run low.
fn expire(st: &mut State) {
    let low =
        st.ready.values().any(|v| !v.is_empty()) && thaw_pager::free_huge_pages() < LOW_HUGE_PAGES;
    for list in st.ready.values_mut() {
        list.retain(|p| !low && p.since.elapsed() < IDLE);
    }
    st.ready.retain(|_, v| !v.is_empty());
}

/// Why a VM could not be reset (it is torn down instead).
#[derive(Debug, thiserror::Error)]
enum ResetRefused {
    #[error("its restore does not allow reuse")]
    NotReusable,
    #[error("the pager did not finish its installs")]
    PagerBusy,
    #[error("the pager failed or backed blocks with small pages")]
    Pager,
    #[error("the guest wrote to the shared module image ({0} bytes copied)")]
    ModuleWritten(u64),
    #[error("reading the module region's page map: {0}")]
    PageMap(#[source] std::io::Error),
    #[error("giving blocks back: {0}")]
    Discard(#[source] thaw_pager::PagerError),
    #[error("rewriting the snapshot's bytes: {0}")]
    Rewrite(#[source] WorkerError),
    #[error("resetting the vCPU: {0}")]
    Vcpu(#[source] thaw_vmm::VmError),
}

/// Resets `vm` to `info`'s snapshot (steps 1-4 of the module doc).
fn reset(vm: &mut ReadyVm, info: &SnapInfo) -> Result<(), ResetRefused> {
    let ReadyVm { lazy, vm } = vm;
    let recycle = lazy.recycle.as_ref().ok_or(ResetRefused::NotReusable)?;
    // 1. (the pager's installed bits are exact once its last install is marked)
    if !lazy.handle.quiesce(Duration::from_secs(1)) {
        return Err(ResetRefused::PagerBusy);
    }
    let stats = lazy.handle.stats();
    if lazy.handle.error().is_some() || stats.small_page_blocks > 0 {
        return Err(ResetRefused::Pager);
    }
    let cs = info.chunk_size;
    let module = &recycle.module_chunks;
    if !module.is_empty() {
        let at = vm
            .ram()
            .host_addr()
            .offset(module.start as usize * cs as usize);
        let copied = thaw_pager::private_anon_bytes(at, module.len() * cs as usize)
            .map_err(ResetRefused::PageMap)?;
        if copied > 0 {
            return Err(ResetRefused::ModuleWritten(copied));
        }
    }
    // 2.
    let installed = lazy.handle.installed_blocks();
    let extra: Vec<u32> = installed
        .iter()
        .copied()
        .filter(|b| !recycle.kept.contains(b) && !module.contains(b))
        .collect();
    lazy.handle.discard(&extra).map_err(ResetRefused::Discard)?;
    // 3. Only blocks that are backed now (the VMM's areas, populated before the pager
    //    started, and what the pager installed): a write elsewhere would fault into
    //    the pager, and a block it cannot serve would stall this thread. A kept block
    //    nobody touched still holds nothing and faults in the snapshot's bytes later.
    let vmm: Vec<u32> = vmm_chunks(cs).collect();
    let mut buf = Vec::new();
    for &b in &recycle.kept {
        if vmm.contains(&b) || installed.binary_search(&b).is_ok() {
            rewrite_block(vm, info, b, recycle.image.as_deref(), &mut buf)
                .map_err(ResetRefused::Rewrite)?;
        }
    }
    // 4.
    vm.reset_to(&info.state).map_err(ResetRefused::Vcpu)?;
    lazy.handle.reset_stats(recycle.kept.len() as u64);
    Ok(())
}

/// Overwrites block `b` of guest RAM with the snapshot's bytes (zeroes for a zero chunk):
/// from the restore's working-set image when it holds the block (`buf` stages it), else
/// through the store.
fn rewrite_block(
    vm: &Vm,
    info: &SnapInfo,
    b: u32,
    image: Option<&super::wsimage::WorkingSetImage>,
    buf: &mut Vec<u8>,
) -> Result<(), WorkerError> {
    let cs = info.chunk_size;
    let at = GuestAddress(u64::from(b) * cs);
    if let Some(img) = image.filter(|i| i.holds(b)) {
        buf.resize(cs as usize, 0);
        if img.read_into(b, buf) {
            vm.ram().write(at, buf)?;
            return Ok(());
        }
    }
    match info.chunks.get(b as usize).copied().flatten() {
        Some(id) => {
            let bytes = info
                .store
                .read_chunk_shared(&id)
                .map_err(WorkerError::Store)?;
            let n = bytes.len().min(cs as usize);
            vm.ram().write(at, &bytes[..n])?;
            if (n as u64) < cs {
                vm.ram()
                    .zero(GuestAddress(at.raw() + n as u64), cs - n as u64)?;
            }
        }
        None => vm.ram().zero(at, cs)?,
    }
    Ok(())
}

/// Whether a restore in `mode` may be served by, and may later feed, the pool.
pub(super) fn mode_recycles(mode: MemoryMode) -> bool {
    matches!(mode, MemoryMode::Uffd | MemoryMode::UffdPrefetch)
}
