//! An aggregate's arithmetic at each contributing node: its exact vector, its noise share, and
//! (at the coordinator) the released values with their 95% intervals. No network here.
//!
//! # Vectors
//! Every contributor reads its own CSV, streaming, and forms a vector of public length:
//!
//! | statistic | vector | sensitivity Δ (L1, one row added or removed) |
//! |---|---|---|
//! | `count` | `[people]` | 1 |
//! | `sum` | `[Σ clamp(person's total, lo, hi)]` over the column's non-null values, then `[people clamped, people]` | `max(\|lo\|, \|hi\|)`, and 2 for the last two entries |
//! | `histogram` | people per bin (`--bins` over `[lo, hi]`, values outside left out) or per category (other values left out) | 1 |
//!
//! An individual is a person, the dataset's privacy unit (`catalog::PrivacyUnit`: by default a
//! normalized key, with all its rows), as in `concord run query` (`query.rs`): a count counts
//! people, a sum adds each person's total clamped once to `[lo, hi]`, a histogram puts each
//! person in one bin (one of theirs, chosen uniformly at random). So one person changes a
//! contributor's vector by at most Δ in L1. Values are integers; nulls are left out. Grouping by
//! person holds each contributor's distinct people in memory (registry-scale streaming will
//! sort or bucket them instead).
//!
//! # Noise
//! The target is discrete Laplace with scale `b = Δ/ε` on every entry, which is ε-DP for each
//! contributor's dataset (one individual changes that dataset's vector by at most Δ in L1). A
//! sum also says how many values it clamped (`party_input`): its two clamp entries get a tenth
//! of ε (scale `2/(0.1ε)`, one value changing both by at most 1) and the sum the rest (scale
//! `Δ/(0.9ε)`). Each
//! contributor adds a Pólya share (`concord_dp::shares`) drawn for `m = t` shares, `t` the
//! secure-aggregation threshold (`tolerated = n − t`): any `t` shares already sum to the
//! target, so the guarantee holds whichever `≥ t` contributors' vectors reach the sum, and
//! against up to `n − t` contributors that subtract their own shares. With `k ≥ t` contributors
//! in the sum the noise is NegBin(k/t, e^{−1/b}) − NegBin(k/t, e^{−1/b}), and the reported 95%
//! interval is that distribution's (`concord_dp::accuracy::polya_half_width`), or, when its
//! table would be too long (huge scales), the conservative Chebyshev bound `√(Var/0.05)`.

pub(in crate::jobs) mod coordinator;
pub(in crate::jobs) mod participant;
pub(in crate::jobs) mod secagg;

use concord_dp::shares::{NoiseTarget, SharePlan};
use concord_proto::v1 as pb;

use crate::jobs::error::JobError;
use crate::jobs::input;
use crate::jobs::kinds::query;
use crate::jobs::party_input::split_epsilon;
use crate::jobs::table::QueryParams;

/// An aggregate's statistic and parameters, as submitted or proposed, checked (see [`labels`]).
pub(in crate::jobs) fn query_params(
    statistic: String,
    (lo, hi): (i64, i64),
    bins: u32,
    categories: Vec<String>,
) -> Result<QueryParams, JobError> {
    let q = QueryParams {
        statistic,
        lo,
        hi,
        bins,
        categories,
        quantile: 0.0,
        max_rows: 1,
        max_groups: 1,
    };
    labels(&q)?;
    Ok(q)
}

/// Checks the statistic and its parameters; returns the vector's labels (one per entry).
pub(in crate::jobs) fn labels(q: &QueryParams) -> Result<Vec<String>, JobError> {
    match q.statistic.as_str() {
        "count" => Ok(vec!["count".into()]),
        "sum" => {
            if q.lo >= q.hi {
                return Err(JobError::terms(format!(
                    "--lo {} must be below --hi {}",
                    q.lo, q.hi
                )));
            }
            Ok(vec!["sum".into()])
        }
        "histogram" if !q.categories.is_empty() => {
            let mut seen = std::collections::BTreeSet::new();
            if q.categories.len() > 10_000 || !q.categories.iter().all(|c| seen.insert(c)) {
                return Err(JobError::terms(
                    "--categories: at most 10,000, each named once",
                ));
            }
            Ok(q.categories.clone())
        }
        "histogram" => query::bin_labels(q),
        other => Err(JobError::terms(format!(
            "statistic {other:?}: an aggregate is a count, sum or histogram"
        ))),
    }
}

/// Whether the statistic clamps values, and so ends its vector with `[clamped, values]`.
fn clamps(q: &QueryParams) -> bool {
    q.statistic == "sum"
}

/// Entries at the end of a clamping statistic's vector: values clamped, values read.
const CLAMP_ENTRIES: usize = 2;

/// The length of the vector every contributor sends: its labels' entries, then a clamping
/// statistic's two clamp entries.
pub(in crate::jobs) fn vector_len(q: &QueryParams, labels: &[String]) -> usize {
    labels.len() + if clamps(q) { CLAMP_ENTRIES } else { 0 }
}

/// Whether the statistic reads a column.
pub(in crate::jobs) fn needs_column(q: &QueryParams) -> bool {
    q.statistic != "count"
}

/// The L1 sensitivity of one contributor's vector (see the module docs).
pub(in crate::jobs) fn sensitivity(q: &QueryParams) -> u64 {
    match q.statistic.as_str() {
        "sum" => q.lo.unsigned_abs().max(q.hi.unsigned_abs()).max(1),
        _ => 1,
    }
}

fn integer(file: &std::path::Path, column: &str, row: u64, v: &str) -> Result<i64, JobError> {
    v.trim().parse::<i64>().map_err(|_| {
        JobError::value(
            file,
            row,
            column,
            format!(
                "{v:?}: an aggregate needs integers (register amounts in a fixed unit such as \
                 cents)"
            ),
        )
    })
}

/// This node's exact vector, read from its CSV without holding the file in memory.
pub(in crate::jobs) fn exact_vector(
    d: &crate::catalog::Dataset,
    column: Option<&str>,
    q: &QueryParams,
) -> Result<Vec<i64>, JobError> {
    use std::collections::{HashMap, HashSet};
    let labels = labels(q)?;
    let need =
        || column.ok_or_else(|| JobError::terms(format!("a {} needs a column", q.statistic)));
    match q.statistic.as_str() {
        "count" => {
            // People, not rows.
            let mut people: HashSet<Vec<u8>> = HashSet::new();
            input::for_each_unit(d, None, |_, unit, _| {
                if !people.contains(unit) {
                    people.insert(unit.to_vec());
                }
                Ok(())
            })?;
            Ok(vec![
                i64::try_from(people.len()).map_err(|_| JobError::terms("too many people"))?,
            ])
        }
        "sum" => {
            // Each person's total, clamped once.
            let column = need()?;
            let mut totals: HashMap<Vec<u8>, i128> = HashMap::new();
            input::for_each_unit(d, Some(column), |line, unit, v| {
                if v.is_empty() {
                    return Ok(());
                }
                let v = i128::from(integer(&d.spec.path, column, line, v)?);
                match totals.get_mut(unit) {
                    Some(t) => *t += v,
                    None => {
                        totals.insert(unit.to_vec(), v);
                    }
                }
                Ok(())
            })?;
            let (lo, hi) = (i128::from(q.lo), i128::from(q.hi));
            let clamped = totals.values().filter(|&&t| t < lo || t > hi).count();
            let total: i128 = totals.values().map(|t| (*t).clamp(lo, hi)).sum();
            let total = i64::try_from(total).map_err(|_| {
                JobError::terms(format!(
                    "the clamped sum of {column:?} does not fit in 64 bits"
                ))
            })?;
            let count = |n: usize| i64::try_from(n).map_err(|_| JobError::terms("too many people"));
            Ok(vec![total, count(clamped)?, count(totals.len())?])
        }
        _ => {
            // Each person in one bin: one of their distinct bins, chosen uniformly at random.
            let column = need()?;
            let index: HashMap<&str, usize> = labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i))
                .collect();
            let mut pairs: HashSet<(Vec<u8>, usize)> = HashSet::new();
            input::for_each_unit(d, Some(column), |line, unit, v| {
                if v.is_empty() {
                    return Ok(());
                }
                let bin = if q.categories.is_empty() {
                    query::bin_of(integer(&d.spec.path, column, line, v)?, q, labels.len())
                } else {
                    index.get(v).copied()
                };
                if let Some(bin) = bin {
                    pairs.insert((unit.to_vec(), bin));
                }
                Ok(())
            })?;
            let mut rng = crate::random::rng();
            let one_each = concord_dp::Contributions::bound_by_id(pairs, 1, &mut rng)
                .map_err(|e| JobError::terms(e.to_string()))?;
            let mut counts = vec![0i64; labels.len()];
            for &bin in one_each.values() {
                counts[bin] += 1;
            }
            Ok(counts)
        }
    }
}

/// How every contributor draws its noise shares: for the statistic's entries, and for a
/// clamping statistic's clamp entries.
#[derive(Clone, Copy, Debug)]
pub(in crate::jobs) struct Plans {
    main: SharePlan,
    /// The ε the statistic's entries spend.
    epsilon: f64,
    clamp: Option<(SharePlan, f64)>,
}

/// How every contributor draws its noise shares: discrete Laplace target `Δ/ε` (`Δ/(0.9ε)` and
/// `2/(0.1ε)` for a sum and its clamp entries), `parties` shares of which any `threshold`
/// suffice.
pub(in crate::jobs) fn share_plan(
    q: &QueryParams,
    epsilon: f64,
    parties: usize,
    threshold: u16,
) -> Result<Plans, JobError> {
    if !clamps(q) {
        return Ok(Plans {
            main: one_plan(sensitivity(q), epsilon, parties, threshold)?,
            epsilon,
            clamp: None,
        });
    }
    let (main, clamp) = split_epsilon(epsilon);
    Ok(Plans {
        main: one_plan(sensitivity(q), main, parties, threshold)?,
        epsilon: main,
        clamp: Some((one_plan(2, clamp, parties, threshold)?, clamp)),
    })
}

fn one_plan(
    sensitivity: u64,
    epsilon: f64,
    parties: usize,
    threshold: u16,
) -> Result<SharePlan, JobError> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(JobError::terms(format!(
            "epsilon {epsilon}: must be above 0"
        )));
    }
    let n = u32::try_from(parties).map_err(|_| JobError::terms("too many parties"))?;
    let t = u32::from(threshold);
    if t == 0 || t > n {
        return Err(JobError::terms(format!(
            "threshold {t} for {n} contributors"
        )));
    }
    let scale = sensitivity as f64 / epsilon;
    SharePlan::new(NoiseTarget::DiscreteLaplace { scale }, n, n - t)
        .map_err(|e| JobError::terms(e.to_string()))
}

/// This node's input to the secure sum: its exact vector plus its own noise share per entry.
pub(in crate::jobs) fn noised(exact: &[i64], plans: &Plans) -> Result<Vec<i64>, JobError> {
    let mut rng = crate::random::rng();
    let tail = if plans.clamp.is_some() {
        CLAMP_ENTRIES.min(exact.len())
    } else {
        0
    };
    let mut noise = plans
        .main
        .sample_vector(&mut rng, exact.len() - tail)
        .map_err(|e| JobError::terms(e.to_string()))?;
    if let Some((clamp, _)) = &plans.clamp {
        noise.extend(
            clamp
                .sample_vector(&mut rng, tail)
                .map_err(|e| JobError::terms(e.to_string()))?,
        );
    }
    exact
        .iter()
        .zip(noise)
        .map(|(x, e)| {
            x.checked_add(e)
                .ok_or_else(|| JobError::terms("the noised input overflows 64 bits"))
        })
        .collect()
}

/// How the noise was set, for the result: the target distribution of the summed shares.
pub(in crate::jobs) fn statements(q: &QueryParams, plans: &Plans) -> Vec<pb::NoiseStatement> {
    let mut out = vec![pb::NoiseStatement {
        figures: if labels(q).is_ok_and(|l| l.len() > 1) {
            "every bin".into()
        } else {
            q.statistic.clone()
        },
        mechanism: "discrete-laplace (the sum of every contributor's Pólya share)".into(),
        scale: plans.main.effective_parameter(),
        sensitivity: sensitivity(q) as f64,
        bounds: if clamps(q) {
            format!("[{}, {}] per person", q.lo, q.hi)
        } else {
            String::new()
        },
        contribution: match q.statistic.as_str() {
            "sum" => "each person's total clamped to the bounds".into(),
            "count" => "a person counts once".into(),
            _ => "each person in one bin".into(),
        },
        epsilon: plans.epsilon.to_string(),
    }];
    if let Some((plan, epsilon)) = &plans.clamp {
        out.push(pb::NoiseStatement {
            figures: "clamped, and of how many".into(),
            mechanism: "discrete-laplace (the sum of every contributor's Pólya share)".into(),
            scale: plan.effective_parameter(),
            sensitivity: 2.0,
            bounds: String::new(),
            contribution: "one person changes each by at most 1".into(),
            epsilon: epsilon.to_string(),
        });
    }
    out
}

/// Half-width of the 95% interval of the noise in a sum of `contributors` shares.
pub(in crate::jobs) fn half_width(plan: &SharePlan, contributors: usize) -> f64 {
    let m = f64::from(plan.parties() - plan.tolerated());
    let r = contributors as f64 / m;
    let scale = plan.effective_parameter();
    concord_dp::accuracy::polya_half_width(scale, r).unwrap_or_else(|_| {
        // Chebyshev: P[|X| ≥ √(Var/α)] ≤ α, with Var = 2 r p / (1 − p)².
        let p = (-1.0 / scale).exp();
        let variance = 2.0 * r * p / ((1.0 - p) * (1.0 - p));
        (variance / concord_dp::accuracy::ALPHA).sqrt().ceil()
    })
}

/// The released values: the noised sums with their 95% intervals, one per label; and for a
/// clamping statistic, the contributors' clamped figure (all of them together: each one's
/// alone would be more than the secure sum reveals), its total noised too.
pub(in crate::jobs) fn values(
    q: &QueryParams,
    labels: &[String],
    sum: &[i64],
    plans: &Plans,
    contributors: usize,
) -> (Vec<pb::ResultValue>, Option<pb::PartyInput>) {
    let value = |label: &str, v: i64, half: f64| {
        let value = v as f64;
        pb::ResultValue {
            label: label.to_owned(),
            value,
            lower: Some(value - half),
            upper: Some(value + half),
        }
    };
    let half = half_width(&plans.main, contributors);
    let values = labels
        .iter()
        .zip(sum)
        .map(|(label, &v)| value(label, v, half))
        .collect();
    let clamped = match (&plans.clamp, sum.get(labels.len()..)) {
        (Some((plan, epsilon)), Some(&[clamped, total])) => {
            let half = half_width(plan, contributors);
            Some(pb::PartyInput {
                node: "all contributors".into(),
                clamped: Some(value("clamped", clamped, half)),
                // Noised too: the number of values is the contributors' data as well.
                clamp_total: total.max(0) as u64,
                clamped_epsilon: *epsilon,
                clamp_bounds: format!("[{}, {}] per person", q.lo, q.hi),
                ..pb::PartyInput::default()
            })
        }
        _ => None,
    };
    (values, clamped)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn params(statistic: &str) -> QueryParams {
        QueryParams {
            statistic: statistic.into(),
            lo: 0,
            hi: 100,
            bins: 4,
            categories: Vec::new(),
            quantile: 0.5,
            max_rows: 1,
            max_groups: 1,
        }
    }

    fn csv(text: &str) -> (tempfile::TempDir, crate::catalog::Dataset) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, text).unwrap();
        let columns = [
            "id:text:internal",
            "amount:integer:sensitive:nullable",
            "kind:text:public",
        ];
        let d = crate::catalog::for_tests(&path, &columns);
        (dir, d)
    }

    #[test]
    fn vectors_count_rows_clamp_sums_and_fill_bins() {
        let (_dir, d) = csv("id,amount,kind\n1,50,a\n2,150,b\n3,-20,a\n4,,c\n5,99,z\n");
        assert_eq!(exact_vector(&d, None, &params("count")).unwrap(), [5]);
        // 50 + 100 (clamped) + 0 (clamped) + 99; the null is left out.
        // Two of the four values are clamped.
        let sum = exact_vector(&d, Some("amount"), &params("sum")).unwrap();
        assert_eq!(sum, [249, 2, 4]);
        // Bins [0,25) [25,50) [50,75) [75,100]: 150 and -20 are outside.
        let hist = exact_vector(&d, Some("amount"), &params("histogram")).unwrap();
        assert_eq!(hist, [0, 0, 1, 1]);
        let mut q = params("histogram");
        q.categories = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(exact_vector(&d, Some("kind"), &q).unwrap(), [2, 1, 1]);
        assert_eq!(labels(&q).unwrap(), ["a", "b", "c"]);

        let err = exact_vector(&d, Some("kind"), &params("sum")).unwrap_err();
        assert!(
            matches!(&err, JobError::Value { line: 2, column, .. } if column == "kind"),
            "{err}"
        );
        assert!(err.to_string().contains("needs integers"), "{err}");
        assert!(exact_vector(&d, Some("nope"), &params("sum")).is_err());
        assert!(labels(&params("mean")).is_err());
        let mut bad = params("sum");
        bad.hi = 0;
        assert!(labels(&bad).is_err());
    }

    #[test]
    fn sensitivities_follow_the_query_conventions() {
        assert_eq!(sensitivity(&params("count")), 1);
        assert_eq!(sensitivity(&params("histogram")), 1);
        let mut q = params("sum");
        q.lo = -500;
        assert_eq!(sensitivity(&q), 500);
        // Shares for 3 contributors, any 2 of which give the target: tolerated = 1. A sum
        // spends 0.9ε on itself (scale 500/1.8) and 0.1ε on its clamp entries (scale 2/0.2).
        let plans = share_plan(&q, 2.0, 3, 2).unwrap();
        let plan = plans.main;
        assert_eq!((plan.parties(), plan.tolerated()), (3, 1));
        assert!((plan.effective_parameter() - 500.0 / 1.8).abs() < 1e-6);
        let (clamp, epsilon) = plans.clamp.unwrap();
        assert!((clamp.effective_parameter() - 10.0).abs() < 1e-6);
        assert!((epsilon - 0.2).abs() < 1e-12);
        assert!(
            share_plan(&params("count"), 2.0, 3, 2)
                .unwrap()
                .clamp
                .is_none()
        );
        assert!(share_plan(&q, 0.0, 3, 2).is_err());
        assert!(share_plan(&q, 1.0, 3, 4).is_err());
        // More shares in the sum: more noise, a wider interval.
        assert!(half_width(&plan, 3) > half_width(&plan, 2));
        // With exactly t shares the noise is the target discrete Laplace.
        let target = concord_dp::accuracy::discrete_laplace_half_width(500.0 / 1.8).unwrap();
        assert!((half_width(&plan, 2) - (target.ceil() - 1.0)).abs() <= 1.0);
    }

    /// A sum's vector ends with its clamp entries, noised with their own plan, and the released
    /// clamped figure is all contributors' together.
    #[test]
    fn a_sum_releases_its_clamped_figure_beside_it() {
        let q = params("sum");
        let labels = labels(&q).unwrap();
        assert_eq!(vector_len(&q, &labels), 3);
        assert_eq!(vector_len(&params("count"), &["count".into()]), 1);
        let plans = share_plan(&q, 1.0, 2, 2).unwrap();
        let noised = noised(&[4000, 30, 100], &plans).unwrap();
        assert_eq!(noised.len(), 3);
        let (values, clamped) = values(&q, &labels, &noised, &plans, 2);
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].label, "sum");
        let clamped = clamped.unwrap();
        let c = clamped.clamped.unwrap();
        assert_eq!(c.value, noised[1] as f64);
        assert_eq!(clamped.clamp_total, noised[2].max(0) as u64);
        assert_eq!(clamped.clamp_bounds, "[0, 100] per person");
        // The clamp entries' noise (scale 20) is far below the sum's (scale 1000/9).
        assert!(c.upper.unwrap() - c.lower.unwrap() < 2.0 * half_width(&plans.main, 2));
    }

    #[test]
    fn huge_scales_fall_back_to_a_conservative_interval() {
        let mut q = params("sum");
        q.hi = 100_000_000;
        let plan = share_plan(&q, 1.0, 3, 2).unwrap();
        let h = half_width(&plan.main, 3);
        assert!(h.is_finite() && h > 1e8, "{h}");
    }

    /// Three contributors, each adding its share to its exact count; the total, as the
    /// coordinator would release it, lies inside the reported 95% interval in about 95% of
    /// draws. 4,000 draws: the coverage's standard error is 0.35%; the interval of a discrete
    /// distribution is conservative (≥ 95%), so below 93.5% or above 99% fails.
    #[test]
    fn the_aggregate_interval_covers_the_true_total_about_95_percent_of_the_time() {
        let q = params("count");
        let labels = labels(&q).unwrap();
        let exact = [120i64, 340, 55];
        for (contributors, threshold) in [(3usize, 2u16), (2, 2), (3, 3)] {
            let plan = share_plan(&q, 0.1, 3, threshold).unwrap();
            let runs = 4000;
            let mut inside = 0;
            for _ in 0..runs {
                let total: i64 = exact[..contributors]
                    .iter()
                    .map(|&x| noised(&[x], &plan).unwrap()[0])
                    .sum();
                let truth_here: i64 = exact[..contributors].iter().sum();
                let v = &values(&q, &labels, &[total], &plan, contributors).0[0];
                if v.lower.unwrap() <= truth_here as f64 && truth_here as f64 <= v.upper.unwrap() {
                    inside += 1;
                }
            }
            let coverage = f64::from(inside) / f64::from(runs);
            eprintln!("{contributors} of 3 (t = {threshold}): coverage {coverage}");
            assert!(
                (0.935..0.99).contains(&coverage),
                "coverage {coverage} with {contributors} contributors, t = {threshold}"
            );
        }
    }
}
