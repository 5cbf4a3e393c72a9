//! Exact integer samplers driven by an injected CSPRNG.
//!
//! Every sampler here takes `&mut R where R: CryptoRng` and uses only uniform integers drawn by
//! rejection (no floating point anywhere), so each output has *exactly* the stated distribution
//! for the stated rational parameters, assuming the RNG's output bits are uniform. They are
//! variable-time (the number of draws depends on the output); the outputs are noise, not keys,
//! and the timing reveals at most the noise magnitude to a local observer — hence `vartime` is
//! not in the names but is stated here. Each call reads the RNG through a private bit buffer, so
//! a uniform draw below n consumes ⌈log₂ n⌉ bits rather than a whole `u64` (see `Bits`).
//!
//! | sampler | distribution | method | expected cost (uniform draws) |
//! |---|---|---|---|
//! | [`uniform_below`] | uniform on {0..n−1} | mask + reject | < 2 |
//! | [`bernoulli`] | Bernoulli(num/den) | uniform comparison | < 2 |
//! | [`bernoulli_exp`] | Bernoulli(exp(−γ)), γ rational | CKS20 Alg. 1 | O(1 + γ) |
//! | [`geometric`] | P(k) ∝ exp(−γk), k ≥ 0 | CKS20 Alg. 2 inner loop | O(1) |
//! | [`discrete_laplace`] | P(x) ∝ exp(−\|x\|/scale) | CKS20 Alg. 2 | O(1) |
//! | [`poisson`] | Poisson(λ), λ rational | pieces λ/m ≤ ½, each: K ~ Geom(λ/m), accept w.p. 1/K! | O(1 + λ) |
//! | [`negative_binomial`] | NegBin(r, e^{−γ}), r ≤ 1 rational | thinned compound Poisson, below | O(1 + r·log₂(1/γ)) |
//!
//! CKS20 = Canonne, Kamath, Steinke, *The Discrete Gaussian for Differential Privacy*, NeurIPS 2020.
//!
//! The Poisson piece: P(K = k) = (1−λ)λ^k, accepted with probability 1/k!, gives P(k) ∝ λ^k/k!,
//! i.e. Poisson(λ); acceptance is (1−λ)e^λ ≥ 0.82 for λ ≤ ½.
//!
//! # Negative binomial with fractional shape
//! NegBin(r, p), P(k) = C(k+r−1, k)(1−p)^r p^k, is compound Poisson (Quenouille 1949): it is the
//! sum of the values of the points of a Poisson process on {1, 2, …} with intensity
//! ν(k) = r·p^k/k, since then E[z^X] = exp(Σ_k ν(k)(z^k − 1)) = ((1−p)/(1−pz))^r. (The usual form
//! is Poisson(r·ln(1/(1−p))) many Logarithmic(p) jumps; both the Poisson mean and the logarithmic
//! law are irrational, so we never sample them directly.) With p = e^{−γ},
//! ν(k) = r∫_γ^∞ e^{−kt} dt, and the t-axis is cut into the dyadic pieces [γ2^i, γ2^{i+1}) for
//! i < I, where I is the least integer with T = γ2^I ≥ 1, and the tail [T, ∞). Each part is
//! sampled by thinning (Lewis–Shedler 1979) a dominating process whose parameters are rational or
//! e^{−rational}:
//!
//! | part | its intensity ν_part(k) | dominating intensity | kept with probability |
//! |---|---|---|---|
//! | piece [t, 2t) | r·e^{−kt}(1 − e^{−kt})/k | r·t·e^{−kt} = r·[t/(e^t−1)]·(1−e^{−t})e^{−(k−1)t} | (1 − e^{−kt})/(kt) |
//! | tail [T, ∞) | r·e^{−kT}/k | r·e^{−kT} = r·[1/T]·[T/(e^T−1)]·(1−e^{−T})e^{−(k−1)T} | 1/k |
//!
//! Reading the dominating column left to right gives the sampler: each part gets Poisson(r)
//! candidates (rational mean; all I + 1 parts at once as Poisson(r(I+1)) with a uniform part
//! each), a candidate survives the factor [1/T] (rational) and the factor [x/(e^x − 1)] (an exact
//! Bernoulli: the probability that Poisson(x) is 1 given that it is at least 1), its value is
//! k = 1 + Geom(e^{−t}) (the exact [`geometric`]), and it is kept with the last column's
//! probability, an exact Bernoulli too ((1 − e^{−y})/y by CKS20's alternating-series argument).
//! By Poisson thinning and superposition, the kept points form independent Poisson processes with
//! intensities ν_part, which add up to ν, so the sum of their values is *exactly* NegBin(r, e^{−γ})
//! for the given rational r and γ — no further rounding than the caller's (the share plans round
//! the scale up to 2^-32).
//!
//! *Cost.* Poisson(r(I+1)) candidates, each O(1) draws, with I = ⌈log₂(1/γ)⌉ ≈ log₂(scale):
//! e.g. r = 1/7 gives ≈ 0.71 candidates at scale 10 and 1.14 at scale 100. About half of them
//! are kept (a piece keeps a fraction ln(1 + e^{−t}) ∈ [0.31, 0.69] of its Poisson(r) candidates,
//! the tail 1/(e^T − 1) ∈ [0.16, 0.58] for γ < 1), so the work is within a small constant of the
//! r·ln(1/(1−p)) jumps that any compound-Poisson sampler draws. The previous sampler (rejection
//! from Geom(p), acceptance (1−p)^{1−r}) needed ≈ scale^{1−r} proposals: 7 at scale 10 and 52 at
//! scale 100 for r = 1/7.
//!
//! References: M. H. Quenouille, *A relation between the logarithmic, Poisson, and negative
//! binomial series*, Biometrics 5 (1949) 162–164; P. A. W. Lewis and G. S. Shedler, *Simulation of
//! nonhomogeneous Poisson processes by thinning*, Naval Res. Logistics Quarterly 26 (1979) 403–413;
//! A. W. Kemp, *Efficient generation of logarithmically distributed pseudo-random variables*,
//! Applied Statistics 30 (1981) 249–253 (the same integral ∫ e^{−kt} dt, there sampled in floats).

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
    uniform_below_in(&mut Bits::new(rng), n)
}

/// Uniform bits from the caller's RNG, buffered: one `u64` serves several small draws.
///
/// Most draws here need a handful of bits (a Bernoulli(2/j) needs ⌈log₂ j⌉), so taking a whole
/// `u64` per draw would spend most of the time in the CSPRNG. Each public sampler wraps its RNG
/// in one `Bits` for the whole call; bits left in the buffer at the end are dropped. The bits
/// handed out are disjoint pieces of the RNG's output, so they are independent and uniform
/// whenever the RNG's bits are, and exactness is unchanged.
struct Bits<'a, R: ?Sized> {
    rng: &'a mut R,
    word: u64,
    left: u32,
}

impl<'a, R: CryptoRng + ?Sized> Bits<'a, R> {
    fn new(rng: &'a mut R) -> Self {
        Self {
            rng,
            word: 0,
            left: 0,
        }
    }

    /// `k ≤ 64` fresh uniform bits, in the low bits of the result (a whole new word for k = 64).
    /// When fewer than `k` are left, they are dropped and a new word is drawn.
    fn take(&mut self, k: u32) -> u64 {
        if k >= 64 {
            return self.rng.next_u64();
        }
        if self.left < k {
            self.word = self.rng.next_u64();
            self.left = 64;
        }
        let x = self.word & ((1u64 << k) - 1);
        self.word >>= k;
        self.left -= k;
        x
    }
}

/// [`uniform_below`] drawing from a shared [`Bits`] buffer.
fn uniform_below_in<R: CryptoRng + ?Sized>(rng: &mut Bits<'_, R>, n: u128) -> u128 {
    if n <= 1 {
        return 0;
    }
    if let Ok(n) = u64::try_from(n) {
        // The common case, in 64-bit arithmetic.
        let bits = 64 - (n - 1).leading_zeros();
        loop {
            let x = rng.take(bits);
            if x < n {
                return u128::from(x);
            }
        }
    }
    let bits = 128 - (n - 1).leading_zeros();
    loop {
        let x = if bits <= 64 {
            u128::from(rng.take(bits))
        } else {
            let hi = u128::from(rng.take(bits - 64));
            (hi << 64) | u128::from(rng.take(64))
        };
        if x < n {
            return x;
        }
    }
}

/// Bernoulli(num/den), exactly. Requires `den > 0`; `num ≥ den` always returns `true`.
pub fn bernoulli<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    bernoulli_in(&mut Bits::new(rng), num, den)
}

/// [`bernoulli`] drawing from a shared [`Bits`] buffer.
fn bernoulli_in<R: CryptoRng + ?Sized>(rng: &mut Bits<'_, R>, num: u128, den: u128) -> bool {
    uniform_below_in(rng, den) < num
}

/// Bernoulli(exp(−num/den)) for `num/den ∈ [0, 1]` (CKS20 Algorithm 1): draw A_k ~ Bernoulli(γ/k)
/// for k = 1, 2, … until the first 0 at K; output K odd. P(K odd) = Σ (−γ)^j/j! = e^{−γ}.
fn bernoulli_exp_unit<R: CryptoRng + ?Sized>(rng: &mut Bits<'_, R>, num: u128, den: u128) -> bool {
    let mut k: u128 = 1;
    while bernoulli_in(rng, num, den.saturating_mul(k)) {
        k += 1;
    }
    k % 2 == 1
}

/// Bernoulli(exp(−num/den)) for any rational γ = num/den ≥ 0, exactly: e^{−γ} = (e^{−1})^⌊γ⌋·e^{−frac(γ)}.
pub fn bernoulli_exp<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    bernoulli_exp_in(&mut Bits::new(rng), num, den)
}

/// [`bernoulli_exp`] drawing from a shared [`Bits`] buffer.
fn bernoulli_exp_in<R: CryptoRng + ?Sized>(rng: &mut Bits<'_, R>, num: u128, den: u128) -> bool {
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
    geometric_in(&mut Bits::new(rng), gamma)
}

/// [`geometric`] drawing from a shared [`Bits`] buffer.
fn geometric_in<R: CryptoRng + ?Sized>(rng: &mut Bits<'_, R>, gamma: Ratio) -> u64 {
    geometric_frac(rng, u128::from(gamma.num), u128::from(gamma.den))
}

/// [`geometric`] for γ = s/t with s > 0 and t < 2^100 (so that t·V cannot overflow).
fn geometric_frac<R: CryptoRng + ?Sized>(rng: &mut Bits<'_, R>, s: u128, t: u128) -> u64 {
    loop {
        let u = uniform_below_in(rng, t);
        if !bernoulli_exp_in(rng, u, t) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp_unit(rng, 1, 1) {
            v += 1;
        }
        let x = u + t * v;
        // Cannot exceed u64 in practice (needs ~2^64·s/t draws of probability e^{−γ·2^64}); saturate.
        return match (u64::try_from(x), u64::try_from(s)) {
            (Ok(x), Ok(s)) => x / s,
            _ => u64::try_from(x / s).unwrap_or(u64::MAX),
        };
    }
}

/// Discrete Laplace on ℤ with P(x) ∝ exp(−|x|/scale) (CKS20 Algorithm 2).
///
/// Variance 2p/(1−p)² with p = e^{−1/scale}. Two draws of [`geometric`] would also work; this form
/// rejects the duplicate zero instead.
pub fn discrete_laplace<R: CryptoRng + ?Sized>(rng: &mut R, scale: Ratio) -> i64 {
    discrete_laplace_in(&mut Bits::new(rng), scale)
}

/// [`discrete_laplace`] drawing from a shared [`Bits`] buffer.
fn discrete_laplace_in<R: CryptoRng + ?Sized>(rng: &mut Bits<'_, R>, scale: Ratio) -> i64 {
    // γ = 1/scale; scale > 0 is guaranteed by `Ratio::from_f64_up`, and a zero numerator is
    // rejected by `recip`, so fall back to a point mass only if a caller built Ratio(0, d) directly.
    let Ok(gamma) = scale.recip() else { return 0 };
    loop {
        let negative = bernoulli_in(rng, 1, 2);
        let y = geometric_in(rng, gamma);
        if negative && y == 0 {
            continue;
        }
        let y = i64::try_from(y).unwrap_or(i64::MAX);
        return if negative { -y } else { y };
    }
}

/// Poisson(λ) for rational λ, exactly (see the module docs for the method).
pub fn poisson<R: CryptoRng + ?Sized>(rng: &mut R, lambda: Ratio) -> u64 {
    poisson_in(&mut Bits::new(rng), lambda)
}

/// [`poisson`] drawing from a shared [`Bits`] buffer.
fn poisson_in<R: CryptoRng + ?Sized>(rng: &mut Bits<'_, R>, lambda: Ratio) -> u64 {
    poisson_frac(
        rng,
        u128::from(lambda.num),
        u128::from(lambda.den),
        u64::MAX,
    )
}

/// min(Poisson(a/b), cap), exactly, for a < 2^100 and 0 < b < 2^64. Stops summing pieces as soon
/// as the total reaches `cap`, which does not change the law of the minimum and makes a small cap
/// cost O(cap) pieces in expectation whatever λ is.
fn poisson_frac<R: CryptoRng + ?Sized>(rng: &mut Bits<'_, R>, a: u128, b: u128, cap: u64) -> u64 {
    // Split into m pieces of λ/m ≤ 1/2: m = ⌈2a/b⌉, so m·b ≤ 2a + b fits.
    let pieces = match (u64::try_from(2 * a), u64::try_from(b)) {
        (Ok(a2), Ok(b)) => u128::from(a2.div_ceil(b)),
        _ => (2 * a).div_ceil(b),
    }
    .max(1);
    let piece_den = b * pieces;
    let mut total: u64 = 0;
    for _ in 0..pieces {
        total = total.saturating_add(poisson_small(rng, a, piece_den));
        if total >= cap {
            return cap;
        }
    }
    total
}

/// Poisson(num/den) for num/den ≤ 1/2.
fn poisson_small<R: CryptoRng + ?Sized>(rng: &mut Bits<'_, R>, num: u128, den: u128) -> u64 {
    'proposal: loop {
        let mut k: u64 = 0;
        while bernoulli_in(rng, num, den) {
            k += 1;
        }
        for j in 2..=u128::from(k) {
            if !bernoulli_in(rng, 1, j) {
                continue 'proposal;
            }
        }
        return k;
    }
}

/// NegBin(r, p) with P(k) = C(k+r−1, k)(1−p)^r p^k, for r = `r` ≤ 1 and p = e^{−γ}, exactly.
///
/// Samples the points of a Poisson process on {1, 2, …} with intensity ν(k) = r·p^k/k and returns
/// the sum of their values (see the module docs for the method, its exactness and its cost).
/// Errors if r > 1, r = 0 or γ = 0 (p = 1 has no negative binomial).
pub fn negative_binomial<R: CryptoRng + ?Sized>(
    rng: &mut R,
    r: Ratio,
    gamma: Ratio,
) -> Result<u64> {
    negative_binomial_in(&mut Bits::new(rng), r, gamma)
}

/// [`negative_binomial`] drawing from a shared [`Bits`] buffer.
fn negative_binomial_in<R: CryptoRng + ?Sized>(
    rng: &mut Bits<'_, R>,
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
    if gamma.num == 0 {
        return Err(DpError::InvalidParameter {
            name: "negative binomial γ",
            value: 0.0,
            expected: "> 0",
        });
    }
    if r.num == r.den {
        // r = 1: NegBin(1, p) is the geometric itself.
        return Ok(geometric_in(rng, gamma));
    }
    let (c, d) = (u128::from(r.num), u128::from(r.den));
    let (g, h) = (u128::from(gamma.num), u128::from(gamma.den));
    // Pieces [γ2^i, γ2^{i+1}) for i < I, where I is the least with γ2^I ≥ 1 (I ≤ 64 as γ ≥ 2^-64),
    // then the tail [T, ∞) with T = γ2^I. Every t = g2^i/h below has g2^i < 2h < 2^65.
    let mut pieces: u32 = 0;
    while (g << pieces) < h {
        pieces += 1;
    }
    // Candidates of all I + 1 slots at once: Poisson(r(I + 1)), each in a uniform slot, is the same
    // as an independent Poisson(r) per slot and takes fewer draws.
    let slots = u128::from(pieces) + 1;
    let candidates = poisson_frac(rng, c * slots, d, u64::MAX);
    let mut total: u64 = 0;
    for _ in 0..candidates {
        let slot = uniform_below_in(rng, slots);
        // slot ≤ I ≤ 64, and g·2^slot < 2^65, so the shift fits.
        let t_num = g << slot;
        let point = if slot < u128::from(pieces) {
            piece_point(rng, t_num, h)
        } else {
            tail_point(rng, t_num, h)
        };
        total = total.saturating_add(point.unwrap_or(0));
    }
    Ok(total)
}

/// A candidate of the piece [t, 2t), t = t_num/t_den < 1: dominating intensity r·t·e^{−kt}, kept
/// with probability ν_piece(k)/(r·t·e^{−kt}) = (1 − e^{−kt})/(kt). Returns the kept point's value.
fn piece_point<R: CryptoRng + ?Sized>(
    rng: &mut Bits<'_, R>,
    t_num: u128,
    t_den: u128,
) -> Option<u64> {
    // The candidate mass per piece is r; the dominating mass is r·t/(e^t − 1): thin by t/(e^t − 1).
    if !bernoulli_x_over_expm1(rng, t_num, t_den) {
        return None;
    }
    let k = geometric_frac(rng, t_num, t_den).saturating_add(1);
    // k < 2^64 and t_num < 2^64 (t < 1 and t_den < 2^64), so k·t_num < 2^128.
    let kt_num = u128::from(k) * t_num;
    bernoulli_one_minus_exp_over(rng, kt_num, t_den).then_some(k)
}

/// A candidate of the tail [T, ∞), T = t_num/t_den ≥ 1: dominating intensity r·e^{−kT} of mass
/// r/(e^T − 1) = (r/T)·T/(e^T − 1), kept with probability ν_tail(k)/(r·e^{−kT}) = 1/k.
fn tail_point<R: CryptoRng + ?Sized>(
    rng: &mut Bits<'_, R>,
    t_num: u128,
    t_den: u128,
) -> Option<u64> {
    if !bernoulli_in(rng, t_den, t_num) || !bernoulli_x_over_expm1(rng, t_num, t_den) {
        return None;
    }
    let k = geometric_frac(rng, t_num, t_den).saturating_add(1);
    bernoulli_in(rng, 1, u128::from(k)).then_some(k)
}

/// Bernoulli(x/(e^x − 1)) for rational x = num/den > 0, exactly.
///
/// x/(e^x − 1) = P(N = 1 | N ≥ 1) for N ~ Poisson(x). For x ≤ 1, N | N ≥ 1 is drawn by rejection
/// from the proposal n = 1 + Geom(x/2) (P ∝ (x/2)^{n−1}), accepted with probability
/// 2^{n−1}/n! = Π_{j=2}^{n} 2/j, which gives P(n) ∝ x^n/n!; acceptance ≥ (1 − x/2)(e^x − 1)/x ≥ ½.
/// For x > 1, draw N ~ Poisson(x) until N ≥ 1 (probability 1 − e^{−x} ≥ 0.63), only telling
/// 0, 1 and "2 or more" apart, which stops after O(1) pieces of the Poisson sampler.
fn bernoulli_x_over_expm1<R: CryptoRng + ?Sized>(
    rng: &mut Bits<'_, R>,
    num: u128,
    den: u128,
) -> bool {
    if num <= den {
        'proposal: loop {
            let mut n: u128 = 1;
            while bernoulli_in(rng, num, 2 * den) {
                n += 1;
                if !bernoulli_in(rng, 2, n) {
                    continue 'proposal;
                }
            }
            return n == 1;
        }
    }
    loop {
        match poisson_frac(rng, num, den, 2) {
            0 => continue,
            n => return n == 1,
        }
    }
}

/// Bernoulli((1 − e^{−y})/y) for rational y = num/den > 0, exactly.
///
/// For y ≤ 2 (the CKS20 Algorithm 1 argument with one more factorial): draw
/// A_j ~ Bernoulli(y/(j+1)) for j = 1, 2, … until the first 0 at J; P(A_1 = … = A_j = 1) =
/// y^j/(j+1)!, so P(J odd) = Σ_j (−y)^j/(j+1)! = (1 − e^{−y})/y. For y > 2 it is the product of
/// Bernoulli(1/y) and 1 − Bernoulli(e^{−y}).
fn bernoulli_one_minus_exp_over<R: CryptoRng + ?Sized>(
    rng: &mut Bits<'_, R>,
    num: u128,
    den: u128,
) -> bool {
    if num > den.saturating_mul(2) {
        return bernoulli_in(rng, den, num) && !bernoulli_exp_in(rng, num, den);
    }
    let mut j: u128 = 1;
    while bernoulli_in(rng, num, den.saturating_mul(j + 1)) {
        j += 1;
    }
    j % 2 == 1
}

#[cfg(test)]
#[path = "sample_tests.rs"]
pub(crate) mod tests;
