//! Cuckoo hashing of the receiver's items (one item per bin, three hash functions, no stash),
//! and the table size.
//!
//! # Parameters and failure probability
//! The table has `bins(n) = max(⌈n·(σ + 256 + ⌈log2 n⌉) / 240⌉, 2^13)` bins for `σ = 40`,
//! rounded up to a multiple of 128: `1.30·n` at 2^16 items, `1.317·n` at 2^20, `1.334·n` at
//! 2^24. The formula is the fit for three hash functions without a stash in libOTe's
//! cryptoTools (`CuckooIndex::selectParams`, the parameter choice of libPSI and its KKRT16
//! implementation): failure probability `2^-λ` with `λ = 240·e − 256 − log2 n` for the
//! expansion `e = bins/n` and `n ≥ 2^9`, solved for `λ = σ = 40`.
//!
//! Other published figures, and why this one: Pinkas–Schneider–Zohner (ACM TOPS 2018) and
//! Pinkas–Schneider–Tkachenko–Yanai (Eurocrypt 2019, whose code uses it by default) take a flat
//! `e = 1.27` for three hash functions and `σ = 40`, which the fit above puts at `λ ≈ 29` for
//! 2^20 items; an earlier cryptoTools fit, `λ = 123.5·e − 130 − log2 n` (the one this module
//! used to quote, without its `log2 n` term), would put the old `1.5·n` at only `λ ≈ 35`.
//! Measured with *this* insertion (random walk, [`MAX_EVICTIONS`]) by the ignored test
//! `cuckoo_failure_rates`: at `e = 1.11` one attempt in 25 fails (n = 2^12 and 2^16), at
//! `e = 1.12` 4 in 3,000 (2^12) and 0 in 3,000 (2^16), at `e ≥ 1.13` none. That is above the
//! older fit's prediction by tens of bits and still above the chosen fit, whose `e` is larger
//! by ≥ 0.16: the chosen fit is the conservative of the two that the measurements allow, and the
//! per-attempt failure probability at these table sizes is taken to be ≤ 2^-40 (an empirical
//! extrapolation, as for every cuckoo parameter in the PSI literature; no closed-form bound
//! this tight exists for three hash functions without a stash). Below about 6,000 items the
//! floor of 2^13 bins keeps `e` above 1.33.
//!
//! A failed insertion (more than [`MAX_EVICTIONS`] evictions for one item) is never silent and
//! never a panic: the receiver draws a fresh hash seed and starts again, up to [`MAX_ATTEMPTS`]
//! times, then reports [`super::OtPsiError::CuckooFailed`] with the sizes involved. Independent
//! attempts fail together with probability `p^MAX_ATTEMPTS` for a per-attempt probability `p`.
//! What a retry leaks: the seed the sender sees is conditioned on having worked for the
//! receiver's set, which moves its distribution by at most `p` in statistical distance (≤ 2^-40
//! at these parameters).

use super::prims::{BinHasher, HASHES, ItemDigest};

/// Evictions allowed while inserting one item before the attempt counts as failed.
pub const MAX_EVICTIONS: usize = 2000;

/// Hash seeds tried before giving up.
pub const MAX_ATTEMPTS: u32 = 4;

/// Largest table: bin indices are `u32` (about 3.2·10^9 receiver items).
pub const MAX_BINS: u64 = 1 << 32;

/// Statistical security of the table size, in bits.
pub const STAT_SECURITY: u64 = 40;

/// Bins for `items` receiver items (see the module docs). Integer arithmetic only: both parties
/// compute it and must agree.
pub fn bins_for(items: u64) -> u64 {
    let log = u64::from(64 - items.saturating_sub(1).leading_zeros());
    let numerator = u128::from(items) * u128::from(STAT_SECURITY + 256 + log);
    let scaled = u64::try_from(numerator.div_ceil(240)).unwrap_or(u64::MAX);
    scaled.max(1 << 13).div_ceil(128) * 128
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

    /// Failure rate of one insertion attempt at loads where the published fits disagree
    /// (see the module docs). Slow: `cargo test --release -p concord-mpc cuckoo_failure_rates
    /// -- --ignored --nocapture`.
    #[test]
    #[ignore = "statistical measurement, minutes of CPU; run by hand when changing bins_for"]
    fn cuckoo_failure_rates() {
        use rayon::prelude::*;
        let trials: u32 = std::env::var("CUCKOO_TRIALS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(400);
        let list = |name: &str, default: &str| -> Vec<f64> {
            std::env::var(name)
                .unwrap_or_else(|_| default.into())
                .split(',')
                .map(|x| x.parse().unwrap())
                .collect()
        };
        for log_n in list("CUCKOO_LOG_N", "12,14,16") {
            let log_n = log_n as u32;
            let n = 1u32 << log_n;
            let d = digests(n);
            for e in list("CUCKOO_E", "1.10,1.15,1.20,1.25") {
                let bins = (f64::from(n) * e).ceil() as usize;
                let failures: u32 = (0..trials)
                    .into_par_iter()
                    .map(|t| {
                        let mut seed = [0u8; 16];
                        seed[..4].copy_from_slice(&t.to_le_bytes());
                        seed[4..8].copy_from_slice(&log_n.to_le_bytes());
                        seed[8..16].copy_from_slice(&e.to_bits().to_le_bytes());
                        let hasher = BinHasher::new(&seed, bins as u64);
                        u32::from(place(&d, &hasher, bins).is_none())
                    })
                    .sum();
                println!("n=2^{log_n} e={e:.2}: {failures}/{trials} failed");
            }
        }
    }

    #[test]
    fn table_sizes() {
        assert_eq!(bins_for(0), 8192);
        assert_eq!(bins_for(6000), 8192);
        // ⌈2^16 · 312 / 240⌉ = 85,198 → 85,248; ⌈2^20 · 316 / 240⌉ = 1,380,694 → 1,380,736.
        assert_eq!(bins_for(1 << 16), 85_248);
        assert_eq!(bins_for(1 << 20), 1_380_736);
        assert_eq!(bins_for((1 << 20) + 1), 1_385_088);
        assert_eq!(bins_for(1_000_001) % 128, 0);
        for n in [1u64 << 9, 1 << 12, 1 << 16, 1 << 20, 1 << 24, 1 << 30] {
            let e = bins_for(n) as f64 / n as f64;
            let lambda = 240.0 * e - 256.0 - (n as f64).log2();
            assert!(lambda >= 40.0, "n = {n}: λ = {lambda}");
        }
    }
}
