//! The `concord` command as a user meets it: help texts (snapshots in `tests/cmd/`), a real
//! benchmark run, and errors on bad arguments.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn help_snapshots() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}

fn concord(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bench_psi_reports_a_correct_run() {
    let out = concord(&[
        "bench",
        "psi",
        "--size",
        "3000",
        "--overlap",
        "1234",
        "--threads",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["protocol"], "ecdh-psi-ristretto255");
    assert_eq!(report["size"], 3000);
    assert_eq!(report["overlap"], 1234);
    assert_eq!(report["threads"], 2);
    assert_eq!(report["intersection_size"], 1234);
    assert_eq!(report["correct"], true);
    let wall = report["wall_seconds"].as_f64().unwrap();
    let limit = report["limit_seconds"].as_f64().unwrap();
    assert!(wall > 0.0 && limit > 0.0);
    let ips = report["items_per_second"].as_f64().unwrap();
    assert!((ips - 3000.0 / wall).abs() < 1e-6 * ips);
    // 32 bytes per blinded and per evaluated key, 16 per sender digest, plus frame headers.
    let bytes = report["bytes_exchanged"].as_u64().unwrap();
    assert!((3000 * 80..3000 * 80 + 4096).contains(&bytes), "{bytes}");
}

#[test]
fn bench_psi_in_buckets_reports_a_correct_padded_run() {
    for (protocol, output) in [
        ("ecdh", "cardinality"),
        ("ecdh", "intersection"),
        ("ot", "intersection"),
    ] {
        let out = concord(&[
            "bench",
            "psi",
            "--size",
            "6000",
            "--overlap",
            "2500",
            "--protocol",
            protocol,
            "--output",
            output,
            "--buckets",
            "3",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["buckets"], 3, "{report}");
        assert_eq!(report["intersection_size"], 2500, "{report}");
        assert_eq!(report["correct"], true, "{report}");
        // Every bucket is padded to the same size, above the mean of 2,000 keys.
        let capacity = report["bucket_capacity"].as_u64().unwrap();
        assert!((2001..=6000).contains(&capacity), "{report}");
        assert!(report["peak_rss_bytes"].as_u64().unwrap() > 0, "{report}");
    }
    let out = concord(&["bench", "psi", "--buckets", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use auto or a number of buckets"));
}

#[test]
fn bench_psi_cardinality_table() {
    let out = concord(&["bench", "psi", "--size", "500", "--output", "cardinality"]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("ECDH-PSI on ristretto255 (cardinality"),
        "{table}"
    );
    assert!(
        table.contains("250 (matches the plaintext intersection)"),
        "{table}"
    );
}

#[test]
fn bench_psi_refuses_impossible_overlap() {
    let out = concord(&["bench", "psi", "--size", "10", "--overlap", "11"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--overlap 11 is larger than --size 10"),
        "{err}"
    );
}

#[test]
fn bench_join_reports_a_correct_run() {
    let out = concord(&[
        "bench",
        "join",
        "--size",
        "2000",
        "--overlap",
        "700",
        "--categories",
        "3",
        "--threads",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["protocol"],
        "join-aggregate-ecdh-elgamal-ristretto255"
    );
    assert_eq!(report["intersection_size"], 700);
    assert_eq!(report["correct"], true);
    let exact: i64 = report["exact_count"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_i64().unwrap())
        .sum();
    assert_eq!(exact, 700);
    assert_eq!(report["released_sum"].as_array().unwrap().len(), 3);
    let wall = report["wall_seconds"].as_f64().unwrap();
    let ips = report["items_per_second"].as_f64().unwrap();
    assert!((ips - 2000.0 / wall).abs() < 1e-6 * ips);
    // Per key pair: 32 bytes blinded, 32 evaluated, and a row of a 16-byte digest and
    // 1 + 2·3 points; plus frame headers, the offer and the result.
    let bytes = report["bytes_exchanged"].as_u64().unwrap();
    let per_pair = 32 + 32 + 16 + 32 * 7;
    assert!(
        (2000 * per_pair..2000 * per_pair + 4096).contains(&bytes),
        "{bytes}"
    );
}

#[test]
fn bench_join_refuses_bad_arguments() {
    let out = concord(&["bench", "join", "--size", "10", "--categories", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--categories must be between 1 and 256"),
        "{err}"
    );
}
