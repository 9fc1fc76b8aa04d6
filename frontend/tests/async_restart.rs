//! Async invokes: 202 only once stored; retried twice on function error; never lost across a
//! restart (events queued while throttled run after the server comes back).
mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

async fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_events_retry_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    assert_eq!(
        http.post_json(
            "/2015-03-31/functions",
            create_body("ev", "hello", "app.handler")
        )
        .await
        .status,
        201
    );
    http.wait_state("ev").await;

    // A failing event runs 3 times (1 + 2 retries), then is dropped.
    let r = http
        .invoke(
            "ev",
            r#"{"fail": "x"}"#,
            &[("x-amz-invocation-type", "Event")],
        )
        .await;
    assert_eq!(r.status, 202);
    let count = |b: &thaw_frontend::fake::FakeBackend, needle: &str| {
        b.invoked()
            .iter()
            .filter(|p| String::from_utf8_lossy(p).contains(needle))
            .count()
    };
    wait_until(|| server.service.queued_events() == 0).await;
    assert_eq!(count(&backend, "fail"), 3);

    // Throttle everything, queue 20 events, stop the server with them still stored.
    assert_eq!(
        http.put_json(
            "/2017-10-31/functions/ev/concurrency",
            json!({"ReservedConcurrentExecutions": 0})
        )
        .await
        .status,
        200
    );
    for i in 0..20 {
        let r = http
            .invoke(
                "ev",
                &format!(r#"{{"n": {i}}}"#),
                &[("x-amz-invocation-type", "Event")],
            )
            .await;
        assert_eq!(r.status, 202);
    }
    assert_eq!(server.service.queued_events(), 20);
    server.shutdown().await;
    drop(http);
    // Let the old executor's tasks drop before the registry reopens (RocksDB takes a lock).
    let running = server_guard_drop();
    running.await;

    // Restart: the events are still there; lifting the throttle runs every one.
    let (server, backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    assert_eq!(server.service.queued_events(), 20);
    assert_eq!(
        http.delete("/2017-10-31/functions/ev/concurrency")
            .await
            .status,
        204
    );
    wait_until(|| server.service.queued_events() == 0).await;
    for i in 0..20 {
        assert!(
            count(&backend, &format!(r#""n": {i}}}"#)) >= 1,
            "event {i} never ran: {:?}",
            backend.invoked().len()
        );
    }
    server.shutdown().await;
}

fn server_guard_drop() -> impl std::future::Future<Output = ()> {
    tokio::time::sleep(Duration::from_millis(100))
}
