//! The audit log: every request that reaches the node, accepted or refused, in an append-only,
//! hash-chained table whose head is signed by the node's Ed25519 key.
//!
//! Entry `n` stores `hash_n = SHA-256("concord-audit-v1" ‖ hash_{n−1} ‖ n ‖ time ‖ fields…)` (every
//! field length-prefixed; `hash_0` is all zeros), and the head row stores `(n, hash_n)` with the
//! node's signature over it, updated in the same transaction as the insert. [`verify`] recomputes
//! the chain and reports, by sequence number:
//! - an **edited** entry (its content no longer gives its hash),
//! - a **deleted** entry (a gap in the sequence, and the next entry's link broken),
//! - **reordered** entries (links that do not point at the entry before),
//! - **truncation** (the signed head names an entry that is gone), and a rewritten chain (the head
//!   signature does not cover the new hashes: only the node's key can sign).
//!
//! Limit: an attacker with write access to the database can roll the whole log back to an *older*
//! signed state (head and entries together). Detecting that needs the head kept elsewhere: an
//! auditor records the head it last verified, and later checks that the log extends it.

pub use ed25519_dalek::VerifyingKey;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _};
use rand::CryptoRng;
use rusqlite::{OptionalExtension as _, params};
use sha2::{Digest as _, Sha256};

use crate::clock::Clock;
use crate::store::{Store, StoreError};

const GENESIS: [u8; 32] = [0u8; 32];

/// The node's signing key. Redacted in `Debug`; zeroized on drop (by ed25519-dalek).
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// A fresh key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// A key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The public half, which auditors use to verify the log.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("public", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

/// Reads a node's public audit key from its `audit.pub` text (64 hex digits).
pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&crate::hex::decode_32(text)?).ok()
}

/// Whether the node did what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Accepted (and, for a job, run).
    Accepted,
    /// Refused; the entry's detail says why.
    Refused,
}

impl Outcome {
    /// `accepted` or `refused`, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Refused => "refused",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Outcome::Accepted),
            "refused" => Some(Outcome::Refused),
            _ => None,
        }
    }
}

/// What one audit entry says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Who asked: a certificate identity (person or peer node).
    pub actor: String,
    /// What was asked, e.g. `dataset.add`, `psi.intersection`.
    pub action: String,
    /// The grant it ran under, if any.
    pub grant: Option<String>,
    /// Datasets and fields touched, e.g. `patients`, `patients.nin`.
    pub subjects: Vec<String>,
    /// The privacy cost charged, as the ledger prints it.
    pub privacy_cost: Option<String>,
    /// SHA-256 of what left the node.
    pub output_digest: Option<[u8; 32]>,
    /// Accepted or refused.
    pub outcome: Outcome,
    /// The reason of a refusal, or other detail.
    pub detail: String,
}

/// A stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When it was appended (ms since the Unix epoch, UTC).
    pub at_ms: i64,
    /// Its content.
    pub record: Record,
    /// Its chain hash.
    pub hash: [u8; 32],
}

/// A problem [`verify`] found.
/// A stored audit field that cannot be read back into a [`Record`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnreadableField {
    /// The subjects are not a JSON list of strings (the parser's reason).
    #[error("subjects are not a JSON list of strings: {0}")]
    Subjects(String),
    /// An outcome this build does not know.
    #[error("unknown outcome {0:?}")]
    Outcome(String),
    /// An output digest of the wrong length.
    #[error("output digest has {0} bytes, not 32")]
    DigestLength(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The entry's content does not give its stored hash: it was edited.
    Edited {
        /// The entry.
        seq: u64,
    },
    /// Sequence numbers jump: entries are missing.
    Missing {
        /// The number expected next.
        expected: u64,
        /// The number found.
        found: u64,
    },
    /// The entry does not link to the one stored before it (deleted or reordered entries).
    BrokenLink {
        /// The entry.
        seq: u64,
    },
    /// A stored field cannot be read back (for example an unknown outcome).
    Unreadable {
        /// The entry.
        seq: u64,
        /// What is wrong.
        reason: UnreadableField,
    },
    /// The signed head does not match the last entry: entries after it were removed, or the
    /// chain was rewritten.
    HeadMismatch {
        /// The sequence number the signed head names.
        head_seq: u64,
        /// The last entry present.
        last_seq: u64,
    },
    /// The head's signature does not verify under the node's key.
    BadSignature,
    /// Entries exist but no signed head does.
    MissingHead,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Edited { seq } => write!(f, "entry {seq} was edited"),
            Problem::Missing { expected, found } => {
                write!(f, "entries {expected}..{found} are missing (deleted)")
            }
            Problem::BrokenLink { seq } => write!(
                f,
                "entry {seq} does not follow the entry before it (deleted or reordered entries)"
            ),
            Problem::Unreadable { seq, reason } => write!(f, "entry {seq} is unreadable: {reason}"),
            Problem::HeadMismatch { head_seq, last_seq } => write!(
                f,
                "the signed head names entry {head_seq} but the log ends at {last_seq} (truncated or rewritten)"
            ),
            Problem::BadSignature => write!(f, "the head signature does not verify"),
            Problem::MissingHead => write!(f, "the log has entries but no signed head"),
        }
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// Entries read.
    pub entries: u64,
    /// The sequence number the signed head names (0 for an empty log).
    pub head_seq: u64,
    /// Every problem, in log order.
    pub problems: Vec<Problem>,
}

impl Verification {
    /// True when the log is exactly what the node signed.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Errors reading or writing the log (not findings: those are [`Problem`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u32).to_be_bytes());
    h.update(bytes);
}

fn put_opt(h: &mut Sha256, bytes: Option<&[u8]>) {
    match bytes {
        None => h.update([0u8]),
        Some(b) => {
            h.update([1u8]);
            put(h, b);
        }
    }
}

/// The chain hash of an entry.
pub fn entry_hash(prev: &[u8; 32], seq: u64, at_ms: i64, r: &Record) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"concord-audit-v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    put(&mut h, r.actor.as_bytes());
    put(&mut h, r.action.as_bytes());
    put_opt(&mut h, r.grant.as_deref().map(str::as_bytes));
    h.update((r.subjects.len() as u32).to_be_bytes());
    for s in &r.subjects {
        put(&mut h, s.as_bytes());
    }
    put_opt(&mut h, r.privacy_cost.as_deref().map(str::as_bytes));
    put_opt(&mut h, r.output_digest.as_ref().map(|d| d.as_slice()));
    put(&mut h, r.outcome.as_str().as_bytes());
    put(&mut h, r.detail.as_bytes());
    h.finalize().into()
}

fn head_message(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = b"concord-audit-head-v1".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// Appends `record`, links it to the chain and re-signs the head, in one transaction.
pub fn append(
    store: &mut Store,
    key: &NodeKey,
    clock: &dyn Clock,
    record: Record,
) -> Result<Entry, AuditError> {
    let at_ms = clock.now_ms();
    let conn = store.conn();
    let result = (|| {
        let tx = conn.transaction()?;
        let head: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT seq, entry_hash FROM audit_head WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (prev_seq, prev) = match head {
            Some((seq, hash)) => (seq as u64, hash.try_into().unwrap_or(GENESIS)),
            None => (0, GENESIS),
        };
        let seq = prev_seq + 1;
        let hash = entry_hash(&prev, seq, at_ms, &record);
        let subjects = serde_json::to_string(&record.subjects).unwrap_or_default();
        tx.execute(
            "INSERT INTO audit_log (seq, at_ms, actor, action, grant_id, subjects, privacy_cost,
                                    output_digest, outcome, detail, prev_hash, entry_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                seq as i64,
                at_ms,
                record.actor,
                record.action,
                record.grant,
                subjects,
                record.privacy_cost,
                record.output_digest.map(|d| d.to_vec()),
                record.outcome.as_str(),
                record.detail,
                prev.to_vec(),
                hash.to_vec(),
            ],
        )?;
        let signature = key.0.sign(&head_message(seq, &hash));
        tx.execute(
            "INSERT INTO audit_head (id, seq, entry_hash, signature) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET seq = ?1, entry_hash = ?2, signature = ?3",
            params![seq as i64, hash.to_vec(), signature.to_bytes().to_vec()],
        )?;
        tx.commit()?;
        Ok(Entry {
            seq,
            at_ms,
            record,
            hash,
        })
    })();
    result.map_err(|e| AuditError::Store(store.err(e)))
}

/// Reads the whole log in order. Entries whose fields cannot be read back are skipped here
/// (they are reported by [`verify`]).
pub fn entries(store: &mut Store) -> Result<Vec<Entry>, AuditError> {
    entries_after(store, 0, usize::MAX)
}

/// At most `limit` entries with a sequence number above `after`, in order (a page of the log).
pub fn entries_after(
    store: &mut Store,
    after: u64,
    limit: usize,
) -> Result<Vec<Entry>, AuditError> {
    Ok(read_rows(store, after, limit)?
        .into_iter()
        .filter_map(|row| {
            let record = row.record().ok()?;
            Some(Entry {
                seq: row.seq,
                at_ms: row.at_ms,
                record,
                hash: row.entry_hash,
            })
        })
        .collect())
}

/// Checks the chain and the signed head against the node's public key.
pub fn verify(store: &mut Store, public: &VerifyingKey) -> Result<Verification, AuditError> {
    let rows = read_rows(store, 0, usize::MAX)?;
    let mut problems = Vec::new();
    let mut expected = 1u64;
    let mut prev = GENESIS;
    for row in &rows {
        if row.seq != expected {
            problems.push(Problem::Missing {
                expected,
                found: row.seq,
            });
        }
        if row.prev_hash != prev {
            problems.push(Problem::BrokenLink { seq: row.seq });
        }
        match row.record() {
            Ok(record) => {
                if entry_hash(&row.prev_hash, row.seq, row.at_ms, &record) != row.entry_hash {
                    problems.push(Problem::Edited { seq: row.seq });
                }
            }
            Err(reason) => problems.push(Problem::Unreadable {
                seq: row.seq,
                reason,
            }),
        }
        prev = row.entry_hash;
        expected = row.seq + 1;
    }
    let last_seq = rows.last().map_or(0, |r| r.seq);
    let conn = store.conn();
    let head: Option<(i64, Vec<u8>, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, entry_hash, signature FROM audit_head WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(|e| store.err(e))?;
    let head_seq = match head {
        None => {
            if !rows.is_empty() {
                problems.push(Problem::MissingHead);
            }
            0
        }
        Some((seq, hash, signature)) => {
            let seq = seq as u64;
            let hash: [u8; 32] = hash.try_into().unwrap_or(GENESIS);
            let signed = <[u8; 64]>::try_from(signature.as_slice())
                .map(|s| Signature::from_bytes(&s))
                .is_ok_and(|s| public.verify(&head_message(seq, &hash), &s).is_ok());
            if !signed {
                problems.push(Problem::BadSignature);
            }
            if seq != last_seq || hash != prev {
                problems.push(Problem::HeadMismatch {
                    head_seq: seq,
                    last_seq,
                });
            }
            seq
        }
    };
    Ok(Verification {
        entries: rows.len() as u64,
        head_seq,
        problems,
    })
}

/// The last sequence number in the log (0 when empty).
pub fn last_seq(store: &mut Store) -> Result<u64, AuditError> {
    let conn = store.conn();
    let seq: Option<i64> = conn
        .query_row("SELECT MAX(seq) FROM audit_log", [], |r| r.get(0))
        .map_err(|e| store.err(e))?;
    Ok(seq.map_or(0, |s| s.max(0) as u64))
}

/// A raw row, before its fields are interpreted.
struct Row {
    seq: u64,
    at_ms: i64,
    actor: String,
    action: String,
    grant: Option<String>,
    subjects: String,
    privacy_cost: Option<String>,
    output_digest: Option<Vec<u8>>,
    outcome: String,
    detail: String,
    prev_hash: [u8; 32],
    entry_hash: [u8; 32],
}

impl Row {
    fn record(&self) -> Result<Record, UnreadableField> {
        let subjects: Vec<String> = serde_json::from_str(&self.subjects)
            .map_err(|e| UnreadableField::Subjects(e.to_string()))?;
        let outcome = Outcome::parse(&self.outcome)
            .ok_or_else(|| UnreadableField::Outcome(self.outcome.clone()))?;
        let output_digest = match &self.output_digest {
            None => None,
            Some(d) => Some(
                <[u8; 32]>::try_from(d.as_slice())
                    .map_err(|_| UnreadableField::DigestLength(d.len()))?,
            ),
        };
        Ok(Record {
            actor: self.actor.clone(),
            action: self.action.clone(),
            grant: self.grant.clone(),
            subjects,
            privacy_cost: self.privacy_cost.clone(),
            output_digest,
            outcome,
            detail: self.detail.clone(),
        })
    }
}

fn read_rows(store: &mut Store, after: u64, limit: usize) -> Result<Vec<Row>, AuditError> {
    let conn = store.conn();
    let rows = (|| {
        let mut stmt = conn.prepare(
            "SELECT seq, at_ms, actor, action, grant_id, subjects, privacy_cost, output_digest,
                    outcome, detail, prev_hash, entry_hash
             FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![after, limit], |r| {
            let hash = |i: usize| -> rusqlite::Result<[u8; 32]> {
                // A hash of the wrong length cannot match anything; all-ones never does.
                Ok(r.get::<_, Vec<u8>>(i)?.try_into().unwrap_or([0xffu8; 32]))
            };
            Ok(Row {
                seq: r.get::<_, i64>(0)? as u64,
                at_ms: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                grant: r.get(4)?,
                subjects: r.get(5)?,
                privacy_cost: r.get(6)?,
                output_digest: r.get(7)?,
                outcome: r.get(8)?,
                detail: r.get(9)?,
                prev_hash: hash(10)?,
                entry_hash: hash(11)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<Row>>>()
    })();
    rows.map_err(|e| AuditError::Store(store.err(e)))
}

#[cfg(test)]
mod tests;
