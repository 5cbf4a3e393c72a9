//! `concord demo`: a temporary federation of three departments on loopback, run end to end with
//! the same commands a person would type (each is printed before it runs).
//!
//! The demo spawns this very executable for every step: `federation init`, three `node start`
//! processes, `dataset add`, `budget set`, `grant propose`, `run psi`, `run join`, `run query`,
//! `run aggregate`, `job result`, and the offline `audit verify` of every node's log after a
//! graceful stop. Nothing is simulated in process.

mod data;

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Residents in each department's register.
    #[arg(long, default_value_t = 100_000)]
    people: usize,
    /// Keep the federation's directory (certificates, data, databases, logs) here instead of
    /// deleting it; must not exist.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

/// The three departments: node name, dataset id, file, columns, description.
const DEPARTMENTS: [(&str, &str, &str, [&str; 4], &str); 3] = [
    (
        "health",
        "insured",
        "insured.csv",
        [
            "nin:text:internal",
            "district:text:public",
            "claims:integer:sensitive",
            "diagnosis:text:restricted",
        ],
        "medical insurance: annual claims per insured resident",
    ),
    (
        "civil",
        "subsidy",
        "subsidy.csv",
        [
            "nin:text:internal",
            "district:text:public",
            "subsidy:integer:sensitive",
            "household:integer:internal",
        ],
        "civil affairs: monthly living-allowance recipients",
    ),
    (
        "stats",
        "census",
        "census.csv",
        [
            "nin:text:internal",
            "district:text:public",
            "age:integer:internal",
            "income:integer:sensitive",
        ],
        "statistics bureau: census extract",
    ),
];

/// A node process, stopped gracefully (SIGTERM) by [`Node::stop`] or killed when dropped.
struct Node {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    fn start(exe: &Path, root: &Path, name: &'static str) -> anyhow::Result<Node> {
        let config = root.join(name).join("node.toml");
        let log = root.join(name).join("node.log");
        let mut child = Command::new(exe)
            .args(["node", "start", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting a node")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let node = Node {
            name,
            child: Some(child),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains(" listening on ") => {
                println!("    {line}");
                Ok(node)
            }
            _ => bail!(
                "node {name} did not start; its log {}:\n{}",
                node.log.display(),
                std::fs::read_to_string(&node.log).unwrap_or_default()
            ),
        }
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SIGTERM, so the node finishes its requests and audits its stop.
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !signalled {
            child.kill()?;
        }
        let status = child.wait()?;
        if !status.success() && signalled {
            bail!(
                "node {} exited with {status}; log {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `n` consecutive free ports on 127.0.0.1 (free when checked; the nodes bind them next).
fn free_ports(n: u16) -> anyhow::Result<u16> {
    for _ in 0..50 {
        let base = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let held: Vec<_> = (0..n)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return Ok(base);
        }
    }
    bail!("no {n} consecutive free ports on 127.0.0.1")
}

/// Runs the demo's steps, printing each command the way a person would type it (paths relative
/// to the federation directory).
struct Runner {
    exe: PathBuf,
    root: PathBuf,
}

impl Runner {
    fn shown(&self, args: &[String]) -> String {
        let root = self.root.to_string_lossy();
        let words: Vec<String> = args
            .iter()
            .map(|a| {
                let a = a.replace(&format!("{root}/"), "");
                if a.contains(' ') || a.contains(',') && a.contains(':') {
                    format!("{a:?}")
                } else {
                    a
                }
            })
            .collect();
        format!("concord {}", words.join(" "))
    }

    /// Prints `concord ARGS` as typed, runs it in the federation's directory, and returns its
    /// exit status, stdout and stderr.
    fn exec(&self, args: &[String]) -> anyhow::Result<(bool, String, String)> {
        println!("  $ {}", self.shown(args));
        let out = Command::new(&self.exe)
            .args(args)
            .current_dir(&self.root)
            .env_remove("CONCORD_PROFILE")
            .output()
            .context("running concord")?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok((out.status.success(), text(&out.stdout), text(&out.stderr)))
    }

    /// Runs `concord ARGS` and returns its stdout; fails with its stderr.
    fn run(&self, args: &[String]) -> anyhow::Result<String> {
        match self.exec(args)? {
            (true, stdout, _) => Ok(stdout),
            (false, _, stderr) => bail!("`{}` failed:\n{stderr}", self.shown(args)),
        }
    }

    /// Runs `concord ARGS` that is expected to be refused; returns its last stderr line.
    fn refused(&self, args: &[String]) -> anyhow::Result<String> {
        match self.exec(args)? {
            (true, ..) => bail!("`{}` should have been refused", self.shown(args)),
            (false, _, stderr) => Ok(stderr.lines().last().unwrap_or_default().to_owned()),
        }
    }

    fn path(&self, rel: &str) -> String {
        self.root.join(rel).to_string_lossy().into_owned()
    }
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

impl Runner {
    /// Output as shown: indented, with the federation's directory left out of paths.
    fn show(&self, text: &str) {
        let root = format!("{}/", self.root.to_string_lossy());
        print!("{}", indent(&text.replace(&root, "")));
    }
}

/// Runs a job for health's researcher and shows its output, then its result as the researcher
/// reads it.
fn for_researcher(r: &Runner, words: &[&str], researcher: &str) -> anyhow::Result<()> {
    let mut job = args(words);
    job.extend(args(&["--recipient", "researcher.health.concord"]));
    let out = r.run(&job)?;
    r.show(&out);
    let job = out
        .split_whitespace()
        .find(|w| w.starts_with("job-"))
        .context("no job id in the output")?;
    let result = r.run(&args(&["job", "result", job, "--profile", researcher]))?;
    r.show(&result);
    Ok(())
}

/// `district value` for every district, in order.
fn per_district(districts: &[&str], value: impl Fn(&str) -> String) -> String {
    districts
        .iter()
        .map(|d| format!("{d} {}", value(d)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every job kind the node runs today, each with its true value beside the noised one, and a
/// request that a peer's policy refuses.
fn jobs(r: &Runner, truth: &data::Truth) -> anyhow::Result<()> {
    let operator = r.path("fed/health/operator.toml");
    let researcher = r.path("fed/health/researcher.toml");

    println!(
        "  -- How many insured residents also receive a living allowance? (to the researcher)"
    );
    for_researcher(
        r,
        &[
            "run",
            "psi",
            "--profile",
            &operator,
            "--kind",
            "cardinality",
            "--left",
            "health:insured:nin",
            "--right",
            "civil:subsidy:nin",
            "--epsilon",
            "1",
        ],
        &researcher,
    )?;
    println!("    true value: {}", truth.insured_and_subsidized);

    println!("  -- Which of health's insured are subsidized? (exact keys, to the operator only)");
    let csv = r.run(&args(&[
        "run",
        "psi",
        "--profile",
        &operator,
        "--kind",
        "intersection",
        "--left",
        "health:insured:nin",
        "--right",
        "civil:subsidy:nin",
        "--epsilon",
        "0",
        "--csv",
    ]))?;
    let keys = csv.lines().filter(|l| l.len() == 18).count();
    println!(
        "    {keys} matching resident IDs delivered (true: {}); civil learns none of them",
        truth.insured_and_subsidized
    );

    println!("  -- Mean annual claims of health's insured (a DP query at one node)");
    let out = r.run(&args(&[
        "run",
        "query",
        "--profile",
        &operator,
        "--dataset",
        "health:insured",
        "--statistic",
        "mean",
        "--column",
        "claims",
        "--lo",
        "0",
        "--hi",
        &data::CLAIMS_MAX.to_string(),
        "--epsilon",
        "0.5",
    ]))?;
    r.show(&out);
    println!(
        "    true value: {:.2}",
        truth.claims_clamped_sum as f64 / truth.claims_rows.max(1) as f64
    );

    println!(
        "  -- Claims of the subsidized, by district: health's values over civil's keys \
         (join-aggregate; civil adds the noise, nobody sees which residents matched)"
    );
    let districts: Vec<&str> = data::DISTRICTS.iter().map(|d| d.0).collect();
    for_researcher(
        r,
        &[
            "run",
            "join",
            "--profile",
            &operator,
            "--values",
            &format!("health:insured:nin:claims:0:{}", data::CLAIMS_MAX),
            "--keys",
            "civil:subsidy:nin",
            "--group-by",
            "district",
            "--categories",
            &districts.join(","),
            "--epsilon",
            "1",
        ],
        &researcher,
    )?;
    let truths = per_district(&districts, |d| {
        let (count, sum) = truth
            .claims_of_subsidized_by_district
            .get(d)
            .copied()
            .unwrap_or_default();
        format!("{count} / {sum}")
    });
    println!("    true values (count / sum): {truths}");

    println!(
        "  -- Registrations per district across all three registers (secure aggregation: each \
         department adds its own noise share; health sees only the noised total)"
    );
    for_researcher(
        r,
        &[
            "run",
            "aggregate",
            "--profile",
            &operator,
            "--statistic",
            "histogram",
            "--dataset",
            "health:insured:district",
            "--dataset",
            "civil:subsidy:district",
            "--dataset",
            "stats:census:district",
            "--categories",
            &districts.join(","),
            "--epsilon",
            "1",
        ],
        &researcher,
    )?;
    let truths = per_district(&districts, |d| {
        let n = truth
            .registered_by_district
            .get(d)
            .copied()
            .unwrap_or_default();
        n.to_string()
    });
    println!("    true values: {truths}");

    println!(
        "  -- Out of scope: matching on the census's income field (sensitive: DP aggregates only)"
    );
    let refusal = r.refused(&args(&[
        "run",
        "psi",
        "--profile",
        &operator,
        "--kind",
        "cardinality",
        "--left",
        "health:insured:nin",
        "--right",
        "stats:census:income",
        "--epsilon",
        "1",
    ]))?;
    println!("    refused: {refusal}");
    Ok(())
}

pub(crate) fn run(a: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let exe = std::env::current_exe().context("locating the concord executable")?;
    let temp;
    let base = match &a.keep {
        Some(dir) => {
            if dir.exists() {
                bail!("{}: already exists", dir.display());
            }
            std::fs::create_dir_all(dir)?;
            dir.canonicalize()?
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };
    let root = base.join("fed");
    let r = Runner {
        exe: exe.clone(),
        root: base.clone(),
    };

    println!("== 1. A federation of three departments on 127.0.0.1 (trial certificates)");
    let port = free_ports(3)?.to_string();
    let init = r.run(&args(&[
        "federation",
        "init",
        "--nodes",
        "health,civil,stats",
        "--out",
        &r.path("fed"),
        "--base-port",
        &port,
    ]))?;
    r.show(&init);

    println!(
        "== 2. Synthetic registers: {} residents per department, overlapping ID numbers",
        a.people
    );
    let data_dir = base.join("data");
    std::fs::create_dir_all(&data_dir)?;
    let truth = data::write(&data_dir, a.people, a.seed)?;
    println!(
        "    insured.csv (health), subsidy.csv (civil), census.csv (stats); {} residents are both insured and subsidized",
        truth.insured_and_subsidized
    );

    println!("== 3. Each department starts its node");
    let mut nodes = Vec::new();
    for (name, ..) in DEPARTMENTS {
        nodes.push(Node::start(&exe, &root, name)?);
    }

    println!("== 4. Data managers register their data, set budgets and grant the operators");
    for (name, id, file, columns, description) in DEPARTMENTS {
        let manager = r.path(&format!("fed/{name}/manager.toml"));
        let mut add = args(&[
            "dataset",
            "add",
            "--profile",
            &manager,
            "--id",
            id,
            "--file",
            &r.path(&format!("data/{file}")),
            "--key-columns",
            "nin:cn-resident-id",
            "--description",
            description,
            "--domain",
            "population",
        ]);
        for c in columns {
            add.extend(args(&["--column", c]));
        }
        let out = r.run(&add)?;
        print!("{}", indent(out.lines().nth(1).unwrap_or_default()));
        r.run(&args(&[
            "budget",
            "set",
            "--profile",
            &manager,
            "--dataset",
            id,
            "--everyone",
            "--epsilon",
            "10",
            "--period",
            "year",
        ]))?;
        // Every department grants the health operator; results go to health's operator.
        let granted = r.run(&args(&[
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
            "--recipient",
            "researcher.health.concord",
            "--until",
            "2099-01-01",
            "--purpose",
            "demo: social assistance and health care use by district",
            "--security-owner",
            &format!("security officer, {name}"),
            "--min-set-size",
            "1000",
            "--epsilon",
            "5",
            "--budget-period",
            "month",
        ]))?;
        print!("{}", indent(granted.lines().next().unwrap_or_default()));
    }

    println!("== 5. The health operator runs joint jobs; every node checks its own grant");
    jobs(&r, &truth)?;

    println!("== 6. Every node stops; every audit log is verified offline");
    for node in nodes {
        node.stop()?;
    }
    for (name, ..) in DEPARTMENTS {
        let verified = r.run(&args(&[
            "audit",
            "verify",
            "--db",
            &r.path(&format!("fed/{name}/data/node.sqlite")),
            "--public-key",
            &r.path(&format!("fed/{name}/audit.pub")),
        ]))?;
        print!("{}", indent(verified.lines().next().unwrap_or_default()));
    }

    println!(
        "== done in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        match &a.keep {
            Some(dir) => format!("; everything is kept in {}", dir.display()),
            None => "; the temporary federation was deleted".into(),
        }
    );
    Ok(())
}
