//! Both roles in one process, over in-memory channels: for benchmarks, tests and capacity
//! planning (`concord bench psi`).
//!
//! Each role runs on its own OS thread and exchanges encoded [`Frame`]s, so encoding, strict
//! decoding and every byte on the wire are measured as a node would pay for them. Arithmetic runs
//! on rayon's global pool (size it with `rayon::ThreadPoolBuilder::build_global`); the role
//! threads only orchestrate. Channels are unbounded: both roles send before they read, as they
//! would on a full-duplex stream, so bounded channels could deadlock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use rand::rngs::StdRng;
use rand::{CryptoRng, SeedableRng as _};
use rayon::prelude::*;

use super::{
    Frame, KeySet, Message, PsiError, PsiParams, ReceiverBlinding, ReceiverOutput,
    SenderAwaitQuery, SenderEncoding, SenderNext, SenderOutput,
};

/// Outputs and traffic of an in-process run.
#[derive(Clone, Debug)]
pub struct LocalRun {
    /// What the receiver learned.
    pub receiver: ReceiverOutput,
    /// What the sender learned.
    pub sender: SenderOutput,
    /// Bytes from receiver to sender.
    pub bytes_to_sender: u64,
    /// Bytes from sender to receiver.
    pub bytes_to_receiver: u64,
    /// Frames in both directions.
    pub frames: u64,
}

/// Work done so far, for progress display: group multiplications completed out of the
/// `3·|X| + |Y|` a run needs.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
}

impl Progress {
    /// Multiplications done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.done.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Counts frames and bytes on one direction of the channel (shared by every in-process driver).
pub(crate) struct Link {
    tx: Sender<Frame>,
    pub(crate) bytes: u64,
    pub(crate) frames: u64,
}

impl Link {
    pub(crate) fn new(tx: Sender<Frame>) -> Self {
        Self {
            tx,
            bytes: 0,
            frames: 0,
        }
    }

    pub(crate) fn send(&mut self, frame: Frame) {
        self.bytes += frame.len() as u64;
        self.frames += 1;
        // The peer thread only hangs up after an error, which is reported from its side.
        let _ = self.tx.send(frame);
    }
}

fn recv(rx: &Receiver<Frame>) -> Result<Message, PsiError> {
    let frame = rx.recv().map_err(|_| PsiError::PeerGone)?;
    Ok(Message::decode(frame.as_bytes())?)
}

/// Runs a one-shot session between a receiver holding `receiver_keys` and a sender holding
/// `sender_keys`, each role drawing its secrets from its own generator seeded from `rng`.
pub fn run<R: CryptoRng + ?Sized>(
    params: PsiParams,
    receiver_keys: KeySet,
    sender_keys: KeySet,
    rng: &mut R,
    progress: &Progress,
) -> Result<LocalRun, PsiError> {
    let mut receiver_rng = StdRng::from_rng(rng);
    let mut sender_rng = StdRng::from_rng(rng);
    let (to_sender, from_receiver) = channel::<Frame>();
    let (to_receiver, from_sender) = channel::<Frame>();
    std::thread::scope(|scope| {
        let sender = scope.spawn(move || {
            let mut link = Link::new(to_receiver);
            let encoding = Arc::new(SenderEncoding::with_progress(
                params.hash_domain(),
                sender_keys,
                &mut sender_rng,
                &|n| progress.add(n),
            ));
            for frame in encoding.set_frames(&params) {
                link.send(frame);
            }
            let state = SenderAwaitQuery::start(params, encoding, &mut sender_rng)?;
            let mut state = state.handle(recv(&from_receiver)?)?;
            while !state.is_complete() {
                let message = recv(&from_receiver)?;
                let n = match &message {
                    Message::Blinded(points) => points.len(),
                    _ => 0,
                };
                if let Some(frame) = state.handle(message)? {
                    link.send(frame);
                }
                progress.add(n);
            }
            let (frames, next) = state.finish()?;
            for frame in frames {
                link.send(frame);
            }
            let output = match next {
                SenderNext::Done(output) => output,
                SenderNext::AwaitOutcome(mut waiting) => {
                    while !waiting.is_complete() {
                        waiting.handle(recv(&from_receiver)?)?;
                    }
                    waiting.finish()?
                }
            };
            Ok::<_, PsiError>((output, link.bytes, link.frames))
        });

        let receiver = scope.spawn(move || {
            let mut link = Link::new(to_sender);
            let (mut blinding, header) =
                ReceiverBlinding::start(params, receiver_keys, &mut receiver_rng)?;
            link.send(header);
            let mut remaining = blinding.remaining();
            while let Some(frame) = blinding.next_batch() {
                link.send(frame);
                progress.add(remaining - blinding.remaining());
                remaining = blinding.remaining();
            }
            let mut collecting = blinding.finish()?;
            while !collecting.is_complete() {
                let message = recv(&from_sender)?;
                let n = match &message {
                    Message::Evaluated(points) => points.len(),
                    _ => 0,
                };
                collecting.handle(message)?;
                progress.add(n);
            }
            let (output, frames) = collecting.finish()?;
            for frame in frames {
                link.send(frame);
            }
            Ok::<_, PsiError>((output, link.bytes, link.frames))
        });

        let (receiver, sender) = match (join(receiver), join(sender)) {
            (Ok(r), Ok(s)) => (r, s),
            // One role failing makes the other see the channel close: report the cause.
            (Err(PsiError::PeerGone), Err(e)) | (Err(e), _) | (_, Err(e)) => return Err(e),
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

/// A role thread's result; a panic in a role is resumed, not turned into an error value.
pub(crate) fn join<T, E>(handle: std::thread::ScopedJoinHandle<'_, Result<T, E>>) -> Result<T, E> {
    match handle.join() {
        Ok(result) => result,
        // A panic in a role is a bug; surface it rather than hide it behind an error value.
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The floor any ECDH-PSI run of `size` items per side stands on: the time this machine takes,
/// on rayon's current pool, for `4·size` variable-base scalar multiplications (the two blindings
/// of each party's items). Point generation is not timed.
pub fn scalar_mul_floor<R: CryptoRng + ?Sized>(size: usize, rng: &mut R) -> Duration {
    let base = RistrettoPoint::random(rng);
    let step = RistrettoPoint::random(rng);
    let scalars: [Scalar; 4] = std::array::from_fn(|_| Scalar::random(rng));
    let points: Vec<RistrettoPoint> = (0..size)
        .into_par_iter()
        .map(|i| base + step * Scalar::from(i as u64))
        .collect();
    let start = Instant::now();
    let sum: RistrettoPoint = points
        .par_iter()
        .map(|p| scalars.iter().fold(*p, |acc, s| acc * s))
        .reduce(RistrettoPoint::default, |a, b| a + b);
    let elapsed = start.elapsed();
    std::hint::black_box(sum);
    elapsed
}
