//! `fresh-process`: the first restore in a new process. Each sample is one
//! `thaw run --from-snapshot ID --mode uffd+prefetch` child process on the benchmark's data
//! directory, which reports its restore's timings and its first invocation's duration as
//! JSON (`--timings-json`, [`FreshRunTimings`]). The child starts with nothing in memory (no
//! decompressed chunks, no VM shells, no reset VMs); what a host keeps across processes
//! (the page cache, the hugetlbfs module and working-set images) stays, as for a service
//! restarted on a warm host.
//!
//! It runs after every other scenario, once the benchmark has closed its own store (a
//! store is opened by one process at a time).
use crate::sample::Sample;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use thaw_snapshotter::SnapshotId;

/// What `thaw run --timings-json` writes: its restore's phases and its first invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FreshRunTimings {
    /// Guest RAM prepared (`RestoreTimings::memory`).
    pub memory_ms: f64,
    /// VM and vCPU state (`RestoreTimings::vm_restore`).
    pub vm_restore_ms: f64,
    /// The whole restore (`RestoreTimings::total`).
    pub restore_ms: f64,
    /// The first invocation, request to response.
    pub first_invoke_ms: f64,
}

impl FreshRunTimings {
    /// One sample: restore-to-first-response and its phases.
    pub fn sample(&self) -> Sample {
        let d = |ms: f64| Duration::from_secs_f64(ms.max(0.0) / 1e3);
        let other = self.restore_ms - self.memory_ms - self.vm_restore_ms;
        Sample {
            total: d(self.restore_ms + self.first_invoke_ms),
            phases: vec![
                ("memory", d(self.memory_ms)),
                ("vm_restore", d(self.vm_restore_ms)),
                ("restore_other", d(other)),
                ("guest_run", d(self.first_invoke_ms)),
            ],
            ..Default::default()
        }
    }
}

/// What a `fresh-process` run needs to start its children.
#[derive(Debug)]
pub struct FreshRun<'a> {
    /// The `thaw` binary.
    pub exe: &'a Path,
    pub code: &'a Path,
    pub handler: &'a str,
    pub memory_mb: u32,
    pub event: &'a str,
    pub data_dir: &'a Path,
    pub snapshot: &'a SnapshotId,
}

/// Runs `runs` child processes, one restore each; `tick` after each.
pub fn measure(
    run: &FreshRun<'_>,
    runs: u32,
    mut tick: impl FnMut(),
) -> anyhow::Result<Vec<Sample>> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut out = Vec::with_capacity(runs as usize);
    for i in 0..runs {
        let json = dir.path().join(format!("run-{i}.json"));
        let o = std::process::Command::new(run.exe)
            .arg("run")
            .arg(run.code)
            .args(["--handler", run.handler])
            .args(["--memory-mb", &run.memory_mb.to_string()])
            .args(["--event", run.event])
            .arg("--data")
            .arg(run.data_dir)
            .args(["--from-snapshot", &run.snapshot.to_string()])
            .args(["--mode", "uffd+prefetch"])
            .arg("--timings-json")
            .arg(&json)
            .output()
            .with_context(|| format!("starting {}", run.exe.display()))?;
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            bail!(
                "thaw run failed ({}): {}",
                o.status,
                err.lines().last().unwrap_or("")
            );
        }
        let bytes = std::fs::read(&json).context("reading the child's timings")?;
        let t: FreshRunTimings =
            serde_json::from_slice(&bytes).context("parsing the child's timings")?;
        out.push(t.sample());
        tick();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_child_run_becomes_restore_to_first_response_with_its_phases() {
        let t = FreshRunTimings {
            memory_ms: 3.5,
            vm_restore_ms: 0.1,
            restore_ms: 3.75,
            first_invoke_ms: 1.25,
        };
        let back: FreshRunTimings =
            serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        let s = t.sample();
        assert!((s.total.as_secs_f64() * 1e3 - 5.0).abs() < 1e-9);
        let sum: Duration = s.phases.iter().map(|(_, d)| *d).sum();
        assert!((sum.as_secs_f64() - s.total.as_secs_f64()).abs() < 1e-9);
        assert_eq!(s.phases.last().unwrap().0, "guest_run");
    }
}
