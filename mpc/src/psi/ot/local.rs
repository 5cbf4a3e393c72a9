//! Both OT-PSI roles in one process, over in-memory channels (for `concord bench psi --protocol
//! ot` and the tests). As in [`crate::psi::local`], each role runs on its own thread and every
//! frame is encoded and strictly decoded; the AES work runs on rayon's global pool.

use std::sync::mpsc::{Receiver, channel};

use rand::rngs::StdRng;
use rand::{CryptoRng, SeedableRng as _};

use super::{OtMessage, OtPsiError, OtPsiParams, OtReceiverStart, OtSenderAwaitHello};
use crate::psi::local::{Link, LocalRun, join};
use crate::psi::{KeySet, PsiError};
use crate::session::Frame;

fn recv(rx: &Receiver<Frame>) -> Result<OtMessage, OtPsiError> {
    let frame = rx.recv().map_err(|_| PsiError::PeerGone)?;
    Ok(OtMessage::decode(frame.as_bytes())?)
}

/// Runs one OT-PSI session between a receiver holding `receiver_keys` and a sender holding
/// `sender_keys`, each role drawing its secrets from its own generator seeded from `rng`.
pub fn run<R: CryptoRng + ?Sized>(
    params: OtPsiParams,
    receiver_keys: KeySet,
    sender_keys: KeySet,
    rng: &mut R,
) -> Result<LocalRun, OtPsiError> {
    let mut receiver_rng = StdRng::from_rng(rng);
    let mut sender_rng = StdRng::from_rng(rng);
    let (to_sender, from_receiver) = channel::<Frame>();
    let (to_receiver, from_sender) = channel::<Frame>();
    std::thread::scope(|scope| {
        let sender = scope.spawn(move || {
            let mut link = Link::new(to_receiver);
            let waiting = OtSenderAwaitHello::start(params, sender_keys, &mut sender_rng)?;
            let (mut extending, setup) = waiting.handle(recv(&from_receiver)?, &mut sender_rng)?;
            link.send(setup);
            while !extending.is_complete() {
                extending.handle(recv(&from_receiver)?)?;
            }
            let mut answering = extending.finish()?;
            while let Some(frame) = answering.next_batch() {
                link.send(frame);
            }
            Ok::<_, OtPsiError>((answering.finish()?, link.bytes, link.frames))
        });

        let receiver = scope.spawn(move || {
            let mut link = Link::new(to_sender);
            let (waiting, hello) =
                OtReceiverStart::start(params, receiver_keys, &mut receiver_rng)?;
            link.send(hello);
            let mut extending = waiting.handle(recv(&from_sender)?)?;
            while let Some(frame) = extending.next_batch() {
                link.send(frame);
            }
            let mut comparing = extending.finish()?;
            while !comparing.is_complete() {
                comparing.handle(recv(&from_sender)?)?;
            }
            Ok::<_, OtPsiError>((comparing.finish()?, link.bytes, link.frames))
        });

        let (receiver, sender) = match (join(receiver), join(sender)) {
            (Ok(r), Ok(s)) => (r, s),
            // One role failing makes the other see the channel close: report the cause.
            (Err(OtPsiError::Psi(PsiError::PeerGone)), Err(e)) | (Err(e), _) | (_, Err(e)) => {
                return Err(e);
            }
        };
        Ok(LocalRun {
            frames: receiver.2 + sender.2,
            bytes_to_sender: receiver.1,
            bytes_to_receiver: sender.1,
            receiver: receiver.0,
            sender: sender.0,
        })
    })
}
