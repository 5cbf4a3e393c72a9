//! Join-aggregate throughput: both roles, all messages encoded and decoded, with discrete Laplace
//! noise drawn by the DP layer as a key holder's node would.
//!
//! `cargo bench --bench join` runs 2^10 and 2^12 keys per party with 1 and 8 categories. Set
//! `CONCORD_BENCH_JOIN_SIZES=65536` (comma-separated) for other sizes; for 2^16 and more,
//! `concord bench join --size N` in a release build reports the same run with its traffic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench aborts on a broken run

use std::hint::black_box;
use std::time::Duration;

use concord::dp::sample::{Ratio, discrete_laplace};
use concord::mpc::psi::join::{JoinNoise, JoinParams, KeySet, KeySpec, SessionId, ValueSet, local};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng as _;
use rand::rngs::StdRng;

fn sizes() -> Vec<usize> {
    match std::env::var("CONCORD_BENCH_JOIN_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("CONCORD_BENCH_JOIN_SIZES: {s:?} is not a size"))
            })
            .collect(),
        Err(_) => vec![1 << 10, 1 << 12],
    }
}

/// `n` keys for the key holder and `n` valued rows for the value holder, sharing half.
fn data(n: usize, categories: u16) -> (Vec<String>, Vec<(String, i64, u32)>) {
    let keys = (0..n).map(|i| format!("person-{i:012}")).collect();
    let rows = (n / 2..n + n / 2)
        .map(|i| {
            (
                format!("person-{i:012}"),
                (i % 1201) as i64 - 200,
                (i % usize::from(categories)) as u32,
            )
        })
        .collect();
    (keys, rows)
}

fn join(c: &mut Criterion) {
    let mut group = c.benchmark_group("join");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(7);
    let count_scale = Ratio::new(1, 1).unwrap();
    let sum_scale = Ratio::new(1000, 1).unwrap();
    for n in sizes() {
        group.throughput(Throughput::Elements(n as u64));
        group.measurement_time(Duration::from_secs_f64((n as f64 * 4e-4).max(3.0)));
        for categories in [1u16, 8] {
            let (keys, rows) = data(n, categories);
            group.bench_function(format!("categories_{categories}/{n}"), |b| {
                b.iter_batched(
                    || {
                        let c = usize::from(categories);
                        let noise = JoinNoise::new(
                            (0..c)
                                .map(|_| discrete_laplace(&mut rng, count_scale))
                                .collect(),
                            (0..c)
                                .map(|_| discrete_laplace(&mut rng, sum_scale))
                                .collect(),
                        );
                        (SessionId::random(&mut rng), noise)
                    },
                    |(session, noise)| {
                        let params = JoinParams::new(
                            session,
                            KeySpec::SINGLE,
                            categories,
                            (-200, 1000),
                            64_000,
                        )
                        .unwrap();
                        let k = KeySet::from_strings(KeySpec::SINGLE, &keys).unwrap();
                        let v = ValueSet::from_strings(
                            KeySpec::SINGLE,
                            rows.iter().map(|(k, v, c)| (k.as_str(), *v, *c)),
                        )
                        .unwrap();
                        let run =
                            local::run(params, k, v, noise, &mut StdRng::seed_from_u64(1)).unwrap();
                        assert_eq!(run.key_holder.intersection, (n - n / 2) as u64);
                        black_box(run)
                    },
                    BatchSize::PerIteration,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, join);
criterion_main!(benches);
