//! The scenarios and how one iteration of each is measured.
//!
//! Restore scenarios (one per memory mode), per iteration:
//! 1. with `--cache evicted`, drop the snapshot's chunk files and memory file from the page
//!    cache and use a fresh worker handle (no shared image kept from the last iteration);
//! 2. open the snapshot (manifest + state decode; timed as `open_snapshot`, outside the headline,
//!    and re-read every time so `uffd+prefetch` sees the working set its warm-up recorded);
//! 3. `t0`; `worker.restore(mode)`; the first `invoke`; headline = restore-to-first-response;
//! 4. pager statistics before and after the first invoke (prefetched vs faulted bytes);
//! 5. host memory of the idle instance's guest RAM mapping (smaps: RSS, PSS, hugetlb);
//! 6. the instance is retired (teardown is not timed): `recycled` keeps its VM to be
//!    reset for the next iteration's restore, the mode scenarios run with VM reuse off,
//!    so each of their restores builds a VM.
//!
//! `warm`: one restored instance invoked repeatedly; each sample is one invoke.
use crate::ctx::Ctx;
use crate::sample::{MemorySample, PagerSample, Sample};
use anyhow::{bail, Context};
use std::str::FromStr;
use std::time::{Duration, Instant};
use thaw_snapshotter::SnapshotId;
use thaw_worker::{Instance, InvokeRequest, MemoryMode, StartTimings};

/// One benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// A restore (or cold boot) in a memory mode, then the first invoke; each instance
    /// is torn down after it (VM reuse off).
    Mode(MemoryMode),
    /// `uffd+prefetch` restores served by the VM of the instance retired before, reset
    /// to the snapshot (worker/src/restore/recycle.rs), then the first invoke.
    Recycled,
    /// Repeated invokes of one restored instance.
    Warm,
    /// A burst of concurrent invokes against a provisioned pool (through the scheduler).
    Provisioned,
    /// `burst_size` concurrent cold starts through the scheduler and the service's
    /// backend ([`crate::fleet`]).
    Burst,
    /// `density` provisioned instances: READY time, host memory each, warm invokes.
    Density,
    /// The first restore (`uffd+prefetch`) in a new `thaw run` process
    /// ([`crate::fresh`]); runs after the others.
    FreshProcess,
    /// The baseline: the same handler in a bare host `python3` process, start to result.
    HostPython,
}

impl Scenario {
    /// Every scenario, in report order.
    pub fn all() -> Vec<Scenario> {
        let mut v: Vec<Scenario> = MemoryMode::ALL.into_iter().map(Scenario::Mode).collect();
        v.push(Scenario::Recycled);
        v.push(Scenario::Warm);
        v.push(Scenario::Provisioned);
        v.push(Scenario::Burst);
        v.push(Scenario::Density);
        v.push(Scenario::FreshProcess);
        v.push(Scenario::HostPython);
        v
    }

    /// The CLI and report name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Mode(m) => m.as_str(),
            Scenario::Recycled => "recycled",
            Scenario::Warm => "warm",
            Scenario::Provisioned => "provisioned",
            Scenario::Burst => "burst",
            Scenario::Density => "density",
            Scenario::FreshProcess => "fresh-process",
            Scenario::HostPython => "host-python3",
        }
    }

    /// `all` or a comma-separated list.
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, String> {
        if s.trim() == "all" {
            return Ok(Self::all());
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let sc: Scenario = part.parse()?;
            if !out.contains(&sc) {
                out.push(sc);
            }
        }
        if out.is_empty() {
            return Err("no scenario given".into());
        }
        Ok(out)
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "recycled" => Ok(Scenario::Recycled),
            "warm" => Ok(Scenario::Warm),
            "provisioned" => Ok(Scenario::Provisioned),
            "burst" => Ok(Scenario::Burst),
            "density" => Ok(Scenario::Density),
            "fresh-process" => Ok(Scenario::FreshProcess),
            "host-python3" => Ok(Scenario::HostPython),
            other => other.parse().map(Scenario::Mode).map_err(|_| {
                format!("unknown scenario {other:?} (boot, eager, mmap, uffd, uffd+prefetch, shared, recycled, warm, provisioned, burst, density, fresh-process, host-python3, or all)")
            }),
        }
    }
}

/// The baseline: the handler in a bare host `python3` (a fresh process per sample),
/// from spawn to its printed result, the same event, with a Lambda-like context object. The function's files are written
/// to a temporary directory first (the code may be a zip).
pub fn measure_host_python(
    code: &thaw_worker::FunctionCode,
    handler: &str,
    event: &str,
    runs: u32,
) -> anyhow::Result<Vec<Sample>> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    for (name, data) in &code.files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).context("writing the function's files")?;
        }
        std::fs::write(&path, data).context("writing the function's files")?;
    }
    let (module, func) = handler
        .rsplit_once('.')
        .context("handler must be module.function")?;
    let script = format!(
        "import json, sys\nsys.path.insert(0, {dir:?})\nclass Context:\n    function_name = 'bench'\n    function_version = '$LATEST'\n    memory_limit_in_mb = 512\n    aws_request_id = 'host-python3'\n    invoked_function_arn = 'arn:aws:lambda:us-east-1:000000000000:function:bench'\n    log_group_name = '/aws/lambda/bench'\n    log_stream_name = 'host'\n    def get_remaining_time_in_millis(self):\n        return 3000\nimport {module} as m\nprint(json.dumps(m.{func}(json.loads(sys.argv[1]), Context())))\n",
        dir = dir.path().display().to_string()
    );
    // The interpreter itself, not a launcher in front of it (pyenv's `python3` is a
    // shell script that costs ~200 ms before the interpreter starts).
    let exe = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .context("running python3")?;
    let exe = String::from_utf8_lossy(&exe.stdout).trim().to_string();
    let exe = if exe.is_empty() {
        "python3".to_string()
    } else {
        exe
    };
    let mut out = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        let t0 = Instant::now();
        let o = std::process::Command::new(&exe)
            .args(["-c", &script, event])
            .output()
            .context("running python3")?;
        let total = t0.elapsed();
        if !o.status.success() {
            bail!(
                "host python3 failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        out.push(Sample {
            total,
            phases: vec![("process", total)],
            ..Default::default()
        });
    }
    Ok(out)
}

/// Host memory of an instance's guest RAM.
pub fn idle_memory(instance: &Instance) -> Option<MemorySample> {
    let ram = instance.vm().ram();
    let len = ram.len();
    let m =
        thaw_pager::mapping_memory(thaw_pager::HostAddr(ram.host_addr().0), len as usize).ok()?;
    let hugetlb = m.shared_hugetlb_kib + m.private_hugetlb_kib;
    Some(MemorySample {
        guest_kib: len >> 10,
        rss_kib: m.rss_kib + hugetlb,
        pss_kib: m.pss_kib + m.private_hugetlb_kib + m.shared_hugetlb_kib / 2,
        private_kib: m.private_total_kib(),
        hugetlb_kib: hugetlb,
    })
}

fn invoke_ok(
    instance: &mut Instance,
    req: &InvokeRequest,
) -> anyhow::Result<thaw_worker::InvokeOutcome> {
    let out = instance.invoke(req).map_err(crate::werr)?;
    if out.function_error {
        bail!("the handler failed: {}", String::from_utf8_lossy(&out.body));
    }
    Ok(out)
}

/// One restore (or boot) in `mode` up to the first response (see the module doc).
pub fn measure_restore(ctx: &Ctx, id: &SnapshotId, mode: MemoryMode) -> anyhow::Result<Sample> {
    let worker = ctx.worker();
    // 1-2.
    if mode != MemoryMode::Boot {
        ctx.evict(&worker, id)?;
    }
    let t_open = Instant::now();
    let snap = worker.open_snapshot(id, None).map_err(crate::werr)?;
    let open = t_open.elapsed();
    // 3.
    let t0 = Instant::now();
    let (mut instance, start) = worker
        .restore(&snap, mode)
        .map_err(|e| anyhow::anyhow!("restore: {}", thaw_worker::error::error_chain(&e)))?;
    let restored = t0.elapsed();
    let before = instance.pager_stats();
    let t1 = Instant::now();
    invoke_ok(&mut instance, &ctx.request).context("first invoke")?;
    let first_invoke = t1.elapsed();
    let total = t0.elapsed();
    // 4.
    let after = instance.pager_stats();
    let pager = match (&before, &after) {
        (Some(b), Some(a)) => Some(PagerSample {
            faults: a.faults,
            prefetch_bytes: b.bytes_installed,
            fault_bytes: a.bytes_installed.saturating_sub(b.bytes_installed),
            zero_installs: a.zero_installs,
            fault_us_total: a.latency_us_total,
        }),
        _ => None,
    };
    let fault_service = Duration::from_micros(
        after
            .as_ref()
            .map_or(0, |a| a.latency_us_total)
            .saturating_sub(before.as_ref().map_or(0, |b| b.latency_us_total)),
    )
    .min(first_invoke);
    let mut phases = Vec::new();
    match &start {
        StartTimings::Boot(t) => {
            phases.extend([
                ("vm_create", t.vm_create),
                ("load", t.load),
                ("runtime_init", t.runtime_init),
                ("function_init", t.function_init),
                ("to_ready", t.to_ready),
            ]);
        }
        StartTimings::Restore(t) => {
            phases.extend([
                ("read_state", t.read_state),
                ("memory", t.memory),
                ("vm_restore", t.vm_restore),
            ]);
        }
    }
    let accounted: Duration = phases.iter().map(|(_, d)| *d).sum();
    phases.push(("restore_other", restored.saturating_sub(accounted)));
    phases.push(("fault_service", fault_service));
    phases.push(("guest_run", first_invoke - fault_service));
    let bytes_installed = match mode {
        MemoryMode::Eager => Some(
            snap.manifest
                .chunks()
                .filter(|c| c.id.is_some())
                .map(|c| c.len)
                .sum(),
        ),
        _ => after.as_ref().map(|a| a.bytes_installed),
    };
    // 5.
    let memory = idle_memory(&instance);
    worker.retire(instance);
    Ok(Sample {
        total,
        open,
        phases,
        pager,
        bytes_installed,
        memory,
        start: None,
    })
}

/// `warm`: restores one instance in `mode`, takes its first invoke and `warmup` more, then
/// times `invokes` invokes. Phases: `to_response` (host-side invoke duration until the
/// response) and `park` (the guest's way back into its next-invocation wait).
pub fn measure_warm(
    ctx: &Ctx,
    id: &SnapshotId,
    mode: MemoryMode,
    warmup: u32,
    invokes: u32,
    mut tick: impl FnMut(),
) -> anyhow::Result<Vec<Sample>> {
    let worker = ctx.worker();
    let snap = worker.open_snapshot(id, None).map_err(crate::werr)?;
    let (mut instance, _) = worker
        .restore(&snap, mode)
        .map_err(|e| anyhow::anyhow!("restore: {}", thaw_worker::error::error_chain(&e)))?;
    for _ in 0..=warmup {
        invoke_ok(&mut instance, &ctx.request)?;
    }
    let mut out = Vec::with_capacity(invokes as usize);
    for _ in 0..invokes {
        let t0 = Instant::now();
        let o = invoke_ok(&mut instance, &ctx.request)?;
        let total = t0.elapsed();
        let to_response = o.duration.min(total);
        out.push(Sample {
            total,
            phases: vec![("to_response", to_response), ("park", total - to_response)],
            ..Default::default()
        });
        tick();
    }
    if let Some(last) = out.last_mut() {
        last.memory = idle_memory(&instance);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_scenarios() {
        let all = Scenario::parse_list("all").unwrap();
        assert_eq!(all, Scenario::all());
        assert_eq!(all.len(), MemoryMode::ALL.len() + 7);
        for s in [
            Scenario::Recycled,
            Scenario::Warm,
            Scenario::Provisioned,
            Scenario::Burst,
            Scenario::Density,
            Scenario::FreshProcess,
            Scenario::HostPython,
        ] {
            assert!(all.contains(&s), "{s:?} missing from all");
        }
        let v = Scenario::parse_list("uffd+prefetch, warm,boot,warm").unwrap();
        assert_eq!(
            v,
            vec![
                Scenario::Mode(MemoryMode::UffdPrefetch),
                Scenario::Warm,
                Scenario::Mode(MemoryMode::Boot)
            ]
        );
        assert!(Scenario::parse_list("fast").is_err());
        assert!(Scenario::parse_list("").is_err());
        for s in Scenario::all() {
            assert_eq!(s.name().parse::<Scenario>().unwrap(), s);
        }
    }
}
