//! Secure-aggregation throughput: a whole session (every party and the aggregator in one
//! process), next to the mask expansion alone and the same vectors summed in the clear.
//!
//! `cargo bench --bench secagg` runs 10 parties × 2^16 and × 2^20 entries, without dropouts and
//! with two parties vanishing after sharing (their pairwise masks recovered by the aggregator).
//! Set `CONCORD_BENCH_SECAGG_LENGTHS=4194304` (comma-separated) for other lengths. Benchmarks:
//! `secagg/session/<n>x<L>/drop<k>` (the protocol), `secagg/plaintext/<n>x<L>` (the floor any
//! aggregation pays: reading every vector once).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench aborts on a broken run

use std::hint::black_box;
use std::time::Duration;

use concord::mpc::secagg::local::{self, DropPoint, LocalParty};
use concord::mpc::secagg::{IdentityKey, SecAggParams, SessionId};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

const PARTIES: usize = 10;

fn lengths() -> Vec<usize> {
    match std::env::var("CONCORD_BENCH_SECAGG_LENGTHS") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim().parse().unwrap_or_else(|_| {
                    panic!("CONCORD_BENCH_SECAGG_LENGTHS: {s:?} is not a length")
                })
            })
            .collect(),
        Err(_) => vec![1 << 16, 1 << 20],
    }
}

fn secagg(c: &mut Criterion) {
    let mut group = c.benchmark_group("secagg");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(7);
    let identities: Vec<IdentityKey> = (0..PARTIES)
        .map(|_| IdentityKey::random(&mut rng))
        .collect();
    let keys: Vec<_> = identities.iter().map(IdentityKey::public).collect();
    let threshold = SecAggParams::majority(PARTIES);
    for length in lengths() {
        group.throughput(Throughput::Bytes((PARTIES * length * 8) as u64));
        group.measurement_time(Duration::from_secs_f64((length as f64 * 4e-6).max(3.0)));
        let inputs: Vec<Vec<i64>> = (0..PARTIES)
            .map(|_| (0..length).map(|_| rng.random_range(0..1000)).collect())
            .collect();
        let expected: Vec<i64> = (0..length)
            .map(|i| inputs.iter().map(|v| v[i]).sum())
            .collect();
        for dropouts in [0usize, 2] {
            group.bench_function(format!("session/{PARTIES}x{length}/drop{dropouts}"), |b| {
                b.iter_batched(
                    || {
                        SecAggParams::new(
                            SessionId::random(&mut rng),
                            keys.clone(),
                            threshold,
                            length,
                        )
                        .unwrap()
                    },
                    |params| {
                        let parties: Vec<LocalParty<'_>> = (0..PARTIES)
                            .map(|u| LocalParty {
                                identity: &identities[u],
                                input: &inputs[u],
                                drops: (u < dropouts).then_some(DropPoint::AfterSharing),
                            })
                            .collect();
                        let run =
                            local::run(&params, &parties, &mut StdRng::seed_from_u64(1)).unwrap();
                        if dropouts == 0 {
                            assert_eq!(run.aggregate.sum, expected);
                        }
                        assert_eq!(run.aggregate.contributors.len(), PARTIES - dropouts);
                        black_box(run)
                    },
                    BatchSize::PerIteration,
                );
            });
        }
        group.bench_function(format!("plaintext/{PARTIES}x{length}"), |b| {
            b.iter(|| {
                let mut sum = vec![0i64; length];
                for v in &inputs {
                    for (s, x) in sum.iter_mut().zip(v) {
                        *s = s.wrapping_add(*x);
                    }
                }
                black_box(sum)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, secagg);
criterion_main!(benches);
