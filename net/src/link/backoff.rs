//! Reconnect delays of a link: exponential backoff with jitter, bounded,
//! and deterministic under a seed (tests give one; a node draws its seed
//! from the OS so nodes cut off together do not reconnect in lockstep).

use std::time::Duration;

/// Delays between connection attempts: attempt *n* waits a uniformly
/// random time in `[ceiling/2, ceiling]`, `ceiling = min(max, initial·2ⁿ)`.
/// The random numbers come from a SplitMix64 generator seeded at
/// construction, so the same seed gives the same delays.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    state: u64,
}

impl Backoff {
    /// A backoff from `initial` up to `max` (raised to `initial` if lower),
    /// with its jitter drawn from `seed`.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            state: seed,
        }
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay; counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_micros() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            self.next_u64() % (spread + 1)
        };
        half + Duration::from_micros(jitter)
    }

    /// Back to the initial delay (after a connection was accepted).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    //! Bounds, growth, cap and determinism.
    use super::*;

    #[test]
    fn delays_grow_within_jitter_bounds_up_to_the_cap() {
        let initial = Duration::from_millis(50);
        let max = Duration::from_millis(500);
        let mut b = Backoff::new(initial, max, 42);
        for ceiling_ms in [50, 100, 200, 400, 500, 500, 500] {
            let ceiling = Duration::from_millis(ceiling_ms);
            assert_eq!(b.ceiling(), ceiling);
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
        }
        assert_eq!(b.attempts(), 7);
        b.reset();
        assert_eq!(b.ceiling(), initial);
        for _ in 0..100_000 {
            assert!(b.next_delay() <= max);
        }
    }

    #[test]
    fn same_seed_same_delays_other_seed_other_delays() {
        let delays = |seed| {
            let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(2), seed);
            (0..10).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(7), delays(7));
        assert_ne!(delays(7), delays(8));
    }
}
