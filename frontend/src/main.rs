//! The `thaw` command line.
#![forbid(unsafe_code)]
mod paths;
mod run;

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("thaw: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
