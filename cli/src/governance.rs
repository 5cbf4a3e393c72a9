//! `concord grant propose|approve|revoke|list|show` and `concord budget set|show`: what a node's
//! data managers decide, through their node.

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use concord_node::proto as pb;

use crate::audit::when;
use crate::profile::ProfileArg;

#[derive(Subcommand)]
pub(crate) enum GrantCommand {
    /// Propose a grant (data managers); your approval counts as the first.
    ///
    /// A grant lets one operator run joint jobs on your data, within:
    ///   a scope      overall (one dataset), domain (every dataset tagged with a domain), or
    ///                scenario (one dataset, only the --kind, --field and --peer you list);
    ///   recipients   the people results may go to (--recipient, at least one);
    ///   a window     [--from, --until), dates in UTC (2026-12-31) or RFC 3339;
    ///   limits       --min-set-size, --min-group-size, --max-runs per --runs-period;
    ///   a budget     --epsilon (and --delta) per --budget-period, on top of the dataset's
    ///                caps (`concord budget set`);
    ///   purpose and security owner, for the record.
    /// Field tiers bound every grant: whatever it says, sensitive fields are only used inside
    /// DP aggregates and restricted fields never. The grant becomes active once as many data
    /// managers as your node's config requires (policy.approvals) have approved it.
    ///
    /// Example:
    ///   concord grant propose --profile health/manager.toml
    ///     --grantee operator.health.concord --scope scenario --dataset insured
    ///     --kind join --field nin --field claims --peer civil
    ///     --recipient researcher.health.concord --until 2027-06-30
    ///     --purpose "claims of subsidy recipients by district"
    ///     --security-owner "CISO, health department" --epsilon 1 --budget-period month
    #[command(verbatim_doc_comment)]
    Propose(Box<ProposeArgs>),
    /// Approve a proposed grant (data managers).
    Approve(IdArgs),
    /// Revoke a grant at once, also for jobs that have not released (data managers).
    Revoke(RevokeArgs),
    /// List your node's grants, newest first, with their status now.
    List(ListArgs),
    /// Show one grant: terms, approvals, and its use this period.
    Show(ShowArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ScopeArg {
    /// One whole dataset (--dataset).
    Overall,
    /// Every dataset tagged with --domain.
    Domain,
    /// One dataset (--dataset), only the listed job kinds, fields and peers.
    Scenario,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PeriodArg {
    /// A UTC calendar day.
    Day,
    /// A UTC calendar month.
    Month,
    /// A UTC calendar year.
    Year,
}

impl PeriodArg {
    fn name(self) -> &'static str {
        match self {
            PeriodArg::Day => "day",
            PeriodArg::Month => "month",
            PeriodArg::Year => "year",
        }
    }
}

#[derive(Args)]
pub(crate) struct ProposeArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// The operator identity the grant authorizes.
    #[arg(long)]
    grantee: String,
    /// What the grant covers.
    #[arg(long, value_enum, default_value = "overall")]
    scope: ScopeArg,
    /// The dataset (overall and scenario scopes).
    #[arg(long, required_unless_present = "domain", conflicts_with = "domain")]
    dataset: Option<String>,
    /// The domain tag (domain scope).
    #[arg(long)]
    domain: Option<String>,
    /// Scenario: a job kind allowed (psi-cardinality, psi-intersection, join, aggregate,
    /// query); repeat for more.
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<String>,
    /// Scenario: a field allowed; repeat for more.
    #[arg(long = "field", value_name = "FIELD")]
    fields: Vec<String>,
    /// Scenario: a peer node allowed; repeat for more.
    #[arg(long = "peer", value_name = "NODE")]
    peers: Vec<String>,
    /// A person results may go to; repeat for more.
    #[arg(long = "recipient", value_name = "IDENTITY", required = true)]
    recipients: Vec<String>,
    /// Start of validity (default: now).
    #[arg(long, value_parser = parse_time)]
    from: Option<i64>,
    /// End of validity (exclusive).
    #[arg(long, value_parser = parse_time)]
    until: i64,
    /// Why the data may be used.
    #[arg(long)]
    purpose: String,
    /// Who answers for the security of the use.
    #[arg(long)]
    security_owner: String,
    /// Every party's input must hold at least this many records.
    #[arg(long, default_value_t = 100)]
    min_set_size: u64,
    /// A grouped release may not show a (noised) group below this.
    #[arg(long, default_value_t = 10)]
    min_group_size: u64,
    /// At most this many jobs per --runs-period (default: no limit).
    #[arg(long)]
    max_runs: Option<u32>,
    /// The period --max-runs renews over.
    #[arg(long, value_enum, default_value = "month")]
    runs_period: PeriodArg,
    /// The grant's privacy budget: pure ε per --budget-period (decimal, e.g. 1 or 0.5).
    #[arg(long, value_parser = parse_amount)]
    epsilon: String,
    /// δ per --budget-period, for mechanisms that need one (e.g. 1e-6).
    #[arg(long, value_parser = parse_amount, default_value = "0")]
    delta: String,
    /// The period the budget renews over.
    #[arg(long, value_enum, default_value = "month")]
    budget_period: PeriodArg,
}

#[derive(Args)]
pub(crate) struct IdArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// The grant id (g-…).
    id: String,
}

#[derive(Args)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// The grant id (g-…).
    id: String,
    /// Why, for the audit log.
    #[arg(long)]
    reason: String,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// The grant id (g-…).
    id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub(crate) enum BudgetCommand {
    /// Set a dataset's privacy-budget cap, for one grantee or for everyone (data managers).
    ///
    /// Every job charges its cost to each dataset it reads, and must fit under every cap that
    /// applies: the grantee's cap, the dataset-wide cap (--everyone), and its grant's budget.
    /// A dataset with no cap cannot be used at all. Caps renew each UTC --period; a new cap
    /// replaces the old one and counts what this period already spent.
    ///
    /// A --population cap bounds what all datasets of one population (datasets describing the
    /// same people, `dataset add --population`) spend together, on top of their own caps. A
    /// file registered again under a new id shares the first id's caps and spending.
    ///
    /// Example:
    ///   concord budget set --profile health/manager.toml --dataset insured --everyone
    ///     --epsilon 4 --period year
    ///   concord budget set --profile health/manager.toml --population residents --everyone
    ///     --epsilon 6 --period year
    #[command(verbatim_doc_comment)]
    Set(SetArgs),
    /// A dataset's caps: limit, reserved by running jobs, spent, and remaining this period.
    Show(BudgetShowArgs),
}

#[derive(Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// The dataset.
    #[arg(
        long,
        required_unless_present = "population",
        conflicts_with = "population"
    )]
    dataset: Option<String>,
    /// A population instead: a cap on all its datasets together.
    #[arg(long)]
    population: Option<String>,
    /// The operator identity the cap applies to.
    #[arg(
        long,
        required_unless_present = "everyone",
        conflicts_with = "everyone"
    )]
    grantee: Option<String>,
    /// The dataset-wide cap, shared by every grantee.
    #[arg(long)]
    everyone: bool,
    /// Pure ε per period (decimal, e.g. 4 or 0.5).
    #[arg(long, value_parser = parse_amount)]
    epsilon: String,
    /// δ per period (e.g. 1e-6).
    #[arg(long, value_parser = parse_amount, default_value = "0")]
    delta: String,
    /// zCDP ρ per period (for Gaussian mechanisms).
    #[arg(long, value_parser = parse_amount, default_value = "0")]
    rho: String,
    /// The period the cap renews over.
    #[arg(long, value_enum, default_value = "year")]
    period: PeriodArg,
}

#[derive(Args)]
pub(crate) struct BudgetShowArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// The dataset.
    #[arg(
        long,
        required_unless_present = "population",
        conflicts_with = "population"
    )]
    dataset: Option<String>,
    /// A population's caps instead.
    #[arg(long)]
    population: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `2026-12-31` (00:00 UTC) or an RFC 3339 time, as ms since the Unix epoch.
fn parse_time(s: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let t = if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        t
    } else {
        let format = time::format_description::parse_borrowed::<2>("[year]-[month]-[day]")
            .map_err(|e| format!("date format: {e}"))?;
        time::Date::parse(s, &format)
            .map_err(|_| format!("{s:?}: use a date (2026-12-31, UTC) or RFC 3339 time"))?
            .midnight()
            .assume_utc()
    };
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("{s:?}: out of range"))
}

/// An amount as typed (`4`, `0.5`, `1e-6`), checked to be exact in the ledger's units.
fn parse_amount(s: &str) -> Result<String, String> {
    s.parse::<concord_dp::Quantity>()
        .map(|_| s.trim().to_owned())
        .map_err(|e| e.to_string())
}

fn cost(c: Option<&pb::Cost>) -> String {
    let c = c.cloned().unwrap_or_default();
    let zero = |s: &str| s.is_empty() || s == "0";
    let mut out = format!("ε {}", if zero(&c.epsilon) { "0" } else { &c.epsilon });
    if !zero(&c.delta) {
        out.push_str(&format!(" δ {}", c.delta));
    }
    if !zero(&c.rho) {
        out.push_str(&format!(" ρ {}", c.rho));
    }
    out
}

/// Amounts in JSON are exact decimal strings.
fn cost_json(c: Option<&pb::Cost>) -> serde_json::Value {
    let c = c.cloned().unwrap_or_default();
    serde_json::json!({"epsilon": c.epsilon, "delta": c.delta, "rho": c.rho})
}

fn grant_json(g: &pb::GrantInfo) -> serde_json::Value {
    let t = g.terms.clone().unwrap_or_default();
    serde_json::json!({
        "id": g.id,
        "status": g.status,
        "grantee": t.grantee,
        "scope": t.scope,
        "target": t.target,
        "kinds": t.kinds,
        "fields": t.fields,
        "peers": t.peers,
        "recipients": t.recipients,
        "valid_from_ms": t.valid_from_ms,
        "valid_until_ms": t.valid_until_ms,
        "purpose": t.purpose,
        "security_owner": t.security_owner,
        "min_set_size": t.min_set_size,
        "min_group_size": t.min_group_size,
        "max_runs": (t.max_runs > 0).then_some(t.max_runs),
        "runs_period": t.runs_period,
        "budget": cost_json(t.budget.as_ref()),
        "budget_period": t.budget_period,
        "proposed_by": g.proposed_by,
        "proposed_at_ms": g.proposed_at_ms,
        "approvals": g.approvals.iter().map(|a| serde_json::json!({"by": a.by, "at_ms": a.at_ms})).collect::<Vec<_>>(),
        "approvals_counted": g.approvals_counted,
        "approvals_needed": g.approvals_needed,
        "revoked": (!g.revoked_by.is_empty()).then(|| serde_json::json!({
            "at_ms": g.revoked_at_ms, "by": g.revoked_by, "reason": g.revoke_reason,
        })),
        "reserved": cost_json(g.reserved.as_ref()),
        "spent": cost_json(g.spent.as_ref()),
        "runs": g.runs,
    })
}

fn scope_text(t: &pb::ProposeGrantRequest) -> String {
    let mut s = format!("{} {}", t.scope, t.target);
    if t.scope == "scenario" {
        s.push_str(&format!(
            " (kinds {}; fields {}; peers {})",
            t.kinds.join(","),
            t.fields.join(","),
            if t.peers.is_empty() {
                "none".to_owned()
            } else {
                t.peers.join(",")
            }
        ));
    }
    s
}

fn print_grant(g: &pb::GrantInfo) {
    let t = g.terms.clone().unwrap_or_default();
    println!(
        "grant {}  {} ({} of {} approvals)",
        g.id, g.status, g.approvals_counted, g.approvals_needed
    );
    let runs = match t.max_runs {
        0 => "no run limit".to_owned(),
        n => format!("{n} runs per {}", t.runs_period),
    };
    let rows = [
        ("grantee", t.grantee.clone()),
        ("scope", scope_text(&t)),
        ("recipients", t.recipients.join(", ")),
        (
            "valid",
            format!("{} until {}", when(t.valid_from_ms), when(t.valid_until_ms)),
        ),
        ("purpose", t.purpose.clone()),
        ("owner", t.security_owner.clone()),
        (
            "limits",
            format!(
                "inputs of at least {}, groups of at least {}, {runs}",
                t.min_set_size, t.min_group_size
            ),
        ),
        (
            "budget",
            format!("{} per {}", cost(t.budget.as_ref()), t.budget_period),
        ),
        (
            "this period",
            format!(
                "spent {}, reserved {}, {} runs",
                cost(g.spent.as_ref()),
                cost(g.reserved.as_ref()),
                g.runs
            ),
        ),
        (
            "approvals",
            g.approvals
                .iter()
                .map(|a| format!("{} ({})", a.by, when(a.at_ms)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    for (k, v) in rows {
        println!("  {k:<12} {v}");
    }
    if !g.revoked_by.is_empty() {
        println!(
            "  {:<12} {} by {}: {}",
            "revoked",
            when(g.revoked_at_ms),
            g.revoked_by,
            g.revoke_reason
        );
    }
}

fn print_budget(r: &pb::ShowBudgetResponse, target: &str) {
    if r.caps.is_empty() {
        if target.starts_with("population") {
            println!("{target} has no budget cap of its own (its datasets' caps apply)");
        } else {
            println!("{target} has no budget cap: no job can use it (concord budget set)");
        }
        return;
    }
    println!(
        "{:<28} {:<6} {:<21} {:<14} {:<14} {:<14} remaining",
        "grantee", "period", "since", "cap", "reserved", "spent"
    );
    for c in &r.caps {
        let who = if c.grantee == "*" {
            "* (everyone)"
        } else {
            &c.grantee
        };
        println!(
            "{:<28} {:<6} {:<21} {:<14} {:<14} {:<14} {}",
            who,
            c.period,
            when(c.period_start_ms),
            cost(c.cap.as_ref()),
            cost(c.reserved.as_ref()),
            cost(c.spent.as_ref()),
            cost(c.remaining.as_ref())
        );
    }
}

fn budget_json(r: &pb::ShowBudgetResponse) -> serde_json::Value {
    serde_json::Value::Array(
        r.caps
            .iter()
            .map(|c| {
                serde_json::json!({
                    "dataset": c.dataset, "grantee": c.grantee, "period": c.period,
                    "period_start_ms": c.period_start_ms, "cap": cost_json(c.cap.as_ref()),
                    "reserved": cost_json(c.reserved.as_ref()), "spent": cost_json(c.spent.as_ref()),
                    "remaining": cost_json(c.remaining.as_ref()),
                })
            })
            .collect(),
    )
}

pub(crate) fn run_grant(cmd: GrantCommand) -> anyhow::Result<()> {
    let grant = match cmd {
        GrantCommand::Propose(a) => {
            let a = *a;
            let (scope, target) = match (a.scope, a.dataset, a.domain) {
                (ScopeArg::Domain, _, Some(d)) => ("domain", d),
                (ScopeArg::Domain, _, None) => anyhow::bail!("a domain grant needs --domain"),
                (ScopeArg::Overall, Some(d), _) => ("overall", d),
                (ScopeArg::Scenario, Some(d), _) => ("scenario", d),
                (_, None, _) => anyhow::bail!("an overall or scenario grant needs --dataset"),
            };
            let request = pb::ProposeGrantRequest {
                grantee: a.grantee,
                scope: scope.into(),
                target,
                kinds: a.kinds,
                fields: a.fields,
                peers: a.peers,
                recipients: a.recipients,
                valid_from_ms: a.from.unwrap_or(0),
                valid_until_ms: a.until,
                purpose: a.purpose,
                security_owner: a.security_owner,
                min_set_size: a.min_set_size,
                min_group_size: a.min_group_size,
                max_runs: a.max_runs.unwrap_or(0),
                runs_period: a.runs_period.name().into(),
                budget: Some(pb::Cost {
                    epsilon: a.epsilon,
                    delta: a.delta,
                    rho: String::new(),
                }),
                budget_period: a.budget_period.name().into(),
            };
            crate::profile::call(&a.profile, |mut c| async move {
                Ok(c.governance().propose_grant(request).await?.into_inner())
            })?
        }
        GrantCommand::Approve(a) => {
            let request = pb::GrantRef { id: a.id };
            crate::profile::call(&a.profile, |mut c| async move {
                Ok(c.governance().approve_grant(request).await?.into_inner())
            })?
        }
        GrantCommand::Revoke(a) => {
            let request = pb::RevokeGrantRequest {
                id: a.id,
                reason: a.reason,
            };
            crate::profile::call(&a.profile, |mut c| async move {
                Ok(c.governance().revoke_grant(request).await?.into_inner())
            })?
        }
        GrantCommand::Show(a) => {
            let request = pb::GrantRef { id: a.id };
            let g = crate::profile::call(&a.profile, |mut c| async move {
                Ok(c.governance().show_grant(request).await?.into_inner())
            })?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&grant_json(&g))?);
                return Ok(());
            }
            g
        }
        GrantCommand::List(a) => {
            let list = crate::profile::call(&a.profile, |mut c| async move {
                Ok(c.governance()
                    .list_grants(pb::ListGrantsRequest {})
                    .await?
                    .into_inner())
            })?;
            if a.json {
                let all: Vec<_> = list.grants.iter().map(grant_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if list.grants.is_empty() {
                println!("no grants at this node (concord grant propose)");
            } else {
                println!(
                    "{:<15} {:<14} {:<28} {:<32} until",
                    "id", "status", "grantee", "scope"
                );
                for g in &list.grants {
                    let t = g.terms.clone().unwrap_or_default();
                    println!(
                        "{:<15} {:<14} {:<28} {:<32} {}",
                        g.id,
                        g.status,
                        t.grantee,
                        format!("{} {}", t.scope, t.target),
                        when(t.valid_until_ms)
                    );
                }
            }
            return Ok(());
        }
    };
    print_grant(&grant);
    Ok(())
}

/// What a budget command is about, in words.
fn target_name(dataset: Option<&str>, population: Option<&str>) -> String {
    match (dataset, population) {
        (Some(d), _) => format!("dataset {d}"),
        (None, Some(p)) => format!("population {p}"),
        (None, None) => String::new(),
    }
}

pub(crate) fn run_budget(cmd: BudgetCommand) -> anyhow::Result<()> {
    match cmd {
        BudgetCommand::Set(a) => {
            let grantee = a.grantee.unwrap_or_else(|| "*".into());
            let target = target_name(a.dataset.as_deref(), a.population.as_deref());
            let request = pb::SetBudgetRequest {
                dataset: a.dataset.clone().unwrap_or_default(),
                population: a.population.clone().unwrap_or_default(),
                grantee,
                period: a.period.name().into(),
                cap: Some(pb::Cost {
                    epsilon: a.epsilon,
                    delta: a.delta,
                    rho: a.rho,
                }),
            };
            let r = crate::profile::call(&a.profile, |mut c| async move {
                Ok(c.governance().set_budget(request).await?.into_inner())
            })?;
            print_budget(&r, &target);
        }
        BudgetCommand::Show(a) => {
            let target = target_name(a.dataset.as_deref(), a.population.as_deref());
            let request = pb::ShowBudgetRequest {
                dataset: a.dataset.clone().unwrap_or_default(),
                population: a.population.clone().unwrap_or_default(),
            };
            let r = crate::profile::call(&a.profile, |mut c| async move {
                Ok(c.governance().show_budget(request).await?.into_inner())
            })
            .with_context(|| format!("budget of {target}"))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&budget_json(&r))?);
            } else {
                print_budget(&r, &target);
            }
        }
    }
    Ok(())
}
