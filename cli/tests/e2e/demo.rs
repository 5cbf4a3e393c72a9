//! `concord demo` end to end on a small population: every step through real node processes.

use crate::support::ok;

#[test]
fn the_demo_runs_end_to_end_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("kept");
    let out = ok(&["demo", "--people", "3000", "--keep", keep.to_str().unwrap()]);
    for step in ["== 1.", "== 2.", "== 3.", "== 4.", "== 5.", "== done in"] {
        assert!(out.contains(step), "{step} missing from:\n{out}");
    }
    assert_eq!(out.matches("audit log intact").count(), 3, "{out}");
    assert_eq!(out.matches("active (1 of 1 approvals)").count(), 3, "{out}");
    assert!(keep.join("fed/health/data/node.sqlite").exists());
    assert!(keep.join("data/insured.csv").exists());
}
