//! The accuracy planner behind `concord dp plan`: from a budget and a sensitivity to a noise
//! scale, the 95% half-width it buys, and the exact cost that will be charged.
//!
//! | mechanism | parties | noise | scale | guarantee |
//! |---|---|---|---|---|
//! | laplace | — | discrete Laplace | b = Δ/ε | ε-DP |
//! | laplace | N | Pólya shares summing to discrete Laplace(b) | b = Δ/ε | ε-DP while any N−t shares are honest ([`crate::shares`]) |
//! | gaussian | — | discrete Gaussian | σ = Δ/√(2ρ), ρ the largest with ρ-zCDP ⇒ (ε, δ) | ρ-zCDP ⇒ (ε, δ) |
//! | gaussian | N | Skellam shares, total variance 2λ | λ the smallest meeting (ε, δ) | RDP ⇒ (ε, δ) |
//!
//! Sensitivity is the L1 (= L2 for a scalar) change one individual can cause, after contribution
//! bounding; share-based plans need it to be an integer. The half-width is for the sum of all N
//! shares (with t tolerated, that sum carries N/(N−t) times the noise of the guarantee).

use crate::accuracy;
use crate::cost::{PrivacyCost, rho_to_epsilon};
use crate::error::{DpError, Result};
use crate::params::{Delta, Epsilon, Rho};
use crate::shares::{NoiseTarget, SharePlan, skellam_epsilon};
use serde::Serialize;

/// Which family of noise to plan for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PlanMechanism {
    /// Discrete Laplace (or Pólya shares): pure ε-DP.
    Laplace,
    /// Discrete Gaussian (or Skellam shares): (ε, δ)-DP through zCDP/RDP.
    Gaussian,
}

/// What a data manager asks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanRequest {
    /// Laplace or Gaussian.
    pub mechanism: PlanMechanism,
    /// Target ε.
    pub epsilon: Epsilon,
    /// Target δ (Gaussian only).
    pub delta: Option<Delta>,
    /// L1 sensitivity Δ (> 0).
    pub sensitivity: f64,
    /// Number of parties adding noise shares (distributed noise), if any.
    pub parties: Option<u32>,
    /// Parties that may drop out or collude (shares only).
    pub tolerated: u32,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// `discrete_laplace`, `discrete_gaussian`, `polya_shares` or `skellam_shares`.
    pub mechanism: &'static str,
    /// Noise scale: b for Laplace-type, σ for Gaussian, √(2λ) (the total's standard deviation) for Skellam.
    pub scale: f64,
    /// 95% interval half-width of the noise actually added.
    pub half_width_95: f64,
    /// ε of the guarantee.
    pub epsilon: f64,
    /// δ of the guarantee (0 for pure DP).
    pub delta: f64,
    /// ρ when the guarantee is zCDP.
    pub rho: Option<f64>,
    /// The cost the ledger will charge, exactly as stored.
    pub cost: PrivacyCost,
    /// The same cost in words.
    pub cost_display: String,
    /// Parties adding shares, if distributed.
    pub parties: Option<u32>,
    /// Tolerated dropouts/colluders, if distributed.
    pub tolerated: Option<u32>,
}

fn check_sensitivity(s: f64, integer: bool) -> Result<f64> {
    let ok = s.is_finite() && s > 0.0 && (!integer || s.fract() == 0.0);
    if ok {
        Ok(s)
    } else {
        Err(DpError::InvalidParameter {
            name: "sensitivity",
            value: s,
            expected: if integer {
                "a positive integer (shares add integer noise)"
            } else {
                "finite and > 0"
            },
        })
    }
}

/// Plans a release; see the module docs.
pub fn plan(req: &PlanRequest) -> Result<Plan> {
    let eps = req.epsilon.get();
    match (req.mechanism, req.parties) {
        (PlanMechanism::Laplace, parties) => {
            if let Some(d) = req.delta {
                return Err(DpError::InvalidParameter {
                    name: "delta",
                    value: d.get(),
                    expected: "omitted: the laplace mechanism is pure ε-DP",
                });
            }
            let sens = check_sensitivity(req.sensitivity, parties.is_some())?;
            let scale = sens / eps;
            match parties {
                None => {
                    let cost = PrivacyCost::pure(req.epsilon)?;
                    Ok(Plan {
                        mechanism: "discrete_laplace",
                        scale,
                        half_width_95: accuracy::discrete_laplace_half_width(scale)?,
                        epsilon: eps,
                        delta: 0.0,
                        rho: None,
                        cost,
                        cost_display: cost.to_string(),
                        parties: None,
                        tolerated: None,
                    })
                }
                Some(n) => {
                    let sp =
                        SharePlan::new(NoiseTarget::DiscreteLaplace { scale }, n, req.tolerated)?;
                    // The realised scale is rounded up to 2^-32, so ε can only be smaller.
                    let achieved = sp.pure_epsilon(sens as u64)?;
                    let cost = PrivacyCost::pure(achieved)?;
                    Ok(Plan {
                        mechanism: "polya_shares",
                        scale: sp.effective_parameter(),
                        half_width_95: sp.total_half_width()?,
                        epsilon: achieved.get(),
                        delta: 0.0,
                        rho: None,
                        cost,
                        cost_display: cost.to_string(),
                        parties: Some(n),
                        tolerated: Some(req.tolerated),
                    })
                }
            }
        }
        (PlanMechanism::Gaussian, parties) => {
            let delta = req.delta.ok_or(DpError::InvalidParameter {
                name: "delta",
                value: f64::NAN,
                expected: "given: the gaussian mechanism needs δ in (0, 1)",
            })?;
            let sens = check_sensitivity(req.sensitivity, parties.is_some())?;
            match parties {
                None => {
                    let rho = largest_rho(req.epsilon, delta)?;
                    let sigma = sens / (2.0 * rho.get()).sqrt();
                    let cost = PrivacyCost::zcdp(rho)?;
                    let converted = rho_to_epsilon(rho, delta)?;
                    Ok(Plan {
                        mechanism: "discrete_gaussian",
                        scale: sigma,
                        half_width_95: accuracy::discrete_gaussian_half_width(sigma)?,
                        epsilon: converted.get(),
                        delta: delta.get(),
                        rho: Some(rho.get()),
                        cost,
                        cost_display: cost.to_string(),
                        parties: None,
                        tolerated: None,
                    })
                }
                Some(n) => {
                    let lambda = smallest_skellam_lambda(sens, req.epsilon, delta)?;
                    let sp = SharePlan::new(NoiseTarget::Skellam { lambda }, n, req.tolerated)?;
                    let achieved = sp.skellam_epsilon(sens, sens, delta)?;
                    let cost = PrivacyCost::approximate(achieved, delta)?;
                    Ok(Plan {
                        mechanism: "skellam_shares",
                        scale: (2.0 * sp.effective_parameter()).sqrt(),
                        half_width_95: sp.total_half_width()?,
                        epsilon: achieved.get(),
                        delta: delta.get(),
                        rho: None,
                        cost,
                        cost_display: cost.to_string(),
                        parties: Some(n),
                        tolerated: Some(req.tolerated),
                    })
                }
            }
        }
    }
}

/// The largest ρ (to a relative 10^-12) whose (ε, δ) conversion is within ε.
pub fn largest_rho(epsilon: Epsilon, delta: Delta) -> Result<Rho> {
    let target = epsilon.get();
    // ρ = ε already converts to more than ε, so the answer is in (0, ε).
    let (mut lo, mut hi) = (0.0_f64, target);
    for _ in 0..200 {
        let mid = lo + (hi - lo) / 2.0;
        if mid == lo || mid == hi || hi - lo <= 1e-12 * hi {
            break;
        }
        if rho_to_epsilon(Rho::new(mid)?, delta)?.get() <= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Rho::new(lo)
}

/// The smallest Skellam λ (each Poisson's mean) meeting (ε, δ) for sensitivity Δ (L1 = L2).
fn smallest_skellam_lambda(sens: f64, epsilon: Epsilon, delta: Delta) -> Result<f64> {
    let target = epsilon.get();
    let mut hi = 1.0_f64;
    while skellam_epsilon(hi, sens, sens, delta)?.get() > target {
        hi *= 2.0;
        if hi > 1e15 {
            return Err(DpError::Calibration {
                achieved: skellam_epsilon(hi, sens, sens, delta)?.get(),
                target,
            });
        }
    }
    let mut lo = 0.0_f64;
    for _ in 0..200 {
        let mid = lo + (hi - lo) / 2.0;
        if mid == lo || mid == hi || hi - lo <= 1e-9 * hi {
            break;
        }
        if skellam_epsilon(mid, sens, sens, delta)?.get() <= target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn req(
        mechanism: PlanMechanism,
        eps: f64,
        delta: Option<f64>,
        parties: Option<u32>,
    ) -> PlanRequest {
        PlanRequest {
            mechanism,
            epsilon: Epsilon::new(eps).unwrap(),
            delta: delta.map(|d| Delta::new(d).unwrap()),
            sensitivity: 1.0,
            parties,
            tolerated: 0,
        }
    }

    #[test]
    fn laplace_plan() {
        let p = plan(&req(PlanMechanism::Laplace, 0.5, None, None)).unwrap();
        assert_eq!(p.mechanism, "discrete_laplace");
        assert_eq!(p.scale, 2.0);
        // OpenDP's closed form: s·ln((1/α)·2/(e^{1/s}+1)) + 1 = 2 ln(40/(e^{1/2}+1)) + 1 ≈ 6.4296
        assert!(
            (p.half_width_95 - 6.4296).abs() < 1e-3,
            "{}",
            p.half_width_95
        );
        assert_eq!(p.cost_display, "ε=0.5");
        let d = plan(&req(PlanMechanism::Laplace, 0.5, None, Some(5))).unwrap();
        assert_eq!(d.mechanism, "polya_shares");
        assert_eq!(d.scale, 2.0);
        assert_eq!(d.half_width_95, p.half_width_95.ceil() - 1.0);
    }

    #[test]
    fn gaussian_plan() {
        let p = plan(&req(PlanMechanism::Gaussian, 1.0, Some(1e-6), None)).unwrap();
        assert_eq!(p.mechanism, "discrete_gaussian");
        let rho = p.rho.unwrap();
        assert!(p.epsilon <= 1.0 && p.epsilon > 0.999_999);
        assert!((p.scale - 1.0 / (2.0 * rho).sqrt()).abs() < 1e-12);
        let s = plan(&req(PlanMechanism::Gaussian, 1.0, Some(1e-6), Some(10))).unwrap();
        assert_eq!(s.mechanism, "skellam_shares");
        assert!(s.epsilon <= 1.0);
        // Skellam needs a little more noise than the discrete Gaussian for the same guarantee.
        assert!(
            s.scale >= p.scale && s.scale < 1.3 * p.scale,
            "{} vs {}",
            s.scale,
            p.scale
        );
    }

    #[test]
    fn invalid_requests() {
        assert!(plan(&req(PlanMechanism::Gaussian, 1.0, None, None)).is_err());
        assert!(plan(&req(PlanMechanism::Laplace, 1.0, Some(1e-6), None)).is_err());
        let mut r = req(PlanMechanism::Laplace, 1.0, None, Some(3));
        r.sensitivity = 1.5;
        assert!(matches!(
            plan(&r),
            Err(DpError::InvalidParameter {
                name: "sensitivity",
                ..
            })
        ));
        r.sensitivity = f64::NAN;
        r.parties = None;
        assert!(plan(&r).is_err());
        let mut r = req(PlanMechanism::Laplace, 1.0, None, Some(3));
        r.tolerated = 3;
        assert!(matches!(
            plan(&r),
            Err(DpError::InvalidCount {
                name: "tolerated",
                ..
            })
        ));
    }
}
