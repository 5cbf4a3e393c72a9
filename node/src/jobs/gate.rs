//! What a job asks of each node's policy: the request types of [`crate::policy`]. Every
//! participating node checks its own policy through [`crate::grants::admit`] before its first
//! message (reserving the job's budget in the same transaction) and [`crate::grants::recheck`]
//! before it releases, both audited by the node (`policy.admit`, `policy.release`) in
//! `Node::authorize` below; after a successful recheck the job commits its reservation
//! ([`crate::ledger::commit`]), and a job that ends without release returns it
//! ([`crate::ledger::give_back`]).

pub use crate::policy::{FieldUse, JobKind, UseRequest};

use std::sync::Arc;

use crate::audit::Outcome;
use crate::error::NodeError;
use crate::grants::{self, GrantError};
use crate::node::{Node, record};
use crate::policy::Grant;

/// When a job asks: before its first message, or before it releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Checks and reserves the budget.
    Admit {
        /// Records (or distinct keys) in this node's input.
        own_set_size: u64,
    },
    /// Checks again; the budget is then committed or returned by the job.
    Release,
}

impl Node {
    /// Checks `req` under this node's policy, audited as `policy.admit` or `policy.release`
    /// with the grant, the dataset and fields, the cost and the outcome (a refusal's code
    /// leads the detail). At release, `parties` are the peers' input sizes and
    /// `smallest_group` the smallest noised group the output would show.
    pub(crate) async fn authorize(
        self: &Arc<Self>,
        req: &UseRequest,
        phase: Phase,
        parties: Vec<(String, u64)>,
        smallest_group: Option<i64>,
    ) -> Result<Grant, NodeError> {
        let action = match phase {
            Phase::Admit { .. } => "policy.admit",
            Phase::Release => "policy.release",
        };
        let owned = req.clone();
        let result = self
            .with_store(move |node, store| {
                let now = node.clock.now_ms();
                match phase {
                    Phase::Admit { own_set_size } => {
                        grants::admit(store, &node.rules, &owned, own_set_size, now)
                    }
                    Phase::Release => {
                        let parties: Vec<(&str, u64)> =
                            parties.iter().map(|(p, n)| (p.as_str(), *n)).collect();
                        grants::recheck(store, &node.rules, &owned, &parties, smallest_group, now)
                    }
                }
            })
            .await?;
        let mut subjects = vec![req.dataset.clone()];
        subjects.extend(
            req.fields
                .iter()
                .map(|(f, u)| format!("{}.{f}:{u}", req.dataset)),
        );
        let (outcome, detail) = match &result {
            Ok(_) => (
                Outcome::Accepted,
                format!(
                    "job {} ({}) for {}, recipient {}, peers [{}]",
                    req.job,
                    req.kind,
                    req.grantee,
                    req.recipient,
                    req.peers.join(", ")
                ),
            ),
            Err(GrantError::Refused(r)) => (
                Outcome::Refused,
                format!("{}: {r} (job {})", r.code(), req.job),
            ),
            Err(e) => (Outcome::Refused, format!("job {}: {e}", req.job)),
        };
        let mut entry = record(req.grantee.clone(), action, subjects, outcome, detail);
        entry.grant = match &result {
            Ok(g) => Some(g.id.clone()),
            Err(_) => (!req.grant.is_empty()).then(|| req.grant.clone()),
        };
        entry.privacy_cost = Some(req.cost.to_string());
        self.audit(entry).await?;
        result.map_err(NodeError::from)
    }
}
