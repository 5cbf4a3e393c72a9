//! The job table: one row per job at this node, its terms ([`Spec`]) and its state, in SQLite.

use concord_proto::v1 as pb;
use prost::Message as _;
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use crate::jobs::error::JobError;
use crate::policy::JobKind;
use crate::store::{Store, StoreError};

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
    /// The PSI protocol (`None` for a kind without one, and for PSI jobs stored before the OT
    /// mode, which ran ECDH: see [`Spec::psi_protocol`]). Stored as its text, `""` for none.
    #[serde(
        default,
        serialize_with = "protocol_to_text",
        deserialize_with = "protocol_from_text"
    )]
    pub(crate) protocol: Option<Protocol>,
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
    /// A PSI's hash buckets, as agreed with the peer (0 or 1: none; `concord_mpc::psi::bucket`).
    /// A participant stores it when it accepts; a coordinator learns it from that answer.
    #[serde(default)]
    pub(crate) buckets: u32,
}

/// One row of the job table.
#[derive(Clone, Debug)]
pub(crate) struct JobRow {
    pub(crate) id: String,
    pub(crate) kind: JobKind,
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
            kind: self.kind.to_pb().into(),
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

    /// The budget this job spends at this node: its ε, pure; `noised` is false for a release
    /// that is not a DP release (an intersection, whose reservation records the use).
    pub(crate) fn cost(&self, noised: bool) -> Result<concord_dp::PrivacyCost, JobError> {
        if !noised {
            return Ok(concord_dp::PrivacyCost::ZERO);
        }
        if self.spec.epsilon_text.is_empty() {
            return concord_dp::Epsilon::new(self.spec.epsilon)
                .and_then(concord_dp::PrivacyCost::pure)
                .map_err(|e| JobError::terms(format!("epsilon {}: {e}", self.spec.epsilon)));
        }
        let (_, quantity) = exact_epsilon(&self.spec.epsilon_text)?;
        Ok(concord_dp::PrivacyCost {
            epsilon: quantity,
            ..concord_dp::PrivacyCost::ZERO
        })
    }
}

/// The PSI protocol a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// ECDH-PSI on ristretto255: cardinality or intersection, any size.
    Ecdh,
    /// OT-extension PSI: an intersection only, faster at scale.
    Ot,
}

impl Protocol {
    /// Its name on the wire, in the job table and in the CLI.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Ecdh => "ecdh",
            Protocol::Ot => "ot",
        }
    }

    /// Reads [`Protocol::as_str`]; `""` is none. Anything else is refused with what is known.
    pub(crate) fn parse(text: &str) -> Result<Option<Self>, JobError> {
        match text {
            "" => Ok(None),
            "ecdh" => Ok(Some(Protocol::Ecdh)),
            "ot" => Ok(Some(Protocol::Ot)),
            other => Err(JobError::terms(format!(
                "protocol {other:?}: use ecdh, or ot for an intersection"
            ))),
        }
    }
}

/// `Option<Protocol>` as its text in the stored spec.
fn protocol_to_text<S: serde::Serializer>(p: &Option<Protocol>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.map_or("", Protocol::as_str))
}

/// Reads [`protocol_to_text`]; an unknown protocol fails the read.
fn protocol_from_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Protocol>, D::Error> {
    let text = String::deserialize(d)?;
    Protocol::parse(&text).map_err(serde::de::Error::custom)
}

impl Spec {
    /// The protocol a PSI job runs: ECDH unless it says OT.
    pub(crate) fn psi_protocol(&self) -> Protocol {
        self.protocol.unwrap_or(Protocol::Ecdh)
    }

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
pub(crate) fn exact_epsilon(text: &str) -> Result<(f64, concord_dp::Quantity), JobError> {
    if text.trim().is_empty() {
        return Ok((0.0, concord_dp::Quantity::ZERO));
    }
    let quantity: concord_dp::Quantity = text
        .parse()
        .map_err(|e: concord_dp::DpError| JobError::terms(format!("epsilon {text:?}: {e}")))?;
    let value = text
        .trim()
        .parse::<f64>()
        .map_err(|_| JobError::terms(format!("epsilon {text:?} is not a number")))?;
    Ok((value, quantity))
}

/// A fresh job id: `job-` and 16 random hex digits.
pub(crate) fn new_id() -> String {
    let bytes: [u8; 8] = crate::random::bytes();
    format!("job-{}", crate::hex::encode(&bytes))
}

/// A fresh session id for a job's protocol: 16 random bytes, bound into its every message.
pub(crate) fn session() -> [u8; 16] {
    crate::random::bytes()
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
        kind: JobKind::parse(&kind).unwrap_or(JobKind::Query),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::policy::JobKind;

    fn row(id: &str, state: State) -> JobRow {
        JobRow {
            id: id.into(),
            kind: JobKind::PsiCardinality,
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
                protocol: None,
                join: None,
                aggregate: None,
                key_types: Vec::new(),
                buckets: 0,
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

    fn result_of(store: &mut Store, id: &str) -> pb::JobResult {
        result(store, id).unwrap().unwrap()
    }

    #[test]
    fn a_protocol_is_stored_as_its_text_and_an_unknown_one_is_refused() {
        let mut spec = row("job-p", State::Submitted).spec;
        for p in [None, Some(Protocol::Ecdh), Some(Protocol::Ot)] {
            spec.protocol = p;
            let text = serde_json::to_string(&spec).unwrap();
            assert!(text.contains(&format!(
                "\"protocol\":\"{}\"",
                p.map_or("", Protocol::as_str)
            )));
            let back: Spec = serde_json::from_str(&text).unwrap();
            assert_eq!(back.protocol, p);
        }
        // A PSI job stored before the OT mode has none, and ran ECDH.
        spec.protocol = None;
        assert_eq!(spec.psi_protocol(), Protocol::Ecdh);
        let bad = serde_json::to_string(&spec)
            .unwrap()
            .replace("\"protocol\":\"\"", "\"protocol\":\"rr22\"");
        let err = serde_json::from_str::<Spec>(&bad).unwrap_err().to_string();
        assert!(err.contains("protocol \"rr22\""), "{err}");
        assert!(Protocol::parse("OT").is_err());
    }
}
