//! `concord`: the one command line for Concord's operators, data managers and researchers.
//!
//! # Layout
//! - `bench`: `concord bench psi`, capacity planning for private set intersection.
//! - `dp`: `concord dp plan`, the accuracy planner for privacy budgets.

#![forbid(unsafe_code)]

mod bench;
mod bench_secagg;
mod dp;

use clap::{Parser, Subcommand};

/// Joint statistics across data holders without disclosing raw records.
///
/// Each data holder runs a node; nodes compute private set intersections and secure aggregates
/// between each other, and every released statistic carries differential-privacy noise.
#[derive(Parser)]
#[command(name = "concord", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
