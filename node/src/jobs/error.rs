//! Why a step of a job failed at this node, by kind of cause.
//!
//! The engine matches on the variant (a peer that went away is [`JobError::PeerGone`], not a
//! text to search) and turns the error into a [`crate::jobs::failure::Failure`] (the job's end, told
//! to the other parties) or, at submission, into a [`crate::error::NodeError`] for the person
//! who submitted. What reaches a remote party is the error's text, which names this node's
//! file and line for input errors and never carries an internal error chain.

use std::path::Path;

use crate::csv_input::CsvError;
use crate::error::NodeError;
use crate::store::StoreError;

/// Why a step of a job failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    /// The job's terms cannot be met: its ε, bounds, categories, key types or protocol.
    #[error("{0}")]
    Terms(String),
    /// This node's input file could not be read as registered (the error names file and line).
    #[error(transparent)]
    Read(#[from] CsvError),
    /// A value in this node's input is not what the job needs.
    #[error("{file}: line {line}, column {column:?}: {reason}")]
    Value {
        /// The dataset's file.
        file: String,
        /// The line, counting the header as line 1.
        line: u64,
        /// The column.
        column: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// This node's input does not fit the job as a whole (a column missing, too many keys).
    #[error("{file}: {reason}")]
    Input {
        /// The dataset's file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The peer closed the session before the protocol was complete; why is on its control
    /// stream (its abort), which the caller reads.
    #[error("{0}")]
    PeerGone(String),
    /// A protocol step failed: a malformed or out-of-order message, or a check that failed.
    #[error("{0}")]
    Protocol(String),
    /// This node's own policy recheck or budget commit refused to go on (the reason).
    #[error("{0}")]
    Commit(String),
    /// The node's database failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl JobError {
    /// A value error at `line` of `file`.
    pub(crate) fn value(file: &Path, line: u64, column: &str, reason: impl Into<String>) -> Self {
        JobError::Value {
            file: file.display().to_string(),
            line,
            column: column.to_owned(),
            reason: reason.into(),
        }
    }

    /// A whole-input error of `file`.
    pub(crate) fn input(file: &Path, reason: impl Into<String>) -> Self {
        JobError::Input {
            file: file.display().to_string(),
            reason: reason.into(),
        }
    }

    /// The terms cannot be met.
    pub(crate) fn terms(reason: impl Into<String>) -> Self {
        JobError::Terms(reason.into())
    }
}

impl From<JobError> for NodeError {
    /// At submission: a request whose terms or input cannot work is the submitter's to fix; a
    /// database failure is the node's.
    fn from(e: JobError) -> Self {
        match e {
            JobError::Storage(_) => NodeError::Internal(e.to_string()),
            _ => NodeError::Invalid(e.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn an_input_error_names_the_file_and_line_and_a_store_error_stays_internal() {
        let e = JobError::value(Path::new("/data/visits.csv"), 7, "amount", "not an integer");
        assert_eq!(
            e.to_string(),
            "/data/visits.csv: line 7, column \"amount\": not an integer"
        );
        assert!(matches!(NodeError::from(e), NodeError::Invalid(_)));
        let store = JobError::Storage(StoreError::TooNew {
            path: "/data/node.db".into(),
            found: 99,
            supported: 1,
        });
        assert!(matches!(NodeError::from(store), NodeError::Internal(_)));
    }
}
