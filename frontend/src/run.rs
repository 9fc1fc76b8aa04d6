//! `thaw run`: boot (or restore) one instance, invoke it, print the result JSON on
//! stdout (exit 0) or the error JSON (exit 1); phase timings go to stderr.
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use thaw_worker::{FunctionCode, FunctionSpec, Instance, InvokeRequest, Runtime, WorkerError};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Function code: a zip file or a directory with the handler module at its root.
    pub code: PathBuf,
    /// Handler as module.function.
    #[arg(long, default_value = "app.handler")]
    pub handler: String,
    /// Event JSON passed to the handler.
    #[arg(long, default_value = "{}")]
    pub event: String,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory_mb: u32,
    /// Function timeout in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
    /// Invoke the same instance N times and print warm p50/p99 on stderr.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Function environment variables, KEY=VALUE.
    #[arg(long = "env", value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
    /// Data directory (module cache, snapshot store).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Prints a failure as Lambda error JSON and returns exit code 1.
fn fail(e: &WorkerError) -> ExitCode {
    let log = String::from_utf8_lossy(e.log());
    if !log.is_empty() {
        eprint!("{log}");
    }
    println!("{}", String::from_utf8_lossy(&e.to_error_json()));
    ExitCode::from(1)
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let data = crate::paths::data_dir(args.data.clone());
    let code = match FunctionCode::load(&args.code) {
        Ok(c) => c,
        Err(e) => return Ok(fail(&e)),
    };
    let name = args.code.file_stem().map_or("function".into(), |s| s.to_string_lossy().into_owned());
    let mut spec = FunctionSpec::new(&name, &args.handler, code);
    spec.memory_mb = args.memory_mb;
    spec.timeout = Duration::from_secs_f64(args.timeout);
    spec.env.extend(args.env.iter().cloned());
    let runtime = Runtime::python(&thaw_worker::runtime::default_runtime_dir(), &crate::paths::module_cache(&data))
        .context("loading the python3.12 runtime")?;
    eprintln!(
        "module: {} ({} in {})",
        if runtime.module.cache_hit { "cache hit" } else { "compiled (cache miss)" },
        runtime.module.bytes.len(),
        ms(runtime.module.elapsed)
    );
    let (mut instance, t) = match Instance::boot(&runtime, Arc::new(spec)) {
        Ok(v) => v,
        Err(e) => return Ok(fail(&e)),
    };
    eprint!("{}", String::from_utf8_lossy(&instance.init_log));
    eprintln!(
        "cold boot: vm_create {} | load {} | runtime_init {} | function_init {} | to_ready {} | total {}",
        ms(t.vm_create),
        ms(t.load),
        ms(t.runtime_init),
        ms(t.function_init),
        ms(t.to_ready),
        ms(t.total)
    );
    let req = InvokeRequest { payload: args.event.into_bytes(), ..Default::default() };
    let mut durations = Vec::new();
    let mut last = None;
    for _ in 0..args.repeat.max(1) {
        match instance.invoke(&req) {
            Ok(out) => {
                durations.push(out.duration);
                last = Some(out);
            }
            Err(e) => return Ok(fail(&e)),
        }
    }
    let out = last.expect("at least one invocation ran");
    eprint!("{}", String::from_utf8_lossy(&out.log));
    eprintln!("invoke: {}", ms(out.duration));
    if durations.len() > 1 {
        let warm = &mut durations[1..];
        warm.sort();
        let pct = |p: f64| warm[((warm.len() as f64 - 1.0) * p).round() as usize];
        eprintln!("warm invokes: n={} p50 {} p99 {}", warm.len(), ms(pct(0.5)), ms(pct(0.99)));
    }
    println!("{}", String::from_utf8_lossy(&out.body));
    Ok(if out.function_error { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
