//! `provisioned`: a burst of `burst` concurrent invokes against a provisioned pool of `pool`
//! instances, through `thaw_scheduler::Scheduler` (lease -> invoke -> release).
//!
//! The service's own backend (`thaw_worker::factory::WorkerFactory`) still cold-boots its
//! instances, and `thaw-frontend` depends on this crate (not the other way round), so the bench
//! drives the scheduler directly with [`RestoreFactory`], which restores through the worker in a
//! chosen memory mode. Steps:
//! 1. put a provisioned config of `pool` on version "bench" and wait for READY;
//! 2. per burst: `burst` tasks each lease, invoke on a blocking thread and release; a sample is
//!    one request, lease-to-response (phases `lease` and `invoke`);
//! 3. after each burst, a keep-warm tick with a zero TTL evicts the on-demand spillover instances,
//!    so every burst finds only the provisioned pool warm (`burst - pool` requests restore).
use crate::ctx::Ctx;
use crate::sample::Sample;
use anyhow::{bail, Context};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thaw_scheduler::{
    FactoryError, FunctionVersion, InstanceFactory, Limits, ProvisionedStatus, RestoreKind,
    Scheduler, SystemClock,
};
use thaw_snapshotter::SnapshotId;
use thaw_worker::restore::OpenedSnapshot;
use thaw_worker::{Instance, InvokeRequest, MemoryMode, Worker};

/// Restores instances of one snapshot through the worker.
#[derive(Debug)]
pub struct RestoreFactory {
    worker: Worker,
    snap: Arc<OpenedSnapshot>,
    mode: MemoryMode,
}

/// One restored instance the scheduler leases out.
pub type Shared = Arc<Mutex<Instance>>;

impl InstanceFactory for RestoreFactory {
    type Instance = Shared;

    async fn restore(
        &self,
        _fv: &FunctionVersion,
        _kind: RestoreKind,
    ) -> Result<Shared, FactoryError> {
        let (worker, snap, mode) = (self.worker.clone(), self.snap.clone(), self.mode);
        let made = tokio::task::spawn_blocking(move || worker.restore(&snap, mode))
            .await
            .map_err(|e| FactoryError::restore_with("restore thread failed", e))?;
        match made {
            Ok((instance, _)) => Ok(Arc::new(Mutex::new(instance))),
            Err(e) => Err(FactoryError::restore_with("restore failed", e)),
        }
    }

    fn memory_bytes(&self, _fv: &FunctionVersion) -> u64 {
        self.snap.manifest.meta.memory_size + thaw_worker::factory::DEFAULT_OVERHEAD_BYTES
    }

    fn discard(&self, instance: Shared) {
        drop(instance);
    }
}

/// Shape of the scenario.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    pub pool: u32,
    pub burst: u32,
    pub mode: MemoryMode,
}

async fn one_request(
    sched: Arc<Scheduler<RestoreFactory>>,
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
    let inst = lease.instance().clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut g = inst.lock().unwrap_or_else(|p| p.into_inner());
        g.invoke(&req)
    })
    .await
    .context("invoke thread")?;
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

/// Runs `warmup + iterations` bursts (see the module doc); returns the measured requests.
pub fn run(
    ctx: &Ctx,
    id: &SnapshotId,
    shape: Burst,
    warmup: u32,
    iterations: u32,
    mut tick: impl FnMut(),
) -> anyhow::Result<Vec<Sample>> {
    let worker = ctx.worker();
    let snap = worker.open_snapshot(id, None).map_err(crate::werr)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let factory = RestoreFactory {
        worker,
        snap: Arc::new(snap),
        mode: shape.mode,
    };
    let limits = Limits {
        keep_warm_ttl: Duration::ZERO,
        ..Limits::default()
    };
    rt.block_on(async {
        let sched = Arc::new(Scheduler::new(factory, SystemClock, limits));
        let fv = FunctionVersion::new("bench", "1");
        // 1.
        sched
            .put_provisioned(&fv, shape.pool)
            .context("put provisioned")?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let cfg = sched
                .get_provisioned(&fv)
                .context("provisioned config vanished")?;
            match cfg.status {
                ProvisionedStatus::Ready => break,
                ProvisionedStatus::Failed => bail!(
                    "provisioning failed: {}",
                    cfg.status_reason.unwrap_or_default()
                ),
                ProvisionedStatus::InProgress if Instant::now() > deadline => {
                    bail!("provisioning did not finish in 120 s")
                }
                ProvisionedStatus::InProgress => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        // 2-3.
        let mut samples = Vec::new();
        for i in 0..warmup + iterations {
            let tasks: Vec<_> = (0..shape.burst)
                .map(|_| tokio::spawn(one_request(sched.clone(), fv.clone(), ctx.request.clone())))
                .collect();
            for t in tasks {
                let s = t.await.context("request task")??;
                if i >= warmup {
                    samples.push(s);
                }
            }
            let evicted = sched.tick().evicted;
            if std::env::var_os("THAW_BENCH_DEBUG").is_some() {
                eprintln!(
                    "burst {i}: {:?}, evicted {evicted}",
                    samples
                        .iter()
                        .rev()
                        .take(shape.burst as usize)
                        .map(|s: &Sample| s.start)
                        .collect::<Vec<_>>()
                );
            }
            tick();
        }
        Ok(samples)
    })
}
