// @courier/sdk: a TypeScript client for Courier (docs/PROTOCOL.md) that runs
// in browsers and in Node 18+. See tools/web/README.md.

export * from './types.js';
export * from './errors.js';
export { Backoff, BACKOFF_INITIAL_MS, BACKOFF_MAX_MS, NOT_SERVING_RETRY_MAX_MS, sleep } from './backoff.js';
export { encodeRequest, encodeHello, decodeServer, randomClientMsgId, encodeServerMessage, type ServerFrame } from './codec.js';
export * from './connection.js';
export { Pacer, PACE_BURST_SHARE, type RateLimit } from './pacer.js';
export * from './client.js';
export * from './tracker.js';
export * from './cursors.js';
export * from './session.js';
