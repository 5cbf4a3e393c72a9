//! The secure-aggregation roles of `concord-mpc`, driven over a job's links on blocking threads:
//! a party (each contributor) and the server (the coordinator, which aggregates). The rounds are
//! those of `concord_mpc::secagg::local`, with the in-memory lockstep replaced by links: a
//! remote party's frames travel in the job's `Federation.Exchange` envelopes (protocol
//! `secagg`), the coordinator's own party talks to the server through channels.
//!
//! # Rounds and dropouts at the server
//! A round closes once every party expected in it has spoken or is gone (its link closed: the
//! node died or the connection broke). A gone party is a dropout and secure aggregation handles
//! it: before its masked vector is complete it is left out of the sum, after that its vector is
//! in the sum and its self-mask is rebuilt from the others' shares. Fewer than `t` parties at
//! any round fails the job. A party that *ends* the job (an `Abort`: a refusal at its recheck,
//! an unreadable file) fails it for everyone, as does a frame that breaks the protocol.

use std::sync::Arc;

use concord_mpc::secagg::{
    Aggregate, Body, IdentityKey, Message, PartyAwaitRoster, PublicKey, SecAggError, SecAggParams,
    ServerAwaitKeys,
};
use tokio::sync::mpsc;

use crate::jobs::error::JobError;
use crate::jobs::kinds::aggregate;
use crate::jobs::lifecycle::commit_budget;
use crate::jobs::table::{JobRow, QueryParams};
use crate::node::Node;

/// What the server hears about party `i`.
#[derive(Debug)]
pub(in crate::jobs) enum Up {
    /// A frame it sent.
    Frame(u16, Vec<u8>),
    /// Its link closed: a dropout.
    Gone(u16, String),
    /// It ended the job: the job fails.
    Abort(u16, String),
    /// The coordinator stopped the job (cancelled, or failed elsewhere).
    Stop,
}

/// A contributor whose secure-aggregation identity key this node's configuration lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(in crate::jobs) enum MissingIdentity {
    /// This node has no identity key of its own.
    #[error(
        "node {me} has no secure-aggregation identity key: add [secagg] identity_key to its \
         configuration"
    )]
    Own { me: String },
    /// A contributor that is not a configured peer.
    #[error("{name} is not a peer of {me}")]
    NotAPeer { me: String, name: String },
    /// A peer without a (valid) `secagg_key`.
    #[error(
        "node {me} has no secure-aggregation key for peer {name}: add its public key as \
         secagg_key to that [[peers]] entry"
    )]
    PeerKey { me: String, name: String },
}

/// The contributors' identity public keys, in party order, from this node's own configuration:
/// its own key, and the `secagg_key` of each peer (never from another node).
pub(in crate::jobs) fn identities(
    node: &Node,
    names: &[String],
) -> Result<Vec<PublicKey>, MissingIdentity> {
    let me = &node.config.node.name;
    names
        .iter()
        .map(|name| {
            if name == me {
                return node
                    .secagg
                    .as_ref()
                    .map(IdentityKey::public)
                    .ok_or_else(|| MissingIdentity::Own { me: me.clone() });
            }
            let peer = node
                .config
                .peer(name)
                .ok_or_else(|| MissingIdentity::NotAPeer {
                    me: me.clone(),
                    name: name.clone(),
                })?;
            peer.secagg_key
                .as_deref()
                .and_then(crate::hex::decode_32)
                .and_then(PublicKey::from_bytes)
                .ok_or_else(|| MissingIdentity::PeerKey {
                    me: me.clone(),
                    name: name.clone(),
                })
        })
        .collect()
}

/// Why a party stopped.
#[derive(Debug)]
pub(in crate::jobs) enum PartyError {
    /// The link to the server closed (the control channel knows why).
    Gone,
    /// A protocol error.
    Protocol(SecAggError),
    /// Its own policy check or budget commit refused (the reason).
    Commit(String),
}

impl From<SecAggError> for PartyError {
    fn from(e: SecAggError) -> Self {
        PartyError::Protocol(e)
    }
}

impl PartyError {
    /// Whether this party is at fault (rather than the server).
    pub(in crate::jobs) fn is_own(&self) -> bool {
        matches!(
            self,
            PartyError::Commit(_)
                | PartyError::Protocol(
                    SecAggError::InputLength { .. }
                        | SecAggError::InputOutOfRange { .. }
                        | SecAggError::IdentityMismatch { .. }
                )
        )
    }
}

impl std::fmt::Display for PartyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartyError::Gone => f.write_str("the coordinator closed the session"),
            PartyError::Protocol(e) => write!(f, "secure aggregation: {e}"),
            PartyError::Commit(reason) => f.write_str(reason),
        }
    }
}

/// A party's link to the server.
pub(in crate::jobs) struct PartyLink<'a> {
    pub(in crate::jobs) send: Box<dyn FnMut(Vec<u8>) -> bool + Send + 'a>,
    pub(in crate::jobs) recv: Box<dyn FnMut() -> Option<Vec<u8>> + Send + 'a>,
}

impl PartyLink<'_> {
    fn send(&mut self, frame: concord_mpc::Frame) -> Result<(), PartyError> {
        if (self.send)(frame.0) {
            Ok(())
        } else {
            Err(PartyError::Gone)
        }
    }

    fn recv(&mut self) -> Result<Message, PartyError> {
        let frame = (self.recv)().ok_or(PartyError::Gone)?;
        Ok(Message::decode(&frame).map_err(SecAggError::from)?)
    }
}

/// A contributor's input: where it reads its vector, and the noise share it adds.
pub(in crate::jobs) struct Contribution {
    pub(in crate::jobs) params: SecAggParams,
    pub(in crate::jobs) index: u16,
    pub(in crate::jobs) dataset: crate::catalog::Dataset,
    pub(in crate::jobs) column: Option<String>,
    pub(in crate::jobs) query: QueryParams,
    pub(in crate::jobs) plan: aggregate::Plans,
}

/// A contributor's whole part, on a blocking thread, at the coordinator as at a participant:
/// reads its dataset into its vector (streamed), adds its noise share, and runs [`party`] over
/// `link`, committing this node's budget on `rt` just before its masked vector leaves. An error
/// of this node's own (its input, its key, its commit) is neither `PeerGone` nor `Protocol`.
pub(in crate::jobs) fn contribute(
    node: &Arc<Node>,
    row: &JobRow,
    rt: &tokio::runtime::Handle,
    c: Contribution,
    link: &mut PartyLink<'_>,
    phase: &dyn Fn(&str),
) -> Result<(), JobError> {
    phase("reading");
    let exact = aggregate::exact_vector(&c.dataset, c.column.as_deref(), &c.query)?;
    let input = aggregate::noised(&exact, &c.plan)?;
    let identity = node
        .secagg
        .as_ref()
        .ok_or_else(|| JobError::terms("no secure-aggregation identity key"))?;
    let mut commit = || {
        rt.block_on(commit_budget(node, row))
            .map_err(|f| JobError::Commit(f.reason))
    };
    party(
        c.params,
        c.index,
        identity,
        &input,
        link,
        phase,
        &mut commit,
    )
    .map_err(|e| match e {
        PartyError::Gone => JobError::PeerGone(e.to_string()),
        PartyError::Commit(reason) => JobError::Commit(reason),
        e if e.is_own() => JobError::terms(e.to_string()),
        e => JobError::Protocol(e.to_string()),
    })
}

/// One contributor: advertises, shares, masks its `input` (its noise share already added) and
/// answers the unmasking request. `commit` rechecks this node's policy and commits its budget;
/// it runs after the shares are opened and **before the first masked frame leaves**, because
/// from then on the input may enter the released sum. `phase` reports progress.
pub(in crate::jobs) fn party(
    params: SecAggParams,
    index: u16,
    identity: &IdentityKey,
    input: &[i64],
    link: &mut PartyLink<'_>,
    phase: &dyn Fn(&str),
    commit: &mut dyn FnMut() -> Result<(), JobError>,
) -> Result<(), PartyError> {
    let mut rng = crate::random::rng();
    phase("advertising");
    let (state, frame) = PartyAwaitRoster::start(params, index, identity, &mut rng)?;
    link.send(frame)?;
    let roster = link.recv()?;
    phase("sharing");
    let (state, frame) = state.handle(roster, &mut rng)?;
    link.send(frame)?;
    let forwarded = link.recv()?;
    let mut masked = state.handle(forwarded, input)?;
    commit().map_err(|e| PartyError::Commit(e.to_string()))?;
    phase("masking");
    while let Some(frame) = masked.next_frame() {
        link.send(frame)?;
    }
    let state = masked.finish()?;
    let request = link.recv()?;
    phase("unmasking");
    let frame = state.handle(request)?;
    link.send(frame)?;
    Ok(())
}

/// Why the server stopped: the party at fault (if one is) and the reason.
#[derive(Debug)]
pub(in crate::jobs) struct ServerFailure {
    pub(in crate::jobs) party: Option<u16>,
    pub(in crate::jobs) reason: String,
}

/// What the server returns: the aggregate, and each dropout with why.
pub(in crate::jobs) struct Outcome {
    pub(in crate::jobs) aggregate: Aggregate,
    pub(in crate::jobs) dropped: Vec<(u16, String)>,
}

struct Hub<'a> {
    names: &'a [String],
    gone: Vec<Option<String>>,
    up: &'a mut mpsc::UnboundedReceiver<Up>,
    down: &'a mut dyn FnMut(u16, Vec<u8>) -> bool,
}

fn sender(body: &Body) -> Option<u16> {
    match body {
        Body::AdvertiseKeys { from, .. }
        | Body::Shares { from, .. }
        | Body::Masked { from, .. }
        | Body::Unmask { from, .. } => Some(*from),
        _ => None,
    }
}

impl Hub<'_> {
    fn name(&self, p: u16) -> &str {
        self.names.get(usize::from(p)).map_or("?", String::as_str)
    }

    /// Collects the round's messages until every party of `expected` has finished (as `take`
    /// says) or is gone.
    fn round(
        &mut self,
        expected: &[u16],
        take: &mut dyn FnMut(u16, Message) -> Result<bool, SecAggError>,
    ) -> Result<(), ServerFailure> {
        let n = self.names.len();
        let mut done = vec![false; n];
        let pending = |done: &[bool], gone: &[Option<String>]| {
            expected
                .iter()
                .any(|&p| !done[usize::from(p)] && gone[usize::from(p)].is_none())
        };
        while pending(&done, &self.gone) {
            match self.up.blocking_recv() {
                None | Some(Up::Stop) => {
                    return Err(ServerFailure {
                        party: None,
                        reason: "the job stopped".into(),
                    });
                }
                Some(Up::Gone(p, why)) => {
                    if let Some(slot) = self.gone.get_mut(usize::from(p))
                        && slot.is_none()
                    {
                        *slot = Some(why);
                    }
                }
                Some(Up::Abort(p, why)) => {
                    return Err(ServerFailure {
                        party: Some(p),
                        reason: why,
                    });
                }
                Some(Up::Frame(p, bytes)) => {
                    let fail = |e: String| ServerFailure {
                        party: Some(p),
                        reason: format!("secure aggregation: {e}"),
                    };
                    if !expected.contains(&p) || done[usize::from(p)] {
                        return Err(fail("a frame out of turn".into()));
                    }
                    let message = Message::decode(&bytes).map_err(|e| fail(e.to_string()))?;
                    if sender(&message.body) != Some(p) {
                        return Err(fail("a frame in another party's name".into()));
                    }
                    if take(p, message).map_err(|e| fail(e.to_string()))? {
                        done[usize::from(p)] = true;
                    }
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, p: u16, frame: concord_mpc::Frame) {
        if self.gone[usize::from(p)].is_none() && !(self.down)(p, frame.0) {
            self.gone[usize::from(p)] = Some("its link closed".into());
        }
    }

    /// A round that could not close: below the threshold, naming who dropped out.
    fn closing(&self, e: SecAggError) -> ServerFailure {
        let dropped: Vec<String> = self
            .gone
            .iter()
            .enumerate()
            .filter_map(|(p, why)| Some(format!("{} ({})", self.name(p as u16), why.as_ref()?)))
            .collect();
        let first = self.gone.iter().position(Option::is_some);
        ServerFailure {
            party: first.map(|p| p as u16),
            reason: if dropped.is_empty() {
                format!("secure aggregation: {e}")
            } else {
                format!(
                    "secure aggregation: {e}; dropped out: {}",
                    dropped.join(", ")
                )
            },
        }
    }
}

/// The aggregator: runs the four rounds over `up` (every party's frames and fate) and `down`
/// (a frame to one party; false when its link is gone), reporting each round through `phase`.
pub(in crate::jobs) fn server(
    params: SecAggParams,
    names: &[String],
    up: &mut mpsc::UnboundedReceiver<Up>,
    down: &mut dyn FnMut(u16, Vec<u8>) -> bool,
    phase: &dyn Fn(&str),
) -> Result<Outcome, ServerFailure> {
    let n = usize::from(params.parties());
    let length = params.length();
    let mut hub = Hub {
        names,
        gone: vec![None; n],
        up,
        down,
    };
    let everyone: Vec<u16> = (0..n as u16).collect();

    phase("advertising");
    let mut keys = ServerAwaitKeys::new(params);
    hub.round(&everyone, &mut |_, m| keys.handle(m).map(|()| true))?;
    let (mut shares, roster) = keys.close().map_err(|e| hub.closing(e))?;
    let u1: Vec<u16> = shares.roster().iter().map(|e| e.party).collect();
    for &p in &u1 {
        hub.send(p, roster.clone());
    }

    phase("sharing");
    hub.round(&u1, &mut |_, m| shares.handle(m).map(|()| true))?;
    let (mut masked, forwarded) = shares.close().map_err(|e| hub.closing(e))?;
    let u2: Vec<u16> = forwarded.iter().map(|(p, _)| *p).collect();
    for (p, frame) in forwarded {
        hub.send(p, frame);
    }

    phase("masking");
    let mut words = vec![0usize; n];
    hub.round(&u2, &mut |p, m| {
        let count = match &m.body {
            Body::Masked { words, .. } => words.len(),
            _ => 0,
        };
        masked.handle(m)?;
        words[usize::from(p)] += count;
        Ok(words[usize::from(p)] == length)
    })?;
    let (mut unmask, request) = masked.close().map_err(|e| hub.closing(e))?;
    let u3 = unmask.survivors().to_vec();
    for &p in &u3 {
        hub.send(p, request.clone());
    }

    phase("unmasking");
    hub.round(&u3, &mut |_, m| unmask.handle(m).map(|()| true))?;
    let aggregate = unmask.finish().map_err(|e| hub.closing(e))?;
    let dropped = hub
        .gone
        .iter()
        .enumerate()
        .filter_map(|(p, why)| Some((p as u16, why.clone()?)))
        .collect();
    Ok(Outcome { aggregate, dropped })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use concord_mpc::SessionId;

    use super::*;

    /// Runs a session of `n` parties with threshold `t` over channels, the server on this
    /// thread; party `dies` (if any) advertises its keys and then its link closes. Party `i`
    /// contributes `[i + 1, 10]`. Returns the outcome and how many parties committed.
    fn session(n: usize, t: u16, dies: Option<u16>) -> (Result<Outcome, ServerFailure>, usize) {
        let mut rng = StdRng::seed_from_u64(7);
        let keys: Vec<IdentityKey> = (0..n).map(|_| IdentityKey::random(&mut rng)).collect();
        let publics = keys.iter().map(IdentityKey::public).collect();
        let params = SecAggParams::new(SessionId([7; 16]), publics, t, 2).unwrap();
        let names: Vec<String> = (0..n).map(|i| format!("node{i}")).collect();
        let commits = Arc::new(AtomicUsize::new(0));
        let (up_tx, mut up_rx) = mpsc::unbounded_channel();
        let mut downs = Vec::new();
        let mut threads = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let index = i as u16;
            let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
            downs.push(tx);
            let (up, params, commits) = (up_tx.clone(), params.clone(), Arc::clone(&commits));
            threads.push(std::thread::spawn(move || {
                if dies == Some(index) {
                    let mut rng = StdRng::seed_from_u64(u64::from(index));
                    let (_, frame) =
                        PartyAwaitRoster::start(params, index, &key, &mut rng).unwrap();
                    up.send(Up::Frame(index, frame.0)).unwrap();
                    up.send(Up::Gone(index, "connection lost".into())).unwrap();
                    return;
                }
                let frames_up = up.clone();
                let mut link = PartyLink {
                    send: Box::new(move |f| frames_up.send(Up::Frame(index, f)).is_ok()),
                    recv: Box::new(move || rx.blocking_recv()),
                };
                let mut commit = || {
                    commits.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                };
                let input = [i64::from(index) + 1, 10];
                if let Err(e) = party(params, index, &key, &input, &mut link, &|_| {}, &mut commit)
                {
                    let _ = up.send(Up::Abort(index, e.to_string()));
                }
            }));
        }
        drop(up_tx);
        let mut down = |p: u16, frame: Vec<u8>| downs[usize::from(p)].send(frame).is_ok();
        let outcome = server(params, &names, &mut up_rx, &mut down, &|_| {});
        drop(downs);
        for t in threads {
            t.join().unwrap();
        }
        (outcome, commits.load(Ordering::SeqCst))
    }

    #[test]
    fn every_party_present_gives_the_exact_sum() {
        let (outcome, commits) = session(3, 2, None);
        let outcome = outcome.unwrap();
        assert_eq!(outcome.aggregate.sum, [6, 30]);
        assert_eq!(outcome.aggregate.contributors, [0, 1, 2]);
        assert!(outcome.dropped.is_empty());
        assert_eq!(commits, 3);
    }

    #[test]
    fn a_party_gone_after_advertising_is_left_out_while_t_remain() {
        let (outcome, commits) = session(3, 2, Some(1));
        let outcome = outcome.unwrap();
        assert_eq!(outcome.aggregate.sum, [1 + 3, 20]);
        assert_eq!(outcome.aggregate.contributors, [0, 2]);
        // Its own report, or the server's failed send to it, whichever came first.
        let dropped: Vec<u16> = outcome.dropped.iter().map(|(p, _)| *p).collect();
        assert_eq!(dropped, [1]);
        // The dropped party never reached its commit point.
        assert_eq!(commits, 2);
    }

    #[test]
    fn below_the_threshold_the_session_fails_naming_the_dropout() {
        let (outcome, commits) = session(3, 3, Some(2));
        let failure = outcome.err().unwrap();
        assert_eq!(failure.party, Some(2));
        assert!(
            failure.reason.contains("below the threshold"),
            "{}",
            failure.reason
        );
        assert!(
            failure.reason.contains("dropped out: node2 ("),
            "{}",
            failure.reason
        );
        // Nobody committed: the round of shares never closed.
        assert_eq!(commits, 0);
    }
}
