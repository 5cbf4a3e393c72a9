//! The OT-PSI sender: answers the base OTs with secret choice bits, rebuilds its OPRF keys from
//! the receiver's columns, and streams its items' OPRF outputs in a random order.

use rand::CryptoRng;
use rand::seq::SliceRandom as _;
use rayon::prelude::*;
use zeroize::{Zeroize as _, ZeroizeOnDrop};

use super::base::{self, ChoiceBits};
use super::cuckoo;
use super::prims::{
    AesKey, BinHasher, CODE_BITS, Code, ColumnPrg, CrHash, HASHES, ItemDigest, Row,
    columns_to_rows, item_digest,
};
use super::receiver::truncate;
use super::wire::{self, MAX_OUTPUT_ITEMS, OtMessage};
use super::{OtPsiError, OtPsiParams, output_len};
use crate::psi::keys::{KeySet, check_peer_count};
use crate::psi::{PsiError, SenderOutput};
use crate::session::Frame;

/// The sender's OPRF key rows `q_i`, one per bin. Redacted, zeroized on drop.
struct KeyRows(Vec<Row>);

impl Drop for KeyRows {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for KeyRows {}

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
        let digests: Vec<ItemDigest> = keys
            .distinct()
            .par_iter()
            .map(|k| item_digest(session, k))
            .collect();
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
        check_peer_count(items)?;
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
        let state = OtSenderExtending {
            prgs: keys.iter().map(ColumnPrg::new).collect(),
            hasher: BinHasher::new(&hash_seed, bins),
            code: Code::new(&self.code_seed),
            rows: KeyRows(Vec::with_capacity(bins as usize)),
            bins: bins as usize,
            width: output_len(items, self.digests.len() as u64),
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

/// Round 2: the sender turns the receiver's column batches into its OPRF key rows.
pub struct OtSenderExtending {
    params: OtPsiParams,
    keys: KeySet,
    digests: Vec<ItemDigest>,
    choices: ChoiceBits,
    order: Vec<u32>,
    prgs: Vec<ColumnPrg>,
    hasher: BinHasher,
    code: Code,
    rows: KeyRows,
    bins: usize,
    width: usize,
    peer_items: u64,
}

impl std::fmt::Debug for OtSenderExtending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtSenderExtending")
            .field("params", &self.params)
            .field("rows", &self.rows.0.len())
            .field("bins", &self.bins)
            .finish_non_exhaustive()
    }
}

impl OtSenderExtending {
    /// Takes one columns batch.
    pub fn handle(&mut self, message: OtMessage) -> Result<(), OtPsiError> {
        let OtMessage::Columns { rows, words: u } = message else {
            return Err(PsiError::Unexpected {
                state: "OT sender extending",
                message: message.name(),
            }
            .into());
        };
        let first = self.rows.0.len();
        if first + rows > self.bins {
            return Err(PsiError::TooManyItems {
                what: "cuckoo bins",
                announced: self.bins as u64,
                received: (first + rows) as u64,
            }
            .into());
        }
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
        let mut new_rows = columns_to_rows(&q, rows);
        q.zeroize();
        self.rows.0.extend_from_slice(&new_rows);
        new_rows.zeroize();
        Ok(())
    }

    /// True once every bin's row has arrived.
    pub fn is_complete(&self) -> bool {
        self.rows.0.len() == self.bins
    }

    /// Moves to answering. Every batch must have arrived.
    pub fn finish(self) -> Result<OtSenderAnswering, OtPsiError> {
        if !self.is_complete() {
            return Err(PsiError::Incomplete {
                what: "cuckoo bins",
                expected: self.bins as u64,
                received: self.rows.0.len() as u64,
            }
            .into());
        }
        Ok(OtSenderAnswering {
            inner: Answering {
                rows: self.rows,
                digests: self.digests,
                choices: self.choices,
                hasher: self.hasher,
                code: self.code,
                hash: CrHash::default(),
                width: self.width,
            },
            order: self.order,
            next: 0,
            keys: self.keys,
            peer_items: self.peer_items,
        })
    }
}

struct Answering {
    rows: KeyRows,
    digests: Vec<ItemDigest>,
    choices: ChoiceBits,
    hasher: BinHasher,
    code: Code,
    hash: CrHash,
    width: usize,
}

impl Answering {
    /// `F_{h_j(y)}(y, j)` for the three hash functions, truncated.
    fn outputs(&self, item: u32) -> [u128; HASHES] {
        let digest = &self.digests[item as usize];
        let bins = self.hasher.bins(digest);
        std::array::from_fn(|j| {
            let bin = bins[j] as usize;
            let code = self.code.codeword(digest, j);
            let q = &self.rows.0[bin];
            let mut z: Row = std::array::from_fn(|w| q[w] ^ (code[w] & self.choices.0[w]));
            let value = truncate(self.hash.hash(bin as u64, &z), self.width);
            z.zeroize();
            value
        })
    }
}

/// Round 3: the sender streams its OPRF outputs, its items in a random order.
pub struct OtSenderAnswering {
    inner: Answering,
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
        let inner = &self.inner;
        let values: Vec<[u128; HASHES]> = self.order[self.next..end]
            .par_iter()
            .map(|&item| inner.outputs(item))
            .collect();
        self.next = end;
        Some(wire::outputs(inner.width, &values))
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
