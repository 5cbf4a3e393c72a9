//! Grants in the node's database, and the two checks every job makes at every node:
//! [`admit`] before its first message and [`recheck`] before it releases.
//!
//! # Why the checks are race-free
//! [`admit`] runs in one `BEGIN IMMEDIATE` transaction: it reads the grant, its approvals and
//! the dataset, applies [`policy::check`], counts the grant's runs and spending in the period,
//! and inserts the budget reservation (which is also the run). SQLite admits one such writer at
//! a time, so two jobs can never both take the last run or the last of a budget, and a
//! revocation or reclassification committed before the transaction starts is always seen.
//!
//! [`recheck`] reads the grant again just before release, so a revocation, an expiry or a
//! reclassification that happened while the job ran stops it: nothing is released.

use std::collections::BTreeSet;

use concord_dp::PrivacyCost;
use rusqlite::{OptionalExtension as _, TransactionBehavior, params};

use crate::catalog::{self, Dataset};
use crate::config::is_identity;
use crate::ledger::{self, LedgerError, Period};
use crate::policy::{
    self, Grant, JobKind, Limits, Refusal, Revocation, Rules, Scope, Terms, UseRequest,
};
use crate::store::{Store, StoreError};

/// Why a grant operation failed (a refusal of a job is [`GrantError::Refused`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The proposed terms are inconsistent.
    #[error("grant terms: {0}")]
    Invalid(String),
    /// No grant with this id.
    #[error("no grant {0:?} at this node")]
    NotFound(String),
    /// The approver already approved it.
    #[error("{by} has already approved grant {grant}")]
    AlreadyApproved {
        /// The grant.
        grant: String,
        /// The approver.
        by: String,
    },
    /// It was revoked; a revoked grant is final.
    #[error("grant {0} is revoked; propose a new one")]
    Revoked(String),
    /// The job was refused.
    #[error("refused ({code}): {0}", code = .0.code())]
    Refused(Refusal),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(LedgerError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Refusal> for GrantError {
    fn from(r: Refusal) -> Self {
        GrantError::Refused(r)
    }
}

impl From<LedgerError> for GrantError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NoBudget { dataset } => Refusal::NoBudget { dataset }.into(),
            LedgerError::Exhausted {
                dataset,
                grantee,
                period,
                remaining,
                cost,
            } => Refusal::BudgetExhausted {
                cap: {
                    let scope = match ledger::population_of_key(&dataset) {
                        Some(p) => format!("population {p}"),
                        None => format!("dataset {dataset}"),
                    };
                    if grantee == ledger::EVERYONE {
                        format!("{scope} (everyone)")
                    } else {
                        format!("{scope} for {grantee}")
                    }
                },
                period,
                remaining,
                cost,
            }
            .into(),
            LedgerError::Store(e) => GrantError::Store(e),
            other => GrantError::Ledger(other),
        }
    }
}

fn json(set: &BTreeSet<String>) -> String {
    serde_json::to_string(set).unwrap_or_else(|_| "[]".into())
}

fn unjson(text: &str) -> BTreeSet<String> {
    // An unreadable list reads as empty, which allows nothing.
    serde_json::from_str(text).unwrap_or_default()
}

fn new_id() -> String {
    let bytes: [u8; 6] = crate::random::bytes();
    format!("g-{}", crate::hex::encode(&bytes))
}

/// Checks proposed terms against the catalog and the tier matrix.
fn validate(conn: &rusqlite::Connection, rules: &Rules, terms: &Terms) -> Result<(), GrantError> {
    let invalid = |m: String| Err(GrantError::Invalid(m));
    if !is_identity(&terms.grantee) {
        return invalid(format!(
            "grantee {:?} is not an identity (a DNS-style name from a certificate)",
            terms.grantee
        ));
    }
    if terms.recipients.is_empty() {
        return invalid("name at least one recipient".into());
    }
    if let Some(r) = terms.recipients.iter().find(|r| !is_identity(r)) {
        return invalid(format!("recipient {r:?} is not an identity"));
    }
    if terms.valid_from_ms >= terms.valid_until_ms {
        return invalid("the validity window is empty: `from` must come before `until`".into());
    }
    if terms.purpose.trim().is_empty() {
        return invalid("state the purpose".into());
    }
    if terms.security_owner.trim().is_empty() {
        return invalid("name the security owner".into());
    }
    if terms.limits.max_runs == Some(0) {
        return invalid("max runs of 0 would allow nothing; leave it out for no limit".into());
    }
    let dataset = |id: &str| -> Result<Dataset, GrantError> {
        catalog::load(conn, Some(id))
            .map_err(|e| GrantError::Invalid(e.to_string()))?
            .pop()
            .ok_or_else(|| GrantError::Invalid(format!("no dataset {id:?} at this node")))
    };
    match &terms.scope {
        Scope::Overall { dataset: id } => {
            dataset(id)?;
        }
        Scope::Domain { domain } => {
            if domain.is_empty() {
                return invalid("a domain grant needs a domain".into());
            }
        }
        Scope::Scenario {
            dataset: id,
            kinds,
            fields,
            ..
        } => {
            let d = dataset(id)?;
            if kinds.is_empty() {
                return invalid("a scenario names at least one job kind".into());
            }
            for f in fields {
                let tier = d
                    .spec
                    .columns
                    .iter()
                    .find(|c| c.column.name == *f)
                    .map(|c| c.tier)
                    .ok_or_else(|| {
                        GrantError::Invalid(format!("dataset {id} has no field {f:?}"))
                    })?;
                // A grant can never exceed the tier matrix: a field no use of which is allowed
                // cannot be granted at all.
                if policy::FieldUse::ALL
                    .iter()
                    .all(|u| !rules.matrix.allows(tier, *u))
                {
                    return invalid(format!(
                        "field {f} is {tier}: this node's policy allows no use of it"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Records a proposal; the proposer's approval counts as the first.
pub fn propose(
    store: &mut Store,
    rules: &Rules,
    terms: Terms,
    by: &str,
    now_ms: i64,
) -> Result<Grant, GrantError> {
    let err = store.err_fn();
    let tx = store
        .conn()
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    validate(&tx, rules, &terms)?;
    let id = new_id();
    let (kinds, fields, peers) = match &terms.scope {
        Scope::Scenario {
            kinds,
            fields,
            peers,
            ..
        } => (
            json(&kinds.iter().map(|k| k.as_str().to_owned()).collect()),
            json(fields),
            json(peers),
        ),
        _ => ("[]".into(), "[]".into(), "[]".into()),
    };
    let l = &terms.limits;
    tx.execute(
        "INSERT INTO grants (id, grantee, scope, target, kinds, fields, peers, recipients,
                             valid_from_ms, valid_until_ms, purpose, security_owner,
                             min_set_size, min_group_size, max_runs, runs_period,
                             budget_period, epsilon, delta, rho, proposed_by, proposed_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?21, ?22)",
        params![
            id,
            terms.grantee,
            terms.scope.name(),
            terms.scope.target(),
            kinds,
            fields,
            peers,
            json(&terms.recipients),
            terms.valid_from_ms,
            terms.valid_until_ms,
            terms.purpose,
            terms.security_owner,
            i64::try_from(l.min_set_size).unwrap_or(i64::MAX),
            i64::try_from(l.min_group_size).unwrap_or(i64::MAX),
            l.max_runs,
            l.runs_period.as_str(),
            terms.budget_period.as_str(),
            terms.budget.epsilon.quanta().to_string(),
            terms.budget.delta.quanta().to_string(),
            terms.budget.rho.quanta().to_string(),
            by,
            now_ms,
        ],
    )
    .map_err(&err)?;
    tx.execute(
        "INSERT INTO grant_approvals (grant_id, approver, at_ms) VALUES (?1, ?2, ?3)",
        params![id, by, now_ms],
    )
    .map_err(&err)?;
    let grant = load(&tx, &id).map_err(&err)?;
    tx.commit().map_err(&err)?;
    grant.ok_or(GrantError::NotFound(id))
}

/// Adds `by`'s approval.
pub fn approve(store: &mut Store, id: &str, by: &str, now_ms: i64) -> Result<Grant, GrantError> {
    change(store, id, |tx, grant| {
        if grant.revoked.is_some() {
            return Err(GrantError::Revoked(id.to_owned()).into());
        }
        if grant.approvals.iter().any(|(who, _)| who == by) {
            return Err(GrantError::AlreadyApproved {
                grant: id.to_owned(),
                by: by.to_owned(),
            }
            .into());
        }
        tx.execute(
            "INSERT INTO grant_approvals (grant_id, approver, at_ms) VALUES (?1, ?2, ?3)",
            params![id, by, now_ms],
        )?;
        Ok(())
    })
}

/// Revokes a grant at once: jobs not yet released under it are stopped by [`recheck`].
pub fn revoke(
    store: &mut Store,
    id: &str,
    by: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Grant, GrantError> {
    change(store, id, |tx, grant| {
        if grant.revoked.is_some() {
            return Err(GrantError::Revoked(id.to_owned()).into());
        }
        tx.execute(
            "UPDATE grants SET revoked_at_ms = ?2, revoked_by = ?3, revoke_reason = ?4
             WHERE id = ?1",
            params![id, now_ms, by, reason],
        )?;
        Ok(())
    })
}

/// Loads grant `id` inside a write transaction, applies `f`, and returns the grant after it.
fn change(
    store: &mut Store,
    id: &str,
    f: impl FnOnce(&rusqlite::Transaction<'_>, &Grant) -> Result<(), ChangeError>,
) -> Result<Grant, GrantError> {
    let err = store.err_fn();
    let tx = store
        .conn()
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let grant = load(&tx, id)
        .map_err(&err)?
        .ok_or_else(|| GrantError::NotFound(id.to_owned()))?;
    f(&tx, &grant).map_err(|e| e.label(&err))?;
    let after = load(&tx, id).map_err(&err)?;
    tx.commit().map_err(&err)?;
    after.ok_or_else(|| GrantError::NotFound(id.to_owned()))
}

/// A grant error, or an SQLite error not yet labelled with its database (work inside a borrowed
/// transaction cannot reach the store to label it).
enum ChangeError {
    Grant(GrantError),
    Sqlite(rusqlite::Error),
}

impl ChangeError {
    /// The grant error, with SQLite errors labelled by `err` ([`Store::err_fn`]).
    fn label(self, err: &impl Fn(rusqlite::Error) -> StoreError) -> GrantError {
        match self {
            ChangeError::Grant(g) => g,
            ChangeError::Sqlite(e) => GrantError::Store(err(e)),
        }
    }
}

impl From<GrantError> for ChangeError {
    fn from(e: GrantError) -> Self {
        ChangeError::Grant(e)
    }
}

impl From<rusqlite::Error> for ChangeError {
    fn from(e: rusqlite::Error) -> Self {
        ChangeError::Sqlite(e)
    }
}

/// One grant.
pub fn get(store: &mut Store, id: &str) -> Result<Option<Grant>, GrantError> {
    let err = store.err_fn();
    load(store.conn(), id).map_err(|e| GrantError::Store(err(e)))
}

/// Every grant, newest first.
pub fn list(store: &mut Store) -> Result<Vec<Grant>, GrantError> {
    let err = store.err_fn();
    let conn = store.conn();
    let ids = (|| -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare("SELECT id FROM grants ORDER BY proposed_at_ms DESC, id")?;
        stmt.query_map([], |r| r.get(0))?.collect()
    })()
    .map_err(&err)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(g) = load(conn, &id).map_err(&err)? {
            out.push(g);
        }
    }
    Ok(out)
}

fn period(text: &str) -> Period {
    // CHECK constraints keep these valid; the shortest period is the safe reading otherwise.
    Period::parse(text).unwrap_or(Period::Day)
}

fn quantity(text: &str) -> concord_dp::Quantity {
    // An unreadable cap allows nothing.
    concord_dp::Quantity::from_quanta(text.parse().unwrap_or(0))
}

fn load(conn: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<Grant>> {
    let grant = conn
        .query_row(
            "SELECT grantee, scope, target, kinds, fields, peers, recipients, valid_from_ms,
                    valid_until_ms, purpose, security_owner, min_set_size, min_group_size,
                    max_runs, runs_period, budget_period, epsilon, delta, rho, proposed_by,
                    proposed_at_ms, revoked_at_ms, revoked_by, revoke_reason
             FROM grants WHERE id = ?1",
            [id],
            |r| {
                let scope: String = r.get(1)?;
                let target: String = r.get(2)?;
                let scope = match scope.as_str() {
                    "overall" => Scope::Overall { dataset: target },
                    "domain" => Scope::Domain { domain: target },
                    _ => Scope::Scenario {
                        dataset: target,
                        kinds: unjson(&r.get::<_, String>(3)?)
                            .iter()
                            .filter_map(|k| JobKind::parse(k))
                            .collect(),
                        fields: unjson(&r.get::<_, String>(4)?),
                        peers: unjson(&r.get::<_, String>(5)?),
                    },
                };
                let revoked_at: Option<i64> = r.get(21)?;
                Ok(Grant {
                    id: id.to_owned(),
                    terms: Terms {
                        grantee: r.get(0)?,
                        scope,
                        recipients: unjson(&r.get::<_, String>(6)?),
                        valid_from_ms: r.get(7)?,
                        valid_until_ms: r.get(8)?,
                        purpose: r.get(9)?,
                        security_owner: r.get(10)?,
                        limits: Limits {
                            min_set_size: r.get::<_, i64>(11)?.max(0) as u64,
                            min_group_size: r.get::<_, i64>(12)?.max(0) as u64,
                            max_runs: r.get(13)?,
                            runs_period: period(&r.get::<_, String>(14)?),
                        },
                        budget_period: period(&r.get::<_, String>(15)?),
                        budget: PrivacyCost {
                            epsilon: quantity(&r.get::<_, String>(16)?),
                            delta: quantity(&r.get::<_, String>(17)?),
                            rho: quantity(&r.get::<_, String>(18)?),
                        },
                    },
                    proposed_by: r.get(19)?,
                    proposed_at_ms: r.get(20)?,
                    approvals: Vec::new(),
                    revoked: match revoked_at {
                        Some(at_ms) => Some(Revocation {
                            at_ms,
                            by: r.get::<_, Option<String>>(22)?.unwrap_or_default(),
                            reason: r.get::<_, Option<String>>(23)?.unwrap_or_default(),
                        }),
                        None => None,
                    },
                })
            },
        )
        .optional()?;
    let Some(mut grant) = grant else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(
        "SELECT approver, at_ms FROM grant_approvals WHERE grant_id = ?1 ORDER BY at_ms, approver",
    )?;
    grant.approvals = stmt
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(grant))
}

/// The dataset a request names, or the refusal.
fn dataset_of(conn: &rusqlite::Connection, req: &UseRequest) -> Result<Dataset, ChangeError> {
    catalog::load(conn, Some(&req.dataset))?
        .pop()
        .ok_or_else(|| {
            GrantError::from(Refusal::UnknownDataset {
                dataset: req.dataset.clone(),
            })
            .into()
        })
}

/// The grants a request may run under: the one it names, or (none named) every grant held by
/// its grantee, by id.
fn candidates(conn: &rusqlite::Connection, req: &UseRequest) -> Result<Vec<Grant>, ChangeError> {
    if !req.grant.is_empty() {
        return match load(conn, &req.grant)? {
            Some(g) => Ok(vec![g]),
            None => Err(GrantError::from(Refusal::UnknownGrant {
                grant: req.grant.clone(),
            })
            .into()),
        };
    }
    let mut stmt = conn.prepare("SELECT id FROM grants WHERE grantee = ?1 ORDER BY id")?;
    let ids: Vec<String> = stmt
        .query_map([&req.grantee], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(load(conn, &id)?);
    }
    Ok(out)
}

/// Tries each candidate grant in turn; the first that allows the whole request wins. With no
/// candidate, [`Refusal::NoGrant`]; with several that all refuse, the refusal of the last one
/// that covers the dataset (the most telling), else of the last.
fn first_allowed<T>(
    req: &UseRequest,
    grants: Vec<Grant>,
    mut try_one: impl FnMut(&Grant) -> Result<T, GrantError>,
) -> Result<(Grant, T), GrantError> {
    let mut refused: Option<GrantError> = None;
    for grant in grants {
        match try_one(&grant) {
            Ok(t) => return Ok((grant, t)),
            Err(GrantError::Refused(r)) => {
                let weak = matches!(
                    r,
                    Refusal::OutOfScope {
                        what: "dataset",
                        ..
                    }
                );
                if refused.is_none() || !weak {
                    refused = Some(GrantError::Refused(r));
                }
            }
            Err(other) => return Err(other),
        }
    }
    Err(refused.unwrap_or_else(|| {
        Refusal::NoGrant {
            grantee: req.grantee.clone(),
            dataset: req.dataset.clone(),
        }
        .into()
    }))
}

/// Before a job's first message: checks `req` against its grant (or, none named, finds the
/// grantee's grant that allows it) and this node's rules, checks the local input size, and
/// reserves the cost under every cap (the grant's, the grantee's, the dataset's), all in one
/// transaction. The reservation is also the job's run, and records the grant used.
pub fn admit(
    store: &mut Store,
    rules: &Rules,
    req: &UseRequest,
    own_set_size: u64,
    now_ms: i64,
) -> Result<Grant, GrantError> {
    let err = store.err_fn();
    let db = ledger::db_err(store);
    let tx = store
        .conn()
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let found = (|| -> Result<(Dataset, Vec<Grant>), ChangeError> {
        Ok((dataset_of(&tx, req)?, candidates(&tx, req)?))
    })();
    let (dataset, grants) = found.map_err(|e| e.label(&err))?;
    let (grant, ()) = first_allowed(req, grants, |grant| {
        policy::check(grant, rules, &dataset, req, now_ms)?;
        policy::check_set_sizes(grant, [("this node", own_set_size)])?;
        let limits = &grant.terms.limits;
        if let Some(max) = limits.max_runs {
            let (_, _, runs) =
                ledger::grant_usage(&tx, &db, &grant.id, limits.runs_period.start_of(now_ms))?;
            if runs >= u64::from(max) {
                return Err(Refusal::RunsExhausted {
                    grant: grant.id.clone(),
                    max,
                    period: limits.runs_period,
                }
                .into());
            }
        }
        let budget_period = grant.terms.budget_period;
        let (reserved, spent, _) =
            ledger::grant_usage(&tx, &db, &grant.id, budget_period.start_of(now_ms))?;
        if !ledger::fits(&grant.terms.budget, &reserved, &spent, &req.cost) {
            return Err(Refusal::BudgetExhausted {
                cap: format!("grant {}", grant.id),
                period: budget_period,
                remaining: Box::new(ledger::left(&grant.terms.budget, &reserved, &spent)),
                cost: Box::new(req.cost),
            }
            .into());
        }
        ledger::reserve_in(
            &tx,
            &db,
            &req.job,
            &req.dataset,
            &req.grantee,
            Some(&grant.id),
            &req.cost,
            now_ms,
        )?;
        Ok(())
    })?;
    tx.commit().map_err(&err)?;
    Ok(grant)
}

/// Before release: the grant the job was admitted under must still allow it (not revoked, not
/// expired, scope and tiers as now classified), every party's input must meet the minimum set
/// size, and the smallest released group (noised) must meet the minimum group size. Touches no
/// budget: the caller then commits, or — for a refusal — returns the reservation unless
/// [`Refusal::spends_budget`].
pub fn recheck(
    store: &mut Store,
    rules: &Rules,
    req: &UseRequest,
    parties: &[(&str, u64)],
    smallest_group: Option<i64>,
    now_ms: i64,
) -> Result<Grant, GrantError> {
    let err = store.err_fn();
    let conn: &rusqlite::Connection = store.conn();
    let found = (|| -> Result<(Dataset, Grant), ChangeError> {
        let dataset = dataset_of(conn, req)?;
        // The grant admission recorded with the reservation (the one named, or the one found),
        // under the dataset whose budget it spent.
        let budget = ledger::budget_dataset(conn, &req.dataset)?;
        let admitted: Option<Option<String>> = conn
            .query_row(
                "SELECT grant_id FROM budget_entries WHERE job = ?1 AND dataset = ?2",
                params![req.job, budget],
                |r| r.get(0),
            )
            .optional()?;
        let id = match admitted.flatten() {
            Some(id) => id,
            None if !req.grant.is_empty() => req.grant.clone(),
            None => {
                return Err(GrantError::from(Refusal::NoGrant {
                    grantee: req.grantee.clone(),
                    dataset: req.dataset.clone(),
                })
                .into());
            }
        };
        let grant = load(conn, &id)?.ok_or_else(|| {
            ChangeError::from(GrantError::from(Refusal::UnknownGrant {
                grant: id.clone(),
            }))
        })?;
        Ok((dataset, grant))
    })();
    let (dataset, grant) = found.map_err(|e| e.label(&err))?;
    policy::check(&grant, rules, &dataset, req, now_ms)?;
    policy::check_set_sizes(&grant, parties.iter().copied())?;
    let min = grant.terms.limits.min_group_size;
    if let Some(size) = smallest_group.filter(|s| *s < i64::try_from(min).unwrap_or(i64::MAX)) {
        return Err(Refusal::GroupTooSmall { size, min }.into());
    }
    Ok(grant)
}

#[cfg(test)]
pub(crate) mod tests;
