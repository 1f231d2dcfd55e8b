//! Abuse limits on the request path: a token bucket per connection, one per
//! user and one per workspace on each shard (GCRA, from the `governor`
//! crate). A request over the connection or user limit is answered
//! `RateLimited { retry_after_ms }` by the runtime and never reaches the
//! core. Over the workspace limit it is *paced*: the connection's reader
//! waits for a token (`ShardCtx::workspace_pace`) and reads nothing
//! meanwhile, so a noisy tenant's excess waits in its own sockets, costs the
//! shard no work and cannot turn into a storm of refused retries.
//!
//! The per-user bucket is per shard: a user whose devices land on k shards
//! gets up to k times the rate. That keeps the check local (no cross-core
//! traffic per request); the per-connection bucket bounds each device.

use courier_core::api::RateLimit;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

/// The budget a configured rate stands for: `per_sec` requests per second
/// with bursts of twice that ([`RateLimit::NONE`] for 0, no limit). What
/// [`Limiter::new`] enforces and what `Welcome` tells the client.
pub fn rate_limit(per_sec: u32) -> RateLimit {
    if per_sec == 0 {
        return RateLimit::NONE;
    }
    RateLimit {
        per_sec,
        burst: per_sec.saturating_mul(2),
    }
}

/// One token bucket.
pub struct Limiter {
    inner: DefaultDirectRateLimiter,
    clock: DefaultClock,
    limit: RateLimit,
}

impl Limiter {
    /// `per_sec` requests per second with bursts of twice that; `None` when
    /// `per_sec` is 0 (no limit).
    pub fn new(per_sec: u32) -> Option<Limiter> {
        let limit = rate_limit(per_sec);
        let rate = NonZeroU32::new(limit.per_sec)?;
        let burst = NonZeroU32::new(limit.burst).unwrap_or(rate);
        Some(Limiter {
            inner: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
            limit,
        })
    }

    /// The budget this bucket enforces.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one token, or says how many milliseconds until one is free.
    pub fn check(&self) -> Result<(), u64> {
        self.inner.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            (wait.as_millis() as u64).max(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refuses_with_a_wait() {
        let l = Limiter::new(10).unwrap();
        let allowed = (0..100).filter(|_| l.check().is_ok()).count();
        assert!(
            (20..=22).contains(&allowed),
            "burst of 2×rate, got {allowed}"
        );
        let wait = l.check().unwrap_err();
        assert!(
            (1..=100).contains(&wait),
            "about 1/rate seconds, got {wait} ms"
        );
        assert!(Limiter::new(0).is_none());
        assert_eq!(
            l.limit(),
            RateLimit {
                per_sec: 10,
                burst: 20
            }
        );
        assert_eq!(rate_limit(0), RateLimit::NONE);
    }
}
