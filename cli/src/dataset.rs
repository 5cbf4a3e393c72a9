//! `concord dataset add|list|classify`: the catalog, through your node.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use concord_mpc::psi::KeyType;
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
    /// allowed only in columns marked nullable; every key valid for its key type) and records
    /// the schema, each field's tier, the row count and the file's SHA-256. A bad row refuses
    /// the file with its line and reason, or, with --on-bad-row skip, is left out of every
    /// job, listed in a reject report (line, column, reason; never the value) and counted.
    ///
    /// Key types (--key-columns NAME:TYPE), how a key column's values are matched:
    ///   text (default)            NFKC (full-width to ASCII), trimmed, inner spaces collapsed,
    ///                             case-folded; text:case-sensitive keeps case
    ///   cn-resident-id            18-character resident identity number, check digit verified,
    ///                             lowercase x accepted; cn-resident-id:legacy-15 also converts
    ///                             15-digit numbers
    ///   cn-uscc                   18-character unified social credit code, check verified
    ///   phone, email              see the README's "Matching real exports"
    /// Both sides of a joint job must declare the same key types; a mismatch is refused before
    /// any message.
    ///
    /// Tiers: public < internal < sensitive < restricted. Peers see the dataset's columns
    /// except restricted ones; restricted fields never leave the node in any form.
    ///
    /// Example:
    ///   concord dataset add --profile health/manager.toml --id insured
    ///     --file /data/insured.csv --key-columns nin:cn-resident-id --on-bad-row skip
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
    /// Columns forming the record key for joint jobs, comma-separated, each NAME or NAME:TYPE
    /// (key types: text, text:case-sensitive, cn-resident-id, cn-resident-id:legacy-15,
    /// cn-uscc, phone, email; default text). Several columns form one composite key.
    #[arg(long, value_delimiter = ',', required = true, value_name = "NAME[:TYPE]", value_parser = catalog::parse_key_column)]
    key_columns: Vec<(String, KeyType)>,
    /// What to do with a row that does not fit: fail (refuse the file, the default) or skip
    /// (leave it out of every job, list it in the reject report, count it).
    #[arg(long, value_enum, default_value_t = OnBadRow::Fail)]
    on_bad_row: OnBadRow,
    /// Who one individual is for differential privacy: by default a person is a key (all rows
    /// with the same normalized key are one person, protected together); a column's name; or
    /// row, only when every row is a distinct person (refused if a key repeats).
    #[arg(long, value_name = "COLUMN|row")]
    privacy_unit: Option<String>,
    /// The population whose people it describes (default: "default", one per node): datasets
    /// of one population also share its budget caps (concord budget set --population).
    #[arg(long)]
    population: Option<String>,
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

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum OnBadRow {
    /// Refuse the file at its first bad row.
    Fail,
    /// Leave bad rows out, report and count them.
    Skip,
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
        "key_types": d.key_types,
        "on_bad_row": d.on_bad_row,
        "privacy_unit": d.privacy_unit,
        "population": d.population,
        "rows_left_out": d.rejects.as_ref().map(|r| serde_json::json!({
            "ragged": r.ragged, "not_utf8": r.not_utf8, "null": r.null,
            "bad_value": r.bad_value, "bad_key": r.bad_key,
        })),
        "reject_report": (!d.reject_report.is_empty()).then_some(&d.reject_report),
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
    let keys: Vec<String> = d
        .key_columns
        .iter()
        .enumerate()
        .map(|(i, k)| match d.key_types.get(i) {
            Some(t) => format!("{k}:{t}"),
            None => k.clone(),
        })
        .collect();
    println!(
        "{}/{}  {} rows  keys: {}  privacy unit: {}",
        d.node,
        d.id,
        d.rows,
        keys.join(","),
        match d.privacy_unit.as_str() {
            "keys" | "" => "person (a key)",
            "row" => "row",
            column => column,
        }
    );
    let (left_out, why) = crate::inputs::rejects_text(d.rejects.as_ref());
    if d.on_bad_row == "skip" || left_out > 0 {
        println!(
            "  on bad row: {}; {left_out} rows left out{}",
            d.on_bad_row,
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            }
        );
    }
    if !d.reject_report.is_empty() {
        println!("  reject report: {}", d.reject_report);
    }
    if !d.population.is_empty() && d.population != "default" {
        println!("  population: {}", d.population);
    }
    if !d.description.is_empty() || !d.domain.is_empty() {
        println!("  {}  [domain: {}]", d.description, d.domain);
    }
    let name_width = d
        .columns
        .iter()
        .map(|c| crate::inputs::width(&c.name))
        .max()
        .unwrap_or(0)
        .max(24);
    for c in &d.columns {
        let line = format!(
            "  {} {:<8} {:<10} {}",
            crate::inputs::pad(&c.name, name_width),
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
                key_types: a.key_columns.iter().map(|(_, t)| t.name().into()).collect(),
                key_columns: a.key_columns.into_iter().map(|(c, _)| c).collect(),
                privacy_unit: a.privacy_unit.unwrap_or_default(),
                population: a.population.unwrap_or_default(),
                on_bad_row: match a.on_bad_row {
                    OnBadRow::Fail => "fail",
                    OnBadRow::Skip => "skip",
                }
                .into(),
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
                    "  {} {} -> {}",
                    crate::inputs::pad(&c.column, 24),
                    tier_name(c.old_tier),
                    tier_name(c.new_tier)
                );
            }
            Ok(())
        }
    }
}
