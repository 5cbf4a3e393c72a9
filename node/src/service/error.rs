//! The one place where node errors become gRPC statuses.
//!
//! People reaching their own node get the full reason (a CSV error with its file and line is
//! theirs to fix). Peers get short, stable reasons; the detail goes to the log and the audit
//! trail. Internal failures never leak their cause over the wire.

use tonic::{Code, Status};

use crate::catalog::CatalogError;
use crate::grants::GrantError;
use crate::ledger::LedgerError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NodeError {
    /// The caller's certificate names nobody this node knows.
    #[error("{0}")]
    Unknown(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something named already exists.
    #[error("{0}")]
    Exists(String),
    /// The node's policy refuses a use of its data.
    #[error("refused ({code}): {0}", code = .0.code())]
    Policy(crate::policy::Refusal),
    /// A peer could not be reached or refused.
    #[error("peer {peer}: {reason}")]
    Peer {
        /// The peer's name.
        peer: String,
        /// What happened.
        reason: String,
    },
    /// The node itself failed (database, audit log, task). Logged in full, sent as a fixed text.
    #[error("{0}")]
    Internal(String),
}

impl From<CatalogError> for NodeError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Exists { .. } => NodeError::Exists(e.to_string()),
            CatalogError::NotFound { .. } => NodeError::NotFound(e.to_string()),
            CatalogError::Store(_) => NodeError::Internal(e.to_string()),
            _ => NodeError::Invalid(e.to_string()),
        }
    }
}

impl From<GrantError> for NodeError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::Refused(r) => NodeError::Policy(r),
            GrantError::NotFound(_) => NodeError::NotFound(e.to_string()),
            GrantError::AlreadyApproved { .. } => NodeError::Exists(e.to_string()),
            GrantError::Invalid(_) | GrantError::Revoked(_) => NodeError::Invalid(e.to_string()),
            _ => NodeError::Internal(e.to_string()),
        }
    }
}

impl From<LedgerError> for NodeError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Store(_) | LedgerError::Corrupt { .. } => {
                NodeError::Internal(e.to_string())
            }
            _ => NodeError::Invalid(e.to_string()),
        }
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Unknown(m) => Status::new(Code::Unauthenticated, m),
            NodeError::Forbidden(m) => Status::new(Code::PermissionDenied, m),
            NodeError::Invalid(m) => Status::new(Code::InvalidArgument, m),
            NodeError::NotFound(m) => Status::new(Code::NotFound, m),
            NodeError::Exists(m) => Status::new(Code::AlreadyExists, m),
            NodeError::Policy(r) => Status::new(
                Code::PermissionDenied,
                format!("refused ({}): {r}", r.code()),
            ),
            NodeError::Peer { peer, reason } => {
                Status::new(Code::Unavailable, format!("peer {peer}: {reason}"))
            }
            NodeError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::new(
                    Code::Internal,
                    "internal error; the node's log has the detail",
                )
            }
        }
    }
}
