//! `concord federation init`: a trial federation (CA, certificates, configs) in one directory.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use concord_node::clock::{Clock as _, SystemClock};
use concord_node::federation;

#[derive(Subcommand)]
pub(crate) enum FederationCommand {
    /// Create a TRIAL federation: a CA, node and person certificates, and ready configs.
    ///
    /// Writes DIR/ca.pem and, for each node, DIR/<node>/node.toml (start it with `concord node
    /// start --config DIR/<node>/node.toml`) plus a data manager, an operator, an auditor and a
    /// researcher (who receives job results), each with a certificate and a CLI profile
    /// DIR/<node>/<role>.toml (use it with `concord node health --profile
    /// DIR/<node>/manager.toml`). Node i listens on HOST:(BASE_PORT + i).
    ///
    /// For trials only: private keys are written unencrypted and the CA key is discarded.
    /// Real deployments take certificates from their PKI (see docs/node.sample.toml).
    #[command(verbatim_doc_comment)]
    Init(InitArgs),
}

#[derive(Args)]
pub(crate) struct InitArgs {
    /// Node names, comma-separated (e.g. health,civil,stats).
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// Output directory; must not exist.
    #[arg(long)]
    out: PathBuf,
    /// Address the nodes listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port of the first node; the others follow.
    #[arg(long, default_value_t = 7701)]
    base_port: u16,
}

pub(crate) fn run(cmd: FederationCommand) -> anyhow::Result<()> {
    match cmd {
        FederationCommand::Init(a) => {
            let fed = federation::init(
                &a.out,
                &a.nodes,
                a.host,
                a.base_port,
                SystemClock.now_ms(),
                &mut rand::rng(),
            )
            .context("federation init")?;
            println!(
                "TRIAL federation written to {} (certificates valid {} days; not for real data)",
                fed.dir.display(),
                federation::TRIAL_DAYS
            );
            for (name, addr, config) in &fed.nodes {
                println!("  node {name:<12} {addr:<21} {}", config.display());
            }
            println!("start a node:  concord node start --config <node.toml>");
            println!(
                "then:          concord node health --profile {}",
                fed.dir.join(&fed.nodes[0].0).join("manager.toml").display()
            );
            Ok(())
        }
    }
}
