//! The `thaw` command line: its own commands (`run`, `snapshot`, `store`, `bench`) are in
//! [`cli`]; `serve` is the frontend library's.
#![forbid(unsafe_code)]
mod cli;

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
    Run(cli::run::RunArgs),
    /// Boot a function, run init and store a snapshot; prints the snapshot id.
    Snapshot(cli::snapshot::SnapshotArgs),
    /// Inspect and maintain the snapshot store.
    Store(cli::snapshot::StoreArgs),
    /// Serve the Lambda-compatible HTTP API and the gRPC service.
    Serve(thaw_frontend::serve::ServeArgs),
    /// Benchmark cold starts per memory mode; writes JSON, Markdown and SVG charts.
    Bench(cli::bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let parsed = Cli::parse();
    let result = match parsed.command {
        Command::Run(args) => cli::run::run(args),
        Command::Bench(args) => cli::bench::bench(args),
        Command::Snapshot(args) => cli::snapshot::snapshot(args),
        Command::Store(args) => cli::snapshot::store(args),
        Command::Serve(args) => {
            thaw_frontend::serve::main(args, cli::paths::data_dir, cli::paths::module_cache)
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
