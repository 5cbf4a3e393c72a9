//! `concord bench secagg`: every secure-aggregation role in one process on synthetic vectors,
//! timed against the same vectors summed in the clear in the same run.

use std::time::Instant;

use anyhow::{Context as _, bail};

use super::output::{group, print_rows};
use clap::Args;
use concord_mpc::secagg::local::{self, DropPoint, LocalParty};
use concord_mpc::secagg::{IdentityKey, MAX_LENGTH, MAX_PARTIES, SecAggParams, SessionId};
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{RngExt as _, SeedableRng as _};
use rayon::prelude::*;
use serde::Serialize;

#[derive(Args)]
pub(crate) struct SecaggArgs {
    /// Parties (departments), each contributing one vector.
    #[arg(long, default_value_t = 10)]
    parties: usize,
    /// Entries per vector (at most 16,777,216).
    #[arg(long, default_value_t = 65536)]
    length: usize,
    /// Parties that vanish after sharing their keys, before sending their vector.
    #[arg(long, default_value_t = 0)]
    dropouts: usize,
    /// Shamir threshold t: parties needed at every round [default: a strict majority].
    #[arg(long)]
    threshold: Option<u16>,
    /// Worker threads [default: every core].
    #[arg(long)]
    threads: Option<usize>,
    /// Sessions to run on the same vectors, each with a fresh session id; times are medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seed for the synthetic vectors, the dropouts and the session secrets (benchmarks only).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The `--json` report. Field names are a stable interface for capacity-planning scripts.
#[derive(Serialize)]
struct Report {
    protocol: &'static str,
    parties: usize,
    length: usize,
    threshold: u16,
    dropouts: usize,
    threads: usize,
    contributors: usize,
    runs: usize,
    wall_seconds: f64,
    wall_seconds_each: Vec<f64>,
    plaintext_seconds: f64,
    bytes_per_party: u64,
    aggregator_bytes: u64,
    frames: u64,
    correct: bool,
}

pub(crate) fn run(args: SecaggArgs) -> anyhow::Result<()> {
    let n = args.parties;
    if !(2..=MAX_PARTIES).contains(&n) {
        bail!("--parties must be between 2 and {MAX_PARTIES}, not {n}");
    }
    if !(1..=MAX_LENGTH).contains(&args.length) {
        bail!(
            "--length must be between 1 and {MAX_LENGTH}, not {}",
            args.length
        );
    }
    let threshold = args.threshold.unwrap_or(SecAggParams::majority(n));
    if usize::from(threshold) <= n / 2 || usize::from(threshold) > n {
        bail!(
            "--threshold {threshold} for {n} parties: it must be a strict majority, between {} and {n}",
            n / 2 + 1
        );
    }
    if args.dropouts > n - usize::from(threshold) {
        bail!(
            "--dropouts {} leaves {} parties, fewer than the threshold {threshold}: the round would fail",
            args.dropouts,
            n.saturating_sub(args.dropouts)
        );
    }
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = args.threads {
        pool = pool.num_threads(threads);
    }
    pool.build_global()
        .context("could not start the worker threads")?;
    let threads = rayon::current_num_threads();

    let mut rng = StdRng::seed_from_u64(args.seed);
    let identities: Vec<IdentityKey> = (0..n).map(|_| IdentityKey::random(&mut rng)).collect();
    let keys: Vec<_> = identities.iter().map(IdentityKey::public).collect();
    let inputs = synthetic_vectors(n, args.length, &mut rng);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let dropped = &order[..args.dropouts];
    let parties: Vec<LocalParty<'_>> = (0..n)
        .map(|u| LocalParty {
            identity: &identities[u],
            input: &inputs[u],
            drops: dropped.contains(&u).then_some(DropPoint::AfterSharing),
        })
        .collect();

    let mut walls = Vec::with_capacity(args.runs);
    let mut plains = Vec::with_capacity(args.runs);
    let mut correct = true;
    let mut last = None;
    for _ in 0..args.runs {
        let params = SecAggParams::new(
            SessionId::random(&mut rng),
            keys.clone(),
            threshold,
            args.length,
        )?;
        // Timed: every role, every message encoded and decoded, dropout recovery, unmasking.
        let start = Instant::now();
        let run = local::run(&params, &parties, &mut rng)?;
        walls.push(start.elapsed().as_secs_f64());

        // Timed: the same contributors' vectors summed in the clear, on the same threads.
        let contributors: Vec<&[i64]> = run
            .aggregate
            .contributors
            .iter()
            .map(|&u| inputs[usize::from(u)].as_slice())
            .collect();
        let start = Instant::now();
        let plain = plaintext_sum(&contributors, args.length);
        plains.push(start.elapsed().as_secs_f64());

        correct &= run.aggregate.sum == plain
            && run.aggregate.contributors.len() == n - args.dropouts
            && run
                .aggregate
                .excluded
                .iter()
                .all(|&u| dropped.contains(&usize::from(u)));
        last = Some(run);
    }
    let Some(run) = last else {
        bail!("--runs must be at least 1");
    };
    let report = Report {
        protocol: "secagg-bonawitz17-x25519-aesgcm-aesctr",
        parties: n,
        length: args.length,
        threshold,
        dropouts: args.dropouts,
        threads,
        contributors: run.aggregate.contributors.len(),
        runs: args.runs,
        wall_seconds: median(&walls),
        wall_seconds_each: walls,
        plaintext_seconds: median(&plains),
        bytes_per_party: run.bytes_per_party(),
        aggregator_bytes: run.aggregator_bytes(),
        frames: run.frames,
        correct,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if !correct {
        bail!("the secure aggregate differs from the plaintext sum");
    }
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Per party: counts in 0..1000 plus a noise share in -50..=50, as a department would submit.
fn synthetic_vectors(parties: usize, length: usize, rng: &mut StdRng) -> Vec<Vec<i64>> {
    let seeds: Vec<u64> = (0..parties).map(|_| rng.random()).collect();
    seeds
        .into_par_iter()
        .map(|seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..length)
                .map(|_| rng.random_range(0..1000) + rng.random_range(-50..=50))
                .collect()
        })
        .collect()
}

/// Element-wise sum in the clear (wrapping, like the protocol; the bound keeps it exact).
fn plaintext_sum(vectors: &[&[i64]], length: usize) -> Vec<i64> {
    const CHUNK: usize = 1 << 14;
    let mut sum = vec![0i64; length];
    sum.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            for v in vectors {
                for (s, x) in chunk.iter_mut().zip(&v[i * CHUNK..]) {
                    *s = s.wrapping_add(*x);
                }
            }
        });
    sum
}

fn print_table(r: &Report) {
    println!(
        "Secure aggregation (Bonawitz et al. 2017: X25519, Shamir, AES-GCM, AES-CTR masks), {} threads",
        r.threads
    );
    let rows = [
        (
            "parties",
            format!("{} (threshold {})", r.parties, r.threshold),
        ),
        ("entries per vector", group(r.length as u64)),
        (
            "dropouts",
            format!("{} (after sharing; their masks recovered)", r.dropouts),
        ),
        (
            "sum",
            format!(
                "{} contributors ({})",
                r.contributors,
                if r.correct {
                    "matches the plaintext sum"
                } else {
                    "WRONG"
                }
            ),
        ),
        (
            "wall time",
            format!("{:.3} s (median of {} runs)", r.wall_seconds, r.runs),
        ),
        ("plaintext sum", format!("{:.4} s", r.plaintext_seconds)),
        ("bytes per party", group(r.bytes_per_party)),
        (
            "aggregator traffic",
            format!("{} ({} frames)", group(r.aggregator_bytes), group(r.frames)),
        ),
    ];
    print_rows(&rows);
}
