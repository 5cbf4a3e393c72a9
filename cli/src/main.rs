//! `concord`: the one command line for Concord's operators, data managers and researchers.
//!
//! # Layout
//! - `federation`: `concord federation init`, a trial CA with certificates and configs.
//! - `node`: `concord node start|health`.
//! - `dataset`: `concord dataset add|list`, the catalog through your node.
//! - `audit`: `concord audit show|verify`, through your node or offline.
//! - `profile`: `--profile`, how the CLI reaches a person's node.
//! - `bench`, `bench_secagg`, `bench_join`: `concord bench psi|secagg|join`, capacity planning
//!   for the protocols.
//! - `dp`: `concord dp plan`, the accuracy planner for privacy budgets.

#![forbid(unsafe_code)]

mod audit;
mod bench;
mod bench_join;
mod bench_secagg;
mod dataset;
mod dp;
mod federation;
mod node;
mod profile;

use clap::{Parser, Subcommand};

/// Joint statistics across data holders without disclosing raw records.
///
/// Each data holder runs a node; nodes compute private set intersections and secure aggregates
/// between each other, and every released statistic carries differential-privacy noise.
///
/// Commands that talk to your node take --profile FILE (or CONCORD_PROFILE): which node, and
/// your certificate. `concord federation init` writes trial profiles.
#[derive(Parser)]
#[command(name = "concord", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a trial federation (CA, certificates, node configs, person profiles).
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Run a node, or check that yours is up.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Register datasets at your node and list your node's or a peer's directory.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Read and verify a node's tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Measure what this machine can do, to size hardware before a deployment.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Differential privacy: plan budgets and accuracy
    #[command(subcommand)]
    Dp(dp::DpCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Federation(cmd) => federation::run(cmd),
        Command::Node(cmd) => node::run(cmd),
        Command::Dataset(cmd) => dataset::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Dp(cmd) => dp::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
