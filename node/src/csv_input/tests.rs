//! Malformed inputs are refused with file, line and column.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn columns() -> Vec<Column> {
    vec![
        Column {
            name: "nin".into(),
            ty: ColumnType::Text,
            nullable: false,
        },
        Column {
            name: "age".into(),
            ty: ColumnType::Integer,
            nullable: true,
        },
        Column {
            name: "income".into(),
            ty: ColumnType::Decimal,
            nullable: true,
        },
        Column {
            name: "born".into(),
            ty: ColumnType::Date,
            nullable: false,
        },
    ]
}

fn check(bytes: &[u8]) -> (tempfile::TempDir, Result<CsvSummary, CsvError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("people.csv");
    std::fs::write(&path, bytes).unwrap();
    let result = validate(&path, &columns());
    (dir, result)
}

fn error(bytes: &[u8]) -> String {
    let (_dir, result) = check(bytes);
    let err = result.unwrap_err().to_string();
    // Every message starts with the file it is about.
    assert!(err.contains("people.csv"), "{err}");
    err.rsplit("people.csv").next().unwrap().to_owned()
}

const GOOD: &str = "nin,age,income,born\n\
    19850412-1234,41,52000.50,1985-04-12\n\
    \"19900101-0000\",,,1990-01-01\n\
    \"quoted, with comma\",7,-3,2000-02-29\n";

#[test]
fn a_good_file_is_counted_and_digested() {
    let (_dir, result) = check(GOOD.as_bytes());
    let summary = result.unwrap();
    assert_eq!(summary.rows, 3);
    assert_eq!(summary.nulls, vec![0, 1, 1, 0]);
    let digest: [u8; 32] = Sha256::digest(GOOD.as_bytes()).into();
    assert_eq!(summary.digest, digest);
}

#[test]
fn bad_utf8_names_line_and_column() {
    let mut bytes = b"nin,age,income,born\na,1,2,2000-01-01\n".to_vec();
    bytes.extend_from_slice(b"b\xff\xfe,1,2,2000-01-01\n");
    assert_eq!(error(&bytes), ", line 3, column nin: not valid UTF-8");
}

#[test]
fn ragged_rows_name_the_line() {
    assert_eq!(
        error(b"nin,age,income,born\na,1,2,2000-01-01\nb,1,2\n"),
        ", line 3: 3 fields, expected 4"
    );
}

#[test]
fn bad_numbers_and_dates_name_line_column_and_value() {
    assert_eq!(
        error(b"nin,age,income,born\na,forty,2,2000-01-01\n"),
        ", line 2, column age: \"forty\" is not a valid integer"
    );
    assert_eq!(
        error(b"nin,age,income,born\na,1,1.2.3,2000-01-01\n"),
        ", line 2, column income: \"1.2.3\" is not a valid decimal"
    );
    assert_eq!(
        error(b"nin,age,income,born\na,1,2,2001-02-29\n"),
        ", line 2, column born: \"2001-02-29\" is not a valid date"
    );
}

#[test]
fn nulls_only_where_declared() {
    assert_eq!(
        error(b"nin,age,income,born\n,1,2,2000-01-01\n"),
        ", line 2, column nin: empty value in a column that is not nullable"
    );
}

#[test]
fn headers_and_empty_files() {
    assert!(error(b"").contains("the file is empty"));
    assert!(error(b"nin,age,born,income\n").starts_with(", line 1: header is"));
}

#[test]
fn an_unterminated_quote_is_refused() {
    // The parser reads to the end of the file looking for the closing quote, so the row comes
    // out with one field.
    assert_eq!(
        error(b"nin,age,income,born\n\"open,1,2,2000-01-01\n"),
        ", line 2: 1 fields, expected 4; a quoted field runs over a line end (an unterminated \
         quote?)"
    );
}

#[test]
fn crlf_line_ends_and_a_byte_order_mark_keep_line_numbers_right() {
    let (_dir, result) = check(
        "\u{feff}nin,age,income,born\r\na,1,2,2000-01-01\r\n\"b\r\nc\",,,2000-01-01\r\n\
         d,,,2000-01-01\r\n"
            .as_bytes(),
    );
    let summary = result.unwrap();
    assert_eq!(summary.rows, 3);
    assert_eq!(summary.nulls, vec![0, 2, 2, 0]);
    assert_eq!(
        error(b"nin,age,income,born\r\na,1,2,2000-01-01\r\nb,x,2,2000-01-01\r\n"),
        ", line 3, column age: \"x\" is not a valid integer"
    );
}

#[test]
fn a_missing_file_is_an_io_error() {
    let err = validate(Path::new("/nonexistent/people.csv"), &columns()).unwrap_err();
    assert!(matches!(err, CsvError::Io { .. }), "{err}");
}

#[test]
fn type_grammar() {
    assert!(is_decimal("0") && is_decimal("-1.25") && is_decimal("+3"));
    assert!(!is_decimal("1.") && !is_decimal(".5") && !is_decimal("1e5") && !is_decimal("-"));
    assert!(is_date("2024-02-29") && !is_date("2023-02-29") && !is_date("2024-13-01"));
    assert!(!is_date("2024-1-01") && !is_date("+024-01-01"));
}
