//! The deterministic steps of OT-PSI one at a time, for known-answer checks.
//!
//! `mpc/tests/vectors/psi_ot_v1.json` lists, for sample keys: the item digest, the three bins
//! under a fixed hash seed and table size, the three codewords under a fixed code seed, and the
//! correlation-robust hash of a fixed row; and frames that must decode and `bad_*` frames that
//! must be rejected. Another implementation reproduces these to interoperate with this one.

use super::prims::{AesKey, BinHasher, Code, CrHash, HASHES, ItemDigest, Row, item_digest};
use crate::session::SessionId;

/// [`item_digest`] of canonical key bytes in a session.
pub fn digest(session: SessionId, canonical: &[u8]) -> ItemDigest {
    item_digest(session, canonical)
}

/// The three bins of a digest under `seed` in a table of `bins` bins.
pub fn bins(seed: [u8; 16], bins: u64, digest: &ItemDigest) -> [u32; HASHES] {
    BinHasher::new(&seed, bins).bins(digest)
}

/// The codeword of `digest` for hash function `j` under the code seed, as 64 bytes
/// (the row's words, little-endian).
pub fn codeword(seed: [u8; 16], digest: &ItemDigest, j: usize) -> [u8; 64] {
    row_bytes(&Code::new(&AesKey::from_bytes(seed)).codeword(digest, j))
}

/// The correlation-robust hash of a 64-byte row (words little-endian) for `bin`, 16 bytes
/// big-endian (the wire truncates to the last `ℓ` of them).
pub fn cr_hash(bin: u64, row: &[u8; 64]) -> [u8; 16] {
    let words: Row = std::array::from_fn(|w| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&row[8 * w..8 * w + 8]);
        u64::from_le_bytes(b)
    });
    CrHash::default().hash(bin, &words).to_be_bytes()
}

fn row_bytes(row: &Row) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (w, word) in row.iter().enumerate() {
        out[8 * w..8 * w + 8].copy_from_slice(&word.to_le_bytes());
    }
    out
}
