//! What `thaw run` and `thaw snapshot` share: the function flags ([`SpecArgs`]) and the
//! spec they make, opening the worker behind a spinner, and printing a worker failure as
//! Lambda's error JSON.
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use thaw_worker::{DataDir, FunctionCode, FunctionSpec, Worker, WorkerError};

/// What function to run and with which configuration.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Function code: a zip file or a directory with the handler module at its root.
    pub code: Option<PathBuf>,
    /// Handler as module.function.
    #[arg(long, default_value = "app.handler")]
    pub handler: String,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory_mb: u32,
    /// EphemeralStorage in MiB: the most `/tmp` may hold (512-10240; its bytes also
    /// count against the memory size).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(512..=10240))]
    pub ephemeral_mb: u32,
    /// Function timeout in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
    /// Function environment variables, KEY=VALUE.
    #[arg(long = "env", value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// Prints a failure as Lambda error JSON and returns exit code 1.
pub fn fail(e: &WorkerError) -> ExitCode {
    let log = String::from_utf8_lossy(e.log());
    if !log.is_empty() {
        eprint!("{log}");
    }
    println!("{}", String::from_utf8_lossy(&e.to_error_json()));
    ExitCode::from(1)
}

/// Builds a spec from the flags (the code path is required here).
pub fn load_spec(args: &SpecArgs) -> Result<FunctionSpec, WorkerError> {
    let path = args.code.clone().unwrap_or_default();
    let code = FunctionCode::load(&path)?;
    let name = path
        .file_stem()
        .map_or("function".into(), |s| s.to_string_lossy().into_owned());
    let mut spec = FunctionSpec::new(&name, &args.handler, code);
    spec.memory_mb = args.memory_mb;
    spec.ephemeral_mb = args.ephemeral_mb;
    spec.timeout = Duration::from_secs_f64(args.timeout);
    spec.env.extend(args.env.iter().cloned());
    spec.code.check_handler(&spec.handler)?;
    Ok(spec)
}

/// A spinner for work that takes a while (hidden when stderr is not a terminal).
pub fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
    );
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

pub fn open_worker(data: Option<PathBuf>) -> anyhow::Result<Worker> {
    let data = DataDir::new(super::paths::data_dir(data));
    let pb = spinner("loading the python3.12 runtime (first use precompiles it, ~10-30 s)");
    let worker = Worker::open(data, &thaw_worker::runtime::default_runtime_dir());
    pb.finish_and_clear();
    Ok(worker?)
}
