//! What each job kind computes, one module per kind, each with both of its sides: the
//! coordinator's (it proposes and drives) and the participant's (it decides and answers).
//!
//! - `psi`: PSI cardinality and intersection, in the ECDH or the OT protocol; `psi::coordinator`
//!   is the comparing side, the participant's side is `participate` in `jobs::participant`,
//!   shared with the join's key holder.
//! - `join`: the join-aggregate's value holder (the coordinator) and key holder (the
//!   participant), and their noise.
//! - `query`: single-node DP statistics; the coordinator alone.
//! - `aggregate`: the secure aggregate's vectors and noise shares; `aggregate::secagg` drives the
//!   secure-aggregation roles, `aggregate::coordinator` and `aggregate::participant` its sides.

pub(super) mod aggregate;
pub(super) mod join;
pub(super) mod psi;
pub(super) mod query;
