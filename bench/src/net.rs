//! Outbound network from a function, side by side with a bare host `python3`
//! running the same client code (`net/client.py`) against the same loopback
//! servers ([`server`]). Binary: `thaw-net-bench` (see `bench/README.md`).
//!
//! A run:
//! 1. makes the `/big` body (deterministic bytes, Adler-32 known), starts the
//!    HTTP and HTTPS servers on 127.0.0.1 and a test CA;
//! 2. boots the client as a function (`Instance::boot`, egress allowed to the
//!    two servers only) and installs a [`Counting`] socket host, so every `Net`
//!    hypercall (one VM exit each) is counted per op;
//! 3. starts `python3 client.py` on the host (events on stdin, one per line) and
//!    waits until its imports are done;
//! 4. for each variant (`no_network`: the keep-alive loop against an in-memory
//!    socket, i.e. CPython's own cost; `keepalive`; `new_connection`;
//!    `download`; `tls`) runs its whole loop in ONE call on each side (host first,
//!    then the function): each request is timed inside Python with
//!    `time.perf_counter_ns`; the invoke's wall time and the `Net` calls it made
//!    are recorded too;
//! 5. summarises (p50/p90/p99, ratio function/host) and writes `net-report.json`
//!    and `net-report.md` into the output directory.
pub mod server;

use crate::stats::Summary;
use anyhow::{bail, Context};
use serde::Serialize;
use server::{Pki, Server};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thaw_abi::net::op;
use thaw_net::{NetConfig, NetContext, Sockets};
use thaw_vmm::{NetCall, NetHost, NetReply};
use thaw_worker::{FunctionCode, FunctionSpec, Instance, InvokeRequest, Runtime};

/// The client both sides run.
pub const CLIENT: &str = include_str!("net/client.py");

/// What to measure.
#[derive(Debug, Clone)]
pub struct NetBenchConfig {
    /// Requests per latency variant (after `warmup`).
    pub requests: usize,
    /// Unmeasured requests before each variant's loop.
    pub warmup: usize,
    /// TLS handshakes + requests.
    pub tls_requests: usize,
    /// Downloads of the `/big` body.
    pub downloads: usize,
    /// Size of the `/big` body in bytes.
    pub download_bytes: usize,
    pub memory_mb: u32,
    /// The host interpreter.
    pub python: String,
    /// Where the compiled CPython module is cached.
    pub cache_dir: PathBuf,
    pub out: PathBuf,
}

/// Names of the `Net` ops, indexed by op code.
const OP_NAMES: [&str; op::LAST as usize + 1] = [
    "?",
    "socket",
    "socketpair",
    "connect",
    "send",
    "recv",
    "shutdown",
    "close",
    "poll",
    "resolve",
    "start_tls",
    "handshake",
    "getopt",
    "setopt",
];

/// A socket host that counts the calls it serves, per op.
#[derive(Debug)]
pub struct Counting {
    inner: Sockets,
    calls: Arc<[AtomicU64; op::LAST as usize + 1]>,
}

impl NetHost for Counting {
    fn call(&mut self, call: NetCall<'_>) -> NetReply {
        if let Some(c) = self.calls.get(call.op as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.call(call)
    }

    fn begin_invocation(&mut self) {
        self.inner.begin_invocation();
    }
}

/// One variant, both sides.
#[derive(Debug, Clone, Serialize)]
pub struct VariantResult {
    pub name: String,
    /// Per-request time inside Python, milliseconds.
    pub function_ms: Summary,
    pub host_ms: Summary,
    /// Function p50 / host p50.
    pub ratio_p50: f64,
    /// Wall time of the one invoke that ran the loop (warmup included).
    pub invoke_ms: f64,
    /// The same loop's wall time in the host process (writing the event to
    /// reading the answer).
    pub host_call_ms: f64,
    /// `Net` hypercalls per request (warmup included), and per op over the loop.
    pub net_calls_per_request: f64,
    pub net_calls: Vec<(String, u64)>,
    /// Throughput at the p50 time (download only), MB/s (10^6 bytes).
    pub function_mb_s: Option<f64>,
    pub host_mb_s: Option<f64>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct NetReport {
    pub requests: usize,
    pub warmup: usize,
    pub download_bytes: usize,
    pub boot_ms: f64,
    pub python: String,
    pub variants: Vec<VariantResult>,
}

/// The host python3 process running the client.
struct HostClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl HostClient {
    fn start(python: &str, dir: &std::path::Path) -> anyhow::Result<Self> {
        let mut child = Command::new(python)
            .arg("app.py")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {python}"))?;
        let stdin = child.stdin.take().context("python stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("python stdout")?);
        // Imports done: calls time the loops, not the interpreter's start.
        let mut ready = String::new();
        stdout.read_line(&mut ready)?;
        if ready.trim() != "ready" {
            bail!("{python} did not start the client: {ready:?}");
        }
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    fn call(&mut self, event: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        writeln!(self.stdin, "{event}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("host python exited");
        }
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for HostClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic download bytes.
fn body(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Adler-32 (Python's `zlib.adler32`).
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

fn samples_ms(answer: &serde_json::Value) -> anyhow::Result<Vec<f64>> {
    let v = answer["samples_ns"]
        .as_array()
        .with_context(|| format!("no samples in {answer}"))?;
    Ok(v.iter()
        .filter_map(serde_json::Value::as_f64)
        .map(|ns| ns / 1e6)
        .collect())
}

/// Runs the benchmark (see the module doc).
pub fn run(cfg: &NetBenchConfig) -> anyhow::Result<NetReport> {
    // 1. Servers and the CA.
    let big = Arc::new(body(cfg.download_bytes));
    let checksum = adler32(&big);
    let pki = Pki::generate()?;
    let http = Server::http(big.clone())?;
    let https = Server::https(big, &pki)?;
    std::fs::create_dir_all(&cfg.out)?;
    let dir = cfg.out.join("function");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("app.py"), CLIENT)?;
    let ca = cfg.out.join("bench-ca.pem");
    std::fs::write(&ca, &pki.ca_pem)?;

    // 2. The function.
    let runtime = Runtime::python(&thaw_worker::runtime::default_runtime_dir(), &cfg.cache_dir)
        .map_err(|e| anyhow::anyhow!(thaw_worker::error::error_chain(&e)))?;
    let ctx = NetContext::new(&NetConfig {
        allow: vec![http.addr.to_string(), https.addr.to_string()],
        ca_bundle: Some(ca),
        ..Default::default()
    })?;
    let mut spec = FunctionSpec::new("net-bench", "app.handler", FunctionCode::load(&dir)?);
    spec.memory_mb = cfg.memory_mb;
    spec.timeout = Duration::from_secs(600);
    spec.net = Some(ctx.clone());
    let t0 = Instant::now();
    let (mut instance, _) = Instance::boot(&runtime, Arc::new(spec))
        .map_err(|e| anyhow::anyhow!(thaw_worker::error::error_chain(&e)))?;
    let boot_ms = crate::stats::ms(t0.elapsed());
    let calls: Arc<[AtomicU64; op::LAST as usize + 1]> = Arc::new(Default::default());
    instance.vm_mut().set_net(Box::new(Counting {
        inner: Sockets::new(&ctx),
        calls: calls.clone(),
    }));

    // 3. The host process.
    let mut host = HostClient::start(&cfg.python, &dir)?;

    // 4. The variants.
    let base = serde_json::json!({
        "host": "127.0.0.1",
        "port": http.addr.port(),
        "tls_port": https.addr.port(),
        "cadata": pki.ca_pem,
        "size": cfg.download_bytes,
        "adler32": checksum,
    });
    let downloads_warmup = 1;
    let plan = [
        ("no_network", cfg.requests, cfg.warmup),
        ("keepalive", cfg.requests, cfg.warmup),
        ("new_connection", cfg.requests, cfg.warmup),
        ("download", cfg.downloads, downloads_warmup),
        ("tls", cfg.tls_requests, cfg.warmup.min(5)),
    ];
    let mut variants = Vec::new();
    for (name, n, warmup) in plan {
        let mut event = base.clone();
        event["variant"] = name.into();
        event["n"] = n.into();
        event["warmup"] = warmup.into();
        let t = Instant::now();
        let host_answer = host.call(&event)?;
        let host_call_ms = crate::stats::ms(t.elapsed());

        let before: Vec<u64> = calls.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let t = Instant::now();
        let out = instance
            .invoke(&InvokeRequest {
                payload: event.to_string().into_bytes(),
                ..Default::default()
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}\nlog:\n{}",
                    thaw_worker::error::error_chain(&e),
                    String::from_utf8_lossy(e.log())
                )
            })?;
        let invoke_ms = crate::stats::ms(t.elapsed());
        if out.function_error {
            bail!("{name}: {}", String::from_utf8_lossy(&out.body));
        }
        let answer: serde_json::Value = serde_json::from_slice(&out.body)?;
        let net_calls: Vec<(String, u64)> = calls
            .iter()
            .zip(before)
            .enumerate()
            .map(|(i, (c, b))| (OP_NAMES[i].to_string(), c.load(Ordering::Relaxed) - b))
            .filter(|(_, n)| *n > 0)
            .collect();
        let total: u64 = net_calls.iter().map(|(_, n)| n).sum();

        let function_ms = Summary::of(&samples_ms(&answer)?);
        let host_ms = Summary::of(&samples_ms(&host_answer)?);
        let mb_s = |s: &Summary| cfg.download_bytes as f64 / 1e6 / (s.p50 / 1e3);
        let download = name == "download";
        variants.push(VariantResult {
            name: name.to_string(),
            ratio_p50: function_ms.p50 / host_ms.p50,
            function_mb_s: download.then(|| mb_s(&function_ms)),
            host_mb_s: download.then(|| mb_s(&host_ms)),
            function_ms,
            host_ms,
            invoke_ms,
            host_call_ms,
            net_calls_per_request: total as f64 / (n + warmup) as f64,
            net_calls,
        });
    }
    let report = NetReport {
        requests: cfg.requests,
        warmup: cfg.warmup,
        download_bytes: cfg.download_bytes,
        boot_ms,
        python: cfg.python.clone(),
        variants,
    };
    // 5. Files.
    std::fs::write(
        cfg.out.join("net-report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(cfg.out.join("net-report.md"), markdown(&report))?;
    Ok(report)
}

/// The report as a Markdown table.
pub fn markdown(r: &NetReport) -> String {
    let mut s = String::from(
        "| variant | n | function p50 / p90 / p99 ms | host python3 p50 / p90 / p99 ms | p50 ratio | invoke wall ms (host loop ms) | Net calls / request |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for v in &r.variants {
        let f = &v.function_ms;
        let h = &v.host_ms;
        s += &format!(
            "| {} | {} | {:.3} / {:.3} / {:.3} | {:.3} / {:.3} / {:.3} | {:.2}x | {:.0} ({:.0}) | {:.1} |\n",
            v.name, f.n, f.p50, f.p90, f.p99, h.p50, h.p90, h.p99, v.ratio_p50, v.invoke_ms,
            v.host_call_ms, v.net_calls_per_request
        );
    }
    for v in &r.variants {
        if let (Some(f), Some(h)) = (v.function_mb_s, v.host_mb_s) {
            s += &format!(
                "\n{}: {} bytes, function {f:.0} MB/s, host {h:.0} MB/s ({:.0}% of host)\n",
                v.name,
                r.download_bytes,
                100.0 * f / h
            );
        }
    }
    s += "\nNet calls per op over each loop:\n";
    for v in &r.variants {
        let ops: Vec<String> = v
            .net_calls
            .iter()
            .map(|(o, n)| format!("{o} {n}"))
            .collect();
        s += &format!("- {}: {}\n", v.name, ops.join(", "));
    }
    s
}
