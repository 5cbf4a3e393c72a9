//! Known-answer vectors for OT-PSI: `tests/vectors/psi_ot_v1.json` pins the item digest, the
//! three bin hashes, the pseudorandom code, the correlation-robust hash, and which frames the
//! decoder accepts.
//!
//! The file is checked in; `CONCORD_WRITE_VECTORS=1 cargo test -p concord-mpc --test ot_vectors`
//! rewrites it from this implementation (review the diff: a change breaks interoperability).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use concord_mpc::psi::keys::canonical_key;
use concord_mpc::psi::ot::vectors::{bins, codeword, cr_hash, digest};
use concord_mpc::psi::ot::{OtDecodeError, OtMessage};
use concord_mpc::psi::{DecodeError, KeySpec, KeyType, SessionId};
use serde::{Deserialize, Serialize};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/psi_ot_v1.json");

/// The ristretto255 base point, a valid non-identity element.
const BASE: &str = "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76";

#[derive(Serialize, Deserialize)]
struct Vectors {
    protocol: String,
    session: String,
    hash_seed: String,
    bins: u64,
    code_seed: String,
    keys: Vec<KeyCase>,
    hashes: Vec<HashCase>,
    frames: Vec<FrameCase>,
}

#[derive(Serialize, Deserialize)]
struct KeyCase {
    name: String,
    components: Vec<String>,
    canonical: String,
    digest: String,
    bins: [u32; 3],
    /// Codewords for hash functions 0, 1, 2 (64 bytes each, words little-endian).
    codewords: [String; 3],
}

#[derive(Serialize, Deserialize)]
struct HashCase {
    bin: u64,
    row: String,
    hash: String,
}

#[derive(Serialize, Deserialize)]
struct FrameCase {
    name: String,
    frame: String,
    /// `"ok"`, or the name of the error variant that must be reported.
    expect: String,
}

fn session() -> SessionId {
    SessionId(std::array::from_fn(|i| i as u8))
}

const HASH_SEED: [u8; 16] = *b"concord-ot-hseed";
const CODE_SEED: [u8; 16] = *b"concord-ot-cseed";
const BINS: u64 = 8192;

fn key_inputs() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("ascii", vec!["19850412-1234"]),
        ("nfc", vec!["Jos\u{e9}"]),
        ("other", vec!["19850412-1235"]),
        (
            "long",
            vec!["a-rather-longer-identifier-with-more-than-sixteen-bytes"],
        ),
    ]
}

fn frame_inputs() -> Vec<(&'static str, String, &'static str)> {
    let p = "ab".repeat(32);
    let items = "0000000000000002";
    let bins = "0000000000002000";
    let seed = "5a".repeat(16);
    let points = BASE.repeat(512);
    let column_bytes = |rows: usize| "c3".repeat(512 * rows / 8);
    let identity = "00".repeat(32);
    let non_canonical = "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
    vec![
        (
            "good_hello",
            format!("0121{p}{items}{bins}{seed}{BASE}"),
            "ok",
        ),
        ("good_setup", format!("0122{p}{items}{seed}{points}"), "ok"),
        (
            "good_columns",
            format!("012300000080{}", column_bytes(128)),
            "ok",
        ),
        (
            "good_outputs",
            format!("01240b00000001{}", "77".repeat(33)),
            "ok",
        ),
        ("good_outputs_empty", "01240b00000000".into(), "ok"),
        ("bad_empty", String::new(), "Truncated"),
        (
            "bad_version",
            format!("0221{p}{items}{bins}{seed}{BASE}"),
            "Version",
        ),
        ("bad_unknown_kind", "0125".into(), "UnknownKind"),
        ("bad_ecdh_kind", "010300000000".into(), "UnknownKind"),
        (
            "bad_hello_truncated",
            format!("0121{p}{items}{bins}{seed}"),
            "Truncated",
        ),
        (
            "bad_hello_trailing_bytes",
            format!("0121{p}{items}{bins}{seed}{BASE}00"),
            "TrailingBytes",
        ),
        (
            "bad_hello_identity",
            format!("0121{p}{items}{bins}{seed}{identity}"),
            "IdentityPoint",
        ),
        (
            "bad_hello_non_canonical",
            format!("0121{p}{items}{bins}{seed}{non_canonical}"),
            "InvalidPoint",
        ),
        (
            "bad_setup_511_points",
            format!("0122{p}{items}{seed}{}", BASE.repeat(511)),
            "Truncated",
        ),
        (
            "bad_setup_identity_last",
            format!("0122{p}{items}{seed}{}{identity}", BASE.repeat(511)),
            "IdentityPoint",
        ),
        ("bad_columns_zero_rows", "012300000000".into(), "RowCount"),
        (
            "bad_columns_rows_not_multiple_of_128",
            format!("012300000040{}", column_bytes(64)),
            "RowCount",
        ),
        (
            "bad_columns_over_limit",
            "012300008000".into(),
            "BatchTooLarge",
        ),
        (
            "bad_columns_short",
            format!("012300000080{}", column_bytes(127)),
            "Truncated",
        ),
        (
            "bad_columns_trailing_bytes",
            format!("012300000080{}00", column_bytes(128)),
            "TrailingBytes",
        ),
        ("bad_columns_no_count", "012300".into(), "Truncated"),
        (
            "bad_outputs_width_too_small",
            format!("01240400000001{}", "77".repeat(12)),
            "OutputWidth",
        ),
        (
            "bad_outputs_width_too_large",
            format!("01241000000001{}", "77".repeat(48)),
            "OutputWidth",
        ),
        (
            "bad_outputs_count_over_limit",
            "01240b00002001".into(),
            "BatchTooLarge",
        ),
        (
            "bad_outputs_short",
            format!("01240b00000001{}", "77".repeat(32)),
            "Truncated",
        ),
        (
            "bad_outputs_trailing_bytes",
            format!("01240b00000001{}", "77".repeat(34)),
            "TrailingBytes",
        ),
    ]
}

fn decode_result(frame: &[u8]) -> String {
    match OtMessage::decode(frame) {
        Ok(_) => "ok",
        Err(OtDecodeError::OutputWidth { .. }) => "OutputWidth",
        Err(OtDecodeError::RowCount { .. }) => "RowCount",
        Err(OtDecodeError::Frame(e)) => match e {
            DecodeError::Truncated { .. } => "Truncated",
            DecodeError::TrailingBytes { .. } => "TrailingBytes",
            DecodeError::Version { .. } => "Version",
            DecodeError::UnknownKind { .. } => "UnknownKind",
            DecodeError::BatchTooLarge { .. } => "BatchTooLarge",
            DecodeError::InvalidPoint { .. } => "InvalidPoint",
            DecodeError::IdentityPoint { .. } => "IdentityPoint",
            _ => "other",
        },
        Err(_) => "other",
    }
    .into()
}

fn key_case(name: &str, components: &[String]) -> KeyCase {
    // One case-sensitive text column: the spec these vectors were made with.
    let spec = KeySpec::one(KeyType::Text {
        case_sensitive: true,
    });
    let canonical = canonical_key(spec, components).unwrap();
    let d = digest(session(), &canonical);
    KeyCase {
        name: name.into(),
        components: components.to_vec(),
        canonical: hex::encode(&canonical),
        digest: hex::encode(d),
        bins: bins(HASH_SEED, BINS, &d),
        codewords: std::array::from_fn(|j| hex::encode(codeword(CODE_SEED, &d, j))),
    }
}

fn hash_inputs() -> Vec<(u64, [u8; 64])> {
    vec![
        (0, [0u8; 64]),
        (1, [0u8; 64]),
        (8191, std::array::from_fn(|i| i as u8)),
        (1 << 33, [0xff; 64]),
    ]
}

fn generate() -> Vectors {
    Vectors {
        protocol: "concord-psi-ot-kkrt16 v1".into(),
        session: hex::encode(session().0),
        hash_seed: hex::encode(HASH_SEED),
        bins: BINS,
        code_seed: hex::encode(CODE_SEED),
        keys: key_inputs()
            .into_iter()
            .map(|(name, c)| key_case(name, &c.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
            .collect(),
        hashes: hash_inputs()
            .into_iter()
            .map(|(bin, row)| HashCase {
                bin,
                row: hex::encode(row),
                hash: hex::encode(cr_hash(bin, &row)),
            })
            .collect(),
        frames: frame_inputs()
            .into_iter()
            .map(|(name, frame, expect)| FrameCase {
                name: name.into(),
                frame,
                expect: expect.into(),
            })
            .collect(),
    }
}

#[test]
fn known_answers() {
    if std::env::var_os("CONCORD_WRITE_VECTORS").is_some() {
        let json = serde_json::to_string_pretty(&generate()).unwrap();
        std::fs::write(PATH, json + "\n").unwrap();
    }
    let file: Vectors = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert_eq!(file.session, hex::encode(session().0));
    assert_eq!(file.hash_seed, hex::encode(HASH_SEED));
    assert_eq!(file.code_seed, hex::encode(CODE_SEED));
    assert_eq!(file.bins, BINS);
    assert!(file.keys.len() >= 4 && file.hashes.len() >= 4);
    assert!(
        file.frames
            .iter()
            .filter(|f| f.name.starts_with("bad_"))
            .count()
            >= 15
    );
    for case in &file.keys {
        let again = key_case(&case.name, &case.components);
        assert_eq!(again.canonical, case.canonical, "{}", case.name);
        assert_eq!(again.digest, case.digest, "{}", case.name);
        assert_eq!(again.bins, case.bins, "{}", case.name);
        assert_eq!(again.codewords, case.codewords, "{}", case.name);
        assert!(
            case.bins.iter().all(|&b| u64::from(b) < BINS),
            "{}",
            case.name
        );
    }
    for case in &file.hashes {
        let row: [u8; 64] = hex::decode(&case.row).unwrap().try_into().unwrap();
        assert_eq!(
            hex::encode(cr_hash(case.bin, &row)),
            case.hash,
            "bin {}",
            case.bin
        );
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
fn the_file_distinguishes_what_it_must() {
    let file: Vectors = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let key = |name: &str| file.keys.iter().find(|k| k.name == name).unwrap();
    // Neighbouring keys share nothing; one key's three codewords all differ.
    assert_ne!(key("ascii").digest, key("other").digest);
    assert_ne!(key("ascii").codewords[0], key("other").codewords[0]);
    let c = &key("ascii").codewords;
    assert!(c[0] != c[1] && c[1] != c[2] && c[0] != c[2]);
    // The bin is part of the hash: equal rows in bins 0 and 1 hash apart.
    assert_eq!(file.hashes[0].row, file.hashes[1].row);
    assert_ne!(file.hashes[0].hash, file.hashes[1].hash);
}
