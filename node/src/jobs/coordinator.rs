//! The coordinator: the node an operator submits to. It checks the request, runs its own gate,
//! proposes the job to the other party, drives the protocol as the comparing party, rechecks
//! with every party, releases the result for its recipient, and fails the job everywhere when
//! anything goes wrong.

use std::sync::Arc;

use concord_proto::v1 as pb;

use crate::catalog::Dataset;
use crate::config::Role;
use crate::error::NodeError;
use crate::jobs::exchange::Outbound;
use crate::jobs::failure::Failure;
use crate::jobs::kinds::aggregate;
use crate::jobs::kinds::psi;
use crate::jobs::kinds::query;
use crate::jobs::lifecycle::{PeerLink, admit, dataset, fail, federation_client, peer_of};
use crate::jobs::live::Handle;
use crate::jobs::table::Protocol;
use crate::jobs::table::{AggregateParams, JobRow, JoinSpec, PeerUse, QueryParams, Spec, State};
use crate::node::Node;
use crate::policy::JobKind;
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
    let invalid = |m: String| NodeError::Invalid(m);
    let own = |u: &pb::DatasetUse, what: &str| -> Result<(), NodeError> {
        if !(u.node.is_empty() || u.node == me) {
            return Err(invalid(format!(
                "{what} must be at your node {me} (it computes and holds the result), not {}",
                u.node
            )));
        }
        if u.dataset.is_empty() {
            return Err(invalid(format!("{what}: a dataset is needed")));
        }
        Ok(())
    };
    let (epsilon, exact) =
        crate::jobs::table::exact_epsilon(&spec.epsilon).map_err(NodeError::from)?;
    let epsilon_ok = epsilon.is_finite() && epsilon > 0.0 && exact > concord_dp::Quantity::ZERO;
    let mut aggregate = None;
    let (kind, own_use, peer, query, protocol, join) = match spec.kind {
        Some(pb::job_spec::Kind::Psi(p)) => {
            let kind = match pb::PsiOutput::try_from(p.output) {
                Ok(pb::PsiOutput::Cardinality) => JobKind::PsiCardinality,
                Ok(pb::PsiOutput::Intersection) => JobKind::PsiIntersection,
                _ => return Err(invalid("psi output: cardinality or intersection".into())),
            };
            let left = p.left.unwrap_or_default();
            let right = p.right.unwrap_or_default();
            own(&left, "the left dataset")?;
            if node.config.peer(&right.node).is_none() {
                return Err(invalid(format!(
                    "the right dataset's node {:?} is not a peer of {me}",
                    right.node
                )));
            }
            if left.columns.is_empty() || left.columns.len() != right.columns.len() {
                return Err(invalid(
                    "both sides need the same number (at least one) of key columns".into(),
                ));
            }
            if kind == JobKind::PsiCardinality && !epsilon_ok {
                return Err(invalid("a cardinality needs --epsilon > 0".into()));
            }
            let requested = Protocol::parse(&p.protocol).map_err(NodeError::from)?;
            let protocol = match (requested, kind) {
                (Some(Protocol::Ot), JobKind::PsiCardinality) => {
                    return Err(invalid(
                        "the OT protocol reveals which keys match, so it cannot give a \
                         cardinality alone: use --protocol ecdh"
                            .into(),
                    ));
                }
                (Some(chosen), _) => chosen,
                (None, JobKind::PsiIntersection) => {
                    let rows = dataset(node, &left.dataset).await?.map_or(0, |d| d.rows);
                    if rows >= psi::OT_FROM_ROWS {
                        Protocol::Ot
                    } else {
                        Protocol::Ecdh
                    }
                }
                (None, _) => Protocol::Ecdh,
            };
            let peer = PeerUse {
                node: right.node,
                dataset: right.dataset,
                columns: right.columns,
                grant: right.grant,
            };
            (kind, left, Some(peer), None, Some(protocol), None)
        }
        Some(pb::job_spec::Kind::Query(q)) => {
            let d = q.dataset.unwrap_or_default();
            own(&d, "the dataset")?;
            if !epsilon_ok {
                return Err(invalid("a query needs --epsilon > 0".into()));
            }
            let params = QueryParams {
                statistic: q.statistic,
                lo: q.lo,
                hi: q.hi,
                bins: q.bins,
                categories: q.categories,
                quantile: q.quantile,
                max_rows: q.max_rows.max(1),
                max_groups: q.max_groups.max(1),
            };
            (JobKind::Query, d, None, Some(params), None, None)
        }
        Some(pb::job_spec::Kind::Join(j)) => {
            let values = j.values.unwrap_or_default();
            let keys = j.keys.unwrap_or_default();
            own(
                &values,
                "the values (--values; your node decrypts the result)",
            )?;
            if node.config.peer(&keys.node).is_none() {
                return Err(invalid(format!(
                    "the keys' node {:?} is not a peer of {me}",
                    keys.node
                )));
            }
            if values.columns.is_empty() || values.columns.len() != keys.columns.len() {
                return Err(invalid(
                    "both sides need the same number (at least one) of key columns".into(),
                ));
            }
            if j.value_column.is_empty() {
                return Err(invalid(
                    "a join needs the column whose values it sums".into(),
                ));
            }
            let bound = concord_mpc::psi::join::MAX_ABS_VALUE;
            if j.lo > j.hi || j.lo.abs() > bound || j.hi.abs() > bound {
                return Err(invalid(format!(
                    "bounds [{}, {}]: lo must not exceed hi, both within ±2^40",
                    j.lo, j.hi
                )));
            }
            if j.group_by.is_empty() != j.categories.is_empty() {
                return Err(invalid(
                    "--group-by and --categories go together: the column and its public \
                     categories"
                        .into(),
                ));
            }
            let distinct: std::collections::BTreeSet<_> = j.categories.iter().collect();
            if distinct.len() != j.categories.len()
                || j.categories.len() > usize::from(concord_mpc::psi::join::MAX_CATEGORIES)
            {
                return Err(invalid(
                    "categories must be distinct, at most 256 of them".into(),
                ));
            }
            crate::jobs::kinds::join::NoisePlan::new(epsilon, (j.lo, j.hi))
                .map_err(NodeError::from)?;
            let peer = PeerUse {
                node: keys.node,
                dataset: keys.dataset,
                columns: keys.columns,
                grant: keys.grant,
            };
            let terms = JoinSpec {
                value_column: j.value_column,
                lo: j.lo,
                hi: j.hi,
                group_by: j.group_by,
                categories: j.categories,
                exclude_nulls: j.exclude_nulls,
            };
            (JobKind::Join, values, Some(peer), None, None, Some(terms))
        }
        Some(pb::job_spec::Kind::Aggregate(a)) => {
            if !epsilon_ok {
                return Err(invalid("an aggregate needs --epsilon > 0".into()));
            }
            let (own_use, params) = aggregate_spec(node, a)?;
            aggregate = Some(params);
            (JobKind::Aggregate, own_use, None, None, None, None)
        }
        None => {
            return Err(invalid(
                "a job needs a kind (psi, join, query or aggregate)".into(),
            ));
        }
    };
    let mut parties = vec![me.clone()];
    parties.extend(peer.iter().map(|p| p.node.clone()));
    if let Some(a) = &aggregate {
        parties.extend(
            a.contributors
                .iter()
                .filter(|c| c.node != me)
                .map(|c| c.node.clone()),
        );
    }
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
            epsilon: if kind == JobKind::PsiIntersection {
                0.0
            } else {
                epsilon
            },
            // As typed, in its exact form: `0.1` stays `0.1`.
            epsilon_text: if kind == JobKind::PsiIntersection {
                "0".into()
            } else {
                exact.to_string()
            },
            dataset: own_use.dataset,
            columns: own_use.columns,
            grant: own_use.grant,
            peer,
            session: crate::hex::encode(&psi::session()),
            query,
            protocol,
            join,
            aggregate,
            key_types: Vec::new(),
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

/// Checks an aggregate's request: two or more distinct contributing nodes (this one or its
/// peers, each with an identity key), a count, sum or histogram with a column where one is
/// needed, and a threshold that is a strict majority at least. Returns this node's own use
/// (empty when it only coordinates) and the session.
fn aggregate_spec(
    node: &Node,
    a: pb::AggregateJob,
) -> Result<(pb::DatasetUse, AggregateParams), NodeError> {
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
        0 => concord_mpc::secagg::SecAggParams::majority(n),
        t if (t as usize) > n / 2 && (t as usize) <= n => t as u16,
        t => {
            return Err(invalid(format!(
                "--threshold {t} for {n} contributors: it must be a strict majority ({} to {n})",
                n / 2 + 1
            )));
        }
    };
    let names: Vec<String> = contributors.iter().map(|c| c.node.clone()).collect();
    aggregate::secagg::identities(node, &names).map_err(invalid)?;
    Ok((
        own,
        AggregateParams {
            query,
            threshold,
            contributors,
        },
    ))
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
    let own = |d: Option<Dataset>| d.ok_or_else(|| Failure::at(&me, "no dataset"));
    match row.kind {
        JobKind::Aggregate => {
            aggregate::coordinator::run(node, row, handle, found, &mut p.peer.outs).await
        }
        JobKind::PsiCardinality | JobKind::PsiIntersection => {
            psi::coordinator::run(node, row, handle, own(found)?, &mut p.peer).await
        }
        JobKind::Join => {
            crate::jobs::kinds::join::run(node, row, handle, own(found)?, &mut p.peer).await
        }
        JobKind::Query => query::coordinate(node, row, handle, own(found)?).await,
    }?;
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
