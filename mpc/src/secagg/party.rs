//! A contributing party (a department): advertises keys, shares its seeds, sends its masked
//! vector, and answers the aggregator's unmasking request once.

use rand::CryptoRng;

use super::crypto::{
    DhOutput, EnvelopeKey, IdentityKey, SessionSecret, pair_mask_key, self_mask_commitment,
    self_mask_key,
};
use super::params::SecAggParams;
use super::prg::{MaskKey, Sign, apply_masks};
use super::shamir::{Seed, ShareValue, split};
use super::wire::{self, Body, Frame, MAX_CHUNK_WORDS, Message, RosterEntry};
use super::{Round, SecAggError, roster_digest};

/// Round 1 done: the party has advertised its keys and waits for the roster.
pub struct PartyAwaitRoster {
    params: SecAggParams,
    index: u16,
    /// Static–static Diffie–Hellman with every other identity, by party index (`None` for us).
    identity_dh: Vec<Option<DhOutput>>,
    cipher: SessionSecret,
    mask_seed: Seed,
    mask_secret: SessionSecret,
    own: RosterEntry,
}

impl std::fmt::Debug for PartyAwaitRoster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyAwaitRoster")
            .field("params", &self.params)
            .field("index", &self.index)
            .field("mask_seed", &self.mask_seed)
            .finish_non_exhaustive()
    }
}

impl PartyAwaitRoster {
    /// Joins session `params` as party `index` with its long-term `identity`: draws the two
    /// per-session key pairs and returns the advertisement to send to the aggregator.
    pub fn start<R: CryptoRng + ?Sized>(
        params: SecAggParams,
        index: u16,
        identity: &IdentityKey,
        rng: &mut R,
    ) -> Result<(Self, Frame), SecAggError> {
        params.check_party(index)?;
        if params.identity(index) != Some(&identity.public()) {
            return Err(SecAggError::IdentityMismatch { party: index });
        }
        let identity_dh = (0..params.parties())
            .map(|v| {
                if v == index {
                    return Ok(None);
                }
                params
                    .identity(v)
                    .and_then(|theirs| identity.agree(theirs))
                    .map(Some)
                    .ok_or(SecAggError::LowOrderKey {
                        what: "identity",
                        party: v,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cipher = SessionSecret::random(rng);
        let mask_seed = Seed::random(rng);
        let mask_secret = SessionSecret::mask_key(&params, index, &mask_seed);
        let own = RosterEntry {
            party: index,
            cipher_key: cipher.public(),
            mask_key: mask_secret.public(),
        };
        let frame = wire::advertise(
            params.session(),
            index,
            params.digest(),
            &own.cipher_key,
            &own.mask_key,
        );
        Ok((
            Self {
                params,
                index,
                identity_dh,
                cipher,
                mask_seed,
                mask_secret,
                own,
            },
            frame,
        ))
    }

    /// Takes the roster `U1`, draws the self-mask seed, Shamir-shares both seeds among `U1`,
    /// and returns the sealed shares to send. The cipher secret and the identity
    /// Diffie–Hellman outputs are dropped (and zeroized) here.
    pub fn handle<R: CryptoRng + ?Sized>(
        self,
        message: Message,
        rng: &mut R,
    ) -> Result<(PartyAwaitShares, Frame), SecAggError> {
        check_session(&self.params, &message)?;
        let Body::Roster(roster) = message.body else {
            return Err(unexpected("party awaiting the roster", &message.body));
        };
        // The decoder guarantees strictly ascending, hence distinct, parties.
        for entry in &roster {
            self.params.check_party(entry.party)?;
        }
        let threshold = self.params.threshold();
        if roster.len() < usize::from(threshold) {
            return Err(SecAggError::BelowThreshold {
                round: Round::AdvertiseKeys,
                have: roster.len(),
                threshold,
            });
        }
        if !roster.contains(&self.own) {
            return Err(SecAggError::RosterAltered { party: self.index });
        }
        check_distinct_keys(&roster)?;
        let digest = roster_digest(&self.params, &roster);
        let holders: Vec<u16> = roster.iter().map(|e| e.party).collect();
        let self_seed = Seed::random(rng);
        let commitment = self_mask_commitment(&self.params, self.index, &self_seed);
        let mask_shares = split(&self.mask_seed, threshold, &holders, rng);
        let self_shares = split(&self_seed, threshold, &holders, rng);

        let mut sealed = Vec::with_capacity(roster.len() - 1);
        let mut envelopes = Vec::with_capacity(roster.len() - 1);
        let mut own_shares = None;
        for ((entry, mask_share), self_share) in roster.iter().zip(&mask_shares).zip(&self_shares) {
            let peer = entry.party;
            if peer == self.index {
                own_shares = Some((mask_share.clone(), self_share.clone()));
                continue;
            }
            let cipher_dh =
                self.cipher
                    .agree(&entry.cipher_key)
                    .ok_or(SecAggError::LowOrderKey {
                        what: "cipher",
                        party: peer,
                    })?;
            let Some(Some(identity_dh)) = self.identity_dh.get(usize::from(peer)) else {
                // Every roster party passed `check_party`, and only our own slot is `None`.
                return Err(SecAggError::UnknownParty {
                    party: peer,
                    parties: self.params.parties(),
                });
            };
            let to_peer = EnvelopeKey::derive(
                &self.params,
                &digest,
                identity_dh,
                &cipher_dh,
                self.index,
                peer,
            );
            sealed.push((
                peer,
                to_peer.seal(
                    &self.params,
                    &digest,
                    self.index,
                    peer,
                    mask_share,
                    self_share,
                ),
            ));
            envelopes.push((
                peer,
                EnvelopeKey::derive(
                    &self.params,
                    &digest,
                    identity_dh,
                    &cipher_dh,
                    peer,
                    self.index,
                ),
            ));
        }
        let Some((own_mask_share, own_self_share)) = own_shares else {
            // The roster contains our entry (checked above), so our share was set.
            return Err(SecAggError::RosterAltered { party: self.index });
        };
        let frame = wire::shares(self.params.session(), self.index, &commitment, &sealed);
        Ok((
            PartyAwaitShares {
                params: self.params,
                index: self.index,
                roster,
                digest,
                envelopes,
                mask_secret: self.mask_secret,
                self_seed,
                own_mask_share,
                own_self_share,
            },
            frame,
        ))
    }
}

/// Round 2 done: the party waits for the shares its peers sealed for it.
pub struct PartyAwaitShares {
    params: SecAggParams,
    index: u16,
    roster: Vec<RosterEntry>,
    digest: [u8; 32],
    /// Keys that open what each peer sealed for us, ascending by peer.
    envelopes: Vec<(u16, EnvelopeKey)>,
    mask_secret: SessionSecret,
    self_seed: Seed,
    own_mask_share: ShareValue,
    own_self_share: ShareValue,
}

impl std::fmt::Debug for PartyAwaitShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyAwaitShares")
            .field("params", &self.params)
            .field("index", &self.index)
            .field("roster", &self.roster.len())
            .finish_non_exhaustive()
    }
}

impl PartyAwaitShares {
    /// Takes the shares forwarded from `U2`, opens them, and masks `input`: the party's
    /// statistic vector with its DP noise share already added, each entry within
    /// `±params.input_bound()`. Returns the masked vector, to be sent in frames. The mask secret
    /// and the self-mask seed are dropped (and zeroized) here.
    pub fn handle(self, message: Message, input: &[i64]) -> Result<PartyMasked, SecAggError> {
        check_session(&self.params, &message)?;
        let Body::Forwarded { to, sealed } = message.body else {
            return Err(unexpected("party awaiting shares", &message.body));
        };
        if to != self.index {
            return Err(SecAggError::Misrouted { to, us: self.index });
        }
        if input.len() != self.params.length() {
            return Err(SecAggError::InputLength {
                expected: self.params.length(),
                found: input.len(),
            });
        }
        let bound = self.params.input_bound();
        if let Some(index) = input.iter().position(|x| !(-bound..=bound).contains(x)) {
            return Err(SecAggError::InputOutOfRange { index, bound });
        }
        let threshold = self.params.threshold();
        if sealed.len() + 1 < usize::from(threshold) {
            return Err(SecAggError::BelowThreshold {
                round: Round::ShareKeys,
                have: sealed.len() + 1,
                threshold,
            });
        }

        // Open every envelope; `held` ends up ascending by owner, our own shares included.
        let mut held: Vec<(u16, ShareValue, ShareValue)> = Vec::with_capacity(sealed.len() + 1);
        let mut own = Some((self.own_mask_share, self.own_self_share));
        for (from, envelope) in &sealed {
            let Ok(k) = self.envelopes.binary_search_by_key(from, |(p, _)| *p) else {
                return Err(SecAggError::NotInRoster { party: *from });
            };
            if *from > self.index
                && let Some((m, s)) = own.take()
            {
                held.push((self.index, m, s));
            }
            let (mask_share, self_share) = self.envelopes[k]
                .1
                .open(&self.params, &self.digest, *from, self.index, envelope)
                .ok_or(SecAggError::ShareAuthentication { from: *from })?;
            held.push((*from, mask_share, self_share));
        }
        if let Some((m, s)) = own.take() {
            held.push((self.index, m, s));
        }

        // y = x + PRG(b_u) + Σ_{v ∈ U2, v > u} PRG(s_uv) − Σ_{v ∈ U2, v < u} PRG(s_uv)  (mod 2^64)
        let mut masks: Vec<(MaskKey, Sign)> = Vec::with_capacity(held.len());
        masks.push((
            self_mask_key(&self.params, self.index, &self.self_seed),
            Sign::Add,
        ));
        for (peer, _) in &sealed {
            let Some(entry) = self.roster.iter().find(|e| e.party == *peer) else {
                return Err(SecAggError::NotInRoster { party: *peer });
            };
            let dh = self
                .mask_secret
                .agree(&entry.mask_key)
                .ok_or(SecAggError::LowOrderKey {
                    what: "mask",
                    party: *peer,
                })?;
            let sign = if *peer > self.index {
                Sign::Add
            } else {
                Sign::Sub
            };
            masks.push((pair_mask_key(&self.params, &dh, self.index, *peer), sign));
        }
        // Two's complement: an i64 and its u64 reinterpretation are the same residue mod 2^64.
        let mut words: Vec<u64> = input.iter().map(|&x| x as u64).collect();
        apply_masks(&mut words, &masks);
        let survivors_of_sharing = held.iter().map(|(p, _, _)| *p).collect();
        Ok(PartyMasked {
            params: self.params,
            index: self.index,
            words,
            next: 0,
            chunk_words: MAX_CHUNK_WORDS,
            u2: survivors_of_sharing,
            held,
        })
    }
}

/// Round 3: the masked vector, handed out a frame at a time.
pub struct PartyMasked {
    params: SecAggParams,
    index: u16,
    words: Vec<u64>,
    next: usize,
    chunk_words: usize,
    u2: Vec<u16>,
    held: Vec<(u16, ShareValue, ShareValue)>,
}

impl std::fmt::Debug for PartyMasked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyMasked")
            .field("index", &self.index)
            .field("sent_words", &self.next)
            .field("words", &self.words.len())
            .finish_non_exhaustive()
    }
}

impl PartyMasked {
    /// Words per frame (clamped to `1..=MAX_CHUNK_WORDS`).
    pub fn with_chunk_words(mut self, words: usize) -> Self {
        self.chunk_words = words.clamp(1, MAX_CHUNK_WORDS);
        self
    }

    /// The next frame of the masked vector, or `None` when all are out.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.next >= self.words.len() {
            return None;
        }
        let end = (self.next + self.chunk_words).min(self.words.len());
        // Offsets are < MAX_LENGTH = 2^24.
        let frame = wire::masked(
            self.params.session(),
            self.index,
            self.next as u32,
            &self.words[self.next..end],
        );
        self.next = end;
        Some(frame)
    }

    /// Words not yet handed out.
    pub fn remaining_words(&self) -> usize {
        self.words.len() - self.next
    }

    /// Moves to waiting for the unmasking request. Every frame must have been taken.
    pub fn finish(self) -> Result<PartyAwaitUnmask, SecAggError> {
        if self.remaining_words() > 0 {
            return Err(SecAggError::Incomplete {
                what: "masked words",
                expected: self.words.len() as u64,
                received: self.next as u64,
            });
        }
        Ok(PartyAwaitUnmask {
            params: self.params,
            index: self.index,
            u2: self.u2,
            held: self.held,
        })
    }
}

/// Round 4: the party waits for the unmasking request, which it answers exactly once.
pub struct PartyAwaitUnmask {
    params: SecAggParams,
    index: u16,
    /// `U2`, ascending: the parties whose masks entered our masked vector.
    u2: Vec<u16>,
    /// `(owner, mask-key share, self-mask share)` for every owner in `U2`, ascending.
    held: Vec<(u16, ShareValue, ShareValue)>,
}

impl std::fmt::Debug for PartyAwaitUnmask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyAwaitUnmask")
            .field("index", &self.index)
            .field("u2", &self.u2)
            .finish_non_exhaustive()
    }
}

impl PartyAwaitUnmask {
    /// Takes the survivor list `U3` and returns this party's only answer: self-mask shares of
    /// the survivors and mask-key shares of the dropped (`U2 \ U3`). Consuming `self` makes a
    /// second answer — with a different survivor list, revealing both shares of some owner —
    /// impossible.
    pub fn handle(self, message: Message) -> Result<Frame, SecAggError> {
        check_session(&self.params, &message)?;
        let Body::UnmaskRequest { survivors } = message.body else {
            return Err(unexpected(
                "party awaiting the unmasking request",
                &message.body,
            ));
        };
        if let Some(&party) = survivors.iter().find(|p| self.u2.binary_search(p).is_err()) {
            return Err(SecAggError::UnknownSurvivor { party });
        }
        if survivors.binary_search(&self.index).is_err() {
            return Err(SecAggError::NotASurvivor { party: self.index });
        }
        let threshold = self.params.threshold();
        if survivors.len() < usize::from(threshold) {
            return Err(SecAggError::BelowThreshold {
                round: Round::MaskedInput,
                have: survivors.len(),
                threshold,
            });
        }
        let mut self_mask = Vec::with_capacity(survivors.len());
        let mut mask_key = Vec::with_capacity(self.held.len() - survivors.len());
        for (owner, mask_share, self_share) in &self.held {
            if survivors.binary_search(owner).is_ok() {
                self_mask.push((*owner, self_share));
            } else {
                mask_key.push((*owner, mask_share));
            }
        }
        Ok(wire::unmask(
            self.params.session(),
            self.index,
            &self_mask,
            &mask_key,
        ))
    }
}

pub(crate) fn check_session(params: &SecAggParams, message: &Message) -> Result<(), SecAggError> {
    if message.session != params.session() {
        return Err(SecAggError::WrongSession {
            expected: params.session(),
            found: message.session,
        });
    }
    Ok(())
}

pub(crate) fn unexpected(state: &'static str, body: &Body) -> SecAggError {
    SecAggError::Unexpected {
        state,
        message: body.name(),
    }
}

/// Bonawitz et al.'s check: every advertised key is distinct, so no party can make a pairwise
/// mask or envelope key coincide with another pair's.
fn check_distinct_keys(roster: &[RosterEntry]) -> Result<(), SecAggError> {
    let mut seen = std::collections::HashSet::with_capacity(2 * roster.len());
    for entry in roster {
        if !seen.insert(entry.cipher_key) || !seen.insert(entry.mask_key) {
            return Err(SecAggError::DuplicateKey {
                what: "per-session",
                party: entry.party,
            });
        }
    }
    Ok(())
}
