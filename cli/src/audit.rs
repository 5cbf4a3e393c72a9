//! `concord audit show|verify`: through your node (auditors, data managers), or offline on a
//! copy of a node's database with the node's public audit key.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use concord_node::hex::encode as hex;
use concord_node::store::Store;
use concord_node::{audit, client};

use crate::profile::ProfileArg;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Print the audit log: who asked what, under which grant, with what outcome.
    Show(ShowArgs),
    /// Recompute the hash chain and check the signed head; exits with status 1 on any problem.
    ///
    /// Detects edited, deleted and reordered entries, truncation, and a rewritten chain. Give
    /// --db and --public-key to check a copy of a node's database without trusting the node
    /// (the public key is the node's audit.pub, obtained out of band).
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
}

#[derive(Args)]
pub(crate) struct ShowArgs {
    /// Your profile, to ask your node (auditors and data managers).
    #[arg(
        long,
        env = "CONCORD_PROFILE",
        value_name = "FILE",
        conflicts_with = "db"
    )]
    profile: Option<PathBuf>,
    /// A node's database file, read directly (offline).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    source: ShowArgs,
    /// The node's public audit key (its audit.pub: 64 hex digits), needed with --db.
    #[arg(long)]
    public_key: Option<PathBuf>,
}

fn open(db: &std::path::Path) -> anyhow::Result<Store> {
    if !db.is_file() {
        bail!("{}: no such database file", db.display());
    }
    Ok(Store::open(db)?)
}

fn read_public_key(path: &std::path::Path) -> anyhow::Result<audit::VerifyingKey> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    audit::parse_public_key(&text).with_context(|| {
        format!(
            "{}: expected an Ed25519 public key as 64 hex digits",
            path.display()
        )
    })
}

/// A timestamp in RFC 3339 (UTC), or the raw milliseconds if out of range.
pub(crate) fn when(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

pub(crate) fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Show(s) => {
            let entries = match (&s.db, &s.profile) {
                (Some(db), _) => audit::entries(&mut open(db)?)?
                    .iter()
                    .map(client::audit_entry)
                    .collect(),
                (None, Some(profile)) => crate::profile::call(
                    &ProfileArg {
                        profile: profile.clone(),
                    },
                    |mut c| async move { c.show_audit().await },
                )?,
                (None, None) => bail!("give --profile (ask your node) or --db (read a copy)"),
            };
            if s.json {
                let out: Vec<_> = entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "seq": e.seq, "at_ms": e.at_ms, "actor": e.actor, "action": e.action,
                            "grant": (!e.grant.is_empty()).then_some(&e.grant),
                            "subjects": e.subjects,
                            "privacy_cost": (!e.privacy_cost.is_empty()).then_some(&e.privacy_cost),
                            "output_digest": (!e.output_digest.is_empty()).then(|| hex(&e.output_digest)),
                            "outcome": e.outcome, "detail": e.detail, "hash": hex(&e.hash),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            for e in &entries {
                let mut extra = String::new();
                if !e.subjects.is_empty() {
                    extra.push_str(&format!(" [{}]", e.subjects.join(", ")));
                }
                if !e.grant.is_empty() {
                    extra.push_str(&format!(" grant={}", e.grant));
                }
                if !e.privacy_cost.is_empty() {
                    extra.push_str(&format!(" cost={}", e.privacy_cost));
                }
                println!(
                    "{:>6}  {}  {:<8}  {:<20}  {}{}: {}",
                    e.seq,
                    when(e.at_ms),
                    e.outcome,
                    e.action,
                    e.actor,
                    extra,
                    e.detail
                );
            }
            Ok(())
        }
        AuditCommand::Verify(VerifyArgs {
            source: s,
            public_key,
        }) => {
            let (entries, head_seq, problems, key) = match (&s.db, &s.profile) {
                (Some(db), _) => {
                    let key_file = public_key.as_deref().context("--db needs --public-key")?;
                    let key = read_public_key(key_file)?;
                    let v = audit::verify(&mut open(db)?, &key)?;
                    let problems = v.problems.iter().map(ToString::to_string).collect();
                    (v.entries, v.head_seq, problems, key.as_bytes().to_vec())
                }
                (None, Some(profile)) => {
                    let v = crate::profile::call(
                        &ProfileArg {
                            profile: profile.clone(),
                        },
                        |mut c| async move { c.verify_audit().await },
                    )?;
                    (v.entries, v.head_seq, v.problems, v.public_key)
                }
                (None, None) => bail!("give --profile (ask your node) or --db (read a copy)"),
            };
            if s.json {
                let out = serde_json::json!({
                    "intact": problems.is_empty(), "entries": entries, "head_seq": head_seq,
                    "problems": problems, "public_key": hex(&key),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if problems.is_empty() {
                println!(
                    "audit log intact: {entries} entries, head {head_seq} signed by {}",
                    hex(&key)
                );
            } else {
                println!("audit log NOT intact ({entries} entries, signed head {head_seq}):");
                for p in &problems {
                    println!("  - {p}");
                }
            }
            if !problems.is_empty() {
                bail!("the audit log is not intact ({} problems)", problems.len());
            }
            Ok(())
        }
    }
}
