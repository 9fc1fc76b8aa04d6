//! thaw-bench: the cold-start benchmark harness behind `thaw bench`.
//!
//! A run:
//! 1. opens the worker (runtime, store; with `--cache evicted` the store's decompressed-chunk
//!    cache is off) and takes a fresh snapshot of the function;
//! 2. runs each scenario `warmup` times unmeasured, then `iterations` times (see
//!    [`scenario`] and [`provisioned`]), behind a progress bar;
//! 3. with `sweep_memory`, snapshots the function at each guest size and measures every selected
//!    restore mode there;
//! 4. summarises (percentiles, phase medians, pager and memory medians), computes ratios within
//!    the run and checks DESIGN.md's targets ([`report`]);
//! 5. writes `report.json`, `report.md` and the SVG charts ([`charts`]) into the output directory.
//!
//! Comparisons are only made within one run: these machines are noisy.
#![forbid(unsafe_code)]
pub mod cache;
pub mod charts;
pub mod ctx;
pub mod fleet;
pub mod fresh;
pub mod net;
pub mod provisioned;
pub mod report;
pub mod sample;
pub mod scenario;
pub mod stats;

use anyhow::Context;
use ctx::Ctx;
use indicatif::{ProgressBar, ProgressStyle};
use report::{Report, ScenarioResult, SweepPoint, Target};
use sample::Sample;
use scenario::Scenario;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thaw_snapshotter::{SnapshotId, Store, StoreOptions};
use thaw_worker::{
    DataDir, FunctionCode, FunctionSpec, InvokeRequest, MemoryMode, Runtime, Worker,
};

/// Page-cache state for restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Snapshot files stay in the page cache (and the store's chunk cache stays on).
    Warm,
    /// Snapshot files are dropped from the page cache before every restore.
    Evicted,
}

impl CacheMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::Warm => "warm",
            CacheMode::Evicted => "evicted",
        }
    }
}

impl std::str::FromStr for CacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "warm" => Ok(CacheMode::Warm),
            "evicted" => Ok(CacheMode::Evicted),
            other => Err(format!("unknown cache mode {other:?} (warm or evicted)")),
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Function code: a zip or a directory.
    pub code: PathBuf,
    pub handler: String,
    pub memory_mb: u32,
    pub scenarios: Vec<Scenario>,
    pub iterations: u32,
    pub warmup: u32,
    pub cache: CacheMode,
    pub out: PathBuf,
    pub sweep_memory: Vec<u32>,
    pub sweep_iterations: u32,
    /// Event JSON.
    pub event: String,
    pub data_dir: PathBuf,
    pub runtime_dir: PathBuf,
    /// `warm`: invokes measured.
    pub warm_invokes: u32,
    /// `provisioned`: pool size and burst size.
    pub pool: u32,
    pub burst: u32,
    /// Mode of `warm` and `provisioned` instances.
    pub instance_mode: MemoryMode,
    /// `burst`: concurrent cold starts per burst.
    pub burst_size: u32,
    /// `density`: provisioned instances.
    pub density: u32,
    /// `density`: their memory mode.
    pub density_mode: MemoryMode,
}

fn load_spec(cfg: &BenchConfig, memory_mb: u32) -> anyhow::Result<FunctionSpec> {
    let code =
        FunctionCode::load(&cfg.code).with_context(|| format!("loading {}", cfg.code.display()))?;
    let name = cfg
        .code
        .file_stem()
        .map_or("function".into(), |s| s.to_string_lossy().into_owned());
    let mut spec = FunctionSpec::new(&name, &cfg.handler, code);
    spec.memory_mb = memory_mb;
    spec.code.check_handler(&spec.handler)?;
    Ok(spec)
}

fn open_worker(cfg: &BenchConfig) -> anyhow::Result<Worker> {
    let data = DataDir::new(&cfg.data_dir);
    let runtime = Arc::new(
        Runtime::python(&cfg.runtime_dir, &data.module_cache())
            .context("loading the python runtime")?,
    );
    let mut opts = StoreOptions::default();
    if cfg.cache == CacheMode::Evicted {
        opts.cache_bytes = 0;
    }
    let store =
        Store::open_with_options(&data.store(), opts).context("opening the snapshot store")?;
    Ok(Worker::from_parts(runtime, store, data))
}

/// A worker error as an anyhow error carrying its whole cause chain.
pub(crate) fn werr(e: thaw_worker::WorkerError) -> anyhow::Error {
    anyhow::anyhow!(thaw_worker::error::error_chain(&e))
}

/// Runs `scenario` (`warmup` + `iterations` times); errors are collected, not fatal, and a
/// scenario gives up after three failures in a row.
fn run_scenario(
    ctx: &Ctx,
    cfg: &BenchConfig,
    id: &SnapshotId,
    sc: Scenario,
    pb: &ProgressBar,
) -> ScenarioResult {
    pb.set_message(sc.name());
    if std::env::var_os("THAW_BENCH_DEBUG").is_some() {
        pb.println(format!("scenario {}", sc.name()));
    }
    let mut samples: Vec<Sample> = Vec::new();
    let mut errors = Vec::new();
    let (metric, mode) = match sc {
        Scenario::Mode(m) => ("restore_to_first_response", m),
        Scenario::Recycled => ("restore_to_first_response", MemoryMode::UffdPrefetch),
        Scenario::Warm => ("warm_invoke", cfg.instance_mode),
        Scenario::Provisioned => ("lease_to_response", cfg.instance_mode),
        Scenario::Burst => ("burst_lease_to_response", cfg.instance_mode),
        Scenario::Density => ("warm_lease_to_response", cfg.density_mode),
        Scenario::HostPython => ("host_process_to_result", MemoryMode::Boot),
        Scenario::FreshProcess => ("restore_to_first_response", MemoryMode::UffdPrefetch),
    };
    let mut fleet = None;
    ctx.worker.set_recycling(sc == Scenario::Recycled);
    let reused_before = ctx.worker.recycle_stats().reused;
    match sc {
        Scenario::Mode(_) | Scenario::Recycled => {
            let mut streak = 0;
            for i in 0..cfg.warmup + cfg.iterations {
                if sc == Scenario::Recycled {
                    // The pool resets the last instance's VM on its own thread.
                    ctx.worker.wait_recycled(Duration::from_millis(100));
                }
                match scenario::measure_restore(ctx, id, mode) {
                    Ok(s) if i >= cfg.warmup => samples.push(s),
                    // A warm-up restore may start building the runtime's module
                    // image in the background: measure the steady state after it.
                    Ok(_) => ctx.worker.wait_module_images(),
                    Err(e) => {
                        errors.push(format!("iteration {i}: {e:#}"));
                        streak += 1;
                    }
                }
                pb.inc(1);
                if streak >= 3 {
                    break;
                }
            }
            if sc == Scenario::Recycled {
                let st = ctx.worker.recycle_stats();
                let reused = st.reused - reused_before;
                if reused < u64::from(cfg.iterations) {
                    errors.push(format!(
                        "only {reused} of {} restores were served by a reset VM (the rest built one)",
                        cfg.warmup + cfg.iterations
                    ));
                }
                if st.resets > 0 {
                    let each = st.reset_time.as_secs_f64() * 1e3 / st.resets as f64;
                    pb.suspend(|| {
                        eprintln!(
                            "thaw bench: recycled: {} VMs reset, {each:.2} ms each on the pool's thread",
                            st.resets
                        )
                    });
                }
            }
            ctx.worker.set_recycling(true);
        }
        Scenario::Warm => {
            match scenario::measure_warm(
                ctx,
                id,
                mode,
                cfg.warmup.max(1) * 5,
                cfg.warm_invokes,
                || {},
            ) {
                Ok(s) => samples = s,
                Err(e) => errors.push(format!("{e:#}")),
            }
            pb.inc(u64::from(cfg.warmup + cfg.iterations));
        }
        Scenario::Provisioned => {
            let shape = provisioned::Burst {
                pool: cfg.pool,
                burst: cfg.burst,
                mode,
            };
            match provisioned::run(ctx, id, shape, cfg.warmup, cfg.iterations, || pb.inc(1)) {
                Ok(s) => samples = s,
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        Scenario::Burst | Scenario::Density => {
            let ran = load_spec(cfg, cfg.memory_mb).and_then(|spec| {
                if sc == Scenario::Burst {
                    fleet::burst(
                        ctx,
                        &spec,
                        mode,
                        cfg.burst_size,
                        cfg.warmup,
                        cfg.iterations,
                        || pb.inc(1),
                    )
                } else {
                    let r =
                        fleet::density(ctx, &spec, mode, cfg.density, cfg.iterations * 10, || {});
                    pb.inc(u64::from(cfg.warmup + cfg.iterations));
                    r
                }
            });
            match ran {
                Ok((s, f)) => {
                    samples = s;
                    fleet = Some(f);
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        // Run by `run` itself once the store is closed (see `fresh_process`).
        Scenario::FreshProcess => errors.push("runs after the other scenarios".into()),
        Scenario::HostPython => {
            let ran = FunctionCode::load(&cfg.code)
                .map_err(anyhow::Error::from)
                .and_then(|code| {
                    scenario::measure_host_python(&code, &cfg.handler, &cfg.event, cfg.iterations)
                });
            match ran {
                Ok(s) => samples = s,
                Err(e) => errors.push(format!("{e:#}")),
            }
            pb.inc(u64::from(cfg.warmup + cfg.iterations));
        }
    }
    let mut r = report::summarise(sc.name(), metric, mode.as_str(), &samples, errors);
    r.fleet = fleet;
    r
}

/// The `fresh-process` scenario: `warmup + iterations` child processes, the warm-up ones
/// unmeasured (the first may build the snapshot's working-set image).
fn fresh_process(cfg: &BenchConfig, id: &SnapshotId, pb: &ProgressBar) -> ScenarioResult {
    let sc = Scenario::FreshProcess;
    pb.set_message(sc.name());
    let mut errors = Vec::new();
    let mut samples = Vec::new();
    match std::env::current_exe() {
        Ok(exe) => {
            let run = fresh::FreshRun {
                exe: &exe,
                code: &cfg.code,
                handler: &cfg.handler,
                memory_mb: cfg.memory_mb,
                event: &cfg.event,
                data_dir: &cfg.data_dir,
                snapshot: id,
            };
            let warm = fresh::measure(&run, cfg.warmup, || pb.inc(1));
            match warm.and_then(|_| fresh::measure(&run, cfg.iterations, || pb.inc(1))) {
                Ok(s) => samples = s,
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        Err(e) => errors.push(format!("finding the thaw binary: {e}")),
    }
    report::summarise(
        sc.name(),
        "restore_to_first_response",
        MemoryMode::UffdPrefetch.as_str(),
        &samples,
        errors,
    )
}

fn sweep(ctx: &Ctx, cfg: &BenchConfig, modes: &[MemoryMode], pb: &ProgressBar) -> Vec<SweepPoint> {
    let mut out = Vec::new();
    for &mb in &cfg.sweep_memory {
        let snapped = load_spec(cfg, mb).and_then(|spec| ctx.worker.snapshot(&spec).map_err(werr));
        let id = match snapped {
            Ok((id, _)) => id,
            Err(e) => {
                for m in modes {
                    out.push(SweepPoint {
                        memory_mb: mb,
                        mode: m.as_str().into(),
                        latency_ms: None,
                        faults: None,
                        rss_kib: None,
                        error: Some(format!("snapshot: {e:#}")),
                    });
                    pb.inc(u64::from(1 + cfg.sweep_iterations));
                }
                continue;
            }
        };
        for &m in modes {
            pb.set_message(format!("sweep {mb} MiB {m}"));
            if std::env::var_os("THAW_BENCH_DEBUG").is_some() {
                pb.println(format!("sweep {mb} MiB {m}"));
            }
            let mut samples = Vec::new();
            let mut error = None;
            for i in 0..=cfg.sweep_iterations {
                match scenario::measure_restore(ctx, &id, m) {
                    Ok(s) if i > 0 => samples.push(s),
                    Ok(_) => {}
                    Err(e) => error = Some(format!("{e:#}")),
                }
                pb.inc(1);
                if error.is_some() {
                    pb.inc(u64::from(cfg.sweep_iterations - i));
                    break;
                }
            }
            let r = report::summarise(
                m.as_str(),
                "restore_to_first_response",
                m.as_str(),
                &samples,
                vec![],
            );
            out.push(SweepPoint {
                memory_mb: mb,
                mode: m.as_str().into(),
                latency_ms: (r.latency_ms.n > 0).then_some(r.latency_ms),
                faults: r.pager.map(|p| p.faults),
                rss_kib: r.memory.map(|m| m.rss_kib),
                error,
            });
        }
        // The materialised memory file of a sweep snapshot is cache: drop it.
        let _ = std::fs::remove_file(ctx.worker.data().images().join(format!("{id}.mem")));
    }
    out
}

fn targets(r: &Report) -> Vec<Target> {
    let find = |n: &str| {
        r.scenarios
            .iter()
            .find(|s| s.name == n && s.latency_ms.n > 0)
    };
    let mut t = Vec::new();
    // DESIGN.md's restore targets are per function: hello (and any other small
    // handler) <= 1.5 ms warm / <= 5 ms evicted; init_heavy <= 3 ms warm.
    let heavy = std::path::Path::new(&r.function.code)
        .file_stem()
        .is_some_and(|n| n.to_string_lossy().starts_with("init_heavy"));
    let goal = match (heavy, r.config.cache == "evicted") {
        (false, false) => Some(1.5),
        (false, true) => Some(5.0),
        (true, false) => Some(3.0),
        (true, true) => None,
    };
    // Both restore paths: a new VM (`uffd+prefetch`) and a retired instance's VM
    // reset to the snapshot (`recycled`, what a service's cold start takes when one
    // is ready).
    for path in ["uffd+prefetch", "recycled"] {
        if let (Some(s), Some(goal)) = (find(path), goal) {
            let what = if heavy { "init_heavy" } else { "hello-sized" };
            t.push(Target {
                name: format!(
                    "{what} {path} restore-to-first-response p50 (cache {})",
                    r.config.cache
                ),
                target: format!("<= {goal} ms"),
                measured: format!("{:.2} ms", s.latency_ms.p50),
                met: s.latency_ms.p50 <= goal,
            });
        }
    }
    // A child restores with the page cache as the host has it (`--cache` is not applied).
    if let Some(s) = find("fresh-process").filter(|_| !heavy && r.config.cache == "warm") {
        t.push(Target {
            name: "hello-sized first restore in a fresh process, restore-to-first-response p50"
                .into(),
            target: "<= 8 ms".into(),
            measured: format!("{:.2} ms", s.latency_ms.p50),
            met: s.latency_ms.p50 <= 8.0,
        });
    }
    if let Some(boot) = find("boot") {
        let best = r
            .scenarios
            .iter()
            .filter(|s| {
                s.metric == "restore_to_first_response" && s.name != "boot" && s.latency_ms.n > 0
            })
            .min_by(|a, b| a.latency_ms.p50.total_cmp(&b.latency_ms.p50));
        if let Some(b) = best {
            let f = boot.latency_ms.p50 / b.latency_ms.p50;
            t.push(Target {
                name: format!("fastest restore ({}) vs cold boot + init", b.name),
                target: ">= 100x".into(),
                measured: format!("{f:.1}x"),
                met: f >= 100.0,
            });
        }
    }
    if let Some(s) = find("warm") {
        let handler = s
            .phases
            .iter()
            .find(|p| p.name == "to_response")
            .map_or(0.0, |p| p.p50_ms);
        t.push(Target {
            name: "warm invoke p50 (direct on the instance, not through the frontend)".into(),
            target: "<= 0.15 ms above handler time".into(),
            measured: format!(
                "{:.3} ms total, {:.3} ms to the response",
                s.latency_ms.p50, handler
            ),
            met: false,
        });
    }
    if let Some(m) = find("shared").and_then(|s| s.memory) {
        let pct = 100.0 * m.private_kib as f64 / m.guest_kib.max(1) as f64;
        t.push(Target {
            name: "idle shared clone, private memory / guest memory".into(),
            target: "<= 10%".into(),
            measured: format!(
                "{pct:.1}% ({:.1} MiB private, {:.1} MiB RSS)",
                m.private_kib as f64 / 1024.0,
                m.rss_kib as f64 / 1024.0
            ),
            met: pct <= 10.0,
        });
    }
    if r.snapshot.memory_mb == 512 {
        t.push(Target {
            name: "snapshot create, 512 MiB (after boot + init)".into(),
            target: "<= 1000 ms".into(),
            measured: format!(
                "{:.0} ms (+ {:.0} ms boot + init)",
                r.snapshot.total_ms - r.snapshot.boot_init_ms,
                r.snapshot.boot_init_ms
            ),
            met: r.snapshot.total_ms - r.snapshot.boot_init_ms <= 1000.0,
        });
    }
    if let Some(f) = find("burst").and_then(|s| s.fleet) {
        let rate = f.restores_per_s.unwrap_or(0.0);
        t.push(Target {
            name: format!(
                "burst of {} concurrent cold starts, all answered",
                f.instances
            ),
            target: ">= 300 restores/s".into(),
            measured: format!("{rate:.0} restores/s"),
            met: rate >= 300.0,
        });
    }
    if let Some(s) = find("density") {
        if let Some(f) = s.fleet {
            let (ready, each) = (
                f.ready_ms.unwrap_or(f64::MAX),
                f.host_mib_per_instance.unwrap_or(f64::MAX),
            );
            let n = f64::from(f.instances.max(1));
            t.push(Target {
                name: format!("density: {} provisioned instances READY", f.instances),
                target: "1,000 in <= 5 s (scaled to N)".into(),
                measured: format!("{:.2} s", ready / 1e3),
                met: ready / 1e3 <= 5.0 * n / 1000.0,
            });
            t.push(Target {
                name: "density: host memory per idle instance".into(),
                target: "<= 16 MiB".into(),
                measured: format!("{each:.1} MiB"),
                met: each <= 16.0,
            });
            t.push(Target {
                name: "density: warm invoke p50 against the pool (scheduler + worker)".into(),
                target: "<= 1 ms".into(),
                measured: format!("{:.3} ms", s.latency_ms.p50),
                met: s.latency_ms.p50 <= 1.0,
            });
        }
    }
    // One row per mode: the sweep lists every mode at each size in turn.
    let mut modes: Vec<&str> = r.sweep.iter().map(|p| p.mode.as_str()).collect();
    modes.sort_unstable();
    modes.dedup();
    for m in modes.iter().filter(|m| **m != "boot") {
        let pts: Vec<(u32, f64)> = r
            .sweep
            .iter()
            .filter(|p| p.mode == *m)
            .filter_map(|p| p.latency_ms.map(|l| (p.memory_mb, l.p50)))
            .collect();
        if let (Some(first), Some(last)) = (pts.first(), pts.last()) {
            if first.0 != last.0 {
                let f = last.1 / first.1;
                t.push(Target {
                    name: format!("{m}: p50 at {} MiB / p50 at {} MiB", last.0, first.0),
                    target: "flat (<= 1.5x)".into(),
                    measured: format!("{f:.2}x"),
                    met: f <= 1.5,
                });
            }
        }
    }
    // The warm target is about the frontend path, which this harness does not drive yet.
    if let Some(w) = t.iter_mut().find(|t| t.name.starts_with("warm invoke")) {
        w.met = r.scenarios.iter().any(|s| {
            s.name == "warm"
                && s.latency_ms.p50
                    - s.phases
                        .iter()
                        .find(|p| p.name == "to_response")
                        .map_or(0.0, |p| p.p50_ms)
                    <= 0.15
        });
    }
    t
}

/// Runs the benchmark (see the crate doc) and writes its files; returns the report.
pub fn run(cfg: &BenchConfig) -> anyhow::Result<Report> {
    anyhow::ensure!(cfg.iterations > 0, "--iterations must be at least 1");
    let huge_free = thaw_pager::free_huge_pages();
    // 1.
    let worker = open_worker(cfg)?;
    let spec = load_spec(cfg, cfg.memory_mb)?;
    eprintln!(
        "thaw bench: snapshotting {} ({} MiB)...",
        cfg.code.display(),
        cfg.memory_mb
    );
    let (id, st) = worker
        .snapshot(&spec)
        .map_err(werr)
        .context("taking the snapshot")?;
    let manifest = worker.store().manifest(&id)?;
    let ctx = Ctx {
        worker: worker.clone(),
        evicted: cfg.cache == CacheMode::Evicted,
        request: InvokeRequest {
            payload: cfg.event.clone().into_bytes(),
            ..Default::default()
        },
    };
    // 2-3.
    let restore_modes: Vec<MemoryMode> = cfg
        .scenarios
        .iter()
        .filter_map(|s| {
            if let Scenario::Mode(m) = s {
                Some(*m)
            } else {
                None
            }
        })
        .collect();
    let per = u64::from(cfg.warmup + cfg.iterations);
    let steps = per * cfg.scenarios.len() as u64
        + cfg.sweep_memory.len() as u64
            * restore_modes.len() as u64
            * u64::from(cfg.sweep_iterations + 1);
    let pb = ProgressBar::new(steps);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<24} [{bar:32}] {pos}/{len} {elapsed_precise}",
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    let mut scenarios: Vec<ScenarioResult> = cfg
        .scenarios
        .iter()
        .filter(|&&sc| sc != Scenario::FreshProcess)
        .map(|&sc| run_scenario(&ctx, cfg, &id, sc, &pb))
        .collect();
    let sweep = sweep(&ctx, cfg, &restore_modes, &pb);
    if let Some(at) = cfg
        .scenarios
        .iter()
        .position(|&s| s == Scenario::FreshProcess)
    {
        // Children open the store: this process lets go of it first.
        ctx.worker.wait_module_images();
        ctx.worker.wait_working_set_images();
        drop((ctx, worker));
        let r = fresh_process(cfg, &id, &pb);
        scenarios.insert(at.min(scenarios.len()), r);
    }
    pb.finish_and_clear();
    // 4.
    let mut report = Report {
        schema: report::SCHEMA,
        created_unix_ms: thaw_worker::now_ms(),
        function: report::FunctionInfo {
            code: cfg.code.display().to_string(),
            handler: cfg.handler.clone(),
            memory_mb: cfg.memory_mb,
            event: cfg.event.clone(),
        },
        host: report::HostInfo {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            huge_pages_free_at_start: huge_free,
        },
        config: report::ConfigInfo {
            scenarios: cfg.scenarios.iter().map(|s| s.name().to_string()).collect(),
            iterations: cfg.iterations,
            warmup: cfg.warmup,
            cache: cfg.cache.as_str().into(),
            warm_invokes: cfg.warm_invokes,
            pool: cfg.pool,
            burst: cfg.burst,
            sweep_memory_mb: cfg.sweep_memory.clone(),
            sweep_iterations: cfg.sweep_iterations,
        },
        snapshot: report::SnapshotInfo {
            id: id.to_string(),
            memory_mb: cfg.memory_mb,
            boot_init_ms: stats::ms(st.boot.total),
            store_memory_ms: stats::ms(st.store_memory),
            total_ms: stats::ms(st.total),
            chunks: manifest.chunk_count(),
            data_chunks: manifest.chunks().filter(|c| c.id.is_some()).count(),
        },
        ratios: report::ratios(&scenarios),
        scenarios,
        targets: Vec::new(),
        sweep,
    };
    report.targets = targets(&report);
    // 5.
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    std::fs::write(
        cfg.out.join("report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(cfg.out.join("report.md"), report::markdown(&report))?;
    charts::draw_all(&report, &cfg.out)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use report::{ConfigInfo, FunctionInfo, HostInfo, SnapshotInfo};

    fn report(code: &str, cache: &str, p50: f64, sweep: Vec<SweepPoint>) -> Report {
        let mut s = Sample {
            total: Duration::from_secs_f64(p50 / 1e3),
            ..Default::default()
        };
        s.phases = vec![("memory", s.total)];
        Report {
            schema: report::SCHEMA,
            created_unix_ms: 0,
            function: FunctionInfo {
                code: code.into(),
                handler: "app.handler".into(),
                memory_mb: 512,
                event: "{}".into(),
            },
            host: HostInfo {
                cpus: 2,
                kernel: String::new(),
                huge_pages_free_at_start: 0,
            },
            config: ConfigInfo {
                scenarios: vec![],
                iterations: 1,
                warmup: 0,
                cache: cache.into(),
                warm_invokes: 0,
                pool: 0,
                burst: 0,
                sweep_memory_mb: vec![],
                sweep_iterations: 0,
            },
            snapshot: SnapshotInfo {
                id: String::new(),
                memory_mb: 1024,
                boot_init_ms: 0.0,
                store_memory_ms: 0.0,
                total_ms: 0.0,
                chunks: 0,
                data_chunks: 0,
            },
            scenarios: vec![report::summarise(
                "uffd+prefetch",
                "restore_to_first_response",
                "uffd+prefetch",
                &[s],
                vec![],
            )],
            ratios: vec![],
            targets: vec![],
            sweep,
        }
    }

    fn point(mode: &str, memory_mb: u32, p50: f64) -> SweepPoint {
        SweepPoint {
            memory_mb,
            mode: mode.into(),
            latency_ms: Some(stats::Summary {
                n: 1,
                min: p50,
                p50,
                p90: p50,
                p99: p50,
                max: p50,
                mean: p50,
            }),
            faults: None,
            rss_kib: None,
            error: None,
        }
    }

    #[test]
    fn test_targets_judge_each_function_by_its_own_goal() {
        let hello = targets(&report("examples/hello", "warm", 2.0, vec![]));
        assert!(hello[0].name.starts_with("hello-sized") && hello[0].target == "<= 1.5 ms");
        assert!(!hello[0].met);
        let evicted = targets(&report("examples/hello", "evicted", 4.0, vec![]));
        assert!(evicted[0].target == "<= 5 ms" && evicted[0].met);
        let heavy = targets(&report("examples/init_heavy", "warm", 2.0, vec![]));
        assert!(heavy[0].name.starts_with("init_heavy") && heavy[0].target == "<= 3 ms");
        assert!(heavy[0].met);
    }

    #[test]
    fn test_sweep_targets_have_one_row_per_mode() {
        // The sweep lists every mode at each size in turn.
        let sweep = [128, 512, 1024, 4096]
            .into_iter()
            .flat_map(|mb| [point("eager", mb, 1.0), point("uffd", mb, 2.0)])
            .collect();
        let t = targets(&report("examples/hello", "warm", 1.0, sweep));
        let rows: Vec<&str> = t
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| n.contains("MiB /"))
            .collect();
        assert_eq!(
            rows,
            [
                "eager: p50 at 4096 MiB / p50 at 128 MiB",
                "uffd: p50 at 4096 MiB / p50 at 128 MiB"
            ]
        );
    }
}
