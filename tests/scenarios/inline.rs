//! Issue 5: the service's invoke path (`WorkerFactory::invoke`) runs an invocation in
//! place on the async thread for a short slice, and moves one that needs longer to a
//! blocking thread: short ones finish inline, long ones finish correctly elsewhere
//! without stalling the runtime, and timeouts still end the VM.
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thaw_scheduler::{FunctionVersion, InstanceFactory, RestoreKind};
use thaw_tests::spec;
use thaw_vmm::kvm_or_skip;
use thaw_worker::factory::WorkerFactory;
use thaw_worker::{InvokeRequest, MemoryMode, WorkerError};

const HANDLER: &str = r#"
import time

def handler(event, context):
    if event.get("forever"):
        while True:
            pass
    spin_ms = event.get("spin_ms", 0)
    end = time.monotonic() + spin_ms / 1000
    n = 0
    while time.monotonic() < end:
        n += 1
    return {"echo": event.get("echo"), "spun": spin_ms}
"#;

fn request(event: serde_json::Value) -> InvokeRequest {
    InvokeRequest {
        payload: event.to_string().into_bytes(),
        request_id: None,
        client_context: None,
    }
}

fn body(out: &thaw_worker::InvokeOutcome) -> serde_json::Value {
    serde_json::from_slice(&out.body).expect("JSON body")
}

#[test]
fn test_invocations_longer_than_the_inline_slice_move_off_the_async_thread() {
    if !kvm_or_skip("test_invocations_longer_than_the_inline_slice_move_off_the_async_thread") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let worker = thaw_tests::worker(dir.path(), Default::default());
    let factory = Arc::new(
        WorkerFactory::new(worker, MemoryMode::UffdPrefetch, 0)
            .with_inline_slice(Duration::from_micros(500)),
    );
    let fv = FunctionVersion {
        function: "slices".into(),
        version: "1".into(),
    };
    let mut s = spec("slices", HANDLER);
    s.timeout = Duration::from_secs(2);
    let s = Arc::new(s);
    factory.define(&fv, Arc::clone(&s));
    // One async worker thread, and the invocations run on it (a spawned task, not
    // `block_on`'s thread): if a long invocation kept it, nothing else would run.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let task = rt.spawn(async move {
        factory.build(&fv, s).await.expect("build");
        let instance = factory
            .restore(&fv, RestoreKind::OnDemand)
            .await
            .expect("restore");
        // Short: done within the slice.
        for i in 0..20 {
            let out = factory
                .invoke(&instance, request(json!({"echo": i})))
                .await
                .expect("invoke");
            assert_eq!(body(&out), json!({"echo": i, "spun": 0}));
        }
        // Long: 400 ms of guest work. A ticker task on the same runtime keeps
        // ticking meanwhile, so the async thread was handed on.
        let ticks = Arc::new(AtomicU32::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = ticks.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let out = factory
            .invoke(&instance, request(json!({"echo": "long", "spin_ms": 400})))
            .await
            .expect("long invoke");
        let took = t0.elapsed();
        let during = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();
        assert_eq!(body(&out), json!({"echo": "long", "spun": 400}));
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(
            during >= 10,
            "the runtime ticked {during} times during a {took:?} invocation"
        );
        // The instance is still good for short ones, which stay inline.
        let out = factory
            .invoke(&instance, request(json!({"echo": "after"})))
            .await
            .expect("invoke after a long one");
        assert_eq!(body(&out), json!({"echo": "after", "spun": 0}));
        // A handler that never returns still times out, and the instance is dead.
        let t0 = Instant::now();
        let err = factory
            .invoke(&instance, request(json!({"forever": true})))
            .await
            .expect_err("must time out");
        assert!(matches!(err, WorkerError::Timeout { .. }), "{err:?}");
        assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
        assert!(factory
            .invoke(&instance, request(json!({"echo": 1})))
            .await
            .is_err());
        factory.discard(instance);
    });
    rt.block_on(task).expect("the test task panicked");
}
