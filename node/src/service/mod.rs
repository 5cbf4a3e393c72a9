//! The node as a gRPC service: `concord node start`.
//!
//! One listener serves both services over mutual TLS: `Operator` (people reaching their own
//! node) and `Federation` (peer nodes). The accept loop runs the TLS handshake itself, so a
//! refused handshake (a certificate from another CA, no certificate, a timeout) is written to
//! the audit log with the remote address before the connection is dropped. Every request that
//! completes a handshake is then authorized against the config ([`crate::tls::identify`]) and
//! audited, accepted or refused.
//!
//! Database work runs on blocking threads behind one mutex: SQLite serializes writers anyway,
//! and each operation is one short transaction. Slow work (validating a large CSV) runs outside
//! the lock.
//!
//! Simplified for now: a client that keeps failing handshakes adds one audit entry per attempt;
//! rate limiting belongs in front of the node (or in a later version of this loop).

mod admit;
mod detach;
mod error;
mod federation;
pub(crate) mod governance;
mod jobs;
mod operator;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use concord_proto::v1::federation_server::FederationServer;
use concord_proto::v1::governance_server::GovernanceServer;
use concord_proto::v1::jobs_server::JobsServer;
use concord_proto::v1::operator_server::OperatorServer;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::audit::Outcome;
use crate::clock::Clock;
use crate::config::NodeConfig;

pub use crate::error::ServiceError;
use crate::node::{MAX_MESSAGE_BYTES, record};

/// Starts the node, calls `ready` with the address it listens on, and serves until `shutdown`
/// completes; then lets in-flight requests finish and returns.
pub async fn run(
    config: NodeConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServiceError> {
    let handshake_timeout = Duration::from_secs(config.tls.handshake_timeout_seconds);
    let listen = config.node.listen;
    let (node, acceptor, (returned, interrupted)) = crate::node::open(config, clock)?;
    let node = Arc::new(node);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServiceError::Io {
            what: format!("listening on {listen}"),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServiceError::Io {
        what: "reading the listening address".into(),
        source,
    })?;
    let started = record(
        "node".into(),
        "node.start",
        Vec::new(),
        Outcome::Accepted,
        format!(
            "node {} listening on {local}, version {}; {returned} open budget reservations \
             returned; {interrupted} interrupted jobs failed",
            node.config.node.name,
            env!("CARGO_PKG_VERSION")
        ),
    );
    node.audit(started).await.map_err(|e| ServiceError::Io {
        what: "writing the audit log".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    tracing::info!(node = %node.config.node.name, %local, "listening");

    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<TlsStream<TcpStream>>>(64);
    let accept_node = Arc::clone(&node);
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let node = Arc::clone(&accept_node);
            tokio::spawn(async move {
                let reason = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no TLS handshake within {}s", handshake_timeout.as_secs()),
                };
                let entry = record(
                    format!("tcp {remote}"),
                    "tls.handshake",
                    Vec::new(),
                    Outcome::Refused,
                    reason,
                );
                if let Err(e) = node.audit(entry).await {
                    tracing::error!(error = %e, "could not audit a refused handshake");
                }
            });
        }
    });

    ready(local);
    let result = tonic::transport::Server::builder()
        .layer(detach::DetachLayer)
        .add_service(OperatorServer::new(operator::OperatorService(Arc::clone(
            &node,
        ))))
        .add_service(
            FederationServer::new(federation::FederationService(Arc::clone(&node)))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(JobsServer::new(jobs::JobsService(Arc::clone(&node))))
        .add_service(GovernanceServer::new(governance::GovernanceService(
            Arc::clone(&node),
        )))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(rx), shutdown)
        .await;
    accept.abort();
    let (outcome, detail) = match &result {
        Ok(()) => (Outcome::Accepted, "graceful shutdown".to_owned()),
        Err(e) => (Outcome::Refused, format!("server failed: {e}")),
    };
    if let Err(e) = node
        .audit(record(
            "node".into(),
            "node.stop",
            Vec::new(),
            outcome,
            detail,
        ))
        .await
    {
        tracing::error!(error = %e, "could not audit the shutdown");
    }
    tracing::info!(node = %node.config.node.name, "stopped");
    Ok(result?)
}
