//! Fast two-party PSI from oblivious-transfer extension: a KKRT16-style batch OPRF
//! (Kolesnikov–Kumaresan–Rosulek–Trieu, CCS 2016), for large intersections.
//!
//! # Protocol
//! The *receiver* holds keys `X` and learns which of its rows match; the *sender* holds `Y`. Both
//! normalize and deduplicate with [`super::keys`] (the ECDH mode's rule, so both modes give the
//! same answer on the same data) and digest each distinct key to 128 bits
//! ([`prims::item_digest`], tagged with the protocol version and the session).
//!
//! 1. **Hello** (R → S). The receiver places its digests in a cuckoo table of `m = bins(|X|)`
//!    bins with three hash functions under a fresh public seed ([`cuckoo`]), and starts
//!    `w = 512` base OTs as their sender (Chou–Orlandi "simplest OT" on ristretto255, [`base`]).
//! 2. **Setup** (S → R). The sender draws secret choice bits `s ∈ {0,1}^512`, answers the base
//!    OTs (learning `k_j^{s_j}`) and draws the seed of the pseudorandom code `C`
//!    ([`prims::Code`]).
//! 3. **Columns** (R → S, streamed). For bin `i` holding item `x` placed by hash function `j`, the
//!    receiver's row is `c_i = C(x, j)` (a random row for an empty bin). With `t_j^b = G(k_j^b)`
//!    (AES-CTR, [`prims`]) it sends the columns `u_j = t_j^0 ⊕ t_j^1 ⊕ c^j`, a batch of bins at a
//!    time. The sender computes `q^j = G(k_j^{s_j}) ⊕ s_j·u_j`, i.e. rows `q_i = t_i ⊕ (c_i ∧ s)`.
//! 4. **Outputs** (S → R, streamed). Bin `i` is an OPRF with key `(q_i, s)`:
//!    `F_i(y, j) = H(i, q_i ⊕ (C(y, j) ∧ s))`, and the receiver knows `F_i(x, j) = H(i, t_i)`
//!    for its own item. For each of its items `y`, in a fresh random order, the sender sends the
//!    three values `F_{h_j(y)}(y, j)`, truncated to `ℓ` bytes (simple hashing: every candidate
//!    bin). The receiver looks each value up among its own; matches are the intersection.
//!    The sender computes these values during step 3: its `3·|Y|` (item, hash function) pairs
//!    are sorted by bin beforehand (a counting sort), so each columns batch is answered as soon
//!    as it arrives, while its key rows are in cache, and no key row outlives its batch. Only
//!    the sending waits until every batch is in, because the order must not depend on the bins.
//!
//! `H` is the SHA-256 compression function keyed by the whole row, from a chaining value fixed
//! by a tag and the bin index: a random oracle on the row, as KKRT16's proof assumes, when
//! SHACAL-2 is an ideal cipher ([`prims::CrHash`] gives the argument, and says why not a
//! fixed-key AES construction). The receiver keeps its own values in an open-addressing hash
//! table, one probe per received value. The rounds are types:
//! [`OtReceiverStart`] → [`OtReceiverAwaitSetup`] → [`OtReceiverExtending`] →
//! [`OtReceiverComparing`]; [`OtSenderAwaitHello`] → [`OtSenderExtending`] → [`OtSenderAnswering`].
//! [`local`] runs both in one process.
//!
//! # Parameters and their failure probabilities
//! | part | choice | failure |
//! |---|---|---|
//! | code width | 512 bits (KKRT16 need ≥ 424 for 128-bit security at these sizes) | minimum distance < 128 with probability < 2^-100 ([`prims::Code`]) |
//! | cuckoo table | 3 hash functions, `max(⌈n·(296 + ⌈log2 n⌉)/240⌉, 2^13)` bins (1.317·n at 2^20; libOTe cryptoTools' fit), no stash, up to 4 seeds | ≤ 2^-40 per seed (empirical fit, checked against measurements of this insertion, [`cuckoo`]); the 4th failure is [`OtPsiError::CuckooFailed`] |
//! | output length | `ℓ = ⌈(40 + ⌈log2(3·n_r·n_s)⌉) / 8⌉` bytes ([`output_len`]): 11 at 2^20 per side, 12 at 2^24 | false match ≤ `3·n_r·n_s·2^(-8ℓ)` ≤ 2^-40 |
//! | item digests | 128 bits | collision ≤ `n²·2^-129` |
//!
//! # Leakage (semi-honest parties; links authenticated and encrypted by the node)
//! | output | receiver learns | sender learns |
//! |---|---|---|
//! | intersection, to receiver | which of its rows match, `|Y|` (distinct) | `|X|` (distinct) |
//!
//! This is the only mode. There is **no cardinality-only output**: the receiver compares OPRF
//! values item by item, so it always learns *which* keys match; [`OtPsiParams::new`] refuses
//! [`OutputKind::Cardinality`] with [`OtPsiError::CardinalityUnsupported`] (use the ECDH mode), and
//! results to both parties with [`OtPsiError::RecipientsUnsupported`] (not built yet). The cuckoo
//! seed is public and may have been redrawn (see [`cuckoo`] for what that leaks: ≤ 2^-40).
//! Security: semi-honest, in the random-oracle model for the KDF (SHA-256) and `H` (the SHA-256
//! compression function, ideal-cipher model for SHACAL-2), CDH in ristretto255 for the base
//! OTs, AES as a PRF for the code and the column PRG. A malicious party is not detected (KKRT16
//! is a semi-honest protocol); as with the ECDH mode, cap set sizes with grants.
//!
//! # Cost and memory
//! Per item, a few dozen AES blocks (each of the code's twelve keys encrypts a whole batch in
//! one call), one 128-bit digest (one SHA-256 compression for a key of up to 55 canonical
//! bytes), and one SHA-256 compression per OPRF value (the tag blocks are compressed once); no
//! elliptic-curve operation except 1,536 for the base OTs. Traffic ≈ `64·m + 3·ℓ·n_s` bytes
//! (123 MB at 2^20 per side).
//!
//! Memory, beyond the two key sets: the sender keeps 16-byte digests, its outputs as they will
//! be sent (`3·ℓ` bytes an item) and the bin index (15 bytes an item and 8 a bin), ≈ 80 bytes
//! an item in all, and one batch of key rows at a time; the receiver keeps the cuckoo table
//! (5 bytes a bin), digests, and its own values in a table of 32-byte slots at load between
//! 1/4 and 1/2 behind a 16-bit-per-value filter. At 2^24 per side that is ≈ 1.4–1.5 GB for each;
//! frames are bounded ([`wire`]), whatever the set size. The transposes, the per-bin and per-item
//! hashing and the lookups run on rayon's pool; the cuckoo eviction walk (≈ 0.07 s at 2^20) and
//! the counting sort of the sender's pairs (≈ 0.1 s, while the receiver computes its first
//! columns) are serial and, with key deduplication, the only serial steps that grow with the
//! sets.
//!
//! # Speed (2 cores, 2^20 keys per party, `concord bench psi`)
//! Phases of one profiled run (1.4 s, before `H` became one compression): key normalization and
//! deduplication ≈ 0.2 s (both sets at once), digests 0.08 s, the serial cuckoo placement 0.1 s
//! (the sender idle meanwhile), base OTs 0.07 s, columns with the sender's answers 0.8 s (a
//! third of it SHA-256), sending and comparison 0.15 s.
//! The README's *Speed* section has the totals against ECDH-PSI and the commands to reproduce
//! them.

pub mod base;
pub mod cuckoo;
pub mod local;
mod lookup;
pub mod prims;
mod receiver;
mod sender;
pub mod vectors;
pub mod wire;

use sha2::{Digest as _, Sha256};

pub use receiver::{
    OtReceiverAwaitSetup, OtReceiverComparing, OtReceiverExtending, OtReceiverStart,
};
pub use sender::{OtSenderAnswering, OtSenderAwaitHello, OtSenderExtending};
pub use wire::{OtDecodeError, OtMessage};

use super::keys::{KeySpec, PeerLimit};
use super::params::{OutputKind, Recipients};
use super::{PsiError, SessionId};
use crate::PROTOCOL_VERSION;

/// Everything that can go wrong in an OT-PSI session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtPsiError {
    /// A fault shared with the ECDH mode (key sets, parameters, message order and counts).
    #[error(transparent)]
    Psi(#[from] PsiError),
    /// A frame from the peer was malformed.
    #[error("malformed message from the peer: {0}")]
    Decode(#[from] OtDecodeError),
    /// OT-PSI reveals which keys match to the receiver; it cannot compute a cardinality only.
    #[error(
        "OT-based PSI always reveals the intersection to the receiver; use ECDH-PSI for cardinality-only output"
    )]
    CardinalityUnsupported,
    /// Only the receiver can learn the output in this mode.
    #[error("OT-based PSI delivers its output to the receiver only")]
    RecipientsUnsupported,
    /// The receiver announced a cuckoo table of the wrong size.
    #[error("peer announced {announced} cuckoo bins; {expected} expected for its size")]
    BinsMismatch {
        /// Announced.
        announced: u64,
        /// What [`cuckoo::bins_for`] gives.
        expected: u64,
    },
    /// The sender's outputs have a different length than both sizes call for.
    #[error("peer sent {found}-byte outputs; {expected} expected")]
    OutputWidthMismatch {
        /// [`output_len`].
        expected: usize,
        /// Received.
        found: usize,
    },
    /// No hash seed placed every item (see [`cuckoo`]; at the sizes of [`cuckoo::bins_for`] this
    /// has probability ≤ 2^-160).
    #[error("cuckoo hashing of {items} items into {bins} bins failed with {attempts} hash seeds")]
    CuckooFailed {
        /// Distinct receiver items.
        items: u64,
        /// Bins in the table.
        bins: u64,
        /// Seeds tried.
        attempts: u32,
    },
    /// The cuckoo table for this many items would not fit the 32-bit bin indices.
    #[error("{items} items need {bins} cuckoo bins, more than the {limit} supported")]
    TableTooLarge {
        /// Distinct receiver items.
        items: u64,
        /// Bins they would need.
        bins: u64,
        /// [`cuckoo::MAX_BINS`].
        limit: u64,
    },
}

/// Parameters of one OT-PSI session; the receiver sends their digest first and the sender refuses
/// a session whose parameters differ from its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OtPsiParams {
    session: SessionId,
    keys: KeySpec,
    pub(crate) peer_limit: PeerLimit,
}

impl OtPsiParams {
    /// A session for `output` to `recipients`. Only an intersection to the receiver exists in this
    /// mode (see the module docs); anything else is refused.
    pub fn new(
        session: SessionId,
        output: OutputKind,
        recipients: Recipients,
        keys: KeySpec,
    ) -> Result<Self, OtPsiError> {
        if output != OutputKind::Intersection {
            return Err(OtPsiError::CardinalityUnsupported);
        }
        if recipients != Recipients::Receiver {
            return Err(OtPsiError::RecipientsUnsupported);
        }
        if keys.columns() == 0 {
            return Err(PsiError::NoKeyColumns.into());
        }
        Ok(Self {
            session,
            keys,
            peer_limit: PeerLimit::default(),
        })
    }

    /// The same session, refusing a peer that announces more than `limit` keys (as
    /// [`PsiParams::with_peer_limit`](crate::psi::PsiParams::with_peer_limit)).
    #[must_use]
    pub fn with_peer_limit(self, limit: u64) -> Self {
        Self {
            peer_limit: PeerLimit::new(limit),
            ..self
        }
    }

    /// The session id (fresh per session: it separates digests, base-OT keys and hashes).
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The key normalization.
    pub fn keys(&self) -> KeySpec {
        self.keys
    }

    /// SHA-256 over the protocol version, the mode and every parameter.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"concord-psi-ot-params");
        h.update([PROTOCOL_VERSION]);
        h.update(self.session.0);
        h.update(self.keys.digest_bytes());
        h.finalize().into()
    }
}

/// Bytes of each OPRF output on the wire for `receiver_items` and `sender_items` distinct keys:
/// `⌈(40 + ⌈log2(3·n_r·n_s)⌉) / 8⌉`, so that a false match anywhere has probability ≤ 2^-40.
pub fn output_len(receiver_items: u64, sender_items: u64) -> usize {
    let pairs = 3 * u128::from(receiver_items.max(1)) * u128::from(sender_items.max(1));
    let log = 128 - (pairs - 1).leading_zeros() as usize;
    (40 + log).div_ceil(8)
}

#[cfg(test)]
mod tests;
