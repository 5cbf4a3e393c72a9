//! Known-answer vectors: `tests/vectors/key_types_v1.json` pins what each key type makes of a
//! field, so that another implementation (or a later version of the Unicode tables) can be
//! checked against this one. A case's `expect` is the normalized key, or for a case named
//! `bad_*` the name of the `KeyFault` variant it is refused with.
//!
//! The file is checked in; `CONCORD_WRITE_VECTORS=1 cargo test -p concord-mpc --test key_types`
//! rewrites it from this implementation (review the diff: a change breaks interoperability).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use concord_mpc::psi::normalize::{normalize, normalize_into};
use concord_mpc::psi::{KeyFault, KeyType};
use serde::{Deserialize, Serialize};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/key_types_v1.json"
);

#[derive(Serialize, Deserialize)]
struct Vectors {
    version: String,
    comment: Vec<String>,
    cases: Vec<Case>,
}

#[derive(Serialize, Deserialize)]
struct Case {
    name: String,
    /// The key type, as `KeyType::parse` takes it.
    #[serde(rename = "type")]
    ty: String,
    input: String,
    /// The normalized key, or (for `bad_*`) the name of the fault.
    expect: String,
}

const COMMENT: &[&str] = &[
    "Cases: {name, type, input, expect}. expect is the normalized key, or for a case named bad_* \
     the KeyFault variant (Empty, Length, Character, CheckDigit, Format) it is refused with.",
    "Resident identity numbers: 11010519491231002X is the example of GB 11643-1999; \
     440524188001010014 is a further valid number (check digit 4, checked by hand).",
    "Unified social credit codes (GB 32100-2015), all valid under the standard's check: \
     91310110666007217T and 91310115591693856A from dromara/hutool, \
     hutool-core/src/test/java/cn/hutool/core/util/CreditCodeUtilTest.java; \
     91350100M000100Y43 from gancao-web/base-tools, docs/api/ts/validator/isTaxID.md. \
     91350211M00013FA1N is a real code from an early pilot region that does not satisfy the \
     check (hutool's test asserts it is refused; see github.com/bluesky335/IDCheck). \
     91350100M000100Y30 is constructed: its weighted sum is a multiple of 31 (check value 31 → 0).",
    "Non-ASCII white space, invisible characters and combining marks are written as \\u escapes.",
];

fn inputs() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        // text
        ("text_ascii", "text", "Anna Li"),
        ("text_trim_and_collapse", "text", "  Anna \t\n  Li  "),
        (
            "text_nbsp_ideographic_space",
            "text",
            "\u{a0}Anna\u{3000}Li\u{3000}",
        ),
        ("text_bom", "text", "\u{feff}Anna"),
        ("text_zero_width", "text", "An\u{200b}na\u{200d} Li\u{2060}"),
        ("text_fullwidth", "text", "ＡＮＮＡ　ＬＩ"),
        ("text_sharp_s", "text", "Stra\u{df}e"),
        ("text_upper_ss", "text", "STRASSE"),
        ("text_capital_sharp_s", "text", "STRA\u{1e9e}E"),
        ("text_precomposed", "text", "Jos\u{e9}"),
        ("text_decomposed", "text", "JOSE\u{301}"),
        ("text_final_sigma", "text", "\u{3bf}\u{3b4}\u{3bf}\u{3c2}"),
        ("text_capital_sigma", "text", "\u{39f}\u{394}\u{39f}\u{3a3}"),
        ("text_ligature", "text", "\u{fb01}le"),
        (
            "text_case_sensitive",
            "text:case-sensitive",
            "  Stra\u{df}e \u{3000} X ",
        ),
        (
            "text_case_sensitive_fullwidth",
            "text:case-sensitive",
            "ＡＢｃ",
        ),
        ("bad_text_blank", "text", " \u{3000}\u{feff}\t"),
        ("bad_text_case_sensitive_blank", "text:case-sensitive", ""),
        // cn-resident-id
        (
            "id_standard_example",
            "cn-resident-id",
            "11010519491231002X",
        ),
        ("id_lowercase_x", "cn-resident-id", "11010519491231002x"),
        (
            "id_fullwidth",
            "cn-resident-id",
            "１１０１０５１９４９１２３１００２ｘ",
        ),
        (
            "id_nbsp_ideographic_space",
            "cn-resident-id",
            "\u{a0}11010519491231002X\u{3000}",
        ),
        ("id_bom", "cn-resident-id", "\u{feff}440524188001010014"),
        ("id_inner_spaces", "cn-resident-id", "110105 19491231 002X"),
        ("id_second_example", "cn-resident-id", "440524188001010014"),
        ("bad_id_check_digit", "cn-resident-id", "110105194912310021"),
        (
            "bad_id_check_digit_x",
            "cn-resident-id",
            "44052418800101001X",
        ),
        ("bad_id_length_17", "cn-resident-id", "11010519491231002"),
        ("bad_id_x_inside", "cn-resident-id", "1101051949X231002X"),
        ("bad_id_hyphen", "cn-resident-id", "110105-19491231-002X"),
        ("bad_id_legacy_refused", "cn-resident-id", "110105491231002"),
        ("bad_id_blank", "cn-resident-id", "\u{3000}"),
        (
            "id_legacy_15",
            "cn-resident-id:legacy-15",
            "110105491231002",
        ),
        (
            "id_legacy_15_fullwidth",
            "cn-resident-id:legacy-15",
            "１１０１０５４９１２３１００２",
        ),
        (
            "id_legacy_type_accepts_18",
            "cn-resident-id:legacy-15",
            "11010519491231002x",
        ),
        (
            "bad_id_legacy_check_digit",
            "cn-resident-id:legacy-15",
            "110105194912310021",
        ),
        (
            "bad_id_legacy_length_16",
            "cn-resident-id:legacy-15",
            "1101054912310021",
        ),
        (
            "bad_id_legacy_x",
            "cn-resident-id:legacy-15",
            "11010549123100X",
        ),
        // cn-uscc
        ("uscc_hutool", "cn-uscc", "91310110666007217T"),
        ("uscc_hutool_simple", "cn-uscc", "91310115591693856A"),
        ("uscc_base_tools", "cn-uscc", "91350100M000100Y43"),
        ("uscc_lowercase_spaced", "cn-uscc", "9135 0100 m000 100y 43"),
        (
            "uscc_fullwidth",
            "cn-uscc",
            "\u{feff}９１３５０１００Ｍ０００１００Ｙ４３\u{a0}",
        ),
        ("uscc_check_value_zero", "cn-uscc", "91350100M000100Y30"),
        ("bad_uscc_check_digit", "cn-uscc", "91350100M000100Y44"),
        (
            "bad_uscc_pilot_nonstandard",
            "cn-uscc",
            "91350211M00013FA1N",
        ),
        ("bad_uscc_letter_o", "cn-uscc", "91350100M000100O43"),
        ("bad_uscc_length_17", "cn-uscc", "91350100M000100Y4"),
        // phone
        ("phone_mobile", "phone", "13800138000"),
        ("phone_plus_86", "phone", "+86 138 0013 8000"),
        ("phone_0086", "phone", "0086-138-0013-8000"),
        ("phone_86", "phone", "86 (138) 0013.8000"),
        (
            "phone_fullwidth",
            "phone",
            "＋８６\u{3000}１３８\u{a0}００１３ ８０００",
        ),
        ("phone_landline_kept", "phone", "010-6552 9988"),
        ("phone_landline_international", "phone", "+86 10 6552 9988"),
        ("phone_foreign", "phone", "+49 (30) 123-4567"),
        ("phone_short_number", "phone", "110"),
        ("bad_phone_letter", "phone", "138 0013 800x"),
        ("bad_phone_too_short", "phone", "12"),
        ("bad_phone_too_long", "phone", "+86 10 1234 5678 9012 3"),
        ("bad_phone_plus_inside", "phone", "0086+13800138000"),
        ("bad_phone_blank", "phone", " - "),
        // email
        ("email_case", "email", "Anna.Li+News@Example.COM"),
        (
            "email_nbsp_ideographic_space",
            "email",
            "\u{a0}anna@example.com\u{3000}",
        ),
        (
            "email_fullwidth",
            "email",
            "ａｎｎａ＠ｅｘａｍｐｌｅ．ｃｏｍ",
        ),
        ("email_sharp_s", "email", "STRA\u{df}E@Beispiel.DE"),
        ("email_bom", "email", "\u{feff}anna@example.com"),
        ("bad_email_no_at", "email", "anna.example.com"),
        ("bad_email_two_at", "email", "anna@li@example.com"),
        ("bad_email_empty_local", "email", "@example.com"),
        ("bad_email_empty_label", "email", "anna@example..com"),
        ("bad_email_inner_space", "email", "anna li@example.com"),
        ("bad_email_blank", "email", "\u{a0}"),
    ]
}

fn fault_name(fault: KeyFault) -> &'static str {
    match fault {
        KeyFault::Empty => "Empty",
        KeyFault::Length { .. } => "Length",
        KeyFault::Character { .. } => "Character",
        KeyFault::CheckDigit => "CheckDigit",
        KeyFault::Format(_) => "Format",
        _ => "other",
    }
}

fn result(ty: &str, input: &str) -> String {
    let ty = KeyType::parse(ty).unwrap();
    match normalize(ty, input) {
        Ok(key) => key,
        Err(fault) => fault_name(fault).into(),
    }
}

fn generate() -> Vectors {
    Vectors {
        version: "concord-key-types v1".into(),
        comment: COMMENT.iter().map(|c| c.to_string()).collect(),
        cases: inputs()
            .into_iter()
            .map(|(name, ty, input)| Case {
                name: name.into(),
                ty: ty.into(),
                input: input.into(),
                expect: result(ty, input),
            })
            .collect(),
    }
}

/// `json` with the characters a reviewer cannot see written as `\u` escapes. They only occur
/// inside strings, so the result is the same JSON.
fn escape_invisible(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        let invisible = !c.is_ascii()
            && (c.is_whitespace()
                || matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}')
                || ('\u{300}'..='\u{36f}').contains(&c));
        if invisible {
            // All of these are in the Basic Multilingual Plane: one escape each.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn read() -> Vectors {
    serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap()
}

#[test]
fn known_answers() {
    if std::env::var_os("CONCORD_WRITE_VECTORS").is_some() {
        let json = serde_json::to_string_pretty(&generate()).unwrap();
        std::fs::write(PATH, escape_invisible(&json) + "\n").unwrap();
    }
    let file = read();
    assert!(file.cases.len() >= 60);
    let mut names = std::collections::HashSet::new();
    for case in &file.cases {
        assert!(names.insert(case.name.as_str()), "duplicate {}", case.name);
        let ty = KeyType::parse(&case.ty).unwrap();
        let mut out = b"row".to_vec();
        let appended = normalize_into(ty, &case.input, &mut out);
        if case.name.starts_with("bad_") {
            let fault = appended.expect_err(&case.name);
            assert_eq!(fault_name(fault), case.expect, "{}", case.name);
            assert_eq!(
                out, b"row",
                "{}: the buffer must be left as it was",
                case.name
            );
        } else {
            assert_eq!(appended, Ok(()), "{}", case.name);
            assert_eq!(&out[3..], case.expect.as_bytes(), "{}", case.name);
            // A normalized key normalizes to itself.
            assert_eq!(normalize(ty, &case.expect).as_deref(), Ok(&*case.expect));
        }
    }
    // Every key type is covered, with at least one refused case.
    for ty in [
        "text",
        "text:case-sensitive",
        "cn-resident-id",
        "cn-resident-id:legacy-15",
        "cn-uscc",
        "phone",
        "email",
    ] {
        let of_type = || file.cases.iter().filter(move |c| c.ty == ty);
        assert!(of_type().any(|c| c.name.starts_with("bad_")), "{ty}");
        assert!(of_type().any(|c| !c.name.starts_with("bad_")), "{ty}");
    }
}

/// What the file says agrees with what was checked by hand against the standards.
#[test]
fn hand_checked_answers_hold_in_the_file() {
    let file = read();
    let expect = |name: &str| {
        file.cases
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.expect.as_str())
            .unwrap_or_else(|| panic!("no case {name}"))
    };
    for name in [
        "id_standard_example",
        "id_lowercase_x",
        "id_fullwidth",
        "id_nbsp_ideographic_space",
        "id_inner_spaces",
        "id_legacy_15",
        "id_legacy_15_fullwidth",
        "id_legacy_type_accepts_18",
    ] {
        assert_eq!(expect(name), "11010519491231002X", "{name}");
    }
    assert_eq!(expect("id_bom"), "440524188001010014");
    assert_eq!(expect("bad_id_check_digit"), "CheckDigit");
    assert_eq!(expect("bad_id_check_digit_x"), "CheckDigit");
    assert_eq!(expect("bad_id_legacy_refused"), "Length");
    assert_eq!(expect("bad_id_blank"), "Empty");
    for (name, code) in [
        ("uscc_hutool", "91310110666007217T"),
        ("uscc_hutool_simple", "91310115591693856A"),
        ("uscc_base_tools", "91350100M000100Y43"),
        ("uscc_lowercase_spaced", "91350100M000100Y43"),
        ("uscc_fullwidth", "91350100M000100Y43"),
        ("uscc_check_value_zero", "91350100M000100Y30"),
    ] {
        assert_eq!(expect(name), code, "{name}");
    }
    assert_eq!(expect("bad_uscc_check_digit"), "CheckDigit");
    assert_eq!(expect("bad_uscc_pilot_nonstandard"), "CheckDigit");
    assert_eq!(expect("bad_uscc_letter_o"), "Character");
    for name in [
        "text_ascii",
        "text_trim_and_collapse",
        "text_nbsp_ideographic_space",
        "text_zero_width",
        "text_fullwidth",
    ] {
        assert_eq!(expect(name), "anna li", "{name}");
    }
    assert_eq!(expect("text_bom"), "anna");
    for name in ["text_sharp_s", "text_upper_ss", "text_capital_sharp_s"] {
        assert_eq!(expect(name), "strasse", "{name}");
    }
    assert_eq!(expect("text_precomposed"), "jos\u{e9}");
    assert_eq!(expect("text_decomposed"), "jos\u{e9}");
    assert_eq!(expect("text_final_sigma"), expect("text_capital_sigma"));
    assert_eq!(expect("text_ligature"), "file");
    assert_eq!(expect("text_case_sensitive"), "Stra\u{df}e X");
    assert_eq!(expect("text_case_sensitive_fullwidth"), "ABc");
    assert_eq!(expect("bad_text_blank"), "Empty");
    for name in [
        "phone_mobile",
        "phone_plus_86",
        "phone_0086",
        "phone_86",
        "phone_fullwidth",
    ] {
        assert_eq!(expect(name), "13800138000", "{name}");
    }
    assert_eq!(expect("phone_landline_kept"), "01065529988");
    assert_eq!(expect("phone_landline_international"), "00861065529988");
    assert_eq!(expect("phone_foreign"), "0049301234567");
    assert_eq!(expect("email_case"), "anna.li+news@example.com");
    for name in [
        "email_nbsp_ideographic_space",
        "email_fullwidth",
        "email_bom",
    ] {
        assert_eq!(expect(name), "anna@example.com", "{name}");
    }
    assert_eq!(expect("email_sharp_s"), "strasse@beispiel.de");
    assert_eq!(expect("bad_email_two_at"), "Format");
    assert_eq!(expect("bad_email_inner_space"), "Character");
}
