//! Protocol tests: sums against the plaintext under every dropout pattern ([`sums`]), what the
//! aggregator sees ([`view`]), and every refusal: tampering, replay, other sessions, bad lists,
//! bad parameters ([`refusals`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod refusals;
mod sums;
mod view;

use rand::RngExt as _;
use rand::rngs::StdRng;

use super::*;

pub(super) fn identities(n: usize, rng: &mut StdRng) -> Vec<IdentityKey> {
    (0..n).map(|_| IdentityKey::random(rng)).collect()
}

pub(super) fn params_for(
    ids: &[IdentityKey],
    t: u16,
    len: usize,
    rng: &mut StdRng,
) -> SecAggParams {
    SecAggParams::new(
        SessionId::random(rng),
        ids.iter().map(IdentityKey::public).collect(),
        t,
        len,
    )
    .unwrap()
}

/// Vectors within the bound, mixing small counts, negative noise and the extremes.
pub(super) fn inputs(params: &SecAggParams, rng: &mut StdRng) -> Vec<Vec<i64>> {
    let bound = params.input_bound();
    (0..params.parties())
        .map(|_| {
            (0..params.length())
                .map(|_| match rng.random_range(0..10u8) {
                    0 => bound,
                    1 => -bound,
                    2 => rng.random_range(-bound..=bound),
                    _ => rng.random_range(-50..1000),
                })
                .collect()
        })
        .collect()
}

/// The plaintext sum of the contributors, in i128 so that it cannot wrap, then checked to fit.
pub(super) fn plaintext_sum(inputs: &[Vec<i64>], contributors: &[u16]) -> Vec<i64> {
    let len = inputs[0].len();
    (0..len)
        .map(|i| {
            let total: i128 = contributors
                .iter()
                .map(|&u| i128::from(inputs[usize::from(u)][i]))
                .sum();
            i64::try_from(total).expect("the input bound keeps totals in i64")
        })
        .collect()
}

/// A session driven by hand up to the forwarded shares.
pub(super) struct Shared {
    params: SecAggParams,
    parties: Vec<PartyAwaitShares>,
    server: ServerAwaitMasked,
    forwarded: Vec<(u16, Frame)>,
}

pub(super) fn through_sharing(
    ids: &[IdentityKey],
    params: &SecAggParams,
    rng: &mut StdRng,
) -> Shared {
    let mut server = ServerAwaitKeys::new(params.clone());
    let mut waiting = Vec::new();
    for (u, id) in ids.iter().enumerate() {
        let (state, frame) = PartyAwaitRoster::start(params.clone(), u as u16, id, rng).unwrap();
        server.handle(Message::decode(&frame.0).unwrap()).unwrap();
        waiting.push(state);
    }
    let (mut server, roster) = server.close().unwrap();
    let mut parties = Vec::new();
    for state in waiting {
        let (state, frame) = state
            .handle(Message::decode(&roster.0).unwrap(), rng)
            .unwrap();
        server.handle(Message::decode(&frame.0).unwrap()).unwrap();
        parties.push(state);
    }
    let (server, forwarded) = server.close().unwrap();
    Shared {
        params: params.clone(),
        parties,
        server,
        forwarded,
    }
}
