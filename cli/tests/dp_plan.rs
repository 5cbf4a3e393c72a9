//! Snapshot tests of `concord dp plan`: what a data manager sees.

use std::process::Command;

fn concord(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run concord: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn laplace_table() {
    let (ok, out, _) = concord(&[
        "dp",
        "plan",
        "--mechanism",
        "laplace",
        "--epsilon",
        "0.5",
        "--sensitivity",
        "1",
    ]);
    assert!(ok);
    assert_eq!(
        out,
        "mechanism       discrete laplace\n\
         scale           2.000000\n\
         95% half-width  ±6.43\n\
         epsilon         0.500000\n\
         ledger cost     ε=0.5\n"
    );
}

#[test]
fn gaussian_json() {
    let (ok, out, _) = concord(&[
        "dp",
        "plan",
        "--mechanism",
        "gaussian",
        "--epsilon",
        "1",
        "--delta",
        "1e-6",
        "--sensitivity",
        "1",
        "--json",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["mechanism"], "discrete_gaussian");
    assert_eq!(v["delta"], 1e-6);
    let eps = v["epsilon"].as_f64().unwrap_or(f64::NAN);
    assert!(eps <= 1.0 && eps > 0.999, "{eps}");
    let sigma = v["scale"].as_f64().unwrap_or(f64::NAN);
    // The tight zCDP conversion gives ρ ≈ 0.0244 for (1, 10⁻⁶), so σ = 1/√(2ρ) ≈ 4.53.
    assert!((sigma - 4.53).abs() < 0.01, "{sigma}");
    assert!(v["cost"]["rho"].as_u64().is_some() || v["cost"]["rho"].is_number());
    assert_eq!(out.lines().count(), 1);
}

#[test]
fn shares_table() {
    let (ok, out, _) = concord(&[
        "dp",
        "plan",
        "--mechanism",
        "laplace",
        "--epsilon",
        "1",
        "--sensitivity",
        "1",
        "--parties",
        "5",
        "--tolerate",
        "1",
    ]);
    assert!(ok);
    assert_eq!(
        out,
        "mechanism       polya shares\n\
         scale           1.000000\n\
         95% half-width  ±3.00\n\
         epsilon         1.000000\n\
         parties         5\n\
         tolerated       1\n\
         ledger cost     ε=1\n"
    );
}

#[test]
fn invalid_parameters_are_reported() {
    let (ok, _, err) = concord(&[
        "dp",
        "plan",
        "--mechanism",
        "laplace",
        "--epsilon",
        "0",
        "--sensitivity",
        "1",
    ]);
    assert!(!ok);
    assert_eq!(err, "error: invalid epsilon = 0: must be finite and > 0\n");
    let (ok, _, err) = concord(&[
        "dp",
        "plan",
        "--mechanism",
        "gaussian",
        "--epsilon",
        "1",
        "--delta",
        "1",
        "--sensitivity",
        "1",
    ]);
    assert!(!ok);
    assert_eq!(err, "error: invalid delta = 1: must be in (0, 1)\n");
    let (ok, _, err) = concord(&[
        "dp",
        "plan",
        "--mechanism",
        "gaussian",
        "--epsilon",
        "1",
        "--sensitivity",
        "1",
    ]);
    assert!(!ok);
    assert!(err.contains("needs δ"), "{err}");
}

#[test]
fn help_snapshot() {
    let (ok, out, _) = concord(&["dp", "plan", "--help"]);
    assert!(ok);
    let expected = "\
Noise scale, 95% accuracy and exact ledger cost for a budget and a sensitivity.

Integer data get exact discrete noise. With --parties the noise is added as shares by each party
(Pólya for laplace, Skellam for gaussian) and the interval is for their sum.

Usage: concord dp plan [OPTIONS] --mechanism <MECHANISM> --epsilon <EPSILON> --sensitivity <SENSITIVITY>

Options:
      --mechanism <MECHANISM>
          Noise family

          Possible values:
          - laplace:  Discrete Laplace: pure ε-DP
          - gaussian: Discrete Gaussian: (ε, δ)-DP through zCDP (needs --delta)

      --epsilon <EPSILON>
          Privacy budget ε for this release (> 0)

      --delta <DELTA>
          δ in (0, 1); required for gaussian, not allowed for laplace

      --sensitivity <SENSITIVITY>
          Most one individual can change the statistic (after contribution bounding)

      --parties <PARTIES>
          Parties adding noise shares in secure aggregation

      --tolerate <TOLERATE>
          Parties that may drop out or collude without weakening the guarantee (with --parties)
          \n          [default: 0]

      --json
          Print one JSON object instead of a table

  -h, --help
          Print help (see a summary with '-h')
";
    assert_eq!(out, expected, "actual:\n{out}");
}
