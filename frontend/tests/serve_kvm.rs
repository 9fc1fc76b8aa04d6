//! `thaw serve` as a process on real microVMs (skipped without /dev/kvm): the boto3 black-box
//! test (tests/python/test_boto3.py, skipped without python3 + boto3), and a kill -9 with async
//! events queued followed by a restart that runs every one of them.
mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key pair the servers below are configured with.
const KEY: &str = "AKIDSERVEKVM";
const SECRET: &str = "serve-kvm/secret";

/// A `thaw serve` child on free ports, requiring SigV4 with [`KEY`] / [`SECRET`].
struct Server {
    child: Child,
    http: String,
}

impl Server {
    fn start(data: &Path) -> Self {
        // Share the user's precompiled CPython module if there is one (compiling takes ~30 s).
        let config = data.join("thaw.toml");
        let shared = std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".thaw/cache/modules"))
            .filter(|p| p.is_dir());
        let mut text = shared.map_or(String::new(), |p| {
            format!("module_cache = {:?}\n", p.display().to_string())
        });
        text.push_str(&format!(
            "[auth]\ncredentials = [{{ access_key_id = \"{KEY}\", secret_access_key = \"{SECRET}\" }}]\n"
        ));
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_thaw"))
            .args([
                "serve",
                "--http",
                "127.0.0.1:0",
                "--grpc",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&config)
            .arg("--data")
            .arg(data)
            .env("THAW_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn thaw serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("thaw serve printed nothing").unwrap();
        // "thaw serve: http://ADDR grpc://ADDR data DIR"
        let http = first
            .split_whitespace()
            .nth(2)
            .expect("address line")
            .trim_start_matches("http://")
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        Self { child, http }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.http.parse().unwrap()
    }

    /// A client that signs its requests.
    fn client(&self) -> Http {
        Http::signed(self.addr(), KEY, SECRET)
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("thaw serve ignored SIGTERM");
    }
}

fn has_runtime() -> bool {
    thaw_worker::runtime::default_runtime_dir()
        .join(thaw_worker::runtime::PYTHON_WASM)
        .exists()
}

#[test]
fn boto3_black_box() {
    if !thaw_vmm::kvm_or_skip("boto3_black_box") || !has_runtime() {
        return;
    }
    let boto3 = Command::new("python3")
        .args(["-c", "import boto3"])
        .status()
        .is_ok_and(|s| s.success());
    if !boto3 {
        println!("SKIPPED: python3 with boto3 not installed (pip install boto3)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_boto3.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(format!("http://{}", server.http))
        .env("THAW_ACCESS_KEY_ID", KEY)
        .env("THAW_SECRET_ACCESS_KEY", SECRET)
        .status()
        .unwrap();
    server.stop();
    assert!(status.success(), "boto3 test failed");
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
