#![allow(clippy::unwrap_used, clippy::expect_used)]
//! χ² goodness-of-fit tests for every sampler, with fixed seeds (deterministic) and a critical
//! value at p ≈ 10⁻⁶ (z = 4.75), so a wrong distribution fails and a right one never flakes.

use super::*;
use crate::stats::{chi_square, chi_square_critical};
use rand::SeedableRng;
use rand::rngs::StdRng;

const Z: f64 = 4.75;
const DRAWS: usize = 100_000;

/// Tabulates `draws` samples of `f` over `lo..=hi` (out-of-range values go to the end bins) and
/// asserts χ² fit to `pmf`.
fn assert_fits(name: &str, lo: i64, hi: i64, pmf: impl Fn(i64) -> f64, mut f: impl FnMut() -> i64) {
    let width = (hi - lo + 1) as usize;
    let mut observed = vec![0u64; width];
    for _ in 0..DRAWS {
        let x = f().clamp(lo, hi);
        observed[(x - lo) as usize] += 1;
    }
    let mut probs: Vec<f64> = (lo..=hi).map(&pmf).collect();
    // Fold the tails into the end bins so probabilities sum to 1.
    let inner: f64 = probs.iter().sum();
    let tail = (1.0 - inner).max(0.0);
    probs[0] += tail / 2.0;
    probs[width - 1] += tail / 2.0;
    let (stat, df) = chi_square(&observed, &probs);
    let crit = chi_square_critical(df, Z);
    assert!(stat < crit, "{name}: χ² = {stat:.1} ≥ {crit:.1} (df {df})");
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

#[test]
fn uniform_below_is_uniform_including_large_ranges() {
    let mut r = rng(1);
    assert_fits(
        "uniform 7",
        0,
        6,
        |_| 1.0 / 7.0,
        || uniform_below(&mut r, 7) as i64,
    );
    // Top bits of a >64-bit range: bucket by the high part.
    let n: u128 = 3 << 64;
    let mut r = rng(2);
    assert_fits(
        "uniform 3·2^64",
        0,
        2,
        |_| 1.0 / 3.0,
        || (uniform_below(&mut r, n) >> 64) as i64,
    );
    assert_eq!(uniform_below(&mut r, 1), 0);
}

#[test]
fn bernoulli_exp_matches_exp() {
    for (num, den, seed) in [(1u128, 3u128, 3u64), (5, 2, 4), (0, 1, 5)] {
        let p = (-(num as f64) / den as f64).exp();
        let mut r = rng(seed);
        assert_fits(
            "bernoulli_exp",
            0,
            1,
            |x| if x == 1 { p } else { 1.0 - p },
            || i64::from(bernoulli_exp(&mut r, num, den)),
        );
    }
}

#[test]
fn geometric_matches_pmf() {
    let gamma = Ratio::new(2, 3).unwrap();
    let p = (-2.0f64 / 3.0).exp();
    let mut r = rng(6);
    assert_fits(
        "geometric",
        0,
        30,
        |k| (1.0 - p) * p.powi(k as i32),
        || geometric(&mut r, gamma) as i64,
    );
}

/// P(x) = (1−p)/(1+p) p^|x| with p = e^{−1/scale}.
pub(crate) fn dlap_pmf(scale: f64, x: i64) -> f64 {
    let p = (-1.0 / scale).exp();
    (1.0 - p) / (1.0 + p) * p.powi(x.unsigned_abs() as i32)
}

#[test]
fn discrete_laplace_matches_pmf() {
    for (scale, seed) in [(0.7, 7u64), (3.25, 8), (10.0, 9)] {
        let s = Ratio::from_f64_up("scale", scale).unwrap();
        let span = (scale * 12.0) as i64 + 2;
        let mut r = rng(seed);
        assert_fits(
            "discrete laplace",
            -span,
            span,
            |x| dlap_pmf(scale, x),
            || discrete_laplace(&mut r, s),
        );
    }
}

pub(crate) fn poisson_pmf(lambda: f64, k: i64) -> f64 {
    if k < 0 {
        return 0.0;
    }
    let mut lp = -lambda;
    for i in 1..=k {
        lp += lambda.ln() - (i as f64).ln();
    }
    lp.exp()
}

#[test]
fn poisson_matches_pmf() {
    for (lambda, seed) in [(0.3, 10u64), (3.7, 11), (20.5, 12)] {
        let l = Ratio::from_f64_up("lambda", lambda).unwrap();
        let hi = (lambda + 8.0 * lambda.sqrt() + 8.0) as i64;
        let mut r = rng(seed);
        assert_fits(
            "poisson",
            0,
            hi,
            |k| poisson_pmf(lambda, k),
            || poisson(&mut r, l) as i64,
        );
    }
}

pub(crate) fn negbin_pmf(r: f64, p: f64, k: i64) -> f64 {
    // P(0) = (1−p)^r, P(j+1) = P(j)·(j + r)/(j + 1)·p
    let mut v = (1.0 - p).powf(r);
    for j in 0..k {
        v *= (j as f64 + r) / (j as f64 + 1.0) * p;
    }
    v
}

#[test]
fn negative_binomial_matches_pmf() {
    for (c, d, scale, seed) in [(1u64, 3u64, 2.0, 13u64), (1, 1, 1.5, 14), (2, 5, 0.8, 15)] {
        let r_ = Ratio::new(c, d).unwrap();
        let gamma = Ratio::from_f64_up("scale", scale).unwrap().recip().unwrap();
        let p = (-gamma.to_f64()).exp();
        let rf = c as f64 / d as f64;
        let mut r = rng(seed);
        assert_fits(
            "negbin",
            0,
            40,
            |k| negbin_pmf(rf, p, k),
            || negative_binomial(&mut r, r_, gamma).unwrap() as i64,
        );
    }
    let mut r = rng(0);
    let g = Ratio::new(1, 1).unwrap();
    assert!(negative_binomial(&mut r, Ratio::new(3, 2).unwrap(), g).is_err());
    assert!(negative_binomial(&mut r, Ratio::new(0, 2).unwrap(), g).is_err());
    let one_third = Ratio::new(1, 3).unwrap();
    assert!(negative_binomial(&mut r, one_third, Ratio::new(0, 1).unwrap()).is_err());
}

/// Draws of NegBin(c/d, e^{−1/scale}) against its pmf, over a range whose upper tail is < 10⁻⁷.
fn assert_negbin_fits(c: u64, d: u64, scale: f64, pmf_r: f64, seed: u64) {
    let r_ = Ratio::new(c, d).unwrap();
    let gamma = Ratio::from_f64_up("scale", scale).unwrap().recip().unwrap();
    let p = (-gamma.to_f64()).exp();
    let hi = (16.0 * scale) as i64 + 40;
    let mut r = rng(seed);
    assert_fits(
        &format!("negbin r={c}/{d} scale={scale}"),
        0,
        hi,
        |k| negbin_pmf(pmf_r, p, k),
        || negative_binomial(&mut r, r_, gamma).unwrap() as i64,
    );
}

#[test]
fn negative_binomial_matches_pmf_at_large_scales() {
    // The Pólya shares of n = 10, t = 3 (r = 1/7) at scales 10 and 100; a non-dyadic scale
    // (denominators near 2^32); r close to 1; and many parties (r = 1/50).
    for (c, d, scale, seed) in [
        (1u64, 7u64, 10.0, 20u64),
        (1, 7, 100.0, 21),
        (1, 7, 37.3, 22),
        (5, 6, 100.0, 23),
        (1, 50, 100.0, 24),
    ] {
        assert_negbin_fits(c, d, scale, c as f64 / d as f64, seed);
    }
}

#[test]
fn negative_binomial_with_a_wrong_shape_is_rejected() {
    // NegBin(1/7) at scale 100 must not pass as NegBin(1/6): the test can fail.
    let result = std::panic::catch_unwind(|| assert_negbin_fits(1, 7, 100.0, 1.0 / 6.0, 25));
    assert!(result.is_err());
}

/// The two exact Bernoulli factories the negative binomial is built from.
#[test]
fn bernoulli_factories_match_their_probabilities() {
    let coin = |name: &str, prob: f64, seed: u64, mut f: Box<dyn FnMut(&mut StdRng) -> bool>| {
        let mut r = rng(seed);
        assert_fits(
            name,
            0,
            1,
            |x| if x == 1 { prob } else { 1.0 - prob },
            || i64::from(f(&mut r)),
        );
    };
    // x/(e^x − 1): both branches (x ≤ 1 by geometric proposal, x > 1 by capped Poisson).
    for (num, den, seed) in [(1u128, 10u128, 30u64), (1, 1, 31), (3, 2, 32), (7, 1, 33)] {
        let x = num as f64 / den as f64;
        let f = move |r: &mut StdRng| bernoulli_x_over_expm1(&mut Bits::new(r), num, den);
        coin("x/(e^x − 1)", x / x.exp_m1(), seed, Box::new(f));
    }
    // (1 − e^{−y})/y: both branches (y ≤ 2 by alternating series, y > 2 by product).
    for (num, den, seed) in [(1u128, 3u128, 34u64), (2, 1, 35), (9, 4, 36), (10, 1, 37)] {
        let y = num as f64 / den as f64;
        let f = move |r: &mut StdRng| bernoulli_one_minus_exp_over(&mut Bits::new(r), num, den);
        coin("(1 − e^−y)/y", -(-y).exp_m1() / y, seed, Box::new(f));
    }
}

#[test]
fn capped_poisson_is_the_minimum() {
    // min(Poisson(3.7), 2): P(0), P(1), P(≥ 2).
    let lambda = 3.7;
    let mut r = rng(38);
    assert_fits(
        "min(poisson, 2)",
        0,
        2,
        |k| match k {
            0 | 1 => poisson_pmf(lambda, k),
            _ => 1.0 - poisson_pmf(lambda, 0) - poisson_pmf(lambda, 1),
        },
        || poisson_frac(&mut Bits::new(&mut r), 37, 10, 2) as i64,
    );
}

#[test]
fn a_wrong_distribution_is_rejected() {
    // The harness must be able to fail: discrete Laplace of scale 3.25 against the pmf of 3.5.
    let s = Ratio::from_f64_up("scale", 3.25).unwrap();
    let mut r = rng(16);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_fits(
            "wrong",
            -40,
            40,
            |x| dlap_pmf(3.5, x),
            || discrete_laplace(&mut r, s),
        );
    }));
    assert!(result.is_err());
}

#[test]
fn ratio_rounds_up_and_validates() {
    let r = Ratio::from_f64_up("scale", 0.1).unwrap();
    assert!(r.to_f64() >= 0.1);
    assert_eq!((1u64 << 32) % r.den(), 0);
    assert_eq!(
        Ratio::from_f64_up("scale", 2.5).unwrap(),
        Ratio::new(5, 2).unwrap()
    );
    for bad in [0.0, -1.0, f64::NAN, 1e12] {
        assert!(Ratio::from_f64_up("scale", bad).is_err());
    }
}
