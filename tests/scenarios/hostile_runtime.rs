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

#[test]
fn test_output_past_the_log_cap_is_dropped_with_a_marker() {
    if !kvm_or_skip("test_output_past_the_log_cap_is_dropped_with_a_marker") {
        return;
    }
    // 9 MiB of output (the VM keeps the last 8 MiB), then a last line.
    let source = "import sys\ndef handler(event, context):\n    line = 'x' * 1023 + '\\n'\n    for _ in range(9 * 1024):\n        sys.stdout.write(line)\n    print('THE END')\n    return 1\n";
    let mut i = boot(spec("log-flood", source));
    let out = invoke(&mut i, &json!({}));
    let log = String::from_utf8_lossy(&out.log);
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("[thaw: ") && first.ends_with(" bytes of output dropped]"),
        "{first:?}"
    );
    let n: u64 = first
        .trim_start_matches("[thaw: ")
        .trim_end_matches(" bytes of output dropped]")
        .parse()
        .expect("a byte count");
    assert!(n >= 1 << 20, "dropped {n}");
    assert!(log.contains("THE END"), "the newest output is kept");
    let again = invoke(&mut i, &json!({}));
    assert!(
        String::from_utf8_lossy(&again.log).starts_with("[thaw: "),
        "a new flood drops again"
    );
}
