//! `concord dataset add|list|classify`: the catalog, through your node.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};
use concord_node::catalog::{self, ColumnSpec, Tier};
use concord_node::client::{self, tier_name, type_name};
use concord_node::hex::encode as hex;
use concord_node::proto as pb;

use crate::profile::ProfileArg;

#[derive(Subcommand)]
pub(crate) enum DatasetCommand {
    /// Register a CSV file your node reads in place (data managers).
    ///
    /// The node checks the whole file against the declared columns (UTF-8, RFC 4180 quoting,
    /// a header naming the columns in order, every value of its type; an empty field is a null,
    /// allowed only in columns marked nullable) and records the schema, each field's tier, the
    /// row count and the file's SHA-256. A bad file is refused with its line and reason.
    ///
    /// Tiers: public < internal < sensitive < restricted. Peers see the dataset's columns
    /// except restricted ones; restricted fields never leave the node in any form.
    ///
    /// Example:
    ///   concord dataset add --profile health/manager.toml --id insured
    ///     --file /data/insured.csv --key-columns nin
    ///     --column nin:text:internal --column district:text:public
    ///     --column claims:decimal:sensitive:nullable
    #[command(verbatim_doc_comment)]
    Add(AddArgs),
    /// List your node's datasets, or a peer's (metadata only, as the tiers allow).
    List(ListArgs),
    /// Change the tier of columns of a registered dataset (data managers).
    ///
    /// Tiers bound what any grant allows on a field (see your node's [policy.tiers]):
    ///   public      anything;
    ///   internal    a PSI key, or inside aggregates (default policy);
    ///   sensitive   only inside differentially private aggregates;
    ///   restricted  never used in a joint job, never shown to peers.
    /// A change applies to every later check, including jobs already running when they
    /// reach release.
    ///
    /// Example:
    ///   concord dataset classify --profile health/manager.toml --id insured
    ///     --column claims:restricted --column district:internal
    #[command(verbatim_doc_comment)]
    Classify(ClassifyArgs),
}

#[derive(Args)]
pub(crate) struct ClassifyArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// The dataset id.
    #[arg(long)]
    id: String,
    /// A column and its new tier; repeat for more.
    #[arg(long = "column", value_name = "NAME:TIER", required = true, value_parser = parse_tier_change)]
    columns: Vec<(String, Tier)>,
}

fn parse_tier_change(s: &str) -> Result<(String, Tier), String> {
    let (name, tier) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: use NAME:TIER"))?;
    let tier = Tier::parse(tier).ok_or_else(|| {
        format!("{s:?}: tier {tier:?} is not public, internal, sensitive or restricted")
    })?;
    Ok((name.to_owned(), tier))
}

#[derive(Args)]
pub(crate) struct AddArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// Dataset id at your node: 1-64 of a-z, 0-9, '_' and '-'.
    #[arg(long)]
    id: String,
    /// The CSV file, as a path on the node's machine.
    #[arg(long)]
    file: PathBuf,
    /// Columns forming the record key for joint jobs, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    key_columns: Vec<String>,
    /// A column, in file order: name:type:tier or name:type:tier:nullable, with type one of
    /// text, integer, decimal, date and tier one of public, internal, sensitive, restricted.
    #[arg(long = "column", value_name = "NAME:TYPE:TIER", required = true, value_parser = catalog::parse_column)]
    columns: Vec<ColumnSpec>,
    /// What the dataset holds.
    #[arg(long, default_value = "")]
    description: String,
    /// Sector or domain tag (grants can be scoped to a domain).
    #[arg(long, default_value = "")]
    domain: String,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// A peer's directory instead of your node's (your node asks the peer).
    #[arg(long)]
    peer: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn dataset_json(d: &pb::Dataset) -> serde_json::Value {
    serde_json::json!({
        "id": d.id,
        "node": d.node,
        "description": d.description,
        "domain": d.domain,
        "key_columns": d.key_columns,
        "columns": d.columns.iter().map(|c| serde_json::json!({
            "name": c.name, "type": type_name(c.r#type), "tier": tier_name(c.tier), "nullable": c.nullable,
        })).collect::<Vec<_>>(),
        "withheld_columns": d.withheld_columns,
        "rows": d.rows,
        "sha256": (!d.digest.is_empty()).then(|| hex(&d.digest)),
        "path": (!d.path.is_empty()).then_some(&d.path),
        "registered_at_ms": d.registered_at_ms,
        "registered_by": (!d.registered_by.is_empty()).then_some(&d.registered_by),
    })
}

fn print_dataset(d: &pb::Dataset) {
    println!(
        "{}/{}  {} rows  keys: {}",
        d.node,
        d.id,
        d.rows,
        d.key_columns.join(",")
    );
    if !d.description.is_empty() || !d.domain.is_empty() {
        println!("  {}  [domain: {}]", d.description, d.domain);
    }
    for c in &d.columns {
        let line = format!(
            "  {:<24} {:<8} {:<10} {}",
            c.name,
            type_name(c.r#type),
            tier_name(c.tier),
            if c.nullable { "nullable" } else { "" }
        );
        println!("{}", line.trim_end());
    }
    if d.withheld_columns > 0 {
        println!("  ({} restricted columns withheld)", d.withheld_columns);
    }
    if !d.path.is_empty() {
        println!("  file {}  sha256 {}", d.path, hex(&d.digest));
    }
}

pub(crate) fn run(cmd: DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::Add(a) => {
            // The node reads the file; send an absolute path when it exists here (the usual
            // trial set-up, node and CLI on one machine), otherwise the path as given.
            let path = std::fs::canonicalize(&a.file).unwrap_or_else(|_| a.file.clone());
            let Some(path) = path.to_str().map(str::to_owned) else {
                bail!("{}: the path is not valid UTF-8", a.file.display());
            };
            let request = pb::AddDatasetRequest {
                id: a.id,
                path,
                key_columns: a.key_columns,
                columns: a.columns.iter().map(client::column_to_pb).collect(),
                description: a.description,
                domain: a.domain,
            };
            let d =
                crate::profile::call(
                    &a.profile,
                    |mut c| async move { c.add_dataset(request).await },
                )?;
            println!("registered:");
            print_dataset(&d);
            Ok(())
        }
        DatasetCommand::List(a) => {
            let peer = a.peer.clone();
            let dir = crate::profile::call(&a.profile, |mut c| async move {
                c.list_datasets(peer.as_deref()).await
            })?;
            if a.json {
                let out = serde_json::json!({
                    "node": dir.node,
                    "datasets": dir.datasets.iter().map(dataset_json).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            if dir.datasets.is_empty() {
                println!("node {} has no datasets registered", dir.node);
            }
            for d in &dir.datasets {
                print_dataset(d);
            }
            Ok(())
        }
        DatasetCommand::Classify(a) => {
            let request = pb::ClassifyRequest {
                dataset: a.id.clone(),
                columns: a
                    .columns
                    .iter()
                    .map(|(column, tier)| pb::ColumnTier {
                        column: column.clone(),
                        tier: client::tier_to_wire(*tier),
                    })
                    .collect(),
            };
            let r = crate::profile::call(&a.profile, |mut c| async move {
                Ok(c.governance().classify_dataset(request).await?.into_inner())
            })?;
            println!("dataset {} reclassified:", a.id);
            for c in &r.changes {
                println!(
                    "  {:<24} {} -> {}",
                    c.column,
                    tier_name(c.old_tier),
                    tier_name(c.new_tier)
                );
            }
            Ok(())
        }
    }
}
