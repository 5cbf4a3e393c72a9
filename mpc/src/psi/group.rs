//! Group operations for ECDH-PSI on ristretto255: hashing keys to the group, secret blinding
//! scalars, and the batched, parallel blind/evaluate/digest steps.
//!
//! Hash to group is `hash_to_ristretto255` of RFC 9380 (suite `ristretto255_XMD:SHA-512_R255MAP_RO_`,
//! the same map as RFC 9496 §4.3.4): `expand_message_xmd` with SHA-512 to 64 bytes, then the
//! two-Elligator "one-way map". Known-answer tests pin it against RFC 9497's OPRF vectors.
//!
//! Compression cost: a single ristretto compression needs a field inverse square root (≈ the cost of
//! a decompression). Points here are always compressed in batches with dalek's
//! `double_and_compress_batch`, which shares one field inversion across a batch; to compress `[k]P`
//! we compute `[k/2]P` and let the batch routine double it.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use rand::CryptoRng;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256, Sha512};
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Items processed per rayon task: large enough to amortise the batch inversion in compression,
/// small enough to balance across cores.
pub(crate) const CHUNK: usize = 512;

/// Length in bytes of the truncated digest on which doubly-blinded values are compared.
///
/// With `n_r` and `n_s` distinct items on the two sides, a false match needs two of the
/// `n_r·n_s` pairs of distinct pseudorandom group elements to share a 128-bit digest, which
/// happens with probability at most `n_r·n_s / 2^128`: ≤ 2^-64 for 2^32 items per side.
pub const DIGEST_LEN: usize = 16;

/// Length of a compressed ristretto255 element on the wire.
pub const POINT_LEN: usize = 32;

/// A truncated digest of a doubly-blinded (evaluated) key.
pub type ItemDigest = [u8; DIGEST_LEN];

/// A secret, non-zero scalar that blinds keys (`[k]H(x)`).
///
/// Redacted in `Debug`, zeroized on drop, compared in constant time, never serialized: a blinding
/// key never leaves the process that drew it.
pub struct BlindingKey(Scalar);

impl BlindingKey {
    /// Draws a uniformly random non-zero scalar.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let s = Scalar::random(rng);
            if s != Scalar::ZERO {
                return Self(s);
            }
        }
    }

    /// Builds a key from a canonical little-endian scalar encoding, or `None` when the bytes are
    /// not canonical or encode zero. For known-answer tests and key import.
    pub fn from_canonical_bytes(bytes: [u8; 32]) -> Option<Self> {
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(bytes))?;
        (s != Scalar::ZERO).then_some(Self(s))
    }

    /// The key that undoes this one: `[k⁻¹][k]P = P`.
    pub(crate) fn inverse(&self) -> Self {
        Self(self.0.invert())
    }

    /// The key halved, for compression through `double_and_compress_batch`.
    fn halved(&self) -> Self {
        // 2 is invertible modulo the (odd) group order.
        Self(self.0 * Scalar::from(2u64).invert())
    }
}

impl Drop for BlindingKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for BlindingKey {}

impl ConstantTimeEq for BlindingKey {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl std::fmt::Debug for BlindingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlindingKey").finish_non_exhaustive()
    }
}

/// A hash-to-group function bound to one domain-separation tag.
///
/// The SHA-512 state after the 128-byte zero block of `expand_message_xmd` is precomputed once,
/// so each key costs two short SHA-512 calls and two Elligator maps.
#[derive(Clone)]
pub(crate) struct HashToGroup {
    dst_prime: Vec<u8>,
    after_zpad: Sha512,
}

impl std::fmt::Debug for HashToGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashToGroup").finish_non_exhaustive()
    }
}

impl HashToGroup {
    /// `dst` must be at most 255 bytes (RFC 9380 §5.3.3); callers build it from fixed-size parts.
    pub(crate) fn new(dst: &[u8]) -> Self {
        debug_assert!(dst.len() <= 255, "domain-separation tag too long");
        let mut dst_prime = dst.to_vec();
        dst_prime.push(dst.len() as u8);
        let mut after_zpad = Sha512::new();
        after_zpad.update([0u8; 128]);
        Self {
            dst_prime,
            after_zpad,
        }
    }

    /// RFC 9380 `expand_message_xmd(msg, DST, 64)` with SHA-512 (so `ell = 1`).
    fn expand(&self, msg: &[u8]) -> [u8; 64] {
        let mut h = self.after_zpad.clone();
        h.update(msg);
        h.update([0u8, 64, 0]); // I2OSP(64, 2) || I2OSP(0, 1)
        h.update(&self.dst_prime);
        let b0 = h.finalize();
        let mut h = Sha512::new();
        h.update(b0);
        h.update([1u8]);
        h.update(&self.dst_prime);
        let mut out = [0u8; 64];
        out.copy_from_slice(&h.finalize());
        out
    }

    /// `hash_to_ristretto255(msg)`.
    pub(crate) fn hash(&self, msg: &[u8]) -> RistrettoPoint {
        RistrettoPoint::from_uniform_bytes(&self.expand(msg))
    }
}

/// The one hot loop of ECDH-PSI: map each item to a point, multiply it by `key`, compress, and
/// map the encoding to the output; in order, on all cores, compressing a chunk at a time.
fn scale_and_compress<I: Sync, T: Send>(
    items: &[I],
    key: &BlindingKey,
    to_point: impl Fn(&I) -> RistrettoPoint + Sync,
    output: impl Fn([u8; POINT_LEN]) -> T + Sync,
) -> Vec<T> {
    let half = key.halved();
    items
        .par_chunks(CHUNK)
        .flat_map_iter(|chunk| {
            let scaled: Vec<RistrettoPoint> = chunk.iter().map(|i| to_point(i) * half.0).collect();
            RistrettoPoint::double_and_compress_batch(&scaled)
                .into_iter()
                .map(|c| output(c.to_bytes()))
        })
        .collect()
}

/// `[k]P` for each point, compressed.
pub(crate) fn blind_points(points: &[RistrettoPoint], key: &BlindingKey) -> Vec<[u8; POINT_LEN]> {
    scale_and_compress(points, key, |p| *p, |c| c)
}

/// `[k]H(m)` for each message, compressed.
pub(crate) fn hash_and_blind<M: AsRef<[u8]> + Sync>(
    h2g: &HashToGroup,
    messages: &[M],
    key: &BlindingKey,
) -> Vec<[u8; POINT_LEN]> {
    scale_and_compress(messages, key, |m| h2g.hash(m.as_ref()), |c| c)
}

/// Digest tag shared by both parties for one hash domain.
#[derive(Clone)]
pub(crate) struct DigestTag(Sha256);

impl DigestTag {
    pub(crate) fn new(domain_tag: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"concord-psi-digest:");
        h.update(domain_tag);
        Self(h)
    }

    pub(crate) fn digest(&self, compressed: &[u8; POINT_LEN]) -> ItemDigest {
        let mut h = self.0.clone();
        h.update(compressed);
        let full = h.finalize();
        let mut out = [0u8; DIGEST_LEN];
        out.copy_from_slice(&full[..DIGEST_LEN]);
        out
    }
}

/// The digest of `[k]P` for each point.
pub(crate) fn blind_and_digest(
    points: &[RistrettoPoint],
    key: &BlindingKey,
    tag: &DigestTag,
) -> Vec<ItemDigest> {
    scale_and_compress(points, key, |p| *p, |c| tag.digest(&c))
}

/// The digest of `[k]H(m)` for each message.
pub(crate) fn hash_blind_and_digest<M: AsRef<[u8]> + Sync>(
    h2g: &HashToGroup,
    messages: &[M],
    key: &BlindingKey,
    tag: &DigestTag,
) -> Vec<ItemDigest> {
    scale_and_compress(messages, key, |m| h2g.hash(m.as_ref()), |c| tag.digest(&c))
}

/// Why a received element was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PointFault {
    /// Not the canonical encoding of a ristretto255 element.
    NotCanonical,
    /// The identity element, which an honest peer never sends.
    Identity,
}

/// Decompresses a batch of encodings on all cores; the first bad one is reported with its index.
pub(crate) fn decompress_all(
    encodings: &[[u8; POINT_LEN]],
) -> Result<Vec<RistrettoPoint>, (usize, PointFault)> {
    encodings
        .par_iter()
        .enumerate()
        .map(|(i, bytes)| {
            let p = CompressedRistretto(*bytes)
                .decompress()
                .ok_or((i, PointFault::NotCanonical))?;
            if p.is_identity() {
                return Err((i, PointFault::Identity));
            }
            Ok(p)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn arr32(s: &str) -> [u8; 32] {
        h(s).try_into().unwrap()
    }

    /// RFC 9497 ristretto255-SHA512 OPRF vectors: our hash-to-group, blinding, evaluation and
    /// unblinding reproduce `BlindedElement` and `EvaluationElement`.
    #[test]
    fn rfc9497_oprf_vectors() {
        let dst = b"HashToGroup-OPRFV1-\x00-ristretto255-SHA512";
        let h2g = HashToGroup::new(dst);
        let blind = BlindingKey::from_canonical_bytes(arr32(
            "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706",
        ))
        .unwrap();
        let sk = BlindingKey::from_canonical_bytes(arr32(
            "5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e",
        ))
        .unwrap();
        let cases = [
            (
                "00",
                "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
                "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
            ),
            (
                "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
                "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
                "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
            ),
        ];
        for (input, blinded, evaluated) in cases {
            let msg = h(input);
            let b = hash_and_blind(&h2g, std::slice::from_ref(&msg), &blind);
            assert_eq!(hex::encode(b[0]), blinded);
            let points = decompress_all(&b).unwrap();
            let e = blind_points(&points, &sk);
            assert_eq!(hex::encode(e[0]), evaluated);
            // Unblinding gives [sk]H(input) directly.
            let unblinded = blind_points(&decompress_all(&e).unwrap(), &blind.inverse());
            assert_eq!(unblinded, hash_and_blind(&h2g, &[msg], &sk));
        }
    }

    #[test]
    fn keys_are_redacted_and_nonzero() {
        assert!(BlindingKey::from_canonical_bytes([0u8; 32]).is_none());
        let k = BlindingKey::from_canonical_bytes(arr32(
            "5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e",
        ))
        .unwrap();
        assert_eq!(format!("{k:?}"), "BlindingKey { .. }");
        assert!(bool::from(k.ct_eq(&k.inverse().inverse())));
    }

    #[test]
    fn decompress_rejects_bad_and_identity() {
        let good = hash_and_blind(
            &HashToGroup::new(b"t"),
            &[b"x".to_vec()],
            &BlindingKey::random(&mut rand::rng()),
        )[0];
        assert!(decompress_all(&[good]).is_ok());
        assert_eq!(
            decompress_all(&[good, [0u8; 32]]).unwrap_err(),
            (1, PointFault::Identity)
        );
        assert_eq!(
            decompress_all(&[[0xffu8; 32]]).unwrap_err(),
            (0, PointFault::NotCanonical)
        );
    }
}
