//! `concord dp`: differential-privacy planning for data managers.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use concord_dp::plan::{Plan, PlanMechanism, PlanRequest, plan};
use concord_dp::{Delta, Epsilon};

/// Differential-privacy commands.
#[derive(Subcommand)]
pub(crate) enum DpCommand {
    /// Noise scale, 95% accuracy and exact ledger cost for a budget and a sensitivity.
    ///
    /// Integer data get exact discrete noise. With --parties the noise is added as shares by each
    /// party (Pólya for laplace, Skellam for gaussian) and the interval is for their sum.
    Plan(PlanArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum MechanismArg {
    /// Discrete Laplace: pure ε-DP.
    Laplace,
    /// Discrete Gaussian: (ε, δ)-DP through zCDP (needs --delta).
    Gaussian,
}

/// Arguments of `concord dp plan`.
#[derive(Args)]
pub(crate) struct PlanArgs {
    /// Noise family.
    #[arg(long, value_enum)]
    mechanism: MechanismArg,
    /// Privacy budget ε for this release (> 0).
    #[arg(long)]
    epsilon: f64,
    /// δ in (0, 1); required for gaussian, not allowed for laplace.
    #[arg(long)]
    delta: Option<f64>,
    /// Most one individual can change the statistic (after contribution bounding).
    #[arg(long)]
    sensitivity: f64,
    /// Parties adding noise shares in secure aggregation.
    #[arg(long)]
    parties: Option<u32>,
    /// Parties that may drop out or collude without weakening the guarantee (with --parties).
    #[arg(long, default_value_t = 0, requires = "parties")]
    tolerate: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: DpCommand) -> anyhow::Result<()> {
    match cmd {
        DpCommand::Plan(args) => run_plan(&args),
    }
}

fn run_plan(args: &PlanArgs) -> anyhow::Result<()> {
    let request = PlanRequest {
        mechanism: match args.mechanism {
            MechanismArg::Laplace => PlanMechanism::Laplace,
            MechanismArg::Gaussian => PlanMechanism::Gaussian,
        },
        epsilon: Epsilon::new(args.epsilon)?,
        delta: args.delta.map(Delta::new).transpose()?,
        sensitivity: args.sensitivity,
        parties: args.parties,
        tolerated: args.tolerate,
    };
    let p = plan(&request).context("cannot plan this release")?;
    if args.json {
        println!("{}", serde_json::to_string(&p)?);
    } else {
        print!("{}", table(&p));
    }
    Ok(())
}

fn table(p: &Plan) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("mechanism", p.mechanism.replace('_', " ")),
        ("scale", format!("{:.6}", p.scale)),
        ("95% half-width", format!("±{:.2}", p.half_width_95)),
        ("epsilon", format!("{:.6}", p.epsilon)),
    ];
    if p.delta > 0.0 {
        rows.push(("delta", format!("{:e}", p.delta)));
    }
    if let Some(rho) = p.rho {
        rows.push(("rho (zCDP)", format!("{rho:.6}")));
    }
    if let Some(n) = p.parties {
        rows.push(("parties", n.to_string()));
        rows.push(("tolerated", p.tolerated.unwrap_or(0).to_string()));
    }
    rows.push(("ledger cost", p.cost_display.clone()));
    rows.iter().map(|(k, v)| format!("{k:<16}{v}\n")).collect()
}
