//! End-to-end tests: real `concord node` processes on 127.0.0.1 with mutual TLS and SQLite,
//! driven through the `concord` CLI exactly as a person would.

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
