//! `concord node start|health`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use concord_node::clock::SystemClock;
use concord_node::config::NodeConfig;
use concord_node::service;

use crate::profile::ProfileArg;

#[derive(Subcommand)]
pub(crate) enum NodeCommand {
    /// Run this department's node until Ctrl-C or SIGTERM (then finish requests and stop).
    ///
    /// Prints one line "concord node NAME listening on ADDR" once it accepts connections; logs
    /// go to stderr (level from --log-level or CONCORD_LOG). Every request is written to the
    /// node's audit log, accepted or refused.
    #[command(verbatim_doc_comment)]
    Start(StartArgs),
    /// Ask your node whether it is up, and who it thinks you are.
    Health(ProfileArg),
}

#[derive(Args)]
pub(crate) struct StartArgs {
    /// The node's configuration file (see docs/node.sample.toml).
    #[arg(long)]
    config: PathBuf,
    /// error, warn, info, debug or trace.
    #[arg(long, env = "CONCORD_LOG", default_value = "info")]
    log_level: tracing::Level,
}

pub(crate) fn run(cmd: NodeCommand) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Start(a) => start(a),
        NodeCommand::Health(p) => {
            let health = crate::profile::call(&p, |mut c| async move { c.health().await })?;
            println!("node      {}", health.node);
            println!(
                "version   {} (protocol {})",
                health.version, health.protocol_version
            );
            println!("you       {} ({})", health.caller, health.roles.join(", "));
            println!("uptime    {} s", health.uptime_seconds);
            println!("peers     {}", health.peers.join(", "));
            Ok(())
        }
    }
}

fn start(a: StartArgs) -> anyhow::Result<()> {
    let config = NodeConfig::load(&a.config)?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(a.log_level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let name = config.node.name.clone();
    runtime.block_on(service::run(
        config,
        Arc::new(SystemClock),
        shutdown_signal(),
        |addr| {
            use std::io::Write as _;
            println!("concord node {name} listening on {addr}");
            let _ = std::io::stdout().flush();
        },
    ))?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
