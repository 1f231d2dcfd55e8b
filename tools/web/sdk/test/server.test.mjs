// The SDK against a real courierd (started by tools/tests/web_sdk.rs, which
// passes COURIER_URL, COURIER_ADMIN_TOKEN and COURIER_CONTROL_URL, a small
// HTTP endpoint that kills and restarts the daemon). The recovery cases of
// the Rust client's tests (tools/tests/client.rs), against the real thing:
// live delivery exactly once and in order, catch-up after a network drop
// (inline Sync and truncated Sync + History repair), a send whose ack was
// lost retried with the same id and stored once, a kill -9 and restart of
// the server, a cursor file that resumes exactly, read cursors moved by
// another device, and a bad token refused at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { Client, Session, FileCursorStore, RejectedError, ClosedError } from '../dist/index.js';
import { Proxy } from './proxy.mjs';

const URL_ = process.env.COURIER_URL;
const ADMIN = process.env.COURIER_ADMIN_TOKEN;
const CONTROL = process.env.COURIER_CONTROL_URL;
if (!URL_ || !ADMIN || !CONTROL) throw new Error('run through tools/tests/web_sdk.rs (needs COURIER_URL, COURIER_ADMIN_TOKEN, COURIER_CONTROL_URL)');

let teams = 0;

/** A fresh workspace with these users: { name: { user, token } }. */
async function team(...names) {
  const admin = new Client({ url: URL_, token: ADMIN });
  const ws = await admin.createWorkspace(`team ${process.pid} ${teams++}`);
  const out = {};
  for (const n of names) out[n] = await admin.createUser(ws, n);
  admin.close();
  return out;
}

async function control(what) {
  const r = await fetch(`${CONTROL}/${what}`, { method: 'POST' });
  assert.equal(r.status, 200, `control ${what}: ${await r.text()}`);
}

function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The next `n` messages of a session (other events skipped), within 20 s. */
async function messages(session, n) {
  const out = [];
  const work = (async () => {
    while (out.length < n) {
      const e = await session.next();
      if (e.type === 'message') out.push(e.message);
    }
    return out;
  })();
  return within(20000, work, `${n} messages (got ${out.length})`);
}

/** Reads until CaughtUp of generation ≥ g; no message may come first. */
async function caughtUp(session, g) {
  const work = (async () => {
    for (;;) {
      const e = await session.next();
      assert.notEqual(e.type, 'message', 'unexpected message before catching up');
      if (e.type === 'caughtUp' && e.generation >= g) return;
    }
  })();
  return within(20000, work, `caughtUp ${g}`);
}

/** Exactly seqs from..to of conversation c, in order, with these bodies. */
function assertExact(got, c, from, bodies) {
  const mine = got.filter((m) => m.conversation === c);
  assert.deepEqual(mine.map((m) => m.seq), bodies.map((_, i) => BigInt(from + i)));
  assert.deepEqual(mine.map((m) => m.body), bodies);
}

const range = (n, f) => Array.from({ length: n }, (_, i) => f(i));

test('a bad token is refused at once, without retries', async () => {
  const started = Date.now();
  const bad = 'cu1_' + '0'.repeat(96);
  await assert.rejects(Session.open({ client: { url: URL_, token: bad } }), (e) =>
    (e instanceof RejectedError && e.code === 'Unauthenticated') || (e instanceof ClosedError && e.code !== null));
  assert.ok(Date.now() - started < 3000, 'refused within 3 s');
});

test('live messages arrive exactly once, in order, with exact 64-bit ids', async () => {
  const { alice, bob } = await team('alice', 'bob');
  const a = new Client({ url: URL_, token: alice.token });
  const ch = await a.createChannel('general');
  const b = await Session.open({ client: { url: URL_, token: bob.token } });
  await b.client.join(ch.id);
  await caughtUp(b, 1);
  const bodies = range(20, (i) => `live ${i}`);
  const acks = [];
  for (const body of bodies) acks.push(await a.send(ch.id, body));
  assert.deepEqual(acks.map((x) => x.seq), range(20, (i) => BigInt(i + 1)));
  const got = await messages(b, 20);
  assertExact(got, ch.id, 1, bodies);
  for (const m of got) assert.equal(m.sender, alice.user, 'sender id exact');
  assert.equal(typeof alice.user, 'bigint');
  a.close();
  b.close();
});

test('after a network drop every message sent meanwhile arrives exactly once (inline Sync and History repair)', async () => {
  const { alice, bob } = await team('alice', 'bob');
  const a = new Client({ url: URL_, token: alice.token });
  const ch = await a.createChannel('general');
  const proxy = new Proxy(URL_);
  const via = await proxy.start();
  const b = await Session.open({ client: { url: via, token: bob.token } });
  await b.client.join(ch.id);
  const dm = await a.openDm([bob.user]);
  await caughtUp(b, 1);
  await a.send(ch.id, 'before');
  assertExact(await messages(b, 1), ch.id, 1, ['before']);
  proxy.refuse();
  proxy.cut();
  // More than the server inlines in a Sync (50): the rest comes by History.
  const chBodies = range(120, (i) => `away ${i}`);
  const dmBodies = range(7, (i) => `dm ${i}`);
  await Promise.all(chBodies.map((body) => a.send(ch.id, body)));
  for (const body of dmBodies) await a.send(dm.id, body);
  proxy.resume();
  const got = await messages(b, 127);
  assertExact(got, ch.id, 2, chBodies);
  assertExact(got, dm.id, 1, dmBodies);
  await a.send(ch.id, 'after');
  assertExact(await messages(b, 1), ch.id, 122, ['after']);
  assert.ok(b.client.generation >= 2, 'reconnected');
  assert.ok(b.tracker.stats.duplicates >= 0);
  proxy.close();
  a.close();
  b.close();
});

test('a send whose ack was lost is retried with the same client message id and stored once', async () => {
  const { alice } = await team('alice');
  const proxy = new Proxy(URL_);
  const via = await proxy.start();
  const a = new Client({ url: via, token: alice.token, requestTimeoutMs: 1000 });
  const ch = await a.createChannel('general');
  await a.send(ch.id, 'first');
  proxy.swallowReplies();
  const ack = await within(15000, a.send(ch.id, 'only once'), 'the retried send');
  assert.equal(ack.seq, 2n);
  assert.ok(a.generation >= 2, 'the retry went over a new connection');
  const page = await a.history(ch.id, 'latest', 0n, 100);
  assert.deepEqual(page.messages.map((m) => m.body), ['first', 'only once']);
  assert.equal(page.head, 2n);
  proxy.close();
  a.close();
});

test('kill -9 and restart of the server: a send during the outage is stored once and the stream catches up exactly', async () => {
  const { alice, bob } = await team('alice', 'bob');
  const a = new Client({ url: URL_, token: alice.token, retryDeadlineMs: 60000 });
  const ch = await a.createChannel('general');
  const b = await Session.open({ client: { url: URL_, token: bob.token } });
  await b.client.join(ch.id);
  await caughtUp(b, 1);
  await a.send(ch.id, 'before');
  assertExact(await messages(b, 1), ch.id, 1, ['before']);
  await control('kill');
  const during = a.send(ch.id, 'during');
  await new Promise((r) => setTimeout(r, 300));
  await control('start');
  const ack = await within(30000, during, 'the send made during the outage');
  assert.equal(ack.seq, 2n);
  for (const body of ['after 1', 'after 2']) await a.send(ch.id, body);
  assertExact(await messages(b, 3), ch.id, 2, ['during', 'after 1', 'after 2']);
  const page = await a.history(ch.id, 'latest', 0n, 100);
  assert.deepEqual(page.messages.map((m) => m.body), ['before', 'during', 'after 1', 'after 2']);
  a.close();
  b.close();
});

test('a cursor file resumes exactly where the client stopped', async () => {
  const { alice, bob } = await team('alice', 'bob');
  const a = new Client({ url: URL_, token: alice.token });
  const ch = await a.createChannel('general');
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'courier-sdk-')), 'cursors.json');
  const opts = { client: { url: URL_, token: bob.token }, cursorStore: new FileCursorStore(file) };
  const b1 = await Session.open(opts);
  await b1.client.join(ch.id);
  await caughtUp(b1, 1);
  for (let i = 1; i <= 5; i++) await a.send(ch.id, `m${i}`);
  assertExact(await messages(b1, 5), ch.id, 1, range(5, (i) => `m${i + 1}`));
  await b1.saveCursors();
  b1.close();
  const stored = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.deepEqual(stored.cursors, [[ch.id.toString(), '5']], 'ids stored as strings');
  for (let i = 6; i <= 9; i++) await a.send(ch.id, `m${i}`);
  const b2 = await Session.open(opts);
  assertExact(await messages(b2, 4), ch.id, 6, range(4, (i) => `m${i + 6}`));
  a.close();
  b2.close();
});

test('a read cursor moved on one device reaches the other, live and after a reconnect', async () => {
  const { alice, bob } = await team('alice', 'bob');
  const a = new Client({ url: URL_, token: alice.token });
  const ch = await a.createChannel('general');
  const proxy = new Proxy(URL_);
  const via = await proxy.start();
  const phone = new Client({ url: URL_, token: bob.token });
  await phone.join(ch.id);
  const laptop = await Session.open({ client: { url: via, token: bob.token } });
  await caughtUp(laptop, 1);
  for (let i = 0; i < 3; i++) await a.send(ch.id, `r${i}`);
  await messages(laptop, 3);
  await phone.markRead(ch.id, 2n);
  const next = async (type) => {
    for (;;) {
      const e = await laptop.next();
      if (e.type === type) return e;
    }
  };
  const live = await within(10000, next('readCursor'), 'live read cursor');
  assert.deepEqual([live.conversation, live.seq], [ch.id, 2n]);
  proxy.refuse();
  proxy.cut();
  await phone.markRead(ch.id, 3n);
  proxy.resume();
  const synced = await within(10000, next('readCursor'), 'read cursor after reconnect');
  assert.deepEqual([synced.conversation, synced.seq], [ch.id, 3n]);
  assert.equal(laptop.tracker.read(ch.id), 3n);
  proxy.close();
  a.close();
  phone.close();
  laptop.close();
});

test('the quickstart example of docs/CLIENTS.md runs', async () => {
  const { ann } = await team('ann');
  const c = new Client({ url: URL_, token: ann.token });
  const general = (await c.createChannel('general')).id;
  await c.send(general, 'before the example');
  c.close();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'courier-quickstart-'));
  const example = fileURLToPath(new URL('../examples/quickstart.mjs', import.meta.url));
  const env = { ...process.env, COURIER_TOKEN: ann.token, COURIER_CHANNEL: 'general', COURIER_CURSORS: path.join(dir, 'cursors.json') };
  const run = () => new Promise((resolve, reject) => {
    execFile(process.execPath, [example], { env, timeout: 30000 }, (err, stdout, stderr) =>
      (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
  });
  const first = await within(40000, run(), 'the example');
  // A new cursor file starts at the head: only what happens after it opened.
  assert.doesNotMatch(first, /before the example/);
  assert.match(first, /sent: #general seq 2\n#general 2: hello from TypeScript\nread up to seq 2\n/);
  // The next run resumes from the cursor file: first what it missed.
  const c2 = new Client({ url: URL_, token: ann.token });
  await c2.send(general, 'between the runs');
  c2.close();
  const second = await within(40000, run(), 'the example again');
  assert.match(second, /sent: #general seq 4\n#general 3: between the runs\n#general 4: hello from TypeScript\nread up to seq 4\n/);
  fs.rmSync(dir, { recursive: true, force: true });
});
