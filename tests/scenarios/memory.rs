//! Issue 2: a handler that exhausts guest memory gets a clear error (MemoryError as
//! a function error, or the instance ends as crashed/out of memory), never a host
//! crash.
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
