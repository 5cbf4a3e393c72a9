//! One job's `Federation.Exchange` stream, both ways: an outbound writer that numbers envelopes,
//! and an inbound reader that checks every envelope (version, position, names, size) before it
//! looks inside, then hands protocol frames to the protocol and control messages to the job.
//!
//! Backpressure: the outbound channel holds a few envelopes; a full channel blocks the protocol
//! until gRPC (HTTP/2 flow control) has sent them. The participant's inbound frames go through
//! a bounded channel too, so a slow participant slows the coordinator down. The coordinator's
//! inbound frames are buffered without bound while its own protocol thread is still sending:
//! ECDH-PSI has both parties send before they read, so a bounded buffer on both sides could
//! deadlock. That buffer holds at most the participant's evaluations and digests (48 bytes per
//! key), the same order as the protocol's own state at the comparing party.

use std::time::Duration;

use concord_proto::v1 as pb;
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Mutex, mpsc};
use tokio_stream::Stream;
use tokio_stream::StreamExt as _;

/// The protocol name of PSI frames.
pub(super) const PSI: &str = "psi-ecdh";
/// The protocol name of secure-aggregation frames.
pub(super) const SECAGG: &str = "secagg";
/// The protocol name of job control messages.
pub(super) const CONTROL: &str = "job";

/// Envelopes buffered towards the network.
const OUTBOUND_ENVELOPES: usize = 4;
/// PSI frames buffered from the network at a participant.
pub(super) const PARTICIPANT_INBOUND: usize = 4;

/// How long a party may stay silent before the job fails. Generous: the other side may be
/// reading a large file or blinding a large set before it sends again.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

fn version() -> u32 {
    u32::from(concord_mpc::PROTOCOL_VERSION)
}

/// The writing half of an exchange.
pub(super) struct Outbound {
    job: String,
    tx: mpsc::Sender<pb::Envelope>,
    seq: Mutex<u64>,
}

impl Outbound {
    /// A writer and the stream of envelopes to hand to gRPC.
    pub(super) fn new(job: &str) -> (Self, mpsc::Receiver<pb::Envelope>) {
        let (tx, rx) = mpsc::channel(OUTBOUND_ENVELOPES);
        (
            Self {
                job: job.to_owned(),
                tx,
                seq: Mutex::new(0),
            },
            rx,
        )
    }

    fn envelope(&self, seq: u64, protocol: &str, frame: Vec<u8>) -> pb::Envelope {
        pb::Envelope {
            version: version(),
            job_id: self.job.clone(),
            protocol: protocol.into(),
            round: 1,
            seq,
            frames: vec![frame],
            last: false,
        }
    }

    /// Sends one frame from a protocol thread; false if the stream is gone.
    pub(super) fn blocking_send(&self, protocol: &str, frame: Vec<u8>) -> bool {
        let mut seq = self.seq.blocking_lock();
        let envelope = self.envelope(*seq, protocol, frame);
        let sent = self.tx.blocking_send(envelope).is_ok();
        *seq += 1;
        sent
    }

    /// Sends a control message; false if the stream is gone.
    pub(super) async fn control(&self, kind: pb::job_control::Kind) -> bool {
        let frame = pb::JobControl { kind: Some(kind) }.encode_to_vec();
        let mut seq = self.seq.lock().await;
        let envelope = self.envelope(*seq, CONTROL, frame);
        let sent = self.tx.send(envelope).await.is_ok();
        *seq += 1;
        sent
    }
}

/// The control message a `CONTROL` envelope carries, if it is readable.
fn control_of(envelope: &pb::Envelope) -> Option<pb::job_control::Kind> {
    envelope
        .frames
        .first()
        .and_then(|f| pb::JobControl::decode(f.as_slice()).ok())
        .and_then(|c| c.kind)
}

/// Whether an exchange's first envelope ends the job at once (the coordinator ended it before
/// its protocol began).
pub(super) fn opens_with_abort(first: &pb::Envelope) -> bool {
    first.protocol == CONTROL && matches!(control_of(first), Some(pb::job_control::Kind::Abort(_)))
}

/// What the inbound reader hands to the job besides protocol frames.
// A control message (a verdict carries the party's input figures) is a few hundred bytes, and a
// job sees a handful of them: not worth a box on every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Inbound {
    Control(pb::job_control::Kind),
    /// The stream ended or broke, or the peer broke the rules; the reason names what happened.
    Closed(String),
}

/// Where protocol frames go.
pub(super) enum FrameSink {
    Bounded(mpsc::Sender<Vec<u8>>),
    Unbounded(mpsc::UnboundedSender<Vec<u8>>),
}

impl FrameSink {
    async fn send(&self, frame: Vec<u8>) -> bool {
        match self {
            FrameSink::Bounded(tx) => tx.send(frame).await.is_ok(),
            FrameSink::Unbounded(tx) => tx.send(frame).is_ok(),
        }
    }
}

/// Reads the peer's envelopes until the stream ends: PSI frames to `frames`, control messages
/// and the end of the stream to `control`. `first` is an envelope already read (seq 0).
pub(super) async fn read<S>(
    job: String,
    peer: String,
    first: Option<pb::Envelope>,
    mut stream: S,
    frames: FrameSink,
    control: mpsc::UnboundedSender<Inbound>,
) where
    S: Stream<Item = Result<pb::Envelope, tonic::Status>> + Unpin,
{
    let mut frames = Some(frames);
    let mut seq = 0u64;
    let mut pending = first;
    let closed = loop {
        let envelope = match pending.take() {
            Some(e) => e,
            None => match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
                Err(_) => {
                    break format!("peer {peer} sent nothing for {} s", IDLE_TIMEOUT.as_secs());
                }
                Ok(None) => break format!("peer {peer} closed the exchange"),
                Ok(Some(Err(status))) => {
                    break format!(
                        "peer {peer}: connection lost ({:?}: {})",
                        status.code(),
                        status.message()
                    );
                }
                Ok(Some(Ok(e))) => e,
            },
        };
        if let Err(e) = concord_proto::envelope::check(&envelope, version(), seq) {
            break format!("peer {peer} sent a bad envelope: {e}");
        }
        if envelope.job_id != job {
            break format!("peer {peer} sent an envelope of job {:?}", envelope.job_id);
        }
        seq += 1;
        match envelope.protocol.as_str() {
            PSI | SECAGG => {
                for frame in envelope.frames {
                    let delivered = match &frames {
                        Some(sink) => sink.send(frame).await,
                        None => false,
                    };
                    if !delivered {
                        // The protocol is over (or failed); late frames are a peer error.
                        frames = None;
                    }
                }
            }
            CONTROL => {
                match control_of(&envelope) {
                    // The opening of an aggregate's exchange: nothing to hand on.
                    Some(pb::job_control::Kind::Start(_)) => {}
                    Some(kind) => {
                        // Control ends the protocol phase: the protocol thread sees its input end.
                        frames = None;
                        let _ = control.send(Inbound::Control(kind));
                    }
                    None => break format!("peer {peer} sent an unreadable control message"),
                }
            }
            other => break format!("peer {peer} sent frames of unknown protocol {other:?}"),
        }
    };
    drop(frames);
    let _ = control.send(Inbound::Closed(closed));
}

/// A protocol thread's link: frames out, frames in, progress, and a digest of what it sent.
pub(super) struct Link<'a> {
    pub(super) out: &'a Outbound,
    pub(super) recv: Box<dyn FnMut() -> Option<Vec<u8>> + Send + 'a>,
    /// Items done out of a total (0 when the role cannot know it).
    pub(super) progress: Box<dyn Fn(u64, u64) + Send + Sync + 'a>,
    pub(super) sent: Sha256,
    pub(super) frames: u64,
}

impl Link<'_> {
    /// Sends one protocol frame; false if the exchange is gone.
    pub(super) fn send_frame(&mut self, frame: concord_mpc::Frame) -> bool {
        self.sent.update(frame.as_bytes());
        self.frames += 1;
        self.out.blocking_send(PSI, frame.0)
    }

    /// The next protocol frame; `None` once the peer's frames have ended.
    pub(super) fn recv_frame(&mut self) -> Option<Vec<u8>> {
        (self.recv)()
    }
}
