//! Client-side pacing to the server's request budget.
//!
//! `courierd` refuses requests over a connection's or a user's budget with
//! `RateLimited { retry_after_ms, limit }`, and its `Welcome` says both
//! budgets (requests per second and burst; docs/PROTOCOL.md §11). A client
//! that fires many requests at once and retries each refusal after
//! `retry_after_ms` wakes them all together when one token is free, so most
//! are refused again: a burst of 50 sends over the budget drew about a
//! thousand refusals. A [`Pacer`] spaces requests to the budget instead, so
//! they are accepted the first time.
//!
//! The pacer is a GCRA (the algorithm the server uses), sans-IO: it says how
//! long to wait before a request and is told about refusals. It allows only
//! half the server's burst ([`PACE_BURST_SHARE`]), so jitter between the
//! client's clock and the server's arrival times never meets an empty
//! server bucket.

use courier_core::api::RateLimit;
use std::time::Duration;
use tokio::time::Instant;

/// Share of the server's burst the pacer lets through at once: the rest is
/// slack for requests that arrive closer together than they were sent.
pub const PACE_BURST_SHARE: u32 = 2;

/// Spaces requests to a server budget (see the module docs).
#[derive(Clone, Debug)]
pub struct Pacer {
    limit: RateLimit,
    /// Time per request at the sustained rate.
    interval: Duration,
    /// How far ahead of the schedule a request may go (the burst).
    tolerance: Duration,
    /// The theoretical arrival time of the next request.
    tat: Instant,
}

impl Pacer {
    /// A pacer for the stricter of the connection's and the user's budgets
    /// (as `Welcome` tells them), or `None` if neither limits anything.
    pub fn for_budgets(conn: RateLimit, user: RateLimit, now: Instant) -> Option<Pacer> {
        let limit = match (conn.per_sec, user.per_sec) {
            (0, 0) => return None,
            (0, _) => user,
            (_, 0) => conn,
            _ if user.per_sec < conn.per_sec => user,
            _ => conn,
        };
        Pacer::new(limit, now)
    }

    /// A pacer for one budget, or `None` for no limit (`per_sec` 0).
    pub fn new(limit: RateLimit, now: Instant) -> Option<Pacer> {
        if limit.per_sec == 0 {
            return None;
        }
        let interval = Duration::from_secs(1) / limit.per_sec;
        let burst = (limit.burst / PACE_BURST_SHARE).max(1);
        Some(Pacer {
            limit,
            interval,
            tolerance: interval * (burst - 1),
            tat: now,
        })
    }

    /// The budget paced to.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Books the next request: how long to wait from `now` before sending
    /// it. Requests booked one after the other are spaced by the rate once
    /// the burst is spent.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let tat = self.tat.max(now);
        let send_at = tat.checked_sub(self.tolerance).unwrap_or(now).max(now);
        self.tat = tat + self.interval;
        send_at.saturating_duration_since(now)
    }

    /// The server refused a request at `now` and has room again after
    /// `retry_after`: its bucket is empty, so nothing goes before then and
    /// no burst right after.
    pub fn refused(&mut self, now: Instant, retry_after: Duration) {
        let empty = now + retry_after + self.tolerance;
        self.tat = self.tat.max(empty);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_sec: u32, burst: u32) -> RateLimit {
        RateLimit { per_sec, burst }
    }

    #[test]
    fn half_the_burst_goes_at_once_then_one_per_interval() {
        let now = Instant::now();
        let mut p = Pacer::new(limit(10, 20), now).unwrap_or_else(|| panic!("limited"));
        let waits: Vec<Duration> = (0..14).map(|_| p.reserve(now)).collect();
        assert!(waits[..10].iter().all(Duration::is_zero), "{waits:?}");
        assert_eq!(waits[10], Duration::from_millis(100));
        assert_eq!(waits[13], Duration::from_millis(400));
        // Time passing refills the burst at the rate.
        let later = now + Duration::from_secs(10);
        assert_eq!(p.reserve(later), Duration::ZERO);
    }

    #[test]
    fn no_limit_means_no_pacer_and_the_stricter_budget_wins() {
        let now = Instant::now();
        assert!(Pacer::new(RateLimit::NONE, now).is_none());
        assert!(Pacer::for_budgets(RateLimit::NONE, RateLimit::NONE, now).is_none());
        let p = Pacer::for_budgets(limit(100, 200), limit(50, 100), now);
        assert_eq!(p.map(|p| p.limit()), Some(limit(50, 100)));
        let p = Pacer::for_budgets(limit(100, 200), RateLimit::NONE, now);
        assert_eq!(p.map(|p| p.limit()), Some(limit(100, 200)));
    }

    #[test]
    fn a_refusal_holds_everything_back_until_the_server_has_room() {
        let now = Instant::now();
        let mut p = Pacer::new(limit(10, 20), now).unwrap_or_else(|| panic!("limited"));
        p.refused(now, Duration::from_millis(250));
        assert_eq!(p.reserve(now), Duration::from_millis(250));
        assert_eq!(p.reserve(now), Duration::from_millis(350));
    }
}
