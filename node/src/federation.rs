//! `concord federation init`: a **trial** federation in one directory: a CA, a certificate and
//! config for every node, and a certificate and CLI profile for each node's data manager,
//! operator, auditor and researcher.
//!
//! For trials and demos only. A real deployment takes its certificates from the institutions'
//! PKI and writes its configs by hand (see `docs/node.sample.toml`). The trial CA's private key
//! is not written anywhere: nothing more can be signed by it after `init` returns, so a copied
//! trial directory cannot be used to mint new identities.
//!
//! ```text
//! DIR/TRIAL-ONLY.txt         what this is, and what not to use it for
//! DIR/ca.pem                 the federation's trust anchor
//! DIR/<node>/node.toml       the node's config (peers = every other node)
//! DIR/<node>/node.pem|.key   its TLS identity `node.<node>.concord`
//! DIR/<node>/audit.key|.pub  its audit-log signing key (hex Ed25519 seed) and public key
//! DIR/<node>/secagg.key|.pub its secure-aggregation identity key (hex X25519), whose public
//!                            half every other node's config lists under its `[[peers]]` entry
//! DIR/<node>/<role>.toml     a CLI profile (`--profile`) for manager, operator, auditor, researcher
//! DIR/<node>/<role>.pem|.key the person's identity `<role>.<node>.concord`
//! ```

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use rand::CryptoRng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::audit::NodeKey;
use crate::config::Role;
use crate::hex::encode as hex;

/// Days a trial certificate is valid.
pub const TRIAL_DAYS: i64 = 365;

/// The people `init` creates at every node, with the role each holds.
pub const PEOPLE: [(&str, Role); 4] = [
    ("manager", Role::DataManager),
    ("operator", Role::Operator),
    ("auditor", Role::Auditor),
    ("researcher", Role::Researcher),
];

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The request is impossible.
    #[error("{0}")]
    Invalid(String),
    /// Refusing to overwrite an existing federation.
    #[error("{0} already exists; choose another --out or remove it")]
    Exists(PathBuf),
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// What `init` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federation {
    /// The output directory.
    pub dir: PathBuf,
    /// Each node: its name, address, and config file.
    pub nodes: Vec<(String, SocketAddr, PathBuf)>,
}

/// The identity of node `name`.
pub fn node_identity(name: &str) -> String {
    format!("node.{name}.concord")
}

fn write(path: &Path, contents: &[u8], secret: bool) -> Result<(), InitError> {
    let io = |source| InitError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::write(path, contents).map_err(io)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

fn validity(params: &mut CertificateParams, now_ms: i64) -> Result<(), InitError> {
    let now = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .map_err(|e| InitError::Invalid(format!("clock out of range: {e}")))?;
    // A little slack for clocks that differ between machines.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(TRIAL_DAYS);
    Ok(())
}

fn leaf(
    identity: &str,
    issuer: &Issuer<'_, KeyPair>,
    server: bool,
    now_ms: i64,
) -> Result<(String, String), InitError> {
    let mut params = CertificateParams::new(vec![identity.to_owned()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity);
    dn.push(DnType::OrganizationName, "Concord trial federation");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if server {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now_ms)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a trial federation of `nodes` into `out` (which must not exist), node `i` listening on
/// `host:(base_port + i)`.
pub fn init<R: CryptoRng + ?Sized>(
    out: &Path,
    nodes: &[String],
    host: IpAddr,
    base_port: u16,
    now_ms: i64,
    rng: &mut R,
) -> Result<Federation, InitError> {
    if nodes.len() < 2 {
        return Err(InitError::Invalid(
            "a federation needs at least two nodes (--nodes a,b)".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for n in nodes {
        if !crate::config::is_name(n) || !seen.insert(n) {
            return Err(InitError::Invalid(format!(
                "node name {n:?} is invalid or repeated: use 1-64 of a-z, 0-9, '_' and '-', starting with a letter"
            )));
        }
    }
    if usize::from(base_port) + nodes.len() > usize::from(u16::MAX) + 1 || base_port == 0 {
        return Err(InitError::Invalid(format!(
            "--base-port {base_port} leaves no room for {} nodes",
            nodes.len()
        )));
    }
    if out.exists() {
        return Err(InitError::Exists(out.to_owned()));
    }
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| InitError::Io {
            path: p.to_owned(),
            source,
        })
    };
    mkdir(out)?;

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Concord TRIAL CA (not for production)");
    dn.push(DnType::OrganizationName, "Concord trial federation");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca_params, now_ms)?;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    write(&out.join("ca.pem"), ca_cert.pem().as_bytes(), false)?;
    write(
        &out.join("TRIAL-ONLY.txt"),
        format!(
            "This directory is a TRIAL Concord federation made by `concord federation init`.\n\
             Its certificates expire after {TRIAL_DAYS} days and its CA key was discarded.\n\
             Private keys (*.key) are stored unencrypted: do not use any of it with real data.\n\
             Start a node:  concord node start --config <node>/node.toml\n\
             Reach a node:  concord node health --profile <node>/<role>.toml\n"
        )
        .as_bytes(),
        false,
    )?;

    let addr = |i: usize| SocketAddr::new(host, base_port + i as u16);
    // Secure-aggregation identity keys first: every config lists every peer's public key.
    let mut secagg = Vec::with_capacity(nodes.len());
    for _ in nodes {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        let public = concord_mpc::secagg::IdentityKey::from_bytes(*seed).public();
        secagg.push((seed, hex(&public.to_bytes())));
    }
    let mut written = Vec::new();
    for (i, name) in nodes.iter().enumerate() {
        let dir = out.join(name);
        mkdir(&dir)?;
        let identity = node_identity(name);
        let (cert, key) = leaf(&identity, &issuer, true, now_ms)?;
        write(&dir.join("node.pem"), cert.as_bytes(), false)?;
        write(&dir.join("node.key"), key.as_bytes(), true)?;
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        let audit_key = NodeKey::from_seed(&seed);
        write(
            &dir.join("audit.key"),
            format!("{}\n", hex(seed.as_ref())).as_bytes(),
            true,
        )?;
        write(
            &dir.join("audit.pub"),
            format!("{}\n", hex(audit_key.verifying_key().as_bytes())).as_bytes(),
            false,
        )?;

        let (secagg_seed, secagg_public) = &secagg[i];
        write(
            &dir.join("secagg.key"),
            format!("{}\n", hex(secagg_seed.as_ref())).as_bytes(),
            true,
        )?;
        write(
            &dir.join("secagg.pub"),
            format!("{secagg_public}\n").as_bytes(),
            false,
        )?;

        let mut config = format!(
            "# Concord node {name:?}: TRIAL configuration written by `concord federation init`.\n\
             # Documented in docs/node.sample.toml. Start it: concord node start --config node.toml\n\n\
             [node]\nname = \"{name}\"\nlisten = \"{}\"\ndata_dir = \"data\"\n\n\
             [tls]\nca_cert = \"../ca.pem\"\ncert = \"node.pem\"\nkey = {{ file = \"node.key\" }}\n\
             identity = \"{identity}\"\n\n\
             [audit]\nsigning_key = {{ file = \"audit.key\" }}\n\n\
             [secagg]\nidentity_key = {{ file = \"secagg.key\" }}\n",
            addr(i)
        );
        for (j, peer) in nodes.iter().enumerate() {
            if j != i {
                let _ = write!(
                    config,
                    "\n[[peers]]\nname = \"{peer}\"\naddress = \"{}\"\nidentity = \"{}\"\n\
                     secagg_key = \"{}\"\n",
                    addr(j),
                    node_identity(peer),
                    secagg[j].1
                );
            }
        }
        for (person, role) in PEOPLE {
            let person_id = format!("{person}.{name}.concord");
            let _ = write!(
                config,
                "\n[[people]]\nidentity = \"{person_id}\"\nroles = [\"{role}\"]\n"
            );
            let (cert, key) = leaf(&person_id, &issuer, false, now_ms)?;
            write(&dir.join(format!("{person}.pem")), cert.as_bytes(), false)?;
            write(&dir.join(format!("{person}.key")), key.as_bytes(), true)?;
            let profile = format!(
                "# CLI profile of {person_id} ({role}) at node {name:?}: TRIAL.\n\
                 # Use it: concord <command> --profile {person}.toml (or set CONCORD_PROFILE)\n\
                 node_address = \"{}\"\nnode_identity = \"{identity}\"\n\
                 ca_cert = \"../ca.pem\"\ncert = \"{person}.pem\"\nkey = {{ file = \"{person}.key\" }}\n",
                addr(i)
            );
            write(
                &dir.join(format!("{person}.toml")),
                profile.as_bytes(),
                false,
            )?;
        }
        let config_path = dir.join("node.toml");
        write(&config_path, config.as_bytes(), false)?;
        written.push((name.clone(), addr(i), config_path));
    }
    Ok(Federation {
        dir: out.to_owned(),
        nodes: written,
    })
}

/// Parses the hex Ed25519 seed of an audit key file (surrounding whitespace allowed).
pub fn parse_audit_seed(text: &[u8]) -> Option<zeroize::Zeroizing<[u8; 32]>> {
    let text = std::str::from_utf8(text).ok()?;
    crate::hex::decode_32(text).map(zeroize::Zeroizing::new)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::{NodeConfig, Profile, Role};
    use rand::SeedableRng as _;

    #[test]
    fn writes_configs_that_load_and_certificates_that_name_their_holders() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("fed");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let names = vec!["health".to_owned(), "civil".to_owned(), "stats".to_owned()];
        let now = 1_790_000_000_000;
        let fed = init(
            &out,
            &names,
            "127.0.0.1".parse().unwrap(),
            7701,
            now,
            &mut rng,
        )
        .unwrap();
        assert_eq!(fed.nodes.len(), 3);
        let config = NodeConfig::load(&out.join("civil/node.toml")).unwrap();
        assert_eq!(config.node.listen, "127.0.0.1:7702".parse().unwrap());
        let peers: Vec<_> = config.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(peers, ["health", "stats"]);
        assert_eq!(config.people.len(), 4);
        assert!(config.people[0].roles.contains(&Role::DataManager));

        let profile = Profile::load(&out.join("civil/operator.toml")).unwrap();
        assert_eq!(profile.node_identity, "node.civil.concord");
        let cert = &crate::tls::load_certs(&profile.cert).unwrap()[0];
        let caller = crate::tls::identify(&config, cert);
        assert_eq!(
            caller,
            crate::tls::Caller::Person {
                identity: "operator.civil.concord".into(),
                roles: vec![Role::Operator]
            }
        );
        // The health node's certificate is a peer to civil; civil's own is nobody to civil.
        let health = &crate::tls::load_certs(&out.join("health/node.pem")).unwrap()[0];
        assert!(
            matches!(crate::tls::identify(&config, health), crate::tls::Caller::Peer { name, .. } if name == "health")
        );
        let own = &crate::tls::load_certs(&out.join("civil/node.pem")).unwrap()[0];
        assert!(matches!(
            crate::tls::identify(&config, own),
            crate::tls::Caller::Unknown { .. }
        ));

        let seed = std::fs::read(out.join("civil/audit.key")).unwrap();
        let key = NodeKey::from_seed(&parse_audit_seed(&seed).unwrap());
        let public = std::fs::read_to_string(out.join("civil/audit.pub")).unwrap();
        assert_eq!(public.trim(), hex(key.verifying_key().as_bytes()));

        let again = init(
            &out,
            &names,
            "127.0.0.1".parse().unwrap(),
            7701,
            now,
            &mut rng,
        );
        assert!(matches!(again, Err(InitError::Exists(_))));
    }

    #[test]
    fn refuses_bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ip = "127.0.0.1".parse().unwrap();
        let one = vec!["health".to_owned()];
        assert!(init(&dir.path().join("a"), &one, ip, 7701, 0, &mut rng).is_err());
        let dup = vec!["health".to_owned(), "health".to_owned()];
        assert!(init(&dir.path().join("b"), &dup, ip, 7701, 0, &mut rng).is_err());
        let two = vec!["a".to_owned(), "b".to_owned()];
        assert!(init(&dir.path().join("c"), &two, ip, 65535, 0, &mut rng).is_err());
        assert!(parse_audit_seed(b"zz").is_none());
        assert!(parse_audit_seed(&[b'0'; 64]).is_some());
    }
}
