//! What every protocol here shares: session identifiers and encoded frames.

/// A 128-bit identifier: of a session, or of a cached sender encoding. Must be fresh (random) for
/// every one-shot session: it separates the hash-to-group and key-derivation domains of
/// different sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A fresh random identifier.
    pub fn random<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        Self(id)
    }

    pub(crate) fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An encoded protocol message, ready for any transport. Each protocol's `wire` module builds
/// and strictly decodes its own frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame(pub Vec<u8>);

impl Frame {
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a frame built here; present for completeness.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
