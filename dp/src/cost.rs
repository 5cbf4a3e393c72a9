//! Privacy costs, their composition, and the zCDP → (ε, δ) conversion.
//!
//! # Representation: exact fixed point
//! A [`PrivacyCost`] is a triple (ε, δ, ρ) meaning "the sequential composition of an (ε, δ)-DP
//! mechanism and a ρ-zCDP mechanism". Pure ε-DP is (ε, 0, 0), approximate DP is (ε, δ, 0), a
//! Gaussian-type release is (0, 0, ρ). Composition adds the three components (basic composition
//! for (ε, δ); ρ adds under zCDP, Bun–Steinke 2016 Lemma 2.3), so the ledger is closed under `+`.
//!
//! Each component is a [`Quantity`]: an integer count of `10^-18` units held in a `u128`. Adding
//! thousands of costs is then exact integer addition, with no float drift; costs enter the ledger
//! by rounding **up** to the next quantum (a cost is never under-counted) and budget caps by
//! rounding **down** (a cap is never over-stated). `f64` is used only to display and to feed the
//! conversion formulas. The largest component is ≈ 3.4·10^20; δ below 10^-18 is rounded up to 10^-18.
//!
//! # Conversion to (ε, δ)
//! ρ-zCDP implies (ε, δ)-DP for every ε ≥ 0 with
//! δ = inf_{α>1} exp((α−1)(αρ−ε)) / (α−1) · (1 − 1/α)^α
//! (Canonne–Kamath–Steinke 2020, *The Discrete Gaussian for Differential Privacy*, Cor. 13), which
//! is tighter than the classic ε = ρ + 2√(ρ ln(1/δ)). [`cdp_delta`] evaluates it (any α gives a valid
//! bound, so the search needs no conservative rounding; the result is nudged up by a relative
//! 10^-12); [`rho_to_epsilon`] inverts it by bisection and returns the upper end of the bracket.

use crate::error::{DpError, Result};
use crate::params::{Delta, Epsilon, Rho};
use serde::{Deserialize, Serialize};

/// 10^18 quanta per unit.
const QUANTA_PER_UNIT: u128 = 1_000_000_000_000_000_000;

/// A non-negative amount of privacy loss as an integer number of 10^-18 quanta.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Quantity(u128);

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity(0);

    /// Rounds a non-negative finite `f64` **up** to the next quantum (for costs).
    pub fn from_f64_up(value: f64) -> Result<Self> {
        Self::from_f64(value, true)
    }

    /// Rounds a non-negative finite `f64` **down** to a quantum (for budget caps).
    pub fn from_f64_down(value: f64) -> Result<Self> {
        Self::from_f64(value, false)
    }

    /// The raw number of 10^-18 quanta (what a database stores).
    pub fn quanta(self) -> u128 {
        self.0
    }

    /// Builds a quantity from raw quanta.
    pub fn from_quanta(quanta: u128) -> Self {
        Self(quanta)
    }

    /// The nearest `f64` (display and formulas only).
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / QUANTA_PER_UNIT as f64
    }

    /// Exact addition; errors instead of wrapping.
    pub fn checked_add(self, other: Quantity) -> Result<Self> {
        self.0
            .checked_add(other.0)
            .map(Self)
            .ok_or(DpError::CostOverflow {
                max: u128::MAX as f64 / QUANTA_PER_UNIT as f64,
            })
    }

    /// Exact subtraction (returning a reservation); `None` if it would go negative.
    pub fn checked_sub(self, other: Quantity) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }

    /// Exact conversion of the dyadic rational `value` = m·2^e to quanta, rounding as asked.
    fn from_f64(value: f64, up: bool) -> Result<Self> {
        if !(value.is_finite() && value >= 0.0) {
            return Err(DpError::InvalidParameter {
                name: "privacy cost",
                value,
                expected: "finite and >= 0",
            });
        }
        if value == 0.0 {
            return Ok(Self::ZERO);
        }
        let bits = value.to_bits();
        let raw_exp = ((bits >> 52) & 0x7ff) as i32;
        let frac = bits & ((1u64 << 52) - 1);
        // value = mantissa · 2^exp exactly.
        let (mantissa, exp) = if raw_exp == 0 {
            (frac, -1074)
        } else {
            (frac | (1u64 << 52), raw_exp - 1075)
        };
        // mantissa < 2^53 and 10^18 < 2^60, so the product fits in 113 bits.
        let product = u128::from(mantissa) * QUANTA_PER_UNIT;
        let overflow = DpError::CostOverflow {
            max: u128::MAX as f64 / QUANTA_PER_UNIT as f64,
        };
        if exp >= 0 {
            let shift = exp as u32;
            if shift >= 128 || product.leading_zeros() < shift {
                return Err(overflow);
            }
            return Ok(Self(product << shift));
        }
        let shift = exp.unsigned_abs();
        let (floor, exact) = if shift >= 128 {
            (0, product == 0)
        } else {
            (product >> shift, product & ((1u128 << shift) - 1) == 0)
        };
        Ok(Self(if up && !exact { floor + 1 } else { floor }))
    }
}

impl std::str::FromStr for Quantity {
    type Err = DpError;

    /// Reads a decimal amount exactly: `4`, `0.5`, `1e-6`, `2.5E-3`. People write budgets in
    /// decimal, and a decimal never passes through `f64` here, so the cap `1e-6` holds exactly
    /// 10¹² quanta and a job asking for `δ = 1e-6` fits under it. Amounts finer than 10⁻¹⁸ or
    /// negative are refused, not rounded.
    fn from_str(text: &str) -> Result<Self> {
        let err = |reason| DpError::InvalidAmount {
            text: text.to_owned(),
            reason,
        };
        let t = text.trim();
        let (number, exp) = match t.find(['e', 'E']) {
            Some(i) => (
                &t[..i],
                t[i + 1..]
                    .parse::<i32>()
                    .map_err(|_| err("the exponent is not an integer"))?,
            ),
            None => (t, 0),
        };
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() && frac.is_empty() || !digits_ok(int) || !digits_ok(frac) {
            return Err(err(
                "expected a non-negative decimal number, e.g. 0.5 or 1e-6",
            ));
        }
        // value = digits · 10^(exp − len(frac)); in quanta, · 10^18.
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let scale = i64::from(exp) - frac.len() as i64 + 18;
        if digits.is_empty() {
            return Ok(Self::ZERO);
        }
        let mut quanta: u128 = 0;
        let too_big = || err("larger than the ledger holds");
        for b in digits.bytes() {
            quanta = quanta
                .checked_mul(10)
                .and_then(|q| q.checked_add(u128::from(b - b'0')))
                .ok_or_else(too_big)?;
        }
        if scale >= 0 {
            for _ in 0..scale {
                quanta = quanta.checked_mul(10).ok_or_else(too_big)?;
            }
        } else {
            for _ in 0..scale.unsigned_abs() {
                if !quanta.is_multiple_of(10) {
                    return Err(err("finer than the ledger's 10^-18"));
                }
                quanta /= 10;
            }
        }
        Ok(Self(quanta))
    }
}

impl std::fmt::Display for Quantity {
    /// Exact decimal rendering, trailing zeros trimmed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let int = self.0 / QUANTA_PER_UNIT;
        let frac = self.0 % QUANTA_PER_UNIT;
        if frac == 0 {
            write!(f, "{int}")
        } else {
            let digits = format!("{frac:018}");
            write!(f, "{int}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// The privacy cost of one release or of a composition of releases: (ε, δ, ρ), see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PrivacyCost {
    /// Pure/approximate-DP ε part.
    pub epsilon: Quantity,
    /// Approximate-DP δ part.
    pub delta: Quantity,
    /// zCDP ρ part.
    pub rho: Quantity,
}

/// What kind of guarantee a cost expresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CostKind {
    /// Nothing spent.
    Zero,
    /// ε-DP.
    Pure,
    /// (ε, δ)-DP.
    Approximate,
    /// ρ-zCDP.
    Concentrated,
    /// A composition of (ε, δ)-DP and ρ-zCDP parts.
    Mixed,
}

impl PrivacyCost {
    /// Nothing spent.
    pub const ZERO: PrivacyCost = PrivacyCost {
        epsilon: Quantity::ZERO,
        delta: Quantity::ZERO,
        rho: Quantity::ZERO,
    };

    /// ε-DP, rounded up to the ledger quantum.
    pub fn pure(epsilon: Epsilon) -> Result<Self> {
        Ok(Self {
            epsilon: Quantity::from_f64_up(epsilon.get())?,
            ..Self::ZERO
        })
    }

    /// (ε, δ)-DP, rounded up.
    pub fn approximate(epsilon: Epsilon, delta: Delta) -> Result<Self> {
        Ok(Self {
            epsilon: Quantity::from_f64_up(epsilon.get())?,
            delta: Quantity::from_f64_up(delta.get())?,
            rho: Quantity::ZERO,
        })
    }

    /// ρ-zCDP, rounded up.
    pub fn zcdp(rho: Rho) -> Result<Self> {
        Ok(Self {
            rho: Quantity::from_f64_up(rho.get())?,
            ..Self::ZERO
        })
    }

    /// A budget cap: the same triple but rounded **down**, so a cap never allows more than stated.
    /// Pass 0 for components the cap does not allow.
    pub fn cap(epsilon: f64, delta: f64, rho: f64) -> Result<Self> {
        Ok(Self {
            epsilon: Quantity::from_f64_down(epsilon)?,
            delta: Quantity::from_f64_down(delta)?,
            rho: Quantity::from_f64_down(rho)?,
        })
    }

    /// Which guarantee this cost expresses.
    pub fn kind(&self) -> CostKind {
        let (e, d, r) = (self.epsilon.0 > 0, self.delta.0 > 0, self.rho.0 > 0);
        match (e || d, d, r) {
            (false, _, false) => CostKind::Zero,
            (true, false, false) => CostKind::Pure,
            (true, true, false) => CostKind::Approximate,
            (false, _, true) => CostKind::Concentrated,
            (true, _, true) => CostKind::Mixed,
        }
    }

    /// Sequential composition: component-wise exact addition.
    pub fn compose(&self, other: &PrivacyCost) -> Result<Self> {
        Ok(Self {
            epsilon: self.epsilon.checked_add(other.epsilon)?,
            delta: self.delta.checked_add(other.delta)?,
            rho: self.rho.checked_add(other.rho)?,
        })
    }

    /// Composes many costs (e.g. a ledger's history).
    pub fn compose_all<'a>(costs: impl IntoIterator<Item = &'a PrivacyCost>) -> Result<Self> {
        costs
            .into_iter()
            .try_fold(Self::ZERO, |acc, c| acc.compose(c))
    }

    /// Removes a previously composed cost (a returned reservation); `None` if it was never added.
    pub fn checked_sub(&self, other: &PrivacyCost) -> Option<Self> {
        Some(Self {
            epsilon: self.epsilon.checked_sub(other.epsilon)?,
            delta: self.delta.checked_sub(other.delta)?,
            rho: self.rho.checked_sub(other.rho)?,
        })
    }

    /// Whether every component is within the cap's (exact comparison).
    pub fn fits_within(&self, cap: &PrivacyCost) -> bool {
        self.epsilon <= cap.epsilon && self.delta <= cap.delta && self.rho <= cap.rho
    }

    /// The (ε, δ)-DP guarantee of this cost, spending `delta_for_rho` of extra δ to convert the
    /// ρ part with [`rho_to_epsilon`]. Returns `(ε, δ)` as `f64` for display or a final check.
    pub fn to_approximate_dp(&self, delta_for_rho: Delta) -> Result<(f64, f64)> {
        if self.rho == Quantity::ZERO {
            return Ok((self.epsilon.to_f64(), self.delta.to_f64()));
        }
        let rho = Rho::new(self.rho.to_f64())?;
        let eps_rho = rho_to_epsilon(rho, delta_for_rho)?;
        Ok((
            self.epsilon.to_f64() + eps_rho.get(),
            self.delta.to_f64() + delta_for_rho.get(),
        ))
    }

    /// The ε of a pure cost; an error for costs that carry δ or ρ.
    pub fn pure_epsilon(&self) -> Result<f64> {
        match self.kind() {
            CostKind::Pure | CostKind::Zero => Ok(self.epsilon.to_f64()),
            _ => Err(DpError::Conversion {
                from: "non-pure",
                to: "pure epsilon",
                reason: "the cost has a delta or rho part",
            }),
        }
    }
}

impl std::fmt::Display for PrivacyCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind() {
            CostKind::Zero => write!(f, "0"),
            CostKind::Pure => write!(f, "ε={}", self.epsilon),
            CostKind::Approximate => write!(f, "(ε={}, δ={})", self.epsilon, self.delta),
            CostKind::Concentrated => write!(f, "ρ={} (zCDP)", self.rho),
            CostKind::Mixed => write!(
                f,
                "(ε={}, δ={}) + ρ={} (zCDP)",
                self.epsilon, self.delta, self.rho
            ),
        }
    }
}

/// δ(ε) of a ρ-zCDP mechanism (CKS20 Cor. 13), see the module docs. `rho ≥ 0`, `eps ≥ 0`.
pub fn cdp_delta(rho: f64, eps: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    if eps.is_nan() || eps < 0.0 {
        return 1.0;
    }
    // δ(α) = exp((α−1)(αρ−ε) + α·ln(1−1/α)) / (α−1) is convex in the useful range; its minimiser
    // solves (2α−1)ρ − ε + ln(1−1/α) = 0 and lies below (ε+1)/(2ρ) + 2.
    let mut lo = 1.01_f64;
    let mut hi = (eps + 1.0) / (2.0 * rho) + 2.0;
    for _ in 0..200 {
        let mid = lo + (hi - lo) / 2.0;
        if mid == lo || mid == hi {
            break;
        }
        let deriv = (2.0 * mid - 1.0) * rho - eps + (-1.0 / mid).ln_1p();
        if deriv < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let a = hi;
    let log_delta = (a - 1.0) * (a * rho - eps) + a * (-1.0 / a).ln_1p() - (a - 1.0).ln();
    // Any α gives a valid bound; the nudge covers rounding in exp/ln (≤ a few ulps).
    (log_delta.exp() * (1.0 + 1e-12)).min(1.0)
}

/// The smallest ε (up to a relative 10^-12, rounded up) such that ρ-zCDP implies (ε, δ)-DP.
pub fn rho_to_epsilon(rho: Rho, delta: Delta) -> Result<Epsilon> {
    let (rho, delta) = (rho.get(), delta.get());
    // Classic bound ρ + 2√(ρ ln 1/δ) is a valid upper end of the bracket.
    let mut hi = rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt();
    let mut lo = 0.0_f64;
    while cdp_delta(rho, hi) > delta {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = lo + (hi - lo) / 2.0;
        if mid == lo || mid == hi || (hi - lo) <= 1e-12 * hi {
            break;
        }
        if cdp_delta(rho, mid) <= delta {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Epsilon::new(hi)
}

/// ε-DP implies (ε²/2)-zCDP (Bun–Steinke 2016, Prop. 1.4): used to put a pure cost on a zCDP ledger.
pub fn pure_to_zcdp(epsilon: Epsilon) -> Result<Rho> {
    Rho::new(epsilon.get() * epsilon.get() / 2.0)
}

#[cfg(test)]
#[path = "cost_tests.rs"]
mod tests;
