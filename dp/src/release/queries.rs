//! The release functions. Each states its guarantee and accuracy next to its code.

use super::{Accuracy, Contributions, Mechanism, NoiseSpec, Release, calibrate, odp};
use crate::accuracy;
use crate::cost::PrivacyCost;
use crate::error::{DpError, Result};
use crate::params::{Delta, Epsilon};
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{
    make_gaussian, make_laplace, make_laplace_threshold, make_private_quantile,
};
use opendp::measures::{Approximate, MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{AbsoluteDistance, L1Distance, L2Distance, SymmetricDistance};
use opendp::transformations::{
    make_clamp, make_count, make_count_by, make_count_by_categories, make_sum,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// Adds calibrated discrete noise to one integer whose sensitivity is `sensitivity`.
///
/// Guarantee: discrete Laplace with scale s = Δ/ε is ε-DP (GRS12; CKS20 §5.2); discrete Gaussian
/// with σ = Δ/√(2ρ) is ρ-zCDP (CKS20 Thm 4). Accuracy: [`accuracy::discrete_laplace_half_width`]
/// / [`accuracy::discrete_gaussian_half_width`] of the scale, at `alpha`.
fn noise_scalar(
    value: i64,
    sensitivity: i64,
    spec: NoiseSpec,
    alpha: f64,
) -> Result<(Release<i64>, f64)> {
    let dom = AtomDomain::<i64>::default();
    let met = AbsoluteDistance::<i64>::default();
    let (noised, mechanism, scale, achieved, half) = match spec {
        NoiseSpec::Laplace(_) => {
            let build = |s: f64| {
                odp(
                    "build",
                    make_laplace::<_, _, MaxDivergence>(dom.clone(), met.clone(), s, None),
                )
            };
            let (scale, achieved) = calibrate(spec, |s| odp("map", build(s)?.map(&sensitivity)))?;
            let noised = odp("invoke", build(scale)?.invoke(&value))?;
            let half = accuracy::discrete_laplace_half_width_at(scale, alpha)?;
            (noised, Mechanism::DiscreteLaplace, scale, achieved, half)
        }
        NoiseSpec::Gaussian(_) => {
            let build = |s: f64| {
                odp(
                    "build",
                    make_gaussian::<_, _, ZeroConcentratedDivergence>(
                        dom.clone(),
                        met.clone(),
                        s,
                        None,
                    ),
                )
            };
            let (scale, achieved) = calibrate(spec, |s| odp("map", build(s)?.map(&sensitivity)))?;
            let noised = odp("invoke", build(scale)?.invoke(&value))?;
            let half = accuracy::discrete_gaussian_half_width_at(scale, alpha)?;
            (noised, Mechanism::DiscreteGaussian, scale, achieved, half)
        }
    };
    let release = Release {
        value: noised,
        mechanism,
        scale,
        cost: spec.cost(achieved)?,
        accuracy: Accuracy::Interval {
            lower: noised as f64 - half,
            upper: noised as f64 + half,
        },
    };
    Ok((release, half))
}

/// Noisy number of rows.
///
/// Sensitivity: OpenDP's `make_count` is 1-stable, so k rows per individual give Δ = k.
/// Guarantee and accuracy: see `noise_scalar` (ε-DP or ρ-zCDP; 95% interval from the scale).
pub fn count<V>(data: &Contributions<V>, spec: NoiseSpec) -> Result<Release<i64>> {
    count_at(data, spec, accuracy::ALPHA).map(|(r, _)| r)
}

/// Noisy release of a count computed elsewhere (a PSI cardinality held by the comparing party),
/// where one individual changes the count by at most 1.
///
/// Guarantee and accuracy: as [`count`] with one row per individual (Δ = 1), see `noise_scalar`.
pub fn count_of(exact: u64, spec: NoiseSpec) -> Result<Release<i64>> {
    let exact = i64::try_from(exact).map_err(|_| DpError::InvalidCount {
        name: "count",
        value: exact,
        expected: "at most 2^63 - 1",
    })?;
    noise_scalar(exact, 1, spec, accuracy::ALPHA).map(|(r, _)| r)
}

fn count_at<V>(
    data: &Contributions<V>,
    spec: NoiseSpec,
    alpha: f64,
) -> Result<(Release<i64>, f64)> {
    let t = odp(
        "build",
        make_count::<u8, i64>(VectorDomain::new(AtomDomain::default()), SymmetricDistance),
    )?;
    // The count only depends on the number of rows; OpenDP's count takes a vector of atoms.
    let exact = odp("invoke", t.invoke(&vec![0u8; data.values.len()]))?;
    let sensitivity = odp("map", t.map(&data.max_rows))?;
    noise_scalar(exact, sensitivity, spec, alpha)
}

fn check_bounds(bounds: (i64, i64)) -> Result<()> {
    if bounds.0 > bounds.1 {
        return Err(DpError::InvalidBounds {
            lower: bounds.0,
            upper: bounds.1,
        });
    }
    Ok(())
}

/// Noisy sum of values clamped to `bounds = (lower, upper)`.
///
/// Sensitivity: with clamping and an unknown row count, OpenDP's `make_sum` has
/// Δ = k·max(|lower|, |upper|) for k rows per individual (saturating arithmetic, no overflow).
/// Guarantee and accuracy: see `noise_scalar`.
pub fn sum(data: &Contributions<i64>, bounds: (i64, i64), spec: NoiseSpec) -> Result<Release<i64>> {
    sum_at(data, bounds, spec, accuracy::ALPHA).map(|(r, _)| r)
}

fn sum_at(
    data: &Contributions<i64>,
    bounds: (i64, i64),
    spec: NoiseSpec,
    alpha: f64,
) -> Result<(Release<i64>, f64)> {
    check_bounds(bounds)?;
    let clamp = odp(
        "build",
        make_clamp(
            VectorDomain::new(AtomDomain::<i64>::default()),
            SymmetricDistance,
            bounds,
        ),
    )?;
    let summer = odp(
        "build",
        make_sum(clamp.output_domain.clone(), clamp.output_metric.clone()),
    )?;
    let t = odp("build", clamp >> summer)?;
    let exact = odp("invoke", t.invoke(&data.values))?;
    let sensitivity = odp("map", t.map(&data.max_rows))?;
    noise_scalar(exact, sensitivity, spec, alpha)
}

/// A noisy mean and the two releases it was computed from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeanRelease {
    /// The mean estimate, clamped to the bounds (the midpoint if the noisy count is ≤ 0).
    pub mean: f64,
    /// 95% interval for the true mean of the clamped values.
    pub accuracy: Accuracy,
    /// Total cost (sum + count).
    pub cost: PrivacyCost,
    /// The noisy clamped sum (half the budget).
    pub sum: Release<i64>,
    /// The noisy count (half the budget).
    pub count: Release<i64>,
}

/// Noisy mean = noisy clamped sum / noisy count, each with half the budget.
///
/// Guarantee: sequential composition of the two halves (ε/2 + ε/2, or ρ/2 + ρ/2).
/// Accuracy: each part's half-width is taken at 97.5%, so with probability ≥ 95% (union bound)
/// S ∈ [S̃ ± a_S] and C ∈ [C̃ ± a_C]; S/C over that box (C ≥ 1) is extreme at its corners, and
/// the interval is intersected with the bounds (the mean of clamped values lies in them).
pub fn mean(data: &Contributions<i64>, bounds: (i64, i64), spec: NoiseSpec) -> Result<MeanRelease> {
    check_bounds(bounds)?;
    let half = spec.halved()?;
    let alpha = accuracy::ALPHA / 2.0;
    let (sum, a_s) = sum_at(data, bounds, half, alpha)?;
    let (count, a_c) = count_at(data, half, alpha)?;
    let (lo, hi) = (bounds.0 as f64, bounds.1 as f64);
    let (s, c) = (sum.value as f64, count.value as f64);
    let mean = if c > 0.0 {
        (s / c).clamp(lo, hi)
    } else {
        (lo + hi) / 2.0
    };
    let c_max = c + a_c;
    let interval = if c_max < 1.0 {
        (lo, hi)
    } else {
        let c_min = (c - a_c).max(1.0);
        let corners = [
            (s - a_s) / c_min,
            (s - a_s) / c_max,
            (s + a_s) / c_min,
            (s + a_s) / c_max,
        ];
        let min = corners.iter().copied().fold(f64::INFINITY, f64::min);
        let max = corners.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min.clamp(lo, hi), max.clamp(lo, hi))
    };
    Ok(MeanRelease {
        mean,
        accuracy: Accuracy::Interval {
            lower: interval.0,
            upper: interval.1,
        },
        cost: sum.cost.compose(&count.cost)?,
        sum,
        count,
    })
}

/// Noisy counts of each public category (rows outside the categories are ignored).
///
/// Sensitivity: one row changes one count by one, so k rows per individual change the count vector
/// by ≤ k in both L1 and L2 (OpenDP's `make_count_by_categories` map). Guarantee: discrete Laplace
/// on each cell with s = Δ₁/ε is ε-DP for the whole vector; discrete Gaussian with σ = Δ₂/√(2ρ) is
/// ρ-zCDP. Accuracy: per cell, the scalar half-width of the scale.
pub fn histogram(
    data: &Contributions<String>,
    categories: Vec<String>,
    spec: NoiseSpec,
) -> Result<Release<Vec<i64>>> {
    if categories.is_empty() {
        return Err(DpError::InvalidCount {
            name: "categories",
            value: 0,
            expected: ">= 1",
        });
    }
    let input = VectorDomain::new(AtomDomain::<String>::default());
    let out_dom = VectorDomain::new(AtomDomain::<i64>::default());
    let (value, mechanism, scale, achieved, half) = match spec {
        NoiseSpec::Laplace(_) => {
            let t = odp(
                "build",
                make_count_by_categories::<L1Distance<i64>, String, i64>(
                    input,
                    SymmetricDistance,
                    categories,
                    false,
                ),
            )?;
            let exact = odp("invoke", t.invoke(&data.values))?;
            let sens = odp("map", t.map(&data.max_rows))?;
            let build = |s: f64| {
                odp(
                    "build",
                    make_laplace::<_, _, MaxDivergence>(
                        out_dom.clone(),
                        L1Distance::default(),
                        s,
                        None,
                    ),
                )
            };
            let (scale, achieved) = calibrate(spec, |s| odp("map", build(s)?.map(&sens)))?;
            let value = odp("invoke", build(scale)?.invoke(&exact))?;
            let half = accuracy::discrete_laplace_half_width(scale)?;
            (value, Mechanism::DiscreteLaplace, scale, achieved, half)
        }
        NoiseSpec::Gaussian(_) => {
            let t = odp(
                "build",
                make_count_by_categories::<L2Distance<i64>, String, i64>(
                    input,
                    SymmetricDistance,
                    categories,
                    false,
                ),
            )?;
            let exact = odp("invoke", t.invoke(&data.values))?;
            let sens = odp("map", t.map(&data.max_rows))?;
            let build = |s: f64| {
                odp(
                    "build",
                    make_gaussian::<_, _, ZeroConcentratedDivergence>(
                        out_dom.clone(),
                        L2Distance::default(),
                        s,
                        None,
                    ),
                )
            };
            let (scale, achieved) = calibrate(spec, |s| odp("map", build(s)?.map(&sens)))?;
            let value = odp("invoke", build(scale)?.invoke(&exact))?;
            let half = accuracy::discrete_gaussian_half_width(scale)?;
            (value, Mechanism::DiscreteGaussian, scale, achieved, half)
        }
    };
    Ok(Release {
        value,
        mechanism,
        scale,
        cost: spec.cost(achieved)?,
        accuracy: Accuracy::PerCell { half_width: half },
    })
}

/// The `alpha`-quantile (0.5 = median), chosen among public, sorted-or-not `candidates`.
///
/// Mechanism: OpenDP's `make_private_quantile` (Smith 2011 scores, report-noisy-max with Gumbel
/// noise = the exponential mechanism). Guarantee: ε-DP for [`NoiseSpec::Laplace`] (ε = 2Δ/scale
/// with Δ = k·max(α, 1−α)), ρ-zCDP for [`NoiseSpec::Gaussian`] (ρ = ε²/8), both read from
/// OpenDP's map. Accuracy: for Gumbel report-noisy-max, P[score gap > scale·(ln|C| + t)] ≤ e^{−t}
/// (the exponential mechanism's bound), so with t = ln 20 the gap is ≤ scale·(ln|C| + ln 20)
/// with probability ≥ 95% ([`Accuracy::RankError`]).
pub fn quantile(
    data: &Contributions<i64>,
    candidates: Vec<i64>,
    alpha: f64,
    spec: NoiseSpec,
) -> Result<Release<i64>> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(DpError::InvalidParameter {
            name: "quantile alpha",
            value: alpha,
            expected: "in [0, 1]",
        });
    }
    if candidates.is_empty() {
        return Err(DpError::InvalidCount {
            name: "candidates",
            value: 0,
            expected: ">= 1",
        });
    }
    let n_candidates = candidates.len() as f64;
    let dom = VectorDomain::new(AtomDomain::<i64>::default());
    let k = data.max_rows;
    let (value, scale, achieved) = match spec {
        NoiseSpec::Laplace(_) => {
            let build = |s: f64| {
                odp(
                    "build",
                    make_private_quantile(
                        dom.clone(),
                        SymmetricDistance,
                        MaxDivergence,
                        candidates.clone(),
                        alpha,
                        s,
                    ),
                )
            };
            let (scale, achieved) = calibrate(spec, |s| odp("map", build(s)?.map(&k)))?;
            (
                odp("invoke", build(scale)?.invoke(&data.values))?,
                scale,
                achieved,
            )
        }
        NoiseSpec::Gaussian(_) => {
            let build = |s: f64| {
                odp(
                    "build",
                    make_private_quantile(
                        dom.clone(),
                        SymmetricDistance,
                        ZeroConcentratedDivergence,
                        candidates.clone(),
                        alpha,
                        s,
                    ),
                )
            };
            let (scale, achieved) = calibrate(spec, |s| odp("map", build(s)?.map(&k)))?;
            (
                odp("invoke", build(scale)?.invoke(&data.values))?,
                scale,
                achieved,
            )
        }
    };
    Ok(Release {
        value,
        mechanism: Mechanism::ExponentialMechanism,
        scale,
        cost: spec.cost(achieved)?,
        accuracy: Accuracy::RankError {
            rows: scale * (n_candidates.ln() + (1.0 / accuracy::ALPHA).ln()),
        },
    })
}

/// A histogram over keys that are not public, with rare keys suppressed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdedHistogram {
    /// The released counts (only keys whose noisy count reached the threshold).
    pub release: Release<BTreeMap<String, i64>>,
    /// Noisy counts below this were suppressed, with their keys.
    pub threshold: i64,
}

/// Counts of each distinct key, each noised with discrete Laplace; keys whose noisy count is
/// below a threshold τ are dropped (so a key held by one individual is revealed only with
/// probability ≤ δ).
///
/// Guarantee: (ε, δ)-DP, both read from OpenDP's `make_laplace_threshold` map for k rows per
/// individual (which changes ≤ k keys by ≤ k each): ε from the scale, δ from τ — the probability
/// that a key with count ≤ k survives. τ is the smallest integer whose δ meets the target.
/// (δ is read from OpenDP's map at τ − 1 to correct an off-by-one in OpenDP 0.16; see the code.)
/// Accuracy: each released count is within the discrete-Laplace half-width at 95%; suppression
/// biases rare keys downward (they are missing), which the half-width does not cover.
pub fn thresholded_histogram(
    data: &Contributions<String>,
    epsilon: Epsilon,
    delta: Delta,
) -> Result<ThresholdedHistogram> {
    let t = odp(
        "build",
        make_count_by::<String, i64>(VectorDomain::new(AtomDomain::default()), SymmetricDistance),
    )?;
    let (dom, met) = t.output_space();
    let d_mid = odp("map", t.map(&data.max_rows))?;
    let build = |s: f64, tau: i64| {
        odp(
            "build",
            make_laplace_threshold::<_, _, Approximate<MaxDivergence>>(
                dom.clone(),
                met.clone(),
                s,
                tau,
                None,
            ),
        )
    };
    let cost_at = |s: f64, tau: i64| odp("map", build(s, tau)?.map(&d_mid));
    // OpenDP 0.16 keeps keys whose noisy count is ≥ τ, but its map bounds δ by P[X > τ − k]
    // where survival of a count-k key needs X ≥ τ − k: it under-states δ by a factor e^{1/scale}
    // (our empirical audit, tests/audit.rs, caught this). So the true δ of threshold τ is the
    // map's δ at τ − 1, and that is what we calibrate on and report.
    let true_cost_at = |s: f64, tau: i64| -> Result<(f64, f64)> {
        let (e, _) = cost_at(s, tau)?;
        let (_, d) = cost_at(s, tau - 1)?;
        Ok((e, d))
    };
    // ε does not depend on τ; calibrate it with a large τ.
    const FAR: i64 = 1 << 40;
    let spec = NoiseSpec::Laplace(epsilon);
    let (scale, _) = calibrate(spec, |s| Ok(cost_at(s, FAR)?.0))?;
    // Smallest τ ≥ k + 1 with δ(τ) ≤ target: exponential then binary search.
    let k = i64::from(data.max_rows);
    let mut hi = k + 1;
    while true_cost_at(scale, hi)?.1 > delta.get() {
        hi = hi.checked_mul(2).ok_or(DpError::Calibration {
            achieved: true_cost_at(scale, hi)?.1,
            target: delta.get(),
        })?;
    }
    let mut lo = k + 1;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if true_cost_at(scale, mid)?.1 <= delta.get() {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let threshold = hi;
    let (eps_achieved, delta_achieved) = true_cost_at(scale, threshold)?;
    let m = build(scale, threshold)?;
    let counts = odp("invoke", t.invoke(&data.values))?;
    let noised = odp("invoke", m.invoke(&counts))?;
    let half = accuracy::discrete_laplace_half_width(scale)?;
    Ok(ThresholdedHistogram {
        release: Release {
            value: noised.into_iter().collect(),
            mechanism: Mechanism::ThresholdedDiscreteLaplace,
            scale,
            cost: PrivacyCost::approximate(
                Epsilon::new(eps_achieved)?,
                Delta::new(delta_achieved)?,
            )?,
            accuracy: Accuracy::PerCell { half_width: half },
        },
        threshold,
    })
}
