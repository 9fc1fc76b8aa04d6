//! `thaw bench`: the cold-start benchmark (crate `thaw-bench`): flags, the run, the summary.
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use thaw_bench::scenario::Scenario;
use thaw_bench::{BenchConfig, CacheMode};
use thaw_worker::MemoryMode;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Function code: a zip file or a directory with the handler module at its root.
    pub code: PathBuf,
    /// Handler as module.function.
    #[arg(long, default_value = "app.handler")]
    pub handler: String,
    /// Scenarios: `all` or a list of boot, eager, mmap, uffd, uffd+prefetch, shared, warm, provisioned, burst, density, host-python3.
    #[arg(long, default_value = "all")]
    pub modes: String,
    /// Measured iterations per scenario (bursts for `provisioned`).
    #[arg(long, default_value_t = 20)]
    pub iterations: u32,
    /// Unmeasured iterations first (records the working set, materialises the memory file).
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory_mb: u32,
    /// `warm` keeps the snapshot in the page cache; `evicted` drops it before every restore.
    #[arg(long, default_value = "warm")]
    pub cache: CacheMode,
    /// Output directory for report.json, report.md and the SVG charts.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Guest sizes in MiB to sweep the restore modes over, e.g. 128,512,1024,4096.
    #[arg(long, value_delimiter = ',')]
    pub sweep_memory: Vec<u32>,
    /// Measured restores per mode and size in the sweep.
    #[arg(long, default_value_t = 5)]
    pub sweep_iterations: u32,
    /// Event JSON passed to the handler.
    #[arg(long, default_value = "{}")]
    pub event: String,
    /// Invokes measured by the `warm` scenario.
    #[arg(long, default_value_t = 200)]
    pub warm_invokes: u32,
    /// `provisioned`: provisioned pool size.
    #[arg(long, default_value_t = 2)]
    pub pool: u32,
    /// `provisioned`: concurrent invokes per burst.
    #[arg(long, default_value_t = 4)]
    pub burst: u32,
    /// Memory mode of the `warm` and `provisioned` instances.
    #[arg(long, default_value = "uffd+prefetch")]
    pub instance_mode: MemoryMode,
    /// `burst`: concurrent cold starts per burst (through the scheduler and the service's backend).
    #[arg(long, default_value_t = 200)]
    pub burst_size: u32,
    /// `density`: provisioned instances to bring up.
    #[arg(long, default_value_t = 1000)]
    pub density: u32,
    /// `density`: their memory mode (`shared` keeps idle instances smallest).
    #[arg(long, default_value = "shared")]
    pub density_mode: MemoryMode,
    /// Data directory (module cache, snapshot store).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if serde_json::from_str::<serde_json::Value>(&args.event).is_err() {
        anyhow::bail!("--event is not valid JSON");
    }
    let cfg = BenchConfig {
        code: args.code,
        handler: args.handler,
        memory_mb: args.memory_mb,
        scenarios: Scenario::parse_list(&args.modes).map_err(anyhow::Error::msg)?,
        iterations: args.iterations,
        warmup: args.warmup,
        cache: args.cache,
        out: args.out,
        sweep_memory: args.sweep_memory,
        sweep_iterations: args.sweep_iterations,
        event: args.event,
        data_dir: super::paths::data_dir(args.data),
        runtime_dir: thaw_worker::runtime::default_runtime_dir(),
        warm_invokes: args.warm_invokes,
        pool: args.pool,
        burst: args.burst,
        instance_mode: args.instance_mode,
        burst_size: args.burst_size,
        density: args.density,
        density_mode: args.density_mode,
    };
    let report = thaw_bench::run(&cfg)?;
    print!("{}", thaw_bench::report::markdown(&report));
    eprintln!(
        "\nwrote {}/report.json, report.md and the SVG charts",
        cfg.out.display()
    );
    let failed = report.scenarios.iter().any(|s| !s.errors.is_empty());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
