//! The Concord node: everything a data holder runs that touches disks and the network.
//!
//! A department's node is sovereign over its data: it answers only the peers and people its own
//! config lists, over mutual TLS, and audits every request it receives, accepted or refused. It
//! holds its state in one SQLite database, keeps the tamper-evident audit log, and reads
//! registered datasets in place. The protocol cores (`concord-mpc`, `concord-dp`) stay pure; the
//! node drives them.
//!
//! # Layout
//! - [`config`]: the node's TOML config and the CLI's person profiles; secrets by file or env.
//! - [`tls`]: rustls server config, and mapping client certificates to peers and people.
//! - `node`: the running node's shared state (config, database, audit key, live jobs);
//!   `error`: why the node or a request failed.
//! - [`service`]: the gRPC server (the `Operator` and `Federation` services), its accept loop,
//!   authorization, auditing, and graceful shutdown.
//! - [`client`]: how a person's CLI and a node reach a node; `convert`: domain types to and
//!   from the wire.
//! - [`federation`]: `concord federation init`, a trial CA with certificates and configs.
//! - [`catalog`]: registered datasets, their schema and field tiers, and what peers may see.
//! - [`policy`]: the tier × use matrix, grant terms and typed refusals (pure rules).
//! - [`grants`]: grants in the database; `admit` and `recheck`, the checks every job makes.
//! - [`ledger`]: privacy-budget caps and the reserve / commit / return ledger.
//! - [`jobs`]: joint jobs: the job table, the policy gate, and the engine that runs PSI and
//!   query jobs over `Federation.Exchange`.
//! - [`store`]: the SQLite database and its migrations.
//! - [`audit`]: the append-only, hash-chained audit log with an Ed25519-signed head.
//! - [`spill`]: checksummed bucket files, a registry-scale job's keys on disk between passes.
//! - [`csv_input`]: strict, streaming validation of a CSV dataset against its declared schema.
//! - [`hex`]: hex encoding of keys and digests; [`name`]: what a node or dataset may be called.
//! - [`clock`]: an injectable clock, so expiry and timestamps are testable; `random`: the
//!   node's randomness, from one place.

#![forbid(unsafe_code)]

pub mod audit;
pub mod catalog;
pub mod client;
pub mod clock;
pub mod config;
mod convert;
pub mod csv_input;
mod error;
pub mod federation;
pub mod grants;
pub mod hex;
pub mod jobs;
pub mod ledger;
pub mod name;
mod node;
pub mod policy;
mod random;
pub mod service;
pub mod spill;
pub mod store;
pub mod tls;

/// The generated wire types, for callers of [`client`].
pub use concord_proto::v1 as proto;
