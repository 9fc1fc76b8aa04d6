//! Per-invocation log records as Lambda writes them, the `Tail` slice returned in
//! `X-Amz-Log-Result`, and the sink that prints them on the server's stdout.
//!
//! Text format (`LoggingConfig.LogFormat = Text`): START, the function's output, END, REPORT
//! with `Init Duration` after a cold boot, or SnapStart's `Restore Duration` / `Billed Restore
//! Duration` after a restore (every thaw restore is a snapshot restore). JSON format: the
//! Telemetry API's `platform.start` and `platform.report` records around the function's output
//! (which the runtime writes as JSON itself), dropped when `SystemLogLevel` is above `INFO`.
//! A version's build logs `INIT_REPORT` (or `platform.initReport`).
use crate::registry::{LogFormat, LogLevel};
use base64::Engine;
use serde_json::json;
use std::io::Write;
use std::time::Duration;
use thaw_worker::factory::{ColdStart, StartKind};

/// `X-Amz-Log-Result` carries at most this many bytes of the log's end.
pub const TAIL_BYTES: usize = 4096;

/// One invocation's record.
#[derive(Debug)]
pub struct Record<'a> {
    pub request_id: &'a str,
    pub version: &'a str,
    pub function_log: &'a [u8],
    pub duration: Duration,
    pub memory_mb: u32,
    /// The instance's peak memory use so far, bytes.
    pub max_memory_used: u64,
    /// Set on the first invocation of a fresh on-demand instance.
    pub cold: Option<ColdStart>,
    /// Appended after the function's output (e.g. "Task timed out after 3.00 seconds").
    pub platform_note: Option<&'a str>,
    pub format: LogFormat,
    /// Platform records below this level are dropped (JSON format only).
    pub system_level: LogLevel,
    /// `success`, `error` (a function error), `timeout` or `failure` (the runtime died).
    pub status: &'a str,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The invocation's log, newline-terminated, in its format (see the module doc).
pub fn render(r: &Record<'_>) -> String {
    match r.format {
        LogFormat::Text => render_text(r),
        LogFormat::Json => render_json(r),
    }
}

fn billed_ms(d: Duration) -> u64 {
    ms(d).ceil().max(1.0) as u64
}

fn render_json(r: &Record<'_>) -> String {
    let mut out = String::with_capacity(r.function_log.len() + 512);
    let now = crate::time::iso_timestamp(crate::time::now_ms());
    let platform = r.system_level <= LogLevel::Info;
    if platform {
        let start = json!({"time": now, "type": "platform.start",
            "record": {"requestId": r.request_id, "version": r.version}});
        out.push_str(&start.to_string());
        out.push('\n');
    }
    out.push_str(&String::from_utf8_lossy(r.function_log));
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if let Some(note) = r.platform_note {
        let line =
            json!({"timestamp": now, "level": "ERROR", "requestId": r.request_id, "message": note});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    if platform || r.status != "success" {
        let mut metrics = json!({
            "durationMs": (ms(r.duration) * 1000.0).round() / 1000.0,
            "billedDurationMs": billed_ms(r.duration),
            "memorySizeMB": r.memory_mb,
            "maxMemoryUsedMB": r.max_memory_used.div_ceil(1 << 20),
        });
        if let Some(c) = r.cold {
            let d = (ms(c.duration) * 1000.0).round() / 1000.0;
            match c.kind {
                StartKind::Boot => metrics["initDurationMs"] = json!(d),
                StartKind::Restore => {
                    metrics["restoreDurationMs"] = json!(d);
                    metrics["billedRestoreDurationMs"] = json!(billed_ms(c.duration));
                }
            }
        }
        let mut record = json!({"requestId": r.request_id, "metrics": metrics, "status": r.status});
        match r.status {
            "timeout" => record["errorType"] = json!("Sandbox.Timedout"),
            "failure" => record["errorType"] = json!("Runtime.ExitError"),
            _ => {}
        }
        let report = json!({"time": now, "type": "platform.report", "record": record});
        out.push_str(&report.to_string());
        out.push('\n');
    }
    out
}

/// The `INIT_REPORT` of a version's build (the init that made its snapshot).
pub fn init_report(
    format: LogFormat,
    initialization_type: &str,
    duration: Duration,
    ok: bool,
) -> String {
    let status = if ok { "success" } else { "error" };
    match format {
        LogFormat::Text => format!(
            "INIT_REPORT Init Duration: {:.2} ms\tPhase: init\tStatus: {status}\n",
            ms(duration)
        ),
        LogFormat::Json => {
            let v = json!({"time": crate::time::iso_timestamp(crate::time::now_ms()),
                "type": "platform.initReport",
                "record": {"initializationType": initialization_type, "phase": "init",
                    "status": status, "metrics": {"durationMs": (ms(duration) * 1000.0).round() / 1000.0}}});
            format!("{v}\n")
        }
    }
}

fn render_text(r: &Record<'_>) -> String {
    let mut out = String::with_capacity(r.function_log.len() + 256);
    out.push_str(&format!(
        "START RequestId: {} Version: {}\n",
        r.request_id, r.version
    ));
    out.push_str(&String::from_utf8_lossy(r.function_log));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    if let Some(note) = r.platform_note {
        out.push_str(&format!("{} {}\n", r.request_id, note));
    }
    out.push_str(&format!("END RequestId: {}\n", r.request_id));
    out.push_str(&format!(
        "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
        r.request_id,
        ms(r.duration),
        billed_ms(r.duration),
        r.memory_mb,
        r.max_memory_used.div_ceil(1 << 20),
    ));
    if let Some(c) = r.cold {
        match c.kind {
            StartKind::Boot => out.push_str(&format!("\tInit Duration: {:.2} ms", ms(c.duration))),
            StartKind::Restore => out.push_str(&format!(
                "\tRestore Duration: {:.2} ms\tBilled Restore Duration: {} ms",
                ms(c.duration),
                billed_ms(c.duration)
            )),
        }
    }
    out.push('\n');
    out
}

/// Base64 of the last [`TAIL_BYTES`] of `log`.
pub fn tail(log: &str) -> String {
    let bytes = log.as_bytes();
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    base64::engine::general_purpose::STANDARD.encode(&bytes[start..])
}

/// Where invocation logs go: the server's stdout, each line prefixed with `[function:version]`.
#[derive(Debug, Clone, Copy)]
pub struct LogSink {
    pub enabled: bool,
}

impl LogSink {
    /// Prints `text` for `function:version`.
    pub fn emit(&self, function: &str, version: &str, text: &str) {
        if !self.enabled {
            return;
        }
        let _ = std::io::stdout()
            .lock()
            .write_all(prefixed(function, version, text).as_bytes());
    }
}

/// `text` split at `\n` only, each line escaped ([`escape_line`]) and prefixed with
/// `[function:version] `.
pub fn prefixed(function: &str, version: &str, text: &str) -> String {
    let mut buf = String::with_capacity(text.len() + 64);
    for line in text.split_terminator('\n') {
        buf.push_str(&format!("[{function}:{version}] "));
        escape_line(line, &mut buf);
        buf.push('\n');
    }
    buf
}

/// Appends `line` with everything that could end, rewrite or disguise a terminal line escaped as
/// `\xNN` / `\u{NNNN}`: C0 controls but tab (CR, ESC, BS, ...), DEL, C1 controls (incl. NEL),
/// the Unicode line and paragraph separators, and bidirectional overrides. A function's output
/// thus stays on lines that start with its own prefix, under `tail -f` and `splitlines()` alike.
pub fn escape_line(line: &str, out: &mut String) {
    for c in line.chars() {
        match c {
            '\t' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            '\u{80}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn test_function_output_cannot_forge_another_functions_line() {
        let forged = "ok\r[other:$LATEST] REPORT RequestId: x\u{2028}[other:1] END\u{1b}[2K\u{85}\u{2029}\u{202e}\\x1b\ttab\n\nlast";
        let out = prefixed("f", "$LATEST", forged);
        assert_eq!(
            out,
            "[f:$LATEST] ok\\x0d[other:$LATEST] REPORT RequestId: x\\u{2028}[other:1] END\\x1b[2K\\u{0085}\\u{2029}\\u{202e}\\x1b\ttab\n[f:$LATEST] \n[f:$LATEST] last\n"
        );
        // Every line any consumer splits out starts with the function's own prefix.
        for line in out.lines() {
            assert!(line.starts_with("[f:$LATEST] "), "{line:?}");
        }
        let python_splitlines = out.split([
            '\n', '\r', '\u{b}', '\u{c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}',
            '\u{2029}',
        ]);
        for line in python_splitlines.filter(|l| !l.is_empty()) {
            assert!(line.starts_with("[f:$LATEST] "), "{line:?}");
        }
        assert!(!out.contains('\u{1b}'));
    }

    #[test]
    fn test_report_line_and_tail() {
        let text = render(&Record {
            request_id: "r1",
            version: "1",
            function_log: b"hi",
            duration: Duration::from_micros(1500),
            memory_mb: 512,
            max_memory_used: (37 << 20) + 1,
            cold: Some(ColdStart {
                kind: StartKind::Boot,
                duration: Duration::from_millis(120),
            }),
            platform_note: None,
            format: LogFormat::Text,
            system_level: LogLevel::Info,
            status: "success",
        });
        assert!(text.starts_with("START RequestId: r1 Version: 1\nhi\nEND RequestId: r1\n"));
        assert!(text.contains(
            "REPORT RequestId: r1\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 512 MB\tMax Memory Used: 38 MB"
        ));
        assert!(text.trim_end().ends_with("Init Duration: 120.00 ms"));
        let long = "x".repeat(10_000) + "END";
        let t = base64::engine::general_purpose::STANDARD
            .decode(tail(&long))
            .unwrap();
        assert_eq!(t.len(), TAIL_BYTES);
        assert!(t.ends_with(b"END"));
    }

    fn restored(format: LogFormat, system_level: LogLevel, status: &'static str) -> String {
        render(&Record {
            request_id: "r2",
            version: "3",
            function_log: b"{\"level\": \"INFO\", \"message\": \"hi\"}\n",
            duration: Duration::from_micros(800),
            memory_mb: 128,
            max_memory_used: 5 << 20,
            cold: Some(ColdStart {
                kind: StartKind::Restore,
                duration: Duration::from_micros(2_400),
            }),
            platform_note: (status == "timeout").then_some("Task timed out after 1.00 seconds"),
            format,
            system_level,
            status,
        })
    }

    #[test]
    fn test_restores_report_as_snapstart_does() {
        let text = restored(LogFormat::Text, LogLevel::Info, "success");
        assert!(
            text.trim_end()
                .ends_with("Restore Duration: 2.40 ms\tBilled Restore Duration: 3 ms"),
            "{text}"
        );
        assert!(!text.contains("Init Duration"));
    }

    #[test]
    fn test_json_platform_records() {
        let text = restored(LogFormat::Json, LogLevel::Info, "success");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["type"], "platform.start");
        assert_eq!(lines[0]["record"]["requestId"], "r2");
        assert_eq!(lines[0]["record"]["version"], "3");
        assert_eq!(lines[1]["message"], "hi");
        let report = &lines[2];
        assert_eq!(report["type"], "platform.report");
        let m = &report["record"]["metrics"];
        assert_eq!(m["durationMs"], 0.8);
        assert_eq!(m["billedDurationMs"], 1);
        assert_eq!(m["memorySizeMB"], 128);
        assert_eq!(m["maxMemoryUsedMB"], 5);
        assert_eq!(m["restoreDurationMs"], 2.4);
        assert_eq!(m["billedRestoreDurationMs"], 3);
        assert!(m.get("initDurationMs").is_none());
        assert_eq!(report["record"]["status"], "success");
        // SystemLogLevel WARN drops the platform records of a successful invocation ...
        let quiet = restored(LogFormat::Json, LogLevel::Warn, "success");
        assert_eq!(quiet.lines().count(), 1, "{quiet}");
        // ... but not the report of one that timed out.
        let timeout = restored(LogFormat::Json, LogLevel::Warn, "timeout");
        let last: serde_json::Value =
            serde_json::from_str(timeout.lines().last().unwrap()).unwrap();
        assert_eq!(last["record"]["status"], "timeout");
        assert_eq!(last["record"]["errorType"], "Sandbox.Timedout");
        let init = init_report(
            LogFormat::Text,
            "on-demand",
            Duration::from_millis(1500),
            true,
        );
        assert_eq!(
            init,
            "INIT_REPORT Init Duration: 1500.00 ms\tPhase: init\tStatus: success\n"
        );
        let init: serde_json::Value = serde_json::from_str(&init_report(
            LogFormat::Json,
            "snap-start",
            Duration::from_millis(2),
            false,
        ))
        .unwrap();
        assert_eq!(init["type"], "platform.initReport");
        assert_eq!(init["record"]["status"], "error");
        assert_eq!(init["record"]["initializationType"], "snap-start");
    }
}
