//! The results of a run: the JSON document (schema `thaw-bench/1`; field names are stable, add
//! fields rather than rename them), the Markdown table, and the within-run ratios.
use crate::sample::{MemorySample, PagerSample, Sample};
use crate::stats::{median, ms, Summary};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The JSON schema name and version.
pub const SCHEMA: &str = "thaw-bench/1";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub created_unix_ms: u64,
    pub function: FunctionInfo,
    pub host: HostInfo,
    pub config: ConfigInfo,
    pub snapshot: SnapshotInfo,
    pub scenarios: Vec<ScenarioResult>,
    pub ratios: Vec<Ratio>,
    pub targets: Vec<Target>,
    pub sweep: Vec<SweepPoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionInfo {
    pub code: String,
    pub handler: String,
    pub memory_mb: u32,
    pub event: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    pub cpus: usize,
    pub kernel: String,
    pub huge_pages_free_at_start: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigInfo {
    pub scenarios: Vec<String>,
    pub iterations: u32,
    pub warmup: u32,
    /// `warm` or `evicted`.
    pub cache: String,
    pub warm_invokes: u32,
    pub pool: u32,
    pub burst: u32,
    pub sweep_memory_mb: Vec<u32>,
    pub sweep_iterations: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub memory_mb: u32,
    pub boot_init_ms: f64,
    pub store_memory_ms: f64,
    pub total_ms: f64,
    pub chunks: usize,
    pub data_chunks: usize,
}

/// One phase's median and mean over a scenario's samples.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub p50_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// `boot`, `eager`, `mmap`, `uffd`, `uffd+prefetch`, `shared`, `warm`, `provisioned`.
    pub name: String,
    /// `restore_to_first_response`, `warm_invoke` or `lease_to_response`.
    pub metric: String,
    /// Memory mode the instances were made in.
    pub mode: String,
    pub latency_ms: Summary,
    pub samples_ms: Vec<f64>,
    /// Phases in order; their means add up to the mean latency.
    pub phases: Vec<Phase>,
    pub open_snapshot_ms: Summary,
    /// Medians per restore (lazy modes only).
    pub pager: Option<PagerSample>,
    /// Median guest bytes installed before the first response.
    pub bytes_installed: Option<u64>,
    /// Median host memory of an idle instance after its first invoke.
    pub memory: Option<MemorySample>,
    /// `provisioned`: requests per start type (`warm`, `restore`).
    pub start_types: BTreeMap<String, u64>,
    /// `burst` and `density`: what the fleet measured besides latency.
    pub fleet: Option<crate::fleet::FleetSample>,
    pub errors: Vec<String>,
}

/// `faster` is `factor` times faster than `slower` (p50 against p50).
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub faster: String,
    pub slower: String,
    pub factor: f64,
    pub text: String,
}

/// A DESIGN.md target checked against this run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// One point of `--sweep-memory`.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub memory_mb: u32,
    pub mode: String,
    pub latency_ms: Option<Summary>,
    pub faults: Option<u64>,
    pub rss_kib: Option<u64>,
    pub error: Option<String>,
}

fn med_u64(v: impl IntoIterator<Item = u64>) -> u64 {
    median(v.into_iter().map(|x| x as f64)) as u64
}

/// Summarises a scenario's samples.
pub fn summarise(
    name: &str,
    metric: &str,
    mode: &str,
    samples: &[Sample],
    errors: Vec<String>,
) -> ScenarioResult {
    let totals: Vec<f64> = samples.iter().map(|s| ms(s.total)).collect();
    let mut names: Vec<&str> = Vec::new();
    for s in samples {
        for (n, _) in &s.phases {
            if !names.contains(n) {
                names.push(n);
            }
        }
    }
    let phases = names
        .iter()
        .map(|n| {
            let v: Vec<f64> = samples
                .iter()
                .map(|s| {
                    s.phases
                        .iter()
                        .find(|(p, _)| p == n)
                        .map_or(0.0, |(_, d)| ms(*d))
                })
                .collect();
            Phase {
                name: n.to_string(),
                p50_ms: median(v.iter().copied()),
                mean_ms: v.iter().sum::<f64>() / v.len().max(1) as f64,
            }
        })
        .collect();
    let pagers: Vec<PagerSample> = samples.iter().filter_map(|s| s.pager).collect();
    let pager = (!pagers.is_empty()).then(|| PagerSample {
        faults: med_u64(pagers.iter().map(|p| p.faults)),
        prefetch_bytes: med_u64(pagers.iter().map(|p| p.prefetch_bytes)),
        fault_bytes: med_u64(pagers.iter().map(|p| p.fault_bytes)),
        zero_installs: med_u64(pagers.iter().map(|p| p.zero_installs)),
        fault_us_total: med_u64(pagers.iter().map(|p| p.fault_us_total)),
    });
    let installed: Vec<u64> = samples.iter().filter_map(|s| s.bytes_installed).collect();
    let mems: Vec<MemorySample> = samples.iter().filter_map(|s| s.memory).collect();
    let memory = (!mems.is_empty()).then(|| MemorySample {
        guest_kib: med_u64(mems.iter().map(|m| m.guest_kib)),
        rss_kib: med_u64(mems.iter().map(|m| m.rss_kib)),
        pss_kib: med_u64(mems.iter().map(|m| m.pss_kib)),
        private_kib: med_u64(mems.iter().map(|m| m.private_kib)),
        hugetlb_kib: med_u64(mems.iter().map(|m| m.hugetlb_kib)),
    });
    let mut start_types = BTreeMap::new();
    for s in samples {
        if let Some(st) = s.start {
            *start_types.entry(st.to_string()).or_insert(0) += 1;
        }
    }
    let opens: Vec<f64> = samples
        .iter()
        .filter(|s| !s.open.is_zero())
        .map(|s| ms(s.open))
        .collect();
    ScenarioResult {
        name: name.into(),
        metric: metric.into(),
        mode: mode.into(),
        latency_ms: Summary::of(&totals),
        samples_ms: totals,
        phases,
        open_snapshot_ms: Summary::of(&opens),
        pager,
        bytes_installed: (!installed.is_empty()).then(|| med_u64(installed)),
        memory,
        start_types,
        fleet: None,
        errors,
    }
}

fn fmt_factor(f: f64) -> String {
    if f >= 10.0 {
        format!("{f:.0}x")
    } else {
        format!("{f:.1}x")
    }
}

/// Ratios within the run: every restore mode against `boot`, and the fastest restore mode
/// against every other one (p50s).
pub fn ratios(scenarios: &[ScenarioResult]) -> Vec<Ratio> {
    let restores: Vec<&ScenarioResult> = scenarios
        .iter()
        .filter(|s| s.metric == "restore_to_first_response" && s.latency_ms.n > 0)
        .collect();
    let mut out = Vec::new();
    let mut push = |a: &ScenarioResult, b: &ScenarioResult| {
        if a.latency_ms.p50 <= 0.0 {
            return;
        }
        let factor = b.latency_ms.p50 / a.latency_ms.p50;
        let (f, word) = if factor >= 1.0 {
            (factor, "faster")
        } else {
            (1.0 / factor, "slower")
        };
        let text = format!(
            "{} is {} {word} than {} (p50 {:.2} ms vs {:.2} ms)",
            a.name,
            fmt_factor(f),
            b.name,
            a.latency_ms.p50,
            b.latency_ms.p50
        );
        out.push(Ratio {
            faster: a.name.clone(),
            slower: b.name.clone(),
            factor,
            text,
        });
    };
    if let Some(boot) = restores.iter().find(|s| s.name == "boot") {
        for s in restores.iter().filter(|s| s.name != "boot") {
            push(s, boot);
        }
    }
    let fastest = restores
        .iter()
        .filter(|s| s.name != "boot")
        .min_by(|a, b| a.latency_ms.p50.total_cmp(&b.latency_ms.p50));
    if let Some(f) = fastest {
        for s in restores
            .iter()
            .filter(|s| s.name != "boot" && s.name != f.name)
        {
            push(f, s);
        }
    }
    // The baseline: every restore mode against the same handler in a bare host python3.
    if let Some(host) = scenarios
        .iter()
        .find(|s| s.name == "host-python3" && s.latency_ms.n > 0)
    {
        for s in restores.iter().filter(|s| s.name != "boot") {
            push(s, host);
        }
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

/// The Markdown report.
pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# thaw bench: {} ({})\n",
        r.function.code, r.function.handler
    );
    let _ = writeln!(
        md,
        "Guest {} MiB, cache {}, {} iterations after {} warm-up, {} CPUs, {} free huge pages at start. Snapshot {} (boot+init {:.1} ms, store memory {:.1} ms, {} of {} chunks hold data).\n",
        r.function.memory_mb, r.config.cache, r.config.iterations, r.config.warmup, r.host.cpus,
        r.host.huge_pages_free_at_start, &r.snapshot.id[..r.snapshot.id.len().min(12)], r.snapshot.boot_init_ms,
        r.snapshot.store_memory_ms, r.snapshot.data_chunks, r.snapshot.chunks
    );
    md.push_str("| scenario | metric | n | p50 ms | p90 ms | p99 ms | max ms | faults | MiB prefetched / faulted | idle RSS MiB (% guest) | private MiB |\n");
    md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in &r.scenarios {
        let l = &s.latency_ms;
        let faults = s.pager.map_or("-".into(), |p| p.faults.to_string());
        let bytes = match (s.pager, s.bytes_installed) {
            (Some(p), _) => format!("{} / {}", mib(p.prefetch_bytes), mib(p.fault_bytes)),
            (None, Some(b)) => format!("{} / -", mib(b)),
            _ => "-".into(),
        };
        let (rss, private) = s.memory.map_or(("-".into(), "-".into()), |m| {
            (
                format!(
                    "{:.1} ({:.1}%)",
                    m.rss_kib as f64 / 1024.0,
                    100.0 * m.rss_kib as f64 / m.guest_kib.max(1) as f64
                ),
                format!("{:.1}", m.private_kib as f64 / 1024.0),
            )
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
            s.name, s.metric, l.n, l.p50, l.p90, l.p99, l.max, faults, bytes, rss, private
        );
    }
    let fleets: Vec<&ScenarioResult> = r.scenarios.iter().filter(|s| s.fleet.is_some()).collect();
    if !fleets.is_empty() {
        md.push_str("\n## Fleets\n\n| scenario | instances | burst wall ms | restores/s | READY ms | host MiB / instance | charged MiB / instance |\n|---|---:|---:|---:|---:|---:|---:|\n");
        let f1 = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        for s in fleets {
            let f = s.fleet.unwrap_or_default();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                f.instances,
                f1(f.burst_wall_ms),
                f1(f.restores_per_s),
                f1(f.ready_ms),
                f1(f.host_mib_per_instance),
                f1(f.charged_mib_per_instance)
            );
        }
    }
    md.push_str("\n## Phases (p50, ms)\n\n");
    for s in &r.scenarios {
        let parts: Vec<String> = s
            .phases
            .iter()
            .map(|p| format!("{} {:.2}", p.name, p.p50_ms))
            .collect();
        let open = if s.open_snapshot_ms.n > 0 {
            format!(
                " (open_snapshot {:.2}, not in the total)",
                s.open_snapshot_ms.p50
            )
        } else {
            String::new()
        };
        let starts = if s.start_types.is_empty() {
            String::new()
        } else {
            format!(" starts {:?}", s.start_types)
        };
        let _ = writeln!(
            md,
            "- **{}**: {}{}{}",
            s.name,
            parts.join(" | "),
            open,
            starts
        );
        for e in &s.errors {
            let _ = writeln!(md, "  - error: {e}");
        }
    }
    if !r.ratios.is_empty() {
        md.push_str("\n## Ratios (within this run)\n\n");
        for x in &r.ratios {
            let _ = writeln!(md, "- {}", x.text);
        }
    }
    if !r.targets.is_empty() {
        md.push_str(
            "\n## Targets (DESIGN.md)\n\n| target | goal | measured | met |\n|---|---|---|---|\n",
        );
        for t in &r.targets {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                t.name,
                t.target,
                t.measured,
                if t.met { "yes" } else { "**no**" }
            );
        }
    }
    if !r.sweep.is_empty() {
        md.push_str("\n## Memory sweep: restore-to-first-response p50 ms (p99)\n\n");
        let mut sizes: Vec<u32> = r.sweep.iter().map(|p| p.memory_mb).collect();
        sizes.dedup();
        let mut modes: Vec<&str> = Vec::new();
        for p in &r.sweep {
            if !modes.contains(&p.mode.as_str()) {
                modes.push(&p.mode);
            }
        }
        let _ = writeln!(
            md,
            "| mode | {} |",
            sizes
                .iter()
                .map(|s| format!("{s} MiB"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(md, "|---|{}", "---:|".repeat(sizes.len()));
        for m in &modes {
            let cells: Vec<String> = sizes
                .iter()
                .map(
                    |sz| match r.sweep.iter().find(|p| p.memory_mb == *sz && p.mode == *m) {
                        Some(SweepPoint {
                            latency_ms: Some(l),
                            ..
                        }) => format!("{:.2} ({:.2})", l.p50, l.p99),
                        Some(SweepPoint { error: Some(_), .. }) => "error".into(),
                        _ => "-".into(),
                    },
                )
                .collect();
            let _ = writeln!(md, "| {m} | {} |", cells.join(" | "));
        }
        for p in r.sweep.iter().filter(|p| p.error.is_some()) {
            let _ = writeln!(
                md,
                "\n- {} MiB {}: {}",
                p.memory_mb,
                p.mode,
                p.error.as_deref().unwrap_or("")
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(name: &str, p50: u64) -> ScenarioResult {
        let s = Sample {
            total: Duration::from_millis(p50),
            phases: vec![("memory", Duration::from_millis(p50))],
            ..Default::default()
        };
        summarise(name, "restore_to_first_response", name, &[s], vec![])
    }

    #[test]
    fn test_ratios_against_boot_and_fastest() {
        let r = ratios(&[
            result("boot", 700),
            result("uffd", 70),
            result("uffd+prefetch", 5),
        ]);
        let texts: Vec<&str> = r.iter().map(|x| x.text.as_str()).collect();
        assert!(
            texts[0].starts_with("uffd is 10x faster than boot"),
            "{texts:?}"
        );
        assert!(
            texts[1].starts_with("uffd+prefetch is 140x faster than boot"),
            "{texts:?}"
        );
        assert!(
            texts[2].starts_with("uffd+prefetch is 14x faster than uffd"),
            "{texts:?}"
        );
    }

    #[test]
    fn test_summarise_phases_in_order() {
        let s = Sample {
            total: Duration::from_millis(3),
            phases: vec![
                ("memory", Duration::from_millis(1)),
                ("guest_run", Duration::from_millis(2)),
            ],
            ..Default::default()
        };
        let r = summarise("x", "m", "x", &[s.clone(), s], vec![]);
        assert_eq!(
            r.phases.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["memory", "guest_run"]
        );
        assert_eq!(r.latency_ms.p50, 3.0);
    }
}
