//! The policy gate: the one place where a job asks its node's policy whether it may go on.
//!
//! Every participating node calls [`admit`] before it sends its first message for a job (it
//! reserves the job's budget there, atomically with the check), and [`recheck`] before it
//! releases anything; after a successful recheck the job commits its reservation
//! ([`crate::ledger::commit`]), and a job that ends without release returns it
//! ([`crate::ledger::give_back`]).
//!
//! **Interim body.** Grants and the tier × operation matrix are built separately; when they are
//! merged, `crate::policy::admit` / `crate::policy::recheck` replace the bodies of the two
//! functions here (and [`Refusal`] becomes the policy's), and no caller changes. Until then the
//! gate checks what exists: the dataset is registered, every named column exists and is not
//! `restricted`, and the ledger can reserve the cost under the budget caps (at admit; recheck
//! re-reads the catalog only).

use std::fmt;

use concord_dp::PrivacyCost;

use crate::catalog::{self, Tier};
use crate::ledger::{self, LedgerError};
use crate::store::Store;

/// A job's kind, as policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobKind {
    /// The DP-noised number of keys in common.
    PsiCardinality,
    /// The matching keys, to the recipient.
    PsiIntersection,
    /// A join-aggregate.
    Join,
    /// A secure aggregate across nodes.
    Aggregate,
    /// A single-node DP statistic.
    Query,
}

/// How a job uses a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldUse {
    /// Matched on, never revealed (cardinality).
    MatchKey,
    /// Matched on and revealed to the recipient (intersection).
    RevealKey,
    /// Enters a DP aggregate as a value.
    DpValue,
    /// Enters a DP aggregate as a group.
    DpGroup,
}

/// What a job asks of one node's policy.
#[derive(Clone, Debug)]
pub struct UseRequest {
    /// The job id.
    pub job: String,
    /// What it computes.
    pub kind: JobKind,
    /// The submitting operator's identity.
    pub grantee: String,
    /// The grant named for this node (may be empty until grants exist).
    pub grant: String,
    /// The dataset at this node.
    pub dataset: String,
    /// The fields it touches and how.
    pub fields: Vec<(String, FieldUse)>,
    /// The other nodes of the job.
    pub peers: Vec<String>,
    /// The person who receives the result.
    pub recipient: String,
    /// The budget this node spends on the release.
    pub cost: PrivacyCost,
}

/// Why a node's policy said no.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// The dataset is not registered here.
    NoDataset {
        /// The dataset.
        dataset: String,
    },
    /// A named column does not exist.
    NoColumn {
        /// The dataset.
        dataset: String,
        /// The column.
        column: String,
    },
    /// A named column is `restricted`: it never leaves the node in any form.
    Restricted {
        /// The dataset.
        dataset: String,
        /// The column.
        column: String,
    },
    /// The budget ledger refused the reservation.
    Budget(LedgerError),
    /// The node could not decide (database failure); detail in its log.
    Internal(String),
}

impl Refusal {
    /// A stable code for machines and peers.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoDataset { .. } => "no-dataset",
            Refusal::NoColumn { .. } => "no-column",
            Refusal::Restricted { .. } => "restricted-field",
            Refusal::Budget(LedgerError::NoBudget { .. }) => "no-budget",
            Refusal::Budget(LedgerError::Exhausted { .. }) => "budget-exhausted",
            Refusal::Budget(_) => "budget",
            Refusal::Internal(_) => "internal",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoDataset { dataset } => write!(f, "no dataset {dataset:?} at this node"),
            Refusal::NoColumn { dataset, column } => {
                write!(f, "dataset {dataset:?} has no column {column:?}")
            }
            Refusal::Restricted { dataset, column } => write!(
                f,
                "column {dataset}.{column} is restricted: it never leaves the node in any form"
            ),
            Refusal::Budget(e) => write!(f, "{e}"),
            Refusal::Internal(_) => write!(f, "the node could not check its policy"),
        }
    }
}

/// The static part: the dataset and the fields may be used at all.
fn fields_allowed(store: &mut Store, req: &UseRequest) -> Result<(), Refusal> {
    let datasets = catalog::list(store).map_err(|e| Refusal::Internal(e.to_string()))?;
    let dataset = datasets
        .iter()
        .find(|d| d.spec.id == req.dataset)
        .ok_or_else(|| Refusal::NoDataset {
            dataset: req.dataset.clone(),
        })?;
    for (field, _) in &req.fields {
        let column = dataset
            .spec
            .columns
            .iter()
            .find(|c| &c.column.name == field)
            .ok_or_else(|| Refusal::NoColumn {
                dataset: req.dataset.clone(),
                column: field.clone(),
            })?;
        if column.tier >= Tier::Restricted {
            return Err(Refusal::Restricted {
                dataset: req.dataset.clone(),
                column: field.clone(),
            });
        }
    }
    Ok(())
}

/// Before this node's first message for the job: may it run, and reserve its cost.
/// `own_set_size` is the number of records this node brings (unused until grants set minimums).
pub fn admit(
    store: &mut Store,
    req: &UseRequest,
    own_set_size: u64,
    now_ms: i64,
) -> Result<(), Refusal> {
    let _ = own_set_size;
    fields_allowed(store, req)?;
    ledger::reserve(
        store,
        &req.job,
        &req.dataset,
        &req.grantee,
        &req.cost,
        now_ms,
    )
    .map_err(Refusal::Budget)
}

/// Before this node releases anything: does its policy still allow it (a dataset withdrawn or
/// reclassified while the job ran refuses here). `peer_set_sizes` are the peers' set sizes the
/// protocol revealed (unused until grants set minimums).
pub fn recheck(
    store: &mut Store,
    req: &UseRequest,
    peer_set_sizes: &[u64],
    now_ms: i64,
) -> Result<(), Refusal> {
    let _ = (peer_set_sizes, now_ms);
    fields_allowed(store, req)
}
