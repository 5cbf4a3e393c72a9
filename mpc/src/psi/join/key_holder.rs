//! The key holder: blinds its keys, unblinds the shuffled evaluations, matches the value holder's
//! rows, sums their ciphertexts, adds encrypted noise and re-randomizes.

use curve25519_dalek::scalar::Scalar;
use rand::CryptoRng;
use rayon::prelude::*;

use super::elgamal::{Ciphertext, Encryptor};
use super::wire::{self, JoinMessage};
use super::{Frame, InputReport, JoinError, JoinNoise, JoinParams, KeySet};
use crate::psi::blinding::{Blinded, Blinder};
use crate::psi::group::{BlindingKey, DigestTag, ItemDigest, blind_and_digest};

/// What the key holder learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyHolderOutput {
    /// Distinct keys in common, over all categories (the matching party's leakage).
    pub intersection: u64,
    /// Distinct keys the value holder announced.
    pub peer_items: u64,
    /// The key holder's own input report.
    pub input: InputReport,
}

/// Round 1: the key holder blinds its distinct keys, a batch at a time.
#[derive(Debug)]
pub struct KeyHolderBlinding {
    params: JoinParams,
    blinder: Blinder,
}

impl KeyHolderBlinding {
    /// Starts a session: draws the blinding key; returns the query header to send first.
    pub fn start<R: CryptoRng + ?Sized>(
        params: JoinParams,
        keys: KeySet,
        rng: &mut R,
    ) -> Result<(Self, Frame), JoinError> {
        if keys.spec() != params.keys() {
            return Err(JoinError::KeySpecMismatch);
        }
        let header = wire::query(&params.digest(), keys.len() as u64);
        Ok((
            Self {
                blinder: Blinder::new(params.hash_to_group(), keys, rng),
                params,
            },
            header,
        ))
    }

    /// Items per batch frame (clamped to `1..=MAX_BATCH_ITEMS`).
    pub fn with_batch_items(mut self, items: usize) -> Self {
        self.blinder.set_batch_items(items);
        self
    }

    /// The next batch of blinded keys `[a]H(k)`, or `None` when all are sent.
    pub fn next_batch(&mut self) -> Option<Frame> {
        self.blinder.next_points().map(|p| wire::blinded(&p))
    }

    /// Distinct keys not yet blinded.
    pub fn remaining(&self) -> usize {
        self.blinder.remaining()
    }

    /// Moves to unblinding; every batch must have been taken. Only the key's inverse is kept.
    pub fn finish(self) -> Result<KeyHolderUnblinding, JoinError> {
        let Blinded { keys, unblind, .. } =
            self.blinder
                .finish()
                .map_err(|(expected, received)| JoinError::Incomplete {
                    what: "blinded batches",
                    expected,
                    received,
                })?;
        Ok(KeyHolderUnblinding {
            tag: self.params.digest_tag(),
            unblind,
            own: Vec::with_capacity(keys.len()),
            offer: None,
            params: self.params,
            keys,
        })
    }
}

/// Round 2: the key holder takes the value holder's offer and the shuffled evaluations.
pub struct KeyHolderUnblinding {
    params: JoinParams,
    keys: KeySet,
    unblind: BlindingKey,
    tag: DigestTag,
    /// Digests of `[b]H(k)`, in the value holder's shuffled order.
    own: Vec<ItemDigest>,
    /// Announced rows and the public key.
    offer: Option<(u64, Encryptor)>,
}

impl std::fmt::Debug for KeyHolderUnblinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyHolderUnblinding")
            .field("params", &self.params)
            .field("evaluated", &self.own.len())
            .field("offer", &self.offer.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyHolderUnblinding {
    /// Takes the offer or an evaluated batch.
    pub fn handle(&mut self, message: JoinMessage) -> Result<(), JoinError> {
        match message {
            JoinMessage::Offer {
                params,
                items,
                public,
            } if self.offer.is_none() => {
                if params != self.params.digest() {
                    return Err(JoinError::ParamsMismatch);
                }
                if public.len() != self.params.slots() {
                    return Err(JoinError::SlotCount {
                        expected: self.params.slots(),
                        found: public.len(),
                    });
                }
                self.params.peer_limit.check(items)?;
                self.offer = Some((items, Encryptor::new(&public)));
                Ok(())
            }
            JoinMessage::Evaluated(points) => {
                let expected = self.keys.len() as u64;
                let received = (self.own.len() + points.len()) as u64;
                if received > expected {
                    return Err(JoinError::TooManyItems {
                        what: "evaluated keys",
                        announced: expected,
                        received,
                    });
                }
                self.own
                    .extend(blind_and_digest(&points, &self.unblind, &self.tag));
                Ok(())
            }
            other => Err(JoinError::Unexpected {
                state: "key holder unblinding",
                message: other.name(),
            }),
        }
    }

    /// True once the offer and every evaluation have arrived.
    pub fn is_complete(&self) -> bool {
        self.offer.is_some() && self.own.len() == self.keys.len()
    }

    /// Moves to matching the value holder's rows.
    pub fn finish(self) -> Result<KeyHolderMatching, JoinError> {
        let Some((announced, encryptor)) = self.offer else {
            return Err(JoinError::Incomplete {
                what: "offer",
                expected: 1,
                received: 0,
            });
        };
        if self.own.len() != self.keys.len() {
            return Err(JoinError::Incomplete {
                what: "evaluated keys",
                expected: self.keys.len() as u64,
                received: self.own.len() as u64,
            });
        }
        let mut own = self.own;
        own.par_sort_unstable();
        Ok(KeyHolderMatching {
            sum: Ciphertext::zero(self.params.slots()),
            params: self.params,
            input: self.keys.report(),
            own_items: self.keys.len() as u64,
            own,
            encryptor,
            announced,
            received: 0,
            matched: 0,
        })
    }
}

/// Round 3: the key holder matches row batches and sums their ciphertexts; then it adds the
/// noise, re-randomizes and sends the result.
pub struct KeyHolderMatching {
    params: JoinParams,
    input: InputReport,
    own_items: u64,
    /// Sorted digests of `[b]H(k)`.
    own: Vec<ItemDigest>,
    encryptor: Encryptor,
    announced: u64,
    received: u64,
    matched: u64,
    sum: Ciphertext,
}

impl std::fmt::Debug for KeyHolderMatching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyHolderMatching")
            .field("params", &self.params)
            .field("own_items", &self.own_items)
            .field("announced", &self.announced)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl KeyHolderMatching {
    /// Takes one row batch: adds the ciphertexts of the rows whose digest matches a key.
    pub fn handle(&mut self, message: JoinMessage) -> Result<(), JoinError> {
        let JoinMessage::Rows {
            slots,
            digests,
            components,
        } = message
        else {
            return Err(JoinError::Unexpected {
                state: "key holder matching",
                message: message.name(),
            });
        };
        if slots != self.params.slots() {
            return Err(JoinError::SlotCount {
                expected: self.params.slots(),
                found: slots,
            });
        }
        let received = self.received + digests.len() as u64;
        if received > self.announced {
            return Err(JoinError::TooManyItems {
                what: "rows",
                announced: self.announced,
                received,
            });
        }
        self.received = received;
        let width = 1 + slots;
        let own = &self.own;
        let (matched, sum) = digests
            .par_iter()
            .zip(components.par_chunks(width))
            .filter(|(d, _)| own.binary_search(d).is_ok())
            .fold(
                || (0u64, Ciphertext::zero(slots)),
                |(n, mut acc), (_, ct)| {
                    acc.add_components(ct);
                    (n + 1, acc)
                },
            )
            .reduce(
                || (0u64, Ciphertext::zero(slots)),
                |(n, mut a), (m, b)| {
                    a.add_assign(&b);
                    (n + m, a)
                },
            );
        self.matched += matched;
        self.sum.add_assign(&sum);
        Ok(())
    }

    /// True once every announced row has arrived.
    pub fn is_complete(&self) -> bool {
        self.received == self.announced
    }

    /// Adds the caller's `noise` (drawn from the DP layer; consumed and zeroized here) under a
    /// fresh encryption, which also re-randomizes the sum, and returns the result frame for the
    /// value holder with what the key holder learned.
    pub fn finish<R: CryptoRng + ?Sized>(
        self,
        noise: JoinNoise,
        rng: &mut R,
    ) -> Result<(Frame, KeyHolderOutput), JoinError> {
        if !self.is_complete() {
            return Err(JoinError::Incomplete {
                what: "rows",
                expected: self.announced,
                received: self.received,
            });
        }
        noise.check(&self.params)?;
        let mut r = Scalar::random(rng);
        let mut result = self.encryptor.encrypt(noise.slots(), &r);
        zeroize::Zeroize::zeroize(&mut r);
        drop(noise);
        result.add_assign(&self.sum);
        Ok((
            wire::result(&result),
            KeyHolderOutput {
                intersection: self.matched,
                peer_items: self.announced,
                input: self.input,
            },
        ))
    }
}
