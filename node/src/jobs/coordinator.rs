//! The coordinator: the node an operator submits to. It checks the request, runs its own gate,
//! proposes the job to the other party, drives the protocol as the comparing party, rechecks
//! with every party, releases the result for its recipient, and fails the job everywhere when
//! anything goes wrong.

use std::sync::Arc;

use concord_proto::v1 as pb;

use crate::config::Role;
use crate::error::NodeError;
use crate::jobs::exchange::Outbound;
use crate::jobs::failure::Failure;
use crate::jobs::kinds;
use crate::jobs::kinds::terms::{Asked, Requested};
use crate::jobs::lifecycle::{PeerLink, admit, fail, federation_client, peer_of};
use crate::jobs::live::Handle;
use crate::jobs::table::{JobRow, Spec, State};
use crate::node::Node;
use crate::tls::Caller;

/// Checks a submitted spec and records the job; the engine then runs it in the background.
pub(crate) async fn submit(
    node: &Arc<Node>,
    caller: &Caller,
    spec: pb::JobSpec,
) -> Result<(pb::Job, String), NodeError> {
    let me = node.config.node.name.clone();
    let submitted_by = caller.audit_name();
    let recipient = if spec.recipient.is_empty() {
        submitted_by.clone()
    } else {
        spec.recipient.clone()
    };
    if !node.config.people.iter().any(|p| p.identity == recipient) {
        return Err(NodeError::Invalid(format!(
            "recipient {recipient:?} is not a person of node {me} (results are collected there)"
        )));
    }
    let (epsilon, exact) =
        crate::jobs::table::exact_epsilon(&spec.epsilon).map_err(NodeError::from)?;
    let asked = Asked {
        epsilon,
        positive: epsilon.is_finite() && epsilon > 0.0 && exact > concord_dp::Quantity::ZERO,
    };
    let terms = kinds::submitted(node, spec.kind, asked).await?;
    let parties = terms.parties(&me);
    let Requested {
        kind,
        own: own_use,
        peer,
        query,
        protocol,
        join,
        aggregate,
        noised,
    } = terms;
    let now = node.clock.now_ms();
    let row = JobRow {
        id: crate::jobs::table::new_id(),
        kind,
        coordinator_role: true,
        coordinator: me.clone(),
        submitted_by,
        recipient,
        parties,
        spec: Spec {
            // A release without noise (an intersection, to its recipient only) spends no ε.
            epsilon: if noised { epsilon } else { 0.0 },
            // As typed, in its exact form: `0.1` stays `0.1`.
            epsilon_text: if noised {
                exact.to_string()
            } else {
                "0".into()
            },
            dataset: own_use.dataset,
            columns: own_use.columns,
            grant: own_use.grant,
            peer,
            session: crate::hex::encode(&crate::jobs::table::session()),
            query,
            protocol,
            join,
            aggregate,
            key_types: Vec::new(),
            buckets: 0,
        },
        state: State::Submitted,
        phase: "submitted".into(),
        reason: String::new(),
        failed_at: String::new(),
        created_ms: now,
        updated_ms: now,
    };
    let stored = row.clone();
    node.with_store(move |_, store| crate::jobs::table::insert(store, &stored))
        .await?
        .map_err(|e| NodeError::Internal(e.to_string()))?;
    let handle = node.jobs.register(&row.id);
    let detail = format!(
        "submitted {} {} with {} for {}",
        row.kind.as_str(),
        row.id,
        row.parties.join(", "),
        row.recipient
    );
    let job = row.to_pb();
    tokio::spawn(run(Arc::clone(node), row, handle));
    Ok((job, detail))
}

/// What cleanup needs to know, whichever step the job stopped at.
#[derive(Default)]
struct Progress {
    reserved: bool,
    released: bool,
    peer: PeerLink,
}

async fn run(node: Arc<Node>, row: JobRow, handle: Arc<Handle>) {
    let mut p = Progress::default();
    let me = node.config.node.name.clone();
    let outcome = tokio::select! {
        r = work(&node, &row, &handle, &mut p) => r,
        by = handle.cancelled() => Err(Failure {
            cancelled: true,
            at: me.clone(),
            reason: format!("cancelled by {by}"),
            refusal: None,
        }),
    };
    match outcome {
        Ok(()) => handle.report(State::Released, "released", 0, 0, "released"),
        Err(failure) => {
            let abort = failure.abort();
            let told = async {
                let outs = std::mem::take(&mut p.peer.outs);
                // Proposed but no exchange yet: the peer may hold a reservation for the job, so
                // open an exchange only to end it (a peer that never accepted refuses it).
                if outs.is_empty() && p.peer.proposed && failure.at != peer_of(&row, &me) {
                    abort_unopened(&node, &row, abort.clone()).await;
                }
                for out in outs {
                    out.control(pb::job_control::Kind::Abort(abort.clone()))
                        .await;
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), told).await;
            if !p.released {
                fail(&node, &row, p.reserved, &failure).await;
            }
            let state = failure.state();
            handle.report(state, state.as_str(), 0, 0, &failure.message());
        }
    }
    node.jobs.remove(&row.id);
}

/// Ends the job at a peer that accepted it before any exchange opened: an exchange whose one
/// envelope is the abort. Best effort: a peer that cannot be reached ends the job itself after
/// its silence timeout.
async fn abort_unopened(node: &Arc<Node>, row: &JobRow, abort: pb::Abort) {
    let me = node.config.node.name.clone();
    let Ok(channel) = node.peer_channel(peer_of(row, &me)).await else {
        return;
    };
    let mut client = federation_client(channel);
    let (out, outbound) = Outbound::new(&row.id);
    if !out.control(pb::job_control::Kind::Abort(abort)).await {
        return;
    }
    drop(out);
    if let Ok(response) = client
        .exchange(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
    {
        // Drain until the peer closes its side: it has then recorded the end of the job.
        let mut stream = response.into_inner();
        while let Ok(Some(_)) = stream.message().await {}
    }
}

async fn work(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    p: &mut Progress,
) -> Result<(), Failure> {
    let me = node.config.node.name.clone();
    // An aggregate's coordinator may only aggregate, without a dataset of its own.
    let found = if row.spec.dataset.is_empty() {
        None
    } else {
        handle.report(State::Submitted, "authorizing", 0, 0, "");
        let found = admit(node, row).await?;
        p.reserved = true;
        Some(found.ok_or_else(|| Failure::at(&me, format!("no dataset {:?}", row.spec.dataset)))?)
    };
    kinds::coordinate(node, row, handle, found, &mut p.peer).await?;
    p.released = true;
    Ok(())
}

/// A job's result, for its recipient only.
pub(crate) async fn result(
    node: &Arc<Node>,
    caller: &Caller,
    id: String,
) -> Result<(pb::JobResult, String), NodeError> {
    let who = caller.audit_name();
    let lookup = id.clone();
    let (row, result) = node
        .with_store(move |_, store| {
            Ok::<_, crate::store::StoreError>((
                crate::jobs::table::get(store, &lookup)?,
                crate::jobs::table::result(store, &lookup)?,
            ))
        })
        .await?
        .map_err(|e| NodeError::Internal(e.to_string()))?;
    let row = row.ok_or_else(|| NodeError::NotFound(format!("no job {id:?} at this node")))?;
    if row.recipient != who {
        return Err(NodeError::Forbidden(format!(
            "the result of {id} is for {} only",
            row.recipient
        )));
    }
    match (row.state, result) {
        (State::Released, Some(r)) => {
            let detail = format!("result of {id} read by its recipient");
            Ok((r, detail))
        }
        (state, _) => Err(NodeError::NotFound(format!(
            "job {id} has no result here (it is {}{})",
            state.as_str(),
            if row.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", row.reason)
            }
        ))),
    }
}

/// Roles that may see jobs.
pub(crate) const JOB_READERS: &[Role] = &[
    Role::Operator,
    Role::DataManager,
    Role::Auditor,
    Role::Researcher,
];
