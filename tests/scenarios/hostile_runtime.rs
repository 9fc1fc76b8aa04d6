//! The Python bootstrap survives any event and any result (issue 11, item 5):
//! deep nesting either way, `BaseException`s, an exception whose `__str__`
//! raises. Each gets a function error with Lambda's types, and the instance stays
//! warm (the next call on the same instance answers).
use serde_json::json;
use thaw_tests::{body_json, boot, invoke, invoke_raw, spec};
use thaw_vmm::kvm_or_skip;

const HOSTILE: &str = r#"
class Weird(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")
def handler(event, context):
    kind = event.get("kind") if isinstance(event, dict) else "deep-event"
    if kind == "interrupt":
        raise KeyboardInterrupt()
    if kind == "exit":
        raise SystemExit(3)
    if kind == "base":
        raise BaseException("base")
    if kind == "weird":
        raise Weird()
    if kind == "deep-result":
        v = []
        for _ in range(100000):
            v = [v]
        return v
    if kind == "unserialisable":
        return {"x": object()}
    return {"ok": kind}
"#;

#[test]
fn test_the_runtime_survives_hostile_events_and_results() {
    if !kvm_or_skip("test_the_runtime_survives_hostile_events_and_results") {
        return;
    }
    let mut i = boot(spec("hostile-runtime", HOSTILE));
    let cases = [
        ("interrupt", "KeyboardInterrupt"),
        ("exit", "SystemExit"),
        ("base", "BaseException"),
        ("weird", "Weird"),
        ("deep-result", "Runtime.MarshalError"),
        ("unserialisable", "Runtime.MarshalError"),
    ];
    for (kind, error_type) in cases {
        let out = invoke(&mut i, &json!({ "kind": kind }));
        assert!(
            out.function_error,
            "{kind}: {}",
            String::from_utf8_lossy(&out.body)
        );
        let v = body_json(&out);
        assert_eq!(v["errorType"], error_type, "{kind}: {v}");
        // Still warm: the same instance answers the next call.
        let next = invoke(&mut i, &json!({ "kind": "fine" }));
        assert_eq!(body_json(&next), json!({ "ok": "fine" }), "after {kind}");
    }
    // A 1,000-deep (and a 100,000-deep) event.
    for depth in [1_000usize, 100_000] {
        let event = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let out = invoke_raw(&mut i, event.into_bytes()).expect("not a platform error");
        // Parsed (the handler sees a list) or refused as Lambda's InvalidEvent.
        let v = body_json(&out);
        if out.function_error {
            assert_eq!(v["errorType"], "Runtime.InvalidEvent", "depth {depth}: {v}");
        } else {
            assert_eq!(v, json!({ "ok": "deep-event" }), "depth {depth}");
        }
        assert!(
            depth < 100_000 || out.function_error,
            "a 100,000-deep event parsed?"
        );
        let next = invoke(&mut i, &json!({ "kind": "fine" }));
        assert_eq!(
            body_json(&next),
            json!({ "ok": "fine" }),
            "after depth {depth}"
        );
    }
    let weird = invoke(&mut i, &json!({ "kind": "weird" }));
    let v = body_json(&weird);
    assert!(
        v["errorMessage"].as_str().unwrap_or("").contains("str()"),
        "{v}"
    );
}

#[test]
fn test_a_function_timeout_ends_a_blocking_socket_read() {
    if !kvm_or_skip("test_a_function_timeout_ends_a_blocking_socket_read") {
        return;
    }
    let (silent, _listener) = thaw_tests::net::silent_server();
    let source = "import socket\ndef handler(event, context):\n    s = socket.create_connection(('127.0.0.1', event['port']))\n    return s.recv(1)\n";
    let mut s = spec("blocking-recv", source);
    s.timeout = std::time::Duration::from_secs(1);
    s.net = Some(thaw_tests::net::net(
        &[format!("127.0.0.1:{}", silent.port())],
        None,
    ));
    let mut i = boot(s);
    let t0 = std::time::Instant::now();
    let err = invoke_raw(
        &mut i,
        json!({ "port": silent.port() }).to_string().into_bytes(),
    )
    .expect_err("a recv that never returns must time out");
    let took = t0.elapsed();
    assert!(
        matches!(err, thaw_worker::WorkerError::Timeout { .. }),
        "{err:?}"
    );
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
}
