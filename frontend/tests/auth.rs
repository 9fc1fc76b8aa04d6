//! Authentication over the fake backend: botocore's real SigV4 signer against `[auth]`
//! credentials (tests/python/test_sigv4.py: good key, wrong key, wrong secret, stale and future
//! dates, tampered body, unsigned, UNSIGNED-PAYLOAD, /metrics bearer), the gRPC bearer secret, and
//! the refusal to serve anonymously on a non-loopback address.
mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use thaw_frontend::auth::Secret;
use thaw_frontend::config::{Config, CredentialConfig};
use thaw_frontend::proto::{self, thaw_client::ThawClient};
use thaw_frontend::serve::StartError;

const KEY: &str = "AKIDTHAWTEST0001";
const SECRET: &str = "thaw-test/secret+key=0001";

fn signed_config() -> Config {
    let mut c = test_config();
    c.auth.credentials = vec![CredentialConfig {
        access_key_id: KEY.into(),
        secret_access_key: Secret::new(SECRET),
    }];
    c
}

fn has_boto3() -> bool {
    Command::new("python3")
        .args(["-c", "import boto3"])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botocore_signatures_are_verified() {
    if !has_boto3() {
        println!("SKIPPED: python3 with boto3 not installed (pip install boto3)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), signed_config()).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_sigv4.py");
    let endpoint = format!("http://{}", server.http);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .args([&endpoint, KEY, SECRET])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "test_sigv4.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("sigv4: all checks passed"), "{stdout}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_http_requests_get_lambda_error_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), signed_config()).await;
    let http = Http::new(server.http);
    let r = http.get("/2015-03-31/functions").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("MissingAuthenticationTokenException")
    );
    assert!(r.header("x-amzn-requestid").is_some());
    let r = http
        .req(
            "POST",
            "/2015-03-31/functions/f/invocations",
            &[
                ("authorization", "AWS4-HMAC-SHA256 garbage"),
                ("x-amz-date", "20261202T150000Z"),
            ],
            "{}",
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("IncompleteSignatureException")
    );
    assert!(r.json()["message"].as_str().unwrap().contains("Credential"));
    // Unknown routes are not an oracle either.
    assert_eq!(http.get("/nope").await.status, 403);
    assert_eq!(http.get("/health").await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_need_the_bearer_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), signed_config()).await;
    let stats = || tonic::Request::new(proto::StatsRequest {});
    let mut client = ThawClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let err = client.stats(stats()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        err.metadata().get("x-amzn-errortype").unwrap(),
        "MissingAuthenticationTokenException"
    );
    for (token, ok) in [
        (format!("Bearer {KEY}:{SECRET}"), true),
        (format!("Bearer {KEY}:{SECRET}x"), false),
        (format!("Bearer OTHER:{SECRET}"), false),
    ] {
        let mut req = stats();
        req.metadata_mut()
            .insert("authorization", token.parse().unwrap());
        let r = client.stats(req).await;
        assert_eq!(r.is_ok(), ok, "{token}: {r:?}");
        if let Err(e) = r {
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
            assert_eq!(
                e.metadata().get("x-amzn-errortype").unwrap(),
                "UnrecognizedClientException"
            );
            assert!(!e.message().contains(SECRET));
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_service_only_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let kv = || -> std::sync::Arc<dyn thaw_snapshotter::KvStore> {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("registry{i}"));
        std::sync::Arc::new(thaw_snapshotter::RocksKv::open(&path).unwrap())
    };
    let backend = || thaw_frontend::fake::FakeBackend::new(64 << 20);
    let mut open = test_config();
    open.http = "0.0.0.0:0".into();
    let err = thaw_frontend::serve::start(open.clone(), backend(), kv())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartError::AnonymousNotLoopback { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("allow_anonymous"), "{err}");
    // Explicitly allowed, or with credentials, it starts.
    let mut allowed = open.clone();
    allowed.auth.allow_anonymous = true;
    let running = thaw_frontend::serve::start(allowed, backend(), kv())
        .await
        .unwrap();
    running.shutdown().await;
    let mut signed = signed_config();
    signed.http = "0.0.0.0:0".into();
    let running = thaw_frontend::serve::start(signed, backend(), kv())
        .await
        .unwrap();
    running.shutdown().await;
}
