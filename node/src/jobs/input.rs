//! Reading a registered dataset for a job, streaming: the file is never held whole in memory.
//! The PSI key set keeps only its distinct normalized keys (what the protocol needs); a query
//! keeps the one column it releases.

use std::cell::RefCell;
use std::path::Path;

use concord_mpc::psi::{KeySet, KeySpec};

fn reader(path: &Path) -> Result<csv::Reader<std::fs::File>, String> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Positions of `columns` in the file's header.
fn positions(
    path: &Path,
    rdr: &mut csv::Reader<std::fs::File>,
    columns: &[String],
) -> Result<Vec<usize>, String> {
    let header = rdr
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .clone();
    columns
        .iter()
        .map(|c| {
            header.iter().position(|h| h == c).ok_or_else(|| {
                format!(
                    "{}: no column {c:?} (the file changed since registration?)",
                    path.display()
                )
            })
        })
        .collect()
}

/// The normalized, deduplicated keys of `columns`, streamed from the file.
pub(super) fn key_set(path: &Path, columns: &[String]) -> Result<KeySet, String> {
    let mut rdr = reader(path)?;
    let at = positions(path, &mut rdr, columns)?;
    let spec = KeySpec {
        columns: u8::try_from(at.len()).map_err(|_| "more than 255 key columns".to_owned())?,
        case_fold: false,
    };
    let failure = RefCell::new(None::<String>);
    let rows = rdr.records().map_while(|r| match r {
        Ok(record) => Some(
            at.iter()
                .map(|&i| record.get(i).unwrap_or_default().to_owned())
                .collect::<Vec<String>>(),
        ),
        Err(e) => {
            *failure.borrow_mut() = Some(format!("{}: {e}", path.display()));
            None
        }
    });
    let keys = KeySet::from_rows(spec, rows).map_err(|e| e.to_string())?;
    match failure.into_inner() {
        Some(e) => Err(e),
        None => Ok(keys),
    }
}

/// Hands `each` the key values of the rows at `matched` (0-based data rows, ascending), as the
/// file streams by; `each` may stop the reading with an error.
pub(super) fn rows_at(
    path: &Path,
    columns: &[String],
    matched: &[u64],
    mut each: impl FnMut(Vec<String>) -> Result<(), String>,
) -> Result<(), String> {
    let mut rdr = reader(path)?;
    let at = positions(path, &mut rdr, columns)?;
    let mut wanted = matched.iter().copied().peekable();
    for (row, record) in rdr.records().enumerate() {
        let Some(&next) = wanted.peek() else { break };
        let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
        if row as u64 == next {
            each(
                at.iter()
                    .map(|&i| record.get(i).unwrap_or_default().to_owned())
                    .collect(),
            )?;
            wanted.next();
        }
    }
    match wanted.peek() {
        None => Ok(()),
        Some(row) => Err(format!(
            "{}: matched row {} is past the end of the file (did it change?)",
            path.display(),
            row + 1
        )),
    }
}

/// Hands `each` every non-empty value of `column` (empty fields are nulls, skipped) as the file
/// streams by; `each` may stop the reading with an error.
pub(super) fn each_value(
    path: &Path,
    column: &str,
    mut each: impl FnMut(&str) -> Result<(), String>,
) -> Result<(), String> {
    let mut rdr = reader(path)?;
    let at = positions(path, &mut rdr, &[column.to_owned()])?[0];
    let mut record = csv::StringRecord::new();
    while rdr
        .read_record(&mut record)
        .map_err(|e| format!("{}: {e}", path.display()))?
    {
        let v = record.get(at).unwrap_or_default();
        if !v.is_empty() {
            each(v)?;
        }
    }
    Ok(())
}

/// The number of data rows, streamed.
pub(super) fn row_count(path: &Path) -> Result<u64, String> {
    let mut rdr = reader(path)?;
    let mut record = csv::ByteRecord::new();
    let mut n = 0;
    while rdr
        .read_byte_record(&mut record)
        .map_err(|e| format!("{}: {e}", path.display()))?
    {
        n += 1;
    }
    Ok(n)
}

/// A join's value holder input, streamed: per row its key, its integer value and its category.
pub(super) struct Values {
    pub(super) set: concord_mpc::psi::join::ValueSet,
    /// Rows left out because their value was empty (a null).
    pub(super) null_values: u64,
}

/// Reads `(key columns, value column, group column)` rows for a join. Rows with an empty value
/// are left out (counted); a value that is not an integer, or a category outside `categories`,
/// stops the read with the file's line. `group_by` empty: every row is in category 0.
pub(super) fn value_set(
    path: &Path,
    key_columns: &[String],
    value_column: &str,
    group_by: &str,
    categories: &[String],
) -> Result<Values, String> {
    use concord_mpc::psi::join::{JoinError, ValueSet};

    let mut rdr = reader(path)?;
    let at = positions(path, &mut rdr, key_columns)?;
    let value_at = positions(path, &mut rdr, &[value_column.to_owned()])?[0];
    let group_at = if group_by.is_empty() {
        None
    } else {
        Some(positions(path, &mut rdr, &[group_by.to_owned()])?[0])
    };
    let spec = KeySpec {
        columns: u8::try_from(at.len()).map_err(|_| "more than 255 key columns".to_owned())?,
        case_fold: false,
    };
    let failure = RefCell::new(None::<String>);
    // Line of each kept row in the file (the header is line 1), to point errors at it.
    let lines = RefCell::new(Vec::<u64>::new());
    let mut null_values = 0u64;
    let rows = rdr.records().enumerate().filter_map(|(i, r)| {
        if failure.borrow().is_some() {
            return None;
        }
        let line = i as u64 + 2;
        let fail = |m: String| {
            *failure.borrow_mut() = Some(format!("{}: line {line}: {m}", path.display()));
            None
        };
        let record = match r {
            Ok(record) => record,
            Err(e) => return fail(e.to_string()),
        };
        let raw = record.get(value_at).unwrap_or_default();
        if raw.is_empty() {
            null_values += 1;
            return None;
        }
        let Ok(value) = raw.parse::<i64>() else {
            return fail(format!(
                "{value_column} = {raw:?} is not an integer (register amounts in a fixed unit \
                 such as cents)"
            ));
        };
        let category = match group_at {
            None => 0,
            Some(g) => {
                let c = record.get(g).unwrap_or_default();
                match categories.iter().position(|x| x == c) {
                    Some(p) => p as u32,
                    None => {
                        return fail(format!(
                            "{group_by} = {c:?} is not one of the declared categories {}",
                            categories.join(", ")
                        ));
                    }
                }
            }
        };
        lines.borrow_mut().push(line);
        let key: Vec<String> = at
            .iter()
            .map(|&i| record.get(i).unwrap_or_default().to_owned())
            .collect();
        Some((key, value, category))
    });
    let set = ValueSet::from_rows(spec, rows);
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    let set = set.map_err(|e| match e {
        JoinError::CategoryConflict { row, .. } => {
            let line = lines.borrow().get(row as usize).copied().unwrap_or(0);
            format!(
                "{}: line {line}: {group_by} differs from an earlier row with the same key (one \
                 person, one category)",
                path.display()
            )
        }
        other => format!("{}: {other}", path.display()),
    })?;
    Ok(Values { set, null_values })
}

/// Calls `f` with every non-empty value of `column` (nulls left out) and its 1-based data row,
/// streamed.
pub(super) fn for_each_value(
    path: &Path,
    column: &str,
    mut f: impl FnMut(u64, &str) -> Result<(), String>,
) -> Result<(), String> {
    let mut rdr = reader(path)?;
    let at = positions(path, &mut rdr, &[column.to_owned()])?[0];
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    while rdr
        .read_record(&mut record)
        .map_err(|e| format!("{}: {e}", path.display()))?
    {
        row += 1;
        match record.get(at) {
            Some(v) if !v.is_empty() => f(row, v)?,
            _ => {}
        }
    }
    Ok(())
}
