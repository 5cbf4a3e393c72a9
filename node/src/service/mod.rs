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

pub(crate) mod convert;
mod detach;
mod error;
mod federation;
pub(crate) mod governance;
mod jobs;
mod operator;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use concord_proto::v1::federation_server::FederationServer;
use concord_proto::v1::governance_server::GovernanceServer;
use concord_proto::v1::jobs_server::JobsServer;
use concord_proto::v1::operator_server::OperatorServer;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic::{Request, Status};

use crate::audit::{self, AuditError, NodeKey, Outcome, Record};
use crate::clock::Clock;
use crate::config::{ConfigError, NodeConfig, Role};
use crate::federation::parse_audit_seed;
use crate::store::{Store, StoreError};
use crate::tls::{self, Caller, TlsError};

pub(crate) use error::NodeError;

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
    Ledger(#[from] crate::ledger::LedgerError),
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

/// Largest gRPC message between nodes: a full envelope ([`concord_proto::envelope`]) and its
/// framing. tonic's default (4 MiB) is below the envelope limit.
pub(crate) const MAX_MESSAGE_BYTES: usize = concord_proto::envelope::MAX_PAYLOAD_BYTES + (64 << 10);

/// The running node's shared state.
pub(crate) struct Node {
    pub(crate) config: NodeConfig,
    rules: crate::policy::Rules,
    store: Mutex<Store>,
    key: NodeKey,
    pub(crate) clock: Arc<dyn Clock>,
    started: Instant,
    peer_tls: ClientTlsConfig,
    /// The live side (progress, cancellation) of the jobs this node coordinates.
    pub(crate) jobs: crate::jobs::Live,
    /// This node's secure-aggregation identity key, when its configuration has one.
    pub(crate) secagg: Option<concord_mpc::secagg::IdentityKey>,
}

/// Which callers an RPC admits.
#[derive(Clone, Copy)]
pub(crate) enum Admit {
    /// People holding any of these roles.
    People(&'static [Role]),
    /// Peer nodes listed in the config.
    Peers,
}

impl Node {
    /// Runs `f` on the database, on a blocking thread.
    pub(crate) async fn with_store<T, F>(self: &Arc<Self>, f: F) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(&Node, &mut Store) -> T + Send + 'static,
    {
        let node = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (every change is
            // one transaction), so a poisoned lock is safe to keep using.
            let mut store = node.store.lock().unwrap_or_else(PoisonError::into_inner);
            f(&node, &mut store)
        })
        .await
        .map_err(|e| NodeError::Internal(format!("database task failed: {e}")))
    }

    /// This node's directory, as its own people see it or (`for_peer`) as a peer may see it
    /// ([`crate::catalog::peer_view`]), with the audit detail.
    pub(crate) async fn directory(
        self: &Arc<Self>,
        for_peer: bool,
    ) -> Result<(concord_proto::v1::Directory, String), NodeError> {
        self.with_store(move |node, store| {
            let name = &node.config.node.name;
            let datasets = crate::catalog::list(store)?
                .iter()
                .map(|d| {
                    if for_peer {
                        let view = crate::catalog::peer_view(d);
                        let withheld = d.spec.columns.len() - view.spec.columns.len();
                        convert::dataset_to_pb(name, &view, withheld)
                    } else {
                        let mut own = convert::dataset_to_pb(name, d, 0);
                        let report = crate::catalog::reject_report_path(
                            &node.config.node.data_dir,
                            &d.spec.id,
                        );
                        if d.rejects.total() > 0 && report.exists() {
                            own.reject_report = report.to_string_lossy().into_owned();
                        }
                        own
                    }
                })
                .collect::<Vec<_>>();
            let detail = format!(
                "{} datasets listed{}",
                datasets.len(),
                if for_peer { " (peer view)" } else { "" }
            );
            let directory = concord_proto::v1::Directory {
                node: name.clone(),
                datasets,
            };
            Ok::<_, crate::catalog::CatalogError>((directory, detail))
        })
        .await?
        .map_err(NodeError::from)
    }

    /// Appends to the audit log; a request whose audit entry cannot be written fails.
    pub(crate) async fn audit(self: &Arc<Self>, record: Record) -> Result<(), NodeError> {
        tracing::info!(
            actor = %record.actor,
            action = %record.action,
            outcome = ?record.outcome,
            detail = %record.detail,
            "audit"
        );
        self.with_store(move |node, store| {
            audit::append(store, &node.key, node.clock.as_ref(), record)
        })
        .await?
        .map(|_| ())
        .map_err(|e| NodeError::Internal(format!("audit log: {e}")))
    }

    /// Identifies the caller of `req` and checks it may call `action`. A refusal is audited.
    pub(crate) async fn admit<T>(
        self: &Arc<Self>,
        req: &Request<T>,
        action: &str,
        admit: Admit,
    ) -> Result<Caller, Status> {
        let caller = match req.peer_certs().as_deref().and_then(|c| c.first()) {
            Some(cert) => tls::identify(&self.config, cert),
            None => Caller::Unknown {
                fingerprint: "none".into(),
            },
        };
        let refusal = match (&caller, admit) {
            (Caller::Unknown { .. }, _) => Some(NodeError::Unknown(
                "this node does not know your certificate's identity".into(),
            )),
            (Caller::Person { roles, .. }, Admit::People(allowed)) => {
                (!roles.iter().any(|r| allowed.contains(r))).then(|| {
                    let need: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
                    let have: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                    NodeError::Forbidden(format!(
                        "{action} needs the role {} (you hold {})",
                        need.join(" or "),
                        have.join(", ")
                    ))
                })
            }
            (Caller::Peer { .. }, Admit::People(_)) => Some(NodeError::Forbidden(format!(
                "{action} is for this node's people, not for peer nodes"
            ))),
            (Caller::Person { .. }, Admit::Peers) => Some(NodeError::Forbidden(format!(
                "{action} is for peer nodes only"
            ))),
            (Caller::Peer { .. }, Admit::Peers) => None,
        };
        match refusal {
            None => Ok(caller),
            Some(err) => {
                let entry = record(
                    caller.audit_name(),
                    action,
                    Vec::new(),
                    Outcome::Refused,
                    err.to_string(),
                );
                self.audit(entry).await?;
                Err(err.into())
            }
        }
    }

    /// Audits the outcome of an admitted request and passes it on.
    pub(crate) async fn finish<T>(
        self: &Arc<Self>,
        caller: &Caller,
        action: &str,
        subjects: Vec<String>,
        result: Result<(T, String), NodeError>,
    ) -> Result<T, Status> {
        self.finish_under(caller, action, None, subjects, result)
            .await
    }

    /// [`Node::finish`] for a request that concerns a grant, named in the audit entry.
    pub(crate) async fn finish_under<T>(
        self: &Arc<Self>,
        caller: &Caller,
        action: &str,
        grant: Option<String>,
        subjects: Vec<String>,
        result: Result<(T, String), NodeError>,
    ) -> Result<T, Status> {
        let (outcome, detail, out) = match result {
            Ok((value, detail)) => (Outcome::Accepted, detail, Ok(value)),
            Err(err) => (Outcome::Refused, err.to_string(), Err(err)),
        };
        let mut entry = record(caller.audit_name(), action, subjects, outcome, detail);
        entry.grant = grant;
        self.audit(entry).await?;
        out.map_err(Status::from)
    }
}

/// An audit record without grant, cost or output (requests that release nothing).
fn record(
    actor: String,
    action: &str,
    subjects: Vec<String>,
    outcome: Outcome,
    detail: String,
) -> Record {
    Record {
        actor,
        action: action.to_owned(),
        grant: None,
        subjects,
        privacy_cost: None,
        output_digest: None,
        outcome,
        detail,
    }
}

/// Everything the node needs from disk, loaded and checked before it listens.
fn prepare(
    config: NodeConfig,
    clock: Arc<dyn Clock>,
) -> Result<(Node, TlsAcceptor, (u64, u64)), ServiceError> {
    let file = config.file.clone();
    let io = |what: String| move |source| ServiceError::Io { what, source };
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(io(format!("reading {}", p.display())));
    let (ca_pem, cert_pem) = (read(&config.tls.ca_cert)?, read(&config.tls.cert)?);
    let ca = tls::parse_certs(&ca_pem, &config.tls.ca_cert.display().to_string())?;
    let chain = tls::parse_certs(&cert_pem, &config.tls.cert.display().to_string())?;
    let key_pem = config.tls.key.load(&file, "tls.key")?;
    let key = tls::parse_key(key_pem.expose(), "tls.key")?;
    let server = tls::server_config(&ca, chain, key)?;

    let seed = config.audit.signing_key.load(&file, "audit.signing_key")?;
    let seed = parse_audit_seed(seed.expose()).ok_or_else(|| ServiceError::AuditKey {
        file: file.display().to_string(),
    })?;
    let audit_key = NodeKey::from_seed(&seed);
    let secagg = match &config.secagg {
        Some(section) => {
            let key = section.identity_key.load(&file, "secagg.identity_key")?;
            let bytes = parse_audit_seed(key.expose()).ok_or_else(|| ServiceError::SecAggKey {
                file: file.display().to_string(),
            })?;
            Some(concord_mpc::secagg::IdentityKey::from_bytes(*bytes))
        }
        None => None,
    };

    let peer_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .identity(Identity::from_pem(cert_pem, key_pem.expose()));

    std::fs::create_dir_all(&config.node.data_dir).map_err(io(format!(
        "creating data directory {}",
        config.node.data_dir.display()
    )))?;
    let mut store = Store::open(&config.database_path())?;
    // No job survives a restart: return what jobs had reserved and not released.
    let returned = crate::ledger::recover(&mut store, clock.now_ms())?;
    if returned > 0 {
        tracing::warn!(
            returned,
            "returned budget reservations left open by the last run"
        );
    }
    let interrupted = crate::jobs::fail_interrupted(&mut store, &config.node.name, clock.now_ms())?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "marked jobs left running by the last run as failed"
        );
    }
    Ok((
        Node {
            rules: config.rules(),
            config,
            store: Mutex::new(store),
            key: audit_key,
            clock,
            started: Instant::now(),
            peer_tls,
            jobs: crate::jobs::Live::default(),
            secagg,
        },
        TlsAcceptor::from(Arc::new(server)),
        (returned, interrupted),
    ))
}

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
    let (node, acceptor, (returned, interrupted)) = prepare(config, clock)?;
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
