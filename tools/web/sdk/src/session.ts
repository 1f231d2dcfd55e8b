// A watching session: the exactly-once, in-order stream of the messages of
// a user's conversations across reconnects, server restarts, dropped
// events and client restarts — the Rust `Session` (tools/src/session.rs)
// in TypeScript.
//
// The algorithm (docs/PROTOCOL.md §7): connect → Hello → Welcome (the
// connection is now subscribed, live events queue up) → Sync with the
// cursor and known read cursor of every tracked conversation → apply the
// reply (inline messages, or `truncated` → page the rest with History
// After) → then apply live events, dropping duplicates by seq and
// repairing gaps with History After. Whenever the connection ends (or the
// event queue overflowed), reconnect with backoff and do it again. The
// bookkeeping is a `Tracker`; this module performs its I/O.
//
// With a `CursorStore` the cursors are saved at most every
// CURSOR_SAVE_INTERVAL_MS and on `saveCursors()`. The store only records
// messages `next()` returned before the current call, so after a crash a
// restarted session repeats at most the last interval's messages and never
// skips one.
//
// `next()` must not be called again before its previous call settled; other
// requests (`client.send`, `client.history`, …) may run meanwhile.

import { Client, type ClientOptions, type Outgoing } from './client.js';
import type { Connection, Incoming } from './connection.js';
import type { CursorStore } from './cursors.js';
import { ClosedError, ProtocolError, RejectedError, isTransient } from './errors.js';
import { Tracker } from './tracker.js';
import type { ConversationInfo, Message, NotifyReason, SendAck } from './types.js';

/** How often a session saves its cursors while messages flow. */
export const CURSOR_SAVE_INTERVAL_MS = 500;
/** Messages asked for per History request during gap repair (HISTORY_PAGE_MAX). */
export const HISTORY_PAGE = 100;

export interface SessionOptions {
  client: ClientOptions;
  /** Deliver only these conversations (all of the user's when absent). */
  filter?: bigint[];
  /** Deliver all history first instead of only what is new. */
  fromStart?: boolean;
  /** Keep cursors here and resume from them. */
  cursorStore?: CursorStore;
  /** A conversation first seen while running starts with at most this many of its newest messages. */
  newConversationBacklog?: bigint;
}

/** What `Session.next()` yields. */
export type SessionEvent =
  | { type: 'message'; message: Message }
  /** Every gap known after the latest (re)connection is repaired: what follows is live. */
  | { type: 'caughtUp'; generation: number }
  | { type: 'joined'; info: ConversationInfo }
  | { type: 'left'; conversation: bigint }
  | { type: 'readCursor'; conversation: bigint; seq: bigint }
  | { type: 'notify'; conversation: bigint; seq: bigint; reason: NotifyReason }
  /** A user of the workspace changed their profile (re-read it if the cached version is older). */
  | { type: 'profileChanged'; user: bigint; version: bigint };

export class Session {
  readonly client: Client;
  readonly tracker: Tracker;
  readonly user: bigint;
  private readonly store: CursorStore | null;
  private synced = 0;
  private caughtUp = 0;
  private resync = false;
  private readonly queue: SessionEvent[] = [];
  private dirty = false;
  private savedAt = Date.now();
  private stalls = 0;
  private closed = false;
  private waitingEvent: { conn: Connection; promise: Promise<Incoming | null> } | null = null;

  private constructor(client: Client, tracker: Tracker, user: bigint, store: CursorStore | null) {
    this.client = client;
    this.tracker = tracker;
    this.user = user;
    this.store = store;
  }

  /** Connects (within the client's retry deadline), loads the cursor store
   * if any, and learns where each conversation starts. */
  static async open(options: SessionOptions): Promise<Session> {
    const client = new Client(options.client);
    const conn = await client.connect();
    const user = conn.welcome.user;
    if (user === 0n) throw new RejectedError('Invalid', 'watching needs a user token, not the admin token', 0, 0);
    const backlog = options.fromStart
      ? ({ kind: 'all' } as const)
      : ({ kind: 'newest', count: options.newConversationBacklog ?? BigInt(HISTORY_PAGE) } as const);
    const tracker = new Tracker(options.filter ? new Set(options.filter) : null, backlog);
    let resumed = false;
    const store = options.cursorStore ?? null;
    if (store) {
      const saved = await store.load();
      if (saved) {
        if (saved.user !== user) {
          throw new Error(`cursor store belongs to user ${saved.user}, but the token is user ${user}`);
        }
        if (!options.fromStart) {
          for (const [c, s] of saved.cursors) tracker.track(c, s);
          resumed = true;
        }
      }
    }
    if (!options.fromStart && !resumed) {
      // Start at the present: everything up to each head counts as seen.
      for (const info of await client.listConversations()) {
        if (info.member) {
          tracker.track(info.id, info.head);
          tracker.onReadCursor(info.id, info.read);
        }
      }
    }
    client.retryDeadlineMs = null; // from now on the session outlives any outage
    return new Session(client, tracker, user, store);
  }

  /** Sends a message (fresh client message id, retried with the same id).
   * It also comes back through `next()` like every other message. */
  send(conversation: bigint, message: Outgoing | string): Promise<SendAck> {
    return this.client.send(conversation, message);
  }

  /** Writes the cursor store now (if the session has one). */
  async saveCursors(): Promise<void> {
    if (this.store) await this.store.save({ user: this.user, cursors: this.tracker.cursors() });
    this.dirty = false;
    this.savedAt = Date.now();
  }

  /** Stops: the pending `next()` (if any) and later calls throw `ClosedError(1000)`. */
  close(): void {
    this.closed = true;
    this.client.close();
  }

  /** The next message or event. Waits as long as needed, reconnecting and
   * re-syncing by itself; throws only for permanent failures (bad or
   * revoked token, a server breaking the protocol, a failing cursor store)
   * or after `close()`. */
  async next(): Promise<SessionEvent> {
    for (;;) {
      if (this.closed) throw new ClosedError(1000, 'session closed');
      // Everything returned before this call was handled by the caller.
      if (this.dirty && Date.now() - this.savedAt >= CURSOR_SAVE_INTERVAL_MS) await this.saveCursors();
      const m = this.tracker.popReady();
      if (m) {
        this.dirty = true;
        return { type: 'message', message: m };
      }
      const queued = this.queue.shift();
      if (queued) return queued;
      try {
        const e = await this.step();
        if (e) return e;
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        if (this.closed) throw new ClosedError(1000, 'session closed');
        if (!isTransient(error)) throw error;
        this.client.disconnect();
        this.waitingEvent = null;
        await this.client.pauseAfter(error);
      }
    }
  }

  private async step(): Promise<SessionEvent | null> {
    const conn = await this.client.connect();
    if (this.client.generation !== this.synced || this.resync) {
      await this.sync();
      return null;
    }
    const repair = this.tracker.nextRepair();
    if (repair) {
      await this.repair(repair[0], repair[1]);
      return null;
    }
    if (this.caughtUp !== this.synced) {
      this.caughtUp = this.synced;
      return { type: 'caughtUp', generation: this.synced };
    }
    if (!this.waitingEvent || this.waitingEvent.conn !== conn) {
      this.waitingEvent = { conn, promise: conn.nextEvent() };
    }
    const pending = this.waitingEvent.promise;
    let incoming: Incoming | null | 'save';
    if (this.dirty) {
      const saveIn = Math.max(0, CURSOR_SAVE_INTERVAL_MS - (Date.now() - this.savedAt));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<'save'>((resolve) => {
        timer = setTimeout(() => resolve('save'), saveIn);
      });
      incoming = await Promise.race([pending, timeout]);
      clearTimeout(timer);
      if (incoming === 'save') return null; // time to save the cursors
    } else {
      incoming = await pending;
    }
    this.waitingEvent = null;
    if (incoming === null) {
      const reason = conn.closeReason;
      // An undecodable event may have been a message: a new connection and a Sync recover it.
      if (reason instanceof ProtocolError) throw new ClosedError(null, `protocol error: ${reason.message}`);
      throw reason ?? new ClosedError(null, 'connection ended');
    }
    if (incoming.type === 'lagged') {
      this.resync = true;
      return null;
    }
    return this.onEvent(incoming.event);
  }

  private onEvent(event: import('./types.js').ServerEvent): SessionEvent | null {
    switch (event.type) {
      case 'message':
        this.tracker.onMessage(event.message);
        return null;
      case 'joined':
        this.tracker.observeHead(event.info.id, event.info.head);
        this.tracker.onReadCursor(event.info.id, event.info.read);
        return { type: 'joined', info: event.info };
      case 'left':
        this.tracker.forget(event.conversation);
        this.dirty = true;
        return { type: 'left', conversation: event.conversation };
      case 'readCursor':
        this.tracker.onReadCursor(event.conversation, event.seq);
        return { type: 'readCursor', conversation: event.conversation, seq: event.seq };
      case 'notify':
        return { type: 'notify', conversation: event.conversation, seq: event.seq, reason: event.reason };
      case 'profileChanged':
        return { type: 'profileChanged', user: event.user, version: event.version };
    }
  }

  private async sync(): Promise<void> {
    const generation = this.client.generation;
    const { cursors, reads } = this.tracker.syncCursors();
    const sent = new Map(cursors);
    const reply = await this.client.sync(cursors, reads);
    if (this.client.generation !== generation) return; // reconnected meanwhile: sync again
    for (const gone of reply.gone) {
      this.tracker.forget(gone);
      this.dirty = true;
    }
    for (const entry of reply.changed) {
      if (!entry.info.member) continue;
      const moved = this.tracker.onSync(sent.get(entry.info.id) ?? 0n, entry);
      if (moved !== null) this.queue.push({ type: 'readCursor', conversation: entry.info.id, seq: moved });
    }
    this.synced = generation;
    this.resync = false;
  }

  private async repair(conversation: bigint, after: bigint): Promise<void> {
    let page;
    try {
      page = await this.client.history(conversation, 'after', after, HISTORY_PAGE);
    } catch (e) {
      if (e instanceof RejectedError && e.code === 'NotFound') {
        this.tracker.forget(conversation); // left or removed meanwhile
        return;
      }
      throw e;
    }
    this.tracker.onHistoryAfter(conversation, after, page.messages, page.head);
    const again = this.tracker.nextRepair();
    if (this.tracker.last(conversation) === after && again && again[0] === conversation && again[1] === after) {
      if (++this.stalls >= 3) {
        throw new ProtocolError(
          `History After ${after} of conversation ${conversation} returned nothing new while its head is ${this.tracker.head(conversation) ?? 0n}`,
        );
      }
    } else {
      this.stalls = 0;
    }
  }
}
