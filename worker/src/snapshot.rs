//! Taking snapshots: boot a function, run init to the first "next invocation"
//! hypercall (before-snapshot hooks have run), save the vCPU state and put guest
//! RAM into the chunk store. The snapshot records everything a restore needs:
//! the VM state, the function's spec and its code (to rebuild from a cold boot
//! when a chunk turns out corrupt; the blob's format is `state.rs`).
use crate::error::WorkerError;
use crate::instance::Instance;
use crate::runtime::Runtime;
use crate::spec::FunctionSpec;
use crate::state::{encode_state, spec_key, SnapshotRecord, SpecRecord};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thaw_abi::layout;
use thaw_snapshotter::{SnapshotId, SnapshotMeta, Store};
use thaw_vmm::GuestAddress;

/// Where the time of taking a snapshot went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SnapshotTimings {
    pub boot: crate::instance::BootTimings,
    pub save_state: Duration,
    pub store_memory: Duration,
    /// Recording the provisional working set (a probe on a throwaway clone).
    pub probe: Duration,
    pub total: Duration,
}

/// Boots `spec`, runs init and stores a snapshot; makes it the function version's
/// current snapshot only after it is durable.
pub fn take_snapshot(
    runtime: &Runtime,
    store: &Store,
    spec: &FunctionSpec,
) -> Result<(SnapshotId, SnapshotTimings), WorkerError> {
    let t0 = Instant::now();
    let mut boot_spec = spec.clone();
    boot_spec.initialization_type = "snap-start".into();
    let (mut instance, boot) = Instance::boot(runtime, Arc::new(boot_spec))?;
    let t1 = Instant::now();
    let vm_state = instance.vm_mut().save_state()?;
    let save_state = t1.elapsed();
    let t2 = Instant::now();
    // The log, request and response areas hold nothing a restore needs (the log
    // was handed over with `Next`, no invocation has run): zero them so they are
    // not stored and restores do not copy them back.
    let ram = instance.vm_mut().ram_mut();
    for (at, len) in [
        (layout::LOG, layout::LOG_SIZE),
        (layout::REQUEST, layout::REQUEST_SIZE),
        (layout::RESPONSE, layout::RESPONSE_SIZE),
    ] {
        ram.zero(GuestAddress(at), len)?;
    }
    let meta = SnapshotMeta {
        function: spec_key(spec),
        code_hash: spec.code.hash(),
        runtime_hash: runtime.hash(),
        memory_size: ram.len(),
        labels: BTreeMap::from([("created_ms".to_string(), crate::now_ms().to_string())]),
    };
    let mut writer = store.begin(meta.clone());
    writer
        .add_region(0, ram.bytes()?)
        .map_err(WorkerError::StoreSnapshot)?;
    writer.set_state(encode_state(
        &SnapshotRecord {
            vm: vm_state,
            spec: SpecRecord::of(spec),
        },
        &spec.code,
    ));
    let id = writer.commit().map_err(WorkerError::StoreSnapshot)?;
    store
        .set_current(&meta.function, &id)
        .map_err(WorkerError::Store)?;
    let store_memory = t2.elapsed();
    Ok((
        id,
        SnapshotTimings {
            boot,
            save_state,
            store_memory,
            probe: Duration::ZERO,
            total: t0.elapsed(),
        },
    ))
}
