//! `concord bench join`: both join-aggregate roles in one process on synthetic data, with DP
//! noise drawn here and checked out again: released minus that noise must equal the plaintext
//! join-aggregate of the same data.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Args;
use concord_dp::sample::{Ratio, discrete_laplace};
use concord_mpc::psi::join::{
    JoinNoise, JoinParams, KeySet, KeySpec, MAX_CATEGORIES, SessionId, ValueSet, local,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;

use super::output::{group, multiplication_backend, print_rows};

/// Declared value bounds of the synthetic data (values are drawn a little beyond them, so some
/// are clamped).
const BOUNDS: (i64, i64) = (-200, 1000);

/// Noise bound, in noise scales: a discrete Laplace draw exceeds it with probability e^-64.
const NOISE_BOUND_SCALES: f64 = 64.0;

#[derive(Args)]
pub(crate) struct JoinArgs {
    /// Distinct keys per party.
    #[arg(long, default_value_t = 65536)]
    size: usize,
    /// Keys both parties hold [default: half of --size].
    #[arg(long)]
    overlap: Option<usize>,
    /// Public categories the values are grouped by (1 = one count and one sum).
    #[arg(long, default_value_t = 1)]
    categories: u16,
    /// ε of each released count and each released sum (discrete Laplace noise).
    #[arg(long, default_value_t = 1.0)]
    epsilon: f64,
    /// Worker threads [default: every core].
    #[arg(long)]
    threads: Option<usize>,
    /// Seed for the synthetic data, the noise and the session secrets (benchmarks only).
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
    size: usize,
    overlap: usize,
    categories: u16,
    threads: usize,
    multiplication_backend: &'static str,
    epsilon: f64,
    wall_seconds: f64,
    items_per_second: f64,
    bytes_exchanged: u64,
    frames: u64,
    intersection_size: u64,
    clamped_values: u64,
    released_count: Vec<i64>,
    released_sum: Vec<i64>,
    exact_count: Vec<i64>,
    exact_sum: Vec<i64>,
    correct: bool,
}

pub(crate) fn run(args: JoinArgs) -> anyhow::Result<()> {
    let overlap = args.overlap.unwrap_or(args.size / 2);
    if overlap > args.size {
        bail!(
            "--overlap {overlap} is larger than --size {}: the parties cannot share more keys than they hold",
            args.size
        );
    }
    if !(1..=MAX_CATEGORIES).contains(&args.categories) {
        bail!(
            "--categories must be between 1 and {MAX_CATEGORIES}, not {}",
            args.categories
        );
    }
    if !(args.epsilon.is_finite() && args.epsilon > 0.0) {
        bail!("--epsilon must be a positive number, not {}", args.epsilon);
    }
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = args.threads {
        pool = pool.num_threads(threads);
    }
    pool.build_global()
        .context("could not start the worker threads")?;
    let threads = rayon::current_num_threads();

    let c = usize::from(args.categories);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let data = synthetic(args.size, overlap, c, &mut rng);
    let (exact_count, exact_sum, clamped) = plaintext(&data, c);

    // The key holder's caller draws the noise: sensitivity 1 for a count, max(|lo|, |hi|) for
    // a sum (one key, one clamped value), so scale = sensitivity / ε.
    let sensitivity = BOUNDS.0.unsigned_abs().max(BOUNDS.1.unsigned_abs()) as f64;
    let count_scale = Ratio::from_f64_up("count noise scale", 1.0 / args.epsilon)?;
    let sum_scale = Ratio::from_f64_up("sum noise scale", sensitivity / args.epsilon)?;
    let noise_bound = (NOISE_BOUND_SCALES * sum_scale.to_f64()).ceil() as u64;
    let count_noise: Vec<i64> = (0..c)
        .map(|_| discrete_laplace(&mut rng, count_scale))
        .collect();
    let sum_noise: Vec<i64> = (0..c)
        .map(|_| discrete_laplace(&mut rng, sum_scale))
        .collect();
    let params = JoinParams::new(
        SessionId::random(&mut rng),
        KeySpec::SINGLE,
        args.categories,
        BOUNDS,
        noise_bound,
    )?;

    // Timed: key normalization and deduplication, then the whole protocol.
    let noise = JoinNoise::new(count_noise.clone(), sum_noise.clone());
    let start = Instant::now();
    let (keys, values) = rayon::join(
        || KeySet::from_strings(KeySpec::SINGLE, &data.keys),
        || {
            ValueSet::from_strings(
                KeySpec::SINGLE,
                data.rows.iter().map(|(k, v, c)| (k.as_str(), *v, *c)),
            )
        },
    );
    let run = local::run(params, keys?, values?, noise, &mut rng)?;
    let wall = start.elapsed();

    let released_count: Vec<i64> = run
        .value_holder
        .categories
        .iter()
        .map(|r| r.count)
        .collect();
    let released_sum: Vec<i64> = run.value_holder.categories.iter().map(|r| r.sum).collect();
    let denoised = |released: &[i64], noise: &[i64]| -> Vec<i64> {
        released.iter().zip(noise).map(|(r, n)| r - n).collect()
    };
    let report_clamped = run.value_holder.input.clamped_low + run.value_holder.input.clamped_high;
    let correct = denoised(&released_count, &count_noise) == exact_count
        && denoised(&released_sum, &sum_noise) == exact_sum
        && run.key_holder.intersection == overlap as u64
        && report_clamped == clamped;
    let wall_seconds = wall.as_secs_f64();
    let report = Report {
        protocol: "join-aggregate-ecdh-elgamal-ristretto255",
        size: args.size,
        overlap,
        categories: args.categories,
        threads,
        multiplication_backend: multiplication_backend(),
        epsilon: args.epsilon,
        wall_seconds,
        items_per_second: args.size as f64 / wall_seconds,
        bytes_exchanged: run.bytes_to_key_holder + run.bytes_to_value_holder,
        frames: run.frames,
        intersection_size: run.key_holder.intersection,
        clamped_values: report_clamped,
        released_count,
        released_sum,
        exact_count,
        exact_sum,
        correct,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if !correct {
        bail!("the released join-aggregate minus its noise differs from the plaintext one");
    }
    Ok(())
}

/// The key holder's keys and the value holder's `(key, value, category)` rows.
struct Synthetic {
    keys: Vec<String>,
    rows: Vec<(String, i64, u32)>,
}

/// Two sets of `size` random 16-digit identifiers sharing `overlap`; the value holder's rows
/// carry a value drawn slightly beyond the bounds (some are clamped) and a random category.
fn synthetic(size: usize, overlap: usize, categories: usize, rng: &mut StdRng) -> Synthetic {
    let mut id = || format!("{:016}", rng.random_range(0..10_000_000_000_000_000u64));
    let shared: Vec<String> = (0..overlap).map(|_| id()).collect();
    let mut keys = shared.clone();
    keys.extend((overlap..size).map(|_| id()));
    let mut value_keys = shared;
    value_keys.extend((overlap..size).map(|_| id()));
    keys.shuffle(rng);
    value_keys.shuffle(rng);
    let rows = value_keys
        .into_iter()
        .map(|k| {
            let v = rng.random_range(BOUNDS.0 - 50..=BOUNDS.1 + 50);
            (k, v, rng.random_range(0..categories as u32))
        })
        .collect();
    Synthetic { keys, rows }
}

/// Per category, the count and the clamped sum of the value holder's rows whose key the key
/// holder has, in the clear; and how many values were clamped.
fn plaintext(data: &Synthetic, categories: usize) -> (Vec<i64>, Vec<i64>, u64) {
    let held: HashSet<&str> = data.keys.iter().map(String::as_str).collect();
    let mut count = vec![0i64; categories];
    let mut sum = vec![0i64; categories];
    let mut clamped = 0;
    for (k, v, c) in &data.rows {
        let value = (*v).clamp(BOUNDS.0, BOUNDS.1);
        clamped += u64::from(value != *v);
        if held.contains(k.as_str()) {
            count[*c as usize] += 1;
            sum[*c as usize] += value;
        }
    }
    (count, sum, clamped)
}

fn print_table(r: &Report) {
    println!(
        "Join-aggregate (ECDH on ristretto255, exponential ElGamal), {} threads, {} multiplication",
        r.threads, r.multiplication_backend
    );
    let rows = [
        ("keys per party", group(r.size as u64)),
        ("keys in common", group(r.overlap as u64)),
        ("categories", r.categories.to_string()),
        (
            "matched (key holder)",
            format!(
                "{} exact, the matching party's leakage",
                group(r.intersection_size)
            ),
        ),
        (
            "values clamped",
            format!(
                "{} (bounds {} ..= {})",
                group(r.clamped_values),
                BOUNDS.0,
                BOUNDS.1
            ),
        ),
        (
            "released, category 0",
            format!(
                "count {}, sum {} (ε = {} each)",
                r.released_count[0], r.released_sum[0], r.epsilon
            ),
        ),
        (
            "plaintext, category 0",
            format!(
                "count {}, sum {} (released minus its noise {})",
                r.exact_count[0],
                r.exact_sum[0],
                if r.correct { "matches" } else { "DIFFERS" }
            ),
        ),
        ("wall time", format!("{:.2} s", r.wall_seconds)),
        ("keys per second", group(r.items_per_second as u64)),
        (
            "bytes exchanged",
            format!("{} ({} frames)", group(r.bytes_exchanged), group(r.frames)),
        ),
    ];
    print_rows(&rows);
}
