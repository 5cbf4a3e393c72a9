//! The `Federation` service: what a node answers to its peers.

use std::pin::Pin;
use std::sync::Arc;

use concord_proto::v1 as pb;
use concord_proto::v1::federation_server::Federation;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::{Admit, Node, NodeError};

pub(crate) struct FederationService(pub(crate) Arc<Node>);

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<pb::Envelope, Status>> + Send>>;

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

    /// Joint jobs are not part of this version: a peer's first envelope is checked (version,
    /// sequence, names, size) and the job it names is refused as unknown, and audited. The
    /// job issue replaces the lookup with the job table.
    async fn exchange(
        &self,
        req: Request<Streaming<pb::Envelope>>,
    ) -> Result<Response<Self::ExchangeStream>, Status> {
        let node = &self.0;
        let action = "federation.exchange";
        let caller = node.admit(&req, action, Admit::Peers).await?;
        let mut stream = req.into_inner();
        let result = match stream.message().await {
            Err(status) => Err(NodeError::Invalid(format!(
                "stream failed before its first envelope: {}",
                status.message()
            ))),
            Ok(None) => Err(NodeError::Invalid("empty stream".into())),
            Ok(Some(first)) => {
                match concord_proto::envelope::check(
                    &first,
                    u32::from(concord_mpc::PROTOCOL_VERSION),
                    0,
                ) {
                    Err(e) => Err(NodeError::Invalid(e.to_string())),
                    Ok(()) => Err(NodeError::NotFound(format!(
                        "no job {:?} at this node",
                        first.job_id
                    ))),
                }
            }
        };
        node.finish::<Response<EnvelopeStream>>(&caller, action, Vec::new(), result)
            .await
    }
}
