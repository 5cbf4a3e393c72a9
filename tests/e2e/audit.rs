//! `concord audit verify` against a node's database edited directly in SQLite.

use crate::support::{Fed, concord, ok};

/// A federation whose health node has served a few requests and stopped.
fn used_federation() -> Fed {
    let fed = Fed::init("health,civil");
    let node = fed.start("health");
    for profile in ["manager", "operator", "auditor"] {
        ok(&[
            "node",
            "health",
            "--profile",
            &fed.path(&format!("health/{profile}.toml")),
        ]);
    }
    let online = ok(&[
        "audit",
        "verify",
        "--profile",
        &fed.path("health/auditor.toml"),
    ]);
    assert!(
        online.starts_with("audit log intact: 4 entries"),
        "{online}"
    );
    let shown = ok(&[
        "audit",
        "show",
        "--profile",
        &fed.path("health/manager.toml"),
        "--json",
    ]);
    let shown: Vec<serde_json::Value> = serde_json::from_str(&shown).unwrap();
    let actions: Vec<&str> = shown
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "node.start",
            "node.health",
            "node.health",
            "node.health",
            "audit.verify"
        ]
    );
    node.stop();
    fed
}

/// Copies the database, applies `sql` to the copy, and runs `audit verify` on it.
fn verify_after(fed: &Fed, name: &str, sql: &str) -> (bool, String) {
    let db = fed.root.join(format!("{name}.sqlite"));
    std::fs::copy(fed.root.join("health/data/node.sqlite"), &db).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    let out = concord(&[
        "audit",
        "verify",
        "--db",
        db.to_str().unwrap(),
        "--public-key",
        &fed.path("health/audit.pub"),
    ]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn verify_reports_edits_deletions_reorderings_and_truncation() {
    let fed = used_federation();
    // Entries: 1 node.start, 2-4 node.health, 5 audit.verify, 6 audit.show, 7 node.stop.
    let (intact, out) = verify_after(&fed, "untouched", "");
    assert!(intact, "{out}");
    assert!(
        out.starts_with("audit log intact: 7 entries, head 7"),
        "{out}"
    );

    let (intact, out) = verify_after(
        &fed,
        "edited",
        "UPDATE audit_log SET detail = 'nothing to see' WHERE seq = 3",
    );
    assert!(!intact);
    assert!(out.contains("- entry 3 was edited"), "{out}");

    let (intact, out) = verify_after(&fed, "deleted", "DELETE FROM audit_log WHERE seq = 3");
    assert!(!intact);
    assert!(
        out.contains("- entries 3..4 are missing (deleted)"),
        "{out}"
    );
    assert!(
        out.contains("- entry 4 does not follow the entry before it"),
        "{out}"
    );

    // Swap the contents of entries 2 and 3 (their sequence numbers stay in place).
    let (intact, out) = verify_after(
        &fed,
        "reordered",
        "UPDATE audit_log SET seq = -2 WHERE seq = 2;
         UPDATE audit_log SET seq = 2 WHERE seq = 3;
         UPDATE audit_log SET seq = 3 WHERE seq = -2;",
    );
    assert!(!intact);
    assert!(
        out.contains("- entry 2 does not follow the entry before it"),
        "{out}"
    );
    assert!(
        out.contains("- entry 3 does not follow the entry before it"),
        "{out}"
    );

    let (intact, out) = verify_after(&fed, "truncated", "DELETE FROM audit_log WHERE seq >= 6");
    assert!(!intact);
    assert!(
        out.contains("- the signed head names entry 7 but the log ends at 5"),
        "{out}"
    );

    // A wrong public key: every signature check fails.
    let other = Fed::init("health,civil");
    let out = concord(&[
        "audit",
        "verify",
        "--db",
        &fed.path("health/data/node.sqlite"),
        "--public-key",
        &other.path("health/audit.pub"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("- the head signature does not verify"));
}
