//! Measurements for docs/PERFORMANCE.md against a running `thaw serve` (ignored by default):
//! `THAW_BENCH_HTTP=127.0.0.1:9000 THAW_BENCH_GRPC=127.0.0.1:50051 cargo test --release -p
//! thaw-frontend --test bench_serve -- --ignored --nocapture`. `THAW_BENCH_READY=1,10` sets the
//! provisioned sizes timed to READY.
mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use thaw_frontend::proto::{self, thaw_client::ThawClient};
use tonic::codegen::{Body, Bytes, StdError};
use tonic::transport::Channel;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, v: &mut [f64]) {
    println!(
        "{what}: n={} p50 {:.1} us p99 {:.1} us",
        v.len(),
        pct(v, 0.5),
        pct(v, 0.99)
    );
}

async fn create(http: &Http, name: &str) {
    let _ = http.delete(&format!("/2015-03-31/functions/{name}")).await;
    let r = http
        .post_json(
            "/2015-03-31/functions",
            create_body(name, "hello", "app.handler"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(http.wait_state(name).await["State"], "Active");
}

/// Transport alone (DryRun: validates and resolves, runs nothing), then warm invokes of
/// `bench:1` with the worker-measured handler time subtracted.
async fn latency(http: &Http, grpc: &mut ThawClient<Channel>, client: &str) {
    const N: usize = 2000;
    let mut h_dry = Vec::new();
    for i in 0..N + 100 {
        let t0 = Instant::now();
        let r = http
            .invoke("bench:1", "{}", &[("x-amz-invocation-type", "DryRun")])
            .await;
        assert_eq!(r.status, 204);
        if i >= 100 {
            h_dry.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    report(&format!("[{client}] HTTP DryRun (no VM)"), &mut h_dry);
    let (mut h_total, mut h_over, mut handler) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..N + 100 {
        let t0 = Instant::now();
        let r = http.invoke("bench:1", "{}", &[]).await;
        let us = t0.elapsed().as_secs_f64() * 1e6;
        assert_eq!(r.status, 200);
        let d: f64 = r.header("x-thaw-duration-us").unwrap().parse().unwrap();
        if i >= 100 {
            h_total.push(us);
            h_over.push(us - d);
            handler.push(d);
        }
    }
    report(&format!("[{client}] HTTP warm invoke, total"), &mut h_total);
    report(
        &format!("[{client}] HTTP warm invoke, overhead (total - handler)"),
        &mut h_over,
    );
    report(
        &format!("[{client}] handler duration (worker-measured)"),
        &mut handler,
    );
    grpc_latency(grpc, client).await;
}

/// gRPC DryRun and warm invoke latency through any tonic transport.
async fn grpc_latency<T>(grpc: &mut ThawClient<T>, client: &str)
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    const N: usize = 2000;
    let mut g_dry = Vec::new();
    for i in 0..N + 100 {
        let t0 = Instant::now();
        grpc.invoke(proto::InvokeRequest {
            function_name: "bench".into(),
            qualifier: "1".into(),
            payload: b"{}".to_vec(),
            invocation_type: proto::InvocationType::DryRun.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        if i >= 100 {
            g_dry.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    report(&format!("[{client}] gRPC DryRun (no VM)"), &mut g_dry);
    let (mut g_total, mut g_over) = (Vec::new(), Vec::new());
    for i in 0..N + 100 {
        let t0 = Instant::now();
        let r = grpc
            .invoke(proto::InvokeRequest {
                function_name: "bench".into(),
                qualifier: "1".into(),
                payload: b"{}".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let us = t0.elapsed().as_secs_f64() * 1e6;
        if i >= 100 {
            g_total.push(us);
            g_over.push(us - r.handler_duration_us as f64);
        }
    }
    report(&format!("[{client}] gRPC warm invoke, total"), &mut g_total);
    report(
        &format!("[{client}] gRPC warm invoke, overhead (total - handler)"),
        &mut g_over,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_serve() {
    let (Ok(h), Ok(g)) = (
        std::env::var("THAW_BENCH_HTTP"),
        std::env::var("THAW_BENCH_GRPC"),
    ) else {
        println!("SKIPPED: set THAW_BENCH_HTTP and THAW_BENCH_GRPC");
        return;
    };
    let http = Http::new(h.parse().unwrap());
    let mut grpc = ThawClient::connect(format!("http://{g}")).await.unwrap();
    create(&http, "bench").await;
    assert_eq!(
        http.post_json("/2015-03-31/functions/bench/versions", json!({}))
            .await
            .status,
        201
    );
    http.wait_state("bench?Qualifier=1").await;
    http.put_json(
        "/2019-09-30/functions/bench/provisioned-concurrency?Qualifier=1",
        json!({"ProvisionedConcurrentExecutions": 2}),
    )
    .await;
    http.wait_provisioned("bench", "1").await;

    // Sequential latency, measured twice: from this 2-thread client runtime (the
    // client's own tasks hop between its threads), and from a single-threaded client
    // (one task, no hops: closer to what the server adds).
    latency(&http, &mut grpc, "2-thread client").await;
    // The same 2-thread runtime without tonic's `Channel` (whose buffer task takes
    // every call): a plain HTTP/2 client under the generated gRPC client.
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.set_nodelay(true);
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build::<_, tonic::body::Body>(tcp);
    let origin: tonic::codegen::http::Uri = format!("http://{g}").parse().unwrap();
    let mut direct = ThawClient::with_origin(h2, origin);
    grpc_latency(&mut direct, "2-thread client, unbuffered h2").await;
    let (h2, g2) = (h.clone(), g.clone());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let http = Http::new(h2.parse().unwrap());
                let mut grpc = ThawClient::connect(format!("http://{g2}")).await.unwrap();
                latency(&http, &mut grpc, "1-thread client").await;
            })
    })
    .join()
    .unwrap();

    // Throughput: 8 concurrent gRPC callers on the 2 provisioned instances + spillover.
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut c = grpc.clone();
            tokio::spawn(async move {
                let mut ok = 0u32;
                for _ in 0..500 {
                    let r = c
                        .invoke(proto::InvokeRequest {
                            function_name: "bench".into(),
                            qualifier: "1".into(),
                            payload: b"{}".to_vec(),
                            ..Default::default()
                        })
                        .await;
                    ok += u32::from(r.is_ok());
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "throughput: {ok} ok invokes (8 gRPC callers) in {secs:.2} s = {:.0} invokes/s",
        ok as f64 / secs
    );

    // Spillover: the first invoke of a fresh version starts an instance on demand.
    let mut spill = Vec::new();
    for i in 0..5 {
        let name = format!("bench-spill-{i}");
        create(&http, &name).await;
        let t0 = Instant::now();
        let r = http.invoke(&name, "{}", &[]).await;
        assert_eq!(r.status, 200);
        spill.push(t0.elapsed().as_secs_f64() * 1e6);
        http.delete(&format!("/2015-03-31/functions/{name}")).await;
    }
    spill.iter_mut().for_each(|v| *v /= 1000.0);
    println!(
        "spillover (cold start on demand, HTTP): {:?} ms",
        spill.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>()
    );

    // Time to READY.
    let sizes = std::env::var("THAW_BENCH_READY").unwrap_or_else(|_| "1,10".into());
    http.delete("/2019-09-30/functions/bench/provisioned-concurrency?Qualifier=1")
        .await;
    for n in sizes.split(',').map(|s| s.trim().parse::<u32>().unwrap()) {
        let name = format!("bench-ready-{n}");
        create(&http, &name).await;
        http.post_json(&format!("/2015-03-31/functions/{name}/versions"), json!({}))
            .await;
        http.wait_state(&format!("{name}?Qualifier=1")).await;
        let t0 = Instant::now();
        let r = http
            .put_json(
                &format!("/2019-09-30/functions/{name}/provisioned-concurrency?Qualifier=1"),
                json!({"ProvisionedConcurrentExecutions": n}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let v = http.wait_provisioned(&name, "1").await;
        println!(
            "provisioned {n} -> {} in {:.2} s {}",
            v["Status"],
            t0.elapsed().as_secs_f64(),
            v["StatusReason"].as_str().unwrap_or_default()
        );
        http.delete(&format!("/2015-03-31/functions/{name}")).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
