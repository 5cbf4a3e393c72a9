//! Privacy per person, through real nodes: the DP count and sum that `Jobs.Submit` releases, run
//! many times on two neighbouring datasets that differ in one person with three rows, give an
//! empirical ε lower bound (Clopper–Pearson on a threshold event) no larger than the ε claimed.
//! The in-process audit (`node/src/jobs/kinds/query/tests/audit.rs`) runs 3,000 releases a side;
//! this one runs fewer, over gRPC and mutual TLS to a real node, so its bound is looser but its
//! path is the whole release path.

use concord_node::client::NodeClient;
use concord_node::config::Profile;
use concord_node::proto as pb;

use crate::support::{Fed, ok};

/// Releases per dataset and statistic (600 were run once for the README; 150 keep the test near
/// a minute and still catch a release at 3ε, whose bound would come out near 1.8).
const RUNS: usize = 150;
/// Each Clopper–Pearson bound fails with probability α.
const ALPHA: f64 = 1e-3;

/// The lower bound on ε from outputs on the two datasets at the threshold `t`
/// (`concord_dp::stats`); each Clopper–Pearson side fails with probability α.
fn epsilon_lower_bound(with: &[f64], without: &[f64], t: f64) -> f64 {
    concord_dp::stats::threshold_epsilon_lower_bound(with, without, t, 2.0 * ALPHA)
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
