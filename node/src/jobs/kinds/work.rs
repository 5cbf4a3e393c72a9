//! What the shared steps of a job (the gate, the budget, the memory limit) need to know of its
//! kind, so that they need not tell kinds apart themselves.

use crate::jobs::gate::FieldUse;
use crate::jobs::table::{JobRow, QueryParams};
use crate::policy::JobKind;

/// What the shared steps of a job need to know of its kind.
#[derive(Clone, Copy, Debug)]
pub(in crate::jobs) struct Work {
    /// How the job uses its key columns at this node, as the gate sees it.
    pub(in crate::jobs) key_use: FieldUse,
    /// Its noised release protects one distinct key (so the dataset's privacy unit must be its
    /// keys): a PSI cardinality, a join.
    pub(in crate::jobs) protects_one_key: bool,
    /// It matches keys across parties, so every party's key types must agree.
    pub(in crate::jobs) matches_keys: bool,
    /// It holds its rows' keys in memory, so `[limits] max_keys` bounds its dataset.
    pub(in crate::jobs) holds_rows: bool,
    /// Its release is noised and spends the job's ε (all but an intersection, which goes to
    /// its recipient only and spends none).
    pub(in crate::jobs) noised: bool,
}

impl Work {
    /// A job's kind as the engine sees it.
    pub(in crate::jobs) fn of(row: &JobRow) -> Work {
        let statistic = |q: Option<&QueryParams>| match q.map(|q| q.statistic.as_str()) {
            Some("histogram") => FieldUse::DpGroup,
            _ => FieldUse::DpValue,
        };
        let (key_use, protects_one_key, matches_keys, holds_rows) = match row.kind {
            JobKind::PsiCardinality | JobKind::Join => (FieldUse::MatchKey, true, true, true),
            JobKind::PsiIntersection => (FieldUse::RevealKey, false, true, true),
            JobKind::Query => (statistic(row.spec.query.as_ref()), false, false, true),
            // An aggregate streams its dataset into a vector.
            JobKind::Aggregate => (
                statistic(row.spec.aggregate.as_ref().map(|a| &a.query)),
                false,
                false,
                false,
            ),
        };
        Work {
            key_use,
            protects_one_key,
            matches_keys,
            holds_rows,
            noised: row.kind != JobKind::PsiIntersection,
        }
    }
}
