//! `thaw serve` as a process on real microVMs (skipped without /dev/kvm): the boto3 black-box
//! tests (tests/python/test_boto3.py and test_deploy_api.py, which also drives the aws cli;
//! skipped without python3 + boto3), and a kill -9 with async
//! events queued followed by a restart that runs every one of them.
mod common;

use common::server::{has_runtime, Server, KEY, SECRET};
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `tests/python/<script>` against a fresh `thaw serve`; `false` when skipped.
fn run_python_black_box(test: &str, script: &str) -> bool {
    if !thaw_vmm::kvm_or_skip(test) || !has_runtime() {
        return false;
    }
    let boto3 = Command::new("python3")
        .args(["-c", "import boto3"])
        .status()
        .is_ok_and(|s| s.success());
    if !boto3 {
        println!("SKIPPED: python3 with boto3 not installed (pip install boto3)");
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let status = Command::new("python3")
        .arg(script)
        .arg(format!("http://{}", server.http))
        .env("THAW_ACCESS_KEY_ID", KEY)
        .env("THAW_SECRET_ACCESS_KEY", SECRET)
        .status()
        .unwrap();
    server.stop();
    assert!(status.success(), "{test}: the python black-box test failed");
    true
}

#[test]
fn boto3_black_box() {
    run_python_black_box("boto3_black_box", "test_boto3.py");
}

/// The deploy-tool operations (issue 13) with boto3 and the aws cli v1 and v2.
#[test]
fn deploy_api_black_box() {
    run_python_black_box("deploy_api_black_box", "test_deploy_api.py");
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn kill9_with_queued_events_then_restart_runs_them_all() {
    if !thaw_vmm::kvm_or_skip("kill9_with_queued_events_then_restart_runs_them_all")
        || !has_runtime()
    {
        return;
    }
    const N: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Server::start(dir.path());
    let http = server.client();
    rt.block_on(async {
        assert_eq!(
            http.post_json(
                "/2015-03-31/functions",
                create_body("k9", "hello", "app.handler")
            )
            .await
            .status,
            201
        );
        assert_eq!(http.wait_state("k9").await["State"], "Active");
        assert_eq!(
            http.put_json(
                "/2017-10-31/functions/k9/concurrency",
                json!({"ReservedConcurrentExecutions": 0})
            )
            .await
            .status,
            200
        );
        for i in 0..N {
            let r = http
                .invoke(
                    "k9",
                    &format!(r#"{{"n": {i}}}"#),
                    &[("x-amz-invocation-type", "Event")],
                )
                .await;
            assert_eq!(r.status, 202);
        }
    });
    server.kill9();

    let server = Server::start(dir.path());
    let http = server.client();
    rt.block_on(async {
        let m = String::from_utf8(http.get("/metrics").await.body).unwrap();
        assert_eq!(
            metric(&m, "thaw_async_queue_depth"),
            N as f64,
            "events survived kill -9"
        );
        assert_eq!(
            http.delete("/2017-10-31/functions/k9/concurrency")
                .await
                .status,
            204
        );
        let t0 = Instant::now();
        loop {
            let m = String::from_utf8(http.get("/metrics").await.body).unwrap();
            if metric(&m, "thaw_async_queue_depth") == 0.0 {
                assert!(
                    metric(&m, "thaw_async_events_total{outcome=\"succeeded\"") >= N as f64,
                    "{m}"
                );
                assert!(
                    metric(&m, "faas_invocations_total{function=\"k9\"") >= N as f64,
                    "{m}"
                );
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "events did not all run: {m}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    server.stop();
}
