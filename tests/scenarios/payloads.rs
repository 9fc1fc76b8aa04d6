//! Issue 2: payload limits (6 MiB each way, as Lambda) and byte-exact round trips
//! of large payloads through shared memory. Prints round-trip times (median of
//! several) for docs/PERFORMANCE.md: `cargo test --release -p thaw-tests --test
//! scenarios payloads -- --nocapture --test-threads=1`.
use serde_json::json;
use std::time::Duration;
use thaw_abi::MAX_PAYLOAD;
use thaw_tests::{
    adler32, ascii_payload, body_json, boot, invoke, invoke_raw, median, spec, HELLO,
};
use thaw_vmm::kvm_or_skip;
use thaw_worker::WorkerError;

const ECHO: &str = "import zlib\n\ndef handler(event, context):\n    d = event['data']\n    return {'len': len(d), 'adler32': zlib.adler32(d.encode()), 'data': d}\n";

#[test]
fn test_request_over_6_mib_is_refused_before_the_vm() {
    if !kvm_or_skip("test_request_over_6_mib_is_refused_before_the_vm") {
        return;
    }
    let mut instance = boot(spec("big-request", HELLO));
    let payload = format!("{{\"name\": \"{}\"}}", "x".repeat(MAX_PAYLOAD as usize));
    let err = invoke_raw(&mut instance, payload.into_bytes()).expect_err("over 6 MiB");
    assert!(
        matches!(err, WorkerError::PayloadTooLarge { max, .. } if max == MAX_PAYLOAD),
        "{err:?}"
    );
    let j: serde_json::Value = serde_json::from_slice(&err.to_error_json()).unwrap();
    assert_eq!(j["errorType"], "RequestTooLargeException");
    // The VM was never touched: the same instance still serves.
    assert!(instance.is_ready());
    assert_eq!(
        body_json(&invoke(&mut instance, &json!({"name": "ok"}))),
        json!({"hello": "ok"})
    );
}

#[test]
fn test_oversized_client_context_is_refused_and_the_instance_still_serves() {
    if !kvm_or_skip("test_oversized_client_context_is_refused_and_the_instance_still_serves") {
        return;
    }
    let mut instance = boot(spec("big-context", HELLO));
    let req = thaw_worker::InvokeRequest {
        payload: br#"{"name": "ctx"}"#.to_vec(),
        client_context: Some(json!({"custom": "c".repeat(200 * 1024)})),
        ..Default::default()
    };
    let err = instance.invoke(&req).expect_err("a 200 KiB client context");
    assert!(matches!(err, thaw_worker::WorkerError::Vm(_)), "{err:?}");
    assert!(
        instance.is_ready(),
        "a refused request must not spend the instance"
    );
    assert_eq!(
        body_json(&invoke(&mut instance, &json!({"name": "ok"}))),
        json!({"hello": "ok"})
    );
}

#[test]
fn test_response_over_6_mib_is_a_function_error() {
    if !kvm_or_skip("test_response_over_6_mib_is_a_function_error") {
        return;
    }
    let mut instance = boot(spec(
        "big-response",
        "def handler(event, context):\n    return 'x' * (event['n'])\n",
    ));
    let out = invoke(&mut instance, &json!({"n": 7 << 20}));
    assert!(out.function_error);
    assert_eq!(
        body_json(&out)["errorType"],
        "Function.ResponseSizeTooLarge"
    );
    // A response just under the limit goes through, and the instance still serves.
    let n = MAX_PAYLOAD as usize - 2; // plus the two JSON quotes
    let out = invoke(&mut instance, &json!({"n": n}));
    assert!(
        !out.function_error,
        "{}",
        String::from_utf8_lossy(&out.body[..200.min(out.body.len())])
    );
    assert_eq!(out.body.len(), MAX_PAYLOAD as usize);
}

/// Round-trips `n` data bytes `runs` times; checks every byte; returns the median.
fn round_trip(instance: &mut thaw_worker::Instance, n: usize, runs: usize) -> Duration {
    let mut times = Vec::new();
    for run in 0..runs {
        let data = ascii_payload(n, 0x9e37_79b9 + run as u64);
        let payload = json!({ "data": data }).to_string().into_bytes();
        assert!(
            payload.len() as u64 <= MAX_PAYLOAD,
            "test payload {} too big",
            payload.len()
        );
        let out = invoke_raw(instance, payload).expect("round trip");
        assert!(
            !out.function_error,
            "{}",
            String::from_utf8_lossy(&out.body[..300.min(out.body.len())])
        );
        assert!(out.body.len() as u64 <= MAX_PAYLOAD);
        let v = body_json(&out);
        assert_eq!(v["len"], json!(n));
        assert_eq!(
            v["adler32"],
            json!(adler32(data.as_bytes())),
            "guest saw different bytes"
        );
        assert!(
            v["data"].as_str() == Some(data.as_str()),
            "echoed data differs"
        );
        times.push(out.duration);
    }
    median(times)
}

#[test]
fn test_1_mib_and_6_mib_payloads_round_trip_byte_exact() {
    if !kvm_or_skip("test_1_mib_and_6_mib_payloads_round_trip_byte_exact") {
        return;
    }
    let mut instance = boot(spec("echo", ECHO));
    let small = round_trip(&mut instance, 16, 5);
    let one = round_trip(&mut instance, 1 << 20, 5);
    // The biggest that fits both ways: the response adds ~60 bytes of JSON around the data.
    let six = round_trip(&mut instance, MAX_PAYLOAD as usize - 256, 5);
    eprintln!("payload round trip (median of 5, handler parses + hashes + re-encodes): 16 B {small:?} | 1 MiB {one:?} | 6 MiB {six:?}");
}
