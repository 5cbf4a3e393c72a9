//! What a job asks of each node's policy: the request types of [`crate::policy`]. Every
//! participating node checks its own policy through [`crate::grants::admit`] before its first
//! message (reserving the job's budget in the same transaction) and [`crate::grants::recheck`]
//! before it releases, both audited by the node (`policy.admit`, `policy.release`); after a
//! successful recheck the job commits its reservation ([`crate::ledger::commit`]), and a job
//! that ends without release returns it ([`crate::ledger::give_back`]).

pub use crate::policy::{FieldUse, JobKind, UseRequest};
