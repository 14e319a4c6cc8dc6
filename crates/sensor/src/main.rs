//! `apiscope`: the passive API discovery sensor's command-line entry point.
//!
//! Subcommands (see `docs/` and `../shared/guide/CONTRACT.md`): `replay` processes capture
//! files and exits; `inventory` prints the inventory kept in a state directory;
//! `check-config` validates a configuration file. Exit status: 0 success,
//! 2 usage or configuration error, 1 any other failure.

mod calls;
mod config;
mod inventory_cmd;
mod replay;
mod sink;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: calls are built on worker threads and freed on
/// the sink thread, which glibc's per-thread arenas handle poorly (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "apiscope",
    version,
    about = "Passive API discovery and anomaly detection"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Process pcap/pcapng files (in order, as one timeline) and print a summary.
    Replay(replay::ReplayArgs),
    /// Print the discovered inventory from a state directory (table, JSON or OpenAPI 3.1).
    Inventory(inventory_cmd::InventoryArgs),
    /// Validate a configuration file and report every error at once.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
}

/// A failure with the exit status it deserves.
#[derive(Debug)]
pub enum Failure {
    /// Usage or configuration error: exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Inventory(args) => inventory_cmd::run(args),
        Command::CheckConfig { config } => match config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                Ok(())
            }
            Err(errors) => Err(Failure::Usage(errors.join("\n"))),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("apiscope: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("apiscope: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
