//! Strict, streaming validation of a CSV dataset against its declared columns.
//!
//! Datasets are read in place ("one data, one source"): the node never copies them, so it
//! checks them instead, in one pass and in bounded memory, and records their row count and the
//! SHA-256 of their exact bytes (a later change to the file is then detectable).
//!
//! Format: UTF-8, comma-separated, RFC 4180 quoting, a header row naming exactly the declared
//! columns in order. A **null** is an empty field (`,,` or `""`): it is allowed only in columns
//! declared nullable. Every refusal names the file, the line and the column.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

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

/// What a valid file contains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvSummary {
    /// Data rows (the header excluded).
    pub rows: u64,
    /// SHA-256 of the file's bytes.
    pub digest: [u8; 32],
    /// Nulls per column, in declared order.
    pub nulls: Vec<u64>,
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

/// Validates `path` against `columns` in one streaming pass.
pub fn validate(path: &Path, columns: &[Column]) -> Result<CsvSummary, CsvError> {
    let file = path.to_owned();
    let io = |source| CsvError::Io {
        file: file.clone(),
        source,
    };
    let source = Hashing {
        inner: File::open(path).map_err(io)?,
        hash: Sha256::new(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(source);
    let mut record = csv::ByteRecord::new();
    let line_of = |record: &csv::ByteRecord| record.position().map_or(0, |p| p.line());
    let malformed = |e: csv::Error, file: &Path| {
        let line = e.position().map_or(0, |p| p.line());
        let reason = e.to_string();
        match e.into_kind() {
            csv::ErrorKind::Io(source) => CsvError::Io {
                file: file.to_owned(),
                source,
            },
            _ => CsvError::Malformed {
                file: file.to_owned(),
                line,
                reason,
            },
        }
    };
    if !reader
        .read_byte_record(&mut record)
        .map_err(|e| malformed(e, path))?
    {
        return Err(CsvError::Empty { file });
    }
    let found: Vec<String> = record
        .iter()
        .map(|f| {
            String::from_utf8_lossy(f)
                .trim_start_matches('\u{feff}')
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    if found != expected {
        return Err(CsvError::Header {
            file,
            expected,
            found,
        });
    }
    let mut rows = 0u64;
    let mut nulls = vec![0u64; columns.len()];
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| malformed(e, path))?
    {
        let line = line_of(&record);
        if record.len() != columns.len() {
            return Err(CsvError::Ragged {
                file,
                line,
                expected: columns.len(),
                found: record.len(),
            });
        }
        for ((field, column), nulls) in record.iter().zip(columns).zip(&mut nulls) {
            let Ok(value) = std::str::from_utf8(field) else {
                return Err(CsvError::NotUtf8 {
                    file,
                    line,
                    column: column.name.clone(),
                });
            };
            if value.is_empty() {
                if !column.nullable {
                    return Err(CsvError::Null {
                        file,
                        line,
                        column: column.name.clone(),
                    });
                }
                *nulls += 1;
            } else if !column.ty.accepts(value) {
                return Err(CsvError::BadValue {
                    file,
                    line,
                    column: column.name.clone(),
                    value: value.chars().take(40).collect(),
                    expected: column.ty.name(),
                });
            }
        }
        rows += 1;
    }
    let mut source = reader.into_inner();
    io::copy(&mut source, &mut io::sink()).map_err(io)?;
    Ok(CsvSummary {
        rows,
        digest: source.hash.finalize().into(),
        nulls,
    })
}

#[cfg(test)]
mod tests;
