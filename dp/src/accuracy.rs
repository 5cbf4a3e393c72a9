//! 95% accuracy of additive noise, from the noise scale alone (never from the data).
//!
//! A *half-width* `h` means: for the stated distribution, P[|noise| > h] ≤ 5%, so
//! `[released − h, released + h]` covers the un-noised value with probability ≥ 95%.
//!
//! | noise | half-width | source |
//! |---|---|---|
//! | discrete Laplace, P(x) ∝ e^{−\|x\|/s} | s·ln(2/(α(1+e^{1/s})))+1 … (OpenDP `discrete_laplacian_scale_to_accuracy`) | P[\|X\| ≥ t] = 2e^{−t/s}/(1+e^{−1/s}) |
//! | discrete Gaussian σ | smallest t with mass of {\|x\| < t} ≥ 95% (OpenDP `discrete_gaussian_scale_to_accuracy`) | exact sum of the pmf |
//! | continuous Laplace s | s·ln(1/α) | P[\|X\| ≥ t] = e^{−t/s} |
//! | Pólya total NegBin(R,p) − NegBin(R,p) | tabulated | pmf recursion, tails below 10^-16 dropped |
//! | Skellam total Poisson(λ) − Poisson(λ) | tabulated | pmf in log space, tails below 10^-16 dropped |

use crate::error::{DpError, Result};

/// Significance level: all intervals are 95%.
pub const ALPHA: f64 = 0.05;

/// Half-width of the 95% interval of discrete Laplace noise with `scale`.
pub fn discrete_laplace_half_width(scale: f64) -> Result<f64> {
    discrete_laplace_half_width_at(scale, ALPHA)
}

/// Half-width `a` with P[|noise| ≥ a] ≤ `alpha` for discrete Laplace noise with `scale`.
pub fn discrete_laplace_half_width_at(scale: f64, alpha: f64) -> Result<f64> {
    opendp::accuracy::discrete_laplacian_scale_to_accuracy(scale, alpha)
        .map_err(|e| DpError::opendp("accuracy", e))
}

/// Half-width of the 95% interval of discrete Gaussian noise with `sigma`.
pub fn discrete_gaussian_half_width(sigma: f64) -> Result<f64> {
    discrete_gaussian_half_width_at(sigma, ALPHA)
}

/// Half-width `a` with P[|noise| ≥ a] ≤ `alpha` for discrete Gaussian noise with `sigma`.
pub fn discrete_gaussian_half_width_at(sigma: f64, alpha: f64) -> Result<f64> {
    opendp::accuracy::discrete_gaussian_scale_to_accuracy(sigma, alpha)
        .map_err(|e| DpError::opendp("accuracy", e))
}

/// Half-width of the 95% interval of continuous Laplace noise with `scale`.
pub fn laplace_half_width(scale: f64) -> f64 {
    scale * (1.0 / ALPHA).ln()
}

/// Longest pmf table we are willing to build.
const MAX_TABLE: usize = 20_000_000;
/// Tail mass we drop when tabulating.
const TAIL: f64 = 1e-16;

/// pmf of NegBin(r, p) on 0..K, K where the remaining tail is negligible.
fn negbin_table(r: f64, p: f64, scale: f64) -> Result<Vec<f64>> {
    let mut v = (1.0 - p).powf(r);
    let mut out = Vec::new();
    let mode = (r - 1.0).max(0.0) * p / (1.0 - p) + 1.0;
    let mut k = 0.0_f64;
    // Past the mode the pmf decreases with ratio → p, so the remaining tail is ≈ v/(1 − p).
    while k <= mode || v / (1.0 - p) > TAIL {
        out.push(v);
        if out.len() > MAX_TABLE || v.is_nan() {
            return Err(DpError::Accuracy {
                mechanism: "Pólya shares",
                scale,
            });
        }
        v *= (k + r) / (k + 1.0) * p;
        k += 1.0;
    }
    Ok(out)
}

/// pmf of Poisson(λ) on 0..K.
fn poisson_table(lambda: f64) -> Result<Vec<f64>> {
    let hi = lambda + 12.0 * lambda.sqrt() + 40.0;
    if hi > MAX_TABLE as f64 {
        return Err(DpError::Accuracy {
            mechanism: "Skellam shares",
            scale: lambda,
        });
    }
    let ln_l = lambda.ln();
    let mut lp = -lambda;
    let mut out = Vec::with_capacity(hi as usize + 1);
    for k in 0..=(hi as usize) {
        if k > 0 {
            lp += ln_l - (k as f64).ln();
        }
        out.push(lp.exp());
    }
    Ok(out)
}

/// Smallest integer `a` with P[|X − Y| > a] ≤ α for X, Y i.i.d. with pmf `pmf` on 0..len.
fn difference_half_width(pmf: &[f64]) -> f64 {
    let mut cdf = Vec::with_capacity(pmf.len());
    let mut acc = 0.0;
    for p in pmf {
        acc += p;
        cdf.push(acc);
    }
    // P[X − Y > a] = Σ_{x > a} pmf[x] · cdf[x − a − 1]; the two-sided tail is twice that.
    let tail = |a: usize| -> f64 {
        2.0 * pmf
            .iter()
            .enumerate()
            .skip(a + 1)
            .map(|(x, p)| p * cdf[x - a - 1])
            .sum::<f64>()
    };
    let (mut lo, mut hi) = (0usize, pmf.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if tail(mid) <= ALPHA {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo as f64
}

/// Half-width of the 95% interval of NegBin(r, p) − NegBin(r, p), p = e^{−1/scale}: the sum of all
/// Pólya shares when each was drawn with r = 1/(n−t) and all n are present (r_total = n/(n−t)).
pub fn polya_half_width(scale: f64, r_total: f64) -> Result<f64> {
    let p = (-1.0 / scale).exp();
    Ok(difference_half_width(&negbin_table(r_total, p, scale)?))
}

/// Half-width of the 95% interval of Poisson(λ) − Poisson(λ) (Skellam with variance 2λ).
pub fn skellam_half_width(lambda: f64) -> Result<f64> {
    Ok(difference_half_width(&poisson_table(lambda)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn polya_with_one_share_is_discrete_laplace() {
        // r_total = 1: Geom − Geom = discrete Laplace; the tabulated width must match the
        // closed form (OpenDP's is a real number a with P[|X| ≥ a] ≤ α; ours is the integer
        // a' with P[|X| > a'] ≤ α, so a' = ⌈a⌉ − 1).
        for scale in [1.0, 2.5, 10.0, 100.0] {
            let ours = polya_half_width(scale, 1.0).unwrap();
            let closed = discrete_laplace_half_width(scale).unwrap();
            assert_eq!(ours, closed.ceil() - 1.0, "scale {scale}");
        }
    }

    #[test]
    fn known_half_widths() {
        // Laplace(1): ln 20 = 2.9957.
        assert!((laplace_half_width(1.0) - 20f64.ln()).abs() < 1e-12);
        // Skellam with λ = 50 (variance 100, σ = 10): close to the Gaussian 1.96σ.
        let w = skellam_half_width(50.0).unwrap();
        assert!((19.0..=20.0).contains(&w), "{w}");
        // Discrete Gaussian σ = 10: ≈ 1.96σ rounded up.
        let g = discrete_gaussian_half_width(10.0).unwrap();
        assert!((19.0..=21.0).contains(&g), "{g}");
        // More shares than needed (t > 0) means more noise, a wider interval.
        assert!(polya_half_width(5.0, 1.5).unwrap() > polya_half_width(5.0, 1.0).unwrap());
    }
}
