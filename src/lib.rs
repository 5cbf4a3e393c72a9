//! Concord: joint statistics across data holders without disclosing raw records.
//!
//! This facade re-exports the member crates so that the workspace-wide `tests/` and `benches/`
//! (and embedders) reach them by one name.
//!
//! # Layout
//! - [`mpc`]: the multi-party protocols, pure and transport-free (`concord-mpc`).
//! - [`dp`]: differential privacy: releases, noise shares, accounting, accuracy (`concord-dp`).

#![forbid(unsafe_code)]

pub use concord_dp as dp;
pub use concord_mpc as mpc;
