//! ECDH-PSI throughput, next to the multiplication floor measured in the same run.
//!
//! `cargo bench --bench psi` runs 2^10, 2^14 and 2^16 keys per party. Set
//! `CONCORD_BENCH_PSI_SIZES=1048576` (comma-separated) for other sizes. Each size reports two
//! benchmarks: `psi/intersection/N` (normalization, both roles, all messages encoded and decoded)
//! and `psi/floor_4n_mults/N` (the 4·N scalar multiplications no ECDH-PSI can avoid); the ratio of
//! their medians is how far above the hardware floor the protocol runs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench aborts on a broken run

use std::hint::black_box;
use std::time::Duration;

use concord::mpc::psi::local::{self, Progress};
use concord::mpc::psi::{KeySet, KeySpec, OutputKind, PsiParams, Recipients, SessionId};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng as _;
use rand::rngs::StdRng;

fn sizes() -> Vec<usize> {
    match std::env::var("CONCORD_BENCH_PSI_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("CONCORD_BENCH_PSI_SIZES: {s:?} is not a size"))
            })
            .collect(),
        Err(_) => vec![1 << 10, 1 << 14, 1 << 16],
    }
}

/// Two sets of `n` keys sharing half of them.
fn key_sets(n: usize) -> (Vec<String>, Vec<String>) {
    let receiver = (0..n).map(|i| format!("person-{i:012}")).collect();
    let sender = (n / 2..n + n / 2)
        .map(|i| format!("person-{i:012}"))
        .collect();
    (receiver, sender)
}

fn psi(c: &mut Criterion) {
    let mut group = c.benchmark_group("psi");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(7);
    for n in sizes() {
        group.throughput(Throughput::Elements(n as u64));
        group.measurement_time(Duration::from_secs_f64((n as f64 * 1.5e-4).max(3.0)));
        let (receiver, sender) = key_sets(n);
        group.bench_function(format!("intersection/{n}"), |b| {
            b.iter_batched(
                || SessionId::random(&mut rng),
                |session| {
                    let params = PsiParams::one_shot(
                        session,
                        OutputKind::Intersection,
                        Recipients::Receiver,
                        KeySpec::SINGLE,
                    );
                    let r = KeySet::from_strings(KeySpec::SINGLE, &receiver).unwrap();
                    let s = KeySet::from_strings(KeySpec::SINGLE, &sender).unwrap();
                    let run = local::run(
                        params,
                        r,
                        s,
                        &mut StdRng::seed_from_u64(1),
                        &Progress::default(),
                    )
                    .unwrap();
                    assert_eq!(run.receiver.cardinality, (n - n / 2) as u64);
                    black_box(run)
                },
                BatchSize::PerIteration,
            );
        });
        group.bench_function(format!("floor_4n_mults/{n}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| local::scalar_mul_floor(n, &mut rng))
                    .sum()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, psi);
criterion_main!(benches);
