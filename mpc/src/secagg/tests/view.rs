//! What the aggregator sees: uniform-looking vectors, and only the sum.

use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::super::crypto::{self, self_mask_key};
use super::super::local::{self, LocalParty};
use super::super::prg::{Sign, apply_masks};
use super::super::shamir::{self, lagrange_at_zero, reconstruct};
use super::*;

/// χ² of the byte histogram of each of the eight byte lanes, as a z-score (Wilson–Hilferty),
/// the largest over lanes. Uniform data stay below ~4 with overwhelming probability.
fn worst_lane_z(words: &[u64]) -> f64 {
    (0..8)
        .map(|lane| {
            let mut counts = [0u64; 256];
            for w in words {
                counts[((w >> (8 * lane)) & 0xff) as usize] += 1;
            }
            let expected = words.len() as f64 / 256.0;
            let chi2: f64 = counts
                .iter()
                .map(|&c| (c as f64 - expected).powi(2) / expected)
                .sum();
            let k = 255.0;
            ((chi2 / k).cbrt() - (1.0 - 2.0 / (9.0 * k))) / (2.0 / (9.0 * k)).sqrt()
        })
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Shares by owner, as an unmasking response lists them.
type OwnerShares = Vec<(u16, ShareValue)>;

/// Collects, from the aggregator's view, each party's masked vector and the unmasking shares.
#[derive(Default)]
struct View {
    masked: std::collections::BTreeMap<u16, Vec<u64>>,
    unmask: Vec<(u16, OwnerShares, usize)>,
}

#[test]
fn the_aggregator_sees_uniform_vectors_and_only_the_sum() {
    let mut rng = StdRng::seed_from_u64(6);
    let n = 4;
    let len = 1 << 14;
    let ids = identities(n, &mut rng);
    let params = params_for(&ids, 3, len, &mut rng);
    // Maximally structured inputs: zeros, a constant, a ramp, a sparse histogram.
    let inputs: Vec<Vec<i64>> = vec![
        vec![0; len],
        vec![1; len],
        (0..len as i64).collect(),
        (0..len).map(|i| i64::from(i % 97 == 0)).collect(),
    ];
    for plain in &inputs {
        let words: Vec<u64> = plain.iter().map(|&x| x as u64).collect();
        assert!(worst_lane_z(&words) > 50.0, "the check must see structure");
    }
    let parties: Vec<LocalParty<'_>> = (0..n)
        .map(|u| LocalParty {
            identity: &ids[u],
            input: &inputs[u],
            drops: None,
        })
        .collect();
    let mut view = View::default();
    let run = local::run_with(
        &params,
        &parties,
        4096,
        &mut |m| match &m.body {
            Body::Masked { from, words, .. } => {
                view.masked.entry(*from).or_default().extend(words);
            }
            Body::Unmask {
                from,
                self_mask,
                mask_key,
            } => view.unmask.push((*from, self_mask.clone(), mask_key.len())),
            _ => {}
        },
        &mut rng,
    )
    .unwrap();
    assert_eq!(run.aggregate.sum, plaintext_sum(&inputs, &[0, 1, 2, 3]));

    // With everyone present, no mask-key share reaches the aggregator.
    assert!(view.unmask.iter().all(|(_, _, keys)| *keys == 0));

    // Each masked vector looks uniform, whatever the input.
    for (party, y) in &view.masked {
        let z = worst_lane_z(y);
        assert!(z < 5.0, "party {party}: z = {z}");
    }

    // The most the aggregator can do to one vector: rebuild its self-mask seed from the shares
    // it was sent and strip PRG(b_u). The pairwise masks keep the rest uniform.
    let holders: Vec<u16> = view.unmask.iter().map(|(from, _, _)| *from).collect();
    let lagrange = lagrange_at_zero(&holders);
    for (k, (party, y)) in view.masked.iter().enumerate() {
        let seed = reconstruct(view.unmask.iter().map(|(_, s, _)| &s[k].1), &lagrange);
        let mut stripped = y.clone();
        apply_masks(
            &mut stripped,
            &[(self_mask_key(&params, *party, &seed), Sign::Sub)],
        );
        let z = worst_lane_z(&stripped);
        assert!(z < 5.0, "party {party} without its self mask: z = {z}");
    }

    // Negative control: a vector masked in its low 32 bits only is caught by the same check.
    let half: Vec<u64> = view.masked[&1]
        .iter()
        .map(|y| (y & 0xffff_ffff) | (1u64 << 40))
        .collect();
    assert!(worst_lane_z(&half) > 50.0);
}

/// Parameters, party 0's masked vector, the roster, and each responder's
/// `(self-mask shares, mask-key shares)`.
type Deterministic = (
    SecAggParams,
    Vec<u64>,
    Vec<RosterEntry>,
    Vec<(u16, OwnerShares, OwnerShares)>,
);

/// One run of a four-party session, fully determined by its seed, in which the aggregator sends
/// `request` as the survivor list to the parties it names. Returns party 0's masked vector, the
/// roster and each responder's `(self-mask shares, mask-key shares)`.
fn deterministic_session(x0: &[i64], request: &[u16]) -> Deterministic {
    let mut rng = StdRng::seed_from_u64(18);
    let ids = identities(4, &mut rng);
    let params = params_for(&ids, 3, x0.len(), &mut rng);
    let Shared {
        parties,
        mut server,
        forwarded,
        ..
    } = through_sharing(&ids, &params, &mut rng);
    let mut y0 = Vec::new();
    let mut waiting = Vec::new();
    for (u, (p, (_, frame))) in parties.into_iter().zip(&forwarded).enumerate() {
        let input = if u == 0 {
            x0.to_vec()
        } else {
            vec![0; x0.len()]
        };
        let mut masked = p
            .handle(Message::decode(&frame.0).unwrap(), &input)
            .unwrap();
        while let Some(f) = masked.next_frame() {
            let m = Message::decode(&f.0).unwrap();
            if let Body::Masked { from: 0, words, .. } = &m.body {
                y0.extend(words);
            }
            server.handle(m).unwrap();
        }
        waiting.push(masked.finish().unwrap());
    }
    let roster = server.close().unwrap().0.roster_for_tests();
    let frame = wire::unmask_request(params.session(), request);
    let responses = waiting
        .into_iter()
        .enumerate()
        .filter(|(u, _)| request.contains(&(*u as u16)))
        .map(|(_, p)| {
            let f = p.handle(Message::decode(&frame.0).unwrap()).unwrap();
            let Body::Unmask {
                from,
                self_mask,
                mask_key,
            } = Message::decode(&f.0).unwrap().body
            else {
                panic!("not unmasking shares");
            };
            (from, self_mask, mask_key)
        })
        .collect();
    (params, y0, roster, responses)
}

fn rebuild<'a>(shares: impl Iterator<Item = (u16, &'a ShareValue)>) -> shamir::Seed {
    let (holders, values): (Vec<u16>, Vec<&ShareValue>) = shares.unzip();
    reconstruct(values, &lagrange_at_zero(&holders))
}

#[test]
fn a_survivor_falsely_reported_dropped_stays_hidden_by_its_self_mask() {
    // A lying aggregator collects party 0's masked vector, then tells parties 1, 2, 3 that party
    // 0 dropped. They reveal its mask-key shares (each answers once, so the aggregator cannot
    // also get party 0's self-mask shares from them); the aggregator strips every pairwise mask
    // from y_0 — and still faces x_0 + PRG(b_0), which looks uniform.
    let len = 1 << 14;
    let x0: Vec<i64> = (0..len as i64).map(|i| i % 5).collect();
    let (params, y0, roster, lied_to) = deterministic_session(&x0, &[1, 2, 3]);
    assert!(
        lied_to
            .iter()
            .all(|(_, own, _)| own.iter().all(|(o, _)| *o != 0))
    );
    let seed = rebuild(lied_to.iter().map(|(h, _, keys)| (*h, &keys[0].1)));
    let secret = crypto::SessionSecret::mask_key(&params, 0, &seed);
    assert_eq!(
        secret.public(),
        roster[0].mask_key,
        "the mask key was rebuilt"
    );
    let mut stripped = y0.clone();
    for entry in &roster[1..] {
        let dh = secret.agree(&entry.mask_key).unwrap();
        // Party 0 added PRG(s_0v) for every v > 0.
        let key = crypto::pair_mask_key(&params, &dh, 0, entry.party);
        apply_masks(&mut stripped, &[(key, Sign::Sub)]);
    }
    let z = worst_lane_z(&stripped);
    assert!(z < 5.0, "x_0 + PRG(b_0) must look uniform: z = {z}");

    // Only with the self-mask shares too — which needs a second, honest run of the very same
    // session, i.e. a second answer from each party — does x_0 appear. So the remainder above was
    // exactly x_0 + PRG(b_0), and the self mask alone is what protects it.
    let (_, y0_again, _, honest) = deterministic_session(&x0, &[0, 1, 2, 3]);
    assert_eq!(y0_again, y0);
    let b0 = rebuild(honest.iter().take(3).map(|(h, own, _)| (*h, &own[0].1)));
    apply_masks(
        &mut stripped,
        &[(self_mask_key(&params, 0, &b0), Sign::Sub)],
    );
    let recovered: Vec<i64> = stripped.iter().map(|&w| w as i64).collect();
    assert_eq!(recovered, x0);
}
