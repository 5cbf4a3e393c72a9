//! The participant: a node asked by a peer (the coordinator) to take part in a job. It decides
//! with its own gate, keeps its own row for the job, runs its kind's side over the exchange the
//! coordinator opens, and returns its budget when the job fails.

use std::pin::Pin;
use std::sync::Arc;

use concord_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Status, Streaming};

use crate::error::NodeError;
use crate::jobs::exchange::{self, FrameSink, IDLE_TIMEOUT, Outbound, PARTICIPANT_INBOUND};
use crate::jobs::failure::Failure;
use crate::jobs::kinds;
use crate::jobs::kinds::terms::Proposed;
use crate::jobs::lifecycle::{admit, cost_text, fail, step};
use crate::jobs::live::Handle;
use crate::jobs::table::{JobRow, Spec, State};
use crate::node::Node;
use crate::policy::JobKind;

/// The envelopes a participant streams back to the coordinator.
pub(crate) type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<pb::Envelope, Status>> + Send>>;

/// `Federation.Propose`: records the job and decides with this node's gate. A refusal is an
/// answer (with the code and reason), not a transport error; it is audited either way.
pub(crate) async fn propose(
    node: &Arc<Node>,
    peer: &str,
    mut p: pb::JobProposal,
) -> Result<(pb::ProposalDecision, String), NodeError> {
    let me = node.config.node.name.clone();
    let kind = JobKind::from_pb_checked(p.kind)?;
    let Proposed {
        protocol,
        join,
        aggregate,
        buckets,
    } = kinds::proposed(node, peer, kind, &mut p).await?;
    let (epsilon, exact) =
        crate::jobs::table::exact_epsilon(&p.epsilon).map_err(NodeError::from)?;
    let epsilon_text = exact.to_string();
    let session = <[u8; 16]>::try_from(p.session.as_slice())
        .map_err(|_| NodeError::Invalid("the session id must be 16 bytes".into()))?;
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= concord_proto::envelope::MAX_NAME_BYTES
            && s.bytes().all(|b| b.is_ascii_graphic())
    };
    if !name_ok(&p.job_id) {
        return Err(NodeError::Invalid(
            "a proposal needs a printable job id".into(),
        ));
    }
    if !p.parties.iter().any(|n| n == &me) || !p.parties.iter().any(|n| n == peer) {
        return Err(NodeError::Invalid(format!(
            "the parties {:?} must name both {peer} and {me}",
            p.parties
        )));
    }
    let now = node.clock.now_ms();
    let row = JobRow {
        id: p.job_id.clone(),
        kind,
        coordinator_role: false,
        coordinator: peer.to_owned(),
        submitted_by: p.submitted_by,
        recipient: p.recipient,
        parties: p.parties,
        spec: Spec {
            epsilon,
            epsilon_text,
            dataset: p.dataset,
            columns: p.columns,
            grant: p.grant,
            peer: None,
            session: crate::hex::encode(&session),
            query: None,
            protocol,
            join,
            aggregate,
            key_types: p.key_types,
            buckets,
        },
        state: State::Submitted,
        phase: "proposed".into(),
        reason: String::new(),
        failed_at: String::new(),
        created_ms: now,
        updated_ms: now,
    };
    // The coordinator may end the job while this node decides (an operator's cancel): its
    // abort then comes before the job is authorized here, and the decision sees it.
    let Some(deciding) = node.jobs.decide(peer, &row.id) else {
        let reason = format!("{peer} ended job {} before this node decided it", row.id);
        let detail = format!("refused {}: {reason}", row.id);
        return Ok((withdrawn(reason), detail));
    };
    let stored = row.clone();
    node.with_store(move |_, store| crate::jobs::table::insert(store, &stored))
        .await?
        .map_err(|_| NodeError::Exists(format!("job {:?} is already known here", row.id)))?;
    if let Err(failure) = admit(node, &row).await {
        fail(node, &row, false, &failure).await;
        let detail = format!("refused {}: {}", row.id, failure.reason);
        return Ok((failure.decision(), detail));
    }
    step(node, &row, None, State::Authorized, "authorized").await;
    if deciding.withdrawn() {
        let failure = Failure {
            cancelled: true,
            ..Failure::at(peer, "ended by its coordinator while this node decided it")
        };
        fail(node, &row, true, &failure).await;
        let detail = format!("withdrew {}: {}", row.id, failure.reason);
        return Ok((withdrawn(failure.reason), detail));
    }
    // A coordinator that never opens the exchange must not hold this node's budget forever.
    let waiting = Arc::clone(node);
    let stale = row.clone();
    tokio::spawn(async move {
        tokio::time::sleep(IDLE_TIMEOUT).await;
        let id = stale.id.clone();
        let still = waiting
            .with_store(move |_, store| crate::jobs::table::get(store, &id).ok().flatten())
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.state == State::Authorized);
        if still {
            let failure = Failure::at(
                &stale.coordinator,
                "the coordinator never started the exchange",
            );
            fail(&waiting, &stale, true, &failure).await;
        }
    });
    let detail = format!(
        "accepted {} from {peer}; reserved {}",
        row.id,
        cost_text(&row)
    );
    Ok((
        pb::ProposalDecision {
            accepted: true,
            buckets,
            ..pb::ProposalDecision::default()
        },
        detail,
    ))
}

/// The answer to a proposal of a job its coordinator has already ended.
fn withdrawn(reason: String) -> pb::ProposalDecision {
    pb::ProposalDecision {
        accepted: false,
        code: "withdrawn".into(),
        reason,
        input: None,
        buckets: 0,
    }
}

/// `Federation.Exchange` at a participant: the first envelope names an authorized job this
/// node accepted from the caller; the job then runs in the background and streams back.
pub(crate) async fn exchange(
    node: &Arc<Node>,
    peer: &str,
    first: pb::Envelope,
    stream: Streaming<pb::Envelope>,
) -> Result<(EnvelopeStream, String), NodeError> {
    concord_proto::envelope::check(&first, u32::from(concord_mpc::PROTOCOL_VERSION), 0)
        .map_err(|e| NodeError::Invalid(e.to_string()))?;
    let id = first.job_id.clone();
    let awaiting = || async {
        let lookup = id.clone();
        Ok::<_, NodeError>(
            node.with_store(move |_, store| crate::jobs::table::get(store, &lookup))
                .await?
                .map_err(|e| NodeError::Internal(e.to_string()))?
                .filter(|r| {
                    !r.coordinator_role && r.coordinator == peer && r.state == State::Authorized
                }),
        )
    };
    let row = match awaiting().await? {
        Some(row) => row,
        // A coordinator that ended the job before it was authorized here: its proposal is
        // being decided (which then ends the job), is yet to come (it will be refused), or was
        // decided just now (the job is there to end as usual).
        None if exchange::opens_with_abort(&first) => {
            let decided_now = if node.jobs.withdraw(peer, &id) {
                None
            } else {
                awaiting().await?
            };
            let Some(row) = decided_now else {
                let detail = format!("{peer} ended job {id} before this node had authorized it");
                return Ok((Box::pin(tokio_stream::empty()), detail));
            };
            row
        }
        None => {
            return Err(NodeError::NotFound(format!(
                "no job {id:?} awaiting an exchange from {peer}"
            )));
        }
    };
    // From here `Jobs.Watch` at this node follows the job's progress: the handle comes first,
    // so a watcher who reads the job as running finds something to follow.
    let handle = node.jobs.observe(&id);
    step(node, &row, None, State::Running, "exchanging").await;
    let (out, outbound) = Outbound::new(&id);
    tokio::spawn(run(
        Arc::clone(node),
        row,
        handle,
        Arc::new(out),
        first,
        stream,
    ));
    let detail = format!("exchange of {id} opened by {peer}");
    let stream = tokio_stream::wrappers::ReceiverStream::new(outbound).map(Ok);
    Ok((Box::pin(stream), detail))
}

async fn run(
    node: Arc<Node>,
    row: JobRow,
    handle: Arc<Handle>,
    out: Arc<Outbound>,
    first: pb::Envelope,
    stream: Streaming<pb::Envelope>,
) {
    let peer = row.coordinator.clone();
    let (frames_tx, frames_rx) = mpsc::channel(PARTICIPANT_INBOUND);
    let (ctl_tx, mut ctl) = mpsc::unbounded_channel();
    tokio::spawn(exchange::read(
        row.id.clone(),
        peer.clone(),
        Some(first),
        stream,
        FrameSink::Bounded(frames_tx),
        ctl_tx,
    ));
    let outcome = kinds::participate(&node, &row, &handle, &out, frames_rx, &mut ctl).await;
    let (state, message) = match outcome {
        Ok(()) => (State::Released, "released".to_owned()),
        Err(failure) => {
            // Tell the coordinator, unless it is the one who ended the job.
            if failure.at == node.config.node.name {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    out.control(pb::job_control::Kind::Abort(failure.abort())),
                )
                .await;
            }
            fail(&node, &row, true, &failure).await;
            (failure.state(), failure.message())
        }
    };
    // After the store, so that a watcher who reads the job on the last event finds it ended.
    handle.report(state, state.as_str(), 0, 0, &message);
    node.jobs.remove(&row.id);
}
