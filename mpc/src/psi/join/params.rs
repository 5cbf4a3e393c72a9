//! Session parameters both parties must agree on, their limits, and the caller's noise.

use sha2::{Digest as _, Sha256};
use zeroize::Zeroize;

use super::JoinError;
use crate::PROTOCOL_VERSION;
use crate::psi::group::{DigestTag, HashToGroup};
use crate::psi::keys::PeerLimit;
use crate::psi::{KeySpec, SessionId};

/// Most categories in one session (the cost per row is linear in it).
pub const MAX_CATEGORIES: u16 = 256;

/// Largest `|lo|` and `|hi|` of the value bounds: 2^40.
pub const MAX_ABS_VALUE: i64 = 1 << 40;

/// Largest noise bound: 2^40.
pub const MAX_NOISE_BOUND: u64 = 1 << 40;

/// Widest interval a decrypted slot may lie in: 2^44 (a baby-step giant-step search of at most
/// 2·2^22 compressions).
pub const MAX_DLOG_WIDTH: u64 = 1 << 44;

/// Parameters of one join-aggregate session. Both parties send their digest first and refuse a
/// peer whose parameters differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinParams {
    session: SessionId,
    keys: KeySpec,
    categories: u16,
    lo: i64,
    hi: i64,
    noise_bound: u64,
    pub(crate) peer_limit: PeerLimit,
}

impl JoinParams {
    /// A session over keys normalized by `keys`, with `categories` public categories (1 for an
    /// ungrouped count and sum), values clamped to `[lo, hi]`, and noise within `±noise_bound`.
    pub fn new(
        session: SessionId,
        keys: KeySpec,
        categories: u16,
        (lo, hi): (i64, i64),
        noise_bound: u64,
    ) -> Result<Self, JoinError> {
        if keys.columns() == 0 {
            return Err(JoinError::Keys(crate::psi::PsiError::NoKeyColumns));
        }
        if !(1..=MAX_CATEGORIES).contains(&categories) {
            return Err(JoinError::InvalidParameter {
                name: "categories",
                value: categories.into(),
                expected: "1 ..= 256",
            });
        }
        for (name, v) in [("lo", lo), ("hi", hi)] {
            if !(-MAX_ABS_VALUE..=MAX_ABS_VALUE).contains(&v) {
                return Err(JoinError::InvalidParameter {
                    name,
                    value: v.into(),
                    expected: "within ±2^40",
                });
            }
        }
        if lo > hi {
            return Err(JoinError::InvalidParameter {
                name: "lo",
                value: lo.into(),
                expected: "at most hi",
            });
        }
        if noise_bound > MAX_NOISE_BOUND {
            return Err(JoinError::InvalidParameter {
                name: "noise_bound",
                value: noise_bound.into(),
                expected: "at most 2^40",
            });
        }
        Ok(Self {
            session,
            keys,
            categories,
            lo,
            hi,
            noise_bound,
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

    /// The session id (also the hash domain: every session blinds under fresh keys).
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The key normalization.
    pub fn keys(&self) -> KeySpec {
        self.keys
    }

    /// Number of categories `C`.
    pub fn categories(&self) -> u16 {
        self.categories
    }

    /// Ciphertext slots: `2C` (sums, then counts).
    pub fn slots(&self) -> usize {
        2 * usize::from(self.categories)
    }

    /// The value bounds `(lo, hi)`.
    pub fn bounds(&self) -> (i64, i64) {
        (self.lo, self.hi)
    }

    /// The noise bound.
    pub fn noise_bound(&self) -> u64 {
        self.noise_bound
    }

    /// SHA-256 over the protocol version and every parameter.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"concord-join-params");
        h.update([PROTOCOL_VERSION]);
        h.update(self.session.0);
        h.update(self.keys.digest_bytes());
        h.update(self.categories.to_be_bytes());
        h.update(self.lo.to_be_bytes());
        h.update(self.hi.to_be_bytes());
        h.update(self.noise_bound.to_be_bytes());
        h.finalize().into()
    }

    /// Decryption intervals `(lo, width)` for a sum and a count slot when the value holder has
    /// `items` distinct keys, or the typed error when one is too wide.
    pub(crate) fn intervals(&self, items: u64) -> Result<[(i64, u64); 2], JoinError> {
        let n = i128::from(items);
        let noise = i128::from(self.noise_bound);
        let sum = (
            n * i128::from(self.lo.min(0)) - noise,
            n * i128::from(self.hi.max(0)) + noise,
        );
        let count = (-noise, n + noise);
        let mut out = [(0i64, 0u64); 2];
        for (slot, (what, (lo, hi))) in [("sum", sum), ("count", count)].into_iter().enumerate() {
            let width = (hi - lo) as u128;
            if width > u128::from(MAX_DLOG_WIDTH) {
                return Err(JoinError::RangeTooWide {
                    what,
                    width,
                    limit: MAX_DLOG_WIDTH,
                });
            }
            // |lo| ≤ width ≤ 2^44 here, so both fit.
            out[slot] = (lo as i64, width as u64);
        }
        Ok(out)
    }

    fn domain_tag(&self) -> Vec<u8> {
        format!(
            "CONCORD-V{PROTOCOL_VERSION:02}-PSI-JOIN-ristretto255_XMD:SHA-512_R255MAP_RO_-{}",
            self.session.hex()
        )
        .into_bytes()
    }

    pub(crate) fn hash_to_group(&self) -> HashToGroup {
        HashToGroup::new(&self.domain_tag())
    }

    pub(crate) fn digest_tag(&self) -> DigestTag {
        DigestTag::new(&self.domain_tag())
    }
}

/// The DP noise the key holder adds under encryption: per category, one integer for the count
/// and one for the sum. Drawn by the caller from the DP layer (see the module docs); consumed by
/// [`super::KeyHolderMatching::finish`].
///
/// Secret: whoever knows it and the release knows the exact figures. Redacted in `Debug`,
/// zeroized on drop.
pub struct JoinNoise {
    pub(crate) count: Vec<i64>,
    pub(crate) sum: Vec<i64>,
}

impl JoinNoise {
    /// Noise for each category's count and sum (`count[c]`, `sum[c]`).
    pub fn new(count: Vec<i64>, sum: Vec<i64>) -> Self {
        Self { count, sum }
    }

    /// Checks the shape and the bound against `params`.
    pub(crate) fn check(&self, params: &JoinParams) -> Result<(), JoinError> {
        let c = usize::from(params.categories);
        let bound = params.noise_bound;
        for (what, values) in [("count", &self.count), ("sum", &self.sum)] {
            if values.len() != c {
                return Err(JoinError::NoiseShape {
                    what,
                    expected: c,
                    found: values.len(),
                });
            }
            if let Some(category) = values.iter().position(|v| v.unsigned_abs() > bound) {
                return Err(JoinError::NoiseOutOfBounds {
                    what,
                    category,
                    bound,
                });
            }
        }
        Ok(())
    }

    /// The slot messages: sums then counts.
    pub(crate) fn slots(&self) -> impl Iterator<Item = i64> + '_ {
        self.sum.iter().chain(&self.count).copied()
    }
}

impl Drop for JoinNoise {
    fn drop(&mut self) {
        self.count.zeroize();
        self.sum.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for JoinNoise {}

impl std::fmt::Debug for JoinNoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinNoise").finish_non_exhaustive()
    }
}
