//! The ECDH-PSI roles of `concord-mpc`, driven over a job's exchange on a blocking thread.
//!
//! The coordinator is the receiver (it compares and holds the output); the participant is the
//! sender. The typed rounds are those of `concord_mpc::psi::local`, with the in-memory channel
//! replaced by the job's envelopes. Group arithmetic runs on rayon's pool.

use std::sync::Arc;

use concord_mpc::psi::{
    KeySet, Message, OutputKind, PsiError, PsiParams, ReceiverBlinding, ReceiverOutput, Recipients,
    SenderAwaitQuery, SenderEncoding, SenderNext, SessionId,
};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use sha2::{Digest as _, Sha256};

use super::exchange::{Outbound, PSI};

/// The session parameters both parties derive from the job.
pub(super) fn params(session: [u8; 16], intersection: bool, key_columns: u8) -> PsiParams {
    let output = if intersection {
        OutputKind::Intersection
    } else {
        OutputKind::Cardinality
    };
    PsiParams::one_shot(
        SessionId(session),
        output,
        Recipients::Receiver,
        concord_mpc::psi::KeySpec {
            columns: key_columns,
            case_fold: false,
        },
    )
}

/// A fresh session id.
pub(super) fn session() -> [u8; 16] {
    rand::rng().random()
}

/// A protocol thread's link: frames out, frames in, progress, and a digest of what it sent.
pub(super) struct Link<'a> {
    pub(super) out: &'a Outbound,
    pub(super) recv: Box<dyn FnMut() -> Option<Vec<u8>> + Send + 'a>,
    pub(super) progress: Box<dyn Fn(u64) + Send + Sync + 'a>,
    pub(super) sent: Sha256,
    pub(super) frames: u64,
}

impl Link<'_> {
    fn send(&mut self, frame: concord_mpc::Frame) -> Result<(), PsiError> {
        self.sent.update(frame.as_bytes());
        self.frames += 1;
        if self.out.blocking_send(PSI, frame.0) {
            Ok(())
        } else {
            Err(PsiError::PeerGone)
        }
    }

    fn recv(&mut self) -> Result<Message, PsiError> {
        let frame = (self.recv)().ok_or(PsiError::PeerGone)?;
        Ok(Message::decode(&frame)?)
    }
}

/// The receiver: blinds its keys, collects, compares. Progress counts its keys blinded and
/// evaluations received (2·|X| in all).
pub(super) fn receiver(
    params: PsiParams,
    keys: KeySet,
    link: &mut Link<'_>,
) -> Result<ReceiverOutput, PsiError> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let (mut blinding, header) = ReceiverBlinding::start(params, keys, &mut rng)?;
    link.send(header)?;
    let mut done = 0u64;
    let mut remaining = blinding.remaining();
    while let Some(frame) = blinding.next_batch() {
        link.send(frame)?;
        done += (remaining - blinding.remaining()) as u64;
        remaining = blinding.remaining();
        (link.progress)(done);
    }
    let mut collecting = blinding.finish()?;
    while !collecting.is_complete() {
        let message = link.recv()?;
        if let Message::Evaluated(points) = &message {
            done += points.len() as u64;
            (link.progress)(done);
        }
        collecting.handle(message)?;
    }
    let (output, frames) = collecting.finish()?;
    for frame in frames {
        link.send(frame)?;
    }
    Ok(output)
}

/// The sender: encodes its set, sends its digests, evaluates the receiver's batches. Returns
/// the number of distinct keys the receiver announced.
pub(super) fn sender(
    params: PsiParams,
    keys: KeySet,
    link: &mut Link<'_>,
) -> Result<u64, PsiError> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let encoding = Arc::new(SenderEncoding::new(params.hash_domain(), keys, &mut rng));
    for frame in encoding.set_frames(&params) {
        link.send(frame)?;
    }
    let state = SenderAwaitQuery::start(params, encoding, &mut rng)?;
    let mut state = state.handle(link.recv()?)?;
    let mut done = 0u64;
    while !state.is_complete() {
        let message = link.recv()?;
        if let Message::Blinded(points) = &message {
            done += points.len() as u64;
        }
        if let Some(frame) = state.handle(message)? {
            link.send(frame)?;
        }
        (link.progress)(done);
    }
    let (frames, next) = state.finish()?;
    for frame in frames {
        link.send(frame)?;
    }
    match next {
        SenderNext::Done(output) => Ok(output.peer_items),
        // Receiver-only sessions never wait for an outcome; a peer asking for one is refused.
        SenderNext::AwaitOutcome(_) => Err(PsiError::ParamsMismatch),
        _ => Err(PsiError::ParamsMismatch),
    }
}
