//! Session parameters both parties must agree on, and the tags derived from them.

use sha2::{Digest as _, Sha256};

use super::PsiError;
use super::group::{DigestTag, HashToGroup};
use super::keys::{KeySpec, PeerLimit};
use crate::PROTOCOL_VERSION;
pub use crate::session::SessionId;

/// What the session computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OutputKind {
    /// Only the number of distinct keys in common.
    Cardinality,
    /// Which of the receiver's rows have a key in common with the sender.
    Intersection,
}

/// Who learns the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Recipients {
    /// Only the receiver (the party that compares).
    Receiver,
    /// Both parties: the receiver forwards the result (the count, or which of the sender's
    /// keys matched) to the sender at the end. Both must have asked for it.
    Both,
}

/// Parameters of one PSI session. The receiver sends their digest first; the sender refuses a
/// session whose parameters differ from its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsiParams {
    session: SessionId,
    hash_domain: SessionId,
    output: OutputKind,
    recipients: Recipients,
    keys: KeySpec,
    pub(crate) peer_limit: PeerLimit,
}

impl PsiParams {
    /// A one-shot session: fresh keys on both sides, hash domain = the session id.
    pub fn one_shot(
        session: SessionId,
        output: OutputKind,
        recipients: Recipients,
        keys: KeySpec,
    ) -> Self {
        Self {
            session,
            hash_domain: session,
            output,
            recipients,
            keys,
            peer_limit: PeerLimit::default(),
        }
    }

    /// A query against a sender's cached encoding `encoding` (see the module docs on unbalanced
    /// use). Only [`OutputKind::Intersection`] is possible: the sender's key is reused, so a
    /// querier could link its unblinded values across queries and a cardinality would protect
    /// nothing.
    pub fn against_cached(
        session: SessionId,
        encoding: SessionId,
        recipients: Recipients,
        keys: KeySpec,
    ) -> Self {
        Self {
            session,
            hash_domain: encoding,
            output: OutputKind::Intersection,
            recipients,
            keys,
            peer_limit: PeerLimit::default(),
        }
    }

    /// The session id.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The hash domain: the session id (one-shot) or the cached encoding's id.
    pub fn hash_domain(&self) -> SessionId {
        self.hash_domain
    }

    /// What is computed.
    pub fn output(&self) -> OutputKind {
        self.output
    }

    /// Who learns it.
    pub fn recipients(&self) -> Recipients {
        self.recipients
    }

    /// The key normalization.
    pub fn keys(&self) -> KeySpec {
        self.keys
    }

    /// The same session, refusing a peer that announces more than `limit` keys (this party's
    /// own bound on the memory a peer's set costs it; the peer need not agree). The default,
    /// and the most, is [`MAX_DISTINCT_KEYS`](super::MAX_DISTINCT_KEYS).
    #[must_use]
    pub fn with_peer_limit(self, limit: u64) -> Self {
        Self {
            peer_limit: PeerLimit::new(limit),
            ..self
        }
    }

    /// The most keys a peer may announce.
    pub fn peer_limit(&self) -> u64 {
        self.peer_limit.get()
    }

    /// SHA-256 over the protocol version and every parameter.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"concord-psi-params");
        h.update([PROTOCOL_VERSION]);
        h.update(self.session.0);
        h.update(self.hash_domain.0);
        h.update([
            match self.output {
                OutputKind::Cardinality => 1,
                OutputKind::Intersection => 2,
            },
            match self.recipients {
                Recipients::Receiver => 1,
                Recipients::Both => 2,
            },
        ]);
        h.update(self.keys.digest_bytes());
        h.finalize().into()
    }

    pub(crate) fn check(&self) -> Result<(), PsiError> {
        if self.keys.columns() == 0 {
            return Err(PsiError::NoKeyColumns);
        }
        if self.output == OutputKind::Cardinality && self.hash_domain != self.session {
            return Err(PsiError::CardinalityNeedsFreshKeys);
        }
        Ok(())
    }

    pub(crate) fn hash_to_group(&self) -> HashToGroup {
        hash_to_group(self.hash_domain)
    }

    pub(crate) fn digest_tag(&self) -> DigestTag {
        digest_tag(self.hash_domain)
    }
}

/// `CONCORD-V01-PSI-ECDH-ristretto255_XMD:SHA-512_R255MAP_RO_-<hash domain in hex>`: the
/// version and the per-session (or per-encoding) id, as CONVENTIONS.md asks of every tag.
fn domain_tag(hash_domain: SessionId) -> Vec<u8> {
    format!(
        "CONCORD-V{PROTOCOL_VERSION:02}-PSI-ECDH-ristretto255_XMD:SHA-512_R255MAP_RO_-{}",
        hash_domain.hex()
    )
    .into_bytes()
}

pub(crate) fn hash_to_group(hash_domain: SessionId) -> HashToGroup {
    HashToGroup::new(&domain_tag(hash_domain))
}

pub(crate) fn digest_tag(hash_domain: SessionId) -> DigestTag {
    DigestTag::new(&domain_tag(hash_domain))
}
