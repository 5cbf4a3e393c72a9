//! X25519 public keys as the parameters list them and the wire carries them.

/// Length of an X25519 public key on the wire.
pub const KEY_LEN: usize = 32;

/// An X25519 public key (a Montgomery u-coordinate): a party's identity key, or one of the two
/// per-session keys it advertises. Only canonical encodings (`u < 2^255 - 19`) are accepted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub(super) [u8; KEY_LEN]);

impl PublicKey {
    /// Parses a canonical u-coordinate; `None` when the top bit is set or `u ≥ 2^255 - 19`.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Option<Self> {
        is_canonical_u(&bytes).then_some(Self(bytes))
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }

    pub(super) fn x25519(&self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.0)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// `u < p = 2^255 - 19` with the top bit clear: the canonical field element encodings.
fn is_canonical_u(bytes: &[u8; KEY_LEN]) -> bool {
    // Compare the little-endian number with p from the most significant byte down.
    let mut p = [0xffu8; KEY_LEN];
    p[0] = 0xed;
    p[31] = 0x7f;
    for i in (0..KEY_LEN).rev() {
        match bytes[i].cmp(&p[i]) {
            std::cmp::Ordering::Less => return true,
            std::cmp::Ordering::Greater => return false,
            std::cmp::Ordering::Equal => {}
        }
    }
    false
}
