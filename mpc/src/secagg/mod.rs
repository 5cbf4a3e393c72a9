//! Secure aggregation: the element-wise sum of `n` parties' vectors, learned by one aggregator,
//! with up to `n - t` parties dropping out at any point — after Bonawitz et al., *Practical
//! Secure Aggregation for Privacy-Preserving Machine Learning* (CCS 2017), semi-honest variant.
//!
//! # Roles and rounds
//! Parties `0..n` are the departments, each holding a vector `x_u` of `L` signed 64-bit entries
//! (counts or sums over public bins, its DP noise share already added by the caller). The
//! *aggregator* is the job's recipient node (or the coordinator acting for it): every message
//! passes through it, it decides when a round closes, and it learns the sum. `U1 ⊇ U2 ⊇ U3` are
//! the parties still present after each round; every round needs at least `t` of them.
//!
//! 1. **AdvertiseKeys** ([`PartyAwaitRoster::start`] → [`ServerAwaitKeys`]). Party `u` draws two
//!    per-session X25519 key pairs: the *cipher* key `c_u` and the *mask* key `s_u`, the latter
//!    derived from a random seed `σ_u ∈ Z_ℓ` so that it can be Shamir-shared. It sends both
//!    public keys with the parameters' digest. The aggregator broadcasts the roster `U1`.
//! 2. **ShareKeys** ([`PartyAwaitRoster::handle`] → [`ServerAwaitShares`]). `u` checks the roster
//!    (its own entry unchanged, every key distinct, `|U1| ≥ t`), draws its self-mask seed
//!    `b_u ∈ Z_ℓ`, splits `σ_u` and `b_u` `t`-of-`|U1|` (Shamir over the ristretto255 scalar
//!    field `Z_ℓ`: one element holds a 252-bit seed, and dalek's arithmetic in it is constant
//!    time), and seals the pair of shares for each `v ∈ U1` in an AES-256-GCM envelope only `v`
//!    can open. It also sends the aggregator a commitment to `b_u`. The aggregator forwards to
//!    each `v ∈ U2` the envelopes sealed for it.
//! 3. **MaskedInputCollection** ([`PartyAwaitShares::handle`] → [`ServerAwaitMasked`]). `u`
//!    opens its envelopes and sends, in frames,
//!    `y_u = x_u + PRG(b_u) + Σ_{v∈U2, v>u} PRG(s_uv) − Σ_{v∈U2, v<u} PRG(s_uv)  (mod 2^64)`,
//!    where `s_uv` is the X25519 agreement of `s_u` and `s_v`. The pairwise terms cancel in
//!    `Σ_{u∈U2} y_u`. The aggregator adds each frame as it arrives and subtracts again the
//!    frames of a vector that never completes; `U3` are the parties whose vector is complete.
//! 4. **Unmasking** ([`PartyAwaitUnmask::handle`] → [`ServerAwaitUnmask`]). Each `u ∈ U3` sends
//!    its share of `b_v` for every `v ∈ U3` and its share of `σ_v` for every `v ∈ U2 \ U3`. From
//!    `t` responses the aggregator rebuilds those seeds, checks each (against `b_v`'s commitment,
//!    and `σ_v`'s derived public key against the advertised `s_v`), subtracts every `PRG(b_v)`,
//!    and cancels the pairwise masks survivors shared with dropped parties. The result is
//!    `Σ_{u∈U3} x_u` ([`Aggregate`]).
//!
//! Every state consumes itself on transition; [`local`] runs all roles in one process.
//!
//! # Security model and what each role learns
//! Semi-honest parties and a semi-honest aggregator; links between a node and the aggregator are
//! authenticated and encrypted (mutual TLS), the identity keys in [`SecAggParams`] come from the
//! nodes' configuration. Privacy holds against the aggregator together with fewer than `t`
//! parties (or fewer than `t` parties alone): such a coalition learns nothing about the other
//! parties' vectors beyond the sum of the contributors'.
//!
//! | role | learns |
//! |---|---|
//! | aggregator | `Σ_{u∈U3} x_u`; the sets `U1, U2, U3` (who dropped out and when); public keys |
//! | party | the sets `U1`, `U2`, `U3`; public keys; nothing about any other party's vector |
//!
//! Why: the aggregator sees each `y_u` under the pairwise masks with every other member of `U2`,
//! which it can remove only for dropped parties, and under `PRG(b_u)`, whose seed it can rebuild
//! only for survivors. An honest party reveals, per owner, the self-mask share **or** the
//! mask-key share — never both, and only once ([`PartyAwaitUnmask::handle`] consumes the state).
//! With `t > n/2` (enforced), even an aggregator that lies about who dropped cannot collect `t`
//! shares of both kinds for one party from honest parties: that takes `2t > n` distinct
//! responders. With `c` colluding parties it takes `2(t − c)` honest ones out of `n − c`, so the
//! guarantee holds against a lying aggregator while `c < 2t − n`. Parties check every list they are given (own roster
//! entry, survivors ⊆ `U2`, themselves a survivor, at least `t` everywhere). Not covered (these
//! need the malicious-secure variant with signatures and a consistency round): an aggregator
//! that shows different survivor lists to different parties *and* colludes with `≥ 2t − n`
//! parties, and parties that send wrong shares or masked vectors (wrong shares are *detected* by
//! the commitment checks and fail the round with [`SecAggError::ReconstructionFailed`]).
//!
//! A relay cannot read or replay shares: each envelope's key comes from both the static–static
//! X25519 of the two parties' *identity* keys and the agreement of their per-session cipher keys,
//! bound to the session, the roster digest and the direction; its associated data repeats the
//! session, the round and both indices. A key substituted by the relay, an envelope moved to
//! another sender or recipient, or one replayed from another session fails authentication
//! ([`SecAggError::ShareAuthentication`]); a frame of another session is refused before
//! ([`SecAggError::WrongSession`]).
//!
//! # Dropouts
//! - Gone before advertising or before sending shares: not in `U2`, not in the sum, no mask of
//!   theirs was ever used.
//! - Gone after sending shares, before its masked vector was complete: in `U2 \ U3`; the
//!   survivors reveal its mask-key shares, the aggregator cancels its pairwise masks; its vector
//!   is not in the sum (a partial vector is discarded).
//! - Gone after its masked vector, before unmasking: in `U3` and in the sum; its self-mask seed
//!   is rebuilt from the others' shares.
//! - Fewer than `t` left at any round: that round fails with [`SecAggError::BelowThreshold`]
//!   naming it; nothing is revealed beyond what that round's messages carry.
//!
//! The DP noise in the sum is the survivors' noise shares only, so the DP layer must size the
//! shares for `t` of them to suffice ([`Aggregate::contributors`] tells how many arrived).
//!
//! # Arithmetic and overflow
//! All vector arithmetic is in `Z_2^64` (wrapping `u64`); inputs and the sum are read as two's
//! complement `i64`. The sum is exact whenever the true total of each entry lies in
//! `[−2^63, 2^63 − 1]`. Parties enforce a sufficient bound: every entry in
//! `±⌊(2^63 − 1)/n⌋` ([`SecAggParams::input_bound`]; [`SecAggError::InputOutOfRange`]
//! otherwise), so any subset's total fits. For 30 parties that is ±3.07 · 10^17 per entry.
//!
//! # Derivations
//! HKDF-SHA-256, salt = [`SecAggParams::digest`] (SHA-256 of the version, session id, `n`,
//! `t`, `L` and identity keys), info = `CONCORD-V01-SECAGG-<label> ‖ 0x00 ‖ session id ‖ context`:
//!
//! | label | IKM | context | output |
//! |---|---|---|---|
//! | `mask-key` | `σ_u` (32 bytes) | `u` | X25519 secret `s_u` |
//! | `pair-mask` | `X25519(s_u, s_v)` | `min(u,v) ‖ max(u,v)` | AES-128 key of `PRG(s_uv)` |
//! | `self-mask` | `b_u` | `u` | AES-128 key of `PRG(b_u)` |
//! | `self-mask-commitment` | `b_u` | `u` | 32-byte commitment |
//! | `share-envelope` | `X25519(id_u, id_v) ‖ X25519(c_u, c_v)` | roster digest ‖ `from ‖ to` | AES-256-GCM key |
//!
//! The roster digest is SHA-256 of `CONCORD-V01-SECAGG-roster`, the parameters' digest and every
//! roster entry; envelope AD is `CONCORD-V01-SECAGG-shares ‖ 0x00 ‖ session ‖ round ‖ from ‖ to ‖
//! roster digest`. Two key pairs per party, not one: when a party drops, its mask secret is
//! rebuilt by the aggregator; were it also its cipher key, the aggregator could open the
//! envelopes sent to that party and gain a share of everyone else's seeds. The mask PRG is
//! AES-128 in counter mode (block `j` = `AES_k(j)`, word `i` = keystream bytes `8i..8i+8` read
//! little-endian), expanded in parallel chunks of 2^13 words.
//!
//! # Cost
//! Per party: `n` X25519 agreements twice, `2(n−1)` envelopes of 80 bytes, `n` PRG expansions
//! of `8L` bytes, `8L` bytes sent. Aggregator: `|U3|·(1 + |U2 \ U3|)` PRG expansions; memory
//! `8L` bytes for the sum plus the frames of every vector still streaming in.

mod crypto;
mod key;
pub mod local;
mod params;
mod party;
mod prg;
mod server;
mod shamir;
pub mod wire;

use sha2::{Digest as _, Sha256};

pub use crate::SessionId;
pub use crypto::{IdentityKey, KEY_LEN, PublicKey, SEALED_LEN};
pub use params::{MAX_LENGTH, MAX_PARTIES, SecAggParams};
pub use party::{PartyAwaitRoster, PartyAwaitShares, PartyAwaitUnmask, PartyMasked};
pub use server::{
    Aggregate, ServerAwaitKeys, ServerAwaitMasked, ServerAwaitShares, ServerAwaitUnmask,
};
pub use shamir::ShareValue;
pub use wire::{Body, DecodeError, Frame, Message, RosterEntry};

use crate::PROTOCOL_VERSION;

/// The four rounds, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Round {
    /// Round 1: key advertisement (`U1`).
    AdvertiseKeys,
    /// Round 2: sealed shares (`U2`).
    ShareKeys,
    /// Round 3: masked input collection (`U3`).
    MaskedInput,
    /// Round 4: unmasking responses.
    Unmasking,
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Round::AdvertiseKeys => "key advertisement",
            Round::ShareKeys => "share keys",
            Round::MaskedInput => "masked input collection",
            Round::Unmasking => "unmasking",
        })
    }
}

/// Everything that can go wrong in a secure-aggregation session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecAggError {
    /// A frame was malformed.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// A message of another session.
    #[error("message for session {found:?}, expected {expected:?}")]
    WrongSession {
        /// Ours.
        expected: SessionId,
        /// The frame's.
        found: SessionId,
    },
    /// Too few or too many parties.
    #[error("{parties} parties is outside 2..={limit}")]
    PartyCount {
        /// Parties given.
        parties: usize,
        /// [`MAX_PARTIES`].
        limit: usize,
    },
    /// A threshold that is not a strict majority, or exceeds the parties.
    #[error("threshold {threshold} for {parties} parties: need parties/2 < threshold ≤ parties")]
    Threshold {
        /// Threshold given.
        threshold: u16,
        /// Parties.
        parties: u16,
    },
    /// A vector length out of range.
    #[error("vector length {length} is outside 1..={limit}")]
    Length {
        /// Length given.
        length: usize,
        /// [`MAX_LENGTH`].
        limit: usize,
    },
    /// A party index beyond the session's parties.
    #[error("party {party} is not one of the session's {parties} parties")]
    UnknownParty {
        /// The index.
        party: u16,
        /// Parties in the session.
        parties: u16,
    },
    /// The identity key does not match the parameters' entry for that party.
    #[error("our identity key is not the one the parameters list for party {party}")]
    IdentityMismatch {
        /// Our index.
        party: u16,
    },
    /// A party runs with different parameters.
    #[error("party {party}'s session parameters differ from ours")]
    ParamsMismatch {
        /// The party.
        party: u16,
    },
    /// A message the current round does not accept.
    #[error("unexpected {message} in state {state}")]
    Unexpected {
        /// The state.
        state: &'static str,
        /// What arrived.
        message: &'static str,
    },
    /// A second message of a kind a party sends once per round.
    #[error("second {what} from party {party}")]
    Duplicate {
        /// The message.
        what: &'static str,
        /// The sender.
        party: u16,
    },
    /// Two keys that must differ are equal.
    #[error("{what} key of party {party} repeats another key")]
    DuplicateKey {
        /// `identity` or `per-session`.
        what: &'static str,
        /// The party.
        party: u16,
    },
    /// A public key of low order (its X25519 agreement is all zeros).
    #[error("{what} key of party {party} has low order")]
    LowOrderKey {
        /// `identity`, `cipher` or `mask`.
        what: &'static str,
        /// The party.
        party: u16,
    },
    /// The roster omits or alters our own advertised keys.
    #[error("the roster omits or alters the keys party {party} advertised")]
    RosterAltered {
        /// Our index.
        party: u16,
    },
    /// A party that is not in the roster of this round.
    #[error("party {party} is not in this round's roster")]
    NotInRoster {
        /// The party.
        party: u16,
    },
    /// Forwarded shares addressed to another party.
    #[error("shares for party {to} delivered to party {us}")]
    Misrouted {
        /// The addressee.
        to: u16,
        /// Us.
        us: u16,
    },
    /// Sealed shares not addressed to exactly the other roster members.
    #[error("party {party} sealed shares for a different set of recipients than the roster")]
    RecipientSet {
        /// The sender.
        party: u16,
    },
    /// An envelope failed authentication: tampered, replayed, misattributed or of another
    /// session or roster.
    #[error("the shares sealed by party {from} failed authentication")]
    ShareAuthentication {
        /// The claimed sender.
        from: u16,
    },
    /// Fewer than `t` parties remain.
    #[error("{round}: {have} parties remain, below the threshold {threshold}")]
    BelowThreshold {
        /// The round whose participants were counted.
        round: Round,
        /// Parties present.
        have: usize,
        /// The threshold.
        threshold: u16,
    },
    /// The caller's vector has the wrong length.
    #[error("input has {found} entries, the session expects {expected}")]
    InputLength {
        /// Session length.
        expected: usize,
        /// Given.
        found: usize,
    },
    /// An input entry beyond the per-party bound that keeps every total inside `i64`.
    #[error(
        "input entry {index} is outside ±{bound}, the per-party bound that keeps the sum exact"
    )]
    InputOutOfRange {
        /// First offending entry (its value is not reported: it is private).
        index: usize,
        /// [`SecAggParams::input_bound`].
        bound: i64,
    },
    /// A masked-input frame that does not continue where the previous one ended.
    #[error("masked input of party {party}: frame at word {found}, expected word {expected}")]
    ChunkOutOfOrder {
        /// The sender.
        party: u16,
        /// Words received so far.
        expected: u64,
        /// The frame's offset.
        found: u64,
    },
    /// A masked input longer than the session's vectors.
    #[error("masked input of party {party}: {found} words exceed the length {length}")]
    InputOverrun {
        /// The sender.
        party: u16,
        /// Words including this frame.
        found: u64,
        /// Session length.
        length: u64,
    },
    /// A round was finished before all of its items were taken.
    #[error("round finished early: {received} of {expected} {what}")]
    Incomplete {
        /// What was counted.
        what: &'static str,
        /// Expected.
        expected: u64,
        /// Taken.
        received: u64,
    },
    /// The unmasking request names a party whose masks we never used.
    #[error("the unmasking request names party {party}, which is not in our U2")]
    UnknownSurvivor {
        /// The party.
        party: u16,
    },
    /// An unmasking request that does not list us, or a response from a non-survivor.
    #[error("party {party} is not among the survivors")]
    NotASurvivor {
        /// The party.
        party: u16,
    },
    /// An unmasking response whose owner lists differ from the request.
    #[error("party {party}'s unmasking shares do not match the survivor and dropout lists")]
    ResponseSet {
        /// The sender.
        party: u16,
    },
    /// A local run was given a different number of parties than the parameters list.
    #[error("{given} parties given for a session of {expected}")]
    PartiesGiven {
        /// Parties given.
        given: usize,
        /// Parties in the parameters.
        expected: usize,
    },
    /// A reconstructed seed does not match its commitment or advertised key.
    #[error("reconstructed {what} of party {owner} does not match what it committed to")]
    ReconstructionFailed {
        /// The seed's owner.
        owner: u16,
        /// `self-mask seed` or `mask key`.
        what: &'static str,
    },
}

/// SHA-256 over the parameters' digest and the roster: what every envelope is bound to.
pub(crate) fn roster_digest(params: &SecAggParams, roster: &[RosterEntry]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(format!("CONCORD-V{PROTOCOL_VERSION:02}-SECAGG-roster").as_bytes());
    h.update(params.digest());
    h.update((roster.len() as u16).to_be_bytes());
    for e in roster {
        h.update(e.party.to_be_bytes());
        h.update(e.cipher_key.to_bytes());
        h.update(e.mask_key.to_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests;
