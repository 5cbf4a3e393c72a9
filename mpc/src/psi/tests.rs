//! Protocol tests: every mode against a plaintext intersection, and the error paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use proptest::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::local::{self, Progress};
use super::*;
use crate::psi::KeyType;

const MODES: [(OutputKind, Recipients); 4] = [
    (OutputKind::Cardinality, Recipients::Receiver),
    (OutputKind::Cardinality, Recipients::Both),
    (OutputKind::Intersection, Recipients::Receiver),
    (OutputKind::Intersection, Recipients::Both),
];

/// A key drawn from a small universe, so that sets overlap and repeat; sometimes padded with
/// white space (which normalization removes) and sometimes blank (an excluded row).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => (0u16..400).prop_map(|n| format!("k{n}")),
        3 => (0u16..400).prop_map(|n| format!("  k{n}\t")),
        1 => Just(String::new()),
    ]
}

fn plaintext(rows: &[String]) -> Vec<Option<String>> {
    rows.iter()
        .map(|r| Some(r.trim().to_owned()).filter(|k| !k.is_empty()))
        .collect()
}

fn matching_rows(rows: &[Option<String>], other: &HashSet<String>) -> Vec<u64> {
    rows.iter()
        .enumerate()
        .filter(|(_, k)| k.as_ref().is_some_and(|k| other.contains(k)))
        .map(|(i, _)| i as u64)
        .collect()
}

fn check_all_modes(receiver: &[String], sender: &[String], seed: u64) {
    let r_plain = plaintext(receiver);
    let s_plain = plaintext(sender);
    let r_set: HashSet<String> = r_plain.iter().flatten().cloned().collect();
    let s_set: HashSet<String> = s_plain.iter().flatten().cloned().collect();
    let common = r_set.intersection(&s_set).count() as u64;
    let mut rng = StdRng::seed_from_u64(seed);
    for (output, recipients) in MODES {
        let params = PsiParams::one_shot(
            SessionId::random(&mut rng),
            output,
            recipients,
            KeySpec::SINGLE,
        );
        let run = local::run(
            params,
            KeySet::from_strings(KeySpec::SINGLE, receiver).unwrap(),
            KeySet::from_strings(KeySpec::SINGLE, sender).unwrap(),
            &mut rng,
            &Progress::default(),
        )
        .unwrap();
        let mode = format!("{output:?}/{recipients:?}");
        assert_eq!(run.receiver.cardinality, common, "{mode}");
        assert_eq!(run.receiver.peer_items, s_set.len() as u64, "{mode}");
        assert_eq!(run.sender.peer_items, r_set.len() as u64, "{mode}");
        assert_eq!(
            run.receiver.input.distinct_keys,
            r_set.len() as u64,
            "{mode}"
        );
        let both = recipients == Recipients::Both;
        assert_eq!(run.sender.cardinality, both.then_some(common), "{mode}");
        match output {
            OutputKind::Intersection => {
                assert_eq!(
                    run.receiver.matched_rows,
                    Some(matching_rows(&r_plain, &s_set)),
                    "{mode}"
                );
                let expected = both.then(|| matching_rows(&s_plain, &r_set));
                assert_eq!(run.sender.matched_rows, expected, "{mode}");
            }
            _ => {
                assert_eq!(run.receiver.matched_rows, None, "{mode}");
                assert_eq!(run.sender.matched_rows, None, "{mode}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn equals_plaintext_intersection(
        receiver in prop::collection::vec(key(), 0..120),
        sender in prop::collection::vec(key(), 0..120),
        seed in any::<u64>(),
    ) {
        check_all_modes(&receiver, &sender, seed);
    }

    #[test]
    fn very_unequal_sizes(
        receiver in prop::collection::vec(key(), 0..4),
        sender in prop::collection::vec(key(), 300..600),
        seed in any::<u64>(),
    ) {
        check_all_modes(&receiver, &sender, seed);
        check_all_modes(&sender, &receiver, seed);
    }
}

#[test]
fn edge_cases() {
    let a: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
    let b: Vec<String> = (0..70).map(|i| format!("b{i}")).collect();
    check_all_modes(&[], &[], 1); // both empty
    check_all_modes(&a, &[], 2); // one empty
    check_all_modes(&[], &a, 3);
    check_all_modes(&a, &a, 4); // identical
    check_all_modes(&a, &b, 5); // disjoint
    let dups: Vec<String> = a.iter().chain(a.iter()).cloned().collect();
    check_all_modes(&dups, &a[..10], 6); // every key twice
}

#[test]
fn batches_split_anywhere() {
    // More keys than one batch, with batch boundaries off by one.
    let r: Vec<String> = (0..(wire::DEFAULT_BATCH_ITEMS + 3))
        .map(|i| format!("x{i}"))
        .collect();
    let s: Vec<String> = (0..5000).map(|i| format!("x{}", i * 3)).collect();
    check_all_modes(&r, &s, 7);
}

#[test]
fn composite_case_folded_keys() {
    let spec = KeySpec::new(&[KeyType::TEXT; 2]).unwrap();
    let mut rng = StdRng::seed_from_u64(8);
    let params = PsiParams::one_shot(
        SessionId::random(&mut rng),
        OutputKind::Intersection,
        Recipients::Receiver,
        spec,
    );
    let r = KeySet::from_rows(spec, [["Ab", "c"], ["MÜLLER", "x"], ["a", "bc"]]).unwrap();
    let s = KeySet::from_rows(spec, [["ab", "C"], ["mu\u{308}ller", "X "]]).unwrap();
    let run = local::run(params, r, s, &mut rng, &Progress::default()).unwrap();
    assert_eq!(run.receiver.matched_rows, Some(vec![0, 1]));
}

fn one_shot(rng: &mut StdRng, output: OutputKind) -> PsiParams {
    PsiParams::one_shot(
        SessionId::random(rng),
        output,
        Recipients::Receiver,
        KeySpec::SINGLE,
    )
}

fn keys(items: &[&str]) -> KeySet {
    KeySet::from_strings(KeySpec::SINGLE, items).unwrap()
}

/// Runs a query against a cached encoding, by hand, and returns the receiver's matched rows.
fn query_cached(encoding: &Arc<SenderEncoding>, query: &[&str], rng: &mut StdRng) -> Vec<u64> {
    let params = PsiParams::against_cached(
        SessionId::random(rng),
        encoding.id(),
        Recipients::Receiver,
        KeySpec::SINGLE,
    );
    let sender = SenderAwaitQuery::start(params, Arc::clone(encoding), rng).unwrap();
    let (mut blinding, header) = ReceiverBlinding::start(params, keys(query), rng).unwrap();
    let mut sender = sender.handle(Message::decode(&header.0).unwrap()).unwrap();
    let mut collecting_frames = Vec::new();
    while let Some(frame) = blinding.next_batch() {
        if let Some(reply) = sender.handle(Message::decode(&frame.0).unwrap()).unwrap() {
            collecting_frames.push(reply);
        }
    }
    let (rest, next) = sender.finish().unwrap();
    assert!(matches!(next, SenderNext::Done(_)));
    let mut collecting = blinding.finish().unwrap();
    for frame in encoding
        .set_frames(&params)
        .chain(collecting_frames)
        .chain(rest)
    {
        collecting
            .handle(Message::decode(&frame.0).unwrap())
            .unwrap();
    }
    collecting.finish().unwrap().0.matched_rows.unwrap()
}

#[test]
fn cached_encoding_answers_many_queries() {
    let mut rng = StdRng::seed_from_u64(9);
    let big: Vec<String> = (0..3000).map(|i| format!("id{i}")).collect();
    let encoding = Arc::new(SenderEncoding::new(
        SessionId::random(&mut rng),
        KeySet::from_strings(KeySpec::SINGLE, &big).unwrap(),
        &mut rng,
    ));
    assert_eq!(
        query_cached(&encoding, &["id5", "nope", "id2999"], &mut rng),
        vec![0, 2]
    );
    assert_eq!(query_cached(&encoding, &["x", "id0"], &mut rng), vec![1]);
    // Cardinality against a used encoding is refused, even under its own id.
    let params = PsiParams::one_shot(
        encoding.id(),
        OutputKind::Cardinality,
        Recipients::Receiver,
        KeySpec::SINGLE,
    );
    let err = SenderAwaitQuery::start(params, Arc::clone(&encoding), &mut rng).unwrap_err();
    assert!(
        matches!(err, PsiError::CardinalityNeedsFreshKeys),
        "{err:?}"
    );
    // An encoding for another hash domain is refused.
    let params = PsiParams::one_shot(
        SessionId::random(&mut rng),
        OutputKind::Intersection,
        Recipients::Receiver,
        KeySpec::SINGLE,
    );
    let err = SenderAwaitQuery::start(params, Arc::clone(&encoding), &mut rng).unwrap_err();
    assert!(matches!(err, PsiError::EncodingMismatch), "{err:?}");
}

#[test]
fn mismatched_parameters_are_refused() {
    let mut rng = StdRng::seed_from_u64(10);
    let ours = one_shot(&mut rng, OutputKind::Intersection);
    let theirs = PsiParams::one_shot(
        ours.session(),
        OutputKind::Cardinality,
        Recipients::Receiver,
        KeySpec::SINGLE,
    );
    let encoding = Arc::new(SenderEncoding::new(ours.session(), keys(&["a"]), &mut rng));
    let sender = SenderAwaitQuery::start(ours, encoding, &mut rng).unwrap();
    let (_, header) = ReceiverBlinding::start(theirs, keys(&["a"]), &mut rng).unwrap();
    let err = sender
        .handle(Message::decode(&header.0).unwrap())
        .unwrap_err();
    assert!(matches!(err, PsiError::ParamsMismatch), "{err}");
}

#[test]
fn a_peer_over_this_partys_limit_is_refused_and_the_limit_is_not_agreed() {
    let mut rng = StdRng::seed_from_u64(12);
    let params = one_shot(&mut rng, OutputKind::Cardinality);
    let limited = params.with_peer_limit(2);
    // Each party's own bound: not part of what the peers compare.
    assert_eq!(limited.digest(), params.digest());
    let (_, header) = ReceiverBlinding::start(params, keys(&["a", "b", "c"]), &mut rng).unwrap();
    let mut sender = |limit| {
        let encoding = Arc::new(SenderEncoding::new(
            params.session(),
            keys(&["a"]),
            &mut rng,
        ));
        SenderAwaitQuery::start(params.with_peer_limit(limit), encoding, &mut rng).unwrap()
    };
    let err = sender(2)
        .handle(Message::decode(&header.0).unwrap())
        .unwrap_err();
    assert!(
        matches!(
            err,
            PsiError::PeerTooLarge {
                announced: 3,
                limit: 2
            }
        ),
        "{err}"
    );
    assert!(
        sender(3)
            .handle(Message::decode(&header.0).unwrap())
            .is_ok()
    );
}

#[test]
fn out_of_order_and_excess_messages_are_refused() {
    let mut rng = StdRng::seed_from_u64(11);
    let params = one_shot(&mut rng, OutputKind::Intersection);
    let encoding = Arc::new(SenderEncoding::new(
        params.session(),
        keys(&["a", "b"]),
        &mut rng,
    ));
    let sender = SenderAwaitQuery::start(params, encoding, &mut rng).unwrap();
    let (mut blinding, header) = ReceiverBlinding::start(params, keys(&["a"]), &mut rng).unwrap();
    let batch = blinding.next_batch().unwrap();
    // A batch before the header.
    let err = SenderAwaitQuery::start(
        params,
        Arc::new(SenderEncoding::new(
            params.session(),
            keys(&["a"]),
            &mut rng,
        )),
        &mut rng,
    )
    .unwrap()
    .handle(Message::decode(&batch.0).unwrap())
    .unwrap_err();
    assert!(matches!(err, PsiError::Unexpected { .. }), "{err}");
    // The same batch twice: more keys than announced.
    let mut sender = sender.handle(Message::decode(&header.0).unwrap()).unwrap();
    sender.handle(Message::decode(&batch.0).unwrap()).unwrap();
    let err = sender
        .handle(Message::decode(&batch.0).unwrap())
        .unwrap_err();
    assert!(
        matches!(
            err,
            PsiError::TooManyItems {
                announced: 1,
                received: 2,
                ..
            }
        ),
        "{err}"
    );
    // Finishing the receiver before the sender's messages arrived.
    let err = blinding.finish().unwrap().finish().unwrap_err();
    assert!(matches!(err, PsiError::Incomplete { .. }), "{err}");
}

#[test]
fn secrets_do_not_print() {
    let mut rng = StdRng::seed_from_u64(12);
    let params = one_shot(&mut rng, OutputKind::Intersection);
    let (blinding, _) = ReceiverBlinding::start(params, keys(&["secret-id"]), &mut rng).unwrap();
    let shown = format!("{blinding:?}");
    assert!(shown.contains("BlindingKey { .. }"), "{shown}");
    assert!(!shown.contains("secret-id"), "{shown}");
}

#[test]
fn receiver_rows_follow_input_order() {
    let mut rng = StdRng::seed_from_u64(13);
    let r: Vec<String> = ["z", "y", "x", "y", "w"].map(String::from).to_vec();
    let s: Vec<String> = ["y", "w"].map(String::from).to_vec();
    let run = local::run(
        one_shot(&mut rng, OutputKind::Intersection),
        KeySet::from_strings(KeySpec::SINGLE, &r).unwrap(),
        KeySet::from_strings(KeySpec::SINGLE, &s).unwrap(),
        &mut rng,
        &Progress::default(),
    )
    .unwrap();
    let rows: BTreeSet<u64> = run.receiver.matched_rows.unwrap().into_iter().collect();
    assert_eq!(rows, BTreeSet::from([1, 3, 4]));
    assert_eq!(run.receiver.input.duplicate_rows, 1);
}

#[test]
fn the_failing_role_reports_the_cause() {
    let mut rng = StdRng::seed_from_u64(14);
    let params = one_shot(&mut rng, OutputKind::Intersection);
    let folded = KeySpec::one(KeyType::Text {
        case_sensitive: true,
    });
    // The receiver's keys were normalized differently from the session parameters: the receiver
    // refuses to start, the sender sees the channel close, and the run reports the receiver's
    // reason rather than the hang-up.
    let err = local::run(
        params,
        KeySet::from_strings(folded, ["a"]).unwrap(),
        keys(&["a"]),
        &mut rng,
        &Progress::default(),
    )
    .unwrap_err();
    assert!(matches!(err, PsiError::KeySpecMismatch), "{err}");
}
