//! The policy rules a node applies to every use of its data: the tier × use matrix, the terms of
//! a grant, and the typed reasons for a refusal. Pure: no database, no clock, no network; the
//! caller ([`crate::grants`]) loads the grant and the dataset and passes the time in.
//!
//! # Field uses and the tier matrix
//! A job touches each field of a local dataset in one of four ways ([`FieldUse`]):
//!
//! | use | meaning | jobs |
//! |---|---|---|
//! | `match-key` | a key compared across nodes; only a DP statistic of the matches leaves | PSI cardinality, join-aggregate |
//! | `reveal-key` | a key whose matches are revealed to the receiver | PSI intersection |
//! | `dp-value` | a value inside a differentially private aggregate | join, aggregate, query |
//! | `dp-group` | a category grouping a differentially private aggregate | join, aggregate, query |
//!
//! Each tier allows a set of uses ([`TierMatrix`], configurable per node under `[policy.tiers]`).
//! The default:
//!
//! | tier | allowed uses |
//! |---|---|
//! | `public` | all four |
//! | `internal` | all four: a PSI key, or inside aggregates |
//! | `sensitive` | `dp-value`, `dp-group`: only inside DP aggregates (a key comparison tells the comparing party an exact count, so it is not allowed) |
//! | `restricted` | nothing, ever: not configurable |
//!
//! No grant can allow more than the matrix: the matrix is applied to every use at every check,
//! whatever the grant's scope says, and a reclassified field takes effect at the next check.
//!
//! # Grants
//! A [`Grant`] authorizes one operator identity (the grantee) on one dataset (`overall`), on every
//! dataset tagged with a domain (`domain`), or for a `scenario`: named job kinds × fields ×
//! peers on one dataset. Every grant names the recipients its results may go to, a validity
//! window `[from, until)`, limits against probing (minimum set size, minimum group size,
//! maximum runs per period), a budget cap per period, its purpose and its security owner. It
//! is active only once `m` of the node's data managers have approved it (the proposer's own
//! approval counts), and a revocation ends it at once, also for jobs that have not released.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use concord_dp::PrivacyCost;
use serde::Deserialize;

use crate::catalog::{Dataset, Tier};
use crate::ledger::Period;

/// The kinds of joint job a grant can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum JobKind {
    /// A DP-noised PSI cardinality.
    PsiCardinality,
    /// A PSI intersection revealed to the receiver.
    PsiIntersection,
    /// A DP sum / count over a private intersection.
    Join,
    /// A DP secure aggregate across nodes.
    Aggregate,
    /// A DP statistic of one node's dataset.
    Query,
}

impl JobKind {
    /// Every kind, in order.
    pub const ALL: [JobKind; 5] = [
        JobKind::PsiCardinality,
        JobKind::PsiIntersection,
        JobKind::Join,
        JobKind::Aggregate,
        JobKind::Query,
    ];

    /// Its name in configs, grants and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::PsiCardinality => "psi-cardinality",
            JobKind::PsiIntersection => "psi-intersection",
            JobKind::Join => "join",
            JobKind::Aggregate => "aggregate",
            JobKind::Query => "query",
        }
    }

    /// Parses [`JobKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a job uses a field (see the module docs).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FieldUse {
    /// Compared across nodes; only a DP statistic of the matches is released.
    MatchKey,
    /// Compared across nodes; the matches are revealed to the receiver.
    RevealKey,
    /// Inside a DP aggregate.
    DpValue,
    /// Groups a DP aggregate.
    DpGroup,
}

impl FieldUse {
    /// Every use, in order.
    pub const ALL: [FieldUse; 4] = [
        FieldUse::MatchKey,
        FieldUse::RevealKey,
        FieldUse::DpValue,
        FieldUse::DpGroup,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldUse::MatchKey => "match-key",
            FieldUse::RevealKey => "reveal-key",
            FieldUse::DpValue => "dp-value",
            FieldUse::DpGroup => "dp-group",
        }
    }
}

impl fmt::Display for FieldUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[policy.tiers]`: which uses each tier allows. `restricted` allows nothing and cannot be set.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TierMatrix {
    /// Uses of `public` fields.
    #[serde(default = "all_uses")]
    pub public: BTreeSet<FieldUse>,
    /// Uses of `internal` fields.
    #[serde(default = "all_uses")]
    pub internal: BTreeSet<FieldUse>,
    /// Uses of `sensitive` fields.
    #[serde(default = "dp_uses")]
    pub sensitive: BTreeSet<FieldUse>,
}

fn all_uses() -> BTreeSet<FieldUse> {
    FieldUse::ALL.into_iter().collect()
}

fn dp_uses() -> BTreeSet<FieldUse> {
    [FieldUse::DpValue, FieldUse::DpGroup].into_iter().collect()
}

impl Default for TierMatrix {
    fn default() -> Self {
        Self {
            public: all_uses(),
            internal: all_uses(),
            sensitive: dp_uses(),
        }
    }
}

/// A [`TierMatrix`] whose higher tier allows a use its lower tier does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "policy.tiers: {} allows {usage} but {} does not; a lower tier must allow at least what \
     a higher one does",
    higher.as_str(),
    lower.as_str()
)]
pub struct TierGap {
    /// The tier that allows less.
    pub lower: Tier,
    /// The tier that allows `usage`.
    pub higher: Tier,
    /// The use the lower tier lacks.
    pub usage: FieldUse,
}

impl TierMatrix {
    /// Whether a field of `tier` may be used as `usage`.
    pub fn allows(&self, tier: Tier, usage: FieldUse) -> bool {
        match tier {
            Tier::Public => self.public.contains(&usage),
            Tier::Internal => self.internal.contains(&usage),
            Tier::Sensitive => self.sensitive.contains(&usage),
            Tier::Restricted => false,
        }
    }

    /// A lower tier may never allow less than a higher one (`public ⊇ internal ⊇ sensitive`):
    /// otherwise reclassifying a field *up* could widen what may be done with it.
    pub fn check(&self) -> Result<(), TierGap> {
        let pairs = [
            (Tier::Public, &self.public, Tier::Internal, &self.internal),
            (
                Tier::Internal,
                &self.internal,
                Tier::Sensitive,
                &self.sensitive,
            ),
        ];
        for (lower, lower_uses, higher, higher_uses) in pairs {
            if let Some(&usage) = higher_uses.difference(lower_uses).next() {
                return Err(TierGap {
                    lower,
                    higher,
                    usage,
                });
            }
        }
        Ok(())
    }
}

/// What a grant covers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// One whole dataset.
    Overall {
        /// Its id.
        dataset: String,
    },
    /// Every dataset tagged with this domain.
    Domain {
        /// The domain tag.
        domain: String,
    },
    /// Named job kinds × fields × peers on one dataset.
    Scenario {
        /// Its id.
        dataset: String,
        /// Allowed job kinds.
        kinds: BTreeSet<JobKind>,
        /// Allowed fields (each still bounded by its tier).
        fields: BTreeSet<String>,
        /// Allowed peer nodes.
        peers: BTreeSet<String>,
    },
}

impl Scope {
    /// `overall`, `domain` or `scenario`.
    pub fn name(&self) -> &'static str {
        match self {
            Scope::Overall { .. } => "overall",
            Scope::Domain { .. } => "domain",
            Scope::Scenario { .. } => "scenario",
        }
    }

    /// The dataset or domain it names.
    pub fn target(&self) -> &str {
        match self {
            Scope::Overall { dataset } | Scope::Scenario { dataset, .. } => dataset,
            Scope::Domain { domain } => domain,
        }
    }
}

/// A grant's limits against probing and overuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Every party's input set (distinct keys, or rows for a query) must be at least this big.
    pub min_set_size: u64,
    /// A grouped release may not show a (noised) group smaller than this.
    pub min_group_size: u64,
    /// At most this many jobs per `runs_period` (`None`: no limit).
    pub max_runs: Option<u32>,
    /// The period `max_runs` renews over.
    pub runs_period: Period,
}

/// The terms a data manager proposes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    /// The operator identity the grant authorizes.
    pub grantee: String,
    /// What it covers.
    pub scope: Scope,
    /// Who may receive results (person identities).
    pub recipients: BTreeSet<String>,
    /// Valid from (ms, inclusive).
    pub valid_from_ms: i64,
    /// Valid until (ms, exclusive).
    pub valid_until_ms: i64,
    /// Why the data may be used.
    pub purpose: String,
    /// Who answers for the security of the use.
    pub security_owner: String,
    /// Limits.
    pub limits: Limits,
    /// The most all jobs under the grant may reserve plus spend per `budget_period`.
    pub budget: PrivacyCost,
    /// The period `budget` renews over.
    pub budget_period: Period,
}

/// A stored grant with its approvals and revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Its id at this node.
    pub id: String,
    /// Its terms.
    pub terms: Terms,
    /// The data manager who proposed it.
    pub proposed_by: String,
    /// When (ms).
    pub proposed_at_ms: i64,
    /// Data managers who approved it, with when (the proposer first).
    pub approvals: Vec<(String, i64)>,
    /// Set once revoked.
    pub revoked: Option<Revocation>,
}

/// The exit of a grant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocation {
    /// When (ms).
    pub at_ms: i64,
    /// The data manager.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// Approval rule of a node: `needed` of the identities in `managers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approvals {
    /// m.
    pub needed: u32,
    /// The node's current data managers (n = their number). Approvals by anyone no longer
    /// listed do not count.
    pub managers: BTreeSet<String>,
}

/// Where a grant stands at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Fewer approvals than needed.
    Proposed {
        /// Approvals that count.
        have: u32,
        /// Approvals needed.
        needed: u32,
    },
    /// Approved, but its window has not opened.
    NotYetValid,
    /// Approved and in its window.
    Active,
    /// Its window has closed.
    Expired,
    /// Revoked.
    Revoked,
}

impl Status {
    /// Its name in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Proposed { .. } => "proposed",
            Status::NotYetValid => "not-yet-valid",
            Status::Active => "active",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
        }
    }
}

impl Grant {
    /// Approvals that count under `rule`.
    pub fn counted_approvals(&self, rule: &Approvals) -> u32 {
        let approvers: BTreeSet<&str> = self
            .approvals
            .iter()
            .map(|(who, _)| who.as_str())
            .filter(|who| rule.managers.contains(*who))
            .collect();
        u32::try_from(approvers.len()).unwrap_or(u32::MAX)
    }

    /// Where the grant stands at `now_ms`. Revocation wins over everything, then approval,
    /// then the window.
    pub fn status(&self, rule: &Approvals, now_ms: i64) -> Status {
        let have = self.counted_approvals(rule);
        if self.revoked.is_some() {
            Status::Revoked
        } else if have < rule.needed {
            Status::Proposed {
                have,
                needed: rule.needed,
            }
        } else if now_ms < self.terms.valid_from_ms {
            Status::NotYetValid
        } else if now_ms >= self.terms.valid_until_ms {
            Status::Expired
        } else {
            Status::Active
        }
    }
}

/// A node's policy: its tier matrix and its approval rule (from `[policy]` in its config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// What each tier allows.
    pub matrix: TierMatrix,
    /// m of n data managers.
    pub approvals: Approvals,
}

/// What a job asks of this node: checked against a grant by [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UseRequest {
    /// The job's id.
    pub job: String,
    /// Its kind.
    pub kind: JobKind,
    /// The operator identity that submitted the job.
    pub grantee: String,
    /// The grant at this node the job runs under; empty: the first of the grantee's grants (by
    /// id) that allows the whole request (see [`crate::grants::admit`]).
    pub grant: String,
    /// The local dataset.
    pub dataset: String,
    /// Every local field the job touches, with how.
    pub fields: Vec<(String, FieldUse)>,
    /// The other nodes taking part.
    pub peers: Vec<String>,
    /// Who receives the result.
    pub recipient: String,
    /// What the job charges to the local dataset.
    pub cost: PrivacyCost,
}

/// Why a node refuses a use of its data. [`Refusal::code`] is stable for scripts and tests;
/// `Display` says it in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No grant with this id at this node.
    #[error("no grant {grant:?} at this node")]
    UnknownGrant {
        /// The id asked for.
        grant: String,
    },
    /// The job names no grant, and none at this node lets the grantee use the dataset.
    #[error("no grant at this node lets {grantee} use dataset {dataset:?}")]
    NoGrant {
        /// Who asked.
        grantee: String,
        /// The dataset.
        dataset: String,
    },
    /// The grant authorizes someone else.
    #[error("grant {grant} authorizes {holder}, not {asked_by}")]
    NotGrantee {
        /// The grant.
        grant: String,
        /// Its grantee.
        holder: String,
        /// Who asked.
        asked_by: String,
    },
    /// Not enough data managers have approved it.
    #[error("grant {grant} is not active: {have} of {needed} approvals")]
    NotApproved {
        /// The grant.
        grant: String,
        /// Approvals that count.
        have: u32,
        /// Needed.
        needed: u32,
    },
    /// Its window has not opened.
    #[error("grant {grant} is valid only from {from_ms} ms")]
    NotYetValid {
        /// The grant.
        grant: String,
        /// Start (ms).
        from_ms: i64,
    },
    /// Its window has closed.
    #[error("grant {grant} expired at {until_ms} ms")]
    Expired {
        /// The grant.
        grant: String,
        /// End (ms).
        until_ms: i64,
    },
    /// It was revoked.
    #[error("grant {grant} was revoked by {by} at {at_ms} ms: {reason}")]
    Revoked {
        /// The grant.
        grant: String,
        /// Who revoked it.
        by: String,
        /// When (ms).
        at_ms: i64,
        /// Why.
        reason: String,
    },
    /// The job reaches beyond what the grant covers.
    #[error("grant {grant} does not cover {what} {value:?}")]
    OutOfScope {
        /// The grant.
        grant: String,
        /// `dataset`, `job kind`, `field`, `peer` or `recipient`.
        what: &'static str,
        /// What was asked for.
        value: String,
    },
    /// The dataset is not registered here.
    #[error("no dataset {dataset:?} at this node")]
    UnknownDataset {
        /// The id.
        dataset: String,
    },
    /// The dataset has no such column.
    #[error("dataset {dataset} has no column {field:?}")]
    UnknownField {
        /// The dataset.
        dataset: String,
        /// The column asked for.
        field: String,
    },
    /// The field's tier does not allow this use.
    #[error("field {field} is {tier}, which does not allow {usage}")]
    TierViolation {
        /// The field.
        field: String,
        /// Its tier.
        tier: Tier,
        /// The use asked for.
        usage: FieldUse,
    },
    /// A party's input set is below the grant's minimum.
    #[error("{party}'s input has {size} records, below the grant's minimum of {min}")]
    SetTooSmall {
        /// `this node` or the peer's name.
        party: String,
        /// Its size.
        size: u64,
        /// The minimum.
        min: u64,
    },
    /// A released group would be below the grant's minimum.
    #[error("a released group has (noised) size {size}, below the grant's minimum of {min}")]
    GroupTooSmall {
        /// The smallest group.
        size: i64,
        /// The minimum.
        min: u64,
    },
    /// The grant's run limit for the period is used up.
    #[error("grant {grant} allows {max} runs per {period}, all used")]
    RunsExhausted {
        /// The grant.
        grant: String,
        /// The limit.
        max: u32,
        /// Its period.
        period: Period,
    },
    /// No budget is set for the dataset.
    #[error("no privacy budget is set for dataset {dataset:?}")]
    NoBudget {
        /// The dataset.
        dataset: String,
    },
    /// The cost does not fit under a cap (the grant's, the grantee's or the dataset's).
    #[error("privacy budget exhausted: {cap} this {period}: {remaining} left, {cost} asked")]
    BudgetExhausted {
        /// Which cap.
        cap: String,
        /// Its period.
        period: Period,
        /// What is left.
        remaining: Box<PrivacyCost>,
        /// What the job asked for.
        cost: Box<PrivacyCost>,
    },
}

impl Refusal {
    /// A stable, kebab-case name for the reason.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownGrant { .. } => "unknown-grant",
            Refusal::NoGrant { .. } => "no-grant",
            Refusal::NotGrantee { .. } => "not-grantee",
            Refusal::NotApproved { .. } => "not-approved",
            Refusal::NotYetValid { .. } => "not-yet-valid",
            Refusal::Expired { .. } => "expired",
            Refusal::Revoked { .. } => "revoked",
            Refusal::OutOfScope { .. } => "out-of-scope",
            Refusal::UnknownDataset { .. } => "unknown-dataset",
            Refusal::UnknownField { .. } => "unknown-field",
            Refusal::TierViolation { .. } => "tier-violation",
            Refusal::SetTooSmall { .. } => "set-too-small",
            Refusal::GroupTooSmall { .. } => "group-too-small",
            Refusal::RunsExhausted { .. } => "runs-exhausted",
            Refusal::NoBudget { .. } => "no-budget",
            Refusal::BudgetExhausted { .. } => "budget-exhausted",
        }
    }

    /// Whether the job must still *commit* its reservation when refused for this reason. A
    /// group-size refusal is decided on the noised output, so the refusal itself is a release
    /// of that output (post-processing) and must be paid for; every other refusal happens
    /// before anything data-dependent exists, and the reservation is returned.
    pub fn spends_budget(&self) -> bool {
        matches!(self, Refusal::GroupTooSmall { .. })
    }
}

/// Checks `req` against `grant` at `now_ms`: the grant's state, who asks, scope, recipients and
/// the tier matrix. Budget and run limits need the ledger and are checked by
/// [`crate::grants::admit`] in the same transaction.
pub fn check(
    grant: &Grant,
    rules: &Rules,
    dataset: &Dataset,
    req: &UseRequest,
    now_ms: i64,
) -> Result<(), Refusal> {
    let id = &grant.id;
    let terms = &grant.terms;
    match grant.status(&rules.approvals, now_ms) {
        Status::Active => {}
        Status::Revoked => {
            let r = grant.revoked.clone().unwrap_or(Revocation {
                at_ms: 0,
                by: String::new(),
                reason: String::new(),
            });
            return Err(Refusal::Revoked {
                grant: id.clone(),
                by: r.by,
                at_ms: r.at_ms,
                reason: r.reason,
            });
        }
        Status::Proposed { have, needed } => {
            return Err(Refusal::NotApproved {
                grant: id.clone(),
                have,
                needed,
            });
        }
        Status::NotYetValid => {
            return Err(Refusal::NotYetValid {
                grant: id.clone(),
                from_ms: terms.valid_from_ms,
            });
        }
        Status::Expired => {
            return Err(Refusal::Expired {
                grant: id.clone(),
                until_ms: terms.valid_until_ms,
            });
        }
    }
    if terms.grantee != req.grantee {
        return Err(Refusal::NotGrantee {
            grant: id.clone(),
            holder: terms.grantee.clone(),
            asked_by: req.grantee.clone(),
        });
    }
    let out = |what: &'static str, value: &str| Refusal::OutOfScope {
        grant: id.clone(),
        what,
        value: value.to_owned(),
    };
    let spec = &dataset.spec;
    let in_scope = match &terms.scope {
        Scope::Overall { dataset } | Scope::Scenario { dataset, .. } => *dataset == spec.id,
        Scope::Domain { domain } => !domain.is_empty() && *domain == spec.domain,
    };
    if !in_scope || req.dataset != spec.id {
        return Err(out("dataset", &req.dataset));
    }
    if let Scope::Scenario {
        kinds,
        fields,
        peers,
        ..
    } = &terms.scope
    {
        if !kinds.contains(&req.kind) {
            return Err(out("job kind", req.kind.as_str()));
        }
        if let Some((f, _)) = req.fields.iter().find(|(f, _)| !fields.contains(f)) {
            return Err(out("field", f));
        }
        if let Some(p) = req.peers.iter().find(|p| !peers.contains(*p)) {
            return Err(out("peer", p));
        }
    }
    if !terms.recipients.contains(&req.recipient) {
        return Err(out("recipient", &req.recipient));
    }
    let tiers: BTreeMap<&str, Tier> = spec
        .columns
        .iter()
        .map(|c| (c.column.name.as_str(), c.tier))
        .collect();
    for (field, usage) in &req.fields {
        let tier = *tiers
            .get(field.as_str())
            .ok_or_else(|| Refusal::UnknownField {
                dataset: spec.id.clone(),
                field: field.clone(),
            })?;
        if !rules.matrix.allows(tier, *usage) {
            return Err(Refusal::TierViolation {
                field: field.clone(),
                tier,
                usage: *usage,
            });
        }
    }
    Ok(())
}

/// Checks every party's input size against the grant's minimum (`parties`: name and size).
pub fn check_set_sizes<'a>(
    grant: &Grant,
    parties: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), Refusal> {
    let min = grant.terms.limits.min_set_size;
    match parties.into_iter().find(|(_, size)| *size < min) {
        Some((party, size)) => Err(Refusal::SetTooSmall {
            party: party.to_owned(),
            size,
            min,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
