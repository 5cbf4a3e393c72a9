//! The secure-aggregation wire format: one self-delimiting frame per message, decoded strictly.
//!
//! Every frame is `version:u8 ‖ kind:u8 ‖ session:[u8; 16] ‖ body`, integers big-endian. Lists
//! carry a `u16` (parties) or `u32` (words) count first; a decoder checks the count against its
//! limit and the exact remaining length *before* allocating, refuses trailing bytes, refuses
//! party lists that are not strictly ascending (so no party appears twice), non-canonical X25519
//! keys and non-canonical scalars. The node carries frames as opaque payloads; masked inputs are
//! cut into frames of at most [`MAX_CHUNK_WORDS`] words (2 MiB) to stay well under transport
//! message limits.
//!
//! | kind | message | direction | body |
//! |---|---|---|---|
//! | 1 | [`Body::AdvertiseKeys`] | party → aggregator | `from:u16 ‖ params:[32] ‖ cipher_key:[32] ‖ mask_key:[32]` |
//! | 2 | [`Body::Roster`] | aggregator → parties | `count:u16 ‖ (party:u16 ‖ cipher_key:[32] ‖ mask_key:[32])*` |
//! | 3 | [`Body::Shares`] | party → aggregator | `from:u16 ‖ commitment:[32] ‖ count:u16 ‖ (to:u16 ‖ sealed:[80])*` |
//! | 4 | [`Body::Forwarded`] | aggregator → party | `to:u16 ‖ count:u16 ‖ (from:u16 ‖ sealed:[80])*` |
//! | 5 | [`Body::Masked`] | party → aggregator | `from:u16 ‖ offset:u32 ‖ count:u32 ‖ word:u64*` |
//! | 6 | [`Body::UnmaskRequest`] | aggregator → parties | `count:u16 ‖ survivor:u16*` |
//! | 7 | [`Body::Unmask`] | party → aggregator | `from:u16 ‖ count:u16 ‖ (owner:u16 ‖ share:[32])* ‖ count:u16 ‖ (owner:u16 ‖ share:[32])*` |

use super::crypto::{KEY_LEN, PublicKey, SEALED_LEN};
use super::params::MAX_PARTIES;
use super::shamir::ShareValue;
use crate::PROTOCOL_VERSION;
use crate::SessionId;
pub use crate::session::Frame;

/// Most words of a masked input in one frame (2 MiB).
pub const MAX_CHUNK_WORDS: usize = 1 << 18;

/// Bytes before every body: version, kind, session id.
pub const HEADER_LEN: usize = 18;

const KIND_ADVERTISE: u8 = 1;
const KIND_ROSTER: u8 = 2;
const KIND_SHARES: u8 = 3;
const KIND_FORWARDED: u8 = 4;
const KIND_MASKED: u8 = 5;
const KIND_UNMASK_REQUEST: u8 = 6;
const KIND_UNMASK: u8 = 7;

/// A decoded, validated message with the session it belongs to.
#[derive(Clone, Debug)]
pub struct Message {
    /// The session id from the frame header.
    pub session: SessionId,
    /// The message itself.
    pub body: Body,
}

/// One party's per-session public keys, as the aggregator lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RosterEntry {
    /// Party index.
    pub party: u16,
    /// The key whose Diffie–Hellman with a peer's seals the shares between them.
    pub cipher_key: PublicKey,
    /// The key whose Diffie–Hellman with a peer's seeds their pairwise mask.
    pub mask_key: PublicKey,
}

/// A share pair sealed for one recipient: the AES-256-GCM ciphertext of the mask-key share and
/// the self-mask share (64 bytes), then the 16-byte tag.
pub type Sealed = [u8; SEALED_LEN];

/// The messages of the four rounds.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Body {
    /// Round 1, party → aggregator: the party's two per-session public keys.
    AdvertiseKeys {
        /// Sender.
        from: u16,
        /// [`super::SecAggParams::digest`] as the sender sees it.
        params: [u8; 32],
        /// Per-session cipher key.
        cipher_key: PublicKey,
        /// Per-session mask key.
        mask_key: PublicKey,
    },
    /// Round 1 → 2, aggregator → every advertiser: the keys of everyone who advertised (`U1`),
    /// ascending by party.
    Roster(Vec<RosterEntry>),
    /// Round 2, party → aggregator: sealed shares for every other member of `U1`, ascending by
    /// recipient, and the commitment to the sender's self-mask seed (for the aggregator).
    Shares {
        /// Sender.
        from: u16,
        /// Commitment to the sender's self-mask seed.
        commitment: [u8; 32],
        /// `(recipient, sealed shares)`.
        sealed: Vec<(u16, Sealed)>,
    },
    /// Round 2 → 3, aggregator → each member of `U2`: the shares sealed for it by every other
    /// member of `U2` (the parties whose shares arrived), ascending by sender.
    Forwarded {
        /// Recipient.
        to: u16,
        /// `(sender, sealed shares)`.
        sealed: Vec<(u16, Sealed)>,
    },
    /// Round 3, party → aggregator: consecutive words of the masked input.
    Masked {
        /// Sender.
        from: u16,
        /// Index of the first word.
        offset: u32,
        /// The words (1 to [`MAX_CHUNK_WORDS`]).
        words: Vec<u64>,
    },
    /// Round 3 → 4, aggregator → each member of `U3`: the parties whose masked input is complete
    /// (`U3`), ascending. Everyone else in `U2` is treated as dropped.
    UnmaskRequest {
        /// `U3`.
        survivors: Vec<u16>,
    },
    /// Round 4, party → aggregator: self-mask shares of every survivor and mask-key shares of
    /// every dropped party — never both for the same owner.
    Unmask {
        /// Sender.
        from: u16,
        /// `(owner, share of the owner's self-mask seed)` for owners in `U3`, ascending.
        self_mask: Vec<(u16, ShareValue)>,
        /// `(owner, share of the owner's mask-key seed)` for owners in `U2 \ U3`, ascending.
        mask_key: Vec<(u16, ShareValue)>,
    },
}

impl Body {
    /// A short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Body::AdvertiseKeys { .. } => "key advertisement",
            Body::Roster(_) => "key roster",
            Body::Shares { .. } => "sealed shares",
            Body::Forwarded { .. } => "forwarded shares",
            Body::Masked { .. } => "masked input chunk",
            Body::UnmaskRequest { .. } => "unmasking request",
            Body::Unmask { .. } => "unmasking shares",
        }
    }
}

/// Why a frame was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame ends before its structure does.
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
    /// A list announcing more items than allowed.
    #[error("list of {count} items exceeds the limit of {limit}")]
    TooMany {
        /// Announced count.
        count: u64,
        /// The limit.
        limit: usize,
    },
    /// A masked chunk without words.
    #[error("empty masked input chunk")]
    EmptyChunk,
    /// A party list that is not strictly ascending (out of order, or a party twice).
    #[error("list item {index} is not in strictly ascending party order")]
    Unordered {
        /// Position in the list.
        index: usize,
    },
    /// An X25519 key that is not a canonical u-coordinate.
    #[error("key {index} is not a canonical X25519 public key")]
    NonCanonicalKey {
        /// Position of the key in the message.
        index: usize,
    },
    /// A share that is not a canonical scalar.
    #[error("share {index} is not a canonical scalar")]
    NonCanonicalShare {
        /// Position in its list.
        index: usize,
    },
}

/// Reads a frame front to back; every read checks the remaining length.
struct Reader<'a> {
    frame: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos + n;
        if end > self.frame.len() {
            return Err(DecodeError::Truncated {
                needed: end,
                found: self.frame.len(),
            });
        }
        let out = &self.frame[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn remaining(&self) -> usize {
        self.frame.len() - self.pos
    }

    /// Checks that `count` items of `width` bytes fit in what is left, before allocating.
    fn expect_items(&self, count: usize, width: usize) -> Result<(), DecodeError> {
        let needed = count * width;
        if self.remaining() < needed {
            return Err(DecodeError::Truncated {
                needed: self.pos + needed,
                found: self.frame.len(),
            });
        }
        Ok(())
    }

    fn party_count(&mut self) -> Result<usize, DecodeError> {
        let count = usize::from(self.u16()?);
        if count > MAX_PARTIES {
            return Err(DecodeError::TooMany {
                count: count as u64,
                limit: MAX_PARTIES,
            });
        }
        Ok(count)
    }

    fn key(&mut self, index: usize) -> Result<PublicKey, DecodeError> {
        PublicKey::from_bytes(self.array::<KEY_LEN>()?)
            .ok_or(DecodeError::NonCanonicalKey { index })
    }

    /// A `count:u16 ‖ (party:u16 ‖ item)*` list, strictly ascending by party.
    fn party_list<T>(
        &mut self,
        width: usize,
        mut item: impl FnMut(&mut Self, usize) -> Result<T, DecodeError>,
    ) -> Result<Vec<(u16, T)>, DecodeError> {
        let count = self.party_count()?;
        self.expect_items(count, 2 + width)?;
        let mut out: Vec<(u16, T)> = Vec::with_capacity(count);
        for index in 0..count {
            let party = self.u16()?;
            if out.last().is_some_and(|(last, _)| *last >= party) {
                return Err(DecodeError::Unordered { index });
            }
            out.push((party, item(self, index)?));
        }
        Ok(out)
    }

    fn shares(&mut self) -> Result<Vec<(u16, ShareValue)>, DecodeError> {
        self.party_list(32, |r, index| {
            ShareValue::from_canonical_bytes(r.array()?)
                .ok_or(DecodeError::NonCanonicalShare { index })
        })
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { extra }),
        }
    }
}

impl Message {
    /// Decodes one frame. Never panics; every malformed input is a [`DecodeError`].
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { frame, pos: 0 };
        let [version, kind] = r.array::<2>()?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::Version { found: version });
        }
        let session = SessionId(r.array()?);
        let body = match kind {
            KIND_ADVERTISE => Body::AdvertiseKeys {
                from: r.u16()?,
                params: r.array()?,
                cipher_key: r.key(0)?,
                mask_key: r.key(1)?,
            },
            KIND_ROSTER => {
                let entries = r.party_list(2 * KEY_LEN, |r, index| {
                    Ok((r.key(2 * index)?, r.key(2 * index + 1)?))
                })?;
                Body::Roster(
                    entries
                        .into_iter()
                        .map(|(party, (cipher_key, mask_key))| RosterEntry {
                            party,
                            cipher_key,
                            mask_key,
                        })
                        .collect(),
                )
            }
            KIND_SHARES => Body::Shares {
                from: r.u16()?,
                commitment: r.array()?,
                sealed: r.party_list(SEALED_LEN, |r, _| r.array())?,
            },
            KIND_FORWARDED => Body::Forwarded {
                to: r.u16()?,
                sealed: r.party_list(SEALED_LEN, |r, _| r.array())?,
            },
            KIND_MASKED => {
                let from = r.u16()?;
                let offset = r.u32()?;
                let count = r.u32()? as usize;
                if count == 0 {
                    return Err(DecodeError::EmptyChunk);
                }
                if count > MAX_CHUNK_WORDS {
                    return Err(DecodeError::TooMany {
                        count: count as u64,
                        limit: MAX_CHUNK_WORDS,
                    });
                }
                r.expect_items(count, 8)?;
                let words = r
                    .take(count * 8)?
                    .chunks_exact(8)
                    .map(|w| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(w);
                        u64::from_be_bytes(b)
                    })
                    .collect();
                Body::Masked {
                    from,
                    offset,
                    words,
                }
            }
            KIND_UNMASK_REQUEST => Body::UnmaskRequest {
                survivors: r
                    .party_list(0, |_, _| Ok(()))?
                    .into_iter()
                    .map(|(party, ())| party)
                    .collect(),
            },
            KIND_UNMASK => Body::Unmask {
                from: r.u16()?,
                self_mask: r.shares()?,
                mask_key: r.shares()?,
            },
            other => return Err(DecodeError::UnknownKind { kind: other }),
        };
        r.finish()?;
        Ok(Self { session, body })
    }
}

/// Builds frames; every list is written in the ascending order the decoder demands.
struct Writer(Vec<u8>);

impl Writer {
    fn new(kind: u8, session: SessionId, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(HEADER_LEN + capacity);
        out.push(PROTOCOL_VERSION);
        out.push(kind);
        out.extend_from_slice(&session.0);
        Self(out)
    }

    fn put(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    fn count(self, n: usize) -> Self {
        // Lists are bounded by MAX_PARTIES (< u16::MAX) wherever they are built.
        debug_assert!(n <= MAX_PARTIES);
        self.put(&(n as u16).to_be_bytes())
    }

    fn done(self) -> Frame {
        Frame(self.0)
    }
}

pub(crate) fn advertise(
    session: SessionId,
    from: u16,
    params: &[u8; 32],
    cipher_key: &PublicKey,
    mask_key: &PublicKey,
) -> Frame {
    Writer::new(KIND_ADVERTISE, session, 98)
        .put(&from.to_be_bytes())
        .put(params)
        .put(&cipher_key.to_bytes())
        .put(&mask_key.to_bytes())
        .done()
}

pub(crate) fn roster(session: SessionId, entries: &[RosterEntry]) -> Frame {
    let mut w = Writer::new(KIND_ROSTER, session, 2 + entries.len() * 66).count(entries.len());
    for e in entries {
        w = w
            .put(&e.party.to_be_bytes())
            .put(&e.cipher_key.to_bytes())
            .put(&e.mask_key.to_bytes());
    }
    w.done()
}

fn sealed_list(mut w: Writer, sealed: &[(u16, Sealed)]) -> Writer {
    w = w.count(sealed.len());
    for (party, s) in sealed {
        w = w.put(&party.to_be_bytes()).put(s);
    }
    w
}

pub(crate) fn shares(
    session: SessionId,
    from: u16,
    commitment: &[u8; 32],
    sealed: &[(u16, Sealed)],
) -> Frame {
    let w = Writer::new(KIND_SHARES, session, 36 + sealed.len() * (2 + SEALED_LEN))
        .put(&from.to_be_bytes())
        .put(commitment);
    sealed_list(w, sealed).done()
}

pub(crate) fn forwarded(session: SessionId, to: u16, sealed: &[(u16, Sealed)]) -> Frame {
    let w = Writer::new(KIND_FORWARDED, session, 4 + sealed.len() * (2 + SEALED_LEN))
        .put(&to.to_be_bytes());
    sealed_list(w, sealed).done()
}

pub(crate) fn masked(session: SessionId, from: u16, offset: u32, words: &[u64]) -> Frame {
    debug_assert!(!words.is_empty() && words.len() <= MAX_CHUNK_WORDS);
    let mut w = Writer::new(KIND_MASKED, session, 10 + words.len() * 8)
        .put(&from.to_be_bytes())
        .put(&offset.to_be_bytes())
        .put(&(words.len() as u32).to_be_bytes());
    w.0.extend(words.iter().flat_map(|word| word.to_be_bytes()));
    w.done()
}

pub(crate) fn unmask_request(session: SessionId, survivors: &[u16]) -> Frame {
    let mut w =
        Writer::new(KIND_UNMASK_REQUEST, session, 2 + survivors.len() * 2).count(survivors.len());
    for s in survivors {
        w = w.put(&s.to_be_bytes());
    }
    w.done()
}

pub(crate) fn unmask(
    session: SessionId,
    from: u16,
    self_mask: &[(u16, &ShareValue)],
    mask_key: &[(u16, &ShareValue)],
) -> Frame {
    let mut w = Writer::new(
        KIND_UNMASK,
        session,
        6 + (self_mask.len() + mask_key.len()) * 34,
    )
    .put(&from.to_be_bytes());
    for list in [self_mask, mask_key] {
        w = w.count(list.len());
        for (owner, share) in list {
            w = w.put(&owner.to_be_bytes()).put(&share.to_bytes());
        }
    }
    w.done()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const S: SessionId = SessionId([7u8; 16]);

    fn key(b: u8) -> PublicKey {
        PublicKey::from_bytes([b; 32]).unwrap()
    }

    fn share(b: u8) -> ShareValue {
        let mut bytes = [0u8; 32];
        bytes[0] = b;
        ShareValue::from_canonical_bytes(bytes).unwrap()
    }

    #[test]
    fn round_trips() {
        let m = Message::decode(&advertise(S, 3, &[9; 32], &key(1), &key(2)).0).unwrap();
        assert_eq!(m.session, S);
        assert!(matches!(
            m.body,
            Body::AdvertiseKeys { from: 3, params, cipher_key, mask_key }
                if params == [9; 32] && cipher_key == key(1) && mask_key == key(2)
        ));
        let entries = [
            RosterEntry {
                party: 0,
                cipher_key: key(1),
                mask_key: key(2),
            },
            RosterEntry {
                party: 5,
                cipher_key: key(3),
                mask_key: key(4),
            },
        ];
        let m = Message::decode(&roster(S, &entries).0).unwrap();
        assert!(matches!(m.body, Body::Roster(ref e) if e == &entries));
        let sealed = vec![(1u16, [5u8; SEALED_LEN]), (4, [6u8; SEALED_LEN])];
        let m = Message::decode(&shares(S, 0, &[8; 32], &sealed).0).unwrap();
        assert!(
            matches!(m.body, Body::Shares { from: 0, commitment, sealed: ref s } if commitment == [8; 32] && s == &sealed)
        );
        let m = Message::decode(&forwarded(S, 2, &sealed).0).unwrap();
        assert!(matches!(m.body, Body::Forwarded { to: 2, sealed: ref s } if s == &sealed));
        let m = Message::decode(&masked(S, 1, 40, &[1, u64::MAX, 0]).0).unwrap();
        assert!(
            matches!(m.body, Body::Masked { from: 1, offset: 40, ref words } if words == &[1, u64::MAX, 0])
        );
        let m = Message::decode(&unmask_request(S, &[0, 2, 3]).0).unwrap();
        assert!(matches!(m.body, Body::UnmaskRequest { ref survivors } if survivors == &[0, 2, 3]));
        let (a, b, c) = (share(1), share(2), share(3));
        let m = Message::decode(&unmask(S, 4, &[(0, &a), (2, &b)], &[(1, &c)]).0).unwrap();
        let Body::Unmask {
            from: 4,
            self_mask,
            mask_key,
        } = m.body
        else {
            panic!("wrong body");
        };
        assert_eq!(self_mask.len(), 2);
        assert_eq!(mask_key[0].0, 1);
        assert_eq!(mask_key[0].1.to_bytes(), c.to_bytes());
    }

    #[test]
    fn truncation_and_trailing_bytes_are_refused() {
        let frame = masked(S, 1, 0, &[1, 2]).0;
        for cut in 0..frame.len() {
            assert!(
                matches!(
                    Message::decode(&frame[..cut]),
                    Err(DecodeError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut long = frame.clone();
        long.push(0);
        assert_eq!(
            Message::decode(&long).unwrap_err(),
            DecodeError::TrailingBytes { extra: 1 }
        );
        let mut v = frame.clone();
        v[0] = PROTOCOL_VERSION + 1;
        assert!(matches!(
            Message::decode(&v),
            Err(DecodeError::Version { .. })
        ));
        let mut k = frame;
        k[1] = 99;
        assert_eq!(
            Message::decode(&k).unwrap_err(),
            DecodeError::UnknownKind { kind: 99 }
        );
    }

    #[test]
    fn counts_are_checked_before_allocation() {
        let mut f = Writer::new(KIND_MASKED, S, 0)
            .put(&0u16.to_be_bytes())
            .put(&0u32.to_be_bytes())
            .put(&u32::MAX.to_be_bytes())
            .done()
            .0;
        assert_eq!(
            Message::decode(&f).unwrap_err(),
            DecodeError::TooMany {
                count: u64::from(u32::MAX),
                limit: MAX_CHUNK_WORDS
            }
        );
        // A count within the limit but longer than the frame: refused before the Vec is built.
        f.truncate(HEADER_LEN + 6);
        f.extend_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(
            Message::decode(&f).unwrap_err(),
            DecodeError::Truncated { .. }
        ));
        let f = Writer::new(KIND_ROSTER, S, 0)
            .put(&u16::MAX.to_be_bytes())
            .done();
        assert_eq!(
            Message::decode(&f.0).unwrap_err(),
            DecodeError::TooMany {
                count: u64::from(u16::MAX),
                limit: MAX_PARTIES
            }
        );
        let empty = Writer::new(KIND_MASKED, S, 0).put(&[0u8; 10]).done();
        assert_eq!(
            Message::decode(&empty.0).unwrap_err(),
            DecodeError::EmptyChunk
        );
    }

    #[test]
    fn lists_must_ascend_and_values_be_canonical() {
        let dup = unmask_request(S, &[1, 3, 3]);
        assert_eq!(
            Message::decode(&dup.0).unwrap_err(),
            DecodeError::Unordered { index: 2 }
        );
        let sealed = vec![(4u16, [0u8; SEALED_LEN]), (2, [0u8; SEALED_LEN])];
        assert_eq!(
            Message::decode(&forwarded(S, 0, &sealed).0).unwrap_err(),
            DecodeError::Unordered { index: 1 }
        );
        let mut bad_key = advertise(S, 0, &[0; 32], &key(1), &key(2)).0;
        let mask_at = HEADER_LEN + 2 + 32 + 32;
        bad_key[mask_at + 31] = 0x80;
        assert_eq!(
            Message::decode(&bad_key).unwrap_err(),
            DecodeError::NonCanonicalKey { index: 1 }
        );
        let a = share(1);
        let mut bad_share = unmask(S, 0, &[(0, &a)], &[]).0;
        let at = HEADER_LEN + 2 + 2 + 2;
        bad_share[at..at + 32].copy_from_slice(&[0xff; 32]);
        assert_eq!(
            Message::decode(&bad_share).unwrap_err(),
            DecodeError::NonCanonicalShare { index: 0 }
        );
    }
}
