//! `concord bench psi --buckets auto|N`: a registry-scale PSI in bounded memory. Both parties'
//! keys are generated on the fly (never held whole), routed to hash buckets in spill files
//! (`concord_node::spill`), and each bucket pair then runs as its own protocol instance
//! (`concord_mpc::psi::bucket`), padded to the size every bucket is given.
//!
//! Simplified against a node's job, and said so in the report: both roles run in this one
//! process (so its peak RSS is that of both roles at once), and buckets run one after another
//! (each uses every core).

use std::time::Instant;

use anyhow::{Context as _, bail};
use concord_mpc::psi::bucket::{self, BucketPlan};
use concord_mpc::psi::local::{self, LocalRun, Progress};
use concord_mpc::psi::{
    KeySpec, OtPsiParams, OutputKind, PsiParams, Recipients, SessionId, canonical_row_key, ot,
};
use concord_node::spill::{self, BucketId, BucketWriter, SpillDir};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::Serialize;

use super::output::{group, multiplication_backend, peak_rss_bytes, print_rows, progress_bar};

/// How many buckets: `auto` (from the size and --keys-per-bucket) or a count.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Buckets {
    Auto,
    Count(u32),
}

impl std::str::FromStr for Buckets {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Buckets::Auto),
            n => n
                .parse::<u32>()
                .ok()
                .filter(|&n| n >= 1)
                .map(Buckets::Count)
                .ok_or_else(|| format!("{n:?}: use auto or a number of buckets (at least 1)")),
        }
    }
}

/// What the bucketed run is asked to do.
pub(crate) struct Asked {
    pub(crate) size: u64,
    pub(crate) overlap: u64,
    pub(crate) output: OutputKind,
    /// OT-PSI, else ECDH-PSI.
    pub(crate) ot: bool,
    pub(crate) buckets: Buckets,
    pub(crate) keys_per_bucket: u64,
    pub(crate) seed: u64,
    pub(crate) threads: usize,
    pub(crate) json: bool,
}

/// The `--json` report of a bucketed run (a superset of the unbucketed one's fields that
/// apply).
#[derive(Serialize)]
struct Report {
    protocol: &'static str,
    output: &'static str,
    size: u64,
    overlap: u64,
    threads: usize,
    multiplication_backend: &'static str,
    buckets: u32,
    bucket_capacity: u64,
    padding_fraction: f64,
    wall_seconds: f64,
    spill_seconds: f64,
    items_per_second: f64,
    bytes_exchanged: u64,
    frames: u64,
    intersection_size: u64,
    correct: bool,
    /// This process's peak resident memory: both roles at once.
    peak_rss_bytes: Option<u64>,
    roles_in_one_process: bool,
}

/// Rows `0..overlap` of both parties hold the shared keys; the rest are each party's own.
/// Keys are distinct by construction (a bijection of a tagged row number), written as 16 hex
/// digits.
fn synthetic_key(seed: u64, party: u64, row: u64, overlap: u64) -> String {
    let tagged = if row < overlap {
        row
    } else {
        (party << 40) | row
    };
    format!("{:016x}", mix(tagged ^ seed.rotate_left(17)))
}

/// The SplitMix64 finalizer: a bijection of `u64`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Rows generated, encoded and routed in parallel per step.
const ROWS_PER_STEP: u64 = 1 << 16;

/// Writes one party's `size` rows to its bucket files, in one pass.
fn spill_party(
    asked: &Asked,
    plan: &BucketPlan,
    party: u64,
    dir: &SpillDir,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let mut writer = BucketWriter::create(dir.path(), plan.buckets(), plan.session())?;
    let mut start = 0;
    while start < asked.size {
        let end = (start + ROWS_PER_STEP).min(asked.size);
        let routed: Vec<(u32, u64, Vec<u8>)> = (start..end)
            .into_par_iter()
            .map(|row| {
                let key = synthetic_key(asked.seed, party, row, asked.overlap);
                let mut canonical = Vec::with_capacity(24);
                canonical_row_key(KeySpec::SINGLE, row, &[key], &mut canonical)?;
                Ok((plan.bucket_of(&canonical), row, canonical))
            })
            .collect::<Result<_, concord_mpc::psi::PsiError>>()?;
        for (b, row, key) in routed {
            writer.push(b, row, &key)?;
        }
        bar.inc(end - start);
        start = end;
    }
    writer.finish()?;
    Ok(())
}

pub(crate) fn run(asked: Asked) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(asked.seed);
    let session = SessionId::random(&mut rng);
    let plan = match asked.buckets {
        Buckets::Auto => BucketPlan::auto(session, asked.size, asked.keys_per_bucket)?,
        Buckets::Count(n) => BucketPlan::new(session, n)?,
    };
    let output = asked.output;
    if asked.ot && output != OutputKind::Intersection {
        bail!("--protocol ot computes intersections only");
    }
    let capacity = bucket::capacity(asked.size, plan.buckets());
    let tmp = tempfile::tempdir().context("could not create a directory for the spill files")?;
    let receiver_dir = SpillDir::create(&tmp.path().join("receiver"))?;
    let sender_dir = SpillDir::create(&tmp.path().join("sender"))?;

    let start = Instant::now();
    let bar = progress_bar(2 * asked.size, "spilling keys to buckets");
    spill_party(&asked, &plan, 1, &receiver_dir, &bar)?;
    spill_party(&asked, &plan, 2, &sender_dir, &bar)?;
    bar.finish_and_clear();
    let spill_seconds = start.elapsed().as_secs_f64();

    let bar = progress_bar(u64::from(plan.buckets()), "running buckets");
    let (mut cardinality, mut matched, mut bytes, mut frames) = (0u64, 0u64, 0u64, 0u64);
    let mut all_matched_below_overlap = true;
    for b in 0..plan.buckets() {
        let id = BucketId {
            bucket: b,
            buckets: plan.buckets(),
            session,
        };
        let (receiver, receiver_rows) =
            spill::read_padded(receiver_dir.path(), id, KeySpec::SINGLE, capacity)?;
        let (sender, _) = spill::read_padded(sender_dir.path(), id, KeySpec::SINGLE, capacity)?;
        let run: LocalRun = if asked.ot {
            ot::local::run(
                OtPsiParams::new(
                    plan.bucket_session(b),
                    output,
                    Recipients::Receiver,
                    KeySpec::SINGLE,
                )?,
                receiver,
                sender,
                &mut rng,
            )?
        } else {
            local::run(
                PsiParams::one_shot(
                    plan.bucket_session(b),
                    output,
                    Recipients::Receiver,
                    KeySpec::SINGLE,
                ),
                receiver,
                sender,
                &mut rng,
                &Progress::default(),
            )?
        };
        cardinality += run.receiver.cardinality;
        if let Some(rows) = &run.receiver.matched_rows {
            matched += rows.len() as u64;
            all_matched_below_overlap &= rows
                .iter()
                .all(|&local| receiver_rows[local as usize] < asked.overlap);
        }
        bytes += run.bytes_to_sender + run.bytes_to_receiver;
        frames += run.frames;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let wall_seconds = start.elapsed().as_secs_f64();
    drop((receiver_dir, sender_dir));

    // Keys are distinct by construction, so the intersection is rows 0..overlap exactly.
    let correct = cardinality == asked.overlap
        && match output {
            OutputKind::Intersection => matched == asked.overlap && all_matched_below_overlap,
            _ => true,
        };
    let report = Report {
        protocol: if asked.ot {
            "ot-psi-kkrt16"
        } else {
            "ecdh-psi-ristretto255"
        },
        output: match output {
            OutputKind::Intersection => "intersection",
            _ => "cardinality",
        },
        size: asked.size,
        overlap: asked.overlap,
        threads: asked.threads,
        multiplication_backend: multiplication_backend(),
        buckets: plan.buckets(),
        bucket_capacity: capacity,
        padding_fraction: (u64::from(plan.buckets()) * capacity) as f64 / asked.size.max(1) as f64
            - 1.0,
        wall_seconds,
        spill_seconds,
        items_per_second: asked.size as f64 / wall_seconds,
        bytes_exchanged: bytes,
        frames,
        intersection_size: cardinality,
        correct,
        peak_rss_bytes: peak_rss_bytes(),
        roles_in_one_process: true,
    };
    if asked.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if !correct {
        bail!("the bucketed PSI result differs from the intersection the keys were built with");
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "{} in {} hash buckets ({}, to the receiver), {} threads, both roles in this process",
        if r.protocol == "ot-psi-kkrt16" {
            "OT-extension PSI"
        } else {
            "ECDH-PSI on ristretto255"
        },
        r.buckets,
        r.output,
        r.threads
    );
    let rows = [
        ("keys per party", group(r.size)),
        ("keys in common", group(r.overlap)),
        (
            "intersection found",
            format!(
                "{} ({})",
                group(r.intersection_size),
                if r.correct { "correct" } else { "WRONG" }
            ),
        ),
        (
            "bucket size",
            format!(
                "{} keys, padded ({:.2}% over the keys)",
                group(r.bucket_capacity),
                100.0 * r.padding_fraction
            ),
        ),
        ("wall time", format!("{:.2} s", r.wall_seconds)),
        ("of which spilling", format!("{:.2} s", r.spill_seconds)),
        ("keys per second", group(r.items_per_second as u64)),
        (
            "bytes exchanged",
            format!("{} ({} frames)", group(r.bytes_exchanged), group(r.frames)),
        ),
        (
            "peak memory",
            r.peak_rss_bytes
                .map_or("unknown".into(), |b| format!("{} MiB", b >> 20)),
        ),
    ];
    print_rows(&rows);
}
