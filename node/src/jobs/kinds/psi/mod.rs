//! The PSI roles of `concord-mpc` (ECDH, or OT extension for intersections), driven over a
//! job's exchange on a blocking thread.
//!
//! The coordinator is the receiver (it compares and holds the output); the participant is the
//! sender. The typed rounds are those of `concord_mpc::psi::local` and `psi::ot::local`, with the
//! in-memory channel replaced by the job's envelopes. Group and AES work runs on rayon's pool.

pub(in crate::jobs) mod bucketed;
pub(in crate::jobs) mod coordinator;
pub(in crate::jobs) mod participant;

use std::sync::Arc;

use concord_mpc::psi::ot::{
    OtMessage, OtPsiError, OtPsiParams, OtReceiverStart, OtSenderAwaitHello,
};
use concord_mpc::psi::{
    KeySet, Message, OutputKind, PsiError, PsiParams, ReceiverBlinding, ReceiverOutput, Recipients,
    SenderAwaitQuery, SenderEncoding, SenderNext, SessionId,
};

use concord_proto::v1 as pb;

use crate::error::NodeError;
use crate::jobs::error::JobError;
use crate::jobs::exchange::Link;
use crate::jobs::kinds::terms::{Asked, Proposed, Requested, key_columns_fit, own_use, to_peer};
use crate::jobs::lifecycle::dataset;
use crate::jobs::table::Protocol;
use crate::node::Node;
use crate::policy::JobKind;

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

/// A submitted PSI's terms: the left dataset at this node, the right one at a peer, as many key
/// columns on each side, and its protocol (chosen by the left dataset's size when not asked).
pub(in crate::jobs) async fn submitted(
    node: &Arc<Node>,
    p: pb::PsiJob,
    asked: Asked,
) -> Result<Requested, NodeError> {
    let me = &node.config.node.name;
    let invalid = |m: String| NodeError::Invalid(m);
    let kind = match pb::PsiOutput::try_from(p.output) {
        Ok(pb::PsiOutput::Cardinality) => JobKind::PsiCardinality,
        Ok(pb::PsiOutput::Intersection) => JobKind::PsiIntersection,
        _ => return Err(invalid("psi output: cardinality or intersection".into())),
    };
    let left = p.left.unwrap_or_default();
    let right = p.right.unwrap_or_default();
    own_use(me, &left, "the left dataset")?;
    if node.config.peer(&right.node).is_none() {
        return Err(invalid(format!(
            "the right dataset's node {:?} is not a peer of {me}",
            right.node
        )));
    }
    if left.columns.is_empty() || left.columns.len() != right.columns.len() {
        return Err(invalid(
            "both sides need the same number (at least one) of key columns".into(),
        ));
    }
    if kind == JobKind::PsiCardinality && !asked.positive {
        return Err(invalid("a cardinality needs --epsilon > 0".into()));
    }
    let requested = Protocol::from_pb(p.protocol)?;
    let protocol = match (requested, kind) {
        (Some(Protocol::Ot), JobKind::PsiCardinality) => {
            return Err(invalid(
                "the OT protocol reveals which keys match, so it cannot give a cardinality \
                 alone: use --protocol ecdh"
                    .into(),
            ));
        }
        (Some(chosen), _) => chosen,
        (None, JobKind::PsiIntersection) => {
            let rows = dataset(node, &left.dataset).await?.map_or(0, |d| d.rows);
            if rows >= OT_FROM_ROWS {
                Protocol::Ot
            } else {
                Protocol::Ecdh
            }
        }
        (None, _) => Protocol::Ecdh,
    };
    Ok(Requested {
        peer: Some(to_peer(right)),
        protocol: Some(protocol),
        noised: kind != JobKind::PsiIntersection,
        ..Requested::new(kind, left)
    })
}

/// A PSI proposal's terms: its key columns, a protocol that can give its output (ECDH, or OT
/// for an intersection), and the hash buckets both parties run in.
pub(in crate::jobs) async fn proposed(
    node: &Arc<Node>,
    kind: JobKind,
    p: &pb::JobProposal,
) -> Result<Proposed, NodeError> {
    key_columns_fit(p)?;
    let protocol = Protocol::from_pb(p.protocol)?;
    if protocol == Some(Protocol::Ot) && kind != JobKind::PsiIntersection {
        return Err(NodeError::Invalid(format!(
            "protocol ot for a {}: use ecdh, or ot for an intersection",
            kind.as_str()
        )));
    }
    // Both run in the larger of the bucket counts either side's dataset needs.
    let asked = p.buckets.max(1);
    let rows = dataset(node, &p.dataset).await?.map_or(0, |d| d.rows);
    let buckets = asked.max(own_buckets(node, rows)?);
    if buckets > crate::spill::MAX_OPEN_BUCKETS {
        return Err(NodeError::Invalid(format!(
            "{buckets} hash buckets: this node spills at most {}",
            crate::spill::MAX_OPEN_BUCKETS
        )));
    }
    Ok(Proposed {
        protocol,
        buckets,
        ..Proposed::default()
    })
}

/// The hash buckets a PSI over `rows` of this node's keys needs under its
/// `[limits] keys_per_bucket` (1: none).
pub(in crate::jobs) fn own_buckets(node: &Node, rows: u64) -> Result<u32, NodeError> {
    concord_mpc::psi::bucket::bucket_count(rows, node.config.limits.keys_per_bucket)
        .map_err(|e| NodeError::Invalid(e.to_string()))
}

/// True when a PSI error comes from the peer's frames (else this node failed).
pub(in crate::jobs) fn error_is_peers(e: &ProtoError) -> bool {
    let e = match e {
        ProtoError::Psi(e) | ProtoError::Ot(OtPsiError::Psi(e)) => e,
        // Decoding and parameter errors of the OT mode come from the peer's frames.
        ProtoError::Ot(
            OtPsiError::Decode(_)
            | OtPsiError::BinsMismatch { .. }
            | OtPsiError::OutputWidthMismatch { .. },
        ) => return true,
        ProtoError::Ot(_) => return false,
    };
    matches!(
        e,
        PsiError::Decode(_)
            | PsiError::ParamsMismatch
            | PsiError::Unexpected { .. }
            | PsiError::TooManyItems { .. }
            | PsiError::Incomplete { .. }
            | PsiError::MatchOutOfRange { .. }
            | PsiError::InconsistentOutcome { .. }
            | PsiError::PeerGone
    )
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
    let output = if row.kind == JobKind::PsiIntersection {
        OutputKind::Intersection
    } else {
        OutputKind::Cardinality
    };
    Ok(
        PsiParams::one_shot(SessionId(session), output, Recipients::Receiver, keys)
            .with_peer_limit(peer_limit),
    )
}

impl Link<'_> {
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
