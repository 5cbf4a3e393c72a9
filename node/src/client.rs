//! How a person reaches their node: mutual TLS with the certificate and key their profile names,
//! checking that the node presents the identity the profile expects.

use std::time::Duration;

use concord_proto::v1 as pb;
use concord_proto::v1::governance_client::GovernanceClient;
use concord_proto::v1::jobs_client::JobsClient;
use concord_proto::v1::operator_client::OperatorClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::catalog::ColumnSpec;
use crate::config::{ConfigError, Profile};

/// A declared column as the wire carries it.
pub fn column_to_pb(c: &ColumnSpec) -> pb::Column {
    crate::convert::column_to_pb(c)
}

/// An audit entry as the wire carries it (for logs read offline, printed like online ones).
pub fn audit_entry(e: &crate::audit::Entry) -> pb::AuditEntry {
    crate::convert::entry_to_pb(e)
}

/// The name of a wire tier (`?` for a value this build does not know).
pub fn tier_name(tier: i32) -> &'static str {
    pb::Tier::try_from(tier)
        .ok()
        .and_then(crate::convert::tier_from_pb)
        .map_or("?", |t| t.as_str())
}

/// The wire value of a tier.
pub fn tier_to_wire(tier: crate::catalog::Tier) -> i32 {
    crate::convert::tier_to_pb(tier).into()
}

/// The name of a wire column type (`?` for a value this build does not know).
pub fn type_name(ty: i32) -> &'static str {
    pb::ColumnType::try_from(ty)
        .ok()
        .and_then(crate::convert::type_from_pb)
        .map_or("?", |t| t.name())
}

/// Why a call to a node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The profile or a file it names is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node could not be reached, or the TLS handshake failed.
    #[error("cannot reach the node at {address}: {reason}")]
    Connect {
        /// The address tried.
        address: String,
        /// Why, with the underlying causes.
        reason: String,
    },
    /// The node answered with an error.
    #[error("the node refused: {message} ({code})")]
    Refused {
        /// gRPC status code name.
        code: String,
        /// The node's reason.
        message: String,
    },
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        // A failed TLS handshake surfaces as an `Unavailable` status from the transport.
        ClientError::Refused {
            code: format!("{:?}", s.code()),
            message: s.message().to_owned(),
        }
    }
}

/// An error and its causes on one line (transport errors hide the useful part in `source`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Why a channel could not be opened: the cause, for the caller to prefix with whom it was
/// calling.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The address is not `host:port`.
    #[error("bad address {address:?}: {reason}")]
    Address {
        /// The address given.
        address: String,
        /// Why it is not one.
        reason: String,
    },
    /// TLS or the connection failed (the whole error chain, e.g. a refused certificate).
    #[error("{0}")]
    Transport(String),
}

/// A mutual-TLS channel to `address` (`host:port`), used by people's CLIs and by nodes calling
/// their peers.
pub(crate) async fn tls_channel(
    address: &str,
    tls: ClientTlsConfig,
    request_timeout: Duration,
) -> Result<Channel, ConnectError> {
    let transport = |e: tonic::transport::Error| ConnectError::Transport(error_chain(&e));
    Channel::from_shared(format!("https://{address}"))
        .map_err(|e| ConnectError::Address {
            address: address.to_owned(),
            reason: e.to_string(),
        })?
        .tls_config(tls)
        .map_err(transport)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(request_timeout)
        .connect()
        .await
        .map_err(transport)
}

/// Largest message the CLI accepts from the jobs service: a chunk of an intersection's keys is
/// at most 16,384 rows or about 1 MiB of values, unless single keys are that large.
const RESULT_LIMIT: usize = 256 << 20;

/// The chunks of an intersection's keys as they arrive (`Jobs.ResultKeys`).
pub type KeyChunks = tonic::Streaming<pb::KeyRows>;

/// A connection to the node a profile names.
#[derive(Debug, Clone)]
pub struct NodeClient {
    inner: OperatorClient<Channel>,
    governance: GovernanceClient<Channel>,
    jobs: JobsClient<Channel>,
}

impl NodeClient {
    /// Connects over mutual TLS.
    pub async fn connect(profile: &Profile) -> Result<Self, ClientError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| ConfigError::Read {
                file: path.to_owned(),
                source,
            })
        };
        let key = profile.key.load(&profile.file, "key")?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&profile.ca_cert)?))
            .identity(Identity::from_pem(read(&profile.cert)?, key.expose()))
            .domain_name(profile.node_identity.clone());
        let channel = tls_channel(&profile.node_address, tls, Duration::from_secs(600))
            .await
            .map_err(|reason| ClientError::Connect {
                address: profile.node_address.clone(),
                reason: reason.to_string(),
            })?;
        Ok(Self {
            inner: OperatorClient::new(channel.clone()),
            governance: GovernanceClient::new(channel.clone()),
            // A chunk of an intersection's keys may pass tonic's 4 MiB default when its keys are
            // long (up to 16 columns of 64 KiB each).
            jobs: JobsClient::new(channel).max_decoding_message_size(RESULT_LIMIT),
        })
    }

    /// The `Governance` service on the same connection (grants, budgets, classification);
    /// its errors convert into [`ClientError`] with `?`.
    pub fn governance(&mut self) -> &mut GovernanceClient<Channel> {
        &mut self.governance
    }

    /// `Operator.Health`.
    pub async fn health(&mut self) -> Result<pb::HealthResponse, ClientError> {
        Ok(self.inner.health(pb::HealthRequest {}).await?.into_inner())
    }

    /// `Operator.AddDataset`.
    pub async fn add_dataset(
        &mut self,
        request: pb::AddDatasetRequest,
    ) -> Result<pb::Dataset, ClientError> {
        Ok(self.inner.add_dataset(request).await?.into_inner())
    }

    /// `Operator.ListDatasets`: this node's directory, or a peer's.
    pub async fn list_datasets(
        &mut self,
        peer: Option<&str>,
    ) -> Result<pb::Directory, ClientError> {
        let request = pb::ListDatasetsRequest {
            peer: peer.unwrap_or_default().to_owned(),
        };
        Ok(self.inner.list_datasets(request).await?.into_inner())
    }

    /// `Operator.ShowAudit`, every page.
    pub async fn show_audit(&mut self) -> Result<Vec<pb::AuditEntry>, ClientError> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .inner
                .show_audit(pb::ShowAuditRequest {
                    after_seq: after,
                    limit: 0,
                })
                .await?
                .into_inner();
            let Some(last) = page.entries.last().map(|e| e.seq) else {
                return Ok(all);
            };
            all.extend(page.entries);
            if last >= page.last_seq {
                return Ok(all);
            }
            after = last;
        }
    }

    /// `Operator.VerifyAudit`.
    pub async fn verify_audit(&mut self) -> Result<pb::VerifyAuditResponse, ClientError> {
        Ok(self
            .inner
            .verify_audit(pb::VerifyAuditRequest {})
            .await?
            .into_inner())
    }

    /// `Jobs.Submit`.
    pub async fn submit_job(&mut self, spec: pb::JobSpec) -> Result<pb::Job, ClientError> {
        Ok(self.jobs.submit(spec).await?.into_inner())
    }

    /// `Jobs.Watch`: the job's progress events until it ends.
    pub async fn watch_job(
        &mut self,
        id: &str,
    ) -> Result<tonic::Streaming<pb::JobEvent>, ClientError> {
        Ok(self
            .jobs
            .watch(pb::JobRef { id: id.to_owned() })
            .await?
            .into_inner())
    }

    /// `Jobs.Get`.
    pub async fn get_job(&mut self, id: &str) -> Result<pb::Job, ClientError> {
        Ok(self
            .jobs
            .get(pb::JobRef { id: id.to_owned() })
            .await?
            .into_inner())
    }

    /// `Jobs.List`.
    pub async fn list_jobs(&mut self, limit: u32) -> Result<Vec<pb::Job>, ClientError> {
        Ok(self
            .jobs
            .list(pb::ListJobsRequest { limit })
            .await?
            .into_inner()
            .jobs)
    }

    /// `Jobs.Cancel`.
    pub async fn cancel_job(&mut self, id: &str) -> Result<pb::Job, ClientError> {
        Ok(self
            .jobs
            .cancel(pb::JobRef { id: id.to_owned() })
            .await?
            .into_inner())
    }

    /// `Jobs.Result`: only the job's recipient gets it.
    pub async fn job_result(&mut self, id: &str) -> Result<pb::JobResult, ClientError> {
        Ok(self
            .jobs
            .result(pb::JobRef { id: id.to_owned() })
            .await?
            .into_inner())
    }

    /// `Jobs.ResultKeys`: a released intersection's matching keys, chunk by chunk.
    pub async fn job_result_keys(&mut self, id: &str) -> Result<KeyChunks, ClientError> {
        Ok(self
            .jobs
            .result_keys(pb::JobRef { id: id.to_owned() })
            .await?
            .into_inner())
    }
}
