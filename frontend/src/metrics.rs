//! Prometheus metrics with OpenTelemetry FaaS names (`faas.invocations`, `faas.coldstarts`,
//! `faas.init_duration`, `faas.invoke_duration`, `faas.errors`, `faas.timeouts`) rendered in the
//! text exposition format, plus throttles, async-queue counters and the scheduler's pool gauges
//! (provisioned requested/allocated/available) read at scrape time. Labels: `function`, `version`
//! and `start` (`warm`, `boot` or `restore`).
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;
use thaw_scheduler::SchedulerStats;

/// Histogram bucket upper bounds, seconds.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Series {
    invocations: u64,
    coldstarts: u64,
    errors: u64,
    timeouts: u64,
    invoke: Histogram,
    init: Histogram,
}

type Key = (String, String, &'static str);
/// (name, help, getter) of a counter or gauge family.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);

#[derive(Debug, Default)]
struct Inner {
    series: BTreeMap<Key, Series>,
    throttles: BTreeMap<Key, u64>,
    async_events: BTreeMap<&'static str, u64>,
}

/// What one invocation contributes.
#[derive(Debug)]
pub struct Observation<'a> {
    pub function: &'a str,
    pub version: &'a str,
    /// `warm`, `boot` or `restore`.
    pub start: &'static str,
    pub duration: Duration,
    /// Init/restore time when this was a cold start.
    pub init: Option<Duration>,
    pub error: bool,
    pub timeout: bool,
}

/// The service's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Records one invocation.
    pub fn observe(&self, o: &Observation<'_>) {
        let mut inner = self.inner.lock();
        let s = inner
            .series
            .entry((o.function.to_string(), o.version.to_string(), o.start))
            .or_default();
        s.invocations += 1;
        s.invoke.observe(o.duration.as_secs_f64());
        if let Some(init) = o.init {
            s.coldstarts += 1;
            s.init.observe(init.as_secs_f64());
        }
        s.errors += u64::from(o.error);
        s.timeouts += u64::from(o.timeout);
    }

    /// Records a throttled invoke.
    pub fn throttle(&self, function: &str, version: &str, reason: &'static str) {
        *self
            .inner
            .lock()
            .throttles
            .entry((function.to_string(), version.to_string(), reason))
            .or_default() += 1;
    }

    /// Counts an async event outcome (`queued`, `succeeded`, `retried`, `failed`, `dropped`).
    pub fn async_event(&self, outcome: &'static str) {
        *self.inner.lock().async_events.entry(outcome).or_default() += 1;
    }

    /// The text exposition, with `stats` as gauges.
    pub fn render(&self, stats: &SchedulerStats, queued_events: u64) -> String {
        let inner = self.inner.lock();
        let mut out = String::with_capacity(4096);
        let labels = |(f, v, s): &Key, key: &str| {
            format!(
                "function=\"{}\",version=\"{}\",{key}=\"{s}\"",
                escape(f),
                escape(v)
            )
        };
        let counters: [Family<Series, u64>; 4] = [
            (
                "faas_invocations_total",
                "Invocations (faas.invocations).",
                |s| s.invocations,
            ),
            (
                "faas_coldstarts_total",
                "Invocations that started an instance (faas.coldstarts).",
                |s| s.coldstarts,
            ),
            (
                "faas_errors_total",
                "Invocations that failed (faas.errors).",
                |s| s.errors,
            ),
            (
                "faas_timeouts_total",
                "Invocations that timed out (faas.timeouts).",
                |s| s.timeouts,
            ),
        ];
        for (name, help, get) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (k, s) in &inner.series {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(k, "start"), get(s));
            }
        }
        for (name, help, init) in [
            (
                "faas_invoke_duration_seconds",
                "Handler duration (faas.invoke_duration).",
                false,
            ),
            (
                "faas_init_duration_seconds",
                "Boot or restore duration of cold starts (faas.init_duration).",
                true,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (k, s) in &inner.series {
                let h = if init { &s.init } else { &s.invoke };
                if h.count > 0 {
                    h.render(&mut out, name, &labels(k, "start"));
                }
            }
        }
        let _ = writeln!(out, "# HELP thaw_throttles_total Invokes answered 429.\n# TYPE thaw_throttles_total counter");
        for (k, n) in &inner.throttles {
            let _ = writeln!(out, "thaw_throttles_total{{{}}} {n}", labels(k, "reason"));
        }
        let _ = writeln!(out, "# HELP thaw_async_events_total Async event outcomes.\n# TYPE thaw_async_events_total counter");
        for (outcome, n) in &inner.async_events {
            let _ = writeln!(out, "thaw_async_events_total{{outcome=\"{outcome}\"}} {n}");
        }
        drop(inner);
        let gauges: [Family<thaw_scheduler::PoolStats, u32>; 6] = [
            (
                "faas_provisioned_requested",
                "RequestedProvisionedConcurrentExecutions.",
                |p| p.provisioned_requested,
            ),
            (
                "faas_provisioned_allocated",
                "AllocatedProvisionedConcurrentExecutions.",
                |p| p.provisioned_allocated,
            ),
            (
                "faas_provisioned_available",
                "AvailableProvisionedConcurrentExecutions.",
                |p| p.provisioned_available,
            ),
            ("thaw_pool_idle", "Idle on-demand instances.", |p| p.idle),
            ("thaw_pool_busy", "Busy on-demand instances.", |p| p.busy),
            ("thaw_pool_restoring", "Instances being started.", |p| {
                p.restoring
            }),
        ];
        for family in gauges {
            render_pool_gauge(&mut out, &stats.pools, family);
        }
        let _ = writeln!(
            out,
            "# TYPE thaw_memory_used_bytes gauge\nthaw_memory_used_bytes {}",
            stats.memory_used
        );
        let _ = writeln!(
            out,
            "# TYPE thaw_memory_budget_bytes gauge\nthaw_memory_budget_bytes {}",
            stats.memory_budget
        );
        let admission = stats.admission;
        let margin = match admission {
            thaw_scheduler::Admission::Measured { margin_pct, .. } => margin_pct,
            thaw_scheduler::Admission::MemorySize => 0,
        };
        let _ = writeln!(
            out,
            "# HELP thaw_memory_admission The overcommit policy: instances charged their measured use (+ margin_pct) or their MemorySize.\n# TYPE thaw_memory_admission gauge\nthaw_memory_admission{{policy=\"{}\",margin_pct=\"{margin}\"}} 1",
            admission.as_str()
        );
        let memory: [Family<thaw_scheduler::PoolStats, u64>; 2] = [
            (
                "thaw_instance_memory_charged_bytes",
                "Bytes each instance of the version is charged against the memory budget.",
                |p| p.memory_charged_per_instance,
            ),
            (
                "thaw_instance_memory_measured_bytes",
                "The most an instance of the version was measured to cost the host (0: not yet).",
                |p| p.memory_measured_per_instance,
            ),
        ];
        for family in memory {
            render_pool_gauge(&mut out, &stats.pools, family);
        }
        let _ = writeln!(
            out,
            "# TYPE thaw_async_queue_depth gauge\nthaw_async_queue_depth {queued_events}"
        );
        out
    }
}

/// One gauge family with a sample per function version.
fn render_pool_gauge<V: std::fmt::Display>(
    out: &mut String,
    pools: &[thaw_scheduler::PoolStats],
    (name, help, get): Family<thaw_scheduler::PoolStats, V>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for p in pools {
        let fv = &p.function_version;
        let _ = writeln!(
            out,
            "{name}{{function=\"{}\",version=\"{}\"}} {}",
            escape(&fv.function),
            escape(&fv.version),
            get(p)
        );
    }
}

/// Appends the egress counters (every instance's sockets add to them).
pub fn render_net(out: &mut String, n: &thaw_net::NetStatsSnapshot) {
    let rows: [(&str, &str, u64); 8] = [
        (
            "thaw_egress_connects_total",
            "Outbound connects the egress policy allowed.",
            n.connects,
        ),
        (
            "thaw_egress_denied_total",
            "Outbound connects the egress policy denied.",
            n.denied,
        ),
        (
            "thaw_egress_resolves_total",
            "Host name resolutions for functions.",
            n.resolves,
        ),
        (
            "thaw_egress_resolves_denied_total",
            "Name resolutions the policy refused.",
            n.resolves_denied,
        ),
        (
            "thaw_egress_bytes_in_total",
            "Bytes functions received (plaintext).",
            n.bytes_in,
        ),
        (
            "thaw_egress_bytes_out_total",
            "Bytes functions sent (plaintext).",
            n.bytes_out,
        ),
        (
            "thaw_egress_tls_handshakes_total",
            "TLS handshakes completed on the host.",
            n.tls_handshakes,
        ),
        (
            "thaw_egress_tls_failures_total",
            "TLS handshakes that failed.",
            n.tls_failures,
        ),
    ];
    for (name, help, v) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
}

/// The working-set images this process maps (worker/src/restore/wsimage.rs).
pub fn render_images(out: &mut String, s: &thaw_worker::ImageStats) {
    let rows: [(&str, &str, &str, u64); 4] = [
        (
            "thaw_ws_images_mapped",
            "gauge",
            "Working-set images (hugetlbfs, shared across processes) this process maps.",
            s.mapped as u64,
        ),
        (
            "thaw_ws_images_mapped_bytes",
            "gauge",
            "Huge-page bytes those images hold.",
            s.mapped_bytes,
        ),
        (
            "thaw_ws_image_restores_total",
            "counter",
            "Restores that copied their working set from an image instead of the store.",
            s.restores,
        ),
        (
            "thaw_ws_images_built_total",
            "counter",
            "Working-set images this process built and published.",
            s.built,
        ),
    ];
    render_rows(out, &rows);
}

/// `# HELP`, `# TYPE` and the value of each (name, kind, help, value).
fn render_rows(out: &mut String, rows: &[(&str, &str, &str, u64)]) {
    for (name, kind, help, v) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
}

/// The host's pool of VMs reset for reuse (worker/src/restore/recycle.rs).
pub fn render_recycle(out: &mut String, r: &thaw_worker::RecycleStats) {
    let rows: [(&str, &str, &str, u64); 4] = [
        (
            "thaw_recycled_ready",
            "gauge",
            "Retired instances' VMs reset to their snapshot and ready for a restore.",
            r.ready as u64,
        ),
        (
            "thaw_recycled_restores_total",
            "counter",
            "Restores served by a reset VM instead of a new one.",
            r.reused,
        ),
        (
            "thaw_recycled_resets_total",
            "counter",
            "Retired instances' VMs reset for reuse.",
            r.resets,
        ),
        (
            "thaw_recycled_refused_total",
            "counter",
            "Retired instances whose VM could not be reset (torn down).",
            r.refused,
        ),
    ];
    render_rows(out, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name` in `text`, checking its HELP and TYPE lines.
    fn sample(text: &str, name: &str, kind: &str) -> u64 {
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{text}");
        assert!(text.contains(&format!("# HELP {name} ")), "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {name} in {text}"))
    }

    #[test]
    fn test_image_and_reuse_pool_metrics_render_as_prometheus_text() {
        let mut out = String::new();
        render_images(
            &mut out,
            &thaw_worker::ImageStats {
                mapped: 2,
                mapped_bytes: 26 << 21,
                restores: 17,
                built: 1,
            },
        );
        render_recycle(
            &mut out,
            &thaw_worker::RecycleStats {
                reused: 5,
                refused: 1,
                ready: 3,
                resets: 6,
                reset_time: std::time::Duration::from_millis(9),
            },
        );
        assert_eq!(sample(&out, "thaw_ws_images_mapped", "gauge"), 2);
        assert_eq!(
            sample(&out, "thaw_ws_images_mapped_bytes", "gauge"),
            26 << 21
        );
        assert_eq!(sample(&out, "thaw_ws_image_restores_total", "counter"), 17);
        assert_eq!(sample(&out, "thaw_ws_images_built_total", "counter"), 1);
        assert_eq!(sample(&out, "thaw_recycled_ready", "gauge"), 3);
        assert_eq!(sample(&out, "thaw_recycled_restores_total", "counter"), 5);
        assert_eq!(sample(&out, "thaw_recycled_resets_total", "counter"), 6);
        assert_eq!(sample(&out, "thaw_recycled_refused_total", "counter"), 1);
    }
}
