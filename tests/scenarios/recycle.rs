//! Issue 14: a retired instance's VM is reset to its snapshot and serves the next
//! restore of that snapshot (worker/src/restore/recycle.rs). The reset must leave
//! nothing of the last instance: guest RAM equals the snapshot's memory byte for byte,
//! the handler sees fresh globals, an empty /tmp and a reseeded `random`; only the
//! same function version's restores get the VM; an instance that died or timed out is
//! never reused.
use std::time::Duration;
use thaw_snapshotter::StoreOptions;
use thaw_tests::{body_json, invoke, invoke_raw, spec, worker};
use thaw_vmm::{kvm_or_skip, GuestAddress};
use thaw_worker::{Instance, MemoryMode, Worker, WorkerError};

const STATEFUL: &str = r#"
import os, random
COUNT = 0
KEEP = []

def handler(event, context):
    global COUNT
    COUNT += 1
    clean = not os.path.exists('/tmp/mark')
    if event.get('dirty'):
        with open('/tmp/mark', 'w') as f:
            f.write('x' * 100000)
        KEEP.append(bytearray(b'\x5a') * (48 << 20))
    if event.get('spin'):
        while True:
            pass
    return {"count": COUNT, "tmp_clean": clean, "kept": len(KEEP), "r": random.random()}
"#;

/// Restores `id` in `uffd+prefetch` and runs one invocation of `event`.
fn restore_invoke(
    w: &Worker,
    id: &thaw_snapshotter::SnapshotId,
    event: serde_json::Value,
) -> (Instance, serde_json::Value) {
    let snap = w.open_snapshot(id, None).unwrap();
    let (mut i, _) = w.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
    let out = body_json(&invoke(&mut i, &event));
    (i, out)
}

/// Every byte of `instance`'s guest RAM against the snapshot's chunks (zero chunks
/// read as zeroes). Reading a block nobody touched faults it in from the snapshot,
/// which is what the guest would see there too.
fn assert_ram_is_the_snapshot(w: &Worker, id: &thaw_snapshotter::SnapshotId, instance: &Instance) {
    let manifest = w.store().manifest(id).unwrap();
    let ram = instance.vm().ram();
    let mut differing = Vec::new();
    for (i, c) in manifest.chunks().enumerate() {
        let want = match c.id {
            Some(chunk) => w.store().read_chunk(&chunk).unwrap(),
            None => vec![0u8; c.len as usize],
        };
        let got = ram
            .read_vec(GuestAddress(c.guest_addr), want.len() as u64)
            .unwrap();
        if got != want {
            differing.push(i);
        }
    }
    assert!(
        differing.is_empty(),
        "chunks that differ from the snapshot after the reset: {differing:?}"
    );
}

#[test]
fn test_a_reused_vm_holds_exactly_the_snapshot() {
    if !kvm_or_skip("test_a_reused_vm_holds_exactly_the_snapshot") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let (id, _) = w.snapshot(&spec("recycle", STATEFUL)).unwrap();
    // The build's probe clone (it ran the runtime's invoke path) is reset and kept.
    w.wait_recycled(Duration::from_secs(5));
    let st = w.recycle_stats();
    assert_eq!((st.resets, st.ready), (1, 1), "{st:?}");
    let provisional = w
        .store()
        .manifest(&id)
        .unwrap()
        .provisional_working_set
        .unwrap();
    // The first restore takes it and records the final working set on top of the
    // provisional one, as a fresh VM would; this instance writes all over its memory
    // and /tmp, then retires.
    let (mut dirty, out) = restore_invoke(&w, &id, serde_json::json!({"dirty": true}));
    assert_eq!(out["count"], 1);
    assert_eq!(w.recycle_stats().reused, 1);
    let fin = w.store().manifest(&id).unwrap().working_set;
    let fin = fin.expect("the first restore recorded the final working set");
    assert!(
        provisional.iter().all(|c| fin.contains(c)),
        "{provisional:?} {fin:?}"
    );
    let out = body_json(&invoke(&mut dirty, &serde_json::json!({"dirty": true})));
    let seen = (
        out["count"].as_i64(),
        out["kept"].as_i64(),
        out["tmp_clean"].as_bool(),
    );
    assert_eq!(seen, (Some(2), Some(2), Some(false)));
    let dirty_r = out["r"].as_f64().unwrap();
    w.retire(dirty);
    w.wait_recycled(Duration::from_secs(5));
    let st = w.recycle_stats();
    assert_eq!((st.resets, st.ready), (2, 1), "{st:?}");
    // The next restore takes the reset VM: memory is the snapshot's, byte for byte.
    let snap = w.open_snapshot(&id, None).unwrap();
    let (mut reused, _) = w.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
    assert_eq!(w.recycle_stats().reused, 2);
    assert_ram_is_the_snapshot(&w, &id, &reused);
    assert_eq!(
        reused.vm().guest_memory_peak(),
        0,
        "the last instance's memory peak stayed"
    );
    let out = body_json(&invoke(&mut reused, &serde_json::json!({})));
    let seen = (
        out["count"].as_i64(),
        out["kept"].as_i64(),
        out["tmp_clean"].as_bool(),
    );
    assert_eq!(seen, (Some(1), Some(0), Some(true)), "{out}");
    assert_ne!(out["r"].as_f64().unwrap(), dirty_r);
    // Reused again: a second reset of the same VM.
    w.retire(reused);
    w.wait_recycled(Duration::from_secs(5));
    let (again, out) = restore_invoke(&w, &id, serde_json::json!({}));
    assert_eq!(
        (out["count"].as_i64(), out["tmp_clean"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(w.recycle_stats().reused, 3);
    drop(again);
}

#[test]
fn test_reset_vms_serve_only_their_own_function_version() {
    if !kvm_or_skip("test_reset_vms_serve_only_their_own_function_version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let (a, _) = w.snapshot(&spec("recycle-a", STATEFUL)).unwrap();
    let (b, _) = w.snapshot(&spec("recycle-b", STATEFUL)).unwrap();
    w.wait_recycled(Duration::from_secs(5));
    for id in [&a, &b] {
        // Each takes its own build's probe clone and records its working set.
        let (i, _) = restore_invoke(&w, id, serde_json::json!({}));
        drop(i);
    }
    let st = w.recycle_stats();
    assert_eq!((st.reused, st.ready), (2, 0), "{st:?}");
    let (i, _) = restore_invoke(&w, &a, serde_json::json!({"dirty": true}));
    w.retire(i);
    w.wait_recycled(Duration::from_secs(5));
    assert_eq!(w.recycle_stats().ready, 1);
    // b's restore and a restore of a in another mode build their own VMs.
    let (i, out) = restore_invoke(&w, &b, serde_json::json!({}));
    assert_eq!(out["count"], 1);
    drop(i);
    let snap = w.open_snapshot(&a, None).unwrap();
    let (i, _) = w.restore(&snap, MemoryMode::Uffd).unwrap();
    drop(i);
    let st = w.recycle_stats();
    assert_eq!((st.reused, st.ready), (2, 1), "{st:?}");
    // a's own restore takes it.
    let (i, out) = restore_invoke(&w, &a, serde_json::json!({}));
    assert_eq!(
        (out["count"].as_i64(), out["kept"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(w.recycle_stats().reused, 3);
    drop(i);
}

#[test]
fn test_an_instance_that_timed_out_is_never_reused() {
    if !kvm_or_skip("test_an_instance_that_timed_out_is_never_reused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let mut s = spec("recycle-timeout", STATEFUL);
    s.timeout = Duration::from_secs(1);
    let (id, _) = w.snapshot(&s).unwrap();
    w.wait_recycled(Duration::from_secs(5));
    let (i, _) = restore_invoke(&w, &id, serde_json::json!({}));
    drop(i);
    let snap = w.open_snapshot(&id, None).unwrap();
    let (mut i, _) = w.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
    let err = invoke_raw(&mut i, br#"{"spin": true}"#.to_vec()).unwrap_err();
    assert!(matches!(err, WorkerError::Timeout { .. }), "{err:?}");
    w.retire(i);
    w.wait_recycled(Duration::from_secs(5));
    let st = w.recycle_stats();
    assert_eq!(
        (st.resets, st.ready),
        (1, 0),
        "only the probe clone was reset: {st:?}"
    );
    // With reuse off, a healthy instance is torn down too.
    w.set_recycling(false);
    let (i, _) = restore_invoke(&w, &id, serde_json::json!({}));
    w.retire(i);
    w.wait_recycled(Duration::from_secs(5));
    assert_eq!(w.recycle_stats().ready, 0);
}

/// A VM whose shared module image was written to (a copy-on-write copy of it exists)
/// is not reset: the write stands in for a hostile guest's (the host writes through
/// the same private mapping), and the reset refuses rather than hand the next
/// instance a modified runtime.
#[test]
fn test_a_vm_whose_module_image_was_written_is_never_reused() {
    if !kvm_or_skip("test_a_vm_whose_module_image_was_written_is_never_reused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let (id, _) = w.snapshot(&spec("recycle-module", STATEFUL)).unwrap();
    w.wait_recycled(Duration::from_secs(5));
    w.wait_module_images();
    let (i, _) = restore_invoke(&w, &id, serde_json::json!({}));
    drop(i);
    // A restore that maps the shared module image (built by now).
    let (i, _) = restore_invoke(&w, &id, serde_json::json!({}));
    let module = GuestAddress(thaw_abi::layout::IMAGES + 4096);
    let before = i.vm().ram().read_vec(module, 8).unwrap();
    i.vm().ram().write(module, b"modified").unwrap();
    let st = w.recycle_stats();
    w.retire(i);
    w.wait_recycled(Duration::from_secs(5));
    let after = w.recycle_stats();
    assert_eq!(
        (after.refused, after.ready),
        (st.refused + 1, st.ready),
        "{after:?}"
    );
    // The next restore builds a VM; the module image itself was never changed.
    let snap = w.open_snapshot(&id, None).unwrap();
    let (i, _) = w.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
    assert_eq!(i.vm().ram().read_vec(module, 8).unwrap(), before);
}
