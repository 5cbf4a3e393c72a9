//! `concord`: the one command line for Concord's operators, data managers and researchers.
//!
//! # Layout
//! - `demo`: `concord demo`, a local federation run end to end.
//! - `federation`: `concord federation init`, a trial CA with certificates and configs.
//! - `node`: `concord node start|health`.
//! - `dataset`: `concord dataset add|list|classify`, the catalog through your node.
//! - `governance`: `concord grant …` and `concord budget …`, what data managers decide.
//! - `audit`: `concord audit show|verify`, through your node or offline.
//! - `run`: `concord run psi|query`, joint jobs submitted to your node.
//! - `job`: `concord job list|show|cancel|result`, and following a job's progress.
//! - `profile`: `--profile`, how the CLI reaches a person's node.
//! - `bench`, `bench_secagg`, `bench_join`: `concord bench psi|secagg|join`, capacity planning
//!   for the protocols.
//! - `dp`: `concord dp plan`, the accuracy planner for privacy budgets.

#![forbid(unsafe_code)]

mod audit;
mod bench;
mod dataset;
mod demo;
mod dp;
mod federation;
mod governance;
mod inputs;
mod job;
mod node;
mod profile;
mod run;

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
    /// Run a local federation of three departments end to end, then clean up.
    ///
    /// Starts three nodes on 127.0.0.1 with trial certificates, writes synthetic registers
    /// (--people residents each, with overlapping ID numbers), registers them, sets budgets
    /// and grants, runs a PSI cardinality (to a researcher), a PSI intersection and a DP
    /// query with their true values beside them, shows a request a peer's policy refuses, and
    /// verifies every node's audit log after a graceful stop. Every step is the command a
    /// person would type, printed before it runs.
    #[command(verbatim_doc_comment)]
    Demo(demo::DemoArgs),
    /// Create a trial federation (CA, certificates, node configs, person profiles).
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Run a node, or check that yours is up.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Register datasets at your node and list your node's or a peer's directory.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Grants: who may use your data, for what, until when (data managers decide).
    #[command(subcommand)]
    Grant(governance::GrantCommand),
    /// Privacy budgets: caps per dataset and period, and what is left.
    #[command(subcommand)]
    Budget(governance::BudgetCommand),
    /// Run a joint job: a private set intersection or a join-aggregate with a peer, or a DP
    /// query at your node.
    #[command(subcommand)]
    Run(run::RunCommand),
    /// List, inspect, follow and cancel jobs, and collect a job's result (its recipient only).
    #[command(subcommand)]
    Job(job::JobCommand),
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
        Command::Demo(a) => demo::run(a),
        Command::Grant(cmd) => governance::run_grant(cmd),
        Command::Budget(cmd) => governance::run_budget(cmd),
        Command::Run(cmd) => run::run(cmd),
        Command::Job(cmd) => job::run(cmd),
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
