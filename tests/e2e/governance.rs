//! A data manager budgets, grants, classifies and revokes through the CLI against a real node;
//! each decision is in the audit log with its grant.

use crate::catalog::add_people;
use crate::support::{Fed, audit_entries, concord, fails, find, ok};

const CSV: &str = "nin,district,claims,diagnosis\n\
    110101199001011234,north,12.50,J45\n\
    110101198502023456,south,,E11\n";

#[test]
fn a_data_manager_budgets_grants_classifies_and_revokes() {
    let fed = Fed::init("health,civil");
    let health = fed.start("health");
    let manager = fed.path("health/manager.toml");
    let operator = fed.path("health/operator.toml");
    let csv = fed.root.join("insured.csv");
    std::fs::write(&csv, CSV).unwrap();
    let added = add_people(&fed, "health/manager.toml", csv.to_str().unwrap());
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    // Budgets: none yet, then a dataset-wide yearly cap and a monthly cap for the operator.
    let show = [
        "budget",
        "show",
        "--profile",
        &operator,
        "--dataset",
        "insured",
    ];
    assert!(ok(&show).contains("has no budget cap: no job can use it"));
    let set = ok(&[
        "budget",
        "set",
        "--profile",
        &manager,
        "--dataset",
        "insured",
        "--everyone",
        "--epsilon",
        "4",
        "--period",
        "year",
    ]);
    assert!(set.contains("* (everyone)") && set.contains("ε 4"), "{set}");
    ok(&[
        "budget",
        "set",
        "--profile",
        &manager,
        "--dataset",
        "insured",
        "--grantee",
        "operator.health.concord",
        "--epsilon",
        "2",
        "--delta",
        "1e-6",
        "--period",
        "month",
    ]);
    let caps: serde_json::Value =
        serde_json::from_str(&ok(&[&show[..], &["--json"]].concat())).unwrap();
    assert_eq!(caps.as_array().unwrap().len(), 2, "{caps}");
    assert_eq!(caps[1]["grantee"], "operator.health.concord");
    assert_eq!(caps[1]["remaining"]["epsilon"], "2");
    // Exactly the δ typed: decimals never pass through floating point.
    assert_eq!(caps[1]["cap"]["delta"], "0.000001");

    let propose = |extra: &[&str], profile: &str| {
        let base = [
            "grant",
            "propose",
            "--profile",
            profile,
            "--grantee",
            "operator.health.concord",
            "--dataset",
            "insured",
            "--recipient",
            "researcher.health.concord",
            "--until",
            "2099-01-01",
            "--purpose",
            "claims by district",
            "--security-owner",
            "CISO, health",
            "--epsilon",
            "1",
            "--max-runs",
            "5",
        ];
        concord(&[&base[..], extra].concat())
    };
    // A scenario naming a restricted field exceeds the tier matrix.
    let out = propose(
        &[
            "--scope",
            "scenario",
            "--kind",
            "join",
            "--field",
            "nin",
            "--field",
            "diagnosis",
        ],
        &manager,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err
                .contains("field diagnosis is restricted: this node's policy allows no use of it"),
        "{err}"
    );
    // Operators hold grants; they do not grant.
    let out = propose(&[], &operator);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("grant.propose needs the role data-manager (you hold operator)")
    );

    // The trial config needs one approval: the proposer's.
    let out = propose(
        &[
            "--scope", "scenario", "--kind", "join", "--field", "nin", "--peer", "civil",
        ],
        &manager,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let id = text.split_whitespace().nth(1).unwrap().to_owned();
    assert!(
        id.starts_with("g-") && text.contains("active (1 of 1 approvals)"),
        "{text}"
    );
    assert!(
        text.contains("scenario insured (kinds join; fields nin; peers civil)"),
        "{text}"
    );
    assert!(
        text.contains("5 runs per month") && text.contains("ε 1 per month"),
        "{text}"
    );

    let list = ok(&["grant", "list", "--profile", &operator]);
    assert!(list.contains(&id) && list.contains("active"), "{list}");
    let again = fails(&["grant", "approve", "--profile", &manager, &id]);
    assert!(again.contains("has already approved grant"), "{again}");

    let classified = ok(&[
        "dataset",
        "classify",
        "--profile",
        &manager,
        "--id",
        "insured",
        "--column",
        "claims:restricted",
    ]);
    assert!(classified.contains("claims") && classified.contains("sensitive -> restricted"));
    let bad = fails(&[
        "dataset",
        "classify",
        "--profile",
        &manager,
        "--id",
        "insured",
        "--column",
        "ghost:public",
    ]);
    assert!(bad.contains("no column \"ghost\""), "{bad}");

    let revoked = ok(&[
        "grant",
        "revoke",
        "--profile",
        &manager,
        &id,
        "--reason",
        "study ended",
    ]);
    assert!(
        revoked.contains("revoked") && revoked.contains("study ended"),
        "{revoked}"
    );
    let shown: serde_json::Value = serde_json::from_str(&ok(&[
        "grant",
        "show",
        "--profile",
        &operator,
        &id,
        "--json",
    ]))
    .unwrap();
    assert_eq!(shown["status"], "revoked");
    assert_eq!(shown["revoked"]["by"], "manager.health.concord");
    health.stop();

    let log = audit_entries(&fed, "health");
    find(&log, "grant.propose", "accepted", &[("grant", &id)]);
    find(
        &log,
        "grant.propose",
        "refused",
        &[("detail", "diagnosis is restricted")],
    );
    find(
        &log,
        "grant.revoke",
        "accepted",
        &[("grant", &id), ("detail", "now revoked")],
    );
    find(
        &log,
        "dataset.classify",
        "accepted",
        &[("detail", "claims: sensitive -> restricted")],
    );
    find(&log, "budget.set", "accepted", &[("subjects", "insured")]);
    ok(&[
        "audit",
        "verify",
        "--db",
        &fed.path("health/data/node.sqlite"),
        "--public-key",
        &fed.path("health/audit.pub"),
    ]);
}
