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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnSpec, DatasetSpec};
    use crate::csv_input::{Column, ColumnType};
    use crate::ledger::{Cap, EVERYONE, Period};

    const NOW: i64 = 1_795_521_600_000;

    fn column(name: &str, tier: Tier) -> ColumnSpec {
        ColumnSpec {
            column: Column {
                name: name.into(),
                ty: ColumnType::Text,
                nullable: false,
            },
            tier,
        }
    }

    fn setup() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("insured.csv");
        std::fs::write(&csv, "nin,diagnosis\nA1,J45\nA2,E11\n").unwrap();
        let mut store = Store::open(&dir.path().join("node.sqlite")).unwrap();
        let spec = DatasetSpec {
            id: "insured".into(),
            path: csv,
            key_columns: vec!["nin".into()],
            columns: vec![
                column("nin", Tier::Internal),
                column("diagnosis", Tier::Restricted),
            ],
            description: String::new(),
            domain: String::new(),
        };
        let dataset = catalog::inspect(spec, "manager", NOW).unwrap();
        catalog::register(&mut store, &dataset).unwrap();
        (dir, store)
    }

    fn request(job: &str, field: &str, epsilon: f64) -> UseRequest {
        UseRequest {
            job: job.into(),
            kind: JobKind::PsiCardinality,
            grantee: "operator.health.concord".into(),
            grant: String::new(),
            dataset: "insured".into(),
            fields: vec![(field.into(), FieldUse::MatchKey)],
            peers: vec!["health".into()],
            recipient: "researcher.health.concord".into(),
            cost: PrivacyCost::cap(epsilon, 0.0, 0.0).unwrap(),
        }
    }

    #[test]
    fn refuses_restricted_and_unknown_fields_and_missing_budget_then_reserves() {
        let (_dir, mut store) = setup();
        let refused = |store: &mut Store, req: &UseRequest| {
            let r = admit(store, req, 2, NOW).unwrap_err();
            (r.code(), r.to_string())
        };
        let (code, text) = refused(&mut store, &request("j1", "diagnosis", 1.0));
        assert_eq!(code, "restricted-field");
        assert!(text.contains("insured.diagnosis is restricted"), "{text}");
        assert_eq!(
            refused(&mut store, &request("j1", "dob", 1.0)).0,
            "no-column"
        );
        let mut other = request("j1", "nin", 1.0);
        other.dataset = "visits".into();
        assert_eq!(refused(&mut store, &other).0, "no-dataset");
        assert_eq!(
            refused(&mut store, &request("j1", "nin", 1.0)).0,
            "no-budget"
        );

        let cap = Cap {
            dataset: "insured".into(),
            grantee: EVERYONE.into(),
            period: Period::Year,
            limit: PrivacyCost::cap(1.5, 0.0, 0.0).unwrap(),
        };
        ledger::set_cap(&mut store, &cap).unwrap();
        admit(&mut store, &request("j1", "nin", 1.0), 2, NOW).unwrap();
        // The reservation holds: a second job finds only 0.5 left.
        assert_eq!(
            refused(&mut store, &request("j2", "nin", 1.0)).0,
            "budget-exhausted"
        );
        recheck(&mut store, &request("j1", "nin", 1.0), &[2], NOW).unwrap();
        ledger::give_back(&mut store, "j1", NOW).unwrap();
        admit(&mut store, &request("j2", "nin", 1.0), 2, NOW).unwrap();
    }
}
