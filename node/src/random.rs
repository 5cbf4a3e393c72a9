//! The node's randomness, from one place.
//!
//! Every random choice the node makes — protocol secrets and masks, the sampling that bounds a
//! person's contribution, session, job and grant ids — draws from [`rng`]: a ChaCha-based
//! `StdRng`, seeded from the operating system's generator (through `rand`'s thread generator)
//! for each use. DP noise is not drawn here: `concord-dp` samples it with OpenSSL's generator.
//!
//! In this crate's unit tests a thread may fix the seed ([`seed_this_thread`]) so that a
//! failure can be replayed; each later draw on that thread then takes the next seed. Nothing
//! outside the tests can do so.

use rand::SeedableRng as _;
use rand::rngs::StdRng;

#[cfg(test)]
thread_local! {
    static SEED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// A fresh generator for one use.
pub(crate) fn rng() -> StdRng {
    #[cfg(test)]
    if let Some(seed) = SEED.with(|s| s.get()) {
        SEED.with(|s| s.set(Some(seed.wrapping_add(1))));
        return StdRng::seed_from_u64(seed);
    }
    StdRng::from_rng(&mut rand::rng())
}

/// `N` random bytes (an id, a session).
pub(crate) fn bytes<const N: usize>() -> [u8; N] {
    use rand::RngExt as _;
    rng().random()
}

/// Fixes the seed of this thread's draws, for a test to replay.
#[cfg(test)]
pub(crate) fn seed_this_thread(seed: u64) {
    SEED.with(|s| s.set(Some(seed)));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_replays_its_draws_and_an_unseeded_one_does_not() {
        seed_this_thread(7);
        let first: [[u8; 16]; 2] = [bytes(), bytes()];
        seed_this_thread(7);
        assert_eq!([bytes::<16>(), bytes::<16>()], first);
        assert_ne!(first[0], first[1], "each draw takes the next seed");
        let other = std::thread::spawn(bytes::<16>).join().unwrap();
        assert_ne!(other, first[0]);
    }
}
