//! Join-aggregate jobs (`concord run join`): the roles of `concord_mpc::psi::join` over a job's
//! exchange, the noise the key holder adds, and the released figures with their intervals.
//!
//! The coordinator holds the values: it is the value holder `V`, which decrypts, so its
//! recipient reads the result there. The participant holds the keys: it is the key holder `K`,
//! which adds the noise under encryption, so `V` never decrypts an exact figure and `K` never
//! sees one. `coordinator` is the value holder's side, `participant` the key holder's; this
//! module holds what both derive alike (the terms, the noise plan, the session parameters).
//!
//! # Noise and budget
//! Every party spends the job's ε: both parties' data move the result (a key of `K`'s can add
//! one person to a count). A tenth of ε goes to the clamped figure (how many of `V`'s people had
//! their total clamped, `party_input`); the rest, `ε' = 0.9ε`, is split evenly between the
//! counts and the sums (sequential composition); categories compose in parallel, since a person
//! is in one category only (rows of `V` sharing a key must name the same one, and their values
//! are added and clamped to `[lo, hi]` as one). So, per category:
//! - count: sensitivity 1, discrete Laplace with scale `2/ε'`;
//! - sum: sensitivity `max(|lo|, |hi|)`, discrete Laplace with scale `2·max(|lo|, |hi|)/ε'`.
//!
//! A person of `V` whose value cells are all empty is still a person: by default their rows
//! count with value 0, so a matched person with no claims is in the count (`--nulls exclude`
//! leaves such rows out instead).
//!
//! Scales are rounded up to multiples of 2^-32 (`Ratio::from_f64_up`) and both parties compute
//! the same ones: `K` to draw, `V` for the 95% intervals. The protocol needs a public bound on
//! the noise (it sizes `V`'s decryption search): 64 sum scales. A draw beyond it, with
//! probability below e^-64, fails the job rather than being clamped, so a release is
//! (ε, e^-64)-DP: pure ε-DP up to that tail.
//!
//! # Leakage
//! As the protocol's (see `concord_mpc::psi::join`): `K` learns the number of `V`'s distinct keys
//! and the exact size of the intersection (not which keys); `V` learns the number of `K`'s
//! distinct keys and the noised figures. The intersection size that `K` learns is not a DP
//! release; the grant at `K` must allow the join kind, which says so.

pub(super) mod coordinator;
pub(super) mod participant;

use concord_dp::sample::{Ratio, discrete_laplace};
use concord_mpc::psi::join::{JoinError, JoinMessage, JoinNoise, JoinParams, MAX_NOISE_BOUND};
use concord_mpc::psi::{KeySpec, SessionId};
use concord_proto::v1 as pb;

use crate::error::NodeError;
use crate::jobs::error::JobError;
use crate::jobs::exchange::Link;
use crate::jobs::kinds::terms::{Asked, Proposed, Requested, key_columns_fit, own_use, to_peer};
use crate::jobs::party_input::split_epsilon;
use crate::jobs::session::RoleError;
use crate::jobs::table::{JobRow, JoinSpec, Protocol};
use crate::node::Node;
use crate::policy::JobKind;

/// The noise bound, in sum scales.
const NOISE_BOUND_SCALES: f64 = 64.0;

/// The noise of a join: its two scales and the bound the protocol declares.
#[derive(Clone, Copy, Debug)]
pub(in crate::jobs) struct NoisePlan {
    count: Ratio,
    sum: Ratio,
    bound: u64,
    /// The ε of the clamped figure (`party_input::CLAMP_SHARE` of the job's).
    clamp: f64,
}

impl NoisePlan {
    /// The plan for `epsilon` and values clamped to `[lo, hi]` (see the module docs).
    pub(in crate::jobs) fn new(epsilon: f64, (lo, hi): (i64, i64)) -> Result<Self, JobError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(JobError::terms(format!(
                "a join needs epsilon > 0, not {epsilon}"
            )));
        }
        let (main, clamp) = split_epsilon(epsilon);
        let half = main / 2.0;
        let sensitivity = lo.unsigned_abs().max(hi.unsigned_abs()).max(1) as f64;
        let dp = |e: concord_dp::DpError| JobError::terms(e.to_string());
        let count = Ratio::from_f64_up("count noise scale", 1.0 / half).map_err(dp)?;
        let sum = Ratio::from_f64_up("sum noise scale", sensitivity / half).map_err(dp)?;
        let bound = (NOISE_BOUND_SCALES * count.to_f64().max(sum.to_f64())).ceil();
        if bound > MAX_NOISE_BOUND as f64 {
            return Err(JobError::terms(format!(
                "epsilon {epsilon} is too small for values in [{lo}, {hi}]: the noise would \
                 exceed what the join can decrypt (raise epsilon or narrow the bounds)"
            )));
        }
        Ok(Self {
            count,
            sum,
            bound: bound as u64,
            clamp,
        })
    }

    /// Draws one count and one sum noise per category; fails (never clamps) on a draw beyond
    /// the bound.
    fn draw(&self, categories: usize) -> Result<JoinNoise, JobError> {
        let (count, sum) = self.draw_raw(categories)?;
        Ok(JoinNoise::new(count, sum))
    }

    /// The draws behind [`Self::draw`]: counts, then sums.
    fn draw_raw(&self, categories: usize) -> Result<(Vec<i64>, Vec<i64>), JobError> {
        let mut rng = crate::random::rng();
        let mut draw = |scale| -> Result<Vec<i64>, JobError> {
            let v: Vec<i64> = (0..categories)
                .map(|_| discrete_laplace(&mut rng, scale))
                .collect();
            if v.iter().any(|x| x.unsigned_abs() > self.bound) {
                return Err(JobError::Protocol(
                    "a noise draw exceeded its bound (probability below e^-64); run the job again"
                        .into(),
                ));
            }
            Ok(v)
        };
        let count = draw(self.count)?;
        let sum = draw(self.sum)?;
        Ok((count, sum))
    }

    /// How the noise was set, for the result.
    fn statements(&self, lo: i64, hi: i64, epsilon: &str) -> Vec<pb::NoiseStatement> {
        let sensitivity = lo.unsigned_abs().max(hi.unsigned_abs()).max(1) as f64;
        let part = |share: f64| format!("{share} of the job's {epsilon}");
        vec![
            pb::NoiseStatement {
                figures: "every count".into(),
                mechanism: "discrete-laplace".into(),
                scale: self.count.to_f64(),
                sensitivity: 1.0,
                bounds: String::new(),
                contribution: "a person counts once, in one category".into(),
                epsilon: part(0.45),
            },
            pb::NoiseStatement {
                figures: "every sum".into(),
                mechanism: "discrete-laplace".into(),
                scale: self.sum.to_f64(),
                sensitivity,
                bounds: format!("[{lo}, {hi}] per person"),
                contribution: "each person's total clamped to the bounds".into(),
                epsilon: part(0.45),
            },
            pb::NoiseStatement {
                figures: "clamped".into(),
                mechanism: "discrete-laplace".into(),
                scale: 1.0 / self.clamp,
                sensitivity: 1.0,
                bounds: String::new(),
                contribution: "one person changes it by at most 1".into(),
                epsilon: part(0.1),
            },
        ]
    }

    /// The 95% half-widths of a count and of a sum.
    fn half_widths(&self) -> Result<(f64, f64), JobError> {
        let hw = |r: Ratio| {
            concord_dp::accuracy::discrete_laplace_half_width(r.to_f64())
                .map_err(|e| JobError::terms(e.to_string()))
        };
        Ok((hw(self.count)?, hw(self.sum)?))
    }
}

/// The job's terms, its noise plan, and the session parameters both parties derive from it and
/// its agreed key spec, with this node's own limit on the peer's keys.
fn params(
    row: &JobRow,
    keys: KeySpec,
    peer_limit: u64,
) -> Result<(JoinSpec, NoisePlan, JoinParams), JobError> {
    let terms = row
        .spec
        .join
        .clone()
        .ok_or_else(|| JobError::terms("a join job without its terms"))?;
    let plan = NoisePlan::new(row.spec.epsilon, (terms.lo, terms.hi))?;
    let session = crate::hex::decode_16(&row.spec.session)
        .ok_or_else(|| JobError::terms("bad session id"))?;
    let categories = u16::try_from(terms.categories.len().max(1))
        .map_err(|_| JobError::terms("too many categories"))?;
    let params = JoinParams::new(
        SessionId(session),
        keys,
        categories,
        (terms.lo, terms.hi),
        plan.bound,
    )
    .map_err(|e| JobError::terms(e.to_string()))?
    .with_peer_limit(peer_limit);
    Ok((terms, plan, params))
}

/// The terms a participant is asked to accept.
pub(in crate::jobs) fn terms(spec: &JoinSpec) -> pb::JoinTerms {
    pb::JoinTerms {
        lo: spec.lo,
        hi: spec.hi,
        categories: spec.categories.clone(),
    }
}

fn send(link: &mut Link<'_>, frame: concord_mpc::Frame) -> Result<(), JoinError> {
    if link.send_frame(frame) {
        Ok(())
    } else {
        Err(JoinError::PeerGone)
    }
}

fn recv(link: &mut Link<'_>) -> Result<JoinMessage, JoinError> {
    let frame = link.recv_frame().ok_or(JoinError::PeerGone)?;
    JoinMessage::decode(&frame)
}

/// True when a join error comes from the peer's frames.
fn join_error_is_peers(e: &JoinError) -> bool {
    matches!(
        e,
        JoinError::Decode(_)
            | JoinError::Ciphertext { .. }
            | JoinError::PublicKey { .. }
            | JoinError::SlotCount { .. }
            | JoinError::ParamsMismatch
            | JoinError::PlaintextOutOfRange { .. }
            | JoinError::Unexpected { .. }
            | JoinError::TooManyItems { .. }
            | JoinError::Incomplete { .. }
            | JoinError::PeerGone
    )
}

fn role_error(e: JoinError) -> RoleError {
    RoleError {
        at_peer: join_error_is_peers(&e),
        peer_gone: matches!(e, JoinError::PeerGone),
        message: format!("join: {e}"),
    }
}

/// A submitted join's terms: the values at this node, the keys at a peer, as many key columns
/// on each side, the value column and its bounds, and the public categories if grouped.
pub(in crate::jobs) fn submitted(
    node: &Node,
    j: pb::JoinJob,
    asked: Asked,
) -> Result<Requested, NodeError> {
    let me = &node.config.node.name;
    let invalid = |m: String| NodeError::Invalid(m);
    let values = j.values.unwrap_or_default();
    let keys = j.keys.unwrap_or_default();
    own_use(
        me,
        &values,
        "the values (--values; your node decrypts the result)",
    )?;
    if node.config.peer(&keys.node).is_none() {
        return Err(invalid(format!(
            "the keys' node {:?} is not a peer of {me}",
            keys.node
        )));
    }
    if values.columns.is_empty() || values.columns.len() != keys.columns.len() {
        return Err(invalid(
            "both sides need the same number (at least one) of key columns".into(),
        ));
    }
    if j.value_column.is_empty() {
        return Err(invalid(
            "a join needs the column whose values it sums".into(),
        ));
    }
    let bound = concord_mpc::psi::join::MAX_ABS_VALUE;
    if j.lo > j.hi || j.lo.abs() > bound || j.hi.abs() > bound {
        return Err(invalid(format!(
            "bounds [{}, {}]: lo must not exceed hi, both within ±2^40",
            j.lo, j.hi
        )));
    }
    if j.group_by.is_empty() != j.categories.is_empty() {
        return Err(invalid(
            "--group-by and --categories go together: the column and its public categories".into(),
        ));
    }
    let distinct: std::collections::BTreeSet<_> = j.categories.iter().collect();
    if distinct.len() != j.categories.len()
        || j.categories.len() > usize::from(concord_mpc::psi::join::MAX_CATEGORIES)
    {
        return Err(invalid(
            "categories must be distinct, at most 256 of them".into(),
        ));
    }
    NoisePlan::new(asked.epsilon, (j.lo, j.hi)).map_err(NodeError::from)?;
    Ok(Requested {
        peer: Some(to_peer(keys)),
        join: Some(JoinSpec {
            value_column: j.value_column,
            lo: j.lo,
            hi: j.hi,
            group_by: j.group_by,
            categories: j.categories,
            exclude_nulls: j.exclude_nulls,
        }),
        ..Requested::new(JobKind::Join, values)
    })
}

/// A join proposal's terms, as the key holder keeps them: its key columns and the public bounds
/// and categories (the value and grouping columns stay at the value holder).
pub(in crate::jobs) fn proposed(p: &mut pb::JobProposal) -> Result<Proposed, NodeError> {
    key_columns_fit(p)?;
    if let Some(named) = Protocol::from_pb(p.protocol)? {
        return Err(NodeError::Invalid(format!(
            "PSI protocol {} for a join: a join has one protocol of its own",
            named.as_str()
        )));
    }
    let t = p
        .join
        .take()
        .ok_or_else(|| NodeError::Invalid("a join proposal needs its terms".into()))?;
    Ok(Proposed {
        join: Some(JoinSpec {
            value_column: String::new(),
            lo: t.lo,
            hi: t.hi,
            group_by: String::new(),
            categories: t.categories,
            exclude_nulls: false,
        }),
        ..Proposed::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_splits_epsilon_and_refuses_what_cannot_be_decrypted() {
        // 0.9 of ε for the figures, halved between counts and sums; 0.1 for the clamped figure.
        let plan = NoisePlan::new(1.0, (-200, 1000)).unwrap();
        assert!((plan.count.to_f64() - 2.0 / 0.9).abs() < 1e-6);
        assert!((plan.sum.to_f64() - 2000.0 / 0.9).abs() < 1e-4);
        assert!((plan.clamp - 0.1).abs() < 1e-12);
        assert_eq!(plan.bound, 142_223);
        assert!(NoisePlan::new(0.0, (0, 1)).is_err());
        assert!(NoisePlan::new(f64::NAN, (0, 1)).is_err());
        assert!(NoisePlan::new(1e-9, (0, 1 << 40)).is_err());
    }

    /// The released interval covers the exact figure about 95% of the time: draws of the very
    /// noise the key holder adds, against the half-widths the value holder reports.
    #[test]
    fn intervals_cover_about_95_percent_of_draws() {
        let plan = NoisePlan::new(0.5, (0, 100)).unwrap();
        let (count_hw, sum_hw) = plan.half_widths().unwrap();
        let trials = 4000;
        let (mut count_in, mut sum_in) = (0, 0);
        for _ in 0..trials / 8 {
            let (count, sum) = plan.draw_raw(8).unwrap();
            count_in += count
                .iter()
                .filter(|n| (**n as f64).abs() <= count_hw)
                .count();
            sum_in += sum.iter().filter(|n| (**n as f64).abs() <= sum_hw).count();
        }
        for (what, inside) in [("count", count_in), ("sum", sum_in)] {
            let rate = inside as f64 / trials as f64;
            // ≥ 95% by construction (the half-width is conservative for a discrete law); the
            // binomial standard error at 4000 trials is 0.35%.
            assert!((0.94..=0.985).contains(&rate), "{what}: {rate}");
        }
    }
}
