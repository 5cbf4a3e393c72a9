//! `concord job list|show|cancel|result`, and following a job's progress for `concord run`.

use std::io::Write as _;

use anyhow::bail;
use clap::{Args, Subcommand};
use concord_node::client::NodeClient;
use concord_node::policy::JobKind;
use concord_node::proto as pb;
use indicatif::{ProgressBar, ProgressStyle};

use crate::profile::ProfileArg;

#[derive(Subcommand)]
pub(crate) enum JobCommand {
    /// Jobs at your node, newest first: those it coordinates and those it took part in.
    List(ListArgs),
    /// One job: its state, phase, parties, recipient, and why it failed.
    Show(IdArgs),
    /// Follow a job until it ends: its phase and items done (a progress bar on a terminal,
    /// plain lines otherwise), then its result if you are its recipient.
    ///
    /// Works at the coordinator (for example after `concord run … --detach`) and at each
    /// participant, from the moment its exchange opens; a job that has ended, or has not
    /// reached a participant's exchange yet, prints its current state and returns.
    #[command(verbatim_doc_comment)]
    Watch(WatchArgs),
    /// Stop a job your node coordinates; every party returns its reserved budget.
    Cancel(IdArgs),
    /// A released job's result: values with their 95% intervals, ε and δ spent, parties.
    ///
    /// Only the person the job names as recipient gets it; anyone else is refused
    /// (PermissionDenied), and both are written to the node's audit log.
    #[command(verbatim_doc_comment)]
    Result(ResultArgs),
}

#[derive(Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct IdArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// The job id (job-…).
    id: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct WatchArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// The job id (job-…).
    id: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
pub(crate) struct ResultArgs {
    #[command(flatten)]
    profile: ProfileArg,
    /// The job id (job-…).
    id: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Clone)]
pub(crate) struct OutputArgs {
    /// Print the result as one JSON object.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print the result as CSV (values, or the matching keys of an intersection, with a header:
    /// the normalized keys that matched).
    #[arg(long)]
    csv: bool,
    /// An intersection's keys also as written in your own file, beside the normalized ones.
    #[arg(long)]
    original_keys: bool,
}

pub(crate) fn run(cmd: JobCommand) -> anyhow::Result<()> {
    match cmd {
        JobCommand::List(a) => {
            let jobs =
                crate::profile::call(
                    &a.profile,
                    |mut c| async move { c.list_jobs(a.limit).await },
                )?;
            if a.json {
                let all: Vec<_> = jobs.iter().map(job_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            println!(
                "{:<20}  {:<16}  {:<11}  {:<10}  {:<16}  recipient",
                "job", "kind", "role", "state", "parties"
            );
            for j in &jobs {
                println!(
                    "{:<20}  {:<16}  {:<11}  {:<10}  {:<16}  {}",
                    j.id,
                    JobKind::name_of_pb(j.kind),
                    j.role,
                    j.state,
                    j.parties.join(","),
                    j.recipient
                );
            }
            Ok(())
        }
        JobCommand::Show(a) => {
            let id = a.id.clone();
            let job =
                crate::profile::call(&a.profile, |mut c| async move { c.get_job(&id).await })?;
            print_job(&job, a.json)
        }
        JobCommand::Watch(a) => {
            let (id, output) = (a.id.clone(), a.output.clone());
            crate::profile::call(&a.profile, move |mut client| async move {
                Ok(follow(&mut client, &id, &output).await)
            })?
        }
        JobCommand::Cancel(a) => {
            let id = a.id.clone();
            let job =
                crate::profile::call(&a.profile, |mut c| async move { c.cancel_job(&id).await })?;
            print_job(&job, a.json)
        }
        JobCommand::Result(a) => {
            let (id, output) = (a.id.clone(), a.output.clone());
            crate::profile::call(&a.profile, move |mut client| async move {
                Ok(show_result(&mut client, &id, &output).await)
            })?
        }
    }
}

fn job_json(j: &pb::Job) -> serde_json::Value {
    serde_json::json!({
        "id": j.id,
        "kind": JobKind::name_of_pb(j.kind),
        "role": j.role,
        "state": j.state,
        "phase": j.phase,
        "coordinator": j.coordinator,
        "parties": j.parties,
        "submitted_by": j.submitted_by,
        "recipient": j.recipient,
        "epsilon": j.epsilon,
        "reason": j.reason,
        "failed_at": j.failed_at,
        "created_ms": j.created_ms,
        "updated_ms": j.updated_ms,
    })
}

fn print_job(j: &pb::Job, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&job_json(j))?);
        return Ok(());
    }
    println!("job          {}", j.id);
    println!("kind         {}", JobKind::name_of_pb(j.kind));
    println!("state        {} ({})", j.state, j.phase);
    println!("role         {} (coordinator {})", j.role, j.coordinator);
    println!("parties      {}", j.parties.join(", "));
    println!("submitted by {}", j.submitted_by);
    println!("recipient    {}", j.recipient);
    println!("epsilon      {}", j.epsilon);
    if !j.reason.is_empty() {
        println!("failed at    {}", j.failed_at);
        println!("reason       {}", j.reason);
    }
    Ok(())
}

/// The result as JSON, without its keys (which stream after it).
fn result_json(r: &pb::JobResult) -> serde_json::Value {
    let values: Vec<_> = r
        .values
        .iter()
        .map(|v| {
            serde_json::json!({
                "label": v.label, "value": v.value, "lower": v.lower, "upper": v.upper,
            })
        })
        .collect();
    serde_json::json!({
        "job": r.job_id,
        "kind": JobKind::name_of_pb(r.kind),
        "parties": r.parties,
        "recipient": r.recipient,
        "mechanism": r.mechanism,
        "epsilon": r.epsilon,
        "delta": r.delta,
        "accuracy": r.accuracy,
        "values": values,
        "contributors": r.contributors,
        "released_ms": r.released_ms,
        "inputs": crate::inputs::json(&r.inputs),
        "privacy_unit": (!r.privacy_unit.is_empty()).then_some(&r.privacy_unit),
        "noise": r.noise.iter().map(|n| serde_json::json!({
            "figures": n.figures, "mechanism": n.mechanism, "scale": n.scale,
            "sensitivity": n.sensitivity, "bounds": n.bounds, "contribution": n.contribution,
            "epsilon": n.epsilon,
        })).collect::<Vec<_>>(),
        "nulls": (!r.nulls.is_empty()).then_some(&r.nulls),
        "key_header": (!r.key_header.is_empty()).then_some(&r.key_header),
    })
}

/// How many of a key row's values to print: the normalized keys, and the keys as written in
/// the file when asked.
fn key_values_shown(r: &pb::JobResult, output: &OutputArgs) -> usize {
    if output.original_keys || r.key_header.is_empty() {
        usize::MAX
    } else {
        r.key_header.len() / 2
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A released intersection's matching keys as they stream from the node, one row of key
/// values at a time; checks that as many came as the result announced.
struct KeyStream {
    id: String,
    expected: u64,
    seen: u64,
    chunks: Option<concord_node::client::KeyChunks>,
}

impl KeyStream {
    async fn open(client: &mut NodeClient, r: &pb::JobResult) -> anyhow::Result<Self> {
        let chunks = if r.key_count > 0 {
            Some(client.job_result_keys(&r.job_id).await?)
        } else {
            None
        };
        Ok(Self {
            id: r.job_id.clone(),
            expected: r.key_count,
            seen: 0,
            chunks,
        })
    }

    /// The next chunk of rows, or `None` once all have come.
    async fn next(&mut self) -> anyhow::Result<Option<Vec<Vec<String>>>> {
        let Some(chunks) = &mut self.chunks else {
            return Ok(None);
        };
        match chunks
            .message()
            .await
            .map_err(concord_node::client::ClientError::from)?
        {
            Some(chunk) => {
                self.seen += chunk.rows.len() as u64;
                Ok(Some(chunk.rows.into_iter().map(|k| k.values).collect()))
            }
            None if self.seen == self.expected => Ok(None),
            None => bail!(
                "{}: the node sent {} of the {} matching keys",
                self.id,
                self.seen,
                self.expected
            ),
        }
    }
}

/// Fetches a released job's result, and an intersection's keys as they stream, and prints
/// them.
async fn show_result(client: &mut NodeClient, id: &str, output: &OutputArgs) -> anyhow::Result<()> {
    let result = client.job_result(id).await?;
    let keys = KeyStream::open(client, &result).await?;
    print_result(&result, keys, output).await
}

async fn print_result(
    r: &pb::JobResult,
    mut keys: KeyStream,
    output: &OutputArgs,
) -> anyhow::Result<()> {
    // Warnings go to standard error, so that CSV and JSON output stay clean.
    for w in crate::inputs::warnings(&r.inputs) {
        eprintln!("warning: {w}");
    }
    let shown = key_values_shown(r, output);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if output.json {
        // One object whose last member, "keys", is written as its rows arrive.
        let head = serde_json::to_string_pretty(&result_json(r))?;
        let head = head.strip_suffix("\n}").unwrap_or(&head);
        write!(out, "{head},\n  \"keys\": [")?;
        let mut first = true;
        while let Some(rows) = keys.next().await? {
            for k in rows {
                let sep = if first { "" } else { "," };
                let k = &k[..k.len().min(shown)];
                write!(out, "{sep}\n    {}", serde_json::to_string(k)?)?;
                first = false;
            }
        }
        writeln!(out, "{}]\n}}", if first { "" } else { "\n  " })?;
        return Ok(out.flush()?);
    }
    let bound = |b: Option<f64>| b.map_or(String::new(), |b| format!("{b}"));
    if output.csv {
        if r.key_count == 0 {
            writeln!(out, "label,value,lower,upper")?;
            for v in &r.values {
                writeln!(
                    out,
                    "{},{},{},{}",
                    csv_field(&v.label),
                    v.value,
                    bound(v.lower),
                    bound(v.upper)
                )?;
            }
        } else {
            let header: Vec<String> = r
                .key_header
                .iter()
                .take(shown)
                .map(|h| csv_field(h))
                .collect();
            writeln!(out, "{}", header.join(","))?;
        }
        while let Some(rows) = keys.next().await? {
            for k in rows {
                let row: Vec<String> = k.iter().take(shown).map(|v| csv_field(v)).collect();
                writeln!(out, "{}", row.join(","))?;
            }
        }
        return Ok(out.flush()?);
    }
    writeln!(out, "job        {}", r.job_id)?;
    writeln!(out, "kind       {}", JobKind::name_of_pb(r.kind))?;
    writeln!(out, "parties    {}", r.parties.join(", "))?;
    if !r.contributors.is_empty() {
        writeln!(out, "contributors {}", r.contributors.join(", "))?;
    }
    writeln!(out, "recipient  {}", r.recipient)?;
    writeln!(out, "mechanism  {}", r.mechanism)?;
    writeln!(out, "epsilon    {}", r.epsilon)?;
    writeln!(out, "delta      {}", r.delta)?;
    writeln!(out, "accuracy   {}", r.accuracy)?;
    if !r.nulls.is_empty() {
        writeln!(out, "nulls      {}", r.nulls)?;
    }
    if !r.privacy_unit.is_empty() {
        writeln!(out, "protects   one {}", r.privacy_unit)?;
    }
    for n in &r.noise {
        let bounds = if n.bounds.is_empty() {
            String::new()
        } else {
            format!(", bounds {}", n.bounds)
        };
        writeln!(
            out,
            "noise      {}: {}, scale {:.4}, sensitivity {}{bounds}; {}; ε {}",
            n.figures, n.mechanism, n.scale, n.sensitivity, n.contribution, n.epsilon
        )?;
    }
    writeln!(out)?;
    let width = r
        .values
        .iter()
        .map(|v| crate::inputs::width(&v.label))
        .max()
        .unwrap_or(5)
        .max(5);
    let pad = crate::inputs::pad;
    writeln!(
        out,
        "{}  {:>14}  95% interval",
        pad("label", width),
        "value"
    )?;
    for v in &r.values {
        let interval = match (v.lower, v.upper) {
            (Some(l), Some(u)) => format!("[{l:.2}, {u:.2}]"),
            _ => "-".into(),
        };
        writeln!(
            out,
            "{}  {:>14.2}  {interval}",
            pad(&v.label, width),
            v.value
        )?;
    }
    if !r.inputs.is_empty() {
        writeln!(out)?;
        crate::inputs::table(&mut out, &r.inputs)?;
    }
    if r.key_count > 0 {
        writeln!(out)?;
        let header: Vec<&str> = r
            .key_header
            .iter()
            .take(shown)
            .map(String::as_str)
            .collect();
        writeln!(out, "matching keys ({}):", header.join(", "))?;
    }
    while let Some(rows) = keys.next().await? {
        for k in rows {
            let k = &k[..k.len().min(shown)];
            writeln!(out, "  {}", k.join(", "))?;
        }
    }
    Ok(out.flush()?)
}

/// Follows a job until it ends: progress bars on a terminal, plain lines otherwise; then the
/// result if you are its recipient.
pub(crate) async fn follow(
    client: &mut NodeClient,
    id: &str,
    output: &OutputArgs,
) -> anyhow::Result<()> {
    let mut events = client.watch_job(id).await?;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = terminal.then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(id.to_owned());
        bar
    });
    let mut last_phase = String::new();
    while let Some(event) = events
        .message()
        .await
        .map_err(concord_node::client::ClientError::from)?
    {
        if let Some(bar) = &bar {
            bar.set_message(format!("{} {}", event.state, event.phase));
            bar.set_length(event.total);
            bar.set_position(event.done);
        } else if event.phase != last_phase {
            if event.phase == event.state {
                eprintln!("{id}: {}", event.state);
            } else {
                eprintln!("{id}: {} ({})", event.state, event.phase);
            }
        }
        last_phase.clone_from(&event.phase);
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let job = client.get_job(id).await?;
    match job.state.as_str() {
        "released" => {
            let me = client.health().await?.caller;
            if me == job.recipient {
                show_result(client, id, output).await
            } else {
                println!(
                    "{id} released; the result is for {} only (concord job result {id})",
                    job.recipient
                );
                Ok(())
            }
        }
        "failed" | "cancelled" => {
            bail!("{id} {} at {}: {}", job.state, job.failed_at, job.reason)
        }
        // A participant's job before its exchange opens: nothing runs here yet to follow.
        state => {
            println!(
                "{id} is {state} ({}) at this node; its progress shows here once its exchange opens",
                job.phase
            );
            Ok(())
        }
    }
}
