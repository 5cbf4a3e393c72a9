//! OT-PSI against the plaintext intersection (the ECDH core's cases), against the ECDH mode, and
//! its error paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use proptest::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::receiver::build_table;
use super::*;
use crate::psi::local::Progress;
use crate::psi::{KeySet, PsiParams};

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => (0u16..400).prop_map(|n| format!("k{n}")),
        3 => (0u16..400).prop_map(|n| format!("  k{n}\t")),
        1 => Just(String::new()),
    ]
}

fn matching_rows(rows: &[String], other: &[String]) -> Vec<u64> {
    let other: HashSet<&str> = other
        .iter()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty())
        .collect();
    rows.iter()
        .enumerate()
        .filter(|(_, k)| other.contains(k.trim()))
        .map(|(i, _)| i as u64)
        .collect()
}

fn params(rng: &mut StdRng) -> OtPsiParams {
    OtPsiParams::new(
        SessionId::random(rng),
        OutputKind::Intersection,
        Recipients::Receiver,
        KeySpec::SINGLE,
    )
    .unwrap()
}

fn set(keys: &[String]) -> KeySet {
    KeySet::from_strings(KeySpec::SINGLE, keys).unwrap()
}

fn check(receiver: &[String], sender: &[String], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let run = local::run(params(&mut rng), set(receiver), set(sender), &mut rng).unwrap();
    let expected = matching_rows(receiver, sender);
    let r_distinct = set(receiver).len() as u64;
    let s_distinct = set(sender).len() as u64;
    assert_eq!(run.receiver.matched_rows.as_ref(), Some(&expected));
    let plain = |rows: &[String]| -> HashSet<String> {
        rows.iter()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect()
    };
    let common = plain(receiver).intersection(&plain(sender)).count() as u64;
    assert_eq!(run.receiver.cardinality, common);
    assert_eq!(run.receiver.peer_items, s_distinct);
    assert_eq!(run.sender.peer_items, r_distinct);
    assert_eq!(run.sender.cardinality, None);
    assert_eq!(run.sender.matched_rows, None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn equals_plaintext_intersection(
        receiver in prop::collection::vec(key(), 0..120),
        sender in prop::collection::vec(key(), 0..120),
        seed in any::<u64>(),
    ) {
        check(&receiver, &sender, seed);
    }

    #[test]
    fn very_unequal_sizes(
        receiver in prop::collection::vec(key(), 0..4),
        sender in prop::collection::vec(key(), 300..600),
        seed in any::<u64>(),
    ) {
        check(&receiver, &sender, seed);
        check(&sender, &receiver, seed);
    }
}

#[test]
fn edge_cases() {
    let a: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
    let b: Vec<String> = (0..70).map(|i| format!("b{i}")).collect();
    check(&[], &[], 1);
    check(&a, &[], 2);
    check(&[], &a, 3);
    check(&a, &a, 4);
    check(&a, &b, 5);
    let dups: Vec<String> = a.iter().chain(a.iter()).cloned().collect();
    check(&dups, &a[..10], 6);
}

#[test]
fn many_batches_and_frames() {
    // More bins than one columns batch and more items than one outputs frame.
    let r: Vec<String> = (0..12_000).map(|i| format!("x{i}")).collect();
    let s: Vec<String> = (0..9_000).map(|i| format!("x{}", i * 3)).collect();
    check(&r, &s, 7);
}

#[test]
fn agrees_with_the_ecdh_mode() {
    let mut rng = StdRng::seed_from_u64(8);
    let spec = KeySpec::new(&[crate::psi::KeyType::TEXT; 2]).unwrap();
    let r = [
        ["Ab", "c"],
        ["MÜLLER", "x"],
        ["a", "bc"],
        ["ab", " C"],
        ["", "y"],
        ["q", "r"],
    ];
    let s = [["ab", "C"], ["mu\u{308}ller", "X "], ["q", "R"], ["z", "z"]];
    let ecdh = crate::psi::local::run(
        PsiParams::one_shot(
            SessionId::random(&mut rng),
            OutputKind::Intersection,
            Recipients::Receiver,
            spec,
        ),
        KeySet::from_rows(spec, r).unwrap(),
        KeySet::from_rows(spec, s).unwrap(),
        &mut rng,
        &Progress::default(),
    )
    .unwrap();
    let ot = local::run(
        OtPsiParams::new(
            SessionId::random(&mut rng),
            OutputKind::Intersection,
            Recipients::Receiver,
            spec,
        )
        .unwrap(),
        KeySet::from_rows(spec, r).unwrap(),
        KeySet::from_rows(spec, s).unwrap(),
        &mut rng,
    )
    .unwrap();
    assert_eq!(ot.receiver, ecdh.receiver);
    assert_eq!(ot.receiver.matched_rows, Some(vec![0, 1, 3, 5]));
    assert_eq!(ot.receiver.cardinality, 3);
}

#[test]
fn cardinality_and_both_recipients_are_refused() {
    let mut rng = StdRng::seed_from_u64(9);
    let id = SessionId::random(&mut rng);
    let err = OtPsiParams::new(
        id,
        OutputKind::Cardinality,
        Recipients::Receiver,
        KeySpec::SINGLE,
    )
    .unwrap_err();
    assert!(matches!(err, OtPsiError::CardinalityUnsupported), "{err}");
    assert!(err.to_string().contains("use ECDH-PSI"), "{err}");
    let err = OtPsiParams::new(
        id,
        OutputKind::Intersection,
        Recipients::Both,
        KeySpec::SINGLE,
    )
    .unwrap_err();
    assert!(matches!(err, OtPsiError::RecipientsUnsupported), "{err}");
}

#[test]
fn cuckoo_failure_is_a_typed_error() {
    let mut rng = StdRng::seed_from_u64(10);
    let digests: Vec<_> = (0..1000u32)
        .map(|i| prims::item_digest(SessionId([0; 16]), &i.to_be_bytes()))
        .collect();
    // Fewer bins than items: no seed can work.
    let err = build_table(&digests, 768, &mut rng).unwrap_err();
    assert!(
        matches!(
            err,
            OtPsiError::CuckooFailed {
                items: 1000,
                bins: 768,
                attempts: cuckoo::MAX_ATTEMPTS
            }
        ),
        "{err}"
    );
    // The production size works.
    build_table(&digests, cuckoo::bins_for(1000), &mut rng).unwrap();
}

#[test]
fn output_lengths_keep_false_matches_below_2_pow_minus_40() {
    assert_eq!(output_len(0, 0), 6);
    assert_eq!(output_len(1 << 20, 1 << 20), 11);
    assert_eq!(output_len(1 << 24, 1 << 24), 12);
    assert_eq!(output_len(u32::MAX as u64, u32::MAX as u64), 14);
    for (r, s) in [
        (1u64, 1u64),
        (1000, 3),
        (1 << 16, 1 << 20),
        (1 << 30, 1 << 31),
    ] {
        let bits = 8.0 * output_len(r, s) as f64;
        assert!(
            (3.0 * r as f64 * s as f64).log2() - bits <= -40.0,
            "{r} {s}"
        );
    }
}

/// Drives a session by hand up to the sender's extension round.
fn to_extension(rng: &mut StdRng) -> (OtReceiverExtending, OtSenderExtending) {
    let p = params(rng);
    let (waiting, hello) = OtReceiverStart::start(p, set(&["a".into(), "b".into()]), rng).unwrap();
    let sender = OtSenderAwaitHello::start(p, set(&["a".into()]), rng).unwrap();
    let (sender, setup) = sender
        .handle(OtMessage::decode(&hello.0).unwrap(), rng)
        .unwrap();
    let receiver = waiting
        .handle(OtMessage::decode(&setup.0).unwrap())
        .unwrap();
    (receiver, sender)
}

#[test]
fn a_receiver_over_the_senders_limit_is_refused() {
    let mut rng = StdRng::seed_from_u64(12);
    let p = params(&mut rng);
    assert_eq!(p.with_peer_limit(1).digest(), p.digest());
    let (_, hello) = OtReceiverStart::start(p, set(&["a".into(), "b".into()]), &mut rng).unwrap();
    let err = OtSenderAwaitHello::start(p.with_peer_limit(1), set(&["a".into()]), &mut rng)
        .unwrap()
        .handle(OtMessage::decode(&hello.0).unwrap(), &mut rng)
        .unwrap_err();
    assert!(
        matches!(
            err,
            OtPsiError::Psi(PsiError::PeerTooLarge {
                announced: 2,
                limit: 1
            })
        ),
        "{err}"
    );
}

#[test]
fn out_of_order_mismatched_and_excess_messages_are_refused() {
    let mut rng = StdRng::seed_from_u64(11);
    let p = params(&mut rng);
    let other = params(&mut rng);
    // Different session parameters.
    let (_, hello) = OtReceiverStart::start(other, set(&["a".into()]), &mut rng).unwrap();
    let err = OtSenderAwaitHello::start(p, set(&["a".into()]), &mut rng)
        .unwrap()
        .handle(OtMessage::decode(&hello.0).unwrap(), &mut rng)
        .unwrap_err();
    assert!(
        matches!(err, OtPsiError::Psi(PsiError::ParamsMismatch)),
        "{err}"
    );
    // A hello announcing a wrong table size.
    let mut bad = hello.0.clone();
    bad[2 + 32 + 8 + 7] ^= 1;
    let err = OtSenderAwaitHello::start(other, set(&["a".into()]), &mut rng)
        .unwrap()
        .handle(OtMessage::decode(&bad).unwrap(), &mut rng)
        .unwrap_err();
    assert!(matches!(err, OtPsiError::BinsMismatch { .. }), "{err}");
    // Columns past the table; finishing early; a batch in the wrong round.
    let (mut receiver, mut sender) = to_extension(&mut rng);
    let mut frames = Vec::new();
    while let Some(frame) = receiver.next_batch() {
        frames.push(frame);
    }
    for f in &frames {
        sender.handle(OtMessage::decode(&f.0).unwrap()).unwrap();
    }
    let err = sender
        .handle(OtMessage::decode(&frames[0].0).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, OtPsiError::Psi(PsiError::TooManyItems { .. })),
        "{err}"
    );
    let mut comparing = receiver.finish().unwrap();
    let err = comparing
        .handle(OtMessage::decode(&frames[0].0).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, OtPsiError::Psi(PsiError::Unexpected { .. })),
        "{err}"
    );
    let err = comparing.finish().unwrap_err();
    assert!(
        matches!(err, OtPsiError::Psi(PsiError::Incomplete { .. })),
        "{err}"
    );
    let (receiver, _) = to_extension(&mut rng);
    assert!(matches!(
        receiver.finish().unwrap_err(),
        OtPsiError::Psi(PsiError::Incomplete { .. })
    ));
}

#[test]
fn wrong_output_width_is_refused() {
    let mut rng = StdRng::seed_from_u64(12);
    let (mut receiver, mut sender) = to_extension(&mut rng);
    while let Some(frame) = receiver.next_batch() {
        sender.handle(OtMessage::decode(&frame.0).unwrap()).unwrap();
    }
    let mut comparing = receiver.finish().unwrap();
    let frame = wire::outputs(9, 1, std::iter::once(&[0u8; 27][..]));
    let err = comparing
        .handle(OtMessage::decode(&frame.0).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, OtPsiError::OutputWidthMismatch { found: 9, .. }),
        "{err}"
    );
}

#[test]
fn secrets_do_not_print() {
    let mut rng = StdRng::seed_from_u64(13);
    let (receiver, sender) = to_extension(&mut rng);
    let shown = format!("{receiver:?} {sender:?}");
    assert!(!shown.contains("secret-id"), "{shown}");
    let start =
        OtSenderAwaitHello::start(params(&mut rng), set(&["secret-id".into()]), &mut rng).unwrap();
    let shown = format!("{start:?}");
    assert!(shown.contains("ChoiceBits { .. }"), "{shown}");
    assert!(!shown.contains("secret-id"), "{shown}");
}
