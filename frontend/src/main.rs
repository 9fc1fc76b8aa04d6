//! The `thaw` command line.
#![forbid(unsafe_code)]
mod bench_cli;
mod paths;
mod run;
mod snapshot_cli;

use clap::{Parser, Subcommand};

/// thaw: serverless cold starts nearly as fast as warm starts.
#[derive(Debug, Parser)]
#[command(name = "thaw", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a function in a microVM, run init, invoke it and print the result.
    Run(run::RunArgs),
    /// Boot a function, run init and store a snapshot; prints the snapshot id.
    Snapshot(snapshot_cli::SnapshotArgs),
    /// Inspect and maintain the snapshot store.
    Store(snapshot_cli::StoreArgs),
    /// Serve the Lambda-compatible HTTP API and the gRPC service.
    Serve(thaw_frontend::serve::ServeArgs),
    /// Benchmark cold starts per memory mode; writes JSON, Markdown and SVG charts.
    Bench(bench_cli::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench_cli::bench(args),
        Command::Snapshot(args) => snapshot_cli::snapshot(args),
        Command::Store(args) => snapshot_cli::store(args),
        Command::Serve(args) => {
            thaw_frontend::serve::main(args, paths::data_dir, paths::module_cache)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("thaw: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
