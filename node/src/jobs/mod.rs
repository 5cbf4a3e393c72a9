//! Joint jobs: the job table, their lifecycle, and the engine that runs them.
//!
//! # Lifecycle
//! `submitted` → `authorized` (every party's gate said yes and reserved its budget) →
//! `running` (the protocol runs over `Federation.Exchange`) → `released` (the result is stored
//! for its recipient and every party committed its budget), or `failed` / `cancelled` at any
//! point before release (every party returns its reservation; nothing partial is released).
//!
//! An operator submits to their own node, the **coordinator**; the other node of a PSI or join
//! job (or every other contributor of an aggregate) is a **participant** that learns of the job
//! through `Federation.Propose`, decides with its own gate, and keeps its own row for it. Each
//! node's row says how the job ended *there*, with the
//! reason and the node that refused or failed.
//!
//! Jobs do not survive a restart: at start, [`fail_interrupted`] marks every job that had not
//! ended as failed (the ledger's `recover` returns their budget).
//!
//! # Layout
//! - [`gate`]: the one place where a job asks the node's policy.
//! - `input`: streaming the registered CSV into key sets and column values.
//! - `exchange`: envelopes, the inbound demultiplexer and the outbound writer of one job.
//! - `psi`: the ECDH-PSI roles of `concord-mpc`, driven over a job's exchange.
//! - `coordinator`: submitting, authorizing, running and releasing at the coordinator;
//!   `coordinator_psi`: its side of a PSI job.
//! - `participant`: proposals and exchanges at a participant.
//! - `join`: the join-aggregate roles and their noise; the coordinator holds the values.
//! - `query`: single-node DP statistics.
//! - `aggregate`: an aggregate's vectors, noise shares and intervals (pure, tested);
//!   `secagg`: its secure-aggregation roles driven over channels; `coordinator_agg` and
//!   `participant_agg`: its two sides.

mod aggregate;
pub(crate) mod coordinator;
mod coordinator_agg;
mod coordinator_psi;
mod exchange;
pub mod gate;
mod input;
mod join;
pub(crate) mod participant;
mod participant_agg;
mod party_input;
mod psi;
mod query;
#[cfg(test)]
mod query_audit;
mod secagg;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use concord_proto::v1 as pb;
use prost::Message as _;
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::store::{Store, StoreError};

/// What a job computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    PsiCardinality,
    PsiIntersection,
    Join,
    Query,
    Aggregate,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::PsiCardinality => "psi-cardinality",
            Kind::PsiIntersection => "psi-intersection",
            Kind::Join => "join",
            Kind::Query => "query",
            Kind::Aggregate => "aggregate",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "psi-cardinality" => Some(Kind::PsiCardinality),
            "psi-intersection" => Some(Kind::PsiIntersection),
            "join" => Some(Kind::Join),
            "query" => Some(Kind::Query),
            "aggregate" => Some(Kind::Aggregate),
            _ => None,
        }
    }

    pub(crate) fn gate_kind(self) -> gate::JobKind {
        match self {
            Kind::PsiCardinality => gate::JobKind::PsiCardinality,
            Kind::PsiIntersection => gate::JobKind::PsiIntersection,
            Kind::Join => gate::JobKind::Join,
            Kind::Query => gate::JobKind::Query,
            Kind::Aggregate => gate::JobKind::Aggregate,
        }
    }
}

/// Where a job stands at one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Submitted,
    Authorized,
    Running,
    Released,
    Failed,
    Cancelled,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Submitted => "submitted",
            State::Authorized => "authorized",
            State::Running => "running",
            State::Released => "released",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "submitted" => State::Submitted,
            "authorized" => State::Authorized,
            "running" => State::Running,
            "released" => State::Released,
            "cancelled" => State::Cancelled,
            _ => State::Failed,
        }
    }

    pub(crate) fn is_final(self) -> bool {
        matches!(self, State::Released | State::Failed | State::Cancelled)
    }
}

/// The other node of a two-party job, as the coordinator knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PeerUse {
    pub(crate) node: String,
    pub(crate) dataset: String,
    pub(crate) columns: Vec<String>,
    pub(crate) grant: String,
}

/// A query's statistic and its parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct QueryParams {
    pub(crate) statistic: String,
    pub(crate) lo: i64,
    pub(crate) hi: i64,
    pub(crate) bins: u32,
    pub(crate) categories: Vec<String>,
    pub(crate) quantile: f64,
    /// A count: the most rows one person contributes (0 or absent: 1).
    #[serde(default)]
    pub(crate) max_rows: u32,
    /// A histogram: the most bins one person contributes to (0 or absent: 1).
    #[serde(default)]
    pub(crate) max_groups: u32,
}

/// The public terms of a join-aggregate. At the key holder (the participant) only the bounds
/// and the categories are known; the value column and the grouping column are the value
/// holder's.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct JoinSpec {
    pub(crate) value_column: String,
    pub(crate) lo: i64,
    pub(crate) hi: i64,
    pub(crate) group_by: String,
    pub(crate) categories: Vec<String>,
    /// Rows with an empty value are left out, instead of counting their person with 0.
    #[serde(default)]
    pub(crate) exclude_nulls: bool,
}

/// An aggregate's session, as every party keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AggregateParams {
    /// The statistic, bounds, bins or categories (`quantile` unused).
    pub(crate) query: QueryParams,
    /// The secure-aggregation threshold t.
    pub(crate) threshold: u16,
    /// Every contributor's use, in party-index order (at a participant: names only).
    pub(crate) contributors: Vec<PeerUse>,
}

/// What a job does at this node: its own dataset use, and the peer's (coordinator only).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Spec {
    /// The job's ε as a number, for the noise (whose scale is rounded up from it).
    pub(crate) epsilon: f64,
    /// The job's ε as the exact decimal it was given in, for the ledger and for people (jobs
    /// stored before exact amounts have none: their ε is read from `epsilon`).
    #[serde(default)]
    pub(crate) epsilon_text: String,
    pub(crate) dataset: String,
    pub(crate) columns: Vec<String>,
    pub(crate) grant: String,
    pub(crate) peer: Option<PeerUse>,
    /// The PSI session id, hex.
    pub(crate) session: String,
    pub(crate) query: Option<QueryParams>,
    /// The PSI protocol, `ecdh` or `ot` (jobs stored before the OT mode read as `ecdh`).
    #[serde(default)]
    pub(crate) protocol: String,
    /// A join's terms.
    #[serde(default)]
    pub(crate) join: Option<JoinSpec>,
    /// An aggregate's session (its own use is `dataset`/`columns`, empty when this node only
    /// coordinates).
    #[serde(default)]
    pub(crate) aggregate: Option<AggregateParams>,
    /// The key type of each of `columns`, as the job's terms state them (a participant's, from
    /// the proposal; a coordinator reads its own from its catalog).
    #[serde(default)]
    pub(crate) key_types: Vec<String>,
}

/// One row of the job table.
#[derive(Clone, Debug)]
pub(crate) struct JobRow {
    pub(crate) id: String,
    pub(crate) kind: Kind,
    pub(crate) coordinator_role: bool,
    pub(crate) coordinator: String,
    pub(crate) submitted_by: String,
    pub(crate) recipient: String,
    pub(crate) parties: Vec<String>,
    pub(crate) spec: Spec,
    pub(crate) state: State,
    pub(crate) phase: String,
    pub(crate) reason: String,
    pub(crate) failed_at: String,
    pub(crate) created_ms: i64,
    pub(crate) updated_ms: i64,
}

impl JobRow {
    pub(crate) fn to_pb(&self) -> pb::Job {
        pb::Job {
            id: self.id.clone(),
            kind: self.kind.as_str().into(),
            state: self.state.as_str().into(),
            phase: self.phase.clone(),
            coordinator: self.coordinator.clone(),
            parties: self.parties.clone(),
            submitted_by: self.submitted_by.clone(),
            recipient: self.recipient.clone(),
            reason: self.reason.clone(),
            failed_at: self.failed_at.clone(),
            epsilon: self.spec.epsilon_text(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            role: if self.coordinator_role {
                "coordinator".into()
            } else {
                "participant".into()
            },
        }
    }

    /// The budget this job spends at this node: pure ε for DP releases, nothing for an
    /// intersection (which is not a DP release; its reservation records the use).
    pub(crate) fn cost(&self) -> Result<concord_dp::PrivacyCost, String> {
        if self.kind == Kind::PsiIntersection {
            return Ok(concord_dp::PrivacyCost::ZERO);
        }
        if self.spec.epsilon_text.is_empty() {
            return concord_dp::Epsilon::new(self.spec.epsilon)
                .and_then(concord_dp::PrivacyCost::pure)
                .map_err(|e| format!("epsilon {}: {e}", self.spec.epsilon));
        }
        let (_, quantity) = exact_epsilon(&self.spec.epsilon_text)?;
        Ok(concord_dp::PrivacyCost {
            epsilon: quantity,
            ..concord_dp::PrivacyCost::ZERO
        })
    }
}

impl Spec {
    /// The job's ε as people read it: the decimal it was given in.
    pub(crate) fn epsilon_text(&self) -> String {
        if self.epsilon_text.is_empty() {
            self.epsilon.to_string()
        } else {
            self.epsilon_text.clone()
        }
    }
}

/// Reads an ε given as a decimal ("0.1", "1e-1") exactly: its number for the noise, and its
/// exact amount for the ledger, which never passes through `f64` (so ten jobs of 0.1 spend
/// exactly 1). Empty is 0.
pub(crate) fn exact_epsilon(text: &str) -> Result<(f64, concord_dp::Quantity), String> {
    if text.trim().is_empty() {
        return Ok((0.0, concord_dp::Quantity::ZERO));
    }
    let quantity: concord_dp::Quantity = text
        .parse()
        .map_err(|e: concord_dp::DpError| format!("epsilon {text:?}: {e}"))?;
    let value = text
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("epsilon {text:?} is not a number"))?;
    Ok((value, quantity))
}

/// A fresh job id: `job-` and 16 random hex digits.
pub(crate) fn new_id() -> String {
    let bytes: [u8; 8] = rand::random();
    format!("job-{}", crate::hex::encode(&bytes))
}

fn db(store: &Store) -> impl Fn(rusqlite::Error) -> StoreError + use<> {
    store.err_fn()
}

/// Records a new job.
pub(crate) fn insert(store: &mut Store, job: &JobRow) -> Result<(), StoreError> {
    let err = db(store);
    store
        .conn()
        .execute(
            "INSERT INTO jobs (id, kind, role, coordinator, submitted_by, recipient, parties, spec,
                               state, phase, reason, failed_at, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
            params![
                job.id,
                job.kind.as_str(),
                if job.coordinator_role {
                    "coordinator"
                } else {
                    "participant"
                },
                job.coordinator,
                job.submitted_by,
                job.recipient,
                serde_json::to_string(&job.parties).unwrap_or_default(),
                serde_json::to_string(&job.spec).unwrap_or_default(),
                job.state.as_str(),
                job.phase,
                job.reason,
                job.failed_at,
                job.created_ms,
            ],
        )
        .map_err(err)?;
    Ok(())
}

/// Moves a job that has not ended to `state` (with a phase and, for failures, a reason and the
/// node at fault). A job that already ended is left alone: returns false.
pub(crate) fn transition(
    store: &mut Store,
    id: &str,
    state: State,
    phase: &str,
    reason: &str,
    failed_at: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let err = db(store);
    let changed = store
        .conn()
        .execute(
            "UPDATE jobs SET state = ?2, phase = ?3, reason = ?4, failed_at = ?5, updated_ms = ?6
             WHERE id = ?1 AND state NOT IN ('released', 'failed', 'cancelled')",
            params![id, state.as_str(), phase, reason, failed_at, now_ms],
        )
        .map_err(err)?;
    Ok(changed == 1)
}

/// Stores the released result and marks the job released, in one statement.
pub(crate) fn release(
    store: &mut Store,
    id: &str,
    result: Option<&pb::JobResult>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let err = db(store);
    let bytes = result.map(|r| r.encode_to_vec());
    let changed = store
        .conn()
        .execute(
            "UPDATE jobs SET state = 'released', phase = 'released', result = ?2, updated_ms = ?3
             WHERE id = ?1 AND state NOT IN ('released', 'failed', 'cancelled')",
            params![id, bytes, now_ms],
        )
        .map_err(err)?;
    Ok(changed == 1)
}

const COLUMNS: &str = "id, kind, role, coordinator, submitted_by, recipient, parties, spec, state,
                       phase, reason, failed_at, created_ms, updated_ms";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    let kind: String = r.get(1)?;
    let role: String = r.get(2)?;
    let parties: String = r.get(6)?;
    let spec: String = r.get(7)?;
    let state: String = r.get(8)?;
    let spec = serde_json::from_str(&spec).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(JobRow {
        id: r.get(0)?,
        // An unreadable kind is reported as a query; the job cannot run again anyway.
        kind: Kind::parse(&kind).unwrap_or(Kind::Query),
        coordinator_role: role == "coordinator",
        coordinator: r.get(3)?,
        submitted_by: r.get(4)?,
        recipient: r.get(5)?,
        parties: serde_json::from_str(&parties).unwrap_or_default(),
        spec,
        state: State::parse(&state),
        phase: r.get(9)?,
        reason: r.get(10)?,
        failed_at: r.get(11)?,
        created_ms: r.get(12)?,
        updated_ms: r.get(13)?,
    })
}

/// One job.
pub(crate) fn get(store: &mut Store, id: &str) -> Result<Option<JobRow>, StoreError> {
    let err = db(store);
    store
        .conn()
        .query_row(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()
        .map_err(err)
}

/// The released result of a job, if any.
pub(crate) fn result(store: &mut Store, id: &str) -> Result<Option<pb::JobResult>, StoreError> {
    let err = db(store);
    let bytes: Option<Option<Vec<u8>>> = store
        .conn()
        .query_row("SELECT result FROM jobs WHERE id = ?1", [id], |r| r.get(0))
        .optional()
        .map_err(&err)?;
    Ok(bytes
        .flatten()
        .and_then(|b| pb::JobResult::decode(b.as_slice()).ok()))
}

/// The newest `limit` jobs.
pub(crate) fn list(store: &mut Store, limit: u32) -> Result<Vec<JobRow>, StoreError> {
    let err = db(store);
    let conn = store.conn();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM jobs ORDER BY created_ms DESC, id LIMIT ?1"
        ))
        .map_err(&err)?;
    let rows = stmt
        .query_map([i64::from(limit)], from_row)
        .map_err(&err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(&err)?;
    Ok(rows)
}

/// Marks every job that had not ended as failed: no job survives a restart. Returns how many.
pub fn fail_interrupted(store: &mut Store, node: &str, now_ms: i64) -> Result<u64, StoreError> {
    let err = db(store);
    let changed = store
        .conn()
        .execute(
            "UPDATE jobs SET state = 'failed', phase = 'interrupted',
                             reason = 'the node restarted while the job was running',
                             failed_at = ?1, updated_ms = ?2
             WHERE state NOT IN ('released', 'failed', 'cancelled')",
            params![node, now_ms],
        )
        .map_err(&err)?;
    // Key chunks of an intersection that never released.
    store
        .conn()
        .execute(
            "DELETE FROM job_keys WHERE job NOT IN (SELECT id FROM jobs WHERE state = 'released')",
            [],
        )
        .map_err(err)?;
    Ok(changed as u64)
}

/// Stores chunk `seq` of a job's matching keys (an encoded `KeyRows`), before its release.
pub(crate) fn put_keys(
    store: &mut Store,
    id: &str,
    seq: u64,
    rows: &[u8],
) -> Result<(), StoreError> {
    let err = db(store);
    store
        .conn()
        .execute(
            "INSERT INTO job_keys (job, seq, rows) VALUES (?1, ?2, ?3)",
            params![id, seq as i64, rows],
        )
        .map_err(err)?;
    Ok(())
}

/// Chunk `seq` of a job's matching keys, if there is one.
pub(crate) fn keys_chunk(
    store: &mut Store,
    id: &str,
    seq: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let err = db(store);
    store
        .conn()
        .query_row(
            "SELECT rows FROM job_keys WHERE job = ?1 AND seq = ?2",
            params![id, seq as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)
}

/// Deletes a job's key chunks (it ended without release).
pub(crate) fn drop_keys(store: &mut Store, id: &str) -> Result<(), StoreError> {
    let err = db(store);
    store
        .conn()
        .execute("DELETE FROM job_keys WHERE job = ?1", [id])
        .map_err(err)?;
    Ok(())
}

/// A running job's live side: its progress, which `Jobs.Watch` streams, and its cancel switch.
pub(crate) struct Handle {
    events: watch::Sender<pb::JobEvent>,
    /// This node coordinates the job, so a cancel here stops it. A participant's handle only
    /// shows progress: the job is cancelled at its coordinator.
    coordinated: bool,
    /// Who cancelled the job, once someone has.
    cancel: watch::Sender<Option<String>>,
    /// The job has begun its release (a peer may commit its budget): too late to cancel. Taken
    /// together with `cancel`, so a job is either cancelled or releasing, never both.
    releasing: Mutex<bool>,
}

/// What a cancel request did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CancelOutcome {
    /// The job stops.
    Requested,
    /// The job is not running at this node as its coordinator.
    NotHere,
    /// The job is releasing: its parties are committing their budget.
    TooLate,
}

impl Handle {
    /// Reports progress (sync: callable from protocol threads).
    pub(crate) fn report(&self, state: State, phase: &str, done: u64, total: u64, message: &str) {
        self.events.send_modify(|e| {
            e.state = state.as_str().into();
            e.phase = phase.into();
            e.done = done;
            e.total = total;
            e.message = message.into();
        });
    }

    /// Marks the start of the release, after which a cancel is refused; fails with who
    /// cancelled the job if someone already has.
    pub(crate) fn begin_release(&self) -> Result<(), String> {
        let mut releasing = self
            .releasing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(by) = self.cancel.borrow().clone() {
            return Err(by);
        }
        *releasing = true;
        Ok(())
    }

    /// Completes when the job is cancelled, with who cancelled it.
    pub(crate) async fn cancelled(&self) -> String {
        let mut rx = self.cancel.subscribe();
        loop {
            let by = rx.borrow_and_update().clone();
            if let Some(by) = by {
                return by;
            }
            if rx.changed().await.is_err() {
                // The sender is gone, which cannot happen while `self` lives.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The live handles of the jobs running at this node, by id: those it coordinates and those it
/// takes part in (whose handles show progress but cannot cancel).
#[derive(Default)]
pub(crate) struct Live {
    jobs: Mutex<HashMap<String, Arc<Handle>>>,
    proposals: Mutex<Proposals>,
}

/// At a participant: the proposals being decided, and the jobs a coordinator ended before this
/// node had decided (or even seen) their proposal, each as (coordinator, job id).
#[derive(Default)]
struct Proposals {
    deciding: HashSet<(String, String)>,
    /// The newest last, at most [`WITHDRAWN_KEPT`].
    withdrawn: VecDeque<(String, String)>,
}

/// Withdrawals remembered. A proposal that arrives only after this many later withdrawals is
/// accepted as usual, and the coordinator's silence then ends it after the idle timeout.
const WITHDRAWN_KEPT: usize = 1024;

/// A proposal being decided at this participant; dropping it ends the decision.
pub(crate) struct Deciding<'a> {
    live: &'a Live,
    key: (String, String),
}

impl Deciding<'_> {
    /// Ends the decision: true if the coordinator ended the job meanwhile (its abort came
    /// before this node had recorded the job as authorized).
    pub(crate) fn withdrawn(self) -> bool {
        let mut p = self.live.proposals();
        p.deciding.remove(&self.key);
        p.withdrawn.contains(&self.key)
    }
}

impl Drop for Deciding<'_> {
    fn drop(&mut self) {
        self.live.proposals().deciding.remove(&self.key);
    }
}

impl Live {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Handle>>> {
        // Every critical section is a single map operation: a poisoned lock holds a valid map.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn proposals(&self) -> std::sync::MutexGuard<'_, Proposals> {
        // As above: each critical section leaves both collections valid.
        self.proposals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts deciding `coordinator`'s proposal of job `id`; `None` if the coordinator has
    /// already ended that job.
    pub(crate) fn decide(&self, coordinator: &str, id: &str) -> Option<Deciding<'_>> {
        let key = (coordinator.to_owned(), id.to_owned());
        let mut p = self.proposals();
        if p.withdrawn.contains(&key) {
            return None;
        }
        p.deciding.insert(key.clone());
        Some(Deciding { live: self, key })
    }

    /// Records that `coordinator` ended job `id` before it reached its exchange here. True if
    /// its proposal is being decided right now (the decision then sees this and ends the job);
    /// false if it is yet to come (it will be refused) or already decided (read the job).
    pub(crate) fn withdraw(&self, coordinator: &str, id: &str) -> bool {
        let key = (coordinator.to_owned(), id.to_owned());
        let mut p = self.proposals();
        let deciding = p.deciding.contains(&key);
        if !p.withdrawn.contains(&key) {
            if p.withdrawn.len() == WITHDRAWN_KEPT {
                p.withdrawn.pop_front();
            }
            p.withdrawn.push_back(key);
        }
        deciding
    }

    /// The handle of a job this node coordinates.
    pub(crate) fn register(&self, id: &str) -> Arc<Handle> {
        self.insert(id, true, State::Submitted, "submitted")
    }

    /// The handle of a job this node takes part in, from the opening of its exchange.
    pub(crate) fn observe(&self, id: &str) -> Arc<Handle> {
        self.insert(id, false, State::Running, "exchanging")
    }

    fn insert(&self, id: &str, coordinated: bool, state: State, phase: &str) -> Arc<Handle> {
        let (events, _) = watch::channel(pb::JobEvent {
            job_id: id.into(),
            state: state.as_str().into(),
            phase: phase.into(),
            ..Default::default()
        });
        let (cancel, _) = watch::channel(None);
        let handle = Arc::new(Handle {
            events,
            coordinated,
            cancel,
            releasing: Mutex::new(false),
        });
        self.map().insert(id.to_owned(), Arc::clone(&handle));
        handle
    }

    pub(crate) fn subscribe(&self, id: &str) -> Option<watch::Receiver<pb::JobEvent>> {
        self.map().get(id).map(|h| h.events.subscribe())
    }

    /// Asks a live job to stop on behalf of `by`, unless it is already releasing.
    pub(crate) fn cancel(&self, id: &str, by: &str) -> CancelOutcome {
        let Some(h) = self.map().get(id).cloned().filter(|h| h.coordinated) else {
            return CancelOutcome::NotHere;
        };
        let releasing = h.releasing.lock().unwrap_or_else(PoisonError::into_inner);
        if *releasing {
            return CancelOutcome::TooLate;
        }
        h.cancel.send_replace(Some(by.to_owned()));
        CancelOutcome::Requested
    }

    pub(crate) fn remove(&self, id: &str) {
        self.map().remove(id);
    }
}

/// How a job ended without release, at the node that reports it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) cancelled: bool,
    /// The node that refused or failed (this node's own name for its own failures).
    pub(crate) at: String,
    pub(crate) reason: String,
    /// The policy refusal behind it, if any: its stable code and its bare reason.
    pub(crate) refusal: Option<(&'static str, String)>,
}

impl Failure {
    pub(crate) fn at(node: &str, reason: impl Into<String>) -> Self {
        Self {
            cancelled: false,
            at: node.to_owned(),
            reason: reason.into(),
            refusal: None,
        }
    }

    /// The abort that tells the other parties of this failure: its reason is `node: reason`,
    /// which [`Failure::aborted`] reads back.
    pub(crate) fn abort(&self) -> pb::Abort {
        pb::Abort {
            reason: format!("{}: {}", self.at, self.reason),
            cancelled: self.cancelled,
        }
    }

    /// How a peer's abort ends the job here. Its sender writes the reason as `node: reason`
    /// ([`Failure::abort`]); the job failed at that node when it is one of `parties`, else at
    /// the sender.
    pub(crate) fn aborted(sender: &str, parties: &[impl AsRef<str>], abort: pb::Abort) -> Self {
        let (at, reason) = match abort.reason.split_once(": ") {
            Some((at, reason)) if parties.iter().any(|p| p.as_ref() == at) => {
                (at, reason.to_owned())
            }
            _ => (sender, abort.reason),
        };
        Self {
            cancelled: abort.cancelled,
            ..Self::at(at, reason)
        }
    }

    /// The state the job ends in: cancelled or failed.
    pub(crate) fn state(&self) -> State {
        if self.cancelled {
            State::Cancelled
        } else {
            State::Failed
        }
    }

    /// The last progress event's message: the state, where, and why.
    pub(crate) fn message(&self) -> String {
        format!("{} at {}: {}", self.state().as_str(), self.at, self.reason)
    }

    /// The answer that tells a coordinator why this node said no: the refusal's code and
    /// reason, or `refused` and the whole reason.
    pub(crate) fn decision(&self) -> pb::ProposalDecision {
        let (code, reason) = match &self.refusal {
            Some((code, reason)) => ((*code).to_owned(), reason.clone()),
            None => ("refused".to_owned(), self.reason.clone()),
        };
        pb::ProposalDecision {
            accepted: false,
            code,
            reason,
            input: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn row(id: &str, state: State) -> JobRow {
        JobRow {
            id: id.into(),
            kind: Kind::PsiCardinality,
            coordinator_role: true,
            coordinator: "health".into(),
            submitted_by: "operator.health.concord".into(),
            recipient: "researcher.health.concord".into(),
            parties: vec!["health".into(), "civil".into()],
            spec: Spec {
                epsilon: 1.0,
                epsilon_text: "1".into(),
                dataset: "patients".into(),
                columns: vec!["nin".into()],
                grant: String::new(),
                peer: None,
                session: "00".into(),
                query: None,
                protocol: String::new(),
                join: None,
                aggregate: None,
                key_types: Vec::new(),
            },
            state,
            phase: "submitted".into(),
            reason: String::new(),
            failed_at: String::new(),
            created_ms: 1,
            updated_ms: 1,
        }
    }

    #[test]
    fn a_job_moves_forward_once_and_a_restart_fails_what_was_running() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("node.db")).unwrap();
        insert(&mut store, &row("job-a", State::Submitted)).unwrap();
        insert(&mut store, &row("job-b", State::Submitted)).unwrap();
        // Both stored matching keys before their release; only job-a releases.
        for id in ["job-a", "job-b"] {
            put_keys(&mut store, id, 0, b"first").unwrap();
            put_keys(&mut store, id, 1, b"second").unwrap();
        }
        assert!(transition(&mut store, "job-a", State::Running, "exchanging", "", "", 2).unwrap());
        let result = pb::JobResult {
            job_id: "job-a".into(),
            ..Default::default()
        };
        assert!(release(&mut store, "job-a", Some(&result), 3).unwrap());
        // A released job cannot fail afterwards.
        assert!(!transition(&mut store, "job-a", State::Failed, "x", "late", "civil", 4).unwrap());
        assert_eq!(
            get(&mut store, "job-a").unwrap().unwrap().state,
            State::Released
        );
        assert_eq!(result_of(&mut store, "job-a").job_id, "job-a");

        assert_eq!(fail_interrupted(&mut store, "health", 5).unwrap(), 1);
        let b = get(&mut store, "job-b").unwrap().unwrap();
        assert_eq!(b.state, State::Failed);
        assert_eq!(b.failed_at, "health");
        assert!(b.reason.contains("restarted"), "{}", b.reason);
        assert_eq!(list(&mut store, 10).unwrap().len(), 2);
        // The released job keeps its keys, in order; the failed one has none left.
        assert_eq!(
            keys_chunk(&mut store, "job-a", 1).unwrap().unwrap(),
            b"second"
        );
        assert_eq!(keys_chunk(&mut store, "job-a", 2).unwrap(), None);
        assert_eq!(keys_chunk(&mut store, "job-b", 0).unwrap(), None);
        put_keys(&mut store, "job-b", 0, b"again").unwrap();
        drop_keys(&mut store, "job-b").unwrap();
        assert_eq!(keys_chunk(&mut store, "job-b", 0).unwrap(), None);
    }

    #[test]
    fn a_job_is_either_cancelled_or_releasing_never_both() {
        let live = Live::default();
        assert_eq!(live.cancel("job-x", "op"), CancelOutcome::NotHere);
        let releasing = live.register("job-a");
        releasing.begin_release().unwrap();
        assert_eq!(live.cancel("job-a", "op"), CancelOutcome::TooLate);
        let cancelled = live.register("job-b");
        assert_eq!(live.cancel("job-b", "op"), CancelOutcome::Requested);
        assert_eq!(cancelled.begin_release().unwrap_err(), "op");
    }

    #[test]
    fn a_participants_handle_streams_progress_but_cannot_cancel() {
        let live = Live::default();
        let handle = live.observe("job-p");
        let mut events = live.subscribe("job-p").unwrap();
        assert_eq!(events.borrow_and_update().phase, "exchanging");
        handle.report(State::Running, "exchanging", 40, 100, "");
        let event = events.borrow_and_update().clone();
        assert_eq!(
            (event.state.as_str(), event.done, event.total),
            ("running", 40, 100)
        );
        assert_eq!(live.cancel("job-p", "op"), CancelOutcome::NotHere);
        assert!(handle.cancel.borrow().is_none());
        live.remove("job-p");
        assert!(live.subscribe("job-p").is_none());
    }

    #[test]
    fn a_job_ended_before_its_proposal_was_decided_is_never_left_authorized() {
        let live = Live::default();
        // The abort while the proposal is decided: the decision sees it.
        let deciding = live.decide("health", "job-a").unwrap();
        assert!(live.withdraw("health", "job-a"));
        assert!(deciding.withdrawn());
        // The abort before the proposal: the proposal is refused, from that coordinator only.
        assert!(!live.withdraw("health", "job-b"));
        assert!(live.decide("health", "job-b").is_none());
        assert!(!live.decide("stats", "job-b").unwrap().withdrawn());
        // The abort after the decision: the exchange reads the job (not "deciding" any more).
        assert!(!live.decide("health", "job-c").unwrap().withdrawn());
        assert!(!live.withdraw("health", "job-c"));
        // Only the newest withdrawals are kept.
        for i in 0..WITHDRAWN_KEPT {
            live.withdraw("health", &format!("job-x{i}"));
        }
        assert!(live.decide("health", "job-b").is_some());
        assert!(live.decide("health", "job-x1").is_none());
    }

    #[test]
    fn an_abort_names_the_party_it_failed_at_once() {
        let parties = ["health".to_owned(), "civil".to_owned(), "stats".to_owned()];
        let abort = |reason: &str, cancelled| pb::Abort {
            reason: reason.into(),
            cancelled,
        };
        let f = Failure::aborted("health", &parties, abort("health: cancelled by op", true));
        assert_eq!(
            (f.state(), f.message().as_str()),
            (State::Cancelled, "cancelled at health: cancelled by op")
        );
        // A third party the coordinator names keeps the blame; anything else stays the sender's.
        let f = Failure::aborted("health", &parties, abort("stats: gone: reset", false));
        assert_eq!(f.message(), "failed at stats: gone: reset");
        let f = Failure::aborted("health", &parties, abort("mallory: x", false));
        assert_eq!(f.message(), "failed at health: mallory: x");
        let f = Failure::aborted("civil", &parties, abort("no colon", false));
        assert_eq!(f.message(), "failed at civil: no colon");
    }

    fn result_of(store: &mut Store, id: &str) -> pb::JobResult {
        result(store, id).unwrap().unwrap()
    }
}
