//! Session parameters every role must agree on, their digest, and the signed-value bound.

use sha2::{Digest as _, Sha256};

use super::SecAggError;
use super::key::PublicKey;
use crate::PROTOCOL_VERSION;
use crate::SessionId;

/// Most parties in one session. Indices and counts are `u16` on the wire.
pub const MAX_PARTIES: usize = 1000;

/// Longest statistic vector: 2^24 entries (128 MiB of masked input per party).
pub const MAX_LENGTH: usize = 1 << 24;

/// Parameters of one secure-aggregation session: the session id, the parties' identity keys in
/// party-index order, the threshold `t`, and the vector length.
///
/// The threshold is both the fewest parties that must remain at every round and one more than
/// the largest coalition (aggregator included) the privacy guarantee survives; it must satisfy
/// `parties / 2 < t ≤ parties` (see the module docs of [`super`] for why a majority).
#[derive(Clone, PartialEq, Eq)]
pub struct SecAggParams {
    session: SessionId,
    identities: Vec<PublicKey>,
    threshold: u16,
    length: u32,
    digest: [u8; 32],
}

impl std::fmt::Debug for SecAggParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecAggParams")
            .field("session", &self.session)
            .field("parties", &self.identities.len())
            .field("threshold", &self.threshold)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl SecAggParams {
    /// Validates and builds the parameters. `identities[i]` is party `i`'s identity key.
    pub fn new(
        session: SessionId,
        identities: Vec<PublicKey>,
        threshold: u16,
        length: usize,
    ) -> Result<Self, SecAggError> {
        let parties = identities.len();
        if !(2..=MAX_PARTIES).contains(&parties) {
            return Err(SecAggError::PartyCount {
                parties,
                limit: MAX_PARTIES,
            });
        }
        // In range: parties ≤ MAX_PARTIES < u16::MAX.
        let n = parties as u16;
        if threshold <= n / 2 || threshold > n {
            return Err(SecAggError::Threshold {
                threshold,
                parties: n,
            });
        }
        if !(1..=MAX_LENGTH).contains(&length) {
            return Err(SecAggError::Length {
                length,
                limit: MAX_LENGTH,
            });
        }
        for (i, key) in identities.iter().enumerate() {
            if identities[..i].contains(key) {
                return Err(SecAggError::DuplicateKey {
                    what: "identity",
                    party: i as u16,
                });
            }
        }
        let mut h = Sha256::new();
        h.update(format!("CONCORD-V{PROTOCOL_VERSION:02}-SECAGG-params").as_bytes());
        h.update(session.0);
        h.update(n.to_be_bytes());
        h.update(threshold.to_be_bytes());
        h.update((length as u32).to_be_bytes());
        for key in &identities {
            h.update(key.to_bytes());
        }
        Ok(Self {
            session,
            identities,
            threshold,
            length: length as u32,
            digest: h.finalize().into(),
        })
    }

    /// The smallest threshold allowed for `parties`: a strict majority, `parties / 2 + 1`. It
    /// tolerates the most dropouts (`parties - threshold`).
    pub fn majority(parties: usize) -> u16 {
        (parties.min(MAX_PARTIES) / 2 + 1) as u16
    }

    /// The session id.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Number of parties `n`.
    pub fn parties(&self) -> u16 {
        self.identities.len() as u16
    }

    /// The threshold `t`.
    pub fn threshold(&self) -> u16 {
        self.threshold
    }

    /// Entries per vector.
    pub fn length(&self) -> usize {
        self.length as usize
    }

    /// Party `party`'s identity key.
    pub fn identity(&self, party: u16) -> Option<&PublicKey> {
        self.identities.get(usize::from(party))
    }

    /// SHA-256 over the protocol version and every parameter; the salt of every derivation.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The largest magnitude a party may contribute in any entry: `⌊(2^63 - 1) / n⌋`. While
    /// every party stays within it, the true total of any set of parties lies in `i64`, so the
    /// sum mod 2^64, read as two's complement, is exact. Parties refuse larger inputs.
    pub fn input_bound(&self) -> i64 {
        i64::MAX / i64::from(self.parties())
    }

    pub(crate) fn check_party(&self, party: u16) -> Result<(), SecAggError> {
        if party >= self.parties() {
            return Err(SecAggError::UnknownParty {
                party,
                parties: self.parties(),
            });
        }
        Ok(())
    }
}
