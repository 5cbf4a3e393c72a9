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
//! Shared by every kind (none of these tells one kind from another):
//! - `table`: the job table, a job's terms (`Spec`), its state, and its `Protocol`.
//! - `lifecycle`: the steps every job takes at every party: admit (the gate, reserving the
//!   budget), progress, recheck, commit or return the budget, fail (told to the parties), and
//!   the control messages that can stop it.
//! - `session`: a coordinator's session with its peers: propose, open the exchange, run a
//!   protocol role over it, the release handshake.
//! - [`gate`]: the one place where a job asks the node's policy (`Node::authorize`, audited).
//! - `exchange`: envelopes, the inbound demultiplexer and the outbound writer of one job.
//! - `live`: running jobs' progress, cancel switches, and the proposals being decided.
//! - `failure`: how a job ended without release, as the parties tell each other.
//! - `error`: `JobError`, why a step failed, matched by variant.
//! - `input`: streaming the registered CSV into key sets and column values; `party_input`: what
//!   each party's input was, as the result states it.
//! - `coordinator`: submitting a job, authorizing it, and running it to its release;
//!   `participant`: deciding a proposal and answering its exchange.
//!
//! `kinds/` is the one place that names kinds: one folder per kind with both of its sides
//! (`psi` for cardinality and intersection, `join`, `query`, `aggregate` with its
//! secure-aggregation roles), `kinds/mod.rs` that dispatches to them, and `kinds/work.rs`,
//! what the shared steps need to know of a kind (`Work`: how it uses its key columns, whether
//! its keys must agree across parties, whether it is noised).
//!
//! # Adding a job kind
//! 1. One folder `kinds/<kind>/` with `mod.rs` (`submitted`: its terms from its `JobSpec`,
//!    checked; `proposed`, if other nodes take part: its terms from a `JobProposal`),
//!    `coordinator.rs` (what the coordinator runs once the job is admitted: `lifecycle` and
//!    `session` give the steps) and, if other nodes take part, `participant.rs` (what a
//!    participant runs on its exchange).
//! 2. One variant of [`crate::policy::JobKind`] (its name in grants, configs and the CLI). The
//!    compiler then asks for the rest, each one match arm: the kind's value in the proto enum
//!    `JobKind` and its two conversions (`convert.rs`), the four dispatches in `kinds/mod.rs`
//!    (`submitted`, `proposed`, `coordinate`, `participate`) and its `Work` in `kinds/work.rs`.
//! 3. On the wire, its `JobSpec` case (and any terms a participant needs in `JobProposal`), and
//!    in the CLI its `concord run` subcommand.
//!
//! The lifecycle, the gate, the exchange, the session, the table and the service need no
//! change.
//!
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
mod session;
pub(crate) mod table;

pub(crate) use live::Live;

/// The directory under a node's data directory where running jobs keep their spill files.
pub(crate) const SPILL_DIR: &str = "spill";
pub use table::fail_interrupted;
