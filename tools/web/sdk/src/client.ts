// A reconnecting client: one logical session across any number of
// `Connection`s. It reconnects with exponential backoff and jitter, retries
// requests over reconnects, and sends messages with a fresh random 128-bit
// client message id that it reuses for every retry of that send, so a retry
// after a timeout or a dropped connection never stores a second message
// (the server answers a repeated id with the original ack; docs/PROTOCOL.md §6).
//
// Failure contract (as the Rust `Client`): transient failures (network,
// timeouts, `Unavailable`, `RateLimited`, a server going away) are retried
// until `retryDeadlineMs` runs out (null: forever), then thrown; permanent
// ones (bad or revoked token, any other refusal) are thrown at once.

import { Backoff, NOT_SERVING_RETRY_MAX_MS, sleep } from './backoff.js';
import { randomClientMsgId } from './codec.js';
import { Connection, type ConnectOptions } from './connection.js';
import { ClosedError, ProtocolError, RejectedError, TimeoutError, isFailover, isTransient } from './errors.js';
import type {
  Anchor,
  BootPage,
  Broadcast,
  ConversationInfo,
  Message,
  Request,
  Response,
  SendAck,
  SyncConversation,
  UserProfile,
  Welcome,
} from './types.js';

/** Default bound on how long one operation keeps retrying. */
export const RETRY_DEADLINE_MS = 30000;

/** Connection state changes, for a UI's banner or a log. */
export type Status =
  | { state: 'connected'; generation: number; welcome: Welcome }
  | { state: 'disconnected'; error: Error }
  | { state: 'retrying'; attempt: number; delayMs: number; error: Error };

export interface ClientOptions extends ConnectOptions {
  /** How long one operation retries transient failures; null: forever. */
  retryDeadlineMs?: number | null;
  backoff?: Backoff;
  onStatus?: (s: Status) => void;
}

/** An outgoing message. */
export interface Outgoing {
  body: string;
  mentions?: bigint[];
  broadcast?: Broadcast;
}

export class Client {
  private conn: Connection | null = null;
  private connecting: Promise<Connection> | null = null;
  private gen = 0;
  private readonly backoff: Backoff;
  retryDeadlineMs: number | null;

  constructor(readonly options: ClientOptions) {
    this.backoff = options.backoff ?? new Backoff();
    this.retryDeadlineMs = options.retryDeadlineMs === undefined ? RETRY_DEADLINE_MS : options.retryDeadlineMs;
  }

  /** Connections made so far (1 after the first). */
  get generation(): number {
    return this.gen;
  }

  /** The current connection, if any. */
  get connection(): Connection | null {
    return this.conn !== null && this.conn.closeReason === null ? this.conn : null;
  }

  /** Connects if needed (retrying transient failures until the deadline). */
  connect(): Promise<Connection> {
    const live = this.connection;
    if (live) return Promise.resolve(live);
    if (!this.connecting) {
      this.connecting = this.connectLoop().finally(() => {
        this.connecting = null;
      });
    }
    return this.connecting;
  }

  private async connectLoop(): Promise<Connection> {
    const started = Date.now();
    for (;;) {
      try {
        const conn = await Connection.open(this.options);
        this.conn = conn;
        this.gen++;
        this.backoff.reset();
        this.options.onStatus?.({ state: 'connected', generation: this.gen, welcome: conn.welcome });
        void conn.whenClosed().then((error) => {
          if (this.conn === conn) this.options.onStatus?.({ state: 'disconnected', error });
        });
        return conn;
      } catch (e) {
        const error = e instanceof Error ? e : new Error(String(e));
        if (!isTransient(error) || this.pastDeadline(started)) throw error;
        const delayMs = this.backoff.nextDelay();
        this.options.onStatus?.({ state: 'retrying', attempt: this.backoff.attempts, delayMs, error });
        await sleep(delayMs);
      }
    }
  }

  private pastDeadline(started: number): boolean {
    return this.retryDeadlineMs !== null && Date.now() - started >= this.retryDeadlineMs;
  }

  /** Drops the current connection (if it is `which`, or any). */
  disconnect(which?: Connection): void {
    if (this.conn && (which === undefined || which === this.conn)) {
      this.conn.close();
      this.conn = null;
    }
  }

  /** Closes for good. */
  close(): void {
    this.disconnect();
  }

  /** Waits a backoff delay after a failure before the next reconnect. */
  async pauseAfter(error: Error): Promise<void> {
    if (!isTransient(error)) throw error;
    let delayMs = this.backoff.nextDelay();
    if (isFailover(error)) delayMs = Math.min(delayMs, NOT_SERVING_RETRY_MAX_MS);
    this.options.onStatus?.({ state: 'retrying', attempt: this.backoff.attempts, delayMs, error });
    await sleep(delayMs);
  }

  /** Sends `request`, retrying transient failures (reconnecting when the
   * connection failed) until the retry deadline. The same request object is
   * sent each time, so a send keeps its client message id. */
  async call(request: Request): Promise<Response> {
    const started = Date.now();
    for (;;) {
      const conn = await this.connect();
      try {
        const response = await conn.request(request);
        // The next failure starts from the initial delay again (else a
        // long-lived client's delays grow with every failover it saw).
        this.backoff.reset();
        return response;
      } catch (e) {
        const error = e instanceof Error ? e : new Error(String(e));
        if (!isTransient(error) || this.pastDeadline(started)) throw error;
        if (error instanceof RejectedError && error.code === 'RateLimited') {
          await sleep(Math.max(10, error.retryAfterMs));
          continue;
        }
        if (error instanceof ClosedError || error instanceof TimeoutError || error instanceof ProtocolError) {
          this.disconnect(conn);
        }
        await this.pauseAfter(error);
      }
    }
  }

  /** Sends a message with a fresh client message id, retried with that id. */
  send(conversation: bigint, message: Outgoing | string): Promise<SendAck> {
    return this.sendWithId(conversation, randomClientMsgId(), message);
  }

  /** Sends with a given client message id (e.g. one kept across a page
   * reload): a retry of an earlier send returns the original ack. */
  async sendWithId(conversation: bigint, clientMsgId: bigint, message: Outgoing | string): Promise<SendAck> {
    const m = typeof message === 'string' ? { body: message } : message;
    const r = await this.call({ type: 'send', conversation, clientMsgId, ...m });
    return expect(r, 'sendAck');
  }

  async sync(cursors: [bigint, bigint][], reads: bigint[]): Promise<{ changed: SyncConversation[]; gone: bigint[] }> {
    return expect(await this.call({ type: 'sync', cursors, reads }), 'sync');
  }

  async history(conversation: bigint, anchor: Anchor, seq: bigint, limit: number): Promise<{ messages: Message[]; head: bigint }> {
    return expect(await this.call({ type: 'history', conversation, anchor, seq, limit }), 'history');
  }

  async boot(limit: number, offset = 0): Promise<BootPage> {
    return expect(await this.call({ type: 'boot', limit, offset }), 'boot').page;
  }

  async listConversations(): Promise<ConversationInfo[]> {
    return expect(await this.call({ type: 'listConversations' }), 'conversations').items;
  }

  async markRead(conversation: bigint, seq: bigint): Promise<void> {
    expect(await this.call({ type: 'markRead', conversation, seq }), 'done');
  }

  async setFocus(focused: bigint, active: boolean): Promise<void> {
    expect(await this.call({ type: 'setFocus', focused, active }), 'done');
  }

  async getUsers(users: bigint[]): Promise<UserProfile[]> {
    return expect(await this.call({ type: 'getUsers', users }), 'users').users;
  }

  async createChannel(name: string, isPrivate = false): Promise<ConversationInfo> {
    return expect(await this.call({ type: 'createChannel', name, private: isPrivate }), 'conversation').info;
  }

  async join(conversation: bigint): Promise<ConversationInfo> {
    return expect(await this.call({ type: 'join', conversation }), 'conversation').info;
  }

  async invite(conversation: bigint, user: bigint): Promise<void> {
    expect(await this.call({ type: 'invite', conversation, user }), 'done');
  }

  async openDm(users: bigint[]): Promise<ConversationInfo> {
    return expect(await this.call({ type: 'openDm', users }), 'conversation').info;
  }

  async lookup(name: string, kind: 'user' | 'channel'): Promise<bigint> {
    return expect(await this.call({ type: 'lookup', name, kind }), 'found').id;
  }

  /** Admin: a workspace. */
  async createWorkspace(name: string): Promise<bigint> {
    return expect(await this.call({ type: 'createWorkspace', name }), 'workspaceCreated').workspace;
  }

  /** Admin: a user and its first token (`cu1_…`). */
  async createUser(workspace: bigint, name: string): Promise<{ user: bigint; token: string }> {
    const r = expect(await this.call({ type: 'createUser', workspace, name }), 'tokenIssued');
    return { user: r.user, token: r.token };
  }
}

/** Narrows a reply to the expected kind, or throws `ProtocolError`. */
export function expect<T extends Response['type']>(r: Response, type: T): Extract<Response, { type: T }> {
  if (r.type !== type) throw new ProtocolError(`expected ${type}, got ${r.type}`);
  return r as Extract<Response, { type: T }>;
}
