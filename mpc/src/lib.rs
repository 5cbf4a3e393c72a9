//! Concord's multi-party protocols, as pure state machines.
//!
//! Every protocol here is *sans-IO*: a role is a value that takes the peer's message and returns
//! its next state and the messages to send. Nothing in this crate opens a socket, a file or a
//! database; the node crate maps these messages onto its transport, and benches and tests run both
//! roles in one process. Heavy arithmetic runs on all cores through rayon's global pool.
//!
//! # Layout
//! - [`SessionId`], [`Frame`]: what every protocol shares (re-exported by each protocol module).
//! - [`psi`]: two-party private set intersection by ECDH on ristretto255 (cardinality or
//!   intersection, one-shot or against a cached sender encoding), with its canonical key
//!   encoding, wire format, and an in-process driver used by `concord bench psi`.
//!   [`psi::join`] builds on it: DP-noised counts and sums of one party's values over the
//!   intersection, per public category, under exponential ElGamal (`concord bench join`).
//!   [`psi::ot`] is the fast mode for intersections: a KKRT16-style batch OPRF from OT
//!   extension, with the same key normalization (`concord bench psi --protocol ot`).
//! - [`secagg`]: secure aggregation of `n` parties' vectors mod 2^64 with `t`-of-`n` dropout
//!   recovery (Bonawitz et al. 2017): X25519, Shamir over the ristretto255 scalar field,
//!   AES-GCM envelopes, AES-CTR masks; typed rounds for parties and the aggregator, and an
//!   in-process driver used by `concord bench secagg`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod psi;
pub mod secagg;
mod session;

pub use session::{Frame, SessionId};

/// Version of Concord's protocols. It is part of every hash-to-group and key-derivation
/// domain-separation tag, so two versions can never silently interoperate.
pub const PROTOCOL_VERSION: u8 = 1;
