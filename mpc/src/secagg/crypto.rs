//! X25519 keys, every HKDF derivation of secure aggregation, and the AES-256-GCM envelope that
//! carries Shamir shares end to end.
//!
//! Every derivation is HKDF-SHA-256 with the parameters' digest as salt and an `info` that starts
//! with `CONCORD-V<version>-SECAGG-<label>` followed by the 16-byte session id and the label's
//! context (see the module docs of [`super`] for the list).

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut as _, KeyInit as _, Nonce, Tag};
use hkdf::HkdfExtract;
use rand::CryptoRng;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use super::key::{KEY_LEN, PublicKey};
use super::params::SecAggParams;
use super::prg::MaskKey;
use super::shamir::{Seed, ShareValue};
use crate::PROTOCOL_VERSION;

/// Plaintext of one sealed share pair: the mask-key share and the self-mask share.
pub(crate) const SHARES_PLAINTEXT_LEN: usize = 64;

/// Length of one sealed share pair on the wire: the plaintext and the 16-byte GCM tag.
pub const SEALED_LEN: usize = SHARES_PLAINTEXT_LEN + 16;

/// The round byte bound into the shares' nonce and associated data.
const SHARE_KEYS_ROUND: u8 = 2;

/// A department's long-term X25519 identity key. Its public half is listed in the session
/// parameters (from the node's configuration); the static–static Diffie–Hellman between two
/// identities authenticates the share envelopes between them, so a relay that substitutes its own
/// per-session keys cannot open or forge them.
///
/// Redacted in `Debug`, zeroized on drop, never serialized.
pub struct IdentityKey(StaticSecret);

impl IdentityKey {
    /// A fresh random identity key.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(StaticSecret::random_from_rng(rng))
    }

    /// Imports a key from its 32 secret bytes (X25519 clamps them on use).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    /// The public half, as listed in [`SecAggParams`].
    pub fn public(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    pub(crate) fn agree(&self, theirs: &PublicKey) -> Option<DhOutput> {
        agree(&self.0, theirs)
    }
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityKey").finish_non_exhaustive()
    }
}

/// A per-session X25519 secret: the cipher key (used only to derive share envelope keys) or the
/// mask key (derived from a Shamir-shared seed, so that the aggregator can rebuild it for a
/// party that drops out).
pub(crate) struct SessionSecret(StaticSecret);

impl SessionSecret {
    pub(crate) fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(StaticSecret::random_from_rng(rng))
    }

    /// The mask key of party `party`, derived from its mask-key seed.
    pub(crate) fn mask_key(params: &SecAggParams, party: u16, seed: &Seed) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        derive(
            params,
            "mask-key",
            &[seed.to_bytes().as_slice()],
            &[&party.to_be_bytes()],
            bytes.as_mut_slice(),
        );
        Self(StaticSecret::from(*bytes))
    }

    pub(crate) fn public(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    pub(crate) fn agree(&self, theirs: &PublicKey) -> Option<DhOutput> {
        agree(&self.0, theirs)
    }
}

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSecret").finish_non_exhaustive()
    }
}

/// A Diffie–Hellman output. Zeroized on drop, redacted in `Debug`.
pub(crate) struct DhOutput([u8; 32]);

impl Drop for DhOutput {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for DhOutput {}

impl std::fmt::Debug for DhOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhOutput").finish_non_exhaustive()
    }
}

/// X25519, refusing a non-contributory result (a low-order public key gives the all-zero output).
fn agree(ours: &StaticSecret, theirs: &PublicKey) -> Option<DhOutput> {
    let shared = ours.diffie_hellman(&theirs.x25519());
    shared
        .was_contributory()
        .then(|| DhOutput(shared.to_bytes()))
}

/// HKDF-SHA-256: salt = the parameters' digest, IKM = `ikm` concatenated, info =
/// `CONCORD-V<vv>-SECAGG-<label> ‖ 0x00 ‖ session id ‖ context…`.
fn derive(params: &SecAggParams, label: &str, ikm: &[&[u8]], context: &[&[u8]], out: &mut [u8]) {
    let mut extract = HkdfExtract::<Sha256>::new(Some(params.digest()));
    for part in ikm {
        extract.input_ikm(part);
    }
    let (_, hkdf) = extract.finalize();
    let tag = format!("CONCORD-V{PROTOCOL_VERSION:02}-SECAGG-{label}");
    let session = params.session().0;
    let mut info: Vec<&[u8]> = vec![tag.as_bytes(), &[0u8], &session];
    info.extend_from_slice(context);
    // Outputs here are at most 32 bytes, far below HKDF's 255·32-byte limit.
    if hkdf.expand_multi_info(&info, out).is_err() {
        unreachable!("HKDF output of {} bytes is within its limit", out.len());
    }
}

/// The AES-128 key of the pairwise mask between parties `a` and `b` (in either order).
pub(crate) fn pair_mask_key(params: &SecAggParams, dh: &DhOutput, a: u16, b: u16) -> MaskKey {
    let (lo, hi) = (a.min(b), a.max(b));
    let mut key = [0u8; 16];
    derive(
        params,
        "pair-mask",
        &[&dh.0],
        &[&lo.to_be_bytes(), &hi.to_be_bytes()],
        &mut key,
    );
    MaskKey(key)
}

/// The AES-128 key of party `party`'s self mask.
pub(crate) fn self_mask_key(params: &SecAggParams, party: u16, seed: &Seed) -> MaskKey {
    let mut key = [0u8; 16];
    derive(
        params,
        "self-mask",
        &[seed.to_bytes().as_slice()],
        &[&party.to_be_bytes()],
        &mut key,
    );
    MaskKey(key)
}

/// A binding, hiding commitment to party `party`'s self-mask seed (HMAC-SHA-256 under a public
/// key: collision resistant, and pseudorandom for a 252-bit uniform seed). The aggregator checks
/// its reconstruction against it.
pub(crate) fn self_mask_commitment(params: &SecAggParams, party: u16, seed: &Seed) -> [u8; 32] {
    let mut out = [0u8; 32];
    derive(
        params,
        "self-mask-commitment",
        &[seed.to_bytes().as_slice()],
        &[&party.to_be_bytes()],
        &mut out,
    );
    out
}

/// The AES-256-GCM key that seals the shares `from` sends to `to`: both the identities'
/// static–static and the cipher keys' per-session Diffie–Hellman outputs go in, so only the two
/// identity holders can compute it, and it is fresh for every session and roster.
pub(crate) struct EnvelopeKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeKey").finish_non_exhaustive()
    }
}

impl EnvelopeKey {
    pub(crate) fn derive(
        params: &SecAggParams,
        roster: &[u8; 32],
        identity_dh: &DhOutput,
        cipher_dh: &DhOutput,
        from: u16,
        to: u16,
    ) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        derive(
            params,
            "share-envelope",
            &[&identity_dh.0, &cipher_dh.0],
            &[roster, &from.to_be_bytes(), &to.to_be_bytes()],
            key.as_mut_slice(),
        );
        Self(key)
    }

    /// Seals the share pair. Each key seals exactly one message, so the fixed nonce is unique.
    pub(crate) fn seal(
        &self,
        params: &SecAggParams,
        roster: &[u8; 32],
        from: u16,
        to: u16,
        mask_key_share: &ShareValue,
        self_mask_share: &ShareValue,
    ) -> [u8; SEALED_LEN] {
        let mut out = [0u8; SEALED_LEN];
        let (body, tag_out) = out.split_at_mut(SHARES_PLAINTEXT_LEN);
        body[..32].copy_from_slice(&mask_key_share.to_bytes());
        body[32..].copy_from_slice(&self_mask_share.to_bytes());
        let aead = Aes256Gcm::new(&(*self.0).into());
        let ad = associated_data(params, roster, from, to);
        // AES-GCM fails only for messages or associated data beyond 2^36 bytes.
        match aead.encrypt_inout_detached(&nonce(), &ad, body.into()) {
            Ok(tag) => tag_out.copy_from_slice(&tag),
            Err(_) => unreachable!("a 64-byte AES-GCM message is within its limits"),
        }
        out
    }

    /// Opens a share pair; `None` when the ciphertext, the key or any bound value differs.
    pub(crate) fn open(
        &self,
        params: &SecAggParams,
        roster: &[u8; 32],
        from: u16,
        to: u16,
        sealed: &[u8; SEALED_LEN],
    ) -> Option<(ShareValue, ShareValue)> {
        let mut body = Zeroizing::new([0u8; SHARES_PLAINTEXT_LEN]);
        body.copy_from_slice(&sealed[..SHARES_PLAINTEXT_LEN]);
        let tag = Tag::<Aes256Gcm>::try_from(&sealed[SHARES_PLAINTEXT_LEN..]).ok()?;
        let aead = Aes256Gcm::new(&(*self.0).into());
        let ad = associated_data(params, roster, from, to);
        aead.decrypt_inout_detached(&nonce(), &ad, body.as_mut_slice().into(), &tag)
            .ok()?;
        let mut mask = [0u8; 32];
        let mut own = [0u8; 32];
        mask.copy_from_slice(&body[..32]);
        own.copy_from_slice(&body[32..]);
        // An authentic envelope from an honest peer always holds canonical scalars.
        let shares =
            ShareValue::from_canonical_bytes(mask).zip(ShareValue::from_canonical_bytes(own));
        mask.zeroize();
        own.zeroize();
        shares
    }
}

fn nonce() -> Nonce<Aes256Gcm> {
    let mut n = [0u8; 12];
    n[0] = SHARE_KEYS_ROUND;
    n.into()
}

/// `CONCORD-V<vv>-SECAGG-shares ‖ 0x00 ‖ session ‖ round ‖ from ‖ to ‖ roster digest`.
fn associated_data(params: &SecAggParams, roster: &[u8; 32], from: u16, to: u16) -> Vec<u8> {
    let mut ad = format!("CONCORD-V{PROTOCOL_VERSION:02}-SECAGG-shares").into_bytes();
    ad.push(0);
    ad.extend_from_slice(&params.session().0);
    ad.push(SHARE_KEYS_ROUND);
    ad.extend_from_slice(&from.to_be_bytes());
    ad.extend_from_slice(&to.to_be_bytes());
    ad.extend_from_slice(roster);
    ad
}

impl ConstantTimeEq for PublicKey {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical_u_coordinates() {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(PublicKey::from_bytes(p).is_none()); // p itself
        let mut below = p;
        below[0] = 0xec;
        assert!(PublicKey::from_bytes(below).is_some()); // p - 1
        let mut high = [0u8; 32];
        high[31] = 0x80;
        assert!(PublicKey::from_bytes(high).is_none()); // top bit set
        assert!(PublicKey::from_bytes([0u8; 32]).is_some());
    }

    #[test]
    fn rfc7748_x25519_vector() {
        // RFC 7748 §6.1: Alice's and Bob's keys and their shared secret.
        let alice: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let bob_public: [u8; 32] =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .unwrap()
                .try_into()
                .unwrap();
        let alice = IdentityKey::from_bytes(alice);
        assert_eq!(
            hex::encode(alice.public().to_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let shared = alice
            .agree(&PublicKey::from_bytes(bob_public).unwrap())
            .unwrap();
        assert_eq!(
            hex::encode(shared.0),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
        // A low-order point (u = 0) gives a non-contributory result, which is refused.
        assert!(
            alice
                .agree(&PublicKey::from_bytes([0; 32]).unwrap())
                .is_none()
        );
    }
}
