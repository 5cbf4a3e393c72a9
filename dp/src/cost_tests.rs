#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use opendp::combinators::make_zCDP_to_approxDP;
use opendp::domains::AtomDomain;
use opendp::measurements::make_gaussian;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::AbsoluteDistance;
use proptest::prelude::*;

#[test]
fn composing_ten_thousand_costs_is_exact() {
    let c = PrivacyCost::pure(Epsilon::new(0.1).unwrap()).unwrap();
    // 0.1 is not dyadic: the f64 is 0.1000000000000000055…, which rounds up to …006 quanta.
    assert_eq!(c.epsilon.quanta(), 100_000_000_000_000_006);
    let total = PrivacyCost::compose_all(std::iter::repeat_n(&c, 10_000)).unwrap();
    assert_eq!(total.epsilon.quanta(), 10_000 * 100_000_000_000_000_006);
    assert_eq!(total.epsilon.to_string(), "1000.00000000000006");
    // A float sum drifts: this is what the integer representation avoids.
    let float_sum: f64 = std::iter::repeat_n(0.1_f64, 10_000).sum();
    assert_ne!(float_sum, 1000.0);
    // And subtraction returns to exactly zero.
    let mut back = total;
    for _ in 0..10_000 {
        back = back.checked_sub(&c).unwrap();
    }
    assert_eq!(back, PrivacyCost::ZERO);
    assert_eq!(back.checked_sub(&c), None);
}

#[test]
fn rounding_is_conservative_in_both_directions() {
    let third = 1.0 / 3.0;
    let up = Quantity::from_f64_up(third).unwrap();
    let down = Quantity::from_f64_down(third).unwrap();
    assert_eq!(up.quanta(), down.quanta() + 1);
    assert_eq!(down.quanta(), 333_333_333_333_333_314); // the f64 nearest 1/3 is below it
    // Exactly representable values are not rounded.
    assert_eq!(
        Quantity::from_f64_up(0.5).unwrap().quanta(),
        500_000_000_000_000_000
    );
    assert_eq!(Quantity::from_f64_up(1e-30).unwrap().quanta(), 1);
    assert_eq!(Quantity::from_f64_down(1e-30).unwrap().quanta(), 0);
    assert!(matches!(
        Quantity::from_f64_up(1e30),
        Err(DpError::CostOverflow { .. })
    ));
    assert!(Quantity::from_f64_up(f64::NAN).is_err());
    assert!(Quantity::from_f64_up(-1.0).is_err());
}

#[test]
fn composition_of_mixed_kinds() {
    let pure = PrivacyCost::pure(Epsilon::new(1.0).unwrap()).unwrap();
    let approx =
        PrivacyCost::approximate(Epsilon::new(0.5).unwrap(), Delta::new(1e-6).unwrap()).unwrap();
    let z = PrivacyCost::zcdp(Rho::new(0.125).unwrap()).unwrap();
    assert_eq!(pure.kind(), CostKind::Pure);
    assert_eq!(approx.kind(), CostKind::Approximate);
    assert_eq!(z.kind(), CostKind::Concentrated);
    let pa = pure.compose(&approx).unwrap();
    assert_eq!(pa.epsilon.to_string(), "1.5");
    assert_eq!(pa.kind(), CostKind::Approximate);
    let all = pa.compose(&z).unwrap();
    assert_eq!(all.kind(), CostKind::Mixed);
    assert_eq!(all.to_string(), "(ε=1.5, δ=0.000001) + ρ=0.125 (zCDP)");
    let (eps, delta) = all.to_approximate_dp(Delta::new(1e-6).unwrap()).unwrap();
    let eps_rho = rho_to_epsilon(Rho::new(0.125).unwrap(), Delta::new(1e-6).unwrap()).unwrap();
    assert!((eps - (1.5 + eps_rho.get())).abs() < 1e-12);
    assert!((delta - 2e-6).abs() < 1e-18);
    let cap = PrivacyCost::cap(2.0, 2e-6, 0.125).unwrap();
    assert!(pa.fits_within(&cap));
    assert!(all.fits_within(&cap));
    assert!(!all.compose(&pure).unwrap().fits_within(&cap));
    assert!(approx.pure_epsilon().is_err());
    assert_eq!(pure.pure_epsilon().unwrap(), 1.0);
}

#[test]
fn rho_to_epsilon_matches_known_values() {
    // Values from an independent grid search over α of the CKS20 Cor. 13 formula, and the classic
    // ρ + 2√(ρ ln 1/δ) bound, which the tight conversion must beat.
    for (rho, delta, want, classic) in [
        (0.5, 1e-5, 4.728387, 5.298526),
        (0.1, 1e-6, 2.141939, 2.450788),
        (1.0, 1e-9, 9.521464, 10.104563),
    ] {
        let eps = rho_to_epsilon(Rho::new(rho).unwrap(), Delta::new(delta).unwrap())
            .unwrap()
            .get();
        assert!(
            (eps - want).abs() < 1e-4 * want,
            "rho={rho}: {eps} vs {want}"
        );
        assert!(eps < classic);
        assert!(cdp_delta(rho, eps) <= delta);
    }
    assert!((cdp_delta(0.5, 3.0) - 0.005143184).abs() < 1e-7);
    assert!((cdp_delta(0.125, 1.0) - 0.017985448).abs() < 1e-7);
    assert_eq!(cdp_delta(0.0, 1.0), 0.0);
}

#[test]
fn conversion_agrees_with_opendp() {
    // OpenDP's own zCDP → approxDP profile for a Gaussian with ρ = 1/(2σ²).
    let sigma = 2.0;
    let meas = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        AtomDomain::<f64>::new_non_nan(),
        AbsoluteDistance::<f64>::default(),
        sigma,
        None,
    )
    .unwrap();
    let rho = meas.map(&1.0).unwrap();
    assert!((rho - 0.125).abs() < 1e-9);
    let profile = make_zCDP_to_approxDP(meas).unwrap().map(&1.0).unwrap();
    for eps in [0.5, 1.0, 2.0, 3.0] {
        let theirs = profile.delta(eps).unwrap();
        let ours = cdp_delta(rho, eps);
        assert!(
            (ours - theirs).abs() <= 1e-9 * theirs.max(1e-300) + 1e-15,
            "{ours} vs {theirs}"
        );
    }
}

#[test]
fn decimal_amounts_are_read_exactly() {
    let q = |s: &str| s.parse::<Quantity>().map(Quantity::quanta);
    assert_eq!(q("4"), Ok(4 * QUANTA_PER_UNIT));
    assert_eq!(q("0.5"), Ok(QUANTA_PER_UNIT / 2));
    assert_eq!(q("1e-6"), Ok(1_000_000_000_000));
    assert_eq!(q("2.5E-3"), Ok(2_500_000_000_000_000));
    assert_eq!(q(".1"), Ok(100_000_000_000_000_000));
    assert_eq!(q("000.000"), Ok(0));
    assert_eq!(q("1e-18"), Ok(1));
    assert_eq!(q("0.100000000000000000000"), Ok(100_000_000_000_000_000));
    for bad in [
        "", ".", "-1", "1e", "abc", "1.2.3", "1e-19", "1e30", "0x10", "1 000",
    ] {
        assert!(
            bad.parse::<Quantity>().is_err(),
            "{bad:?} should be refused"
        );
    }
    // What `Display` writes, `FromStr` reads back.
    for quanta in [
        0,
        1,
        999_999_999_999,
        4 * QUANTA_PER_UNIT,
        123_456_789_012_345_678_901,
    ] {
        let x = Quantity::from_quanta(quanta);
        assert_eq!(x.to_string().parse::<Quantity>(), Ok(x));
    }
}

proptest! {
    #[test]
    fn composition_is_associative_and_commutative(a in 0.0f64..100.0, b in 0.0f64..100.0, c in 0.0f64..1.0) {
        let x = PrivacyCost::cap(a, 0.0, c).unwrap();
        let y = PrivacyCost::cap(b, c, 0.0).unwrap();
        let z = PrivacyCost::cap(c, 0.0, a).unwrap();
        prop_assert_eq!(x.compose(&y).unwrap(), y.compose(&x).unwrap());
        prop_assert_eq!(
            x.compose(&y).unwrap().compose(&z).unwrap(),
            x.compose(&y.compose(&z).unwrap()).unwrap()
        );
        prop_assert!(Quantity::from_f64_up(a).unwrap().to_f64() >= a * (1.0 - 1e-15));
    }

    #[test]
    fn rho_to_epsilon_is_monotone(rho in 0.001f64..10.0, d in 1e-12f64..0.1) {
        let e1 = rho_to_epsilon(Rho::new(rho).unwrap(), Delta::new(d).unwrap()).unwrap().get();
        let e2 = rho_to_epsilon(Rho::new(rho * 1.5).unwrap(), Delta::new(d).unwrap()).unwrap().get();
        prop_assert!(e2 >= e1);
        prop_assert!(cdp_delta(rho, e1) <= d);
    }
}
