//! Who may call what: every RPC identifies its caller from the client certificate, checks the
//! roles it admits, and audits its outcome, accepted or refused.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::audit::Outcome;
use crate::config::Role;
use crate::error::NodeError;
use crate::node::{Node, record};
use crate::tls::{self, Caller};

/// Which callers an RPC admits.
#[derive(Clone, Copy)]
pub(crate) enum Admit {
    /// People holding any of these roles.
    People(&'static [Role]),
    /// Peer nodes listed in the config.
    Peers,
}

impl Node {
    /// Identifies the caller of `req` and checks it may call `action`. A refusal is audited.
    pub(crate) async fn admit<T>(
        self: &Arc<Self>,
        req: &Request<T>,
        action: &str,
        admit: Admit,
    ) -> Result<Caller, Status> {
        let caller = match req.peer_certs().as_deref().and_then(|c| c.first()) {
            Some(cert) => tls::identify(&self.config, cert),
            None => Caller::Unknown {
                fingerprint: "none".into(),
            },
        };
        let refusal = match (&caller, admit) {
            (Caller::Unknown { .. }, _) => Some(NodeError::Unknown(
                "this node does not know your certificate's identity".into(),
            )),
            (Caller::Person { roles, .. }, Admit::People(allowed)) => {
                (!roles.iter().any(|r| allowed.contains(r))).then(|| {
                    let need: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
                    let have: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                    NodeError::Forbidden(format!(
                        "{action} needs the role {} (you hold {})",
                        need.join(" or "),
                        have.join(", ")
                    ))
                })
            }
            (Caller::Peer { .. }, Admit::People(_)) => Some(NodeError::Forbidden(format!(
                "{action} is for this node's people, not for peer nodes"
            ))),
            (Caller::Person { .. }, Admit::Peers) => Some(NodeError::Forbidden(format!(
                "{action} is for peer nodes only"
            ))),
            (Caller::Peer { .. }, Admit::Peers) => None,
        };
        match refusal {
            None => Ok(caller),
            Some(err) => {
                let entry = record(
                    caller.audit_name(),
                    action,
                    Vec::new(),
                    Outcome::Refused,
                    err.to_string(),
                );
                self.audit(entry).await?;
                Err(err.into())
            }
        }
    }

    /// Audits the outcome of an admitted request and passes it on.
    pub(crate) async fn finish<T>(
        self: &Arc<Self>,
        caller: &Caller,
        action: &str,
        subjects: Vec<String>,
        result: Result<(T, String), NodeError>,
    ) -> Result<T, Status> {
        self.finish_under(caller, action, None, subjects, result)
            .await
    }

    /// [`Node::finish`] for a request that concerns a grant, named in the audit entry.
    pub(crate) async fn finish_under<T>(
        self: &Arc<Self>,
        caller: &Caller,
        action: &str,
        grant: Option<String>,
        subjects: Vec<String>,
        result: Result<(T, String), NodeError>,
    ) -> Result<T, Status> {
        let (outcome, detail, out) = match result {
            Ok((value, detail)) => (Outcome::Accepted, detail, Ok(value)),
            Err(err) => (Outcome::Refused, err.to_string(), Err(err)),
        };
        let mut entry = record(caller.audit_name(), action, subjects, outcome, detail);
        entry.grant = grant;
        self.audit(entry).await?;
        out.map_err(Status::from)
    }
}
