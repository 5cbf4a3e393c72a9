//! Unit tests of the key types: each rule, its faults, and idempotence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;

const LEGACY: KeyType = KeyType::CnResidentId { legacy_15: true };
const ID: KeyType = KeyType::CnResidentId { legacy_15: false };
const CASE: KeyType = KeyType::Text {
    case_sensitive: true,
};

fn n(ty: KeyType, field: &str) -> Result<String, KeyFault> {
    normalize(ty, field)
}

#[test]
fn names_parse_round_trip_and_codes_are_distinct() {
    let mut codes = std::collections::HashSet::new();
    for ty in ALL {
        assert_eq!(KeyType::parse(ty.name()), Ok(ty));
        assert_eq!(ty.to_string(), ty.name());
        assert_eq!(ty.name().parse::<KeyType>(), Ok(ty));
        assert!(ty.code() != 0 && codes.insert(ty.code()));
    }
    // The codes are part of the session digest: pinned here.
    let pinned: Vec<u8> = ALL.iter().map(|t| t.code()).collect();
    assert_eq!(pinned, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(KeyType::default(), KeyType::TEXT);
    let err = KeyType::parse("cn-id").unwrap_err();
    assert!(err.contains("\"cn-id\""), "{err}");
    assert!(err.contains("cn-resident-id:legacy-15") && err.contains("email"));
    assert!(KeyType::parse("Text").is_err() && KeyType::parse("").is_err());
}

#[test]
fn fault_messages_are_short_and_hold_no_text() {
    let length = KeyFault::Length {
        found: 17,
        expected: "18",
    };
    assert_eq!(length.to_string(), "18 characters expected, found 17");
    assert_eq!(
        KeyFault::CheckDigit.to_string(),
        "check digit does not match"
    );
    assert_eq!(
        KeyFault::Character { position: 0 }.to_string(),
        "character 1 is not allowed here"
    );
    assert_eq!(KeyFault::Empty.to_string(), "empty value");
    let secret = "11010519491231002Y";
    let fault = n(ID, secret).unwrap_err();
    assert!(!format!("{fault} {fault:?}").contains("1101051949"));
}

#[test]
fn invisible_characters_and_nfkc_come_first() {
    for ty in [KeyType::TEXT, CASE] {
        assert_eq!(
            n(ty, "\u{feff}ab\u{200b}c\u{200c}\u{200d}\u{2060}"),
            Ok("abc".into())
        );
        assert_eq!(n(ty, "\u{3000}１１０\u{a0}"), Ok("110".into()));
    }
    assert_eq!(n(KeyType::TEXT, "\u{feff}\u{200b}"), Err(KeyFault::Empty));
    // Compatibility forms: ligature, circled letter, composed and decomposed accents.
    assert_eq!(n(CASE, "\u{fb01}\u{24b6}"), Ok("fiA".into()));
    assert_eq!(n(CASE, "Jose\u{301}"), n(CASE, "Jos\u{e9}"));
}

#[test]
fn text_trims_collapses_and_folds() {
    let t = KeyType::TEXT;
    assert_eq!(n(t, "  Anna \t\n Maria\r\n"), Ok("anna maria".into()));
    assert_eq!(n(t, "a\u{b}b"), Ok("a b".into()));
    assert_eq!(
        n(t, "a\u{1f}b"),
        Ok("a\u{1f}b".into()),
        "U+001F is not White_Space"
    );
    assert_eq!(
        n(t, "\u{a0}Anna\u{3000}\u{2003}Maria\u{85}"),
        Ok("anna maria".into())
    );
    assert_eq!(n(t, "Stra\u{df}e"), n(t, "STRASSE"));
    assert_eq!(n(t, "Stra\u{df}e"), Ok("strasse".into()));
    assert_eq!(n(t, "ＡＢＣ　ｄｅｆ"), Ok("abc def".into()));
    assert_eq!(n(t, "\u{130}"), Ok("i\u{307}".into()));
    assert_eq!(n(CASE, "  Stra\u{df}e  X "), Ok("Stra\u{df}e X".into()));
    assert_eq!(n(CASE, "A  B"), Ok("A B".into()));
    for blank in ["", " ", "\t\r\n", "\u{a0}\u{3000}", "\u{feff} "] {
        assert_eq!(n(t, blank), Err(KeyFault::Empty), "{blank:?}");
        assert_eq!(n(CASE, blank), Err(KeyFault::Empty), "{blank:?}");
    }
}

#[test]
fn resident_ids() {
    for ty in [ID, LEGACY] {
        assert_eq!(n(ty, "11010519491231002X"), Ok("11010519491231002X".into()));
        assert_eq!(n(ty, "11010519491231002x"), Ok("11010519491231002X".into()));
        assert_eq!(n(ty, "440524188001010014"), Ok("440524188001010014".into()));
        assert_eq!(
            n(ty, "\u{feff}１１０１０５ １９４９１２３１ ００２ｘ\u{a0}"),
            Ok("11010519491231002X".into())
        );
        assert_eq!(n(ty, "440524188001010015"), Err(KeyFault::CheckDigit));
        assert_eq!(n(ty, "110105194912310021"), Err(KeyFault::CheckDigit));
        assert_eq!(n(ty, " \u{3000}"), Err(KeyFault::Empty));
        assert_eq!(
            n(ty, "1101051949X231002X"),
            Err(KeyFault::Character { position: 10 })
        );
        assert_eq!(
            n(ty, "110105-19491231002X"),
            Err(KeyFault::Character { position: 6 })
        );
    }
    assert_eq!(
        n(LEGACY, "110105491231002"),
        Ok("11010519491231002X".into())
    );
    assert_eq!(
        n(ID, "110105491231002"),
        Err(KeyFault::Length {
            found: 15,
            expected: "18"
        })
    );
    assert_eq!(
        n(LEGACY, "11010549123100X"),
        Err(KeyFault::Character { position: 14 })
    );
    assert_eq!(
        n(LEGACY, "1101051949123100"),
        Err(KeyFault::Length {
            found: 16,
            expected: "15 or 18"
        })
    );
    let long = "1".repeat(1000);
    assert_eq!(
        n(ID, &long),
        Err(KeyFault::Length {
            found: 1000,
            expected: "18"
        })
    );
}

#[test]
fn check_characters_cover_every_value() {
    // Changing the last body digit walks the check value through all 11 values.
    let mut seen = std::collections::HashSet::new();
    for d in b'0'..=b'9' {
        let mut body = *b"11010519491231002";
        body[16] = d;
        seen.insert(resident_id_check(&body));
        let mut id = body.to_vec();
        id.push(resident_id_check(&body));
        let id = String::from_utf8(id).unwrap();
        assert_eq!(n(ID, &id), Ok(id.clone()));
    }
    assert_eq!(seen.len(), 10);
    // A check value of 0 for USCC is the `31 maps to 0` case.
    // (This body's weighted sum is a multiple of 31.)
    assert_eq!(uscc_with_check("91350100M000100Y3"), "91350100M000100Y30");
}

/// A code from `body` (17 characters) and its correct check character, by trying each.
fn uscc_with_check(body: &str) -> String {
    USCC_ALPHABET
        .iter()
        .map(|&c| format!("{body}{}", c as char))
        .find(|code| n(KeyType::CnUscc, code).is_ok())
        .unwrap()
}

#[test]
fn uscc_codes() {
    let u = KeyType::CnUscc;
    assert_eq!(n(u, "91310110666007217T"), Ok("91310110666007217T".into()));
    assert_eq!(n(u, "91350100M000100Y43"), Ok("91350100M000100Y43".into()));
    assert_eq!(
        n(u, " 9135 0100 m000 100y 43\u{3000}"),
        Ok("91350100M000100Y43".into())
    );
    assert_eq!(
        n(u, "９１３５０１００Ｍ０００１００Ｙ４３"),
        Ok("91350100M000100Y43".into())
    );
    assert_eq!(n(u, "91350100M000100Y44"), Err(KeyFault::CheckDigit));
    // I, O, S, V, Z are not in the alphabet, in either case.
    for bad in ['I', 'O', 's', 'V', 'z'] {
        let code = format!("91350100M000100{bad}43");
        assert_eq!(n(u, &code), Err(KeyFault::Character { position: 15 }));
    }
    assert_eq!(
        n(u, "91350100M000100Y4"),
        Err(KeyFault::Length {
            found: 17,
            expected: "18"
        })
    );
    assert_eq!(n(u, "\u{feff}"), Err(KeyFault::Empty));
    assert_eq!(
        n(u, "9135010\u{e9}"),
        Err(KeyFault::Character { position: 7 })
    );
    assert_eq!(uscc_with_check("91350100M000100Y4"), "91350100M000100Y43");
}

#[test]
fn phones() {
    let p = KeyType::Phone;
    for same in [
        "13800138000",
        "+86 138 0013 8000",
        "0086-138-0013-8000",
        "86 (138) 0013.8000",
        "＋８６　１３８００１３８０００",
    ] {
        assert_eq!(n(p, same), Ok("13800138000".into()), "{same:?}");
    }
    // Not a PRC mobile number after the country code: kept as written.
    assert_eq!(n(p, "+86 10 6552 9988"), Ok("00861065529988".into()));
    assert_eq!(n(p, "010/6552 9988"), Ok("01065529988".into()));
    assert_eq!(n(p, "+49 30 1234567"), Ok("0049301234567".into()));
    assert_eq!(n(p, "86138001380001"), Ok("86138001380001".into()));
    assert_eq!(n(p, "110"), Ok("110".into()));
    assert_eq!(
        n(p, "12"),
        Err(KeyFault::Length {
            found: 2,
            expected: "3 to 17"
        })
    );
    assert_eq!(
        n(p, "+"),
        Err(KeyFault::Length {
            found: 2,
            expected: "3 to 17"
        })
    );
    assert_eq!(
        n(p, &"1".repeat(18)),
        Err(KeyFault::Length {
            found: 18,
            expected: "3 to 17"
        })
    );
    assert_eq!(
        n(p, "138 0013 800x"),
        Err(KeyFault::Character { position: 10 })
    );
    assert_eq!(
        n(p, "0086+138"),
        Err(KeyFault::Format("'+' is allowed only at the start"))
    );
    assert_eq!(n(p, " - ( ) "), Err(KeyFault::Empty));
}

#[test]
fn emails() {
    let e = KeyType::Email;
    assert_eq!(
        n(e, "  Anna.Li+News@Example.COM\u{a0}"),
        Ok("anna.li+news@example.com".into())
    );
    assert_eq!(
        n(e, "ＡＮＮＡ＠ＥＸＡＭＰＬＥ．ＣＯＭ"),
        Ok("anna@example.com".into())
    );
    assert_eq!(
        n(e, "STRA\u{df}E@Beispiel.DE"),
        Ok("strasse@beispiel.de".into())
    );
    assert_eq!(n(e, "\u{feff}a@b"), Ok("a@b".into()));
    assert_eq!(n(e, " "), Err(KeyFault::Empty));
    assert_eq!(n(e, "a b@c.d"), Err(KeyFault::Character { position: 1 }));
    assert_eq!(n(e, "a@c\u{7}.d"), Err(KeyFault::Character { position: 3 }));
    for (bad, reason) in [
        ("anna.example.com", "exactly one '@' expected"),
        ("a@b@c", "exactly one '@' expected"),
        ("@example.com", "nothing before the '@'"),
        ("anna@", "nothing after the '@'"),
        ("anna@example..com", "the domain has an empty label"),
        ("anna@.example.com", "the domain has an empty label"),
        ("anna@example.com.", "the domain has an empty label"),
    ] {
        assert_eq!(n(e, bad), Err(KeyFault::Format(reason)), "{bad:?}");
    }
}

#[test]
fn a_fault_leaves_the_buffer_as_it_was() {
    let mut out = b"prefix".to_vec();
    for (ty, field) in [
        (ID, "11010519491231002Y"),
        (ID, "1101051949123100221"),
        (LEGACY, "11010549123100X"),
        (KeyType::CnUscc, "91350100M000100Y44"),
        (KeyType::Phone, "0086+1"),
        (KeyType::Phone, "1234567890123456789"),
        (KeyType::Phone, "8613800138000x"),
        (KeyType::Email, "a@b..c"),
        (KeyType::TEXT, "  "),
    ] {
        assert!(normalize_into(ty, field, &mut out).is_err(), "{field:?}");
        assert_eq!(out, b"prefix", "{field:?}");
    }
    normalize_into(KeyType::TEXT, " A  B ", &mut out).unwrap();
    assert_eq!(out, b"prefixa b");
}

/// Every single scalar value, alone and after a letter, normalizes to something that
/// normalizes to itself.
#[test]
fn text_is_idempotent_on_every_code_point() {
    for c in (0..=0x10ffff_u32).filter_map(char::from_u32) {
        for field in [c.to_string(), format!("A{c}\u{345}")] {
            for ty in [KeyType::TEXT, CASE] {
                if let Ok(once) = n(ty, &field) {
                    assert_eq!(n(ty, &once), Ok(once.clone()), "{ty} {field:?}");
                }
            }
        }
    }
}

/// Characters that exercise the rules: white space of each kind, invisible characters,
/// full-width forms, combining marks (U+0345 folds to a letter), letters that fold to more
/// than one, separators and the '@'.
fn interesting() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        4 => proptest::sample::select(vec![
            ' ', '\t', '\n', '\u{b}', '\u{a0}', '\u{3000}', '\u{2003}', '\u{85}', '\u{feff}',
            '\u{200b}', '\u{200d}', '\u{2060}', '１', 'ｘ', 'Ａ', '\u{301}', '\u{345}',
            '\u{308}', '\u{df}', '\u{1e9e}', '\u{130}', '\u{3a3}', '\u{3c2}', '\u{fb01}',
            '\u{a8}', 'x', 'X', 'a', 'Z', '0', '1', '8', '6', '+', '-', '(', '.', '@',
        ]),
        2 => proptest::char::range('0', '9'),
    ]
}

fn field() -> impl Strategy<Value = String> {
    proptest::collection::vec(interesting(), 0..24).prop_map(|cs| cs.into_iter().collect())
}

proptest! {
    #[test]
    fn normalizing_is_idempotent(field in field()) {
        for ty in ALL {
            if let Ok(once) = n(ty, &field) {
                prop_assert_eq!(n(ty, &once), Ok(once.clone()), "{} {:?}", ty, field);
            }
        }
    }

    #[test]
    fn ascii_fast_path_agrees_with_the_general_path(
        field in "[ \t\n\u{b}\u{c}\r a-zA-Z0-9@.]{0,20}",
    ) {
        for case_fold in [false, true] {
            let mut fast = Vec::new();
            let fast = ascii_text(field.as_bytes(), case_fold, &mut fast).map(|()| fast);
            // The general path, forced by a non-ASCII invisible character.
            let general = n(
                KeyType::Text { case_sensitive: !case_fold },
                &format!("{field}\u{200b}"),
            )
            .map(String::into_bytes);
            prop_assert_eq!(fast, general);
        }
    }

    #[test]
    fn on_error_nothing_is_appended(field in field()) {
        for ty in ALL {
            let mut out = vec![7u8; 3];
            match normalize_into(ty, &field, &mut out) {
                Ok(()) => {
                    let alone = n(ty, &field).unwrap();
                    prop_assert_eq!(&out[3..], alone.as_bytes());
                }
                Err(_) => prop_assert_eq!(&out, &[7u8; 3]),
            }
        }
    }
}
