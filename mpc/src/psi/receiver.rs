//! The receiver: blinds its keys, unblinds the sender's evaluations, compares, learns the output.

use rand::CryptoRng;
use rayon::prelude::*;

use super::PsiError;
use super::blinding::{Blinded, Blinder};
use super::group::{BlindingKey, DigestTag, ItemDigest, blind_and_digest};
use super::keys::{InputReport, KeySet};
use super::params::{OutputKind, PsiParams, Recipients};
use super::wire::{self, Frame, Message};

/// What the receiver learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverOutput {
    /// Distinct keys in common.
    pub cardinality: u64,
    /// For intersection sessions: every row of the receiver's input whose key matched (0-based,
    /// ascending, duplicates included). `None` for cardinality sessions.
    pub matched_rows: Option<Vec<u64>>,
    /// Distinct keys the sender announced.
    pub peer_items: u64,
    /// The receiver's own input report.
    pub input: InputReport,
}

/// Round 1: the receiver blinds its distinct keys, a batch at a time.
#[derive(Debug)]
pub struct ReceiverBlinding {
    params: PsiParams,
    blinder: Blinder,
}

impl ReceiverBlinding {
    /// Starts a session: draws the blinding key and returns the query header to send first.
    pub fn start<R: CryptoRng + ?Sized>(
        params: PsiParams,
        keys: KeySet,
        rng: &mut R,
    ) -> Result<(Self, Frame), PsiError> {
        params.check()?;
        if keys.spec() != params.keys() {
            return Err(PsiError::KeySpecMismatch);
        }
        let header = wire::query(&params.digest(), keys.len() as u64);
        Ok((
            Self {
                blinder: Blinder::new(params.hash_to_group(), keys, rng),
                params,
            },
            header,
        ))
    }

    /// Items per batch frame (clamped to `1..=MAX_BATCH_ITEMS`).
    pub fn with_batch_items(mut self, items: usize) -> Self {
        self.blinder.set_batch_items(items);
        self
    }

    /// The next batch of blinded keys `[a]H(x)`, or `None` when all are sent.
    pub fn next_batch(&mut self) -> Option<Frame> {
        self.blinder.next_points().map(|p| wire::blinded(&p))
    }

    /// Distinct keys not yet blinded.
    pub fn remaining(&self) -> usize {
        self.blinder.remaining()
    }

    /// Moves to collecting the sender's messages. Every batch must have been taken.
    /// The blinding key is dropped (and zeroized) here; only its inverse is kept.
    pub fn finish(self) -> Result<ReceiverCollecting, PsiError> {
        let Blinded {
            keys,
            unblind,
            batch_items,
        } = self
            .blinder
            .finish()
            .map_err(|(expected, received)| PsiError::Incomplete {
                what: "blinded batches",
                expected,
                received,
            })?;
        Ok(ReceiverCollecting {
            tag: self.params.digest_tag(),
            unblind,
            own: Vec::with_capacity(keys.len()),
            peer: Vec::new(),
            peer_items: None,
            params: self.params,
            keys,
            batch_items,
        })
    }
}

/// Round 2: the receiver takes evaluated batches and the sender's digests, in any interleaving.
pub struct ReceiverCollecting {
    params: PsiParams,
    keys: KeySet,
    unblind: BlindingKey,
    tag: DigestTag,
    /// Digests of `[b]H(x)` for the receiver's keys, in the order the sender returned them.
    own: Vec<ItemDigest>,
    /// Sender digests with their position in the sender's stream.
    peer: Vec<(ItemDigest, u32)>,
    peer_items: Option<u64>,
    batch_items: usize,
}

impl std::fmt::Debug for ReceiverCollecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverCollecting")
            .field("params", &self.params)
            .field("evaluated", &self.own.len())
            .field("peer_digests", &self.peer.len())
            .field("peer_items", &self.peer_items)
            .finish_non_exhaustive()
    }
}

impl ReceiverCollecting {
    /// Takes one message from the sender.
    pub fn handle(&mut self, message: Message) -> Result<(), PsiError> {
        match message {
            Message::Evaluated(points) => {
                let expected = self.keys.len() as u64;
                let received = (self.own.len() + points.len()) as u64;
                if received > expected {
                    return Err(PsiError::TooManyItems {
                        what: "evaluated keys",
                        announced: expected,
                        received,
                    });
                }
                self.own
                    .extend(blind_and_digest(&points, &self.unblind, &self.tag));
                Ok(())
            }
            Message::Set { params, items } => {
                if params != self.params.digest() {
                    return Err(PsiError::ParamsMismatch);
                }
                if self.peer_items.is_some() {
                    return Err(PsiError::Unexpected {
                        state: "receiver collecting",
                        message: "a second set header",
                    });
                }
                self.params.peer_limit.check(items)?;
                self.peer_items = Some(items);
                Ok(())
            }
            Message::Digests(digests) => {
                let Some(announced) = self.peer_items else {
                    return Err(PsiError::Unexpected {
                        state: "receiver collecting",
                        message: "digests before the set header",
                    });
                };
                let start = self.peer.len();
                let received = (start + digests.len()) as u64;
                if received > announced {
                    return Err(PsiError::TooManyItems {
                        what: "sender digests",
                        announced,
                        received,
                    });
                }
                // Positions fit in u32: announced ≤ MAX_DISTINCT_KEYS.
                self.peer.extend(
                    digests
                        .into_iter()
                        .enumerate()
                        .map(|(i, d)| (d, (start + i) as u32)),
                );
                Ok(())
            }
            other => Err(PsiError::Unexpected {
                state: "receiver collecting",
                message: other.name(),
            }),
        }
    }

    /// True once every evaluation and every sender digest has arrived.
    pub fn is_complete(&self) -> bool {
        self.own.len() == self.keys.len() && self.peer_items == Some(self.peer.len() as u64)
    }

    /// Compares, and returns the output with the frames to send back to the sender (empty
    /// unless the sender is a recipient too).
    pub fn finish(self) -> Result<(ReceiverOutput, Vec<Frame>), PsiError> {
        let peer_items = self.peer_items.unwrap_or(0);
        if !self.is_complete() {
            let (what, expected, received) = if self.own.len() != self.keys.len() {
                (
                    "evaluated keys",
                    self.keys.len() as u64,
                    self.own.len() as u64,
                )
            } else {
                ("sender digests", peer_items, self.peer.len() as u64)
            };
            return Err(PsiError::Incomplete {
                what,
                expected,
                received,
            });
        }
        let mut peer = self.peer;
        peer.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let hits: Vec<Option<u32>> = self
            .own
            .par_iter()
            .map(|d| {
                peer.binary_search_by(|p| p.0.cmp(d))
                    .ok()
                    .map(|i| peer[i].1)
            })
            .collect();
        let cardinality = hits.iter().filter(|h| h.is_some()).count() as u64;
        let matched_rows = match self.params.output() {
            OutputKind::Intersection => {
                // Evaluations come back in the order the keys were sent.
                let flags: Vec<bool> = hits.iter().map(Option::is_some).collect();
                Some(self.keys.rows_matching(&flags))
            }
            OutputKind::Cardinality => None,
        };
        let mut frames = Vec::new();
        if self.params.recipients() == Recipients::Both {
            if self.params.output() == OutputKind::Intersection {
                let mut positions: Vec<u32> = hits.into_iter().flatten().collect();
                positions.par_sort_unstable();
                frames.extend(positions.chunks(self.batch_items).map(wire::matches));
            }
            frames.push(wire::outcome(cardinality));
        }
        Ok((
            ReceiverOutput {
                cardinality,
                matched_rows,
                peer_items,
                input: self.keys.report(),
            },
            frames,
        ))
    }
}
