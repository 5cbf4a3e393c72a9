//! Bounded discrete logarithms by baby-step giant-step: given `P = [m]G` with `m` in a known
//! interval `[lo, lo + width]`, find `m`.
//!
//! The table holds the first 8 bytes of the encodings of `[j]G` for `j ∈ [1, T)`, sorted, with
//! `T` the power of two at or above `√width` (at least 2^8, at most 2^22). A search walks
//! giant steps `Q_i = P − [lo + i·T]G` for `i ∈ [0, width/T]` on all cores: `Q_i` is the identity
//! (`m = lo + i·T`) or its encoding's prefix names a candidate `j`, which is confirmed with one
//! multiplication, so a prefix collision can never give a wrong answer. At most `T + width/T + 1`
//! encodings in all, ≈ `2·√width`. Encodings are computed in batches from halved points
//! (`double_and_compress_batch`), as the PSI core does; no halved point here is the identity
//! (baby steps start at 1, and a giant step's identity is checked before its batch).

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity as _;
use rayon::prelude::*;

use super::elgamal::scalar_from_i64;

/// Points per batch compression.
const CHUNK: u64 = 1024;

/// Table size bounds, as powers of two.
const MIN_BITS: u32 = 8;
const MAX_BITS: u32 = 22;

/// A baby-step table, built once per session for the widest interval it will serve.
pub(crate) struct DlogTable {
    step: u64,
    /// `(prefix of encode([j]G), j)`, sorted by prefix.
    baby: Vec<(u64, u32)>,
}

impl std::fmt::Debug for DlogTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DlogTable")
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

fn prefix(bytes: &[u8; 32]) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(p)
}

fn half() -> Scalar {
    // 2 is invertible modulo the (odd) group order.
    Scalar::from(2u64).invert()
}

impl DlogTable {
    /// A table for intervals up to `width` wide.
    pub(crate) fn new(width: u64) -> Self {
        let root = ((width as f64).sqrt().ceil() as u64).max(1);
        let bits = root
            .next_power_of_two()
            .trailing_zeros()
            .clamp(MIN_BITS, MAX_BITS);
        let step = 1u64 << bits;
        let half_g = RISTRETTO_BASEPOINT_POINT * half();
        let mut baby: Vec<(u64, u32)> = (0..step.div_ceil(CHUNK))
            .into_par_iter()
            .flat_map_iter(|chunk| {
                let first = (chunk * CHUNK).max(1);
                let end = ((chunk + 1) * CHUNK).min(step);
                let mut p = half_g * Scalar::from(first);
                let halves: Vec<RistrettoPoint> = (first..end)
                    .map(|_| {
                        let q = p;
                        p += half_g;
                        q
                    })
                    .collect();
                RistrettoPoint::double_and_compress_batch(&halves)
                    .into_iter()
                    .zip(first..end)
                    // j < 2^22 fits in u32.
                    .map(|(c, j)| (prefix(c.as_bytes()), j as u32))
                    .collect::<Vec<_>>()
            })
            .collect();
        baby.par_sort_unstable();
        Self { step, baby }
    }

    /// The widest interval this table can serve in at most `step` giant steps.
    #[cfg(test)]
    pub(crate) fn step(&self) -> u64 {
        self.step
    }

    /// `m ∈ [lo, lo + width]` with `[m]G = p`, or `None`.
    pub(crate) fn solve_vartime(&self, p: &RistrettoPoint, lo: i64, width: u64) -> Option<i64> {
        let g = RISTRETTO_BASEPOINT_POINT;
        let shifted = p - g * scalar_from_i64(lo);
        let giants = width / self.step + 1;
        let half_shifted = shifted * half();
        let half_step = -(g * (Scalar::from(self.step) * half()));
        (0..giants.div_ceil(CHUNK))
            .into_par_iter()
            .find_map_first(|chunk| {
                let first = chunk * CHUNK;
                let end = ((chunk + 1) * CHUNK).min(giants);
                let mut h = half_shifted + half_step * Scalar::from(first);
                let mut halves = Vec::with_capacity((end - first) as usize);
                for i in first..end {
                    if h.is_identity() {
                        return Some(i * self.step);
                    }
                    halves.push(h);
                    h += half_step;
                }
                let encodings = RistrettoPoint::double_and_compress_batch(&halves);
                (first..end).zip(encodings).find_map(|(i, enc)| {
                    let key = prefix(enc.as_bytes());
                    let start = self.baby.partition_point(|e| e.0 < key);
                    self.baby[start..]
                        .iter()
                        .take_while(|e| e.0 == key)
                        .map(|e| i * self.step + u64::from(e.1))
                        .find(|&m| g * Scalar::from(m) == shifted)
                })
            })
            .filter(|&m| m <= width)
            // m ≤ width ≤ 2^44 and |lo| ≤ 2^44, so the sum fits.
            .map(|m| lo + m as i64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_kind_of_position() {
        let table = DlogTable::new(1 << 20);
        assert_eq!(table.step(), 1 << 10);
        let lo = -300_000i64;
        let width = 1u64 << 20;
        for m in [
            lo,
            lo + 1,
            -1,
            0,
            1,
            1023,
            1024,
            4096,
            lo + width as i64 - 1,
            lo + width as i64,
        ] {
            let p = RistrettoPoint::mul_base(&scalar_from_i64(m));
            assert_eq!(table.solve_vartime(&p, lo, width), Some(m), "{m}");
        }
        for m in [lo - 1, lo + width as i64 + 1, 1 << 30] {
            let p = RistrettoPoint::mul_base(&scalar_from_i64(m));
            assert_eq!(table.solve_vartime(&p, lo, width), None, "{m}");
        }
    }
}
