//! The VMs lazy restores run in: a ready shell from the [`ShellPool`] (hugetlbfs guest RAM
//! with the VMM's areas backed and a userfaultfd registration made ahead, so a restore
//! skips VM creation and page allocation), else a fresh VM of its own ([`private_vm`]).
use super::warn_once;
use crate::error::WorkerError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use thaw_vmm::{Backing, GuestAddress, GuestRam, Vm};

/// A VM over fresh guest RAM of its own: on hugetlbfs (if `huge` and the VMM's areas
/// can be backed there now), else on 4 KiB pages (with a warning).
pub(super) fn private_vm(len: u64, huge: bool) -> Result<(Vm, thaw_pager::Backing), WorkerError> {
    let why = match huge.then(|| GuestRam::new(len, Backing::Hugetlb)) {
        Some(Ok(ram)) => match populate_vmm_areas(&ram) {
            Ok(()) => return Ok((Vm::with_ram(ram)?, thaw_pager::Backing::Hugetlb)),
            Err(e) => e.to_string(),
        },
        Some(Err(e)) => e.to_string(),
        None => "too few free huge pages".into(),
    };
    warn_once(&format!(
        "no huge pages for a {} MiB guest ({why}); using 4 KiB pages (slower first touch)",
        len >> 20
    ));
    let ram = GuestRam::new(len, Backing::Anonymous)?;
    Ok((Vm::with_ram(ram)?, thaw_pager::Backing::Anonymous))
}

/// The chunks the VMM touches on every restore and invocation (step 3 of a lazy restore): the one
/// holding the boot info, the mailboxes and the log, and the first chunk of the
/// request and of the response areas. The rest of those areas (only large payloads
/// reach it) is paged in on demand like guest memory: the VMM's own accesses fault
/// into the pager too, which always serves them (small pages when no huge page is
/// free), so they are not backed up front (18 MiB of huge pages per instance).
pub(super) fn vmm_chunks(chunk_size: u64) -> impl Iterator<Item = u32> + Clone {
    use thaw_abi::layout::{BOOT_INFO, LOG, LOG_SIZE, REQUEST, RESPONSE};
    let span = move |lo: u64, hi: u64| (lo / chunk_size) as u32..hi.div_ceil(chunk_size) as u32;
    let mut chunks: Vec<u32> = span(BOOT_INFO, LOG + LOG_SIZE)
        .chain(span(REQUEST, REQUEST + 1))
        .chain(span(RESPONSE, RESPONSE + 1))
        .collect();
    chunks.dedup();
    chunks.into_iter()
}

/// Backs the chunks the VMM touches on every invocation ([`vmm_chunks`]) with
/// (zeroed) memory.
pub(super) fn populate_vmm_areas(ram: &GuestRam) -> Result<(), WorkerError> {
    let cs = thaw_abi::PAGE_2M;
    for c in vmm_chunks(cs) {
        ram.populate(GuestAddress(u64::from(c) * cs), cs)?;
    }
    Ok(())
}

/// Ready VM shells for lazy restores: a KVM VM and vCPU over unpopulated hugetlbfs
/// guest RAM whose VMM areas are already backed. A background thread keeps
/// [`SHELLS_PER_SIZE`] of the last requested size, so a restore skips VM creation
/// and page allocation (~2 ms here). Empty pool: the restore builds its own.
#[derive(Debug, Default, Clone)]
pub struct ShellPool(Arc<PoolInner>);

/// Shells kept ready per guest size.
pub const SHELLS_PER_SIZE: usize = 2;

#[derive(Debug, Default)]
struct PoolInner {
    state: Mutex<PoolState>,
    wake: std::sync::Condvar,
}

/// A ready VM: its RAM already registered with a userfaultfd (not serving yet; the
/// restore's `start_pager` takes the registration over).
#[derive(Debug)]
pub struct Shell {
    pub vm: Vm,
}

#[derive(Debug, Default)]
struct PoolState {
    ready: HashMap<u64, Vec<Shell>>,
    /// The guest size to keep shells of (the last one asked for).
    wanted: Option<u64>,
    started: bool,
    /// Building a shell failed (no huge pages): stop refilling until asked again.
    failed: bool,
}

impl ShellPool {
    /// A ready shell of `len` bytes, if any; asks the refill thread for more.
    pub fn take(&self, len: u64) -> Option<Shell> {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.wanted != Some(len) {
            st.ready.clear();
            st.wanted = Some(len);
        }
        st.failed = false;
        if !st.started {
            st.started = true;
            let weak = Arc::downgrade(&self.0);
            let _ = std::thread::Builder::new()
                .name("thaw-shells".into())
                .spawn(move || refill(weak));
        }
        let shell = st.ready.get_mut(&len).and_then(Vec::pop);
        self.0.wake.notify_one();
        shell
    }
}

/// A shell: hugetlbfs RAM with the VMM areas backed, a VM over it, the RAM
/// registered with a userfaultfd.
fn build_shell(len: u64) -> Result<Shell, WorkerError> {
    let ram = GuestRam::new(len, Backing::Hugetlb)?;
    populate_vmm_areas(&ram)?;
    let mut vm = Vm::with_ram(ram)?;
    vm.ram_mut().register_pager(thaw_pager::Backing::Hugetlb)?;
    Ok(Shell { vm })
}

/// The refill loop: build shells until the pool is full, sleep until woken; exits
/// when the pool is dropped.
fn refill(pool: std::sync::Weak<PoolInner>) {
    loop {
        let Some(inner) = pool.upgrade() else { return };
        let len = {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let need = st.wanted.filter(|l| {
                    !st.failed && st.ready.get(l).map_or(0, Vec::len) < SHELLS_PER_SIZE
                });
                if let Some(len) = need {
                    break len;
                }
                let (next, _) = inner
                    .wake
                    .wait_timeout(st, std::time::Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner());
                st = next;
                if Arc::strong_count(&inner) == 1 {
                    return;
                }
            }
        };
        let shell = build_shell(len);
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        match shell {
            Ok(vm) if st.wanted == Some(len) => st.ready.entry(len).or_default().push(vm),
            Ok(_) => {}
            Err(_) => st.failed = true,
        }
    }
}
