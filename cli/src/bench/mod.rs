//! `concord bench psi|secagg|join`: capacity planning. `psi` runs both PSI roles in one process
//! on synthetic keys, timed against the multiplication floor measured in the same run; `secagg`
//! lives in `bench_secagg`, `join` in `bench_join`. The report helpers here serve all three.

mod bucketed;
mod join;
mod output;
mod secagg;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use concord_mpc::psi::local::{self, Progress};
use concord_mpc::psi::{
    KeySet, KeySpec, OtPsiParams, OutputKind, PsiParams, Recipients, SessionId, ot,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;

use output::{group, multiplication_backend, peak_rss_bytes, print_rows, progress_bar};

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// Time a two-party PSI run (both roles in this process, over an in-memory channel).
    ///
    /// Generates two synthetic key sets of --size keys sharing --overlap keys, runs the full
    /// protocol (hashing, blinding or OT extension, encoding, strict decoding, comparison),
    /// checks the result against a plaintext intersection, and measures in the same run the
    /// time this machine needs for the 4·size scalar multiplications no ECDH-PSI can avoid
    /// ("floor"; extrapolated from 16,384 items for --protocol ot, and from 1,048,576 items
    /// for larger ECDH runs). wall / floor shows how close ECDH runs to the hardware, and how
    /// far below the ECDH floor OT runs.
    #[command(verbatim_doc_comment)]
    Psi(PsiArgs),
    /// Time a secure-aggregation run (every party and the aggregator in this process).
    ///
    /// Generates one synthetic vector of --length signed entries per party, runs the full
    /// protocol (key agreement, Shamir shares in AES-GCM envelopes, AES-CTR masks, encoding,
    /// strict decoding, dropout recovery, unmasking), checks the result against the same
    /// vectors summed in the clear, and times that plaintext sum in the same run.
    /// --dropouts parties vanish after sharing their keys, before sending their vector: the
    /// aggregator then rebuilds their mask keys and cancels their pairwise masks.
    #[command(verbatim_doc_comment)]
    Secagg(secagg::SecaggArgs),
    /// Time a join-aggregate run: DP count and sum of one party's values over a private
    /// intersection (both roles in this process).
    ///
    /// Generates --size keys per party sharing --overlap, gives the value holder's rows a value
    /// (drawn slightly beyond the declared bounds -200..=1000, so some are clamped) and one of
    /// --categories categories, draws discrete Laplace noise for each released count and sum,
    /// runs the full protocol (blinding, ElGamal encryption, matching, homomorphic sums, noise
    /// under encryption, re-randomization, decryption), and checks that the released figures
    /// minus the noise drawn here equal the plaintext join-aggregate ("correct").
    #[command(verbatim_doc_comment)]
    Join(join::JoinArgs),
}

#[derive(Args)]
pub(crate) struct PsiArgs {
    /// Distinct keys per party.
    #[arg(long, default_value_t = 65536)]
    size: usize,
    /// Keys both parties hold [default: half of --size].
    #[arg(long)]
    overlap: Option<usize>,
    /// Worker threads [default: every core].
    #[arg(long)]
    threads: Option<usize>,
    /// What the receiver learns.
    #[arg(long, value_enum, default_value_t = Output::Intersection)]
    output: Output,
    /// The PSI protocol [default: ot for intersections of at least 16,384 keys, ecdh otherwise
    /// and always for cardinality].
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,
    /// Seed for the synthetic keys and the session secrets (benchmarks only).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Split both sets into hash buckets, each run as its own padded protocol instance, so
    /// that memory stays bounded at any --size: `auto` (buckets of about --keys-per-bucket
    /// keys) or a number. Keys are then generated on the fly into spill files in the temporary
    /// directory, never held whole, and the result is checked against how they were built.
    #[arg(long, value_name = "auto|N")]
    buckets: Option<bucketed::Buckets>,
    /// Keys per bucket for --buckets auto (the padded size stays at or below it).
    #[arg(long, default_value_t = 1 << 20, value_name = "KEYS")]
    keys_per_bucket: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// Only the number of common keys.
    Cardinality,
    /// Which of the receiver's rows match.
    Intersection,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// ECDH-PSI on ristretto255: cardinality or intersection.
    Ecdh,
    /// OT-extension PSI (KKRT16-style batch OPRF): intersection only, far faster on large sets.
    Ot,
}

/// Intersections from this size up use OT-PSI unless --protocol says otherwise.
const OT_FROM_SIZE: usize = 1 << 14;

/// Items over which the ECDH floor is measured for an OT run, then scaled to --size.
const OT_FLOOR_SAMPLE: usize = 1 << 14;

/// Most items over which the floor is measured for an ECDH run; larger runs scale it (the
/// multiplications are independent, so their time is linear in the count). Measuring 2^24 in
/// full would take as long as the run itself.
const ECDH_FLOOR_SAMPLE: usize = 1 << 20;

/// The `--json` report. Field names are a stable interface for capacity-planning scripts.
#[derive(Serialize)]
struct Report {
    protocol: &'static str,
    output: &'static str,
    size: usize,
    overlap: usize,
    threads: usize,
    multiplication_backend: &'static str,
    wall_seconds: f64,
    items_per_second: f64,
    bytes_exchanged: u64,
    frames: u64,
    intersection_size: u64,
    correct: bool,
    limit_seconds: f64,
    wall_over_limit: f64,
    /// One: the whole sets in one protocol instance (see --buckets).
    buckets: u32,
    /// This process's peak resident memory: both roles at once.
    peak_rss_bytes: Option<u64>,
}

pub(crate) fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Psi(args) => psi(args),
        BenchCommand::Secagg(args) => secagg::run(args),
        BenchCommand::Join(args) => join::run(args),
    }
}

fn psi(args: PsiArgs) -> anyhow::Result<()> {
    let overlap = args.overlap.unwrap_or(args.size / 2);
    if overlap > args.size {
        bail!(
            "--overlap {overlap} is larger than --size {}: the parties cannot share more keys than they hold",
            args.size
        );
    }
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let protocol = match (args.protocol, args.output) {
        (Some(Protocol::Ot), Output::Cardinality) => bail!(
            "--protocol ot cannot compute --output cardinality: OT-based PSI always reveals which keys match to the receiver. Use --protocol ecdh for a cardinality-only result"
        ),
        (Some(p), _) => p,
        (None, Output::Cardinality) => Protocol::Ecdh,
        (None, Output::Intersection) if args.size >= OT_FROM_SIZE => Protocol::Ot,
        (None, Output::Intersection) => Protocol::Ecdh,
    };
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = args.threads {
        pool = pool.num_threads(threads);
    }
    pool.build_global()
        .context("could not start the worker threads")?;
    let threads = rayon::current_num_threads();
    if let Some(buckets) = args.buckets {
        return bucketed::run(bucketed::Asked {
            size: args.size as u64,
            overlap: overlap as u64,
            output: match args.output {
                Output::Cardinality => OutputKind::Cardinality,
                Output::Intersection => OutputKind::Intersection,
            },
            ot: protocol == Protocol::Ot,
            buckets,
            keys_per_bucket: args.keys_per_bucket,
            seed: args.seed,
            threads,
            json: args.json,
        });
    }

    let mut rng = StdRng::seed_from_u64(args.seed);
    let (receiver_keys, sender_keys) = synthetic_keys(args.size, overlap, &mut rng);
    let expected = expected_rows(&receiver_keys, &sender_keys);
    let output = match args.output {
        Output::Cardinality => OutputKind::Cardinality,
        Output::Intersection => OutputKind::Intersection,
    };
    let session = SessionId::random(&mut rng);

    // Timed: key normalization and deduplication, then the whole protocol.
    // 3·|X| + |Y| multiplications in the protocol, then 4·size for the floor.
    let bar = match protocol {
        Protocol::Ecdh => progress_bar(4 * args.size as u64, "psi run"),
        // OT-PSI reports no progress of its own: a spinner.
        Protocol::Ot => progress_bar(0, "psi run (OT extension)"),
    };
    let progress = Progress::default();
    let start = Instant::now();
    let (run, wall) = std::thread::scope(|scope| {
        let ticker = scope.spawn(|| {
            while !bar.is_finished() {
                bar.set_position(progress.done());
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let run = (|| {
            let (receiver_set, sender_set) = rayon::join(
                || KeySet::from_strings(KeySpec::SINGLE, &receiver_keys),
                || KeySet::from_strings(KeySpec::SINGLE, &sender_keys),
            );
            Ok::<_, anyhow::Error>(match protocol {
                Protocol::Ecdh => local::run(
                    PsiParams::one_shot(session, output, Recipients::Receiver, KeySpec::SINGLE),
                    receiver_set?,
                    sender_set?,
                    &mut rng,
                    &progress,
                )?,
                Protocol::Ot => ot::local::run(
                    OtPsiParams::new(session, output, Recipients::Receiver, KeySpec::SINGLE)?,
                    receiver_set?,
                    sender_set?,
                    &mut rng,
                )?,
            })
        })();
        // Stopped before the ticker is joined: it sleeps in 100 ms steps, which would round
        // every wall time up to the next tenth of a second.
        let wall = start.elapsed();
        bar.finish_and_clear();
        let _ = ticker.join();
        run.map(|run| (run, wall))
    })?;
    drop((receiver_keys, sender_keys));

    let floor_bar = progress_bar(0, "measuring the 4·size multiplication floor");
    let sample = match protocol {
        Protocol::Ecdh => args.size.clamp(1, ECDH_FLOOR_SAMPLE),
        Protocol::Ot => args.size.clamp(1, OT_FLOOR_SAMPLE),
    };
    let floor = local::scalar_mul_floor(sample, &mut rng).mul_f64(args.size as f64 / sample as f64);
    floor_bar.finish_and_clear();

    let correct = run.receiver.cardinality == expected.len() as u64
        && match output {
            OutputKind::Intersection => run.receiver.matched_rows.as_ref() == Some(&expected),
            _ => run.receiver.matched_rows.is_none(),
        };
    let wall_seconds = wall.as_secs_f64();
    let limit_seconds = floor.as_secs_f64();
    let report = Report {
        protocol: match protocol {
            Protocol::Ecdh => "ecdh-psi-ristretto255",
            Protocol::Ot => "ot-psi-kkrt16",
        },
        output: match args.output {
            Output::Cardinality => "cardinality",
            Output::Intersection => "intersection",
        },
        size: args.size,
        overlap,
        threads,
        multiplication_backend: multiplication_backend(),
        wall_seconds,
        items_per_second: args.size as f64 / wall_seconds,
        bytes_exchanged: run.bytes_to_sender + run.bytes_to_receiver,
        frames: run.frames,
        intersection_size: run.receiver.cardinality,
        correct,
        limit_seconds,
        wall_over_limit: wall_seconds / limit_seconds,
        buckets: 1,
        peak_rss_bytes: peak_rss_bytes(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if let Some(peak) = report.peak_rss_bytes {
        eprintln!("peak memory (VmHWM): {} MiB", peak >> 20);
    }
    if !correct {
        bail!("the PSI result differs from the plaintext intersection");
    }
    Ok(())
}

/// Two sets of `size` random 16-digit identifiers sharing `overlap`, each in random order.
fn synthetic_keys(size: usize, overlap: usize, rng: &mut StdRng) -> (Vec<String>, Vec<String>) {
    let mut id = || rng.random_range(0..10_000_000_000_000_000u64);
    let shared: Vec<u64> = (0..overlap).map(|_| id()).collect();
    let mut receiver = shared.clone();
    receiver.extend((overlap..size).map(|_| id()));
    let mut sender = shared;
    sender.extend((overlap..size).map(|_| id()));
    receiver.shuffle(rng);
    sender.shuffle(rng);
    // Formatted after shuffling, so that the strings lie in memory in row order, as the rows of
    // a file read from start to end do. (Shuffling the strings instead scatters them over the
    // heap, and normalization then waits on a cache miss per key.)
    let text = |ids: Vec<u64>| ids.into_iter().map(|i| format!("{i:016}")).collect();
    (text(receiver), text(sender))
}

/// Receiver rows whose key the sender holds, computed in the clear.
fn expected_rows(receiver: &[String], sender: &[String]) -> Vec<u64> {
    let sender: HashSet<&str> = sender.iter().map(String::as_str).collect();
    receiver
        .iter()
        .enumerate()
        .filter(|(_, k)| sender.contains(k.as_str()))
        .map(|(i, _)| i as u64)
        .collect()
}

fn print_table(r: &Report) {
    if r.protocol == "ot-psi-kkrt16" {
        println!(
            "OT-extension PSI, KKRT16-style ({}, to the receiver), {} threads; floor: ECDH's, {} multiplication",
            r.output, r.threads, r.multiplication_backend
        );
    } else {
        println!(
            "ECDH-PSI on ristretto255 ({}, to the receiver), {} threads, {} multiplication",
            r.output, r.threads, r.multiplication_backend
        );
    }
    let rows = [
        ("keys per party", group(r.size as u64)),
        ("keys in common", group(r.overlap as u64)),
        (
            "intersection found",
            format!(
                "{} ({})",
                group(r.intersection_size),
                if r.correct {
                    "matches the plaintext intersection"
                } else {
                    "WRONG"
                }
            ),
        ),
        ("wall time", format!("{:.2} s", r.wall_seconds)),
        ("keys per second", group(r.items_per_second as u64)),
        (
            "bytes exchanged",
            format!("{} ({} frames)", group(r.bytes_exchanged), group(r.frames)),
        ),
        ("floor: 4·size mults", format!("{:.2} s", r.limit_seconds)),
        ("wall / floor", format!("{:.2}", r.wall_over_limit)),
    ];
    print_rows(&rows);
}
