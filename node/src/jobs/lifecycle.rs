//! The steps every job takes at every party, whatever it computes: its gate (admit before the
//! first message, recheck before release, each audited), its progress, its budget's commit or
//! return, its failure (recorded, told to the other parties), and the control messages that can
//! stop it. Nothing here knows one job kind from another beyond the policy request it builds.

use std::sync::Arc;

use concord_proto::v1 as pb;
use concord_proto::v1::federation_client::FederationClient;
use tokio::sync::mpsc;

use crate::audit::{Outcome, Record};
use crate::catalog::Dataset;
use crate::error::NodeError;
use crate::jobs::error::JobError;
use crate::jobs::exchange::{IDLE_TIMEOUT, Inbound, Outbound};
use crate::jobs::failure::Failure;
use crate::jobs::gate::Phase;
use crate::jobs::gate::{FieldUse, UseRequest};
use crate::jobs::input;
use crate::jobs::kinds::work::Work;
use crate::jobs::live::{CancelledBy, Handle};
use crate::jobs::table::{JobRow, State};
use crate::node::{MAX_MESSAGE_BYTES, Node};

/// The dataset use a job makes at this node, as the gate sees it.
pub(super) fn use_request(row: &JobRow, peers: Vec<String>) -> Result<UseRequest, JobError> {
    let how = Work::of(row).key_use;
    Ok(UseRequest {
        job: row.id.clone(),
        kind: row.kind,
        grantee: row.submitted_by.clone(),
        grant: row.spec.grant.clone(),
        dataset: row.spec.dataset.clone(),
        fields: row
            .spec
            .columns
            .iter()
            .map(|c| (c.clone(), how))
            .chain(value_fields(row))
            .collect(),
        peers,
        recipient: row.recipient.clone(),
        cost: row.cost(Work::of(row).noised)?,
    })
}

/// A join's value and grouping columns at the value holder (none elsewhere).
fn value_fields(row: &JobRow) -> Vec<(String, FieldUse)> {
    let Some(j) = row.spec.join.as_ref() else {
        return Vec::new();
    };
    [
        (&j.value_column, FieldUse::DpValue),
        (&j.group_by, FieldUse::DpGroup),
    ]
    .into_iter()
    .filter(|(c, _)| !c.is_empty())
    .map(|(c, how)| (c.clone(), how))
    .collect()
}

/// An audit record about a job at this node.
pub(super) fn record(
    row: &JobRow,
    actor: &str,
    action: &str,
    outcome: Outcome,
    detail: String,
) -> Record {
    let mut subjects = vec![row.id.clone(), row.spec.dataset.clone()];
    subjects.extend(
        row.spec
            .columns
            .iter()
            .chain(value_fields(row).iter().map(|(c, _)| c))
            .map(|c| format!("{}.{c}", row.spec.dataset)),
    );
    Record {
        actor: actor.to_owned(),
        action: action.to_owned(),
        grant: (!row.spec.grant.is_empty()).then(|| row.spec.grant.clone()),
        subjects,
        privacy_cost: None,
        output_digest: None,
        outcome,
        detail,
    }
}

/// The dataset as this node's catalog has it.
pub(super) async fn dataset(node: &Arc<Node>, id: &str) -> Result<Option<Dataset>, NodeError> {
    let id = id.to_owned();
    node.with_store(move |_, store| {
        crate::catalog::list(store).map(|all| all.into_iter().find(|d| d.spec.id == id))
    })
    .await?
    .map_err(NodeError::from)
}

/// A joint DP release (a PSI cardinality, a join) protects one distinct key: it is a person
/// only when the dataset's privacy unit is its keys (or rows, whose keys are checked unique). A
/// dataset whose person is another column (a household) would be protected per key, not per
/// person, so such a job is refused there.
fn unit_fits(row: &JobRow, d: &Dataset) -> Result<(), JobError> {
    match &d.spec.privacy_unit {
        crate::catalog::PrivacyUnit::Column(c) if Work::of(row).protects_one_key => {
            Err(JobError::terms(format!(
                "dataset {}: its privacy unit is {c}, but a {} protects one key; a person with \
             several keys would be protected less than its data managers set",
                d.spec.id,
                row.kind.as_str()
            )))
        }
        _ => Ok(()),
    }
}

/// A participant's check of the key types the coordinator's proposal states against its own
/// catalog's for the columns it is asked to match on: both sides must normalize alike, or the
/// job would match nothing (or the wrong people) while looking right.
fn agree_key_types(row: &JobRow, d: &Dataset) -> Result<(), JobError> {
    if row.coordinator_role || !Work::of(row).matches_keys {
        return Ok(());
    }
    let own: Vec<String> = input::key_types(d, &row.spec.columns)
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    if own == row.spec.key_types {
        return Ok(());
    }
    let pairs = |types: &[String]| {
        row.spec
            .columns
            .iter()
            .zip(types)
            .map(|(c, t)| format!("{c}:{t}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    Err(JobError::terms(format!(
        "key types differ: {} matches on {} here, but the proposal states {} (both datasets must \
         declare the same key types, e.g. --key-columns nin:cn-resident-id)",
        row.spec.dataset,
        pairs(&own),
        if row.spec.key_types.is_empty() {
            "none".to_owned()
        } else {
            pairs(&row.spec.key_types)
        }
    )))
}

/// This node's name and the job's request of its policy (the other parties as peers).
fn request_here(node: &Node, row: &JobRow) -> Result<UseRequest, Failure> {
    let me = node.config.node.name.clone();
    let peers = row.parties.iter().filter(|p| **p != me).cloned().collect();
    use_request(row, peers).map_err(|e| Failure::at(&me, e))
}

/// The failure of this node's policy check, with the refusal's code.
fn refused(node: &Node, at_release: bool, e: NodeError) -> Failure {
    let me = &node.config.node.name;
    let when = if at_release { " at release" } else { "" };
    match e {
        NodeError::Policy(r) => Failure {
            refusal: Some((r.code(), r.to_string())),
            ..Failure::at(me, format!("refused{when} ({}): {r}", r.code()))
        },
        other => Failure::at(me, other.to_string()),
    }
}

/// Runs this node's policy check before its first message; reserves the job's budget.
/// Audited by the check (`policy.admit`). Returns the dataset's file, read from the catalog
/// once for the check and the job (`None` only if the dataset went away meanwhile: the policy
/// refuses one the catalog does not have).
pub(super) async fn admit(node: &Arc<Node>, row: &JobRow) -> Result<Option<Dataset>, Failure> {
    let me = &node.config.node.name;
    let req = request_here(node, row)?;
    let found = dataset(node, &row.spec.dataset)
        .await
        .map_err(|e| Failure::at(me, e.to_string()))?;
    if let Some(d) = &found
        && let Err(reason) = unit_fits(row, d)
    {
        return Err(Failure {
            refusal: Some(("privacy-unit", reason.to_string())),
            ..Failure::at(me, format!("refused (privacy-unit): {reason}"))
        });
    }
    let size = found.as_ref().map_or(0, |d| d.rows);
    let limit = node.config.limits.max_keys;
    if Work::of(row).holds_rows && size > limit {
        let reason = format!(
            "dataset {} has {size} rows, more than the {limit} a PSI, join or query may hold \
             at this node ([limits] max_keys in its configuration)",
            row.spec.dataset
        );
        return Err(Failure {
            refusal: Some(("too-large", reason.clone())),
            ..Failure::at(me, format!("refused (too-large): {reason}"))
        });
    }
    node.authorize(&req, Phase::Admit { own_set_size: size }, Vec::new(), None)
        .await
        .map_err(|e| refused(node, false, e))?;
    // After the policy check, whose refusal says more (a column no grant covers is refused as
    // such, whatever its type), and before any message: the reservation is returned at once.
    if let Some(d) = &found
        && let Err(reason) = agree_key_types(row, d)
    {
        let (id, now) = (row.id.clone(), node.clock.now_ms());
        node.with_store(move |_, store| crate::ledger::give_back(store, &id, now))
            .await
            .map_err(|e| Failure::at(me, e.to_string()))?
            .map_err(|e| Failure::at(me, e.to_string()))?;
        return Err(Failure {
            refusal: Some(("key-types", reason.to_string())),
            ..Failure::at(me, format!("refused (key-types): {reason}"))
        });
    }
    Ok(found)
}

/// Runs this node's policy check again before release (`policy.release`): the grant must
/// still allow the job, and every peer's input must meet the grant's minimum size.
pub(super) async fn recheck(
    node: &Arc<Node>,
    row: &JobRow,
    peer_sizes: Vec<u64>,
) -> Result<(), Failure> {
    let req = request_here(node, row)?;
    let parties = req.peers.iter().cloned().zip(peer_sizes).collect();
    node.authorize(&req, Phase::Release, parties, None)
        .await
        .map(|_| ())
        .map_err(|e| refused(node, true, e))
}

pub(super) fn cost_text(row: &JobRow) -> String {
    row.cost(Work::of(row).noised)
        .map_or_else(|e| e.to_string(), |c| c.to_string())
}

/// Moves the job forward at this node and tells watchers.
pub(super) async fn step(
    node: &Arc<Node>,
    row: &JobRow,
    handle: Option<&Handle>,
    state: State,
    phase: &str,
) {
    let (id, phase_owned, now) = (row.id.clone(), phase.to_owned(), node.clock.now_ms());
    let moved = node
        .with_store(move |_, store| {
            crate::jobs::table::transition(store, &id, state, &phase_owned, "", "", now)
        })
        .await;
    // Progress only: the job's end is recorded by `fail` or the release, which report their
    // own errors.
    let error = match moved {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(error) = error {
        tracing::warn!(job = %row.id, phase, %error, "could not record the job's progress");
    }
    if let Some(h) = handle {
        h.report(state, phase, 0, 0, "");
    }
}

/// Ends a job without release at this node: returns its budget, records why, audits.
pub(super) async fn fail(node: &Arc<Node>, row: &JobRow, reserved: bool, failure: &Failure) {
    let me = node.config.node.name.clone();
    let (id, now) = (row.id.clone(), node.clock.now_ms());
    let state = failure.state();
    let (reason, at) = (failure.reason.clone(), failure.at.clone());
    let stored = node
        .with_store(move |_, store| {
            let returned = if reserved {
                crate::ledger::give_back(store, &id, now)
                    .map(|_| true)
                    .unwrap_or(false)
            } else {
                false
            };
            let ended = crate::jobs::table::transition(
                store,
                &id,
                state,
                state.as_str(),
                &reason,
                &at,
                now,
            )
            // An intersection's keys stored before a release that did not happen.
            .and_then(|_| crate::jobs::table::drop_keys(store, &id));
            (returned, ended)
        })
        .await;
    let returned = match stored {
        Ok((returned, Ok(()))) => returned,
        Ok((returned, Err(e))) => {
            // The row stays as it was; a restart fails it (`fail_interrupted`).
            tracing::error!(job = %row.id, error = %e, "could not record the job's end");
            returned
        }
        Err(e) => {
            tracing::error!(job = %row.id, error = %e, "could not record the job's end");
            false
        }
    };
    let detail = format!(
        "{} at {}: {}{}",
        state.as_str(),
        failure.at,
        failure.reason,
        if returned {
            "; reserved budget returned"
        } else {
            ""
        }
    );
    let action = if failure.cancelled {
        "job.cancel"
    } else {
        "job.fail"
    };
    // The job has ended: nothing is left to fail, so the entry is retried, and an entry that
    // still cannot be written is logged as an error rather than dropped silently.
    if let Err(e) = node
        .audit_retrying(record(row, &me, action, Outcome::Refused, detail))
        .await
    {
        tracing::error!(job = %row.id, error = %e, "could not audit the job's end");
    }
}

/// Marks the start of the release at the coordinator: a cancel that came first stops the job
/// here, and one that comes later is refused (the parties are committing their budget).
pub(super) fn begin_release(node: &Node, handle: &Handle) -> Result<(), Failure> {
    handle.begin_release().map_err(|CancelledBy(by)| Failure {
        cancelled: true,
        at: node.config.node.name.clone(),
        reason: format!("cancelled by {by}"),
        refusal: None,
    })
}

/// Stores the release and commits the budget in one database call; audits the release with its
/// cost and the digest of what leaves the node.
pub(super) async fn commit_release(
    node: &Arc<Node>,
    row: &JobRow,
    result: Option<pb::JobResult>,
    digest: [u8; 32],
    detail: String,
) -> Result<(), Failure> {
    settle_release(node, row, result, digest, detail, true).await
}

/// Rechecks this node's policy and commits its budget before its input may leave it for good
/// (an aggregate's masked vector): from then on the budget stays spent whatever happens.
/// Audited as `job.commit` with the cost.
pub(super) async fn commit_budget(node: &Arc<Node>, row: &JobRow) -> Result<(), Failure> {
    recheck(node, row, Vec::new()).await?;
    let me = node.config.node.name.clone();
    let (id, now) = (row.id.clone(), node.clock.now_ms());
    node.with_store(move |_, store| crate::ledger::commit(store, &id, now))
        .await
        .map_err(|e| Failure::at(&me, e.to_string()))?
        .map_err(|e| Failure::at(&me, format!("could not commit the budget: {e}")))?;
    let mut entry = record(
        row,
        &me,
        "job.commit",
        Outcome::Accepted,
        format!(
            "committed the budget of {} before sending its masked input (once sent, it may enter the released sum)",
            row.id
        ),
    );
    entry.privacy_cost = Some(cost_text(row));
    // Without its audit entry the job stops here: the budget stays spent (the safe side) and
    // the masked input is not sent.
    node.audit(entry)
        .await
        .map_err(|e| Failure::at(&me, format!("could not write the audit log: {e}")))?;
    Ok(())
}

/// Audits the release with its cost and the digest of what leaves the node, then stores it
/// (committing the budget in the same database call when `commit`).
pub(super) async fn settle_release(
    node: &Arc<Node>,
    row: &JobRow,
    result: Option<pb::JobResult>,
    digest: [u8; 32],
    detail: String,
    commit: bool,
) -> Result<(), Failure> {
    let me = node.config.node.name.clone();
    let mut entry = record(row, &me, "job.release", Outcome::Accepted, detail);
    entry.privacy_cost = Some(if row.spec.dataset.is_empty() {
        "none at this node (no dataset)".into()
    } else {
        cost_text(row)
    });
    entry.output_digest = Some(digest);
    // The entry is written first: a release is never without its audit entry. Should storing
    // the release then fail, the job fails and `job.fail` follows it in the log.
    node.audit(entry)
        .await
        .map_err(|e| Failure::at(&me, format!("could not write the audit log: {e}")))?;
    let (id, now) = (row.id.clone(), node.clock.now_ms());
    let stored = node
        .with_store(move |_, store| {
            if commit {
                crate::ledger::commit(store, &id, now)
                    .map_err(|e| JobError::terms(e.to_string()))?;
            }
            crate::jobs::table::release(store, &id, result.as_ref(), now)
                .map_err(|e| JobError::terms(e.to_string()))
        })
        .await
        .map_err(|e| Failure::at(&me, e.to_string()))?
        .map_err(|e| Failure::at(&me, format!("could not release: {e}")))?;
    if !stored {
        return Err(Failure::at(&me, "the job ended before release"));
    }
    Ok(())
}

/// How far a job got with its peers.
#[derive(Default)]
pub(super) struct PeerLink {
    /// A two-party job was proposed to its peer (which may have accepted and reserved).
    pub(super) proposed: bool,
    /// The exchanges this job opened, to abort on failure.
    pub(super) outs: Vec<Arc<Outbound>>,
}

/// The other party of a two-party job (empty for a single-node job).
pub(super) fn peer_of<'a>(row: &'a JobRow, me: &str) -> &'a str {
    row.parties
        .iter()
        .find(|p| *p != me)
        .map_or("", String::as_str)
}

/// While the protocol runs: the first control message or the end of the stream. No timeout of
/// its own: the reader fails the exchange after [`IDLE_TIMEOUT`] of silence, however long the
/// protocol takes while frames keep flowing.
pub(super) async fn during_protocol(
    ctl: &mut mpsc::UnboundedReceiver<Inbound>,
    peer: &str,
) -> Inbound {
    ctl.recv()
        .await
        .unwrap_or_else(|| Inbound::Closed(format!("peer {peer} closed the exchange")))
}

/// Waits for the first control message (or the end of the stream) after the protocol.
pub(super) async fn next_control(
    ctl: &mut mpsc::UnboundedReceiver<Inbound>,
    peer: &str,
) -> Inbound {
    match tokio::time::timeout(IDLE_TIMEOUT, ctl.recv()).await {
        Ok(Some(m)) => m,
        Ok(None) => Inbound::Closed(format!("peer {peer} closed the exchange")),
        Err(_) => Inbound::Closed(format!(
            "peer {peer} did not answer for {} s",
            IDLE_TIMEOUT.as_secs()
        )),
    }
}

/// A federation client with the node-to-node message limits.
pub(super) fn federation_client(
    channel: tonic::transport::Channel,
) -> FederationClient<tonic::transport::Channel> {
    FederationClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// How the coordinator's stream or its abort ended the job at this participant.
pub(super) fn ended(inbound: Inbound, row: &JobRow) -> Failure {
    let peer = row.coordinator.as_str();
    match inbound {
        Inbound::Closed(reason) => Failure::at(peer, reason),
        Inbound::Control(pb::job_control::Kind::Abort(a)) => {
            Failure::aborted(peer, &row.parties, a)
        }
        Inbound::Control(_) => Failure::at(
            peer,
            format!("peer {peer} sent an unexpected control message"),
        ),
    }
}
