//! An empirical audit of the privacy of `concord run query`'s releases, per person.
//!
//! Two neighbouring datasets differ in one person who has three rows. The node's own release
//! function (`query::run`, reading the CSV through the catalog's reader, exactly as a job does)
//! runs many times on each, and the frequencies of a threshold event give a lower bound on the
//! ε the releases actually spend: with Clopper–Pearson bounds at confidence 1 − α on both
//! frequencies, `ε̂ = ln(p̲₁ / p̄₀)` is below the true ε except with probability ≤ 2α (the
//! method of the DP auditing literature, e.g. Jagielski, Ullman and Oprea 2020;
//! `concord_dp::stats::epsilon_lower_bound`). The releases
//! must give `ε̂ ≤ ε` as claimed. The same audit of a release that treats rows as people (what
//! Concord did before privacy units) must find `ε̂ > ε`, or the audit could not fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use concord_dp::release::{self, Contributions, NoiseSpec};
use concord_dp::stats;

use crate::catalog::{self, Dataset};
use crate::jobs::kinds::query;
use crate::jobs::table::QueryParams;

/// Runs per dataset: enough for a bound within about 0.2 of ε = 1.
const RUNS: usize = 3000;
/// Each Clopper–Pearson bound fails with probability α.
const ALPHA: f64 = 1e-4;

/// The lower bound on ε from outputs on the two datasets at the threshold `t`; each
/// Clopper–Pearson side fails with probability α.
fn epsilon_lower_bound(with: &[f64], without: &[f64], t: f64) -> f64 {
    stats::threshold_epsilon_lower_bound(with, without, t, 2.0 * ALPHA)
}

/// A dataset of 200 people with one row each, and `extra` rows of one more person.
fn dataset(dir: &Path, name: &str, extra: &[i64]) -> Dataset {
    let mut text = String::from("id,v\n");
    for i in 0..200 {
        text.push_str(&format!("P{i:03},{}\n", i % 50));
    }
    for v in extra {
        text.push_str(&format!("X,{v}\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    catalog::for_tests(&path, &["id:text:internal", "v:integer:sensitive"])
}

fn params(statistic: &str) -> QueryParams {
    QueryParams {
        statistic: statistic.into(),
        lo: 0,
        hi: 100,
        bins: 10,
        categories: Vec::new(),
        quantile: 0.5,
        max_rows: 1,
        max_groups: 1,
    }
}

fn outputs(d: &Dataset, q: &QueryParams) -> Vec<f64> {
    let column = (q.statistic != "count").then_some("v");
    (0..RUNS)
        .map(|_| query::run(d, column, q, 1.0).unwrap().values[0].value)
        .collect()
}

#[test]
fn a_person_with_three_rows_is_protected_at_the_claimed_epsilon() {
    let dir = tempfile::tempdir().unwrap();
    let without = dataset(dir.path(), "without.csv", &[]);
    let with = dataset(dir.path(), "with.csv", &[40, 40, 40]);

    // Count: 200 people against 201 (not 203 rows); ε = 1.
    let q = params("count");
    let eps = epsilon_lower_bound(&outputs(&with, &q), &outputs(&without, &q), 201.0);
    eprintln!("count: empirical ε ≥ {eps:.3} (claimed 1)");
    assert!(eps <= 1.0, "count: empirical ε ≥ {eps} > 1");
    assert!(
        eps > 0.5,
        "count: the audit should see most of ε = 1, saw {eps}"
    );

    // Sum: the person's total 120 is clamped to 100 once; the sum spends 0.9ε.
    let q = params("sum");
    let base: i64 = (0..200).map(|i| i % 50).sum();
    let eps = epsilon_lower_bound(
        &outputs(&with, &q),
        &outputs(&without, &q),
        (base + 100) as f64,
    );
    eprintln!("sum: empirical ε ≥ {eps:.3} (claimed 1)");
    assert!(eps <= 1.0, "sum: empirical ε ≥ {eps} > 1");

    // The audit has the power to fail: a count of rows, as if each row were a person, moves
    // by 3 for this person and spends about 3ε.
    let spec = NoiseSpec::Laplace(concord_dp::Epsilon::new(1.0).unwrap());
    let rows = |n: usize| -> Vec<f64> {
        (0..RUNS)
            .map(|_| {
                let data = Contributions::one_row_per_individual(vec![(); n]);
                release::count(&data, spec).unwrap().value as f64
            })
            .collect()
    };
    let eps = epsilon_lower_bound(&rows(203), &rows(200), 203.0);
    eprintln!("rows as people: empirical ε ≥ {eps:.3} (claimed 1)");
    assert!(eps > 1.5, "the audit missed a release at about 3ε: {eps}");
}
