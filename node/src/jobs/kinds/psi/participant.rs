//! The PSI sender at a participant, and the shell it shares with the join's key holder: read
//! this node's keys, answer the coordinator's exchange with the kind's role, then recheck and
//! commit on the coordinator's release and send the verdict.

use std::sync::Arc;

use concord_mpc::psi::{KeySet, KeySpec};
use concord_proto::v1 as pb;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::jobs::error::JobError;
use crate::jobs::exchange::Link;
use crate::jobs::exchange::{Inbound, Outbound};
use crate::jobs::failure::Failure;
use crate::jobs::input;
use crate::jobs::kinds::psi;
use crate::jobs::lifecycle::{dataset, during_protocol, ended, next_control, recheck};
use crate::jobs::live::Handle;
use crate::jobs::party_input::describe;
use crate::jobs::table::{JobRow, State};
use crate::node::Node;

/// A key holder's role over the exchange: this node's keys in, the number of the peer's
/// distinct keys out. `peer_limit` is this node's `[limits] max_keys`.
pub(in crate::jobs) type KeyRole =
    fn(&JobRow, KeySpec, KeySet, u64, &mut Link<'_>) -> Result<u64, JobError>;

/// The PSI sender's role, in the job's protocol.
pub(in crate::jobs) fn send(
    row: &JobRow,
    spec: KeySpec,
    keys: KeySet,
    peer_limit: u64,
    link: &mut Link<'_>,
) -> Result<u64, JobError> {
    let params = psi::params_of(row, spec, peer_limit)?;
    psi::sender(row.spec.psi_protocol(), params, keys, link).map_err(|e| {
        if e.peer_gone() {
            JobError::PeerGone(e.to_string())
        } else {
            JobError::Protocol(e.to_string())
        }
    })
}

/// Answers the coordinator's exchange with `role` over this node's keys, then rechecks and
/// commits on its release.
pub(in crate::jobs) async fn answer(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    out: &Arc<Outbound>,
    mut frames_rx: mpsc::Receiver<Vec<u8>>,
    ctl: &mut mpsc::UnboundedReceiver<Inbound>,
    role: KeyRole,
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
    let role_row = row.clone();
    let root = psi::bucketed::spill_root(node);
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
        let (peer_items, own) = if role_row.spec.buckets > 1 {
            // A PSI in hash buckets (only a PSI is ever agreed in buckets).
            let (mut spilled, read) =
                psi::bucketed::spill(&root, &role_row, &d, spec, role_row.spec.buckets)?;
            let params = psi::params_of(&role_row, spec, peer_limit)?;
            let protocol = role_row.spec.psi_protocol();
            let peer_items = psi::bucketed::sender(protocol, params, &mut spilled, &mut link)
                .map_err(|stop| match stop {
                    psi::bucketed::Stop::Own(e) => e,
                    psi::bucketed::Stop::Protocol(e) if e.peer_gone() => {
                        JobError::PeerGone(e.to_string())
                    }
                    psi::bucketed::Stop::Protocol(e) => JobError::Protocol(e.to_string()),
                })?;
            (
                peer_items,
                party_input(&role_row.spec.dataset, &read, &spilled.report()),
            )
        } else {
            let (keys, read) = input::key_set(&d, &role_row.spec.columns, spec)?;
            let own = party_input(&role_row.spec.dataset, &read, &keys.report());
            (role(&role_row, spec, keys, peer_limit, &mut link)?, own)
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
            Err(e) => return Err(Failure::at(&me, format!("the {} task failed: {e}", row.kind.as_str()))),
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
        buckets: 0,
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
