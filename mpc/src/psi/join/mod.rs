//! Join-aggregate: differentially private counts and sums of one party's values over a private
//! intersection, grouped by a public category.
//!
//! The *value holder* `V` has rows `(key, value, category)`; the *key holder* `K` has keys. The
//! output, to `V` (the only party holding the decryption key), is, for each of the `C` declared
//! categories, the number of `V`'s distinct keys that `K` also holds and the sum of their values,
//! each with differential-privacy noise that `K` added under encryption. Nobody learns which keys
//! matched, and no exact sum is ever decrypted. This is Private Join and Compute (Ion et al.,
//! EuroS&P 2020) with exponential ElGamal on ristretto255 in place of Paillier.
//!
//! # Protocol
//! 1. `K` sends `[a]H(k)` for each distinct key `k` (as in [`super`], with its own hash domain).
//! 2. `V` returns `[b][a]H(k)`, shuffled as a whole. It also sends its public key and, in a fresh
//!    random order, for each distinct key `v`: the 128-bit digest of `[b]H(v)` and an encryption of
//!    the one-hot row `(value·e_c, e_c)` of its category `c` (below).
//! 3. `K` unblinds (`[a⁻¹]`) and digests its evaluations; because they came back shuffled it learns
//!    *how many* of `V`'s digests match, not *which of its keys* did. It adds the ciphertexts of
//!    the matching digests, slot by slot, and adds one fresh encryption of the noise. That fresh
//!    randomness re-randomizes the sum, so `V` — which knows every ciphertext's randomness — cannot
//!    tell from the result which ciphertexts were added.
//! 4. `V` decrypts each slot with a bounded discrete-log search ([`MAX_DLOG_WIDTH`]).
//!
//! Rounds are types: [`KeyHolderBlinding`] → [`KeyHolderUnblinding`] → [`KeyHolderMatching`];
//! [`ValueHolderAwaitQuery`] → [`ValueHolderEvaluating`] → [`ValueHolderAwaitResult`]. Messages
//! are [`Frame`]s decoded strictly by [`JoinMessage::decode`]. [`local`] runs both roles in one
//! process.
//!
//! # Ciphertexts and how categories stay hidden
//! `V`'s key is `2C` secret scalars `x_j` with public points `P_j = [x_j]G`: slots `0..C` carry
//! sums, slots `C..2C` carry counts. A row of category `c` with value `v` is encrypted as
//! `(R = [r]G, S_j = [m_j]G + [r]P_j)` with `m_c = v`, `m_{C+c} = 1` and every other `m_j = 0`:
//! multi-recipient ElGamal, one random `r` shared by `2C` independent keys, which is IND-CPA
//! under DDH (Kurosawa, PKC 2002; Bellare–Boldyreva–Staddon, PKC 2003). Every row thus looks the
//! same to `K` whatever its category. The cost is linear in `C`: per `V` row, `2 + 2C`
//! fixed-base multiplications by `V` (one for `R`, one per slot, one for the value), `1 + 2C`
//! validating decompressions by `K`, and `16 + 32·(1 + 2C)` bytes on the wire (112 bytes for
//! `C = 1`). [`MAX_CATEGORIES`] caps `C`.
//!
//! # Bounds
//! - Values are `i64` within declared bounds `[lo, hi]` with `|lo|, |hi| ≤` [`MAX_ABS_VALUE`]; they
//!   may be negative. Rows of `V` that share a key are one person: their values are added, and the
//!   total is clamped to `[lo, hi]` before encryption. Clamped keys are counted in `V`'s
//!   [`ValueReport`] (never wrapped, never sent). So one key moves a category's count by at most 1
//!   and its sum by at most `max(|lo|, |hi|)`: the sensitivities of the release.
//! - Noise is within `±noise_bound` (at most [`MAX_NOISE_BOUND`]); `K` refuses other noise.
//! - With `n` distinct `V` keys, a decrypted sum lies in
//!   `[n·min(lo, 0) − noise_bound, n·max(hi, 0) + noise_bound]` and a count in
//!   `[−noise_bound, n + noise_bound]`. `V` refuses to start when either interval is wider than
//!   [`MAX_DLOG_WIDTH`] = 2^44 (typed error), so decryption is a baby-step giant-step search with
//!   at most `2·√width` compressions: milliseconds for `n = 2^20` values in `[0, 1000]`, seconds at
//!   the 2^44 limit. The table is built once per session and serves every slot.
//!
//! # Noise: who draws it, and why the release is differentially private
//! The caller at `K` draws integer noise, per category, for the count and for the sum, from the
//! DP layer (`concord_dp::sample::discrete_laplace` with scale `sensitivity / ε`, or noise shares
//! from `concord_dp::shares`), and passes it as a [`JoinNoise`] to
//! [`KeyHolderMatching::finish`], which consumes it. This crate does not depend on the DP crate
//! and never draws noise itself. `K` adds the noise under encryption before anything leaves it, so
//! the decryptor `V` only ever decrypts `exact + noise`, with noise it does not know: the released
//! figures are the output of the discrete Laplace mechanism on the join-aggregate, whose
//! sensitivities the clamping above fixes. `K` never sees a decryption. The noise must not be
//! revealed to whoever receives the release (the caller should drop it after this call; it is
//! zeroized on drop here). A release to `K` as well would need a second, independent noise share
//! added by `V`, since `K` knows its own; that mode is not offered.
//!
//! # Leakage (semi-honest parties; links authenticated and encrypted by the node)
//! | party | learns |
//! |---|---|
//! | `K` (matches) | `|V|` (distinct keys), the exact `|K∩V|` over all categories; nothing about values or categories (IND-CPA) |
//! | `V` (decrypts) | `|K|` (distinct keys), the noised count and sum of each category |
//! | both | which of their own keys matched: nothing (the evaluations return shuffled, `V`'s rows travel shuffled and encrypted) |
//!
//! Sizes are of distinct keys; duplicates are combined before anything is sent. Security rests on
//! DDH in ristretto255 with `H` a random oracle. A `K` that deviates (adds a ciphertext twice,
//! leaves out the noise) is outside this model; so is `V` sending malformed encryptions, beyond
//! the strict decoding of every point.

mod dlog;
mod elgamal;
mod key_holder;
pub mod local;
mod params;
mod value_holder;
mod values;
mod wire;

pub use elgamal::{Ciphertext, DecryptionKey};
pub use key_holder::{KeyHolderBlinding, KeyHolderMatching, KeyHolderOutput, KeyHolderUnblinding};
pub use params::{
    JoinNoise, JoinParams, MAX_ABS_VALUE, MAX_CATEGORIES, MAX_DLOG_WIDTH, MAX_NOISE_BOUND,
};
pub use value_holder::{
    CategoryResult, JoinOutput, ValueHolderAwaitQuery, ValueHolderAwaitResult,
    ValueHolderEvaluating,
};
pub use values::{ValueReport, ValueSet};
pub use wire::{JoinMessage, MAX_FRAME_BYTES};

pub use super::{DecodeError, Frame, InputReport, KeySet, KeySpec, PsiError, SessionId};

/// Why a received group element was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PointFault {
    /// Not the canonical encoding of a ristretto255 element.
    NotCanonical,
    /// The identity element, which an honest peer never sends.
    Identity,
}

/// Everything that can go wrong in a join-aggregate session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// A frame was malformed (framing, lengths, versions, blinded points).
    #[error("malformed message from the peer: {0}")]
    Decode(#[from] DecodeError),
    /// A ciphertext component in a row batch or in the result was refused.
    #[error("ciphertext {item}, component {component}: {fault:?}")]
    Ciphertext {
        /// Position of the ciphertext in its batch.
        item: usize,
        /// 0 for `R`, `1 + j` for slot `j`.
        component: usize,
        /// What was wrong.
        fault: PointFault,
    },
    /// A point of the peer's public key was refused.
    #[error("public key slot {slot}: {fault:?}")]
    PublicKey {
        /// The slot.
        slot: usize,
        /// What was wrong.
        fault: PointFault,
    },
    /// A frame carries a different number of slots than the session has.
    #[error("frame carries {found} slots, the session has {expected}")]
    SlotCount {
        /// `2C`.
        expected: usize,
        /// In the frame.
        found: usize,
    },
    /// Key normalization or a PSI-level limit failed.
    #[error(transparent)]
    Keys(#[from] PsiError),
    /// The peers run with different parameters.
    #[error("the peer's session parameters differ from ours")]
    ParamsMismatch,
    /// The key set was normalized differently from what the parameters say.
    #[error("the key set's normalization does not match the session parameters")]
    KeySpecMismatch,
    /// Parameters out of their documented range.
    #[error("parameter {name} = {value} is out of range ({expected})")]
    InvalidParameter {
        /// Which parameter.
        name: &'static str,
        /// Its value.
        value: i128,
        /// What is allowed.
        expected: &'static str,
    },
    /// A decryption interval wider than the discrete-log search handles.
    #[error("{what} range is {width} wide, more than the {limit} decryption handles")]
    RangeTooWide {
        /// `"sum"` or `"count"`.
        what: &'static str,
        /// Width of the interval.
        width: u128,
        /// [`MAX_DLOG_WIDTH`].
        limit: u64,
    },
    /// A row names a category outside the declared list.
    #[error("row {row}: category {category} is not one of the {categories} declared")]
    CategoryOutOfRange {
        /// 0-based row.
        row: u64,
        /// The category index found.
        category: u32,
        /// Declared categories.
        categories: u16,
    },
    /// Two rows with the same key name different categories.
    #[error("row {row}: category {found}, but an earlier row with the same key has {first}")]
    CategoryConflict {
        /// 0-based row.
        row: u64,
        /// The earlier row's category.
        first: u32,
        /// This row's category.
        found: u32,
    },
    /// The caller's noise does not have one count and one sum entry per category.
    #[error("noise has {found} entries for {what}, the session has {expected} categories")]
    NoiseShape {
        /// `"count"` or `"sum"`.
        what: &'static str,
        /// Categories.
        expected: usize,
        /// Entries given.
        found: usize,
    },
    /// A noise value outside the declared bound (it would break decryption).
    #[error("noise for {what} of category {category} exceeds the declared bound {bound}")]
    NoiseOutOfBounds {
        /// `"count"` or `"sum"`.
        what: &'static str,
        /// The category.
        category: usize,
        /// The declared bound.
        bound: u64,
    },
    /// A decrypted slot lies outside its interval: the peer deviated from the protocol.
    #[error("decrypted slot {slot} lies outside its declared range")]
    PlaintextOutOfRange {
        /// The slot.
        slot: usize,
    },
    /// A message arrived that the current round does not accept.
    #[error("unexpected {message} in state {state}")]
    Unexpected {
        /// The round.
        state: &'static str,
        /// What arrived.
        message: &'static str,
    },
    /// The peer sent more items than announced.
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
    /// The peer closed the session before it was complete.
    #[error("the peer closed the session before it was complete")]
    PeerGone,
}

#[cfg(test)]
mod tests;
