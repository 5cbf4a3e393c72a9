//! The ledger under sequential use, period rollover, crashes and 1000 concurrent reservations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// 2026-11-24 12:00:00 UTC.
const NOW: i64 = 1_795_521_600_000;
const DAY: i64 = 86_400_000;

fn eps(e: f64) -> PrivacyCost {
    PrivacyCost::cap(e, 0.0, 0.0).unwrap()
}

fn cost(e: f64) -> PrivacyCost {
    PrivacyCost::pure(concord_dp::params::Epsilon::new(e).unwrap()).unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("node.sqlite")).unwrap();
    (dir, store)
}

fn cap(grantee: &str, period: Period, e: f64) -> Cap {
    Cap {
        dataset: "insured".into(),
        grantee: grantee.into(),
        period,
        limit: eps(e),
    }
}

#[test]
fn periods_start_at_utc_calendar_boundaries() {
    assert_eq!(Period::Day.start_of(NOW), NOW - 12 * 3_600_000);
    // 2026-11-01 and 2026-01-01, 00:00 UTC.
    assert_eq!(Period::Month.start_of(NOW), 1_793_491_200_000);
    assert_eq!(Period::Year.start_of(NOW), 1_767_225_600_000);
    assert_eq!(Period::Day.start_of(0), 0);
    assert_eq!(Period::Month.start_of(-1), -31 * DAY);
}

#[test]
fn reserve_commit_return_and_refuse_with_what_is_left() {
    let (_dir, mut s) = store();
    let err = reserve(&mut s, "j0", "insured", "op", &cost(0.5), NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no privacy budget is set for dataset \"insured\""
    );

    set_cap(&mut s, &cap("op", Period::Month, 1.0)).unwrap();
    set_cap(&mut s, &cap(EVERYONE, Period::Year, 1.5)).unwrap();
    reserve(&mut s, "j1", "insured", "op", &cost(0.5), NOW).unwrap();
    reserve(&mut s, "j2", "insured", "op", &cost(0.25), NOW).unwrap();
    let dup = reserve(&mut s, "j2", "insured", "op", &cost(0.25), NOW).unwrap_err();
    assert!(matches!(dup, LedgerError::Duplicate { .. }));
    let over = reserve(&mut s, "j3", "insured", "op", &cost(0.5), NOW).unwrap_err();
    assert_eq!(
        over.to_string(),
        "privacy budget exhausted: dataset \"insured\", grantee op, this month: ε=0.25 left, ε=0.5 asked"
    );

    commit(&mut s, "j1", NOW).unwrap();
    give_back(&mut s, "j2", NOW).unwrap();
    assert!(matches!(
        commit(&mut s, "j2", NOW),
        Err(LedgerError::NotReserved { .. })
    ));
    let u = usage(&mut s, "insured", NOW).unwrap();
    let op = u.iter().find(|u| u.cap.grantee == "op").unwrap();
    assert_eq!(
        (op.spent, op.reserved, op.remaining),
        (cost(0.5), PrivacyCost::ZERO, cost(0.5))
    );

    // Another operator has no cap of their own but shares the dataset-wide one.
    reserve(&mut s, "j4", "insured", "other", &cost(0.75), NOW).unwrap();
    let err = reserve(&mut s, "j5", "insured", "other", &cost(0.5), NOW).unwrap_err();
    assert!(
        matches!(&err, LedgerError::Exhausted { grantee, .. } if grantee == EVERYONE),
        "{err}"
    );
}

#[test]
fn a_new_period_renews_the_cap() {
    let (_dir, mut s) = store();
    set_cap(&mut s, &cap("op", Period::Day, 1.0)).unwrap();
    reserve(&mut s, "a", "insured", "op", &cost(1.0), NOW).unwrap();
    commit(&mut s, "a", NOW).unwrap();
    assert!(
        reserve(
            &mut s,
            "b",
            "insured",
            "op",
            &cost(0.1),
            NOW + 11 * 3_600_000
        )
        .is_err()
    );
    // 12 hours later it is the next UTC day.
    reserve(
        &mut s,
        "b",
        "insured",
        "op",
        &cost(1.0),
        NOW + 12 * 3_600_000,
    )
    .unwrap();
}

#[test]
fn recovery_returns_reservations_left_open_by_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.sqlite");
    let mut s = Store::open(&path).unwrap();
    set_cap(&mut s, &cap("op", Period::Year, 1.0)).unwrap();
    reserve(&mut s, "done", "insured", "op", &cost(0.25), NOW).unwrap();
    commit(&mut s, "done", NOW).unwrap();
    reserve(&mut s, "running", "insured", "op", &cost(0.75), NOW).unwrap();
    drop(s); // the node dies between reserve and commit

    let mut s = Store::open(&path).unwrap();
    assert_eq!(recover(&mut s, NOW).unwrap(), 1);
    let u = &usage(&mut s, "insured", NOW).unwrap()[0];
    assert_eq!(
        (u.spent, u.reserved, u.remaining),
        (cost(0.25), PrivacyCost::ZERO, cost(0.75))
    );
    assert!(matches!(
        commit(&mut s, "running", NOW),
        Err(LedgerError::NotReserved { .. })
    ));
}

#[test]
fn a_thousand_concurrent_reservations_never_overspend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.sqlite");
    set_cap(
        &mut Store::open(&path).unwrap(),
        &cap("op", Period::Year, 10.0),
    )
    .unwrap();
    // 0.1 is not a dyadic number: the f64 nearest it, 0.1000000000000000055…, is charged rounded
    // *up* to 0.100000000000000006, so exactly 99 fit under a cap of 10, not 100.
    let accepted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (path, accepted) = (&path, &accepted);
            scope.spawn(move || {
                let mut s = Store::open(path).unwrap();
                for i in 0..125 {
                    match reserve(
                        &mut s,
                        &format!("job-{t}-{i}"),
                        "insured",
                        "op",
                        &cost(0.1),
                        NOW,
                    ) {
                        Ok(()) => {
                            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(LedgerError::Exhausted { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    assert_eq!(accepted.into_inner(), 99);
    let u = &usage(&mut Store::open(&path).unwrap(), "insured", NOW).unwrap()[0];
    assert!(u.reserved.fits_within(&eps(10.0)));
    assert_eq!(cost(0.1).epsilon.quanta(), 100_000_000_000_000_006);
    assert_eq!(u.reserved.epsilon.quanta(), 99 * 100_000_000_000_000_006);
}
