//! The `Operator` service: what a node answers to its own people.

use std::path::PathBuf;
use std::sync::Arc;

use concord_mpc::psi::KeyType;
use concord_proto::v1 as pb;
use concord_proto::v1::federation_client::FederationClient;
use concord_proto::v1::operator_server::Operator;
use tonic::{Request, Response, Status};

use super::admit::Admit;
use crate::audit;
use crate::catalog::{self, DatasetSpec};
use crate::config::Role;
use crate::convert::{column_from_pb, dataset_to_pb, entry_to_pb};
use crate::csv_input::OnBadRow;
use crate::error::NodeError;
use crate::node::Node;
use crate::tls::Caller;

pub(crate) struct OperatorService(pub(crate) Arc<Node>);

const ANYONE: &[Role] = &[Role::Operator, Role::DataManager, Role::Auditor];
const MANAGERS: &[Role] = &[Role::DataManager];
const AUDITORS: &[Role] = &[Role::Auditor, Role::DataManager];

/// Most audit entries one `ShowAudit` call returns.
const AUDIT_PAGE: u32 = 1000;

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn health(
        &self,
        req: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        let node = &self.0;
        let action = "node.health";
        let caller = node.admit(&req, action, Admit::People(ANYONE)).await?;
        let response = pb::HealthResponse {
            node: node.config.node.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol_version: u32::from(concord_mpc::PROTOCOL_VERSION),
            caller: caller.audit_name(),
            roles: caller
                .roles()
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            uptime_seconds: node.started.elapsed().as_secs(),
            peers: node.config.peers.iter().map(|p| p.name.clone()).collect(),
        };
        node.finish(&caller, action, Vec::new(), Ok((response, "ok".into())))
            .await
            .map(Response::new)
    }

    async fn add_dataset(
        &self,
        req: Request<pb::AddDatasetRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let node = &self.0;
        let action = "dataset.add";
        let caller = node.admit(&req, action, Admit::People(MANAGERS)).await?;
        let r = req.into_inner();
        let subjects = vec![r.id.clone()];
        let result = add_dataset(node, &caller, r).await;
        node.finish(&caller, action, subjects, result)
            .await
            .map(Response::new)
    }

    async fn list_datasets(
        &self,
        req: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::Directory>, Status> {
        let node = &self.0;
        let action = "dataset.list";
        let caller = node.admit(&req, action, Admit::People(ANYONE)).await?;
        let peer = req.into_inner().peer;
        if peer.is_empty() {
            let result = node.directory(false).await;
            return node
                .finish(&caller, action, Vec::new(), result)
                .await
                .map(Response::new);
        }
        let subjects = vec![format!("peer:{peer}")];
        let result = async {
            let channel = node.peer_channel(&peer).await?;
            let directory = FederationClient::new(channel)
                .directory(pb::DirectoryRequest {})
                .await
                .map_err(|s| NodeError::Peer {
                    peer: peer.clone(),
                    reason: format!("{:?}: {}", s.code(), s.message()),
                })?
                .into_inner();
            let detail = format!(
                "{} datasets listed by peer {peer}",
                directory.datasets.len()
            );
            Ok((directory, detail))
        }
        .await;
        node.finish(&caller, action, subjects, result)
            .await
            .map(Response::new)
    }

    async fn show_audit(
        &self,
        req: Request<pb::ShowAuditRequest>,
    ) -> Result<Response<pb::ShowAuditResponse>, Status> {
        let node = &self.0;
        let action = "audit.show";
        let caller = node.admit(&req, action, Admit::People(AUDITORS)).await?;
        let r = req.into_inner();
        let limit = if r.limit == 0 {
            AUDIT_PAGE
        } else {
            r.limit.min(AUDIT_PAGE)
        } as usize;
        let after = r.after_seq;
        let result = node
            .with_store(move |_, store| {
                Ok::<_, audit::AuditError>((
                    audit::entries_after(store, after, limit)?,
                    audit::last_seq(store)?,
                ))
            })
            .await
            .and_then(|r| r.map_err(|e| NodeError::Internal(e.to_string())))
            .map(|(entries, last_seq)| {
                let detail = format!("{} entries after {after}", entries.len());
                (
                    pb::ShowAuditResponse {
                        entries: entries.iter().map(entry_to_pb).collect(),
                        last_seq,
                    },
                    detail,
                )
            });
        node.finish(&caller, action, Vec::new(), result)
            .await
            .map(Response::new)
    }

    async fn verify_audit(
        &self,
        req: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        let node = &self.0;
        let action = "audit.verify";
        let caller = node.admit(&req, action, Admit::People(AUDITORS)).await?;
        let result = node
            .with_store(|node, store| {
                let public = node.key.verifying_key();
                audit::verify(store, &public).map(|v| (v, public))
            })
            .await
            .and_then(|r| r.map_err(|e| NodeError::Internal(e.to_string())))
            .map(|(v, public)| {
                let detail = if v.is_intact() {
                    format!("intact: {} entries", v.entries)
                } else {
                    format!("{} problems in {} entries", v.problems.len(), v.entries)
                };
                (
                    pb::VerifyAuditResponse {
                        entries: v.entries,
                        head_seq: v.head_seq,
                        problems: v.problems.iter().map(ToString::to_string).collect(),
                        public_key: public.as_bytes().to_vec(),
                    },
                    detail,
                )
            });
        node.finish(&caller, action, Vec::new(), result)
            .await
            .map(Response::new)
    }
}

async fn add_dataset(
    node: &Arc<Node>,
    caller: &Caller,
    r: pb::AddDatasetRequest,
) -> Result<(pb::Dataset, String), NodeError> {
    let columns = r
        .columns
        .iter()
        .map(column_from_pb)
        .collect::<Result<Vec<_>, _>>()?;
    let key_types = if r.key_types.is_empty() {
        vec![KeyType::TEXT; r.key_columns.len()]
    } else {
        r.key_types
            .iter()
            .map(|t| KeyType::parse(t).map_err(NodeError::Invalid))
            .collect::<Result<Vec<_>, _>>()?
    };
    let on_bad_row = match r.on_bad_row.as_str() {
        "" => OnBadRow::Fail,
        other => OnBadRow::parse(other)
            .ok_or_else(|| NodeError::Invalid(format!("on_bad_row {other:?}: use fail or skip")))?,
    };
    let spec = DatasetSpec {
        id: r.id,
        path: PathBuf::from(r.path),
        key_columns: r.key_columns,
        key_types,
        on_bad_row,
        privacy_unit: catalog::PrivacyUnit::parse(&r.privacy_unit),
        population: if r.population.is_empty() {
            catalog::DEFAULT_POPULATION.into()
        } else {
            r.population
        },
        columns,
        description: r.description,
        domain: r.domain,
    };
    let by = caller.audit_name();
    let now = node.clock.now_ms();
    let report = catalog::reject_report_path(&node.config.node.data_dir, &spec.id);
    // Validating a large file takes a while: do it without holding the database. A dataset id
    // already taken is refused before its reject report could be overwritten.
    let taken = spec.id.clone();
    let exists = node
        .with_store(move |_, store| {
            catalog::list(store).map(|all| all.iter().any(|d| d.spec.id == taken))
        })
        .await??;
    if exists {
        return Err(catalog::CatalogError::Exists { id: spec.id }.into());
    }
    let written = report.clone();
    let dataset = tokio::task::spawn_blocking(move || catalog::inspect(spec, &by, now, &written))
        .await
        .map_err(|e| NodeError::Internal(format!("validation task failed: {e}")))?
        .map_err(|e| match e {
            catalog::CatalogError::Csv(e) if e.is_bad_row() && on_bad_row == OnBadRow::Fail => {
                NodeError::Invalid(format!(
                    "{e} (fix the export, or register with --on-bad-row skip to leave such rows \
                     out, each listed in a reject report)"
                ))
            }
            other => other.into(),
        })?;
    let dataset = node
        .with_store(move |_, store| catalog::register(store, &dataset).map(|()| dataset))
        .await??;
    let keys: Vec<String> = dataset
        .spec
        .key_columns
        .iter()
        .zip(&dataset.spec.key_types)
        .map(|(c, t)| format!("{c}:{t}"))
        .collect();
    let rejected = dataset.rejects.total();
    let detail = format!(
        "registered {} ({} rows, sha256 {}; keys {}; privacy unit {}; population {}; on bad row \
         {}: {rejected} rows left out{})",
        dataset.spec.path.display(),
        dataset.rows,
        crate::hex::encode(&dataset.digest),
        keys.join(","),
        dataset.spec.privacy_unit.name(),
        dataset.spec.population,
        dataset.spec.on_bad_row.name(),
        dataset
            .rejects
            .by_reason()
            .iter()
            .map(|(why, n)| format!(", {n} {why}"))
            .collect::<String>(),
    );
    let mut out = dataset_to_pb(&node.config.node.name, &dataset, 0);
    if rejected > 0 {
        out.reject_report = report.to_string_lossy().into_owned();
    }
    Ok((out, detail))
}
