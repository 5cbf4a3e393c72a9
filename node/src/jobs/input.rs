//! Reading a registered dataset for a job, streaming: the file is never held whole in memory.
//! The PSI key set keeps only its distinct normalized keys (what the protocol needs); a query
//! keeps the one column it releases.
//!
//! Every read goes through [`crate::csv_input::Reader`] with the dataset's schema, so a job sees
//! exactly the rows its profile counted: under `--on-bad-row skip` the same bad rows are left
//! out, and counted again ([`Read`]).

use std::cell::RefCell;
use std::path::Path;

use concord_mpc::psi::bucket::BucketPlan;
use concord_mpc::psi::{InputReport, KeySet, KeySpec, KeyType, canonical_row_key, normalize};

use crate::catalog::Dataset;
use crate::csv_input::{CsvError, Reader, RejectCounts};
use crate::jobs::error::JobError;
use crate::spill::{BucketWriter, SpillError};

/// What one read of a dataset used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Read {
    /// Good rows read.
    pub(crate) rows: u64,
    /// Bad rows left out (`--on-bad-row skip`).
    pub(crate) rejects: RejectCounts,
}

impl Read {
    fn of(reader: &Reader) -> Self {
        Self {
            rows: reader.rows(),
            rejects: reader.rejects(),
        }
    }
}

fn open(d: &Dataset) -> Result<Reader, JobError> {
    Ok(Reader::open(&d.spec.path, &d.spec.schema())?)
}

/// Positions of `columns` among the dataset's columns.
fn positions(reader: &Reader, columns: &[String]) -> Result<Vec<usize>, JobError> {
    columns
        .iter()
        .map(|c| {
            reader.position(c).ok_or_else(|| {
                JobError::input(reader.path(), format!("no column {c:?} in the dataset"))
            })
        })
        .collect()
}

/// The key type of each of `columns` as a job matching on them uses it.
pub(crate) fn key_types(d: &Dataset, columns: &[String]) -> Vec<KeyType> {
    columns.iter().map(|c| d.spec.key_type(c)).collect()
}

/// The key spec of a job matching on `types`, as agreed in its terms.
pub(crate) fn key_spec(types: &[KeyType]) -> Result<KeySpec, JobError> {
    KeySpec::new(types).map_err(|e| JobError::terms(e.to_string()))
}

/// Streams the good rows' fields at `at`, each as owned text, to `rows`; a read error stops the
/// stream and is returned after it.
fn with_rows<T>(
    reader: &mut Reader,
    at: &[usize],
    rows: impl FnOnce(&mut dyn Iterator<Item = Vec<String>>) -> T,
) -> Result<T, JobError> {
    let failure = RefCell::new(None::<CsvError>);
    let mut iter = std::iter::from_fn(|| match reader.next_row() {
        Ok(true) => Some(at.iter().map(|&i| reader.field(i).to_owned()).collect()),
        Ok(false) => None,
        Err(e) => {
            *failure.borrow_mut() = Some(e);
            None
        }
    });
    let out = rows(&mut iter);
    match failure.into_inner() {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}

/// The normalized, deduplicated keys of `columns`, streamed from the file.
pub(super) fn key_set(
    d: &Dataset,
    columns: &[String],
    spec: KeySpec,
) -> Result<(KeySet, Read), JobError> {
    let mut reader = open(d)?;
    let at = positions(&reader, columns)?;
    let keys = with_rows(&mut reader, &at, |rows| KeySet::from_rows(spec, rows))?
        .map_err(|e| JobError::input(&d.spec.path, e.to_string()))?;
    Ok((keys, Read::of(&reader)))
}

/// Streams the keys of `columns` into one spill file per bucket of `plan` in `dir`, in one pass:
/// each good row's canonical key goes to its bucket with its row number (0-based among the good
/// rows, as for [`key_set`]). Returns the rows read and those excluded (an empty key
/// component); distinct keys and duplicates are counted when each bucket is read back.
pub(super) fn spill_keys(
    d: &Dataset,
    columns: &[String],
    spec: KeySpec,
    plan: &BucketPlan,
    dir: &Path,
) -> Result<(InputReport, Read), JobError> {
    let mut reader = open(d)?;
    let at = positions(&reader, columns)?;
    let spill_error = |e: SpillError| JobError::input(&d.spec.path, e.to_string());
    let mut writer =
        BucketWriter::create(dir, plan.buckets(), plan.session()).map_err(spill_error)?;
    let mut report = InputReport::default();
    let mut key = Vec::new();
    while reader.next_row()? {
        let row = report.rows;
        report.rows += 1;
        let fields: Vec<&str> = at.iter().map(|&i| reader.field(i)).collect();
        let takes_part = canonical_row_key(spec, row, &fields, &mut key)
            .map_err(|e| JobError::input(&d.spec.path, e.to_string()))?;
        if !takes_part {
            report.excluded_rows += 1;
            report.first_excluded_row.get_or_insert(row);
            continue;
        }
        writer
            .push(plan.bucket_of(&key), row, &key)
            .map_err(spill_error)?;
    }
    writer.finish().map_err(spill_error)?;
    Ok((report, Read::of(&reader)))
}

/// Hands `each` the normalized key values, then the key values as written in the file, of the
/// good rows at `matched` (0-based among the good rows, ascending), as the file streams by;
/// `each` may stop the reading with an error.
pub(super) fn rows_at(
    d: &Dataset,
    columns: &[String],
    spec: KeySpec,
    matched: &[u64],
    mut each: impl FnMut(Vec<String>) -> Result<(), JobError>,
) -> Result<(), JobError> {
    let mut reader = open(d)?;
    let at = positions(&reader, columns)?;
    let mut wanted = matched.iter().copied().peekable();
    let mut row = 0u64;
    while let Some(&next) = wanted.peek() {
        if !reader.next_row()? {
            break;
        }
        if row == next {
            let original: Vec<&str> = at.iter().map(|&i| reader.field(i)).collect();
            let mut values = Vec::with_capacity(2 * at.len());
            for (text, &ty) in original.iter().zip(spec.types()) {
                // The key matched, so it normalized when the key set was built.
                values.push(normalize::normalize(ty, text).unwrap_or_default());
            }
            values.extend(original.iter().map(|t| (*t).to_owned()));
            each(values)?;
            wanted.next();
        }
        row += 1;
    }
    match wanted.peek() {
        None => Ok(()),
        Some(row) => Err(JobError::input(
            &d.spec.path,
            format!(
                "matched row {} is past the end of the file (did it change?)",
                row + 1
            ),
        )),
    }
}

/// Whether a join counts people whose value cells are all empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Nulls {
    /// A matched person with only empty value cells is counted, contributing 0 to the sum.
    #[default]
    Include,
    /// Rows with an empty value are left out; a person with only such rows is not in the join.
    Exclude,
}

/// A join's value holder input, streamed: per row its key, its integer value and its category.
pub(super) struct Values {
    pub(super) set: concord_mpc::psi::join::ValueSet,
    /// Rows whose value was empty (a null): counted as 0, or left out (see [`Nulls`]).
    pub(super) null_values: u64,
    /// What the read used.
    pub(super) read: Read,
}

/// Reads `(key columns, value column, group column)` rows for a join. A row with an empty value
/// counts as 0 or is left out (`nulls`); a value that is not an integer, or a category outside
/// `categories`, stops the read with the file's line. `group_by` empty: every row is in
/// category 0.
pub(super) fn value_set(
    d: &Dataset,
    key_columns: &[String],
    spec: KeySpec,
    (value_column, group_by, categories): (&str, &str, &[String]),
    nulls: Nulls,
) -> Result<Values, JobError> {
    use concord_mpc::psi::join::{JoinError, ValueSet};

    let path = &d.spec.path;
    let mut reader = open(d)?;
    let at = positions(&reader, key_columns)?;
    let value_at = positions(&reader, &[value_column.to_owned()])?[0];
    let group_at = if group_by.is_empty() {
        None
    } else {
        Some(positions(&reader, &[group_by.to_owned()])?[0])
    };
    let failure = RefCell::new(None::<JobError>);
    // Line of each kept row in the file (the header is line 1), to point errors at it.
    let lines = RefCell::new(Vec::<u64>::new());
    let mut null_values = 0u64;
    let rows = std::iter::from_fn(|| {
        loop {
            if failure.borrow().is_some() {
                return None;
            }
            match reader.next_row() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    *failure.borrow_mut() = Some(e.into());
                    return None;
                }
            }
            let line = reader.line();
            let fail = |column: &str, m: String| {
                *failure.borrow_mut() = Some(JobError::value(path, line, column, m));
            };
            let raw = reader.field(value_at);
            let value = if raw.is_empty() {
                null_values += 1;
                if nulls == Nulls::Exclude {
                    continue;
                }
                0
            } else {
                let Ok(value) = raw.parse::<i64>() else {
                    fail(
                        value_column,
                        format!(
                            "{raw:?} is not an integer (register amounts in a fixed unit such as \
                             cents)"
                        ),
                    );
                    return None;
                };
                value
            };
            let category = match group_at {
                None => 0,
                Some(g) => {
                    let c = reader.field(g);
                    match categories.iter().position(|x| x == c) {
                        Some(p) => p as u32,
                        None => {
                            fail(
                                group_by,
                                format!(
                                    "{c:?} is not one of the declared categories {}",
                                    categories.join(", ")
                                ),
                            );
                            return None;
                        }
                    }
                }
            };
            lines.borrow_mut().push(line);
            let key: Vec<String> = at.iter().map(|&i| reader.field(i).to_owned()).collect();
            return Some((key, value, category));
        }
    });
    let set = ValueSet::from_rows(spec, rows);
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    let set = set.map_err(|e| match e {
        JoinError::CategoryConflict { row, .. } => {
            let line = lines.borrow().get(row as usize).copied().unwrap_or(0);
            JobError::value(
                path,
                line,
                group_by,
                "differs from an earlier row with the same key (one person, one category)",
            )
        }
        other => JobError::input(path, other.to_string()),
    })?;
    Ok(Values {
        set,
        null_values,
        read: Read::of(&reader),
    })
}

/// Calls `f` with every good row's privacy unit (the bytes that identify its person: the
/// normalized key, the unit column's normalized text, or the row's number) and the value of
/// `column` (`None` without a column; empty for a null), with the row's line, streamed. Rows
/// whose unit is missing (an empty key) belong to no one and are left out.
pub(super) fn for_each_unit(
    d: &Dataset,
    column: Option<&str>,
    mut f: impl FnMut(u64, &[u8], &str) -> Result<(), JobError>,
) -> Result<Read, JobError> {
    use crate::catalog::PrivacyUnit;
    let mut reader = open(d)?;
    let at = match column {
        Some(c) => Some(positions(&reader, &[c.to_owned()])?[0]),
        None => None,
    };
    let unit: Vec<(usize, KeyType)> = match &d.spec.privacy_unit {
        PrivacyUnit::Keys => {
            let columns = positions(&reader, &d.spec.key_columns)?;
            columns
                .into_iter()
                .zip(d.spec.key_types.iter().copied())
                .collect()
        }
        PrivacyUnit::Column(c) => vec![(
            positions(&reader, std::slice::from_ref(c))?[0],
            KeyType::TEXT,
        )],
        PrivacyUnit::Row => Vec::new(),
    };
    let mut key = Vec::new();
    let mut row = 0u64;
    'rows: while reader.next_row()? {
        row += 1;
        key.clear();
        if unit.is_empty() {
            key.extend_from_slice(&row.to_be_bytes());
        }
        for &(i, ty) in &unit {
            let start = key.len();
            key.extend_from_slice(&[0; 4]);
            if normalize::normalize_into(ty, reader.field(i), &mut key).is_err() {
                continue 'rows;
            }
            // At most 64 KiB a component in practice; the prefix keeps components apart.
            let len = (key.len() - start - 4) as u32;
            key[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        let value = at.map_or("", |i| reader.field(i));
        f(reader.line(), &key, value)?;
    }
    Ok(Read::of(&reader))
}
