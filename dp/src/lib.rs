//! Differential privacy for Concord: every statistic that leaves a federation is released here.
//!
//! The crate is pure (no I/O, no async, no database): it takes values and an injected CSPRNG and
//! returns noised values with their mechanism, scale, privacy cost and 95% accuracy. The node
//! reserves and commits the [`PrivacyCost`]s in its ledger.
//!
//! # Layout
//! - [`params`]: validated ε, δ, ρ newtypes.
//! - [`cost`]: exact fixed-point [`PrivacyCost`], composition, zCDP → (ε, δ) conversion.
//! - [`release`]: count, sum, mean, histogram, quantile and thresholded histogram on OpenDP,
//!   with contribution bounding ([`release::Contributions`]).
//! - [`sample`]: exact integer samplers (Bernoulli, Bernoulli(e^−γ), geometric, discrete Laplace,
//!   Poisson, negative binomial) on an injected [`rand::CryptoRng`].
//! - [`shares`]: distributed noise shares (Pólya → discrete Laplace, Skellam) for secure aggregation.
//! - [`accuracy`]: 95% interval half-widths from a noise scale.
//! - [`plan`]: the accuracy planner behind `concord dp plan`.
//! - [`stats`]: χ², Clopper–Pearson and ε-lower-bound helpers for tests and audits.
//! - [`error`]: the crate's [`DpError`].
//!
//! # Randomness
//! Two sources, each documented where it is used:
//! - Releases run OpenDP's mechanisms, which draw from OpenDP's own sampler. With its `use-openssl`
//!   feature (enabled here, linking the system libssl) that is OpenSSL's `RAND_priv_bytes`, a
//!   CSPRNG. OpenDP does not accept an injected RNG, so releases cannot be seeded; their tests are
//!   statistical with tolerances chosen for a negligible false-failure rate.
//! - Everything else (noise shares, the samplers) takes an injected [`rand::CryptoRng`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod accuracy;
pub mod cost;
pub mod error;
pub mod params;
pub mod plan;
pub mod release;
pub mod sample;
pub mod shares;
pub mod stats;

pub use cost::{CostKind, PrivacyCost, Quantity};
pub use error::{DpError, Result};
pub use params::{Delta, Epsilon, Rho};
pub use release::{Contributions, Release};
pub use shares::{NoiseTarget, SharePlan};
