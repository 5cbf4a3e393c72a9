//! The `Jobs` service: operators submit joint jobs to their own node and follow them; the
//! recipient collects the result. Every call is authorized by role and audited.

use std::pin::Pin;
use std::sync::Arc;

use concord_proto::v1 as pb;
use concord_proto::v1::jobs_server::Jobs;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::admit::Admit;
use crate::config::Role;
use crate::error::NodeError;
use crate::jobs::coordinator::{self, JOB_READERS};
use crate::jobs::live::CancelOutcome;
use crate::jobs::table;
use crate::node::Node;

pub(crate) struct JobsService(pub(crate) Arc<Node>);

const OPERATORS: &[Role] = &[Role::Operator];
const LISTERS: &[Role] = &[Role::Operator, Role::DataManager, Role::Auditor];

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;
type KeysStream = Pin<Box<dyn Stream<Item = Result<pb::KeyRows, Status>> + Send>>;

impl Node {
    async fn job(self: &Arc<Self>, id: &str) -> Result<table::JobRow, NodeError> {
        let lookup = id.to_owned();
        self.with_store(move |_, store| table::get(store, &lookup))
            .await?
            .map_err(|e| NodeError::Internal(e.to_string()))?
            .ok_or_else(|| NodeError::NotFound(format!("no job {id:?} at this node")))
    }
}

fn final_event(row: &table::JobRow) -> pb::JobEvent {
    let message = if row.reason.is_empty() {
        row.state.as_str().to_owned()
    } else {
        format!(
            "{} at {}: {}",
            row.state.as_str(),
            row.failed_at,
            row.reason
        )
    };
    pb::JobEvent {
        job_id: row.id.clone(),
        state: row.state.as_str().into(),
        phase: row.phase.clone(),
        done: 0,
        total: 0,
        message,
    }
}

#[tonic::async_trait]
impl Jobs for JobsService {
    async fn submit(&self, req: Request<pb::JobSpec>) -> Result<Response<pb::Job>, Status> {
        let node = &self.0;
        let action = "job.submit";
        let caller = node.admit(&req, action, Admit::People(OPERATORS)).await?;
        let result = coordinator::submit(node, &caller, req.into_inner()).await;
        let subjects = result
            .as_ref()
            .map(|(job, _)| vec![job.id.clone()])
            .unwrap_or_default();
        node.finish(&caller, action, subjects, result)
            .await
            .map(Response::new)
    }

    type WatchStream = EventStream;

    async fn watch(&self, req: Request<pb::JobRef>) -> Result<Response<EventStream>, Status> {
        let node = &self.0;
        let action = "job.watch";
        let caller = node.admit(&req, action, Admit::People(OPERATORS)).await?;
        let id = req.into_inner().id;
        let result = async {
            let row = node.job(&id).await?;
            let stream: EventStream = match node.jobs.subscribe(&id) {
                Some(rx) => {
                    let events = tokio_stream::wrappers::WatchStream::new(rx);
                    let mut ended = false;
                    Box::pin(tokio_stream::StreamExt::map_while(events, move |e| {
                        if ended {
                            return None;
                        }
                        ended = matches!(e.state.as_str(), "released" | "failed" | "cancelled");
                        Some(Ok(e))
                    }))
                }
                None => Box::pin(tokio_stream::once(Ok(final_event(&row)))),
            };
            Ok((stream, format!("watching {id}")))
        }
        .await;
        node.finish(&caller, action, Vec::new(), result)
            .await
            .map(Response::new)
    }

    async fn get(&self, req: Request<pb::JobRef>) -> Result<Response<pb::Job>, Status> {
        let node = &self.0;
        let action = "job.get";
        let caller = node.admit(&req, action, Admit::People(JOB_READERS)).await?;
        let id = req.into_inner().id;
        let result = node.job(&id).await.and_then(|row| {
            let researcher_only = caller.roles() == [Role::Researcher];
            if researcher_only && row.recipient != caller.audit_name() {
                return Err(NodeError::Forbidden(format!(
                    "job {id} is not addressed to you"
                )));
            }
            Ok((row.to_pb(), format!("read {id}")))
        });
        node.finish(&caller, action, Vec::new(), result)
            .await
            .map(Response::new)
    }

    async fn list(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let node = &self.0;
        let action = "job.list";
        let caller = node.admit(&req, action, Admit::People(LISTERS)).await?;
        let limit = match req.into_inner().limit {
            0 => 100,
            n => n.min(1000),
        };
        let result = node
            .with_store(move |_, store| table::list(store, limit))
            .await
            .and_then(|r| r.map_err(|e| NodeError::Internal(e.to_string())))
            .map(|rows| {
                let detail = format!("{} jobs listed", rows.len());
                let jobs = rows.iter().map(table::JobRow::to_pb).collect();
                (pb::ListJobsResponse { jobs }, detail)
            });
        node.finish(&caller, action, Vec::new(), result)
            .await
            .map(Response::new)
    }

    async fn cancel(&self, req: Request<pb::JobRef>) -> Result<Response<pb::Job>, Status> {
        let node = &self.0;
        let action = "job.cancel";
        let caller = node.admit(&req, action, Admit::People(OPERATORS)).await?;
        let id = req.into_inner().id;
        let subjects = vec![id.clone()];
        let result = async {
            let row = node.job(&id).await?;
            if row.state.is_final() {
                return Err(NodeError::Invalid(format!(
                    "job {id} has already ended ({})",
                    row.state.as_str()
                )));
            }
            match node.jobs.cancel(&id, &caller.audit_name()) {
                CancelOutcome::Requested => {}
                CancelOutcome::NotHere => {
                    return Err(NodeError::Invalid(format!(
                        "job {id} is not coordinated by this node; cancel it at {}",
                        row.coordinator
                    )));
                }
                CancelOutcome::TooLate => {
                    return Err(NodeError::Invalid(format!(
                        "job {id} is releasing (its parties are committing their budget): too \
                         late to cancel"
                    )));
                }
            }
            // Wait briefly for the job to wind down, so the answer shows its final state.
            for _ in 0..50 {
                let now = node.job(&id).await?;
                if now.state.is_final() {
                    return Ok((now.to_pb(), format!("cancelled {id}")));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let now = node.job(&id).await?;
            Ok((now.to_pb(), format!("cancel of {id} requested")))
        }
        .await;
        node.finish(&caller, action, subjects, result)
            .await
            .map(Response::new)
    }

    async fn result(&self, req: Request<pb::JobRef>) -> Result<Response<pb::JobResult>, Status> {
        let node = &self.0;
        let action = "job.result";
        let caller = node.admit(&req, action, Admit::People(JOB_READERS)).await?;
        let id = req.into_inner().id;
        let subjects = vec![id.clone()];
        let result = coordinator::result(node, &caller, id).await;
        node.finish(&caller, action, subjects, result)
            .await
            .map(Response::new)
    }

    type ResultKeysStream = KeysStream;

    async fn result_keys(&self, req: Request<pb::JobRef>) -> Result<Response<KeysStream>, Status> {
        let node = &self.0;
        let action = "job.result-keys";
        let caller = node.admit(&req, action, Admit::People(JOB_READERS)).await?;
        let id = req.into_inner().id;
        let subjects = vec![id.clone()];
        // The same check as the result's: its recipient, once released.
        let result = coordinator::result(node, &caller, id.clone())
            .await
            .map(|(r, _)| {
                let detail = format!(
                    "{} matching keys of {id} read by its recipient",
                    r.key_count
                );
                (stream_keys(node, id), detail)
            });
        node.finish(&caller, action, subjects, result)
            .await
            .map(Response::new)
    }
}

/// Chunk `seq` of a released job's keys, `None` past the last.
async fn key_chunk(node: &Arc<Node>, id: &str, seq: u64) -> Result<Option<pb::KeyRows>, Status> {
    let job = id.to_owned();
    let bytes = node
        .with_store(move |_, store| table::keys_chunk(store, &job, seq))
        .await?
        .map_err(|e| Status::from(NodeError::from(e)))?;
    // The detail goes to the log (through `NodeError::Internal`), never to the caller.
    bytes
        .map(|b| {
            prost::Message::decode(b.as_slice())
                .map_err(|e| Status::from(NodeError::Internal(format!("stored keys of {id}: {e}"))))
        })
        .transpose()
}

/// A released job's key chunks, read one at a time as the client takes them.
fn stream_keys(node: &Arc<Node>, id: String) -> KeysStream {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let node = Arc::clone(node);
    tokio::spawn(async move {
        for seq in 0u64.. {
            let sent = match key_chunk(&node, &id, seq).await {
                Ok(None) => return,
                Ok(Some(rows)) => tx.send(Ok(rows)).await.is_ok(),
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            if !sent {
                return;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
