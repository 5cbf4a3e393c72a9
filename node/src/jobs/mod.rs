//! Joint jobs: the job table, their lifecycle, and the engine that runs them.
//!
//! # Lifecycle
//! `submitted` → `authorized` (every party's gate said yes and reserved its budget) →
//! `running` (the protocol runs over `Federation.Exchange`) → `released` (the result is stored
//! for its recipient and every party committed its budget), or `failed` / `cancelled` at any
//! point before release (every party returns its reservation; nothing partial is released).
//!
//! An operator submits to their own node, the **coordinator**; the other node of a PSI or join
//! job (or every other contributor of an aggregate) is a **participant** that learns of the job
//! through `Federation.Propose`, decides with its own gate, and keeps its own row for it. Each
//! node's row says how the job ended *there*, with the
//! reason and the node that refused or failed.
//!
//! Jobs do not survive a restart: at start, [`fail_interrupted`] marks every job that had not
//! ended as failed (the ledger's `recover` returns their budget).
//!
//! # Layout
//! - [`gate`]: the one place where a job asks the node's policy.
//! - `input`: streaming the registered CSV into key sets and column values.
//! - `exchange`: envelopes, the inbound demultiplexer and the outbound writer of one job.
//! - `psi`: the ECDH-PSI roles of `concord-mpc`, driven over a job's exchange.
//! - `coordinator`: submitting, authorizing, running and releasing at the coordinator;
//!   `coordinator_psi`: its side of a PSI job.
//! - `participant`: proposals and exchanges at a participant.
//! - `join`: the join-aggregate roles and their noise; the coordinator holds the values.
//! - `query`: single-node DP statistics.
//! - `aggregate`: an aggregate's vectors, noise shares and intervals (pure, tested);
//!   `secagg`: its secure-aggregation roles driven over channels; `coordinator_agg` and
//!   `participant_agg`: its two sides.

pub(crate) mod coordinator;
pub(crate) mod error;
mod exchange;
mod failure;
pub mod gate;
mod input;
mod kinds;
mod lifecycle;
pub(crate) mod live;
pub(crate) mod participant;
mod party_input;
#[cfg(test)]
mod query_audit;
mod session;
pub(crate) mod table;

pub(crate) use live::Live;
pub use table::fail_interrupted;
