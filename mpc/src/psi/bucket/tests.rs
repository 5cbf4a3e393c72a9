//! Bucketed runs give the unbucketed result, in every mode and for OT-PSI; the padding bound
//! holds and hides each bucket's size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::*;
use crate::psi::local::{self, Progress};
use crate::psi::{OtPsiParams, OutputKind, PsiParams, Recipients, canonical_row_key, ot};

const MODES: [(OutputKind, Recipients); 4] = [
    (OutputKind::Cardinality, Recipients::Receiver),
    (OutputKind::Cardinality, Recipients::Both),
    (OutputKind::Intersection, Recipients::Receiver),
    (OutputKind::Intersection, Recipients::Both),
];

fn rows(keys: &[String]) -> Vec<[&str; 1]> {
    keys.iter().map(|k| [k.as_str()]).collect()
}

fn unbucketed(params: PsiParams, r: &[String], s: &[String], rng: &mut StdRng) -> LocalRun {
    local::run(
        params,
        KeySet::from_strings(KeySpec::SINGLE, r).unwrap(),
        KeySet::from_strings(KeySpec::SINGLE, s).unwrap(),
        rng,
        &Progress::default(),
    )
    .unwrap()
}

fn split_both(plan: &BucketPlan, r: &[String], s: &[String], rng: &mut StdRng) -> (Split, Split) {
    let declared = |k: &[String]| k.len() as u64;
    (
        split(KeySpec::SINGLE, plan, declared(r), rows(r), rng).unwrap(),
        split(KeySpec::SINGLE, plan, declared(s), rows(s), rng).unwrap(),
    )
}

/// What the two runs must agree on: everything but the sizes the parties announced (padded).
fn assert_same(bucketed: &LocalRun, plain: &LocalRun, what: &str) {
    assert_eq!(
        bucketed.receiver.cardinality, plain.receiver.cardinality,
        "{what}"
    );
    assert_eq!(
        bucketed.receiver.matched_rows, plain.receiver.matched_rows,
        "{what}"
    );
    assert_eq!(bucketed.receiver.input, plain.receiver.input, "{what}");
    assert_eq!(
        bucketed.sender.cardinality, plain.sender.cardinality,
        "{what}"
    );
    assert_eq!(
        bucketed.sender.matched_rows, plain.sender.matched_rows,
        "{what}"
    );
    assert_eq!(bucketed.sender.input, plain.sender.input, "{what}");
}

fn check_ecdh(r: &[String], s: &[String], buckets: u32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for (output, recipients) in MODES {
        let session = SessionId::random(&mut rng);
        let plain = unbucketed(
            PsiParams::one_shot(session, output, recipients, KeySpec::SINGLE),
            r,
            s,
            &mut rng,
        );
        let plan = BucketPlan::new(session, buckets).unwrap();
        let (rs, ss) = split_both(&plan, r, s, &mut rng);
        let (r_cap, s_cap) = (rs.capacity, ss.capacity);
        let mut run_rng = StdRng::seed_from_u64(seed ^ 1);
        let bucketed = run_local(rs, ss, |i, rk, sk| {
            let params =
                PsiParams::one_shot(plan.bucket_session(i), output, recipients, KeySpec::SINGLE);
            local::run(params, rk, sk, &mut run_rng, &Progress::default())
        })
        .unwrap();
        let what = format!("{output:?}/{recipients:?}, {buckets} buckets");
        assert_same(&bucketed, &plain, &what);
        // Each side learns only the padded sizes: B × capacity.
        assert_eq!(
            bucketed.receiver.peer_items,
            u64::from(buckets) * s_cap,
            "{what}"
        );
        assert_eq!(
            bucketed.sender.peer_items,
            u64::from(buckets) * r_cap,
            "{what}"
        );
    }
}

fn check_ot(r: &[String], s: &[String], buckets: u32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let session = SessionId::random(&mut rng);
    let params = |session| {
        OtPsiParams::new(
            session,
            OutputKind::Intersection,
            Recipients::Receiver,
            KeySpec::SINGLE,
        )
        .unwrap()
    };
    let plain = ot::local::run(
        params(session),
        KeySet::from_strings(KeySpec::SINGLE, r).unwrap(),
        KeySet::from_strings(KeySpec::SINGLE, s).unwrap(),
        &mut rng,
    )
    .unwrap();
    let plan = BucketPlan::new(session, buckets).unwrap();
    let (rs, ss) = split_both(&plan, r, s, &mut rng);
    let mut run_rng = StdRng::seed_from_u64(seed ^ 2);
    let bucketed = run_local(rs, ss, |i, rk, sk| {
        ot::local::run(params(plan.bucket_session(i)), rk, sk, &mut run_rng)
    })
    .unwrap();
    assert_same(&bucketed, &plain, &format!("OT, {buckets} buckets"));
}

/// Keys from a small universe (so sets overlap and repeat), a few blank (excluded rows), and
/// sometimes one key repeated many times (skew: one bucket far fuller in rows than the rest).
fn keys(max: usize) -> impl Strategy<Value = Vec<String>> {
    let key = prop_oneof![
        20 => (0u16..300).prop_map(|n| format!("k{n}")),
        2 => (0u16..300).prop_map(|n| format!(" K{n}\t")),
        1 => Just(String::new()),
    ];
    (prop::collection::vec(key, 0..max), 0usize..40).prop_map(|(mut keys, repeats)| {
        keys.extend(std::iter::repeat_n("hot".to_owned(), repeats));
        keys
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn ecdh_bucketed_equals_unbucketed(
        r in keys(150),
        s in keys(150),
        buckets in 1u32..9,
        seed in any::<u64>(),
    ) {
        check_ecdh(&r, &s, buckets, seed);
    }

    #[test]
    fn ot_bucketed_equals_unbucketed(
        r in keys(150),
        s in keys(150),
        buckets in 1u32..5,
        seed in any::<u64>(),
    ) {
        check_ot(&r, &s, buckets, seed);
    }
}

#[test]
fn empty_sets_and_empty_buckets() {
    let few: Vec<String> = vec!["a".into(), "b".into()];
    // 16 buckets for two keys: most buckets are empty on both sides.
    check_ecdh(&few, &few, 16, 1);
    check_ecdh(&[], &few, 4, 2);
    check_ecdh(&[], &[], 4, 3);
    check_ot(&few, &few, 8, 4);
}

#[test]
fn the_bound_pads_little_and_is_never_exceeded_in_practice() {
    assert_eq!(capacity(1000, 1), 1000);
    assert_eq!(capacity(0, 8), 0);
    assert!(capacity(5, 8) <= 5);
    // 10^8 keys over 32 buckets: under 0.5% padding.
    let (n, b) = (100_000_000u64, 32u32);
    let cap = capacity(n, b);
    let mean = n as f64 / f64::from(b);
    assert!(cap as f64 > mean && (cap as f64) < mean * 1.005, "{cap}");
    // Real loads: 200,000 random keys into 64 buckets, under 20 sessions.
    let mut rng = StdRng::seed_from_u64(9);
    let n = 200_000u64;
    let cap = capacity(n, 64);
    let mut key = Vec::new();
    for _ in 0..20 {
        let plan = BucketPlan::new(SessionId::random(&mut rng), 64).unwrap();
        let mut loads = [0u64; 64];
        for i in 0..n {
            canonical_row_key(KeySpec::SINGLE, i, &[format!("{i:016}")], &mut key).unwrap();
            loads[plan.bucket_of(&key) as usize] += 1;
        }
        let max = *loads.iter().max().unwrap();
        let min = *loads.iter().min().unwrap();
        assert!(max <= cap, "{max} > {cap}");
        // Roughly uniform: every bucket within 10% of the mean of 3,125.
        assert!(min > 2800 && max < 3450, "{min}..{max}");
    }
}

#[test]
fn assignment_depends_on_the_session_and_bucket_sessions_differ() {
    let mut rng = StdRng::seed_from_u64(10);
    let a = BucketPlan::new(SessionId::random(&mut rng), 1024).unwrap();
    let b = BucketPlan::new(SessionId::random(&mut rng), 1024).unwrap();
    let mut key = Vec::new();
    let same = (0..1000u64)
        .filter(|i| {
            canonical_row_key(KeySpec::SINGLE, *i, &[i.to_string()], &mut key).unwrap();
            a.bucket_of(&key) == b.bucket_of(&key)
        })
        .count();
    assert!(
        same < 10,
        "{same} of 1000 keys in the same bucket under two sessions"
    );
    assert_ne!(a.bucket_session(0), a.bucket_session(1));
    assert_ne!(a.bucket_session(0), b.bucket_session(0));
    assert_ne!(a.bucket_session(0), a.session());
}

#[test]
fn auto_plans_fit_the_target_and_counts_are_checked() {
    let session = SessionId([7; 16]);
    let plan = BucketPlan::auto(session, 100_000_000, 1 << 22).unwrap();
    assert!(capacity(100_000_000, plan.buckets()) <= 1 << 22);
    assert!(plan.buckets() <= 25, "{}", plan.buckets());
    assert_eq!(BucketPlan::auto(session, 10, 1 << 22).unwrap().buckets(), 1);
    assert!(BucketPlan::new(session, 0).is_err());
    assert!(BucketPlan::new(session, MAX_BUCKETS + 1).is_err());
}

#[test]
fn a_full_bucket_fails_rather_than_run_unpadded() {
    let mut rng = StdRng::seed_from_u64(11);
    let plan = BucketPlan::new(SessionId::random(&mut rng), 2).unwrap();
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    // Declaring 10 keys while holding 100: some bucket cannot be padded to capacity(10, 2).
    let err = split(KeySpec::SINGLE, &plan, 10, rows(&keys), &mut rng)
        .err()
        .unwrap();
    assert!(matches!(err, PsiError::BucketOverflow { .. }), "{err}");
}
