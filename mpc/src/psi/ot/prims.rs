//! The deterministic, symmetric-key parts of OT-PSI: item digests, the three bin hashes, the
//! pseudorandom code, the column PRG, the output hash, and the bit-matrix transpose. The bin
//! hashes, the code and the PRG run on AES-128 (AES-NI where the CPU has it, through the `aes`
//! crate); digests on SHA-256, and the output hash on SHA-256's compression function.
//!
//! Bit order, everywhere: a 512-bit row is eight little-endian `u64` words; bit `c` of the row is
//! bit `c % 64` of word `c / 64`. A column of `rows` bits is `rows / 64` little-endian words, bit
//! `r` for row `r`. Bytes on the wire are these words in little-endian order.

use aes::Aes128;
use aes::cipher::{Block, BlockCipherEncrypt as _, KeyInit as _};
use rayon::prelude::*;
use sha2::block_api::compress256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::PROTOCOL_VERSION;
use crate::psi::keys::Keys;
use crate::session::SessionId;

/// Width of the pseudorandom code in bits: each OPRF instance is one 512-bit row.
pub const CODE_BITS: usize = 512;
/// Words per row.
pub(crate) const ROW_WORDS: usize = CODE_BITS / 64;
/// AES blocks per row.
const ROW_BLOCKS: usize = CODE_BITS / 128;
/// Number of cuckoo hash functions.
pub const HASHES: usize = 3;

/// A 512-bit row (a codeword, or a row of the OT-extension matrices).
pub type Row = [u64; ROW_WORDS];

/// A 128-bit digest of a canonical key: what the bins, the code and the cuckoo table work on.
pub type ItemDigest = [u8; 16];

/// `SHA-256(prefix ‖ canonical)[..16]`, where `prefix` is `"CONCORD-V01-PSI-OT-item" ‖ session`
/// zero-padded to one 64-byte block.
///
/// The prefix fills the first block exactly, so its compression is done once per session and a
/// key of up to 55 canonical bytes (a 47-byte single-column key) costs one compression more.
///
/// Distinct keys collide with probability at most `n²/2^129` (≤ 2^-65 for 2^32 keys); a
/// collision could only add a false match.
pub fn item_digest(session: SessionId, canonical: &[u8]) -> ItemDigest {
    sha256_after_block(&digest_prefix(session), canonical, &mut Blocks::default())
}

/// The digests of a set's distinct keys, in parallel, with the prefix compressed once.
pub(crate) fn item_digests(session: SessionId, keys: Keys<'_>) -> Vec<ItemDigest> {
    let prefix = digest_prefix(session);
    keys.par_iter()
        .map_init(Blocks::default, |blocks, k| {
            sha256_after_block(&prefix, k, blocks)
        })
        .collect()
}

/// The prefix block of [`item_digest`].
fn digest_prefix_block(session: SessionId) -> [u8; 64] {
    let mut prefix = format!("CONCORD-V{PROTOCOL_VERSION:02}-PSI-OT-item").into_bytes();
    prefix.extend_from_slice(&session.0);
    padded_block(&prefix)
}

/// The SHA-256 state after the prefix block.
fn digest_prefix(session: SessionId) -> [u32; 8] {
    midstate(&digest_prefix_block(session))
}

/// `bytes` (at most 64) zero-padded to one SHA-256 block: how the digest and the output hash
/// put their domain-separation prefix in a block of its own.
fn padded_block(bytes: &[u8]) -> [u8; 64] {
    let mut block = [0u8; 64];
    block[..bytes.len()].copy_from_slice(bytes);
    block
}

/// The SHA-256 state after compressing `block` as a message's first block.
fn midstate(block: &[u8; 64]) -> [u32; 8] {
    let mut state = SHA256_IV;
    compress256(&mut state, &[*block]);
    state
}

/// Two SHA-256 blocks that hold secret bytes (a key, a row) on their way into the compression
/// function. A hashing loop reuses one `Blocks`, so each hash writes its bytes with ordinary
/// stores, and the buffer is wiped once, on drop: a volatile wipe stores byte by byte, and after
/// every hash it cost as much as a compression.
#[derive(Clone)]
struct Blocks([[u8; 64]; 2]);

impl Default for Blocks {
    fn default() -> Self {
        Self([[0; 64]; 2])
    }
}

impl Drop for Blocks {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The first 16 bytes of SHA-256 of a message whose first block gave `midstate` and whose
/// remaining bytes are `rest`: `rest`'s blocks and the padding (FIPS 180-4, §5.1.1), compressed
/// directly, through `scratch` (`rest` may be secret).
fn sha256_after_block(midstate: &[u32; 8], rest: &[u8], scratch: &mut Blocks) -> [u8; 16] {
    let mut state = *midstate;
    let mut chunks = rest.chunks_exact(64);
    for chunk in chunks.by_ref() {
        scratch.0[0].copy_from_slice(chunk);
        compress256(&mut state, &scratch.0[..1]);
    }
    // The tail, 0x80, zeros, and the message length in bits: one block, or two when the tail
    // leaves fewer than 9 bytes.
    let tail = chunks.remainder();
    let blocks = if tail.len() < 56 { 1 } else { 2 };
    let last = &mut scratch.0[..blocks];
    let flat = last.as_flattened_mut();
    flat.fill(0);
    flat[..tail.len()].copy_from_slice(tail);
    flat[tail.len()] = 0x80;
    let bits = 8 * (64 + rest.len() as u64);
    flat[64 * blocks - 8..].copy_from_slice(&bits.to_be_bytes());
    compress256(&mut state, last);
    digest_prefix_of(&state)
}

/// The first 16 bytes of the SHA-256 digest in `state` (its words big-endian).
fn digest_prefix_of(state: &[u32; 8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// A 128-bit AES key drawn by one party (the bin-hash seed, the code seed, a base-OT output).
/// Redacted in `Debug`, zeroized on drop.
#[derive(Clone)]
pub struct AesKey(pub(crate) [u8; 16]);

impl AesKey {
    /// Wraps raw bytes, for known-answer tests and decoding.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub(crate) fn random<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = [0u8; 16];
        rng.fill_bytes(&mut key);
        Self(key)
    }
}

impl Drop for AesKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for AesKey {}

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AesKey").finish_non_exhaustive()
    }
}

fn cipher(key: &[u8; 16]) -> Aes128 {
    Aes128::new(&(*key).into())
}

fn encrypt(cipher: &Aes128, x: u128) -> u128 {
    let mut block: Block<Aes128> = x.to_le_bytes().into();
    cipher.encrypt_block(&mut block);
    u128::from_le_bytes(block.into())
}

/// The three bin hashes: `AES_seed(digest)` cut into three 42-bit chunks `c_j`, each reduced to
/// `[0, bins)` by multiply-and-shift, `(c_j · bins) >> 42`. The seed is public (the receiver sends
/// it); the bias of the reduction is below `bins / 2^42` (≤ 2^-9 for 2^33 bins), which only
/// perturbs the cuckoo failure estimate.
#[derive(Clone)]
pub struct BinHasher {
    cipher: Aes128,
    bins: u64,
}

impl BinHasher {
    /// Hashes into `bins` bins (`1 ≤ bins < 2^40`) under `seed`.
    pub fn new(seed: &[u8; 16], bins: u64) -> Self {
        Self {
            cipher: cipher(seed),
            bins,
        }
    }

    /// The bins of one item, for hash functions 0, 1, 2.
    pub fn bins(&self, digest: &ItemDigest) -> [u32; HASHES] {
        let x = encrypt(&self.cipher, u128::from_le_bytes(*digest));
        std::array::from_fn(|j| {
            let chunk = ((x >> (42 * j)) as u64) & ((1 << 42) - 1);
            ((u128::from(chunk) * u128::from(self.bins)) >> 42) as u32
        })
    }
}

/// The pseudorandom code (KKRT16 §3): `C(d, j) = AES_{k_{j,0}}(d) ‖ … ‖ AES_{k_{j,3}}(d)`, a
/// 512-bit codeword for item digest `d` placed by hash function `j`. The twelve keys are
/// `k_{j,b} = AES_seed(u128 4j + b)`; the seed is drawn by the sender per session. Codewords of
/// distinct inputs are independent random 512-bit strings to anyone without the seed, so any two
/// differ in fewer than 128 positions with probability below 2^-160 (Chernoff); over 2^52 pairs the
/// code has minimum distance ≥ 128 except with probability 2^-108.
pub struct Code {
    ciphers: Vec<Aes128>,
}

impl Code {
    /// The code for `seed`.
    pub fn new(seed: &AesKey) -> Self {
        let master = cipher(&seed.0);
        let ciphers = (0..(HASHES * ROW_BLOCKS) as u128)
            .map(|i| {
                let mut key = encrypt(&master, i).to_le_bytes();
                let c = cipher(&key);
                key.zeroize();
                c
            })
            .collect();
        Self { ciphers }
    }

    /// The codeword of `digest` under hash function `j` (`j < 3`).
    pub fn codeword(&self, digest: &ItemDigest, j: usize) -> Row {
        let mut blocks: [Block<Aes128>; ROW_BLOCKS] = std::array::from_fn(|_| (*digest).into());
        for (b, block) in blocks.iter_mut().enumerate() {
            self.ciphers[j * ROW_BLOCKS + b].encrypt_block(block);
        }
        let mut row = [0u64; ROW_WORDS];
        for (b, block) in blocks.iter().enumerate() {
            let x = u128::from_le_bytes((*block).into());
            row[2 * b] = x as u64;
            row[2 * b + 1] = (x >> 64) as u64;
        }
        row
    }

    /// The codewords of many `(digest, j)` pairs: `C(digest, j)` for each, in order. The same as
    /// [`Code::codeword`] one at a time, but each of the twelve keys encrypts all of its blocks
    /// in one call, which lets the AES units pipeline them (several times faster).
    pub fn codewords(&self, inputs: &[(ItemDigest, usize)]) -> Vec<Row> {
        let mut rows = vec![[0u64; ROW_WORDS]; inputs.len()];
        let mut of_j: Vec<usize> = Vec::with_capacity(inputs.len());
        let mut plain: Vec<Block<Aes128>> = Vec::with_capacity(inputs.len());
        let mut blocks: Vec<Block<Aes128>> = Vec::with_capacity(inputs.len());
        for j in 0..HASHES {
            of_j.clear();
            plain.clear();
            for (i, (digest, _)) in inputs.iter().enumerate().filter(|(_, (_, h))| *h == j) {
                of_j.push(i);
                plain.push((*digest).into());
            }
            for b in 0..ROW_BLOCKS {
                blocks.clear();
                blocks.extend_from_slice(&plain);
                self.ciphers[j * ROW_BLOCKS + b].encrypt_blocks(&mut blocks);
                for (&i, block) in of_j.iter().zip(&blocks) {
                    let x = u128::from_le_bytes((*block).into());
                    rows[i][2 * b] = x as u64;
                    rows[i][2 * b + 1] = (x >> 64) as u64;
                }
            }
        }
        // Like the rows, the blocks are the caller's to wipe: the digests are already hashed.
        rows
    }
}

/// The column PRG of the OT extension: AES-128-CTR under a base-OT key, block `i` of the stream
/// being `AES_k(u128 i)` (little-endian), so the bits of rows `[first, first + rows)` are blocks
/// `first/128 ..` and any batch can be expanded on its own.
pub(crate) struct ColumnPrg(Aes128);

impl ColumnPrg {
    pub(crate) fn new(key: &AesKey) -> Self {
        Self(cipher(&key.0))
    }

    /// Writes the stream bits for rows `[first, first + 64·out.len())` into `out`. `first` is a
    /// multiple of 128 and `out.len()` even.
    pub(crate) fn fill(&self, first: u64, out: &mut [u64]) {
        let start = u128::from(first / 128);
        let mut blocks: Vec<Block<Aes128>> = (0..out.len() as u128 / 2)
            .map(|i| (start + i).to_le_bytes().into())
            .collect();
        self.0.encrypt_blocks(&mut blocks);
        for (pair, block) in out.chunks_exact_mut(2).zip(&blocks) {
            let x = u128::from_le_bytes((*block).into());
            pair[0] = x as u64;
            pair[1] = (x >> 64) as u64;
        }
    }
}

/// The hash `H` that turns the 512-bit row of bin `bin` into an OPRF output: one call of the
/// SHA-256 compression function `f` (FIPS 180-4, §6.2.2: Davies–Meyer over the SHACAL-2 block
/// cipher, `f(h, x) = E_x(h) + h`) on the row as its one 64-byte block,
/// `H(bin, row) = f(m ⊕ bin, row)[..16]`. `m` is SHA-256's state after the block
/// `"CONCORD-V01-PSI-OT-H"` zero-padded to 64 bytes; `bin` (a `u64`) is XORed into its first
/// two words, low half first; the output is the first four words, big-endian, as in a digest.
///
/// KKRT16 (§3, Def. 1 and Thm. 1) prove the batch OPRF secure when `H` is a random oracle applied
/// to the whole row `q_i ⊕ (C(y) ∧ s)` (they need correlation robustness for the `∧ s`
/// relation over codewords at distance ≥ κ); their implementation hashed the row with SHA-1.
/// Here: with SHACAL-2 an ideal cipher, `x ↦ f(h, x)` for a chaining value `h` fixed by the tag
/// and the bin is a random function of the 512-bit row — each row keys an independent random
/// permutation, evaluated at `h` — and `f(h, x)` is learned only by querying the cipher under the
/// key `x`, which for a row masked by `C(y) ∧ s` means guessing at least 128 bits of `s`. Distinct
/// bins have distinct chaining values, so the same row in two bins gives two points of one
/// random permutation: independent up to `2^-256` a pair. The input has a fixed length, so
/// SHA-256's padding and length block, whose purpose is collision resistance across message
/// lengths, would only cost a second compression. (Until this construction, `H` was SHA-256 of
/// `tag ‖ bin ‖ row`: two compressions per output after the tag, the largest single cost of a
/// run.)
///
/// Why not fixed-key AES: Guo–Katz–Wang–Yu (IEEE S&P 2020) prove their fixed-key-AES hashes
/// (tweakable) correlation robust for one 128-bit block under correlations `x ⊕ Δ`; the KKRT
/// correlation is a 512-bit row masked by `C(y) ∧ s`, and an XOR of four per-block hashes (what
/// this function computed before, and libOTe's default KKRT encoding) is outside their
/// theorems, with no published argument of its own. SHACAL-2 is keyed by the whole 512-bit row.
///
/// A `CrHash` keeps its block buffer, wiped on drop, so a hash writes only the row. Clone one per
/// task.
#[derive(Clone)]
pub struct CrHash {
    /// The SHA-256 state after the tag block.
    midstate: [u32; 8],
    /// The row, as the compression function's block.
    blocks: Blocks,
}

/// SHA-256's initial state (FIPS 180-4, §5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

impl CrHash {
    /// The tag block: the domain-separation tag, zero-padded to 64 bytes.
    fn tag_block() -> [u8; 64] {
        padded_block(format!("CONCORD-V{PROTOCOL_VERSION:02}-PSI-OT-H").as_bytes())
    }

    /// `H(bin, row)`, 128 bits (truncated by the caller).
    pub fn hash(&mut self, bin: u64, row: &Row) -> u128 {
        let block = &mut self.blocks.0[..1];
        for (chunk, word) in block[0].chunks_exact_mut(8).zip(row) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        let mut state = self.midstate;
        state[0] ^= bin as u32;
        state[1] ^= (bin >> 32) as u32;
        compress256(&mut state, block);
        u128::from_le_bytes(digest_prefix_of(&state))
    }
}

impl Default for CrHash {
    fn default() -> Self {
        Self {
            midstate: midstate(&Self::tag_block()),
            blocks: Blocks::default(),
        }
    }
}

/// Transposes a 64×64 bit matrix in place: afterwards bit `c` of `a[r]` is what bit `r` of
/// `a[c]` was (Hacker's Delight §7-3, recursive block swap).
pub(crate) fn transpose64(a: &mut [u64; 64]) {
    let mut j = 32;
    let mut m: u64 = 0x0000_0000_FFFF_FFFF;
    while j != 0 {
        let mut k = 0;
        while k < 64 {
            let t = ((a[k] >> j) ^ a[k + j]) & m;
            a[k] ^= t << j;
            a[k + j] ^= t;
            k = (k + j + 1) & !j;
        }
        j >>= 1;
        m ^= m << j;
    }
}

/// Columns (`CODE_BITS` columns of `rows` bits, column-major) to rows (`rows` rows of 512 bits).
/// `rows` is a multiple of 64. Each band of 64 rows is independent, so bands go to rayon's pool.
pub(crate) fn columns_to_rows(columns: &[u64], rows: usize) -> Vec<Row> {
    use rayon::prelude::*;
    let words = rows / 64;
    let mut out = vec![[0u64; ROW_WORDS]; rows];
    out.par_chunks_mut(64)
        .enumerate()
        .for_each(|(rb, band): (usize, &mut [Row])| {
            let mut block = [0u64; 64];
            for cb in 0..ROW_WORDS {
                for (c, w) in block.iter_mut().enumerate() {
                    *w = columns[(cb * 64 + c) * words + rb];
                }
                transpose64(&mut block);
                for (row, w) in band.iter_mut().zip(&block) {
                    row[cb] = *w;
                }
            }
            block.zeroize();
        });
    out
}

/// Rows to columns: the inverse of [`columns_to_rows`]. Each stripe of 64 columns is
/// independent, so stripes go to rayon's pool.
pub(crate) fn rows_to_columns(rows: &[Row]) -> Vec<u64> {
    use rayon::prelude::*;
    let words = rows.len() / 64;
    let mut out = vec![0u64; CODE_BITS * words];
    if words == 0 {
        return out;
    }
    out.par_chunks_mut(64 * words)
        .enumerate()
        .for_each(|(cb, stripe): (usize, &mut [u64])| {
            let mut block = [0u64; 64];
            for rb in 0..words {
                for (r, w) in block.iter_mut().enumerate() {
                    *w = rows[rb * 64 + r][cb];
                }
                transpose64(&mut block);
                for (c, w) in block.iter().enumerate() {
                    stripe[c * words + rb] = *w;
                }
            }
            block.zeroize();
        });
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;

    fn bit(words: &[u64], i: usize) -> bool {
        (words[i / 64] >> (i % 64)) & 1 == 1
    }

    #[test]
    fn transpose_matches_bit_by_bit() {
        let rows: Vec<Row> = (0..192u64)
            .map(|r| {
                std::array::from_fn(|w| {
                    (r + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (w as u64) << 7 ^ r << 40
                })
            })
            .collect();
        let columns = rows_to_columns(&rows);
        for (r, row) in rows.iter().enumerate() {
            for c in 0..CODE_BITS {
                assert_eq!(bit(&columns[c * 3..c * 3 + 3], r), bit(row, c), "{r},{c}");
            }
        }
        assert_eq!(columns_to_rows(&columns, 192), rows);
    }

    #[test]
    fn bins_are_in_range_and_spread() {
        let h = BinHasher::new(&[7; 16], 1000);
        let mut seen = std::collections::HashSet::new();
        for i in 0u32..2000 {
            for b in h.bins(&item_digest(SessionId([0; 16]), &i.to_be_bytes())) {
                assert!(b < 1000);
                seen.insert(b);
            }
        }
        assert!(seen.len() > 990, "{}", seen.len());
    }

    #[test]
    fn codewords_differ_by_hash_index_and_item() {
        let code = Code::new(&AesKey([3; 16]));
        let d = [1u8; 16];
        let distance =
            |a: Row, b: Row| -> u32 { a.iter().zip(&b).map(|(x, y)| (x ^ y).count_ones()).sum() };
        assert!(distance(code.codeword(&d, 0), code.codeword(&d, 1)) > 128);
        assert!(distance(code.codeword(&d, 0), code.codeword(&[2u8; 16], 0)) > 128);
        assert_eq!(code.codeword(&d, 2), code.codeword(&d, 2));
    }

    #[test]
    fn batched_codewords_equal_single_ones() {
        let code = Code::new(&AesKey([4; 16]));
        let inputs: Vec<(ItemDigest, usize)> = (0..50u8)
            .map(|i| ([i; 16], usize::from(i % 7) % 3))
            .collect();
        let batch = code.codewords(&inputs);
        assert_eq!(batch.len(), inputs.len());
        for ((digest, j), row) in inputs.iter().zip(&batch) {
            assert_eq!(*row, code.codeword(digest, *j));
        }
        assert!(code.codewords(&[]).is_empty());
    }

    #[test]
    fn item_digest_is_sha256_of_the_prefix_block_and_the_key() {
        let session = SessionId([7; 16]);
        // Lengths around every padding boundary (55, 56, 63, 64, 119, 120, 128).
        for len in (0..=140).chain([1000]) {
            let key: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut message = digest_prefix_block(session).to_vec();
            message.extend_from_slice(&key);
            let full: [u8; 32] = Sha256::digest(&message).into();
            assert_eq!(item_digest(session, &key)[..], full[..16], "length {len}");
            // The same through a scratch reused from a longer and a shorter message before.
            let mut blocks = Blocks::default();
            let prefix = digest_prefix(session);
            sha256_after_block(&prefix, &[0xff; 130], &mut blocks);
            sha256_after_block(&prefix, &[0xee; 3], &mut blocks);
            assert_eq!(
                sha256_after_block(&prefix, &key, &mut blocks)[..],
                full[..16]
            );
        }
    }

    #[test]
    fn hash_is_one_compression_from_the_tag_state_with_the_bin() {
        // The chaining value is SHA-256's state after the tag block: finishing the message there
        // (its padding block) gives SHA-256 of the tag block.
        let tag = CrHash::tag_block();
        let mut state = midstate(&tag);
        let mut padding = [0u8; 64];
        padding[0] = 0x80;
        padding[56..].copy_from_slice(&512u64.to_be_bytes());
        compress256(&mut state, &[padding]);
        let full: [u8; 32] = Sha256::digest(tag).into();
        assert_eq!(digest_prefix_of(&state)[..], full[..16]);

        let mut h = CrHash::default();
        h.hash(5, &[u64::MAX; ROW_WORDS]);
        let row: Row = std::array::from_fn(|w| 0x0102_0304_0506_0708 * (w as u64 + 1));
        let bin = 0x0000_0007_0000_0077u64;
        let mut state = midstate(&tag);
        state[0] ^= 0x77;
        state[1] ^= 7;
        let mut block = [0u8; 64];
        for (w, word) in row.iter().enumerate() {
            block[8 * w..8 * w + 8].copy_from_slice(&word.to_le_bytes());
        }
        compress256(&mut state, &[block]);
        let mut first = [0u8; 16];
        for (w, word) in state[..4].iter().enumerate() {
            first[4 * w..4 * w + 4].copy_from_slice(&word.to_be_bytes());
        }
        assert_eq!(h.hash(bin, &row), u128::from_le_bytes(first));
    }

    #[test]
    fn hash_depends_on_bin_and_every_block() {
        let mut h = CrHash::default();
        let row = [5u64; ROW_WORDS];
        let base = h.hash(9, &row);
        assert_ne!(base, h.hash(10, &row));
        assert_ne!(base, h.hash(9 | 1 << 40, &row));
        for w in 0..ROW_WORDS {
            let mut other = row;
            other[w] ^= 1;
            assert_ne!(base, h.hash(9, &other), "word {w}");
        }
    }
}
