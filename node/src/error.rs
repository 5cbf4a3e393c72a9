//! Why the node failed: [`ServiceError`] when it cannot start or stops abnormally, [`NodeError`]
//! when a request fails. `service` maps a [`NodeError`] onto a gRPC status, in one place.

use crate::audit::AuditError;
use crate::catalog::CatalogError;
use crate::config::ConfigError;
use crate::grants::GrantError;
use crate::ledger::LedgerError;
use crate::store::StoreError;
use crate::tls::TlsError;

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

impl From<StoreError> for NodeError {
    /// The database failing is the node's own failure: logged in full, never sent.
    fn from(e: StoreError) -> Self {
        NodeError::Internal(e.to_string())
    }
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

/// Why the node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The configuration or a secret it names is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Certificates or keys are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log could not be written.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    /// The budget ledger could not be recovered.
    #[error("budget ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The audit signing key is not a 64-digit hex seed.
    #[error("{file}: the audit signing key must be 32 bytes written as 64 hex digits")]
    AuditKey {
        /// The config file naming it.
        file: String,
    },
    /// The secure-aggregation identity key is not a 64-digit hex key.
    #[error("{file}: the secagg identity key must be 32 bytes written as 64 hex digits")]
    SecAggKey {
        /// The config file naming it.
        file: String,
    },
    /// The data directory or the listening socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}
