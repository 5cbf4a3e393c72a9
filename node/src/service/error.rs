//! The one place where node errors become gRPC statuses.
//!
//! People reaching their own node get the full reason (a CSV error with its file and line is
//! theirs to fix). Peers get short, stable reasons; the detail goes to the log and the audit
//! trail. Internal failures never leak their cause over the wire.

use tonic::{Code, Status};

use crate::catalog::CatalogError;

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
            CatalogError::Store(_) => NodeError::Internal(e.to_string()),
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
