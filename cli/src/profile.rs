//! `--profile`: how the CLI reaches a person's own node.

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use concord_node::client::{ClientError, NodeClient};
use concord_node::config::Profile;

#[derive(Args, Clone)]
pub(crate) struct ProfileArg {
    /// Your profile: which node, and your certificate (written by `concord federation init` as
    /// <node>/<role>.toml).
    #[arg(long, env = "CONCORD_PROFILE", value_name = "FILE")]
    pub(crate) profile: PathBuf,
}

/// Connects with the profile and runs one call on a fresh runtime.
pub(crate) fn call<T, F, Fut>(p: &ProfileArg, f: F) -> anyhow::Result<T>
where
    F: FnOnce(NodeClient) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let profile = Profile::load(&p.profile)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(async {
            let client = NodeClient::connect(&profile).await?;
            f(client).await
        })
        .map_err(anyhow::Error::from)
}
