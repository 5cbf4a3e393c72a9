//! Criterion benches: 10^6 exact discrete Laplace draws, and 2^20-length noise-share vectors.

use concord_dp::sample::{Ratio, discrete_laplace};
use concord_dp::shares::{NoiseTarget, SharePlan};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;

fn samplers(c: &mut Criterion) {
    let mut g = c.benchmark_group("sample");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1_000_000));
    for scale in [1.0, 10.0] {
        let s = Ratio::from_f64_up("scale", scale).unwrap_or_else(|e| panic!("{e}"));
        let mut rng = StdRng::seed_from_u64(1);
        g.bench_function(format!("discrete_laplace_1e6/scale={scale}"), |b| {
            b.iter(|| {
                let mut acc = 0i64;
                for _ in 0..1_000_000 {
                    acc = acc.wrapping_add(discrete_laplace(&mut rng, s));
                }
                black_box(acc)
            })
        });
    }
    g.finish();
}

fn shares(c: &mut Criterion) {
    let mut g = c.benchmark_group("shares");
    g.sample_size(10);
    let len = 1 << 20;
    g.throughput(Throughput::Elements(len as u64));
    let plans = [
        (
            "polya/n=10,t=0,scale=1",
            NoiseTarget::DiscreteLaplace { scale: 1.0 },
            10,
            0,
        ),
        (
            "polya/n=10,t=3,scale=10",
            NoiseTarget::DiscreteLaplace { scale: 10.0 },
            10,
            3,
        ),
        (
            "polya/n=10,t=3,scale=100",
            NoiseTarget::DiscreteLaplace { scale: 100.0 },
            10,
            3,
        ),
        (
            "skellam/n=10,t=0,lambda=10",
            NoiseTarget::Skellam { lambda: 10.0 },
            10,
            0,
        ),
    ];
    for (name, target, n, t) in plans {
        let plan = SharePlan::new(target, n, t).unwrap_or_else(|e| panic!("{e}"));
        let mut rng = StdRng::seed_from_u64(2);
        g.bench_function(format!("vector_2^20/{name}"), |b| {
            b.iter(|| {
                black_box(
                    plan.sample_vector(&mut rng, len)
                        .unwrap_or_else(|e| panic!("{e}")),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, samplers, shares);
criterion_main!(benches);
