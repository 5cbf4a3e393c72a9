//! Mutual TLS: the node's server configuration, its client configuration towards peers, and
//! mapping a verified client certificate to a caller (a peer node or a person with roles).
//!
//! Every connection is TLS 1.3 with a client certificate that chains to the federation CA named
//! in the config; rustls (ring provider) checks the chain during the handshake, so a certificate
//! from any other CA never reaches a handler. The handler then maps the certificate to an
//! identity: the DNS names in its subject alternative names are matched against the peers and
//! people listed in the config. A certificate that chains to the CA but names nobody listed is
//! an unknown caller and is refused.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest as _, Sha256};

use crate::config::{NodeConfig, Role};

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file is missing, unreadable or not PEM.
    #[error("{file}: {reason}")]
    Pem {
        /// The file (or the secret's description).
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the combination (for example a key that does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::Pem {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse_certs(&pem, &path.display().to_string())
}

/// Parses every certificate in PEM text. `label` names where it came from in errors.
pub fn parse_certs(pem: &[u8], label: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Pem {
        file: label.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}

/// Parses a PEM private key held as a secret. `label` names where it came from in errors.
pub fn parse_key(pem: &[u8], label: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        file: label.to_owned(),
        reason: format!("not a PEM private key ({e})"),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: TLS 1.3 only, client certificates required and chained to `ca`, ALPN h2.
pub fn server_config(
    ca: &[CertificateDer<'static>],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let rustls_err = |e: rustls::Error| TlsError::Rustls(e.to_string());
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert.clone()).map_err(rustls_err)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(rustls_err)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Who is calling, as this node's config says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caller {
    /// A peer node listed in `[[peers]]`.
    Peer {
        /// Its short name.
        name: String,
        /// Its certificate identity.
        identity: String,
    },
    /// A person listed in `[[people]]`.
    Person {
        /// Their certificate identity.
        identity: String,
        /// Their roles here.
        roles: Vec<Role>,
    },
    /// A certificate from the federation CA that names nobody this node knows.
    Unknown {
        /// `sha256:` and the first 16 hex digits of the certificate's SHA-256.
        fingerprint: String,
    },
}

impl Caller {
    /// How the audit log names the caller.
    pub fn audit_name(&self) -> String {
        match self {
            Caller::Peer { identity, .. } | Caller::Person { identity, .. } => identity.clone(),
            Caller::Unknown { fingerprint } => format!("unknown certificate {fingerprint}"),
        }
    }

    /// The roles a person holds (none for peers and unknown callers).
    pub fn roles(&self) -> &[Role] {
        match self {
            Caller::Person { roles, .. } => roles,
            _ => &[],
        }
    }
}

/// Maps the end-entity certificate of a verified connection to a caller.
pub fn identify(config: &NodeConfig, cert: &CertificateDer<'_>) -> Caller {
    let fingerprint = || {
        let digest = Sha256::digest(cert.as_ref());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Caller::Unknown {
            fingerprint: format!("sha256:{hex}"),
        }
    };
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return fingerprint();
    };
    let names = |id: &str| {
        ServerName::try_from(id.to_owned())
            .is_ok_and(|name| ee.verify_is_valid_for_subject_name(&name).is_ok())
    };
    let mut found = Vec::new();
    for peer in &config.peers {
        if names(&peer.identity) {
            found.push(Caller::Peer {
                name: peer.name.clone(),
                identity: peer.identity.clone(),
            });
        }
    }
    for person in &config.people {
        if names(&person.identity) {
            found.push(Caller::Person {
                identity: person.identity.clone(),
                roles: person.roles.iter().copied().collect(),
            });
        }
    }
    // A certificate naming two listed identities is ambiguous: treat it as nobody.
    match <[Caller; 1]>::try_from(found) {
        Ok([caller]) => caller,
        Err(_) => fingerprint(),
    }
}
