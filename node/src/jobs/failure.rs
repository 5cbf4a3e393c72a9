//! How a job ended without release, and how that travels between its parties.

use concord_proto::v1 as pb;

use crate::jobs::table::State;

/// How a job ended without release, at the node that reports it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) cancelled: bool,
    /// The node that refused or failed (this node's own name for its own failures).
    pub(crate) at: String,
    pub(crate) reason: String,
    /// The policy refusal behind it, if any: its stable code and its bare reason.
    pub(crate) refusal: Option<(&'static str, String)>,
}

impl Failure {
    pub(crate) fn at(node: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            cancelled: false,
            at: node.to_owned(),
            reason: reason.to_string(),
            refusal: None,
        }
    }

    /// The abort that tells the other parties of this failure: its reason is `node: reason`,
    /// which [`Failure::aborted`] reads back.
    pub(crate) fn abort(&self) -> pb::Abort {
        pb::Abort {
            reason: format!("{}: {}", self.at, self.reason),
            cancelled: self.cancelled,
        }
    }

    /// How a peer's abort ends the job here. Its sender writes the reason as `node: reason`
    /// ([`Failure::abort`]); the job failed at that node when it is one of `parties`, else at
    /// the sender.
    pub(crate) fn aborted(sender: &str, parties: &[impl AsRef<str>], abort: pb::Abort) -> Self {
        let (at, reason) = match abort.reason.split_once(": ") {
            Some((at, reason)) if parties.iter().any(|p| p.as_ref() == at) => {
                (at, reason.to_owned())
            }
            _ => (sender, abort.reason),
        };
        Self {
            cancelled: abort.cancelled,
            ..Self::at(at, reason)
        }
    }

    /// The state the job ends in: cancelled or failed.
    pub(crate) fn state(&self) -> State {
        if self.cancelled {
            State::Cancelled
        } else {
            State::Failed
        }
    }

    /// The last progress event's message: the state, where, and why.
    pub(crate) fn message(&self) -> String {
        format!("{} at {}: {}", self.state().as_str(), self.at, self.reason)
    }

    /// The answer that tells a coordinator why this node said no: the refusal's code and
    /// reason, or `refused` and the whole reason.
    pub(crate) fn decision(&self) -> pb::ProposalDecision {
        let (code, reason) = match &self.refusal {
            Some((code, reason)) => ((*code).to_owned(), reason.clone()),
            None => ("refused".to_owned(), self.reason.clone()),
        };
        pb::ProposalDecision {
            accepted: false,
            code,
            reason,
            input: None,
            buckets: 0,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn an_abort_names_the_party_it_failed_at_once() {
        let parties = ["health".to_owned(), "civil".to_owned(), "stats".to_owned()];
        let abort = |reason: &str, cancelled| pb::Abort {
            reason: reason.into(),
            cancelled,
        };
        let f = Failure::aborted("health", &parties, abort("health: cancelled by op", true));
        assert_eq!(
            (f.state(), f.message().as_str()),
            (State::Cancelled, "cancelled at health: cancelled by op")
        );
        // A third party the coordinator names keeps the blame; anything else stays the sender's.
        let f = Failure::aborted("health", &parties, abort("stats: gone: reset", false));
        assert_eq!(f.message(), "failed at stats: gone: reset");
        let f = Failure::aborted("health", &parties, abort("mallory: x", false));
        assert_eq!(f.message(), "failed at health: mallory: x");
        let f = Failure::aborted("civil", &parties, abort("no colon", false));
        assert_eq!(f.message(), "failed at civil: no colon");
    }
}
