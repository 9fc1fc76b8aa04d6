//! `[timeouts]` on both listeners over the fake backend: half a request line, an idle keep-alive
//! connection and half an HTTP/2 preface are closed; an invocation that runs longer than the idle
//! timeout keeps its connection.
mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config() -> thaw_frontend::config::Config {
    let mut c = test_config();
    c.timeouts.header_read_s = 1;
    c.timeouts.idle_s = 2;
    c
}

/// Reads until the server closes the connection; how long that took (panics after `limit`).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t0.elapsed()), stream.read(&mut buf)).await
        {
            Err(_) => panic!("connection still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (t0.elapsed(), got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_line_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), config()).await;
    let mut s = TcpStream::connect(server.http).await.unwrap();
    s.write_all(b"GET /2015-03-31/functi").await.unwrap();
    let (after, _) = closed_within(&mut s, Duration::from_secs(10)).await;
    assert!(after >= Duration::from_millis(900), "{after:?}");

    // A keep-alive connection that sends nothing after its first response is closed too.
    let mut s = TcpStream::connect(server.http).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (after, got) = closed_within(&mut s, Duration::from_secs(10)).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(after >= Duration::from_millis(900), "{after:?}");

    // gRPC: half of the HTTP/2 connection preface.
    let mut s = TcpStream::connect(server.grpc).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let (after, _) = closed_within(&mut s, Duration::from_secs(10)).await;
    assert!(after >= Duration::from_millis(1900), "{after:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_invocation_outlives_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), config()).await;
    let http = Http::new(server.http);
    let mut body = create_body("slow", "hello", "app.handler");
    body["Timeout"] = 30.into();
    assert_eq!(
        http.post_json("/2015-03-31/functions", body).await.status,
        201
    );
    assert_eq!(http.wait_state("slow").await["State"], "Active");
    let t0 = Instant::now();
    let r = http.invoke("slow", r#"{"sleep_ms": 3500}"#, &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(t0.elapsed() >= Duration::from_millis(3500));
    assert_eq!(r.json()["echo"]["sleep_ms"], 3500);
    server.shutdown().await;
}
