//! The Concord node: everything a data holder runs that touches disks (and, next, the network).
//!
//! A department's node is sovereign over its data. This crate holds its state in one SQLite
//! database, keeps the tamper-evident audit log, and reads registered datasets in place. The
//! protocol cores (`concord-mpc`, `concord-dp`) stay pure; the node drives them.
//!
//! Status: the state store, the audit log and CSV validation are here; configuration, the
//! catalog service, mutual TLS and the gRPC service come next (see the README).
//!
//! # Layout
//! - [`store`]: the SQLite database and its migrations.
//! - [`audit`]: the append-only, hash-chained audit log with an Ed25519-signed head.
//! - [`csv_input`]: strict, streaming validation of a CSV dataset against its declared schema.
//! - [`clock`]: an injectable clock, so expiry and timestamps are testable.

#![forbid(unsafe_code)]

pub mod audit;
pub mod clock;
pub mod csv_input;
pub mod store;
