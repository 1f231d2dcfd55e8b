// Reconnect delays: exponential backoff with jitter, so clients cut off
// together (a server restart) do not reconnect in lockstep. Attempt n waits
// a uniformly random time in [ceiling/2, ceiling], ceiling = min(max,
// initial·2^n), as the Rust client's `Backoff`.

/** First reconnect delay. */
export const BACKOFF_INITIAL_MS = 50;
/** Longest reconnect delay. */
export const BACKOFF_MAX_MS = 5000;
/** Longest delay before retrying after a failover (see `isFailover`): a
 * cluster elects a new primary in about a second. */
export const NOT_SERVING_RETRY_MAX_MS = 200;

export class Backoff {
  private attempt = 0;
  constructor(
    readonly initialMs = BACKOFF_INITIAL_MS,
    readonly maxMs = BACKOFF_MAX_MS,
  ) {}

  /** The ceiling of the next delay (without jitter). */
  ceiling(): number {
    return Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 20));
  }

  /** The next delay in ms, and counts the attempt. */
  nextDelay(): number {
    const c = this.ceiling();
    this.attempt++;
    return c / 2 + Math.random() * (c / 2);
  }

  /** Back to the initial delay (after a successful connection). */
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
