//! Known-answer vectors: `tests/vectors/psi_ecdh_v1.json` pins the canonical key encoding, the
//! hash to the group, blinding, the comparison digest, and which frames the decoder accepts.
//!
//! The file is checked in; `CONCORD_WRITE_VECTORS=1 cargo test -p concord-mpc --test vectors`
//! rewrites it from this implementation (review the diff: a change breaks interoperability).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use concord_mpc::psi::keys::canonical_key;
use concord_mpc::psi::vectors::{blinded_element, element_digest, hash_to_group_element};
use concord_mpc::psi::{BlindingKey, DecodeError, KeySpec, KeyType, Message, SessionId};
use serde::{Deserialize, Serialize};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/psi_ecdh_v1.json"
);

#[derive(Serialize, Deserialize)]
struct Vectors {
    protocol: String,
    hash_domain: String,
    blinding_key: String,
    keys: Vec<KeyCase>,
    frames: Vec<FrameCase>,
}

#[derive(Serialize, Deserialize)]
struct KeyCase {
    name: String,
    columns: u8,
    case_fold: bool,
    components: Vec<String>,
    /// Canonical bytes, or null when the row is excluded (an empty component).
    canonical: Option<String>,
    element: Option<String>,
    blinded: Option<String>,
    digest: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct FrameCase {
    name: String,
    frame: String,
    /// `"ok"`, or the name of the `DecodeError` variant that must be reported.
    expect: String,
}

fn domain() -> SessionId {
    SessionId(std::array::from_fn(|i| i as u8))
}

fn key() -> BlindingKey {
    // RFC 9497's test blind, a canonical scalar.
    let bytes =
        hex::decode("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706").unwrap();
    BlindingKey::from_canonical_bytes(bytes.try_into().unwrap()).unwrap()
}

fn key_inputs() -> Vec<(&'static str, u8, bool, Vec<&'static str>)> {
    vec![
        ("ascii", 1, false, vec!["19850412-1234"]),
        ("trimmed", 1, false, vec!["  19850412-1234\t"]),
        ("nfc_precomposed", 1, false, vec!["Jos\u{e9}"]),
        ("nfc_decomposed", 1, false, vec!["Jose\u{301}"]),
        ("case_sensitive", 1, false, vec!["STRASSE"]),
        ("case_folded_sharp_s", 1, true, vec!["Stra\u{df}e"]),
        ("case_folded_upper", 1, true, vec!["STRASSE"]),
        ("composite_ab_c", 2, false, vec!["ab", "c"]),
        ("composite_a_bc", 2, false, vec!["a", "bc"]),
        (
            "composite_unicode",
            3,
            true,
            vec!["M\u{dc}LLER", " anna ", "1970-01-01"],
        ),
        ("excluded_blank_component", 2, false, vec!["x", "   "]),
    ]
}

fn frame_inputs() -> Vec<(&'static str, String, &'static str)> {
    let point = hex::encode(blinded_element(
        domain(),
        b"\x00\x00\x00\x01\x00\x00\x00\x01a",
        &key(),
    ));
    let params = "ab".repeat(32);
    vec![
        ("good_query", format!("0101{params}0000000000100000"), "ok"),
        ("good_blinded", format!("010200000001{point}"), "ok"),
        ("good_empty_batch", "010300000000".into(), "ok"),
        (
            "good_digests",
            format!("010500000002{}", "11".repeat(32)),
            "ok",
        ),
        ("good_matches", "01060000000200000000000000ff".into(), "ok"),
        ("good_outcome", "01070000000000000005".into(), "ok"),
        ("bad_empty", String::new(), "Truncated"),
        ("bad_version", format!("020200000001{point}"), "Version"),
        ("bad_unknown_kind", "0163".into(), "UnknownKind"),
        (
            "bad_query_truncated",
            format!("0101{params}00000000001000"),
            "Truncated",
        ),
        (
            "bad_query_trailing_bytes",
            format!("0101{params}000000000010000000"),
            "TrailingBytes",
        ),
        (
            "bad_batch_count_over_limit",
            "010200010001".into(),
            "BatchTooLarge",
        ),
        (
            "bad_batch_short",
            format!("010200000002{point}"),
            "Truncated",
        ),
        (
            "bad_batch_trailing_bytes",
            format!("010200000001{point}00"),
            "TrailingBytes",
        ),
        (
            "bad_point_identity",
            format!("010200000001{}", "00".repeat(32)),
            "IdentityPoint",
        ),
        (
            "bad_point_non_canonical",
            "010200000001edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f".into(),
            "InvalidPoint",
        ),
        (
            "bad_point_negative",
            format!("010300000001{}", "01".to_owned() + &"00".repeat(31)),
            "InvalidPoint",
        ),
        (
            "bad_point_high_bit",
            format!("010200000001{point_hi}", point_hi = set_high_bit(&point)),
            "InvalidPoint",
        ),
        (
            "bad_point_second_of_two",
            format!("010200000002{point}{}", "ff".repeat(32)),
            "InvalidPoint",
        ),
        (
            "bad_digests_trailing_bytes",
            format!("010500000001{}", "11".repeat(17)),
            "TrailingBytes",
        ),
        ("bad_outcome_truncated", "010700000000".into(), "Truncated"),
    ]
}

fn set_high_bit(point: &str) -> String {
    let mut bytes = hex::decode(point).unwrap();
    bytes[31] |= 0x80;
    hex::encode(bytes)
}

fn decode_result(frame: &[u8]) -> String {
    match Message::decode(frame) {
        Ok(_) => "ok".into(),
        Err(e) => match e {
            DecodeError::Truncated { .. } => "Truncated",
            DecodeError::TrailingBytes { .. } => "TrailingBytes",
            DecodeError::Version { .. } => "Version",
            DecodeError::UnknownKind { .. } => "UnknownKind",
            DecodeError::BatchTooLarge { .. } => "BatchTooLarge",
            DecodeError::InvalidPoint { .. } => "InvalidPoint",
            DecodeError::IdentityPoint { .. } => "IdentityPoint",
            _ => "other",
        }
        .into(),
    }
}

/// The key spec of a case: `columns` text columns, case-folded or case-sensitive (the vectors
/// predate the other key types, which `key_types_v1.json` covers).
fn spec_of(columns: u8, case_fold: bool) -> KeySpec {
    let ty = KeyType::Text {
        case_sensitive: !case_fold,
    };
    KeySpec::new(&vec![ty; usize::from(columns)]).unwrap()
}

fn generate() -> Vectors {
    let keys = key_inputs()
        .into_iter()
        .map(|(name, columns, case_fold, components)| {
            let spec = spec_of(columns, case_fold);
            let canonical = canonical_key(spec, &components);
            let blinded = canonical
                .as_ref()
                .map(|c| blinded_element(domain(), c, &key()));
            KeyCase {
                name: name.into(),
                columns,
                case_fold,
                components: components.iter().map(|c| c.to_string()).collect(),
                canonical: canonical.as_ref().map(hex::encode),
                element: canonical
                    .as_ref()
                    .map(|c| hex::encode(hash_to_group_element(domain(), c))),
                blinded: blinded.map(hex::encode),
                digest: blinded.map(|b| hex::encode(element_digest(domain(), &b))),
            }
        })
        .collect();
    let frames = frame_inputs()
        .into_iter()
        .map(|(name, frame, expect)| FrameCase {
            name: name.into(),
            frame,
            expect: expect.into(),
        })
        .collect();
    Vectors {
        protocol: "concord-psi-ecdh-ristretto255 v1".into(),
        hash_domain: hex::encode(domain().0),
        blinding_key: "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706".into(),
        keys,
        frames,
    }
}

#[test]
fn known_answers() {
    if std::env::var_os("CONCORD_WRITE_VECTORS").is_some() {
        let json = serde_json::to_string_pretty(&generate()).unwrap();
        std::fs::write(PATH, json + "\n").unwrap();
    }
    let file: Vectors = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let domain = SessionId(hex::decode(&file.hash_domain).unwrap().try_into().unwrap());
    let key = BlindingKey::from_canonical_bytes(
        hex::decode(&file.blinding_key).unwrap().try_into().unwrap(),
    )
    .unwrap();
    assert!(
        file.keys.len() >= 10
            && file
                .frames
                .iter()
                .filter(|f| f.name.starts_with("bad_"))
                .count()
                >= 10
    );
    for case in &file.keys {
        let spec = spec_of(case.columns, case.case_fold);
        let canonical = canonical_key(spec, &case.components);
        assert_eq!(
            canonical.as_ref().map(hex::encode),
            case.canonical,
            "{}",
            case.name
        );
        let Some(canonical) = canonical else { continue };
        let element = hash_to_group_element(domain, &canonical);
        assert_eq!(Some(hex::encode(element)), case.element, "{}", case.name);
        let blinded = blinded_element(domain, &canonical, &key);
        assert_eq!(Some(hex::encode(blinded)), case.blinded, "{}", case.name);
        let digest = element_digest(domain, &blinded);
        assert_eq!(Some(hex::encode(digest)), case.digest, "{}", case.name);
    }
    for case in &file.frames {
        let frame = hex::decode(&case.frame).unwrap();
        assert_eq!(decode_result(&frame), case.expect, "{}", case.name);
        assert_eq!(
            case.name.starts_with("bad_"),
            case.expect != "ok",
            "{}",
            case.name
        );
    }
}

#[test]
fn normalization_equivalences_hold_in_the_file() {
    let file: Vectors = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let canonical = |name: &str| {
        file.keys
            .iter()
            .find(|k| k.name == name)
            .and_then(|k| k.canonical.clone())
    };
    assert_eq!(canonical("ascii"), canonical("trimmed"));
    assert_eq!(canonical("nfc_precomposed"), canonical("nfc_decomposed"));
    assert_eq!(
        canonical("case_folded_sharp_s"),
        canonical("case_folded_upper")
    );
    assert_ne!(canonical("case_sensitive"), canonical("case_folded_upper"));
    assert_ne!(canonical("composite_ab_c"), canonical("composite_a_bc"));
    assert_eq!(canonical("excluded_blank_component"), None);
}
