//! Temporary driver while frontend/ is mid-edit: devrun CODE OUT MODES ITER [SWEEP].
fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let cfg = thaw_bench::BenchConfig {
        code: a[1].clone().into(),
        handler: "app.handler".into(),
        memory_mb: 512,
        scenarios: thaw_bench::scenario::Scenario::parse_list(&a[3]).map_err(anyhow::Error::msg)?,
        iterations: a[4].parse()?,
        warmup: 1,
        cache: std::env::var("CACHE")
            .unwrap_or("warm".into())
            .parse()
            .map_err(anyhow::Error::msg)?,
        out: a[2].clone().into(),
        sweep_memory: a
            .get(5)
            .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
            .unwrap_or_default(),
        sweep_iterations: 5,
        event: "{}".into(),
        data_dir: std::path::PathBuf::from(std::env::var("HOME")?).join(".thaw"),
        runtime_dir: thaw_worker::runtime::default_runtime_dir(),
        warm_invokes: 200,
        pool: 2,
        burst: 4,
        instance_mode: thaw_worker::MemoryMode::UffdPrefetch,
    };
    let r = thaw_bench::run(&cfg)?;
    print!("{}", thaw_bench::report::markdown(&r));
    Ok(())
}
