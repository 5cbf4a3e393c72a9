//! The OT-PSI sender: answers the base OTs with secret choice bits, rebuilds its OPRF keys from
//! the receiver's columns, and streams its items' OPRF outputs in a random order.

use rand::CryptoRng;
use rand::seq::SliceRandom as _;
use rayon::prelude::*;
use zeroize::{Zeroize as _, Zeroizing};

use super::base::{self, ChoiceBits};
use super::cuckoo;
use super::prims::{
    AesKey, BinHasher, CODE_BITS, Code, ColumnPrg, CrHash, HASHES, ItemDigest, ROW_WORDS, Row,
    columns_to_rows, item_digests,
};
use super::receiver::truncate;
use super::wire::{self, MAX_OUTPUT_ITEMS, OtMessage};
use super::{OtPsiError, OtPsiParams, output_len};
use crate::psi::keys::KeySet;
use crate::psi::{PsiError, SenderOutput};
use crate::session::Frame;

/// Bins answered by one parallel task: a few hundred pairs, enough to batch their AES.
const BINS_PER_TASK: usize = 128;

/// Every (item, hash function) pair of the sender, grouped by the bin it lands in, so that a
/// batch of key rows is answered the moment it arrives (the rows are still in cache, and no row
/// is kept once its batch is answered). A counting sort of the `3·n` pairs by bin.
struct BinIndex {
    /// Bin `b`'s pairs are at positions `start[b]..start[b + 1]` of `items` and `hashes`.
    start: Vec<u64>,
    /// The pair's item.
    items: Vec<u32>,
    /// The pair's hash function (0, 1 or 2).
    hashes: Vec<u8>,
}

impl BinIndex {
    fn new(hasher: &BinHasher, digests: &[ItemDigest], bins: usize) -> Self {
        let placed: Vec<[u32; HASHES]> = digests.par_iter().map(|d| hasher.bins(d)).collect();
        let mut start = vec![0u64; bins + 1];
        for bin in placed.iter().flatten() {
            start[*bin as usize + 1] += 1;
        }
        for b in 0..bins {
            start[b + 1] += start[b];
        }
        let pairs = HASHES * digests.len();
        let mut next = start.clone();
        let mut items = vec![0u32; pairs];
        let mut hashes = vec![0u8; pairs];
        for (item, bins) in placed.iter().enumerate() {
            for (j, &bin) in bins.iter().enumerate() {
                let at = next[bin as usize] as usize;
                next[bin as usize] += 1;
                // Items are below MAX_DISTINCT_KEYS < u32::MAX; j < 3.
                items[at] = item as u32;
                hashes[at] = j as u8;
            }
        }
        Self {
            start,
            items,
            hashes,
        }
    }

    /// The positions of the pairs in bins `[first, end)`.
    fn pairs(&self, first: usize, end: usize) -> std::ops::Range<usize> {
        self.start[first] as usize..self.start[end] as usize
    }
}

/// Round 1: the sender waits for the receiver's hello.
pub struct OtSenderAwaitHello {
    params: OtPsiParams,
    keys: KeySet,
    digests: Vec<ItemDigest>,
    choices: ChoiceBits,
    order: Vec<u32>,
    code_seed: AesKey,
}

impl std::fmt::Debug for OtSenderAwaitHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtSenderAwaitHello")
            .field("params", &self.params)
            .field("items", &self.digests.len())
            .field("choices", &self.choices)
            .finish_non_exhaustive()
    }
}

impl OtSenderAwaitHello {
    /// Accepts a session for `params` over `keys`: digests the keys and draws the choice bits,
    /// the code seed and the order in which outputs will be sent.
    pub fn start<R: CryptoRng + ?Sized>(
        params: OtPsiParams,
        keys: KeySet,
        rng: &mut R,
    ) -> Result<Self, OtPsiError> {
        if keys.spec() != params.keys() {
            return Err(PsiError::KeySpecMismatch.into());
        }
        let session = params.session();
        let digests = item_digests(session, keys.distinct());
        // Distinct keys ≤ MAX_DISTINCT_KEYS < u32::MAX, checked when the set was built.
        let mut order: Vec<u32> = (0..digests.len() as u32).collect();
        order.shuffle(rng);
        Ok(Self {
            choices: ChoiceBits::random(rng),
            code_seed: AesKey::random(rng),
            params,
            keys,
            digests,
            order,
        })
    }

    /// Takes the hello: answers the base OTs. Returns the next state and the setup frame.
    pub fn handle<R: CryptoRng + ?Sized>(
        self,
        message: OtMessage,
        rng: &mut R,
    ) -> Result<(OtSenderExtending, Frame), OtPsiError> {
        let OtMessage::Hello {
            params,
            items,
            bins,
            hash_seed,
            point,
        } = message
        else {
            return Err(PsiError::Unexpected {
                state: "OT sender awaiting hello",
                message: message.name(),
            }
            .into());
        };
        if params != self.params.digest() {
            return Err(PsiError::ParamsMismatch.into());
        }
        self.params.peer_limit.check(items)?;
        let expected = cuckoo::bins_for(items);
        if bins != expected {
            return Err(OtPsiError::BinsMismatch {
                announced: bins,
                expected,
            });
        }
        if bins > cuckoo::MAX_BINS {
            return Err(OtPsiError::TableTooLarge {
                items,
                bins,
                limit: cuckoo::MAX_BINS,
            });
        }
        let (points, keys) =
            base::receiver_choose(self.params.session(), &point, &self.choices, rng);
        let setup = wire::setup(
            &self.params.digest(),
            self.digests.len() as u64,
            &self.code_seed.0,
            &points,
        );
        let hasher = BinHasher::new(&hash_seed, bins);
        let width = output_len(items, self.digests.len() as u64);
        let state = OtSenderExtending {
            prgs: keys.iter().map(ColumnPrg::new).collect(),
            // Built when the first columns arrive, so that the setup frame leaves first and the
            // receiver computes its columns meanwhile.
            index: None,
            hasher,
            code: Code::new(&self.code_seed),
            hash: CrHash::default(),
            outputs: vec![0u8; HASHES * width * self.digests.len()],
            received: 0,
            bins: bins as usize,
            width,
            peer_items: items,
            params: self.params,
            keys: self.keys,
            digests: self.digests,
            choices: self.choices,
            order: self.order,
        };
        Ok((state, setup))
    }
}

/// Round 2: the sender turns each of the receiver's column batches into OPRF key rows and
/// computes the outputs of every (item, hash function) pair in those bins.
pub struct OtSenderExtending {
    params: OtPsiParams,
    keys: KeySet,
    digests: Vec<ItemDigest>,
    choices: ChoiceBits,
    order: Vec<u32>,
    prgs: Vec<ColumnPrg>,
    index: Option<BinIndex>,
    hasher: BinHasher,
    code: Code,
    hash: CrHash,
    /// The truncated outputs `F_{h_j(y)}(y, j)`, as sent: item `y`'s three at
    /// `[3·width·y, 3·width·(y + 1))`, filled in as the bins' rows arrive.
    outputs: Vec<u8>,
    /// Bins whose rows have arrived.
    received: usize,
    bins: usize,
    width: usize,
    peer_items: u64,
}

impl std::fmt::Debug for OtSenderExtending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtSenderExtending")
            .field("params", &self.params)
            .field("received", &self.received)
            .field("bins", &self.bins)
            .finish_non_exhaustive()
    }
}

impl OtSenderExtending {
    /// Takes one columns batch, and answers every (item, hash function) pair whose bin it
    /// covers.
    pub fn handle(&mut self, message: OtMessage) -> Result<(), OtPsiError> {
        let OtMessage::Columns { rows, words: u } = message else {
            return Err(PsiError::Unexpected {
                state: "OT sender extending",
                message: message.name(),
            }
            .into());
        };
        let first = self.received;
        if first + rows > self.bins {
            return Err(PsiError::TooManyItems {
                what: "cuckoo bins",
                announced: self.bins as u64,
                received: (first + rows) as u64,
            }
            .into());
        }
        let index = match self.index.take() {
            Some(index) => index,
            None => BinIndex::new(&self.hasher, &self.digests, self.bins),
        };
        let words = rows / 64;
        let mut q = vec![0u64; CODE_BITS * words];
        let choices = &self.choices;
        q.par_chunks_mut(words).enumerate().for_each(|(j, q)| {
            self.prgs[j].fill(first as u64, q);
            // All ones when s_j = 1: q^j = G(k_j^{s_j}) ⊕ (s_j · u_j), without a branch on s_j.
            let mask = 0u64.wrapping_sub(u64::from(choices.bit(j)));
            for (q, u) in q.iter_mut().zip(&u[j * words..(j + 1) * words]) {
                *q ^= u & mask;
            }
        });
        // The sender's OPRF key rows q_i for these bins: secret, and dropped with this batch.
        let key_rows = Zeroizing::new(columns_to_rows(&q, rows));
        q.zeroize();
        self.received = first + rows;

        // Answered in tasks of BINS_PER_TASK bins, in bin order, so the values line up with
        // `pairs`.
        let this = &*self;
        let values: Vec<Vec<u128>> = (0..rows.div_ceil(BINS_PER_TASK))
            .into_par_iter()
            .map(|task| {
                let start = first + task * BINS_PER_TASK;
                let end = (start + BINS_PER_TASK).min(first + rows);
                this.answer(&index, start, end, &key_rows[start - first..end - first])
            })
            .collect();
        let width = self.width;
        let pairs = index.pairs(first, first + rows);
        for (p, value) in pairs.zip(values.into_iter().flatten()) {
            let item = index.items[p] as usize;
            let j = usize::from(index.hashes[p]);
            let at = (HASHES * item + j) * width;
            // The value's low `width` bytes, big-endian, byte by byte: a copy of a run-time
            // length would be a `memcpy` call per value, the most costly step of this loop.
            for (k, byte) in self.outputs[at..at + width].iter_mut().enumerate() {
                *byte = (value >> (8 * (width - 1 - k))) as u8;
            }
        }
        self.index = Some(index);
        Ok(())
    }

    /// The outputs of the pairs in bins `[start, end)`, whose key rows are `q`, in pair order.
    /// For item `y` and hash function `j` in bin `i`: `F_i(y, j) = H(i, q_i ⊕ (C(y, j) ∧ s))`,
    /// truncated to the output width.
    fn answer(&self, index: &BinIndex, start: usize, end: usize, q: &[Row]) -> Vec<u128> {
        let pairs = index.pairs(start, end);
        let inputs: Vec<(ItemDigest, usize)> = pairs
            .clone()
            .map(|p| {
                let item = index.items[p] as usize;
                (self.digests[item], usize::from(index.hashes[p]))
            })
            .collect();
        let mut codes = self.code.codewords(&inputs);
        let mut hash = self.hash.clone();
        let mut z: Row = [0; ROW_WORDS];
        let mut bin = start;
        let values = pairs
            .zip(&codes)
            .map(|(p, code)| {
                while index.start[bin + 1] as usize <= p {
                    bin += 1;
                }
                let q = &q[bin - start];
                for (w, z) in z.iter_mut().enumerate() {
                    *z = q[w] ^ (code[w] & self.choices.0[w]);
                }
                truncate(hash.hash(bin as u64, &z), self.width)
            })
            .collect();
        codes.zeroize();
        z.zeroize();
        values
    }

    /// True once every bin's row has arrived.
    pub fn is_complete(&self) -> bool {
        self.received == self.bins
    }

    /// Moves to answering. Every batch must have arrived.
    pub fn finish(self) -> Result<OtSenderAnswering, OtPsiError> {
        if !self.is_complete() {
            return Err(PsiError::Incomplete {
                what: "cuckoo bins",
                expected: self.bins as u64,
                received: self.received as u64,
            }
            .into());
        }
        Ok(OtSenderAnswering {
            outputs: self.outputs,
            width: self.width,
            order: self.order,
            next: 0,
            keys: self.keys,
            peer_items: self.peer_items,
        })
    }
}

/// Round 3: the sender streams its OPRF outputs, its items in a random order.
pub struct OtSenderAnswering {
    outputs: Vec<u8>,
    width: usize,
    keys: KeySet,
    order: Vec<u32>,
    next: usize,
    peer_items: u64,
}

impl std::fmt::Debug for OtSenderAnswering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtSenderAnswering")
            .field("next", &self.next)
            .field("items", &self.order.len())
            .finish_non_exhaustive()
    }
}

impl OtSenderAnswering {
    /// The next outputs frame, or `None` when every item has been sent.
    pub fn next_batch(&mut self) -> Option<Frame> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + MAX_OUTPUT_ITEMS).min(self.order.len());
        let triple = HASHES * self.width;
        let items = &self.order[self.next..end];
        self.next = end;
        Some(wire::outputs(
            self.width,
            items.len(),
            items.iter().map(|&item| {
                let at = item as usize * triple;
                &self.outputs[at..at + triple]
            }),
        ))
    }

    /// The sender's output (it learns only the receiver's size). Every batch must have been taken.
    pub fn finish(self) -> Result<SenderOutput, OtPsiError> {
        if self.next < self.order.len() {
            return Err(PsiError::Incomplete {
                what: "output batches",
                expected: self.order.len() as u64,
                received: self.next as u64,
            }
            .into());
        }
        Ok(SenderOutput {
            peer_items: self.peer_items,
            cardinality: None,
            matched_rows: None,
            input: self.keys.report(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bin_index_lists_every_pair_once_under_its_bin() {
        // Few bins, so that an item's hash functions often share a bin.
        let bins = 7;
        let hasher = BinHasher::new(&[9; 16], bins as u64);
        let digests: Vec<ItemDigest> = (0..200u8).map(|i| [i; 16]).collect();
        let index = BinIndex::new(&hasher, &digests, bins);
        let mut seen = vec![[false; HASHES]; digests.len()];
        for bin in 0..bins {
            for p in index.pairs(bin, bin + 1) {
                let (item, j) = (index.items[p] as usize, usize::from(index.hashes[p]));
                assert_eq!(hasher.bins(&digests[item])[j] as usize, bin);
                assert!(!seen[item][j], "pair ({item}, {j}) listed twice");
                seen[item][j] = true;
            }
        }
        assert!(seen.iter().flatten().all(|&s| s));
        assert_eq!(index.pairs(0, bins), 0..HASHES * digests.len());
    }
}
