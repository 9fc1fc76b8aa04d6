//! A bounded load test on loopback: 200 invokes from 8 concurrent tasks against a function with
//! reserved concurrency 4 and a 5 ms handler, within a fixed time; only 200s and 429s come back,
//! and both occur.
mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_load_sees_only_successes_and_throttles() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    assert_eq!(
        http.post_json(
            "/2015-03-31/functions",
            create_body("load", "hello", "app.handler")
        )
        .await
        .status,
        201
    );
    http.wait_state("load").await;
    assert_eq!(
        http.put_json(
            "/2017-10-31/functions/load/concurrency",
            json!({"ReservedConcurrentExecutions": 4})
        )
        .await
        .status,
        200
    );

    let t0 = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let http = http.clone();
            tokio::spawn(async move {
                let mut codes = Vec::new();
                for _ in 0..25 {
                    codes.push(http.invoke("load", r#"{"sleep_ms": 5}"#, &[]).await.status);
                }
                codes
            })
        })
        .collect();
    let mut ok = 0;
    let mut throttled = 0;
    for t in tasks {
        for code in tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("load test within 60 s")
            .unwrap()
        {
            match code {
                200 => ok += 1,
                429 => throttled += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    eprintln!("load: {ok} ok, {throttled} throttled in {:?}", t0.elapsed());
    assert_eq!(ok + throttled, 200);
    assert!(
        ok > 0 && throttled > 0,
        "reserved 4 < 8 callers must throttle some: {ok} ok {throttled} throttled"
    );
    server.shutdown().await;
}
