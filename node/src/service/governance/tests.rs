//! The refusal matrix: every reason the policy check gives, at admission and at release, each
//! with its audit entry, on a node built from a trial federation's config (m = 2 of 2 data
//! managers) with an injected clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use concord_dp::PrivacyCost;
use rand::SeedableRng as _;

use super::*;
use crate::audit;
use crate::audit::Outcome;
use crate::catalog::{self, DatasetSpec};
use crate::clock::ManualClock;
use crate::config::NodeConfig;
use crate::grants::tests::{DAY, NOW, OPERATOR, cost, register_claims, request, terms};
use crate::jobs::gate::Phase;
use crate::policy::UseRequest;
use crate::policy::{FieldUse, JobKind};

const MANAGER: &str = "manager.health.concord";
const MANAGER2: &str = "manager2.health.concord";

struct Fixture {
    _dir: tempfile::TempDir,
    node: Arc<Node>,
    clock: Arc<ManualClock>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fed");
    let names = ["health".to_owned(), "civil".to_owned()];
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    crate::federation::init(
        &root,
        &names,
        "127.0.0.1".parse().unwrap(),
        1,
        NOW,
        &mut rng,
    )
    .unwrap();
    let path = root.join("health/node.toml");
    let text = std::fs::read_to_string(&path).unwrap()
        + "\n[[people]]\nidentity = \"manager2.health.concord\"\nroles = [\"data-manager\"]\n\
           \n[policy]\napprovals = 2\n";
    let config = NodeConfig::parse(&path, &text).unwrap();
    let clock = Arc::new(ManualClock::at(NOW));
    let (node, _, _) = crate::node::open(config, clock.clone()).unwrap();
    {
        let mut store = node.store.lock().unwrap();
        register_claims(&mut store, dir.path());
        // A second dataset with no budget at all.
        let file = dir.path().join("visits.csv");
        let rows: String = (0..20).map(|i| format!("V{i}\n")).collect();
        std::fs::write(&file, format!("nin\n{rows}")).unwrap();
        let spec = DatasetSpec {
            id: "visits".into(),
            path: file,
            key_columns: vec!["nin".into()],
            key_types: vec![concord_mpc::psi::KeyType::TEXT],
            on_bad_row: crate::csv_input::OnBadRow::Fail,
            privacy_unit: catalog::PrivacyUnit::Keys,
            population: "default".into(),
            columns: vec![catalog::parse_column("nin:text:internal").unwrap()],
            description: String::new(),
            domain: "health".into(),
        };
        catalog::register(
            &mut store,
            &catalog::inspect(spec, MANAGER, NOW, &dir.path().join("r.csv")).unwrap(),
        )
        .unwrap();
    }
    Fixture {
        _dir: dir,
        node: Arc::new(node),
        clock,
    }
}

impl Fixture {
    /// Proposes `terms` (by the first manager) and, if `approve`, approves (by the second).
    fn grant(&self, terms: Terms, approve: bool) -> String {
        let mut store = self.node.store.lock().unwrap();
        let rules = &self.node.rules;
        let g = grants::propose(&mut store, rules, terms, MANAGER, NOW - DAY).unwrap();
        if approve {
            grants::approve(&mut store, &g.id, MANAGER2, NOW - DAY).unwrap();
        }
        g.id
    }

    async fn last_entry(&self) -> audit::Entry {
        self.node
            .with_store(|_, s| {
                let last = audit::last_seq(s).unwrap();
                audit::entries_after(s, last - 1, 1).unwrap().remove(0)
            })
            .await
            .unwrap()
    }
}

fn req(job: &str, grant: &str) -> UseRequest {
    request(job, grant, 0.1)
}

fn scenario() -> Terms {
    Terms {
        scope: Scope::Scenario {
            dataset: "claims".into(),
            kinds: [JobKind::Join].into(),
            fields: ["nin".to_owned(), "amount".to_owned()].into(),
            peers: ["civil".to_owned()].into(),
        },
        ..terms()
    }
}

fn join(job: &str, grant: &str) -> UseRequest {
    UseRequest {
        kind: JobKind::Join,
        fields: vec![
            ("nin".into(), FieldUse::MatchKey),
            ("amount".into(), FieldUse::DpValue),
        ],
        ..req(job, grant)
    }
}

struct Case {
    name: &'static str,
    req: UseRequest,
    phase: Phase,
    parties: Vec<(String, u64)>,
    smallest_group: Option<i64>,
    code: &'static str,
}

fn admit_case(name: &'static str, req: UseRequest, code: &'static str) -> Case {
    Case {
        name,
        req,
        phase: Phase::Admit { own_set_size: 20 },
        parties: Vec::new(),
        smallest_group: None,
        code,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_reason_is_returned_and_audited() {
    let f = fixture();
    let active = f.grant(terms(), true);
    let pending = f.grant(terms(), false);
    let revoked = f.grant(terms(), true);
    let expired = f.grant(
        Terms {
            valid_from_ms: NOW - 3 * DAY,
            valid_until_ms: NOW - DAY,
            ..terms()
        },
        true,
    );
    let future = f.grant(
        Terms {
            valid_from_ms: NOW + DAY,
            ..terms()
        },
        true,
    );
    let scenario = f.grant(scenario(), true);
    let education = f.grant(
        Terms {
            scope: Scope::Domain {
                domain: "education".into(),
            },
            ..terms()
        },
        true,
    );
    let health = f.grant(
        Terms {
            scope: Scope::Domain {
                domain: "health".into(),
            },
            ..terms()
        },
        true,
    );
    let once = f.grant(
        Terms {
            limits: Limits {
                max_runs: Some(1),
                ..terms().limits
            },
            ..terms()
        },
        true,
    );
    let thin = f.grant(
        Terms {
            budget: PrivacyCost::cap(0.05, 0.0, 0.0).unwrap(),
            ..terms()
        },
        true,
    );
    {
        let mut store = f.node.store.lock().unwrap();
        grants::revoke(&mut store, &revoked, MANAGER2, "audit finding", NOW - 1).unwrap();
    }

    // What is accepted first: a job to release, a run that uses up `once`, and one that will
    // see its grant revoked while it runs.
    let admit = Phase::Admit { own_set_size: 20 };
    let ok = |r: Result<Grant, NodeError>| r.map(|g| g.id).unwrap();
    assert_eq!(
        ok(f.node
            .authorize(&req("run", &active), admit, vec![], None)
            .await),
        active
    );
    let e = f.last_entry().await;
    assert_eq!(
        (
            e.record.action.as_str(),
            e.record.outcome,
            e.record.grant.as_deref()
        ),
        ("policy.admit", Outcome::Accepted, Some(active.as_str()))
    );
    assert_eq!(e.record.actor, OPERATOR);
    assert_eq!(e.record.subjects, ["claims", "claims.nin:match-key"]);
    assert_eq!(e.record.privacy_cost, Some(cost(0.1).to_string()));
    ok(f.node
        .authorize(&join("joined", &scenario), admit, vec![], None)
        .await);
    ok(f.node
        .authorize(&req("first", &once), admit, vec![], None)
        .await);
    ok(f.node
        .authorize(&req("by-domain", &health), admit, vec![], None)
        .await);
    let late = f.grant(terms(), true);
    ok(f.node
        .authorize(&req("doomed", &late), admit, vec![], None)
        .await);
    {
        let mut store = f.node.store.lock().unwrap();
        grants::revoke(&mut store, &late, MANAGER, "exit", NOW).unwrap();
    }

    let release = |name, req: UseRequest, parties: &[(&str, u64)], group, code| Case {
        name,
        req,
        phase: Phase::Release,
        parties: parties.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        smallest_group: group,
        code,
    };
    let cases = vec![
        admit_case("no such grant", req("a", "g-000000000000"), "unknown-grant"),
        admit_case(
            "someone else's grant",
            UseRequest {
                grantee: "operator.civil.concord".into(),
                ..req("b", &active)
            },
            "not-grantee",
        ),
        admit_case("one approval of two", req("c", &pending), "not-approved"),
        admit_case("revoked", req("d", &revoked), "revoked"),
        admit_case("expired", req("e", &expired), "expired"),
        admit_case("not yet valid", req("f", &future), "not-yet-valid"),
        admit_case(
            "another dataset",
            UseRequest {
                dataset: "visits".into(),
                ..req("g", &active)
            },
            "out-of-scope",
        ),
        admit_case("another domain", req("h", &education), "out-of-scope"),
        admit_case(
            "job kind outside the scenario",
            req("i", &scenario),
            "out-of-scope",
        ),
        admit_case(
            "field outside the scenario",
            UseRequest {
                fields: vec![("district".into(), FieldUse::DpGroup)],
                ..join("j", &scenario)
            },
            "out-of-scope",
        ),
        admit_case(
            "peer outside the scenario",
            UseRequest {
                peers: vec!["tax".into()],
                ..join("k", &scenario)
            },
            "out-of-scope",
        ),
        admit_case(
            "recipient not named",
            UseRequest {
                recipient: "someone.else.concord".into(),
                ..req("l", &active)
            },
            "out-of-scope",
        ),
        admit_case(
            "dataset not registered",
            UseRequest {
                dataset: "ghost".into(),
                ..req("m", &active)
            },
            "unknown-dataset",
        ),
        admit_case(
            "column not in the dataset",
            UseRequest {
                fields: vec![("ghost".into(), FieldUse::DpValue)],
                ..req("n", &active)
            },
            "unknown-field",
        ),
        admit_case(
            "sensitive field as a key",
            UseRequest {
                fields: vec![("amount".into(), FieldUse::MatchKey)],
                ..req("o", &active)
            },
            "tier-violation",
        ),
        admit_case(
            "restricted field inside an aggregate",
            UseRequest {
                fields: vec![("notes".into(), FieldUse::DpValue)],
                ..req("p", &active)
            },
            "tier-violation",
        ),
        Case {
            phase: Phase::Admit { own_set_size: 9 },
            ..admit_case("own input too small", req("q", &active), "set-too-small")
        },
        admit_case("second run of one", req("r", &once), "runs-exhausted"),
        admit_case(
            "over the grant's budget",
            req("s", &thin),
            "budget-exhausted",
        ),
        {
            // The domain grant covers `visits`, which has no cap.
            let mut r = req("t", &health);
            r.dataset = "visits".into();
            admit_case("dataset without budget", r, "no-budget")
        },
        release(
            "peer input too small",
            req("run", &active),
            &[("civil", 3)],
            None,
            "set-too-small",
        ),
        release(
            "noised group below the minimum",
            req("run", &active),
            &[("civil", 50)],
            Some(4),
            "group-too-small",
        ),
        release(
            "revoked while running",
            req("doomed", &late),
            &[("civil", 50)],
            None,
            "revoked",
        ),
    ];

    let codes: BTreeSet<&str> = cases.iter().map(|c| c.code).collect();
    assert_eq!(codes.len(), 15, "every reason appears: {codes:?}");
    for case in cases {
        let before = f.last_entry().await.seq;
        let result = f
            .node
            .authorize(
                &case.req,
                case.phase,
                case.parties.clone(),
                case.smallest_group,
            )
            .await;
        let refusal = match result {
            Err(NodeError::Policy(r)) => r,
            other => panic!("{}: expected a refusal, got {other:?}", case.name),
        };
        assert_eq!(refusal.code(), case.code, "{}: {refusal}", case.name);
        let e = f.last_entry().await;
        assert_eq!(e.seq, before + 1, "{}: one audit entry", case.name);
        let action = match case.phase {
            Phase::Admit { .. } => "policy.admit",
            Phase::Release => "policy.release",
        };
        assert_eq!(e.record.action, action, "{}", case.name);
        assert_eq!(e.record.outcome, Outcome::Refused, "{}", case.name);
        assert_eq!(e.record.grant.as_deref(), Some(case.req.grant.as_str()));
        assert_eq!(e.record.actor, case.req.grantee);
        assert!(
            e.record.detail.starts_with(&format!("{}: ", case.code))
                && e.record
                    .detail
                    .ends_with(&format!("(job {})", case.req.job)),
            "{}: {}",
            case.name,
            e.record.detail
        );
    }

    // Release of an accepted job, then the clock moves past the window: refused as expired.
    let fine = f
        .node
        .authorize(
            &req("run", &active),
            Phase::Release,
            vec![("civil".into(), 50)],
            Some(5),
        )
        .await;
    assert!(fine.is_ok(), "{fine:?}");
    f.clock.advance(40 * DAY);
    let expired = f
        .node
        .authorize(
            &req("run", &active),
            Phase::Release,
            vec![("civil".into(), 50)],
            None,
        )
        .await;
    assert!(matches!(
        expired,
        Err(NodeError::Policy(Refusal::Expired { .. }))
    ));

    // Refusals reserved nothing: the five accepted admissions hold the only entries.
    let (entries, verified) = f
        .node
        .with_store(|node, s| {
            let n: i64 = s
                .conn()
                .query_row("SELECT COUNT(*) FROM budget_entries", [], |r| r.get(0))
                .unwrap();
            (n, audit::verify(s, &node.key.verifying_key()).unwrap())
        })
        .await
        .unwrap();
    assert_eq!(entries, 5);
    assert!(verified.is_intact(), "{:?}", verified.problems);
}
