//! The one place where node errors become gRPC statuses.
//!
//! People reaching their own node get the full reason (a CSV error with its file and line is
//! theirs to fix). Peers get short, stable reasons; the detail goes to the log and the audit
//! trail. Internal failures never leak their cause over the wire.

use tonic::{Code, Status};

use crate::error::NodeError;

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
