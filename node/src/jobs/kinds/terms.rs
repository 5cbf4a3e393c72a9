//! The shapes a job's kind-specific terms take, as each kind reads them from a submitted spec
//! or a proposal, and the checks the kinds share.

use concord_proto::v1 as pb;

use crate::error::NodeError;
use crate::jobs::table::{AggregateParams, JoinSpec, PeerUse, Protocol, QueryParams};
use crate::policy::JobKind;

/// A job's terms as its coordinator reads them from the submitted spec.
pub(in crate::jobs) struct Requested {
    pub(in crate::jobs) kind: JobKind,
    /// This node's own use (empty when it only coordinates an aggregate).
    pub(in crate::jobs) own: pb::DatasetUse,
    pub(in crate::jobs) peer: Option<PeerUse>,
    pub(in crate::jobs) query: Option<QueryParams>,
    pub(in crate::jobs) protocol: Option<Protocol>,
    pub(in crate::jobs) join: Option<JoinSpec>,
    pub(in crate::jobs) aggregate: Option<AggregateParams>,
    /// Its release is noised and spends the job's ε (all but an intersection, which goes to
    /// its recipient only and spends none).
    pub(in crate::jobs) noised: bool,
}

impl Requested {
    /// Requested with only a kind and this node's use; each kind fills in its own.
    pub(in crate::jobs) fn new(kind: JobKind, own: pb::DatasetUse) -> Requested {
        Requested {
            kind,
            own,
            peer: None,
            query: None,
            protocol: None,
            join: None,
            aggregate: None,
            noised: true,
        }
    }

    /// Every node taking part, this one (`me`) first.
    pub(in crate::jobs) fn parties(&self, me: &str) -> Vec<String> {
        let mut parties = vec![me.to_owned()];
        parties.extend(self.peer.iter().map(|p| p.node.clone()));
        if let Some(a) = &self.aggregate {
            parties.extend(
                a.contributors
                    .iter()
                    .filter(|c| c.node != me)
                    .map(|c| c.node.clone()),
            );
        }
        parties
    }
}

/// The ε a submitted job asks for, as every kind's terms check it.
#[derive(Clone, Copy)]
pub(in crate::jobs) struct Asked {
    pub(in crate::jobs) epsilon: f64,
    /// ε is finite and above zero.
    pub(in crate::jobs) positive: bool,
}

/// What a participant keeps of a proposal's kind-specific terms.
#[derive(Default)]
pub(in crate::jobs) struct Proposed {
    pub(in crate::jobs) protocol: Option<Protocol>,
    pub(in crate::jobs) join: Option<JoinSpec>,
    pub(in crate::jobs) aggregate: Option<AggregateParams>,
    /// A PSI's hash buckets, the larger of the coordinator's and this node's need.
    pub(in crate::jobs) buckets: u32,
}

/// Checks that a dataset named in a request is at this node (`me`), which computes and holds
/// the result.
pub(in crate::jobs) fn own_use(me: &str, u: &pb::DatasetUse, what: &str) -> Result<(), NodeError> {
    if !(u.node.is_empty() || u.node == me) {
        return Err(NodeError::Invalid(format!(
            "{what} must be at your node {me} (it computes and holds the result), not {}",
            u.node
        )));
    }
    if u.dataset.is_empty() {
        return Err(NodeError::Invalid(format!("{what}: a dataset is needed")));
    }
    Ok(())
}

/// The other party's dataset use, as the coordinator keeps it.
pub(in crate::jobs) fn to_peer(u: pb::DatasetUse) -> PeerUse {
    PeerUse {
        node: u.node,
        dataset: u.dataset,
        columns: u.columns,
        grant: u.grant,
    }
}

/// A two-party proposal's key columns: one to sixteen.
pub(in crate::jobs) fn key_columns_fit(p: &pb::JobProposal) -> Result<(), NodeError> {
    if p.columns.is_empty() || p.columns.len() > 16 {
        return Err(NodeError::Invalid(format!(
            "a proposal needs 1 to 16 key columns, not {}",
            p.columns.len()
        )));
    }
    Ok(())
}
