//! Statistical helpers for testing samplers and auditing releases.
//!
//! Used by this crate's χ² sampler tests and empirical privacy audits, and usable by an auditor
//! who wants to re-run them against a deployed node. Plain `f64` numerics: these judge outputs,
//! they never produce noise.

/// Pearson's χ² statistic of observed counts against expected probabilities. Bins whose expected
/// count is below 5 are merged into their neighbour (left to right) first. Returns
/// `(statistic, degrees_of_freedom)`.
pub fn chi_square(observed: &[u64], probabilities: &[f64]) -> (f64, usize) {
    let n: u64 = observed.iter().sum();
    let n = n as f64;
    let mut merged: Vec<(f64, f64)> = Vec::new();
    let (mut o_acc, mut e_acc) = (0.0, 0.0);
    for (o, p) in observed.iter().zip(probabilities) {
        o_acc += *o as f64;
        e_acc += p * n;
        if e_acc >= 5.0 {
            merged.push((o_acc, e_acc));
            (o_acc, e_acc) = (0.0, 0.0);
        }
    }
    if e_acc > 0.0 || o_acc > 0.0 {
        match merged.last_mut() {
            Some(last) => {
                last.0 += o_acc;
                last.1 += e_acc;
            }
            None => merged.push((o_acc, e_acc)),
        }
    }
    let stat = merged.iter().map(|(o, e)| (o - e) * (o - e) / e).sum();
    (stat, merged.len().saturating_sub(1))
}

/// Upper critical value of χ²(df) for a one-sided normal quantile `z` (e.g. z = 4.75 for
/// p ≈ 10⁻⁶), by the Wilson–Hilferty approximation (accurate to a few % for df ≥ 3).
pub fn chi_square_critical(df: usize, z: f64) -> f64 {
    let k = df.max(1) as f64;
    let h = 2.0 / (9.0 * k);
    k * (1.0 - h + z * h.sqrt()).powi(3)
}

/// ln(n!) by summation, exact to rounding for the sizes used here (n ≤ a few million).
fn ln_factorials(n: u64) -> Vec<f64> {
    let mut v = Vec::with_capacity(n as usize + 1);
    let mut acc = 0.0;
    v.push(0.0);
    for i in 1..=n {
        acc += (i as f64).ln();
        v.push(acc);
    }
    v
}

/// P[Bin(n, p) ≤ k].
fn binomial_cdf(k: u64, n: u64, p: f64, lf: &[f64]) -> f64 {
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return if k >= n { 1.0 } else { 0.0 };
    }
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    (0..=k.min(n))
        .map(|i| {
            let (i_, n_) = (i as usize, n as usize);
            (lf[n_] - lf[i_] - lf[n_ - i_] + i as f64 * lp + (n - i) as f64 * lq).exp()
        })
        .sum::<f64>()
        .min(1.0)
}

/// Two-sided Clopper–Pearson interval for a binomial proportion with `successes` out of `trials`
/// at confidence `1 − alpha`: each side holds with probability ≥ 1 − alpha/2.
pub fn clopper_pearson(successes: u64, trials: u64, alpha: f64) -> (f64, f64) {
    let lf = ln_factorials(trials);
    let half = alpha / 2.0;
    // Lower: largest p with P[Bin ≥ k] ≤ α/2, i.e. 1 − cdf(k−1) ≤ α/2.
    let lower = if successes == 0 {
        0.0
    } else {
        bisect(|p| 1.0 - binomial_cdf(successes - 1, trials, p, &lf) <= half)
    };
    // Upper: smallest p with P[Bin ≤ k] ≤ α/2.
    let upper = if successes == trials {
        1.0
    } else {
        bisect(|p| binomial_cdf(successes, trials, p, &lf) > half)
    };
    (lower, upper)
}

/// The boundary of a monotone predicate on [0, 1] (true below the boundary).
fn bisect(below: impl Fn(f64) -> bool) -> f64 {
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if below(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// A high-confidence lower bound on ε from an event's frequencies on two neighbouring datasets.
///
/// With `k1` of `n` runs on D and `k2` of `n` runs on D′ hitting the event E, ε-DP implies
/// P[E|D] ≤ e^ε P[E|D′]; so ln(lower_CP(k1) / upper_CP(k2)) is a lower bound on the true ε
/// with confidence ≥ 1 − alpha (each interval side at α/2). Returns 0 when the bound is vacuous.
pub fn epsilon_lower_bound(k1: u64, k2: u64, n: u64, alpha: f64) -> f64 {
    let (p1_low, _) = clopper_pearson(k1, n, alpha);
    let (_, p2_high) = clopper_pearson(k2, n, alpha);
    if p1_low <= 0.0 || p2_high <= 0.0 {
        return 0.0;
    }
    (p1_low / p2_high).ln().max(0.0)
}

/// [`epsilon_lower_bound`] from the outputs of runs on two neighbouring datasets (`with` and
/// `without` one individual, as many runs each), for the threshold events `{x ≥ threshold}`
/// and `{x < threshold}`, each read both ways round: the largest of the bounds. Each interval
/// side holds with probability ≥ 1 − alpha/2.
pub fn threshold_epsilon_lower_bound(
    with: &[f64],
    without: &[f64],
    threshold: f64,
    alpha: f64,
) -> f64 {
    let n = with.len().min(without.len()) as u64;
    let above = |xs: &[f64]| {
        xs.iter()
            .take(n as usize)
            .filter(|&&x| x >= threshold)
            .count() as u64
    };
    let (a1, a0) = (above(with), above(without));
    epsilon_lower_bound(a1, a0, n, alpha).max(epsilon_lower_bound(n - a0, n - a1, n, alpha))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_known_values() {
        // R: binom.test(5, 20)$conf.int = 0.08657147 0.49104587
        let (lo, hi) = clopper_pearson(5, 20, 0.05);
        assert!((lo - 0.08657147).abs() < 1e-6, "{lo}");
        assert!((hi - 0.49104587).abs() < 1e-6, "{hi}");
        let (lo, hi) = clopper_pearson(0, 10, 0.05);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.3084971).abs() < 1e-6, "{hi}");
    }

    #[test]
    fn chi_square_critical_is_close_to_tables() {
        // χ²(10) upper 0.1% point is 29.588; z(0.001) = 3.0902.
        assert!((chi_square_critical(10, 3.0902) - 29.588).abs() < 0.3);
    }

    #[test]
    fn chi_square_merges_sparse_bins() {
        let (stat, df) = chi_square(&[50, 50, 0], &[0.5, 0.4999, 0.0001]);
        assert_eq!(df, 1);
        assert!(stat < 1e-2);
    }

    #[test]
    fn epsilon_bound_detects_gap() {
        // P[E|D] = 0.5, P[E|D'] = 0.1 over 10_000 runs: true ln 5 = 1.61.
        let eps = epsilon_lower_bound(5000, 1000, 10_000, 1e-6);
        assert!(eps > 1.3 && eps < 1.61, "{eps}");
        assert_eq!(epsilon_lower_bound(0, 0, 100, 0.05), 0.0);
    }
}
