//! The key holder's side of a join (a participant): draws the noise and runs its rounds over
//! its keys, adding the noise under encryption.

use concord_mpc::psi::join::{
    JoinError, JoinNoise, JoinParams, KeyHolderBlinding, KeyHolderOutput,
};
use concord_mpc::psi::{KeySet, KeySpec};

use crate::jobs::error::JobError;
use crate::jobs::exchange::Link;
use crate::jobs::kinds::join::{params, recv, send};
use crate::jobs::table::JobRow;

/// The key holder's rounds; it adds `noise` under encryption.
fn key_holder(
    params: JoinParams,
    keys: KeySet,
    noise: JoinNoise,
    link: &mut Link<'_>,
) -> Result<KeyHolderOutput, JoinError> {
    let mut rng = crate::random::rng();
    let (mut blinding, header) = KeyHolderBlinding::start(params, keys, &mut rng)?;
    send(link, header)?;
    while let Some(frame) = blinding.next_batch() {
        send(link, frame)?;
    }
    let mut unblinding = blinding.finish()?;
    while !unblinding.is_complete() {
        unblinding.handle(recv(link)?)?;
    }
    let mut matching = unblinding.finish()?;
    while !matching.is_complete() {
        matching.handle(recv(link)?)?;
    }
    let (frame, output) = matching.finish(noise, &mut rng)?;
    send(link, frame)?;
    Ok(output)
}

/// The key holder's part at a participant: draws the noise, runs its rounds over its keys.
/// Returns the number of the value holder's distinct keys. `peer_limit` is this node's
/// `[limits] max_keys`.
pub(in crate::jobs) fn participate(
    row: &JobRow,
    spec: KeySpec,
    keys: KeySet,
    peer_limit: u64,
    link: &mut Link<'_>,
) -> Result<u64, JobError> {
    let (_, plan, params) = params(row, spec, peer_limit)?;
    let noise = plan.draw(usize::from(params.categories()))?;
    key_holder(params, keys, noise, link)
        .map(|out| out.peer_items)
        .map_err(|e| match e {
            JoinError::PeerGone => JobError::PeerGone(e.to_string()),
            e => JobError::Protocol(e.to_string()),
        })
}
