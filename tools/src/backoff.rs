//! Reconnect delays: exponential backoff with full jitter, so a fleet of
//! clients cut off together (a server restart) does not reconnect in lockstep.

use crate::constants::{BACKOFF_INITIAL, BACKOFF_MAX};
use rand::Rng;
use std::time::Duration;

/// Delays between reconnect attempts: attempt *n* waits a uniformly random
/// time in `[ceiling/2, ceiling]` where `ceiling = min(max, initial·2ⁿ)`.
/// Half of the ceiling is kept fixed so a retry never fires at once in a loop.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX)
    }
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The ceiling of the next delay (without jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay, and counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_micros() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=spread)
        };
        half + Duration::from_micros(jitter)
    }

    /// Back to the initial delay (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts counted since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_bounds_and_cap() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut b = Backoff::new(initial, max);
        let expected_ceilings = [100, 200, 400, 800, 1000, 1000, 1000];
        for ceiling in expected_ceilings {
            let ceiling = Duration::from_millis(ceiling);
            assert_eq!(b.ceiling(), ceiling);
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
        }
        b.reset();
        assert_eq!(b.ceiling(), initial);
        assert_eq!(b.attempts(), 0);
    }

    #[test]
    fn many_attempts_do_not_overflow() {
        let mut b = Backoff::default();
        for _ in 0..10_000 {
            assert!(b.next_delay() <= BACKOFF_MAX);
        }
    }
}
