//! Both roles in one process, over in-memory channels: for tests, benchmarks and capacity
//! planning (`concord bench join`).
//!
//! Each role runs on its own OS thread and exchanges encoded [`Frame`]s, so encoding, strict
//! decoding and every byte on the wire are paid as a node would pay them; arithmetic runs on
//! rayon's global pool. Channels are unbounded: both roles send before they read.

use std::sync::mpsc::{Receiver, channel};

use rand::rngs::StdRng;
use rand::{CryptoRng, SeedableRng as _};

use crate::psi::local::{Link, join};

use super::{
    Frame, JoinError, JoinMessage, JoinNoise, JoinOutput, JoinParams, KeyHolderBlinding,
    KeyHolderOutput, KeySet, ValueHolderAwaitQuery, ValueSet,
};

/// Outputs and traffic of an in-process run.
#[derive(Clone, Debug)]
pub struct LocalRun {
    /// What the value holder (the decryptor) learned.
    pub value_holder: JoinOutput,
    /// What the key holder learned.
    pub key_holder: KeyHolderOutput,
    /// Bytes from the key holder to the value holder.
    pub bytes_to_value_holder: u64,
    /// Bytes from the value holder to the key holder.
    pub bytes_to_key_holder: u64,
    /// Frames in both directions.
    pub frames: u64,
}

fn recv(rx: &Receiver<Frame>) -> Result<JoinMessage, JoinError> {
    let frame = rx.recv().map_err(|_| JoinError::PeerGone)?;
    JoinMessage::decode(frame.as_bytes())
}

/// Runs one session between a key holder with `keys` and a value holder with `values`; the key
/// holder adds `noise` (drawn by the caller from the DP layer). Each role draws its secrets from
/// its own generator seeded from `rng`.
pub fn run<R: CryptoRng + ?Sized>(
    params: JoinParams,
    keys: KeySet,
    values: ValueSet,
    noise: JoinNoise,
    rng: &mut R,
) -> Result<LocalRun, JoinError> {
    let mut k_rng = StdRng::from_rng(rng);
    let mut v_rng = StdRng::from_rng(rng);
    let (to_v, from_k) = channel::<Frame>();
    let (to_k, from_v) = channel::<Frame>();
    std::thread::scope(|scope| {
        let key_holder = scope.spawn(move || {
            let mut link = Link::new(to_v);
            let (mut blinding, header) = KeyHolderBlinding::start(params, keys, &mut k_rng)?;
            link.send(header);
            while let Some(frame) = blinding.next_batch() {
                link.send(frame);
            }
            let mut unblinding = blinding.finish()?;
            while !unblinding.is_complete() {
                unblinding.handle(recv(&from_v)?)?;
            }
            let mut matching = unblinding.finish()?;
            while !matching.is_complete() {
                matching.handle(recv(&from_v)?)?;
            }
            let (frame, output) = matching.finish(noise, &mut k_rng)?;
            link.send(frame);
            Ok::<_, JoinError>((output, link.bytes, link.frames))
        });

        let value_holder = scope.spawn(move || {
            let mut link = Link::new(to_k);
            let (waiting, offer) = ValueHolderAwaitQuery::start(params, values, &mut v_rng)?;
            link.send(offer);
            let mut evaluating = waiting.handle(recv(&from_k)?)?;
            while !evaluating.is_complete() {
                evaluating.handle(recv(&from_k)?)?;
            }
            let (frames, waiting) = evaluating.finish()?;
            for frame in frames {
                link.send(frame);
            }
            let output = waiting.handle(recv(&from_k)?)?;
            Ok::<_, JoinError>((output, link.bytes, link.frames))
        });

        let (k, v) = match (join(key_holder), join(value_holder)) {
            (Ok(k), Ok(v)) => (k, v),
            // One role failing makes the other see the channel close: report the cause.
            (Err(JoinError::PeerGone), Err(e)) | (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        Ok(LocalRun {
            frames: k.2 + v.2,
            bytes_to_value_holder: k.1,
            bytes_to_key_holder: v.1,
            key_holder: k.0,
            value_holder: v.0,
        })
    })
}
