//! The privacy-budget ledger: caps set by data managers, and reservations that jobs make before
//! they run, commit when their output is released, and return when they fail before release.
//!
//! # Why it cannot be overspent
//! Every reservation runs in one `BEGIN IMMEDIATE` SQLite transaction that reads what the period
//! has already reserved and spent, checks the new cost against every cap that applies, and
//! inserts the reservation. SQLite lets one such writer in at a time, across threads *and*
//! processes, so two jobs can never both see the same remaining budget. Arithmetic is exact
//! ([`PrivacyCost`]: integer 10⁻¹⁸ quanta, costs rounded up and caps down), stored as decimal
//! text because the quanta exceed SQLite's 64-bit integers.
//!
//! # Caps
//! A cap applies to one dataset and either one grantee (an operator identity) or every grantee
//! together (the dataset-wide cap, grantee `*`), per calendar period (UTC day, month or year).
//! A reservation must fit under every cap that names its dataset and grantee, and under the
//! dataset-wide cap; a dataset with no cap at all cannot be spent from.
//!
//! # Populations
//! Datasets that describe the same people belong to one population (`dataset add
//! --population`, by default one per node). A population cap ([`population_cap_key`]) bounds what
//! all of its datasets spend together per grantee (or everyone) and period, in addition to each
//! dataset's own caps: one person in three datasets is then charged against one budget that
//! sees all three. A job reads one dataset per node, so it is charged once per population.
//!
//! # The same data under two ids
//! Budgets belong to data, not to names: a dataset registered from a file with the same SHA-256
//! as one registered earlier shares every budget of the first ([`budget_dataset`]). Its caps,
//! reservations and spending are the first one's, so registering a file again under a new id
//! cannot buy a fresh budget.
//!
//! # Crashes
//! A reservation is durable once `reserve` returns. Jobs do not survive a node restart, so
//! [`recover`], run when the node starts, returns every reservation still open: the ledger is
//! then exactly "committed releases", never more, and a crash between reserve and commit can
//! neither lose a commit nor leak budget.
//!
//! An entry counts in the period in which it was reserved, whenever it is committed.

use std::fmt;

use concord_dp::{PrivacyCost, Quantity};
use rusqlite::{OptionalExtension as _, TransactionBehavior, params};

use crate::store::{Store, StoreError};

/// The grantee name of a dataset-wide cap.
pub const EVERYONE: &str = "*";

/// A budget period, in UTC calendar terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Period {
    /// From 00:00 UTC to the next.
    Day,
    /// From the 1st of a month, 00:00 UTC.
    Month,
    /// From 1 January, 00:00 UTC.
    Year,
}

impl Period {
    /// Parses `day`, `month` or `year`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            "year" => Some(Period::Year),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// When the period containing `now_ms` began (ms since the Unix epoch).
    pub fn start_of(self, now_ms: i64) -> i64 {
        let day_ms = 86_400_000;
        let days = now_ms.div_euclid(day_ms);
        let date = time::Date::from_julian_day(i32::try_from(days + 2_440_588).unwrap_or(i32::MAX))
            .unwrap_or(time::Date::MIN);
        let first = match self {
            Period::Day => date,
            Period::Month => date.replace_day(1).unwrap_or(date),
            Period::Year => date.replace_ordinal(1).unwrap_or(date),
        };
        (i64::from(first.to_julian_day()) - 2_440_588) * day_ms
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cap on what one grantee (or everyone) may spend from one dataset per period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cap {
    /// The dataset.
    pub dataset: String,
    /// An operator identity, or [`EVERYONE`] for the dataset-wide cap.
    pub grantee: String,
    /// The period the cap renews over.
    pub period: Period,
    /// The most that may be committed plus reserved per period.
    pub limit: PrivacyCost,
}

/// Where one cap stands in the current period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The cap.
    pub cap: Cap,
    /// Start of the current period (ms).
    pub period_start_ms: i64,
    /// Held by jobs that have not released yet.
    pub reserved: PrivacyCost,
    /// Committed by released outputs.
    pub spent: PrivacyCost,
    /// What is left: limit − reserved − spent.
    pub remaining: PrivacyCost,
}

/// Why the ledger refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// No cap covers this dataset (nothing may be spent from it).
    #[error("no privacy budget is set for dataset {dataset:?}")]
    NoBudget {
        /// The dataset.
        dataset: String,
    },
    /// The cost does not fit under a cap.
    #[error(
        "privacy budget exhausted: dataset {dataset:?}, grantee {grantee}, this {period}: {remaining} left, {cost} asked"
    )]
    Exhausted {
        /// The dataset.
        dataset: String,
        /// The cap's grantee (`*` for the dataset-wide cap).
        grantee: String,
        /// The cap's period.
        period: Period,
        /// What was left.
        remaining: Box<PrivacyCost>,
        /// What the job asked for.
        cost: Box<PrivacyCost>,
    },
    /// The job already holds a reservation on this dataset.
    #[error("job {job:?} already reserved budget on dataset {dataset:?}")]
    Duplicate {
        /// The job.
        job: String,
        /// The dataset.
        dataset: String,
    },
    /// The job holds no open reservation.
    #[error("job {job:?} holds no open reservation")]
    NotReserved {
        /// The job.
        job: String,
    },
    /// A stored amount cannot be read back.
    #[error("ledger row {row}: {reason}")]
    Corrupt {
        /// The row id.
        row: i64,
        /// What is wrong.
        reason: String,
    },
    /// Exact arithmetic overflowed (a cost beyond 3.4·10²⁰).
    #[error("privacy cost arithmetic: {0}")]
    Arithmetic(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn put(q: Quantity) -> String {
    q.quanta().to_string()
}

fn get(row: i64, text: &str) -> Result<Quantity, LedgerError> {
    text.parse::<u128>()
        .map(Quantity::from_quanta)
        .map_err(|_| LedgerError::Corrupt {
            row,
            reason: format!("{text:?} is not an amount"),
        })
}

fn cost_from(row: i64, e: &str, d: &str, r: &str) -> Result<PrivacyCost, LedgerError> {
    Ok(PrivacyCost {
        epsilon: get(row, e)?,
        delta: get(row, d)?,
        rho: get(row, r)?,
    })
}

fn add(a: &PrivacyCost, b: &PrivacyCost) -> Result<PrivacyCost, LedgerError> {
    a.compose(b)
        .map_err(|e| LedgerError::Arithmetic(e.to_string()))
}

/// Labels SQLite errors with the database's path; usable while the connection is borrowed.
pub(crate) fn db_err(store: &Store) -> impl Fn(rusqlite::Error) -> LedgerError + use<> {
    let err = store.err_fn();
    move |e| LedgerError::Store(err(e))
}

/// The `budget_caps` key of a population's caps: `@` and its name, which no dataset id can be.
pub fn population_cap_key(population: &str) -> String {
    format!("@{population}")
}

/// The population a cap key names, if it is a population's.
pub fn population_of_key(key: &str) -> Option<&str> {
    key.strip_prefix('@')
}

/// The population of `dataset` (none if the catalog does not know it).
fn population_of(
    conn: &rusqlite::Connection,
    dataset: &str,
) -> Result<Option<String>, rusqlite::Error> {
    conn.query_row(
        "SELECT population FROM datasets WHERE id = ?1",
        [dataset],
        |r| r.get(0),
    )
    .optional()
}

/// The dataset whose budget `dataset` spends: the first registered dataset with the same
/// content digest (itself when it is the first, or when the catalog does not know it).
pub fn budget_dataset(
    conn: &rusqlite::Connection,
    dataset: &str,
) -> Result<String, rusqlite::Error> {
    let first: Option<String> = conn
        .query_row(
            "SELECT b.id FROM datasets a JOIN datasets b ON b.digest = a.digest
             WHERE a.id = ?1 ORDER BY b.registered_at_ms, b.rowid LIMIT 1",
            [dataset],
            |r| r.get(0),
        )
        .optional()?;
    Ok(first.unwrap_or_else(|| dataset.to_owned()))
}

/// Sets (or replaces) a cap.
pub fn set_cap(store: &mut Store, cap: &Cap) -> Result<(), LedgerError> {
    let db = db_err(store);
    let dataset = budget_dataset(store.conn(), &cap.dataset).map_err(&db)?;
    store
        .conn()
        .execute(
            "INSERT INTO budget_caps (dataset, grantee, period, epsilon, delta, rho)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (dataset, grantee) DO UPDATE
             SET period = ?3, epsilon = ?4, delta = ?5, rho = ?6",
            params![
                dataset,
                cap.grantee,
                cap.period.as_str(),
                put(cap.limit.epsilon),
                put(cap.limit.delta),
                put(cap.limit.rho),
            ],
        )
        .map_err(db)?;
    Ok(())
}

/// The caps on `dataset`: those of `grantee` and the dataset-wide one, or all of them (`None`).
fn caps_in(
    tx: &rusqlite::Transaction<'_>,
    db: &impl Fn(rusqlite::Error) -> LedgerError,
    dataset: &str,
    grantee: Option<&str>,
) -> Result<Vec<Cap>, LedgerError> {
    let mut stmt = tx
        .prepare(
            "SELECT rowid, grantee, period, epsilon, delta, rho FROM budget_caps
             WHERE dataset = ?1 AND (?2 IS NULL OR grantee = ?2 OR grantee = '*')
             ORDER BY grantee",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![dataset, grantee], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .map_err(db)?;
    let mut caps = Vec::new();
    for row in rows {
        let (id, grantee, period, e, d, r) = row.map_err(db)?;
        caps.push(Cap {
            dataset: dataset.to_owned(),
            grantee,
            period: Period::parse(&period).unwrap_or(Period::Day),
            // An unreadable cap allows nothing, which is the safe reading.
            limit: cost_from(id, &e, &d, &r).unwrap_or(PrivacyCost::ZERO),
        });
    }
    Ok(caps)
}

/// Reserved and spent under `cap` in the period containing `now_ms`.
fn used(
    tx: &rusqlite::Transaction<'_>,
    db: &impl Fn(rusqlite::Error) -> LedgerError,
    cap: &Cap,
    now_ms: i64,
) -> Result<(PrivacyCost, PrivacyCost), LedgerError> {
    let start = cap.period.start_of(now_ms);
    let (reserved, spent, _) = match population_of_key(&cap.dataset) {
        // Everything the population's datasets spend, together.
        Some(population) => tally(
            tx,
            db,
            "WHERE dataset IN (SELECT id FROM datasets WHERE population = ?1)
               AND (?2 = '*' OR grantee = ?2) AND at_ms >= ?3",
            params![population, cap.grantee, start],
        )?,
        None => tally(
            tx,
            db,
            "WHERE dataset = ?1 AND (?2 = '*' OR grantee = ?2) AND at_ms >= ?3",
            params![cap.dataset, cap.grantee, start],
        )?,
    };
    Ok((reserved, spent))
}

/// Sums the open and committed entries that `filter` (a `WHERE` clause) selects: reserved,
/// spent, and the number of distinct jobs. Returned entries count for nothing.
fn tally(
    conn: &rusqlite::Connection,
    db: &impl Fn(rusqlite::Error) -> LedgerError,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<(PrivacyCost, PrivacyCost, u64), LedgerError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT id, job, state, epsilon, delta, rho FROM budget_entries {filter}
               AND state IN ('reserved', 'committed')"
        ))
        .map_err(db)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .map_err(db)?;
    let (mut reserved, mut spent) = (PrivacyCost::ZERO, PrivacyCost::ZERO);
    let mut jobs = std::collections::BTreeSet::new();
    for row in rows {
        let (id, job, state, e, d, r) = row.map_err(db)?;
        let cost = cost_from(id, &e, &d, &r)?;
        let total = if state == "reserved" {
            &mut reserved
        } else {
            &mut spent
        };
        *total = add(total, &cost)?;
        jobs.insert(job);
    }
    Ok((reserved, spent, jobs.len() as u64))
}

/// What is left under `limit` once `used` is taken (zero if it is already over).
pub(crate) fn left(
    limit: &PrivacyCost,
    reserved: &PrivacyCost,
    spent: &PrivacyCost,
) -> PrivacyCost {
    add(reserved, spent)
        .ok()
        .and_then(|u| limit.checked_sub(&u))
        .unwrap_or(PrivacyCost::ZERO)
}

/// Reserves `cost` for `job` on `dataset` on behalf of `grantee`, or refuses with the cap that
/// would be exceeded.
pub fn reserve(
    store: &mut Store,
    job: &str,
    dataset: &str,
    grantee: &str,
    cost: &PrivacyCost,
    now_ms: i64,
) -> Result<(), LedgerError> {
    let db = db_err(store);
    let tx = store
        .conn()
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&db)?;
    reserve_in(&tx, &db, job, dataset, grantee, None, cost, now_ms)?;
    // Dropping the transaction unfinished (any early return above) rolls it back.
    tx.commit().map_err(&db)
}

/// [`reserve`] inside the caller's `BEGIN IMMEDIATE` transaction, recording the grant the job
/// runs under (the grant's own cap is checked by the caller, [`crate::grants::admit`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn reserve_in(
    tx: &rusqlite::Transaction<'_>,
    db: &impl Fn(rusqlite::Error) -> LedgerError,
    job: &str,
    dataset: &str,
    grantee: &str,
    grant: Option<&str>,
    cost: &PrivacyCost,
    now_ms: i64,
) -> Result<(), LedgerError> {
    let dataset = &budget_dataset(tx, dataset).map_err(db)?;
    let held: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM budget_entries WHERE job = ?1 AND dataset = ?2",
            params![job, dataset],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    if held.is_some() {
        return Err(LedgerError::Duplicate {
            job: job.to_owned(),
            dataset: dataset.to_owned(),
        });
    }
    let mut caps = caps_in(tx, db, dataset, Some(grantee))?;
    if caps.is_empty() {
        return Err(LedgerError::NoBudget {
            dataset: dataset.to_owned(),
        });
    }
    // The population's caps too, when it has any (a dataset's own caps are required; a
    // population's are an extra bound).
    if let Some(population) = population_of(tx, dataset).map_err(db)? {
        caps.extend(caps_in(
            tx,
            db,
            &population_cap_key(&population),
            Some(grantee),
        )?);
    }
    for cap in &caps {
        let (reserved, spent) = used(tx, db, cap, now_ms)?;
        if !fits(&cap.limit, &reserved, &spent, cost) {
            return Err(LedgerError::Exhausted {
                dataset: cap.dataset.clone(),
                grantee: cap.grantee.clone(),
                period: cap.period,
                remaining: Box::new(left(&cap.limit, &reserved, &spent)),
                cost: Box::new(*cost),
            });
        }
    }
    tx.execute(
        "INSERT INTO budget_entries (job, dataset, grantee, state, epsilon, delta, rho,
                                     at_ms, updated_ms, grant_id)
         VALUES (?1, ?2, ?3, 'reserved', ?4, ?5, ?6, ?7, ?7, ?8)",
        params![
            job,
            dataset,
            grantee,
            put(cost.epsilon),
            put(cost.delta),
            put(cost.rho),
            now_ms,
            grant
        ],
    )
    .map_err(db)?;
    Ok(())
}

/// Under one grant since `since_ms`: reserved, spent, and the number of jobs (reserved or
/// committed; returned jobs neither count as runs nor hold budget).
pub(crate) fn grant_usage(
    conn: &rusqlite::Connection,
    db: &impl Fn(rusqlite::Error) -> LedgerError,
    grant: &str,
    since_ms: i64,
) -> Result<(PrivacyCost, PrivacyCost, u64), LedgerError> {
    tally(
        conn,
        db,
        "WHERE grant_id = ?1 AND at_ms >= ?2",
        params![grant, since_ms],
    )
}

/// Whether `cost` fits under `limit` on top of `reserved` and `spent`.
pub(crate) fn fits(
    limit: &PrivacyCost,
    reserved: &PrivacyCost,
    spent: &PrivacyCost,
    cost: &PrivacyCost,
) -> bool {
    add(reserved, spent)
        .and_then(|u| add(&u, cost))
        .is_ok_and(|a| a.fits_within(limit))
}

/// Moves open reservations (of `job`, or of every job) to `to`; how many rows changed.
fn settle(store: &mut Store, job: Option<&str>, to: &str, now_ms: i64) -> Result<u64, LedgerError> {
    let db = db_err(store);
    let changed = store
        .conn()
        .execute(
            "UPDATE budget_entries SET state = ?2, updated_ms = ?3
             WHERE (?1 IS NULL OR job = ?1) AND state = 'reserved'",
            params![job, to, now_ms],
        )
        .map_err(db)?;
    Ok(changed as u64)
}

fn settle_job(store: &mut Store, job: &str, to: &str, now_ms: i64) -> Result<u64, LedgerError> {
    match settle(store, Some(job), to, now_ms)? {
        0 => Err(LedgerError::NotReserved {
            job: job.to_owned(),
        }),
        n => Ok(n),
    }
}

/// The job released its output: its reservations become spent. Returns how many datasets.
pub fn commit(store: &mut Store, job: &str, now_ms: i64) -> Result<u64, LedgerError> {
    settle_job(store, job, "committed", now_ms)
}

/// The job failed before release: its reservations are returned. Returns how many datasets.
pub fn give_back(store: &mut Store, job: &str, now_ms: i64) -> Result<u64, LedgerError> {
    settle_job(store, job, "returned", now_ms)
}

/// Returns every open reservation (call when the node starts: no job survives a restart).
pub fn recover(store: &mut Store, now_ms: i64) -> Result<u64, LedgerError> {
    settle(store, None, "returned", now_ms)
}

/// Every cap on `dataset` and where it stands now.
pub fn usage(store: &mut Store, dataset: &str, now_ms: i64) -> Result<Vec<Usage>, LedgerError> {
    let db = db_err(store);
    let tx = store.conn().transaction().map_err(&db)?;
    let dataset = budget_dataset(&tx, dataset).map_err(&db)?;
    let mut out = Vec::new();
    for cap in caps_in(&tx, &db, &dataset, None)? {
        let (reserved, spent) = used(&tx, &db, &cap, now_ms)?;
        out.push(Usage {
            period_start_ms: cap.period.start_of(now_ms),
            remaining: left(&cap.limit, &reserved, &spent),
            cap,
            reserved,
            spent,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
