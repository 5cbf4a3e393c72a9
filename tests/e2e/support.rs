//! Federations in temporary directories and node processes that stop when dropped.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

/// The `concord` binary of this checkout, brought up to date once per test run by cargo itself
/// (so it is never stale), in the target directory and profile these tests were built in.
///
/// The end-to-end tests live in the root package, which has no binary of its own, so
/// `CARGO_BIN_EXE_concord` is not set for them: the binary is found next to this test
/// executable (`<target>/<profile>/deps/e2e-…` → `<target>/<profile>/concord`). It is built as
/// `cargo test --workspace --no-run` builds it, with the same features, so that under
/// `cargo test --workspace` (CI) it is already fresh and nothing is built twice.
pub(crate) fn concord_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable sits in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("a target directory");
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["test", "--workspace", "--no-run", "--quiet", "--target-dir"]);
        cargo.arg(target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cargo.arg("--release");
            }
            Some(other) => {
                cargo.args(["--profile", other]);
            }
            None => panic!("no profile directory above {}", exe.display()),
        }
        let status = cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "cargo could not build the concord binary");
        let bin = profile_dir.join(format!("concord{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "no binary at {}", bin.display());
        bin
    })
}

/// Runs `concord` with `args`.
pub(crate) fn concord(args: &[&str]) -> Output {
    Command::new(concord_bin())
        .args(args)
        .env_remove("CONCORD_PROFILE")
        .output()
        .unwrap()
}

/// A `concord` running in the background, its stderr read line by line as it comes.
pub(crate) struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// Starts `concord` with `args` without waiting for it.
pub(crate) fn spawn(args: &[&str]) -> Running {
    let mut child = Command::new(concord_bin())
        .args(args)
        .env_remove("CONCORD_PROFILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Running { child, lines }
}

impl Running {
    /// The next line on its stderr, or `None` if it ended or printed nothing for `within`.
    pub(crate) fn line(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// Waits for it to end (at most `within`); returns whether it succeeded and the rest of
    /// its stderr.
    pub(crate) fn finish(mut self, within: Duration) -> (bool, String) {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let rest: Vec<String> = self.lines.iter().collect();
                return (status.success(), rest.join("\n"));
            }
            if start.elapsed() > within {
                let _ = self.child.kill();
                panic!("still running after {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `concord` and insists it succeeds; returns stdout.
pub(crate) fn ok(args: &[&str]) -> String {
    let out = concord(args);
    assert!(
        out.status.success(),
        "concord {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `concord` and insists it fails; returns stderr.
pub(crate) fn fails(args: &[&str]) -> String {
    let out = concord(args);
    assert!(
        !out.status.success(),
        "concord {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// `n` consecutive free ports on 127.0.0.1 (free when checked; the nodes bind them next).
fn free_ports(n: u16) -> u16 {
    for _ in 0..50 {
        let base = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let held: Vec<_> = (0..n)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// A trial federation written by `concord federation init`.
pub(crate) struct Fed {
    _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
}

impl Fed {
    pub(crate) fn init(nodes: &str) -> Fed {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fed");
        let n = nodes.split(',').count() as u16;
        let base = free_ports(n).to_string();
        let out = ok(&[
            "federation",
            "init",
            "--nodes",
            nodes,
            "--out",
            root.to_str().unwrap(),
            "--base-port",
            &base,
        ]);
        assert!(out.contains("TRIAL federation written to"), "{out}");
        Fed { _dir: dir, root }
    }

    pub(crate) fn path(&self, rel: &str) -> String {
        self.root.join(rel).to_str().unwrap().to_owned()
    }

    pub(crate) fn start(&self, node: &str) -> NodeProc {
        NodeProc::start(&self.root.join(node).join("node.toml"))
    }
}

/// A running `concord node start`; killed when dropped unless stopped.
pub(crate) struct NodeProc {
    child: Option<Child>,
    pub(crate) log: PathBuf,
}

impl NodeProc {
    fn start(config: &Path) -> NodeProc {
        let log = config.with_file_name("node.log");
        let mut child = Command::new(concord_bin())
            .args(["node", "start", "--config", config.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains(" listening on 127.0.0.1:") => {}
            other => {
                let _ = child.kill();
                panic!(
                    "node did not start: {other:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
        NodeProc {
            child: Some(child),
            log,
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub(crate) fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(exit.success(), "node exited with {exit}:\n{log}");
        assert!(log.contains("shutdown requested"), "{log}");
    }
}

impl NodeProc {
    /// Sends `signal` (e.g. `STOP`) to the node.
    pub(crate) fn signal(&self, signal: &str) {
        let child = self.child.as_ref().unwrap();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL: the node dies without any chance to clean up.
    pub(crate) fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The audit log of a stopped node, read offline through the CLI.
pub(crate) fn audit_entries(fed: &Fed, node: &str) -> Vec<serde_json::Value> {
    let db = fed.path(&format!("{node}/data/node.sqlite"));
    serde_json::from_str(&ok(&["audit", "show", "--db", &db, "--json"])).unwrap()
}

/// The entry whose action is `action` and whose fields contain every `(key, fragment)`.
pub(crate) fn find<'a>(
    entries: &'a [serde_json::Value],
    action: &str,
    outcome: &str,
    fragments: &[(&str, &str)],
) -> &'a serde_json::Value {
    entries
        .iter()
        .find(|e| {
            e["action"] == action
                && e["outcome"] == outcome
                && fragments.iter().all(|(k, v)| e[*k].to_string().contains(v))
        })
        .unwrap_or_else(|| {
            panic!(
                "no {outcome} {action} entry with {fragments:?} in\n{}",
                serde_json::to_string_pretty(entries).unwrap()
            )
        })
}
