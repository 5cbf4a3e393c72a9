//! Aggregates across three real node processes: a count and a sum by secure aggregation reach
//! only their recipient, a refusal at one contributor fails the job everywhere, and a
//! contributor killed mid-job fails it with every reservation returned.

use std::time::{Duration, Instant};

use crate::jobs::{budget_of, job_id, register, set_budget, show, verify_offline, write_people};
use crate::support::{Fed, audit_entries, concord, find, ok};

/// health `patients` (keys 0..200), civil `insured` (1000..1300), stats `census` (5000..5100),
/// registered; with a budget and a grant at each node unless `ungranted` names it.
fn three_datasets(fed: &Fed, ungranted: Option<&str>) {
    for (node, id, range) in [
        ("health", "patients", 0..200),
        ("civil", "insured", 1000..1300),
        ("stats", "census", 5000..5100),
    ] {
        let file = write_people(fed, &format!("{id}.csv"), range);
        register(fed, node, id, &file);
        if ungranted != Some(node) {
            set_budget(fed, node, id, 10);
        }
    }
}

/// The ages `write_people` writes for `range`.
fn ages(range: std::ops::Range<u32>) -> i64 {
    range.map(|i| i64::from(20 + i % 60)).sum()
}

fn aggregate(operator: &str, extra: &[&str]) -> std::process::Output {
    let base = ["run", "aggregate", "--profile", operator];
    concord(&[&base[..], extra].concat())
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "never {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn aggregate_count_and_sum_across_three_nodes_reach_only_their_recipient() {
    let fed = Fed::init("health,civil,stats");
    let nodes = [fed.start("health"), fed.start("civil"), fed.start("stats")];
    three_datasets(&fed, None);
    let operator = fed.path("health/operator.toml");
    let researcher = fed.path("health/researcher.toml");

    // A sum of ages over all three nodes, health contributing too, for the researcher.
    let out = aggregate(
        &operator,
        &[
            "--statistic",
            "sum",
            "--dataset",
            "health:patients:age",
            "--dataset",
            "civil:insured:age",
            "--dataset",
            "stats:census:age",
            "--lo",
            "0",
            "--hi",
            "100",
            "--epsilon",
            "5",
            "--recipient",
            "researcher.health.concord",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let id = job_id(&stderr);
    let result: serde_json::Value = serde_json::from_str(&ok(&[
        "job",
        "result",
        "--profile",
        &researcher,
        &id,
        "--json",
    ]))
    .unwrap();
    let truth = (ages(0..200) + ages(1000..1300) + ages(5000..5100)) as f64;
    let v = &result["values"][0];
    let (value, lower, upper) = (
        v["value"].as_f64().unwrap(),
        v["lower"].as_f64().unwrap(),
        v["upper"].as_f64().unwrap(),
    );
    assert!(lower < value && value < upper, "{result}");
    // Scale Δ/ε = 100/5 = 20: outside the interval by 10 scales has probability < 10^-5.
    assert!(
        lower - 200.0 <= truth && truth <= upper + 200.0,
        "{truth} {result}"
    );
    assert_eq!(v["label"], "sum");
    assert_eq!(result["epsilon"], "5");
    assert_eq!(
        result["contributors"],
        serde_json::json!(["health", "civil", "stats"])
    );
    assert_eq!(
        result["parties"],
        serde_json::json!(["health", "civil", "stats"])
    );
    assert!(
        result["mechanism"]
            .as_str()
            .unwrap()
            .contains("discrete-laplace")
    );
    // The operator who submitted it cannot read it.
    let err = concord(&["job", "result", "--profile", &operator, &id]);
    assert!(!err.status.success());
    for (node, dataset) in [
        ("health", "patients"),
        ("civil", "insured"),
        ("stats", "census"),
    ] {
        assert_eq!(
            budget_of(&fed, node, &id),
            [(dataset.into(), "committed".into())],
            "{node}"
        );
        assert_eq!(
            show(&fed, node, "auditor", &id)["state"],
            "released",
            "{node}"
        );
    }

    // A count at civil and stats only: health coordinates and aggregates without a dataset.
    let out = ok(&[
        "run",
        "aggregate",
        "--profile",
        &operator,
        "--statistic",
        "count",
        "--dataset",
        "civil:insured",
        "--dataset",
        "stats:census",
        "--epsilon",
        "2",
        "--json",
    ]);
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    let v = &result["values"][0];
    let (lower, upper) = (v["lower"].as_f64().unwrap(), v["upper"].as_f64().unwrap());
    // Scale 1/2: 10 beyond the interval is 20 scales.
    assert!(lower - 10.0 <= 400.0 && 400.0 <= upper + 10.0, "{result}");
    assert_eq!(
        result["contributors"],
        serde_json::json!(["civil", "stats"])
    );
    let count_id = result["job"].as_str().unwrap().to_owned();
    assert!(budget_of(&fed, "health", &count_id).is_empty());
    assert_eq!(
        budget_of(&fed, "civil", &count_id),
        [("insured".into(), "committed".into())]
    );

    for node in nodes {
        node.stop();
    }
    for node in ["health", "civil", "stats"] {
        verify_offline(&fed, node);
        let entries = audit_entries(&fed, node);
        find(&entries, "job.commit", "accepted", &[("subjects", &id)]);
        let release = find(&entries, "job.release", "accepted", &[("subjects", &id)]);
        assert_eq!(release["privacy_cost"], "ε=5", "{node}");
    }
}

#[test]
fn a_refusal_at_one_contributor_fails_the_aggregate_everywhere() {
    let fed = Fed::init("health,civil,stats");
    let _nodes = [fed.start("health"), fed.start("civil"), fed.start("stats")];
    // Stats registers its dataset but grants nothing.
    three_datasets(&fed, Some("stats"));
    let operator = fed.path("health/operator.toml");
    let out = aggregate(
        &operator,
        &[
            "--statistic",
            "count",
            "--dataset",
            "health:patients",
            "--dataset",
            "civil:insured",
            "--dataset",
            "stats:census",
            "--epsilon",
            "1",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let id = job_id(&err);
    assert!(err.contains(&format!("{id} failed at stats")), "{err}");
    assert!(err.contains("refused"), "{err}");

    // Civil had accepted and reserved: it hears of the refusal and returns its budget.
    wait_for("failed at civil", || {
        show(&fed, "civil", "auditor", &id)["state"] == "failed"
    });
    let at_civil = show(&fed, "civil", "auditor", &id);
    assert_eq!(at_civil["failed_at"], "stats", "{at_civil}");
    assert_eq!(
        budget_of(&fed, "civil", &id),
        [("insured".into(), "returned".into())]
    );
    assert_eq!(
        budget_of(&fed, "health", &id),
        [("patients".into(), "returned".into())]
    );
    assert!(budget_of(&fed, "stats", &id).is_empty());
    assert_eq!(show(&fed, "stats", "auditor", &id)["state"], "failed");
    let err = concord(&[
        "job",
        "result",
        "--profile",
        &fed.path("health/researcher.toml"),
        &id,
    ]);
    assert!(!err.status.success());

    let log = |node: &str| -> Vec<serde_json::Value> {
        let out = ok(&[
            "audit",
            "show",
            "--profile",
            &fed.path(&format!("{node}/auditor.toml")),
            "--json",
        ]);
        serde_json::from_str(&out).unwrap()
    };
    find(
        &log("health"),
        "job.fail",
        "refused",
        &[("subjects", &id), ("detail", "stats")],
    );
    find(
        &log("civil"),
        "job.fail",
        "refused",
        &[("subjects", &id), ("detail", "reserved budget returned")],
    );
    find(&log("stats"), "policy.admit", "refused", &[("detail", &id)]);
    assert!(
        !log("health")
            .iter()
            .any(|e| e["action"] == "job.release" && e.to_string().contains(&id))
    );
}

#[test]
fn a_contributor_killed_mid_job_fails_the_aggregate_and_every_reservation_returns() {
    let fed = Fed::init("health,civil,stats");
    let health = fed.start("health");
    let civil = fed.start("civil");
    let stats = fed.start("stats");
    three_datasets(&fed, None);
    let operator = fed.path("health/operator.toml");

    // Civil hangs (stopped), so the job waits on its proposal after stats has accepted,
    // opened its exchange and started; then civil dies.
    civil.signal("STOP");
    let id = ok(&[
        "run",
        "aggregate",
        "--profile",
        &operator,
        "--statistic",
        "count",
        "--dataset",
        "health:patients",
        "--dataset",
        "stats:census",
        "--dataset",
        "civil:insured",
        "--epsilon",
        "1",
        "--detach",
    ])
    .trim()
    .to_owned();
    wait_for("running at stats", || {
        let job = concord(&[
            "job",
            "show",
            "--profile",
            &fed.path("stats/auditor.toml"),
            &id,
            "--json",
        ]);
        job.status.success()
            && serde_json::from_slice::<serde_json::Value>(&job.stdout).unwrap()["state"]
                == "running"
    });
    assert_eq!(show(&fed, "health", "operator", &id)["phase"], "proposing");
    civil.kill();

    wait_for("failed at health", || {
        show(&fed, "health", "operator", &id)["state"] == "failed"
    });
    let job = show(&fed, "health", "operator", &id);
    assert_eq!(job["failed_at"], "civil", "{job}");
    wait_for("failed at stats", || {
        show(&fed, "stats", "auditor", &id)["state"] == "failed"
    });
    assert_eq!(
        budget_of(&fed, "health", &id),
        [("patients".into(), "returned".into())]
    );
    assert_eq!(
        budget_of(&fed, "stats", &id),
        [("census".into(), "returned".into())]
    );
    // Civil never got to read the proposal.
    let civil = fed.start("civil");
    let unknown = concord(&[
        "job",
        "show",
        "--profile",
        &fed.path("civil/auditor.toml"),
        &id,
    ]);
    assert!(!unknown.status.success());
    assert!(budget_of(&fed, "civil", &id).is_empty());

    civil.stop();
    stats.stop();
    health.stop();
    for node in ["health", "civil", "stats"] {
        verify_offline(&fed, node);
    }
    let entries = audit_entries(&fed, "health");
    find(
        &entries,
        "job.fail",
        "refused",
        &[("subjects", &id), ("detail", "civil")],
    );
    let entries = audit_entries(&fed, "stats");
    find(
        &entries,
        "job.fail",
        "refused",
        &[("subjects", &id), ("detail", "reserved budget returned")],
    );
}

#[test]
fn a_contributor_that_dies_after_advertising_is_left_out_and_the_rest_release() {
    let fed = Fed::init("health,civil,stats");
    let health = fed.start("health");
    let civil = fed.start("civil");
    let stats = fed.start("stats");
    three_datasets(&fed, None);
    let operator = fed.path("health/operator.toml");
    let phase = |node: &str, id: &str| {
        let job = concord(&[
            "job",
            "show",
            "--profile",
            &fed.path(&format!("{node}/auditor.toml")),
            id,
            "--json",
        ]);
        if !job.status.success() {
            return String::new();
        }
        let job: serde_json::Value = serde_json::from_slice(&job.stdout).unwrap();
        job["phase"].as_str().unwrap_or_default().to_owned()
    };

    // Stats hangs on its proposal while civil accepts and advertises its keys; then civil
    // freezes, stats resumes, and civil dies before it has sent its shares.
    stats.signal("STOP");
    let id = ok(&[
        "run",
        "aggregate",
        "--profile",
        &operator,
        "--statistic",
        "count",
        "--dataset",
        "health:patients",
        "--dataset",
        "civil:insured",
        "--dataset",
        "stats:census",
        "--epsilon",
        "2",
        "--detach",
    ])
    .trim()
    .to_owned();
    wait_for("civil advertising", || phase("civil", &id) == "advertising");
    std::thread::sleep(Duration::from_millis(500));
    civil.signal("STOP");
    stats.signal("CONT");
    wait_for("sharing at health", || phase("health", &id) == "sharing");
    civil.kill();

    wait_for("released at health", || {
        show(&fed, "health", "operator", &id)["state"] != "running"
    });
    let job = show(&fed, "health", "operator", &id);
    assert_eq!(job["state"], "released", "{job}");
    let result: serde_json::Value = serde_json::from_str(&ok(&[
        "job",
        "result",
        "--profile",
        &operator,
        &id,
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        result["contributors"],
        serde_json::json!(["health", "stats"])
    );
    let v = &result["values"][0];
    let (lower, upper) = (v["lower"].as_f64().unwrap(), v["upper"].as_f64().unwrap());
    // 200 + 100 rows; civil's 300 are not in the sum. Scale 1/2: 10 beyond is 20 scales.
    assert!(lower - 10.0 <= 300.0 && 300.0 <= upper + 10.0, "{result}");
    assert_eq!(
        budget_of(&fed, "stats", &id),
        [("census".into(), "committed".into())]
    );
    // Civil comes back: it had only reserved, so its budget returns.
    let civil = fed.start("civil");
    let at_civil = show(&fed, "civil", "auditor", &id);
    assert_eq!(at_civil["state"], "failed", "{at_civil}");
    assert_eq!(
        budget_of(&fed, "civil", &id),
        [("insured".into(), "returned".into())]
    );
    civil.stop();
    stats.stop();
    health.stop();
    for node in ["health", "civil", "stats"] {
        verify_offline(&fed, node);
    }
    let entries = audit_entries(&fed, "health");
    let release = find(&entries, "job.release", "accepted", &[("subjects", &id)]);
    assert!(
        release["detail"]
            .as_str()
            .unwrap()
            .contains("dropped out: civil"),
        "{release}"
    );
}

#[test]
fn a_peer_without_an_identity_key_in_the_config_is_a_clear_error() {
    let fed = Fed::init("health,civil");
    let config = fed.root.join("health/node.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("secagg_key"))
        .collect();
    std::fs::write(&config, kept.join("\n")).unwrap();
    let _health = fed.start("health");
    let out = aggregate(
        &fed.path("health/operator.toml"),
        &[
            "--statistic",
            "count",
            "--dataset",
            "health:patients",
            "--dataset",
            "civil:insured",
            "--epsilon",
            "1",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no secure-aggregation key for peer civil"),
        "{err}"
    );
}
