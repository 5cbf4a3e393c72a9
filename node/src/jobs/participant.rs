//! The participant: a node asked by a peer (the coordinator) to take part in a job. It decides
//! with its own gate, keeps its own row for the job, runs the PSI sender over the exchange the
//! coordinator opens, and rechecks and commits (or returns) its own budget.

use std::pin::Pin;
use std::sync::Arc;

use concord_proto::v1 as pb;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Status, Streaming};

use crate::error::NodeError;
use crate::jobs::error::JobError;
use crate::jobs::exchange::{
    self, FrameSink, IDLE_TIMEOUT, Inbound, Outbound, PARTICIPANT_INBOUND,
};
use crate::jobs::failure::Failure;
use crate::jobs::input;
use crate::jobs::kinds::psi::{self, Link};
use crate::jobs::lifecycle::{
    admit, cost_text, dataset, during_protocol, ended, fail, next_control, recheck, step,
};
use crate::jobs::live::Handle;
use crate::jobs::party_input::describe;
use crate::jobs::table::Protocol;
use crate::jobs::table::{JobRow, JoinSpec, Spec, State};
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
    let kind = match JobKind::parse(&p.kind) {
        Some(
            k @ (JobKind::PsiCardinality
            | JobKind::PsiIntersection
            | JobKind::Join
            | JobKind::Aggregate),
        ) => k,
        _ => return Err(NodeError::Invalid(format!("unknown job kind {:?}", p.kind))),
    };
    let join = match (kind, p.join.take()) {
        (JobKind::Join, Some(t)) => Some(JoinSpec {
            value_column: String::new(),
            lo: t.lo,
            hi: t.hi,
            group_by: String::new(),
            categories: t.categories,
            exclude_nulls: false,
        }),
        (JobKind::Join, None) => {
            return Err(NodeError::Invalid("a join proposal needs its terms".into()));
        }
        (_, _) => None,
    };
    let protocol = Protocol::parse(&p.protocol).map_err(NodeError::from)?;
    match (protocol, kind) {
        (None, JobKind::Aggregate | JobKind::Join)
        | (None | Some(Protocol::Ecdh), JobKind::PsiCardinality | JobKind::PsiIntersection)
        | (Some(Protocol::Ot), JobKind::PsiIntersection) => {}
        (_, _) => {
            return Err(NodeError::Invalid(format!(
                "protocol {:?} for a {}: use ecdh, or ot for an intersection",
                p.protocol,
                kind.as_str()
            )));
        }
    }
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
    let aggregate = match (kind, p.aggregate.take()) {
        (JobKind::Aggregate, Some(a)) => Some(crate::jobs::kinds::aggregate::participant::check(
            node, peer, &p, a,
        )?),
        (JobKind::Aggregate, None) => {
            return Err(NodeError::Invalid(
                "an aggregate proposal needs its session".into(),
            ));
        }
        _ => None,
    };
    let columns_ok = match kind {
        JobKind::Aggregate => p.columns.len() <= 1,
        _ => !p.columns.is_empty() && p.columns.len() <= 16,
    };
    if !name_ok(&p.job_id) || !columns_ok {
        return Err(NodeError::Invalid(
            "a proposal needs a printable job id and 1 to 16 key columns (an aggregate: at \
             most one column)"
                .into(),
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
    let outcome = if row.kind == JobKind::Aggregate {
        crate::jobs::kinds::aggregate::participant::participate(
            &node, &row, &handle, &out, frames_rx, &mut ctl,
        )
        .await
    } else {
        participate(&node, &row, &handle, &out, frames_rx, &mut ctl).await
    };
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

async fn participate(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    out: &Arc<Outbound>,
    mut frames_rx: mpsc::Receiver<Vec<u8>>,
    ctl: &mut mpsc::UnboundedReceiver<Inbound>,
) -> Result<(), Failure> {
    let me = node.config.node.name.clone();
    let peer = row.coordinator.clone();
    let d = dataset(node, &row.spec.dataset)
        .await
        .map_err(|e| Failure::at(&me, e.to_string()))?
        .ok_or_else(|| Failure::at(&me, format!("no dataset {:?}", row.spec.dataset)))?;
    let peer_limit = node.config.limits.max_keys;
    // The key types were checked against this node's catalog when it accepted the proposal.
    let spec = input::key_spec(&input::key_types(&d, &row.spec.columns))
        .map_err(|e| Failure::at(&me, e))?;
    let params = psi::params_of(row, spec, peer_limit).map_err(|e| Failure::at(&me, e))?;
    let role_row = row.clone();
    let role_out = Arc::clone(out);
    let role_handle = Arc::clone(handle);
    let mut role = tokio::task::spawn_blocking(move || {
        let mut link = Link {
            out: &role_out,
            recv: Box::new(move || frames_rx.blocking_recv()),
            progress: Box::new(|done, total| {
                role_handle.report(State::Running, "exchanging", done, total, "");
            }),
            sent: Sha256::new(),
            frames: 0,
        };
        let (keys, read) = input::key_set(&d, &role_row.spec.columns, spec)?;
        let own = party_input(&role_row.spec.dataset, &read, &keys.report());
        let peer_items = if role_row.kind == JobKind::Join {
            crate::jobs::kinds::join::participate(&role_row, spec, keys, peer_limit, &mut link)?
        } else {
            psi::sender(role_row.spec.psi_protocol(), params, keys, &mut link).map_err(|e| {
                if e.peer_gone() {
                    JobError::PeerGone(e.to_string())
                } else {
                    JobError::Protocol(e.to_string())
                }
            })?
        };
        let digest: [u8; 32] = link.sent.finalize().into();
        Ok::<_, JobError>((peer_items, digest, link.frames, own))
    });
    let (peer_items, digest, frames, own) = tokio::select! {
        joined = &mut role => match joined {
            Ok(Ok(done)) => done,
            // The coordinator closed the session: its stream's end or its abort says why.
            Ok(Err(JobError::PeerGone(_))) => {
                return Err(ended(next_control(ctl, &peer).await, row));
            }
            Ok(Err(e)) => return Err(Failure::at(&me, e)),
            Err(e) => return Err(Failure::at(&me, format!("PSI task failed: {e}"))),
        },
        inbound = during_protocol(ctl, &peer) => {
            return Err(ended(inbound, row));
        }
    };

    match next_control(ctl, &peer).await {
        Inbound::Control(pb::job_control::Kind::Release(_)) => {}
        other => return Err(ended(other, row)),
    }
    if let Err(failure) = recheck(node, row, vec![peer_items]).await {
        let verdict = failure.decision();
        let _ = out.control(pb::job_control::Kind::Verdict(verdict)).await;
        return Err(failure);
    }
    let own = pb::PartyInput {
        node: me.clone(),
        ..own
    };
    let detail = format!(
        "released {} to {peer} for {}: {frames} protocol frames sent, {}; {peer_items} peer keys",
        row.kind.as_str(),
        row.recipient,
        describe(&own)
    );
    crate::jobs::lifecycle::commit_release(node, row, None, digest, detail).await?;
    let verdict = pb::ProposalDecision {
        accepted: true,
        code: String::new(),
        reason: String::new(),
        input: Some(own),
    };
    let _ = out.control(pb::job_control::Kind::Verdict(verdict)).await;
    Ok(())
}

/// This node's input figures, before it knows its name in them.
fn party_input(
    dataset: &str,
    read: &input::Read,
    keys: &concord_mpc::psi::InputReport,
) -> pb::PartyInput {
    crate::jobs::party_input::party_input("", dataset, read, Some(keys))
}
