// The recovery logic of a client without any I/O, a port of the Rust
// client's `Tracker` (tools/src/tracker.rs; docs/PROTOCOL.md §7): per
// conversation `last` (every seq ≤ last delivered or known to hold
// nothing), duplicate drop (seq ≤ last), in-order delivery (seq = last+1,
// then buffered successors), gap detection (seq > last+1: buffer it, bounded
// by PENDING_PER_CONVERSATION_MAX, and ask for `History After(last)` until
// the known head), covering pages (a History page up to its last message,
// a complete Sync entry up to the head) that pass seqs without a message,
// and the user's read cursor per conversation (never moves back).

import type { Message, SyncConversation } from './types.js';

/** Out-of-order messages buffered per conversation at most while a gap is
 * repaired; past it they are dropped and fetched again by the repair. */
export const PENDING_PER_CONVERSATION_MAX = 1024;

/** Where a conversation first seen while running starts. */
export type Backlog = { kind: 'all' } | { kind: 'newest'; count: bigint };

/** What `onMessage` did with a message. */
export type Verdict = 'delivered' | 'duplicate' | 'gap' | 'ignored';

interface Conv {
  last: bigint;
  head: bigint;
  pending: Map<bigint, Message>;
  read: bigint;
}

/** Counters, for tests and logs. */
export interface TrackerStats {
  delivered: number;
  duplicates: number;
  gaps: number;
  holes: number;
  overflow: number;
}

const max = (a: bigint, b: bigint) => (a > b ? a : b);
const min = (a: bigint, b: bigint) => (a < b ? a : b);

export class Tracker {
  private readonly convs = new Map<bigint, Conv>();
  private readonly ready: Message[] = [];
  readonly stats: TrackerStats = { delivered: 0, duplicates: 0, gaps: 0, holes: 0, overflow: 0 };

  constructor(
    private readonly filter: Set<bigint> | null = null,
    private readonly backlog: Backlog = { kind: 'newest', count: 100n },
  ) {}

  /** Starts tracking with everything up to `last` taken as delivered. */
  track(conversation: bigint, last: bigint): void {
    if (!this.convs.has(conversation)) {
      this.convs.set(conversation, { last, head: last, pending: new Map(), read: 0n });
    }
  }

  forget(conversation: bigint): void {
    this.convs.delete(conversation);
  }

  isTracked(conversation: bigint): boolean {
    return this.convs.has(conversation);
  }

  wants(conversation: bigint): boolean {
    return this.filter === null || this.filter.has(conversation);
  }

  last(conversation: bigint): bigint | undefined {
    return this.convs.get(conversation)?.last;
  }

  head(conversation: bigint): bigint | undefined {
    return this.convs.get(conversation)?.head;
  }

  read(conversation: bigint): bigint | undefined {
    return this.convs.get(conversation)?.read;
  }

  /** Every tracked (conversation, last), for Sync and cursor stores. */
  cursors(): [bigint, bigint][] {
    return [...this.convs].map(([id, c]) => [id, c.last]);
  }

  /** What a Sync names: the cursors and, in the same order, the read cursors. */
  syncCursors(): { cursors: [bigint, bigint][]; reads: bigint[] } {
    const cursors: [bigint, bigint][] = [];
    const reads: bigint[] = [];
    for (const [id, c] of this.convs) {
      cursors.push([id, c.last]);
      reads.push(c.read);
    }
    return { cursors, reads };
  }

  /** The read cursor is at least `seq`; returns the new cursor if it moved. */
  onReadCursor(conversation: bigint, seq: bigint): bigint | null {
    const c = this.convs.get(conversation);
    if (!c || seq <= c.read) return null;
    c.read = seq;
    return seq;
  }

  /** The next message for the consumer, each exactly once, in seq order per conversation. */
  popReady(): Message | undefined {
    return this.ready.shift();
  }

  /** Learns that `conversation` exists up to `head`. */
  observeHead(conversation: bigint, head: bigint): void {
    let c = this.convs.get(conversation);
    if (!c) {
      const start = this.backlog.kind === 'all' ? 0n : max(0n, head - this.backlog.count);
      c = { last: start, head: start, pending: new Map(), read: 0n };
      this.convs.set(conversation, c);
    }
    c.head = max(c.head, head);
    if (!this.wants(conversation)) c.last = max(c.last, c.head);
  }

  /** A message from the live stream (or any other source). */
  onMessage(m: Message): Verdict {
    const id = m.conversation;
    const seq = m.seq;
    if (!this.convs.has(id)) {
      this.observeHead(id, seq);
      const c = this.convs.get(id);
      if (c && this.wants(id)) c.last = min(c.last, seq - 1n);
    }
    const c = this.convs.get(id);
    if (!c) return 'ignored';
    c.head = max(c.head, seq);
    if (!this.wants(id)) {
      c.last = max(c.last, seq);
      return 'ignored';
    }
    if (seq <= c.last || c.pending.has(seq)) {
      this.stats.duplicates++;
      return 'duplicate';
    }
    if (seq === c.last + 1n) {
      c.last = seq;
      this.ready.push(m);
      this.stats.delivered++;
      this.drainContiguous(c);
      return 'delivered';
    }
    this.stats.gaps++;
    if (c.pending.size >= PENDING_PER_CONVERSATION_MAX) {
      // Keep the lowest seqs: they are delivered first.
      const highest = [...c.pending.keys()].reduce(max);
      this.stats.overflow++;
      if (highest <= seq) return 'gap';
      c.pending.delete(highest);
    }
    c.pending.set(seq, m);
    return 'gap';
  }

  /** Applies a page covering (after, through]: seqs in it without a message hold nothing. */
  onCoveringPage(conversation: bigint, after: bigint, through: bigint, messages: Message[]): void {
    this.observeHead(conversation, through);
    for (const m of messages) {
      if (m.conversation === conversation && m.seq > after && m.seq <= through) this.onMessage(m);
    }
    if (!this.wants(conversation)) return;
    const c = this.convs.get(conversation);
    if (!c || c.last < after || c.last >= through) return;
    const buffered = [...c.pending.keys()].filter((s) => s <= through).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const s of buffered) {
      const m = c.pending.get(s);
      c.pending.delete(s);
      if (!m || s <= c.last) continue;
      this.stats.holes += Number(s - c.last - 1n);
      c.last = s;
      this.ready.push(m);
      this.stats.delivered++;
    }
    this.stats.holes += Number(through - c.last);
    c.last = through;
    this.drainContiguous(c);
  }

  /** Applies one Sync entry, given the cursor the request named (0 if none).
   * Returns the read cursor if the entry moved it. */
  onSync(sentCursor: bigint, entry: SyncConversation): bigint | null {
    const { id, head, read } = entry.info;
    if (entry.truncated) {
      const first = entry.messages[0];
      const after = first ? first.seq - 1n : head;
      this.onCoveringPage(id, after, head, entry.messages);
    } else {
      this.onCoveringPage(id, sentCursor, head, entry.messages);
    }
    return this.onReadCursor(id, read);
  }

  /** Applies a `History After(after)` page whose reply said the head is `head`. */
  onHistoryAfter(conversation: bigint, after: bigint, messages: Message[], head: bigint): void {
    const lastMsg = messages[messages.length - 1];
    const through = max(lastMsg ? lastMsg.seq : head, after);
    this.observeHead(conversation, head);
    this.onCoveringPage(conversation, after, through, messages);
  }

  /** The next gap to repair: fetch `History After(after)`; null when complete. */
  nextRepair(): [bigint, bigint] | null {
    for (const [id, c] of this.convs) {
      if (c.last < c.head && this.wants(id)) return [id, c.last];
    }
    return null;
  }

  private drainContiguous(c: Conv): void {
    for (const s of [...c.pending.keys()]) if (s <= c.last) c.pending.delete(s);
    for (;;) {
      const m = c.pending.get(c.last + 1n);
      if (!m) return;
      c.pending.delete(m.seq);
      c.last = m.seq;
      this.ready.push(m);
      this.stats.delivered++;
    }
  }
}
