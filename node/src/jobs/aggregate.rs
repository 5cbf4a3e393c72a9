//! An aggregate's arithmetic at each contributing node: its exact vector, its noise share, and
//! (at the coordinator) the released values with their 95% intervals. No network here.
//!
//! # Vectors
//! Every contributor reads its own CSV, streaming, and forms a vector of public length:
//!
//! | statistic | vector | sensitivity Δ (L1, one row added or removed) |
//! |---|---|---|
//! | `count` | `[rows]` | 1 |
//! | `sum` | `[Σ clamp(v, lo, hi)]` over the column's non-null values | `max(\|lo\|, \|hi\|)` |
//! | `histogram` | rows per bin (`--bins` over `[lo, hi]`, values outside left out) or per category (other values left out) | 1 |
//!
//! These are the conventions of `concord run query` (`query.rs`): rows are distinct
//! individuals, values are integers, nulls are left out.
//!
//! # Noise
//! The target is discrete Laplace with scale `b = Δ/ε` on every entry, which is ε-DP for each
//! contributor's dataset (one individual changes that dataset's vector by at most Δ in L1). Each
//! contributor adds a Pólya share (`concord_dp::shares`) drawn for `m = t` shares, `t` the
//! secure-aggregation threshold (`tolerated = n − t`): any `t` shares already sum to the
//! target, so the guarantee holds whichever `≥ t` contributors' vectors reach the sum, and
//! against up to `n − t` contributors that subtract their own shares. With `k ≥ t` contributors
//! in the sum the noise is NegBin(k/t, e^{−1/b}) − NegBin(k/t, e^{−1/b}), and the reported 95%
//! interval is that distribution's (`concord_dp::accuracy::polya_half_width`), or, when its
//! table would be too long (huge scales), the conservative Chebyshev bound `√(Var/0.05)`.

use concord_dp::shares::{NoiseTarget, SharePlan};
use concord_proto::v1 as pb;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::{QueryParams, input, query};

/// An aggregate's statistic and parameters, as submitted or proposed, checked (see [`labels`]).
pub(super) fn query_params(
    statistic: String,
    (lo, hi): (i64, i64),
    bins: u32,
    categories: Vec<String>,
) -> Result<QueryParams, String> {
    let q = QueryParams {
        statistic,
        lo,
        hi,
        bins,
        categories,
        quantile: 0.0,
    };
    labels(&q)?;
    Ok(q)
}

/// Checks the statistic and its parameters; returns the vector's labels (one per entry).
pub(super) fn labels(q: &QueryParams) -> Result<Vec<String>, String> {
    match q.statistic.as_str() {
        "count" => Ok(vec!["count".into()]),
        "sum" => {
            if q.lo >= q.hi {
                return Err(format!("--lo {} must be below --hi {}", q.lo, q.hi));
            }
            Ok(vec!["sum".into()])
        }
        "histogram" if !q.categories.is_empty() => {
            let mut seen = std::collections::BTreeSet::new();
            if q.categories.len() > 10_000 || !q.categories.iter().all(|c| seen.insert(c)) {
                return Err("--categories: at most 10,000, each named once".into());
            }
            Ok(q.categories.clone())
        }
        "histogram" => query::bin_labels(q),
        other => Err(format!(
            "statistic {other:?}: an aggregate is a count, sum or histogram"
        )),
    }
}

/// Whether the statistic reads a column.
pub(super) fn needs_column(q: &QueryParams) -> bool {
    q.statistic != "count"
}

/// The L1 sensitivity of one contributor's vector (see the module docs).
pub(super) fn sensitivity(q: &QueryParams) -> u64 {
    match q.statistic.as_str() {
        "sum" => q.lo.unsigned_abs().max(q.hi.unsigned_abs()).max(1),
        _ => 1,
    }
}

fn integer(column: &str, row: u64, v: &str) -> Result<i64, String> {
    v.trim().parse::<i64>().map_err(|_| {
        format!(
            "column {column:?}, line {row} ({v:?}): an aggregate needs integers \
             (register amounts in a fixed unit such as cents)"
        )
    })
}

/// This node's exact vector, read from its CSV without holding the file in memory.
pub(super) fn exact_vector(
    d: &crate::catalog::Dataset,
    column: Option<&str>,
    q: &QueryParams,
) -> Result<Vec<i64>, String> {
    let labels = labels(q)?;
    let need = || column.ok_or_else(|| format!("a {} needs a column", q.statistic));
    match q.statistic.as_str() {
        "count" => {
            let rows = input::row_count(d)?.rows;
            Ok(vec![
                i64::try_from(rows).map_err(|_| "too many rows".to_owned())?,
            ])
        }
        "sum" => {
            let column = need()?;
            let mut total: i128 = 0;
            input::for_each_value(d, column, |row, v| {
                total += i128::from(integer(column, row, v)?.clamp(q.lo, q.hi));
                Ok(())
            })?;
            let total = i64::try_from(total)
                .map_err(|_| format!("the clamped sum of {column:?} does not fit in 64 bits"))?;
            Ok(vec![total])
        }
        _ => {
            let column = need()?;
            let mut counts = vec![0i64; labels.len()];
            if q.categories.is_empty() {
                input::for_each_value(d, column, |row, v| {
                    if let Some(i) = query::bin_of(integer(column, row, v)?, q, counts.len()) {
                        counts[i] += 1;
                    }
                    Ok(())
                })?;
            } else {
                let index: std::collections::HashMap<&str, usize> = labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (l.as_str(), i))
                    .collect();
                input::for_each_value(d, column, |_, v| {
                    if let Some(&i) = index.get(v) {
                        counts[i] += 1;
                    }
                    Ok(())
                })?;
            }
            Ok(counts)
        }
    }
}

/// How every contributor draws its noise share: discrete Laplace target `Δ/ε`, `parties`
/// shares of which any `threshold` suffice.
pub(super) fn share_plan(
    q: &QueryParams,
    epsilon: f64,
    parties: usize,
    threshold: u16,
) -> Result<SharePlan, String> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(format!("epsilon {epsilon}: must be above 0"));
    }
    let n = u32::try_from(parties).map_err(|_| "too many parties".to_owned())?;
    let t = u32::from(threshold);
    if t == 0 || t > n {
        return Err(format!("threshold {t} for {n} contributors"));
    }
    let scale = sensitivity(q) as f64 / epsilon;
    SharePlan::new(NoiseTarget::DiscreteLaplace { scale }, n, n - t).map_err(|e| e.to_string())
}

/// This node's input to the secure sum: its exact vector plus its own noise share per entry.
pub(super) fn noised(exact: &[i64], plan: &SharePlan) -> Result<Vec<i64>, String> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let noise = plan
        .sample_vector(&mut rng, exact.len())
        .map_err(|e| e.to_string())?;
    exact
        .iter()
        .zip(noise)
        .map(|(x, e)| {
            x.checked_add(e)
                .ok_or_else(|| "the noised input overflows 64 bits".to_owned())
        })
        .collect()
}

/// Half-width of the 95% interval of the noise in a sum of `contributors` shares.
pub(super) fn half_width(plan: &SharePlan, contributors: usize) -> f64 {
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

/// The released values: the noised sums with their 95% intervals, one per label.
pub(super) fn values(
    labels: &[String],
    sum: &[i64],
    plan: &SharePlan,
    contributors: usize,
) -> Vec<pb::ResultValue> {
    let half = half_width(plan, contributors);
    labels
        .iter()
        .zip(sum)
        .map(|(label, &v)| {
            let value = v as f64;
            pb::ResultValue {
                label: label.clone(),
                value,
                lower: Some(value - half),
                upper: Some(value + half),
            }
        })
        .collect()
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
        let sum = exact_vector(&d, Some("amount"), &params("sum")).unwrap();
        assert_eq!(sum, [249]);
        // Bins [0,25) [25,50) [50,75) [75,100]: 150 and -20 are outside.
        let hist = exact_vector(&d, Some("amount"), &params("histogram")).unwrap();
        assert_eq!(hist, [0, 0, 1, 1]);
        let mut q = params("histogram");
        q.categories = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(exact_vector(&d, Some("kind"), &q).unwrap(), [2, 1, 1]);
        assert_eq!(labels(&q).unwrap(), ["a", "b", "c"]);

        let err = exact_vector(&d, Some("kind"), &params("sum")).unwrap_err();
        assert!(err.contains("needs integers"), "{err}");
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
        // Shares for 3 contributors, any 2 of which give the target: tolerated = 1.
        let plan = share_plan(&q, 2.0, 3, 2).unwrap();
        assert_eq!((plan.parties(), plan.tolerated()), (3, 1));
        assert!((plan.effective_parameter() - 250.0).abs() < 1e-6);
        assert!(share_plan(&q, 0.0, 3, 2).is_err());
        assert!(share_plan(&q, 1.0, 3, 4).is_err());
        // More shares in the sum: more noise, a wider interval.
        assert!(half_width(&plan, 3) > half_width(&plan, 2));
        // With exactly t shares the noise is the target discrete Laplace.
        let target = concord_dp::accuracy::discrete_laplace_half_width(250.0).unwrap();
        assert!((half_width(&plan, 2) - (target.ceil() - 1.0)).abs() <= 1.0);
    }

    #[test]
    fn huge_scales_fall_back_to_a_conservative_interval() {
        let mut q = params("sum");
        q.hi = 100_000_000;
        let plan = share_plan(&q, 1.0, 3, 2).unwrap();
        let h = half_width(&plan, 3);
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
                let v = &values(&labels, &[total], &plan, contributors)[0];
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
