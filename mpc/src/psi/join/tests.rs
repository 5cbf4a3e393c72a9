//! Join-aggregate against the plaintext join-aggregate (with the injected noise known to the
//! test), and the refusal of tampered, invalid or out-of-range input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};

use curve25519_dalek::scalar::Scalar;
use proptest::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::elgamal::{Ciphertext, Encryptor};
use super::*;

/// One value-holder row: key number, value, and a category that follows from the key (rows
/// sharing a key must share a category).
type Row = (u16, i64);

fn params(rng: &mut StdRng, categories: u16, bounds: (i64, i64), noise: u64) -> JoinParams {
    JoinParams::new(
        SessionId::random(rng),
        KeySpec::SINGLE,
        categories,
        bounds,
        noise,
    )
    .unwrap()
}

fn key_set(keys: &[u16]) -> KeySet {
    KeySet::from_strings(KeySpec::SINGLE, keys.iter().map(|k| format!("k{k}"))).unwrap()
}

fn value_set(rows: &[Row], categories: u16) -> ValueSet {
    ValueSet::from_strings(
        KeySpec::SINGLE,
        rows.iter()
            // Padding exercises normalization: " k7" and "k7" are one key.
            .map(|&(k, v)| {
                let key = if k % 3 == 0 {
                    format!(" k{k}\t")
                } else {
                    format!("k{k}")
                };
                (key, v, u32::from(k % categories))
            }),
    )
    .unwrap()
}

/// The join-aggregate in the clear: per category, (count, sum) of the value holder's distinct
/// keys that the key holder has, each key's values added then clamped; and how many were clamped
/// below and above.
fn plaintext(
    keys: &[u16],
    rows: &[Row],
    categories: u16,
    (lo, hi): (i64, i64),
) -> (Vec<(i64, i64)>, u64, u64) {
    let held: HashSet<u16> = keys.iter().copied().collect();
    let mut totals: BTreeMap<u16, i128> = BTreeMap::new();
    for &(k, v) in rows {
        *totals.entry(k).or_default() += i128::from(v);
    }
    let mut out = vec![(0i64, 0i64); usize::from(categories)];
    let (mut low, mut high) = (0, 0);
    for (k, total) in totals {
        let v = if total < i128::from(lo) {
            low += 1;
            lo
        } else if total > i128::from(hi) {
            high += 1;
            hi
        } else {
            total as i64
        };
        if held.contains(&k) {
            let c = usize::from(k % categories);
            out[c].0 += 1;
            out[c].1 += v;
        }
    }
    (out, low, high)
}

fn noise(rng: &mut StdRng, categories: u16, bound: u64) -> (Vec<i64>, Vec<i64>) {
    let b = bound as i64;
    let mut draw = || {
        (0..categories)
            .map(|_| rng.random_range(-b..=b))
            .collect::<Vec<i64>>()
    };
    (draw(), draw())
}

/// Runs a session and checks it against the plaintext join-aggregate plus the known noise.
fn check(keys: &[u16], rows: &[Row], categories: u16, bounds: (i64, i64), seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let bound = 5_000;
    let p = params(&mut rng, categories, bounds, bound);
    let (count_noise, sum_noise) = noise(&mut rng, categories, bound);
    let run = local::run(
        p,
        key_set(keys),
        value_set(rows, categories),
        JoinNoise::new(count_noise.clone(), sum_noise.clone()),
        &mut rng,
    )
    .unwrap();
    let (expected, low, high) = plaintext(keys, rows, categories, bounds);
    let released: Vec<(i64, i64)> = run
        .value_holder
        .categories
        .iter()
        .enumerate()
        .map(|(c, r)| (r.count - count_noise[c], r.sum - sum_noise[c]))
        .collect();
    assert_eq!(released, expected);
    let distinct_keys: HashSet<u16> = keys.iter().copied().collect();
    let distinct_rows: HashSet<u16> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        run.key_holder.intersection,
        distinct_rows.intersection(&distinct_keys).count() as u64
    );
    assert_eq!(run.key_holder.peer_items, distinct_rows.len() as u64);
    assert_eq!(run.value_holder.peer_items, distinct_keys.len() as u64);
    let report = run.value_holder.input;
    assert_eq!((report.clamped_low, report.clamped_high), (low, high));
    assert_eq!(report.keys.rows, rows.len() as u64);
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec((0u16..120, -60i64..=60), 0..50)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Random sets that overlap, repeat and clamp, with negative bounds and up to 12 categories.
    #[test]
    fn equals_plaintext_join_aggregate(
        keys in prop::collection::vec(0u16..120, 0..50),
        rows in rows(),
        categories in 1u16..=12,
        lo in -50i64..=10,
        span in 0i64..=70,
        seed in any::<u64>(),
    ) {
        check(&keys, &rows, categories, (lo, lo + span), seed);
    }
}

#[test]
fn edge_cases() {
    let rows: Vec<Row> = (0..40).map(|k| (k, i64::from(k) - 25)).collect();
    let all: Vec<u16> = (0..40).collect();
    // All match, negative and positive values within bounds, one category.
    check(&all, &rows, 1, (-25, 15), 1);
    // Empty intersection.
    check(&(100..140).collect::<Vec<_>>(), &rows, 3, (-100, 100), 2);
    // Empty sets on either side.
    check(&[], &rows, 2, (-100, 100), 3);
    check(&all, &[], 2, (-100, 100), 4);
    // Many categories, most of them empty.
    check(&all, &rows, 200, (-30, 30), 5);
    // All values negative.
    let negative: Vec<Row> = (0..30).map(|k| (k, -1_000 - i64::from(k))).collect();
    check(&all, &negative, 4, (-1_020, -1_005), 6);
}

#[test]
fn out_of_bound_values_are_clamped_and_counted() {
    let mut rng = StdRng::seed_from_u64(9);
    let p = params(&mut rng, 1, (-10, 10), 0);
    // k1 and k2 are clamped (k2's two rows add to 12), k3 stays, k4 is clamped but unmatched.
    let values = ValueSet::from_strings(
        KeySpec::SINGLE,
        [
            ("k1", -500, 0),
            ("k2", 7, 0),
            ("k2", 5, 0),
            ("k3", -3, 0),
            ("k4", 99, 0),
        ],
    )
    .unwrap();
    let keys = KeySet::from_strings(KeySpec::SINGLE, ["k1", "k2", "k3", "k9"]).unwrap();
    let run = local::run(p, keys, values, JoinNoise::new(vec![0], vec![0]), &mut rng).unwrap();
    assert_eq!(
        run.value_holder.categories,
        vec![CategoryResult {
            count: 3,
            sum: -10 + 10 - 3
        }]
    );
    assert_eq!(run.value_holder.input.clamped_low, 1);
    assert_eq!(run.value_holder.input.clamped_high, 2);
    assert_eq!(run.value_holder.input.keys.duplicate_rows, 1);
    assert_eq!(run.value_holder.categories[0].mean(), Some(-1.0));
}

/// What a tamper hook sees: every frame one party sends, as bytes, with its position.
type Tamper<'a> = &'a mut dyn FnMut(usize, &mut Vec<u8>);

/// Runs the rounds by hand in this thread, passing each frame through a tamper hook.
fn stepped(
    p: JoinParams,
    keys: KeySet,
    values: ValueSet,
    noise: JoinNoise,
    seed: u64,
    to_k: Tamper<'_>,
    to_v: Tamper<'_>,
) -> Result<JoinOutput, JoinError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut deliver_v = |i: usize, f: Frame| {
        let mut bytes = f.0;
        to_v(i, &mut bytes);
        JoinMessage::decode(&bytes)
    };
    let (mut blinding, query) = KeyHolderBlinding::start(p, keys, &mut rng)?;
    let mut k_frames = vec![query];
    while let Some(f) = blinding.next_batch() {
        k_frames.push(f);
    }
    let (waiting, offer) = ValueHolderAwaitQuery::start(p, values, &mut rng)?;
    let mut k_iter = k_frames.into_iter().enumerate();
    let (i, first) = k_iter.next().unwrap();
    let mut evaluating = waiting.handle(deliver_v(i, first)?)?;
    for (i, f) in k_iter {
        evaluating.handle(deliver_v(i, f)?)?;
    }
    let (frames, waiting) = evaluating.finish()?;
    enum Round {
        Unblinding(KeyHolderUnblinding),
        Matching(KeyHolderMatching),
    }
    let mut round = Round::Unblinding(blinding.finish()?);
    for (i, f) in std::iter::once(offer).chain(frames).enumerate() {
        let mut bytes = f.0;
        to_k(i, &mut bytes);
        let message = JoinMessage::decode(&bytes)?;
        round = match round {
            Round::Unblinding(mut u) => {
                u.handle(message)?;
                if u.is_complete() {
                    Round::Matching(u.finish()?)
                } else {
                    Round::Unblinding(u)
                }
            }
            Round::Matching(mut m) => {
                m.handle(message)?;
                Round::Matching(m)
            }
        };
    }
    let matching = match round {
        Round::Matching(m) => m,
        Round::Unblinding(u) => u.finish()?,
    };
    let (result, _) = matching.finish(noise, &mut rng)?;
    waiting.handle(deliver_v(usize::MAX, result)?)
}

fn fixture(rng: &mut StdRng, categories: u16) -> (JoinParams, KeySet, ValueSet) {
    let rows: Vec<Row> = (0..20).map(|k| (k, i64::from(k))).collect();
    (
        params(rng, categories, (0, 100), 10),
        key_set(&(10..30).collect::<Vec<_>>()),
        value_set(&rows, categories),
    )
}

fn zero_noise(categories: usize) -> JoinNoise {
    JoinNoise::new(vec![0; categories], vec![0; categories])
}

fn untouched(_: usize, _: &mut Vec<u8>) {}

#[test]
fn stepped_run_is_correct_untampered() {
    let mut rng = StdRng::seed_from_u64(11);
    let (p, k, v) = fixture(&mut rng, 2);
    let out = stepped(p, k, v, zero_noise(2), 1, &mut untouched, &mut untouched).unwrap();
    // Keys 10..20 match: values 10..20, categories by parity.
    let even: i64 = (10..20).filter(|x| x % 2 == 0).sum();
    let odd: i64 = (10..20).filter(|x| x % 2 == 1).sum();
    assert_eq!(
        out.categories,
        vec![
            CategoryResult {
                count: 5,
                sum: even
            },
            CategoryResult { count: 5, sum: odd }
        ]
    );
}

/// Offsets in a row batch: version, kind, slots:u16, count:u32, then rows.
const ROWS_HEADER: usize = 2 + 2 + 4;

fn is_rows(bytes: &[u8]) -> bool {
    bytes.get(1) == Some(&0x25)
}

#[test]
fn tampered_ciphertexts_are_refused() {
    let mut rng = StdRng::seed_from_u64(12);
    let slots = 4;
    let width = 16 + 32 * (1 + slots);
    // Row 3, component 2 (slot 1): a non-canonical encoding (high bit set).
    let (p, k, v) = fixture(&mut rng, 2);
    let mut bad = |_: usize, b: &mut Vec<u8>| {
        if is_rows(b) {
            b[ROWS_HEADER + 3 * width + 16 + 2 * 32 + 31] |= 0x80;
        }
    };
    let err = stepped(p, k, v, zero_noise(2), 2, &mut bad, &mut untouched).unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::Ciphertext {
                item: 3,
                component: 2,
                fault: PointFault::NotCanonical
            }
        ),
        "{err:?}"
    );
    // Row 0's R replaced by the identity.
    let (p, k, v) = fixture(&mut rng, 2);
    let mut identity = |_: usize, b: &mut Vec<u8>| {
        if is_rows(b) {
            b[ROWS_HEADER + 16..ROWS_HEADER + 48].fill(0);
        }
    };
    let err = stepped(p, k, v, zero_noise(2), 3, &mut identity, &mut untouched).unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::Ciphertext {
                item: 0,
                component: 0,
                fault: PointFault::Identity
            }
        ),
        "{err:?}"
    );
    // The result's last slot corrupted on its way to the decryptor.
    let (p, k, v) = fixture(&mut rng, 2);
    let mut result = |i: usize, b: &mut Vec<u8>| {
        if i == usize::MAX {
            let n = b.len();
            b[n - 1] |= 0x80;
        }
    };
    let err = stepped(p, k, v, zero_noise(2), 4, &mut untouched, &mut result).unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::Ciphertext {
                item: 0,
                component: 4,
                fault: PointFault::NotCanonical
            }
        ),
        "{err:?}"
    );
    // A public-key point (slot 1) that is not canonical.
    let (p, k, v) = fixture(&mut rng, 2);
    let mut public = |i: usize, b: &mut Vec<u8>| {
        if i == 0 {
            b[2 + 42 + 32 + 31] |= 0x80;
        }
    };
    let err = stepped(p, k, v, zero_noise(2), 5, &mut public, &mut untouched).unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::PublicKey {
                slot: 1,
                fault: PointFault::NotCanonical
            }
        ),
        "{err:?}"
    );
}

#[test]
fn tampered_points_and_frames_are_refused() {
    let mut rng = StdRng::seed_from_u64(13);
    // A blinded key (frame 1, item 5) replaced by the identity.
    let (p, k, v) = fixture(&mut rng, 1);
    let mut blinded = |i: usize, b: &mut Vec<u8>| {
        if i == 1 {
            b[6 + 5 * 32..6 + 6 * 32].fill(0);
        }
    };
    let err = stepped(p, k, v, zero_noise(1), 6, &mut untouched, &mut blinded).unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::Decode(DecodeError::IdentityPoint { index: 5 })
        ),
        "{err:?}"
    );
    // An evaluated key that is not a valid encoding.
    let (p, k, v) = fixture(&mut rng, 1);
    let mut evaluated = |i: usize, b: &mut Vec<u8>| {
        if i == 1 {
            b[6 + 31] = 0xff;
        }
    };
    let err = stepped(p, k, v, zero_noise(1), 7, &mut evaluated, &mut untouched).unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::Decode(DecodeError::InvalidPoint { index: 0 })
        ),
        "{err:?}"
    );
    // A row batch with a trailing byte, and one cut short.
    for (extra, seed) in [(true, 8), (false, 9)] {
        let (p, k, v) = fixture(&mut rng, 1);
        let mut cut = |_: usize, b: &mut Vec<u8>| {
            if is_rows(b) {
                if extra {
                    b.push(0);
                } else {
                    b.pop();
                }
            }
        };
        let err = stepped(p, k, v, zero_noise(1), seed, &mut cut, &mut untouched).unwrap_err();
        if extra {
            assert!(
                matches!(
                    err,
                    JoinError::Decode(DecodeError::TrailingBytes { extra: 1 })
                ),
                "{err:?}"
            );
        } else {
            assert!(
                matches!(err, JoinError::Decode(DecodeError::Truncated { .. })),
                "{err:?}"
            );
        }
    }
    // A row batch that claims another slot count (kept consistent so that it decodes).
    let (p, k, v) = fixture(&mut rng, 1);
    let mut slots = |_: usize, b: &mut Vec<u8>| {
        if is_rows(b) {
            // Keep each row's digest, R and S_0: valid points under a one-slot header.
            let rows: Vec<u8> = b[ROWS_HEADER..]
                .chunks_exact(16 + 32 * 3)
                .flat_map(|row| row[..16 + 64].to_vec())
                .collect();
            b[2..4].copy_from_slice(&1u16.to_be_bytes());
            b.truncate(ROWS_HEADER);
            b.extend(rows);
        }
    };
    let err = stepped(p, k, v, zero_noise(1), 10, &mut slots, &mut untouched).unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::SlotCount {
                expected: 2,
                found: 1
            }
        ),
        "{err:?}"
    );
    // An oversized count is refused before anything is allocated.
    let mut huge = vec![crate::PROTOCOL_VERSION, 0x25, 0, 2];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        JoinMessage::decode(&huge).unwrap_err(),
        JoinError::Decode(DecodeError::BatchTooLarge { .. })
    ));
    // A PSI frame is not a join frame.
    assert!(matches!(
        JoinMessage::decode(&[crate::PROTOCOL_VERSION, 1]).unwrap_err(),
        JoinError::Decode(DecodeError::UnknownKind { kind: 1 })
    ));
}

#[test]
fn a_result_outside_the_declared_range_is_refused() {
    let mut rng = StdRng::seed_from_u64(14);
    let (p, k, v) = fixture(&mut rng, 1);
    // The key holder's result replaced by an encryption of a sum far beyond n·hi + noise.
    let public = std::cell::RefCell::new(None);
    let mut grab = |i: usize, b: &mut Vec<u8>| {
        if i == 0
            && let Ok(JoinMessage::Offer { public: pk, .. }) = JoinMessage::decode(b)
        {
            *public.borrow_mut() = Some(pk);
        }
    };
    let mut forged = |i: usize, b: &mut Vec<u8>| {
        if i == usize::MAX {
            let enc = Encryptor::new(public.borrow().as_ref().unwrap());
            let ct: Ciphertext = enc.encrypt([1 << 30, 3].into_iter(), &Scalar::from(5u64));
            *b = wire::result(&ct).0;
        }
    };
    let err = stepped(p, k, v, zero_noise(1), 15, &mut grab, &mut forged).unwrap_err();
    assert!(
        matches!(err, JoinError::PlaintextOutOfRange { slot: 0 }),
        "{err:?}"
    );
}

#[test]
fn bad_inputs_and_noise_are_typed_errors() {
    let mut rng = StdRng::seed_from_u64(15);
    let (p, k, v) = fixture(&mut rng, 2);
    let err = stepped(p, k, v, zero_noise(1), 16, &mut untouched, &mut untouched).unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::NoiseShape {
                what: "count",
                expected: 2,
                found: 1
            }
        ),
        "{err:?}"
    );
    let (p, k, v) = fixture(&mut rng, 2);
    let loud = JoinNoise::new(vec![0, 0], vec![0, -11]);
    let err = stepped(p, k, v, loud, 17, &mut untouched, &mut untouched).unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::NoiseOutOfBounds {
                what: "sum",
                category: 1,
                bound: 10
            }
        ),
        "{err:?}"
    );
    // Parameters that differ by one bound.
    let (p, k, v) = fixture(&mut rng, 1);
    let other =
        JoinParams::new(p.session(), KeySpec::SINGLE, 1, (0, 101), p.noise_bound()).unwrap();
    let (waiting, offer) = ValueHolderAwaitQuery::start(p, v, &mut rng).unwrap();
    let (blinding, query) = KeyHolderBlinding::start(other, k, &mut rng).unwrap();
    let err = waiting
        .handle(JoinMessage::decode(query.as_bytes()).unwrap())
        .unwrap_err();
    assert!(matches!(err, JoinError::ParamsMismatch), "{err:?}");
    drop(blinding);
    let (mut blinding, _) = KeyHolderBlinding::start(other, key_set(&[1]), &mut rng).unwrap();
    while blinding.next_batch().is_some() {}
    let mut unblinding = blinding.finish().unwrap();
    let err = unblinding
        .handle(JoinMessage::decode(offer.as_bytes()).unwrap())
        .unwrap_err();
    assert!(matches!(err, JoinError::ParamsMismatch), "{err:?}");
    // A category beyond the declared list, and rows of one key that disagree.
    let values = ValueSet::from_strings(KeySpec::SINGLE, [("a", 1, 0), ("b", 1, 3)]).unwrap();
    let p = params(&mut rng, 3, (0, 10), 0);
    let err = local::run(p, key_set(&[1]), values, zero_noise(3), &mut rng).unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::CategoryOutOfRange {
                row: 1,
                category: 3,
                categories: 3
            }
        ),
        "{err:?}"
    );
    let err = ValueSet::from_strings(KeySpec::SINGLE, [("a", 1, 0), ("b", 1, 1), ("a", 2, 1)])
        .unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::CategoryConflict {
                row: 2,
                first: 0,
                found: 1
            }
        ),
        "{err:?}"
    );
    // A sum range the decryption cannot search.
    let p = params(&mut rng, 1, (0, MAX_ABS_VALUE), 0);
    let values =
        ValueSet::from_strings(KeySpec::SINGLE, (0..20).map(|i| (format!("v{i}"), 1, 0))).unwrap();
    let err = local::run(p, key_set(&[1]), values, zero_noise(1), &mut rng).unwrap_err();
    assert!(
        matches!(err, JoinError::RangeTooWide { what: "sum", .. }),
        "{err:?}"
    );
    for (categories, bounds, noise) in [
        (0, (0, 1), 0),
        (MAX_CATEGORIES + 1, (0, 1), 0),
        (1, (2, 1), 0),
        (1, (0, MAX_ABS_VALUE + 1), 0),
        (1, (0, 1), MAX_NOISE_BOUND + 1),
    ] {
        assert!(matches!(
            JoinParams::new(
                SessionId::random(&mut rng),
                KeySpec::SINGLE,
                categories,
                bounds,
                noise
            ),
            Err(JoinError::InvalidParameter { .. })
        ));
    }
}

#[test]
fn out_of_order_messages_are_refused() {
    let mut rng = StdRng::seed_from_u64(16);
    let (p, k, v) = fixture(&mut rng, 1);
    let (waiting, offer) = ValueHolderAwaitQuery::start(p, v, &mut rng).unwrap();
    let err = waiting
        .handle(JoinMessage::decode(offer.as_bytes()).unwrap())
        .unwrap_err();
    assert!(matches!(err, JoinError::Unexpected { .. }), "{err:?}");
    let (blinding, query) = KeyHolderBlinding::start(p, k, &mut rng).unwrap();
    let err = blinding.finish().unwrap_err();
    assert!(
        matches!(
            err,
            JoinError::Incomplete {
                what: "blinded batches",
                ..
            }
        ),
        "{err:?}"
    );
    let mut rng2 = StdRng::seed_from_u64(17);
    let (blinding, _) = KeyHolderBlinding::start(p, key_set(&[]), &mut rng2).unwrap();
    let mut unblinding = blinding.finish().unwrap();
    let err = unblinding
        .handle(JoinMessage::decode(query.as_bytes()).unwrap())
        .unwrap_err();
    assert!(matches!(err, JoinError::Unexpected { .. }), "{err:?}");
}

#[test]
fn secrets_do_not_print() {
    let mut rng = StdRng::seed_from_u64(18);
    let noise = JoinNoise::new(vec![123_456], vec![654_321]);
    assert_eq!(format!("{noise:?}"), "JoinNoise { .. }");
    let (p, _, v) = fixture(&mut rng, 1);
    let (waiting, _) = ValueHolderAwaitQuery::start(p, v, &mut rng).unwrap();
    let shown = format!("{waiting:?}");
    assert!(
        shown.contains("items: 20") && !shown.contains("Scalar"),
        "{shown}"
    );
}
