//! The OT-PSI wire format, decoded strictly. Frames are `version:u8 ‖ kind:u8 ‖ body`, with kinds
//! distinct from the ECDH mode's so a frame of one mode is never read as the other.
//!
//! | kind | direction | body |
//! |---|---|---|
//! | 0x21 hello | R → S | params digest (32) ‖ items:u64 ‖ bins:u64 ‖ hash seed (16) ‖ base-OT `A` (32) |
//! | 0x22 setup | S → R | params digest (32) ‖ items:u64 ‖ code seed (16) ‖ 512 base-OT points `B_j` (32 each) |
//! | 0x23 columns | R → S | rows:u32 ‖ 512 columns of `rows/8` bytes (`rows` a multiple of 128, ≤ [`MAX_BATCH_ROWS`]) |
//! | 0x24 outputs | S → R | width:u8 ‖ count:u32 ‖ `count` triples of `width`-byte OPRF outputs (`count` ≤ [`MAX_OUTPUT_ITEMS`]) |
//!
//! Sizes are checked before anything is allocated; every group element must be a canonical,
//! non-identity ristretto255 encoding; no trailing bytes. A columns frame is 256 KiB at the
//! default 4096 rows, an outputs frame at most 8192 · 3 · 16 B = 384 KiB.

use curve25519_dalek::ristretto::RistrettoPoint;

use super::super::group::{POINT_LEN, PointFault, decompress_all};
use super::super::wire::DecodeError;
use super::prims::{CODE_BITS, HASHES};
use crate::PROTOCOL_VERSION;
use crate::session::Frame;

/// Largest number of rows (bins) in one columns frame.
pub const MAX_BATCH_ROWS: usize = 1 << 14;
/// Rows per columns frame sent by this implementation.
pub const DEFAULT_BATCH_ROWS: usize = 4096;
/// Largest number of sender items (output triples) in one outputs frame.
pub const MAX_OUTPUT_ITEMS: usize = 1 << 13;
/// Shortest and longest OPRF output on the wire, in bytes.
pub const OUTPUT_LEN_RANGE: std::ops::RangeInclusive<usize> = 5..=15;

const KIND_HELLO: u8 = 0x21;
const KIND_SETUP: u8 = 0x22;
const KIND_COLUMNS: u8 = 0x23;
const KIND_OUTPUTS: u8 = 0x24;

/// A decoded, validated OT-PSI message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtMessage {
    /// Receiver → sender: parameters, the receiver's size, the cuckoo table and base-OT `A`.
    Hello {
        /// [`super::OtPsiParams::digest`].
        params: [u8; 32],
        /// Distinct receiver keys.
        items: u64,
        /// Cuckoo bins (a function of `items`, checked by the sender).
        bins: u64,
        /// The seed of the three bin hashes.
        hash_seed: [u8; 16],
        /// The base-OT sender's point.
        point: RistrettoPoint,
    },
    /// Sender → receiver: the sender's size, the code seed and the base-OT receiver's points.
    Setup {
        /// [`super::OtPsiParams::digest`].
        params: [u8; 32],
        /// Distinct sender keys.
        items: u64,
        /// The seed of the pseudorandom code.
        code_seed: [u8; 16],
        /// `B_j`, one per code column.
        points: Vec<RistrettoPoint>,
    },
    /// Receiver → sender: one batch of OT-extension columns `u_j`, `CODE_BITS · rows / 64` words,
    /// column-major.
    Columns {
        /// Rows (bins) in this batch.
        rows: usize,
        /// The columns, little-endian words.
        words: Vec<u64>,
    },
    /// Sender → receiver: OPRF outputs, three per sender item (one per hash function).
    Outputs {
        /// Bytes per output.
        width: usize,
        /// The outputs, each as the low `width` bytes of a `u128` (big-endian on the wire).
        values: Vec<[u128; HASHES]>,
    },
}

impl OtMessage {
    /// Decodes one frame. Never panics; every malformed input is an [`OtDecodeError`].
    pub fn decode(frame: &[u8]) -> Result<Self, OtDecodeError> {
        let [version, kind, body @ ..] = frame else {
            return Err(DecodeError::Truncated {
                needed: 2,
                found: frame.len(),
            }
            .into());
        };
        if *version != PROTOCOL_VERSION {
            return Err(DecodeError::Version { found: *version }.into());
        }
        match *kind {
            KIND_HELLO => {
                let body = exact(body, 32 + 8 + 8 + 16 + POINT_LEN)?;
                let point = points(&body[64..96])?.remove(0);
                Ok(OtMessage::Hello {
                    params: fixed(&body[..32]),
                    items: u64::from_be_bytes(fixed(&body[32..40])),
                    bins: u64::from_be_bytes(fixed(&body[40..48])),
                    hash_seed: fixed(&body[48..64]),
                    point,
                })
            }
            KIND_SETUP => {
                let body = exact(body, 32 + 8 + 16 + CODE_BITS * POINT_LEN)?;
                Ok(OtMessage::Setup {
                    params: fixed(&body[..32]),
                    items: u64::from_be_bytes(fixed(&body[32..40])),
                    code_seed: fixed(&body[40..56]),
                    points: points(&body[56..])?,
                })
            }
            KIND_COLUMNS => {
                let rows = u32::from_be_bytes(fixed(prefix(body, 4)?)) as usize;
                if rows > MAX_BATCH_ROWS {
                    return Err(DecodeError::BatchTooLarge {
                        count: rows as u64,
                        limit: MAX_BATCH_ROWS,
                    }
                    .into());
                }
                if rows == 0 || !rows.is_multiple_of(128) {
                    return Err(OtDecodeError::RowCount { rows: rows as u32 });
                }
                let payload = exact(&body[4..], CODE_BITS * rows / 8)?;
                let words = payload
                    .chunks_exact(8)
                    .map(|w| u64::from_le_bytes(fixed(w)))
                    .collect();
                Ok(OtMessage::Columns { rows, words })
            }
            KIND_OUTPUTS => {
                let head = prefix(body, 5)?;
                let width = usize::from(head[0]);
                if !OUTPUT_LEN_RANGE.contains(&width) {
                    return Err(OtDecodeError::OutputWidth { width: head[0] });
                }
                let count = u32::from_be_bytes(fixed(&head[1..5])) as usize;
                if count > MAX_OUTPUT_ITEMS {
                    return Err(DecodeError::BatchTooLarge {
                        count: count as u64,
                        limit: MAX_OUTPUT_ITEMS,
                    }
                    .into());
                }
                let payload = exact(&body[5..], count * HASHES * width)?;
                let values = payload
                    .chunks_exact(HASHES * width)
                    .map(|triple| {
                        std::array::from_fn(|j| {
                            triple[j * width..(j + 1) * width]
                                .iter()
                                .fold(0u128, |acc, &b| (acc << 8) | u128::from(b))
                        })
                    })
                    .collect();
                Ok(OtMessage::Outputs { width, values })
            }
            other => Err(DecodeError::UnknownKind { kind: other }.into()),
        }
    }

    /// A short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            OtMessage::Hello { .. } => "hello",
            OtMessage::Setup { .. } => "setup",
            OtMessage::Columns { .. } => "columns batch",
            OtMessage::Outputs { .. } => "outputs batch",
        }
    }
}

/// Why an OT-PSI frame was rejected: the checks shared with the ECDH wire, and two of its own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtDecodeError {
    /// A fault any frame can have (length, version, kind, batch size, point encoding).
    #[error(transparent)]
    Frame(#[from] DecodeError),
    /// An output width outside [`OUTPUT_LEN_RANGE`].
    #[error("output width of {width} bytes is outside 5..=15")]
    OutputWidth {
        /// The width byte found.
        width: u8,
    },
    /// A columns batch whose row count is not a positive multiple of 128.
    #[error("a batch of {rows} rows is not a positive multiple of 128")]
    RowCount {
        /// The row count found.
        rows: u32,
    },
}

fn prefix(body: &[u8], n: usize) -> Result<&[u8], DecodeError> {
    body.get(..n).ok_or(DecodeError::Truncated {
        needed: n,
        found: body.len(),
    })
}

fn exact(body: &[u8], n: usize) -> Result<&[u8], DecodeError> {
    match body.len().cmp(&n) {
        std::cmp::Ordering::Less => Err(DecodeError::Truncated {
            needed: n,
            found: body.len(),
        }),
        std::cmp::Ordering::Greater => Err(DecodeError::TrailingBytes {
            extra: body.len() - n,
        }),
        std::cmp::Ordering::Equal => Ok(body),
    }
}

/// Copies a slice whose length the caller has checked.
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

fn points(bytes: &[u8]) -> Result<Vec<RistrettoPoint>, DecodeError> {
    let encodings: Vec<[u8; POINT_LEN]> = bytes.chunks_exact(POINT_LEN).map(fixed).collect();
    decompress_all(&encodings).map_err(|(index, fault)| match fault {
        PointFault::NotCanonical => DecodeError::InvalidPoint { index },
        PointFault::Identity => DecodeError::IdentityPoint { index },
    })
}

fn header(kind: u8, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + capacity);
    out.push(PROTOCOL_VERSION);
    out.push(kind);
    out
}

pub(crate) fn hello(
    params: &[u8; 32],
    items: u64,
    bins: u64,
    hash_seed: &[u8; 16],
    point: &RistrettoPoint,
) -> Frame {
    let mut out = header(KIND_HELLO, 96);
    out.extend_from_slice(params);
    out.extend_from_slice(&items.to_be_bytes());
    out.extend_from_slice(&bins.to_be_bytes());
    out.extend_from_slice(hash_seed);
    out.extend_from_slice(point.compress().as_bytes());
    Frame(out)
}

pub(crate) fn setup(
    params: &[u8; 32],
    items: u64,
    code_seed: &[u8; 16],
    points: &[RistrettoPoint],
) -> Frame {
    let mut out = header(KIND_SETUP, 56 + points.len() * POINT_LEN);
    out.extend_from_slice(params);
    out.extend_from_slice(&items.to_be_bytes());
    out.extend_from_slice(code_seed);
    for p in points {
        out.extend_from_slice(p.compress().as_bytes());
    }
    Frame(out)
}

pub(crate) fn columns(rows: usize, words: &[u64]) -> Frame {
    debug_assert_eq!(words.len(), CODE_BITS * rows / 64);
    let mut out = header(KIND_COLUMNS, 4 + words.len() * 8);
    out.extend_from_slice(&(rows as u32).to_be_bytes());
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    Frame(out)
}

/// An outputs frame of `count` triples, each already in wire form (three `width`-byte values).
pub(crate) fn outputs<'a>(
    width: usize,
    count: usize,
    triples: impl Iterator<Item = &'a [u8]>,
) -> Frame {
    debug_assert!(count <= MAX_OUTPUT_ITEMS && OUTPUT_LEN_RANGE.contains(&width));
    let mut out = header(KIND_OUTPUTS, 5 + count * HASHES * width);
    out.push(width as u8);
    out.extend_from_slice(&(count as u32).to_be_bytes());
    for triple in triples {
        debug_assert_eq!(triple.len(), HASHES * width);
        out.extend_from_slice(triple);
    }
    Frame(out)
}
