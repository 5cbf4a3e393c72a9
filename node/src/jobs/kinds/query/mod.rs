//! Single-node DP statistics (`concord run query`) with the `concord-dp` release functions.
//!
//! Every release here is pure ε-DP (discrete Laplace, or the exponential mechanism for a
//! quantile) with one row per individual: the dataset's rows are taken to be distinct people.
//! Values are integers (decimal columns should be registered in a fixed unit such as cents);
//! nulls are left out. A sum or mean clamps each value to `[lo, hi]` and states how many it
//! clamped, noised with a tenth of ε (`party_input`); the statistic gets the rest.

use std::sync::Arc;

use prost::Message as _;
use sha2::{Digest as _, Sha256};

use concord_dp::release::{self, Accuracy, Contributions, Mechanism, NoiseSpec};
use concord_dp::{Epsilon, Release};
use concord_proto::v1 as pb;

use crate::catalog::Dataset;
use crate::error::NodeError;
use crate::jobs::error::JobError;
use crate::jobs::failure::Failure;
use crate::jobs::input::{self, Read};
use crate::jobs::kinds::terms::{Asked, Requested, own_use};
use crate::jobs::lifecycle::{begin_release, commit_release, recheck, step};
use crate::jobs::live::Handle;
use crate::jobs::party_input::{party_input, split_epsilon, with_clamped};
use crate::jobs::table::{JobRow, QueryParams, State};
use crate::node::Node;
use crate::policy::JobKind;

pub(in crate::jobs) fn mechanism_name(m: Mechanism) -> &'static str {
    match m {
        Mechanism::DiscreteLaplace => "discrete-laplace",
        Mechanism::DiscreteGaussian => "discrete-gaussian",
        Mechanism::ExponentialMechanism => "exponential-mechanism",
        _ => "thresholded-discrete-laplace",
    }
}

fn interval(a: Accuracy, value: f64) -> (Option<f64>, Option<f64>) {
    match a {
        Accuracy::Interval { lower, upper } => (Some(lower), Some(upper)),
        Accuracy::PerCell { half_width } => (Some(value - half_width), Some(value + half_width)),
        _ => (None, None),
    }
}

/// One released number with its interval.
pub(in crate::jobs) fn scalar(label: &str, r: &Release<i64>) -> pb::ResultValue {
    let value = r.value as f64;
    let (lower, upper) = interval(r.accuracy, value);
    pb::ResultValue {
        label: label.into(),
        value,
        lower,
        upper,
    }
}

/// An integer cell, or an error naming the file, line and column.
fn integer(d: &Dataset, column: &str, line: u64, v: &str) -> Result<i64, JobError> {
    v.parse::<i64>().map_err(|_| {
        JobError::value(
            &d.spec.path,
            line,
            column,
            format!(
                "{v:?}: a query needs integers (register amounts in a fixed unit such as cents)"
            ),
        )
    })
}

/// A row's person (see `input::for_each_unit`) and its value.
type PersonValue = (Vec<u8>, String);

/// Every non-null value of `column` with its person.
fn person_values(d: &Dataset, column: &str) -> Result<(Vec<PersonValue>, Read), JobError> {
    let mut rows = Vec::new();
    let read = input::for_each_unit(d, Some(column), |_, unit, v| {
        if !v.is_empty() {
            rows.push((unit.to_vec(), v.to_owned()));
        }
        Ok(())
    })?;
    Ok((rows, read))
}

/// Each person's total of `column` (rows added exactly, then saturated to 64 bits), and what
/// the read used: one value per person, which the release clamps to its bounds.
fn person_totals(d: &Dataset, column: &str) -> Result<(Vec<i64>, u64, Read), JobError> {
    let mut totals: std::collections::HashMap<Vec<u8>, i128> = std::collections::HashMap::new();
    let mut values = 0u64;
    let read = input::for_each_unit(d, Some(column), |line, unit, v| {
        if v.is_empty() {
            return Ok(());
        }
        let v = integer(d, column, line, v)?;
        values += 1;
        match totals.get_mut(unit) {
            Some(t) => *t += i128::from(v),
            None => {
                totals.insert(unit.to_vec(), i128::from(v));
            }
        }
        Ok(())
    })?;
    let totals = totals
        .into_values()
        .map(|t| t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
        .collect();
    Ok((totals, values, read))
}

/// What a query releases: values with their 95% intervals, the mechanism and how to read the
/// accuracy, what its input was (the node's name left for the caller to fill in), and how its
/// noise was set.
pub(in crate::jobs) struct Output {
    pub(in crate::jobs) values: Vec<pb::ResultValue>,
    pub(in crate::jobs) mechanism: &'static str,
    pub(in crate::jobs) accuracy: String,
    pub(in crate::jobs) input: pb::PartyInput,
    pub(in crate::jobs) noise: Vec<pb::NoiseStatement>,
}

/// The input figures of a query that clamped each person's total of `totals` to `[lo, hi]`,
/// with the clamped figure noised under `epsilon`.
fn clamping_input(
    d: &Dataset,
    read: &Read,
    (totals, values): (&[i64], u64),
    (lo, hi): (i64, i64),
    epsilon: f64,
) -> Result<pb::PartyInput, JobError> {
    let clamped = totals.iter().filter(|&&v| v < lo || v > hi).count() as u64;
    let input = pb::PartyInput {
        null_values: read.rows.saturating_sub(values),
        ..party_input("", &d.spec.id, read, None)
    };
    with_clamped(
        input,
        (clamped, totals.len() as u64),
        format!("[{lo}, {hi}] per person"),
        epsilon,
    )
}

/// How a release's noise was set, for its result.
fn statement<T>(
    figures: &str,
    r: &Release<T>,
    sensitivity: f64,
    bounds: String,
    contribution: String,
    epsilon: f64,
) -> pb::NoiseStatement {
    pb::NoiseStatement {
        figures: figures.into(),
        mechanism: mechanism_name(r.mechanism).into(),
        scale: r.scale,
        sensitivity,
        bounds,
        contribution,
        epsilon: epsilon.to_string(),
    }
}

/// The clamped figure's noise (see `party_input`).
fn clamp_statement(epsilon: f64) -> pb::NoiseStatement {
    pb::NoiseStatement {
        figures: "clamped".into(),
        mechanism: "discrete-laplace".into(),
        scale: 1.0 / epsilon,
        sensitivity: 1.0,
        bounds: String::new(),
        contribution: "one person changes it by at most 1".into(),
        epsilon: epsilon.to_string(),
    }
}

/// Computes and noises the statistic; the only place a query touches the data. Every release
/// is DP for adding or removing one person (the dataset's privacy unit) with all their rows:
/// a count keeps at most `max_rows` rows a person, a sum or mean clamps each person's total, a
/// histogram keeps at most `max_groups` bins a person, a quantile one value a person.
pub(in crate::jobs) fn run(
    d: &Dataset,
    column: Option<&str>,
    q: &QueryParams,
    epsilon: f64,
) -> Result<Output, JobError> {
    let spec =
        NoiseSpec::Laplace(Epsilon::new(epsilon).map_err(|e| JobError::terms(e.to_string()))?);
    // A sum or mean spends a tenth of ε on how many people it clamped.
    let (main, clamp) = split_epsilon(epsilon);
    let clamping =
        NoiseSpec::Laplace(Epsilon::new(main).map_err(|e| JobError::terms(e.to_string()))?);
    let plain = |read: &Read| party_input("", &d.spec.id, read, None);
    let dp = |e: concord_dp::DpError| JobError::terms(e.to_string());
    let need = || column.ok_or_else(|| JobError::terms(format!("{} needs --column", q.statistic)));
    let interval95 = "95% interval".to_owned();
    let mut rng = crate::random::rng();
    let bound = |m: u32| m.max(1);
    let magnitude = q.lo.unsigned_abs().max(q.hi.unsigned_abs()) as f64;
    match q.statistic.as_str() {
        "count" => {
            let mut rows = Vec::new();
            let read = input::for_each_unit(d, None, |_, unit, _| {
                rows.push((unit.to_vec(), ()));
                Ok(())
            })?;
            let k = bound(q.max_rows);
            let data = Contributions::bound_by_id(rows, k, &mut rng).map_err(dp)?;
            let r = release::count(&data, spec).map_err(dp)?;
            let contribution = if k == 1 {
                "one row per person: a count of people".to_owned()
            } else {
                format!("at most {k} rows per person")
            };
            Ok(Output {
                values: vec![scalar("count", &r)],
                mechanism: mechanism_name(r.mechanism),
                accuracy: interval95,
                input: plain(&read),
                noise: vec![statement(
                    "count",
                    &r,
                    f64::from(k),
                    String::new(),
                    contribution,
                    epsilon,
                )],
            })
        }
        "sum" | "mean" => {
            let (totals, values, read) = person_totals(d, need()?)?;
            let input = clamping_input(d, &read, (&totals, values), (q.lo, q.hi), clamp)?;
            let data = Contributions::one_row_per_individual(totals);
            let bounds = format!("[{}, {}] per person", q.lo, q.hi);
            let contribution = "each person's total clamped to the bounds".to_owned();
            let accuracy = "95% interval (0.9ε; 0.1ε for the clamped figure)".to_owned();
            if q.statistic == "sum" {
                let r = release::sum(&data, (q.lo, q.hi), clamping).map_err(dp)?;
                return Ok(Output {
                    values: vec![scalar("sum", &r)],
                    mechanism: mechanism_name(r.mechanism),
                    accuracy,
                    input,
                    noise: vec![
                        statement("sum", &r, magnitude, bounds, contribution, main),
                        clamp_statement(clamp),
                    ],
                });
            }
            let r = release::mean(&data, (q.lo, q.hi), clamping).map_err(dp)?;
            let (lower, upper) = interval(r.accuracy, r.mean);
            Ok(Output {
                values: vec![pb::ResultValue {
                    label: "mean".into(),
                    value: r.mean,
                    lower,
                    upper,
                }],
                mechanism: mechanism_name(r.sum.mechanism),
                accuracy,
                input,
                noise: vec![
                    statement(
                        "mean: its sum",
                        &r.sum,
                        magnitude,
                        bounds,
                        contribution,
                        main / 2.0,
                    ),
                    statement(
                        "mean: its count of people",
                        &r.count,
                        1.0,
                        String::new(),
                        "one person counts once".into(),
                        main / 2.0,
                    ),
                    clamp_statement(clamp),
                ],
            })
        }
        "histogram" => {
            let column = need()?;
            let (rows, read) = person_values(d, column)?;
            let labels = if q.categories.is_empty() {
                bin_labels(q)?
            } else {
                q.categories.clone()
            };
            // Each person's distinct bins (values outside the bins are left out: the bins are
            // public, so this leaks nothing), at most `max_groups` of them kept.
            let mut pairs = std::collections::HashSet::new();
            for (unit, v) in rows {
                let label = if q.categories.is_empty() {
                    let v = integer(d, column, 0, &v)?;
                    match bin_of(v, q, labels.len()) {
                        Some(i) => labels[i].clone(),
                        None => continue,
                    }
                } else {
                    v
                };
                pairs.insert((unit, label));
            }
            let g = bound(q.max_groups);
            let data = Contributions::bound_by_id(pairs, g, &mut rng).map_err(dp)?;
            let r = release::histogram(&data, labels.clone(), spec).map_err(dp)?;
            let values = labels
                .iter()
                .zip(&r.value)
                .map(|(label, &v)| {
                    let (lower, upper) = interval(r.accuracy, v as f64);
                    pb::ResultValue {
                        label: label.clone(),
                        value: v as f64,
                        lower,
                        upper,
                    }
                })
                .collect();
            Ok(Output {
                values,
                mechanism: mechanism_name(r.mechanism),
                accuracy: "95% interval per bin".into(),
                input: plain(&read),
                noise: vec![statement(
                    "every bin",
                    &r,
                    f64::from(g),
                    String::new(),
                    format!("at most {g} bins per person, once each"),
                    epsilon,
                )],
            })
        }
        "quantile" => {
            let column = need()?;
            let (rows, read) = person_values(d, column)?;
            let rows = rows
                .into_iter()
                .map(|(unit, v)| Ok((unit, integer(d, column, 0, &v)?)))
                .collect::<Result<Vec<_>, JobError>>()?;
            let data = Contributions::bound_by_id(rows, 1, &mut rng).map_err(dp)?;
            let candidates = candidates(q)?;
            let r = release::quantile(&data, candidates, q.quantile, spec).map_err(dp)?;
            let rows = match r.accuracy {
                Accuracy::RankError { rows } => rows,
                _ => f64::NAN,
            };
            Ok(Output {
                values: vec![scalar(&format!("quantile {}", q.quantile), &r)],
                mechanism: mechanism_name(r.mechanism),
                accuracy: format!("95%: within {rows:.1} people of the true quantile's rank"),
                input: plain(&read),
                noise: vec![statement(
                    "quantile",
                    &r,
                    1.0,
                    format!("candidates in [{}, {}]", q.lo, q.hi),
                    "one value per person".into(),
                    epsilon,
                )],
            })
        }
        other => Err(JobError::terms(format!(
            "unknown statistic {other:?} (count, sum, mean, histogram or quantile)"
        ))),
    }
}

fn check_range(q: &QueryParams) -> Result<u32, JobError> {
    if q.lo >= q.hi {
        return Err(JobError::terms(format!(
            "--lo {} must be below --hi {}",
            q.lo, q.hi
        )));
    }
    Ok(if q.bins == 0 { 10 } else { q.bins.min(10_000) })
}

/// The labels of `bins` equal-width bins over [lo, hi]: `[a, b)`, the last closed. Public: they
/// depend on the query only.
pub(in crate::jobs) fn bin_labels(q: &QueryParams) -> Result<Vec<String>, JobError> {
    let n = check_range(q)?;
    let width = (q.hi as f64 - q.lo as f64) / f64::from(n);
    let edge = |i: u32| q.lo as f64 + width * f64::from(i);
    Ok((0..n)
        .map(|i| {
            let close = if i + 1 == n { ']' } else { ')' };
            format!("[{}, {}{close}", edge(i), edge(i + 1))
        })
        .collect())
}

/// The bin of `v` among `n` equal-width bins over [lo, hi]; none outside the range.
pub(in crate::jobs) fn bin_of(v: i64, q: &QueryParams, n: usize) -> Option<usize> {
    if v < q.lo || v > q.hi || n == 0 {
        return None;
    }
    let width = (q.hi as f64 - q.lo as f64) / n as f64;
    Some((((v as f64 - q.lo as f64) / width) as usize).min(n - 1))
}

/// Quantile candidates: `bins + 1` evenly spaced integers from lo to hi.
fn candidates(q: &QueryParams) -> Result<Vec<i64>, JobError> {
    let n = check_range(q)?;
    let span = q.hi as f64 - q.lo as f64;
    let mut c: Vec<i64> = (0..=n)
        .map(|i| q.lo + (span * f64::from(i) / f64::from(n)).round() as i64)
        .collect();
    c.dedup();
    Ok(c)
}

/// A submitted query's terms: a dataset at this node, the statistic and its parameters.
pub(in crate::jobs) fn submitted(
    node: &Node,
    q: pb::QueryJob,
    asked: Asked,
) -> Result<Requested, NodeError> {
    let d = q.dataset.unwrap_or_default();
    own_use(&node.config.node.name, &d, "the dataset")?;
    if !asked.positive {
        return Err(NodeError::Invalid("a query needs --epsilon > 0".into()));
    }
    Ok(Requested {
        query: Some(QueryParams {
            statistic: q.statistic,
            lo: q.lo,
            hi: q.hi,
            bins: q.bins,
            categories: q.categories,
            quantile: q.quantile,
            max_rows: q.max_rows.max(1),
            max_groups: q.max_groups.max(1),
        }),
        ..Requested::new(JobKind::Query, d)
    })
}

/// The coordinator runs a query alone: compute, recheck, release.
pub(in crate::jobs) async fn coordinate(
    node: &Arc<Node>,
    row: &JobRow,
    handle: &Arc<Handle>,
    d: Dataset,
) -> Result<(), Failure> {
    let me = node.config.node.name.clone();
    step(node, row, Some(handle), State::Authorized, "authorized").await;
    step(node, row, Some(handle), State::Running, "computing").await;
    let q = row
        .spec
        .query
        .clone()
        .ok_or_else(|| Failure::at(&me, "no query"))?;
    let column = row.spec.columns.first().cloned();
    let epsilon = row.spec.epsilon;
    let unit = crate::jobs::party_input::unit_text(&d);
    let out = tokio::task::spawn_blocking(move || run(&d, column.as_deref(), &q, epsilon))
        .await
        .map_err(|e| Failure::at(&me, format!("query task failed: {e}")))?
        .map_err(|e| Failure::at(&me, e))?;
    step(node, row, Some(handle), State::Running, "rechecking").await;
    recheck(node, row, Vec::new()).await?;
    begin_release(node, handle)?;
    let result = pb::JobResult {
        job_id: row.id.clone(),
        kind: row.kind.to_pb().into(),
        parties: row.parties.clone(),
        recipient: row.recipient.clone(),
        mechanism: out.mechanism.into(),
        epsilon: row.spec.epsilon_text(),
        delta: "0".into(),
        values: out.values,
        accuracy: out.accuracy,
        key_count: 0,
        released_ms: node.clock.now_ms(),
        contributors: Vec::new(),
        inputs: vec![pb::PartyInput {
            node: me.clone(),
            ..out.input
        }],
        privacy_unit: unit,
        noise: out.noise,
        ..pb::JobResult::default()
    };
    let digest: [u8; 32] = Sha256::digest(result.encode_to_vec()).into();
    let detail = format!(
        "released {} of {} to {}: {}",
        row.spec.query.as_ref().map_or("", |q| q.statistic.as_str()),
        row.spec.dataset,
        row.recipient,
        crate::jobs::party_input::describe(&result.inputs[0])
    );
    commit_release(node, row, Some(result), digest, detail).await
}

#[cfg(test)]
mod tests;
