//! `thaw-net-bench`: outbound network from a function vs a bare host python3
//! ([`thaw_bench::net`]). Run:
//! `cargo run --release -p thaw-bench --bin thaw-net-bench -- [--requests 200] [--warmup 10]
//! [--tls 50] [--downloads 20] [--download-mb 10] [--memory-mb 512] [--python python3]
//! [--cache-dir DIR] [--out bench-out/net]`
#![forbid(unsafe_code)]
use anyhow::{bail, Context};
use thaw_bench::net::{markdown, run, NetBenchConfig};

fn main() -> anyhow::Result<()> {
    let mut cfg = NetBenchConfig {
        requests: 200,
        warmup: 10,
        tls_requests: 50,
        downloads: 20,
        download_bytes: 10 << 20,
        memory_mb: 512,
        python: "python3".into(),
        cache_dir: std::env::temp_dir().join("thaw-test-cache"),
        out: "bench-out/net".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .with_context(|| format!("bad number {v:?}"))
        };
        match flag.as_str() {
            "--requests" => cfg.requests = number(value()?)?,
            "--warmup" => cfg.warmup = number(value()?)?,
            "--tls" => cfg.tls_requests = number(value()?)?,
            "--downloads" => cfg.downloads = number(value()?)?,
            "--download-mb" => cfg.download_bytes = number(value()?)? << 20,
            "--memory-mb" => cfg.memory_mb = u32::try_from(number(value()?)?)?,
            "--python" => cfg.python = value()?,
            "--cache-dir" => cfg.cache_dir = value()?.into(),
            "--out" => cfg.out = value()?.into(),
            other => bail!("unknown argument {other:?} (see the file's doc comment)"),
        }
    }
    let report = run(&cfg)?;
    println!("function boot + init: {:.0} ms\n", report.boot_ms);
    print!("{}", markdown(&report));
    println!("\nwritten to {}", cfg.out.display());
    Ok(())
}
