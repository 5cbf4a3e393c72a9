//! A PSI in hash buckets at one party: its keys streamed once from its dataset into spill files
//! (`crate::spill`), then each bucket read back, padded and run as its own protocol instance
//! over the job's one exchange, bucket 0 first (`concord_mpc::psi::bucket` for the assignment,
//! the padding bound and what it leaks).
//!
//! Both parties run the same number of buckets: the coordinator proposes what its own dataset
//! needs under its `[limits] keys_per_bucket`, the participant answers with the larger of that
//! and its own need. Each pads every bucket to `capacity(rows, B)` of its *registered* row
//! count, so a file that grew since it was registered fails the job with a bucket overflow
//! rather than reveal more. Memory holds one bucket of each side at a time; the spill files
//! are removed when the job ends in any way (and at the node's start, for a job that died).
//!
//! Simplified for now, and said so: buckets run one after another (each uses every core),
//! progress is shown per bucket, and a job that loses a node starts over.

use concord_mpc::psi::bucket::{self, BucketPlan};
use concord_mpc::psi::{
    InputReport, KeySet, KeySpec, PsiError, PsiParams, ReceiverOutput, SessionId,
};

use crate::catalog::Dataset;
use crate::jobs::error::JobError;
use crate::jobs::exchange::Link;
use crate::jobs::input::{self, Read};
use crate::jobs::kinds::psi::{self, ProtoError};
use crate::jobs::table::{JobRow, Protocol};
use crate::node::Node;
use crate::spill::{self, BucketId, SpillDir, SpillError};

/// Why a bucketed role stopped: at this node (its input or its spill files), or in a bucket's
/// protocol.
pub(in crate::jobs) enum Stop {
    Own(JobError),
    Protocol(ProtoError),
}

/// One party's keys, spilled to its buckets.
pub(in crate::jobs) struct Spilled {
    dir: SpillDir,
    plan: BucketPlan,
    spec: KeySpec,
    capacity: u64,
    report: InputReport,
    path: std::path::PathBuf,
}

/// Where a job's spill files live at this node: under its data directory, one directory per job
/// (removed at the node's start: jobs do not survive a restart).
pub(in crate::jobs) fn spill_root(node: &Node) -> std::path::PathBuf {
    node.config.node.data_dir.join(crate::jobs::SPILL_DIR)
}

/// Streams this node's keys for `row` from `d` into `buckets` spill files under `root`
/// ([`spill_root`]).
pub(in crate::jobs) fn spill(
    root: &std::path::Path,
    row: &JobRow,
    d: &Dataset,
    spec: KeySpec,
    buckets: u32,
) -> Result<(Spilled, Read), JobError> {
    let session = crate::hex::decode_16(&row.spec.session)
        .ok_or_else(|| JobError::terms("bad session id"))?;
    let plan =
        BucketPlan::new(SessionId(session), buckets).map_err(|e| JobError::terms(e.to_string()))?;
    let dir = SpillDir::create(&root.join(&row.id))
        .map_err(|e| JobError::input(&d.spec.path, e.to_string()))?;
    let (report, read) = input::spill_keys(d, &row.spec.columns, spec, &plan, dir.path())?;
    Ok((
        Spilled {
            dir,
            plan,
            spec,
            capacity: bucket::capacity(d.rows, buckets),
            report,
            path: d.spec.path.clone(),
        },
        read,
    ))
}

impl Spilled {
    /// Bucket `b`'s keys, padded, with this party's row number of each of their rows.
    fn bucket(&mut self, b: u32) -> Result<(KeySet, Vec<u64>), JobError> {
        let id = BucketId {
            bucket: b,
            buckets: self.plan.buckets(),
            session: self.plan.session(),
        };
        let (set, rows) = spill::read_padded(self.dir.path(), id, self.spec, self.capacity)
            .map_err(|e| {
                let grew = matches!(
                    e,
                    SpillError::Keys {
                        source: PsiError::BucketOverflow { .. },
                        ..
                    }
                );
                let hint = if grew {
                    " (did the file grow since it was registered?)"
                } else {
                    ""
                };
                JobError::input(&self.path, format!("{e}{hint}"))
            })?;
        let r = set.report();
        self.report.distinct_keys += r.distinct_keys;
        self.report.duplicate_rows += r.duplicate_rows;
        Ok((set, rows))
    }

    /// This party's whole input, once every bucket was read.
    pub(in crate::jobs) fn report(&self) -> InputReport {
        self.report
    }

    /// The parameters of bucket `b`: the job's, under the bucket's own session.
    fn params(&self, job: &PsiParams, b: u32) -> PsiParams {
        PsiParams::one_shot(
            self.plan.bucket_session(b),
            job.output(),
            job.recipients(),
            job.keys(),
        )
        .with_peer_limit(job.peer_limit())
    }
}

/// The receiver over every bucket in turn; the output merged in this party's row numbers (the
/// peer's count is its padded total).
pub(in crate::jobs) fn receiver(
    protocol: Protocol,
    params: PsiParams,
    spilled: &mut Spilled,
    link: &mut Link<'_>,
) -> Result<ReceiverOutput, Stop> {
    let mut merged = ReceiverOutput {
        cardinality: 0,
        matched_rows: None,
        peer_items: 0,
        input: InputReport::default(),
    };
    for b in 0..spilled.plan.buckets() {
        let (keys, rows) = spilled.bucket(b).map_err(Stop::Own)?;
        let out = psi::receiver(protocol, spilled.params(&params, b), keys, link)
            .map_err(Stop::Protocol)?;
        merged.cardinality += out.cardinality;
        merged.peer_items += out.peer_items;
        if let Some(local) = out.matched_rows {
            merged
                .matched_rows
                .get_or_insert_with(Vec::new)
                .extend(local.into_iter().map(|l| rows[l as usize]));
        }
    }
    if let Some(rows) = &mut merged.matched_rows {
        rows.sort_unstable();
    }
    merged.input = spilled.report();
    Ok(merged)
}

/// The sender over every bucket in turn; returns the receiver's padded total of keys.
pub(in crate::jobs) fn sender(
    protocol: Protocol,
    params: PsiParams,
    spilled: &mut Spilled,
    link: &mut Link<'_>,
) -> Result<u64, Stop> {
    let mut peer_items = 0;
    for b in 0..spilled.plan.buckets() {
        let (keys, _) = spilled.bucket(b).map_err(Stop::Own)?;
        peer_items += psi::sender(protocol, spilled.params(&params, b), keys, link)
            .map_err(Stop::Protocol)?;
    }
    Ok(peer_items)
}
