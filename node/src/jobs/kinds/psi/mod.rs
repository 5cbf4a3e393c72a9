//! The PSI roles of `concord-mpc` (ECDH, or OT extension for intersections), driven over a
//! job's exchange on a blocking thread.
//!
//! The coordinator is the receiver (it compares and holds the output); the participant is the
//! sender. The typed rounds are those of `concord_mpc::psi::local` and `psi::ot::local`, with the
//! in-memory channel replaced by the job's envelopes. Group and AES work runs on rayon's pool.

pub(in crate::jobs) mod coordinator;

use std::sync::Arc;

use concord_mpc::psi::ot::{
    OtMessage, OtPsiError, OtPsiParams, OtReceiverStart, OtSenderAwaitHello,
};
use concord_mpc::psi::{
    KeySet, Message, OutputKind, PsiError, PsiParams, ReceiverBlinding, ReceiverOutput, Recipients,
    SenderAwaitQuery, SenderEncoding, SenderNext, SessionId,
};
use sha2::{Digest as _, Sha256};

use crate::jobs::error::JobError;
use crate::jobs::exchange::{Outbound, PSI};
use crate::jobs::table::Protocol;

/// An automatic intersection uses OT extension from this many rows at the coordinator (below it,
/// the ECDH mode's fewer bytes and round trips win).
pub(in crate::jobs) const OT_FROM_ROWS: u64 = 1 << 14;

/// Why a PSI role stopped, in either protocol.
#[derive(Debug)]
pub(in crate::jobs) enum ProtoError {
    /// The ECDH mode, or what both modes share.
    Psi(PsiError),
    /// The OT mode.
    Ot(OtPsiError),
}

impl ProtoError {
    /// The peer closed the exchange (the reader knows why).
    pub(in crate::jobs) fn peer_gone(&self) -> bool {
        matches!(
            self,
            ProtoError::Psi(PsiError::PeerGone)
                | ProtoError::Ot(OtPsiError::Psi(PsiError::PeerGone))
        )
    }
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::Psi(e) => e.fmt(f),
            ProtoError::Ot(e) => e.fmt(f),
        }
    }
}

impl From<PsiError> for ProtoError {
    fn from(e: PsiError) -> Self {
        ProtoError::Psi(e)
    }
}

impl From<OtPsiError> for ProtoError {
    fn from(e: OtPsiError) -> Self {
        ProtoError::Ot(e)
    }
}

/// The session parameters both parties derive from the job and its agreed key spec, with this
/// node's own limit on the peer's keys (`[limits] max_keys`).
pub(in crate::jobs) fn params_of(
    row: &crate::jobs::table::JobRow,
    keys: concord_mpc::psi::KeySpec,
    peer_limit: u64,
) -> Result<PsiParams, JobError> {
    let session = crate::hex::decode_16(&row.spec.session)
        .ok_or_else(|| JobError::terms("bad session id"))?;
    let output = if row.kind == crate::policy::JobKind::PsiIntersection {
        OutputKind::Intersection
    } else {
        OutputKind::Cardinality
    };
    Ok(
        PsiParams::one_shot(SessionId(session), output, Recipients::Receiver, keys)
            .with_peer_limit(peer_limit),
    )
}

/// A fresh session id.
pub(in crate::jobs) fn session() -> [u8; 16] {
    crate::random::bytes()
}

/// A protocol thread's link: frames out, frames in, progress, and a digest of what it sent.
pub(in crate::jobs) struct Link<'a> {
    pub(in crate::jobs) out: &'a Outbound,
    pub(in crate::jobs) recv: Box<dyn FnMut() -> Option<Vec<u8>> + Send + 'a>,
    /// Items done out of a total (0 when the role cannot know it).
    pub(in crate::jobs) progress: Box<dyn Fn(u64, u64) + Send + Sync + 'a>,
    pub(in crate::jobs) sent: Sha256,
    pub(in crate::jobs) frames: u64,
}

impl Link<'_> {
    /// Sends one protocol frame; false if the exchange is gone.
    pub(in crate::jobs) fn send_frame(&mut self, frame: concord_mpc::Frame) -> bool {
        self.sent.update(frame.as_bytes());
        self.frames += 1;
        self.out.blocking_send(PSI, frame.0)
    }

    /// The next protocol frame; `None` once the peer's frames have ended.
    pub(in crate::jobs) fn recv_frame(&mut self) -> Option<Vec<u8>> {
        (self.recv)()
    }

    fn send(&mut self, frame: concord_mpc::Frame) -> Result<(), PsiError> {
        if self.send_frame(frame) {
            Ok(())
        } else {
            Err(PsiError::PeerGone)
        }
    }

    fn recv(&mut self) -> Result<Message, PsiError> {
        let frame = (self.recv)().ok_or(PsiError::PeerGone)?;
        Ok(Message::decode(&frame)?)
    }

    fn recv_ot(&mut self) -> Result<OtMessage, OtPsiError> {
        let frame = (self.recv)().ok_or(PsiError::PeerGone)?;
        Ok(OtMessage::decode(&frame)?)
    }
}

/// The OT-mode parameters of the same session (intersection to the receiver only).
fn ot_params(params: &PsiParams) -> Result<OtPsiParams, OtPsiError> {
    Ok(OtPsiParams::new(
        params.session(),
        params.output(),
        params.recipients(),
        params.keys(),
    )?
    .with_peer_limit(params.peer_limit()))
}

/// The receiver in `protocol` (`ot`, else ECDH).
pub(in crate::jobs) fn receiver(
    protocol: Protocol,
    params: PsiParams,
    keys: KeySet,
    link: &mut Link<'_>,
) -> Result<ReceiverOutput, ProtoError> {
    if protocol != Protocol::Ot {
        return Ok(ecdh_receiver(params, keys, link)?);
    }
    let mut rng = crate::random::rng();
    let total = keys.len() as u64;
    let (waiting, hello) = OtReceiverStart::start(ot_params(&params)?, keys, &mut rng)?;
    link.send(hello)?;
    let mut extending = waiting.handle(link.recv_ot()?)?;
    while let Some(frame) = extending.next_batch() {
        link.send(frame)?;
    }
    (link.progress)(total, 2 * total);
    let mut comparing = extending.finish()?;
    while !comparing.is_complete() {
        comparing.handle(link.recv_ot()?)?;
    }
    (link.progress)(2 * total, 2 * total);
    Ok(comparing.finish()?)
}

/// The sender in `protocol` (`ot`, else ECDH); returns the receiver's number of distinct keys.
pub(in crate::jobs) fn sender(
    protocol: Protocol,
    params: PsiParams,
    keys: KeySet,
    link: &mut Link<'_>,
) -> Result<u64, ProtoError> {
    if protocol != Protocol::Ot {
        return Ok(ecdh_sender(params, keys, link)?);
    }
    let mut rng = crate::random::rng();
    let waiting = OtSenderAwaitHello::start(ot_params(&params)?, keys, &mut rng)?;
    let (mut extending, setup) = waiting.handle(link.recv_ot()?, &mut rng)?;
    link.send(setup)?;
    while !extending.is_complete() {
        extending.handle(link.recv_ot()?)?;
    }
    let mut answering = extending.finish()?;
    while let Some(frame) = answering.next_batch() {
        link.send(frame)?;
    }
    Ok(answering.finish()?.peer_items)
}

/// The receiver: blinds its keys, collects, compares. Progress counts its keys blinded and
/// evaluations received (2·|X| in all).
fn ecdh_receiver(
    params: PsiParams,
    keys: KeySet,
    link: &mut Link<'_>,
) -> Result<ReceiverOutput, PsiError> {
    let mut rng = crate::random::rng();
    let total = 2 * keys.len() as u64;
    let (mut blinding, header) = ReceiverBlinding::start(params, keys, &mut rng)?;
    link.send(header)?;
    let mut done = 0u64;
    let mut remaining = blinding.remaining();
    while let Some(frame) = blinding.next_batch() {
        link.send(frame)?;
        done += (remaining - blinding.remaining()) as u64;
        remaining = blinding.remaining();
        (link.progress)(done, total);
    }
    let mut collecting = blinding.finish()?;
    while !collecting.is_complete() {
        let message = link.recv()?;
        if let Message::Evaluated(points) = &message {
            done += points.len() as u64;
            (link.progress)(done, total);
        }
        collecting.handle(message)?;
    }
    let (output, frames) = collecting.finish()?;
    for frame in frames {
        link.send(frame)?;
    }
    Ok(output)
}

/// The sender: encodes its set, sends its digests, evaluates the receiver's batches. Progress
/// counts the receiver's keys evaluated. Returns the number of distinct keys the receiver
/// announced.
fn ecdh_sender(params: PsiParams, keys: KeySet, link: &mut Link<'_>) -> Result<u64, PsiError> {
    let mut rng = crate::random::rng();
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
        (link.progress)(done, state.announced());
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
