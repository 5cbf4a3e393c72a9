//! The coordinator's side of an aggregate: propose the job to every other contributor, open an
//! exchange with each, run the secure-aggregation server (and, when this node contributes a
//! dataset, its own party through channels), release the noised sum for the recipient.
//!
//! # Budget and dropouts
//! Every contributor reserves its budget when it accepts the proposal, and commits it (after
//! rechecking its policy) just before its masked vector leaves it: from then on its input may
//! enter the released sum, so the budget must be spent whatever happens next, and is never
//! overspent. A contributor that fails or refuses before that point returns its reservation.
//!
//! - A refusal anywhere (at a proposal, or at a contributor's recheck), an unreadable file, or a
//!   protocol error fails the job at every party with the reason; nothing is released.
//! - A contributor whose link closes (its node died, the connection broke) is a *dropout*.
//!   Secure aggregation leaves it out of the sum if its masked vector was not complete, and the
//!   job still releases when at least `t` contributors remain, naming the contributors in the
//!   result; the noise is still at least the target, because every share was drawn so that any
//!   `t` of them give it. With fewer than `t` left, the job fails everywhere. The dropped node
//!   returns its reservation when it restarts (no job survives a restart) unless it had
//!   already committed.

use std::sync::Arc;

use concord_mpc::SessionId;
use concord_mpc::secagg::SecAggParams;
use concord_proto::v1 as pb;
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::error::NodeError;
use crate::jobs::exchange::{Inbound, Outbound, SECAGG};
use crate::jobs::failure::Failure;
use crate::jobs::kinds::aggregate;
use crate::jobs::kinds::aggregate::secagg::{self, Contribution, PartyLink, Up};
use crate::jobs::kinds::terms::{Asked, Requested};
use crate::jobs::lifecycle::{settle_release, step};
use crate::jobs::live::Handle;
use crate::jobs::session::{Terms, open_exchange, propose};
use crate::jobs::table::{AggregateParams, JobRow, PeerUse, State};
use crate::node::Node;
use crate::policy::JobKind;

/// Where the server sends a party's frames.
enum Down {
    Remote(Arc<Outbound>),
    Local(mpsc::UnboundedSender<Vec<u8>>),
}

/// Tells the server thread to stop when the job ends early (cancelled, or failed elsewhere).
struct StopOnDrop(mpsc::UnboundedSender<Up>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(Up::Stop);
    }
}

/// Checks an aggregate's request: two or more distinct contributing nodes (this one or its
/// peers, each with an identity key), a count, sum or histogram with a column where one is
/// needed, and a threshold that is a strict majority at least. Returns this node's own use
/// (empty when it only coordinates) and the session.
pub(in crate::jobs) fn submitted(
    node: &Node,
    a: pb::AggregateJob,
    asked: Asked,
) -> Result<Requested, NodeError> {
    if !asked.positive {
        return Err(NodeError::Invalid(
            "an aggregate needs --epsilon > 0".into(),
        ));
    }
    let me = &node.config.node.name;
    let invalid = |m: String| NodeError::Invalid(m);
    let query = aggregate::query_params(a.statistic, (a.lo, a.hi), a.bins, a.categories)
        .map_err(NodeError::from)?;
    if a.datasets.len() < 2 {
        return Err(invalid(
            "an aggregate needs datasets at two or more nodes (--dataset NODE:DATASET[:COLUMN])"
                .into(),
        ));
    }
    let mut own = pb::DatasetUse::default();
    let mut contributors = Vec::new();
    for d in a.datasets {
        if d.node != *me && node.config.peer(&d.node).is_none() {
            return Err(invalid(format!(
                "{:?} is neither your node {me} nor one of its peers",
                d.node
            )));
        }
        if contributors.iter().any(|c: &PeerUse| c.node == d.node) {
            return Err(invalid(format!(
                "node {} is named twice: one dataset per node",
                d.node
            )));
        }
        if d.dataset.is_empty() {
            return Err(invalid(format!("node {}: a dataset is needed", d.node)));
        }
        match (aggregate::needs_column(&query), d.columns.len()) {
            (true, 1) | (false, 0) => {}
            (true, _) => {
                return Err(invalid(format!(
                    "a {} needs one column at every node: {}:{}:COLUMN",
                    query.statistic, d.node, d.dataset
                )));
            }
            (false, _) => {
                return Err(invalid(format!(
                    "a count takes no column ({}:{})",
                    d.node, d.dataset
                )));
            }
        }
        if d.node == *me {
            own = d.clone();
        }
        contributors.push(PeerUse {
            node: d.node,
            dataset: d.dataset,
            columns: d.columns,
            grant: d.grant,
        });
    }
    let n = contributors.len();
    let threshold = match a.threshold {
        0 => SecAggParams::majority(n),
        t if (t as usize) > n / 2 && (t as usize) <= n => t as u16,
        t => {
            return Err(invalid(format!(
                "--threshold {t} for {n} contributors: it must be a strict majority ({} to {n})",
                n / 2 + 1
            )));
        }
    };
    let names: Vec<String> = contributors.iter().map(|c| c.node.clone()).collect();
    secagg::identities(node, &names).map_err(|e| invalid(e.to_string()))?;
    Ok(Requested {
        aggregate: Some(AggregateParams {
            query,
            threshold,
            contributors,
        }),
        ..Requested::new(JobKind::Aggregate, own)
    })
}

pub(in crate::jobs) async fn run(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    dataset: Option<crate::catalog::Dataset>,
    outs: &mut Vec<Arc<Outbound>>,
) -> Result<(), Failure> {
    let me = node.config.node.name.clone();
    let mine = |e: String| Failure::at(&me, e);
    let agg = row
        .spec
        .aggregate
        .clone()
        .ok_or_else(|| mine("an aggregate needs its session".into()))?;
    let names: Vec<String> = agg.contributors.iter().map(|c| c.node.clone()).collect();
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

    // Propose to every other contributor, and open its exchange once it accepts.
    step(node, row, Some(handle), State::Submitted, "proposing").await;
    let (up_tx, mut up_rx) = mpsc::unbounded_channel();
    let _stop = StopOnDrop(up_tx.clone());
    let mut downs = Vec::with_capacity(names.len());
    let mut own = None;
    for (i, c) in agg.contributors.iter().enumerate() {
        let index = i as u16;
        if c.node == me {
            let (tx, rx) = mpsc::unbounded_channel();
            downs.push(Down::Local(tx));
            own = Some((index, rx));
            continue;
        }
        let out = open(node, row, &agg, c, index, up_tx.clone()).await;
        let out = out?;
        outs.push(Arc::clone(&out));
        downs.push(Down::Remote(out));
    }
    step(node, row, Some(handle), State::Authorized, "authorized").await;
    step(node, row, Some(handle), State::Running, "advertising").await;

    // This node's own party, when it contributes.
    let rt = tokio::runtime::Handle::current();
    let own_party = match (own, dataset) {
        (Some((index, mut rx)), Some(dataset)) => {
            let (node, row, up, rt) = (Arc::clone(node), row.clone(), up_tx.clone(), rt.clone());
            let (params, plan, column) = (params.clone(), plan, row.spec.columns.first().cloned());
            let q = agg.query.clone();
            Some(tokio::task::spawn_blocking(move || {
                let frames_up = up.clone();
                let mut link = PartyLink {
                    send: Box::new(move |f| frames_up.send(Up::Frame(index, f)).is_ok()),
                    recv: Box::new(move || rx.blocking_recv()),
                };
                let contribution = Contribution {
                    params,
                    index,
                    dataset,
                    column,
                    query: q,
                    plan,
                };
                // The server reports this node's phases; its own party's go nowhere.
                let ran = secagg::contribute(&node, &row, &rt, contribution, &mut link, &|_| {});
                if let Err(reason) = &ran {
                    let _ = up.send(Up::Abort(index, reason.to_string()));
                }
                ran
            }))
        }
        (Some(_), None) => return Err(mine("no dataset of this node for the aggregate".into())),
        _ => None,
    };
    drop(up_tx);

    // The server.
    let server = {
        let (node, row, handle, names) = (
            Arc::clone(node),
            row.clone(),
            Arc::clone(handle),
            names.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut down = |p: u16, frame: Vec<u8>| match downs.get(usize::from(p)) {
                Some(Down::Remote(out)) => out.blocking_send(SECAGG, frame),
                Some(Down::Local(tx)) => tx.send(frame).is_ok(),
                None => false,
            };
            let phase = |phase: &str| {
                rt.block_on(step(&node, &row, Some(&handle), State::Running, phase));
            };
            secagg::server(params, &names, &mut up_rx, &mut down, &phase)
        })
    };
    let outcome = server
        .await
        .map_err(|e| mine(format!("secure aggregation task failed: {e}")))?;
    let outcome = outcome.map_err(|f| {
        let at = f
            .party
            .and_then(|p| names.get(usize::from(p)))
            .unwrap_or(&me);
        Failure::at(at, f.reason)
    })?;
    if let Some(party) = own_party {
        party
            .await
            .map_err(|e| mine(format!("own party task failed: {e}")))?
            .map_err(|e| mine(e.to_string()))?;
    }

    // Release: the noised sums with their intervals, for the recipient only.
    step(node, row, Some(handle), State::Running, "releasing").await;
    let contributors: Vec<String> = outcome
        .aggregate
        .contributors
        .iter()
        .filter_map(|&p| names.get(usize::from(p)).cloned())
        .collect();
    let (values, clamped) = aggregate::values(
        &agg.query,
        &labels,
        &outcome.aggregate.sum,
        &plan,
        outcome.aggregate.contributors.len(),
    );
    let result = pb::JobResult {
        job_id: row.id.clone(),
        kind: row.kind.to_pb().into(),
        parties: row.parties.clone(),
        recipient: row.recipient.clone(),
        mechanism: "discrete-laplace (distributed Pólya shares)".into(),
        epsilon: row.spec.epsilon_text(),
        delta: "0".into(),
        values,
        accuracy: if labels.len() > 1 {
            "95% interval per bin".into()
        } else {
            "95% interval".into()
        },
        key_count: 0,
        released_ms: node.clock.now_ms(),
        contributors: contributors.clone(),
        inputs: clamped.into_iter().collect(),
        privacy_unit: "person (each contributor's privacy unit, by default a distinct key)".into(),
        noise: aggregate::statements(&agg.query, &plan),
        ..pb::JobResult::default()
    };
    let digest: [u8; 32] = Sha256::digest(result.encode_to_vec()).into();
    let dropped: Vec<String> = outcome
        .dropped
        .iter()
        .filter_map(|(p, why)| Some(format!("{} ({why})", names.get(usize::from(*p))?)))
        .collect();
    let detail = format!(
        "released aggregate {} with contributors {} to {}{}",
        agg.query.statistic,
        contributors.join(", "),
        row.recipient,
        if dropped.is_empty() {
            String::new()
        } else {
            format!("; dropped out: {}", dropped.join(", "))
        }
    );
    settle_release(node, row, Some(result), digest, detail, false).await?;
    for out in std::mem::take(outs) {
        let released = pb::Released {
            contributors: contributors.clone(),
        };
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            out.control(pb::job_control::Kind::Released(released)),
        )
        .await;
    }
    Ok(())
}

/// Proposes the job to contributor `c` (party `index`); once it accepts, opens the exchange and
/// forwards its frames, and then its fate, to the server.
async fn open(
    node: &Arc<Node>,
    row: &JobRow,
    agg: &AggregateParams,
    c: &PeerUse,
    index: u16,
    up: mpsc::UnboundedSender<Up>,
) -> Result<Arc<Outbound>, Failure> {
    let at_peer = |reason: String| Failure::at(&c.node, reason);
    let q = &agg.query;
    let terms = Terms {
        join: None,
        key_types: Vec::new(),
        buckets: 0,
        aggregate: Some(pb::AggregateProposal {
            statistic: q.statistic.clone(),
            lo: q.lo,
            hi: q.hi,
            bins: q.bins,
            categories: q.categories.clone(),
            threshold: u32::from(agg.threshold),
            contributors: agg.contributors.iter().map(|c| c.node.clone()).collect(),
        }),
    };
    let (mut client, _) = propose(node, row, c, terms, &mut false).await?;
    let (out, outbound) = Outbound::new(&row.id);
    let out = Arc::new(out);
    // The participant answers the exchange once it has read a first envelope.
    if !out
        .control(pb::job_control::Kind::Start(pb::Start {}))
        .await
    {
        return Err(at_peer("the exchange closed before it started".into()));
    }
    let (frames_tx, mut frames_rx) = mpsc::unbounded_channel();
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
    open_exchange(&mut client, &row.id, &c.node, outbound, frames_tx, ctl_tx).await?;
    let peer = c.node.clone();
    tokio::spawn(async move {
        // Frames first, in order; the channel closes when the stream ends or a control
        // message arrives, which then says why.
        while let Some(frame) = frames_rx.recv().await {
            if up.send(Up::Frame(index, frame)).is_err() {
                return;
            }
        }
        let fate = match ctl_rx.recv().await {
            Some(Inbound::Control(pb::job_control::Kind::Abort(a))) => {
                Up::Abort(index, Failure::aborted(&peer, &[&peer], a).reason)
            }
            Some(Inbound::Control(_)) => Up::Abort(
                index,
                format!("peer {peer} sent an unexpected control message"),
            ),
            Some(Inbound::Closed(reason)) => Up::Gone(index, reason),
            None => Up::Gone(index, format!("peer {peer} closed the exchange")),
        };
        let _ = up.send(fate);
    });
    Ok(out)
}
