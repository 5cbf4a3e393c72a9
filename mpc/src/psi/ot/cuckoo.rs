//! Cuckoo hashing of the receiver's items (one item per bin, three hash functions, no stash),
//! and the table size.
//!
//! # Parameters and failure probability
//! The table has `bins(n) = max(⌈1.5·n⌉, 2^13)` bins, rounded up to a multiple of 128. For three
//! hash functions without a stash, Pinkas–Schneider–Tkachenko–Yanai (Eurocrypt 2019, §5.3) fit
//! the failure probability of random-walk insertion empirically as `2^-λ` with
//! `λ ≈ 123.5·e − 130` for `e = bins/n` and large `n` (smaller slopes below 2^10 items); at
//! `e = 1.5` that is `λ ≈ 55`, leaving margin over the required 40. Below 2^12 items the floor of
//! 2^13 bins keeps the load at most one half.
//!
//! A failed insertion (more than [`MAX_EVICTIONS`] evictions for one item) is never silent: the
//! receiver draws a fresh hash seed and starts again, up to [`MAX_ATTEMPTS`] times, then reports
//! [`super::OtPsiError::CuckooFailed`]. Independent attempts fail together with probability
//! `p^MAX_ATTEMPTS` for a per-attempt probability `p`. What a retry leaks: the seed the sender
//! sees is conditioned on having worked for the receiver's set, which moves its distribution by
//! at most `p` in statistical distance (≤ 2^-40 at these parameters).

use super::prims::{BinHasher, HASHES, ItemDigest};

/// Evictions allowed while inserting one item before the attempt counts as failed.
pub const MAX_EVICTIONS: usize = 2000;

/// Hash seeds tried before giving up.
pub const MAX_ATTEMPTS: u32 = 4;

/// Bins for `items` receiver items (see the module docs).
pub fn bins_for(items: u64) -> u64 {
    let scaled = items.saturating_mul(3).div_ceil(2).max(1 << 13);
    scaled.div_ceil(128) * 128
}

/// Where each receiver item sits: `slots[bin] = item + 1` (0 for an empty bin) and the hash
/// function that put it there.
pub(crate) struct CuckooTable {
    // (Debug below prints the size only: the table says where the receiver's items sit.)
    pub(crate) slots: Vec<u32>,
    pub(crate) hash_index: Vec<u8>,
}

impl std::fmt::Debug for CuckooTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CuckooTable")
            .field("bins", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// Places every item in one of its three bins, or `None` when some item needed more than
/// [`MAX_EVICTIONS`] evictions.
pub(crate) fn place(
    digests: &[ItemDigest],
    hasher: &BinHasher,
    bins: usize,
) -> Option<CuckooTable> {
    use rayon::prelude::*;
    let candidates: Vec<[u32; HASHES]> = digests.par_iter().map(|d| hasher.bins(d)).collect();
    let mut slots = vec![0u32; bins];
    let mut hash_index = vec![0u8; bins];
    // The eviction walk needs no secrecy, only spread: a small xorshift, seeded per table.
    let mut walk: u64 = 0x9e37_79b9_7f4a_7c15 ^ digests.len() as u64;
    for item in 0..digests.len() {
        let mut current = item as u32;
        let mut evictions = 0;
        loop {
            let options = &candidates[current as usize];
            if let Some(j) = options.iter().position(|&b| slots[b as usize] == 0) {
                slots[options[j] as usize] = current + 1;
                hash_index[options[j] as usize] = j as u8;
                break;
            }
            if evictions == MAX_EVICTIONS {
                return None;
            }
            evictions += 1;
            walk ^= walk << 13;
            walk ^= walk >> 7;
            walk ^= walk << 17;
            let j = (walk % HASHES as u64) as usize;
            let bin = options[j] as usize;
            let evicted = slots[bin] - 1;
            slots[bin] = current + 1;
            hash_index[bin] = j as u8;
            current = evicted;
        }
    }
    Some(CuckooTable { slots, hash_index })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::prims::item_digest;
    use super::*;
    use crate::session::SessionId;

    fn digests(n: u32) -> Vec<ItemDigest> {
        (0..n)
            .map(|i| item_digest(SessionId([1; 16]), &i.to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_item_lands_in_one_of_its_bins() {
        let d = digests(20_000);
        let bins = bins_for(20_000) as usize;
        let hasher = BinHasher::new(&[9; 16], bins as u64);
        let table = place(&d, &hasher, bins).unwrap();
        let mut seen = vec![false; d.len()];
        for (bin, &slot) in table.slots.iter().enumerate() {
            if slot == 0 {
                continue;
            }
            let item = (slot - 1) as usize;
            assert!(!seen[item]);
            seen[item] = true;
            let j = table.hash_index[bin] as usize;
            assert_eq!(hasher.bins(&d[item])[j] as usize, bin);
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn too_few_bins_fail() {
        let d = digests(300);
        let hasher = BinHasher::new(&[9; 16], 256);
        assert!(place(&d, &hasher, 256).is_none());
    }

    #[test]
    fn table_sizes() {
        assert_eq!(bins_for(0), 8192);
        assert_eq!(bins_for(1 << 20), 1_572_864);
        assert_eq!(bins_for(1_000_001) % 128, 0);
    }
}
