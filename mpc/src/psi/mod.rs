//! Two-party private set intersection by ECDH on ristretto255.
//!
//! Two siblings build on this module's keys and framing: [`join`] (DP sums and counts over the
//! intersection) and [`ot`] (the fast OT-extension mode, intersection output only).
//!
//! # Protocol
//! The *receiver* holds keys `X` and learns the output; the *sender* holds keys `Y`. Both
//! normalize and deduplicate their keys ([`keys`]) and hash them to the group with a tag that
//! carries the protocol version and the session (or cached-encoding) id.
//!
//! 1. The receiver draws a secret scalar `a` and sends `[a]H(x)` for each distinct `x ∈ X`.
//! 2. The sender, holding a secret scalar `b`, returns `[b][a]H(x)` — in the order received for an
//!    intersection, in a random order for a cardinality. Independently it sends 128-bit digests
//!    of `[b]H(y)` for each distinct `y ∈ Y`, in a random order.
//! 3. The receiver unblinds, `[a⁻¹][b][a]H(x) = [b]H(x)`, digests, and looks each digest up among
//!    the sender's. Matches are the intersection.
//! 4. When both parties are recipients, the receiver sends the count (and, for an intersection,
//!    which of the sender's digests matched) back to the sender.
//!
//! Each side performs one variable-base multiplication per own key and one per receiver key:
//! `3·|X| + |Y|` in all, the `4·n` of a balanced run. The sender's encoding of `Y` does not depend
//! on the receiver, which is what makes unbalanced use possible (below). This is the DH-OPRF form
//! of Meadows / Huberman–Franklin–Hogg PSI (as in RFC 9497's OPRF with an unblinding receiver).
//!
//! The rounds are types: [`ReceiverBlinding`] → [`ReceiverCollecting`];
//! [`SenderAwaitQuery`] → [`SenderEvaluating`] → ([`SenderAwaitOutcome`]). Each transition
//! consumes its state; batches within a round are streamed with `&mut self` calls. Messages are
//! [`Frame`]s of at most [`wire::MAX_BATCH_ITEMS`] items, decoded strictly by [`Message::decode`].
//! [`local`] runs both roles in one process. [`join`] builds DP counts and sums over the
//! intersection on the same blinding.
//!
//! # Comparison on truncated digests
//! Doubly-blinded values are compared on the first 16 bytes of
//! `SHA-256("concord-psi-digest:" ‖ tag ‖ encoding)`. For sets of `n_r` and `n_s` distinct keys the
//! probability of any false match is at most `n_r·n_s·2^-128`: 2^-64 for 2^32 keys on each side,
//! far below the required 2^-40.
//!
//! # Leakage (semi-honest parties; links authenticated and encrypted by the node)
//! | mode | receiver learns | sender learns |
//! |---|---|---|
//! | cardinality, to receiver | `|X∩Y|`, `|Y|` (distinct) | `|X|` (distinct) |
//! | cardinality, to both | `|X∩Y|`, `|Y|` | `|X|`, `|X∩Y|` |
//! | intersection, to receiver | which of its rows match, `|Y|` | `|X|` |
//! | intersection, to both | which of its rows match, `|Y|` | `|X|`, which of its rows match |
//!
//! Sizes are of *distinct* keys: duplicates are removed before blinding, so neither party learns
//! how often the other's keys repeat. The receiver, as the comparing party, always learns the exact
//! count; a differentially private count must be released by a layer above that holds it. In
//! both-recipient modes the sender trusts the receiver's report (semi-honest model).
//! Security rests on the decisional Diffie–Hellman assumption in ristretto255 with `H` modelled
//! as a random oracle (the one-more-DH assumption for cached encodings).
//!
//! # Unbalanced use: a cached sender encoding
//! A large holder (a blacklist, a register) builds one [`SenderEncoding`] under a fresh id and
//! answers many [`PsiParams::against_cached`] queries with it: per query it multiplies only the
//! query's keys, and the querier can keep the digests of `Y` between queries. What reuse adds to
//! the leakage above: a querier links its unblinded values across queries (the same key gives the
//! same `[b]H(x)`), so across queries it accumulates membership answers for everything it ever
//! asked about; the digests show how many keys changed between two encodings if the holder
//! re-encodes under the same key (this API always draws a fresh key per encoding). Because of the
//! linking, cardinality-only output needs a fresh key and is refused against a cached encoding;
//! limit the number and size of queries with grants.

mod blinding;
pub mod bucket;
mod group;
pub mod join;
pub mod keys;
pub mod local;
pub mod normalize;
pub mod ot;
mod params;
mod receiver;
mod sender;
pub mod vectors;
pub mod wire;

pub use group::{BlindingKey, DIGEST_LEN, ItemDigest, POINT_LEN};
pub use keys::{InputReport, KeySet, KeySpec, MAX_KEY_COLUMNS, canonical_row_key};
pub use normalize::{KeyFault, KeyType};
pub use ot::{OtPsiError, OtPsiParams};
pub use params::{OutputKind, PsiParams, Recipients, SessionId};
pub use receiver::{ReceiverBlinding, ReceiverCollecting, ReceiverOutput};
pub use sender::{
    SenderAwaitOutcome, SenderAwaitQuery, SenderEncoding, SenderEvaluating, SenderNext,
    SenderOutput,
};
pub use wire::{DecodeError, Frame, Message};

/// Everything that can go wrong in a PSI session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PsiError {
    /// A frame from the peer was malformed.
    #[error("malformed message from the peer: {0}")]
    Decode(#[from] DecodeError),
    /// The peers run with different parameters (session, mode, recipients or key spec).
    #[error("the peer's session parameters differ from ours")]
    ParamsMismatch,
    /// The key set was normalized differently from what the parameters say.
    #[error("the key set's normalization does not match the session parameters")]
    KeySpecMismatch,
    /// The cached encoding belongs to a different hash domain.
    #[error("the sender encoding was built for a different hash domain")]
    EncodingMismatch,
    /// Cardinality-only output needs fresh keys (see the module docs).
    #[error("cardinality-only PSI needs fresh keys; it cannot run against a cached encoding")]
    CardinalityNeedsFreshKeys,
    /// A message arrived that the current round does not accept.
    #[error("unexpected {message} in state {state}")]
    Unexpected {
        /// The round.
        state: &'static str,
        /// What arrived.
        message: &'static str,
    },
    /// The peer sent more items than it announced.
    #[error("peer sent {received} {what}, more than the {announced} announced")]
    TooManyItems {
        /// What was counted.
        what: &'static str,
        /// Announced.
        announced: u64,
        /// Received so far.
        received: u64,
    },
    /// A round was finished before all of its items arrived.
    #[error("round finished early: {received} of {expected} {what}")]
    Incomplete {
        /// What was counted.
        what: &'static str,
        /// Expected.
        expected: u64,
        /// Received.
        received: u64,
    },
    /// A set has more distinct keys than one session handles.
    #[error("more than {limit} distinct keys")]
    TooManyKeys {
        /// The limit.
        limit: u64,
    },
    /// A bucket holds more distinct keys than the padded size every bucket is given
    /// ([`bucket`]); with keys hashed to buckets under the session this happens with
    /// probability below `2^-40`, and the job fails rather than reveal a bucket's true size.
    #[error(
        "a bucket holds {keys} distinct keys, more than the {capacity} every bucket is padded to \
         (probability below 2^-40 for this set size; run again under a new session)"
    )]
    BucketOverflow {
        /// Distinct keys in the bucket.
        keys: u64,
        /// The padded size.
        capacity: u64,
    },
    /// A bucket count outside `1..=bucket::MAX_BUCKETS`.
    #[error("{buckets} buckets: use 1 to {} buckets", bucket::MAX_BUCKETS)]
    BucketCount {
        /// The count asked for.
        buckets: u64,
    },
    /// The peer announced more keys than this party accepts (its `peer_limit`).
    #[error("the peer announced {announced} keys, more than the {limit} this party accepts")]
    PeerTooLarge {
        /// What the peer announced.
        announced: u64,
        /// This party's limit.
        limit: u64,
    },
    /// A row has the wrong number of key components.
    #[error("row {row}: expected {expected} key columns, found {found}")]
    ColumnCount {
        /// 0-based row.
        row: u64,
        /// Key columns in the spec.
        expected: u8,
        /// Components in the row.
        found: usize,
    },
    /// A key component is longer than allowed.
    #[error("row {row}, key column {column}: {len} bytes exceeds the limit of {limit}")]
    ComponentTooLong {
        /// 0-based row.
        row: u64,
        /// 0-based key column.
        column: usize,
        /// Normalized length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A key spec with zero columns.
    #[error("a key needs at least one column")]
    NoKeyColumns,
    /// A key spec with more columns than a key may have.
    #[error("a key has at most {limit} columns, not {found}")]
    TooManyKeyColumns {
        /// Columns asked for.
        found: usize,
        /// [`MAX_KEY_COLUMNS`].
        limit: usize,
    },
    /// A key breaks its key type's rules (a check digit, a length). The key is not shown.
    #[error("row {row}, key column {column}: not a valid key: {fault}")]
    BadKey {
        /// 0-based row.
        row: u64,
        /// 0-based key column.
        column: usize,
        /// What is wrong with it.
        fault: KeyFault,
    },
    /// The peer closed the session before it was complete.
    #[error("the peer closed the session before it was complete")]
    PeerGone,
    /// The receiver reported a match at a position the sender never sent.
    #[error("peer reported a match at position {position} of {items}")]
    MatchOutOfRange {
        /// Reported position.
        position: u32,
        /// Sender items.
        items: u64,
    },
    /// The receiver's matches and count disagree.
    #[error("peer reported {matches} matches but a cardinality of {cardinality}")]
    InconsistentOutcome {
        /// Reported cardinality.
        cardinality: u64,
        /// Reported matches.
        matches: u64,
    },
}

#[cfg(test)]
mod tests;
