//! The join-aggregate wire format, on the PSI framing: `version:u8 ‖ kind:u8 ‖ body`, strict.
//!
//! Kinds start at 0x21 so that no PSI frame decodes as a join frame. Row batches carry
//! `slots:u16 ‖ count:u32 ‖ count × (digest:16 ‖ R:32 ‖ slots × S_j:32)`; the count and the byte
//! size are checked against [`MAX_BATCH_ITEMS`] and [`MAX_FRAME_BYTES`] before anything is
//! allocated, and every group element must be a canonical, non-identity ristretto255 encoding.

use curve25519_dalek::ristretto::RistrettoPoint;

use super::elgamal::Ciphertext;
use super::{Frame, JoinError, PointFault};
use crate::psi::DecodeError;
use crate::psi::group::{DIGEST_LEN, ItemDigest, POINT_LEN, PointFault as Fault, decompress_all};
use crate::psi::wire::{MAX_BATCH_ITEMS, batch, exact, fixed, header, items};

/// Largest frame body for row batches: 4 MiB.
pub const MAX_FRAME_BYTES: usize = 4 << 20;

/// Default rows per frame (fewer when rows are wide).
const DEFAULT_ROWS: usize = 8192;

const KIND_QUERY: u8 = 0x21;
const KIND_BLINDED: u8 = 0x22;
const KIND_OFFER: u8 = 0x23;
const KIND_EVALUATED: u8 = 0x24;
const KIND_ROWS: u8 = 0x25;
const KIND_RESULT: u8 = 0x26;

/// A decoded, validated join-aggregate message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinMessage {
    /// Key holder → value holder: parameters' digest and the number of distinct keys.
    Query {
        /// [`super::JoinParams::digest`].
        params: [u8; 32],
        /// Distinct keys of the key holder.
        items: u64,
    },
    /// Key holder → value holder: blinded keys `[a]H(k)`.
    Blinded(Vec<RistrettoPoint>),
    /// Value holder → key holder: parameters' digest, number of rows, and the public key.
    Offer {
        /// [`super::JoinParams::digest`].
        params: [u8; 32],
        /// Distinct keys of the value holder.
        items: u64,
        /// One point per slot.
        public: Vec<RistrettoPoint>,
    },
    /// Value holder → key holder: `[b][a]H(k)`, shuffled over the whole session.
    Evaluated(Vec<RistrettoPoint>),
    /// Value holder → key holder: digests of `[b]H(v)` with their ciphertexts, shuffled.
    Rows {
        /// Slots per ciphertext.
        slots: usize,
        /// One digest per row.
        digests: Vec<ItemDigest>,
        /// `R, S_0, …, S_{slots-1}` per row, flat.
        components: Vec<RistrettoPoint>,
    },
    /// Key holder → value holder: the noised, re-randomized sum.
    Result(Ciphertext),
}

impl JoinMessage {
    /// Decodes one frame. Never panics; every malformed input is a typed error.
    pub fn decode(frame: &[u8]) -> Result<Self, JoinError> {
        let [version, kind, body @ ..] = frame else {
            return Err(DecodeError::Truncated {
                needed: 2,
                found: frame.len(),
            }
            .into());
        };
        if *version != crate::PROTOCOL_VERSION {
            return Err(DecodeError::Version { found: *version }.into());
        }
        match *kind {
            KIND_QUERY => {
                let body = exact::<40>(body)?;
                Ok(JoinMessage::Query {
                    params: fixed(&body[..32]),
                    items: u64::from_be_bytes(fixed(&body[32..])),
                })
            }
            KIND_BLINDED | KIND_EVALUATED => {
                let points = points(&items::<POINT_LEN>(body)?)?;
                Ok(if *kind == KIND_BLINDED {
                    JoinMessage::Blinded(points)
                } else {
                    JoinMessage::Evaluated(points)
                })
            }
            KIND_OFFER => {
                let head = prefix::<42>(body)?;
                let slots = usize::from(u16::from_be_bytes(fixed(&head[40..])));
                let rest = sized(&body[42..], slots * POINT_LEN, 42)?;
                let public =
                    decompress_all(&encodings(rest)).map_err(|(slot, f)| JoinError::PublicKey {
                        slot,
                        fault: fault(f),
                    })?;
                Ok(JoinMessage::Offer {
                    params: fixed(&head[..32]),
                    items: u64::from_be_bytes(fixed(&head[32..40])),
                    public,
                })
            }
            KIND_ROWS => {
                let head = prefix::<6>(body)?;
                let slots = usize::from(u16::from_be_bytes(fixed(&head[..2])));
                let count = u32::from_be_bytes(fixed(&head[2..])) as usize;
                let width = row_width(slots);
                if count > MAX_BATCH_ITEMS || count * width > MAX_FRAME_BYTES {
                    return Err(DecodeError::BatchTooLarge {
                        count: count as u64,
                        limit: MAX_BATCH_ITEMS.min(MAX_FRAME_BYTES / width),
                    }
                    .into());
                }
                let rest = sized(&body[6..], count * width, 6)?;
                let mut digests = Vec::with_capacity(count);
                let mut flat = Vec::with_capacity(count * (1 + slots));
                for row in rest.chunks_exact(width) {
                    digests.push(fixed::<DIGEST_LEN>(row));
                    flat.extend(encodings(&row[DIGEST_LEN..]));
                }
                let components = decompress_all(&flat).map_err(|(i, f)| JoinError::Ciphertext {
                    item: i / (1 + slots),
                    component: i % (1 + slots),
                    fault: fault(f),
                })?;
                Ok(JoinMessage::Rows {
                    slots,
                    digests,
                    components,
                })
            }
            KIND_RESULT => {
                let head = prefix::<2>(body)?;
                let slots = usize::from(u16::from_be_bytes(fixed(&head[..])));
                let rest = sized(&body[2..], (1 + slots) * POINT_LEN, 2)?;
                let mut components =
                    decompress_all(&encodings(rest)).map_err(|(i, f)| JoinError::Ciphertext {
                        item: 0,
                        component: i,
                        fault: fault(f),
                    })?;
                let slots = components.split_off(1);
                Ok(JoinMessage::Result(Ciphertext {
                    r: components[0],
                    slots,
                }))
            }
            other => Err(DecodeError::UnknownKind { kind: other }.into()),
        }
    }

    /// A short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            JoinMessage::Query { .. } => "query",
            JoinMessage::Blinded(_) => "blinded batch",
            JoinMessage::Offer { .. } => "offer",
            JoinMessage::Evaluated(_) => "evaluated batch",
            JoinMessage::Rows { .. } => "row batch",
            JoinMessage::Result(_) => "result",
        }
    }
}

fn fault(f: Fault) -> PointFault {
    match f {
        Fault::NotCanonical => PointFault::NotCanonical,
        Fault::Identity => PointFault::Identity,
    }
}

fn points(encodings: &[[u8; POINT_LEN]]) -> Result<Vec<RistrettoPoint>, DecodeError> {
    decompress_all(encodings).map_err(|(index, f)| match f {
        Fault::NotCanonical => DecodeError::InvalidPoint { index },
        Fault::Identity => DecodeError::IdentityPoint { index },
    })
}

/// The first `N` bytes of `body`, which must be at least that long.
fn prefix<const N: usize>(body: &[u8]) -> Result<[u8; N], DecodeError> {
    if body.len() < N {
        return Err(DecodeError::Truncated {
            needed: N,
            found: body.len(),
        });
    }
    Ok(fixed(body))
}

/// `rest` when it is exactly `len` bytes; `offset` is where it starts in the body.
fn sized(rest: &[u8], len: usize, offset: usize) -> Result<&[u8], DecodeError> {
    match rest.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(DecodeError::Truncated {
            needed: offset + len,
            found: offset + rest.len(),
        }),
        std::cmp::Ordering::Greater => Err(DecodeError::TrailingBytes {
            extra: rest.len() - len,
        }),
        std::cmp::Ordering::Equal => Ok(rest),
    }
}

fn encodings(bytes: &[u8]) -> Vec<[u8; POINT_LEN]> {
    bytes.chunks_exact(POINT_LEN).map(fixed).collect()
}

/// Bytes per row: digest, `R` and one point per slot.
pub(crate) fn row_width(slots: usize) -> usize {
    DIGEST_LEN + POINT_LEN * (1 + slots)
}

/// Rows per frame for `slots`-slot ciphertexts.
pub(crate) fn rows_per_frame(slots: usize) -> usize {
    DEFAULT_ROWS.min(MAX_FRAME_BYTES / row_width(slots)).max(1)
}

fn slots_u16(slots: usize) -> [u8; 2] {
    // Slots ≤ 2·MAX_CATEGORIES = 512, checked when the parameters were built.
    (slots as u16).to_be_bytes()
}

pub(crate) fn query(params: &[u8; 32], items: u64) -> Frame {
    let mut out = header(KIND_QUERY, 40);
    out.extend_from_slice(params);
    out.extend_from_slice(&items.to_be_bytes());
    Frame(out)
}

pub(crate) fn blinded(points: &[[u8; POINT_LEN]]) -> Frame {
    batch(KIND_BLINDED, points)
}

pub(crate) fn evaluated(points: &[[u8; POINT_LEN]]) -> Frame {
    batch(KIND_EVALUATED, points)
}

pub(crate) fn offer(params: &[u8; 32], items: u64, public: &[RistrettoPoint]) -> Frame {
    let mut out = header(KIND_OFFER, 42 + public.len() * POINT_LEN);
    out.extend_from_slice(params);
    out.extend_from_slice(&items.to_be_bytes());
    out.extend_from_slice(&slots_u16(public.len()));
    for p in public {
        out.extend_from_slice(p.compress().as_bytes());
    }
    Frame(out)
}

/// A row batch from already-encoded rows (`row_width(slots)` bytes each).
pub(crate) fn rows(slots: usize, encoded: &[u8]) -> Frame {
    let count = encoded.len() / row_width(slots);
    let mut out = header(KIND_ROWS, 6 + encoded.len());
    out.extend_from_slice(&slots_u16(slots));
    out.extend_from_slice(&(count as u32).to_be_bytes());
    out.extend_from_slice(encoded);
    Frame(out)
}

pub(crate) fn result(ct: &Ciphertext) -> Frame {
    let mut out = header(KIND_RESULT, 2 + (1 + ct.slots.len()) * POINT_LEN);
    out.extend_from_slice(&slots_u16(ct.slots.len()));
    for p in std::iter::once(&ct.r).chain(&ct.slots) {
        out.extend_from_slice(p.compress().as_bytes());
    }
    Frame(out)
}
