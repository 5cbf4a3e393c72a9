//! The value holder: encrypts its rows, evaluates and shuffles the key holder's blinded keys, and
//! decrypts the noised result.

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{CryptoRng, SeedableRng as _};
use rayon::prelude::*;

use super::dlog::DlogTable;
use super::elgamal::{DecryptionKey, Encryptor};
use super::values::{ValueReport, ValueSet};
use super::wire::{self, JoinMessage, row_width, rows_per_frame};
use super::{Frame, JoinError, JoinParams};
use crate::psi::group::{BlindingKey, CHUNK, POINT_LEN, blind_points, hash_blind_and_digest};
use crate::psi::wire::DEFAULT_BATCH_ITEMS;

/// One category's released figures: exact values plus the key holder's noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CategoryResult {
    /// Noised number of the value holder's distinct keys in the intersection.
    pub count: i64,
    /// Noised sum of their (clamped) values.
    pub sum: i64,
}

impl CategoryResult {
    /// `sum / count`, or `None` when the noised count is not positive.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }
}

/// What the value holder learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinOutput {
    /// One entry per declared category, in order.
    pub categories: Vec<CategoryResult>,
    /// Distinct keys the key holder announced.
    pub peer_items: u64,
    /// The value holder's own input report, with what was clamped.
    pub input: ValueReport,
}

/// Round 1: the value holder has sent its offer and waits for the key holder's query.
#[derive(Debug)]
pub struct ValueHolderAwaitQuery {
    state: Held,
}

/// What the value holder keeps between rounds.
struct Held {
    params: JoinParams,
    key: BlindingKey,
    decryption: DecryptionKey,
    report: ValueReport,
    items: u64,
    /// Rows in shuffled order, encoded (`row_width` bytes each).
    rows: Vec<u8>,
    shuffle: StdRng,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("params", &self.params)
            .field("items", &self.items)
            .finish_non_exhaustive()
    }
}

impl ValueHolderAwaitQuery {
    /// Starts a session: clamps the values, draws the blinding and decryption keys, and encrypts
    /// every row in a fresh random order (the heavy part, on all cores). Returns the offer to send.
    pub fn start<R: CryptoRng + ?Sized>(
        params: JoinParams,
        values: ValueSet,
        rng: &mut R,
    ) -> Result<(Self, Frame), JoinError> {
        if values.spec() != params.keys() {
            return Err(JoinError::KeySpecMismatch);
        }
        let (clamped, report) = values.clamped(params.bounds(), params.categories())?;
        params.intervals(clamped.len() as u64)?;
        let key = BlindingKey::random(rng);
        let decryption = DecryptionKey::random(params.slots(), rng);
        let public = decryption.public();
        let encryptor = Encryptor::new(&public);

        let keys: Vec<&[u8]> = values.keys().distinct().iter().collect();
        let digests =
            hash_blind_and_digest(&params.hash_to_group(), &keys, &key, &params.digest_tag());
        drop(keys);
        // Distinct keys ≤ MAX_DISTINCT_KEYS < u32::MAX, checked when the set was built.
        let mut order: Vec<u32> = (0..clamped.len() as u32).collect();
        order.shuffle(&mut StdRng::from_rng(rng));
        let slots = params.slots();
        let width = row_width(slots);
        let seeds: Vec<[u8; 32]> = order
            .chunks(CHUNK)
            .map(|_| {
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                seed
            })
            .collect();
        let rows: Vec<u8> = order
            .par_chunks(CHUNK)
            .zip(seeds)
            .flat_map_iter(|(chunk, seed)| {
                let mut chunk_rng = StdRng::from_seed(seed);
                let mut halves: Vec<RistrettoPoint> = Vec::with_capacity(chunk.len() * (1 + slots));
                for &i in chunk {
                    let (category, value) = clamped[i as usize];
                    let mut r = Scalar::random(&mut chunk_rng);
                    encryptor.one_hot_halves(category, value, &r, &mut halves);
                    zeroize::Zeroize::zeroize(&mut r);
                }
                let encoded = RistrettoPoint::double_and_compress_batch(&halves);
                let mut out = Vec::with_capacity(chunk.len() * width);
                for (&i, components) in chunk.iter().zip(encoded.chunks_exact(1 + slots)) {
                    out.extend_from_slice(&digests[i as usize]);
                    for c in components {
                        out.extend_from_slice(c.as_bytes());
                    }
                }
                out
            })
            .collect();
        debug_assert_eq!(rows.len(), clamped.len() * width);

        let items = clamped.len() as u64;
        let offer = wire::offer(&params.digest(), items, &public);
        Ok((
            Self {
                state: Held {
                    params,
                    key,
                    decryption,
                    report,
                    items,
                    rows,
                    shuffle: StdRng::from_rng(rng),
                },
            },
            offer,
        ))
    }

    /// Takes the key holder's query header.
    pub fn handle(self, message: JoinMessage) -> Result<ValueHolderEvaluating, JoinError> {
        let JoinMessage::Query { params, items } = message else {
            return Err(JoinError::Unexpected {
                state: "value holder awaiting query",
                message: message.name(),
            });
        };
        if params != self.state.params.digest() {
            return Err(JoinError::ParamsMismatch);
        }
        self.state.params.peer_limit.check(items)?;
        Ok(ValueHolderEvaluating {
            state: self.state,
            announced: items,
            held: Vec::new(),
        })
    }
}

/// Round 2: the value holder evaluates the key holder's blinded batches, holding them all so
/// that one shuffle covers the whole session (a shuffle per batch would tell the key holder which
/// batch each match came from).
pub struct ValueHolderEvaluating {
    state: Held,
    announced: u64,
    held: Vec<[u8; POINT_LEN]>,
}

impl std::fmt::Debug for ValueHolderEvaluating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueHolderEvaluating")
            .field("params", &self.state.params)
            .field("announced", &self.announced)
            .field("received", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl ValueHolderEvaluating {
    /// Takes one blinded batch.
    pub fn handle(&mut self, message: JoinMessage) -> Result<(), JoinError> {
        let JoinMessage::Blinded(points) = message else {
            return Err(JoinError::Unexpected {
                state: "value holder evaluating",
                message: message.name(),
            });
        };
        let received = (self.held.len() + points.len()) as u64;
        if received > self.announced {
            return Err(JoinError::TooManyItems {
                what: "blinded keys",
                announced: self.announced,
                received,
            });
        }
        self.held.extend(blind_points(&points, &self.state.key));
        Ok(())
    }

    /// True once every announced blinded key has arrived.
    pub fn is_complete(&self) -> bool {
        self.held.len() as u64 == self.announced
    }

    /// Returns the frames to send — the shuffled evaluations, then the encrypted rows — and waits
    /// for the result. The blinding key is dropped (and zeroized) here.
    pub fn finish(self) -> Result<(Vec<Frame>, ValueHolderAwaitResult), JoinError> {
        if !self.is_complete() {
            return Err(JoinError::Incomplete {
                what: "blinded keys",
                expected: self.announced,
                received: self.held.len() as u64,
            });
        }
        let Held {
            params,
            key,
            decryption,
            report,
            items,
            rows,
            mut shuffle,
        } = self.state;
        drop(key);
        let mut held = self.held;
        held.shuffle(&mut shuffle);
        let slots = params.slots();
        let mut frames: Vec<Frame> = held
            .chunks(DEFAULT_BATCH_ITEMS)
            .map(wire::evaluated)
            .collect();
        frames.extend(
            rows.chunks(rows_per_frame(slots) * row_width(slots))
                .map(|chunk| wire::rows(slots, chunk)),
        );
        Ok((
            frames,
            ValueHolderAwaitResult {
                params,
                decryption,
                report,
                items,
                peer_items: self.announced,
            },
        ))
    }
}

/// Round 3: the value holder decrypts the noised result.
#[derive(Debug)]
pub struct ValueHolderAwaitResult {
    params: JoinParams,
    decryption: DecryptionKey,
    report: ValueReport,
    items: u64,
    peer_items: u64,
}

impl ValueHolderAwaitResult {
    /// Takes the result and decrypts every slot (a bounded discrete-log search per slot, on all
    /// cores; variable-time in the released figures only). Ends the session.
    pub fn handle(self, message: JoinMessage) -> Result<JoinOutput, JoinError> {
        let JoinMessage::Result(ct) = message else {
            return Err(JoinError::Unexpected {
                state: "value holder awaiting result",
                message: message.name(),
            });
        };
        let slots = self.params.slots();
        if ct.slots.len() != slots {
            return Err(JoinError::SlotCount {
                expected: slots,
                found: ct.slots.len(),
            });
        }
        let [sum_range, count_range] = self.params.intervals(self.items)?;
        let table = DlogTable::new(sum_range.1.max(count_range.1));
        let c = usize::from(self.params.categories());
        let plain = self.decryption.decrypt(&ct);
        let values: Vec<i64> = plain
            .par_iter()
            .enumerate()
            .map(|(slot, p)| {
                let (lo, width) = if slot < c { sum_range } else { count_range };
                table
                    .solve_vartime(p, lo, width)
                    .ok_or(JoinError::PlaintextOutOfRange { slot })
            })
            .collect::<Result<_, _>>()?;
        let categories = (0..c)
            .map(|i| CategoryResult {
                sum: values[i],
                count: values[c + i],
            })
            .collect();
        Ok(JoinOutput {
            categories,
            peer_items: self.peer_items,
            input: self.report,
        })
    }
}
