//! End-to-end tests: real `concord node` processes on 127.0.0.1 with mutual TLS and SQLite,
//! driven through the `concord` CLI exactly as a person would.
//!
//! They live in the root package, across the crates they exercise; the `concord` binary they
//! run is built by cargo on first use into the same target directory and profile
//! (`support::concord_bin`), so `cargo test --test e2e` always runs the code of this checkout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aggregate;
mod audit;
mod catalog;
mod demo;
mod exports;
mod governance;
mod jobs;
mod privacy;
mod support;
