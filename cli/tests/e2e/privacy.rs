//! Privacy per person, through real nodes: the DP count and sum that `Jobs.Submit` releases, run
//! many times on two neighbouring datasets that differ in one person with three rows, give an
//! empirical ε lower bound (Clopper–Pearson on a threshold event) no larger than the ε claimed.
//! The in-process audit (`node::jobs::query_audit`) runs 3,000 releases a side; this one runs
//! fewer, over gRPC and mutual TLS to a real node, so its bound is looser but its path is the
//! whole release path.

use concord_node::client::NodeClient;
use concord_node::config::Profile;
use concord_node::proto as pb;

use crate::support::{Fed, ok};

/// Releases per dataset and statistic (600 were run once for the README; 150 keep the test near
/// a minute and still catch a release at 3ε, whose bound would come out near 1.8).
const RUNS: usize = 150;
/// Each Clopper–Pearson bound fails with probability α.
const ALPHA: f64 = 1e-3;

fn ln_cdf(n: usize, k: usize, p: f64) -> f64 {
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut ln_choose = 0.0f64;
    let mut terms = Vec::with_capacity(k + 1);
    for i in 0..=k.min(n) {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(ln_choose + i as f64 * lp + (n - i) as f64 * lq);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

fn solve(f: &dyn Fn(f64) -> bool) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..80 {
        let mid = (lo + hi) / 2.0;
        if f(mid) { hi = mid } else { lo = mid }
    }
    hi
}

/// ln(p̲₁ / p̄₀) for the event {x ≥ t} (and its complement the other way round), at least 0.
fn epsilon_lower_bound(with: &[f64], without: &[f64], t: f64) -> f64 {
    let n = with.len();
    let above = |xs: &[f64]| xs.iter().filter(|&&x| x >= t).count();
    let bound = |k1: usize, k0: usize| {
        let lower1 = if k1 == 0 {
            return 0.0;
        } else {
            solve(&|p| 1.0 - ln_cdf(n, k1 - 1, p).exp() >= ALPHA)
        };
        let upper0 = if k0 == n {
            1.0
        } else {
            solve(&|p| ln_cdf(n, k0, p).exp() <= ALPHA)
        };
        (lower1 / upper0).ln()
    };
    let (a1, a0) = (above(with), above(without));
    bound(a1, a0).max(bound(n - a0, n - a1)).max(0.0)
}

/// Runs `RUNS` releases of `statistic` on `dataset` at ε = 1 over one connection.
async fn releases(client: &mut NodeClient, dataset: &str, statistic: &str) -> Vec<f64> {
    let mut out = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let spec = pb::JobSpec {
            kind: Some(pb::job_spec::Kind::Query(pb::QueryJob {
                dataset: Some(pb::DatasetUse {
                    node: "health".into(),
                    dataset: dataset.into(),
                    columns: if statistic == "count" {
                        Vec::new()
                    } else {
                        vec!["age".into()]
                    },
                    grant: String::new(),
                }),
                statistic: statistic.into(),
                lo: 0,
                hi: 100,
                ..pb::QueryJob::default()
            })),
            epsilon: "1".into(),
            recipient: String::new(),
        };
        let job = client.submit_job(spec).await.unwrap();
        let mut events = client.watch_job(&job.id).await.unwrap();
        while events.message().await.unwrap().is_some() {}
        let result = client.job_result(&job.id).await.unwrap();
        out.push(result.values[0].value);
    }
    out
}

#[test]
fn through_a_node_a_person_with_three_rows_is_protected_at_the_claimed_epsilon() {
    let fed = Fed::init("health,civil");
    let _health = fed.start("health");
    // 200 people with one row each; the neighbour adds person X with three rows (ages 40 each,
    // a total of 120 clamped to 100).
    let mut base = String::from("nin,age,diagnosis\n");
    for i in 0..200 {
        base.push_str(&format!("P{i:04},{},D\n", i % 50));
    }
    let with = format!("{base}X,40,D\nX,40,D\nX,40,D\n");
    std::fs::write(fed.root.join("without.csv"), &base).unwrap();
    std::fs::write(fed.root.join("with.csv"), &with).unwrap();
    let manager = fed.path("health/manager.toml");
    for id in ["without", "with"] {
        let file = fed.path(&format!("{id}.csv"));
        crate::jobs::register(&fed, "health", id, &file);
        ok(&[
            "budget",
            "set",
            "--profile",
            &manager,
            "--dataset",
            id,
            "--everyone",
            "--epsilon",
            "1000000",
            "--period",
            "year",
        ]);
        // Enough runs and budget for the audit.
        ok(&[
            "grant",
            "propose",
            "--profile",
            &manager,
            "--grantee",
            "operator.health.concord",
            "--dataset",
            id,
            "--recipient",
            "operator.health.concord",
            "--until",
            "2099-01-01",
            "--purpose",
            "privacy audit",
            "--security-owner",
            "tests",
            "--min-set-size",
            "1",
            "--max-runs",
            "100000",
            "--runs-period",
            "day",
            "--epsilon",
            "1000000",
            "--budget-period",
            "year",
        ]);
    }
    let profile = Profile::load(&fed.root.join("health/operator.toml")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = NodeClient::connect(&profile).await.unwrap();
        let count1 = releases(&mut client, "with", "count").await;
        let count0 = releases(&mut client, "without", "count").await;
        let eps = epsilon_lower_bound(&count1, &count0, 201.0);
        eprintln!("count through the node: empirical ε ≥ {eps:.3} (claimed 1)");
        assert!(eps <= 1.0, "count: empirical ε ≥ {eps} > 1");
        // A row-level count would move by 3: its releases would sit about 3 apart.
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean(&count1) - mean(&count0) - 1.0).abs() < 0.5);

        let sum1 = releases(&mut client, "with", "sum").await;
        let sum0 = releases(&mut client, "without", "sum").await;
        let base: i64 = (0..200).map(|i| i % 50).sum();
        let eps = epsilon_lower_bound(&sum1, &sum0, (base + 100) as f64);
        eprintln!("sum through the node: empirical ε ≥ {eps:.3} (claimed 1)");
        assert!(eps <= 1.0, "sum: empirical ε ≥ {eps} > 1");
    });
}
