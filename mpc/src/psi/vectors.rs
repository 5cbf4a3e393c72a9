//! The encoding steps one at a time, for known-answer checks.
//!
//! `mpc/tests/vectors/psi_ecdh_v1.json` lists, for sample keys: the canonical bytes
//! ([`super::keys::canonical_key`]), the group element they hash to, the element blinded by a
//! fixed key, and its comparison digest, along with frames that must decode and `bad_*` frames that
//! must be rejected. Another implementation reproduces these to interoperate with this one.

use super::group::{BlindingKey, ItemDigest, POINT_LEN, hash_and_blind};
use super::params::{SessionId, digest_tag, hash_to_group};

/// `H(canonical)` in the hash domain, compressed.
pub fn hash_to_group_element(domain: SessionId, canonical: &[u8]) -> [u8; POINT_LEN] {
    let h2g = hash_to_group(domain);
    h2g.hash(canonical).compress().to_bytes()
}

/// `[key]H(canonical)`, compressed.
pub fn blinded_element(domain: SessionId, canonical: &[u8], key: &BlindingKey) -> [u8; POINT_LEN] {
    hash_and_blind(&hash_to_group(domain), &[canonical], key)[0]
}

/// The comparison digest of a compressed, doubly-blinded element in the hash domain.
pub fn element_digest(domain: SessionId, element: &[u8; POINT_LEN]) -> ItemDigest {
    digest_tag(domain).digest(element)
}
