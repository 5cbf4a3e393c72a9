//! The OT-PSI receiver: cuckoo-hashes its items, runs the base OTs as their sender, streams the
//! OT-extension columns, and compares the sender's OPRF outputs with its own.

use curve25519_dalek::ristretto::RistrettoPoint;
use rand::CryptoRng;
use rayon::prelude::*;
use zeroize::Zeroize as _;

use super::base::{self, OtScalar};
use super::cuckoo::{self, CuckooTable, MAX_ATTEMPTS};
use super::lookup::OwnTable;
use super::prims::{
    AesKey, BinHasher, CODE_BITS, Code, ColumnPrg, CrHash, ItemDigest, ROW_WORDS, Row,
    columns_to_rows, item_digests, rows_to_columns,
};
use super::wire::{self, DEFAULT_BATCH_ROWS, OtMessage};
use super::{OtPsiError, OtPsiParams, output_len};
use crate::psi::keys::KeySet;
use crate::psi::{PsiError, ReceiverOutput};
use crate::session::Frame;

/// Places `digests` in `bins` bins, drawing a fresh hash seed for each attempt (see
/// [`cuckoo`](super::cuckoo)).
pub(crate) fn build_table<R: CryptoRng + ?Sized>(
    digests: &[ItemDigest],
    bins: u64,
    rng: &mut R,
) -> Result<([u8; 16], CuckooTable), OtPsiError> {
    if bins > cuckoo::MAX_BINS {
        return Err(OtPsiError::TableTooLarge {
            items: digests.len() as u64,
            bins,
            limit: cuckoo::MAX_BINS,
        });
    }
    for _ in 0..MAX_ATTEMPTS {
        let mut seed = [0u8; 16];
        rng.fill_bytes(&mut seed);
        let hasher = BinHasher::new(&seed, bins);
        if let Some(table) = cuckoo::place(digests, &hasher, bins as usize) {
            return Ok((seed, table));
        }
    }
    Err(OtPsiError::CuckooFailed {
        items: digests.len() as u64,
        bins,
        attempts: MAX_ATTEMPTS,
    })
}

/// Round 0: the receiver's entry point.
#[derive(Debug)]
pub struct OtReceiverStart;

impl OtReceiverStart {
    /// Digests and cuckoo-hashes `keys`, starts the base OTs, and returns the hello frame.
    pub fn start<R: CryptoRng + ?Sized>(
        params: OtPsiParams,
        keys: KeySet,
        rng: &mut R,
    ) -> Result<(OtReceiverAwaitSetup, Frame), OtPsiError> {
        if keys.spec() != params.keys() {
            return Err(PsiError::KeySpecMismatch.into());
        }
        let session = params.session();
        let digests = item_digests(session, keys.distinct());
        let bins = cuckoo::bins_for(keys.len() as u64);
        let (hash_seed, table) = build_table(&digests, bins, rng)?;
        let (secret, point) = base::sender_start(rng);
        let hello = wire::hello(
            &params.digest(),
            keys.len() as u64,
            bins,
            &hash_seed,
            &point,
        );
        Ok((
            OtReceiverAwaitSetup {
                params,
                keys,
                digests,
                table,
                secret,
                point,
                dummy: AesKey::random(rng),
            },
            hello,
        ))
    }
}

/// Round 1: the receiver waits for the sender's setup.
pub struct OtReceiverAwaitSetup {
    params: OtPsiParams,
    keys: KeySet,
    digests: Vec<ItemDigest>,
    table: CuckooTable,
    secret: OtScalar,
    point: RistrettoPoint,
    /// Key of the random rows of empty bins.
    dummy: AesKey,
}

impl std::fmt::Debug for OtReceiverAwaitSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtReceiverAwaitSetup")
            .field("params", &self.params)
            .field("items", &self.digests.len())
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

impl OtReceiverAwaitSetup {
    /// Takes the setup: finishes the base OTs and moves to streaming columns.
    pub fn handle(self, message: OtMessage) -> Result<OtReceiverExtending, OtPsiError> {
        let OtMessage::Setup {
            params,
            items,
            code_seed,
            points,
        } = message
        else {
            return Err(PsiError::Unexpected {
                state: "OT receiver awaiting setup",
                message: message.name(),
            }
            .into());
        };
        if params != self.params.digest() {
            return Err(PsiError::ParamsMismatch.into());
        }
        self.params.peer_limit.check(items)?;
        let keys = base::sender_keys(self.params.session(), &self.secret, &self.point, &points);
        let prgs = keys
            .iter()
            .map(|(k0, k1)| (ColumnPrg::new(k0), ColumnPrg::new(k1)))
            .collect();
        let width = output_len(self.keys.len() as u64, items);
        Ok(OtReceiverExtending {
            code: Code::new(&AesKey(code_seed)),
            dummy: Code::new(&self.dummy),
            hash: CrHash::default(),
            prgs,
            width,
            peer_items: items,
            next: 0,
            own: OwnTable::with_capacity(self.keys.len()),
            params: self.params,
            keys: self.keys,
            digests: self.digests,
            table: self.table,
        })
    }
}

/// Round 2: the receiver streams the OT-extension columns, a batch of bins at a time, and keeps
/// its own OPRF values.
pub struct OtReceiverExtending {
    params: OtPsiParams,
    keys: KeySet,
    digests: Vec<ItemDigest>,
    table: CuckooTable,
    code: Code,
    dummy: Code,
    hash: CrHash,
    /// `(G(k_j^0), G(k_j^1))` per column.
    prgs: Vec<(ColumnPrg, ColumnPrg)>,
    width: usize,
    peer_items: u64,
    next: usize,
    /// `hash index << 120 | truncated H(i, t_i)` → item, for every occupied bin.
    own: OwnTable,
}

impl std::fmt::Debug for OtReceiverExtending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtReceiverExtending")
            .field("params", &self.params)
            .field("next_bin", &self.next)
            .field("bins", &self.table.slots.len())
            .finish_non_exhaustive()
    }
}

/// The low `width` bytes of `value`.
pub(crate) fn truncate(value: u128, width: usize) -> u128 {
    value & (u128::MAX >> (128 - 8 * width))
}

/// The comparison key of an output for hash function `j`.
pub(crate) fn lookup_key(j: usize, value: u128) -> u128 {
    ((j as u128) << 120) | value
}

/// Bins whose codewords one parallel task computes, batched per AES key.
const BINS_PER_TASK: usize = 256;

impl OtReceiverExtending {
    /// The rows `c_i` of `bins`: the codeword of the item placed in each, or a random row for
    /// an empty bin.
    fn codewords(&self, bins: &[usize]) -> Vec<Row> {
        let (placed, empty): (Vec<usize>, Vec<usize>) =
            (0..bins.len()).partition(|&k| self.table.slots[bins[k]] != 0);
        let placed_inputs: Vec<(ItemDigest, usize)> = placed
            .iter()
            .map(|&k| {
                let slot = self.table.slots[bins[k]] as usize;
                (
                    self.digests[slot - 1],
                    usize::from(self.table.hash_index[bins[k]]),
                )
            })
            .collect();
        let empty_inputs: Vec<(ItemDigest, usize)> = empty
            .iter()
            .map(|&k| ((bins[k] as u128).to_le_bytes(), 0))
            .collect();
        let mut rows = vec![[0u64; ROW_WORDS]; bins.len()];
        for (positions, mut computed) in [
            (placed, self.code.codewords(&placed_inputs)),
            (empty, self.dummy.codewords(&empty_inputs)),
        ] {
            for (k, row) in positions.into_iter().zip(&computed) {
                rows[k] = *row;
            }
            computed.zeroize();
        }
        rows
    }

    /// The next columns frame, or `None` when every bin has been sent.
    pub fn next_batch(&mut self) -> Option<Frame> {
        let bins = self.table.slots.len();
        if self.next >= bins {
            return None;
        }
        let first = self.next;
        let rows = DEFAULT_BATCH_ROWS.min(bins - first);
        let words = rows / 64;
        // The receiver's rows: codewords of the placed items, random rows for empty bins.
        let mut codewords: Vec<Row> = (first..first + rows)
            .into_par_iter()
            .chunks(BINS_PER_TASK)
            .flat_map_iter(|bins| self.codewords(&bins))
            .collect();
        let mut code_columns = rows_to_columns(&codewords);
        codewords.zeroize();
        let mut t0 = vec![0u64; CODE_BITS * words];
        let mut u = vec![0u64; CODE_BITS * words];
        t0.par_chunks_mut(words)
            .zip(u.par_chunks_mut(words))
            .enumerate()
            .for_each(|(j, (t0, u))| {
                let (g0, g1) = &self.prgs[j];
                g0.fill(first as u64, t0);
                g1.fill(first as u64, u);
                let c = &code_columns[j * words..(j + 1) * words];
                for ((u, t), c) in u.iter_mut().zip(t0.iter()).zip(c) {
                    *u ^= t ^ c;
                }
            });
        code_columns.zeroize();
        let mut t_rows = columns_to_rows(&t0, rows);
        t0.zeroize();
        let own: Vec<(u128, u32)> = t_rows
            .par_iter()
            .enumerate()
            .map_init(
                || self.hash.clone(),
                |hash, (r, t)| {
                    let bin = first + r;
                    let slot = self.table.slots[bin];
                    (slot != 0).then(|| {
                        let j = usize::from(self.table.hash_index[bin]);
                        let value = truncate(hash.hash(bin as u64, t), self.width);
                        (lookup_key(j, value), slot - 1)
                    })
                },
            )
            .flatten()
            .collect();
        t_rows.zeroize();
        for (key, item) in own {
            // Sized for every item, and each item occupies exactly one bin.
            let inserted = self.own.insert(key, item);
            debug_assert!(inserted);
        }
        self.next = first + rows;
        Some(wire::columns(rows, &u))
    }

    /// Bins not yet sent.
    pub fn remaining(&self) -> usize {
        self.table.slots.len() - self.next
    }

    /// Moves to comparing. Every batch must have been taken.
    pub fn finish(self) -> Result<OtReceiverComparing, OtPsiError> {
        if self.remaining() > 0 {
            return Err(PsiError::Incomplete {
                what: "column batches",
                expected: self.table.slots.len() as u64,
                received: self.next as u64,
            }
            .into());
        }
        Ok(OtReceiverComparing {
            matched: vec![false; self.keys.len()],
            own: self.own,
            width: self.width,
            peer_items: self.peer_items,
            received: 0,
            keys: self.keys,
        })
    }
}

/// Round 3: the receiver compares the sender's outputs with its own.
pub struct OtReceiverComparing {
    keys: KeySet,
    own: OwnTable,
    matched: Vec<bool>,
    width: usize,
    peer_items: u64,
    received: u64,
}

impl std::fmt::Debug for OtReceiverComparing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtReceiverComparing")
            .field("peer_items", &self.peer_items)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl OtReceiverComparing {
    /// Takes one outputs batch.
    pub fn handle(&mut self, message: OtMessage) -> Result<(), OtPsiError> {
        let OtMessage::Outputs { width, values } = message else {
            return Err(PsiError::Unexpected {
                state: "OT receiver comparing",
                message: message.name(),
            }
            .into());
        };
        if width != self.width {
            return Err(OtPsiError::OutputWidthMismatch {
                expected: self.width,
                found: width,
            });
        }
        let received = self.received + values.len() as u64;
        if received > self.peer_items {
            return Err(PsiError::TooManyItems {
                what: "sender outputs",
                announced: self.peer_items,
                received,
            }
            .into());
        }
        self.received = received;
        let own = &self.own;
        let hits: Vec<u32> = values
            .par_iter()
            .flat_map_iter(|triple| {
                let mut hits = Vec::new();
                for (j, &value) in triple.iter().enumerate() {
                    own.for_each_match(lookup_key(j, value), |item| hits.push(item));
                }
                hits
            })
            .collect();
        for item in hits {
            self.matched[item as usize] = true;
        }
        Ok(())
    }

    /// True once every announced sender item has arrived.
    pub fn is_complete(&self) -> bool {
        self.received == self.peer_items
    }

    /// The receiver's output.
    pub fn finish(self) -> Result<ReceiverOutput, OtPsiError> {
        if !self.is_complete() {
            return Err(PsiError::Incomplete {
                what: "sender outputs",
                expected: self.peer_items,
                received: self.received,
            }
            .into());
        }
        Ok(ReceiverOutput {
            cardinality: self.matched.iter().filter(|&&m| m).count() as u64,
            matched_rows: Some(self.keys.rows_matching(&self.matched)),
            peer_items: self.peer_items,
            input: self.keys.report(),
        })
    }
}
