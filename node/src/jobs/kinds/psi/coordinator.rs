//! The coordinator's side of a PSI job: read its keys, propose the job to the participant, run
//! the receiver over `Federation.Exchange`, recheck with the participant, release.

use std::sync::Arc;

use concord_dp::release::{self, NoiseSpec};
use concord_mpc::psi::KeySpec;
use concord_proto::v1 as pb;
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::catalog::Dataset;
use crate::jobs::error::JobError;
use crate::jobs::failure::Failure;
use crate::jobs::input;
use crate::jobs::kinds::psi::bucketed::{self, Stop};
use crate::jobs::kinds::psi::{self, ProtoError};
use crate::jobs::kinds::query;
use crate::jobs::lifecycle::{PeerLink, commit_release, recheck, step};
use crate::jobs::live::Handle;
use crate::jobs::party_input::{describe, party_input};
use crate::jobs::session::{RoleError, Terms, peer_use, propose, release_handshake, run_role};
use crate::jobs::table::{JobRow, State};
use crate::node::Node;
use crate::policy::JobKind;

pub(in crate::jobs) async fn run(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    d: Dataset,
    link: &mut PeerLink,
) -> Result<(), Failure> {
    let me = node.config.node.name.clone();
    let peer = peer_use(row, &me)?;
    let types = input::key_types(&d, &row.spec.columns);
    let spec = input::key_spec(&types).map_err(|e| Failure::at(&me, e))?;

    // Own keys first when they fit one bucket: a broken file fails here, before the peer is
    // asked for anything. Keys that need buckets are spilled once the exchange is open.
    let need = psi::own_buckets(node, d.rows).map_err(|e| Failure::at(&me, e.to_string()))?;
    let dataset = Arc::new(d);
    let mut whole = None;
    if need <= 1 {
        handle.report(State::Submitted, "reading", 0, 0, "");
        let columns = row.spec.columns.clone();
        let read = Arc::clone(&dataset);
        whole = Some(
            tokio::task::spawn_blocking(move || input::key_set(&read, &columns, spec))
                .await
                .map_err(|e| Failure::at(&me, format!("reading task failed: {e}")))?
                .map_err(|e| Failure::at(&me, e))?,
        );
    }

    // Propose: the participant checks the key types, runs its own gate and reserves its budget,
    // and answers with the hash buckets both run in.
    handle.report(State::Submitted, "proposing", 0, 0, "");
    let terms = Terms {
        key_types: types.iter().map(|t| t.name().to_owned()).collect(),
        buckets: need,
        ..Terms::default()
    };
    let (mut client, decision) = propose(node, row, &peer, terms, &mut link.proposed).await?;
    let buckets = decision.buckets.max(1);
    if buckets < need || buckets > crate::spill::MAX_OPEN_BUCKETS {
        return Err(Failure::at(
            &peer.node,
            format!("answered {buckets} hash buckets, where {need} were proposed"),
        ));
    }
    step(node, row, Some(handle), State::Authorized, "authorized").await;

    // Exchange: the receiver runs on a blocking thread; the reader feeds it.
    let params =
        psi::params_of(row, spec, node.config.limits.max_keys).map_err(|e| Failure::at(&me, e))?;
    let protocol = row.spec.psi_protocol();
    let whole = whole.filter(|_| buckets == 1);
    // Keys in buckets are spilled before the exchange opens: the participant answers the
    // exchange only once its first frame arrives, which a long spill would hold back.
    let keys = match whole {
        Some((keys, read)) => Keys::Whole(keys, read),
        None => {
            handle.report(State::Authorized, "spilling keys to buckets", 0, 0, "");
            let (read, role_row) = (Arc::clone(&dataset), row.clone());
            let root = bucketed::spill_root(node);
            let (spilled, read) = tokio::task::spawn_blocking(move || {
                bucketed::spill(&root, &role_row, &read, spec, buckets)
            })
            .await
            .map_err(|e| Failure::at(&me, format!("spilling task failed: {e}")))?
            .map_err(|e| Failure::at(&me, e))?;
            Keys::Spilled(spilled, read)
        }
    };
    let ((output, own_read), mut ex) =
        run_role(node, row, handle, &mut client, link, move |link| {
            let proto = |e: ProtoError| RoleError {
                at_peer: super::error_is_peers(&e),
                peer_gone: e.peer_gone(),
                message: format!("PSI: {e}"),
            };
            let own = |e: JobError| RoleError {
                at_peer: false,
                peer_gone: false,
                message: e.to_string(),
            };
            match keys {
                Keys::Whole(keys, own_read) => Ok((
                    psi::receiver(protocol, params, keys, link).map_err(proto)?,
                    own_read,
                )),
                Keys::Spilled(mut spilled, own_read) => {
                    let output = bucketed::receiver(protocol, params, &mut spilled, link).map_err(
                        |stop| match stop {
                            Stop::Own(e) => own(e),
                            Stop::Protocol(e) => proto(e),
                        },
                    )?;
                    Ok((output, own_read))
                }
            }
        })
        .await?;
    let own_input = party_input(&me, &row.spec.dataset, &own_read, Some(&output.input));

    // Recheck: own gate first, then the participant's (which commits its budget if it agrees).
    step(node, row, Some(handle), State::Running, "rechecking").await;
    recheck(node, row, vec![output.peer_items]).await?;
    let peer_input = release_handshake(node, handle, &mut ex, &peer.node).await?;

    // Release: the DP-noised count, or the matching keys, for the recipient only.
    step(node, row, Some(handle), State::Running, "releasing").await;
    let epsilon = row.spec.epsilon;
    // What leaves the node: an intersection's key chunks, then the result.
    let mut digest = Sha256::new();
    let (values, key_count, mechanism, accuracy, noise) = match row.kind {
        JobKind::PsiCardinality => {
            let spec = concord_dp::Epsilon::new(epsilon)
                .map(NoiseSpec::Laplace)
                .map_err(|e| Failure::at(&me, e.to_string()))?;
            let exact = output.cardinality;
            let r = tokio::task::spawn_blocking(move || release::count_of(exact, spec))
                .await
                .map_err(|e| Failure::at(&me, e.to_string()))?
                .map_err(|e| Failure::at(&me, e.to_string()))?;
            let noise = pb::NoiseStatement {
                figures: "cardinality".into(),
                mechanism: query::mechanism_name(r.mechanism).into(),
                scale: r.scale,
                sensitivity: 1.0,
                bounds: String::new(),
                contribution: "a person is one distinct key, in the count once".into(),
                epsilon: row.spec.epsilon_text(),
            };
            (
                vec![query::scalar("cardinality", &r)],
                0,
                query::mechanism_name(r.mechanism),
                "95% interval",
                vec![noise],
            )
        }
        _ => {
            let matched = output.matched_rows.clone().unwrap_or_default();
            let stored = store_keys(node, row, handle, dataset, spec, matched, &mut digest).await?;
            let count = vec![pb::ResultValue {
                label: "matching keys".into(),
                value: output.cardinality as f64,
                lower: None,
                upper: None,
            }];
            (
                count,
                stored,
                "none",
                "exact (not a DP release)",
                Vec::new(),
            )
        }
    };
    let result = pb::JobResult {
        job_id: row.id.clone(),
        kind: row.kind.to_pb().into(),
        parties: row.parties.clone(),
        recipient: row.recipient.clone(),
        mechanism: mechanism.into(),
        epsilon: row.spec.epsilon_text(),
        delta: "0".into(),
        values,
        accuracy: accuracy.into(),
        released_ms: node.clock.now_ms(),
        contributors: Vec::new(),
        key_count,
        key_header: if row.kind == JobKind::PsiIntersection {
            key_header(&row.spec.columns)
        } else {
            Vec::new()
        },
        inputs: vec![own_input.clone(), peer_input],
        nulls: String::new(),
        privacy_unit: "person (a distinct key)".into(),
        noise,
    };
    digest.update(result.encode_to_vec());
    let digest: [u8; 32] = digest.finalize().into();
    let in_buckets = if buckets > 1 {
        format!(" (padded), in {buckets} hash buckets")
    } else {
        String::new()
    };
    let detail = format!(
        "released {} ({}) of {} with {} to {}: {}; {} peer keys{in_buckets}",
        row.kind.as_str(),
        row.spec.psi_protocol().as_str(),
        row.spec.dataset,
        peer.node,
        row.recipient,
        describe(&own_input),
        output.peer_items
    );
    commit_release(node, row, Some(result), digest, detail).await
}

/// The coordinator's keys: read whole (one bucket), or spilled to their buckets.
enum Keys {
    Whole(concord_mpc::psi::KeySet, input::Read),
    Spilled(bucketed::Spilled, input::Read),
}

/// The names of an intersection's key values: the normalized columns (what matched), then the
/// same columns as written in the file.
fn key_header(columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .cloned()
        .chain(columns.iter().map(|c| format!("{c} (as in file)")))
        .collect()
}

/// Most matching keys in one stored chunk, and about the most bytes of key values in one.
const KEY_CHUNK_ROWS: usize = 16_384;
const KEY_CHUNK_BYTES: usize = 1 << 20;

/// Reads the matching rows' key values from the file as it streams by, and stores them in
/// chunks for `Jobs.ResultKeys` before the release (a few chunks in memory at a time, however
/// large the intersection), reporting the keys stored so far. Adds each chunk to `digest`;
/// returns how many keys.
async fn store_keys(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Handle,
    d: Arc<Dataset>,
    spec: KeySpec,
    matched: Vec<u64>,
    digest: &mut Sha256,
) -> Result<u64, Failure> {
    let me = node.config.node.name.clone();
    let mine = |e: String| Failure::at(&me, e);
    let count = matched.len() as u64;
    let columns = row.spec.columns.clone();
    let (tx, mut rx) = mpsc::channel::<(usize, Vec<u8>)>(2);
    let reader = tokio::task::spawn_blocking(move || {
        let send = |chunk: &mut pb::KeyRows| {
            let chunk = std::mem::take(chunk);
            tx.blocking_send((chunk.rows.len(), chunk.encode_to_vec()))
                .map_err(|_| JobError::Protocol("the matching keys could not be stored".into()))
        };
        let (mut chunk, mut bytes) = (pb::KeyRows::default(), 0);
        input::rows_at(&d, &columns, spec, &matched, |values| {
            bytes += values.iter().map(String::len).sum::<usize>();
            chunk.rows.push(pb::KeyRow { values });
            if chunk.rows.len() == KEY_CHUNK_ROWS || bytes >= KEY_CHUNK_BYTES {
                bytes = 0;
                send(&mut chunk)?;
            }
            Ok(())
        })?;
        if chunk.rows.is_empty() {
            Ok(())
        } else {
            send(&mut chunk)
        }
    });
    let (mut seq, mut stored) = (0u64, 0u64);
    while let Some((rows, encoded)) = rx.recv().await {
        digest.update(&encoded);
        let id = row.id.clone();
        node.with_store(move |_, store| crate::jobs::table::put_keys(store, &id, seq, &encoded))
            .await
            .map_err(|e| mine(e.to_string()))?
            .map_err(|e| mine(format!("storing the matching keys: {e}")))?;
        seq += 1;
        stored += rows as u64;
        handle.report(State::Running, "releasing", stored, count, "");
    }
    reader
        .await
        .map_err(|e| mine(format!("reading the matching keys: {e}")))?
        .map_err(|e| mine(e.to_string()))?;
    Ok(count)
}
