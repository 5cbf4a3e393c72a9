//! The running node's shared state: its configuration, database, audit key, clock and live
//! jobs, and the operations every part of the node uses on them (the database on a blocking
//! thread, the audit log). `service` serves it over gRPC; `jobs` runs joint jobs on it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_rustls::TlsAcceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::audit::{self, NodeKey, Outcome, Record};
use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::error::{NodeError, ServiceError};
use crate::federation::parse_audit_seed;
use crate::store::Store;
use crate::tls;

/// Largest gRPC message between nodes: a full envelope ([`concord_proto::envelope`]) and its
/// framing. tonic's default (4 MiB) is below the envelope limit.
pub(crate) const MAX_MESSAGE_BYTES: usize = concord_proto::envelope::MAX_PAYLOAD_BYTES + (64 << 10);

/// The running node's shared state.
pub(crate) struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) rules: crate::policy::Rules,
    pub(crate) store: Mutex<Store>,
    pub(crate) key: NodeKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) started: Instant,
    pub(crate) peer_tls: ClientTlsConfig,
    /// The live side (progress, cancellation) of the jobs this node coordinates.
    pub(crate) jobs: crate::jobs::Live,
    /// This node's secure-aggregation identity key, when its configuration has one.
    pub(crate) secagg: Option<concord_mpc::secagg::IdentityKey>,
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
                        crate::convert::dataset_to_pb(name, &view, withheld)
                    } else {
                        let mut own = crate::convert::dataset_to_pb(name, d, 0);
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

    /// A channel to peer `name`, over mutual TLS with this node's certificate, checking that the
    /// peer presents the identity the config expects.
    pub(crate) async fn peer_channel(&self, name: &str) -> Result<Channel, NodeError> {
        let peer = self
            .config
            .peer(name)
            .ok_or_else(|| NodeError::NotFound(format!("{name:?} is not a peer of this node")))?;
        let tls = self.peer_tls.clone().domain_name(peer.identity.clone());
        crate::client::tls_channel(&peer.address, tls, Duration::from_secs(30))
            .await
            .map_err(|reason| NodeError::Peer {
                peer: name.to_owned(),
                reason: format!("cannot connect to {}: {reason}", peer.address),
            })
    }

    /// Appends to the audit log where there is nothing left to fail (a job that has already
    /// ended): tries three times, a moment apart, and reports the last error.
    pub(crate) async fn audit_retrying(self: &Arc<Self>, record: Record) -> Result<(), NodeError> {
        let mut last = None;
        for wait_ms in [0u64, 100, 1000] {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            match self.audit(record.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| NodeError::Internal("audit log: no attempt made".into())))
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
}

/// An audit record without grant, cost or output (requests that release nothing).
pub(crate) fn record(
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
pub(crate) fn open(
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
    // Nor do their spill files (a PSI in hash buckets keeps its keys there while it runs).
    let spill = config.node.data_dir.join(crate::jobs::SPILL_DIR);
    if spill.exists() {
        match std::fs::remove_dir_all(&spill) {
            Ok(()) => tracing::warn!(path = %spill.display(), "removed the last run's spill files"),
            Err(e) => {
                tracing::warn!(path = %spill.display(), error = %e, "could not remove the last run's spill files")
            }
        }
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
