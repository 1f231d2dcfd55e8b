// Unit tests of the SDK without a server: the codec keeps 64- and 128-bit
// ids exact, the tracker turns duplicated, reordered and missing events
// into an exactly-once stream (the cases of tools/src/tracker.rs), the
// backoff stays within its bounds, cursor sets round-trip as strings.
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import * as flatbuffers from 'flatbuffers';
import {
  Backoff, ERROR_CODES, Tracker, cursorsFromJson, cursorsToJson, decodeServer, encodeRequest, encodeServerMessage,
} from '../dist/index.js';
import * as w from '../dist/generated/courier/wire.js';

const U64_MAX = (1n << 64n) - 1n;
const U128_MAX = (1n << 128n) - 1n;

test('ids above 2^53 survive encoding and decoding exactly', () => {
  const m = {
    conversation: U64_MAX, seq: (1n << 53n) + 1n, sender: (1n << 63n) + 7n, clientMsgId: U128_MAX - 5n,
    tsMs: 1_796_000_000_000, body: 'héllo', mentions: [], broadcast: 'none',
  };
  const f = decodeServer(encodeServerMessage(0, m));
  assert.equal(f.kind, 'event');
  assert.deepEqual(f.event.message, m);
  // A request: read it back with the generated accessors.
  const bytes = encodeRequest(77, { type: 'send', conversation: U64_MAX, clientMsgId: U128_MAX, body: 'x', mentions: [U64_MAX - 1n] });
  const frame = w.Frame.getRootAsFrame(new flatbuffers.ByteBuffer(bytes));
  assert.ok(w.Frame.bufferHasIdentifier(new flatbuffers.ByteBuffer(bytes)), 'CRR1 identifier');
  assert.equal(frame.requestId(), 77);
  const send = frame.body(new w.Send());
  assert.equal(send.conversation(), U64_MAX);
  assert.equal(send.clientMsgId().lo(), U64_MAX);
  assert.equal(send.clientMsgId().hi(), U64_MAX);
  assert.equal(send.mentions(0), U64_MAX - 1n);
});

test('a buffer without the CRR1 identifier is refused', () => {
  const bytes = encodeServerMessage(0, {
    conversation: 1n, seq: 1n, sender: 1n, clientMsgId: 1n, tsMs: 0, body: 'x', mentions: [], broadcast: 'none',
  });
  bytes[4] = 0x58;
  assert.throws(() => decodeServer(bytes), /CRR1/);
  assert.throws(() => decodeServer(new Uint8Array(3)), /CRR1/);
});

const C = 7n;
const msg = (seq) => ({ conversation: C, seq: BigInt(seq), sender: 1n, clientMsgId: BigInt(seq), tsMs: seq, body: `m${seq}`, mentions: [], broadcast: 'none' });
function drain(t) {
  const out = [];
  for (let m = t.popReady(); m; m = t.popReady()) out.push(Number(m.seq));
  return out;
}

test('live stream: duplicates dropped, reordering fixed, gaps asked for', () => {
  const cases = [
    [0, [1, 2, 3], [1, 2, 3], null],
    [0, [1, 1, 2, 1, 2, 3, 3], [1, 2, 3], null],
    [5, [3, 4, 5, 6], [6], null],
    [0, [1, 3, 4], [1], 1],
    [0, [2, 1], [1, 2], null],
    [0, [3, 2, 1, 4], [1, 2, 3, 4], null],
    [0, [1, 5, 5, 3], [1], 1],
  ];
  for (const [start, live, delivered, repair] of cases) {
    const t = new Tracker(null, { kind: 'all' });
    t.track(C, BigInt(start));
    for (const s of live) t.onMessage(msg(s));
    assert.deepEqual(drain(t), delivered, `live ${live}`);
    assert.deepEqual(t.nextRepair(), repair === null ? null : [C, BigInt(repair)], `live ${live}`);
  }
});

test('a gap is repaired by history and buffered messages follow in order', () => {
  const t = new Tracker(null, { kind: 'all' });
  t.track(C, 2n);
  assert.equal(t.onMessage(msg(3)), 'delivered');
  assert.equal(t.onMessage(msg(7)), 'gap');
  t.onMessage(msg(8));
  assert.deepEqual(drain(t), [3]);
  assert.deepEqual(t.nextRepair(), [C, 3n]);
  t.onHistoryAfter(C, 3n, [4, 5, 6, 7].map(msg), 8n);
  assert.deepEqual(drain(t), [4, 5, 6, 7, 8]);
  assert.equal(t.nextRepair(), null);
  assert.equal(t.onMessage(msg(8)), 'duplicate');
});

test('seqs without messages are passed when a page covers them; truncated sync asks for the rest', () => {
  const t = new Tracker(null, { kind: 'all' });
  t.track(C, 0n);
  t.observeHead(C, 6n);
  t.onHistoryAfter(C, 0n, [1, 3, 4].map(msg), 6n);
  assert.deepEqual(drain(t), [1, 3, 4]);
  assert.deepEqual(t.nextRepair(), [C, 4n]);
  const info = { id: C, kind: 'public', name: 'c', members: [], memberCount: 2, head: 30n, read: 9n, unread: 0, mentions: 0, member: true, lastActivityMs: 0, preview: null };
  const moved = t.onSync(4n, { info, messages: [29, 30].map(msg), truncated: true });
  assert.equal(moved, 9n);
  assert.deepEqual(drain(t), []);
  assert.deepEqual(t.nextRepair(), [C, 4n]);
  t.onHistoryAfter(C, 4n, Array.from({ length: 24 }, (_, i) => msg(i + 5)), 30n);
  assert.deepEqual(drain(t), Array.from({ length: 26 }, (_, i) => i + 5));
  assert.equal(t.nextRepair(), null);
});

test('backoff grows exponentially within its jitter bounds and caps', () => {
  const b = new Backoff(100, 1000);
  for (const ceiling of [100, 200, 400, 800, 1000, 1000]) {
    assert.equal(b.ceiling(), ceiling);
    const d = b.nextDelay();
    assert.ok(d >= ceiling / 2 && d <= ceiling, `${d} vs ${ceiling}`);
  }
  b.reset();
  assert.equal(b.ceiling(), 100);
});

test('a failover (4011, Unavailable PeerTimeout) is told apart from other transient failures', async () => {
  const { isFailover, isTransient, ClosedError, RejectedError, TimeoutError } = await import('../dist/index.js');
  assert.ok(isFailover(new ClosedError(4011, 'the primary changed')));
  assert.ok(isFailover(new RejectedError('Unavailable', 'primary changed', 0, 7)));
  assert.ok(!isFailover(new RejectedError('Unavailable', 'overloaded', 0, 2)));
  assert.ok(!isFailover(new RejectedError('RateLimited', '', 100, 0)));
  assert.ok(!isFailover(new ClosedError(1006, 'gone')));
  assert.ok(!isFailover(new TimeoutError('slow', 100)));
  assert.ok(isTransient(new RejectedError('Unavailable', 'primary changed', 0, 7)));
});

test('cursor sets are stored with ids as strings and refuse garbage', () => {
  const c = { user: U64_MAX, cursors: [[U64_MAX - 1n, 5n], [3n, 0n]] };
  const text = cursorsToJson(c);
  assert.match(text, /"18446744073709551615"/);
  assert.deepEqual(cursorsFromJson(text), c);
  assert.throws(() => cursorsFromJson('{"version":1,"user":12,"cursors":[]}'), /bad id/);
  assert.throws(() => cursorsFromJson('{"version":2,"user":"1","cursors":[]}'), /version 1/);
});

test('the pacer lets half the burst go at once, then one per interval, and backs off after a refusal', async () => {
  const { Pacer } = await import('../dist/index.js');
  const p = Pacer.forBudgets({ perSec: 10, burst: 20 }, { perSec: 0, burst: 0 }, 0);
  const waits = Array.from({ length: 14 }, () => p.reserve(0));
  assert.deepEqual(waits.slice(0, 10), Array(10).fill(0));
  assert.equal(Math.round(waits[10]), 100);
  assert.equal(Math.round(waits[13]), 400);
  assert.equal(p.reserve(10000), 0);
  assert.equal(Pacer.forBudgets({ perSec: 0, burst: 0 }, { perSec: 0, burst: 0 }, 0), null);
  assert.deepEqual(Pacer.forBudgets({ perSec: 100, burst: 200 }, { perSec: 50, burst: 100 }, 0).limit, { perSec: 50, burst: 100 });
  const q = Pacer.forBudgets({ perSec: 10, burst: 2 }, { perSec: 0, burst: 0 }, 0);
  q.refused(0, 500);
  assert.equal(Math.round(q.reserve(0)), 500);
});

test('every ErrorCode of the schema has its name', () => {
  for (const [name, value] of Object.entries(w.ErrorCode)) {
    if (typeof value === 'number') assert.equal(ERROR_CODES[value], name);
  }
  assert.equal(ERROR_CODES[10], 'Forbidden');
  assert.equal(ERROR_CODES[4], 'NotFound');
});

test('a profile event written by the Rust encoder decodes (issue 16, part 5)', () => {
  // fuzz/corpus/decode_server/event-09: Event::ProfileChanged { user: 7, version: 3 }.
  const path = new URL('../../../../fuzz/corpus/decode_server/event-09', import.meta.url);
  const f = decodeServer(new Uint8Array(readFileSync(path)));
  assert.deepEqual(f, { kind: 'event', event: { type: 'profileChanged', user: 7n, version: 3n } });
});
