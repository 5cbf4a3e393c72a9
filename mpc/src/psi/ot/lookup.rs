//! The receiver's own OPRF values, in an open-addressing hash table sized up front.
//!
//! The receiver looks up `3·|Y|` values among its `|X|` own ones. A sorted array with binary
//! search costs ~20 cache misses a lookup at 2^20 items and dominated the whole run; this table
//! costs about one. Its keys are truncated outputs of the correlation-robust hash, so their low
//! bits are already uniform and need only a multiplicative spread, not a keyed hash: the sender
//! cannot steer where the receiver's own values land without knowing the receiver's items.
//!
//! Most lookups find nothing (at least two of a sender item's three values are not the
//! receiver's), and in a table larger than the cache each costs a miss to memory. A bit array of
//! 16 bits per stored value, one bit set per value, is small enough to stay in cache and answers
//! most of those without touching the table (false positives, about 1 in 16, only cost a probe).
//!
//! Every slot with an equal key is reported, so two own items whose truncated outputs collide
//! (probability in the false-match bound of [`super::output_len`]) are both found.

/// Marks an empty slot (items are below `MAX_DISTINCT_KEYS < u32::MAX`).
const EMPTY: u32 = u32::MAX;

/// Filter bits per entry.
const FILTER_BITS_PER_ENTRY: usize = 16;

/// The 128-bit key folded to 64 bits.
fn fold(key: u128) -> u64 {
    (key as u64) ^ ((key >> 64) as u64)
}

/// `(key, item)` slots at load ≤ 1/2, linear probing.
pub(crate) struct OwnTable {
    slots: Vec<(u128, u32)>,
    shift: u32,
    /// One bit per filter position: set when some key stored maps there.
    filter: Vec<u64>,
    filter_shift: u32,
    len: usize,
    capacity: usize,
}

impl OwnTable {
    /// A table for up to `capacity` entries.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let size = (2 * capacity).max(16).next_power_of_two();
        let filter_bits = (FILTER_BITS_PER_ENTRY * capacity)
            .max(64)
            .next_power_of_two();
        Self {
            slots: vec![(0, EMPTY); size],
            shift: 64 - size.trailing_zeros(),
            filter: vec![0; filter_bits / 64],
            filter_shift: 64 - filter_bits.trailing_zeros(),
            len: 0,
            capacity,
        }
    }

    fn home(&self, key: u128) -> usize {
        (fold(key).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The key's filter position (from another multiplier than its home slot).
    fn filter_bit(&self, key: u128) -> usize {
        (fold(key).wrapping_mul(0xc2b2_ae3d_27d4_eb4f) >> self.filter_shift) as usize
    }

    /// False when no key stored can equal `key`.
    fn may_hold(&self, key: u128) -> bool {
        let bit = self.filter_bit(key);
        self.filter[bit / 64] >> (bit % 64) & 1 == 1
    }

    /// Adds `item` under `key`. Returns `false`, adding nothing, when the table is at capacity.
    pub(crate) fn insert(&mut self, key: u128, item: u32) -> bool {
        if item == EMPTY || self.len == self.capacity {
            return false;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        while self.slots[i].1 != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = (key, item);
        let bit = self.filter_bit(key);
        self.filter[bit / 64] |= 1 << (bit % 64);
        self.len += 1;
        true
    }

    /// Calls `found` with every item stored under `key`.
    pub(crate) fn for_each_match(&self, key: u128, mut found: impl FnMut(u32)) {
        if !self.may_hold(key) {
            return;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let (k, item) = self.slots[i];
            if item == EMPTY {
                return;
            }
            if k == key {
                found(item);
            }
            i = (i + 1) & mask;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_item_under_a_key_and_nothing_else() {
        let mut t = OwnTable::with_capacity(1000);
        for i in 0..999u32 {
            let key = u128::from(i).wrapping_mul(0x1234_5678_9abc_def1_0fed_cba9_8765_4321);
            assert!(t.insert(key, i));
        }
        assert!(t.insert(7, 5000));
        assert!(!t.insert(8, 5001), "beyond capacity");
        let mut hits = Vec::new();
        t.for_each_match(7, |i| hits.push(i));
        let seven = 7u128.wrapping_mul(0x1234_5678_9abc_def1_0fed_cba9_8765_4321);
        t.for_each_match(seven, |i| hits.push(i));
        t.for_each_match(u128::MAX, |i| hits.push(i));
        hits.sort_unstable();
        assert_eq!(hits, vec![7, 5000]);
    }
}
