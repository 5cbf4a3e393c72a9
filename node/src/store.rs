//! The node's state: one SQLite database in its data directory, with numbered migrations.
//!
//! Migrations are applied in order inside one transaction each and recorded in SQLite's
//! `user_version`, so a node upgraded in place brings its database forward exactly once. A
//! database newer than this build is refused rather than misread.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// The schema, one migration per entry; entry `i` brings the database to version `i + 1`.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the audit log and its signed head.
    "CREATE TABLE audit_log (
        seq           INTEGER PRIMARY KEY,
        at_ms         INTEGER NOT NULL,
        actor         TEXT    NOT NULL,
        action        TEXT    NOT NULL,
        grant_id      TEXT,
        subjects      TEXT    NOT NULL,
        privacy_cost  TEXT,
        output_digest BLOB,
        outcome       TEXT    NOT NULL,
        detail        TEXT    NOT NULL,
        prev_hash     BLOB    NOT NULL,
        entry_hash    BLOB    NOT NULL
    ) STRICT;
    CREATE TABLE audit_head (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        seq        INTEGER NOT NULL,
        entry_hash BLOB    NOT NULL,
        signature  BLOB    NOT NULL
    ) STRICT;",
    // 2: the dataset catalog.
    "CREATE TABLE datasets (
        id               TEXT    PRIMARY KEY,
        path             TEXT    NOT NULL,
        description      TEXT    NOT NULL,
        domain           TEXT    NOT NULL,
        key_columns      TEXT    NOT NULL,
        rows             INTEGER NOT NULL,
        digest           BLOB    NOT NULL,
        registered_at_ms INTEGER NOT NULL,
        registered_by    TEXT    NOT NULL
    ) STRICT;
    CREATE TABLE dataset_columns (
        dataset  TEXT    NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name     TEXT    NOT NULL,
        type     TEXT    NOT NULL,
        tier     TEXT    NOT NULL,
        nullable INTEGER NOT NULL,
        nulls    INTEGER NOT NULL,
        PRIMARY KEY (dataset, position),
        UNIQUE (dataset, name)
    ) STRICT;",
    // 3: the privacy-budget ledger. Amounts are decimal text of 10^-18 quanta (u128).
    "CREATE TABLE budget_caps (
        dataset TEXT NOT NULL,
        grantee TEXT NOT NULL,
        period  TEXT NOT NULL CHECK (period IN ('day', 'month', 'year')),
        epsilon TEXT NOT NULL,
        delta   TEXT NOT NULL,
        rho     TEXT NOT NULL,
        PRIMARY KEY (dataset, grantee)
    ) STRICT;
    CREATE TABLE budget_entries (
        id         INTEGER PRIMARY KEY,
        job        TEXT    NOT NULL,
        dataset    TEXT    NOT NULL,
        grantee    TEXT    NOT NULL,
        state      TEXT    NOT NULL CHECK (state IN ('reserved', 'committed', 'returned')),
        epsilon    TEXT    NOT NULL,
        delta      TEXT    NOT NULL,
        rho        TEXT    NOT NULL,
        at_ms      INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        UNIQUE (job, dataset)
    ) STRICT;
    CREATE INDEX budget_entries_by_dataset ON budget_entries (dataset, at_ms);",
    // 4: grants, their approvals, and which grant each budget entry was made under.
    "CREATE TABLE grants (
        id             TEXT    PRIMARY KEY,
        grantee        TEXT    NOT NULL,
        scope          TEXT    NOT NULL CHECK (scope IN ('overall', 'domain', 'scenario')),
        target         TEXT    NOT NULL,
        kinds          TEXT    NOT NULL,
        fields         TEXT    NOT NULL,
        peers          TEXT    NOT NULL,
        recipients     TEXT    NOT NULL,
        valid_from_ms  INTEGER NOT NULL,
        valid_until_ms INTEGER NOT NULL,
        purpose        TEXT    NOT NULL,
        security_owner TEXT    NOT NULL,
        min_set_size   INTEGER NOT NULL,
        min_group_size INTEGER NOT NULL,
        max_runs       INTEGER,
        runs_period    TEXT    NOT NULL CHECK (runs_period IN ('day', 'month', 'year')),
        budget_period  TEXT    NOT NULL CHECK (budget_period IN ('day', 'month', 'year')),
        epsilon        TEXT    NOT NULL,
        delta          TEXT    NOT NULL,
        rho            TEXT    NOT NULL,
        proposed_by    TEXT    NOT NULL,
        proposed_at_ms INTEGER NOT NULL,
        revoked_at_ms  INTEGER,
        revoked_by     TEXT,
        revoke_reason  TEXT
    ) STRICT;
    CREATE TABLE grant_approvals (
        grant_id TEXT    NOT NULL REFERENCES grants (id),
        approver TEXT    NOT NULL,
        at_ms    INTEGER NOT NULL,
        PRIMARY KEY (grant_id, approver)
    ) STRICT;
    ALTER TABLE budget_entries ADD COLUMN grant_id TEXT;
    CREATE INDEX budget_entries_by_grant ON budget_entries (grant_id, at_ms);",
    // 5: jobs.
    // `spec` and `result` are JSON written by `crate::jobs`; a job never survives a restart.
    "CREATE TABLE jobs (
        id           TEXT    PRIMARY KEY,
        kind         TEXT    NOT NULL,
        role         TEXT    NOT NULL CHECK (role IN ('coordinator', 'participant')),
        coordinator  TEXT    NOT NULL,
        submitted_by TEXT    NOT NULL,
        recipient    TEXT    NOT NULL,
        parties      TEXT    NOT NULL,
        spec         TEXT    NOT NULL,
        state        TEXT    NOT NULL CHECK (state IN ('submitted', 'authorized', 'running',
                                                       'released', 'failed', 'cancelled')),
        phase        TEXT    NOT NULL,
        reason       TEXT    NOT NULL DEFAULT '',
        failed_at    TEXT    NOT NULL DEFAULT '',
        result       BLOB,
        created_ms   INTEGER NOT NULL,
        updated_ms   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX jobs_by_time ON jobs (created_ms);",
    // 6: an intersection's matching keys, in chunks (encoded `KeyRows`) written before its
    // release; a job that does not release has its chunks deleted.
    "CREATE TABLE job_keys (
        job  TEXT    NOT NULL,
        seq  INTEGER NOT NULL,
        rows BLOB    NOT NULL,
        PRIMARY KEY (job, seq)
    ) STRICT;",
    // 7: each key column's key type (JSON names, parallel to key_columns; empty for datasets
    // registered before key types, which read as `text:case-sensitive`), the bad-row policy,
    // and the bad rows left out at registration (JSON counts by reason).
    "ALTER TABLE datasets ADD COLUMN key_types TEXT NOT NULL DEFAULT '';
    ALTER TABLE datasets ADD COLUMN on_bad_row TEXT NOT NULL DEFAULT 'fail';
    ALTER TABLE datasets ADD COLUMN rejects TEXT NOT NULL DEFAULT '';",
    // 8: the privacy unit: '' for the key columns (a person is a key), 'row', or a column
    // named `column:NAME`; and the population whose people the dataset describes (population
    // caps are `budget_caps` rows whose dataset is `@POPULATION`).
    "ALTER TABLE datasets ADD COLUMN privacy_unit TEXT NOT NULL DEFAULT '';
    ALTER TABLE datasets ADD COLUMN population TEXT NOT NULL DEFAULT 'default';",
];

/// Everything that can go wrong with the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer Concord.
    #[error(
        "database {path} has schema version {found}, newer than this build's {supported}: upgrade Concord"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// This build's latest version.
        supported: usize,
    },
}

/// The node's database.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
            .map_err(err)?;
        // Other connections (the CLI reading a copy, concurrent ledger writers) wait for a lock
        // instead of failing at once.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        let mut store = Self {
            path: path.to_owned(),
            conn,
        };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let current = self.schema_version()?;
        if current > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: current,
                supported: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
            let path = self.path.clone();
            let err = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let tx = self.conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(())
    }

    pub(crate) fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// A converter that labels SQLite errors with this database's path, usable while the
    /// connection is borrowed.
    pub(crate) fn err_fn(&self) -> impl Fn(rusqlite::Error) -> StoreError + use<> {
        let path = self.path.clone();
        move |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        }
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(store);
        // Reopening applies nothing twice.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        store
            .conn
            .pragma_update(None, "user_version", 99i64)
            .unwrap();
        drop(store);
        let err = Store::open(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("schema version 99, newer than this build's"),
            "{err}"
        );
    }
}
