//! `apiscope`: the passive API discovery sensor's command-line entry point.
//!
//! Subcommands (see `docs/` and `../shared/guide/CONTRACT.md`): `replay` processes capture
//! files and exits; `run` is the live sensor daemon (`docs/operations.md`) with the query API
//! (`docs/api.md`); `inventory` prints the inventory kept in a state directory or served by
//! a running sensor; `findings` prints a running sensor's findings; `check-config` validates
//! a configuration file. Exit status: 0 success, 2 usage or configuration error, 1 any other failure.

mod api;
mod calls;
mod client;
mod config;
mod findings_cmd;
mod inventory_cmd;
mod pipeline;
mod replay;
mod run;
mod sink;
mod table;
mod view;

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
    /// Run the live sensor: capture, serve the query API, keep the state, until SIGTERM.
    ///
    /// Captures interfaces (--interface) or VXLAN/GENEVE mirror feeds (--vxlan-listen);
    /// SIGTERM or SIGINT drain, flush and exit 0; SIGHUP reloads the specs
    /// (docs/operations.md).
    Run(run::RunArgs),
    /// Print the discovered inventory from a state directory or a running sensor (table,
    /// JSON or OpenAPI 3.1).
    Inventory(inventory_cmd::InventoryArgs),
    /// Print a running sensor's findings, read from its query API (table or JSON Lines).
    Findings(findings_cmd::FindingsArgs),
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
        Command::Run(args) => run::run(args),
        Command::Inventory(args) => inventory_cmd::run(args),
        Command::Findings(args) => findings_cmd::run(args),
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
