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

/// Issue 14: MemorySize is what a function gets. It allocates 1 MiB blocks until
/// `MemoryError`; at 128 / 512 / 2048 MB at least 80 / 450 / 1,900 MB fit, the
/// error comes promptly (never a timeout) and the instance keeps working after it.
#[test]
fn test_memory_size_is_what_a_function_can_allocate() {
    if !kvm_or_skip("test_memory_size_is_what_a_function_can_allocate") {
        return;
    }
    let source = "def handler(event, context):\n    keep = []\n    try:\n        while True:\n            b = bytearray(1 << 20)\n            b[::4096] = b'x' * 256\n            keep.append(b)\n    except MemoryError:\n        n = len(keep)\n        keep.clear()\n        return n\n";
    for (memory_mb, want) in [(128u32, 80usize), (512, 450), (2048, 1900)] {
        let mut s = spec(&format!("alloc-{memory_mb}"), source);
        s.memory_mb = memory_mb;
        s.timeout = Duration::from_secs(120);
        let mut instance = boot(s);
        let t0 = std::time::Instant::now();
        let out = invoke_raw(&mut instance, b"{}".to_vec()).expect("a MemoryError, caught");
        let got: usize = serde_json::from_slice(&out.body)
            .unwrap_or_else(|_| panic!("{memory_mb}: {}", String::from_utf8_lossy(&out.body)));
        eprintln!(
            "MemorySize {memory_mb}: {got} MiB allocatable in {:?}, Max Memory Used {} MiB",
            t0.elapsed(),
            out.max_memory_used >> 20
        );
        assert!(got >= want, "MemorySize {memory_mb}: only {got} MiB");
        assert!(
            out.max_memory_used <= u64::from(memory_mb) << 20,
            "MemorySize {memory_mb}: used {} bytes",
            out.max_memory_used
        );
        // Still healthy after hitting the limit: the freed blocks are reusable.
        let again = invoke_raw(&mut instance, b"{}".to_vec()).unwrap();
        let again: usize = serde_json::from_slice(&again.body).unwrap();
        assert!(again + 8 >= got, "{memory_mb}: {got} then {again}");
    }
    assert_host_healthy();
}
