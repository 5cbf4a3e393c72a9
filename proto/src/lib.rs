//! Concord's wire: the `concord.v1` protobuf package and the tonic/prost code generated from it.
//!
//! The `.proto` files live in `proto/concord/v1/` and are compiled at build time by `protox`, a
//! pure-Rust protobuf compiler, so no system `protoc` is needed. This crate holds the wire only:
//! no policy, no I/O beyond what tonic's generated clients and servers do.
//!
//! # Layout
//! - [`v1`]: the generated messages, the `Operator` service (people to their own node) and the
//!   `Federation` service (node to node), and the `Jobs` service (people's joint jobs).
//! - [`envelope`]: limits and checks for the [`v1::Envelope`] that carries protocol messages.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The generated `concord.v1` package.
#[allow(
    missing_docs,
    unreachable_pub,
    unused_qualifications,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod v1 {
    tonic::include_proto!("concord.v1");
}

pub mod envelope;
