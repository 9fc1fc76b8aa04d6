//! Per-invocation log records as Lambda writes them (START, the function's output, END, REPORT
//! with `Init Duration` after a cold boot or `Restore Duration` after a restore), the `Tail` slice
//! returned in `X-Amz-Log-Result`, and the sink that prints them on the server's stdout.
use base64::Engine;
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
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// START, the function's output, END and REPORT, newline-terminated.
pub fn render(r: &Record<'_>) -> String {
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
        ms(r.duration).ceil().max(1.0) as u64,
        r.memory_mb,
        r.max_memory_used.div_ceil(1 << 20),
    ));
    if let Some(c) = r.cold {
        let label = match c.kind {
            StartKind::Boot => "Init Duration",
            StartKind::Restore => "Restore Duration",
        };
        out.push_str(&format!("\t{label}: {:.2} ms", ms(c.duration)));
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
        let mut buf = String::with_capacity(text.len() + 64);
        for line in text.lines() {
            buf.push_str(&format!("[{function}:{version}] {line}\n"));
        }
        let _ = std::io::stdout().lock().write_all(buf.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

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
}
