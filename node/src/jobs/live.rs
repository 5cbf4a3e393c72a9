//! The live side of the jobs running at this node: progress that `Jobs.Watch` streams, the
//! cancel switch, and the proposals a participant is deciding.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use concord_proto::v1 as pb;
use tokio::sync::watch;

use crate::jobs::table::State;

/// A running job's live side: its progress, which `Jobs.Watch` streams, and its cancel switch.
pub(crate) struct Handle {
    events: watch::Sender<pb::JobEvent>,
    /// This node coordinates the job, so a cancel here stops it. A participant's handle only
    /// shows progress: the job is cancelled at its coordinator.
    coordinated: bool,
    /// Who cancelled the job, once someone has.
    cancel: watch::Sender<Option<String>>,
    /// The job has begun its release (a peer may commit its budget): too late to cancel. Taken
    /// together with `cancel`, so a job is either cancelled or releasing, never both.
    releasing: Mutex<bool>,
}

/// Who cancelled a job (a person's name, or the coordinator's).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CancelledBy(pub(crate) String);

/// What a cancel request did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CancelOutcome {
    /// The job stops.
    Requested,
    /// The job is not running at this node as its coordinator.
    NotHere,
    /// The job is releasing: its parties are committing their budget.
    TooLate,
}

impl Handle {
    /// Reports progress (sync: callable from protocol threads).
    pub(crate) fn report(&self, state: State, phase: &str, done: u64, total: u64, message: &str) {
        self.events.send_modify(|e| {
            e.state = state.as_str().into();
            e.phase = phase.into();
            e.done = done;
            e.total = total;
            e.message = message.into();
        });
    }

    /// Marks the start of the release, after which a cancel is refused; fails with who
    /// cancelled the job if someone already has.
    pub(crate) fn begin_release(&self) -> Result<(), CancelledBy> {
        let mut releasing = self
            .releasing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(by) = self.cancel.borrow().clone() {
            return Err(CancelledBy(by));
        }
        *releasing = true;
        Ok(())
    }

    /// Completes when the job is cancelled, with who cancelled it.
    pub(crate) async fn cancelled(&self) -> String {
        let mut rx = self.cancel.subscribe();
        loop {
            let by = rx.borrow_and_update().clone();
            if let Some(by) = by {
                return by;
            }
            if rx.changed().await.is_err() {
                // The sender is gone, which cannot happen while `self` lives.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The live handles of the jobs running at this node, by id: those it coordinates and those it
/// takes part in (whose handles show progress but cannot cancel).
#[derive(Default)]
pub(crate) struct Live {
    jobs: Mutex<HashMap<String, Arc<Handle>>>,
    proposals: Mutex<Proposals>,
}

/// At a participant: the proposals being decided, and the jobs a coordinator ended before this
/// node had decided (or even seen) their proposal, each as (coordinator, job id).
#[derive(Default)]
struct Proposals {
    deciding: HashSet<(String, String)>,
    /// The newest last, at most [`WITHDRAWN_KEPT`].
    withdrawn: VecDeque<(String, String)>,
}

/// Withdrawals remembered. A proposal that arrives only after this many later withdrawals is
/// accepted as usual, and the coordinator's silence then ends it after the idle timeout.
pub(super) const WITHDRAWN_KEPT: usize = 1024;

/// A proposal being decided at this participant; dropping it ends the decision.
pub(crate) struct Deciding<'a> {
    live: &'a Live,
    key: (String, String),
}

impl Deciding<'_> {
    /// Ends the decision: true if the coordinator ended the job meanwhile (its abort came
    /// before this node had recorded the job as authorized).
    pub(crate) fn withdrawn(self) -> bool {
        let mut p = self.live.proposals();
        p.deciding.remove(&self.key);
        p.withdrawn.contains(&self.key)
    }
}

impl Drop for Deciding<'_> {
    fn drop(&mut self) {
        self.live.proposals().deciding.remove(&self.key);
    }
}

impl Live {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Handle>>> {
        // Every critical section is a single map operation: a poisoned lock holds a valid map.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn proposals(&self) -> std::sync::MutexGuard<'_, Proposals> {
        // As above: each critical section leaves both collections valid.
        self.proposals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts deciding `coordinator`'s proposal of job `id`; `None` if the coordinator has
    /// already ended that job.
    pub(crate) fn decide(&self, coordinator: &str, id: &str) -> Option<Deciding<'_>> {
        let key = (coordinator.to_owned(), id.to_owned());
        let mut p = self.proposals();
        if p.withdrawn.contains(&key) {
            return None;
        }
        p.deciding.insert(key.clone());
        Some(Deciding { live: self, key })
    }

    /// Records that `coordinator` ended job `id` before it reached its exchange here. True if
    /// its proposal is being decided right now (the decision then sees this and ends the job);
    /// false if it is yet to come (it will be refused) or already decided (read the job).
    pub(crate) fn withdraw(&self, coordinator: &str, id: &str) -> bool {
        let key = (coordinator.to_owned(), id.to_owned());
        let mut p = self.proposals();
        let deciding = p.deciding.contains(&key);
        if !p.withdrawn.contains(&key) {
            if p.withdrawn.len() == WITHDRAWN_KEPT {
                p.withdrawn.pop_front();
            }
            p.withdrawn.push_back(key);
        }
        deciding
    }

    /// The handle of a job this node coordinates.
    pub(crate) fn register(&self, id: &str) -> Arc<Handle> {
        self.insert(id, true, State::Submitted, "submitted")
    }

    /// The handle of a job this node takes part in, from the opening of its exchange.
    pub(crate) fn observe(&self, id: &str) -> Arc<Handle> {
        self.insert(id, false, State::Running, "exchanging")
    }

    fn insert(&self, id: &str, coordinated: bool, state: State, phase: &str) -> Arc<Handle> {
        let (events, _) = watch::channel(pb::JobEvent {
            job_id: id.into(),
            state: state.as_str().into(),
            phase: phase.into(),
            ..Default::default()
        });
        let (cancel, _) = watch::channel(None);
        let handle = Arc::new(Handle {
            events,
            coordinated,
            cancel,
            releasing: Mutex::new(false),
        });
        self.map().insert(id.to_owned(), Arc::clone(&handle));
        handle
    }

    pub(crate) fn subscribe(&self, id: &str) -> Option<watch::Receiver<pb::JobEvent>> {
        self.map().get(id).map(|h| h.events.subscribe())
    }

    /// Asks a live job to stop on behalf of `by`, unless it is already releasing.
    pub(crate) fn cancel(&self, id: &str, by: &str) -> CancelOutcome {
        let Some(h) = self.map().get(id).cloned().filter(|h| h.coordinated) else {
            return CancelOutcome::NotHere;
        };
        let releasing = h.releasing.lock().unwrap_or_else(PoisonError::into_inner);
        if *releasing {
            return CancelOutcome::TooLate;
        }
        h.cancel.send_replace(Some(by.to_owned()));
        CancelOutcome::Requested
    }

    pub(crate) fn remove(&self, id: &str) {
        self.map().remove(id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_either_cancelled_or_releasing_never_both() {
        let live = Live::default();
        assert_eq!(live.cancel("job-x", "op"), CancelOutcome::NotHere);
        let releasing = live.register("job-a");
        releasing.begin_release().unwrap();
        assert_eq!(live.cancel("job-a", "op"), CancelOutcome::TooLate);
        let cancelled = live.register("job-b");
        assert_eq!(live.cancel("job-b", "op"), CancelOutcome::Requested);
        assert_eq!(
            cancelled.begin_release().unwrap_err(),
            CancelledBy("op".into())
        );
    }

    #[test]
    fn a_participants_handle_streams_progress_but_cannot_cancel() {
        let live = Live::default();
        let handle = live.observe("job-p");
        let mut events = live.subscribe("job-p").unwrap();
        assert_eq!(events.borrow_and_update().phase, "exchanging");
        handle.report(State::Running, "exchanging", 40, 100, "");
        let event = events.borrow_and_update().clone();
        assert_eq!(
            (event.state.as_str(), event.done, event.total),
            ("running", 40, 100)
        );
        assert_eq!(live.cancel("job-p", "op"), CancelOutcome::NotHere);
        assert!(handle.cancel.borrow().is_none());
        live.remove("job-p");
        assert!(live.subscribe("job-p").is_none());
    }

    #[test]
    fn a_job_ended_before_its_proposal_was_decided_is_never_left_authorized() {
        let live = Live::default();
        // The abort while the proposal is decided: the decision sees it.
        let deciding = live.decide("health", "job-a").unwrap();
        assert!(live.withdraw("health", "job-a"));
        assert!(deciding.withdrawn());
        // The abort before the proposal: the proposal is refused, from that coordinator only.
        assert!(!live.withdraw("health", "job-b"));
        assert!(live.decide("health", "job-b").is_none());
        assert!(!live.decide("stats", "job-b").unwrap().withdrawn());
        // The abort after the decision: the exchange reads the job (not "deciding" any more).
        assert!(!live.decide("health", "job-c").unwrap().withdrawn());
        assert!(!live.withdraw("health", "job-c"));
        // Only the newest withdrawals are kept.
        for i in 0..WITHDRAWN_KEPT {
            live.withdraw("health", &format!("job-x{i}"));
        }
        assert!(live.decide("health", "job-b").is_some());
        assert!(live.decide("health", "job-x1").is_none());
    }
}
