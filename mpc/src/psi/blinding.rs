//! The first round both DH-style protocols share: the PSI receiver and the join key holder each
//! blind their distinct keys `[a]H(k)` a batch at a time, then keep only the inverse of `a`.

use rand::CryptoRng;

use super::group::{BlindingKey, HashToGroup, POINT_LEN, hash_and_blind};
use super::keys::KeySet;
use super::wire::{DEFAULT_BATCH_ITEMS, MAX_BATCH_ITEMS};

/// Distinct keys, the blinding key, and how far the batches have gone.
#[derive(Debug)]
pub(crate) struct Blinder {
    keys: KeySet,
    key: BlindingKey,
    h2g: HashToGroup,
    next: usize,
    batch_items: usize,
}

/// What is left once every batch is out: the keys and the blinding key's inverse (the key
/// itself is dropped, and zeroized, here).
pub(crate) struct Blinded {
    pub(crate) keys: KeySet,
    pub(crate) unblind: BlindingKey,
    pub(crate) batch_items: usize,
}

impl Blinder {
    /// Draws a fresh blinding key for `keys` under the hash `h2g`.
    pub(crate) fn new<R: CryptoRng + ?Sized>(h2g: HashToGroup, keys: KeySet, rng: &mut R) -> Self {
        Self {
            keys,
            key: BlindingKey::random(rng),
            h2g,
            next: 0,
            batch_items: DEFAULT_BATCH_ITEMS,
        }
    }

    /// Items per batch (clamped to `1..=MAX_BATCH_ITEMS`).
    pub(crate) fn set_batch_items(&mut self, items: usize) {
        self.batch_items = items.clamp(1, MAX_BATCH_ITEMS);
    }

    /// The next batch of compressed `[a]H(k)`, or `None` when all are out.
    pub(crate) fn next_points(&mut self) -> Option<Vec<[u8; POINT_LEN]>> {
        let keys = self.keys.distinct();
        if self.next >= keys.len() {
            return None;
        }
        let end = (self.next + self.batch_items).min(keys.len());
        let batch: Vec<&[u8]> = keys.range(self.next..end).iter().collect();
        let blinded = hash_and_blind(&self.h2g, &batch, &self.key);
        self.next = end;
        Some(blinded)
    }

    /// Distinct keys not yet blinded.
    pub(crate) fn remaining(&self) -> usize {
        self.keys.len() - self.next
    }

    /// Ends the round; `Err((expected, sent))` while batches remain.
    pub(crate) fn finish(self) -> Result<Blinded, (u64, u64)> {
        if self.remaining() > 0 {
            return Err((self.keys.len() as u64, self.next as u64));
        }
        Ok(Blinded {
            unblind: self.key.inverse(),
            keys: self.keys,
            batch_items: self.batch_items,
        })
    }
}
