//! Names of nodes, datasets and populations.

/// Whether `s` can be a node or dataset name: 1–64 of `a-z 0-9 _ -`, starting with a letter.
pub fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
