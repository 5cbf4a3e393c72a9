//! Bucket spill files: a party's keys, routed to hash buckets in one pass over its source, kept
//! on disk until each bucket's protocol instance runs (`concord_mpc::psi::bucket`).
//!
//! # Format (version 1)
//! One file per bucket, `bucket-NNNNNN.spill`:
//! - header: `"CNCDSPL1"`, `u32le` bucket, `u32le` buckets, the 16-byte session id;
//! - records: `u64le` row number, `u32le` length, the key's canonical bytes;
//! - trailer: `"CNCDEND1"`, `u64le` record count, and the SHA-256 of every byte before the
//!   trailer.
//!
//! A reader checks the header against the bucket it expects and the trailer against what it
//! read, so a truncated, edited or swapped file fails with [`SpillError::Corrupt`] naming the
//! file, never a wrong result. The digest guards against corruption on the node's own disk
//! (the files never leave it); it is not an authenticator.
//!
//! Memory: a writer holds one buffer of [`BUFFER_BYTES`] per bucket; a reader holds one
//! bucket. [`SpillDir`] removes its files when dropped, so a job that ends in any way (and a
//! full disk, which fails the write naming the file) leaves none behind.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};

use concord_mpc::psi::{KeySet, KeySpec, PsiError, SessionId};
use sha2::{Digest as _, Sha256};

/// Write buffer per bucket file.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// Most buckets one writer keeps open (each is an open file).
pub const MAX_OPEN_BUCKETS: u32 = 4096;

/// Longest key a record holds (16 components of 64 KiB, with their lengths).
const MAX_KEY_BYTES: u32 = 16 * (64 * 1024 + 4) + 4;

const HEADER_MAGIC: &[u8; 8] = b"CNCDSPL1";
const TRAILER_MAGIC: &[u8; 8] = b"CNCDEND1";
const HEADER_LEN: usize = 8 + 4 + 4 + 16;
const TRAILER_LEN: usize = 8 + 8 + 32;

/// Why spilling or reading back failed.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// The file system refused (a full disk, permissions), for this file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A file does not read back as it was written.
    #[error("{}: corrupt spill file: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// More buckets than one writer keeps open.
    #[error("{buckets} buckets: at most {MAX_OPEN_BUCKETS} are spilled at once")]
    TooManyBuckets {
        /// The count asked for.
        buckets: u32,
    },
    /// The keys read back do not make a bucket's key set (more distinct keys than its padded
    /// size, for one).
    #[error("{}: {source}", path.display())]
    Keys {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: PsiError,
    },
    /// A key longer than any canonical key.
    #[error("a key of {len} bytes is longer than any canonical key")]
    KeyTooLong {
        /// Its length.
        len: usize,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SpillError + '_ {
    move |source| SpillError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A directory of spill files, removed with everything in it when dropped.
#[derive(Debug)]
pub struct SpillDir {
    path: PathBuf,
}

impl SpillDir {
    /// Creates `path` (and its parents); it must not exist yet, so that two jobs never share one.
    pub fn create(path: &Path) -> Result<Self, SpillError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        std::fs::create_dir(path).map_err(io_at(path))?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove spill files");
        }
    }
}

/// What a bucket file is expected to be: its bucket, of how many, under which session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketId {
    /// The bucket.
    pub bucket: u32,
    /// The plan's number of buckets.
    pub buckets: u32,
    /// The job's session.
    pub session: SessionId,
}

impl BucketId {
    fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(HEADER_MAGIC);
        h[8..12].copy_from_slice(&self.bucket.to_le_bytes());
        h[12..16].copy_from_slice(&self.buckets.to_le_bytes());
        h[16..].copy_from_slice(&self.session.0);
        h
    }
}

/// The file of bucket `bucket` in `dir`.
pub fn bucket_path(dir: &Path, bucket: u32) -> PathBuf {
    dir.join(format!("bucket-{bucket:06}.spill"))
}

struct Sink {
    path: PathBuf,
    out: BufWriter<File>,
    digest: Sha256,
    records: u64,
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SpillError> {
        self.digest.update(bytes);
        self.out.write_all(bytes).map_err(io_at(&self.path))
    }
}

/// Writes a party's keys to one file per bucket.
pub struct BucketWriter {
    sinks: Vec<Sink>,
    session: SessionId,
}

/// A finished bucket file: where it is and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketFile {
    /// The file.
    pub path: PathBuf,
    /// What it is.
    pub id: BucketId,
    /// Records (rows) in it.
    pub records: u64,
    /// SHA-256 of its header and records, as its trailer states.
    pub digest: [u8; 32],
}

impl BucketWriter {
    /// Creates one file per bucket in `dir` (a [`SpillDir`]'s path).
    pub fn create(dir: &Path, buckets: u32, session: SessionId) -> Result<Self, SpillError> {
        if buckets == 0 || buckets > MAX_OPEN_BUCKETS {
            return Err(SpillError::TooManyBuckets { buckets });
        }
        let mut sinks = Vec::with_capacity(buckets as usize);
        for bucket in 0..buckets {
            let path = bucket_path(dir, bucket);
            let file = File::create_new(&path).map_err(io_at(&path))?;
            let mut sink = Sink {
                out: BufWriter::with_capacity(BUFFER_BYTES, file),
                path,
                digest: Sha256::new(),
                records: 0,
            };
            sink.write(
                &BucketId {
                    bucket,
                    buckets,
                    session,
                }
                .header(),
            )?;
            sinks.push(sink);
        }
        Ok(Self { sinks, session })
    }

    /// Appends row `row`'s canonical key to bucket `bucket`.
    pub fn push(&mut self, bucket: u32, row: u64, key: &[u8]) -> Result<(), SpillError> {
        let len = u32::try_from(key.len())
            .ok()
            .filter(|&l| l <= MAX_KEY_BYTES)
            .ok_or(SpillError::KeyTooLong { len: key.len() })?;
        let buckets = self.sinks.len();
        let sink = self
            .sinks
            .get_mut(bucket as usize)
            .ok_or(SpillError::TooManyBuckets {
                buckets: bucket.max(buckets as u32),
            })?;
        let mut head = [0u8; 12];
        head[..8].copy_from_slice(&row.to_le_bytes());
        head[8..].copy_from_slice(&len.to_le_bytes());
        sink.write(&head)?;
        sink.write(key)?;
        sink.records += 1;
        Ok(())
    }

    /// Writes every file's trailer and flushes it to disk.
    pub fn finish(self) -> Result<Vec<BucketFile>, SpillError> {
        let buckets = self.sinks.len() as u32;
        let mut files = Vec::with_capacity(self.sinks.len());
        for (bucket, sink) in self.sinks.into_iter().enumerate() {
            let Sink {
                path,
                mut out,
                digest,
                records,
            } = sink;
            let digest: [u8; 32] = digest.finalize().into();
            let mut trailer = [0u8; TRAILER_LEN];
            trailer[..8].copy_from_slice(TRAILER_MAGIC);
            trailer[8..16].copy_from_slice(&records.to_le_bytes());
            trailer[16..].copy_from_slice(&digest);
            out.write_all(&trailer).map_err(io_at(&path))?;
            let file = out.into_inner().map_err(|e| io_at(&path)(e.into_error()))?;
            file.sync_data().map_err(io_at(&path))?;
            files.push(BucketFile {
                path,
                id: BucketId {
                    bucket: bucket as u32,
                    buckets,
                    session: self.session,
                },
                records,
                digest,
            });
        }
        Ok(files)
    }
}

/// One bucket read back: its rows' numbers and canonical keys, in the order written.
#[derive(Default)]
pub struct BucketRows {
    /// The party's row number of each record.
    pub rows: Vec<u64>,
    bytes: Vec<u8>,
    bounds: Vec<usize>,
}

impl std::fmt::Debug for BucketRows {
    // Keys are personal data: print the shape only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketRows")
            .field("rows", &self.rows.len())
            .field("key_bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl BucketRows {
    /// The canonical keys, in the order of [`BucketRows::rows`].
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.bounds.windows(2).map(|w| &self.bytes[w[0]..w[1]])
    }
}

/// Reads bucket file `path`, which must be `expect`, checking its digest and record count.
pub fn read_bucket(path: &Path, expect: BucketId) -> Result<BucketRows, SpillError> {
    let corrupt = |reason: String| SpillError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(io_at(path))?;
    let len = file.metadata().map_err(io_at(path))?.len();
    let body = len
        .checked_sub((HEADER_LEN + TRAILER_LEN) as u64)
        .ok_or_else(|| corrupt(format!("{len} bytes, shorter than a header and a trailer")))?;
    let mut input = BufReader::with_capacity(BUFFER_BYTES, file);
    let mut digest = Sha256::new();
    let mut header = [0u8; HEADER_LEN];
    input.read_exact(&mut header).map_err(io_at(path))?;
    if header != expect.header() {
        return Err(corrupt(format!(
            "its header is not that of bucket {} of {} of this job",
            expect.bucket, expect.buckets
        )));
    }
    digest.update(header);
    let mut out = BucketRows {
        bounds: vec![0],
        ..BucketRows::default()
    };
    let mut left = body;
    let mut head = [0u8; 12];
    while left > 0 {
        if left < 12 {
            return Err(corrupt("a record is cut short".into()));
        }
        input.read_exact(&mut head).map_err(io_at(path))?;
        digest.update(head);
        let mut row = [0u8; 8];
        row.copy_from_slice(&head[..8]);
        let mut key_len = [0u8; 4];
        key_len.copy_from_slice(&head[8..]);
        let key_len = u32::from_le_bytes(key_len);
        if key_len > MAX_KEY_BYTES || u64::from(key_len) > left - 12 {
            return Err(corrupt(format!("a record claims a key of {key_len} bytes")));
        }
        let start = out.bytes.len();
        out.bytes.resize(start + key_len as usize, 0);
        input
            .read_exact(&mut out.bytes[start..])
            .map_err(io_at(path))?;
        digest.update(&out.bytes[start..]);
        out.bounds.push(out.bytes.len());
        out.rows.push(u64::from_le_bytes(row));
        left -= 12 + u64::from(key_len);
    }
    let mut trailer = [0u8; TRAILER_LEN];
    input.read_exact(&mut trailer).map_err(io_at(path))?;
    let digest: [u8; 32] = digest.finalize().into();
    let mut records = [0u8; 8];
    records.copy_from_slice(&trailer[8..16]);
    if &trailer[..8] != TRAILER_MAGIC
        || u64::from_le_bytes(records) != out.rows.len() as u64
        || trailer[16..] != digest
    {
        return Err(corrupt(
            "its digest or record count does not match its contents".into(),
        ));
    }
    Ok(out)
}

/// Bucket `id` of the spill directory `dir` as a key set padded to `capacity` distinct keys
/// (`KeySet::pad_to`), with the party's row number of each of its rows.
pub fn read_padded(
    dir: &Path,
    id: BucketId,
    spec: KeySpec,
    capacity: u64,
) -> Result<(KeySet, Vec<u64>), SpillError> {
    let path = bucket_path(dir, id.bucket);
    let rows = read_bucket(&path, id)?;
    let keys = |source| SpillError::Keys {
        path: path.clone(),
        source,
    };
    let mut set = KeySet::from_canonical(spec, rows.keys()).map_err(keys)?;
    let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
    set.pad_to(capacity, &mut crate::random::rng())
        .map_err(keys)?;
    Ok((set, rows.rows))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn id(bucket: u32) -> BucketId {
        BucketId {
            bucket,
            buckets: 3,
            session: SessionId([5; 16]),
        }
    }

    fn write(dir: &Path) -> Vec<BucketFile> {
        let mut w = BucketWriter::create(dir, 3, SessionId([5; 16])).unwrap();
        for row in 0..1000u64 {
            let key = format!("key-{row}");
            w.push((row % 3) as u32, row, key.as_bytes()).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn buckets_read_back_as_written_and_are_removed_with_their_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("job-1/receiver");
        let dir = SpillDir::create(&path).unwrap();
        let files = write(dir.path());
        assert_eq!(files.len(), 3);
        assert_eq!(files[1].id, id(1));
        assert_eq!(files.iter().map(|f| f.records).sum::<u64>(), 1000);
        let one = read_bucket(&bucket_path(dir.path(), 1), id(1)).unwrap();
        assert_eq!(one.rows.len(), 333);
        assert!(one.rows.iter().all(|r| r % 3 == 1));
        let keys: Vec<&[u8]> = one.keys().collect();
        assert_eq!(keys[0], b"key-1");
        assert_eq!(keys[332], b"key-997");
        // A second job cannot reuse the directory.
        assert!(SpillDir::create(&path).is_err());
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn a_changed_truncated_or_swapped_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SpillDir::create(&tmp.path().join("s")).unwrap();
        write(dir.path());
        let p = bucket_path(dir.path(), 2);
        let good = std::fs::read(&p).unwrap();

        let mut flipped = good.clone();
        flipped[HEADER_LEN + 14] ^= 1;
        std::fs::write(&p, &flipped).unwrap();
        let err = read_bucket(&p, id(2)).unwrap_err().to_string();
        assert!(
            err.contains("corrupt spill file") && err.contains("bucket-000002"),
            "{err}"
        );

        std::fs::write(&p, &good[..good.len() - 40]).unwrap();
        assert!(matches!(
            read_bucket(&p, id(2)),
            Err(SpillError::Corrupt { .. })
        ));

        std::fs::write(&p, &good).unwrap();
        read_bucket(&p, id(2)).unwrap();
        // Bucket 2's file where bucket 1's is expected, or under another session.
        let err = read_bucket(&p, id(1)).unwrap_err().to_string();
        assert!(err.contains("not that of bucket 1 of 3"), "{err}");
        let other = BucketId {
            session: SessionId([6; 16]),
            ..id(2)
        };
        assert!(read_bucket(&p, other).is_err());
    }
}
