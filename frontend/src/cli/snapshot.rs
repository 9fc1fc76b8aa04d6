//! `thaw snapshot` (boot + init + snapshot a function) and `thaw store
//! stats|verify|gc` (the snapshot store's maintenance).
use super::paths;
use super::worker::{fail, load_spec, open_worker, spinner, SpecArgs};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use thaw_worker::DataDir;

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Data directory (module cache, snapshot store).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
    /// Data directory (module cache, snapshot store).
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Snapshots, chunks, raw and stored bytes, dedup ratio.
    Stats,
    /// Re-hash every chunk and check every manifest; exit 1 on problems.
    Verify,
    /// Delete chunks no snapshot references.
    Gc,
}

pub fn snapshot(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let spec = match load_spec(&args.spec) {
        Ok(s) => s,
        Err(e) => return Ok(fail(&e)),
    };
    let worker = open_worker(args.data)?;
    let pb = spinner(&format!(
        "booting {} and snapshotting it after init",
        spec.name
    ));
    let result = worker.snapshot(&spec);
    pb.finish_and_clear();
    let (id, t) = match result {
        Ok(v) => v,
        Err(e) => return Ok(fail(&e)),
    };
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    eprintln!(
        "snapshot: boot+init {} | save vCPU {} | store memory {} | total {}",
        ms(t.boot.total),
        ms(t.save_state),
        ms(t.store_memory),
        ms(t.total)
    );
    if let Ok(stats) = worker.store().stats() {
        eprintln!(
            "store: {} snapshots, {} chunks, {} bytes stored",
            stats.snapshots, stats.chunks, stats.stored_bytes
        );
    }
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

pub fn store(args: StoreArgs) -> anyhow::Result<ExitCode> {
    let data = DataDir::new(paths::data_dir(args.data));
    let store = thaw_snapshotter::Store::open(&data.store())?;
    match args.command {
        StoreCommand::Stats => {
            let s = store.stats()?;
            println!("{s:#?}");
        }
        StoreCommand::Verify => {
            let pb = spinner("verifying every chunk");
            let report = store.verify()?;
            pb.finish_and_clear();
            println!("{report:#?}");
            if !report.problems.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        StoreCommand::Gc => {
            let r = store.gc()?;
            println!("{r:#?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
