//! Limits on the [`Envelope`] that carries a joint job's protocol messages between nodes.
//!
//! A node checks every envelope against these limits before it looks at the frames, so a peer
//! cannot make it allocate or buffer more than a bounded amount per message.

use crate::v1::Envelope;

/// Most frames one envelope may carry (the protocol cores batch up to this many items).
pub const MAX_FRAMES: usize = 65_536;

/// Most payload bytes one envelope may carry, summed over its frames.
pub const MAX_PAYLOAD_BYTES: usize = 8 << 20;

/// Longest job id or protocol name.
pub const MAX_NAME_BYTES: usize = 128;

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The sender speaks another protocol version.
    #[error("envelope version {found}, this node speaks {expected}")]
    Version {
        /// What the envelope says.
        found: u32,
        /// What this node speaks.
        expected: u32,
    },
    /// An envelope arrived out of order or after a gap.
    #[error("envelope {found} arrived where {expected} was expected")]
    Sequence {
        /// The next position expected.
        expected: u64,
        /// The position received.
        found: u64,
    },
    /// Too many frames or bytes.
    #[error(
        "envelope too large: {frames} frames, {bytes} bytes (limits {MAX_FRAMES}, {MAX_PAYLOAD_BYTES})"
    )]
    TooLarge {
        /// Frames carried.
        frames: usize,
        /// Payload bytes carried.
        bytes: usize,
    },
    /// The job id or protocol name is empty, too long or not printable ASCII.
    #[error("envelope {field} is empty, longer than {MAX_NAME_BYTES} bytes or not printable ASCII")]
    BadName {
        /// `job_id` or `protocol`.
        field: &'static str,
    },
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_BYTES && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks one envelope of a stream: version, position, names and size.
pub fn check(envelope: &Envelope, version: u32, expected_seq: u64) -> Result<(), EnvelopeError> {
    if envelope.version != version {
        return Err(EnvelopeError::Version {
            found: envelope.version,
            expected: version,
        });
    }
    if envelope.seq != expected_seq {
        return Err(EnvelopeError::Sequence {
            expected: expected_seq,
            found: envelope.seq,
        });
    }
    if !name_ok(&envelope.job_id) {
        return Err(EnvelopeError::BadName { field: "job_id" });
    }
    if !name_ok(&envelope.protocol) {
        return Err(EnvelopeError::BadName { field: "protocol" });
    }
    let bytes: usize = envelope.frames.iter().map(Vec::len).sum();
    if envelope.frames.len() > MAX_FRAMES || bytes > MAX_PAYLOAD_BYTES {
        return Err(EnvelopeError::TooLarge {
            frames: envelope.frames.len(),
            bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            version: 1,
            job_id: "job-1".into(),
            protocol: "psi-ecdh".into(),
            round: 1,
            seq: 0,
            frames: vec![vec![0u8; 32]; 4],
            last: false,
        }
    }

    #[test]
    fn accepts_a_well_formed_envelope_and_refuses_each_defect() {
        assert_eq!(check(&envelope(), 1, 0), Ok(()));
        assert_eq!(
            check(&envelope(), 2, 0),
            Err(EnvelopeError::Version {
                found: 1,
                expected: 2
            })
        );
        assert_eq!(
            check(&envelope(), 1, 3),
            Err(EnvelopeError::Sequence {
                expected: 3,
                found: 0
            })
        );
        let mut e = envelope();
        e.job_id = "job 1".into();
        assert_eq!(
            check(&e, 1, 0),
            Err(EnvelopeError::BadName { field: "job_id" })
        );
        let mut e = envelope();
        e.protocol.clear();
        assert_eq!(
            check(&e, 1, 0),
            Err(EnvelopeError::BadName { field: "protocol" })
        );
        let mut e = envelope();
        e.frames = vec![vec![0u8; MAX_PAYLOAD_BYTES / 2 + 1]; 2];
        assert!(matches!(
            check(&e, 1, 0),
            Err(EnvelopeError::TooLarge { frames: 2, .. })
        ));
    }
}
