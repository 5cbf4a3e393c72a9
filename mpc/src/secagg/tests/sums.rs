//! The sum equals the plaintext sum for random parties, thresholds, lengths and dropouts.

use proptest::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::super::local::{self, DropPoint, LocalParty};
use super::super::prg;
use super::*;

/// Which parties end up in the sum, or the round that falls below the threshold.
fn expected_outcome(drops: &[Option<DropPoint>], t: u16) -> Result<Vec<u16>, Round> {
    let alive = |excluded: &[DropPoint]| -> Vec<u16> {
        (0..drops.len() as u16)
            .filter(|&u| !drops[usize::from(u)].is_some_and(|d| excluded.contains(&d)))
            .collect()
    };
    use DropPoint::*;
    let t = usize::from(t);
    if alive(&[BeforeAdvertising]).len() < t {
        return Err(Round::AdvertiseKeys);
    }
    if alive(&[BeforeAdvertising, AfterAdvertising]).len() < t {
        return Err(Round::ShareKeys);
    }
    let u3 = alive(&[
        BeforeAdvertising,
        AfterAdvertising,
        AfterSharing,
        DuringMasking,
    ]);
    if u3.len() < t {
        return Err(Round::MaskedInput);
    }
    if alive(&[
        BeforeAdvertising,
        AfterAdvertising,
        AfterSharing,
        DuringMasking,
        AfterMasking,
    ])
    .len()
        < t
    {
        return Err(Round::Unmasking);
    }
    Ok(u3)
}

/// Runs a session and checks it against the plaintext, and checks the aggregator's view: no
/// owner's self-mask share and mask-key share are both ever revealed.
fn check_run(n: usize, t: u16, len: usize, chunk: usize, drops: &[Option<DropPoint>], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let ids = identities(n, &mut rng);
    let params = params_for(&ids, t, len, &mut rng);
    let inputs = inputs(&params, &mut rng);
    let parties: Vec<LocalParty<'_>> = (0..n)
        .map(|u| LocalParty {
            identity: &ids[u],
            input: &inputs[u],
            drops: drops[u],
        })
        .collect();
    let mut revealed_self = std::collections::BTreeSet::new();
    let mut revealed_key = std::collections::BTreeSet::new();
    let result = local::run_with(
        &params,
        &parties,
        chunk,
        &mut |m| {
            if let Body::Unmask {
                self_mask,
                mask_key,
                ..
            } = &m.body
            {
                revealed_self.extend(self_mask.iter().map(|(o, _)| *o));
                revealed_key.extend(mask_key.iter().map(|(o, _)| *o));
            }
        },
        &mut rng,
    );
    assert!(
        revealed_self.is_disjoint(&revealed_key),
        "both shares revealed for {:?}",
        revealed_self
            .intersection(&revealed_key)
            .collect::<Vec<_>>()
    );
    match (expected_outcome(drops, t), result) {
        (Ok(u3), Ok(run)) => {
            assert_eq!(run.aggregate.contributors, u3);
            assert_eq!(run.aggregate.sum, plaintext_sum(&inputs, &u3));
            let excluded: Vec<u16> = (0..n as u16).filter(|u| !u3.contains(u)).collect();
            assert_eq!(run.aggregate.excluded, excluded);
            // Only dropped parties' mask keys were revealed, only survivors' self masks.
            assert!(revealed_key.iter().all(|o| !u3.contains(o)));
            assert!(revealed_self.iter().all(|o| u3.contains(o)));
        }
        (
            Err(round),
            Err(SecAggError::BelowThreshold {
                round: got,
                have,
                threshold,
            }),
        ) => {
            assert_eq!(got, round);
            assert!(have < usize::from(threshold));
            assert_eq!(threshold, t);
        }
        (expected, got) => panic!("expected {expected:?}, got {got:?}"),
    }
}

fn drop_point() -> impl Strategy<Value = Option<DropPoint>> {
    prop_oneof![
        12 => Just(None),
        1 => Just(Some(DropPoint::BeforeAdvertising)),
        1 => Just(Some(DropPoint::AfterAdvertising)),
        1 => Just(Some(DropPoint::AfterSharing)),
        1 => Just(Some(DropPoint::DuringMasking)),
        1 => Just(Some(DropPoint::AfterMasking)),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, u16, usize, usize, Vec<Option<DropPoint>>)> {
    (2usize..=8, 0.0f64..1.0, 1usize..=2500, 0usize..3).prop_flat_map(|(n, tf, len, c)| {
        let lo = n / 2 + 1;
        let t = (lo + ((n - lo) as f64 * tf).round() as usize) as u16;
        let chunk = [len, 997, 64][c];
        (
            Just(n),
            Just(t),
            Just(len),
            Just(chunk),
            prop::collection::vec(drop_point(), n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sum_equals_plaintext_under_any_dropouts(
        (n, t, len, chunk, drops) in scenario(),
        seed in any::<u64>(),
    ) {
        check_run(n, t, len, chunk, &drops, seed);
    }
}

#[test]
fn every_drop_point_at_the_threshold() {
    // Five parties, t = 3: two may vanish, at any pair of points; a third sinks the round.
    use DropPoint::*;
    let points = [
        BeforeAdvertising,
        AfterAdvertising,
        AfterSharing,
        DuringMasking,
        AfterMasking,
    ];
    for (i, a) in points.iter().enumerate() {
        for b in &points[i..] {
            check_run(5, 3, 300, 128, &[None, Some(*a), None, Some(*b), None], 1);
            check_run(
                5,
                3,
                300,
                128,
                &[Some(*a), None, Some(*b), None, Some(AfterSharing)],
                2,
            );
        }
    }
}

#[test]
fn long_vectors_across_prg_chunks_and_frames() {
    // Longer than two PRG tasks and several frames, odd length, with recovery of two parties.
    let len = 2 * prg::CHUNK_WORDS + 1235;
    let drops = [
        None,
        Some(DropPoint::AfterSharing),
        None,
        Some(DropPoint::DuringMasking),
        None,
        Some(DropPoint::AfterMasking),
        None,
    ];
    check_run(7, 4, len, 5000, &drops, 3);
}

#[test]
fn extremes_of_the_input_bound_sum_exactly() {
    let mut rng = StdRng::seed_from_u64(4);
    let ids = identities(3, &mut rng);
    let params = params_for(&ids, 2, 4, &mut rng);
    let b = params.input_bound();
    let inputs = [vec![b, -b, b, 0], vec![b, -b, -b, 1], vec![b, -b, b, -1]];
    let parties: Vec<LocalParty<'_>> = (0..3)
        .map(|u| LocalParty {
            identity: &ids[u],
            input: &inputs[u],
            drops: None,
        })
        .collect();
    let run = local::run(&params, &parties, &mut rng).unwrap();
    assert_eq!(run.aggregate.sum, vec![3 * b, -3 * b, b, 0]);
    assert_eq!(3 * b, i64::MAX - i64::MAX % 3);
    // One past the bound is refused by the party, without revealing the value.
    let over = vec![b + 1, 0, 0, 0];
    let parties: Vec<LocalParty<'_>> = (0..3)
        .map(|u| LocalParty {
            identity: &ids[u],
            input: if u == 1 { &over } else { &inputs[u] },
            drops: None,
        })
        .collect();
    let err = local::run(&params, &parties, &mut rng).unwrap_err();
    assert!(
        matches!(err, SecAggError::InputOutOfRange { index: 0, bound } if bound == b),
        "{err}"
    );
    assert!(!err.to_string().contains(&(b + 1).to_string()));
}

#[test]
fn traffic_is_linear_in_the_vector() {
    let mut rng = StdRng::seed_from_u64(5);
    let n = 6;
    let len = 10_000;
    let ids = identities(n, &mut rng);
    let params = params_for(&ids, 4, len, &mut rng);
    let inputs = inputs(&params, &mut rng);
    let parties: Vec<LocalParty<'_>> = (0..n)
        .map(|u| LocalParty {
            identity: &ids[u],
            input: &inputs[u],
            drops: None,
        })
        .collect();
    let run = local::run(&params, &parties, &mut rng).unwrap();
    for u in 0..n {
        // 8 bytes per entry, one frame header; keys, envelopes and shares are O(n).
        let masked = 8 * len as u64 + (wire::HEADER_LEN + 10) as u64;
        let overhead = run.sent[u] - masked;
        let per_peer = (2 + SEALED_LEN) as u64;
        assert!(overhead < 200 + n as u64 * (per_peer + 34), "{overhead}");
    }
    assert_eq!(
        run.bytes_per_party(),
        (0..n).map(|u| run.sent[u] + run.received[u]).max().unwrap()
    );
}
