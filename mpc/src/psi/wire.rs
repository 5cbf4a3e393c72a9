//! The PSI wire format: one self-delimiting frame per message, decoded strictly.
//!
//! Every frame is `version:u8 ‖ kind:u8 ‖ body`. Batches carry `count:u32be` then `count`
//! fixed-width items. A decoder checks the version, the kind, the announced count against
//! [`MAX_BATCH_ITEMS`] *before* allocating, that the body has exactly the announced length (no
//! trailing bytes), and that every group element is a canonical, non-identity ristretto255
//! encoding. Frames are at most ≈ 2 MiB, so a node streams millions of items as many frames.

use curve25519_dalek::ristretto::RistrettoPoint;

use super::group::{DIGEST_LEN, ItemDigest, POINT_LEN, PointFault, decompress_all};
use crate::PROTOCOL_VERSION;
pub use crate::session::Frame;

/// Largest number of items in one batch frame.
pub const MAX_BATCH_ITEMS: usize = 1 << 16;

/// Default number of items per batch frame (256 KiB of points).
pub const DEFAULT_BATCH_ITEMS: usize = 8192;

const KIND_QUERY: u8 = 1;
const KIND_BLINDED: u8 = 2;
const KIND_EVALUATED: u8 = 3;
const KIND_SET: u8 = 4;
const KIND_DIGESTS: u8 = 5;
const KIND_MATCHES: u8 = 6;
const KIND_OUTCOME: u8 = 7;

/// A decoded, validated message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// Receiver → sender: the session parameters' digest and the number of distinct keys the
    /// receiver will send.
    Query {
        /// [`super::PsiParams::digest`].
        params: [u8; 32],
        /// Distinct receiver keys.
        items: u64,
    },
    /// Receiver → sender: blinded keys `[a]H(x)`.
    Blinded(Vec<RistrettoPoint>),
    /// Sender → receiver: evaluated keys `[b][a]H(x)`, in the order received (intersection) or
    /// shuffled (cardinality).
    Evaluated(Vec<RistrettoPoint>),
    /// Sender → receiver: the parameters' digest and the number of sender digests to follow.
    Set {
        /// [`super::PsiParams::digest`].
        params: [u8; 32],
        /// Distinct sender keys.
        items: u64,
    },
    /// Sender → receiver: digests of `[b]H(y)`, in a random order.
    Digests(Vec<ItemDigest>),
    /// Receiver → sender (both-recipient intersections): positions, in the sender's digest
    /// stream, of the digests that matched.
    Matches(Vec<u32>),
    /// Receiver → sender (both-recipient sessions): the end of the result, with the cardinality.
    Outcome {
        /// Distinct keys in common.
        cardinality: u64,
    },
}

impl Message {
    /// Decodes one frame. Never panics; every malformed input is a [`DecodeError`].
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let [version, kind, body @ ..] = frame else {
            return Err(DecodeError::Truncated {
                needed: 2,
                found: frame.len(),
            });
        };
        if *version != PROTOCOL_VERSION {
            return Err(DecodeError::Version { found: *version });
        }
        match *kind {
            KIND_QUERY | KIND_SET => {
                let body = exact::<40>(body)?;
                let mut params = [0u8; 32];
                params.copy_from_slice(&body[..32]);
                let items = u64::from_be_bytes(fixed(&body[32..]));
                Ok(if *kind == KIND_QUERY {
                    Message::Query { params, items }
                } else {
                    Message::Set { params, items }
                })
            }
            KIND_BLINDED | KIND_EVALUATED => {
                let encodings: Vec<[u8; POINT_LEN]> = items(body)?;
                let points = decompress_all(&encodings).map_err(|(index, fault)| match fault {
                    PointFault::NotCanonical => DecodeError::InvalidPoint { index },
                    PointFault::Identity => DecodeError::IdentityPoint { index },
                })?;
                Ok(if *kind == KIND_BLINDED {
                    Message::Blinded(points)
                } else {
                    Message::Evaluated(points)
                })
            }
            KIND_DIGESTS => Ok(Message::Digests(items::<DIGEST_LEN>(body)?)),
            KIND_MATCHES => Ok(Message::Matches(
                items::<4>(body)?
                    .into_iter()
                    .map(u32::from_be_bytes)
                    .collect(),
            )),
            KIND_OUTCOME => Ok(Message::Outcome {
                cardinality: u64::from_be_bytes(exact::<8>(body)?),
            }),
            other => Err(DecodeError::UnknownKind { kind: other }),
        }
    }

    /// A short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Query { .. } => "query",
            Message::Blinded(_) => "blinded batch",
            Message::Evaluated(_) => "evaluated batch",
            Message::Set { .. } => "set header",
            Message::Digests(_) => "digest batch",
            Message::Matches(_) => "matches batch",
            Message::Outcome { .. } => "outcome",
        }
    }
}

/// Why a frame was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame ends before its fixed-size part does.
    #[error("frame truncated: needed {needed} bytes, found {found}")]
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes present.
        found: usize,
    },
    /// Bytes after the end of the message.
    #[error("{extra} trailing bytes after the message")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A protocol version this build does not speak.
    #[error("protocol version {found} is not supported (this build speaks {PROTOCOL_VERSION})")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// An unknown message kind.
    #[error("unknown message kind {kind}")]
    UnknownKind {
        /// The kind byte found.
        kind: u8,
    },
    /// A batch announcing more items than allowed.
    #[error("batch of {count} items exceeds the limit of {limit}")]
    BatchTooLarge {
        /// Announced count.
        count: u64,
        /// [`MAX_BATCH_ITEMS`].
        limit: usize,
    },
    /// An encoding that is not a canonical ristretto255 element.
    #[error("item {index} is not a valid ristretto255 encoding")]
    InvalidPoint {
        /// Position in the batch.
        index: usize,
    },
    /// The identity element, which an honest peer never sends.
    #[error("item {index} is the identity element")]
    IdentityPoint {
        /// Position in the batch.
        index: usize,
    },
}

pub(super) fn exact<const N: usize>(body: &[u8]) -> Result<[u8; N], DecodeError> {
    match body.len().cmp(&N) {
        std::cmp::Ordering::Less => Err(DecodeError::Truncated {
            needed: N,
            found: body.len(),
        }),
        std::cmp::Ordering::Greater => Err(DecodeError::TrailingBytes {
            extra: body.len() - N,
        }),
        std::cmp::Ordering::Equal => Ok(fixed(body)),
    }
}

/// Copies a slice whose length the caller has checked.
pub(super) fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

pub(super) fn items<const W: usize>(body: &[u8]) -> Result<Vec<[u8; W]>, DecodeError> {
    if body.len() < 4 {
        return Err(DecodeError::Truncated {
            needed: 4,
            found: body.len(),
        });
    }
    let count = u32::from_be_bytes(fixed(body)) as usize;
    if count > MAX_BATCH_ITEMS {
        return Err(DecodeError::BatchTooLarge {
            count: count as u64,
            limit: MAX_BATCH_ITEMS,
        });
    }
    let payload = &body[4..];
    let needed = count * W;
    if payload.len() < needed {
        return Err(DecodeError::Truncated {
            needed: 4 + needed,
            found: body.len(),
        });
    }
    if payload.len() > needed {
        return Err(DecodeError::TrailingBytes {
            extra: payload.len() - needed,
        });
    }
    Ok(payload.chunks_exact(W).map(fixed).collect())
}

pub(super) fn header(kind: u8, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + capacity);
    out.push(PROTOCOL_VERSION);
    out.push(kind);
    out
}

pub(super) fn batch<const W: usize>(kind: u8, items: &[[u8; W]]) -> Frame {
    debug_assert!(items.len() <= MAX_BATCH_ITEMS);
    let mut out = header(kind, 4 + items.len() * W);
    out.extend_from_slice(&(items.len() as u32).to_be_bytes());
    for item in items {
        out.extend_from_slice(item);
    }
    Frame(out)
}

fn counted(kind: u8, params: &[u8; 32], items: u64) -> Frame {
    let mut out = header(kind, 40);
    out.extend_from_slice(params);
    out.extend_from_slice(&items.to_be_bytes());
    Frame(out)
}

pub(crate) fn query(params: &[u8; 32], items: u64) -> Frame {
    counted(KIND_QUERY, params, items)
}

pub(crate) fn set(params: &[u8; 32], items: u64) -> Frame {
    counted(KIND_SET, params, items)
}

pub(crate) fn blinded(points: &[[u8; POINT_LEN]]) -> Frame {
    batch(KIND_BLINDED, points)
}

pub(crate) fn evaluated(points: &[[u8; POINT_LEN]]) -> Frame {
    batch(KIND_EVALUATED, points)
}

pub(crate) fn digests(digests: &[ItemDigest]) -> Frame {
    batch(KIND_DIGESTS, digests)
}

pub(crate) fn matches(positions: &[u32]) -> Frame {
    let items: Vec<[u8; 4]> = positions.iter().map(|p| p.to_be_bytes()).collect();
    batch(KIND_MATCHES, &items)
}

pub(crate) fn outcome(cardinality: u64) -> Frame {
    let mut out = header(KIND_OUTCOME, 8);
    out.extend_from_slice(&cardinality.to_be_bytes());
    Frame(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let p = [7u8; 32];
        assert_eq!(
            Message::decode(&query(&p, 42).0).unwrap(),
            Message::Query {
                params: p,
                items: 42
            }
        );
        assert_eq!(
            Message::decode(&digests(&[[1u8; 16], [2u8; 16]]).0).unwrap(),
            Message::Digests(vec![[1u8; 16], [2u8; 16]])
        );
        assert_eq!(
            Message::decode(&matches(&[3, 9]).0).unwrap(),
            Message::Matches(vec![3, 9])
        );
        assert_eq!(
            Message::decode(&outcome(5).0).unwrap(),
            Message::Outcome { cardinality: 5 }
        );
        assert_eq!(
            Message::decode(&blinded(&[]).0).unwrap(),
            Message::Blinded(vec![])
        );
    }

    #[test]
    fn oversized_count_is_refused_before_allocation() {
        let mut f = vec![PROTOCOL_VERSION, KIND_BLINDED];
        f.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Message::decode(&f).unwrap_err(),
            DecodeError::BatchTooLarge {
                count: u32::MAX as u64,
                limit: MAX_BATCH_ITEMS
            }
        );
    }
}
