//! Hash buckets: one registry-scale PSI as `B` independent protocol instances of bounded size.
//!
//! A set of 10^8–10^9 keys does not fit one protocol instance in bounded memory. Both parties
//! instead split their keys into the same `B` buckets and run bucket `i` against bucket `i`:
//! a key can only match a key of the same bucket, because both sides assign it by the same
//! function of its canonical bytes ([`super::keys`], after normalization). Duplicates of a key
//! land in the same bucket, so deduplicating per bucket is deduplicating the whole set, and the
//! union of the buckets' results is the unbucketed result (the tests check this for every
//! mode and for OT-PSI).
//!
//! # Assignment
//! `bucket(k) = ⌊B · h / 2^64⌋` with `h` the first 8 bytes (big-endian) of
//! `SHA-256("concord-psi-bucket-v1:" ‖ session ‖ k)`, `session` the job's 128-bit session id.
//! Keyed by the session, the assignment of a key changes from job to job, so that which bucket
//! a person falls in, in one job, says nothing about another job. Each bucket runs under its own
//! session id `SHA-256("concord-psi-bucket-session-v1:" ‖ session ‖ u32be(i))[..16]`, so the
//! transcripts of two buckets cannot be swapped or replayed into each other.
//!
//! # Padding, and what the buckets leak
//! Without padding, the size of each bucket would leak (and with it, across many jobs, whether
//! a given person is in a set). Every bucket is therefore padded with dummy keys
//! ([`KeySet::pad_to`]) to one size, [`capacity`]`(n, B)`, computed from the party's *declared*
//! size `n` (an upper bound on its distinct keys, e.g. its row count) and `B`. The peer learns
//! `B` and `capacity(n, B)` (hence about `n`, which the unbucketed protocol reveals exactly)
//! and nothing per bucket. A dummy never matches, so results are unchanged.
//!
//! The bound: a bucket's load is `Binomial(n, 1/B)` (fewer, if keys repeat) with mean
//! `μ = n/B`. By Bernstein's inequality `P[load ≥ μ + t] ≤ exp(-t² / (2(μ + t/3)))`; with the
//! union bound over `B` buckets and `L = ln B + 40 ln 2`, every bucket fits when
//! `t = L/3 + √(L²/9 + 2μL)`, except with probability below `2^-40`. So
//! `capacity(n, B) = min(n, ⌈μ + t⌉)`; at `n = 10^8`, `B = 32` it pads by 0.4%. A bucket that
//! does not fit fails the job ([`PsiError::BucketOverflow`]) rather than run unpadded. The
//! bound holds for any input chosen before the session id is drawn (the hash is a random
//! oracle keyed by it); a party that chose keys *after* seeing the session could at most make
//! its own job fail.
//!
//! This module is pure: [`split`] routes rows held in memory (tests, benches); a node streams
//! its rows to spill files with [`BucketPlan::bucket_of`] and [`super::canonical_row_key`], and
//! rebuilds each bucket with [`KeySet::from_canonical`].

use rand::CryptoRng;
use sha2::{Digest as _, Sha256};

use super::local::LocalRun;
use super::{InputReport, KeySet, KeySpec, PsiError, ReceiverOutput, SenderOutput, SessionId};

/// Overflow probability of the padding bound: `2^-OVERFLOW_BITS` for a whole job.
pub const OVERFLOW_BITS: u32 = 40;

/// Most buckets in one job.
pub const MAX_BUCKETS: u32 = 1 << 20;

/// The smallest bucket [`bucket_count`] plans for: below it the padding bound (at least about
/// 20 keys over the mean) would outgrow the bucket itself.
pub const MIN_KEYS_PER_BUCKET: u64 = 1024;

/// How a job's keys are split: the number of buckets and the session that keys the hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketPlan {
    session: SessionId,
    buckets: u32,
}

impl BucketPlan {
    /// `buckets` buckets under `session` (1 ≤ buckets ≤ [`MAX_BUCKETS`]).
    pub fn new(session: SessionId, buckets: u32) -> Result<Self, PsiError> {
        if !(1..=MAX_BUCKETS).contains(&buckets) {
            return Err(PsiError::BucketCount {
                buckets: u64::from(buckets),
            });
        }
        Ok(Self { session, buckets })
    }

    /// [`bucket_count`] buckets for the larger of the two parties' declared sizes.
    pub fn auto(
        session: SessionId,
        larger_declared: u64,
        keys_per_bucket: u64,
    ) -> Result<Self, PsiError> {
        Self::new(session, bucket_count(larger_declared, keys_per_bucket)?)
    }

    /// The number of buckets.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// The job's session.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The bucket of a key, from its canonical bytes (see the module docs).
    pub fn bucket_of(&self, canonical: &[u8]) -> u32 {
        if self.buckets == 1 {
            return 0;
        }
        let digest = Sha256::new()
            .chain_update(b"concord-psi-bucket-v1:")
            .chain_update(self.session.0)
            .chain_update(canonical)
            .finalize();
        let mut h = [0u8; 8];
        h.copy_from_slice(&digest[..8]);
        ((u128::from(u64::from_be_bytes(h)) * u128::from(self.buckets)) >> 64) as u32
    }

    /// The session id bucket `bucket` runs under.
    pub fn bucket_session(&self, bucket: u32) -> SessionId {
        let digest = Sha256::new()
            .chain_update(b"concord-psi-bucket-session-v1:")
            .chain_update(self.session.0)
            .chain_update(bucket.to_be_bytes())
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        SessionId(id)
    }
}

/// As many buckets as keep every padded bucket at or below `keys_per_bucket` keys (at least
/// [`MIN_KEYS_PER_BUCKET`]), for the
/// larger of the two parties' declared sizes (both parties must compute the same count).
pub fn bucket_count(larger_declared: u64, keys_per_bucket: u64) -> Result<u32, PsiError> {
    let per = keys_per_bucket.max(MIN_KEYS_PER_BUCKET);
    let mut buckets = larger_declared.div_ceil(per).max(1);
    // The padding makes a bucket larger than the mean: add buckets until it fits.
    while buckets > 1
        && buckets < u64::from(MAX_BUCKETS)
        && capacity(larger_declared, buckets as u32) > per
    {
        buckets += buckets.div_ceil(64);
    }
    u32::try_from(buckets)
        .ok()
        .filter(|&b| b <= MAX_BUCKETS)
        .ok_or(PsiError::BucketCount { buckets })
}

/// The distinct keys every bucket of a party is padded to: the bound of the module docs for a
/// declared size of `declared` keys over `buckets` buckets. Never more than `declared` (one
/// bucket holds at most all of them); `declared` itself for one bucket.
pub fn capacity(declared: u64, buckets: u32) -> u64 {
    if buckets <= 1 || declared == 0 {
        return declared;
    }
    let b = f64::from(buckets);
    let mean = declared as f64 / b;
    let l = b.ln() + f64::from(OVERFLOW_BITS) * std::f64::consts::LN_2;
    let t = l / 3.0 + (l * l / 9.0 + 2.0 * mean * l).sqrt();
    ((mean + t).ceil() as u64).min(declared)
}

/// One bucket of a party's input: its key set, padded, and the party's row number of each of
/// the set's rows.
pub struct BucketInput {
    /// The bucket's keys, padded to the party's capacity.
    pub keys: KeySet,
    /// `rows[i]` is the party's row number of the set's row `i`.
    pub rows: Vec<u64>,
}

/// A party's input split into buckets, with the report of the whole input.
pub struct Split {
    /// Bucket `i` of the plan, for every `i`.
    pub buckets: Vec<BucketInput>,
    /// The whole input, as [`KeySet::from_rows`] would report it.
    pub report: InputReport,
    /// The distinct keys each bucket was padded to.
    pub capacity: u64,
}

/// Routes rows held in memory to the plan's buckets and pads each to `capacity(declared, B)`.
/// Rows are numbered from 0 in the order given; excluded rows (an empty component) go nowhere
/// and are counted in the report; a bad row is refused naming it.
pub fn split<I, R, S, G>(
    spec: KeySpec,
    plan: &BucketPlan,
    declared: u64,
    rows: I,
    rng: &mut G,
) -> Result<Split, PsiError>
where
    I: IntoIterator<Item = R>,
    R: AsRef<[S]>,
    S: AsRef<str>,
    G: CryptoRng + ?Sized,
{
    let n = plan.buckets as usize;
    let mut keys: Vec<(Vec<u8>, Vec<usize>)> = vec![(Vec::new(), vec![0]); n];
    let mut numbers: Vec<Vec<u64>> = vec![Vec::new(); n];
    let mut report = InputReport::default();
    let mut key = Vec::new();
    for (row, components) in rows.into_iter().enumerate() {
        let row = row as u64;
        report.rows += 1;
        if !super::canonical_row_key(spec, row, components.as_ref(), &mut key)? {
            report.excluded_rows += 1;
            report.first_excluded_row.get_or_insert(row);
            continue;
        }
        let b = plan.bucket_of(&key) as usize;
        let (bytes, bounds) = &mut keys[b];
        bytes.extend_from_slice(&key);
        bounds.push(bytes.len());
        numbers[b].push(row);
    }
    let capacity = capacity(declared, plan.buckets);
    let mut buckets = Vec::with_capacity(n);
    for ((bytes, bounds), rows) in keys.into_iter().zip(numbers) {
        let mut set = KeySet::from_canonical(spec, bounds.windows(2).map(|w| &bytes[w[0]..w[1]]))?;
        let r = set.report();
        report.distinct_keys += r.distinct_keys;
        report.duplicate_rows += r.duplicate_rows;
        set.pad_to(usize::try_from(capacity).unwrap_or(usize::MAX), rng)?;
        buckets.push(BucketInput { keys: set, rows });
    }
    Ok(Split {
        buckets,
        report,
        capacity,
    })
}

/// Runs every bucket pair with `run` (bucket index, receiver keys, sender keys), in order, and
/// merges their outputs into one [`LocalRun`] in the parties' row numbers, as an unbucketed run
/// would report it. What the parties announced to each other is the padded total.
pub fn run_local<E>(
    receiver: Split,
    sender: Split,
    mut run: impl FnMut(u32, KeySet, KeySet) -> Result<LocalRun, E>,
) -> Result<LocalRun, E> {
    let mut merged = LocalRun {
        receiver: ReceiverOutput {
            cardinality: 0,
            matched_rows: None,
            peer_items: 0,
            input: receiver.report,
        },
        sender: SenderOutput {
            peer_items: 0,
            cardinality: None,
            matched_rows: None,
            input: sender.report,
        },
        bytes_to_sender: 0,
        bytes_to_receiver: 0,
        frames: 0,
    };
    let pairs = receiver.buckets.into_iter().zip(sender.buckets);
    for (i, (r, s)) in pairs.enumerate() {
        let out = run(i as u32, r.keys, s.keys)?;
        let back = |local: Vec<u64>, rows: &[u64]| -> Vec<u64> {
            local.into_iter().map(|l| rows[l as usize]).collect()
        };
        merged.receiver.cardinality += out.receiver.cardinality;
        merged.receiver.peer_items += out.receiver.peer_items;
        if let Some(m) = out.receiver.matched_rows {
            merged
                .receiver
                .matched_rows
                .get_or_insert_with(Vec::new)
                .extend(back(m, &r.rows));
        }
        merged.sender.peer_items += out.sender.peer_items;
        if let Some(c) = out.sender.cardinality {
            *merged.sender.cardinality.get_or_insert(0) += c;
        }
        if let Some(m) = out.sender.matched_rows {
            merged
                .sender
                .matched_rows
                .get_or_insert_with(Vec::new)
                .extend(back(m, &s.rows));
        }
        merged.bytes_to_sender += out.bytes_to_sender;
        merged.bytes_to_receiver += out.bytes_to_receiver;
        merged.frames += out.frames;
    }
    for rows in [
        &mut merged.receiver.matched_rows,
        &mut merged.sender.matched_rows,
    ]
    .into_iter()
    .flatten()
    {
        rows.sort_unstable();
    }
    Ok(merged)
}

#[cfg(test)]
mod tests;
