//! A coordinator's session with its peers: proposing the job (every peer decides with its own
//! gate and reserves its budget), opening the exchange, running a protocol role over it, and the
//! release handshake, which every two-party kind and the aggregate share.

use std::sync::Arc;

use concord_proto::v1 as pb;
use concord_proto::v1::federation_client::FederationClient;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::jobs::exchange::Link;
use crate::jobs::exchange::{self, FrameSink, Inbound, Outbound};
use crate::jobs::failure::Failure;
use crate::jobs::lifecycle::{
    PeerLink, begin_release, during_protocol, federation_client, next_control, peer_of, step,
};
use crate::jobs::live::Handle;
use crate::jobs::table::Protocol;
use crate::jobs::table::{JobRow, PeerUse, State};
use crate::node::Node;

/// The other party's dataset use, which a two-party job records at its coordinator.
pub(super) fn peer_use(row: &JobRow, me: &str) -> Result<PeerUse, Failure> {
    row.spec
        .peer
        .clone()
        .ok_or_else(|| Failure::at(me, format!("a {} job needs a peer", row.kind.as_str())))
}

/// Why a protocol role stopped: at which side, and whether it only saw the peer go.
pub(super) struct RoleError {
    /// The peer's frames were at fault (else this node failed).
    pub(super) at_peer: bool,
    /// The role's input ended early: the exchange reader knows why.
    pub(super) peer_gone: bool,
    pub(super) message: String,
}

/// The kind-specific terms of a proposal.
#[derive(Default)]
pub(super) struct Terms {
    pub(super) join: Option<pb::JoinTerms>,
    pub(super) aggregate: Option<pb::AggregateProposal>,
    /// The key type of each key column (two-party matching jobs).
    pub(super) key_types: Vec<String>,
    /// A PSI: the hash buckets the coordinator's own dataset needs.
    pub(super) buckets: u32,
}

/// Proposes the job to the peer; returns the client and the peer's acceptance once it accepted
/// (and reserved its budget), or the peer's refusal with its code.
pub(super) async fn propose(
    node: &Arc<Node>,
    row: &JobRow,
    peer: &PeerUse,
    terms: Terms,
    proposed: &mut bool,
) -> Result<(FederationClient<Channel>, pb::ProposalDecision), Failure> {
    let me = node.config.node.name.clone();
    let at_peer = |reason: String| Failure::at(&peer.node, reason);
    let channel = node
        .peer_channel(&peer.node)
        .await
        .map_err(|e| at_peer(format!("unreachable: {e}")))?;
    let mut client = federation_client(channel);
    let session = crate::hex::decode_16(&row.spec.session)
        .ok_or_else(|| Failure::at(&me, "bad session id"))?;
    let proposal = pb::JobProposal {
        job_id: row.id.clone(),
        kind: row.kind.to_pb().into(),
        submitted_by: row.submitted_by.clone(),
        grant: peer.grant.clone(),
        dataset: peer.dataset.clone(),
        columns: peer.columns.clone(),
        recipient: row.recipient.clone(),
        epsilon: row.spec.epsilon_text(),
        session: session.to_vec(),
        parties: row.parties.clone(),
        protocol: Protocol::to_pb(row.spec.protocol),
        join: terms.join,
        aggregate: terms.aggregate,
        key_types: terms.key_types,
        buckets: terms.buckets,
    };
    *proposed = true;
    let decision = client
        .propose(proposal)
        .await
        .map_err(|s| at_peer(format!("proposal failed ({:?}): {}", s.code(), s.message())))?
        .into_inner();
    if !decision.accepted {
        return Err(at_peer(format!(
            "refused ({}): {}",
            decision.code, decision.reason
        )));
    }
    Ok((client, decision))
}

/// A two-party exchange after its protocol: the writer and the peer's control messages.
pub(super) struct Exchanged {
    out: Arc<Outbound>,
    ctl: mpsc::UnboundedReceiver<Inbound>,
}

/// Opens `peer`'s side of the job's exchange with the envelopes of `outbound` (the peer answers
/// once it has read the first), and reads its envelopes in the background: protocol frames to
/// `frames`, control messages and the end of the stream to `control`.
pub(super) async fn open_exchange(
    client: &mut FederationClient<Channel>,
    job: &str,
    peer: &str,
    outbound: mpsc::Receiver<pb::Envelope>,
    frames: mpsc::UnboundedSender<Vec<u8>>,
    control: mpsc::UnboundedSender<Inbound>,
) -> Result<(), Failure> {
    let response = client
        .exchange(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .map_err(|s| {
            Failure::at(
                peer,
                format!("exchange refused ({:?}): {}", s.code(), s.message()),
            )
        })?;
    tokio::spawn(exchange::read(
        job.to_owned(),
        peer.to_owned(),
        None,
        response.into_inner(),
        FrameSink::Unbounded(frames),
        control,
    ));
    Ok(())
}

/// Opens the exchange with the peer and runs `role` on a blocking thread over it, the reader
/// feeding it the peer's frames; the role's progress reports go to `handle`.
pub(super) async fn run_role<T, F>(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    client: &mut FederationClient<Channel>,
    link: &mut PeerLink,
    role: F,
) -> Result<(T, Exchanged), Failure>
where
    T: Send + 'static,
    F: FnOnce(&mut Link<'_>) -> Result<T, RoleError> + Send + 'static,
{
    let me = node.config.node.name.clone();
    let peer = peer_of(row, &me).to_owned();
    let at_peer = |reason: String| Failure::at(&peer, reason);
    step(node, row, Some(handle), State::Running, "exchanging").await;
    let (out, outbound) = Outbound::new(&row.id);
    let out = Arc::new(out);
    link.outs.push(Arc::clone(&out));
    let (frames_tx, mut frames_rx) = mpsc::unbounded_channel();
    let (ctl_tx, mut ctl) = mpsc::unbounded_channel();
    let role_out = Arc::clone(&out);
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
        role(&mut link)
    });
    open_exchange(client, &row.id, &peer, outbound, frames_tx, ctl_tx).await?;
    let output = tokio::select! {
        joined = &mut role => match joined {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                // The input ended early: the reader knows why.
                if e.peer_gone {
                    return Err(match next_control(&mut ctl, &peer).await {
                        Inbound::Closed(reason) => at_peer(reason),
                        Inbound::Control(pb::job_control::Kind::Abort(a)) => {
                            Failure::aborted(&peer, &row.parties, a)
                        }
                        Inbound::Control(_) => at_peer(e.message),
                    });
                }
                return Err(Failure::at(if e.at_peer { &peer } else { &me }, e.message));
            }
            Err(e) => return Err(Failure::at(&me, format!("protocol task failed: {e}"))),
        },
        inbound = during_protocol(&mut ctl, &peer) => {
            return Err(match inbound {
                Inbound::Closed(reason) => at_peer(reason),
                Inbound::Control(pb::job_control::Kind::Abort(a)) => {
                    Failure::aborted(&peer, &row.parties, a)
                }
                Inbound::Control(_) => {
                    at_peer(format!("peer {peer} sent a control message mid-protocol"))
                }
            });
        }
    };
    Ok((output, Exchanged { out, ctl }))
}

/// Asks the peer to recheck its policy and commit its budget; Ok once it did. From here on the
/// job can no longer be cancelled.
/// Asks the peer to recheck and commit; returns what its input was, from its verdict.
pub(super) async fn release_handshake(
    node: &Node,
    handle: &Handle,
    ex: &mut Exchanged,
    peer: &str,
) -> Result<pb::PartyInput, Failure> {
    begin_release(node, handle)?;
    let at_peer = |reason: String| Failure::at(peer, reason);
    if !ex
        .out
        .control(pb::job_control::Kind::Release(pb::ReleaseRequest {}))
        .await
    {
        return Err(at_peer("the exchange closed before release".into()));
    }
    match next_control(&mut ex.ctl, peer).await {
        Inbound::Control(pb::job_control::Kind::Verdict(v)) if v.accepted => {
            Ok(v.input.unwrap_or_else(|| pb::PartyInput {
                node: peer.to_owned(),
                ..pb::PartyInput::default()
            }))
        }
        Inbound::Control(pb::job_control::Kind::Verdict(v)) => Err(at_peer(format!(
            "refused at release ({}): {}",
            v.code, v.reason
        ))),
        Inbound::Control(pb::job_control::Kind::Abort(a)) => {
            Err(Failure::aborted(peer, &[peer], a))
        }
        Inbound::Control(_) => Err(at_peer("unexpected control message".into())),
        Inbound::Closed(reason) => Err(at_peer(reason)),
    }
}
