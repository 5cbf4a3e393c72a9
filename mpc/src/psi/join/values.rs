//! The value holder's input: keys with a value and a category, combined per distinct key.

use super::{InputReport, JoinError, KeySet, KeySpec};

/// What the value holder's input looked like. Never sent to the peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValueReport {
    /// Rows, distinct keys, duplicates and exclusions, as for PSI.
    pub keys: InputReport,
    /// Distinct keys whose (combined) value was below `lo` and was raised to it.
    pub clamped_low: u64,
    /// Distinct keys whose (combined) value was above `hi` and was lowered to it.
    pub clamped_high: u64,
}

/// Rows `(key, value, category)` after normalization: one combined value and one category per
/// distinct key. Rows sharing a key are one person: their values are added (exactly, in 128
/// bits) and the total is clamped to the session's bounds when the session starts. Rows sharing a
/// key must name the same category.
pub struct ValueSet {
    keys: KeySet,
    totals: Vec<i128>,
    categories: Vec<u32>,
    /// First row of each distinct key, to point at it in errors.
    first_rows: Vec<u64>,
}

impl std::fmt::Debug for ValueSet {
    // Keys and values are personal data: print the shape only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueSet")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl ValueSet {
    /// Normalizes and combines rows of `(key components, value, category index)`.
    pub fn from_rows<I, R, S>(spec: KeySpec, rows: I) -> Result<Self, JoinError>
    where
        I: IntoIterator<Item = (R, i64, u32)>,
        R: AsRef<[S]> + Sync,
        S: AsRef<str>,
    {
        let mut values = Vec::new();
        let mut cats = Vec::new();
        let keys = KeySet::from_rows(
            spec,
            rows.into_iter().map(|(key, value, category)| {
                values.push(value);
                cats.push(category);
                key
            }),
        )?;
        let n = keys.len();
        let mut totals = vec![0i128; n];
        let mut categories = vec![u32::MAX; n];
        let mut first_rows = vec![u64::MAX; n];
        for (row, ((id, value), category)) in keys.row_keys().zip(values).zip(cats).enumerate() {
            let Some(id) = id else { continue };
            let id = id as usize;
            let row = row as u64;
            if first_rows[id] == u64::MAX {
                first_rows[id] = row;
                categories[id] = category;
            } else if categories[id] != category {
                return Err(JoinError::CategoryConflict {
                    row,
                    first: categories[id],
                    found: category,
                });
            }
            totals[id] += i128::from(value);
        }
        Ok(Self {
            keys,
            totals,
            categories,
            first_rows,
        })
    }

    /// Single-column keys.
    pub fn from_strings<S: AsRef<str> + Sync>(
        spec: KeySpec,
        rows: impl IntoIterator<Item = (S, i64, u32)>,
    ) -> Result<Self, JoinError> {
        Self::from_rows(spec, rows.into_iter().map(|(k, v, c)| ([k], v, c)))
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no row carries a usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key normalization.
    pub fn spec(&self) -> KeySpec {
        self.keys.spec()
    }

    pub(crate) fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Each distinct key's `(category, value clamped to [lo, hi])`, checking categories against
    /// `categories`, with the report of what was clamped.
    pub(crate) fn clamped(
        &self,
        (lo, hi): (i64, i64),
        categories: u16,
    ) -> Result<(Vec<(usize, i64)>, ValueReport), JoinError> {
        let mut report = ValueReport {
            keys: self.keys.report(),
            ..ValueReport::default()
        };
        let mut out = Vec::with_capacity(self.totals.len());
        for ((&total, &category), &row) in self
            .totals
            .iter()
            .zip(&self.categories)
            .zip(&self.first_rows)
        {
            if category >= u32::from(categories) {
                return Err(JoinError::CategoryOutOfRange {
                    row,
                    category,
                    categories,
                });
            }
            let value = if total < i128::from(lo) {
                report.clamped_low += 1;
                lo
            } else if total > i128::from(hi) {
                report.clamped_high += 1;
                hi
            } else {
                // Within [lo, hi], so it fits.
                total as i64
            };
            out.push((category as usize, value));
        }
        Ok((out, report))
    }
}
