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
