//! The sender: encodes its own set once, evaluates the receiver's blinded keys, and (when it is a
//! recipient) learns the output from the receiver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{CryptoRng, SeedableRng as _};

use super::PsiError;
use super::group::{BlindingKey, ItemDigest, POINT_LEN, blind_points, hash_blind_and_digest};
use super::keys::{InputReport, KeySet, KeySpec};
use super::params::{OutputKind, PsiParams, Recipients, SessionId, digest_tag, hash_to_group};
use super::wire::{self, DEFAULT_BATCH_ITEMS, Frame, Message};

/// What the sender learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderOutput {
    /// Distinct keys the receiver announced (the sender always learns this size).
    pub peer_items: u64,
    /// Distinct keys in common, when the sender is a recipient.
    pub cardinality: Option<u64>,
    /// For both-recipient intersections: the sender's rows whose key matched (0-based,
    /// ascending, duplicates included).
    pub matched_rows: Option<Vec<u64>>,
    /// The sender's own input report.
    pub input: InputReport,
}

/// The sender's set, blinded once under its key: digests of `[b]H(y)` in a random order.
///
/// Build one per session, or build one for a large, slowly-changing set (a list of revoked
/// documents, a register) and answer many intersection queries against it: each query then costs
/// the sender one multiplication per *query* item, and the digests can be sent once and cached
/// by the querier. See the module docs for what reuse leaks.
pub struct SenderEncoding {
    id: SessionId,
    key: BlindingKey,
    keys: KeySet,
    /// Digests in stream order.
    digests: Vec<ItemDigest>,
    /// Stream position → distinct key index.
    order: Vec<u32>,
    /// Sessions started against this encoding. Cardinality sessions must be the first and only.
    sessions: AtomicU64,
}

impl std::fmt::Debug for SenderEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderEncoding")
            .field("id", &self.id)
            .field("items", &self.digests.len())
            .finish_non_exhaustive()
    }
}

impl SenderEncoding {
    /// Blinds and digests `keys` under a fresh key, in a fresh random order. `id` is the hash
    /// domain: the session id for a one-shot session, or a fresh id for a cached encoding.
    pub fn new<R: CryptoRng + ?Sized>(id: SessionId, keys: KeySet, rng: &mut R) -> Self {
        Self::with_progress(id, keys, rng, &|_| {})
    }

    /// [`Self::new`], calling `progress` with the number of keys encoded after each step.
    pub fn with_progress<R: CryptoRng + ?Sized>(
        id: SessionId,
        keys: KeySet,
        rng: &mut R,
        progress: &dyn Fn(usize),
    ) -> Self {
        const STEP: usize = 1 << 16;
        let key = BlindingKey::random(rng);
        let h2g = hash_to_group(id);
        let tag = digest_tag(id);
        let mut in_order = Vec::with_capacity(keys.len());
        for step in keys.distinct().chunks(STEP) {
            let step: Vec<&[u8]> = step.iter().collect();
            in_order.extend(hash_blind_and_digest(&h2g, &step, &key, &tag));
            progress(step.len());
        }
        // Distinct keys ≤ MAX_DISTINCT_KEYS < u32::MAX, checked when the set was built.
        let mut order: Vec<u32> = (0..in_order.len() as u32).collect();
        order.shuffle(&mut StdRng::from_rng(rng));
        let digests = order.iter().map(|&i| in_order[i as usize]).collect();
        Self {
            id,
            key,
            keys,
            digests,
            order,
            sessions: AtomicU64::new(0),
        }
    }

    /// The hash domain this encoding was built for.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The key normalization of the encoded set.
    pub fn key_spec(&self) -> KeySpec {
        self.keys.spec()
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// True for an empty set.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The frames that carry this set to a receiver of `params`: a header and digest batches.
    pub fn set_frames<'a>(&'a self, params: &PsiParams) -> impl Iterator<Item = Frame> + 'a {
        std::iter::once(wire::set(&params.digest(), self.digests.len() as u64))
            .chain(self.digests.chunks(DEFAULT_BATCH_ITEMS).map(wire::digests))
    }
}

/// Round 1: the sender waits for the receiver's query header.
#[derive(Debug)]
pub struct SenderAwaitQuery {
    params: PsiParams,
    encoding: Arc<SenderEncoding>,
    shuffle: StdRng,
}

impl SenderAwaitQuery {
    /// Accepts a session for `params` against `encoding` (built for `params.hash_domain()`).
    /// Send `encoding.set_frames(&params)` to the receiver at any time during the session.
    pub fn start<R: CryptoRng + ?Sized>(
        params: PsiParams,
        encoding: Arc<SenderEncoding>,
        rng: &mut R,
    ) -> Result<Self, PsiError> {
        params.check()?;
        if encoding.id() != params.hash_domain() {
            return Err(PsiError::EncodingMismatch);
        }
        if encoding.key_spec() != params.keys() {
            return Err(PsiError::KeySpecMismatch);
        }
        let earlier = encoding.sessions.fetch_add(1, Ordering::SeqCst);
        if params.output() == OutputKind::Cardinality && earlier > 0 {
            // The receiver could link unblinded values across sessions under the same key.
            return Err(PsiError::CardinalityNeedsFreshKeys);
        }
        Ok(Self {
            params,
            encoding,
            shuffle: StdRng::from_rng(rng),
        })
    }

    /// Takes the query header.
    pub fn handle(self, message: Message) -> Result<SenderEvaluating, PsiError> {
        let Message::Query { params, items } = message else {
            return Err(PsiError::Unexpected {
                state: "sender awaiting query",
                message: message.name(),
            });
        };
        if params != self.params.digest() {
            return Err(PsiError::ParamsMismatch);
        }
        self.params.peer_limit.check(items)?;
        Ok(SenderEvaluating {
            params: self.params,
            encoding: self.encoding,
            shuffle: self.shuffle,
            announced: items,
            received: 0,
            held: Vec::new(),
        })
    }
}

/// Round 2: the sender evaluates the receiver's blinded batches.
pub struct SenderEvaluating {
    params: PsiParams,
    encoding: Arc<SenderEncoding>,
    shuffle: StdRng,
    announced: u64,
    received: u64,
    /// Cardinality sessions hold every evaluation until the end to shuffle them together:
    /// shuffling per batch would tell the receiver which batch each match came from.
    held: Vec<[u8; POINT_LEN]>,
}

impl std::fmt::Debug for SenderEvaluating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderEvaluating")
            .field("params", &self.params)
            .field("announced", &self.announced)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// What the sender does after evaluating.
#[derive(Debug)]
#[non_exhaustive]
pub enum SenderNext {
    /// The sender is not a recipient: it is done.
    Done(SenderOutput),
    /// The sender waits for the receiver's result.
    AwaitOutcome(SenderAwaitOutcome),
}

impl SenderEvaluating {
    /// Takes one blinded batch; returns the evaluated batch to send at once (intersection
    /// sessions) or `None` (cardinality sessions, which answer in [`Self::finish`]).
    pub fn handle(&mut self, message: Message) -> Result<Option<Frame>, PsiError> {
        let Message::Blinded(points) = message else {
            return Err(PsiError::Unexpected {
                state: "sender evaluating",
                message: message.name(),
            });
        };
        let received = self.received + points.len() as u64;
        if received > self.announced {
            return Err(PsiError::TooManyItems {
                what: "blinded keys",
                announced: self.announced,
                received,
            });
        }
        self.received = received;
        let evaluated = blind_points(&points, &self.encoding.key);
        Ok(match self.params.output() {
            OutputKind::Intersection => Some(wire::evaluated(&evaluated)),
            OutputKind::Cardinality => {
                self.held.extend(evaluated);
                None
            }
        })
    }

    /// The receiver's announced number of distinct keys: how many this round evaluates.
    pub fn announced(&self) -> u64 {
        self.announced
    }

    /// True once every announced blinded key has arrived.
    pub fn is_complete(&self) -> bool {
        self.received == self.announced
    }

    /// Ends evaluation: returns the remaining frames to send and what comes next.
    pub fn finish(mut self) -> Result<(Vec<Frame>, SenderNext), PsiError> {
        if !self.is_complete() {
            return Err(PsiError::Incomplete {
                what: "blinded keys",
                expected: self.announced,
                received: self.received,
            });
        }
        self.held.shuffle(&mut self.shuffle);
        let frames = self
            .held
            .chunks(DEFAULT_BATCH_ITEMS)
            .map(wire::evaluated)
            .collect();
        let next = match self.params.recipients() {
            Recipients::Receiver => SenderNext::Done(SenderOutput {
                peer_items: self.announced,
                cardinality: None,
                matched_rows: None,
                input: self.encoding.keys.report(),
            }),
            Recipients::Both => SenderNext::AwaitOutcome(SenderAwaitOutcome {
                params: self.params,
                encoding: self.encoding,
                peer_items: self.announced,
                matched: Vec::new(),
                cardinality: None,
            }),
        };
        Ok((frames, next))
    }
}

/// Round 3 (both-recipient sessions): the sender takes the receiver's result.
pub struct SenderAwaitOutcome {
    params: PsiParams,
    encoding: Arc<SenderEncoding>,
    peer_items: u64,
    matched: Vec<u32>,
    cardinality: Option<u64>,
}

impl std::fmt::Debug for SenderAwaitOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderAwaitOutcome")
            .field("params", &self.params)
            .field("matched", &self.matched.len())
            .finish_non_exhaustive()
    }
}

impl SenderAwaitOutcome {
    /// Takes a matches batch or the closing outcome.
    pub fn handle(&mut self, message: Message) -> Result<(), PsiError> {
        match message {
            Message::Matches(positions)
                if self.params.output() == OutputKind::Intersection
                    && self.cardinality.is_none() =>
            {
                let items = self.encoding.len() as u64;
                if let Some(&bad) = positions.iter().find(|&&p| u64::from(p) >= items) {
                    return Err(PsiError::MatchOutOfRange {
                        position: bad,
                        items,
                    });
                }
                self.matched.extend(positions);
                Ok(())
            }
            Message::Outcome { cardinality } if self.cardinality.is_none() => {
                self.cardinality = Some(cardinality);
                Ok(())
            }
            other => Err(PsiError::Unexpected {
                state: "sender awaiting outcome",
                message: other.name(),
            }),
        }
    }

    /// True once the outcome has arrived.
    pub fn is_complete(&self) -> bool {
        self.cardinality.is_some()
    }

    /// The sender's output.
    pub fn finish(self) -> Result<SenderOutput, PsiError> {
        let Some(cardinality) = self.cardinality else {
            return Err(PsiError::Incomplete {
                what: "outcome",
                expected: 1,
                received: 0,
            });
        };
        let matched_rows = match self.params.output() {
            OutputKind::Intersection => {
                if self.matched.len() as u64 != cardinality {
                    return Err(PsiError::InconsistentOutcome {
                        cardinality,
                        matches: self.matched.len() as u64,
                    });
                }
                let mut flags = vec![false; self.encoding.len()];
                for p in self.matched {
                    flags[self.encoding.order[p as usize] as usize] = true;
                }
                Some(self.encoding.keys.rows_matching(&flags))
            }
            OutputKind::Cardinality => None,
        };
        Ok(SenderOutput {
            peer_items: self.peer_items,
            cardinality: Some(cardinality),
            matched_rows,
            input: self.encoding.keys.report(),
        })
    }
}
