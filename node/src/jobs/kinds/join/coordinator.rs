//! The value holder's side of a join (the coordinator): read its values, propose to the key
//! holder, run its rounds, recheck, release the noised figures with their intervals.

use std::sync::Arc;

use concord_mpc::psi::join::{JoinError, JoinOutput, ValueHolderAwaitQuery};
use concord_proto::v1 as pb;
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::catalog::Dataset;
use crate::jobs::error::JobError;
use crate::jobs::exchange::Link;
use crate::jobs::failure::Failure;
use crate::jobs::input;
use crate::jobs::kinds::join::{params, recv, role_error, send, terms};
use crate::jobs::lifecycle::{PeerLink, commit_release, recheck, step};
use crate::jobs::live::Handle;
use crate::jobs::party_input::{describe, party_input, with_clamped};
use crate::jobs::session::{Terms, peer_use, propose, release_handshake, run_role};
use crate::jobs::table::{JobRow, State};
use crate::node::Node;

/// The value holder's rounds after its start (`concord_mpc::psi::join::local`, over the
/// exchange): sends its offer, evaluates the key holder's batches, decrypts the result.
fn value_holder(
    waiting: ValueHolderAwaitQuery,
    offer: concord_mpc::Frame,
    link: &mut Link<'_>,
) -> Result<JoinOutput, JoinError> {
    send(link, offer)?;
    let mut evaluating = waiting.handle(recv(link)?)?;
    let mut frames = 0u64;
    while !evaluating.is_complete() {
        evaluating.handle(recv(link)?)?;
        frames += 1;
        (link.progress)(frames, 0);
    }
    let (out, waiting) = evaluating.finish()?;
    for frame in out {
        send(link, frame)?;
    }
    waiting.handle(recv(link)?)
}

/// The coordinator's side: read its values, propose to the key holder, run the value holder,
/// recheck with both, release the noised figures with their intervals.
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
    let (terms, plan, params) =
        params(row, spec, node.config.limits.max_keys).map_err(|e| Failure::at(&me, e))?;
    let nulls = if terms.exclude_nulls {
        input::Nulls::Exclude
    } else {
        input::Nulls::Include
    };

    // Own values first, clamped and encrypted (the value holder's heavy part): a broken file
    // fails here, before the peer is asked for anything, and the peer never waits on it.
    handle.report(State::Submitted, "reading and encrypting", 0, 0, "");
    let t = terms.clone();
    let columns = row.spec.columns.clone();
    let started = tokio::task::spawn_blocking(move || {
        let columns_used = (
            t.value_column.as_str(),
            t.group_by.as_str(),
            &t.categories[..],
        );
        let values = input::value_set(&d, &columns, spec, columns_used, nulls)?;
        let mut rng = crate::random::rng();
        let (waiting, offer) = ValueHolderAwaitQuery::start(params, values.set, &mut rng)
            .map_err(|e| JobError::Protocol(format!("join: {e}")))?;
        Ok::<_, JobError>((waiting, offer, values.read, values.null_values))
    })
    .await
    .map_err(|e| Failure::at(&me, format!("reading task failed: {e}")))?;
    let (waiting, offer, own_read, null_values) = started.map_err(|e| Failure::at(&me, e))?;

    handle.report(State::Submitted, "proposing", 0, 0, "");
    let proposal = Terms {
        join: Some(self::terms(&terms)),
        aggregate: None,
        key_types: types.iter().map(|t| t.name().to_owned()).collect(),
        buckets: 0,
    };
    let (mut client, _) = propose(node, row, &peer, proposal, &mut link.proposed).await?;
    step(node, row, Some(handle), State::Authorized, "authorized").await;

    let (output, mut ex) = run_role(node, row, handle, &mut client, link, move |link| {
        value_holder(waiting, offer, link).map_err(role_error)
    })
    .await?;

    step(node, row, Some(handle), State::Running, "rechecking").await;
    recheck(node, row, vec![output.peer_items]).await?;
    let peer_input = release_handshake(node, handle, &mut ex, &peer.node).await?;

    step(node, row, Some(handle), State::Running, "releasing").await;
    let (count_hw, sum_hw) = plan.half_widths().map_err(|e| Failure::at(&me, e))?;
    let clamped = output.input.clamped_low + output.input.clamped_high;
    let own_input = pb::PartyInput {
        null_values,
        ..party_input(&me, &row.spec.dataset, &own_read, Some(&output.input.keys))
    };
    let own_input = with_clamped(
        own_input,
        (clamped, output.input.keys.distinct_keys),
        format!("[{}, {}] per person", terms.lo, terms.hi),
        plan.clamp,
    )
    .map_err(|e| Failure::at(&me, e))?;
    let result = pb::JobResult {
        job_id: row.id.clone(),
        kind: row.kind.to_pb().into(),
        parties: row.parties.clone(),
        recipient: row.recipient.clone(),
        mechanism: "discrete-laplace".into(),
        epsilon: row.spec.epsilon_text(),
        delta: "0".into(),
        values: figures(&output, &terms.categories, count_hw, sum_hw),
        accuracy: "95% interval (0.45ε for the counts, 0.45ε for the sums, 0.1ε for the clamped \
                   figure; a mean is their ratio, without an interval)"
            .into(),
        key_count: 0,
        released_ms: node.clock.now_ms(),
        contributors: Vec::new(),
        inputs: vec![own_input.clone(), peer_input],
        key_header: Vec::new(),
        privacy_unit: "person (a distinct key, all its rows added)".into(),
        noise: plan.statements(terms.lo, terms.hi, &row.spec.epsilon_text()),
        nulls: if terms.exclude_nulls {
            "exclude: rows with an empty value are left out; a person with only such rows is \
             not counted"
        } else {
            "include: a matched person whose value cells are all empty is counted and adds 0 \
             to the sum"
        }
        .into(),
    };
    let digest: [u8; 32] = Sha256::digest(result.encode_to_vec()).into();
    let detail = format!(
        "released join of {}.{} over {}'s keys to {}: {} ({clamped} exactly clamped); {} peer \
         keys",
        row.spec.dataset,
        terms.value_column,
        peer.node,
        row.recipient,
        describe(&own_input),
        output.peer_items
    );
    commit_release(node, row, Some(result), digest, detail).await
}

/// Each category's noised count and sum, with their 95% intervals, and their ratio (the mean)
/// when the noised count is positive.
fn figures(
    output: &JoinOutput,
    categories: &[String],
    count_hw: f64,
    sum_hw: f64,
) -> Vec<pb::ResultValue> {
    let value = |label: String, v: i64, hw: f64| pb::ResultValue {
        label,
        value: v as f64,
        lower: Some(v as f64 - hw),
        upper: Some(v as f64 + hw),
    };
    output
        .categories
        .iter()
        .enumerate()
        .flat_map(|(c, r)| {
            let label = |what: &str| match categories.get(c) {
                Some(name) => format!("{what} ({name})"),
                None => what.to_owned(),
            };
            // The mean is post-processing of the two noised figures; its error has no simple
            // 95% bound (a ratio), so it carries none.
            let mean = r.mean().map(|m| pb::ResultValue {
                label: label("mean"),
                value: m,
                lower: None,
                upper: None,
            });
            [
                Some(value(label("count"), r.count, count_hw)),
                Some(value(label("sum"), r.sum, sum_hw)),
                mean,
            ]
            .into_iter()
            .flatten()
        })
        .collect()
}
