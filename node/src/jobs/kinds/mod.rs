//! What each job kind computes, one module per kind, each with both of its sides: the
//! coordinator's (it proposes and drives) and the participant's (it decides and answers).
//!
//! This module is the one place where the engine tells kinds apart: [`work::Work`] says what the
//! shared steps need to know of a kind (how it uses its key columns, whether its keys must
//! normalize alike at every party, …), [`submitted`] and [`proposed`] read a kind's terms from a
//! request or a proposal, and [`coordinate`] and [`participate`] run it once admitted. The
//! lifecycle, the gate, the exchange and the table call these and name no kind. `terms` holds
//! the shapes every kind's terms take, below the kinds.
//!
//! - `psi`: PSI cardinality and intersection, in the ECDH or the OT protocol; `psi::coordinator`
//!   is the comparing side, `psi::participant` the sender, whose shell (read the keys, answer
//!   the exchange, recheck, commit) the join's key holder shares.
//! - `join`: the join-aggregate's value holder (`join::coordinator`) and key holder
//!   (`join::participant`), and the noise plan both derive.
//! - `query`: single-node DP statistics; the coordinator alone.
//! - `aggregate`: the secure aggregate's vectors and noise shares; `aggregate::secagg` drives the
//!   secure-aggregation roles, `aggregate::coordinator` and `aggregate::participant` its sides.

pub(super) mod aggregate;
pub(super) mod join;
pub(super) mod psi;
pub(super) mod query;
pub(super) mod terms;
pub(super) mod work;

use std::sync::Arc;

use concord_proto::v1 as pb;
use tokio::sync::mpsc;

use crate::catalog::Dataset;
use crate::error::NodeError;
use crate::jobs::exchange::{Inbound, Outbound};
use crate::jobs::failure::Failure;
use crate::jobs::kinds::terms::{Asked, Proposed, Requested};
use crate::jobs::lifecycle::PeerLink;
use crate::jobs::live::Handle;
use crate::jobs::table::JobRow;
use crate::node::Node;
use crate::policy::JobKind;

/// Reads a submitted job's kind and terms, checked against this node's config and catalog.
pub(in crate::jobs) async fn submitted(
    node: &Arc<Node>,
    kind: Option<pb::job_spec::Kind>,
    asked: Asked,
) -> Result<Requested, NodeError> {
    match kind {
        Some(pb::job_spec::Kind::Psi(p)) => psi::submitted(node, p, asked).await,
        Some(pb::job_spec::Kind::Query(q)) => query::submitted(node, q, asked),
        Some(pb::job_spec::Kind::Join(j)) => join::submitted(node, j, asked),
        Some(pb::job_spec::Kind::Aggregate(a)) => aggregate::coordinator::submitted(node, a, asked),
        None => Err(NodeError::Invalid(
            "a job needs a kind (psi, join, query or aggregate)".into(),
        )),
    }
}

/// Checks the kind-specific terms of a proposal from `peer` (its protocol, its key columns, a
/// join's bounds, an aggregate's session). A kind that takes no participant is refused.
pub(in crate::jobs) async fn proposed(
    node: &Arc<Node>,
    peer: &str,
    kind: JobKind,
    p: &mut pb::JobProposal,
) -> Result<Proposed, NodeError> {
    match kind {
        JobKind::PsiCardinality | JobKind::PsiIntersection => psi::proposed(node, kind, p).await,
        JobKind::Join => join::proposed(p),
        JobKind::Aggregate => aggregate::participant::proposed(node, peer, p),
        JobKind::Query => Err(NodeError::Invalid(
            "a query runs at one node: it is never proposed".into(),
        )),
    }
}

/// Runs an admitted job at its coordinator, to its release. `found` is this node's dataset
/// (`None` only for an aggregate this node coordinates without contributing).
pub(in crate::jobs) async fn coordinate(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    found: Option<Dataset>,
    peer: &mut PeerLink,
) -> Result<(), Failure> {
    let me = &node.config.node.name;
    let own = |d: Option<Dataset>| d.ok_or_else(|| Failure::at(me, "no dataset"));
    match row.kind {
        JobKind::Aggregate => {
            aggregate::coordinator::run(node, row, handle, found, &mut peer.outs).await
        }
        JobKind::PsiCardinality | JobKind::PsiIntersection => {
            psi::coordinator::run(node, row, handle, own(found)?, peer).await
        }
        JobKind::Join => join::coordinator::run(node, row, handle, own(found)?, peer).await,
        JobKind::Query => query::coordinate(node, row, handle, own(found)?).await,
    }
}

/// Runs an accepted job at a participant over the exchange its coordinator opened.
pub(in crate::jobs) async fn participate(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    out: &Arc<Outbound>,
    frames: mpsc::Receiver<Vec<u8>>,
    ctl: &mut mpsc::UnboundedReceiver<Inbound>,
) -> Result<(), Failure> {
    match row.kind {
        JobKind::Aggregate => {
            aggregate::participant::participate(node, row, handle, out, frames, ctl).await
        }
        JobKind::PsiCardinality | JobKind::PsiIntersection => {
            psi::participant::answer(node, row, handle, out, frames, ctl, psi::participant::send)
                .await
        }
        JobKind::Join => {
            psi::participant::answer(
                node,
                row,
                handle,
                out,
                frames,
                ctl,
                join::participant::participate,
            )
            .await
        }
        JobKind::Query => Err(Failure::at(
            &node.config.node.name,
            "a query runs at one node: it has no participant",
        )),
    }
}
