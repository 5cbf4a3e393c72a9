//! `concord demo` end to end on a small population: every step through real node processes.

use crate::support::ok;

#[test]
fn the_demo_runs_end_to_end_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("kept");
    let out = ok(&["demo", "--people", "3000", "--keep", keep.to_str().unwrap()]);
    for step in [
        "== 1.",
        "== 2.",
        "== 3.",
        "== 4.",
        "== 5.",
        "== 6.",
        "== done in",
        "cardinality ",
        "matching resident IDs delivered",
        "mean ",
        "count (north)",
        "sum (hills)",
        "true values (count / sum): north",
        "contributors",
        "true values: north",
        "refused: error: job-",
        "failed at stats: refused (tier-violation)",
    ] {
        assert!(out.contains(step), "{step} missing from:\n{out}");
    }
    assert_eq!(out.matches("audit log intact").count(), 3, "{out}");
    assert_eq!(out.matches("active (1 of 1 approvals)").count(), 3, "{out}");
    // The intersection is exact: the count delivered equals the truth the demo printed.
    let line = out
        .lines()
        .find(|l| l.contains("matching resident IDs"))
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], words[6].trim_end_matches(");"), "{line}");
    assert!(keep.join("fed/health/data/node.sqlite").exists());
    assert!(keep.join("data/insured.csv").exists());
}
