//! Issue 2: a handler that exhausts guest memory gets a clear error (MemoryError as
//! a function error, or the instance ends as crashed/out of memory), never a host
//! crash. Issue 5: the memory a function uses is reported (REPORT's Max Memory Used).
use serde_json::json;
use std::time::Duration;
use thaw_tests::{assert_host_healthy, boot, invoke_raw, spec};
use thaw_vmm::kvm_or_skip;
use thaw_worker::WorkerError;

/// Runs `source` in a 512 MiB VM and checks the failure is a clear one.
fn exhaust(name: &str, source: &str) {
    let mut s = spec(name, source);
    s.memory_mb = 512;
    s.timeout = Duration::from_secs(60);
    let mut instance = boot(s);
    match invoke_raw(&mut instance, json!({}).to_string().into_bytes()) {
        Ok(out) => {
            assert!(
                out.function_error,
                "allocating past guest memory succeeded: {}",
                String::from_utf8_lossy(&out.body)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
            assert_eq!(v["errorType"], "MemoryError", "{v}");
            eprintln!("{name}: function error {v}");
        }
        Err(e @ WorkerError::Crashed { .. }) => {
            let j: serde_json::Value = serde_json::from_slice(&e.to_error_json()).unwrap();
            eprintln!("{name}: instance crashed: {j}");
            assert!(
                j["errorType"] == "Runtime.OutOfMemory" || j["errorType"] == "Runtime.ExitError",
                "{j}"
            );
        }
        Err(e) => panic!(
            "{name}: unclear error: {}",
            thaw_worker::error::error_chain(&e)
        ),
    }
    assert_host_healthy();
}

#[test]
fn test_one_huge_allocation_is_a_clear_error() {
    if !kvm_or_skip("test_one_huge_allocation_is_a_clear_error") {
        return;
    }
    exhaust(
        "huge-alloc",
        "def handler(event, context):\n    b = bytearray(10**9)\n    return len(b)\n",
    );
}

#[test]
fn test_growing_forever_is_a_clear_error() {
    if !kvm_or_skip("test_growing_forever_is_a_clear_error") {
        return;
    }
    exhaust("grows", "def handler(event, context):\n    keep = []\n    while True:\n        keep.append(bytearray(1 << 20))\n");
}

#[test]
fn test_max_memory_used_follows_what_the_handler_allocates() {
    if !kvm_or_skip("test_max_memory_used_follows_what_the_handler_allocates") {
        return;
    }
    let source = "KEEP = []\n\ndef handler(event, context):\n    KEEP.append(bytearray(event['mb'] << 20))\n    return len(KEEP)\n";
    let mut instance = boot(spec("mem-used", source));
    let used = |instance: &mut thaw_worker::Instance, mb: u64| {
        let out = invoke_raw(instance, json!({"mb": mb}).to_string().into_bytes()).unwrap();
        assert!(
            !out.function_error,
            "{}",
            String::from_utf8_lossy(&out.body)
        );
        out.max_memory_used
    };
    let small = used(&mut instance, 0);
    // The interpreter and the engine alone: some MiB, well under the guest's 512.
    assert!(small > 4 << 20 && small < 128 << 20, "{small}");
    // Kept allocations show (some of a new one may fit in heap the runtime had
    // already reserved, so allow some slack).
    let big = used(&mut instance, 100);
    assert!(
        big >= 100 << 20 && big >= small + (80 << 20),
        "{small} -> {big}"
    );
    let more = used(&mut instance, 50);
    assert!(
        more >= 150 << 20 && more >= big + (40 << 20),
        "{big} -> {more}"
    );
    // A peak: freeing does not lower it (and the wasm memory never shrinks).
    assert!(used(&mut instance, 0) >= more);
}
