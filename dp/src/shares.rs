//! Distributed noise shares for secure aggregation.
//!
//! N parties each add an integer noise share to their input before secure aggregation; only the
//! sum of all inputs and shares is ever decrypted. The shares are drawn so that their sum has
//! *exactly* the intended distribution, using the exact samplers of [`crate::sample`].
//!
//! # Distributions
//! - **Pólya → discrete Laplace.** Each share is X − Y with X, Y ~ NegBin(1/m, p), p = e^{−1/b}.
//!   NegBin is infinitely divisible: a sum of m independent NegBin(1/m, p) is NegBin(1, p) =
//!   Geometric(p), and Geom − Geom is discrete Laplace with P(x) ∝ e^{−|x|/b}.
//!   *Guarantee:* with integer L1 sensitivity Δ, any m shares give ε = Δ/b pure DP.
//! - **Skellam.** Each share is Poisson(λ/m) − Poisson(λ/m); m shares sum to Skellam(λ, λ) with
//!   variance 2λ. *Guarantee* (Agarwal–Kairouz–Liu 2021, *The Skellam Mechanism*, Thm 3.5, with
//!   the conservative 2α in place of 2α−1): RDP of order α with
//!   ε(α) = αΔ₂²/(4λ) + min(((2α)Δ₂² + 6Δ₁)/(16λ²), 3Δ₁/(4λ)), converted to (ε, δ) by
//!   ε = min_α ε(α) + ln(1/δ)/(α−1) (Mironov 2017, Prop. 3) over a grid of α (every α is valid).
//!
//! # Collusion and dropout: `tolerated = t`
//! Each share is sampled for m = n − t parties. Then any n − t honest shares alone already sum to
//! the full target noise, so the guarantee survives t colluding parties (who subtract their own
//! shares) or t parties that drop out. When all n shares are present, the total is
//! NegBin(n/(n−t)) differences (or Skellam(nλ/(n−t))): more noise, reported by
//! [`SharePlan::total_half_width`].
//!
//! # Exactness and randomness
//! Parameters are rounded **up** to multiples of 2^-32 ([`Ratio::from_f64_up`]); the shares are
//! exact for the rounded parameters, which [`SharePlan::effective_parameter`] reports. Vectors are
//! sampled in chunks of [`CHUNK`] entries on rayon's pool; each chunk gets its own ChaCha20 RNG
//! seeded with 32 bytes from the injected CSPRNG (drawn sequentially before the parallel part), so
//! a seeded caller gets a reproducible vector and a `SysRng` caller gets a CSPRNG stream per chunk.

use crate::accuracy;
use crate::error::{DpError, Result};
use crate::params::{Delta, Epsilon};
use crate::sample::{Ratio, negative_binomial, poisson};
use rand::{CryptoRng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use serde::Serialize;

/// Entries per independently seeded chunk in [`SharePlan::sample_vector`].
pub const CHUNK: usize = 4096;

/// The distribution the sum of the shares must have.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub enum NoiseTarget {
    /// Discrete Laplace with P(x) ∝ exp(−|x|/scale), from Pólya shares.
    DiscreteLaplace {
        /// Scale b.
        scale: f64,
    },
    /// Symmetric Skellam Poisson(λ) − Poisson(λ), variance 2λ, from Skellam shares.
    Skellam {
        /// λ, the mean of each Poisson part (variance / 2).
        lambda: f64,
    },
}

/// How each of `parties` parties samples its share, tolerating `tolerated` missing or colluding parties.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharePlan {
    target: NoiseTarget,
    parties: u32,
    tolerated: u32,
    /// Scale b (Pólya) or λ (Skellam) after rounding up.
    parameter: Ratio,
    /// Per-share Poisson mean λ/m (Skellam only).
    per_share: Ratio,
}

impl SharePlan {
    /// Validates `parties ≥ 1`, `tolerated < parties` and the target's parameter.
    pub fn new(target: NoiseTarget, parties: u32, tolerated: u32) -> Result<Self> {
        if parties == 0 {
            return Err(DpError::InvalidCount {
                name: "parties",
                value: 0,
                expected: ">= 1",
            });
        }
        if tolerated >= parties {
            return Err(DpError::InvalidCount {
                name: "tolerated",
                value: u64::from(tolerated),
                expected: "< parties",
            });
        }
        let m = u64::from(parties - tolerated);
        let (parameter, per_share) = match target {
            NoiseTarget::DiscreteLaplace { scale } => {
                let p = Ratio::from_f64_up("scale", scale)?;
                (p, p)
            }
            NoiseTarget::Skellam { lambda } => {
                let p = Ratio::from_f64_up("lambda", lambda)?;
                let den = p.den().checked_mul(m).ok_or(DpError::InvalidCount {
                    name: "parties",
                    value: m,
                    expected: "small enough for the 2^-32 fixed-point parameter",
                })?;
                (p, Ratio::new(p.num(), den)?)
            }
        };
        Ok(Self {
            target,
            parties,
            tolerated,
            parameter,
            per_share,
        })
    }

    /// Number of parties.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// Number of parties whose shares may be missing or known to an adversary.
    pub fn tolerated(&self) -> u32 {
        self.tolerated
    }

    /// The target as requested.
    pub fn target(&self) -> NoiseTarget {
        self.target
    }

    /// The exact parameter the shares realise (scale b or λ, rounded up to 2^-32).
    pub fn effective_parameter(&self) -> f64 {
        self.parameter.to_f64()
    }

    /// 1/(n − t): the NegBin shape of each Pólya share.
    fn share_shape(&self) -> Result<Ratio> {
        Ratio::new(1, u64::from(self.parties - self.tolerated))
    }

    /// One share.
    pub fn sample<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Result<i64> {
        match self.target {
            NoiseTarget::DiscreteLaplace { .. } => {
                let r = self.share_shape()?;
                let gamma = self.parameter.recip()?;
                let x = negative_binomial(rng, r, gamma)?;
                let y = negative_binomial(rng, r, gamma)?;
                Ok(signed_difference(x, y))
            }
            NoiseTarget::Skellam { .. } => {
                let x = poisson(rng, self.per_share);
                let y = poisson(rng, self.per_share);
                Ok(signed_difference(x, y))
            }
        }
    }

    /// A vector of `len` independent shares (one per coordinate), in parallel; see the module docs.
    pub fn sample_vector<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        len: usize,
    ) -> Result<Vec<i64>> {
        let seeds: Vec<[u8; 32]> = (0..len.div_ceil(CHUNK))
            .map(|_| {
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                seed
            })
            .collect();
        let mut out = vec![0i64; len];
        out.par_chunks_mut(CHUNK)
            .zip(seeds.par_iter())
            .try_for_each(|(chunk, seed)| -> Result<()> {
                let mut chunk_rng = ChaCha20Rng::from_seed(*seed);
                for slot in chunk.iter_mut() {
                    *slot = self.sample(&mut chunk_rng)?;
                }
                Ok(())
            })?;
        Ok(out)
    }

    /// Half-width of the 95% interval of the sum of **all n** shares (the most noise there is).
    pub fn total_half_width(&self) -> Result<f64> {
        let ratio = f64::from(self.parties) / f64::from(self.parties - self.tolerated);
        match self.target {
            NoiseTarget::DiscreteLaplace { .. } => {
                accuracy::polya_half_width(self.parameter.to_f64(), ratio)
            }
            NoiseTarget::Skellam { .. } => {
                accuracy::skellam_half_width(self.parameter.to_f64() * ratio)
            }
        }
    }

    /// Variance of the sum of all n shares.
    pub fn total_variance(&self) -> f64 {
        let ratio = f64::from(self.parties) / f64::from(self.parties - self.tolerated);
        let v = self.parameter.to_f64();
        match self.target {
            NoiseTarget::DiscreteLaplace { .. } => {
                let p = (-1.0 / v).exp();
                2.0 * ratio * p / ((1.0 - p) * (1.0 - p))
            }
            NoiseTarget::Skellam { .. } => 2.0 * v * ratio,
        }
    }

    /// The pure ε of Pólya shares for integer L1 sensitivity Δ (ε = Δ/b); an error for Skellam.
    pub fn pure_epsilon(&self, sensitivity: u64) -> Result<Epsilon> {
        match self.target {
            NoiseTarget::DiscreteLaplace { .. } => {
                Epsilon::new(sensitivity as f64 / self.parameter.to_f64())
            }
            NoiseTarget::Skellam { .. } => Err(DpError::Conversion {
                from: "Skellam",
                to: "pure epsilon",
                reason: "Skellam noise gives Rényi/approximate DP only",
            }),
        }
    }

    /// (ε, δ) of Skellam shares for sensitivities Δ₁ (L1) and Δ₂ (L2); an error for Pólya.
    pub fn skellam_epsilon(&self, l1: f64, l2: f64, delta: Delta) -> Result<Epsilon> {
        match self.target {
            NoiseTarget::Skellam { .. } => skellam_epsilon(self.parameter.to_f64(), l1, l2, delta),
            NoiseTarget::DiscreteLaplace { .. } => Err(DpError::Conversion {
                from: "Pólya",
                to: "Skellam (ε, δ)",
                reason: "use pure_epsilon",
            }),
        }
    }
}

fn signed_difference(x: u64, y: u64) -> i64 {
    let d = i128::from(x) - i128::from(y);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

/// RDP ε(α) of Skellam(λ, λ) noise (AKL21 Thm 3.5, see the module docs).
pub fn skellam_rdp(alpha: f64, lambda: f64, l1: f64, l2: f64) -> f64 {
    let lead = alpha * l2 * l2 / (4.0 * lambda);
    let a = (2.0 * alpha * l2 * l2 + 6.0 * l1) / (16.0 * lambda * lambda);
    let b = 3.0 * l1 / (4.0 * lambda);
    lead + a.min(b)
}

/// (ε, δ) of Skellam(λ, λ) noise: min over α of ε(α) + ln(1/δ)/(α − 1).
pub fn skellam_epsilon(lambda: f64, l1: f64, l2: f64, delta: Delta) -> Result<Epsilon> {
    let ln_inv_delta = (1.0 / delta.get()).ln();
    let mut best = f64::INFINITY;
    let mut alpha = 1.001_f64;
    while alpha < 1e6 {
        let e = skellam_rdp(alpha, lambda, l1, l2) + ln_inv_delta / (alpha - 1.0);
        best = best.min(e);
        alpha *= 1.01;
    }
    Epsilon::new(best)
}

#[cfg(test)]
#[path = "shares_tests.rs"]
mod tests;
