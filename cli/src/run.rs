//! `concord run psi|join|query|aggregate`: submit a joint job to your node, follow it, print its
//! result.

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use concord_node::policy::JobKind;
use concord_node::proto as pb;

use crate::job::{OutputArgs, follow};
use crate::profile::ProfileArg;

#[derive(Subcommand)]
pub(crate) enum RunCommand {
    /// Private set intersection between your node and a peer: how many keys two datasets share
    /// (DP-noised), or which keys (to the recipient only).
    ///
    /// Your node (the left side) compares and holds the result; the peer (the right side) never
    /// learns which keys matched. Both nodes check their own policy before the first message and
    /// again before release, reserve their privacy budget, and audit every step. A refusal,
    /// a timeout or a peer that dies fails the job at every party, and reserved budget returns.
    ///
    /// What is released:
    ///   cardinality   |left ∩ right| plus discrete Laplace noise (scale 1/ε), with its 95%
    ///                 interval; each node spends ε from its dataset's budget
    ///   intersection  the matching key values of your rows, exact, to the recipient only
    ///                 (not a DP release; each node records the use at no ε)
    ///
    /// Example:
    ///   concord run psi --profile health/operator.toml --kind cardinality
    ///     --left health:patients:nin --right civil:insured:nin --epsilon 1
    ///     --recipient researcher.health.concord
    #[command(verbatim_doc_comment)]
    Psi(PsiArgs),
    /// A DP count and sum of your values over the keys a peer also holds (join-aggregate).
    ///
    /// Your node holds the values (--values) and decrypts the result; the peer holds the keys
    /// (--keys) and adds the noise under encryption before anything leaves it, so no exact
    /// figure is ever decrypted and neither node learns which keys matched. The peer learns how
    /// many distinct keys you have and the exact size of the overlap (not which keys); your node
    /// learns how many distinct keys the peer has. Both nodes check their own policy, reserve ε,
    /// and audit every step.
    ///
    /// What is released, per group (--group-by with its public --categories, else one group):
    ///   count   your distinct keys (people) the peer also holds, including people whose value
    ///           cells are all empty (they add 0; --nulls exclude leaves such rows out);
    ///           discrete Laplace noise, scale 2/(0.9ε)
    ///   sum     their values; noise scale 2·max(|LO|, |HI|)/(0.9ε)
    ///   mean    sum / count, post-processing of the two (no interval)
    /// count and sum with their 95% intervals. Clamping applies to a person's total: the rows
    /// of one key are added first, then the total is clamped to [LO, HI]. The result says how
    /// many people were clamped (noised with 0.1ε) and warns when it is more than 1%. Every
    /// node spends ε (0.45ε for the counts, 0.45ε for the sums, 0.1ε for the clamped figure).
    ///
    /// Example:
    ///   concord run join --profile health/operator.toml
    ///     --values health:patients:nin:cost:0:5000 --keys civil:insured:nin
    ///     --group-by region --categories north,south --epsilon 1
    #[command(verbatim_doc_comment)]
    Join(Box<JoinArgs>),
    /// A differentially private statistic of one dataset at your node.
    ///
    /// Every release is differentially private for one person (the dataset's privacy unit,
    /// by default a normalized key) with all their rows. Statistics (integers only; nulls left
    /// out):
    ///   count       people, or rows with at most --max-rows a person (noise scale k/ε)
    ///   sum         of --column: each person's rows added, the total clamped to [--lo, --hi]
    ///   mean        of the people's clamped totals (ε split between sum and count)
    /// A sum or mean also says how many values it clamped, noised with 0.1ε (the statistic
    /// gets 0.9ε), and warns when that is more than 1%.
    ///   histogram   --bins equal-width bins over [--lo, --hi], or --categories of a text
    ///               column; a person in at most --max-groups bins, once each
    ///   quantile    --quantile Q among --bins + 1 candidates from --lo to --hi, one value a
    ///               person
    ///
    /// Each release spends ε (discrete Laplace noise, or the exponential mechanism for a
    /// quantile) and prints the value with its 95% interval.
    ///
    /// Example:
    ///   concord run query --profile health/operator.toml --dataset health:patients
    ///     --statistic mean --column age --lo 0 --hi 120 --epsilon 0.5
    #[command(verbatim_doc_comment)]
    Query(QueryArgs),
    /// A differentially private count, sum or histogram across datasets at several nodes,
    /// summed by secure aggregation: no node, not even yours, sees another node's numbers.
    ///
    /// Name one dataset per contributing node (at least two; your node may be one of them or
    /// only coordinate). Each contributor checks its own policy and reserves ε when asked,
    /// reads its own file, adds its own share of the noise, and sends its vector masked so
    /// that only the sum of all of them can be unmasked, by your node. Each commits its ε just
    /// before its masked vector leaves it.
    ///
    /// Statistics, per person (each dataset's privacy unit; integers only; nulls left out):
    ///   count       people of each dataset (no column)
    ///   sum         of each dataset's column: each person's total clamped to [--lo, --hi]
    ///   histogram   --bins equal-width bins over [--lo, --hi], or --categories of a text column;
    ///               each person in one of their bins
    ///
    /// What is released, to the recipient only: the summed values plus discrete Laplace noise
    /// (scale Δ/ε, Δ = 1 for count and histogram, max(|lo|, |hi|) for sum) with their 95%
    /// intervals, ε, and the contributors. A sum spends 0.9ε on itself and 0.1ε on how many
    /// values all contributors clamped (summed securely too), and warns above 1%. A refusal anywhere fails the job everywhere and
    /// reserved budget returns. A contributor that dies is left out when at least --threshold
    /// contributors remain (the noise is still the full amount, and the result names who
    /// contributed); with fewer, the job fails everywhere.
    ///
    /// Example:
    ///   concord run aggregate --profile health/operator.toml --statistic sum --lo 0 --hi 120
    ///     --dataset health:patients:age --dataset civil:insured:age --dataset stats:census:age
    ///     --epsilon 1 --recipient researcher.health.concord
    #[command(verbatim_doc_comment)]
    Aggregate(AggregateArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PsiKind {
    /// The DP-noised number of keys in common.
    Cardinality,
    /// The matching keys, to the recipient only.
    Intersection,
}

#[derive(Args)]
pub(crate) struct JobArgs {
    /// Privacy budget the release spends at every party (pure ε), an exact decimal: 0.1 is
    /// charged as 0.1, so ten jobs of 0.1 fit a cap of 1.
    #[arg(long, value_parser = parse_epsilon)]
    epsilon: Option<String>,
    /// Who may read the result: a person identity at your node (default: you).
    #[arg(long, value_name = "ID")]
    recipient: Option<String>,
    /// Submit and print the job id without waiting for the result.
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
pub(crate) struct PsiArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// What to compute.
    #[arg(long, value_enum)]
    kind: PsiKind,
    /// Your side: NODE:DATASET:COLUMNS (key columns comma-separated), at your node.
    #[arg(long, value_name = "NODE:DATASET:COLS", value_parser = parse_use)]
    left: pb::DatasetUse,
    /// The peer's side: NODE:DATASET:COLUMNS.
    #[arg(long, value_name = "NODE:DATASET:COLS", value_parser = parse_use)]
    right: pb::DatasetUse,
    /// The grant to use at your node.
    #[arg(long, value_name = "ID")]
    grant_left: Option<String>,
    /// The grant to use at the peer.
    #[arg(long, value_name = "ID")]
    grant_right: Option<String>,
    /// ecdh (elliptic-curve blinding; the only one for a cardinality) or ot (oblivious-transfer
    /// extension: 30-50x faster for large intersections, more bytes). Default: ot for
    /// intersections of at least 16384 rows at your node, ecdh otherwise.
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,
    #[command(flatten)]
    job: JobArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Protocol {
    /// ECDH on ristretto255.
    Ecdh,
    /// OT extension (KKRT16-style batch OPRF); intersections only.
    Ot,
}

#[derive(Args)]
pub(crate) struct JoinArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// Your side: NODE:DATASET:KEYCOLS:VALUECOL:LO:HI (key columns comma-separated; the
    /// integer column summed). Clamping applies to a person's total: rows sharing a key are
    /// added, then clamped to [LO, HI]. At your node.
    #[arg(long, value_name = "NODE:DATASET:KEYCOLS:VALUECOL:LO:HI", value_parser = parse_values)]
    values: (pb::DatasetUse, String, i64, i64),
    /// The peer's side: NODE:DATASET:KEYCOLS.
    #[arg(long, value_name = "NODE:DATASET:COLS", value_parser = parse_use)]
    keys: pb::DatasetUse,
    /// A column of your dataset to group by (needs --categories).
    #[arg(long, value_name = "COL", requires = "categories")]
    group_by: Option<String>,
    /// The public categories of --group-by, comma-separated (a row outside them stops the job).
    #[arg(long, value_delimiter = ',', requires = "group_by")]
    categories: Vec<String>,
    /// The grant to use at your node.
    #[arg(long, value_name = "ID")]
    grant_values: Option<String>,
    /// The grant to use at the peer.
    #[arg(long, value_name = "ID")]
    grant_keys: Option<String>,
    /// Empty value cells: include (a matched person with no value is counted and adds 0) or
    /// exclude (rows with an empty value are left out, and a person with only such rows is
    /// not counted).
    #[arg(long, value_enum, default_value_t = Nulls::Include)]
    nulls: Nulls,
    #[command(flatten)]
    job: JobArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Nulls {
    /// Count people with empty values; their values add 0.
    Include,
    /// Leave rows with an empty value out.
    Exclude,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Statistic {
    Count,
    Sum,
    Mean,
    Histogram,
    Quantile,
}

#[derive(Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// NODE:DATASET, at your node.
    #[arg(long, value_name = "NODE:DATASET")]
    dataset: String,
    /// What to release.
    #[arg(long, value_enum)]
    statistic: Statistic,
    /// The column (all statistics but count).
    #[arg(long)]
    column: Option<String>,
    /// Lower clamping bound, or the first bin's lower edge.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    lo: i64,
    /// Upper clamping bound, or the last bin's upper edge.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    hi: i64,
    /// Bins (histogram) or candidate steps (quantile); default 10.
    #[arg(long, default_value_t = 0)]
    bins: u32,
    /// Public categories of a text column (histogram), comma-separated.
    #[arg(long, value_delimiter = ',')]
    categories: Vec<String>,
    /// Which quantile, in [0, 1] (0.5 is the median).
    #[arg(long, default_value_t = 0.5)]
    quantile: f64,
    /// A count: the most rows one person contributes (the noise grows with it; 1 counts
    /// people).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_rows: u32,
    /// A histogram: the most bins one person contributes to (the noise grows with it).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_groups: u32,
    /// The grant to use at your node.
    #[arg(long, value_name = "ID")]
    grant: Option<String>,
    #[command(flatten)]
    job: JobArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum AggStatistic {
    Count,
    Sum,
    Histogram,
}

#[derive(Args)]
pub(crate) struct AggregateArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// A contributing node's dataset: NODE:DATASET for a count, NODE:DATASET:COLUMN for a sum
    /// or histogram. Repeat for every contributor (at least two).
    #[arg(long = "dataset", value_name = "NODE:DATASET[:COLUMN]", required = true, value_parser = parse_contribution)]
    datasets: Vec<pb::DatasetUse>,
    /// What to release.
    #[arg(long, value_enum)]
    statistic: AggStatistic,
    /// Lower clamping bound (sum), or the first bin's lower edge.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    lo: i64,
    /// Upper clamping bound (sum), or the last bin's upper edge.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    hi: i64,
    /// Equal-width bins over [--lo, --hi] (histogram); default 10.
    #[arg(long, default_value_t = 0)]
    bins: u32,
    /// Public categories of a text column (histogram), comma-separated.
    #[arg(long, value_delimiter = ',')]
    categories: Vec<String>,
    /// The grant to use at a node: NODE:GRANT (repeat per node; default: the first grant there
    /// that allows the job).
    #[arg(long = "grant", value_name = "NODE:GRANT")]
    grants: Vec<String>,
    /// The fewest contributors the job may release with; a strict majority at least (the
    /// default). Any dropout below it fails the job.
    #[arg(long)]
    threshold: Option<u32>,
    #[command(flatten)]
    job: JobArgs,
}

fn parse_contribution(s: &str) -> Result<pb::DatasetUse, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [node, dataset, rest @ ..]
            if !node.is_empty() && !dataset.is_empty() && rest.len() <= 1 =>
        {
            Ok(pb::DatasetUse {
                node: (*node).to_owned(),
                dataset: (*dataset).to_owned(),
                columns: rest
                    .iter()
                    .filter(|c| !c.is_empty())
                    .map(|c| (*c).to_owned())
                    .collect(),
                grant: String::new(),
            })
        }
        _ => Err(format!(
            "{s:?}: expected NODE:DATASET or NODE:DATASET:COLUMN, e.g. civil:insured:age"
        )),
    }
}

fn parse_use(s: &str) -> Result<pb::DatasetUse, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [node, dataset, cols] if !node.is_empty() && !dataset.is_empty() && !cols.is_empty() => {
            Ok(pb::DatasetUse {
                node: (*node).to_owned(),
                dataset: (*dataset).to_owned(),
                columns: cols.split(',').map(str::to_owned).collect(),
                grant: String::new(),
            })
        }
        _ => Err(format!(
            "{s:?}: expected NODE:DATASET:COLUMNS, e.g. civil:insured:nin"
        )),
    }
}

/// An ε as typed, checked to be a decimal the ledger holds exactly (a DP release needs it above
/// 0, which the node checks; an intersection spends none).
fn parse_epsilon(s: &str) -> Result<String, String> {
    s.parse::<concord_dp::Quantity>()
        .map_err(|e: concord_dp::DpError| e.to_string())?;
    Ok(s.trim().to_owned())
}

fn parse_values(s: &str) -> Result<(pb::DatasetUse, String, i64, i64), String> {
    let wrong = || {
        format!(
            "{s:?}: expected NODE:DATASET:KEYCOLS:VALUECOL:LO:HI, e.g. \
             health:patients:nin:cost:0:5000"
        )
    };
    let parts: Vec<&str> = s.split(':').collect();
    let [node, dataset, cols, value, lo, hi] = parts.as_slice() else {
        return Err(wrong());
    };
    if [node, dataset, cols, value].iter().any(|p| p.is_empty()) {
        return Err(wrong());
    }
    let bound = |b: &str| {
        b.parse::<i64>()
            .map_err(|_| format!("{s:?}: bound {b:?} is not an integer"))
    };
    let (lo, hi) = (bound(lo)?, bound(hi)?);
    if lo > hi {
        return Err(format!("{s:?}: LO {lo} is above HI {hi}"));
    }
    Ok((
        pb::DatasetUse {
            node: (*node).to_owned(),
            dataset: (*dataset).to_owned(),
            columns: cols.split(',').map(str::to_owned).collect(),
            grant: String::new(),
        },
        (*value).to_owned(),
        lo,
        hi,
    ))
}

pub(crate) fn run(cmd: RunCommand) -> anyhow::Result<()> {
    let (profile, spec, job) = match cmd {
        RunCommand::Psi(a) => {
            let output = match a.kind {
                PsiKind::Cardinality => pb::PsiOutput::Cardinality,
                PsiKind::Intersection => pb::PsiOutput::Intersection,
            };
            if matches!(a.kind, PsiKind::Cardinality) && a.job.epsilon.is_none() {
                bail!("a cardinality is a DP release: give --epsilon");
            }
            let mut left = a.left;
            left.grant = a.grant_left.unwrap_or_default();
            let mut right = a.right;
            right.grant = a.grant_right.unwrap_or_default();
            if matches!(
                (a.kind, a.protocol),
                (PsiKind::Cardinality, Some(Protocol::Ot))
            ) {
                bail!(
                    "the OT protocol reveals which keys match, so it cannot give a cardinality \
                     alone: use --protocol ecdh"
                );
            }
            let kind = pb::job_spec::Kind::Psi(pb::PsiJob {
                output: output as i32,
                left: Some(left),
                right: Some(right),
                protocol: match a.protocol {
                    None => pb::PsiProtocol::Unspecified,
                    Some(Protocol::Ecdh) => pb::PsiProtocol::Ecdh,
                    Some(Protocol::Ot) => pb::PsiProtocol::Ot,
                }
                .into(),
            });
            (a.profile, kind, a.job)
        }
        RunCommand::Join(a) => {
            let a = *a;
            if a.job.epsilon.is_none() {
                bail!("a join is a DP release: give --epsilon");
            }
            let (mut values, value_column, lo, hi) = a.values;
            values.grant = a.grant_values.unwrap_or_default();
            let mut keys = a.keys;
            keys.grant = a.grant_keys.unwrap_or_default();
            let kind = pb::job_spec::Kind::Join(pb::JoinJob {
                keys: Some(keys),
                values: Some(values),
                value_column,
                lo,
                hi,
                group_by: a.group_by.unwrap_or_default(),
                categories: a.categories,
                exclude_nulls: a.nulls == Nulls::Exclude,
            });
            (a.profile, kind, a.job)
        }
        RunCommand::Query(a) => {
            let Some((node, dataset)) = a.dataset.split_once(':') else {
                bail!("--dataset {:?}: expected NODE:DATASET", a.dataset);
            };
            if a.job.epsilon.is_none() {
                bail!("a query is a DP release: give --epsilon");
            }
            let statistic = match a.statistic {
                Statistic::Count => "count",
                Statistic::Sum => "sum",
                Statistic::Mean => "mean",
                Statistic::Histogram => "histogram",
                Statistic::Quantile => "quantile",
            };
            let kind = pb::job_spec::Kind::Query(pb::QueryJob {
                dataset: Some(pb::DatasetUse {
                    node: node.to_owned(),
                    dataset: dataset.to_owned(),
                    columns: a.column.into_iter().collect(),
                    grant: a.grant.unwrap_or_default(),
                }),
                statistic: statistic.into(),
                lo: a.lo,
                hi: a.hi,
                bins: a.bins,
                categories: a.categories,
                quantile: a.quantile,
                max_rows: a.max_rows,
                max_groups: a.max_groups,
            });
            (a.profile, kind, a.job)
        }
        RunCommand::Aggregate(a) => {
            if a.job.epsilon.is_none() {
                bail!("an aggregate is a DP release: give --epsilon");
            }
            let mut datasets = a.datasets;
            for g in &a.grants {
                let Some((node, grant)) = g.split_once(':') else {
                    bail!("--grant {g:?}: expected NODE:GRANT");
                };
                let Some(d) = datasets.iter_mut().find(|d| d.node == node) else {
                    bail!("--grant {g:?}: no --dataset at node {node}");
                };
                d.grant = grant.to_owned();
            }
            let statistic = match a.statistic {
                AggStatistic::Count => "count",
                AggStatistic::Sum => "sum",
                AggStatistic::Histogram => "histogram",
            };
            let kind = pb::job_spec::Kind::Aggregate(pb::AggregateJob {
                datasets,
                statistic: statistic.into(),
                lo: a.lo,
                hi: a.hi,
                bins: a.bins,
                categories: a.categories,
                threshold: a.threshold.unwrap_or(0),
            });
            (a.profile, kind, a.job)
        }
    };
    let spec = pb::JobSpec {
        kind: Some(spec),
        epsilon: job.epsilon.unwrap_or_default(),
        recipient: job.recipient.unwrap_or_default(),
    };
    let detach = job.detach;
    let output = job.output;
    crate::profile::call(&profile, move |mut client| async move {
        let submitted = client.submit_job(spec).await?;
        eprintln!(
            "submitted {} ({})",
            submitted.id,
            JobKind::name_of_pb(submitted.kind)
        );
        if detach {
            println!("{}", submitted.id);
            return Ok(Ok(()));
        }
        Ok(follow(&mut client, &submitted.id, &output).await)
    })?
}
