//! The dataset catalog ("one data, one source"): which CSV files the node reads in place, their
//! schema, the tier of every field, their row count and content digest.
//!
//! A dataset is registered only after its file validates in full against the declared schema
//! ([`crate::csv_input`]); the recorded SHA-256 lets a later job detect that the file changed.
//!
//! Each key column has a key type (`concord_mpc::psi::KeyType`: `text`, `cn-resident-id`, …)
//! that says how its values are normalized and checked; a column a job matches on that is not a
//! declared key column is `text`. With `--on-bad-row skip` the bad rows are left out, listed in
//! a reject report next to the node's database (line, column, reason; never a value), and
//! counted in the profile.
//!
//! # What each reader sees
//! | reader | sees |
//! |---|---|
//! | the node's own people | everything: path, digest, every column with its tier, who registered it |
//! | a peer node | id, description, domain, key columns, row count, and the columns of tier `public`, `internal` and `sensitive` (names, types, tiers); restricted columns are withheld (only their number is given); no path, digest or registrant |
//!
//! Row counts are shown to peers because every two-party job reveals set sizes anyway (see the
//! leakage table in the README).

use std::fmt;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension as _, params};

use concord_mpc::psi::KeyType;

use crate::csv_input::{self, Column, ColumnType, CsvError, OnBadRow, RejectCounts, Schema};
use crate::store::{Store, StoreError};

/// A field's classification, lowest to highest. A tier bounds what any grant can allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Tier {
    /// Anything may be done with it.
    Public,
    /// Usable as a join key or inside aggregates.
    Internal,
    /// Usable only inside differentially private aggregates.
    Sensitive,
    /// Never leaves the node in any form; peers do not see the column at all.
    Restricted,
}

impl Tier {
    /// Parses `public`, `internal`, `sensitive` or `restricted`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Tier::Public),
            "internal" => Some(Tier::Internal),
            "sensitive" => Some(Tier::Sensitive),
            "restricted" => Some(Tier::Restricted),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Public => "public",
            Tier::Internal => "internal",
            Tier::Sensitive => "sensitive",
            Tier::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A declared column with its tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Name, type and nullability.
    pub column: Column,
    /// Its classification.
    pub tier: Tier,
}

/// What a data manager asks to register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetSpec {
    /// Its id at this node.
    pub id: String,
    /// The CSV file, on the node's machine.
    pub path: PathBuf,
    /// Columns forming the record key used by joint jobs (e.g. a national ID number).
    pub key_columns: Vec<String>,
    /// Each key column's key type, in the same order.
    pub key_types: Vec<KeyType>,
    /// What a read does with a bad row.
    pub on_bad_row: OnBadRow,
    /// Who one "individual" of a DP release is.
    pub privacy_unit: PrivacyUnit,
    /// The population whose people it describes: datasets of one population share its caps.
    pub population: String,
    /// Every column, in file order.
    pub columns: Vec<ColumnSpec>,
    /// Free text.
    pub description: String,
    /// Sector or domain tag (may be empty).
    pub domain: String,
}

/// The population of a dataset registered without one: a node's datasets describe one
/// population unless their data managers say otherwise.
pub const DEFAULT_POPULATION: &str = "default";

/// Who one individual is for the differential privacy of every release of a dataset: adding or
/// removing one individual, with all their rows, changes a release by a bounded amount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrivacyUnit {
    /// A person is a normalized key: rows with the same key are one person (the default).
    #[default]
    Keys,
    /// A person is a value of this column (normalized as `text`).
    Column(String),
    /// Every row is a distinct person; the catalog checks that no key repeats.
    Row,
}

impl PrivacyUnit {
    /// Parses `--privacy-unit`: `row`, or a column name (`keys` for the default).
    pub fn parse(s: &str) -> Self {
        match s {
            "" | "keys" => Self::Keys,
            "row" => Self::Row,
            column => Self::Column(column.to_owned()),
        }
    }

    /// As stored, and as `parse` reads it back.
    pub fn name(&self) -> String {
        match self {
            Self::Keys => "keys".into(),
            Self::Row => "row".into(),
            Self::Column(c) => c.clone(),
        }
    }

    fn stored(&self) -> String {
        match self {
            Self::Keys => String::new(),
            Self::Row => "row".into(),
            Self::Column(c) => format!("column:{c}"),
        }
    }

    fn from_stored(s: &str) -> Self {
        match s {
            "row" => Self::Row,
            s => match s.strip_prefix("column:") {
                Some(c) => Self::Column(c.to_owned()),
                None => Self::Keys,
            },
        }
    }
}

/// A registered dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// What was registered.
    pub spec: DatasetSpec,
    /// Data rows.
    pub rows: u64,
    /// SHA-256 of the file at registration.
    pub digest: [u8; 32],
    /// Nulls per column, in order.
    pub nulls: Vec<u64>,
    /// Bad rows left out at registration (`skip`), by reason.
    pub rejects: RejectCounts,
    /// When (ms since the Unix epoch).
    pub registered_at_ms: i64,
    /// The data manager's identity.
    pub registered_by: String,
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The request itself is inconsistent.
    #[error("dataset {id:?}: {reason}")]
    Invalid {
        /// The dataset id asked for.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// No dataset has this id.
    #[error("no dataset {id:?} is registered at this node")]
    NotFound {
        /// The id.
        id: String,
    },
    /// The id is taken.
    #[error("dataset {id:?} is already registered")]
    Exists {
        /// The id.
        id: String,
    },
    /// The file does not match its declared schema.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DatasetSpec {
    /// Checks the request before the file is read.
    pub fn check(&self) -> Result<(), CatalogError> {
        let invalid = |reason: String| CatalogError::Invalid {
            id: self.id.clone(),
            reason,
        };
        if !crate::name::is_name(&self.id) {
            return Err(invalid(
                "the id must be 1-64 of a-z, 0-9, '_' and '-', starting with a letter".into(),
            ));
        }
        if self.columns.is_empty() {
            return Err(invalid(
                "declare its columns (--column name:type:tier)".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.columns {
            if c.column.name.is_empty() || !seen.insert(c.column.name.as_str()) {
                return Err(invalid(format!(
                    "column {:?} is empty or declared twice",
                    c.column.name
                )));
            }
        }
        if self.key_columns.is_empty() {
            return Err(invalid("name its key columns (--key-columns)".into()));
        }
        if self.key_columns.len() > concord_mpc::psi::MAX_KEY_COLUMNS {
            return Err(invalid(format!(
                "at most {} key columns",
                concord_mpc::psi::MAX_KEY_COLUMNS
            )));
        }
        if self.key_types.len() != self.key_columns.len() {
            return Err(invalid(format!(
                "{} key columns but {} key types",
                self.key_columns.len(),
                self.key_types.len()
            )));
        }
        for k in &self.key_columns {
            if !seen.contains(k.as_str()) {
                return Err(invalid(format!(
                    "key column {k:?} is not a declared column"
                )));
            }
        }
        if !crate::name::is_name(&self.population) {
            return Err(invalid(format!(
                "population {:?}: 1-64 of a-z, 0-9, '_' and '-', starting with a letter",
                self.population
            )));
        }
        if let PrivacyUnit::Column(c) = &self.privacy_unit
            && !seen.contains(c.as_str())
        {
            return Err(invalid(format!(
                "privacy unit {c:?} is not a declared column (--privacy-unit COLUMN, or row)"
            )));
        }
        if self.domain.len() > 64 || self.description.len() > 1024 {
            return Err(invalid(
                "domain or description too long (64 / 1024 bytes)".into(),
            ));
        }
        Ok(())
    }

    /// What every read of the file checks: its columns, key columns with their key types, and
    /// the bad-row policy.
    pub fn schema(&self) -> Schema {
        let columns: Vec<Column> = self.columns.iter().map(|c| c.column.clone()).collect();
        let keys = self
            .key_columns
            .iter()
            .zip(&self.key_types)
            .filter_map(|(k, &t)| Some((columns.iter().position(|c| c.name == *k)?, t)))
            .collect();
        Schema {
            columns,
            keys,
            on_bad_row: self.on_bad_row,
        }
    }

    /// The key type a job matching on `column` uses: the declared one for a key column, `text`
    /// for any other column.
    pub fn key_type(&self, column: &str) -> KeyType {
        self.key_columns
            .iter()
            .position(|k| k == column)
            .and_then(|i| self.key_types.get(i).copied())
            .unwrap_or(KeyType::TEXT)
    }
}

/// Checks that no normalized key repeats among the file's good rows, as `--privacy-unit row`
/// requires. Holds the distinct keys in memory (a row-level dataset is bounded by the node's
/// `max_keys` when a job reads it anyway).
fn distinct_keys(spec: &DatasetSpec) -> Result<(), CatalogError> {
    let invalid = |reason: String| CatalogError::Invalid {
        id: spec.id.clone(),
        reason,
    };
    let schema = spec.schema();
    let mut reader = csv_input::Reader::open(&spec.path, &schema)?;
    let mut seen: std::collections::HashMap<Vec<u8>, u64> = std::collections::HashMap::new();
    let mut key = Vec::new();
    'rows: while reader.next_row()? {
        key.clear();
        for &(at, ty) in &schema.keys {
            let start = key.len();
            key.extend_from_slice(&[0; 4]);
            // A bad key was left out or refused by the reader; an empty one is no person.
            if concord_mpc::psi::normalize::normalize_into(ty, reader.field(at), &mut key).is_err()
            {
                continue 'rows;
            }
            let len = (key.len() - start - 4) as u32;
            key[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        if let Some(first) = seen.insert(key.clone(), reader.line()) {
            return Err(invalid(format!(
                "--privacy-unit row needs one row per person, but the key at line {} repeats \
                 the one at line {first} (leave --privacy-unit out: a person is then a key)",
                reader.line()
            )));
        }
    }
    Ok(())
}

/// Where the reject report of dataset `id` is written, under the node's data directory.
pub fn reject_report_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("rejects").join(format!("{id}.csv"))
}

/// Validates the file against `spec` (the slow part: call it without holding the database) and
/// returns what registration will record. Bad rows left out (`skip`) are listed in a CSV at
/// `report` (`line,column,reason`, never a value), written only when there are some.
pub fn inspect(
    spec: DatasetSpec,
    registered_by: &str,
    now_ms: i64,
    report: &Path,
) -> Result<Dataset, CatalogError> {
    use std::io::Write as _;
    spec.check()?;
    let io = |source| {
        CatalogError::Csv(CsvError::Io {
            file: report.to_owned(),
            source,
        })
    };
    let mut out: Option<std::io::BufWriter<std::fs::File>> = None;
    let summary = csv_input::profile(&spec.path, &spec.schema(), |r| {
        let out = match &mut out {
            Some(out) => out,
            None => {
                if let Some(dir) = report.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut file = std::io::BufWriter::new(std::fs::File::create(report)?);
                writeln!(file, "line,column,reason")?;
                out.insert(file)
            }
        };
        let column = match &r.problem {
            csv_input::RowProblem::NotUtf8 { column }
            | csv_input::RowProblem::Null { column }
            | csv_input::RowProblem::BadValue { column, .. }
            | csv_input::RowProblem::BadKey { column, .. } => column.as_str(),
            _ => "",
        };
        let reason = r.problem.to_string();
        let reason = reason.split_once(": ").map_or(reason.as_str(), |(_, r)| r);
        writeln!(
            out,
            "{},{},\"{}\"",
            r.line,
            column,
            reason.replace('"', "'")
        )
    })?;
    if spec.privacy_unit == PrivacyUnit::Row {
        distinct_keys(&spec)?;
    }
    match out {
        Some(mut out) => out.flush().map_err(io)?,
        // No bad rows this time: an older report would mislead.
        None => match std::fs::remove_file(report) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        },
    }
    Ok(Dataset {
        spec,
        rows: summary.rows,
        digest: summary.digest,
        nulls: summary.nulls,
        rejects: summary.rejects,
        registered_at_ms: now_ms,
        registered_by: registered_by.to_owned(),
    })
}

/// Records an inspected dataset. Refuses an id already taken.
pub fn register(store: &mut Store, dataset: &Dataset) -> Result<(), CatalogError> {
    let id = dataset.spec.id.clone();
    let conn = store.conn();
    let result = (|| -> rusqlite::Result<bool> {
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM datasets WHERE id = ?1", [&id], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            return Ok(false);
        }
        let s = &dataset.spec;
        tx.execute(
            "INSERT INTO datasets (id, path, description, domain, key_columns, rows, digest,
                                   registered_at_ms, registered_by, key_types, on_bad_row,
                                   rejects, privacy_unit, population)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                s.id,
                s.path.to_string_lossy(),
                s.description,
                s.domain,
                serde_json::to_string(&s.key_columns).unwrap_or_default(),
                dataset.rows as i64,
                dataset.digest.to_vec(),
                dataset.registered_at_ms,
                dataset.registered_by,
                serde_json::to_string(&s.key_types.iter().map(|t| t.name()).collect::<Vec<_>>())
                    .unwrap_or_default(),
                s.on_bad_row.name(),
                rejects_to_json(&dataset.rejects),
                s.privacy_unit.stored(),
                s.population,
            ],
        )?;
        for (i, c) in s.columns.iter().enumerate() {
            tx.execute(
                "INSERT INTO dataset_columns (dataset, position, name, type, tier, nullable, nulls)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.id,
                    i as i64,
                    c.column.name,
                    c.column.ty.name(),
                    c.tier.as_str(),
                    c.column.nullable,
                    dataset.nulls.get(i).copied().unwrap_or(0) as i64,
                ],
            )?;
        }
        tx.commit()?;
        Ok(true)
    })();
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(CatalogError::Exists { id }),
        Err(e) => Err(CatalogError::Store(store.err(e))),
    }
}

/// Every registered dataset, by id.
pub fn list(store: &mut Store) -> Result<Vec<Dataset>, CatalogError> {
    let result = load(store.conn(), None);
    result.map_err(|e| CatalogError::Store(store.err(e)))
}

/// The registered datasets (all, or the one with `id`), read on `conn` (which may be inside
/// the caller's transaction).
pub(crate) fn load(
    conn: &rusqlite::Connection,
    id: Option<&str>,
) -> rusqlite::Result<Vec<Dataset>> {
    {
        let mut stmt = conn.prepare(
            "SELECT id, path, description, domain, key_columns, rows, digest, registered_at_ms,
                    registered_by, key_types, on_bad_row, rejects, privacy_unit, population
             FROM datasets WHERE ?1 IS NULL OR id = ?1 ORDER BY id",
        )?;
        let mut datasets = stmt
            .query_map([id], |r| {
                let digest: Vec<u8> = r.get(6)?;
                let keys: String = r.get(4)?;
                let key_columns: Vec<String> = serde_json::from_str(&keys).unwrap_or_default();
                let key_types = key_types_from_json(&r.get::<_, String>(9)?, key_columns.len());
                Ok(Dataset {
                    spec: DatasetSpec {
                        id: r.get(0)?,
                        path: PathBuf::from(r.get::<_, String>(1)?),
                        description: r.get(2)?,
                        domain: r.get(3)?,
                        key_columns,
                        key_types,
                        // An unreadable policy is read as the strict one.
                        on_bad_row: OnBadRow::parse(&r.get::<_, String>(10)?).unwrap_or_default(),
                        privacy_unit: PrivacyUnit::from_stored(&r.get::<_, String>(12)?),
                        population: r.get(13)?,
                        columns: Vec::new(),
                    },
                    rows: r.get::<_, i64>(5)? as u64,
                    digest: digest.try_into().unwrap_or([0u8; 32]),
                    nulls: Vec::new(),
                    rejects: rejects_from_json(&r.get::<_, String>(11)?),
                    registered_at_ms: r.get(7)?,
                    registered_by: r.get(8)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut cols = conn.prepare(
            "SELECT name, type, tier, nullable, nulls FROM dataset_columns
             WHERE dataset = ?1 ORDER BY position",
        )?;
        for d in &mut datasets {
            let rows = cols.query_map([&d.spec.id], |r| {
                let ty: String = r.get(1)?;
                let tier: String = r.get(2)?;
                Ok((
                    ColumnSpec {
                        column: Column {
                            name: r.get(0)?,
                            ty: ColumnType::parse(&ty).unwrap_or(ColumnType::Text),
                            nullable: r.get(3)?,
                        },
                        // An unreadable tier is treated as the strictest.
                        tier: Tier::parse(&tier).unwrap_or(Tier::Restricted),
                    },
                    r.get::<_, i64>(4)? as u64,
                ))
            })?;
            for row in rows {
                let (spec, nulls) = row?;
                d.spec.columns.push(spec);
                d.nulls.push(nulls);
            }
        }
        Ok(datasets)
    }
}

/// Datasets registered before key types matched their keys trimmed, in NFC, case-sensitively:
/// the nearest key type is `text:case-sensitive`. An unreadable name reads the same way.
fn key_types_from_json(text: &str, columns: usize) -> Vec<KeyType> {
    let legacy = KeyType::Text {
        case_sensitive: true,
    };
    let names: Vec<String> = serde_json::from_str(text).unwrap_or_default();
    (0..columns)
        .map(|i| {
            names
                .get(i)
                .and_then(|n| KeyType::parse(n).ok())
                .unwrap_or(legacy)
        })
        .collect()
}

fn rejects_to_json(r: &RejectCounts) -> String {
    serde_json::json!([r.ragged, r.not_utf8, r.null, r.bad_value, r.bad_key]).to_string()
}

fn rejects_from_json(text: &str) -> RejectCounts {
    let n: Vec<u64> = serde_json::from_str(text).unwrap_or_default();
    let at = |i: usize| n.get(i).copied().unwrap_or(0);
    RejectCounts {
        ragged: at(0),
        not_utf8: at(1),
        null: at(2),
        bad_value: at(3),
        bad_key: at(4),
    }
}

/// Parses a `--key-columns` entry: `name` (key type `text`) or `name:type`, with the key types
/// of `concord_mpc::psi::KeyType::parse` (`text:case-sensitive`, `cn-resident-id:legacy-15`, …).
pub fn parse_key_column(s: &str) -> Result<(String, KeyType), BadColumnArg> {
    let bad = |problem| BadColumnArg {
        entry: s.to_owned(),
        problem,
    };
    let (name, ty) = match s.split_once(':') {
        Some((name, ty)) => (
            name,
            KeyType::parse(ty).map_err(|e| bad(ColumnArgProblem::KeyType(e)))?,
        ),
        None => (s, KeyType::TEXT),
    };
    if name.is_empty() {
        return Err(bad(ColumnArgProblem::EmptyName));
    }
    Ok((name.to_owned(), ty))
}

/// A `--column` or `--key-columns` entry that does not parse: the entry, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?}: {problem}")]
pub struct BadColumnArg {
    /// The entry as given.
    pub entry: String,
    /// What is wrong with it.
    pub problem: ColumnArgProblem,
}

/// What is wrong with a [`BadColumnArg`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnArgProblem {
    /// Not `name:type:tier` or `name:type:tier:nullable`.
    #[error("expected name:type:tier or name:type:tier:nullable")]
    Shape,
    /// A column type this build does not know.
    #[error("unknown type {0:?} (use text, integer, decimal or date)")]
    UnknownType(String),
    /// A tier this build does not know.
    #[error("unknown tier {0:?} (use public, internal, sensitive or restricted)")]
    UnknownTier(String),
    /// The name before the first `:` is empty.
    #[error("empty column name")]
    EmptyName,
    /// A key type `concord_mpc::psi::KeyType::parse` refused, with its reason.
    #[error("{0}")]
    KeyType(String),
}

/// Sets the tier of named columns of dataset `id`; returns each change as (column, old, new).
/// All or nothing: an unknown dataset or column changes nothing.
pub fn classify(
    store: &mut Store,
    id: &str,
    changes: &[(String, Tier)],
) -> Result<Vec<(String, Tier, Tier)>, CatalogError> {
    let err = store.err_fn();
    let tx = store
        .conn()
        .transaction()
        .map_err(|e| CatalogError::Store(err(e)))?;
    let dataset = load(&tx, Some(id))
        .map_err(|e| CatalogError::Store(err(e)))?
        .pop()
        .ok_or_else(|| CatalogError::NotFound { id: id.to_owned() })?;
    let mut done = Vec::new();
    for (name, tier) in changes {
        let old = dataset
            .spec
            .columns
            .iter()
            .find(|c| c.column.name == *name)
            .map(|c| c.tier)
            .ok_or_else(|| CatalogError::Invalid {
                id: id.to_owned(),
                reason: format!("no column {name:?}"),
            })?;
        tx.execute(
            "UPDATE dataset_columns SET tier = ?3 WHERE dataset = ?1 AND name = ?2",
            params![id, name, tier.as_str()],
        )
        .map_err(|e| CatalogError::Store(err(e)))?;
        done.push((name.clone(), old, *tier));
    }
    tx.commit().map_err(|e| CatalogError::Store(err(e)))?;
    Ok(done)
}

/// The fields of a dataset a peer may see (see the module docs).
pub fn peer_view(dataset: &Dataset) -> Dataset {
    let mut view = dataset.clone();
    view.spec.path = PathBuf::new();
    view.digest = [0u8; 32];
    view.registered_by.clear();
    let (columns, nulls) = dataset
        .spec
        .columns
        .iter()
        .cloned()
        .zip(dataset.nulls.iter().copied().chain(std::iter::repeat(0)))
        .filter(|(c, _)| c.tier < Tier::Restricted)
        .unzip();
    view.spec.columns = columns;
    view.nulls = nulls;
    view
}

/// Parses `name:type:tier` or `name:type:tier:nullable`, as `concord dataset add --column` takes it.
pub fn parse_column(s: &str) -> Result<ColumnSpec, BadColumnArg> {
    let bad = |problem| BadColumnArg {
        entry: s.to_owned(),
        problem,
    };
    let parts: Vec<&str> = s.split(':').collect();
    let (name, ty, tier, nullable) = match parts.as_slice() {
        [n, ty, tier] => (*n, *ty, *tier, false),
        [n, ty, tier, "nullable"] => (*n, *ty, *tier, true),
        _ => return Err(bad(ColumnArgProblem::Shape)),
    };
    let ty =
        ColumnType::parse(ty).ok_or_else(|| bad(ColumnArgProblem::UnknownType(ty.to_owned())))?;
    let tier =
        Tier::parse(tier).ok_or_else(|| bad(ColumnArgProblem::UnknownTier(tier.to_owned())))?;
    if name.is_empty() {
        return Err(bad(ColumnArgProblem::EmptyName));
    }
    Ok(ColumnSpec {
        column: Column {
            name: name.to_owned(),
            ty,
            nullable,
        },
        tier,
    })
}

/// Whether `path` looks like the file that was registered (same bytes), for jobs to check.
pub fn unchanged(dataset: &Dataset) -> Result<bool, CsvError> {
    let summary = csv_input::profile(&dataset.spec.path, &dataset.spec.schema(), |_| Ok(()))?;
    Ok(summary.digest == dataset.digest)
}

/// A dataset registered from `path` with `columns` (`name:type:tier[:nullable]`), the first
/// column its key, for tests of the code that reads datasets.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn for_tests(path: &Path, columns: &[&str]) -> Dataset {
    let columns: Vec<ColumnSpec> = columns.iter().map(|c| parse_column(c).unwrap()).collect();
    let spec = DatasetSpec {
        id: "test".into(),
        path: path.to_owned(),
        key_columns: vec![columns[0].column.name.clone()],
        key_types: vec![KeyType::TEXT],
        on_bad_row: OnBadRow::Fail,
        privacy_unit: PrivacyUnit::Keys,
        population: DEFAULT_POPULATION.into(),
        columns,
        description: String::new(),
        domain: String::new(),
    };
    inspect(spec, "test", 0, &path.with_extension("rejects.csv")).unwrap()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(dir: &Path, csv: &str) -> DatasetSpec {
        let path = dir.join("people.csv");
        std::fs::write(&path, csv).unwrap();
        DatasetSpec {
            id: "people".into(),
            path,
            key_columns: vec!["nin".into()],
            key_types: vec![KeyType::TEXT],
            on_bad_row: OnBadRow::Fail,
            privacy_unit: PrivacyUnit::Keys,
            population: DEFAULT_POPULATION.into(),
            columns: vec![
                parse_column("nin:text:internal").unwrap(),
                parse_column("district:text:public").unwrap(),
                parse_column("claims:decimal:sensitive:nullable").unwrap(),
                parse_column("diagnosis:text:restricted").unwrap(),
            ],
            description: "insured people".into(),
            domain: "health".into(),
        }
    }

    #[test]
    fn registers_lists_and_hides_restricted_fields_from_peers() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("n.sqlite")).unwrap();
        let csv = "nin,district,claims,diagnosis\nA1,north,12.5,x\nA2,south,,y\n";
        let d = inspect(
            spec(dir.path(), csv),
            "manager.health.concord",
            1000,
            &dir.path().join("r.csv"),
        )
        .unwrap();
        register(&mut store, &d).unwrap();
        let listed = list(&mut store).unwrap();
        assert_eq!(listed, vec![d.clone()]);
        assert_eq!(listed[0].rows, 2);
        assert_eq!(listed[0].nulls, vec![0, 0, 1, 0]);

        let peer = peer_view(&listed[0]);
        let names: Vec<_> = peer
            .spec
            .columns
            .iter()
            .map(|c| c.column.name.as_str())
            .collect();
        assert_eq!(names, ["nin", "district", "claims"]);
        assert_eq!(peer.nulls, vec![0, 0, 1]);
        assert_eq!(peer.spec.path, PathBuf::new());
        assert_eq!(peer.digest, [0u8; 32]);
        assert!(peer.registered_by.is_empty());

        let again = register(&mut store, &d).unwrap_err();
        assert_eq!(
            again.to_string(),
            "dataset \"people\" is already registered"
        );
        assert!(unchanged(&listed[0]).unwrap());
        std::fs::write(&d.spec.path, csv.replace("12.5", "13.5")).unwrap();
        assert!(!unchanged(&listed[0]).unwrap());
    }

    #[test]
    fn keys_are_checked_and_bad_rows_skipped_and_reported_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "\u{feff}nin,district,claims,diagnosis\r\n\
                   11010519491231002x,north,12.5,x\r\n\
                   110105194912310021,north,1,x\r\n\
                   \u{ff11}\u{ff11}0105194912310\u{ff10}2X ,south,,y\r\n\
                   44052418800101001,south,3\r\n\
                   440524188001010014,south,abc,z\r\n";
        let mut s = spec(dir.path(), csv);
        s.key_types = vec![KeyType::CnResidentId { legacy_15: false }];
        let report = dir.path().join("rejects").join("people.csv");
        let err = inspect(s.clone(), "m", 0, &report).unwrap_err().to_string();
        assert!(
            err.contains("line 3, column nin: not a valid cn-resident-id key"),
            "{err}"
        );
        assert!(!err.contains("110105194912310021"), "{err}");
        s.on_bad_row = OnBadRow::Skip;
        let d = inspect(s, "m", 0, &report).unwrap();
        assert_eq!(d.rows, 2);
        assert_eq!(
            d.rejects,
            RejectCounts {
                ragged: 1,
                bad_value: 1,
                bad_key: 1,
                ..RejectCounts::default()
            }
        );
        let text = std::fs::read_to_string(&report).unwrap();
        assert_eq!(
            text,
            "line,column,reason\n\
             3,nin,\"not a valid cn-resident-id key: check digit does not match\"\n\
             5,,\"3 fields, expected 4\"\n\
             6,claims,\"not a valid decimal\"\n"
        );
        let mut store = Store::open(&dir.path().join("n.sqlite")).unwrap();
        register(&mut store, &d).unwrap();
        assert_eq!(list(&mut store).unwrap(), vec![d]);
        assert_eq!(
            parse_key_column("nin:cn-resident-id:legacy-15").unwrap(),
            ("nin".into(), KeyType::CnResidentId { legacy_15: true })
        );
        assert_eq!(parse_key_column("name").unwrap().1, KeyType::TEXT);
        assert!(matches!(
            parse_key_column("nin:passport").unwrap_err().problem,
            ColumnArgProblem::KeyType(_)
        ));
    }

    #[test]
    fn a_row_privacy_unit_needs_one_row_per_person() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("r.csv");
        // Two rows of one person: "A1" and " a1" are one normalized text key.
        let csv = "nin,district,claims,diagnosis\nA1,north,1,x\nB2,south,2,y\n a1,south,3,z\n";
        let mut s = spec(dir.path(), csv);
        s.privacy_unit = PrivacyUnit::Row;
        let err = inspect(s.clone(), "m", 0, &report).unwrap_err().to_string();
        assert!(
            err.contains("the key at line 4 repeats the one at line 2"),
            "{err}"
        );
        assert!(!err.contains("A1") && !err.contains("a1"), "{err}");
        // One row each: accepted, and stored.
        std::fs::write(&s.path, csv.replace(" a1", "C3")).unwrap();
        let d = inspect(s.clone(), "m", 0, &report).unwrap();
        let mut store = Store::open(&dir.path().join("n.sqlite")).unwrap();
        register(&mut store, &d).unwrap();
        assert_eq!(
            list(&mut store).unwrap()[0].spec.privacy_unit,
            PrivacyUnit::Row
        );
        // A column unit must be a declared column.
        s.privacy_unit = PrivacyUnit::parse("household");
        let err = inspect(s, "m", 0, &report).unwrap_err().to_string();
        assert!(
            err.contains("privacy unit \"household\" is not a declared column"),
            "{err}"
        );
        assert_eq!(PrivacyUnit::parse("row"), PrivacyUnit::Row);
        assert_eq!(PrivacyUnit::parse(""), PrivacyUnit::Keys);
    }

    #[test]
    fn refuses_bad_requests_and_bad_files_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(
            dir.path(),
            "nin,district,claims,diagnosis\nA1,north,abc,x\n",
        );
        let err = inspect(s.clone(), "m", 0, &dir.path().join("r.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("people.csv, line 2, column claims: \"abc\" is not a valid decimal"),
            "{err}"
        );
        s.key_columns = vec!["name".into()];
        let err = inspect(s.clone(), "m", 0, &dir.path().join("r.csv"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "dataset \"people\": key column \"name\" is not a declared column"
        );
        s.id = "People!".into();
        assert!(inspect(s, "m", 0, &dir.path().join("r.csv")).is_err());
        assert_eq!(
            parse_column("age:int:public").unwrap_err().to_string(),
            "\"age:int:public\": unknown type \"int\" (use text, integer, decimal or date)"
        );
        assert_eq!(
            parse_column("age:integer:secret").unwrap_err().problem,
            ColumnArgProblem::UnknownTier("secret".into())
        );
        assert_eq!(
            parse_column("age").unwrap_err().problem,
            ColumnArgProblem::Shape
        );
        assert_eq!(
            parse_column(":text:public").unwrap_err().problem,
            ColumnArgProblem::EmptyName
        );
    }
}
