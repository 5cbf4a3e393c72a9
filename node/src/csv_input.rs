//! Reading a CSV dataset against its declared schema: one streaming reader for registration
//! and for every job, so that a job uses exactly the rows the dataset's profile counted.
//!
//! Datasets are read in place ("one data, one source"): the node never copies them, so it
//! checks them instead, in one pass and in bounded memory, and records their row count and the
//! SHA-256 of their exact bytes (a later change to the file is then detectable).
//!
//! Format: UTF-8, comma-separated, RFC 4180 quoting (CRLF or LF line ends), a header row naming
//! exactly the declared columns in order (a byte-order mark before it is ignored). A **null** is
//! an empty field (`,,` or `""`): it is allowed only in columns declared nullable. A declared key
//! column's values must be valid keys of its key type (`concord_mpc::psi::normalize`).
//!
//! # Bad rows
//! A row is *bad* when it has the wrong number of fields, a field that is not UTF-8, a null
//! where none is allowed, a value that is not of its column's type, or a key that fails its
//! key type's rules (a check digit, a length). The dataset's [`OnBadRow`] policy decides:
//! - `fail` (the default): the first bad row refuses the file, naming file, line and column;
//! - `skip`: bad rows are left out of every read, each one reported as a [`Rejected`] row
//!   (line, column, reason, never the value), and counted in [`RejectCounts`].
//!
//! A quoted field that runs over a line end in a row with the wrong number of fields is an
//! unterminated quote: it would swallow the rest of the file, so it refuses the file under
//! either policy.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use concord_mpc::psi::{KeyFault, KeyType, normalize};
use sha2::{Digest as _, Sha256};

/// The type of a column's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnType {
    /// Any UTF-8 text.
    Text,
    /// A signed 64-bit integer, decimal digits with an optional sign.
    Integer,
    /// A decimal number: digits, an optional sign and an optional fraction (`-12.50`).
    Decimal,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
}

impl ColumnType {
    /// Parses `text`, `integer`, `decimal` or `date`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "text" => Some(Self::Text),
            "integer" => Some(Self::Integer),
            "decimal" => Some(Self::Decimal),
            "date" => Some(Self::Date),
            _ => None,
        }
    }

    /// The name used in schemas and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Integer => "integer",
            Self::Decimal => "decimal",
            Self::Date => "date",
        }
    }

    fn accepts(self, value: &str) -> bool {
        match self {
            Self::Text => true,
            Self::Integer => value.parse::<i64>().is_ok(),
            Self::Decimal => is_decimal(value),
            Self::Date => is_date(value),
        }
    }
}

fn is_decimal(v: &str) -> bool {
    let v = v.strip_prefix(['-', '+']).unwrap_or(v);
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && (!v.contains('.') || (!frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit())))
}

fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |s: &str| {
        s.parse::<u32>()
            .ok()
            .filter(|_| s.bytes().all(|c| c.is_ascii_digit()))
    };
    let (Some(y), Some(m), Some(d)) = (num(&v[..4]), num(&v[5..7]), num(&v[8..])) else {
        return false;
    };
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// One declared column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Its name in the header.
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
    /// Whether empty fields (nulls) are allowed.
    pub nullable: bool,
}

/// What a read does with a bad row (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnBadRow {
    /// The first bad row refuses the file.
    #[default]
    Fail,
    /// Bad rows are left out, reported and counted.
    Skip,
}

impl OnBadRow {
    /// Parses `fail` or `skip`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fail" => Some(Self::Fail),
            "skip" => Some(Self::Skip),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }
}

/// A dataset's declared layout: what every read of it checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// Every column, in file order.
    pub columns: Vec<Column>,
    /// The declared key columns, as positions in `columns`, with their key types.
    pub keys: Vec<(usize, KeyType)>,
    /// What to do with a bad row.
    pub on_bad_row: OnBadRow,
}

/// Why a row is bad. Holds no value of the row: it is written to reports and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowProblem {
    /// The row has the wrong number of fields.
    Ragged {
        /// Declared columns.
        expected: usize,
        /// Fields found.
        found: usize,
    },
    /// A field is not valid UTF-8.
    NotUtf8 {
        /// The column.
        column: String,
    },
    /// A null in a column that is not nullable.
    Null {
        /// The column.
        column: String,
    },
    /// A value that is not of its column's type.
    BadValue {
        /// The column.
        column: String,
        /// The declared type.
        expected: &'static str,
    },
    /// A key that breaks its key type's rules.
    BadKey {
        /// The key column.
        column: String,
        /// Its key type.
        key_type: KeyType,
        /// What is wrong with it.
        fault: KeyFault,
    },
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ragged { expected, found } => write!(f, "{found} fields, expected {expected}"),
            Self::NotUtf8 { column } => write!(f, "column {column}: not valid UTF-8"),
            Self::Null { column } => write!(
                f,
                "column {column}: empty value in a column that is not nullable"
            ),
            Self::BadValue { column, expected } => {
                write!(f, "column {column}: not a valid {expected}")
            }
            Self::BadKey {
                column,
                key_type,
                fault,
            } => write!(f, "column {column}: not a valid {key_type} key: {fault}"),
        }
    }
}

/// Bad rows left out of a read, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts {
    /// Wrong number of fields.
    pub ragged: u64,
    /// A field that is not UTF-8.
    pub not_utf8: u64,
    /// A null where none is allowed.
    pub null: u64,
    /// A value not of its column's type.
    pub bad_value: u64,
    /// A key that breaks its key type's rules.
    pub bad_key: u64,
}

impl RejectCounts {
    /// Rows left out in all.
    pub fn total(&self) -> u64 {
        self.ragged + self.not_utf8 + self.null + self.bad_value + self.bad_key
    }

    fn count(&mut self, problem: &RowProblem) {
        let n = match problem {
            RowProblem::Ragged { .. } => &mut self.ragged,
            RowProblem::NotUtf8 { .. } => &mut self.not_utf8,
            RowProblem::Null { .. } => &mut self.null,
            RowProblem::BadValue { .. } => &mut self.bad_value,
            RowProblem::BadKey { .. } => &mut self.bad_key,
        };
        *n += 1;
    }

    /// Each non-zero reason with its count, e.g. `[("bad key", 3)]`.
    pub fn by_reason(&self) -> Vec<(&'static str, u64)> {
        [
            ("wrong field count", self.ragged),
            ("not UTF-8", self.not_utf8),
            ("null not allowed", self.null),
            ("value not of its type", self.bad_value),
            ("bad key", self.bad_key),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

/// A bad row left out by the `skip` policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Its line in the file (the header is line 1).
    pub line: u64,
    /// Why.
    pub problem: RowProblem,
}

/// What a whole read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvSummary {
    /// Data rows read and kept (the header and bad rows left out).
    pub rows: u64,
    /// SHA-256 of the file's bytes.
    pub digest: [u8; 32],
    /// Nulls per column among the rows kept, in declared order.
    pub nulls: Vec<u64>,
    /// Bad rows left out.
    pub rejects: RejectCounts,
}

/// Why a file was refused. Lines count from 1, the header being line 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file has no header row.
    #[error("{file}: the file is empty; expected a header row")]
    Empty {
        /// The file.
        file: PathBuf,
    },
    /// The header does not name the declared columns.
    #[error("{file}, line 1: header is {found:?}, expected {expected:?}")]
    Header {
        /// The file.
        file: PathBuf,
        /// Declared names.
        expected: Vec<String>,
        /// Names found.
        found: Vec<String>,
    },
    /// A field is not valid UTF-8.
    #[error("{file}, line {line}, column {column}: not valid UTF-8")]
    NotUtf8 {
        /// The file.
        file: PathBuf,
        /// The line.
        line: u64,
        /// The column name.
        column: String,
    },
    /// A row has the wrong number of fields.
    #[error("{file}, line {line}: {found} fields, expected {expected}")]
    Ragged {
        /// The file.
        file: PathBuf,
        /// The line.
        line: u64,
        /// Declared columns.
        expected: usize,
        /// Fields found.
        found: usize,
    },
    /// A value does not parse as its column's type.
    #[error("{file}, line {line}, column {column}: {value:?} is not a valid {expected}")]
    BadValue {
        /// The file.
        file: PathBuf,
        /// The line.
        line: u64,
        /// The column name.
        column: String,
        /// The value (cut to 40 characters).
        value: String,
        /// The declared type.
        expected: &'static str,
    },
    /// A null in a column that does not allow nulls.
    #[error("{file}, line {line}, column {column}: empty value in a column that is not nullable")]
    Null {
        /// The file.
        file: PathBuf,
        /// The line.
        line: u64,
        /// The column name.
        column: String,
    },
    /// A key breaks its key type's rules. The value is not shown: keys identify people.
    #[error("{file}, line {line}, column {column}: not a valid {key_type} key: {fault}")]
    BadKey {
        /// The file.
        file: PathBuf,
        /// The line.
        line: u64,
        /// The key column.
        column: String,
        /// Its key type.
        key_type: KeyType,
        /// What is wrong with it.
        fault: KeyFault,
    },
    /// The CSV structure itself is broken (for example an unterminated quote).
    #[error("{file}, line {line}: {reason}")]
    Malformed {
        /// The file.
        file: PathBuf,
        /// The line.
        line: u64,
        /// The parser's reason.
        reason: String,
    },
}

impl CsvError {
    /// Whether the error is one bad row, which the `skip` policy would have left out.
    pub fn is_bad_row(&self) -> bool {
        matches!(
            self,
            Self::NotUtf8 { .. }
                | Self::Ragged { .. }
                | Self::BadValue { .. }
                | Self::Null { .. }
                | Self::BadKey { .. }
        )
    }
}

/// Feeds every byte read into a SHA-256.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// What [`Reader::advance`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A good row, readable with [`Reader::field`].
    Row,
    /// A bad row, left out (the `skip` policy).
    Rejected(Rejected),
    /// The end of the file.
    End,
}

/// A bad row, before the policy is applied: the value is kept for a `fail` message only.
struct Bad {
    problem: RowProblem,
    value: String,
}

/// One streaming pass over a dataset's file, checking every row against its schema.
pub struct Reader {
    file: PathBuf,
    csv: csv::Reader<Hashing<File>>,
    schema: Schema,
    record: csv::ByteRecord,
    rows: u64,
    nulls: Vec<u64>,
    rejects: RejectCounts,
    /// Scratch space for checking keys.
    key: Vec<u8>,
}

impl std::fmt::Debug for Reader {
    // The record holds personal data: print where the read is only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("file", &self.file)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Opens `path` and checks its header against `schema`.
    pub fn open(path: &Path, schema: &Schema) -> Result<Self, CsvError> {
        let file = path.to_owned();
        let source = Hashing {
            inner: File::open(path).map_err(|source| CsvError::Io {
                file: file.clone(),
                source,
            })?,
            hash: Sha256::new(),
        };
        let mut reader = Self {
            // Records end at '\n' only, and a '\r' before it is cut from the last field
            // ([`Self::raw`]): the parser's own CRLF handling numbers every line after the first
            // one too low, and errors must name the right line.
            csv: csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .terminator(csv::Terminator::Any(b'\n'))
                .from_reader(source),
            file,
            schema: schema.clone(),
            record: csv::ByteRecord::new(),
            rows: 0,
            nulls: vec![0; schema.columns.len()],
            rejects: RejectCounts::default(),
            key: Vec::new(),
        };
        if !reader.read()? {
            return Err(CsvError::Empty { file: reader.file });
        }
        let found: Vec<String> = (0..reader.record.len())
            .map(|i| {
                let name = String::from_utf8_lossy(reader.raw(i).unwrap_or_default());
                if i == 0 {
                    name.trim_start_matches('\u{feff}').to_owned()
                } else {
                    name.into_owned()
                }
            })
            .collect();
        let expected: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
        if found != expected {
            return Err(CsvError::Header {
                file: reader.file,
                expected,
                found,
            });
        }
        Ok(reader)
    }

    fn read(&mut self) -> Result<bool, CsvError> {
        self.csv.read_byte_record(&mut self.record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            let reason = e.to_string();
            match e.into_kind() {
                csv::ErrorKind::Io(source) => CsvError::Io {
                    file: self.file.clone(),
                    source,
                },
                _ => CsvError::Malformed {
                    file: self.file.clone(),
                    line,
                    reason,
                },
            }
        })
    }

    /// The line the current row starts on.
    pub fn line(&self) -> u64 {
        self.record.position().map_or(0, |p| p.line())
    }

    /// The current record's field `i` as bytes, without the '\r' of a CRLF line end.
    fn raw(&self, i: usize) -> Option<&[u8]> {
        raw(&self.record, i)
    }

    /// The current row's field `i` (a declared position); empty for a null.
    pub fn field(&self, i: usize) -> &str {
        // Every field of a good row was checked to be UTF-8.
        self.raw(i)
            .and_then(|f| std::str::from_utf8(f).ok())
            .unwrap_or_default()
    }

    /// The position of a declared column.
    pub fn position(&self, column: &str) -> Option<usize> {
        self.schema.columns.iter().position(|c| c.name == column)
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Good rows so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bad rows left out so far.
    pub fn rejects(&self) -> RejectCounts {
        self.rejects
    }

    /// Reads the next row: a good one, a bad one left out (`skip`), or the end. Under `fail`, a
    /// bad row is an error naming the file, line and column.
    pub fn advance(&mut self) -> Result<Step, CsvError> {
        if !self.read()? {
            return Ok(Step::End);
        }
        let line = self.line();
        let Err(bad) = self.check() else {
            self.rows += 1;
            return Ok(Step::Row);
        };
        let unterminated = matches!(bad.problem, RowProblem::Ragged { .. })
            && self.record.iter().any(|f| f.contains(&b'\n'));
        if unterminated {
            return Err(CsvError::Malformed {
                file: self.file.clone(),
                line,
                reason: format!(
                    "{}; a quoted field runs over a line end (an unterminated quote?)",
                    bad.problem
                ),
            });
        }
        if self.schema.on_bad_row == OnBadRow::Skip {
            self.rejects.count(&bad.problem);
            return Ok(Step::Rejected(Rejected {
                line,
                problem: bad.problem,
            }));
        }
        Err(self.refusal(line, bad))
    }

    /// Moves to the next good row, leaving bad ones out (`skip`); false at the end.
    pub fn next_row(&mut self) -> Result<bool, CsvError> {
        loop {
            match self.advance()? {
                Step::Row => return Ok(true),
                Step::Rejected(_) => {}
                Step::End => return Ok(false),
            }
        }
    }

    /// Reads what is left of the file (for its digest) and sums up the read.
    pub fn finish(self) -> Result<CsvSummary, CsvError> {
        let file = self.file;
        let mut source = self.csv.into_inner();
        io::copy(&mut source, &mut io::sink()).map_err(|source| CsvError::Io { file, source })?;
        Ok(CsvSummary {
            rows: self.rows,
            digest: source.hash.finalize().into(),
            nulls: self.nulls,
            rejects: self.rejects,
        })
    }

    /// Checks the current record; counts its nulls when it is good.
    fn check(&mut self) -> Result<(), Bad> {
        let columns = &self.schema.columns;
        if self.record.len() != columns.len() {
            return Err(Bad {
                problem: RowProblem::Ragged {
                    expected: columns.len(),
                    found: self.record.len(),
                },
                value: String::new(),
            });
        }
        let mut has_null = false;
        for (i, column) in columns.iter().enumerate() {
            let field = self.raw(i).unwrap_or_default();
            let Ok(value) = std::str::from_utf8(field) else {
                return Err(Bad {
                    problem: RowProblem::NotUtf8 {
                        column: column.name.clone(),
                    },
                    value: String::new(),
                });
            };
            if value.is_empty() {
                if !column.nullable {
                    return Err(Bad {
                        problem: RowProblem::Null {
                            column: column.name.clone(),
                        },
                        value: String::new(),
                    });
                }
                has_null = true;
            } else if !column.ty.accepts(value) {
                return Err(Bad {
                    problem: RowProblem::BadValue {
                        column: column.name.clone(),
                        expected: column.ty.name(),
                    },
                    value: value.chars().take(40).collect(),
                });
            }
        }
        for &(at, key_type) in &self.schema.keys {
            let value = raw(&self.record, at).unwrap_or_default();
            let value = std::str::from_utf8(value).unwrap_or_default();
            if value.is_empty() {
                continue;
            }
            self.key.clear();
            match normalize::normalize_into(key_type, value, &mut self.key) {
                // A key that normalizes to nothing (only spaces) is a missing key: the row is
                // kept, and joint jobs leave it out as they do an empty field.
                Ok(()) | Err(KeyFault::Empty) => {}
                Err(fault) => {
                    return Err(Bad {
                        problem: RowProblem::BadKey {
                            column: columns[at].name.clone(),
                            key_type,
                            fault,
                        },
                        value: String::new(),
                    });
                }
            }
        }
        if has_null {
            // Counted once the row is known to be good.
            for i in 0..columns.len() {
                if self.raw(i).is_some_and(<[u8]>::is_empty) {
                    self.nulls[i] += 1;
                }
            }
        }
        Ok(())
    }

    fn refusal(&self, line: u64, bad: Bad) -> CsvError {
        let file = self.file.clone();
        match bad.problem {
            RowProblem::Ragged { expected, found } => CsvError::Ragged {
                file,
                line,
                expected,
                found,
            },
            RowProblem::NotUtf8 { column } => CsvError::NotUtf8 { file, line, column },
            RowProblem::Null { column } => CsvError::Null { file, line, column },
            RowProblem::BadValue { column, expected } => CsvError::BadValue {
                file,
                line,
                column,
                value: bad.value,
                expected,
            },
            RowProblem::BadKey {
                column,
                key_type,
                fault,
            } => CsvError::BadKey {
                file,
                line,
                column,
                key_type,
                fault,
            },
        }
    }
}

/// Field `i` of `record` as bytes, without the '\r' of a CRLF line end.
fn raw(record: &csv::ByteRecord, i: usize) -> Option<&[u8]> {
    let field = record.get(i)?;
    if i + 1 == record.len() {
        Some(field.strip_suffix(b"\r").unwrap_or(field))
    } else {
        Some(field)
    }
}

/// Reads the whole of `path` against `schema` in one streaming pass, handing each bad row left
/// out (`skip`) to `rejected`.
pub fn profile(
    path: &Path,
    schema: &Schema,
    mut rejected: impl FnMut(&Rejected) -> io::Result<()>,
) -> Result<CsvSummary, CsvError> {
    let mut reader = Reader::open(path, schema)?;
    loop {
        match reader.advance()? {
            Step::Row => {}
            Step::Rejected(r) => rejected(&r).map_err(|source| CsvError::Io {
                file: path.to_owned(),
                source,
            })?,
            Step::End => break,
        }
    }
    reader.finish()
}

/// Validates `path` against `columns` (no key columns, bad rows refused) in one pass.
pub fn validate(path: &Path, columns: &[Column]) -> Result<CsvSummary, CsvError> {
    let schema = Schema {
        columns: columns.to_vec(),
        ..Schema::default()
    };
    profile(path, &schema, |_| Ok(()))
}

#[cfg(test)]
mod tests;
