//! The `Federation` service: what a node answers to its peers.

use std::sync::Arc;

use concord_proto::v1 as pb;
use concord_proto::v1::federation_server::Federation;
use tonic::{Request, Response, Status, Streaming};

use super::admit::Admit;
use crate::audit::Outcome;
use crate::error::NodeError;
use crate::jobs::participant::{self, EnvelopeStream};
use crate::node::{Node, record};
use crate::tls::Caller;

pub(crate) struct FederationService(pub(crate) Arc<Node>);

#[tonic::async_trait]
impl Federation for FederationService {
    async fn directory(
        &self,
        req: Request<pb::DirectoryRequest>,
    ) -> Result<Response<pb::Directory>, Status> {
        let node = &self.0;
        let action = "federation.directory";
        let caller = node.admit(&req, action, Admit::Peers).await?;
        let result = node.directory(true).await;
        node.finish(&caller, action, Vec::new(), result)
            .await
            .map(Response::new)
    }

    type ExchangeStream = EnvelopeStream;

    /// A job's protocol messages: the first envelope is checked (version, sequence, names, size)
    /// and must name a job this node accepted from the caller; the job then runs here as a
    /// participant (see `crate::jobs::participant`).
    async fn exchange(
        &self,
        req: Request<Streaming<pb::Envelope>>,
    ) -> Result<Response<Self::ExchangeStream>, Status> {
        let node = &self.0;
        let action = "federation.exchange";
        let caller = node.admit(&req, action, Admit::Peers).await?;
        let peer = peer_name(&caller);
        let mut stream = req.into_inner();
        let result = match stream.message().await {
            Err(status) => Err(NodeError::Invalid(format!(
                "stream failed before its first envelope: {}",
                status.message()
            ))),
            Ok(None) => Err(NodeError::Invalid("empty stream".into())),
            Ok(Some(first)) => participant::exchange(node, &peer, first, stream).await,
        };
        node.finish::<EnvelopeStream>(&caller, action, Vec::new(), result)
            .await
            .map(Response::new)
    }

    /// A coordinator proposes a job; this node decides with its own gate.
    async fn propose(
        &self,
        req: Request<pb::JobProposal>,
    ) -> Result<Response<pb::ProposalDecision>, Status> {
        let node = &self.0;
        let action = "federation.propose";
        let caller = node.admit(&req, action, Admit::Peers).await?;
        let peer = peer_name(&caller);
        let proposal = req.into_inner();
        let subjects = vec![proposal.job_id.clone(), proposal.dataset.clone()];
        let result = participant::propose(node, &peer, proposal).await;
        match result {
            Ok((decision, detail)) if !decision.accepted => {
                // A refusal is an answer; audit it as refused and send it back (a refusal that
                // cannot be audited fails the call, like any other).
                let entry = record(
                    caller.audit_name(),
                    action,
                    subjects,
                    Outcome::Refused,
                    detail,
                );
                node.audit(entry).await?;
                Ok(Response::new(decision))
            }
            other => node
                .finish(&caller, action, subjects, other)
                .await
                .map(Response::new),
        }
    }
}

fn peer_name(caller: &Caller) -> String {
    match caller {
        Caller::Peer { name, .. } => name.clone(),
        other => other.audit_name(),
    }
}
