//! Every role in one process, with scripted dropouts: for benchmarks, tests and capacity
//! planning (`concord bench secagg`).
//!
//! Rounds run in lockstep, as an aggregator that closes each round once every party still
//! present has spoken. Every message is encoded to a [`Frame`], counted, and decoded strictly by
//! its receiver, so traffic and codec costs are measured as a node would pay them. Vector
//! arithmetic (masking, unmasking) runs on rayon's global pool.

use rand::rngs::StdRng;
use rand::{CryptoRng, SeedableRng as _};

use super::wire::{Frame, Message};
use super::{
    Aggregate, IdentityKey, PartyAwaitRoster, PartyAwaitShares, PartyAwaitUnmask, SecAggError,
    SecAggParams, ServerAwaitKeys,
};

/// When a scripted party vanishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropPoint {
    /// Never sends anything.
    BeforeAdvertising,
    /// Advertises its keys, then vanishes: excluded, no mask of its is used.
    AfterAdvertising,
    /// Sends its sealed shares, then vanishes: excluded; the aggregator cancels its pairwise masks.
    AfterSharing,
    /// Sends all but the last frame of its masked vector (nothing, if it fits in one frame):
    /// excluded; the partial vector is discarded.
    DuringMasking,
    /// Sends its whole masked vector, then never answers the unmasking request: included.
    AfterMasking,
}

/// One party of a local run.
pub struct LocalParty<'a> {
    /// Its identity key (its public half must be the parameters' entry for this index).
    pub identity: &'a IdentityKey,
    /// Its vector, noise share included.
    pub input: &'a [i64],
    /// When it vanishes, if it does.
    pub drops: Option<DropPoint>,
}

impl std::fmt::Debug for LocalParty<'_> {
    // The input is private: show its length only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalParty")
            .field("identity", self.identity)
            .field("entries", &self.input.len())
            .field("drops", &self.drops)
            .finish()
    }
}

/// Output and traffic of a local run.
#[derive(Clone, Debug)]
pub struct LocalRun {
    /// What the aggregator learned.
    pub aggregate: Aggregate,
    /// Bytes each party sent, by index.
    pub sent: Vec<u64>,
    /// Bytes each party received, by index.
    pub received: Vec<u64>,
    /// Frames in both directions.
    pub frames: u64,
}

impl LocalRun {
    /// The most any one party sent and received, together.
    pub fn bytes_per_party(&self) -> u64 {
        self.sent
            .iter()
            .zip(&self.received)
            .map(|(s, r)| s + r)
            .max()
            .unwrap_or(0)
    }

    /// Everything the aggregator received and sent.
    pub fn aggregator_bytes(&self) -> u64 {
        self.sent.iter().sum::<u64>() + self.received.iter().sum::<u64>()
    }
}

/// Runs a session of `params` among `parties` (one per index, in order), each drawing its
/// secrets from its own generator seeded from `rng`.
pub fn run<R: CryptoRng + ?Sized>(
    params: &SecAggParams,
    parties: &[LocalParty<'_>],
    rng: &mut R,
) -> Result<LocalRun, SecAggError> {
    run_with(
        params,
        parties,
        super::wire::MAX_CHUNK_WORDS,
        &mut |_| {},
        rng,
    )
}

/// [`run`], with `chunk_words` words per masked frame, showing every message the aggregator
/// receives to `observe` (its whole view, for tests of what it learns).
pub fn run_with<R: CryptoRng + ?Sized>(
    params: &SecAggParams,
    parties: &[LocalParty<'_>],
    chunk_words: usize,
    observe: &mut dyn FnMut(&Message),
    rng: &mut R,
) -> Result<LocalRun, SecAggError> {
    let n = usize::from(params.parties());
    if parties.len() != n {
        return Err(SecAggError::PartiesGiven {
            given: parties.len(),
            expected: n,
        });
    }
    let mut rngs: Vec<StdRng> = (0..n).map(|_| StdRng::from_rng(rng)).collect();
    let mut net = Traffic {
        sent: vec![0; n],
        received: vec![0; n],
        frames: 0,
        observe,
    };
    let gone = |u: usize, point: DropPoint| parties[u].drops == Some(point);

    // Round 1: advertise keys.
    let mut server = ServerAwaitKeys::new(params.clone());
    let mut advertised: Vec<Option<PartyAwaitRoster>> = (0..n).map(|_| None).collect();
    for (u, party) in parties.iter().enumerate() {
        if gone(u, DropPoint::BeforeAdvertising) {
            continue;
        }
        let (state, frame) =
            PartyAwaitRoster::start(params.clone(), u as u16, party.identity, &mut rngs[u])?;
        server.handle(net.up(u, &frame)?)?;
        advertised[u] = Some(state);
    }
    let (mut server, roster) = server.close()?;

    // Round 2: share keys.
    let mut shared: Vec<Option<PartyAwaitShares>> = (0..n).map(|_| None).collect();
    for (u, state) in advertised.into_iter().enumerate() {
        let Some(state) = state else { continue };
        if gone(u, DropPoint::AfterAdvertising) {
            continue;
        }
        let (state, frame) = state.handle(net.down(u, &roster)?, &mut rngs[u])?;
        server.handle(net.up(u, &frame)?)?;
        shared[u] = Some(state);
    }
    let (mut server, forwarded) = server.close()?;

    // Round 3: masked input.
    let mut waiting: Vec<Option<PartyAwaitUnmask>> = (0..n).map(|_| None).collect();
    for (to, frame) in forwarded {
        let u = usize::from(to);
        let Some(state) = shared[u].take() else {
            continue;
        };
        if gone(u, DropPoint::AfterSharing) {
            continue;
        }
        let mut masked = state
            .handle(net.down(u, &frame)?, parties[u].input)?
            .with_chunk_words(chunk_words);
        if gone(u, DropPoint::DuringMasking) {
            // Everything but the last frame.
            while let Some(frame) = masked.next_frame() {
                if masked.remaining_words() == 0 {
                    break;
                }
                server.handle(net.up(u, &frame)?)?;
            }
            continue;
        }
        while let Some(frame) = masked.next_frame() {
            server.handle(net.up(u, &frame)?)?;
        }
        waiting[u] = Some(masked.finish()?);
    }
    let (mut server, request) = server.close()?;

    // Round 4: unmasking.
    for u in server.survivors().to_vec() {
        let u = usize::from(u);
        let Some(state) = waiting[u].take() else {
            continue;
        };
        if gone(u, DropPoint::AfterMasking) {
            continue;
        }
        let frame = state.handle(net.down(u, &request)?)?;
        server.handle(net.up(u, &frame)?)?;
    }
    let aggregate = server.finish()?;
    Ok(LocalRun {
        aggregate,
        sent: net.sent,
        received: net.received,
        frames: net.frames,
    })
}

/// Counts every frame, and decodes it as its receiver would.
struct Traffic<'o> {
    sent: Vec<u64>,
    received: Vec<u64>,
    frames: u64,
    observe: &'o mut dyn FnMut(&Message),
}

impl Traffic<'_> {
    /// Party `u` → aggregator; the aggregator's view is shown to the observer.
    fn up(&mut self, u: usize, frame: &Frame) -> Result<Message, SecAggError> {
        self.sent[u] += frame.len() as u64;
        self.frames += 1;
        let message = Message::decode(frame.as_bytes())?;
        (self.observe)(&message);
        Ok(message)
    }

    /// Aggregator → party `u`.
    fn down(&mut self, u: usize, frame: &Frame) -> Result<Message, SecAggError> {
        self.received[u] += frame.len() as u64;
        self.frames += 1;
        Ok(Message::decode(frame.as_bytes())?)
    }
}
