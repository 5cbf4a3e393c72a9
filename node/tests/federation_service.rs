//! The node-to-node service in process: a real node (`service::run`) on 127.0.0.1 with mutual
//! TLS, called by a peer's certificate and by a person's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use concord_node::clock::SystemClock;
use concord_node::config::NodeConfig;
use concord_node::proto as pb;
use concord_node::proto::federation_client::FederationClient;
use concord_node::{audit, federation, service, store::Store};
use rand::SeedableRng as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

async fn channel(root: &Path, addr: std::net::SocketAddr, cert: &str, key: &str) -> Channel {
    let read = |p: &str| std::fs::read(root.join(p)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(read(cert), read(key)))
        .domain_name("node.health.concord");
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn envelope(version: u32, job: &str) -> pb::Envelope {
    pb::Envelope {
        version,
        job_id: job.into(),
        protocol: "psi-ecdh".into(),
        round: 1,
        seq: 0,
        frames: vec![vec![7u8; 32]],
        last: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_answered_people_are_not_and_unknown_jobs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fed");
    let names = ["health".to_owned(), "civil".to_owned()];
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    federation::init(
        &root,
        &names,
        "127.0.0.1".parse().unwrap(),
        1,
        1_790_000_000_000,
        &mut rng,
    )
    .unwrap();
    // Listen on a free port instead of the one init chose.
    let path = root.join("health/node.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("listen = \"127.0.0.1:1\"", "listen = \"127.0.0.1:0\"");
    let config = NodeConfig::parse(&path, &text).unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(service::run(
        config,
        Arc::new(SystemClock),
        async {
            let _ = stopped.await;
        },
        move |addr| {
            let _ = ready_tx.send(addr);
        },
    ));
    let addr = ready_rx.await.unwrap();

    let peer = channel(&root, addr, "civil/node.pem", "civil/node.key").await;
    let mut as_peer = FederationClient::new(peer);
    let directory = as_peer
        .directory(pb::DirectoryRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(directory.node, "health");
    assert!(directory.datasets.is_empty());

    let refused = |version, job: &str| {
        let mut client = as_peer.clone();
        let env = envelope(version, job);
        async move {
            client
                .exchange(tokio_stream::iter(vec![env]))
                .await
                .map(|_| ())
                .unwrap_err()
        }
    };
    let status = refused(99, "job-1").await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "envelope version 99, this node speaks 1");
    let status = refused(1, "job-1").await;
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        status.message(),
        "no job \"job-1\" awaiting an exchange from civil"
    );

    // A proposal of a kind or protocol this node does not know (a newer peer's) is refused,
    // naming what came and what is known; so is one that names no kind.
    let propose = |kind: i32, protocol: i32| {
        let mut client = as_peer.clone();
        let proposal = pb::JobProposal {
            job_id: "job-2".into(),
            kind,
            protocol,
            ..Default::default()
        };
        async move { client.propose(proposal).await.unwrap_err() }
    };
    let status = propose(99, 0).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("unknown job kind 99")
            && status.message().contains("psi-cardinality"),
        "{}",
        status.message()
    );
    let status = propose(0, 0).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("no job kind given"),
        "{}",
        status.message()
    );
    let status = propose(pb::JobKind::Aggregate.into(), 42).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("unknown PSI protocol 42"),
        "{}",
        status.message()
    );

    let person = channel(&root, addr, "health/operator.pem", "health/operator.key").await;
    let status = FederationClient::new(person)
        .directory(pb::DirectoryRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "federation.directory is for peer nodes only"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    let mut store = Store::open(&root.join("health/data/node.sqlite")).unwrap();
    let log: Vec<(String, String, String)> = audit::entries(&mut store)
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.record.actor,
                e.record.action,
                format!("{:?}", e.record.outcome),
            )
        })
        .collect();
    let expect = |actor: &str, action: &str, outcome: &str| {
        assert!(
            log.contains(&(actor.into(), action.into(), outcome.into())),
            "{actor} {action} {outcome} not in {log:#?}"
        );
    };
    expect("node.civil.concord", "federation.directory", "Accepted");
    expect("node.civil.concord", "federation.exchange", "Refused");
    expect("operator.health.concord", "federation.directory", "Refused");
    expect("node.civil.concord", "federation.propose", "Refused");
    expect("node", "node.stop", "Accepted");
    assert_eq!(
        log.iter().filter(|e| e.1 == "federation.exchange").count(),
        2
    );
}
