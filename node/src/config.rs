//! The node's configuration file (TOML) and the person profiles the CLI uses to reach a node.
//!
//! Both are read strictly: an unknown key is an error naming the file and the line, so a typo
//! in a security setting can never be silently ignored. Relative paths are resolved against the
//! directory of the file that names them. Secrets (private keys) are never written in these
//! files: they name a file or an environment variable that holds the secret, and a [`Secret`]
//! redacts itself in `Debug`.
//!
//! The documented sample is `docs/node.sample.toml`; a test loads it.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::{Approvals, Rules, TierMatrix};
use zeroize::Zeroizing;

/// Why a configuration or profile could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema (unknown key, wrong type...).
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file parses but says something impossible.
    #[error("{file}: {reason}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A secret could not be read from where the configuration says it is.
    #[error("{file}: secret {what}: {reason}")]
    Secret {
        /// The configuration file that names the secret.
        file: PathBuf,
        /// Which secret.
        what: &'static str,
        /// Why it could not be read (never its value).
        reason: String,
    },
}

/// Where a secret lives: `{ file = "node.key" }` or `{ env = "CONCORD_TLS_KEY" }`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretSource {
    /// A file, relative to the configuration file; it should be readable by the node only.
    File(PathBuf),
    /// An environment variable holding the secret itself (PEM text for keys).
    Env(String),
}

/// Secret bytes: zeroized on drop, redacted in `Debug`.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret").finish_non_exhaustive()
    }
}

impl SecretSource {
    fn resolve(&mut self, base: &Path) {
        if let SecretSource::File(p) = self {
            *p = base.join(&*p);
        }
    }

    /// Reads the secret. `file` and `what` only label errors.
    pub fn load(&self, file: &Path, what: &'static str) -> Result<Secret, ConfigError> {
        let err = |reason: String| ConfigError::Secret {
            file: file.to_owned(),
            what,
            reason,
        };
        match self {
            SecretSource::File(p) => std::fs::read(p)
                .map(|b| Secret(Zeroizing::new(b)))
                .map_err(|e| err(format!("cannot read {}: {e}", p.display()))),
            SecretSource::Env(name) => std::env::var(name)
                .map(|v| Secret(Zeroizing::new(v.into_bytes())))
                .map_err(|_| err(format!("environment variable {name} is not set"))),
        }
    }
}

/// A person's role at their node.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Role {
    /// Submits joint computations under grants and receives results for recipients.
    Operator,
    /// Registers and classifies datasets, grants authorizations, sets budgets.
    DataManager,
    /// Reads and verifies the audit log.
    Auditor,
    /// Receives the results of jobs that name them as recipient; nothing else.
    Researcher,
}

impl Role {
    /// The name used in config files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::DataManager => "data-manager",
            Role::Auditor => "auditor",
            Role::Researcher => "researcher",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Who this node is and where it listens.
    pub node: NodeSection,
    /// Its TLS identity and the federation's trust anchor.
    pub tls: TlsSection,
    /// The audit log's signing key.
    pub audit: AuditSection,
    /// The secure-aggregation identity key (needed to contribute to `run aggregate`).
    #[serde(default)]
    pub secagg: Option<SecAggSection>,
    /// Peer nodes it talks to and answers.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// People who may reach it, with their roles.
    #[serde(default)]
    pub people: Vec<Person>,
    /// How grants are approved and what each field tier allows.
    #[serde(default)]
    pub policy: PolicySection,
    /// How large a job this node takes on.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The file this was read from.
    #[serde(skip)]
    pub file: PathBuf,
}

/// `[node]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Short name, e.g. `health`; peers list this node under it.
    pub name: String,
    /// Address to listen on, e.g. `127.0.0.1:7701` (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where the database lives (relative to the config file).
    pub data_dir: PathBuf,
}

/// `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM of the CA(s) that sign every node and person certificate of the federation.
    pub ca_cert: PathBuf,
    /// This node's certificate chain (PEM), used as server and as client towards peers.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: SecretSource,
    /// The identity (a DNS name in the certificate) this node presents.
    pub identity: String,
    /// Seconds a client has to complete the TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_seconds: u64,
}

fn default_handshake_timeout() -> u64 {
    10
}

/// `[audit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The Ed25519 signing key of the audit log: 32 bytes, hex-encoded.
    pub signing_key: SecretSource,
}

/// `[secagg]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecAggSection {
    /// This node's long-term X25519 identity key for secure aggregation: 32 bytes, hex-encoded.
    /// Its public half is listed as `secagg_key` in every peer's `[[peers]]` entry for this node:
    /// the envelopes two contributors exchange through the coordinator are keyed by their two
    /// identity keys, so the coordinator (which relays them) cannot open them. This is why the
    /// keys come from each node's own configuration and never from the coordinator.
    pub identity_key: SecretSource,
}

/// `[policy]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// How many of the node's data managers must approve a grant before it is active (m of n).
    #[serde(default = "default_approvals")]
    pub approvals: u32,
    /// `[policy.tiers]`: the uses each tier allows (see [`crate::policy`]).
    #[serde(default)]
    pub tiers: TierMatrix,
}

fn default_approvals() -> u32 {
    1
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            approvals: default_approvals(),
            tiers: TierMatrix::default(),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// The most keys a PSI or join holds on either side at this node: rows of its own dataset
    /// (for a query too, which holds its column), and keys a peer announces. A PSI party's
    /// memory grows with both (see the README's "Memory of a node"); a job over the limit is
    /// refused, before any budget is reserved when it is this node's own dataset, and the
    /// moment the peer announces its size otherwise.
    #[serde(default = "default_max_keys")]
    pub max_keys: u64,
    /// The most distinct keys of a PSI this node holds in memory at once. A PSI whose larger
    /// side declares more runs in that many hash buckets, its keys spilled to the data
    /// directory and each bucket padded to one size (`concord_mpc::psi::bucket`); both parties
    /// use the larger bucket count either needs.
    #[serde(default = "default_keys_per_bucket")]
    pub keys_per_bucket: u64,
}

/// About 2^20 keys a bucket: a few hundred MB a PSI party at most (see the README).
fn default_keys_per_bucket() -> u64 {
    1 << 20
}

/// 100 million keys a side: about 15 GB for one job at about 130 bytes a key pair (measured,
/// see the README).
fn default_max_keys() -> u64 {
    100_000_000
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_keys: default_max_keys(),
            keys_per_bucket: default_keys_per_bucket(),
        }
    }
}

/// `[[peers]]`: a node this one talks to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The peer's short name, e.g. `civil`.
    pub name: String,
    /// Where it listens, e.g. `127.0.0.1:7702`.
    pub address: String,
    /// The identity its certificate must carry, e.g. `node.civil.concord`.
    pub identity: String,
    /// The public half of the peer's secure-aggregation identity key (32 bytes, hex); needed to
    /// run an aggregate with it.
    #[serde(default)]
    pub secagg_key: Option<String>,
}

/// `[[people]]`: a person who may reach this node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// The identity their client certificate carries.
    pub identity: String,
    /// What they may do here.
    pub roles: BTreeSet<Role>,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        file: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

fn base_of(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_owned)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Whether `s` can be a certificate identity (a DNS name: labels of letters, digits and `-`).
pub fn is_identity(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

pub use crate::name::is_name;

impl NodeConfig {
    /// Reads and checks a node configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &read(path)?)
    }

    /// Checks a configuration given as text; `path` resolves relative paths and labels errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut config: NodeConfig = parse(path, text)?;
        config.file = path.to_owned();
        let base = base_of(path);
        config.node.data_dir = base.join(&config.node.data_dir);
        config.tls.ca_cert = base.join(&config.tls.ca_cert);
        config.tls.cert = base.join(&config.tls.cert);
        config.tls.key.resolve(&base);
        config.audit.signing_key.resolve(&base);
        if let Some(s) = config.secagg.as_mut() {
            s.identity_key.resolve(&base);
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            file: self.file.clone(),
            reason,
        };
        if !is_name(&self.node.name) {
            return Err(invalid(format!(
                "node.name {:?}: use 1-64 of a-z, 0-9, '_' and '-', starting with a letter",
                self.node.name
            )));
        }
        if self.tls.handshake_timeout_seconds == 0 {
            return Err(invalid(
                "tls.handshake_timeout_seconds must be at least 1".into(),
            ));
        }
        let mut identities = BTreeSet::new();
        let mut check_identity = |id: &str, whose: String| {
            if !is_identity(id) {
                return Err(invalid(format!(
                    "{whose}: identity {id:?} is not a DNS-style name"
                )));
            }
            if !identities.insert(id.to_owned()) {
                return Err(invalid(format!(
                    "{whose}: identity {id:?} is listed more than once"
                )));
            }
            Ok(())
        };
        check_identity(&self.tls.identity, "tls".into())?;
        let mut names = BTreeSet::from([self.node.name.clone()]);
        for peer in &self.peers {
            if !is_name(&peer.name) || !names.insert(peer.name.clone()) {
                return Err(invalid(format!(
                    "peer {:?}: the name is invalid or used twice (this node is {:?})",
                    peer.name, self.node.name
                )));
            }
            check_identity(&peer.identity, format!("peer {}", peer.name))?;
            if peer.address.trim().is_empty() {
                return Err(invalid(format!("peer {}: empty address", peer.name)));
            }
            if let Some(key) = &peer.secagg_key
                && crate::hex::decode_32(key).is_none()
            {
                return Err(invalid(format!(
                    "peer {}: secagg_key must be 32 bytes in hex (64 digits)",
                    peer.name
                )));
            }
        }
        for person in &self.people {
            check_identity(&person.identity, format!("person {}", person.identity))?;
            if person.roles.is_empty() {
                return Err(invalid(format!(
                    "person {}: no roles (use operator, data-manager or auditor)",
                    person.identity
                )));
            }
        }
        let managers = self
            .people
            .iter()
            .filter(|p| p.roles.contains(&Role::DataManager))
            .count();
        if self.policy.approvals == 0 || self.policy.approvals as usize > managers.max(1) {
            return Err(invalid(format!(
                "policy.approvals = {}: it must be between 1 and the number of data managers \
                 listed under [[people]] ({managers})",
                self.policy.approvals
            )));
        }
        self.policy
            .tiers
            .check()
            .map_err(|gap| invalid(gap.to_string()))?;
        if self.limits.keys_per_bucket < concord_mpc::psi::bucket::MIN_KEYS_PER_BUCKET {
            return Err(invalid(format!(
                "limits.keys_per_bucket = {}: a bucket must hold at least {} keys",
                self.limits.keys_per_bucket,
                concord_mpc::psi::bucket::MIN_KEYS_PER_BUCKET
            )));
        }
        if self.limits.max_keys == 0 {
            return Err(invalid(
                "limits.max_keys = 0: a PSI or join needs at least one key a side".into(),
            ));
        }
        Ok(())
    }

    /// This node's policy rules: the tier matrix and m of its current data managers.
    pub fn rules(&self) -> Rules {
        Rules {
            matrix: self.policy.tiers.clone(),
            approvals: Approvals {
                needed: self.policy.approvals,
                managers: self
                    .people
                    .iter()
                    .filter(|p| p.roles.contains(&Role::DataManager))
                    .map(|p| p.identity.clone())
                    .collect(),
            },
        }
    }

    /// The peer named `name`.
    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The database file.
    pub fn database_path(&self) -> PathBuf {
        self.node.data_dir.join("node.sqlite")
    }
}

/// How a person reaches their node: the CLI's `--profile` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The node's address, e.g. `127.0.0.1:7701`.
    pub node_address: String,
    /// The identity the node's certificate must carry.
    pub node_identity: String,
    /// The federation CA (PEM).
    pub ca_cert: PathBuf,
    /// The person's certificate (PEM).
    pub cert: PathBuf,
    /// The person's private key.
    pub key: SecretSource,
    /// The file this was read from.
    #[serde(skip)]
    pub file: PathBuf,
}

impl Profile {
    /// Reads a profile.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut profile: Profile = parse(path, &read(path)?)?;
        profile.file = path.to_owned();
        let base = base_of(path);
        profile.ca_cert = base.join(&profile.ca_cert);
        profile.cert = base.join(&profile.cert);
        profile.key.resolve(&base);
        if !is_identity(&profile.node_identity) {
            return Err(ConfigError::Invalid {
                file: path.to_owned(),
                reason: format!(
                    "node_identity {:?} is not a DNS-style name",
                    profile.node_identity
                ),
            });
        }
        Ok(profile)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[node]
name = "health"
listen = "127.0.0.1:0"
data_dir = "data"

[tls]
ca_cert = "ca.pem"
cert = "node.pem"
key = { file = "node.key" }
identity = "node.health.concord"

[audit]
signing_key = { env = "CONCORD_AUDIT_KEY" }

[[peers]]
name = "civil"
address = "127.0.0.1:7702"
identity = "node.civil.concord"

[[people]]
identity = "manager.health.concord"
roles = ["data-manager", "auditor"]
"#;

    #[test]
    fn the_documented_sample_loads() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/node.sample.toml");
        let config = NodeConfig::load(&sample).unwrap();
        assert_eq!(config.node.name, "health");
        assert!(!config.peers.is_empty());
        assert!(
            config
                .people
                .iter()
                .any(|p| p.roles.contains(&Role::DataManager))
        );
        assert!(config.tls.ca_cert.ends_with("ca.pem"));
        let rules = config.rules();
        assert_eq!(rules.approvals.needed, 2);
        assert_eq!(rules.approvals.managers.len(), 2);
        assert_eq!(rules.matrix, TierMatrix::default());
        assert_eq!(config.limits.max_keys, 100_000_000);
        assert_eq!(config.limits.keys_per_bucket, 1 << 20);
    }

    #[test]
    fn policy_needs_m_of_the_listed_managers_and_a_monotone_matrix() {
        let parse =
            |extra: &str| NodeConfig::parse(Path::new("node.toml"), &format!("{MINIMAL}{extra}"));
        assert_eq!(parse("").unwrap().rules().approvals.needed, 1);
        assert_eq!(parse("").unwrap().limits.max_keys, 100_000_000);
        assert_eq!(parse("").unwrap().limits.keys_per_bucket, 1 << 20);
        let err = parse("[limits]\nkeys_per_bucket = 100\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 1024 keys"), "{err}");
        assert_eq!(
            parse("[limits]\nmax_keys = 5000\n")
                .unwrap()
                .limits
                .max_keys,
            5000
        );
        for (extra, says) in [
            (
                "[policy]\napprovals = 2\n",
                "policy.approvals = 2: it must be between 1 and the number of data managers listed under [[people]] (1)",
            ),
            ("[policy]\napprovals = 0\n", "policy.approvals = 0"),
            ("[limits]\nmax_keys = 0\n", "limits.max_keys = 0"),
            (
                "[policy.tiers]\ninternal = [\"dp-value\"]\n",
                "sensitive allows dp-group but internal does not",
            ),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
        let err = parse("[policy.tiers]\nrestricted = [\"dp-value\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `restricted`"), "{err}");
    }

    #[test]
    fn resolves_paths_against_the_file_and_never_prints_secrets() {
        let config = NodeConfig::parse(Path::new("/etc/concord/node.toml"), MINIMAL).unwrap();
        assert_eq!(config.node.data_dir, Path::new("/etc/concord/data"));
        assert_eq!(
            config.tls.key,
            SecretSource::File("/etc/concord/node.key".into())
        );
        assert_eq!(config.people[0].roles.len(), 2);
        let secret = Secret(Zeroizing::new(b"-----BEGIN PRIVATE KEY-----".to_vec()));
        assert_eq!(format!("{secret:?}"), "Secret { .. }");
    }

    #[test]
    fn refuses_unknown_keys_with_the_line() {
        let text = MINIMAL.replace(
            "data_dir = \"data\"",
            "data_dir = \"data\"\nlisten_all = true",
        );
        let err = NodeConfig::parse(Path::new("node.toml"), &text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("node.toml: "), "{msg}");
        assert!(msg.contains("line 6"), "{msg}");
        assert!(msg.contains("listen_all"), "{msg}");
    }

    #[test]
    fn refuses_impossible_settings() {
        for (from, to, expect) in [
            ("name = \"health\"", "name = \"Health Dept\"", "node.name"),
            (
                "roles = [\"data-manager\", \"auditor\"]",
                "roles = []",
                "no roles",
            ),
            (
                "roles = [\"data-manager\", \"auditor\"]",
                "roles = [\"root\"]",
                "unknown variant",
            ),
            (
                "identity = \"node.civil.concord\"",
                "identity = \"node.health.concord\"",
                "more than once",
            ),
            ("name = \"civil\"", "name = \"health\"", "used twice"),
            (
                "identity = \"manager.health.concord\"",
                "identity = \"bad identity\"",
                "DNS-style",
            ),
        ] {
            let text = MINIMAL.replace(from, to);
            let err = NodeConfig::parse(Path::new("node.toml"), &text).unwrap_err();
            assert!(err.to_string().contains(expect), "{to}: {err}");
        }
    }

    #[test]
    fn secrets_come_from_files_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        std::fs::write(&file, b"secret bytes").unwrap();
        let s = SecretSource::File(file)
            .load(Path::new("c.toml"), "tls key")
            .unwrap();
        assert_eq!(s.expose(), b"secret bytes");
        let err = SecretSource::Env("CONCORD_TEST_SURELY_UNSET_VARIABLE".into())
            .load(Path::new("c.toml"), "tls key")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml: secret tls key: environment variable CONCORD_TEST_SURELY_UNSET_VARIABLE is not set"
        );
    }
}
