// Errors of the SDK and which of them are worth a retry (docs/PROTOCOL.md,
// "Errors" and "Close codes"). Mirrors the Rust client's `ClientError`:
// transient failures (network, timeouts, `Unavailable`, `RateLimited`, a
// server going away) are retried by `Client` and `Session`; permanent ones
// (bad or revoked token, any other refusal) are returned at once.

import { ErrorCode } from './generated/courier/wire/error-code.js';

/** `ErrorCode` names, by their wire value (from the generated enum, so a
 * code added to the schema is named here too). */
export const ERROR_CODES: Record<number, string> = Object.fromEntries(
  Object.entries(ErrorCode)
    .filter(([, value]) => typeof value === 'number')
    .map(([name, value]) => [value as number, name]),
);

/** The server refused a request (`ErrorReply`). */
export class RejectedError extends Error {
  override readonly name = 'RejectedError';
  constructor(
    /** The `ErrorCode` name, e.g. `NotFound`. */
    readonly code: string,
    /** The server's message (names the field or limit). */
    readonly detail: string,
    /** `RateLimited`: time until the budget has room for one request. */
    readonly retryAfterMs: number,
    /** `Unavailable`: the `UnavailableCause` value (0 = unspecified). */
    readonly unavailable: number,
  ) {
    super(detail ? `${code}: ${detail}` : code);
  }
}

/** The connection ended (close frame, network error, silence). */
export class ClosedError extends Error {
  override readonly name = 'ClosedError';
  constructor(
    /** The WebSocket close code, if the server sent one. */
    readonly code: number | null,
    readonly reason: string,
  ) {
    super(code === null ? `connection closed: ${reason}` : `connection closed (${code}): ${reason}`);
  }
}

/** No answer within the allowed time. */
export class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
  constructor(readonly what: string, readonly ms: number) {
    super(`${what}: no answer within ${ms} ms`);
  }
}

/** The server broke the protocol (an undecodable or unexpected frame). */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

/** A bound of the SDK was reached (e.g. too many requests waiting). */
export class OverloadedError extends Error {
  override readonly name = 'OverloadedError';
}

/** Close codes after which reconnecting as is cannot help. */
const PERMANENT_CLOSES = new Set([1002, 1003, 1007, 1008, 1009, 4001, 4002, 4003]);

/** True if retrying (after a reconnect, with backoff) may succeed. */
export function isTransient(e: unknown): boolean {
  if (e instanceof TimeoutError) return true;
  if (e instanceof ClosedError) return e.code === null || !PERMANENT_CLOSES.has(e.code);
  if (e instanceof RejectedError) return e.code === 'Unavailable' || e.code === 'RateLimited';
  return false;
}

/** `UnavailableCause.PeerTimeout`: a cluster node answers so the requests in
 * flight when its primary changed (the outcome is unknown: retry). */
export const UNAVAILABLE_PEER_TIMEOUT = 7;
/** Close code 4011 `NOT_SERVING` (docs/PROTOCOL.md §10). */
export const CLOSE_NOT_SERVING = 4011;

/** True if `e` is a cluster's failover (4011, or `Unavailable` with cause
 * `PeerTimeout`): retried at most `NOT_SERVING_RETRY_MAX_MS` apart, as the
 * Rust client's `ClientError::is_failover`. */
export function isFailover(e: unknown): boolean {
  if (e instanceof ClosedError) return e.code === CLOSE_NOT_SERVING;
  return e instanceof RejectedError && e.code === 'Unavailable' && e.unavailable === UNAVAILABLE_PEER_TIMEOUT;
}
