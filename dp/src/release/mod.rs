//! Releases on OpenDP: count, sum, mean, histogram, quantile and thresholded histogram.
//!
//! # Neighbouring relation and contribution bounding
//! Two datasets are neighbours when one individual's rows are added or removed. When an
//! individual can appear in several rows (an ID column), [`Contributions::bound_by_id`] keeps at
//! most `k` rows per individual (a uniformly random subset, chosen with the injected CSPRNG) before
//! anything is computed; the bounded datasets are then at symmetric distance ≤ k, and every release
//! passes `d_in = k` to OpenDP's privacy map, so the sensitivity (and the cost) accounts for it.
//! Without an ID column, [`Contributions::one_row_per_individual`] states k = 1.
//!
//! # Noise
//! Data are integers (`i64`; scale real-valued columns to a fixed-point unit such as cents first),
//! so every noise draw is exact: OpenDP's discrete Laplace (ε-DP, P(x) ∝ e^{−|x|/s}) for
//! [`NoiseSpec::Laplace`], or its discrete Gaussian (ρ-zCDP) for [`NoiseSpec::Gaussian`]. OpenDP
//! samples both exactly (CKS20) from OpenSSL's CSPRNG (see the crate docs, *Randomness*).
//!
//! # Calibration
//! The scale is computed from OpenDP's own privacy map: the mechanism is built at scale 1, its
//! cost c₁ at `d_in = k` read back, and the scale set to c₁/ε (Laplace-type, cost ∝ 1/scale) or
//! √(c₁/ρ) (Gaussian-type, cost ∝ 1/scale²), then nudged up until the map confirms cost ≤ target.
//! The reported [`Release::cost`] is what OpenDP's map says, rounded up onto the ledger quantum.

mod queries;

pub use queries::{
    MeanRelease, ThresholdedHistogram, count, count_of, histogram, mean, quantile, sum,
    thresholded_histogram,
};

use crate::cost::PrivacyCost;
use crate::error::{DpError, Result};
use crate::params::{Epsilon, Rho};
use crate::sample::uniform_below;
use rand::CryptoRng;
use serde::Serialize;
use std::collections::HashMap;
use std::hash::Hash;

/// Rows of one column after contribution bounding: each individual contributes at most `max_rows`.
#[derive(Debug, Clone, PartialEq)]
pub struct Contributions<V> {
    values: Vec<V>,
    max_rows: u32,
}

impl<V> Contributions<V> {
    /// Each row is a distinct individual (no ID column): k = 1.
    pub fn one_row_per_individual(values: Vec<V>) -> Self {
        Self {
            values,
            max_rows: 1,
        }
    }

    /// Keeps at most `max_rows` rows per ID, choosing uniformly at random among an ID's rows.
    ///
    /// Which rows are kept for one individual depends only on that individual's rows (and fresh
    /// randomness), so adding or removing an individual changes the output by at most `max_rows`
    /// rows. The output order is unspecified; every release here is order-invariant.
    pub fn bound_by_id<K, R>(
        rows: impl IntoIterator<Item = (K, V)>,
        max_rows: u32,
        rng: &mut R,
    ) -> Result<Self>
    where
        K: Hash + Eq,
        R: CryptoRng + ?Sized,
    {
        if max_rows == 0 {
            return Err(DpError::InvalidCount {
                name: "max rows per individual",
                value: 0,
                expected: ">= 1",
            });
        }
        let mut groups: HashMap<K, Vec<V>> = HashMap::new();
        for (id, v) in rows {
            groups.entry(id).or_default().push(v);
        }
        let k = max_rows as usize;
        let mut values = Vec::new();
        for (_, mut group) in groups {
            if group.len() > k {
                // Partial Fisher–Yates: the first k positions become a uniform k-subset.
                for i in 0..k {
                    let remaining = (group.len() - i) as u128;
                    // uniform_below(n) < n and n ≤ group.len() − i, so the index is in range.
                    let j = i + uniform_below(rng, remaining) as usize;
                    group.swap(i, j);
                }
                group.truncate(k);
            }
            values.extend(group);
        }
        Ok(Self { values, max_rows })
    }

    /// The kept values.
    pub fn values(&self) -> &[V] {
        &self.values
    }

    /// k: the most rows any individual contributes.
    pub fn max_rows(&self) -> u32 {
        self.max_rows
    }
}

/// Which noise a release adds and the privacy it must spend.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum NoiseSpec {
    /// Discrete Laplace, pure ε-DP.
    Laplace(Epsilon),
    /// Discrete Gaussian, ρ-zCDP.
    Gaussian(Rho),
}

impl NoiseSpec {
    /// The same kind of noise with half the budget (for two-part releases such as the mean).
    pub(crate) fn halved(self) -> Result<Self> {
        Ok(match self {
            NoiseSpec::Laplace(e) => NoiseSpec::Laplace(Epsilon::new(e.get() / 2.0)?),
            NoiseSpec::Gaussian(r) => NoiseSpec::Gaussian(Rho::new(r.get() / 2.0)?),
        })
    }

    pub(crate) fn target(self) -> f64 {
        match self {
            NoiseSpec::Laplace(e) => e.get(),
            NoiseSpec::Gaussian(r) => r.get(),
        }
    }

    /// Exponent of the cost in 1/scale.
    pub(crate) fn power(self) -> f64 {
        match self {
            NoiseSpec::Laplace(_) => 1.0,
            NoiseSpec::Gaussian(_) => 2.0,
        }
    }

    pub(crate) fn cost(self, achieved: f64) -> Result<PrivacyCost> {
        match self {
            NoiseSpec::Laplace(_) => PrivacyCost::pure(Epsilon::new(achieved)?),
            NoiseSpec::Gaussian(_) => PrivacyCost::zcdp(Rho::new(achieved)?),
        }
    }
}

/// The mechanism that produced a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Mechanism {
    /// Discrete Laplace noise (ε-DP).
    DiscreteLaplace,
    /// Discrete Gaussian noise (ρ-zCDP).
    DiscreteGaussian,
    /// Report-noisy-max with Gumbel noise over candidate scores (the exponential mechanism).
    ExponentialMechanism,
    /// Discrete Laplace on counts of unknown keys, keys below a threshold suppressed ((ε, δ)-DP).
    ThresholdedDiscreteLaplace,
}

/// How accurate a release is, at 95%, derived from its noise scale only.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub enum Accuracy {
    /// `[lower, upper]` covers the un-noised value with probability ≥ 95%.
    Interval {
        /// Lower end.
        lower: f64,
        /// Upper end.
        upper: f64,
    },
    /// Each released cell is within ±`half_width` of its un-noised value with probability ≥ 95%
    /// (per cell, not simultaneously for all cells).
    PerCell {
        /// Half-width.
        half_width: f64,
    },
    /// With probability ≥ 95% the released candidate's quantile score is within `rows` of the
    /// best candidate's; the score of c is ≈ |(1−α)·#{x < c} − α·#{x > c}|, i.e. how many rows c
    /// is away from the α-quantile's rank.
    RankError {
        /// Bound on the score gap, in rows.
        rows: f64,
    },
}

/// A released statistic: the noised value and everything needed to account for and interpret it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Release<T> {
    /// The noised value.
    pub value: T,
    /// Which mechanism produced it.
    pub mechanism: Mechanism,
    /// The noise scale (discrete Laplace s, discrete Gaussian σ, or Gumbel scale on scores).
    pub scale: f64,
    /// The privacy cost to commit to the ledger.
    pub cost: PrivacyCost,
    /// Accuracy at 95%.
    pub accuracy: Accuracy,
}

/// Finds the smallest scale (up to a relative 10^-9) whose cost, per `cost_at`, is ≤ `spec`'s
/// target. Returns `(scale, achieved_cost)`.
pub(crate) fn calibrate(
    spec: NoiseSpec,
    cost_at: impl Fn(f64) -> Result<f64>,
) -> Result<(f64, f64)> {
    let target = spec.target();
    let unit = cost_at(1.0)?;
    if !(unit.is_finite() && unit > 0.0) {
        return Err(DpError::Calibration {
            achieved: unit,
            target,
        });
    }
    let mut scale = (unit / target).powf(1.0 / spec.power());
    let mut bump = 1e-12;
    for _ in 0..40 {
        let achieved = cost_at(scale)?;
        if achieved <= target {
            return Ok((scale, achieved));
        }
        scale *= 1.0 + bump;
        bump *= 4.0;
    }
    Err(DpError::Calibration {
        achieved: cost_at(scale)?,
        target,
    })
}

/// Maps OpenDP's error into ours at a given stage.
pub(crate) fn odp<T>(stage: &'static str, r: opendp::error::Fallible<T>) -> Result<T> {
    r.map_err(|e| DpError::opendp(stage, e))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
