#![allow(clippy::unwrap_used, clippy::expect_used)]
//! χ² tests: the sum of n shares (or of the n − t honest ones) against the target distribution.

use super::*;
use crate::sample::tests::{dlap_pmf, poisson_pmf};
use crate::stats::{chi_square, chi_square_critical};
use rand::rngs::StdRng;

const DRAWS: usize = 60_000;

fn sums(plan: &SharePlan, shares_per_sum: usize, seed: u64) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let flat = plan
        .sample_vector(&mut rng, DRAWS * shares_per_sum)
        .unwrap();
    flat.chunks(shares_per_sum)
        .map(|c| c.iter().sum())
        .collect()
}

fn assert_fits(name: &str, values: &[i64], span: i64, pmf: impl Fn(i64) -> f64) {
    let width = (2 * span + 1) as usize;
    let mut observed = vec![0u64; width];
    for v in values {
        observed[(v.clamp(&-span, &span) + span) as usize] += 1;
    }
    let mut probs: Vec<f64> = (-span..=span).map(pmf).collect();
    let tail = (1.0 - probs.iter().sum::<f64>()).max(0.0);
    probs[0] += tail / 2.0;
    probs[width - 1] += tail / 2.0;
    let (stat, df) = chi_square(&observed, &probs);
    let crit = chi_square_critical(df, 4.75);
    assert!(stat < crit, "{name}: χ² {stat:.1} ≥ {crit:.1} (df {df})");
}

#[test]
fn polya_shares_sum_to_discrete_laplace() {
    for (n, t, scale, seed) in [
        (5u32, 0u32, 2.0, 1u64),
        (4, 1, 3.5, 2),
        (1, 0, 1.0, 3),
        // Large scales, where each share is NegBin(1/7) with p = e^{−1/scale} close to 1.
        (10, 3, 10.0, 11),
        (10, 3, 100.0, 12),
    ] {
        let plan = SharePlan::new(NoiseTarget::DiscreteLaplace { scale }, n, t).unwrap();
        // The n − t honest shares alone must already be exactly discrete Laplace.
        let honest = (n - t) as usize;
        let v = sums(&plan, honest, seed);
        assert_fits("pólya", &v, (scale * 10.0) as i64, |x| dlap_pmf(scale, x));
    }
}

#[test]
fn polya_shares_with_wrong_count_do_not_fit() {
    // Sanity check that the test can fail: 3 shares planned for 5 parties are not DL(2).
    let plan = SharePlan::new(NoiseTarget::DiscreteLaplace { scale: 2.0 }, 5, 0).unwrap();
    let v = sums(&plan, 3, 4);
    let r = std::panic::catch_unwind(|| assert_fits("x", &v, 20, |x| dlap_pmf(2.0, x)));
    assert!(r.is_err());
}

fn skellam_pmf(lambda: f64, x: i64) -> f64 {
    let hi = (lambda + 12.0 * lambda.sqrt() + 30.0) as i64;
    (0..=hi)
        .map(|y| poisson_pmf(lambda, y + x) * poisson_pmf(lambda, y))
        .sum()
}

#[test]
fn skellam_shares_sum_to_skellam() {
    for (n, t, lambda, seed) in [(4u32, 0u32, 6.0, 5u64), (3, 1, 2.5, 6)] {
        let plan = SharePlan::new(NoiseTarget::Skellam { lambda }, n, t).unwrap();
        let v = sums(&plan, (n - t) as usize, seed);
        let span = (8.0 * (2.0 * lambda).sqrt()) as i64 + 3;
        assert_fits("skellam", &v, span, |x| skellam_pmf(lambda, x));
    }
}

#[test]
fn vectors_are_reproducible_per_seed_and_differ_across_seeds() {
    let plan = SharePlan::new(NoiseTarget::DiscreteLaplace { scale: 4.0 }, 3, 0).unwrap();
    let a = plan
        .sample_vector(&mut StdRng::seed_from_u64(9), 10_000)
        .unwrap();
    let b = plan
        .sample_vector(&mut StdRng::seed_from_u64(9), 10_000)
        .unwrap();
    let c = plan
        .sample_vector(&mut StdRng::seed_from_u64(10), 10_000)
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(
        plan.sample_vector(&mut StdRng::seed_from_u64(9), 0)
            .unwrap(),
        Vec::<i64>::new()
    );
}

#[test]
fn invalid_plans_are_typed_errors() {
    let t = NoiseTarget::DiscreteLaplace { scale: 1.0 };
    assert!(matches!(
        SharePlan::new(t, 0, 0),
        Err(DpError::InvalidCount {
            name: "parties",
            ..
        })
    ));
    assert!(matches!(
        SharePlan::new(t, 3, 3),
        Err(DpError::InvalidCount {
            name: "tolerated",
            ..
        })
    ));
    for bad in [0.0, -2.0, f64::NAN, f64::INFINITY] {
        let t = NoiseTarget::DiscreteLaplace { scale: bad };
        assert!(matches!(
            SharePlan::new(t, 3, 0),
            Err(DpError::InvalidParameter { .. })
        ));
    }
}

#[test]
fn guarantees_and_accuracy() {
    let plan = SharePlan::new(NoiseTarget::DiscreteLaplace { scale: 2.0 }, 4, 1).unwrap();
    assert_eq!(plan.pure_epsilon(1).unwrap().get(), 0.5);
    assert!(
        plan.skellam_epsilon(1.0, 1.0, Delta::new(1e-6).unwrap())
            .is_err()
    );
    // All 4 shares present: 4/3 of the DL variance.
    let p = (-0.5f64).exp();
    let dl_var = 2.0 * p / ((1.0 - p) * (1.0 - p));
    assert!((plan.total_variance() - dl_var * 4.0 / 3.0).abs() < 1e-9);
    assert!(plan.total_half_width().unwrap() >= accuracy::polya_half_width(2.0, 1.0).unwrap());

    // Skellam with λ large behaves like a Gaussian of variance 2λ: ε close to the Gaussian's.
    let lambda = 200.0;
    let sk = SharePlan::new(NoiseTarget::Skellam { lambda }, 2, 0).unwrap();
    let d = Delta::new(1e-6).unwrap();
    let eps = sk.skellam_epsilon(1.0, 1.0, d).unwrap().get();
    let rho = 1.0 / (2.0 * 2.0 * lambda);
    let gauss = crate::cost::rho_to_epsilon(crate::params::Rho::new(rho).unwrap(), d)
        .unwrap()
        .get();
    assert!(eps > gauss && eps < 1.5 * gauss, "{eps} vs {gauss}");
    assert!(sk.pure_epsilon(1).is_err());
}
