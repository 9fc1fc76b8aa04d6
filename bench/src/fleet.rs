//! Many instances at once, the way the service makes them: `thaw_scheduler::Scheduler`
//! over the service's own backend, `thaw_worker::factory::WorkerFactory` (restores,
//! admission by measured use, `provisioned_restore_mode`).
//!
//! `burst` (per iteration):
//! 1. no instance is warm (a keep-warm tick with a zero TTL evicted the last burst's);
//! 2. `burst_size` tasks lease, invoke and release at once: nearly every lease restores
//!    (one that starts after another request finished may find its instance idle);
//! 3. a sample is one request, lease-to-response (phases `lease` = the restore and
//!    `invoke`); restores / the burst's wall time gives restores/s (the median burst);
//!    every request must succeed.
//!
//! `density` (once):
//! 1. host memory before (MemAvailable + hugetlb pages in use, /proc/meminfo);
//! 2. provisioned concurrency of `density` instances on the version; time to READY;
//! 3. host memory after; (after - before) / N is what one idle instance costs the host,
//!    beside the scheduler's charge per instance (admission by measured use);
//! 4. `iterations * 10` warm invokes against the pool, one at a time: the samples;
//! 5. the config is deleted and the pool drained.
//!
//! The warm invokes go through the scheduler and the worker, not HTTP: the frontend's
//! HTTP overhead is measured by `bench/service/density.py` against `thaw serve`.
use crate::ctx::Ctx;
use crate::sample::Sample;
use anyhow::{bail, Context};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thaw_scheduler::{FunctionVersion, Limits, ProvisionedStatus, Scheduler, SystemClock};
use thaw_worker::factory::WorkerFactory;
use thaw_worker::{FunctionSpec, InvokeRequest, MemoryMode};

/// What a fleet scenario measured besides its latency samples.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FleetSample {
    /// Instances per burst, or provisioned.
    pub instances: u32,
    /// `burst`: median wall time of a burst, ms.
    pub burst_wall_ms: Option<f64>,
    /// `burst`: instances / median burst wall time.
    pub restores_per_s: Option<f64>,
    /// `density`: put to READY, ms.
    pub ready_ms: Option<f64>,
    /// `density`: host memory per idle instance, MiB (MemAvailable + hugetlb delta / N).
    pub host_mib_per_instance: Option<f64>,
    /// `density`: what the scheduler charges each instance, MiB.
    pub charged_mib_per_instance: Option<f64>,
}

/// Host memory in use, KiB: MemTotal - MemAvailable plus the hugetlb pages taken.
fn host_used_kib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let huge = (field("HugePages_Total:") - field("HugePages_Free:")) * field("Hugepagesize:");
    field("MemTotal:").saturating_sub(field("MemAvailable:")) + huge
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// A scheduler over a worker factory that runs `spec` as version "1".
fn scheduler(
    ctx: &Ctx,
    spec: &FunctionSpec,
    mode: MemoryMode,
    limits: Limits,
) -> (Arc<Scheduler<WorkerFactory>>, FunctionVersion) {
    let factory = WorkerFactory::new(
        ctx.worker(),
        mode,
        thaw_worker::factory::DEFAULT_OVERHEAD_BYTES,
    )
    .with_provisioned_mode(mode);
    let fv = FunctionVersion::new(&spec.name, "1");
    factory.define(&fv, Arc::new(spec.clone()));
    let sched = Arc::new(Scheduler::new(factory, SystemClock, limits));
    (sched, fv)
}

async fn one_request(
    sched: Arc<Scheduler<WorkerFactory>>,
    fv: FunctionVersion,
    req: InvokeRequest,
) -> anyhow::Result<Sample> {
    let t0 = Instant::now();
    let lease = sched.lease(&fv).await.context("lease")?;
    let leased = t0.elapsed();
    let start = match lease.start_type() {
        thaw_scheduler::StartType::Warm => "warm",
        thaw_scheduler::StartType::Restore => "restore",
    };
    let out = sched.factory().invoke(lease.instance(), req).await;
    lease.release(out.is_ok());
    let out = out.map_err(crate::werr)?;
    if out.function_error {
        bail!("the handler failed: {}", String::from_utf8_lossy(&out.body));
    }
    let total = t0.elapsed();
    Ok(Sample {
        total,
        phases: vec![("lease", leased), ("invoke", total - leased)],
        start: Some(start),
        ..Default::default()
    })
}

/// `burst`: `warmup + iterations` bursts of `size` concurrent cold starts.
pub fn burst(
    ctx: &Ctx,
    spec: &FunctionSpec,
    mode: MemoryMode,
    size: u32,
    warmup: u32,
    iterations: u32,
    mut tick: impl FnMut(),
) -> anyhow::Result<(Vec<Sample>, FleetSample)> {
    let rt = runtime()?;
    // The service's default memory budget (MemTotal), as `density` uses.
    let limits = Limits {
        keep_warm_ttl: Duration::ZERO,
        account_concurrency: size.max(1000),
        memory_budget_bytes: host_total_bytes(),
        ..Limits::default()
    };
    rt.block_on(async {
        let (sched, fv) = scheduler(ctx, spec, mode, limits);
        // The first request after a deploy records the working set (not measured).
        one_request(sched.clone(), fv.clone(), ctx.request.clone()).await?;
        sched.tick();
        let (mut samples, mut walls) = (Vec::new(), Vec::new());
        for i in 0..warmup + iterations {
            let t0 = Instant::now();
            let tasks: Vec<_> = (0..size)
                .map(|_| {
                    let (s, v, r) = (sched.clone(), fv.clone(), ctx.request.clone());
                    tokio::spawn(one_request(s, v, r))
                })
                .collect();
            let mut got = Vec::with_capacity(tasks.len());
            for t in tasks {
                got.push(t.await.context("request task")??);
            }
            let wall = t0.elapsed();
            // A request that starts after another one finished may find its instance
            // idle (warm): only the restores count toward restores/s.
            let restores = got.iter().filter(|s| s.start == Some("restore")).count();
            if i >= warmup {
                samples.extend(got);
                walls.push((wall.as_secs_f64() * 1e3, restores));
            }
            sched.tick();
            tick();
        }
        walls.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (wall, restores) = walls.get(walls.len() / 2).copied().unwrap_or((0.0, 0));
        Ok((
            samples,
            FleetSample {
                instances: size,
                burst_wall_ms: Some(wall),
                restores_per_s: (wall > 0.0).then(|| restores as f64 / (wall / 1e3)),
                ..Default::default()
            },
        ))
    })
}

/// `density`: `n` provisioned instances, then warm invokes against them.
pub fn density(
    ctx: &Ctx,
    spec: &FunctionSpec,
    mode: MemoryMode,
    n: u32,
    invokes: u32,
    mut tick: impl FnMut(),
) -> anyhow::Result<(Vec<Sample>, FleetSample)> {
    let rt = runtime()?;
    let limits = Limits {
        account_concurrency: n + 200,
        memory_budget_bytes: host_total_bytes(),
        ..Limits::default()
    };
    rt.block_on(async {
        let (sched, fv) = scheduler(ctx, spec, mode, limits);
        // Build the version's snapshot (and its provisional working set) first, so
        // READY times restores, not the build.
        one_request(sched.clone(), fv.clone(), ctx.request.clone()).await?;
        let before = host_used_kib();
        let t0 = Instant::now();
        sched.put_provisioned(&fv, n).context("put provisioned")?;
        let deadline = t0 + Duration::from_secs(300);
        loop {
            let cfg = sched.get_provisioned(&fv).context("config vanished")?;
            match cfg.status {
                ProvisionedStatus::Ready => break,
                ProvisionedStatus::Failed => bail!(
                    "provisioning failed after {} of {n} instances: {}",
                    cfg.allocated,
                    cfg.status_reason.unwrap_or_default()
                ),
                ProvisionedStatus::InProgress if Instant::now() > deadline => {
                    bail!("{} of {n} provisioned instances after 300 s", cfg.allocated)
                }
                ProvisionedStatus::InProgress => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        let ready = t0.elapsed();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = host_used_kib();
        let stats = sched.stats();
        let charged = stats.pool(&fv).map_or(0, |p| p.memory_charged_per_instance);
        let mut samples = Vec::with_capacity(invokes as usize);
        for _ in 0..invokes {
            let s = one_request(sched.clone(), fv.clone(), ctx.request.clone()).await?;
            if s.start != Some("warm") {
                bail!("a warm invoke against the provisioned pool restored an instance");
            }
            samples.push(s);
            tick();
        }
        sched.delete_provisioned(&fv).ok();
        Ok((
            samples,
            FleetSample {
                instances: n,
                ready_ms: Some(ready.as_secs_f64() * 1e3),
                host_mib_per_instance: Some(
                    after.saturating_sub(before) as f64 / 1024.0 / f64::from(n.max(1)),
                ),
                charged_mib_per_instance: Some(charged as f64 / f64::from(1u32 << 20)),
                ..Default::default()
            },
        ))
    })
}

/// MemTotal in bytes (the service's default budget).
fn host_total_bytes() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(8 << 30, |kib| kib << 10)
}
