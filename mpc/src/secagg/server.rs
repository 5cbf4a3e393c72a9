//! The aggregator: the recipient's node (or the job coordinator acting for it). It relays every
//! message between the parties, decides when a round closes (the node's deadline), and learns
//! the sum of the surviving parties' vectors — nothing else.

use curve25519_dalek::scalar::Scalar;
use rayon::prelude::*;
use subtle::ConstantTimeEq as _;

use super::crypto::{SessionSecret, pair_mask_key, self_mask_commitment, self_mask_key};
use super::params::SecAggParams;
use super::party::{check_session, unexpected};
use super::prg::{MaskKey, Sign, apply_masks};
use super::shamir::{ShareValue, lagrange_at_zero, reconstruct};
use super::wire::{self, Body, Frame, Message, RosterEntry, Sealed};
use super::{Round, SecAggError};

/// What the aggregator learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregate {
    /// The element-wise sum of the contributors' vectors, exact while the true total of every
    /// entry lies in `i64` (guaranteed when every party kept within
    /// [`SecAggParams::input_bound`]).
    pub sum: Vec<i64>,
    /// Parties whose vectors (and noise shares) are in the sum: `U3`, ascending.
    pub contributors: Vec<u16>,
    /// Every other party of the session, ascending: never advertised, vanished before their
    /// masked vector was complete, or sent nothing at all.
    pub excluded: Vec<u16>,
}

/// Round 1: the aggregator collects key advertisements.
pub struct ServerAwaitKeys {
    params: SecAggParams,
    /// By party index.
    keys: Vec<Option<RosterEntry>>,
}

impl std::fmt::Debug for ServerAwaitKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAwaitKeys")
            .field("params", &self.params)
            .field("advertised", &self.advertised())
            .finish()
    }
}

impl ServerAwaitKeys {
    /// Opens a session.
    pub fn new(params: SecAggParams) -> Self {
        let n = usize::from(params.parties());
        Self {
            params,
            keys: vec![None; n],
        }
    }

    /// Takes one party's advertisement.
    pub fn handle(&mut self, message: Message) -> Result<(), SecAggError> {
        check_session(&self.params, &message)?;
        let Body::AdvertiseKeys {
            from,
            params,
            cipher_key,
            mask_key,
        } = message.body
        else {
            return Err(unexpected("aggregator awaiting keys", &message.body));
        };
        self.params.check_party(from)?;
        if &params != self.params.digest() {
            return Err(SecAggError::ParamsMismatch { party: from });
        }
        let slot = &mut self.keys[usize::from(from)];
        if slot.is_some() {
            return Err(SecAggError::Duplicate {
                what: "key advertisement",
                party: from,
            });
        }
        *slot = Some(RosterEntry {
            party: from,
            cipher_key,
            mask_key,
        });
        Ok(())
    }

    /// Advertisements so far.
    pub fn advertised(&self) -> usize {
        self.keys.iter().flatten().count()
    }

    /// Closes round 1: the roster `U1`, to send to every party in it.
    pub fn close(self) -> Result<(ServerAwaitShares, Frame), SecAggError> {
        let roster: Vec<RosterEntry> = self.keys.into_iter().flatten().collect();
        let threshold = self.params.threshold();
        if roster.len() < usize::from(threshold) {
            return Err(SecAggError::BelowThreshold {
                round: Round::AdvertiseKeys,
                have: roster.len(),
                threshold,
            });
        }
        let frame = wire::roster(self.params.session(), &roster);
        let n = usize::from(self.params.parties());
        Ok((
            ServerAwaitShares {
                params: self.params,
                roster,
                shares: (0..n).map(|_| None).collect(),
            },
            frame,
        ))
    }
}

/// One party's round-2 message, kept for forwarding.
struct PartyShares {
    commitment: [u8; 32],
    /// `(recipient, sealed)`, ascending by recipient.
    sealed: Vec<(u16, Sealed)>,
}

/// Round 2: the aggregator collects sealed shares.
pub struct ServerAwaitShares {
    params: SecAggParams,
    roster: Vec<RosterEntry>,
    /// By party index.
    shares: Vec<Option<PartyShares>>,
}

impl std::fmt::Debug for ServerAwaitShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAwaitShares")
            .field("params", &self.params)
            .field("roster", &self.roster.len())
            .field("shared", &self.shared())
            .finish()
    }
}

impl ServerAwaitShares {
    /// The roster `U1` this round runs over.
    pub fn roster(&self) -> &[RosterEntry] {
        &self.roster
    }

    /// Takes one party's sealed shares: from a member of `U1`, once, addressed to exactly the
    /// other members of `U1`.
    pub fn handle(&mut self, message: Message) -> Result<(), SecAggError> {
        check_session(&self.params, &message)?;
        let Body::Shares {
            from,
            commitment,
            sealed,
        } = message.body
        else {
            return Err(unexpected("aggregator awaiting shares", &message.body));
        };
        if self
            .roster
            .binary_search_by_key(&from, |e| e.party)
            .is_err()
        {
            self.params.check_party(from)?;
            return Err(SecAggError::NotInRoster { party: from });
        }
        let recipients = sealed.iter().map(|(to, _)| *to);
        let expected = self.roster.iter().map(|e| e.party).filter(|&p| p != from);
        if !recipients.eq(expected) {
            return Err(SecAggError::RecipientSet { party: from });
        }
        let slot = &mut self.shares[usize::from(from)];
        if slot.is_some() {
            return Err(SecAggError::Duplicate {
                what: "sealed shares",
                party: from,
            });
        }
        *slot = Some(PartyShares { commitment, sealed });
        Ok(())
    }

    /// Parties whose shares have arrived.
    pub fn shared(&self) -> usize {
        self.shares.iter().flatten().count()
    }

    /// Closes round 2: `U2` is every party whose shares arrived. Returns, for each member of
    /// `U2`, the frame of shares sealed for it by the other members.
    pub fn close(self) -> Result<(ServerAwaitMasked, Vec<(u16, Frame)>), SecAggError> {
        let members: Vec<(u16, PartyShares)> = self
            .shares
            .into_iter()
            .enumerate()
            .filter_map(|(p, shares)| Some((p as u16, shares?)))
            .collect();
        let threshold = self.params.threshold();
        if members.len() < usize::from(threshold) {
            return Err(SecAggError::BelowThreshold {
                round: Round::ShareKeys,
                have: members.len(),
                threshold,
            });
        }
        let session = self.params.session();
        let frames = members
            .iter()
            .map(|&(to, _)| {
                let sealed: Vec<(u16, Sealed)> = members
                    .iter()
                    .filter(|(from, _)| *from != to)
                    .filter_map(|(from, shares)| {
                        // Every sender addressed every other member of U1 ⊇ U2 (checked).
                        let k = shares.sealed.binary_search_by_key(&to, |(p, _)| *p).ok()?;
                        Some((*from, shares.sealed[k].1))
                    })
                    .collect();
                (to, wire::forwarded(session, to, &sealed))
            })
            .collect();
        let (u2, commitments) = members
            .into_iter()
            .map(|(p, shares)| (p, shares.commitment))
            .unzip();
        let n = usize::from(self.params.parties());
        let length = self.params.length();
        Ok((
            ServerAwaitMasked {
                params: self.params,
                roster: self.roster,
                u2,
                commitments,
                received: vec![0; n],
                partial: (0..n).map(|_| Vec::new()).collect(),
                sum: vec![0; length],
            },
            frames,
        ))
    }
}

/// Round 3: the aggregator collects masked vectors, frame by frame.
pub struct ServerAwaitMasked {
    params: SecAggParams,
    roster: Vec<RosterEntry>,
    /// `U2`, ascending.
    u2: Vec<u16>,
    /// Self-mask seed commitments, in `u2` order.
    commitments: Vec<[u8; 32]>,
    /// Words received so far, by party index.
    received: Vec<usize>,
    /// Frames of parties still sending, by party index: already added into `sum`, kept only to
    /// be subtracted again if the party never completes.
    partial: Vec<Vec<Vec<u64>>>,
    /// Σ y_u over every frame received, mod 2^64.
    sum: Vec<u64>,
}

impl std::fmt::Debug for ServerAwaitMasked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAwaitMasked")
            .field("params", &self.params)
            .field("u2", &self.u2)
            .field("complete", &self.completed())
            .finish_non_exhaustive()
    }
}

impl ServerAwaitMasked {
    /// Takes one frame of a masked vector. Frames of one party arrive in order and are added
    /// into the sum at once; a party that stops half-way has its frames subtracted again at
    /// [`Self::close`], so it changes nothing.
    pub fn handle(&mut self, message: Message) -> Result<(), SecAggError> {
        check_session(&self.params, &message)?;
        let Body::Masked {
            from,
            offset,
            words,
        } = message.body
        else {
            return Err(unexpected(
                "aggregator awaiting masked input",
                &message.body,
            ));
        };
        if self.u2.binary_search(&from).is_err() {
            self.params.check_party(from)?;
            return Err(SecAggError::NotInRoster { party: from });
        }
        let party = usize::from(from);
        let length = self.params.length();
        let received = self.received[party];
        if received == length {
            return Err(SecAggError::Duplicate {
                what: "masked input",
                party: from,
            });
        }
        if offset as usize != received {
            return Err(SecAggError::ChunkOutOfOrder {
                party: from,
                expected: received as u64,
                found: u64::from(offset),
            });
        }
        let end = received + words.len();
        if end > length {
            return Err(SecAggError::InputOverrun {
                party: from,
                found: end as u64,
                length: length as u64,
            });
        }
        fold_into(&mut self.sum[received..end], &words, Sign::Add);
        self.received[party] = end;
        if end == length {
            self.partial[party] = Vec::new();
        } else {
            self.partial[party].push(words);
        }
        Ok(())
    }

    fn is_complete(&self, party: u16) -> bool {
        self.received[usize::from(party)] == self.params.length()
    }

    /// Parties whose masked vector is complete.
    pub fn completed(&self) -> usize {
        self.u2.iter().filter(|&&p| self.is_complete(p)).count()
    }

    /// Closes round 3: `U3` is every party whose masked vector is complete; partial vectors are
    /// discarded. Returns the request to send to every member of `U3`, and `U3` itself.
    pub fn close(mut self) -> Result<(ServerAwaitUnmask, Frame), SecAggError> {
        let u3: Vec<u16> = self
            .u2
            .iter()
            .copied()
            .filter(|&p| self.is_complete(p))
            .collect();
        let threshold = self.params.threshold();
        if u3.len() < usize::from(threshold) {
            return Err(SecAggError::BelowThreshold {
                round: Round::MaskedInput,
                have: u3.len(),
                threshold,
            });
        }
        let dropped: Vec<u16> = self
            .u2
            .iter()
            .copied()
            .filter(|p| u3.binary_search(p).is_err())
            .collect();
        let commitments = self
            .u2
            .iter()
            .zip(&self.commitments)
            .filter(|(p, _)| self.is_complete(**p))
            .map(|(_, c)| *c)
            .collect();
        // Take back what incomplete parties sent.
        for frames in &mut self.partial {
            let mut offset = 0;
            for words in frames.drain(..) {
                fold_into(
                    &mut self.sum[offset..offset + words.len()],
                    &words,
                    Sign::Sub,
                );
                offset += words.len();
            }
        }
        let frame = wire::unmask_request(self.params.session(), &u3);
        Ok((
            ServerAwaitUnmask {
                params: self.params,
                roster: self.roster,
                u3,
                dropped,
                commitments,
                sum: self.sum,
                responses: Vec::new(),
            },
            frame,
        ))
    }
}

/// One unmasking response: shares in `u3` order and in `dropped` order.
struct Response {
    from: u16,
    self_mask: Vec<ShareValue>,
    mask_key: Vec<ShareValue>,
}

/// Round 4: the aggregator collects unmasking shares and removes the masks.
pub struct ServerAwaitUnmask {
    params: SecAggParams,
    roster: Vec<RosterEntry>,
    u3: Vec<u16>,
    dropped: Vec<u16>,
    /// Self-mask seed commitments, in `u3` order.
    commitments: Vec<[u8; 32]>,
    sum: Vec<u64>,
    /// Ascending by sender.
    responses: Vec<Response>,
}

impl std::fmt::Debug for ServerAwaitUnmask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAwaitUnmask")
            .field("params", &self.params)
            .field("u3", &self.u3)
            .field("dropped", &self.dropped)
            .field("responses", &self.responses.len())
            .finish_non_exhaustive()
    }
}

impl ServerAwaitUnmask {
    #[cfg(test)]
    pub(crate) fn roster_for_tests(&self) -> Vec<RosterEntry> {
        self.roster.clone()
    }

    /// `U3`: the parties whose vectors are in the sum.
    pub fn survivors(&self) -> &[u16] {
        &self.u3
    }

    /// `U2 \ U3`: the parties whose pairwise masks are removed with their reconstructed keys.
    pub fn dropped(&self) -> &[u16] {
        &self.dropped
    }

    /// Takes one party's unmasking shares: from a member of `U3`, once, with exactly one
    /// self-mask share per member of `U3` and one mask-key share per dropped party.
    pub fn handle(&mut self, message: Message) -> Result<(), SecAggError> {
        check_session(&self.params, &message)?;
        let Body::Unmask {
            from,
            self_mask,
            mask_key,
        } = message.body
        else {
            return Err(unexpected(
                "aggregator awaiting unmasking shares",
                &message.body,
            ));
        };
        if self.u3.binary_search(&from).is_err() {
            self.params.check_party(from)?;
            return Err(SecAggError::NotASurvivor { party: from });
        }
        if !self_mask.iter().map(|(p, _)| p).eq(&self.u3)
            || !mask_key.iter().map(|(p, _)| p).eq(&self.dropped)
        {
            return Err(SecAggError::ResponseSet { party: from });
        }
        let at = match self.responses.binary_search_by_key(&from, |r| r.from) {
            Ok(_) => {
                return Err(SecAggError::Duplicate {
                    what: "unmasking shares",
                    party: from,
                });
            }
            Err(at) => at,
        };
        self.responses.insert(
            at,
            Response {
                from,
                self_mask: self_mask.into_iter().map(|(_, s)| s).collect(),
                mask_key: mask_key.into_iter().map(|(_, s)| s).collect(),
            },
        );
        Ok(())
    }

    /// Responses so far; [`Self::finish`] needs the threshold.
    pub fn responses(&self) -> usize {
        self.responses.len()
    }

    /// Reconstructs every survivor's self-mask seed and every dropped party's mask key from the
    /// first `t` responses, checks each against its commitment or advertised public key, and
    /// removes all masks from the sum.
    pub fn finish(self) -> Result<Aggregate, SecAggError> {
        let threshold = self.params.threshold();
        let t = usize::from(threshold);
        if self.responses.len() < t {
            return Err(SecAggError::BelowThreshold {
                round: Round::Unmasking,
                have: self.responses.len(),
                threshold,
            });
        }
        let responders = &self.responses[..t];
        let holders: Vec<u16> = responders.iter().map(|r| r.from).collect();
        let lagrange: Vec<Scalar> = lagrange_at_zero(&holders);

        let mut masks: Vec<(MaskKey, Sign)> = Vec::new();
        for (k, &owner) in self.u3.iter().enumerate() {
            let seed = reconstruct(responders.iter().map(|r| &r.self_mask[k]), &lagrange);
            let commitment = self_mask_commitment(&self.params, owner, &seed);
            if !bool::from(commitment.ct_eq(&self.commitments[k])) {
                return Err(SecAggError::ReconstructionFailed {
                    owner,
                    what: "self-mask seed",
                });
            }
            masks.push((self_mask_key(&self.params, owner, &seed), Sign::Sub));
        }
        for (k, &owner) in self.dropped.iter().enumerate() {
            let seed = reconstruct(responders.iter().map(|r| &r.mask_key[k]), &lagrange);
            let secret = SessionSecret::mask_key(&self.params, owner, &seed);
            let Some(entry) = self.roster.iter().find(|e| e.party == owner) else {
                return Err(SecAggError::NotInRoster { party: owner });
            };
            if !bool::from(secret.public().ct_eq(&entry.mask_key)) {
                return Err(SecAggError::ReconstructionFailed {
                    owner,
                    what: "mask key",
                });
            }
            // Cancel what each survivor u added for the pair (u, owner): the dropped owner would
            // have added the opposite, +PRG if u > owner, −PRG if u < owner.
            for &u in &self.u3 {
                let Some(peer) = self.roster.iter().find(|e| e.party == u) else {
                    return Err(SecAggError::NotInRoster { party: u });
                };
                let dh = secret
                    .agree(&peer.mask_key)
                    .ok_or(SecAggError::LowOrderKey {
                        what: "mask",
                        party: u,
                    })?;
                let sign = if u > owner { Sign::Add } else { Sign::Sub };
                masks.push((pair_mask_key(&self.params, &dh, owner, u), sign));
            }
        }
        let mut sum = self.sum;
        apply_masks(&mut sum, &masks);
        let contributors = self.u3;
        let excluded = (0..self.params.parties())
            .filter(|p| contributors.binary_search(p).is_err())
            .collect();
        Ok(Aggregate {
            // Two's complement reading of the residues mod 2^64 (see the module docs).
            sum: sum.into_iter().map(|w| w as i64).collect(),
            contributors,
            excluded,
        })
    }
}

fn fold_into(sum: &mut [u64], words: &[u64], sign: Sign) {
    const TASK: usize = 1 << 14;
    sum.par_chunks_mut(TASK)
        .zip(words.par_chunks(TASK))
        .for_each(|(s, w)| match sign {
            Sign::Add => s
                .iter_mut()
                .zip(w)
                .for_each(|(s, w)| *s = s.wrapping_add(*w)),
            Sign::Sub => s
                .iter_mut()
                .zip(w)
                .for_each(|(s, w)| *s = s.wrapping_sub(*w)),
        });
}
