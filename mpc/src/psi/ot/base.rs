//! Base oblivious transfers: the "simplest OT" of Chou and Orlandi (LATINCRYPT 2015) on
//! ristretto255, as random OTs that seed the extension.
//!
//! The OT *sender* (the PSI receiver) draws `a` and sends `A = [a]G`. For each of the
//! [`CODE_BITS`] instances `j`, the OT *receiver* (the PSI sender), holding choice bit `s_j`, draws
//! `b_j` and sends `B_j = [b_j]G + s_j·A`. The OT sender derives both keys
//! `k_j^0 = KDF(j, A, B_j, [a]B_j)` and `k_j^1 = KDF(j, A, B_j, [a](B_j − A))`; the OT receiver
//! derives `k_j^{s_j} = KDF(j, A, B_j, [b_j]A)`. `KDF` is SHA-256 over a tag carrying the protocol
//! version and the session, truncated to an AES-128 key; hashing `A` and `B_j` in follows the fix
//! of Hauck–Loss (2017) to the original proof.
//!
//! Security: against semi-honest parties, under the computational Diffie–Hellman assumption in
//! ristretto255 with the KDF modelled as a random oracle. The sender's keys `k_j^{1−s_j}` are
//! hidden from the receiver by CDH; the choice bits are hidden perfectly (`B_j` is uniform either
//! way). ristretto255 has prime order, so there are no small-subgroup points to worry about; the
//! decoder rejects non-canonical encodings and the identity.

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use rand::CryptoRng;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConditionallySelectable as _};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::prims::{AesKey, CODE_BITS};
use crate::PROTOCOL_VERSION;
use crate::session::SessionId;

/// A secret base-OT scalar. Redacted in `Debug`, zeroized on drop.
pub(crate) struct OtScalar(Scalar);

impl OtScalar {
    fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(Scalar::random(rng))
    }
}

impl Drop for OtScalar {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for OtScalar {}

impl std::fmt::Debug for OtScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtScalar").finish_non_exhaustive()
    }
}

/// The PSI sender's secret choice bits `s`, one per code column. Redacted, zeroized on drop.
pub(crate) struct ChoiceBits(pub(crate) [u64; CODE_BITS / 64]);

impl ChoiceBits {
    pub(crate) fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(std::array::from_fn(|_| rng.next_u64()))
    }

    pub(crate) fn bit(&self, j: usize) -> bool {
        (self.0[j / 64] >> (j % 64)) & 1 == 1
    }
}

impl Drop for ChoiceBits {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for ChoiceBits {}

impl std::fmt::Debug for ChoiceBits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChoiceBits").finish_non_exhaustive()
    }
}

fn kdf(
    session: SessionId,
    j: usize,
    a: &RistrettoPoint,
    b: &RistrettoPoint,
    shared: &RistrettoPoint,
) -> AesKey {
    let mut h = Sha256::new();
    h.update(format!("CONCORD-V{PROTOCOL_VERSION:02}-PSI-OT-base-ristretto255").as_bytes());
    h.update(session.0);
    h.update((j as u32).to_be_bytes());
    h.update(a.compress().as_bytes());
    h.update(b.compress().as_bytes());
    h.update(shared.compress().as_bytes());
    let mut full: [u8; 32] = h.finalize().into();
    let mut key = [0u8; 16];
    key.copy_from_slice(&full[..16]);
    full.zeroize();
    AesKey(key)
}

/// The OT sender's first step: its secret and `A`.
pub(crate) fn sender_start<R: CryptoRng + ?Sized>(rng: &mut R) -> (OtScalar, RistrettoPoint) {
    let a = OtScalar::random(rng);
    let point = RistrettoPoint::mul_base(&a.0);
    (a, point)
}

/// The OT receiver's step: `B_j` for each choice bit, and its keys `k_j^{s_j}`.
pub(crate) fn receiver_choose<R: CryptoRng + ?Sized>(
    session: SessionId,
    a: &RistrettoPoint,
    choices: &ChoiceBits,
    rng: &mut R,
) -> (Vec<RistrettoPoint>, Vec<AesKey>) {
    let secrets: Vec<OtScalar> = (0..CODE_BITS).map(|_| OtScalar::random(rng)).collect();
    secrets
        .par_iter()
        .enumerate()
        .map(|(j, b)| {
            let mut point = RistrettoPoint::mul_base(&b.0);
            let added = point + a;
            point.conditional_assign(&added, Choice::from(u8::from(choices.bit(j))));
            let key = kdf(session, j, a, &point, &(a * b.0));
            (point, key)
        })
        .unzip()
}

/// The OT sender's keys `(k_j^0, k_j^1)` from the receiver's points.
pub(crate) fn sender_keys(
    session: SessionId,
    a_secret: &OtScalar,
    a: &RistrettoPoint,
    points: &[RistrettoPoint],
) -> Vec<(AesKey, AesKey)> {
    points
        .par_iter()
        .enumerate()
        .map(|(j, b)| {
            let k0 = kdf(session, j, a, b, &(b * a_secret.0));
            let k1 = kdf(session, j, a, b, &((b - a) * a_secret.0));
            (k0, k1)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    #[test]
    fn receiver_gets_the_chosen_key_only() {
        let mut rng = StdRng::seed_from_u64(1);
        let session = SessionId([4; 16]);
        let (a_secret, a) = sender_start(&mut rng);
        let choices = ChoiceBits::random(&mut rng);
        let (points, chosen) = receiver_choose(session, &a, &choices, &mut rng);
        let pairs = sender_keys(session, &a_secret, &a, &points);
        for j in 0..CODE_BITS {
            let (k0, k1) = &pairs[j];
            let (want, other) = if choices.bit(j) { (k1, k0) } else { (k0, k1) };
            assert_eq!(chosen[j].0, want.0, "instance {j}");
            assert_ne!(chosen[j].0, other.0, "instance {j}");
        }
        assert!(format!("{a_secret:?} {choices:?} {:?}", chosen[0]).contains(".."));
    }
}
