//! Validated privacy parameters: ε, δ and ρ.
//!
//! A value of these types is always finite and in range, so code that takes an [`Epsilon`] never
//! has to re-check it. Construction is the only place that can fail.

use crate::error::{DpError, Result};
use serde::{Deserialize, Serialize};

/// Pure-DP privacy loss ε: finite and strictly positive.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Epsilon(f64);

/// Approximate-DP failure probability δ: strictly between 0 and 1.
///
/// δ = 0 is not a `Delta`: a pure guarantee is an [`Epsilon`] alone.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Delta(f64);

/// Zero-concentrated DP parameter ρ (Bun–Steinke 2016): finite and strictly positive.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Rho(f64);

fn positive_finite(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(DpError::InvalidParameter {
            name,
            value,
            expected: "finite and > 0",
        })
    }
}

impl Epsilon {
    /// Validates ε: rejects NaN, infinities and ε ≤ 0.
    pub fn new(value: f64) -> Result<Self> {
        positive_finite("epsilon", value).map(Self)
    }
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Delta {
    /// Validates δ: rejects NaN and anything outside (0, 1).
    pub fn new(value: f64) -> Result<Self> {
        if value.is_finite() && value > 0.0 && value < 1.0 {
            Ok(Self(value))
        } else {
            Err(DpError::InvalidParameter {
                name: "delta",
                value,
                expected: "in (0, 1)",
            })
        }
    }
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Rho {
    /// Validates ρ: rejects NaN, infinities and ρ ≤ 0.
    pub fn new(value: f64) -> Result<Self> {
        positive_finite("rho", value).map(Self)
    }
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

macro_rules! conversions {
    ($($t:ty),*) => {$(
        impl TryFrom<f64> for $t {
            type Error = DpError;
            fn try_from(value: f64) -> Result<Self> {
                <$t>::new(value)
            }
        }
        impl From<$t> for f64 {
            fn from(value: $t) -> f64 {
                value.0
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
conversions!(Epsilon, Delta, Rho);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rejects_invalid_values_with_typed_errors() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, -0.0] {
            assert!(matches!(
                Epsilon::new(bad),
                Err(DpError::InvalidParameter {
                    name: "epsilon",
                    ..
                })
            ));
            assert!(matches!(
                Rho::new(bad),
                Err(DpError::InvalidParameter { name: "rho", .. })
            ));
        }
        for bad in [0.0, 1.0, 1.5, -1e-9, f64::NAN] {
            assert!(matches!(
                Delta::new(bad),
                Err(DpError::InvalidParameter { name: "delta", .. })
            ));
        }
        assert_eq!(Epsilon::new(0.5).unwrap().get(), 0.5);
        assert_eq!(Delta::new(1e-9).unwrap().get(), 1e-9);
    }

    #[test]
    fn serde_validates() {
        let e: Epsilon = serde_json::from_str("1.5").unwrap();
        assert_eq!(e.get(), 1.5);
        assert!(serde_json::from_str::<Epsilon>("-1").is_err());
        assert!(serde_json::from_str::<Delta>("1.0").is_err());
    }
}
