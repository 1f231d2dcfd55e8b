// One WebSocket connection to courierd: the Hello/Welcome handshake,
// request/response correlation by request id with a bounded number of
// requests in flight (and a bounded line of callers waiting for a slot),
// per-request timeouts, a bounded queue of the events the server pushes,
// and a liveness ping. The same code runs in browsers (the global
// WebSocket) and in Node (the `ws` package when Node has no global
// WebSocket, as before Node 22).
//
// Failure contract (as the Rust `Connection`): a dropped socket, a close
// frame, a protocol error or a silent server end the connection; every
// request still waiting then fails with `ClosedError` (or `ProtocolError`)
// and `nextEvent()` returns null once the queued events are drained. No
// reconnect happens here: that is `Client`'s and `Session`'s job. When the
// event queue is full further events are dropped and the consumer is told
// `{ type: 'lagged' }` (a `Session` re-syncs, as after a reconnect).

import { decodeServer, encodeHello, encodeRequest } from './codec.js';
import { ClosedError, OverloadedError, ProtocolError, RejectedError, TimeoutError } from './errors.js';
import { Pacer } from './pacer.js';
import type { DeviceKind, Request, Response, ServerEvent, Welcome } from './types.js';

/** Requests awaiting a reply at most (further callers wait for a slot). */
export const IN_FLIGHT_MAX_DEFAULT = 256;
/** Callers waiting for a request slot at most; past it `request` fails with `OverloadedError`. */
export const WAITING_MAX = 4096;
/** Events buffered for the consumer at most (then `lagged`). */
export const EVENT_QUEUE_MAX_DEFAULT = 4096;
/** Time allowed for connect + upgrade + Hello/Welcome. */
export const CONNECT_TIMEOUT_MS = 5000;
/** Time allowed for one reply. */
export const REQUEST_TIMEOUT_MS = 10000;
/** The client asks a quiet server for a sign of life this often. A browser
 * cannot send WebSocket pings (and answers the server's own pings without
 * telling the page), so the ping is a cheap request (`GetUsers []`). */
export const PING_INTERVAL_MS = 15000;
/** A server silent this long is taken for gone and the connection closed. */
export const SERVER_SILENCE_MAX_MS = 45000;
/** Largest client frame the server accepts (CLIENT_FRAME_BYTES_MAX). */
export const CLIENT_FRAME_BYTES_MAX = 256 * 1024;

/** How to reach and authenticate to a server. */
export interface ConnectOptions {
  /** `ws://host:port/` (a bare `host:port` is accepted). */
  url: string;
  /** A user token (`cu1_…`) or the admin token (`ca1_…`). */
  token: string;
  deviceKind?: DeviceKind;
  deviceName?: string;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  inFlightMax?: number;
  eventQueueMax?: number;
  /** Space requests to the budget the server states (default true; see pacer.ts). */
  pace?: boolean;
}

/** What `nextEvent` yields. */
export type Incoming = { type: 'event'; event: ServerEvent } | { type: 'lagged'; dropped: number };

/** The subset of the WebSocket API used here (browser and `ws` both have it). */
interface Socket {
  binaryType: string;
  readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}
type SocketCtor = new (url: string) => Socket;

let socketCtor: Promise<SocketCtor> | null = null;

/** The WebSocket constructor: the global one, else Node's `ws` package. */
export function webSocketImpl(): Promise<SocketCtor> {
  if (socketCtor === null) {
    const g = (globalThis as { WebSocket?: unknown }).WebSocket;
    if (typeof g === 'function') {
      socketCtor = Promise.resolve(g as SocketCtor);
    } else {
      const name = 'ws'; // kept out of browser bundles' static imports
      socketCtor = import(/* @vite-ignore */ name).then((m: { default: SocketCtor }) => m.default);
    }
  }
  return socketCtor;
}

/** `host:port` → `ws://host:port/`; `http://` → `ws://`. */
export function normalizeUrl(url: string): string {
  let u = url.trim();
  if (u.startsWith('http://')) u = 'ws://' + u.slice(7);
  else if (u.startsWith('https://')) u = 'wss://' + u.slice(8);
  else if (!u.includes('://')) u = 'ws://' + u;
  if (!/^wss?:\/\/[^/]+/.test(u)) throw new Error(`bad server URL ${JSON.stringify(url)}: expected ws://HOST:PORT`);
  if (!/^wss?:\/\/[^/]+\//.test(u)) u += '/';
  return u;
}

interface Pending {
  resolve: (r: Response) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** One authenticated connection (see the module comment). */
export class Connection {
  readonly welcome: Welcome;
  private readonly ws: Socket;
  private readonly opts: Required<Omit<ConnectOptions, 'url' | 'token' | 'deviceKind' | 'deviceName' | 'pace'>>;
  private readonly pacer: Pacer | null;
  private readonly pending = new Map<number, Pending>();
  private readonly waiting: (() => void)[] = [];
  private readonly events: Incoming[] = [];
  private eventWaiter: ((i: Incoming | null) => void) | null = null;
  private dropped = 0;
  private nextReq = 2;
  private lastHeard = Date.now();
  private lastSent = Date.now();
  private ticker: ReturnType<typeof setInterval>;
  private ended: Error | null = null;
  private readonly endWaiters: ((e: Error) => void)[] = [];

  private constructor(ws: Socket, welcome: Welcome, opts: ConnectOptions) {
    this.ws = ws;
    this.welcome = welcome;
    this.opts = {
      connectTimeoutMs: opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
      requestTimeoutMs: opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
      inFlightMax: Math.max(1, opts.inFlightMax ?? IN_FLIGHT_MAX_DEFAULT),
      eventQueueMax: Math.max(1, opts.eventQueueMax ?? EVENT_QUEUE_MAX_DEFAULT),
    };
    this.pacer =
      opts.pace === false
        ? null
        : Pacer.forBudgets(
            { perSec: welcome.rateConnPerSec, burst: welcome.rateConnBurst },
            { perSec: welcome.rateUserPerSec, burst: welcome.rateUserBurst },
            now(),
          );
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onclose = (ev) => this.end(new ClosedError(ev.code || null, ev.reason || 'connection dropped'));
    ws.onerror = () => this.end(new ClosedError(null, 'network error'));
    this.ticker = setInterval(() => this.tick(), 1000);
    const t = this.ticker as { unref?: () => void };
    if (typeof t.unref === 'function') t.unref();
  }

  /** Connects, sends Hello and waits for Welcome (within the connect
   * timeout). From then on live events flow into `nextEvent()`. A bad
   * token fails with `RejectedError('Unauthenticated')` or `ClosedError(4001)`. */
  static async open(options: ConnectOptions): Promise<Connection> {
    const url = normalizeUrl(options.url);
    const Ctor = await webSocketImpl();
    const timeoutMs = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    const ws = new Ctor(url);
    ws.binaryType = 'arraybuffer';
    const welcome = await new Promise<Welcome>((resolve, reject) => {
      const timer = setTimeout(() => {
        fail(new TimeoutError(`connect to ${url}`, timeoutMs));
      }, timeoutMs);
      const fail = (e: Error) => {
        clearTimeout(timer);
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try {
          ws.close();
        } catch {
          // already closed
        }
        reject(e);
      };
      ws.onopen = () => {
        ws.send(encodeHello(1, options.token, options.deviceKind ?? 'tool', options.deviceName ?? 'courier-sdk'));
      };
      ws.onerror = () => fail(new ClosedError(null, `cannot connect to ${url}`));
      ws.onclose = (ev) => fail(new ClosedError(ev.code || null, ev.reason || 'closed during Hello'));
      ws.onmessage = (ev) => {
        let frame;
        try {
          frame = decodeServer(toBytes(ev.data));
        } catch (e) {
          fail(e instanceof Error ? e : new ProtocolError(String(e)));
          return;
        }
        if (frame.kind === 'error' && (frame.requestId === 1 || frame.requestId === 0)) {
          fail(frame.error);
        } else if (frame.kind === 'reply' && frame.requestId === 1) {
          if (frame.response.type !== 'welcome') {
            fail(new ProtocolError(`expected Welcome, got ${frame.response.type}`));
            return;
          }
          clearTimeout(timer);
          resolve(frame.response);
        }
      };
    });
    return new Connection(ws, welcome, options);
  }

  /** Sends a request and waits for its reply (at most the request timeout,
   * which also covers waiting for an in-flight slot). A refusal rejects
   * with `RejectedError`. */
  async request(request: Request, timeoutMs = this.opts.requestTimeoutMs): Promise<Response> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending.size >= this.opts.inFlightMax) {
      if (this.ended) throw this.ended;
      if (this.waiting.length >= WAITING_MAX) throw new OverloadedError(`more than ${WAITING_MAX} requests waiting`);
      await new Promise<void>((resolve) => {
        this.waiting.push(resolve);
        setTimeout(resolve, Math.max(0, deadline - Date.now()));
      });
      if (Date.now() >= deadline) throw new TimeoutError(request.type, timeoutMs);
    }
    const wait = this.pacer ? this.pacer.reserve(now()) : 0;
    if (wait > 0) {
      if (Date.now() + wait >= deadline) throw new TimeoutError(`${request.type} (paced)`, timeoutMs);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    if (this.ended) throw this.ended;
    const req = this.allocReq();
    const bytes = encodeRequest(req, request);
    if (bytes.length > CLIENT_FRAME_BYTES_MAX) {
      throw new RejectedError('TooLarge', `frame of ${bytes.length} bytes; at most ${CLIENT_FRAME_BYTES_MAX}`, 0, 0);
    }
    return new Promise<Response>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(req);
        reject(new TimeoutError(request.type, timeoutMs));
      }, Math.max(1, deadline - Date.now()));
      this.pending.set(req, { resolve, reject, timer });
      try {
        this.ws.send(bytes);
        this.lastSent = Date.now();
      } catch (e) {
        this.end(new ClosedError(null, `send failed: ${String(e)}`));
      }
    });
  }

  /** The next event, or null once the connection ended and the queue is drained. */
  nextEvent(): Promise<Incoming | null> {
    const now = this.tryNextEvent();
    if (now !== null || this.ended) return Promise.resolve(now);
    return new Promise((resolve) => {
      this.eventWaiter = resolve;
    });
  }

  /** An event (or lag report) if one is queued now. */
  tryNextEvent(): Incoming | null {
    const e = this.events.shift();
    if (e !== undefined) return e;
    if (this.dropped > 0) {
      const dropped = this.dropped;
      this.dropped = 0;
      return { type: 'lagged', dropped };
    }
    return null;
  }

  /** Why the connection ended, once it has. */
  get closeReason(): Error | null {
    return this.ended;
  }

  /** Resolves with the reason once the connection has ended. */
  whenClosed(): Promise<Error> {
    if (this.ended) return Promise.resolve(this.ended);
    return new Promise((resolve) => this.endWaiters.push(resolve));
  }

  /** Closes normally; waiting requests fail with `ClosedError`. */
  close(): void {
    try {
      this.ws.close(1000, 'bye');
    } catch {
      // already closed
    }
    this.end(new ClosedError(1000, 'closed by the client'));
  }

  private allocReq(): number {
    for (;;) {
      const req = this.nextReq;
      this.nextReq = this.nextReq >= 0xffffffff ? 2 : this.nextReq + 1;
      if (!this.pending.has(req)) return req;
    }
  }

  private settle(req: number): Pending | undefined {
    const p = this.pending.get(req);
    if (p) {
      clearTimeout(p.timer);
      this.pending.delete(req);
      const next = this.waiting.shift();
      if (next) next();
    }
    return p;
  }

  private onMessage(data: unknown): void {
    this.lastHeard = Date.now();
    if (typeof data === 'string') {
      this.end(new ProtocolError('server sent a text message (the protocol is binary only)'));
      return;
    }
    let frame;
    try {
      frame = decodeServer(toBytes(data));
    } catch (e) {
      // An event we cannot read may be a message we would then miss: end
      // the connection so the owner re-syncs rather than skip it.
      this.end(e instanceof Error ? e : new ProtocolError(String(e)));
      return;
    }
    switch (frame.kind) {
      case 'reply':
        this.settle(frame.requestId)?.resolve(frame.response);
        break;
      case 'error':
        if (frame.error.code === 'RateLimited') this.pacer?.refused(now(), frame.error.retryAfterMs);
        this.settle(frame.requestId)?.reject(frame.error);
        break;
      case 'event':
        this.pushEvent({ type: 'event', event: frame.event });
        break;
      case 'unknown':
        // A reply kind this SDK does not know fails its request; an
        // unknown event kind (a newer server) is skipped.
        this.settle(frame.requestId)?.reject(new ProtocolError(`unexpected reply body ${frame.body}`));
        break;
    }
  }

  private pushEvent(e: Incoming): void {
    if (this.eventWaiter) {
      const w = this.eventWaiter;
      this.eventWaiter = null;
      w(e);
    } else if (this.events.length < this.opts.eventQueueMax) {
      this.events.push(e);
    } else {
      this.dropped++;
    }
  }

  private tick(): void {
    const now = Date.now();
    if (now - this.lastHeard > SERVER_SILENCE_MAX_MS) {
      this.close();
      this.end(new ClosedError(null, `server silent for ${SERVER_SILENCE_MAX_MS} ms`));
      return;
    }
    if (now - this.lastHeard > PING_INTERVAL_MS && now - this.lastSent > PING_INTERVAL_MS) {
      // Any answer (a UserList, or Invalid for an admin session) is a sign of life.
      this.request({ type: 'getUsers', users: [] }).catch(() => undefined);
    }
  }

  private end(e: Error): void {
    if (this.ended) return;
    this.ended = e;
    clearInterval(this.ticker);
    this.ws.onmessage = null;
    try {
      this.ws.close();
    } catch {
      // already closed
    }
    for (const req of [...this.pending.keys()]) this.settle(req)?.reject(e);
    for (const w of this.waiting.splice(0)) w();
    if (this.eventWaiter) {
      const w = this.eventWaiter;
      this.eventWaiter = null;
      w(this.tryNextEvent());
    }
    for (const w of this.endWaiters.splice(0)) w(e);
  }
}

function now(): number {
  return globalThis.performance.now();
}

function toBytes(data: unknown): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new ProtocolError('unexpected WebSocket message type');
}
