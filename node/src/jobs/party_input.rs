//! What a result states about each party's input: rows used, bad rows left out, rows without a
//! key, distinct keys, null values, and how many contributions were clamped.
//!
//! # The clamped figure
//! A job that clamps values to public bounds (a join's per-person totals, a query's sum or
//! mean) says how many contributions it clamped, so that a researcher can tell bounds that cut
//! off much of the data. The exact count is a statistic of the data (with bounds chosen to
//! probe it, it would reveal, say, whether anyone exceeds a value), so it is released with
//! discrete Laplace noise like the statistic itself: adding or removing one contribution changes
//! it by at most 1, so scale `1/ε_c` makes it ε_c-DP. The job spends [`CLAMP_SHARE`] of its ε
//! on it (`ε_c`) and the rest on its statistic (sequential composition: the release is ε-DP in
//! all). The figure comes with its 95% interval, and the CLI warns when more than 1% of the
//! contributions look clamped.

use concord_dp::sample::{Ratio, discrete_laplace};
use concord_mpc::psi::InputReport;
use concord_proto::v1 as pb;

use crate::csv_input::RejectCounts;
use crate::jobs::error::JobError;
use crate::jobs::input::Read;

/// The share of a clamping job's ε spent on its clamped figure.
pub(crate) const CLAMP_SHARE: f64 = 0.1;

/// A clamping job's ε split: the statistic's part, then the clamped figure's.
pub(crate) fn split_epsilon(epsilon: f64) -> (f64, f64) {
    let clamp = epsilon * CLAMP_SHARE;
    (epsilon - clamp, clamp)
}

pub(crate) fn rejects_to_pb(r: &RejectCounts) -> pb::RejectCounts {
    pb::RejectCounts {
        ragged: r.ragged,
        not_utf8: r.not_utf8,
        null: r.null,
        bad_value: r.bad_value,
        bad_key: r.bad_key,
    }
}

/// A party's input figures: what it read, and (for a job that matches keys) its key set's
/// report.
pub(crate) fn party_input(
    node: &str,
    dataset: &str,
    read: &Read,
    keys: Option<&InputReport>,
) -> pb::PartyInput {
    pb::PartyInput {
        node: node.to_owned(),
        dataset: dataset.to_owned(),
        rows: read.rows,
        rejects: Some(rejects_to_pb(&read.rejects)),
        rows_without_key: keys.map_or(0, |k| k.excluded_rows),
        distinct_keys: keys.map_or(0, |k| k.distinct_keys),
        ..pb::PartyInput::default()
    }
}

/// Adds the noised clamped figure to `input`: `exact` of `total` contributions clamped, with
/// `epsilon` (the job's [`CLAMP_SHARE`]).
pub(crate) fn with_clamped(
    mut input: pb::PartyInput,
    (exact, total): (u64, u64),
    bounds: String,
    epsilon: f64,
) -> Result<pb::PartyInput, JobError> {
    let scale = Ratio::from_f64_up("clamped-count noise scale", 1.0 / epsilon)
        .map_err(|e| JobError::terms(e.to_string()))?;
    let half = concord_dp::accuracy::discrete_laplace_half_width(scale.to_f64())
        .map_err(|e| JobError::terms(e.to_string()))?;
    let mut rng = crate::random::rng();
    let noised = i64::try_from(exact)
        .unwrap_or(i64::MAX)
        .saturating_add(discrete_laplace(&mut rng, scale)) as f64;
    input.clamped = Some(pb::ResultValue {
        label: "clamped".into(),
        value: noised,
        lower: Some(noised - half),
        upper: Some(noised + half),
    });
    input.clamp_total = total;
    input.clamp_bounds = bounds;
    input.clamped_epsilon = epsilon;
    Ok(input)
}

/// Who one individual of a dataset's releases is, in words.
pub(crate) fn unit_text(d: &crate::catalog::Dataset) -> String {
    use crate::catalog::PrivacyUnit;
    match &d.spec.privacy_unit {
        PrivacyUnit::Row => "row (each row a distinct person)".into(),
        PrivacyUnit::Column(c) => format!("person (a value of {c}, all its rows)"),
        _ => format!(
            "person (a distinct key: {}, all its rows)",
            d.spec.key_columns.join(", ")
        ),
    }
}

/// The figures in words, for audit entries.
pub(crate) fn describe(input: &pb::PartyInput) -> String {
    let rejected = input.rejects.as_ref().map_or(0, |r| {
        r.ragged + r.not_utf8 + r.null + r.bad_value + r.bad_key
    });
    let mut text = format!("{} rows used, {rejected} bad rows left out", input.rows);
    if input.distinct_keys > 0 || input.rows_without_key > 0 {
        text += &format!(
            ", {} rows without a key, {} distinct keys",
            input.rows_without_key, input.distinct_keys
        );
    }
    if input.null_values > 0 {
        text += &format!(", {} null values", input.null_values);
    }
    if let Some(c) = &input.clamped {
        text += &format!(
            ", clamped about {} of {} (noised, ε {})",
            c.value, input.clamp_total, input.clamped_epsilon
        );
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_clamped_figure_is_noised_and_its_interval_covers_it_about_95_percent() {
        let (main, clamp) = split_epsilon(1.0);
        assert!((main - 0.9).abs() < 1e-12 && (clamp - 0.1).abs() < 1e-12);
        let runs = 2000;
        let mut inside = 0;
        let mut exact_seen = 0;
        for _ in 0..runs {
            let input = with_clamped(
                pb::PartyInput::default(),
                (500, 10_000),
                "[0, 1]".into(),
                0.5,
            )
            .unwrap();
            let c = input.clamped.unwrap();
            exact_seen += u32::from(c.value == 500.0);
            if c.lower.unwrap() <= 500.0 && 500.0 <= c.upper.unwrap() {
                inside += 1;
            }
            assert_eq!(input.clamp_total, 10_000);
        }
        let coverage = f64::from(inside) / f64::from(runs);
        assert!((0.93..0.995).contains(&coverage), "coverage {coverage}");
        // Scale 2: the exact value comes out in about tanh(1/4) ≈ 24% of draws, not always.
        assert!(exact_seen < runs / 2, "{exact_seen} exact of {runs}");
    }
}
