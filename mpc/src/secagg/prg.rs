//! The mask PRG: AES-128 in counter mode, expanded in parallel chunks and added to (or subtracted
//! from) a vector mod 2^64.
//!
//! A mask is the keystream of AES-128-CTR (NIST SP 800-38A) under a 16-byte key that is used for
//! exactly one mask of one session: block `j` of the keystream is `AES_k(j)`, with `j` a 128-bit
//! big-endian counter starting at 0. Word `i` of the mask is bytes `8i..8i+8` of the keystream
//! read as a little-endian `u64` (so block `j` gives words `2j` and `2j + 1`). A vector of 2^24
//! words uses 2^23 blocks per key, far inside AES's 2^64-block bound for counter mode; the
//! distinguishing advantage from the PRP/PRF switch is at most `(2^23)^2 / 2^129 = 2^-83`.
//!
//! Counter mode is seekable, so the vector is cut into chunks of [`CHUNK_WORDS`] that rayon
//! expands independently: each task fills counter blocks for its chunk, encrypts them with AES-NI
//! (eight blocks in flight) and folds the words into the vector while they are still in cache.

use aes::Aes128;
use aes::cipher::{Array, Block, BlockCipherEncrypt as _, KeyInit as _};
use rayon::prelude::*;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Words per parallel task: 64 KiB of vector and 64 KiB of keystream, which stay in L2.
pub(crate) const CHUNK_WORDS: usize = 1 << 13;

/// A 128-bit AES key for one mask. Redacted in `Debug`, zeroized on drop.
pub(crate) struct MaskKey(pub(crate) [u8; 16]);

impl Drop for MaskKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for MaskKey {}

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskKey").finish_non_exhaustive()
    }
}

/// Whether a mask is added to or subtracted from the vector (mod 2^64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sign {
    Add,
    Sub,
}

/// One task's buffers: the counter blocks of its chunk, and the keystream under one key
/// (zeroized when the task ends).
struct Buffers {
    counters: Vec<Block<Aes128>>,
    keystream: Vec<Block<Aes128>>,
}

impl Drop for Buffers {
    fn drop(&mut self) {
        Array::slice_as_flattened_mut(&mut self.keystream).zeroize();
    }
}

/// Adds or subtracts every mask in `masks` to `vector`, word by word, mod 2^64.
pub(crate) fn apply_masks(vector: &mut [u64], masks: &[(MaskKey, Sign)]) {
    if masks.is_empty() {
        return;
    }
    // Expanded AES key schedules are zeroized on drop (the `zeroize` feature of `aes`).
    let ciphers: Vec<(Aes128, Sign)> = masks
        .iter()
        .map(|(key, sign)| (Aes128::new(&key.0.into()), *sign))
        .collect();
    vector
        .par_chunks_mut(CHUNK_WORDS)
        .enumerate()
        .for_each_init(
            || Buffers {
                counters: vec![Block::<Aes128>::default(); CHUNK_WORDS / 2],
                keystream: vec![Block::<Aes128>::default(); CHUNK_WORDS / 2],
            },
            |buffers, (index, chunk)| {
                let blocks = chunk.len().div_ceil(2);
                let first = (index * CHUNK_WORDS / 2) as u128;
                let counters = &mut buffers.counters[..blocks];
                for (j, block) in counters.iter_mut().enumerate() {
                    *block = (first + j as u128).to_be_bytes().into();
                }
                let keystream = &mut buffers.keystream[..blocks];
                for (cipher, sign) in &ciphers {
                    keystream.copy_from_slice(counters);
                    cipher.encrypt_blocks(keystream);
                    fold(chunk, Array::slice_as_flattened(keystream), *sign);
                }
            },
        );
}

/// Adds or subtracts keystream `bytes`, read as little-endian words, to `chunk`.
fn fold(chunk: &mut [u64], bytes: &[u8], sign: Sign) {
    let words = bytes.chunks_exact(8).map(le_word);
    match sign {
        Sign::Add => chunk
            .iter_mut()
            .zip(words)
            .for_each(|(w, m)| *w = w.wrapping_add(m)),
        Sign::Sub => chunk
            .iter_mut()
            .zip(words)
            .for_each(|(w, m)| *w = w.wrapping_sub(m)),
    }
}

fn le_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use aes::cipher::{KeyIvInit as _, StreamCipher as _};

    fn mask(key: [u8; 16], len: usize) -> Vec<u64> {
        let mut v = vec![0u64; len];
        apply_masks(&mut v, &[(MaskKey(key), Sign::Add)]);
        v
    }

    #[test]
    fn equals_reference_aes_ctr_keystream() {
        // Across several chunk boundaries and with an odd length (half a final block).
        let len = 2 * CHUNK_WORDS + 777;
        let key = *b"concord-prg-kat!";
        let mut reference = vec![0u8; len * 8];
        ctr::Ctr128BE::<Aes128>::new(&key.into(), &[0u8; 16].into())
            .apply_keystream(&mut reference);
        let expected: Vec<u64> = reference.chunks_exact(8).map(le_word).collect();
        assert_eq!(mask(key, len), expected);
    }

    #[test]
    fn nist_sp800_38a_f51_first_block() {
        // F.5.1 CTR-AES128.Encrypt starts at counter f0f1…feff; our counter starts at 0, so check
        // the block cipher itself on that counter value, as the keystream is AES_k(counter).
        let key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let counter = hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").unwrap();
        let cipher = Aes128::new_from_slice(&key).unwrap();
        let mut block = Block::<Aes128>::try_from(&counter[..]).unwrap();
        cipher.encrypt_block(&mut block);
        assert_eq!(
            hex::encode(block.as_slice()),
            "ec8cdf7398607cb0f2d21675ea9ea1e4"
        );
    }

    #[test]
    fn add_then_subtract_is_identity_and_keys_differ() {
        let original: Vec<u64> = (0..10_000u64).map(|i| i.wrapping_mul(0x9e37)).collect();
        let mut v = original.clone();
        apply_masks(
            &mut v,
            &[(MaskKey([1; 16]), Sign::Add), (MaskKey([2; 16]), Sign::Add)],
        );
        assert_ne!(v, original);
        apply_masks(
            &mut v,
            &[(MaskKey([2; 16]), Sign::Sub), (MaskKey([1; 16]), Sign::Sub)],
        );
        assert_eq!(v, original);
        assert_ne!(mask([1; 16], 64), mask([2; 16], 64));
    }
}
