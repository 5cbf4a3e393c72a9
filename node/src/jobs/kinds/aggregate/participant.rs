//! A contributor's side of an aggregate, at a participant: check the proposal, then over the
//! exchange the coordinator opens, read its own CSV, add its own noise share, and run its
//! secure-aggregation party. It rechecks its policy and commits its budget just before its
//! masked vector leaves (see `coordinator_agg` for the budget and dropout rules), and marks the
//! job released when the coordinator says the sum was released.

use std::sync::Arc;

use concord_mpc::SessionId;
use concord_mpc::secagg::SecAggParams;
use concord_proto::v1 as pb;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::error::NodeError;
use crate::jobs::error::JobError;
use crate::jobs::exchange::{Inbound, Outbound, SECAGG};
use crate::jobs::failure::Failure;
use crate::jobs::kinds::aggregate;
use crate::jobs::kinds::aggregate::secagg::{self, Contribution, PartyLink};
use crate::jobs::kinds::terms::Proposed;
use crate::jobs::lifecycle::ended;
use crate::jobs::lifecycle::{dataset, during_protocol, next_control, settle_release, step};
use crate::jobs::live::Handle;
use crate::jobs::table::{AggregateParams, JobRow, PeerUse, Protocol, State};
use crate::node::Node;

/// An aggregate proposal's terms: its secure-aggregation session, checked by [`check`].
pub(in crate::jobs) fn proposed(
    node: &Node,
    peer: &str,
    p: &mut pb::JobProposal,
) -> Result<Proposed, NodeError> {
    if let Some(named) = Protocol::from_pb(p.protocol)? {
        return Err(NodeError::Invalid(format!(
            "PSI protocol {} for an aggregate: it has one protocol of its own",
            named.as_str()
        )));
    }
    let a = p
        .aggregate
        .take()
        .ok_or_else(|| NodeError::Invalid("an aggregate proposal needs its session".into()))?;
    Ok(Proposed {
        aggregate: Some(check(node, peer, p, a)?),
        ..Proposed::default()
    })
}

/// Checks an aggregate proposal from `peer` and returns the session to keep with the job.
pub(in crate::jobs) fn check(
    node: &Node,
    peer: &str,
    p: &pb::JobProposal,
    a: pb::AggregateProposal,
) -> Result<AggregateParams, NodeError> {
    let me = &node.config.node.name;
    let invalid = |m: String| NodeError::Invalid(m);
    let query = aggregate::query_params(a.statistic, (a.lo, a.hi), a.bins, a.categories)
        .map_err(NodeError::from)?;
    if aggregate::needs_column(&query) != (p.columns.len() == 1) {
        return Err(invalid(format!(
            "a {} takes {} column",
            query.statistic,
            if aggregate::needs_column(&query) {
                "one"
            } else {
                "no"
            }
        )));
    }
    let n = a.contributors.len();
    let mut seen = std::collections::BTreeSet::new();
    if !a.contributors.iter().all(|c| seen.insert(c)) || !seen.contains(me) {
        return Err(invalid(format!(
            "the contributors {:?} must be distinct and name {me}",
            a.contributors
        )));
    }
    if !a.contributors.iter().all(|c| p.parties.contains(c)) || !p.parties.iter().any(|x| x == peer)
    {
        return Err(invalid(format!(
            "the parties {:?} must name {peer} and every contributor",
            p.parties
        )));
    }
    let threshold = u16::try_from(a.threshold)
        .ok()
        .filter(|&t| usize::from(t) > n / 2 && usize::from(t) <= n)
        .ok_or_else(|| invalid(format!("threshold {} for {n} contributors", a.threshold)))?;
    // Every contributor's identity key from this node's own configuration.
    secagg::identities(node, &a.contributors).map_err(|e| invalid(e.to_string()))?;
    Ok(AggregateParams {
        query,
        threshold,
        contributors: a
            .contributors
            .into_iter()
            .map(|node| PeerUse {
                node,
                dataset: String::new(),
                columns: Vec::new(),
                grant: String::new(),
            })
            .collect(),
    })
}

pub(in crate::jobs) async fn participate(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    out: &Arc<Outbound>,
    frames_rx: mpsc::Receiver<Vec<u8>>,
    ctl: &mut mpsc::UnboundedReceiver<Inbound>,
) -> Result<(), Failure> {
    let me = node.config.node.name.clone();
    let coordinator = row.coordinator.clone();
    let mine = |e: String| Failure::at(&me, e);
    let agg = row
        .spec
        .aggregate
        .clone()
        .ok_or_else(|| mine("no aggregate session".into()))?;
    let names: Vec<String> = agg.contributors.iter().map(|c| c.node.clone()).collect();
    let index = names
        .iter()
        .position(|n| *n == me)
        .ok_or_else(|| mine("not a contributor".into()))? as u16;
    let labels = aggregate::labels(&agg.query).map_err(|e| mine(e.to_string()))?;
    let identities = secagg::identities(node, &names).map_err(|e| mine(e.to_string()))?;
    let session =
        crate::hex::decode_16(&row.spec.session).ok_or_else(|| mine("bad session id".into()))?;
    let params = SecAggParams::new(
        SessionId(session),
        identities,
        agg.threshold,
        aggregate::vector_len(&agg.query, &labels),
    )
    .map_err(|e| mine(e.to_string()))?;
    let plan = aggregate::share_plan(&agg.query, row.spec.epsilon, names.len(), agg.threshold)
        .map_err(|e| mine(e.to_string()))?;
    let found = dataset(node, &row.spec.dataset)
        .await
        .map_err(|e| mine(e.to_string()))?
        .ok_or_else(|| mine(format!("no dataset {:?}", row.spec.dataset)))?;

    let rt = tokio::runtime::Handle::current();
    let (node2, row2, out2) = (Arc::clone(node), row.clone(), Arc::clone(out));
    let handle2 = Arc::clone(handle);
    let column = row.spec.columns.first().cloned();
    let mut role = tokio::task::spawn_blocking(move || {
        let phase = |phase: &str| {
            rt.block_on(step(&node2, &row2, Some(&handle2), State::Running, phase));
        };
        let mut frames_rx = frames_rx;
        let mut sent = Sha256::new();
        let mut link = PartyLink {
            send: Box::new(|f| {
                sent.update(&f);
                out2.blocking_send(SECAGG, f)
            }),
            recv: Box::new(move || frames_rx.blocking_recv()),
        };
        let contribution = Contribution {
            params,
            index,
            dataset: found,
            column,
            query: agg.query,
            plan,
        };
        secagg::contribute(&node2, &row2, &rt, contribution, &mut link, &phase)?;
        drop(link);
        Ok::<[u8; 32], JobError>(sent.finalize().into())
    });
    // The coordinator may say `Released` before this side has seen its own thread finish.
    let mut released = None;
    let digest = tokio::select! {
        biased;
        joined = &mut role => own_part(joined, ctl, row, &me).await?,
        inbound = during_protocol(ctl, &coordinator) => match inbound {
            Inbound::Control(pb::job_control::Kind::Released(r)) => {
                released = Some(r.contributors);
                own_part((&mut role).await, ctl, row, &me).await?
            }
            other => return Err(ended(other, row)),
        },
    };

    step(node, row, None, State::Running, "releasing").await;
    let contributors = match released {
        Some(c) => c,
        None => match next_control(ctl, &coordinator).await {
            Inbound::Control(pb::job_control::Kind::Released(r)) => r.contributors,
            other => return Err(ended(other, row)),
        },
    };
    let detail = format!(
        "the coordinator {coordinator} released aggregate {} of contributors {} to {}",
        row.spec
            .aggregate
            .as_ref()
            .map_or("", |a| a.query.statistic.as_str()),
        contributors.join(", "),
        row.recipient
    );
    settle_release(node, row, None, digest, detail, false).await
}

/// How this node's party thread ended: the digest of what it sent, or the failure (its own, or
/// the coordinator's, which the control channel explains).
async fn own_part(
    joined: Result<Result<[u8; 32], JobError>, tokio::task::JoinError>,
    ctl: &mut mpsc::UnboundedReceiver<Inbound>,
    row: &JobRow,
    me: &str,
) -> Result<[u8; 32], Failure> {
    let coordinator = &row.coordinator;
    match joined {
        Ok(Ok(digest)) => Ok(digest),
        Ok(Err(e @ (JobError::PeerGone(_) | JobError::Protocol(_)))) => {
            Err(match next_control(ctl, coordinator).await {
                inbound @ Inbound::Control(pb::job_control::Kind::Abort(_)) => ended(inbound, row),
                Inbound::Closed(why) if matches!(e, JobError::PeerGone(_)) => {
                    Failure::at(coordinator, why)
                }
                _ => Failure::at(coordinator, e),
            })
        }
        Ok(Err(own)) => Err(Failure::at(me, own)),
        Err(e) => Err(Failure::at(
            me,
            format!("secure aggregation task failed: {e}"),
        )),
    }
}
