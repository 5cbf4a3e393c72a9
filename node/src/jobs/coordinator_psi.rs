//! The coordinator's side of a PSI job: read its keys, propose the job to the participant, run
//! the receiver over `Federation.Exchange`, recheck with the participant, release.

use std::path::PathBuf;
use std::sync::Arc;

use concord_dp::release::{self, NoiseSpec};
use concord_proto::v1 as pb;
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::coordinator::{
    commit_release, during_protocol, federation_client, next_control, psi_error_at, recheck, step,
};
use super::exchange::{self, FrameSink, Inbound, Outbound};
use super::psi::{self, Link};
use super::{Failure, Handle, JobRow, Kind, State, input, query};
use crate::service::Node;

pub(super) async fn run(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    path: PathBuf,
    outs: &mut Vec<Arc<Outbound>>,
) -> Result<(), Failure> {
    let me = node.config.node.name.clone();
    let peer = row
        .spec
        .peer
        .clone()
        .ok_or_else(|| Failure::at(&me, "a PSI job needs a peer"))?;
    let at_peer = |reason: String| Failure::at(&peer.node, reason);

    // Own keys first: a broken file fails here, before the peer is asked for anything.
    handle.report(State::Submitted, "reading", 0, 0, "");
    let columns = row.spec.columns.clone();
    let read_path = path.clone();
    let keys = tokio::task::spawn_blocking(move || input::key_set(&read_path, &columns))
        .await
        .map_err(|e| Failure::at(&me, format!("reading task failed: {e}")))?
        .map_err(|e| Failure::at(&me, e))?;
    let own_keys = keys.len() as u64;

    // Propose: the participant runs its own gate and reserves its budget.
    handle.report(State::Submitted, "proposing", 0, 0, "");
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
        epsilon: row.spec.epsilon,
        session: session.to_vec(),
        parties: row.parties.clone(),
        protocol: row.spec.protocol.clone(),
        aggregate: None,
    };
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
    step(node, row, Some(handle), State::Authorized, "authorized").await;

    // Exchange: the receiver runs on a blocking thread; the reader feeds it.
    step(node, row, Some(handle), State::Running, "exchanging").await;
    let (out, outbound) = Outbound::new(&row.id);
    let out = Arc::new(out);
    outs.push(Arc::clone(&out));
    let (frames_tx, mut frames_rx) = mpsc::unbounded_channel();
    let (ctl_tx, mut ctl) = mpsc::unbounded_channel();
    let params = psi::params(
        session,
        row.kind == Kind::PsiIntersection,
        u8::try_from(row.spec.columns.len()).unwrap_or(u8::MAX),
    );
    let total = 2 * own_keys;
    let role_out = Arc::clone(&out);
    let protocol = row.spec.protocol.clone();
    let role_handle = Arc::clone(handle);
    let mut role = tokio::task::spawn_blocking(move || {
        let mut link = Link {
            out: &role_out,
            recv: Box::new(move || frames_rx.blocking_recv()),
            progress: Box::new(|done| {
                role_handle.report(State::Running, "exchanging", done, total, "");
            }),
            sent: Sha256::new(),
            frames: 0,
        };
        psi::receiver(&protocol, params, keys, &mut link)
    });
    let response = client
        .exchange(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .map_err(|s| {
            at_peer(format!(
                "exchange refused ({:?}): {}",
                s.code(),
                s.message()
            ))
        })?;
    tokio::spawn(exchange::read(
        row.id.clone(),
        peer.node.clone(),
        None,
        response.into_inner(),
        FrameSink::Unbounded(frames_tx),
        ctl_tx,
    ));
    let output = tokio::select! {
        joined = &mut role => match joined {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                // The input ended early: the reader knows why.
                let why = match next_control(&mut ctl, &peer.node).await {
                    Inbound::Closed(reason) => reason,
                    Inbound::Control(pb::job_control::Kind::Abort(a)) => a.reason,
                    Inbound::Control(_) => format!("PSI: {e}"),
                };
                let reason = if e.peer_gone() { why } else { format!("PSI: {e}") };
                return Err(Failure::at(psi_error_at(&e, &me, &peer.node), reason));
            }
            Err(e) => return Err(Failure::at(&me, format!("PSI task failed: {e}"))),
        },
        inbound = during_protocol(&mut ctl, &peer.node) => {
            let reason = match inbound {
                Inbound::Closed(reason) => reason,
                Inbound::Control(pb::job_control::Kind::Abort(a)) => a.reason,
                Inbound::Control(_) => format!("peer {} sent a control message mid-protocol", peer.node),
            };
            return Err(at_peer(reason));
        }
    };

    // Recheck: own gate first, then the participant's (which commits its budget if it agrees).
    step(node, row, Some(handle), State::Running, "rechecking").await;
    recheck(node, row, vec![output.peer_items]).await?;
    if !out
        .control(pb::job_control::Kind::Release(pb::ReleaseRequest {}))
        .await
    {
        return Err(at_peer("the exchange closed before release".into()));
    }
    match next_control(&mut ctl, &peer.node).await {
        Inbound::Control(pb::job_control::Kind::Verdict(v)) if v.accepted => {}
        Inbound::Control(pb::job_control::Kind::Verdict(v)) => {
            return Err(at_peer(format!(
                "refused at release ({}): {}",
                v.code, v.reason
            )));
        }
        Inbound::Control(pb::job_control::Kind::Abort(a)) => return Err(at_peer(a.reason)),
        Inbound::Control(_) => return Err(at_peer("unexpected control message".into())),
        Inbound::Closed(reason) => return Err(at_peer(reason)),
    }

    // Release: the DP-noised count, or the matching keys, for the recipient only.
    step(node, row, Some(handle), State::Running, "releasing").await;
    let epsilon = row.spec.epsilon;
    let (values, keys, mechanism, accuracy) = match row.kind {
        Kind::PsiCardinality => {
            let spec = concord_dp::Epsilon::new(epsilon)
                .map(NoiseSpec::Laplace)
                .map_err(|e| Failure::at(&me, e.to_string()))?;
            let exact = output.cardinality;
            let r = tokio::task::spawn_blocking(move || release::count_of(exact, spec))
                .await
                .map_err(|e| Failure::at(&me, e.to_string()))?
                .map_err(|e| Failure::at(&me, e.to_string()))?;
            (
                vec![query::scalar("cardinality", &r)],
                Vec::new(),
                query::mechanism_name(r.mechanism),
                "95% interval",
            )
        }
        _ => {
            let matched = output.matched_rows.clone().unwrap_or_default();
            let columns = row.spec.columns.clone();
            let rows =
                tokio::task::spawn_blocking(move || input::rows_at(&path, &columns, &matched))
                    .await
                    .map_err(|e| Failure::at(&me, e.to_string()))?
                    .map_err(|e| Failure::at(&me, e))?;
            let keys = rows
                .into_iter()
                .map(|values| pb::KeyRow { values })
                .collect();
            let count = vec![pb::ResultValue {
                label: "matching keys".into(),
                value: output.cardinality as f64,
                lower: None,
                upper: None,
            }];
            (count, keys, "none", "exact (not a DP release)")
        }
    };
    let result = pb::JobResult {
        job_id: row.id.clone(),
        kind: row.kind.as_str().into(),
        parties: row.parties.clone(),
        recipient: row.recipient.clone(),
        mechanism: mechanism.into(),
        epsilon,
        delta: 0.0,
        values,
        accuracy: accuracy.into(),
        keys,
        released_ms: node.clock.now_ms(),
        contributors: Vec::new(),
    };
    let digest: [u8; 32] = Sha256::digest(result.encode_to_vec()).into();
    let detail = format!(
        "released {} ({}) of {} with {} to {}: {} own keys, {} peer keys",
        row.kind.as_str(),
        if row.spec.protocol == "ot" {
            "ot"
        } else {
            "ecdh"
        },
        row.spec.dataset,
        peer.node,
        row.recipient,
        own_keys,
        output.peer_items
    );
    commit_release(node, row, Some(result), digest, detail).await
}
