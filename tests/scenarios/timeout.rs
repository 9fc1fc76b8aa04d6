//! Issue 2: a handler that never returns is stopped at the function timeout (the
//! vCPU thread is kicked out of KVM_RUN); the host process carries on.
use serde_json::json;
use std::time::{Duration, Instant};
use thaw_tests::{assert_host_healthy, boot, invoke_raw, spec};
use thaw_vmm::kvm_or_skip;
use thaw_worker::WorkerError;

#[test]
fn test_infinite_loop_times_out() {
    if !kvm_or_skip("test_infinite_loop_times_out") {
        return;
    }
    let mut s = spec(
        "spins",
        "def handler(event, context):\n    n = 0\n    while True:\n        n += 1\n",
    );
    s.timeout = Duration::from_secs(1);
    let mut instance = boot(s);
    let t0 = Instant::now();
    let err =
        invoke_raw(&mut instance, json!({}).to_string().into_bytes()).expect_err("must time out");
    let took = t0.elapsed();
    assert!(matches!(err, WorkerError::Timeout { .. }), "{err:?}");
    assert_eq!(err.to_string(), "Task timed out after 1.00 seconds");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&err.to_error_json()).unwrap()["errorType"],
        "Sandbox.Timedout"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "stopped after {took:?}"
    );
    // The instance is dead; the host is not.
    assert!(!instance.is_ready());
    assert!(invoke_raw(&mut instance, b"{}".to_vec()).is_err());
    assert_host_healthy();
}

#[test]
fn test_infinite_loop_at_init_times_out() {
    if !kvm_or_skip("test_infinite_loop_at_init_times_out") {
        return;
    }
    let mut s = spec("init-spins", "while True:\n    pass\n");
    s.init_timeout = Duration::from_secs(2);
    let err = thaw_tests::boot_err(s);
    assert!(matches!(err, WorkerError::Timeout { .. }), "{err:?}");
    assert_eq!(err.to_string(), "Task timed out after 2.00 seconds");
}
