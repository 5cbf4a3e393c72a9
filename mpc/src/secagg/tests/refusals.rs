//! Refusals: tampered, moved, replayed and foreign messages; bad lists and parameters.

use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::super::local::LocalParty;
use super::*;

fn forwarded_to(shared: &Shared, to: u16) -> (SessionId, Vec<(u16, wire::Sealed)>) {
    let frame = &shared.forwarded.iter().find(|(p, _)| *p == to).unwrap().1;
    let m = Message::decode(&frame.0).unwrap();
    let Body::Forwarded { sealed, .. } = m.body else {
        panic!("not forwarded shares");
    };
    (m.session, sealed)
}

fn open_err(shared: Shared, to: u16, frame: &Frame) -> SecAggError {
    let party = shared.parties.into_iter().nth(usize::from(to)).unwrap();
    let input = vec![0i64; shared.params.length()];
    party
        .handle(Message::decode(&frame.0).unwrap(), &input)
        .unwrap_err()
}

#[test]
fn tampered_envelopes_are_rejected() {
    let mut rng = StdRng::seed_from_u64(7);
    let ids = identities(4, &mut rng);
    let params = params_for(&ids, 3, 16, &mut rng);
    for byte in [0, 40, SEALED_LEN - 1] {
        let shared = through_sharing(&ids, &params, &mut rng);
        let (session, mut sealed) = forwarded_to(&shared, 0);
        sealed[1].1[byte] ^= 0x01;
        let frame = wire::forwarded(session, 0, &sealed);
        let err = open_err(shared, 0, &frame);
        assert!(
            matches!(err, SecAggError::ShareAuthentication { from: 2 }),
            "{err}"
        );
    }
}

#[test]
fn envelopes_moved_between_parties_are_rejected() {
    let mut rng = StdRng::seed_from_u64(8);
    let ids = identities(4, &mut rng);
    let params = params_for(&ids, 3, 16, &mut rng);
    // The relay swaps who sent two envelopes.
    let shared = through_sharing(&ids, &params, &mut rng);
    let (session, mut sealed) = forwarded_to(&shared, 0);
    let first = sealed[0].1;
    sealed[0].1 = sealed[1].1;
    sealed[1].1 = first;
    let err = open_err(shared, 0, &wire::forwarded(session, 0, &sealed));
    assert!(
        matches!(err, SecAggError::ShareAuthentication { from: 1 }),
        "{err}"
    );
    // The relay delivers party 1's envelope for party 2 to party 3, as if addressed to it.
    let shared = through_sharing(&ids, &params, &mut rng);
    let (_, for_two) = forwarded_to(&shared, 2);
    let (session, mut sealed) = forwarded_to(&shared, 3);
    let from_one = for_two.iter().find(|(p, _)| *p == 1).unwrap().1;
    sealed.iter_mut().find(|(p, _)| *p == 1).unwrap().1 = from_one;
    let err = open_err(shared, 3, &wire::forwarded(session, 3, &sealed));
    assert!(
        matches!(err, SecAggError::ShareAuthentication { from: 1 }),
        "{err}"
    );
}

#[test]
fn messages_of_another_session_are_rejected() {
    let mut rng = StdRng::seed_from_u64(9);
    let ids = identities(3, &mut rng);
    // The same departments, two sessions.
    let a = params_for(&ids, 2, 8, &mut rng);
    let b = params_for(&ids, 2, 8, &mut rng);
    let shared_a = through_sharing(&ids, &a, &mut rng);
    let shared_b = through_sharing(&ids, &b, &mut rng);
    let old = shared_a.forwarded[0].1.clone();
    // As sent: refused on the header.
    let err = open_err(
        through_sharing(&ids, &b, &mut rng),
        shared_a.forwarded[0].0,
        &old,
    );
    assert!(matches!(err, SecAggError::WrongSession { .. }), "{err}");
    // With the header rewritten to the new session: the envelopes do not open.
    let (_, sealed) = forwarded_to(&shared_a, 0);
    let replay = wire::forwarded(b.session(), 0, &sealed);
    let err = open_err(shared_b, 0, &replay);
    assert!(
        matches!(err, SecAggError::ShareAuthentication { .. }),
        "{err}"
    );
    // The aggregator refuses frames of another session too.
    let mut server = ServerAwaitKeys::new(b.clone());
    let (_, advert) = PartyAwaitRoster::start(a.clone(), 0, &ids[0], &mut rng).unwrap();
    let err = server
        .handle(Message::decode(&advert.0).unwrap())
        .unwrap_err();
    assert!(matches!(err, SecAggError::WrongSession { .. }), "{err}");
}

#[test]
fn a_relay_substituting_keys_is_detected() {
    // The relay shows party 0 a roster in which party 1's cipher key is the relay's own. Party 0
    // seals for party 1 under a key the relay still cannot compute (it lacks both identity
    // secrets), and party 1, whose roster differs, cannot open it either: the round fails.
    let mut rng = StdRng::seed_from_u64(10);
    let ids = identities(3, &mut rng);
    let params = params_for(&ids, 2, 8, &mut rng);
    let mut server = ServerAwaitKeys::new(params.clone());
    let mut waiting = Vec::new();
    for (u, id) in ids.iter().enumerate() {
        let (state, frame) =
            PartyAwaitRoster::start(params.clone(), u as u16, id, &mut rng).unwrap();
        server.handle(Message::decode(&frame.0).unwrap()).unwrap();
        waiting.push(state);
    }
    let (mut server, roster) = server.close().unwrap();
    let Body::Roster(mut entries) = Message::decode(&roster.0).unwrap().body else {
        panic!("not a roster");
    };
    entries[1].cipher_key = IdentityKey::random(&mut rng).public();
    let forged = wire::roster(params.session(), &entries);
    let mut parties = Vec::new();
    for (u, state) in waiting.into_iter().enumerate() {
        let shown = if u == 0 { &forged } else { &roster };
        let (state, frame) = state
            .handle(Message::decode(&shown.0).unwrap(), &mut rng)
            .unwrap();
        server.handle(Message::decode(&frame.0).unwrap()).unwrap();
        parties.push(state);
    }
    let (_, forwarded) = server.close().unwrap();
    let to_one = &forwarded.iter().find(|(p, _)| *p == 1).unwrap().1;
    let err = parties
        .remove(1)
        .handle(Message::decode(&to_one.0).unwrap(), &[0; 8])
        .unwrap_err();
    assert!(
        matches!(err, SecAggError::ShareAuthentication { from: 0 }),
        "{err}"
    );
    // A roster that alters a party's own keys is refused by that party.
    let (state, _) = PartyAwaitRoster::start(params.clone(), 1, &ids[1], &mut rng).unwrap();
    let err = state
        .handle(Message::decode(&forged.0).unwrap(), &mut rng)
        .unwrap_err();
    assert!(
        matches!(err, SecAggError::RosterAltered { party: 1 }),
        "{err}"
    );
}

#[test]
fn replayed_messages_are_rejected() {
    let mut rng = StdRng::seed_from_u64(11);
    let ids = identities(3, &mut rng);
    let params = params_for(&ids, 2, 10, &mut rng);
    // Round 1.
    let mut server = ServerAwaitKeys::new(params.clone());
    let (p0, advert) = PartyAwaitRoster::start(params.clone(), 0, &ids[0], &mut rng).unwrap();
    server.handle(Message::decode(&advert.0).unwrap()).unwrap();
    let err = server
        .handle(Message::decode(&advert.0).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, SecAggError::Duplicate { party: 0, .. }),
        "{err}"
    );
    let mut rest = Vec::new();
    for u in 1..3 {
        let (p, f) =
            PartyAwaitRoster::start(params.clone(), u, &ids[usize::from(u)], &mut rng).unwrap();
        server.handle(Message::decode(&f.0).unwrap()).unwrap();
        rest.push(p);
    }
    let (mut server, roster) = server.close().unwrap();
    // Round 2.
    let mut parties = Vec::new();
    for p in std::iter::once(p0).chain(rest) {
        let (p, f) = p
            .handle(Message::decode(&roster.0).unwrap(), &mut rng)
            .unwrap();
        server.handle(Message::decode(&f.0).unwrap()).unwrap();
        let err = server.handle(Message::decode(&f.0).unwrap()).unwrap_err();
        assert!(matches!(err, SecAggError::Duplicate { .. }), "{err}");
        parties.push(p);
    }
    let (mut server, forwarded) = server.close().unwrap();
    // Round 3: a chunk replayed, and a whole vector replayed.
    let mut waiting = Vec::new();
    for (p, (to, frame)) in parties.into_iter().zip(&forwarded) {
        let mut masked = p
            .handle(Message::decode(&frame.0).unwrap(), &[1; 10])
            .unwrap()
            .with_chunk_words(4);
        let first = masked.next_frame().unwrap();
        server.handle(Message::decode(&first.0).unwrap()).unwrap();
        let err = server
            .handle(Message::decode(&first.0).unwrap())
            .unwrap_err();
        assert!(
            matches!(
                err,
                SecAggError::ChunkOutOfOrder {
                    expected: 4,
                    found: 0,
                    ..
                }
            ),
            "{err}"
        );
        let mut last = first;
        while let Some(f) = masked.next_frame() {
            server.handle(Message::decode(&f.0).unwrap()).unwrap();
            last = f;
        }
        let err = server
            .handle(Message::decode(&last.0).unwrap())
            .unwrap_err();
        assert!(
            matches!(err, SecAggError::Duplicate { party, .. } if party == *to),
            "{err}"
        );
        waiting.push(masked.finish().unwrap());
    }
    let (mut server, request) = server.close().unwrap();
    // Round 4: a response replayed.
    let mut responses = Vec::new();
    for p in waiting {
        let f = p.handle(Message::decode(&request.0).unwrap()).unwrap();
        server.handle(Message::decode(&f.0).unwrap()).unwrap();
        responses.push(f);
    }
    let err = server
        .handle(Message::decode(&responses[1].0).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, SecAggError::Duplicate { party: 1, .. }),
        "{err}"
    );
    assert_eq!(server.finish().unwrap().sum, vec![3; 10]);
}

#[test]
fn corrupted_unmasking_shares_fail_the_reconstruction_check() {
    let mut rng = StdRng::seed_from_u64(12);
    let ids = identities(3, &mut rng);
    let params = params_for(&ids, 2, 5, &mut rng);
    for corrupt_key_share in [false, true] {
        let Shared {
            parties,
            mut server,
            forwarded,
            ..
        } = through_sharing(&ids, &params, &mut rng);
        let mut waiting = Vec::new();
        for (u, (p, (_, frame))) in parties.into_iter().zip(&forwarded).enumerate() {
            let mut masked = p
                .handle(Message::decode(&frame.0).unwrap(), &[7; 5])
                .unwrap();
            // Party 2 stops before its vector when a mask-key share is to be corrupted.
            if corrupt_key_share && u == 2 {
                continue;
            }
            while let Some(f) = masked.next_frame() {
                server.handle(Message::decode(&f.0).unwrap()).unwrap();
            }
            waiting.push(masked.finish().unwrap());
        }
        let (mut server, request) = server.close().unwrap();
        for (u, p) in waiting.into_iter().enumerate() {
            let f = p.handle(Message::decode(&request.0).unwrap()).unwrap();
            let mut m = Message::decode(&f.0).unwrap();
            if u == 0 {
                let Body::Unmask {
                    self_mask,
                    mask_key,
                    ..
                } = &mut m.body
                else {
                    panic!("not unmasking shares");
                };
                let list = if corrupt_key_share {
                    mask_key
                } else {
                    self_mask
                };
                let mut bytes = list[0].1.to_bytes();
                bytes[0] ^= 1;
                list[0].1 = ShareValue::from_canonical_bytes(bytes).unwrap();
            }
            server.handle(m).unwrap();
        }
        let err = server.finish().unwrap_err();
        let what = if corrupt_key_share {
            "mask key"
        } else {
            "self-mask seed"
        };
        assert!(
            matches!(err, SecAggError::ReconstructionFailed { what: w, .. } if w == what),
            "{err}"
        );
    }
}

/// A party through round 3 with every other party present, and its unmasking request refusals.
#[test]
fn a_party_checks_the_unmasking_request() {
    let mut rng = StdRng::seed_from_u64(13);
    let ids = identities(5, &mut rng);
    let params = params_for(&ids, 3, 3, &mut rng);
    let attempt = |survivors: &[u16], rng: &mut StdRng| {
        let Shared {
            parties, forwarded, ..
        } = through_sharing(&ids, &params, rng);
        let p = parties.into_iter().next().unwrap();
        let mut masked = p
            .handle(Message::decode(&forwarded[0].1.0).unwrap(), &[0; 3])
            .unwrap();
        while masked.next_frame().is_some() {}
        let waiting = masked.finish().unwrap();
        let request = wire::unmask_request(params.session(), survivors);
        waiting.handle(Message::decode(&request.0).unwrap())
    };
    assert!(attempt(&[0, 1, 2], &mut rng).is_ok());
    let err = attempt(&[1, 2, 3], &mut rng).unwrap_err();
    assert!(
        matches!(err, SecAggError::NotASurvivor { party: 0 }),
        "{err}"
    );
    let err = attempt(&[0, 1], &mut rng).unwrap_err();
    assert!(
        matches!(
            err,
            SecAggError::BelowThreshold {
                round: Round::MaskedInput,
                have: 2,
                threshold: 3
            }
        ),
        "{err}"
    );
    let err = attempt(&[0, 1, 7], &mut rng).unwrap_err();
    assert!(
        matches!(err, SecAggError::UnknownSurvivor { party: 7 }),
        "{err}"
    );
}

#[test]
fn the_aggregator_checks_senders_and_recipients() {
    let mut rng = StdRng::seed_from_u64(14);
    let ids = identities(3, &mut rng);
    let params = params_for(&ids, 2, 4, &mut rng);
    // Parameters that differ (another threshold) are refused at advertisement.
    let other = SecAggParams::new(
        params.session(),
        ids.iter().map(IdentityKey::public).collect(),
        3,
        4,
    )
    .unwrap();
    let mut server = ServerAwaitKeys::new(params.clone());
    let (_, advert) = PartyAwaitRoster::start(other, 2, &ids[2], &mut rng).unwrap();
    let err = server
        .handle(Message::decode(&advert.0).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, SecAggError::ParamsMismatch { party: 2 }),
        "{err}"
    );
    // An index beyond the session.
    let bogus = wire::advertise(
        params.session(),
        9,
        params.digest(),
        &ids[0].public(),
        &ids[1].public(),
    );
    let err = server
        .handle(Message::decode(&bogus.0).unwrap())
        .unwrap_err();
    assert!(
        matches!(
            err,
            SecAggError::UnknownParty {
                party: 9,
                parties: 3
            }
        ),
        "{err}"
    );
    // Shares addressed to a party outside the roster, or missing one.
    let mut server = ServerAwaitKeys::new(params.clone());
    for u in 0..2u16 {
        let (_, f) =
            PartyAwaitRoster::start(params.clone(), u, &ids[usize::from(u)], &mut rng).unwrap();
        server.handle(Message::decode(&f.0).unwrap()).unwrap();
    }
    let (mut server, _) = server.close().unwrap();
    let too_many = wire::shares(
        params.session(),
        0,
        &[0; 32],
        &[(1, [0; SEALED_LEN]), (2, [0; SEALED_LEN])],
    );
    let err = server
        .handle(Message::decode(&too_many.0).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, SecAggError::RecipientSet { party: 0 }),
        "{err}"
    );
    let from_outside = wire::shares(params.session(), 2, &[0; 32], &[(0, [0; SEALED_LEN])]);
    let err = server
        .handle(Message::decode(&from_outside.0).unwrap())
        .unwrap_err();
    assert!(
        matches!(err, SecAggError::NotInRoster { party: 2 }),
        "{err}"
    );
    // Below the threshold at close.
    let err = server.close().unwrap_err();
    assert!(
        matches!(
            err,
            SecAggError::BelowThreshold {
                round: Round::ShareKeys,
                have: 0,
                threshold: 2
            }
        ),
        "{err}"
    );
}

#[test]
fn out_of_order_messages_are_refused() {
    let mut rng = StdRng::seed_from_u64(15);
    let ids = identities(3, &mut rng);
    let params = params_for(&ids, 2, 4, &mut rng);
    let (state, advert) = PartyAwaitRoster::start(params.clone(), 0, &ids[0], &mut rng).unwrap();
    // A party awaiting the roster is handed an advertisement.
    let err = state
        .handle(Message::decode(&advert.0).unwrap(), &mut rng)
        .unwrap_err();
    assert!(matches!(err, SecAggError::Unexpected { .. }), "{err}");
    let shared = through_sharing(&ids, &params, &mut rng);
    // Shares for party 1 delivered to party 0.
    let err = open_err(shared, 0, &{
        let s = through_sharing(&ids, &params, &mut rng);
        let (_, sealed) = forwarded_to(&s, 1);
        wire::forwarded(params.session(), 1, &sealed)
    });
    assert!(
        matches!(err, SecAggError::Misrouted { to: 1, us: 0 }),
        "{err}"
    );
    // Input of the wrong length.
    let shared = through_sharing(&ids, &params, &mut rng);
    let frame = shared.forwarded[0].1.clone();
    let p = shared.parties.into_iter().next().unwrap();
    let err = p
        .handle(Message::decode(&frame.0).unwrap(), &[0; 5])
        .unwrap_err();
    assert!(
        matches!(
            err,
            SecAggError::InputLength {
                expected: 4,
                found: 5
            }
        ),
        "{err}"
    );
    // Finishing before every masked frame was taken.
    let shared = through_sharing(&ids, &params, &mut rng);
    let frame = shared.forwarded[0].1.clone();
    let p = shared.parties.into_iter().next().unwrap();
    let masked = p
        .handle(Message::decode(&frame.0).unwrap(), &[0; 4])
        .unwrap();
    assert!(matches!(
        masked.finish().unwrap_err(),
        SecAggError::Incomplete { .. }
    ));
}

#[test]
fn parameters_are_validated() {
    let mut rng = StdRng::seed_from_u64(16);
    let ids = identities(4, &mut rng);
    let keys: Vec<PublicKey> = ids.iter().map(IdentityKey::public).collect();
    let s = SessionId::random(&mut rng);
    let err = SecAggParams::new(s, keys.clone(), 2, 10).unwrap_err();
    assert!(
        matches!(
            err,
            SecAggError::Threshold {
                threshold: 2,
                parties: 4
            }
        ),
        "{err}"
    );
    assert!(SecAggParams::new(s, keys.clone(), 3, 10).is_ok());
    assert_eq!(SecAggParams::majority(4), 3);
    assert_eq!(SecAggParams::majority(5), 3);
    let err = SecAggParams::new(s, keys.clone(), 5, 10).unwrap_err();
    assert!(matches!(err, SecAggError::Threshold { .. }), "{err}");
    let err = SecAggParams::new(s, keys.clone(), 3, 0).unwrap_err();
    assert!(
        matches!(err, SecAggError::Length { length: 0, .. }),
        "{err}"
    );
    let err = SecAggParams::new(s, keys.clone(), 3, MAX_LENGTH + 1).unwrap_err();
    assert!(matches!(err, SecAggError::Length { .. }), "{err}");
    let err = SecAggParams::new(s, keys[..1].to_vec(), 1, 10).unwrap_err();
    assert!(
        matches!(err, SecAggError::PartyCount { parties: 1, .. }),
        "{err}"
    );
    let mut dup = keys.clone();
    dup[3] = dup[1];
    let err = SecAggParams::new(s, dup, 3, 10).unwrap_err();
    assert!(
        matches!(
            err,
            SecAggError::DuplicateKey {
                what: "identity",
                party: 3
            }
        ),
        "{err}"
    );
    // A party whose identity is not the one listed for its index.
    let params = SecAggParams::new(s, keys, 3, 10).unwrap();
    let err = PartyAwaitRoster::start(params.clone(), 1, &ids[2], &mut rng).unwrap_err();
    assert!(
        matches!(err, SecAggError::IdentityMismatch { party: 1 }),
        "{err}"
    );
    let err = PartyAwaitRoster::start(params, 4, &ids[0], &mut rng).unwrap_err();
    assert!(
        matches!(
            err,
            SecAggError::UnknownParty {
                party: 4,
                parties: 4
            }
        ),
        "{err}"
    );
}

#[test]
fn secrets_do_not_print() {
    let mut rng = StdRng::seed_from_u64(17);
    let ids = identities(3, &mut rng);
    let params = params_for(&ids, 2, 4, &mut rng);
    assert_eq!(format!("{:?}", ids[0]), "IdentityKey { .. }");
    let input = [123_456_789i64; 4];
    let party = LocalParty {
        identity: &ids[0],
        input: &input,
        drops: None,
    };
    let shown = format!("{party:?}");
    assert!(!shown.contains("123456789"), "{shown}");
    let (state, _) = PartyAwaitRoster::start(params.clone(), 0, &ids[0], &mut rng).unwrap();
    let shown = format!("{state:?}");
    assert!(shown.contains("Seed { .. }"), "{shown}");
    let shared = through_sharing(&ids, &params, &mut rng);
    let shown = format!("{:?}", shared.parties[0]);
    assert!(!shown.contains("envelopes"), "{shown}");
    assert!(shown.ends_with(".. }"), "{shown}");
}
