//! Shamir secret sharing over the prime field of ristretto255 scalars, `Z_ℓ` with
//! `ℓ = 2^252 + 27742317777372353535851937790883648493`.
//!
//! Why this field: a secret here is a 252-bit seed, so one field element holds it whole (no limb
//! splitting, as `GF(2^61-1)` would need five), a share is one 32-byte canonical encoding, and
//! curve25519-dalek already gives constant-time, zeroizable arithmetic in it. Every party index
//! `i` (0-based) evaluates the sharing polynomial at the public point `x = i + 1`, so no share is
//! ever the secret itself (`x = 0`).
//!
//! A sharing with threshold `t` is a random polynomial `f` of degree `t - 1` with `f(0)` the
//! secret; any `t` shares determine `f(0)` by Lagrange interpolation, and any `t - 1` shares are
//! uniformly distributed whatever the secret (perfect secrecy).

use curve25519_dalek::scalar::Scalar;
use rand::CryptoRng;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A secret that is Shamir-shared: a self-mask seed or a mask-key seed, uniform in `Z_ℓ`.
pub(crate) struct Seed(Scalar);

/// One party's share of a secret: the sharing polynomial evaluated at the party's point.
///
/// Redacted in `Debug`, zeroized on drop, compared in constant time.
#[derive(Clone)]
pub struct ShareValue(Scalar);

macro_rules! secret_scalar {
    ($name:ident) => {
        impl Drop for $name {
            fn drop(&mut self) {
                self.0.zeroize();
            }
        }

        impl ZeroizeOnDrop for $name {}

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> Choice {
                self.0.ct_eq(&other.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    };
}

secret_scalar!(Seed);
secret_scalar!(ShareValue);

impl Seed {
    /// A uniformly random seed.
    pub(crate) fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(Scalar::random(rng))
    }

    /// The canonical 32-byte encoding, as key material for derivations.
    pub(crate) fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }
}

impl ShareValue {
    /// The canonical little-endian encoding carried on the wire.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Parses a canonical encoding; `None` for any of the `2^256 - ℓ` non-canonical ones.
    pub fn from_canonical_bytes(bytes: [u8; 32]) -> Option<Self> {
        Option::<Scalar>::from(Scalar::from_canonical_bytes(bytes)).map(Self)
    }
}

/// The public evaluation point of party `index`.
fn point(index: u16) -> Scalar {
    Scalar::from(u64::from(index) + 1)
}

/// Splits `secret` into one share per holder (party indices, distinct), any `threshold` of which
/// reconstruct it. `threshold` must be at least 1 (the parameters guarantee more).
pub(crate) fn split<R: CryptoRng + ?Sized>(
    secret: &Seed,
    threshold: u16,
    holders: &[u16],
    rng: &mut R,
) -> Vec<ShareValue> {
    // f(x) = secret + a_1 x + … + a_{t-1} x^{t-1}, coefficients highest degree first for Horner.
    let mut coefficients: Zeroizing<Vec<Scalar>> = Zeroizing::new(
        (1..threshold)
            .map(|_| Scalar::random(rng))
            .chain(std::iter::once(secret.0))
            .collect(),
    );
    let shares = holders
        .iter()
        .map(|&holder| {
            let x = point(holder);
            let mut y = Scalar::ZERO;
            for c in coefficients.iter() {
                y = y * x + c;
            }
            ShareValue(y)
        })
        .collect();
    coefficients.zeroize();
    shares
}

/// Lagrange coefficients at zero for the given holders (distinct party indices): with these,
/// `f(0) = Σ λ_i · f(x_i)`. Public values; computed once per set of responders.
pub(crate) fn lagrange_at_zero(holders: &[u16]) -> Vec<Scalar> {
    holders
        .iter()
        .map(|&i| {
            let xi = point(i);
            let mut numerator = Scalar::ONE;
            let mut denominator = Scalar::ONE;
            for &j in holders.iter().filter(|&&j| j != i) {
                let xj = point(j);
                numerator *= xj;
                denominator *= xj - xi;
            }
            // Distinct holders give distinct points (indices < 2^16 ≪ ℓ): the denominator is a
            // product of non-zero field elements, so it is invertible.
            numerator * denominator.invert()
        })
        .collect()
}

/// Reconstructs `f(0)` from shares paired with the coefficients of [`lagrange_at_zero`] for
/// their holders, in the same order.
pub(crate) fn reconstruct<'a>(
    shares: impl IntoIterator<Item = &'a ShareValue>,
    lagrange: &[Scalar],
) -> Seed {
    let mut secret = Scalar::ZERO;
    for (share, lambda) in shares.into_iter().zip(lagrange) {
        secret += share.0 * lambda;
    }
    Seed(secret)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom as _;

    fn reconstruct_from(shares: &[ShareValue], holders: &[u16], pick: &[usize]) -> Seed {
        let chosen: Vec<u16> = pick.iter().map(|&k| holders[k]).collect();
        let lagrange = lagrange_at_zero(&chosen);
        reconstruct(pick.iter().map(|&k| &shares[k]), &lagrange)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_threshold_subset_reconstructs(
            n in 1u16..40,
            t_frac in 0.0f64..1.0,
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let t = 1 + ((f64::from(n - 1)) * t_frac) as u16;
            // Holders are arbitrary distinct indices, not 0..n.
            let mut holders: Vec<u16> = (0..200u16).collect();
            holders.shuffle(&mut rng);
            holders.truncate(n as usize);
            let secret = Seed::random(&mut rng);
            let shares = split(&secret, t, &holders, &mut rng);
            let mut pick: Vec<usize> = (0..n as usize).collect();
            pick.shuffle(&mut rng);
            let got = reconstruct_from(&shares, &holders, &pick[..t as usize]);
            prop_assert!(bool::from(got.ct_eq(&secret)));
            // More than t shares interpolate the same polynomial.
            let got = reconstruct_from(&shares, &holders, &pick);
            prop_assert!(bool::from(got.ct_eq(&secret)));
            if t > 1 {
                // t - 1 shares interpolate a lower-degree polynomial: not the secret.
                let got = reconstruct_from(&shares, &holders, &pick[..t as usize - 1]);
                prop_assert!(!bool::from(got.ct_eq(&secret)));
            }
        }
    }

    #[test]
    fn shares_round_trip_and_reject_non_canonical() {
        let mut rng = StdRng::seed_from_u64(2);
        let share = split(&Seed::random(&mut rng), 2, &[4], &mut rng).remove(0);
        let back = ShareValue::from_canonical_bytes(share.to_bytes()).unwrap();
        assert!(bool::from(back.ct_eq(&share)));
        assert!(ShareValue::from_canonical_bytes([0xff; 32]).is_none());
        assert_eq!(format!("{share:?}"), "ShareValue { .. }");
    }
}
