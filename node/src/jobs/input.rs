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

/// The key values of the rows at `matched` (0-based data rows, ascending), streamed.
pub(super) fn rows_at(
    path: &Path,
    columns: &[String],
    matched: &[u64],
) -> Result<Vec<Vec<String>>, String> {
    let mut rdr = reader(path)?;
    let at = positions(path, &mut rdr, columns)?;
    let mut out = Vec::with_capacity(matched.len());
    let mut wanted = matched.iter().copied().peekable();
    for (row, record) in rdr.records().enumerate() {
        let Some(&next) = wanted.peek() else { break };
        let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
        if row as u64 == next {
            out.push(
                at.iter()
                    .map(|&i| record.get(i).unwrap_or_default().to_owned())
                    .collect(),
            );
            wanted.next();
        }
    }
    Ok(out)
}

/// Every value of `column` (empty fields, the nulls, are `None`), streamed.
pub(super) fn column(path: &Path, column: &str) -> Result<Vec<Option<String>>, String> {
    let mut rdr = reader(path)?;
    let at = positions(path, &mut rdr, &[column.to_owned()])?[0];
    rdr.records()
        .map(|r| {
            let record = r.map_err(|e| format!("{}: {e}", path.display()))?;
            let v = record.get(at).unwrap_or_default();
            Ok((!v.is_empty()).then(|| v.to_owned()))
        })
        .collect()
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
