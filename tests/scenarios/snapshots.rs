//! Snapshots and restores (issue 3): restore modes answer like a cold boot, clones
//! are unique and independent, hooks run, and a snapshot that is corrupt, stale or
//! half-written is never restored from.
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thaw_snapshotter::{FailPoint, StoreOptions};
use thaw_tests::{body_json, corrupt_file, invoke, spec, uncached_worker, worker};
use thaw_vmm::kvm_or_skip;
use thaw_worker::{MemoryMode, WorkerError};

const UNIQUE: &str = r#"
import os, random, time, uuid
COUNT = 0

def handler(event, context):
    global COUNT
    COUNT += 1
    return {"random": random.random(), "uuid": str(uuid.uuid4()), "urandom": os.urandom(16).hex(),
            "time": time.time(), "count": COUNT}
"#;

const HOOKS: &str = r#"
from snapshot_restore_py import register_before_snapshot, register_after_restore
STATE = {"before": 0, "after": [], "plain": 0}

@register_before_snapshot
def before():
    STATE["before"] += 1

@register_after_restore
def after():
    STATE["after"].append("decorated")

def plain(tag):
    STATE["plain"] += 1
    STATE["after"].append(tag)

register_after_restore(plain, "plain")

def handler(event, context):
    return STATE
"#;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn test_restore_modes_answer_like_a_cold_boot() {
    if !kvm_or_skip("test_restore_modes_answer_like_a_cold_boot") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let (id, _) = w.snapshot(&spec("modes", UNIQUE)).unwrap();
    let snap = w.open_snapshot(&id, None).unwrap();
    for mode in [MemoryMode::Boot, MemoryMode::Eager, MemoryMode::Mmap] {
        let (mut inst, _) = w
            .restore(&snap, mode)
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let a = body_json(&invoke(&mut inst, &serde_json::json!({})));
        let b = body_json(&invoke(&mut inst, &serde_json::json!({})));
        assert_eq!(
            (a["count"].as_i64(), b["count"].as_i64()),
            (Some(1), Some(2)),
            "{mode}: module state"
        );
    }
}

#[test]
fn test_clones_get_fresh_randomness_and_the_current_time() {
    if !kvm_or_skip("test_clones_get_fresh_randomness_and_the_current_time") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let (id, _) = w.snapshot(&spec("unique", UNIQUE)).unwrap();
    let snap = w.open_snapshot(&id, None).unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // the snapshot's clock is now stale
    let mut seen = std::collections::HashSet::new();
    for i in 0..4 {
        let mode = if i % 2 == 0 {
            MemoryMode::Eager
        } else {
            MemoryMode::Mmap
        };
        let (mut inst, _) = w.restore(&snap, mode).unwrap();
        let out = body_json(&invoke(&mut inst, &serde_json::json!({})));
        for key in ["random", "uuid", "urandom"] {
            assert!(
                seen.insert(format!("{key}={}", out[key])),
                "clone {i} repeated {key}: {}",
                out[key]
            );
        }
        let skew = (out["time"].as_f64().unwrap() - now()).abs();
        assert!(
            skew < 1.0,
            "clone {i}: guest time is {skew:.3} s off the host"
        );
    }
}

#[test]
fn test_twenty_clones_answer_independently() {
    if !kvm_or_skip("test_twenty_clones_answer_independently") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = Arc::new(worker(dir.path(), StoreOptions::default()));
    let (id, _) = w.snapshot(&spec("twenty", UNIQUE)).unwrap();
    let snap = Arc::new(w.open_snapshot(&id, None).unwrap());
    // 20 clones alive at once (mmap: they share clean pages), restored by 4 threads.
    let clones: Vec<_> = (0..4)
        .map(|_| {
            let (w, snap) = (w.clone(), snap.clone());
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| w.restore(&snap, MemoryMode::Mmap).unwrap().0)
                    .collect::<Vec<_>>()
            })
        })
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(clones.len(), 20);
    let mut clones = clones;
    for (i, inst) in clones.iter_mut().enumerate() {
        for _ in 0..(i % 3) {
            invoke(inst, &serde_json::json!({}));
        }
    }
    for (i, inst) in clones.iter_mut().enumerate() {
        let out = body_json(&invoke(inst, &serde_json::json!({})));
        assert_eq!(
            out["count"].as_i64(),
            Some((i % 3 + 1) as i64),
            "clone {i} saw another clone's state"
        );
    }
}

#[test]
fn test_snapshot_hooks_run_at_the_right_time() {
    if !kvm_or_skip("test_snapshot_hooks_run_at_the_right_time") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let s = spec("hooks", HOOKS);
    // A plain boot is not a snapshot: no hook runs.
    let (mut booted, _) = w.boot(Arc::new(s.clone())).unwrap();
    let out = body_json(&invoke(&mut booted, &serde_json::json!({})));
    assert_eq!(out["before"], 0);
    assert_eq!(out["after"], serde_json::json!([]));
    let (id, _) = w.snapshot(&s).unwrap();
    let snap = w.open_snapshot(&id, None).unwrap();
    for _ in 0..2 {
        let (mut inst, _) = w.restore(&snap, MemoryMode::Eager).unwrap();
        let first = body_json(&invoke(&mut inst, &serde_json::json!({})));
        assert_eq!(
            first["before"], 1,
            "before-snapshot hooks ran once, before the snapshot"
        );
        assert_eq!(
            first["after"],
            serde_json::json!(["decorated", "plain"]),
            "after-restore hooks, in order"
        );
        let second = body_json(&invoke(&mut inst, &serde_json::json!({})));
        assert_eq!(
            second["plain"], 1,
            "after-restore hooks run once per restore"
        );
    }
}

#[test]
fn test_corrupt_chunk_is_refused_then_rebuilt_from_a_cold_boot() {
    if !kvm_or_skip("test_corrupt_chunk_is_refused_then_rebuilt_from_a_cold_boot") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = uncached_worker(dir.path());
    let s = spec("corrupt", UNIQUE);
    let (id, _) = w.snapshot(&s).unwrap();
    // Flip one byte in the middle of the largest chunk file.
    let mut files: Vec<_> = walk(&w.data().store().join("chunks"));
    files.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = files.last().expect("chunk files exist").clone();
    assert!(corrupt_file(&victim));
    let snap = w.open_snapshot(&id, None).unwrap();
    let err = w
        .restore(&snap, MemoryMode::Eager)
        .expect_err("corrupt bytes must not be restored");
    let msg = thaw_worker::error::error_chain(&err);
    let chunk_name = victim.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        msg.contains(chunk_name.trim_end_matches(".corrupt")),
        "error names the chunk: {msg}"
    );
    assert!(
        w.store().is_bad(&id).unwrap().is_some(),
        "the snapshot is marked bad"
    );
    assert!(matches!(
        w.open_snapshot(&id, None),
        Err(WorkerError::SnapshotBad { .. })
    ));
    // The service path rebuilds from a cold boot and restores from the new snapshot.
    let (mut inst, _) = w.restore_or_rebuild(&s, MemoryMode::Eager).unwrap();
    assert_eq!(
        body_json(&invoke(&mut inst, &serde_json::json!({})))["count"],
        1
    );
    assert!(w.current_snapshot("corrupt", "$LATEST").unwrap().is_some());
}

#[test]
fn test_snapshot_of_changed_code_is_refused() {
    if !kvm_or_skip("test_snapshot_of_changed_code_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let (id, _) = w.snapshot(&spec("stale", UNIQUE)).unwrap();
    let changed = spec("stale", &format!("{UNIQUE}\n# v2\n"));
    let err = w
        .open_snapshot(&id, Some(&changed.code.hash()))
        .unwrap_err();
    assert!(matches!(err, WorkerError::SnapshotStale { .. }), "{err}");
}

#[test]
fn test_failed_snapshot_write_keeps_the_previous_snapshot() {
    if !kvm_or_skip("test_failed_snapshot_write_keeps_the_previous_snapshot") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fail = FailPoint::after(u64::MAX);
    let w = worker(
        dir.path(),
        StoreOptions {
            fail_point: Some(fail.clone()),
            ..StoreOptions::default()
        },
    );
    let v1 = spec("diskfull", UNIQUE);
    let (first, _) = w.snapshot(&v1).unwrap();
    // The disk "fills up" after 2 more chunk writes while snapshotting new code.
    fail.arm(2);
    let v2 = spec(
        "diskfull",
        &format!("{UNIQUE}\nBIG = bytes(range(256)) * 40000\n"),
    );
    let err = w.snapshot(&v2).expect_err("injected write failure");
    assert!(matches!(err, WorkerError::StoreSnapshot(_)), "{err}");
    fail.disarm();
    assert_eq!(
        w.current_snapshot("diskfull", "$LATEST").unwrap(),
        Some(first),
        "previous snapshot stays current"
    );
    let snap = w.open_snapshot(&first, None).unwrap();
    let (mut inst, _) = w.restore(&snap, MemoryMode::Eager).unwrap();
    assert_eq!(
        body_json(&invoke(&mut inst, &serde_json::json!({})))["count"],
        1
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
