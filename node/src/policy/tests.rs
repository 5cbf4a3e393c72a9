//! The pure rules: the default matrix, its monotonicity check, and scope checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn the_default_matrix_is_the_documented_one() {
    let m = TierMatrix::default();
    for u in FieldUse::ALL {
        assert!(m.allows(Tier::Public, u));
        assert!(m.allows(Tier::Internal, u));
        assert!(!m.allows(Tier::Restricted, u));
    }
    assert!(m.allows(Tier::Sensitive, FieldUse::DpValue));
    assert!(m.allows(Tier::Sensitive, FieldUse::DpGroup));
    assert!(!m.allows(Tier::Sensitive, FieldUse::MatchKey));
    assert!(!m.allows(Tier::Sensitive, FieldUse::RevealKey));
    m.check().unwrap();
}

#[test]
fn a_configured_matrix_parses_and_must_not_widen_higher_tiers() {
    let m: TierMatrix =
        toml::from_str("internal = [\"match-key\", \"dp-value\"]\nsensitive = [\"dp-value\"]")
            .unwrap();
    assert!(!m.allows(Tier::Internal, FieldUse::RevealKey));
    assert!(m.allows(Tier::Public, FieldUse::RevealKey));
    m.check().unwrap();

    let wider: TierMatrix = toml::from_str("internal = [\"dp-value\"]").unwrap();
    assert_eq!(
        wider.check().unwrap_err().to_string(),
        "policy.tiers: sensitive allows dp-group but internal does not; a lower tier must \
         allow at least what a higher one does"
    );
    // `restricted` is not a key: it allows nothing and cannot be configured.
    let err = toml::from_str::<TierMatrix>("restricted = [\"dp-value\"]").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `restricted`"),
        "{err}"
    );
    let err = toml::from_str::<TierMatrix>("public = [\"everything\"]").unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `everything`"),
        "{err}"
    );
}

#[test]
fn names_round_trip() {
    for k in JobKind::ALL {
        assert_eq!(JobKind::parse(k.as_str()), Some(k));
    }
    assert_eq!(JobKind::parse("psi"), None);
}
