//! Exact integer samplers driven by an injected CSPRNG.
//!
//! Every sampler here takes `&mut R where R: CryptoRng` and uses only uniform integers drawn by
//! rejection (no floating point anywhere), so each output has *exactly* the stated distribution
//! for the stated rational parameters, assuming the RNG's output bits are uniform. They are
//! variable-time (the number of draws depends on the output); the outputs are noise, not keys,
//! and the timing reveals at most the noise magnitude to a local observer — hence `vartime` is
//! not in the names but is stated here.
//!
//! | sampler | distribution | method | expected cost (draws) |
//! |---|---|---|---|
//! | [`uniform_below`] | uniform on {0..n−1} | mask + reject | < 2 |
//! | [`bernoulli`] | Bernoulli(num/den) | uniform comparison | < 2 |
//! | [`bernoulli_exp`] | Bernoulli(exp(−γ)), γ rational | CKS20 Alg. 1 | O(1 + γ) |
//! | [`geometric`] | P(k) ∝ exp(−γk), k ≥ 0 | CKS20 Alg. 2 inner loop | O(1) |
//! | [`discrete_laplace`] | P(x) ∝ exp(−\|x\|/scale) | CKS20 Alg. 2 | O(1) |
//! | [`poisson`] | Poisson(λ), λ rational | pieces λ/m ≤ ½, each: K ~ Geom(λ/m), accept w.p. 1/K! | O(1 + λ) |
//! | [`negative_binomial`] | NegBin(r, exp(−γ)), r = c/d ≤ 1 | K ~ Geom, accept w.p. Π_{j≤K} (j−1+r)/j | O((1−p)^{r−1}) |
//!
//! CKS20 = Canonne, Kamath, Steinke, *The Discrete Gaussian for Differential Privacy*, NeurIPS 2020.
//!
//! The Poisson piece: P(K = k) = (1−λ)λ^k, accepted with probability 1/k!, gives P(k) ∝ λ^k/k!,
//! i.e. Poisson(λ); acceptance is (1−λ)e^λ ≥ 0.82 for λ ≤ ½. The negative binomial: the target
//! C(k+r−1, k)(1−p)^r p^k divided by the geometric proposal (1−p)p^k is (1−p)^{r−1}·Π (j−1+r)/j,
//! and the product is ≤ 1 for r ≤ 1, so rejection with envelope (1−p)^{r−1} is exact; its
//! acceptance rate (1−p)^{1−r} falls as the scale grows (≈ scale^{−(1−r)}), which is the price
//! of exactness: an exact Gamma-mixture sampler would need exact real arithmetic.

use crate::error::{DpError, Result};
use rand::CryptoRng;

/// A positive rational `num/den` with both parts below 2^64, the form all samplers take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    num: u64,
    den: u64,
}

/// Denominator used to turn a user-facing `f64` into a [`Ratio`]: values are rounded to 2^-32.
const FIXED_DENOMINATOR_BITS: u32 = 32;

impl Ratio {
    /// `num/den`, reduced. Errors on `den == 0`.
    pub fn new(num: u64, den: u64) -> Result<Self> {
        if den == 0 {
            return Err(DpError::InvalidCount {
                name: "denominator",
                value: 0,
                expected: "> 0",
            });
        }
        let g = gcd(num, den);
        let g = if g == 0 { 1 } else { g };
        Ok(Self {
            num: num / g,
            den: den / g,
        })
    }

    /// Rounds a positive finite `value` (at most 2^31) **up** to a multiple of 2^-32.
    ///
    /// Rounding up is the conservative direction for a noise scale (more noise, never less).
    pub fn from_f64_up(name: &'static str, value: f64) -> Result<Self> {
        let limit = f64::from(1u32 << 31);
        if !(value.is_finite() && value > 0.0 && value <= limit) {
            return Err(DpError::InvalidParameter {
                name,
                value,
                expected: "finite, > 0 and <= 2^31",
            });
        }
        // value · 2^32 ≤ 2^63 is exact in f64 (a power-of-two multiple), so ceil is exact.
        let scaled = (value * f64::from(1u32 << 16) * f64::from(1u32 << 16)).ceil();
        Self::new(scaled as u64, 1u64 << FIXED_DENOMINATOR_BITS)
    }

    /// Numerator.
    pub fn num(self) -> u64 {
        self.num
    }
    /// Denominator.
    pub fn den(self) -> u64 {
        self.den
    }
    /// Nearest `f64`.
    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
    /// 1 / self. Errors for zero.
    pub fn recip(self) -> Result<Self> {
        Self::new(self.den, self.num)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Uniform on `{0, …, n−1}`, exactly (draw the next power of two, reject). `n == 0` returns 0.
pub fn uniform_below<R: CryptoRng + ?Sized>(rng: &mut R, n: u128) -> u128 {
    if n <= 1 {
        return 0;
    }
    let bits = 128 - (n - 1).leading_zeros();
    loop {
        let x = if bits <= 64 {
            let mask = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            u128::from(rng.next_u64() & mask)
        } else {
            let hi = u128::from(rng.next_u64()) & ((1u128 << (bits - 64)) - 1);
            (hi << 64) | u128::from(rng.next_u64())
        };
        if x < n {
            return x;
        }
    }
}

/// Bernoulli(num/den), exactly. Requires `den > 0`; `num ≥ den` always returns `true`.
pub fn bernoulli<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    uniform_below(rng, den) < num
}

/// Bernoulli(exp(−num/den)) for `num/den ∈ [0, 1]` (CKS20 Algorithm 1): draw A_k ~ Bernoulli(γ/k)
/// for k = 1, 2, … until the first 0 at K; output K odd. P(K odd) = Σ (−γ)^j/j! = e^{−γ}.
fn bernoulli_exp_unit<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    let mut k: u128 = 1;
    while bernoulli(rng, num, den.saturating_mul(k)) {
        k += 1;
    }
    k % 2 == 1
}

/// Bernoulli(exp(−num/den)) for any rational γ = num/den ≥ 0, exactly: e^{−γ} = (e^{−1})^⌊γ⌋·e^{−frac(γ)}.
pub fn bernoulli_exp<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    let mut num = num;
    while num > den {
        if !bernoulli_exp_unit(rng, 1, 1) {
            return false;
        }
        num -= den;
    }
    bernoulli_exp_unit(rng, num, den)
}

/// Geometric on {0, 1, …} with P(k) = (1 − e^{−γ}) e^{−γk}, γ = `gamma` (CKS20 Alg. 2, inner part).
///
/// With γ = s/t: U uniform on {0..t−1} kept w.p. e^{−U/t}, V ~ Geom(e^{−1}), X = U + tV has
/// P(X = x) ∝ e^{−x/t}, and ⌊X/s⌋ is geometric with ratio e^{−s/t}.
pub fn geometric<R: CryptoRng + ?Sized>(rng: &mut R, gamma: Ratio) -> u64 {
    let (s, t) = (u128::from(gamma.num), u128::from(gamma.den));
    loop {
        let u = uniform_below(rng, t);
        if !bernoulli_exp(rng, u, t) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp_unit(rng, 1, 1) {
            v += 1;
        }
        let x = u + t * v;
        // Cannot exceed u64 in practice (needs ~2^64·s/t draws of probability e^{−γ·2^64}); saturate.
        return u64::try_from(x / s).unwrap_or(u64::MAX);
    }
}

/// Discrete Laplace on ℤ with P(x) ∝ exp(−|x|/scale) (CKS20 Algorithm 2).
///
/// Variance 2p/(1−p)² with p = e^{−1/scale}. Two draws of [`geometric`] would also work; this form
/// rejects the duplicate zero instead.
pub fn discrete_laplace<R: CryptoRng + ?Sized>(rng: &mut R, scale: Ratio) -> i64 {
    // γ = 1/scale; scale > 0 is guaranteed by `Ratio::from_f64_up`, and a zero numerator is
    // rejected by `recip`, so fall back to a point mass only if a caller built Ratio(0, d) directly.
    let Ok(gamma) = scale.recip() else { return 0 };
    loop {
        let negative = bernoulli(rng, 1, 2);
        let y = geometric(rng, gamma);
        if negative && y == 0 {
            continue;
        }
        let y = i64::try_from(y).unwrap_or(i64::MAX);
        return if negative { -y } else { y };
    }
}

/// Poisson(λ) for rational λ, exactly (see the module docs for the method).
pub fn poisson<R: CryptoRng + ?Sized>(rng: &mut R, lambda: Ratio) -> u64 {
    let (a, b) = (u128::from(lambda.num), u128::from(lambda.den));
    // Split into m pieces of λ/m ≤ 1/2: m = ⌈2a/b⌉.
    let pieces = (2 * a).div_ceil(b).max(1);
    let piece_den = b * pieces;
    let mut total: u64 = 0;
    for _ in 0..pieces {
        total = total.saturating_add(poisson_small(rng, a, piece_den));
    }
    total
}

/// Poisson(num/den) for num/den ≤ 1/2.
fn poisson_small<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128) -> u64 {
    'proposal: loop {
        let mut k: u64 = 0;
        while bernoulli(rng, num, den) {
            k += 1;
        }
        for j in 2..=u128::from(k) {
            if !bernoulli(rng, 1, j) {
                continue 'proposal;
            }
        }
        return k;
    }
}

/// NegBin(r, p) with P(k) = C(k+r−1, k)(1−p)^r p^k, for r = `r` ≤ 1 and p = e^{−γ}, exactly.
///
/// Errors if r > 1 or r = 0.
pub fn negative_binomial<R: CryptoRng + ?Sized>(
    rng: &mut R,
    r: Ratio,
    gamma: Ratio,
) -> Result<u64> {
    if r.num == 0 || r.num > r.den {
        return Err(DpError::InvalidParameter {
            name: "negative binomial r",
            value: r.to_f64(),
            expected: "in (0, 1]",
        });
    }
    if r.num == r.den {
        // r = 1: the acceptance product is 1, NegBin(1, p) is the geometric itself.
        return Ok(geometric(rng, gamma));
    }
    let (c, d) = (u128::from(r.num), u128::from(r.den));
    'proposal: loop {
        let k = geometric(rng, gamma);
        for j in 1..=u128::from(k) {
            // Accept step j with probability (j − 1 + r)/j = ((j−1)d + c)/(jd).
            if !bernoulli(rng, (j - 1) * d + c, j * d) {
                continue 'proposal;
            }
        }
        return Ok(k);
    }
}

#[cfg(test)]
#[path = "sample_tests.rs"]
pub(crate) mod tests;
