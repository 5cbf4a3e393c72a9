//! The coordinator's side of a PSI job: read its keys, propose the job to the participant, run
//! the receiver over `Federation.Exchange`, recheck with the participant, release.

use std::sync::Arc;

use concord_dp::release::{self, NoiseSpec};
use concord_mpc::psi::KeySpec;
use concord_proto::v1 as pb;
use concord_proto::v1::federation_client::FederationClient;
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::coordinator::{
    PeerLink, begin_release, commit_release, during_protocol, federation_client, next_control,
    peer_of, psi_error_is_peers, recheck, step,
};
use super::exchange::{self, FrameSink, Inbound, Outbound};
use super::failure::Failure;
use super::input;
use super::live::Handle;
use super::party_input::{describe, party_input};
use super::psi::{self, Link};
use super::query;
use super::table::{JobRow, PeerUse, State};
use crate::catalog::Dataset;
use crate::node::Node;
use crate::policy::JobKind;

pub(super) async fn run(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    d: Dataset,
    link: &mut PeerLink,
) -> Result<(), Failure> {
    let me = node.config.node.name.clone();
    let peer = peer_use(row, &me)?;
    let types = input::key_types(&d, &row.spec.columns);
    let spec = input::key_spec(&types).map_err(|e| Failure::at(&me, e))?;

    // Own keys first: a broken file fails here, before the peer is asked for anything.
    handle.report(State::Submitted, "reading", 0, 0, "");
    let columns = row.spec.columns.clone();
    let dataset = Arc::new(d);
    let read = Arc::clone(&dataset);
    let (keys, own_read) =
        tokio::task::spawn_blocking(move || input::key_set(&read, &columns, spec))
            .await
            .map_err(|e| Failure::at(&me, format!("reading task failed: {e}")))?
            .map_err(|e| Failure::at(&me, e))?;
    let own_input = party_input(&me, &row.spec.dataset, &own_read, Some(&keys.report()));

    // Propose: the participant checks the key types, runs its own gate and reserves its budget.
    handle.report(State::Submitted, "proposing", 0, 0, "");
    let terms = Terms {
        key_types: types.iter().map(|t| t.name().to_owned()).collect(),
        ..Terms::default()
    };
    let mut client = propose(node, row, &peer, terms, &mut link.proposed).await?;
    step(node, row, Some(handle), State::Authorized, "authorized").await;

    // Exchange: the receiver runs on a blocking thread; the reader feeds it.
    let params =
        psi::params_of(row, spec, node.config.limits.max_keys).map_err(|e| Failure::at(&me, e))?;
    let protocol = row.spec.protocol.clone();
    let (output, mut ex) = run_role(node, row, handle, &mut client, link, move |link| {
        psi::receiver(&protocol, params, keys, link).map_err(|e| RoleError {
            at_peer: psi_error_is_peers(&e),
            peer_gone: e.peer_gone(),
            message: format!("PSI: {e}"),
        })
    })
    .await?;

    // Recheck: own gate first, then the participant's (which commits its budget if it agrees).
    step(node, row, Some(handle), State::Running, "rechecking").await;
    recheck(node, row, vec![output.peer_items]).await?;
    let peer_input = release_handshake(node, handle, &mut ex, &peer.node).await?;

    // Release: the DP-noised count, or the matching keys, for the recipient only.
    step(node, row, Some(handle), State::Running, "releasing").await;
    let epsilon = row.spec.epsilon;
    // What leaves the node: an intersection's key chunks, then the result.
    let mut digest = Sha256::new();
    let (values, key_count, mechanism, accuracy, noise) = match row.kind {
        JobKind::PsiCardinality => {
            let spec = concord_dp::Epsilon::new(epsilon)
                .map(NoiseSpec::Laplace)
                .map_err(|e| Failure::at(&me, e.to_string()))?;
            let exact = output.cardinality;
            let r = tokio::task::spawn_blocking(move || release::count_of(exact, spec))
                .await
                .map_err(|e| Failure::at(&me, e.to_string()))?
                .map_err(|e| Failure::at(&me, e.to_string()))?;
            let noise = pb::NoiseStatement {
                figures: "cardinality".into(),
                mechanism: query::mechanism_name(r.mechanism).into(),
                scale: r.scale,
                sensitivity: 1.0,
                bounds: String::new(),
                contribution: "a person is one distinct key, in the count once".into(),
                epsilon: row.spec.epsilon_text(),
            };
            (
                vec![query::scalar("cardinality", &r)],
                0,
                query::mechanism_name(r.mechanism),
                "95% interval",
                vec![noise],
            )
        }
        _ => {
            let matched = output.matched_rows.clone().unwrap_or_default();
            let stored = store_keys(node, row, handle, dataset, spec, matched, &mut digest).await?;
            let count = vec![pb::ResultValue {
                label: "matching keys".into(),
                value: output.cardinality as f64,
                lower: None,
                upper: None,
            }];
            (
                count,
                stored,
                "none",
                "exact (not a DP release)",
                Vec::new(),
            )
        }
    };
    let result = pb::JobResult {
        job_id: row.id.clone(),
        kind: row.kind.as_str().into(),
        parties: row.parties.clone(),
        recipient: row.recipient.clone(),
        mechanism: mechanism.into(),
        epsilon: row.spec.epsilon_text(),
        delta: "0".into(),
        values,
        accuracy: accuracy.into(),
        released_ms: node.clock.now_ms(),
        contributors: Vec::new(),
        key_count,
        key_header: if row.kind == JobKind::PsiIntersection {
            key_header(&row.spec.columns)
        } else {
            Vec::new()
        },
        inputs: vec![own_input.clone(), peer_input],
        nulls: String::new(),
        privacy_unit: "person (a distinct key)".into(),
        noise,
    };
    digest.update(result.encode_to_vec());
    let digest: [u8; 32] = digest.finalize().into();
    let detail = format!(
        "released {} ({}) of {} with {} to {}: {}; {} peer keys",
        row.kind.as_str(),
        if row.spec.protocol == "ot" {
            "ot"
        } else {
            "ecdh"
        },
        row.spec.dataset,
        peer.node,
        row.recipient,
        describe(&own_input),
        output.peer_items
    );
    commit_release(node, row, Some(result), digest, detail).await
}

/// The names of an intersection's key values: the normalized columns (what matched), then the
/// same columns as written in the file.
fn key_header(columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .cloned()
        .chain(columns.iter().map(|c| format!("{c} (as in file)")))
        .collect()
}

/// Most matching keys in one stored chunk, and about the most bytes of key values in one.
const KEY_CHUNK_ROWS: usize = 16_384;
const KEY_CHUNK_BYTES: usize = 1 << 20;

/// Reads the matching rows' key values from the file as it streams by, and stores them in
/// chunks for `Jobs.ResultKeys` before the release (a few chunks in memory at a time, however
/// large the intersection), reporting the keys stored so far. Adds each chunk to `digest`;
/// returns how many keys.
async fn store_keys(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Handle,
    d: Arc<Dataset>,
    spec: KeySpec,
    matched: Vec<u64>,
    digest: &mut Sha256,
) -> Result<u64, Failure> {
    let me = node.config.node.name.clone();
    let mine = |e: String| Failure::at(&me, e);
    let count = matched.len() as u64;
    let columns = row.spec.columns.clone();
    let (tx, mut rx) = mpsc::channel::<(usize, Vec<u8>)>(2);
    let reader = tokio::task::spawn_blocking(move || {
        let send = |chunk: &mut pb::KeyRows| {
            let chunk = std::mem::take(chunk);
            tx.blocking_send((chunk.rows.len(), chunk.encode_to_vec()))
                .map_err(|_| "the matching keys could not be stored".to_owned())
        };
        let (mut chunk, mut bytes) = (pb::KeyRows::default(), 0);
        input::rows_at(&d, &columns, spec, &matched, |values| {
            bytes += values.iter().map(String::len).sum::<usize>();
            chunk.rows.push(pb::KeyRow { values });
            if chunk.rows.len() == KEY_CHUNK_ROWS || bytes >= KEY_CHUNK_BYTES {
                bytes = 0;
                send(&mut chunk)?;
            }
            Ok(())
        })?;
        if chunk.rows.is_empty() {
            Ok(())
        } else {
            send(&mut chunk)
        }
    });
    let (mut seq, mut stored) = (0u64, 0u64);
    while let Some((rows, encoded)) = rx.recv().await {
        digest.update(&encoded);
        let id = row.id.clone();
        node.with_store(move |_, store| super::table::put_keys(store, &id, seq, &encoded))
            .await
            .map_err(|e| mine(e.to_string()))?
            .map_err(|e| mine(format!("storing the matching keys: {e}")))?;
        seq += 1;
        stored += rows as u64;
        handle.report(State::Running, "releasing", stored, count, "");
    }
    reader
        .await
        .map_err(|e| mine(format!("reading the matching keys: {e}")))?
        .map_err(mine)?;
    Ok(count)
}

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
}

/// Proposes the job to the peer; returns the client once the peer accepted it (and reserved its
/// budget), or the peer's refusal with its code.
pub(super) async fn propose(
    node: &Arc<Node>,
    row: &JobRow,
    peer: &PeerUse,
    terms: Terms,
    proposed: &mut bool,
) -> Result<FederationClient<Channel>, Failure> {
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
        kind: row.kind.as_str().into(),
        submitted_by: row.submitted_by.clone(),
        grant: peer.grant.clone(),
        dataset: peer.dataset.clone(),
        columns: peer.columns.clone(),
        recipient: row.recipient.clone(),
        epsilon: row.spec.epsilon_text(),
        session: session.to_vec(),
        parties: row.parties.clone(),
        protocol: row.spec.protocol.clone(),
        join: terms.join,
        aggregate: terms.aggregate,
        key_types: terms.key_types,
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
    Ok(client)
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
