#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use crate::params::Delta;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn eps(e: f64) -> NoiseSpec {
    NoiseSpec::Laplace(Epsilon::new(e).unwrap())
}

#[test]
fn bounding_keeps_at_most_k_rows_per_id_and_accounts_for_them() {
    let mut rng = StdRng::seed_from_u64(1);
    let rows = (0..100).map(|i| (i % 10, i)); // 10 ids × 10 rows
    let c = Contributions::bound_by_id(rows, 3, &mut rng).unwrap();
    assert_eq!(c.values().len(), 30);
    assert_eq!(c.max_rows(), 3);
    let mut per_id = [0; 10];
    for v in c.values() {
        per_id[(v % 10) as usize] += 1;
    }
    assert_eq!(per_id, [3; 10]);
    assert!(matches!(
        Contributions::bound_by_id(vec![(1, 1)], 0, &mut rng),
        Err(DpError::InvalidCount { .. })
    ));
    // Sensitivity scales with k: the same ε needs k times the scale.
    let r1 = count(
        &Contributions::one_row_per_individual(vec![0; 30]),
        eps(1.0),
    )
    .unwrap();
    let r3 = count(&c, eps(1.0)).unwrap();
    assert!(
        (r1.scale - 1.0).abs() < 1e-9 && (r3.scale - 3.0).abs() < 1e-9,
        "{} {}",
        r1.scale,
        r3.scale
    );
    assert_eq!(r3.cost.pure_epsilon().unwrap(), 1.0);
}

#[test]
fn sum_and_mean_report_scale_cost_and_intervals() {
    let data = Contributions::one_row_per_individual((0..1000).map(|i| i % 100).collect());
    let s = sum(&data, (0, 100), eps(0.5)).unwrap();
    assert_eq!(s.mechanism, Mechanism::DiscreteLaplace);
    assert!((s.scale - 200.0).abs() < 1e-6);
    let Accuracy::Interval { lower, upper } = s.accuracy else {
        panic!()
    };
    // 200·ln(40/(e^{1/200}+1)) + 1 ≈ 599.6
    assert!(
        ((upper - lower) / 2.0 - 599.6).abs() < 0.5,
        "{lower} {upper}"
    );
    let m = mean(&data, (0, 100), NoiseSpec::Gaussian(Rho::new(0.5).unwrap())).unwrap();
    assert_eq!(m.cost.rho.to_f64(), 0.5);
    assert_eq!(m.sum.mechanism, Mechanism::DiscreteGaussian);
    let Accuracy::Interval { lower, upper } = m.accuracy else {
        panic!()
    };
    assert!(
        lower <= 49.5 && 49.5 <= upper && upper - lower < 2.0,
        "[{lower}, {upper}]"
    );
    assert!((m.mean - 49.5).abs() < 1.0);
}

#[test]
fn invalid_parameters_are_typed_errors() {
    let data = Contributions::one_row_per_individual(vec![1i64, 2, 3]);
    assert_eq!(
        sum(&data, (5, 1), eps(1.0)),
        Err(DpError::InvalidBounds { lower: 5, upper: 1 })
    );
    assert!(matches!(
        mean(&data, (5, 1), eps(1.0)),
        Err(DpError::InvalidBounds { .. })
    ));
    assert!(matches!(
        quantile(&data, vec![1, 2], 1.5, eps(1.0)),
        Err(DpError::InvalidParameter { .. })
    ));
    assert!(quantile(&data, vec![], 0.5, eps(1.0)).is_err());
    let cats = Contributions::one_row_per_individual(vec!["a".to_string()]);
    assert!(histogram(&cats, vec![], eps(1.0)).is_err());
}

#[test]
fn histogram_quantile_and_threshold_shapes() {
    let words: Vec<String> = (0..300)
        .map(|i| ["a", "b", "c"][i % 3].to_string())
        .collect();
    let data = Contributions::one_row_per_individual(words);
    let cats = vec!["a".to_string(), "b".to_string(), "z".to_string()];
    let h = histogram(&data, cats.clone(), eps(1.0)).unwrap();
    assert_eq!(h.value.len(), 3);
    assert!((h.value[0] - 100).abs() < 30 && h.value[2].abs() < 30);
    let g = histogram(&data, cats, NoiseSpec::Gaussian(Rho::new(0.5).unwrap())).unwrap();
    assert_eq!(g.mechanism, Mechanism::DiscreteGaussian);

    let nums = Contributions::one_row_per_individual((0..1001).collect::<Vec<i64>>());
    let q = quantile(&nums, (0..=20).map(|i| i * 50).collect(), 0.5, eps(1.0)).unwrap();
    assert!((q.value - 500).abs() <= 100, "{}", q.value);
    let Accuracy::RankError { rows } = q.accuracy else {
        panic!()
    };
    assert!(rows > 0.0);
    assert!(q.cost.pure_epsilon().unwrap() <= 1.0);

    let mut rows = data.values().to_vec();
    rows.push("rare".to_string());
    let t = thresholded_histogram(
        &Contributions::one_row_per_individual(rows),
        Epsilon::new(1.0).unwrap(),
        Delta::new(1e-6).unwrap(),
    )
    .unwrap();
    // P[X ≥ τ − 1] = e^{−(τ−1)}·e/(1+e) ≤ 10⁻⁶ ⇒ τ = 15 for scale 1.
    assert_eq!(t.threshold, 15);
    assert!(!t.release.value.contains_key("rare"));
    assert_eq!(t.release.value.len(), 3);
    assert!(t.release.cost.delta.to_f64() <= 1e-6 && t.release.cost.epsilon.to_f64() <= 1.0);
}
