//! Canonical key encoding, and the deduplicated key set each party blinds.
//!
//! # Canonical encoding
//! A key is one to [`MAX_KEY_COLUMNS`] text components (columns). Each component is normalized by
//! its column's [`KeyType`] ([`super::normalize`]: NFKC, trimming, case folding, check digits).
//!
//! The canonical bytes of a key with components `c₁…c_k` are
//! `u32be(k) ‖ u32be(len(c₁)) ‖ c₁ ‖ … ‖ u32be(len(c_k)) ‖ c_k` (UTF-8), so component boundaries are
//! unambiguous: `("ab","c")` and `("a","bc")` never collide. These bytes are what is hashed to the
//! group. `tests/vectors/psi_ecdh_v1.json` pins the encoding.
//!
//! # Rows that do not take part
//! - **Empty component** (after normalization): the row is *excluded*. A missing value is not a key; two
//!   parties with blank cells must not "match" on them. Excluded rows are counted in the report.
//! - **Duplicates**: rows whose canonical keys are equal share one *distinct key*. Each distinct key
//!   is blinded and sent once, so the peer never sees how often a key repeats. Cardinality counts
//!   distinct keys; an intersection lists *every* row whose key matched. The number of duplicate
//!   rows is reported to the local party only.
//! - **Bad key** (a check digit that does not match, a wrong length): the row is refused with
//!   [`PsiError::BadKey`]. Datasets whose policy skips bad rows leave such rows out before they
//!   reach a key set, so a bad key here means the input changed since it was checked.

use std::hash::{BuildHasher as _, RandomState};

use hashbrown::hash_table::{Entry, HashTable};

use super::PsiError;
use super::normalize::{self, KeyFault, KeyType};
use rayon::prelude::*;

/// Largest accepted component, in bytes after normalization.
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024;

/// Largest number of distinct keys in one set (row positions are stored as `u32`).
pub const MAX_DISTINCT_KEYS: usize = u32::MAX as usize - 1;

/// The most keys a party lets its peer announce: its own bound on the state a peer's set costs
/// it, never agreed with the peer and not part of the session digest. At most (and by default)
/// [`MAX_DISTINCT_KEYS`], since positions are `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerLimit(u64);

impl PeerLimit {
    pub(crate) fn new(limit: u64) -> Self {
        Self(limit.min(MAX_DISTINCT_KEYS as u64))
    }

    pub(crate) fn get(self) -> u64 {
        self.0
    }

    /// Refuses a peer's announced key count over the limit.
    pub(crate) fn check(self, items: u64) -> Result<(), PsiError> {
        if items > self.0 {
            return Err(PsiError::PeerTooLarge {
                announced: items,
                limit: self.0,
            });
        }
        Ok(())
    }
}

impl Default for PeerLimit {
    fn default() -> Self {
        Self(MAX_DISTINCT_KEYS as u64)
    }
}

/// Bytes of a padding key ([`KeySet::pad_to`]): a zero component count, then 16 random bytes.
const DUMMY_KEY_LEN: usize = 20;

/// Rows normalized in parallel per step when building a key set.
const ROWS_PER_STEP: usize = 1 << 16;

/// Rows one parallel task of a step encodes into one buffer.
const ROWS_PER_TASK: usize = 1 << 10;

/// Most rows for which the key index is allocated before the rows are seen.
const MAX_PRESIZE_ROWS: usize = 1 << 24;

/// Most bytes of distinct keys allocated before the keys are seen.
const MAX_PRESIZE_BYTES: usize = 1 << 30;

/// Most key columns (components) in one key: enough for composite keys such as name, date of
/// birth and district, and small enough for [`KeySpec`] to be a plain value.
pub const MAX_KEY_COLUMNS: usize = 8;

/// How keys are normalized: one [`KeyType`] per key column. Both parties must use the same
/// spec; it is part of the session parameters, whose digest the peers compare before any key is
/// sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeySpec {
    columns: u8,
    types: [KeyType; MAX_KEY_COLUMNS],
}

impl KeySpec {
    /// One key column of the default type (`text`: NFKC, trimmed, case-folded).
    pub const SINGLE: Self = Self::one(KeyType::TEXT);

    /// One key column of type `ty`.
    pub const fn one(ty: KeyType) -> Self {
        Self {
            columns: 1,
            types: [ty; MAX_KEY_COLUMNS],
        }
    }

    /// A key of `types.len()` columns, column `i` normalized by `types[i]`: 1 to
    /// [`MAX_KEY_COLUMNS`] of them.
    pub fn new(types: &[KeyType]) -> Result<Self, PsiError> {
        if types.is_empty() {
            return Err(PsiError::NoKeyColumns);
        }
        if types.len() > MAX_KEY_COLUMNS {
            return Err(PsiError::TooManyKeyColumns {
                found: types.len(),
                limit: MAX_KEY_COLUMNS,
            });
        }
        let mut all = [types[0]; MAX_KEY_COLUMNS];
        all[..types.len()].copy_from_slice(types);
        Ok(Self {
            // At most MAX_KEY_COLUMNS, checked above.
            columns: types.len() as u8,
            types: all,
        })
    }

    /// Number of key columns.
    pub fn columns(&self) -> usize {
        usize::from(self.columns)
    }

    /// Each column's key type.
    pub fn types(&self) -> &[KeyType] {
        &self.types[..self.columns()]
    }

    /// The bytes of the spec in session digests: the column count, then each type's code.
    pub(crate) fn digest_bytes(&self) -> Vec<u8> {
        std::iter::once(self.columns)
            .chain(self.types().iter().map(|t| t.code()))
            .collect()
    }
}

/// What a party's own input looked like. Never sent to the peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputReport {
    /// Rows read.
    pub rows: u64,
    /// Distinct canonical keys (what the peer learns the number of).
    pub distinct_keys: u64,
    /// Rows whose key repeats an earlier row's key.
    pub duplicate_rows: u64,
    /// Rows excluded because a key component was empty.
    pub excluded_rows: u64,
    /// First excluded row (0-based), to point the user at it.
    pub first_excluded_row: Option<u64>,
}

/// Marker in `row_key` for an excluded row.
const EXCLUDED: u32 = u32::MAX;

/// A party's input after normalization and deduplication.
pub struct KeySet {
    spec: KeySpec,
    /// Canonical bytes of the distinct keys, back to back, in order of first appearance: one
    /// allocation for the whole set, not one per key.
    bytes: Vec<u8>,
    /// Distinct key `i` is `bytes[bounds[i]..bounds[i + 1]]`; `bounds[0] = 0`.
    bounds: Vec<usize>,
    /// For each input row, its distinct key's index, or `EXCLUDED`.
    row_key: Vec<u32>,
    report: InputReport,
}

impl std::fmt::Debug for KeySet {
    // Keys are personal data: print the shape only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("spec", &self.spec)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// The canonical bytes of a run of rows, encoded by one parallel task: row `i`'s result is
/// `Ok((end, hash))` when its bytes are `bytes[previous end..end]` and hash to `hash` under the
/// set's table key.
struct Encoded {
    bytes: Vec<u8>,
    rows: Vec<Result<(usize, u64), RowFault>>,
}

/// Why one row was not usable.
enum RowFault {
    /// An empty component: the row is excluded.
    Empty,
    /// The row is refused.
    Refused(Refusal),
}

/// Why a row is refused.
enum Refusal {
    ColumnCount(usize),
    TooLong { column: usize, len: usize },
    BadKey { column: usize, fault: KeyFault },
}

impl Refusal {
    /// The error that refuses row `row`.
    fn error(self, spec: KeySpec, row: u64) -> PsiError {
        match self {
            Refusal::ColumnCount(found) => PsiError::ColumnCount {
                row,
                expected: spec.columns,
                found,
            },
            Refusal::BadKey { column, fault } => PsiError::BadKey { row, column, fault },
            Refusal::TooLong { column, len } => PsiError::ComponentTooLong {
                row,
                column,
                len,
                limit: MAX_COMPONENT_BYTES,
            },
        }
    }
}

/// A key set being built: distinct keys in order of first appearance, each row's key, and the
/// report. Shared by [`KeySet::from_rows`] and [`KeySet::from_canonical`].
struct Builder {
    /// Each distinct key's hash (the caller's, keyed per set) and index.
    index: HashTable<(u64, u32)>,
    bytes: Vec<u8>,
    bounds: Vec<usize>,
    row_key: Vec<u32>,
    report: InputReport,
}

impl Builder {
    fn with_capacity(rows: usize) -> Self {
        let mut bounds = Vec::with_capacity(rows + 1);
        bounds.push(0);
        Self {
            index: HashTable::with_capacity(rows),
            bytes: Vec::new(),
            bounds,
            row_key: Vec::with_capacity(rows),
            report: InputReport::default(),
        }
    }

    /// The next row, whose canonical key `key` hashes to `hash`: a duplicate of a key seen
    /// before, or a new distinct key.
    fn key(&mut self, hash: u64, key: &[u8]) -> Result<(), PsiError> {
        self.report.rows += 1;
        let (bytes, bounds) = (&self.bytes, &self.bounds);
        let entry = self.index.entry(
            hash,
            |&(h, id)| {
                let id = id as usize;
                h == hash && bytes[bounds[id]..bounds[id + 1]] == *key
            },
            |&(h, _)| h,
        );
        let id = match entry {
            Entry::Occupied(seen) => {
                self.report.duplicate_rows += 1;
                seen.get().1
            }
            Entry::Vacant(slot) => {
                let id = self.bounds.len() - 1;
                if id >= MAX_DISTINCT_KEYS {
                    return Err(PsiError::TooManyKeys {
                        limit: MAX_DISTINCT_KEYS as u64,
                    });
                }
                // Below u32::MAX by the check above.
                slot.insert((hash, id as u32));
                self.bytes.extend_from_slice(key);
                self.bounds.push(self.bytes.len());
                id as u32
            }
        };
        self.row_key.push(id);
        Ok(())
    }

    /// The next row, excluded (an empty key component).
    fn excluded(&mut self, row: u64) {
        self.report.rows += 1;
        self.report.excluded_rows += 1;
        self.report.first_excluded_row.get_or_insert(row);
        self.row_key.push(EXCLUDED);
    }

    fn finish(mut self, spec: KeySpec) -> KeySet {
        self.bytes.shrink_to_fit();
        self.bounds.shrink_to_fit();
        self.report.distinct_keys = (self.bounds.len() - 1) as u64;
        KeySet {
            spec,
            bytes: self.bytes,
            bounds: self.bounds,
            row_key: self.row_key,
            report: self.report,
        }
    }
}

impl KeySet {
    /// Normalizes, encodes and deduplicates rows of key components (each row holds
    /// `spec.columns` strings). Rows are numbered from 0 in the order given.
    pub fn from_rows<I, R, S>(spec: KeySpec, rows: I) -> Result<Self, PsiError>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[S]> + Sync,
        S: AsRef<str>,
    {
        let mut rows = rows.into_iter();
        // Sized up front from what the caller says it holds (bounded, as the hint is not
        // trusted): growing the table moves every entry already in it.
        let expected = rows.size_hint().0.min(MAX_PRESIZE_ROWS);
        // Each row is encoded and hashed in parallel; only the table lookup is sequential, so
        // that distinct keys keep the order of their first row. The hash is keyed per set
        // (SipHash-1-3 under a random key), so crafted keys cannot make the table degrade.
        let hasher = RandomState::new();
        let mut set = Builder::with_capacity(expected);
        loop {
            let step: Vec<R> = rows.by_ref().take(ROWS_PER_STEP).collect();
            if step.is_empty() {
                break;
            }
            let encoded: Vec<Encoded> = step
                .par_chunks(ROWS_PER_TASK)
                .map(|chunk| {
                    let mut out = Encoded {
                        bytes: Vec::with_capacity(32 * chunk.len()),
                        rows: Vec::with_capacity(chunk.len()),
                    };
                    for row in chunk {
                        let start = out.bytes.len();
                        let result = canonical_row_into(spec, row.as_ref(), &mut out.bytes)
                            .map(|()| (out.bytes.len(), hasher.hash_one(&out.bytes[start..])));
                        if result.is_err() {
                            out.bytes.truncate(start);
                        }
                        out.rows.push(result);
                    }
                    out
                })
                .collect();
            drop(step);
            if set.bytes.capacity() == 0 {
                // Sized from the first step's keys, so that the buffer is rarely moved; at
                // most MAX_PRESIZE_BYTES, as most rows may turn out to be duplicates.
                let (sum, rows) = encoded
                    .iter()
                    .fold((0, 0), |(b, r), c| (b + c.bytes.len(), r + c.rows.len()));
                let guess = expected.max(rows) * sum.div_ceil(rows.max(1));
                set.bytes.reserve(guess.min(MAX_PRESIZE_BYTES));
            }
            for chunk in encoded {
                let mut start = 0;
                for result in chunk.rows {
                    let row = set.report.rows;
                    match result {
                        Ok((end, hash)) => {
                            set.key(hash, &chunk.bytes[start..end])?;
                            start = end;
                        }
                        Err(RowFault::Empty) => set.excluded(row),
                        Err(RowFault::Refused(r)) => return Err(r.error(spec, row)),
                    }
                }
            }
        }
        Ok(set.finish(spec))
    }

    /// A set from keys already in canonical form, one per row ([`canonical_row_key`]): a
    /// bucket's rows, read back from where they were spilled ([`super::bucket`]). Rows are
    /// numbered from 0 in the order given; every row takes part (excluded rows never reach a
    /// bucket). Deduplicated as [`KeySet::from_rows`] does.
    pub fn from_canonical<'k>(
        spec: KeySpec,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<Self, PsiError> {
        let keys = keys.into_iter();
        let hasher = RandomState::new();
        let mut set = Builder::with_capacity(keys.size_hint().0.min(MAX_PRESIZE_ROWS));
        for key in keys {
            set.key(hasher.hash_one(key), key)?;
        }
        Ok(set.finish(spec))
    }

    /// Adds dummy keys until the set holds `distinct` keys, so that the peer learns `distinct`
    /// and not the set's own size. A dummy is `u32be(0) ‖ 16 random bytes`, which no canonical
    /// key equals (a real one starts with its component count, at least 1), so it never matches
    /// a real key, and two sides' dummies match with probability `2^-128` a pair. No row holds
    /// a dummy; the set's [`InputReport`] counts its real keys only. Fails with
    /// [`PsiError::BucketOverflow`] when the set already holds more than `distinct` keys.
    pub fn pad_to<R: rand::CryptoRng + ?Sized>(
        &mut self,
        distinct: usize,
        rng: &mut R,
    ) -> Result<(), PsiError> {
        let real = self.len();
        if real > distinct {
            return Err(PsiError::BucketOverflow {
                keys: real as u64,
                capacity: distinct as u64,
            });
        }
        if distinct > MAX_DISTINCT_KEYS {
            return Err(PsiError::TooManyKeys {
                limit: MAX_DISTINCT_KEYS as u64,
            });
        }
        self.bytes.reserve((distinct - real) * DUMMY_KEY_LEN);
        self.bounds.reserve(distinct - real);
        for _ in real..distinct {
            let mut dummy = [0u8; DUMMY_KEY_LEN];
            rng.fill_bytes(&mut dummy[4..]);
            self.bytes.extend_from_slice(&dummy);
            self.bounds.push(self.bytes.len());
        }
        Ok(())
    }

    /// A set of single-column keys.
    pub fn from_strings<S: AsRef<str> + Sync>(
        spec: KeySpec,
        keys: impl IntoIterator<Item = S>,
    ) -> Result<Self, PsiError> {
        Self::from_rows(spec, keys.into_iter().map(|k| [k]))
    }

    /// The normalization used.
    pub fn spec(&self) -> KeySpec {
        self.spec
    }

    /// The report on duplicates and exclusions.
    pub fn report(&self) -> InputReport {
        self.report
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.bounds.len() - 1
    }

    /// True when no row carries a usable key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The canonical bytes of each distinct key, in order of first appearance.
    pub(crate) fn distinct(&self) -> Keys<'_> {
        Keys {
            bytes: &self.bytes,
            bounds: &self.bounds,
        }
    }

    /// For each input row, the index of its distinct key, or `None` for an excluded row.
    pub(crate) fn row_keys(&self) -> impl Iterator<Item = Option<u32>> + '_ {
        self.row_key.iter().map(|&k| (k != EXCLUDED).then_some(k))
    }

    /// Every input row whose distinct key is flagged in `matched`, ascending.
    pub(crate) fn rows_matching(&self, matched: &[bool]) -> Vec<u64> {
        self.row_key
            .iter()
            .enumerate()
            .filter(|&(_, &k)| k != EXCLUDED && matched[k as usize])
            .map(|(row, _)| row as u64)
            .collect()
    }
}

/// Consecutive distinct keys of a [`KeySet`]: their canonical bytes, back to back.
#[derive(Clone, Copy)]
pub(crate) struct Keys<'a> {
    bytes: &'a [u8],
    /// Key `i` is `bytes[bounds[i]..bounds[i + 1]]`: one more bound than keys.
    bounds: &'a [usize],
}

impl<'a> Keys<'a> {
    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.bounds.len() - 1
    }

    /// Keys `range` (which must lie within `0..len`).
    pub(crate) fn range(&self, range: std::ops::Range<usize>) -> Keys<'a> {
        Keys {
            bytes: self.bytes,
            bounds: &self.bounds[range.start..=range.end],
        }
    }

    /// The keys in order.
    pub(crate) fn iter(self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let bytes = self.bytes;
        self.bounds.windows(2).map(move |b| &bytes[b[0]..b[1]])
    }

    /// The keys in order, for rayon.
    pub(crate) fn par_iter(self) -> impl IndexedParallelIterator<Item = &'a [u8]> + 'a {
        let bytes = self.bytes;
        self.bounds.par_windows(2).map(move |b| &bytes[b[0]..b[1]])
    }

    /// Runs of at most `size` keys (`size > 0`), in order.
    pub(crate) fn chunks(self, size: usize) -> impl Iterator<Item = Keys<'a>> + 'a {
        let keys = self;
        (0..self.len())
            .step_by(size)
            .map(move |start| keys.range(start..(start + size).min(keys.len())))
    }
}

/// The canonical bytes of one key (see the module docs). `Err` with the reason when the row must
/// be excluded or refused.
fn canonical_row<S: AsRef<str>>(spec: KeySpec, row: &[S]) -> Result<Vec<u8>, RowFault> {
    let mut out = Vec::new();
    canonical_row_into(spec, row, &mut out)?;
    Ok(out)
}

/// Appends the canonical bytes of one key to `out`; on `Err`, `out` may hold part of them.
fn canonical_row_into<S: AsRef<str>>(
    spec: KeySpec,
    row: &[S],
    out: &mut Vec<u8>,
) -> Result<(), RowFault> {
    if row.len() != spec.columns() {
        return Err(RowFault::Refused(Refusal::ColumnCount(row.len())));
    }
    out.extend_from_slice(&(row.len() as u32).to_be_bytes());
    for ((column, component), &ty) in row.iter().enumerate().zip(spec.types()) {
        let start = out.len();
        out.extend_from_slice(&[0u8; 4]);
        match normalize::normalize_into(ty, component.as_ref(), out) {
            Ok(()) => {}
            Err(KeyFault::Empty) => return Err(RowFault::Empty),
            Err(fault) => return Err(RowFault::Refused(Refusal::BadKey { column, fault })),
        }
        let len = out.len() - start - 4;
        if len > MAX_COMPONENT_BYTES {
            return Err(RowFault::Refused(Refusal::TooLong { column, len }));
        }
        out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    }
    Ok(())
}

/// Writes the canonical bytes of row `row`'s key into `out`, for a party that routes its rows
/// to buckets before building their key sets: `Ok(true)` when the row takes part, `Ok(false)`
/// (and `out` empty) when it is excluded (an empty component), an error naming the row when it
/// must be refused (as [`KeySet::from_rows`] refuses it).
pub fn canonical_row_key<S: AsRef<str>>(
    spec: KeySpec,
    row: u64,
    components: &[S],
    out: &mut Vec<u8>,
) -> Result<bool, PsiError> {
    out.clear();
    match canonical_row_into(spec, components, out) {
        Ok(()) => Ok(true),
        Err(RowFault::Empty) => {
            out.clear();
            Ok(false)
        }
        Err(RowFault::Refused(r)) => Err(r.error(spec, row)),
    }
}

/// The canonical bytes of one key, as hashed to the group. Public so that other implementations
/// and the known-answer tests can check the encoding.
pub fn canonical_key<S: AsRef<str>>(spec: KeySpec, components: &[S]) -> Option<Vec<u8>> {
    canonical_row(spec, components).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const EXACT: KeyType = KeyType::Text {
        case_sensitive: true,
    };

    fn two() -> KeySpec {
        KeySpec::new(&[EXACT; 2]).unwrap()
    }

    #[test]
    fn composite_keys_are_length_prefixed() {
        let a = canonical_key(two(), &["ab", "c"]).unwrap();
        let b = canonical_key(two(), &["a", "bc"]).unwrap();
        assert_ne!(a, b);
        assert_eq!(hex::encode(&a), "000000020000000261620000000163");
    }

    #[test]
    fn trims_and_normalizes() {
        let spec = KeySpec::one(EXACT);
        // "é" precomposed vs "e" + combining acute, with surrounding white space (incl. NBSP).
        let a = canonical_key(spec, &["\u{e9}"]).unwrap();
        let b = canonical_key(spec, &[" e\u{301}\u{a0}\t"]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, canonical_key(spec, &["\u{c9}"]).unwrap());
        let folded = KeySpec::SINGLE;
        assert_eq!(
            canonical_key(folded, &["Stra\u{df}e"]).unwrap(),
            canonical_key(folded, &["STRASSE"]).unwrap()
        );
        assert_eq!(
            canonical_key(folded, &["E\u{301}"]).unwrap(),
            canonical_key(folded, &["\u{e9}"]).unwrap()
        );
    }

    #[test]
    fn duplicates_and_blanks_are_reported() {
        let set = KeySet::from_strings(KeySpec::SINGLE, ["a", " a", "", "b", "a", "  "]).unwrap();
        assert_eq!(
            set.report(),
            InputReport {
                rows: 6,
                distinct_keys: 2,
                duplicate_rows: 2,
                excluded_rows: 2,
                first_excluded_row: Some(2),
            }
        );
        assert_eq!(set.rows_matching(&[true, false]), vec![0, 1, 4]);
    }

    #[test]
    fn distinct_keys_are_each_rows_canonical_bytes_across_tasks() {
        // Rows over several encoding tasks, with excluded rows whose first component was
        // already written when the second turned out blank.
        let rows: Vec<[String; 2]> = (0..3 * ROWS_PER_TASK + 7)
            .map(|i| {
                let blank = if i % 97 == 3 { " " } else { "x" };
                [format!("key-{}", i % 1500), blank.repeat(1 + i % 3)]
            })
            .collect();
        let set = KeySet::from_rows(two(), &rows).unwrap();
        let mut expected: Vec<Vec<u8>> = Vec::new();
        for (row, key) in rows.iter().zip(set.row_keys()) {
            match (canonical_key(two(), row), key) {
                (Some(bytes), Some(k)) => {
                    if k as usize == expected.len() {
                        expected.push(bytes.clone());
                    }
                    assert_eq!(expected[k as usize], bytes);
                }
                (None, None) => {}
                other => panic!("row {row:?}: {other:?}"),
            }
        }
        let distinct: Vec<&[u8]> = set.distinct().iter().collect();
        assert_eq!(distinct, expected);
        let parallel: Vec<&[u8]> = set.distinct().par_iter().collect();
        assert_eq!(parallel, expected);
        let chunked: Vec<&[u8]> = set.distinct().chunks(100).flat_map(|c| c.iter()).collect();
        assert_eq!(chunked, expected);
        assert_eq!(set.len(), expected.len());
        assert!(set.report().excluded_rows > 0 && set.report().duplicate_rows > 0);
    }

    #[test]
    fn bad_rows_are_typed_errors() {
        let err = KeySet::from_rows(two(), [vec!["a", "b"], vec!["c"]]).unwrap_err();
        assert!(matches!(
            err,
            PsiError::ColumnCount {
                row: 1,
                expected: 2,
                found: 1
            }
        ));
        let long = "x".repeat(MAX_COMPONENT_BYTES + 1);
        let err = KeySet::from_strings(KeySpec::SINGLE, [long]).unwrap_err();
        assert!(matches!(
            err,
            PsiError::ComponentTooLong {
                row: 0,
                column: 0,
                ..
            }
        ));
        assert!(matches!(KeySpec::new(&[]), Err(PsiError::NoKeyColumns)));
        assert!(matches!(
            KeySpec::new(&[EXACT; MAX_KEY_COLUMNS + 1]),
            Err(PsiError::TooManyKeyColumns { found: 9, limit: 8 })
        ));
    }
}
