//! Joint jobs between real node processes: PSI cardinality and intersection, a join-aggregate, a
//! DP query, the result reaching only its recipient, refusals at each party, and a peer killed
//! mid-job.

use std::time::{Duration, Instant};

use crate::support::{Fed, audit_entries, concord, fails, find, ok, spawn};

/// Writes a CSV of `nin,age,diagnosis` rows for keys `range`.
pub(crate) fn write_people(fed: &Fed, file: &str, range: std::ops::Range<u32>) -> String {
    let mut text = String::from("nin,age,diagnosis\n");
    for i in range {
        text.push_str(&format!("N{i:07},{},D{}\n", 20 + i % 60, i % 7));
    }
    let path = fed.root.join(file);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

pub(crate) fn register(fed: &Fed, node: &str, id: &str, file: &str) {
    ok(&[
        "dataset",
        "add",
        "--profile",
        &fed.path(&format!("{node}/manager.toml")),
        "--id",
        id,
        "--file",
        file,
        "--key-columns",
        "nin",
        "--column",
        "nin:text:internal",
        "--column",
        "age:integer:sensitive",
        "--column",
        "diagnosis:text:restricted",
    ]);
}

/// A yearly ε cap on `dataset` for everyone, and a grant to the health operator, set by the
/// node's data manager through the CLI.
pub(crate) fn set_budget(fed: &Fed, node: &str, dataset: &str, epsilon: u32) {
    let manager = fed.path(&format!("{node}/manager.toml"));
    let epsilon = epsilon.to_string();
    ok(&[
        "budget",
        "set",
        "--profile",
        &manager,
        "--dataset",
        dataset,
        "--everyone",
        "--epsilon",
        &epsilon,
        "--period",
        "year",
    ]);
    grant(fed, node, dataset);
}

/// An overall grant on `dataset` to the health operator, results to health's researcher or
/// operator, for 20 runs a day.
pub(crate) fn grant(fed: &Fed, node: &str, dataset: &str) {
    ok(&[
        "grant",
        "propose",
        "--profile",
        &fed.path(&format!("{node}/manager.toml")),
        "--grantee",
        "operator.health.concord",
        "--dataset",
        dataset,
        "--recipient",
        "researcher.health.concord",
        "--recipient",
        "operator.health.concord",
        "--until",
        "2099-01-01",
        "--purpose",
        "tests",
        "--security-owner",
        "tests",
        "--min-set-size",
        "1",
        "--max-runs",
        "20",
        "--runs-period",
        "day",
        "--epsilon",
        "10",
        "--budget-period",
        "month",
    ]);
}

/// Health's `patients` (keys `left`) and civil's `insured` (keys `right`), registered, with a
/// budget and a grant at each node.
fn patients_and_insured(fed: &Fed, left: std::ops::Range<u32>, right: std::ops::Range<u32>) {
    let patients = write_people(fed, "patients.csv", left);
    let insured = write_people(fed, "insured.csv", right);
    register(fed, "health", "patients", &patients);
    register(fed, "civil", "insured", &insured);
    set_budget(fed, "health", "patients", 10);
    set_budget(fed, "civil", "insured", 10);
}

/// `concord run psi --profile OPERATOR --kind KIND --left LEFT --right RIGHT`, then `extra`.
fn run_psi<'a>(
    operator: &'a str,
    kind: &'a str,
    left: &'a str,
    right: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "psi",
        "--profile",
        operator,
        "--kind",
        kind,
        "--left",
        left,
        "--right",
        right,
    ];
    args.extend_from_slice(extra);
    args
}

/// Submits a cardinality of patients × insured (ε = 1) without waiting; returns its id.
fn submit_cardinality(operator: &str) -> String {
    ok(&run_psi(
        operator,
        "cardinality",
        "health:patients:nin",
        "civil:insured:nin",
        &["--epsilon", "1", "--detach"],
    ))
    .trim()
    .to_owned()
}

/// Budget rows of a job at a node: (dataset, state).
pub(crate) fn budget_of(fed: &Fed, node: &str, job: &str) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(fed.path(&format!("{node}/data/node.sqlite"))).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut stmt = db
        .prepare("SELECT dataset, state FROM budget_entries WHERE job = ?1")
        .unwrap();
    stmt.query_map([job], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

pub(crate) fn job_id(stderr: &str) -> String {
    stderr
        .split_whitespace()
        .find(|w| w.starts_with("job-"))
        .unwrap_or_else(|| panic!("no job id in {stderr}"))
        .to_owned()
}

pub(crate) fn show(fed: &Fed, node: &str, who: &str, id: &str) -> serde_json::Value {
    let out = ok(&[
        "job",
        "show",
        "--profile",
        &fed.path(&format!("{node}/{who}.toml")),
        id,
        "--json",
    ]);
    serde_json::from_str(&out).unwrap()
}

pub(crate) fn verify_offline(fed: &Fed, node: &str) {
    let out = ok(&[
        "audit",
        "verify",
        "--db",
        &fed.path(&format!("{node}/data/node.sqlite")),
        "--public-key",
        &fed.path(&format!("{node}/audit.pub")),
    ]);
    assert!(out.contains("intact"), "{out}");
}

#[test]
fn psi_cardinality_intersection_and_query_reach_only_their_recipient() {
    let fed = Fed::init("health,civil");
    let health = fed.start("health");
    let civil = fed.start("civil");
    patients_and_insured(&fed, 0..200, 150..400);
    let operator = fed.path("health/operator.toml");
    let researcher = fed.path("health/researcher.toml");

    // Cardinality, DP-noised, for the researcher: the operator sees only that it was released.
    let out = concord(&run_psi(
        &operator,
        "cardinality",
        "health:patients:nin",
        "civil:insured:nin",
        &["--epsilon", "1", "--recipient", "researcher.health.concord"],
    ));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let id = job_id(&stderr);
    assert!(
        stdout.contains("the result is for researcher.health.concord only"),
        "{stdout}"
    );
    let result: serde_json::Value = serde_json::from_str(&ok(&[
        "job",
        "result",
        "--profile",
        &researcher,
        &id,
        "--json",
    ]))
    .unwrap();
    let value = &result["values"][0];
    let noised = value["value"].as_f64().unwrap();
    // 50 keys in common; discrete Laplace at ε = 1 has scale 1, so ±20 fails with p < 1e-8.
    assert!((noised - 50.0).abs() <= 20.0, "{result}");
    assert!(value["lower"].as_f64().unwrap() < noised && noised < value["upper"].as_f64().unwrap());
    assert_eq!(result["mechanism"], "discrete-laplace");
    assert_eq!(result["epsilon"], "1");
    assert_eq!(result["parties"], serde_json::json!(["health", "civil"]));
    // The table a researcher reads.
    let table = ok(&["job", "result", "--profile", &researcher, &id]);
    assert!(
        table.contains("cardinality") && table.contains("95% interval"),
        "{table}"
    );
    // Anyone else is refused, and so is the operator who submitted it.
    let err = fails(&["job", "result", "--profile", &operator, &id]);
    assert!(err.contains("PermissionDenied"), "{err}");
    assert!(
        err.contains("is for researcher.health.concord only"),
        "{err}"
    );
    // Both nodes committed their ε, and civil's row says it took part.
    assert_eq!(
        budget_of(&fed, "health", &id),
        [("patients".into(), "committed".into())]
    );
    assert_eq!(
        budget_of(&fed, "civil", &id),
        [("insured".into(), "committed".into())]
    );
    let at_civil = show(&fed, "civil", "auditor", &id);
    assert_eq!(at_civil["state"], "released");
    assert_eq!(at_civil["role"], "participant");

    // Intersection to the operator (the default recipient): the matching keys, as CSV.
    let out = ok(&run_psi(
        &operator,
        "intersection",
        "health:patients:nin",
        "civil:insured:nin",
        &["--csv"],
    ));
    // A header, then the keys as matched: `text` keys are case-folded.
    let keys: Vec<&str> = out.lines().collect();
    let expected: Vec<String> = std::iter::once("nin".to_owned())
        .chain((150..200).map(|i| format!("n{i:07}")))
        .collect();
    assert_eq!(keys, expected);

    // A DP count of one dataset.
    let out = ok(&[
        "run",
        "query",
        "--profile",
        &operator,
        "--dataset",
        "health:patients",
        "--statistic",
        "count",
        "--epsilon",
        "1",
        "--json",
    ]);
    let query: serde_json::Value = serde_json::from_str(&out).unwrap();
    let count = query["values"][0]["value"].as_f64().unwrap();
    assert!((count - 200.0).abs() <= 20.0, "{query}");
    let out = ok(&[
        "run",
        "query",
        "--profile",
        &operator,
        "--dataset",
        "health:patients",
        "--statistic",
        "histogram",
        "--column",
        "age",
        "--lo",
        "20",
        "--hi",
        "80",
        "--bins",
        "3",
        "--epsilon",
        "1",
    ]);
    assert!(
        out.contains("[20, 40)") && out.contains("[60, 80]"),
        "{out}"
    );

    let listing = ok(&["job", "list", "--profile", &operator]);
    assert_eq!(listing.matches("released").count(), 4, "{listing}");

    health.stop();
    civil.stop();
    for node in ["health", "civil"] {
        verify_offline(&fed, node);
    }
    let entries = audit_entries(&fed, "health");
    let release = find(&entries, "job.release", "accepted", &[("subjects", &id)]);
    assert_eq!(release["privacy_cost"], "ε=1");
    assert!(
        release["output_digest"]
            .as_str()
            .is_some_and(|d| d.len() == 64),
        "{release}"
    );
    find(
        &entries,
        "job.result",
        "refused",
        &[("actor", "operator.health.concord")],
    );
    let entries = audit_entries(&fed, "civil");
    find(
        &entries,
        "federation.propose",
        "accepted",
        &[("subjects", &id)],
    );
    let release = find(&entries, "job.release", "accepted", &[("subjects", &id)]);
    assert_eq!(release["privacy_cost"], "ε=1");
}

#[test]
fn a_refusal_at_either_party_fails_the_job_everywhere() {
    let fed = Fed::init("health,civil");
    let _health = fed.start("health");
    let _civil = fed.start("civil");
    let patients = write_people(&fed, "patients.csv", 0..50);
    let insured = write_people(&fed, "insured.csv", 25..75);
    register(&fed, "health", "patients", &patients);
    // Other files: the same ones would share the budgets of patients and insured.
    let visits = write_people(&fed, "visits.csv", 10..60);
    register(&fed, "health", "visits", &visits);
    register(&fed, "civil", "insured", &insured);
    let other = write_people(&fed, "other.csv", 30..60);
    register(&fed, "civil", "unbudgeted", &other);
    set_budget(&fed, "health", "patients", 10);
    set_budget(&fed, "civil", "insured", 10);
    // Granted, but without a budget cap.
    grant(&fed, "health", "visits");
    grant(&fed, "civil", "unbudgeted");
    let operator = fed.path("health/operator.toml");
    let psi = |left: &str, right: &str| {
        let out = concord(&run_psi(
            &operator,
            "cardinality",
            left,
            right,
            &["--epsilon", "1"],
        ));
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };

    // Civil refuses a restricted column: failed at health naming civil, and at civil.
    let err = psi("health:patients:nin", "civil:insured:diagnosis");
    let id = job_id(&err);
    assert!(err.contains(&format!("{id} failed at civil")), "{err}");
    assert!(err.contains("tier-violation"), "{err}");
    assert_eq!(show(&fed, "civil", "auditor", &id)["state"], "failed");
    assert_eq!(
        budget_of(&fed, "health", &id),
        [("patients".into(), "returned".into())]
    );
    assert!(budget_of(&fed, "civil", &id).is_empty());

    // Civil has no budget for this dataset.
    let err = psi("health:patients:nin", "civil:unbudgeted:nin");
    let no_budget_at_civil = job_id(&err);
    assert!(
        err.contains("failed at civil") && err.contains("no-budget"),
        "{err}"
    );

    // Health has no budget: it refuses before sending anything, so civil never hears of it.
    let err = psi("health:visits:nin", "civil:insured:nin");
    let no_budget_at_health = job_id(&err);
    assert!(
        err.contains("failed at health") && err.contains("no privacy budget"),
        "{err}"
    );
    let err = fails(&[
        "job",
        "show",
        "--profile",
        &fed.path("civil/auditor.toml"),
        &no_budget_at_health,
    ]);
    assert!(err.contains("NotFound"), "{err}");

    let health_log = ok(&[
        "audit",
        "show",
        "--profile",
        &fed.path("health/auditor.toml"),
        "--json",
    ]);
    let health_log: Vec<serde_json::Value> = serde_json::from_str(&health_log).unwrap();
    find(
        &health_log,
        "job.fail",
        "refused",
        &[("subjects", &id), ("detail", "civil")],
    );
    find(
        &health_log,
        "policy.admit",
        "refused",
        &[("detail", &no_budget_at_health), ("detail", "no-budget")],
    );
    let civil_log = ok(&[
        "audit",
        "show",
        "--profile",
        &fed.path("civil/auditor.toml"),
        "--json",
    ]);
    let civil_log: Vec<serde_json::Value> = serde_json::from_str(&civil_log).unwrap();
    find(
        &civil_log,
        "policy.admit",
        "refused",
        &[("detail", &id), ("detail", "tier-violation")],
    );
    find(
        &civil_log,
        "federation.propose",
        "refused",
        &[("subjects", &no_budget_at_civil)],
    );
    // Only the auditor's own lookup above mentions it.
    assert!(
        !civil_log
            .iter()
            .any(|e| e["action"] != "job.get" && e.to_string().contains(&no_budget_at_health))
    );
}

#[test]
fn a_peer_killed_mid_job_fails_it_at_the_coordinator_and_returns_the_budget() {
    let fed = Fed::init("health,civil");
    let health = fed.start("health");
    let civil = fed.start("civil");
    let n = 150_000;
    patients_and_insured(&fed, 0..n, n / 2..n + n / 2);
    let operator = fed.path("health/operator.toml");
    let id = submit_cardinality(&operator);

    let wait = |what: &str, done: &dyn Fn(&serde_json::Value) -> bool| {
        let start = Instant::now();
        loop {
            let job = show(&fed, "health", "operator", &id);
            if done(&job) {
                return job;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "never {what}: {job}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let started = Instant::now();
    wait("exchanging", &|j| j["phase"] == "exchanging");
    std::thread::sleep(Duration::from_millis(500));
    civil.kill();
    eprintln!("killed civil {:?} after submission", started.elapsed());
    let job = wait("failed", &|j| j["state"] != "running");
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["failed_at"], "civil", "{job}");
    eprintln!("{job}");
    assert!(job["reason"].as_str().unwrap().contains("civil"), "{job}");
    assert_eq!(
        budget_of(&fed, "health", &id),
        [("patients".into(), "returned".into())]
    );
    // Civil comes back: its job could not survive the kill, so it is failed and its budget back.
    let civil = fed.start("civil");
    let at_civil = show(&fed, "civil", "auditor", &id);
    assert_eq!(at_civil["state"], "failed", "{at_civil}");
    assert!(
        at_civil["reason"].as_str().unwrap().contains("restarted"),
        "{at_civil}"
    );
    assert_eq!(
        budget_of(&fed, "civil", &id),
        [("insured".into(), "returned".into())]
    );
    civil.stop();
    health.stop();
    verify_offline(&fed, "health");
    verify_offline(&fed, "civil");
    let entries = audit_entries(&fed, "health");
    find(
        &entries,
        "job.fail",
        "refused",
        &[("subjects", &id), ("detail", "civil")],
    );
    assert!(!entries.iter().any(|e| e["action"] == "job.release"));
}

#[test]
fn a_participant_watches_a_running_job_that_a_cancel_stops_at_both_parties() {
    let fed = Fed::init("health,civil");
    let _health = fed.start("health");
    let _civil = fed.start("civil");
    let n = 150_000;
    patients_and_insured(&fed, 0..n, n / 2..n + n / 2);
    let operator = fed.path("health/operator.toml");
    let id = submit_cardinality(&operator);
    let start = Instant::now();
    let auditor = fed.path("civil/auditor.toml");
    // Civil knows the job once it is proposed there.
    while !String::from_utf8_lossy(
        &concord(&["job", "show", "--profile", &auditor, &id, "--json"]).stdout,
    )
    .contains("\"phase\": \"exchanging\"")
    {
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Civil's operator follows civil's side of the job (the sender's progress), to its end.
    let civil_operator = fed.path("civil/operator.toml");
    let watch = spawn(&["job", "watch", "--profile", &civil_operator, &id]);
    let first = watch.line(Duration::from_secs(30));
    assert_eq!(
        first.as_deref(),
        Some(format!("{id}: running (exchanging)").as_str())
    );
    let out = ok(&["job", "cancel", "--profile", &operator, &id, "--json"]);
    let job: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(
        job["reason"]
            .as_str()
            .unwrap()
            .contains("cancelled by operator.health.concord")
    );
    // The participant hears of it and returns its reservation too.
    let start = Instant::now();
    loop {
        let at_civil = show(&fed, "civil", "auditor", &id);
        if at_civil["state"] == "cancelled" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{at_civil}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        budget_of(&fed, "health", &id),
        [("patients".into(), "returned".into())]
    );
    assert_eq!(
        budget_of(&fed, "civil", &id),
        [("insured".into(), "returned".into())]
    );
    let err = fails(&["job", "cancel", "--profile", &operator, &id]);
    assert!(err.contains("has already ended"), "{err}");
    let (succeeded, rest) = watch.finish(Duration::from_secs(30));
    assert!(!succeeded, "{rest}");
    assert!(
        rest.ends_with(&format!(
            "{id}: cancelled\nerror: {id} cancelled at health: cancelled by \
             operator.health.concord"
        )),
        "{rest}"
    );
}

#[test]
fn a_cancel_while_the_peer_decides_the_proposal_leaves_nothing_reserved_there() {
    let fed = Fed::init("health,civil");
    let _health = fed.start("health");
    let _civil = fed.start("civil");
    patients_and_insured(&fed, 0..1000, 500..1500);
    let operator = fed.path("health/operator.toml");
    // Civil decides slowly: its database is busy, so recording the proposal waits (the node
    // waits up to 10 s for a write lock).
    let civil_db = rusqlite::Connection::open(fed.path("civil/data/node.sqlite")).unwrap();
    civil_db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let id = submit_cardinality(&operator);
    let watch = spawn(&["job", "watch", "--profile", &operator, &id]);
    let proposing = format!("{id}: submitted (proposing)");
    while watch.line(Duration::from_secs(30)).expect("no proposal") != proposing {}
    // The proposal reaches civil and waits there; the operator cancels meanwhile.
    std::thread::sleep(Duration::from_millis(1000));
    let cancel = spawn(&["job", "cancel", "--profile", &operator, &id]);
    std::thread::sleep(Duration::from_millis(500));
    civil_db.execute_batch("COMMIT").unwrap();
    let (cancelled, out) = cancel.finish(Duration::from_secs(30));
    assert!(cancelled, "{out}");
    let (_, out) = watch.finish(Duration::from_secs(30));
    assert!(out.contains(&format!("{id} cancelled at health")), "{out}");
    assert_eq!(
        budget_of(&fed, "health", &id),
        [("patients".into(), "returned".into())]
    );
    // Civil has decided by now; the job is over there too, at once, with its budget back (not
    // after the 300 s the coordinator's silence would take). Had the proposal come after the
    // cancel, civil refuses it instead and never reserves.
    let auditor = fed.path("civil/auditor.toml");
    let at_civil = concord(&["job", "show", "--profile", &auditor, &id, "--json"]);
    if at_civil.status.success() {
        let job: serde_json::Value = serde_json::from_slice(&at_civil.stdout).unwrap();
        assert_eq!(job["state"], "cancelled", "{job}");
        // On a loaded machine the cancel (a new CLI process) can reach health only after civil
        // has decided: civil then ends the job on the coordinator's abort instead. Either way
        // the job is over there with its budget back.
        let reason = job["reason"].as_str().unwrap();
        assert!(
            reason.contains("ended by its coordinator while this node decided it")
                || reason.contains("cancelled by operator.health.concord"),
            "{job}"
        );
        assert_eq!(
            budget_of(&fed, "civil", &id),
            [("insured".into(), "returned".into())]
        );
    } else {
        eprintln!("the proposal reached civil after the cancel");
        assert!(budget_of(&fed, "civil", &id).is_empty());
    }
    drop(civil_db);
    verify_offline(&fed, "civil");
    verify_offline(&fed, "health");
}

#[test]
fn a_node_refuses_a_psi_over_its_key_limit_on_either_side() {
    let fed = Fed::init("health,civil");
    // Civil holds at most 600 keys a side.
    let config = fed.root.join("civil/node.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[limits]\nmax_keys = 600\n");
    std::fs::write(&config, text).unwrap();
    let _health = fed.start("health");
    let _civil = fed.start("civil");
    patients_and_insured(&fed, 0..1000, 500..1500);
    let small = write_people(&fed, "small.csv", 900..1400);
    register(&fed, "civil", "small", &small);
    set_budget(&fed, "civil", "small", 10);
    let operator = fed.path("health/operator.toml");
    let run = |right: &str| {
        fails(&run_psi(
            &operator,
            "cardinality",
            "health:patients:nin",
            right,
            &["--epsilon", "1"],
        ))
    };
    // Its own dataset is too large: refused at the proposal, before civil reserves anything.
    let err = run("civil:insured:nin");
    assert!(
        err.contains(
            "failed at civil: refused (too-large): dataset insured has 1000 rows, more \
             than the 600 a PSI, join or query may hold at this node"
        ),
        "{err}"
    );
    let id = job_id(&err);
    assert!(budget_of(&fed, "civil", &id).is_empty());
    assert_eq!(
        budget_of(&fed, "health", &id),
        [("patients".into(), "returned".into())]
    );
    // The peer's set is too large: refused when health announces its 1000 keys.
    let err = run("civil:small:nin");
    assert!(
        err.contains("failed at civil: ")
            && err.contains("the peer announced 1000 keys, more than the 600 this party accepts"),
        "{err}"
    );
    let id = job_id(&err);
    assert_eq!(
        budget_of(&fed, "civil", &id),
        [("small".into(), "returned".into())]
    );
}

/// Appends `[limits] keys_per_bucket = KEYS` to `node`'s configuration.
fn keys_per_bucket(fed: &Fed, node: &str, keys: u32) {
    let config = fed.root.join(format!("{node}/node.toml"));
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[limits]\nkeys_per_bucket = {keys}\n"));
    std::fs::write(&config, text).unwrap();
}

#[test]
fn a_psi_larger_than_a_bucket_runs_in_padded_hash_buckets_with_the_same_result() {
    let fed = Fed::init("health,civil");
    // Health needs 2 buckets for its 3,000 keys, civil 5 for its 3,500: both run civil's.
    keys_per_bucket(&fed, "health", 2048);
    keys_per_bucket(&fed, "civil", 1024);
    let health = fed.start("health");
    let civil = fed.start("civil");
    patients_and_insured(&fed, 0..3000, 1000..4500);
    let operator = fed.path("health/operator.toml");
    let expected: Vec<String> = (1000..3000).map(|i| format!("n{i:07}")).collect();
    for protocol in ["ecdh", "ot"] {
        let out = ok(&run_psi(
            &operator,
            "intersection",
            "health:patients:nin",
            "civil:insured:nin",
            &["--csv", "--protocol", protocol],
        ));
        let mut keys: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with('n') && *l != "nin")
            .map(str::to_owned)
            .collect();
        keys.sort();
        assert_eq!(keys, expected, "{protocol}");
    }
    // A cardinality in buckets too; each party's input is stated unpadded.
    let out = ok(&run_psi(
        &operator,
        "cardinality",
        "health:patients:nin",
        "civil:insured:nin",
        &["--epsilon", "1", "--json"],
    ));
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    let inputs = result["inputs"].as_array().unwrap();
    let distinct: Vec<u64> = inputs
        .iter()
        .map(|i| i["distinct_keys"].as_u64().unwrap())
        .collect();
    assert_eq!(distinct, [3000, 3500], "{result}");
    // Nothing is left in either node's spill directory.
    for node in ["health", "civil"] {
        let spill = fed.root.join(format!("{node}/data/spill"));
        let left = std::fs::read_dir(&spill).map_or(0, |d| d.count());
        assert_eq!(left, 0, "{}", spill.display());
    }
    health.stop();
    civil.stop();
    // The coordinator's audit says how many buckets, and that the peer's count is padded.
    let entries = audit_entries(&fed, "health");
    let released = find(
        &entries,
        "job.release",
        "accepted",
        &[("detail", "in 5 hash buckets")],
    );
    let detail = released["detail"].as_str().unwrap();
    let padded: u64 = detail
        .split("; ")
        .last()
        .and_then(|d| d.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{detail}"));
    assert!(padded > 3500 && padded < 5000, "{detail}");
}

#[test]
fn both_protocols_give_the_same_intersection_and_ot_refuses_a_cardinality() {
    let fed = Fed::init("health,civil");
    let _health = fed.start("health");
    let _civil = fed.start("civil");
    // 40,000 rows at health: an automatic intersection takes the OT mode (from 16,384 rows).
    // The 25,000 matching keys come back in two chunks.
    patients_and_insured(&fed, 0..40_000, 15_000..41_000);
    let operator = fed.path("health/operator.toml");
    let run = |protocol: &[&str]| {
        let extra = [&["--csv"], protocol].concat();
        let out = ok(&run_psi(
            &operator,
            "intersection",
            "health:patients:nin",
            "civil:insured:nin",
            &extra,
        ));
        let mut keys: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with('n') && *l != "nin")
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    };
    // The keys as matched (`text` keys are case-folded).
    let expected: Vec<String> = (15_000..40_000).map(|i| format!("n{i:07}")).collect();
    assert_eq!(run(&["--protocol", "ecdh"]), expected);
    assert_eq!(run(&["--protocol", "ot"]), expected);
    assert_eq!(run(&[]), expected);
    // The last job's result again, as JSON: the count and every key, in the dataset's order.
    let jobs = ok(&["job", "list", "--profile", &operator, "--json"]);
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    let last = jobs[0]["id"].as_str().unwrap();
    let out = ok(&[
        "job",
        "result",
        "--profile",
        &operator,
        last,
        "--json",
        "--original-keys",
    ]);
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["values"][0]["value"], 25_000.0);
    assert_eq!(
        result["key_header"],
        serde_json::json!(["nin", "nin (as in file)"])
    );
    let keys: Vec<(String, String)> = result["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k[0].as_str().unwrap().to_owned(),
                k[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let originals: Vec<String> = expected.iter().map(|k| k.to_uppercase()).collect();
    assert_eq!(
        keys.iter().map(|k| &k.0).collect::<Vec<_>>(),
        expected.iter().collect::<Vec<_>>()
    );
    assert_eq!(
        keys.iter().map(|k| &k.1).collect::<Vec<_>>(),
        originals.iter().collect::<Vec<_>>()
    );

    let err = fails(&run_psi(
        &operator,
        "cardinality",
        "health:patients:nin",
        "civil:insured:nin",
        &["--epsilon", "1", "--protocol", "ot"],
    ));
    assert!(err.contains("cannot give a cardinality alone"), "{err}");
}

/// Health's `visits` (`nin,cost,region`, keys 0..200, one row per key plus a second visit for
/// keys divisible by 10 and one null cost), registered with a budget and a grant.
fn visits(fed: &Fed) -> (Vec<i64>, Vec<i64>) {
    let mut text = String::from("nin,cost,region\n");
    // Exact figures over keys 100..200 (civil's overlap), by region: (count, sum).
    let (mut count, mut sum) = (vec![0i64; 2], vec![0i64; 2]);
    for i in 0..200u32 {
        let region = usize::from(i % 2 == 1);
        let name = ["north", "south"][region];
        let cost = i64::from(i % 90);
        text.push_str(&format!("N{i:07},{cost},{name}\n"));
        let mut total = cost;
        if i % 10 == 0 {
            text.push_str(&format!("N{i:07},40,{name}\n"));
            total += 40;
        }
        if i >= 100 {
            count[region] += 1;
            sum[region] += total.min(100);
        }
    }
    text.push_str("N9999999,,north\n");
    let path = fed.root.join("visits.csv");
    std::fs::write(&path, text).unwrap();
    ok(&[
        "dataset",
        "add",
        "--profile",
        &fed.path("health/manager.toml"),
        "--id",
        "visits",
        "--file",
        path.to_str().unwrap(),
        "--key-columns",
        "nin",
        "--column",
        "nin:text:internal",
        "--column",
        "cost:integer:sensitive:nullable",
        "--column",
        "region:text:internal",
    ]);
    set_budget(fed, "health", "visits", 20);
    (count, sum)
}

#[test]
fn a_join_releases_noised_counts_and_sums_by_group_to_its_recipient() {
    let fed = Fed::init("health,civil");
    let health = fed.start("health");
    let civil = fed.start("civil");
    let (count, sum) = visits(&fed);
    let insured = write_people(&fed, "insured.csv", 100..300);
    register(&fed, "civil", "insured", &insured);
    set_budget(&fed, "civil", "insured", 20);
    let operator = fed.path("health/operator.toml");
    let join = |epsilon: &str, keys: &str| {
        concord(&[
            "run",
            "join",
            "--profile",
            &operator,
            "--values",
            "health:visits:nin:cost:0:100",
            "--keys",
            keys,
            "--group-by",
            "region",
            "--categories",
            "north,south",
            "--epsilon",
            epsilon,
            "--recipient",
            "researcher.health.concord",
        ])
    };

    let out = join("8", "civil:insured:nin");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let id = job_id(&stderr);
    let result: serde_json::Value = serde_json::from_str(&ok(&[
        "job",
        "result",
        "--profile",
        &fed.path("health/researcher.toml"),
        &id,
        "--json",
    ]))
    .unwrap();
    let all = result["values"].as_array().unwrap();
    let labels: Vec<&str> = all.iter().map(|v| v["label"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "count (north)",
            "sum (north)",
            "mean (north)",
            "count (south)",
            "sum (south)",
            "mean (south)"
        ]
    );
    // The mean is the ratio of the two noised figures, without an interval.
    for m in [2, 5] {
        let ratio = all[m - 1]["value"].as_f64().unwrap() / all[m - 2]["value"].as_f64().unwrap();
        assert!(
            (all[m]["value"].as_f64().unwrap() - ratio).abs() < 1e-9,
            "{}",
            all[m]
        );
        assert!(all[m].get("lower").is_none_or(serde_json::Value::is_null));
    }
    let values: Vec<&serde_json::Value> = [0, 1, 3, 4].iter().map(|&i| &all[i]).collect();
    let exact = [count[0], sum[0], count[1], sum[1]];
    for (v, exact) in values.iter().zip(exact) {
        let (value, lower, upper) = (
            v["value"].as_f64().unwrap(),
            v["lower"].as_f64().unwrap(),
            v["upper"].as_f64().unwrap(),
        );
        assert!(lower < value && value < upper, "{v}");
        // ε = 8: count scale 0.25, sum scale 25; ±12 scales fails with p < 1e-5.
        let scale = if v["label"].as_str().unwrap().starts_with("count") {
            0.25
        } else {
            25.0
        };
        assert!(
            (value - exact as f64).abs() <= 12.0 * scale,
            "{v} vs {exact}"
        );
    }
    assert_eq!(result["epsilon"], "8");
    assert_eq!(result["parties"], serde_json::json!(["health", "civil"]));
    assert_eq!(
        budget_of(&fed, "health", &id),
        [("visits".into(), "committed".into())]
    );
    assert_eq!(
        budget_of(&fed, "civil", &id),
        [("insured".into(), "committed".into())]
    );

    // Civil refuses a restricted key column: failed at both, health's budget returned.
    let out = join("1", "civil:insured:diagnosis");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let refused = job_id(&stderr);
    assert!(
        stderr.contains("failed at civil") && stderr.contains("tier-violation"),
        "{stderr}"
    );
    assert_eq!(show(&fed, "civil", "auditor", &refused)["state"], "failed");
    assert_eq!(
        budget_of(&fed, "health", &refused),
        [("visits".into(), "returned".into())]
    );

    health.stop();
    civil.stop();
    for node in ["health", "civil"] {
        verify_offline(&fed, node);
    }
    let entries = audit_entries(&fed, "health");
    let release = find(&entries, "job.release", "accepted", &[("subjects", &id)]);
    assert_eq!(release["privacy_cost"], "ε=8");
    find(
        &entries,
        "policy.admit",
        "accepted",
        &[
            ("subjects", "visits.cost:dp-value"),
            ("subjects", "visits.region:dp-group"),
        ],
    );
    let entries = audit_entries(&fed, "civil");
    let release = find(&entries, "job.release", "accepted", &[("subjects", &id)]);
    assert_eq!(release["privacy_cost"], "ε=8");
}

/// `concord run query --statistic count` on health's `dataset` at `epsilon`, as its operator.
fn count_query(fed: &Fed, dataset: &str, epsilon: &str) -> std::process::Output {
    concord(&[
        "run",
        "query",
        "--profile",
        &fed.path("health/operator.toml"),
        "--dataset",
        &format!("health:{dataset}"),
        "--statistic",
        "count",
        "--epsilon",
        epsilon,
        "--json",
    ])
}

/// ε is an exact decimal from the command line to the ledger: ten queries of 0.1 fit a cap of 1
/// exactly, the eleventh is refused, and the ledger shows 1 spent, not 1.000000000000000060.
#[test]
fn ten_releases_of_a_tenth_spend_exactly_one() {
    let fed = Fed::init("health,civil");
    let _health = fed.start("health");
    let patients = write_people(&fed, "patients.csv", 0..100);
    register(&fed, "health", "patients", &patients);
    set_budget(&fed, "health", "patients", 1);
    let query = || count_query(&fed, "patients", "0.1");
    for run in 1..=10 {
        let out = query();
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["epsilon"], "0.1");
    }
    let out = query();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("budget-exhausted"),
        "{err}"
    );
    let caps: serde_json::Value = serde_json::from_str(&ok(&[
        "budget",
        "show",
        "--profile",
        &fed.path("health/manager.toml"),
        "--dataset",
        "patients",
        "--json",
    ]))
    .unwrap();
    assert_eq!(caps[0]["spent"]["epsilon"], "1", "{caps}");
    assert_eq!(caps[0]["remaining"]["epsilon"], "0", "{caps}");
    assert_eq!(caps[0]["reserved"]["epsilon"], "0", "{caps}");
}

/// Budgets belong to data: the same file registered under a second id spends the first one's
/// budget, so a new id buys no fresh budget.
#[test]
fn the_same_file_under_a_second_id_shares_its_budget() {
    let fed = Fed::init("health,civil");
    let _health = fed.start("health");
    let patients = write_people(&fed, "patients.csv", 0..100);
    register(&fed, "health", "patients", &patients);
    set_budget(&fed, "health", "patients", 1);
    register(&fed, "health", "patients-again", &patients);
    grant(&fed, "health", "patients-again");
    let query = |dataset: &str| count_query(&fed, dataset, "0.6");
    let first = query("patients");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // Under its second id the file has only what is left of its budget: 0.4.
    let again = query("patients-again");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "a second id bought a fresh budget");
    assert!(
        err.contains("budget-exhausted") && err.contains("ε=0.4 left"),
        "{err}"
    );
    let caps: serde_json::Value = serde_json::from_str(&ok(&[
        "budget",
        "show",
        "--profile",
        &fed.path("health/manager.toml"),
        "--dataset",
        "patients-again",
        "--json",
    ]))
    .unwrap();
    assert_eq!(caps[0]["dataset"], "patients", "{caps}");
    assert_eq!(caps[0]["spent"]["epsilon"], "0.6", "{caps}");
}

/// One person in three datasets of one population is charged against one population budget
/// that sees all three, on top of each dataset's own cap.
#[test]
fn a_population_cap_bounds_jobs_across_its_datasets() {
    let fed = Fed::init("health,civil");
    let _health = fed.start("health");
    let manager = fed.path("health/manager.toml");
    for (id, range) in [("visits", 0..100), ("claims", 50..150), ("stays", 20..120)] {
        let file = write_people(&fed, &format!("{id}.csv"), range);
        ok(&[
            "dataset",
            "add",
            "--profile",
            &manager,
            "--id",
            id,
            "--file",
            &file,
            "--key-columns",
            "nin",
            "--population",
            "residents",
            "--column",
            "nin:text:internal",
            "--column",
            "age:integer:sensitive",
            "--column",
            "diagnosis:text:restricted",
        ]);
        set_budget(&fed, "health", id, 10);
    }
    let set = ok(&[
        "budget",
        "set",
        "--profile",
        &manager,
        "--population",
        "residents",
        "--everyone",
        "--epsilon",
        "1",
        "--period",
        "year",
    ]);
    assert!(set.contains("ε 1"), "{set}");
    let query = |dataset: &str| count_query(&fed, dataset, "0.4");
    for dataset in ["visits", "claims"] {
        let out = query(dataset);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each dataset has 9.6 of its own 10 left, but the population only 0.2.
    let out = query("stays");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the population cap did not hold");
    assert!(
        err.contains("budget-exhausted") && err.contains("population residents (everyone)"),
        "{err}"
    );
    assert!(err.contains("ε=0.2 left"), "{err}");
    let caps: serde_json::Value = serde_json::from_str(&ok(&[
        "budget",
        "show",
        "--profile",
        &manager,
        "--population",
        "residents",
        "--json",
    ]))
    .unwrap();
    assert_eq!(caps[0]["spent"]["epsilon"], "0.8", "{caps}");
    let listed = ok(&["dataset", "list", "--profile", &manager]);
    assert_eq!(
        listed.matches("population: residents").count(),
        3,
        "{listed}"
    );
}

/// A joint DP release protects one key: on a dataset whose person is another column (a
/// household), it would protect less than its data managers set, so it is refused there.
#[test]
fn a_joint_release_is_refused_where_a_person_is_not_a_key() {
    let fed = Fed::init("health,civil");
    let _health = fed.start("health");
    let _civil = fed.start("civil");
    let patients = write_people(&fed, "patients.csv", 0..50);
    register(&fed, "health", "patients", &patients);
    set_budget(&fed, "health", "patients", 10);
    let insured = write_people(&fed, "insured.csv", 25..75);
    ok(&[
        "dataset",
        "add",
        "--profile",
        &fed.path("civil/manager.toml"),
        "--id",
        "insured",
        "--file",
        &insured,
        "--key-columns",
        "nin",
        "--privacy-unit",
        "diagnosis",
        "--column",
        "nin:text:internal",
        "--column",
        "age:integer:sensitive",
        "--column",
        "diagnosis:text:restricted",
    ]);
    set_budget(&fed, "civil", "insured", 10);
    let err = fails(&run_psi(
        &fed.path("health/operator.toml"),
        "cardinality",
        "health:patients:nin",
        "civil:insured:nin",
        &["--epsilon", "1"],
    ));
    assert!(
        err.contains("failed at civil: refused (privacy-unit)"),
        "{err}"
    );
    let id = job_id(&err);
    assert!(budget_of(&fed, "civil", &id).is_empty(), "{err}");
}
