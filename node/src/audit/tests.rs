//! The audit log against direct tampering with its SQLite rows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::*;
use crate::clock::ManualClock;

fn record(i: u32) -> Record {
    Record {
        actor: format!("operator-{i}@stats"),
        action: "psi.intersection".into(),
        grant: Some("grant-7".into()),
        subjects: vec!["patients".into(), "patients.nin".into()],
        privacy_cost: Some("ε=0.5".into()),
        output_digest: Some([i as u8; 32]),
        outcome: if i.is_multiple_of(3) {
            Outcome::Refused
        } else {
            Outcome::Accepted
        },
        detail: if i.is_multiple_of(3) {
            "grant expired".into()
        } else {
            String::new()
        },
    }
}

/// A log of six entries in a fresh database.
fn log() -> (tempfile::TempDir, Store, NodeKey) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("node.db")).unwrap();
    let key = NodeKey::generate(&mut StdRng::seed_from_u64(1));
    let clock = ManualClock::at(1_700_000_000_000);
    for i in 1..=6 {
        let entry = append(&mut store, &key, &clock, record(i)).unwrap();
        assert_eq!(entry.seq, u64::from(i));
        clock.advance(1000);
    }
    (dir, store, key)
}

fn problems(store: &mut Store, key: &NodeKey) -> Vec<Problem> {
    verify(store, &key.verifying_key()).unwrap().problems
}

fn sql(store: &mut Store, statement: &str) {
    store.conn().execute_batch(statement).unwrap();
}

#[test]
fn an_untouched_log_verifies() {
    let (_dir, mut store, key) = log();
    let v = verify(&mut store, &key.verifying_key()).unwrap();
    assert!(v.is_intact(), "{:?}", v.problems);
    assert_eq!((v.entries, v.head_seq), (6, 6));
    let all = entries(&mut store).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[2].record, record(3));
    assert_eq!(all[5].at_ms - all[0].at_ms, 5000);
}

#[test]
fn an_empty_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("node.db")).unwrap();
    let key = NodeKey::generate(&mut StdRng::seed_from_u64(2));
    let v = verify(&mut store, &key.verifying_key()).unwrap();
    assert!(v.is_intact());
    assert_eq!(v.entries, 0);
}

#[test]
fn an_edit_is_reported() {
    let (_dir, mut store, key) = log();
    sql(
        &mut store,
        "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3",
    );
    assert_eq!(problems(&mut store, &key), vec![Problem::Edited { seq: 3 }]);
}

#[test]
fn an_edit_of_a_refusal_into_an_acceptance_is_reported() {
    let (_dir, mut store, key) = log();
    sql(
        &mut store,
        "UPDATE audit_log SET outcome = 'accepted', detail = '' WHERE seq = 6",
    );
    assert_eq!(problems(&mut store, &key), vec![Problem::Edited { seq: 6 }]);
}

#[test]
fn a_deletion_is_reported() {
    let (_dir, mut store, key) = log();
    sql(&mut store, "DELETE FROM audit_log WHERE seq = 4");
    assert_eq!(
        problems(&mut store, &key),
        vec![
            Problem::Missing {
                expected: 4,
                found: 5
            },
            Problem::BrokenLink { seq: 5 },
        ]
    );
}

#[test]
fn a_reordering_is_reported() {
    let (_dir, mut store, key) = log();
    // Swap entries 2 and 3 (their content and links, keeping the sequence numbers in place).
    sql(
        &mut store,
        "UPDATE audit_log SET seq = -2 WHERE seq = 2;
         UPDATE audit_log SET seq = 2 WHERE seq = 3;
         UPDATE audit_log SET seq = 3 WHERE seq = -2;",
    );
    let found = problems(&mut store, &key);
    assert!(found.contains(&Problem::BrokenLink { seq: 2 }), "{found:?}");
    assert!(found.contains(&Problem::BrokenLink { seq: 3 }), "{found:?}");
    assert!(found.contains(&Problem::BrokenLink { seq: 4 }), "{found:?}");
}

#[test]
fn truncation_is_reported() {
    let (_dir, mut store, key) = log();
    sql(&mut store, "DELETE FROM audit_log WHERE seq >= 5");
    assert_eq!(
        problems(&mut store, &key),
        vec![Problem::HeadMismatch {
            head_seq: 6,
            last_seq: 4
        }]
    );
}

#[test]
fn a_rewritten_chain_is_reported_by_the_head() {
    let (_dir, mut store, key) = log();
    // An attacker without the node key edits entry 2 and recomputes every hash after it.
    let mut all = entries(&mut store).unwrap();
    all[1].record.actor = "forged".into();
    let mut prev = GENESIS;
    for e in &mut all {
        let hash = entry_hash(&prev, e.seq, e.at_ms, &e.record);
        store
            .conn()
            .execute(
                "UPDATE audit_log SET actor = ?1, prev_hash = ?2, entry_hash = ?3 WHERE seq = ?4",
                params![e.record.actor, prev.to_vec(), hash.to_vec(), e.seq as i64],
            )
            .unwrap();
        prev = hash;
    }
    // Pointing the head at the new hash does not help: the signature does not cover it.
    store
        .conn()
        .execute(
            "UPDATE audit_head SET entry_hash = ?1",
            params![prev.to_vec()],
        )
        .unwrap();
    assert_eq!(problems(&mut store, &key), vec![Problem::BadSignature]);
}

#[test]
fn another_nodes_key_does_not_verify() {
    let (_dir, mut store, _key) = log();
    let other = NodeKey::generate(&mut StdRng::seed_from_u64(3));
    assert_eq!(problems(&mut store, &other), vec![Problem::BadSignature]);
}

#[test]
fn unreadable_fields_are_reported_not_panicked_on() {
    let (_dir, mut store, key) = log();
    sql(
        &mut store,
        "UPDATE audit_log SET outcome = 'maybe' WHERE seq = 2",
    );
    sql(
        &mut store,
        "UPDATE audit_log SET subjects = 'not json' WHERE seq = 5",
    );
    let found = problems(&mut store, &key);
    assert!(
        matches!(found[0], Problem::Unreadable { seq: 2, .. }),
        "{found:?}"
    );
    assert!(
        matches!(found[1], Problem::Unreadable { seq: 5, .. }),
        "{found:?}"
    );
    assert_eq!(
        found[0].to_string(),
        "entry 2 is unreadable: unknown outcome \"maybe\""
    );
}

#[test]
fn the_key_does_not_print() {
    let key = NodeKey::from_seed(&[7u8; 32]);
    let shown = format!("{key:?}");
    assert!(shown.starts_with("NodeKey { public:"), "{shown}");
    assert!(!shown.contains("0707"), "{shown}");
}

#[test]
fn pages_through_the_log_in_order() {
    let (_dir, mut store, _key) = log();
    assert_eq!(last_seq(&mut store).unwrap(), 6);
    let page: Vec<u64> = entries_after(&mut store, 2, 3)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(page, [3, 4, 5]);
    assert_eq!(entries_after(&mut store, 5, 10).unwrap().len(), 1);
    assert!(entries_after(&mut store, 6, 10).unwrap().is_empty());
    assert_eq!(entries(&mut store).unwrap()[0].record, record(1));
}
