//! Exponential ElGamal on ristretto255 with one randomness shared across independent slot keys.
//!
//! A ciphertext of messages `m_0..m_{s-1}` is `(R, S_0..S_{s-1}) = ([r]G, [m_j]G + [r]P_j)` for
//! the public points `P_j = [x_j]G` (see the module docs of `join` for why sharing `r` across
//! independent keys is sound). Adding ciphertexts component-wise adds the messages; adding a fresh
//! encryption re-randomizes. Decryption yields `[m_j]G`, whose bounded discrete log `dlog` finds.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{RistrettoBasepointTable, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity as _;
use rand::CryptoRng;
use zeroize::Zeroize;

/// `v` as a scalar (negative values as the group order minus `|v|`).
pub(crate) fn scalar_from_i64(v: i64) -> Scalar {
    let magnitude = Scalar::from(v.unsigned_abs());
    if v < 0 { -magnitude } else { magnitude }
}

/// The decryptor's secret: one scalar per slot. Never leaves the value holder; redacted in
/// `Debug`, zeroized on drop.
pub struct DecryptionKey(Vec<Scalar>);

impl DecryptionKey {
    /// Draws `slots` independent non-zero scalars.
    pub(crate) fn random<R: CryptoRng + ?Sized>(slots: usize, rng: &mut R) -> Self {
        Self(
            (0..slots)
                .map(|_| {
                    loop {
                        let s = Scalar::random(rng);
                        if s != Scalar::ZERO {
                            break s;
                        }
                    }
                })
                .collect(),
        )
    }

    /// The public points `[x_j]G`.
    pub(crate) fn public(&self) -> Vec<RistrettoPoint> {
        self.0.iter().map(RistrettoPoint::mul_base).collect()
    }

    /// `[m_j]G = S_j − [x_j]R` for each slot.
    pub(crate) fn decrypt(&self, ct: &Ciphertext) -> Vec<RistrettoPoint> {
        ct.slots
            .iter()
            .zip(&self.0)
            .map(|(s, x)| s - ct.r * x)
            .collect()
    }
}

impl Drop for DecryptionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for DecryptionKey {}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptionKey").finish_non_exhaustive()
    }
}

/// A decoded ElGamal ciphertext: `R` and one point per slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ciphertext {
    pub(crate) r: RistrettoPoint,
    pub(crate) slots: Vec<RistrettoPoint>,
}

impl Ciphertext {
    /// The encryption of all zeros with randomness zero: the neutral element of addition.
    pub(crate) fn zero(slots: usize) -> Self {
        Self {
            r: RistrettoPoint::identity(),
            slots: vec![RistrettoPoint::identity(); slots],
        }
    }

    /// Adds `other` component-wise: the messages add.
    pub(crate) fn add_assign(&mut self, other: &Ciphertext) {
        self.r += other.r;
        for (a, b) in self.slots.iter_mut().zip(&other.slots) {
            *a += b;
        }
    }

    /// Adds the component-wise sum of `components` (a flat `R, S_0, …` encoding).
    pub(crate) fn add_components(&mut self, components: &[RistrettoPoint]) {
        if let [r, slots @ ..] = components {
            self.r += r;
            for (a, b) in self.slots.iter_mut().zip(slots) {
                *a += b;
            }
        }
    }
}

/// Fixed-base tables for `G` and each public point: encryption costs `1 + slots` fixed-base
/// multiplications, several times faster than variable-base ones.
pub(crate) struct Encryptor {
    keys: Vec<RistrettoBasepointTable>,
    /// `G/2`, to add `[1/2]G` for a count of one in halved form.
    half_g: RistrettoPoint,
    inv2: Scalar,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("slots", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    pub(crate) fn new(public: &[RistrettoPoint]) -> Self {
        // 2 is invertible modulo the (odd) group order.
        let inv2 = Scalar::from(2u64).invert();
        Self {
            keys: public.iter().map(RistrettoBasepointTable::create).collect(),
            half_g: RistrettoPoint::mul_base(&inv2),
            inv2,
        }
    }

    /// Appends the *halves* of the components of an encryption, under randomness `r`, of the
    /// one-hot row: `value` in sum slot `category`, 1 in count slot `C + category`, 0 elsewhere.
    /// Halved so that `double_and_compress_batch` yields the encodings of the ciphertext.
    pub(crate) fn one_hot_halves(
        &self,
        category: usize,
        value: i64,
        r: &Scalar,
        out: &mut Vec<RistrettoPoint>,
    ) {
        let c = self.keys.len() / 2;
        let mut r_half = r * self.inv2;
        out.push(RISTRETTO_BASEPOINT_TABLE * &r_half);
        for (j, table) in self.keys.iter().enumerate() {
            let mut p = table * &r_half;
            if j == category {
                let mut m_half = scalar_from_i64(value) * self.inv2;
                p += RISTRETTO_BASEPOINT_TABLE * &m_half;
                m_half.zeroize();
            } else if j == c + category {
                p += self.half_g;
            }
            out.push(p);
        }
        r_half.zeroize();
    }

    /// A fresh encryption of `messages` (one per slot): for the noise.
    pub(crate) fn encrypt(&self, messages: impl Iterator<Item = i64>, r: &Scalar) -> Ciphertext {
        Ciphertext {
            r: RISTRETTO_BASEPOINT_TABLE * r,
            slots: self
                .keys
                .iter()
                .zip(messages)
                .map(|(table, m)| table * r + RISTRETTO_BASEPOINT_TABLE * &scalar_from_i64(m))
                .collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    #[test]
    fn homomorphic_and_halved() {
        let mut rng = StdRng::seed_from_u64(3);
        let key = DecryptionKey::random(4, &mut rng);
        let enc = Encryptor::new(&key.public());
        let mut halves = Vec::new();
        enc.one_hot_halves(1, -7, &Scalar::random(&mut rng), &mut halves);
        let doubled: Vec<_> = halves.iter().map(|p| p + p).collect();
        let one = Ciphertext {
            r: doubled[0],
            slots: doubled[1..].to_vec(),
        };
        let mut sum = enc.encrypt([5, 6, 7, 8].into_iter(), &Scalar::random(&mut rng));
        sum.add_assign(&one);
        let expect = [5, -1, 7, 9].map(|m| RistrettoPoint::mul_base(&scalar_from_i64(m)));
        assert_eq!(key.decrypt(&sum), expect);
        assert_eq!(format!("{key:?}"), "DecryptionKey { .. }");
    }
}
