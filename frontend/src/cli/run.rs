//! `thaw run`: boot (or restore) one instance, invoke it, print the result JSON on
//! stdout (exit 0) or the error JSON (exit 1); phase timings go to stderr.
use super::worker::{fail, load_spec, open_worker, SpecArgs};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use thaw_worker::{Instance, InvokeRequest, MemoryMode, StartTimings};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Event JSON passed to the handler.
    #[arg(long, default_value = "{}")]
    pub event: String,
    /// Invoke the same instance N times and print warm p50/p99 on stderr.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Restore from this snapshot (see `thaw snapshot`) instead of booting.
    #[arg(long)]
    pub from_snapshot: Option<String>,
    /// Memory mode of the restore: boot, eager, mmap, uffd, uffd+prefetch, shared.
    #[arg(long, default_value = "eager")]
    pub mode: MemoryMode,
    /// Data directory (module cache, snapshot store).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Let the function connect to HOST:PORT (repeatable; `*.example.com:443`,
    /// `10.0.0.0/8:*` and `[::1]:8080` work too). Without it nothing leaves the host.
    #[arg(long = "allow-net", value_name = "HOST:PORT")]
    pub allow_net: Vec<String>,
    /// Extra CA certificates (PEM) the function's TLS trusts besides the system roots.
    #[arg(long, value_name = "PEM")]
    pub ca_bundle: Option<PathBuf>,
    /// Write the restore's timings and the first invocation's duration to FILE as JSON
    /// (`thaw bench`'s `fresh-process` scenario reads it).
    #[arg(long, value_name = "FILE")]
    pub timings_json: Option<PathBuf>,
}

/// The network context `--allow-net` / `--ca-bundle` describe.
fn net_context(args: &RunArgs) -> anyhow::Result<thaw_net::NetContext> {
    let config = thaw_net::NetConfig {
        allow: args.allow_net.clone(),
        ca_bundle: args.ca_bundle.clone(),
        ..Default::default()
    };
    thaw_net::NetContext::new(&config).context("bad --allow-net or --ca-bundle")
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn print_start(t: &StartTimings, mode: MemoryMode) {
    match t {
        StartTimings::Boot(t) => eprintln!(
            "cold boot: vm_create {} | load {} | runtime_init {} | function_init {} | to_ready {} | total {}",
            ms(t.vm_create),
            ms(t.load),
            ms(t.runtime_init),
            ms(t.function_init),
            ms(t.to_ready),
            ms(t.total)
        ),
        StartTimings::Restore(t) => eprintln!(
            "restore ({mode}): memory {} | vm+state {} | total {}",
            ms(t.memory),
            ms(t.vm_restore),
            ms(t.total)
        ),
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if !(args.spec.timeout > 0.0 && args.spec.timeout.is_finite()) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let net = net_context(&args)?;
    let (mut instance, start, mode, worker) = if let Some(id) = &args.from_snapshot {
        let id: thaw_snapshotter::SnapshotId = id
            .parse()
            .map_err(|e| anyhow::anyhow!("bad snapshot id {id:?}: {e}"))?;
        let mut worker = open_worker(args.data.clone())?;
        worker.set_net(net);
        let snap = match worker.open_snapshot(&id, None) {
            Ok(s) => s,
            Err(e) => return Ok(fail(&e)),
        };
        match worker.restore(&snap, args.mode) {
            Ok((i, t)) => (i, t, args.mode, worker),
            Err(e) => return Ok(fail(&e)),
        }
    } else {
        if args.spec.code.is_none() {
            anyhow::bail!("give the function code (a zip or directory) or --from-snapshot ID");
        }
        let spec = match load_spec(&args.spec) {
            Ok(s) => s,
            Err(e) => return Ok(fail(&e)),
        };
        let mut worker = open_worker(args.data.clone()).context("opening the worker")?;
        worker.set_net(net);
        let m = &worker.runtime().module;
        eprintln!(
            "module: {} ({} bytes in {})",
            if m.cache_hit {
                "cache hit"
            } else {
                "compiled (cache miss)"
            },
            m.len(),
            ms(m.elapsed)
        );
        match worker.boot(Arc::new(spec)) {
            Ok((i, t)) => (i, StartTimings::Boot(t), MemoryMode::Boot, worker),
            Err(e) => return Ok(fail(&e)),
        }
    };
    eprint!("{}", String::from_utf8_lossy(&instance.init_log));
    print_start(&start, mode);
    let timings = args.timings_json.as_deref().map(|p| (p, &start));
    let code = invoke_loop(&mut instance, args.event.into_bytes(), args.repeat, timings);
    // A lazy restore started building the runtime's shared module image or the snapshot's
    // working-set image (hugetlbfs files later processes map): let them finish rather
    // than leave a half-built one behind.
    worker.wait_module_images();
    worker.wait_working_set_images();
    code
}

/// Writes `--timings-json`: a restore's phases and the first invocation.
fn write_timings(
    path: &std::path::Path,
    start: &StartTimings,
    first: Duration,
) -> anyhow::Result<()> {
    let StartTimings::Restore(t) = start else {
        anyhow::bail!("--timings-json needs --from-snapshot (a cold boot has no restore timings)");
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let out = thaw_bench::fresh::FreshRunTimings {
        memory_ms: ms(t.memory),
        vm_restore_ms: ms(t.vm_restore),
        restore_ms: ms(t.total),
        first_invoke_ms: ms(first),
    };
    std::fs::write(path, serde_json::to_vec(&out)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn invoke_loop(
    instance: &mut Instance,
    payload: Vec<u8>,
    repeat: u32,
    timings: Option<(&std::path::Path, &StartTimings)>,
) -> anyhow::Result<ExitCode> {
    let req = InvokeRequest {
        payload,
        ..Default::default()
    };
    let mut durations = Vec::new();
    let mut last = None;
    for _ in 0..repeat.max(1) {
        match instance.invoke(&req) {
            Ok(out) => {
                durations.push(out.duration);
                last = Some(out);
            }
            Err(e) => return Ok(fail(&e)),
        }
    }
    let out = last.expect("at least one invocation ran");
    eprint!("{}", String::from_utf8_lossy(&out.log));
    eprintln!("first invoke: {}", ms(durations[0]));
    if let Some((path, start)) = timings {
        write_timings(path, start, durations[0])?;
    }
    eprintln!(
        "max memory used: {} MiB (of MemorySize {} MiB)",
        out.max_memory_used.div_ceil(1 << 20),
        instance.spec().memory_mb
    );
    if durations.len() > 1 {
        let warm = &mut durations[1..];
        warm.sort();
        let pct = |p: f64| warm[((warm.len() as f64 - 1.0) * p).round() as usize];
        eprintln!(
            "warm invokes: n={} p50 {} p99 {}",
            warm.len(),
            ms(pct(0.5)),
            ms(pct(0.99))
        );
    }
    println!("{}", String::from_utf8_lossy(&out.body));
    Ok(if out.function_error {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
