// Paces requests to the budget the server states in `Welcome` (and in
// `RateLimited` refusals) instead of sending them all at once and being
// refused (docs/PROTOCOL.md §4, "Request budget"): a GCRA token bucket with
// the stricter of the connection's and the user's rate and half the stated
// burst, as the Rust client's `Pacer` (tools/src/pacer.rs).

/** The share of the stated burst the pacer uses (the rest is slack for jitter). */
export const PACE_BURST_SHARE = 2;

export interface RateLimit {
  perSec: number;
  burst: number;
}

export class Pacer {
  private readonly intervalMs: number;
  private readonly toleranceMs: number;
  /** Theoretical arrival time of the next request (ms, performance clock). */
  private tat: number;

  private constructor(readonly limit: RateLimit, now: number) {
    this.intervalMs = 1000 / limit.perSec;
    this.toleranceMs = this.intervalMs * (Math.max(1, Math.floor(limit.burst / PACE_BURST_SHARE)) - 1);
    this.tat = now;
  }

  /** A pacer for the stricter of two budgets; null when neither limits (0). */
  static forBudgets(conn: RateLimit, user: RateLimit, now: number): Pacer | null {
    const limits = [conn, user].filter((l) => l.perSec > 0);
    if (limits.length === 0) return null;
    const limit = limits.reduce((a, b) => (b.perSec < a.perSec ? b : a));
    return new Pacer(limit, now);
  }

  /** Reserves a slot: how long to wait before sending (0: now). */
  reserve(now: number): number {
    const tat = Math.max(this.tat, now);
    const sendAt = Math.max(now, tat - this.toleranceMs);
    this.tat = tat + this.intervalMs;
    return sendAt - now;
  }

  /** A `RateLimited` refusal: nothing goes before the budget has room again. */
  refused(now: number, retryAfterMs: number): void {
    this.tat = Math.max(this.tat, now + retryAfterMs + this.toleranceMs);
  }
}
