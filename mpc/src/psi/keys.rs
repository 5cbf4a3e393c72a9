//! Canonical key encoding, and the deduplicated key set each party blinds.
//!
//! # Canonical encoding
//! A key is one or more text components (columns). Each component is normalized:
//! 1. leading and trailing Unicode `White_Space` is trimmed;
//! 2. the result is put in Unicode NFC; with case folding on, it becomes
//!    `NFC(toCasefold(NFD(s)))` (Unicode default case folding, so `"Straße"` and `"STRASSE"` agree).
//!
//! The canonical bytes of a key with components `c₁…c_k` are
//! `u32be(k) ‖ u32be(len(c₁)) ‖ c₁ ‖ … ‖ u32be(len(c_k)) ‖ c_k` (UTF-8), so component boundaries are
//! unambiguous: `("ab","c")` and `("a","bc")` never collide. These bytes are what is hashed to the
//! group. `tests/vectors/psi_ecdh_v1.json` pins the encoding.
//!
//! # Rows that do not take part
//! - **Empty component** (after trimming): the row is *excluded*. A missing value is not a key; two
//!   parties with blank cells must not "match" on them. Excluded rows are counted in the report.
//! - **Duplicates**: rows whose canonical keys are equal share one *distinct key*. Each distinct key
//!   is blinded and sent once, so the peer never sees how often a key repeats. Cardinality counts
//!   distinct keys; an intersection lists *every* row whose key matched. The number of duplicate
//!   rows is reported to the local party only.

use std::hash::{BuildHasher as _, RandomState};

use hashbrown::hash_table::{Entry, HashTable};

use rayon::prelude::*;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use super::PsiError;

/// Largest accepted component, in bytes after normalization.
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024;

/// Largest number of distinct keys in one set (row positions are stored as `u32`).
pub const MAX_DISTINCT_KEYS: usize = u32::MAX as usize - 1;

/// Refuses a peer's announced key count that no session can hold (positions are `u32`).
pub(crate) fn check_peer_count(items: u64) -> Result<(), PsiError> {
    if items > MAX_DISTINCT_KEYS as u64 {
        return Err(PsiError::TooManyKeys {
            limit: MAX_DISTINCT_KEYS as u64,
        });
    }
    Ok(())
}

/// Rows normalized in parallel per step when building a key set.
const ROWS_PER_STEP: usize = 1 << 16;

/// Most rows for which the key index is allocated before the rows are seen.
const MAX_PRESIZE_ROWS: usize = 1 << 24;

/// How keys are normalized. Both parties must use the same spec; it is part of the session
/// parameters, whose digest the peers compare before any key is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeySpec {
    /// Number of key columns (components) per row; at least 1.
    pub columns: u8,
    /// Apply Unicode default case folding.
    pub case_fold: bool,
}

impl KeySpec {
    /// One key column, case-sensitive.
    pub const SINGLE: Self = Self {
        columns: 1,
        case_fold: false,
    };
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
    /// Canonical bytes of each distinct key, in order of first appearance.
    distinct: Vec<Box<[u8]>>,
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

/// A row's canonical bytes and their hash under the set's table key.
type Encoded = (Box<[u8]>, u64);

/// Why one row was not usable.
enum RowFault {
    Empty,
    ColumnCount(usize),
    TooLong { column: usize, len: usize },
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
        if spec.columns == 0 {
            return Err(PsiError::NoKeyColumns);
        }
        let mut rows = rows.into_iter();
        // Sized up front from what the caller says it holds (bounded, as the hint is not
        // trusted): growing the table moves every entry already in it.
        let expected = rows.size_hint().0.min(MAX_PRESIZE_ROWS);
        // Each row is encoded and hashed in parallel; only the table lookup is sequential, so
        // that distinct keys keep the order of their first row. The hash is keyed per set
        // (SipHash-1-3 under a random key), so crafted keys cannot make the table degrade.
        let hasher = RandomState::new();
        let mut index: HashTable<(u64, u32)> = HashTable::with_capacity(expected);
        let mut distinct: Vec<Box<[u8]>> = Vec::with_capacity(expected);
        let mut row_key = Vec::with_capacity(expected);
        let mut report = InputReport::default();
        loop {
            let step: Vec<R> = rows.by_ref().take(ROWS_PER_STEP).collect();
            if step.is_empty() {
                break;
            }
            let encoded: Vec<Result<Encoded, RowFault>> = step
                .par_iter()
                .map(|row| {
                    canonical_row(spec, row.as_ref()).map(|bytes| {
                        let hash = hasher.hash_one(&bytes[..]);
                        (bytes.into_boxed_slice(), hash)
                    })
                })
                .collect();
            drop(step);
            for result in encoded {
                let row = report.rows;
                report.rows += 1;
                match result {
                    Ok((bytes, hash)) => {
                        let entry = index.entry(
                            hash,
                            |&(h, id)| h == hash && distinct[id as usize] == bytes,
                            |&(h, _)| h,
                        );
                        let id = match entry {
                            Entry::Occupied(seen) => {
                                report.duplicate_rows += 1;
                                seen.get().1
                            }
                            Entry::Vacant(slot) => {
                                if distinct.len() >= MAX_DISTINCT_KEYS {
                                    return Err(PsiError::TooManyKeys {
                                        limit: MAX_DISTINCT_KEYS as u64,
                                    });
                                }
                                // Below u32::MAX by the check above.
                                let id = distinct.len() as u32;
                                slot.insert((hash, id));
                                distinct.push(bytes);
                                id
                            }
                        };
                        row_key.push(id);
                    }
                    Err(RowFault::Empty) => {
                        report.excluded_rows += 1;
                        report.first_excluded_row.get_or_insert(row);
                        row_key.push(EXCLUDED);
                    }
                    Err(RowFault::ColumnCount(found)) => {
                        return Err(PsiError::ColumnCount {
                            row,
                            expected: spec.columns,
                            found,
                        });
                    }
                    Err(RowFault::TooLong { column, len }) => {
                        return Err(PsiError::ComponentTooLong {
                            row,
                            column,
                            len,
                            limit: MAX_COMPONENT_BYTES,
                        });
                    }
                }
            }
        }
        report.distinct_keys = distinct.len() as u64;
        Ok(Self {
            spec,
            distinct,
            row_key,
            report,
        })
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
        self.distinct.len()
    }

    /// True when no row carries a usable key.
    pub fn is_empty(&self) -> bool {
        self.distinct.is_empty()
    }

    pub(crate) fn distinct(&self) -> &[Box<[u8]>] {
        &self.distinct
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

/// The canonical bytes of one key (see the module docs). `Err` with the reason when the row must
/// be excluded or refused.
fn canonical_row<S: AsRef<str>>(spec: KeySpec, row: &[S]) -> Result<Vec<u8>, RowFault> {
    if row.len() != spec.columns as usize {
        return Err(RowFault::ColumnCount(row.len()));
    }
    let mut out = Vec::with_capacity(4 + row.iter().map(|c| 4 + c.as_ref().len()).sum::<usize>());
    out.extend_from_slice(&(row.len() as u32).to_be_bytes());
    for (column, component) in row.iter().enumerate() {
        let text = trim(component.as_ref());
        if text.is_empty() {
            return Err(RowFault::Empty);
        }
        let start = out.len();
        out.extend_from_slice(&[0u8; 4]);
        normalize_into(text, spec.case_fold, &mut out);
        let len = out.len() - start - 4;
        if len > MAX_COMPONENT_BYTES {
            return Err(RowFault::TooLong { column, len });
        }
        out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    }
    Ok(out)
}

/// `text` without leading and trailing Unicode `White_Space`, as [`str::trim`]. Most keys are
/// identifiers that begin and end with an ASCII letter or digit; they are returned as they are.
fn trim(text: &str) -> &str {
    let solid = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii() && !char::from(b).is_whitespace());
    let bytes = text.as_bytes();
    if solid(bytes.first()) && solid(bytes.last()) {
        text
    } else {
        text.trim()
    }
}

/// Appends the NFC (or folded NFC) form of `text` to `out`.
fn normalize_into(text: &str, case_fold: bool, out: &mut Vec<u8>) {
    use caseless::Caseless;
    if !case_fold && text.is_ascii() {
        // ASCII text is in NFC already.
        out.extend_from_slice(text.as_bytes());
    } else if case_fold {
        let folded: String = text.chars().nfd().default_case_fold().nfc().collect();
        out.extend_from_slice(folded.as_bytes());
    } else if is_nfc_quick(text.chars()) == IsNormalized::Yes {
        out.extend_from_slice(text.as_bytes());
    } else {
        let nfc: String = text.nfc().collect();
        out.extend_from_slice(nfc.as_bytes());
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

    const TWO: KeySpec = KeySpec {
        columns: 2,
        case_fold: false,
    };

    #[test]
    fn composite_keys_are_length_prefixed() {
        let a = canonical_key(TWO, &["ab", "c"]).unwrap();
        let b = canonical_key(TWO, &["a", "bc"]).unwrap();
        assert_ne!(a, b);
        assert_eq!(hex::encode(&a), "000000020000000261620000000163");
    }

    #[test]
    fn trims_and_normalizes() {
        let spec = KeySpec::SINGLE;
        // "é" precomposed vs "e" + combining acute, with surrounding white space (incl. NBSP).
        let a = canonical_key(spec, &["\u{e9}"]).unwrap();
        let b = canonical_key(spec, &[" e\u{301}\u{a0}\t"]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, canonical_key(spec, &["\u{c9}"]).unwrap());
        let folded = KeySpec {
            columns: 1,
            case_fold: true,
        };
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
    fn bad_rows_are_typed_errors() {
        let err = KeySet::from_rows(TWO, [vec!["a", "b"], vec!["c"]]).unwrap_err();
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
        let none = KeySpec {
            columns: 0,
            case_fold: false,
        };
        assert!(matches!(
            KeySet::from_strings(none, ["a"]).unwrap_err(),
            PsiError::NoKeyColumns
        ));
    }
}
