//! Grants in the database: m-of-n approval, validity and expiry on an injected time, revocation,
//! run limits and the grant's budget across period rollover, and 1000 concurrent admissions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use concord_dp::PrivacyCost;

use super::*;
use crate::catalog::{self, DatasetSpec};
use crate::ledger::{Cap, EVERYONE};
use crate::policy::{Approvals, FieldUse, JobKind, Limits, Refusal, Rules, Scope, Status, Terms};

/// 2026-11-24 12:00:00 UTC.
pub(crate) const NOW: i64 = 1_795_521_600_000;
pub(crate) const DAY: i64 = 86_400_000;
/// 2026-12-01 00:00:00 UTC: the next month.
pub(crate) const NEXT_MONTH: i64 = 1_796_083_200_000;

pub(crate) const OPERATOR: &str = "operator.health.concord";
pub(crate) const RESEARCHER: &str = "researcher.health.concord";

pub(crate) fn cost(e: f64) -> PrivacyCost {
    PrivacyCost::pure(concord_dp::params::Epsilon::new(e).unwrap()).unwrap()
}

/// m = 2 of three data managers.
pub(crate) fn rules() -> Rules {
    Rules {
        matrix: Default::default(),
        approvals: Approvals {
            needed: 2,
            managers: ["dm1", "dm2", "dm3"].map(String::from).into(),
        },
    }
}

/// Registers `claims` (domain `health`): `nin` internal, `amount` sensitive, `district`
/// public, `notes` restricted; 20 rows. Sets a dataset-wide cap of ε = 100 per year.
pub(crate) fn register_claims(store: &mut Store, dir: &Path) {
    let file = dir.join("claims.csv");
    let mut csv = String::from("nin,amount,district,notes\n");
    for i in 0..20 {
        csv.push_str(&format!("N{i:04},{},d{},n\n", 100 + i, i % 3));
    }
    std::fs::write(&file, csv).unwrap();
    let spec = DatasetSpec {
        id: "claims".into(),
        path: file,
        key_columns: vec!["nin".into()],
        key_types: vec![concord_mpc::psi::KeyType::TEXT],
        on_bad_row: crate::csv_input::OnBadRow::Fail,
        privacy_unit: crate::catalog::PrivacyUnit::Keys,
        population: "default".into(),
        columns: [
            "nin:text:internal",
            "amount:integer:sensitive",
            "district:text:public",
            "notes:text:restricted",
        ]
        .iter()
        .map(|c| catalog::parse_column(c).unwrap())
        .collect(),
        description: "insurance claims".into(),
        domain: "health".into(),
    };
    let dataset = catalog::inspect(spec, "dm1", NOW, &dir.join("r.csv")).unwrap();
    catalog::register(store, &dataset).unwrap();
    ledger::set_cap(
        store,
        &Cap {
            dataset: "claims".into(),
            grantee: EVERYONE.into(),
            period: Period::Year,
            limit: PrivacyCost::cap(100.0, 0.0, 0.0).unwrap(),
        },
    )
    .unwrap();
}

/// An overall grant on `claims` to [`OPERATOR`] for 30 days from [`NOW`] − 1 day: results to
/// [`RESEARCHER`], minimum set 10, minimum group 5, 3 runs a month, ε = 1 a month.
pub(crate) fn terms() -> Terms {
    Terms {
        grantee: OPERATOR.into(),
        scope: Scope::Overall {
            dataset: "claims".into(),
        },
        recipients: [RESEARCHER.to_owned()].into(),
        valid_from_ms: NOW - DAY,
        valid_until_ms: NOW + 29 * DAY,
        purpose: "subsidy take-up by district".into(),
        security_owner: "CISO, health department".into(),
        limits: Limits {
            min_set_size: 10,
            min_group_size: 5,
            max_runs: Some(3),
            runs_period: Period::Month,
        },
        budget: PrivacyCost::cap(1.0, 0.0, 0.0).unwrap(),
        budget_period: Period::Month,
    }
}

/// A PSI-cardinality request on `claims.nin` under `grant`.
pub(crate) fn request(job: &str, grant: &str, e: f64) -> UseRequest {
    UseRequest {
        job: job.into(),
        kind: JobKind::PsiCardinality,
        grantee: OPERATOR.into(),
        grant: grant.into(),
        dataset: "claims".into(),
        fields: vec![("nin".into(), FieldUse::MatchKey)],
        peers: vec!["civil".into()],
        recipient: RESEARCHER.into(),
        cost: cost(e),
    }
}

/// A store with `claims` and an active grant (proposed by dm1, approved by dm2).
pub(crate) fn active(terms: Terms) -> (tempfile::TempDir, Store, Grant) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("node.sqlite")).unwrap();
    register_claims(&mut store, dir.path());
    let g = propose(&mut store, &rules(), terms, "dm1", NOW - DAY).unwrap();
    let g = approve(&mut store, &g.id, "dm2", NOW - DAY).unwrap();
    (dir, store, g)
}

fn refusal(e: GrantError) -> Refusal {
    match e {
        GrantError::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_grant_is_active_only_after_m_of_n_current_managers_approve() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("node.sqlite")).unwrap();
    register_claims(&mut s, dir.path());
    let rules = rules();
    let g = propose(&mut s, &rules, terms(), "dm1", NOW).unwrap();
    assert_eq!(
        g.status(&rules.approvals, NOW),
        Status::Proposed { have: 1, needed: 2 }
    );
    assert!(matches!(
        admit(&mut s, &rules, &request("j1", &g.id, 0.1), 20, NOW).map_err(refusal),
        Err(Refusal::NotApproved {
            have: 1,
            needed: 2,
            ..
        })
    ));

    let again = approve(&mut s, &g.id, "dm1", NOW).unwrap_err();
    assert!(
        matches!(again, GrantError::AlreadyApproved { .. }),
        "{again}"
    );
    // Someone who is not (or no longer) a data manager adds nothing.
    let g = approve(&mut s, &g.id, "former-manager", NOW).unwrap();
    assert_eq!(g.counted_approvals(&rules.approvals), 1);
    let g = approve(&mut s, &g.id, "dm3", NOW).unwrap();
    assert_eq!(g.status(&rules.approvals, NOW), Status::Active);
    admit(&mut s, &rules, &request("j1", &g.id, 0.1), 20, NOW).unwrap();

    // Remove dm3 from the config: its approval stops counting, and so does the grant.
    let mut fewer = rules.clone();
    fewer.approvals.managers.remove("dm3");
    assert_eq!(
        g.status(&fewer.approvals, NOW),
        Status::Proposed { have: 1, needed: 2 }
    );

    let stored = get(&mut s, &g.id).unwrap().unwrap();
    assert_eq!(stored, g);
    assert_eq!(
        stored
            .approvals
            .iter()
            .map(|(w, _)| w.as_str())
            .collect::<Vec<_>>(),
        ["dm1", "dm3", "former-manager"]
    );
}

#[test]
fn validity_window_and_revocation_follow_the_injected_time() {
    let (_dir, mut s, g) = active(terms());
    let r = rules();
    let (from, until) = (g.terms.valid_from_ms, g.terms.valid_until_ms);
    assert_eq!(g.status(&r.approvals, from - 1), Status::NotYetValid);
    assert_eq!(g.status(&r.approvals, from), Status::Active);
    assert_eq!(g.status(&r.approvals, until - 1), Status::Active);
    assert_eq!(g.status(&r.approvals, until), Status::Expired);
    assert!(matches!(
        refusal(admit(&mut s, &r, &request("early", &g.id, 0.1), 20, from - 1).unwrap_err()),
        Refusal::NotYetValid { .. }
    ));
    assert!(matches!(
        refusal(admit(&mut s, &r, &request("late", &g.id, 0.1), 20, until).unwrap_err()),
        Refusal::Expired { .. }
    ));

    // A job admitted before the revocation cannot release after it.
    let req = request("running", &g.id, 0.1);
    admit(&mut s, &r, &req, 20, NOW).unwrap();
    recheck(&mut s, &r, &req, &[("civil", 50)], None, NOW).unwrap();
    let g = revoke(&mut s, &g.id, "dm2", "purpose fulfilled", NOW + 1).unwrap();
    assert_eq!(g.status(&r.approvals, NOW + 1), Status::Revoked);
    let refused = refusal(recheck(&mut s, &r, &req, &[("civil", 50)], None, NOW + 2).unwrap_err());
    assert_eq!(
        refused.to_string(),
        format!(
            "grant {} was revoked by dm2 at {} ms: purpose fulfilled",
            g.id,
            NOW + 1
        )
    );
    assert!(!refused.spends_budget());
    assert!(matches!(
        revoke(&mut s, &g.id, "dm1", "again", NOW + 3),
        Err(GrantError::Revoked(_))
    ));
    assert!(matches!(
        approve(&mut s, &g.id, "dm3", NOW + 3),
        Err(GrantError::Revoked(_))
    ));
}

#[test]
fn runs_and_the_grant_budget_renew_with_the_period() {
    let (_dir, mut s, g) = active(terms());
    let r = rules();
    // Budget ε = 1 a month at 0.4 a run: two fit.
    admit(&mut s, &r, &request("a", &g.id, 0.4), 20, NOW).unwrap();
    admit(&mut s, &r, &request("b", &g.id, 0.4), 20, NOW).unwrap();
    let over = refusal(admit(&mut s, &r, &request("c", &g.id, 0.4), 20, NOW).unwrap_err());
    let Refusal::BudgetExhausted { cap, period, .. } = &over else {
        panic!("{over:?}")
    };
    assert_eq!(
        (cap.as_str(), *period),
        (format!("grant {}", g.id).as_str(), Period::Month)
    );
    // A small job still fits, and is the third run of three.
    admit(&mut s, &r, &request("c", &g.id, 0.1), 20, NOW).unwrap();
    let runs = refusal(admit(&mut s, &r, &request("d", &g.id, 0.01), 20, NOW).unwrap_err());
    assert!(
        matches!(runs, Refusal::RunsExhausted { max: 3, .. }),
        "{runs:?}"
    );
    // A returned job is neither a run nor spent budget.
    ledger::give_back(&mut s, "c", NOW).unwrap();
    admit(&mut s, &r, &request("d", &g.id, 0.1), 20, NOW).unwrap();
    ledger::commit(&mut s, "a", NOW).unwrap();

    // Next month: runs and budget renew.
    for job in ["e", "f"] {
        admit(&mut s, &r, &request(job, &g.id, 0.4), 20, NEXT_MONTH).unwrap();
    }
    // The input-size floor.
    let small = refusal(admit(&mut s, &r, &request("g", &g.id, 0.1), 9, NEXT_MONTH).unwrap_err());
    assert_eq!(
        small,
        Refusal::SetTooSmall {
            party: "this node".into(),
            size: 9,
            min: 10
        }
    );
}

#[test]
fn proposals_that_exceed_the_catalog_or_the_matrix_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("node.sqlite")).unwrap();
    register_claims(&mut s, dir.path());
    let r = rules();
    let scenario = |fields: &[&str]| Terms {
        scope: Scope::Scenario {
            dataset: "claims".into(),
            kinds: [JobKind::Join].into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            peers: BTreeSet::new(),
        },
        ..terms()
    };
    let cases: Vec<(Terms, &str)> = vec![
        (scenario(&["nin", "notes"]), "field notes is restricted"),
        (scenario(&["nin", "ghost"]), "no field \"ghost\""),
        (
            Terms {
                valid_until_ms: NOW - DAY,
                ..terms()
            },
            "the validity window is empty",
        ),
        (
            Terms {
                scope: Scope::Overall {
                    dataset: "nowhere".into(),
                },
                ..terms()
            },
            "no dataset \"nowhere\"",
        ),
        (
            Terms {
                recipients: BTreeSet::new(),
                ..terms()
            },
            "at least one recipient",
        ),
        (
            Terms {
                grantee: "not an identity".into(),
                ..terms()
            },
            "is not an identity",
        ),
    ];
    for (t, expected) in cases {
        let err = propose(&mut s, &r, t, "dm1", NOW).unwrap_err();
        assert!(
            matches!(err, GrantError::Invalid(_)) && err.to_string().contains(expected),
            "{err} should say {expected:?}"
        );
    }
    assert!(list(&mut s).unwrap().is_empty());
    propose(&mut s, &r, scenario(&["nin", "amount"]), "dm1", NOW).unwrap();
    assert_eq!(list(&mut s).unwrap().len(), 1);
}

#[test]
fn a_thousand_concurrent_admissions_never_overspend_the_grant() {
    let (dir, s, g) = active(Terms {
        budget: PrivacyCost::cap(10.0, 0.0, 0.0).unwrap(),
        limits: Limits {
            max_runs: None,
            ..terms().limits
        },
        ..terms()
    });
    drop(s);
    let path = dir.path().join("node.sqlite");
    let accepted: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (path, id) = (&path, &g.id);
                scope.spawn(move || {
                    let mut s = Store::open(path).unwrap();
                    let r = rules();
                    (0..125)
                        .filter(|i| {
                            let req = request(&format!("t{t}-{i}"), id, 0.1);
                            match admit(&mut s, &r, &req, 20, NOW) {
                                Ok(_) => true,
                                Err(GrantError::Refused(Refusal::BudgetExhausted { .. })) => false,
                                Err(e) => panic!("{e}"),
                            }
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    // ε = 0.1 is charged rounded up (0.1 has no exact binary form), so 99 fit under 10.
    assert_eq!(accepted, 99);
    let mut s = Store::open(&path).unwrap();
    let db = ledger::db_err(&s);
    let (reserved, spent, runs) = ledger::grant_usage(s.conn(), &db, &g.id, 0).unwrap();
    assert!(reserved.fits_within(&g.terms.budget));
    assert_eq!((spent, runs), (PrivacyCost::ZERO, 99));
}

#[test]
fn a_job_naming_no_grant_runs_under_the_first_that_allows_it_and_is_rechecked_under_it() {
    let (_dir, mut s, narrow) = active(Terms {
        scope: Scope::Scenario {
            dataset: "claims".into(),
            kinds: [JobKind::Join].into(),
            fields: ["nin".to_owned()].into(),
            peers: BTreeSet::new(),
        },
        ..terms()
    });
    let r = rules();
    // Only a scenario for joins exists: a cardinality names no grant and finds none that fits.
    let refused = refusal(admit(&mut s, &r, &request("a", "", 0.1), 20, NOW).unwrap_err());
    assert_eq!(refused.code(), "out-of-scope", "{refused}");
    let mut stranger = request("b", "", 0.1);
    stranger.grantee = "operator.civil.concord".into();
    let none = refusal(admit(&mut s, &r, &stranger, 20, NOW).unwrap_err());
    assert_eq!(
        none.to_string(),
        "no grant at this node lets operator.civil.concord use dataset \"claims\""
    );

    let wide = propose(&mut s, &r, terms(), "dm1", NOW).unwrap();
    let wide = approve(&mut s, &wide.id, "dm2", NOW).unwrap();
    let chosen = admit(&mut s, &r, &request("c", "", 0.1), 20, NOW).unwrap();
    assert_eq!(chosen.id, wide.id);
    assert_ne!(chosen.id, narrow.id);
    // Release is checked under the grant admission recorded, which is then revoked.
    recheck(
        &mut s,
        &r,
        &request("c", "", 0.1),
        &[("civil", 50)],
        None,
        NOW,
    )
    .unwrap();
    revoke(&mut s, &wide.id, "dm1", "done", NOW).unwrap();
    let late = refusal(recheck(&mut s, &r, &request("c", "", 0.1), &[], None, NOW).unwrap_err());
    assert_eq!(late.code(), "revoked");
}
