// The web app in a real browser: headless Chromium (Debian's `chromium`)
// driven by playwright-core against a real courierd that serves the app
// itself. Started by tools/tests/web_app.rs, which passes COURIER_APP_URL,
// COURIER_URL, COURIER_ADMIN_TOKEN, COURIER_CONTROL_URL (kill / start the
// daemon) and COURIER_CHROMIUM_BIN; with COURIER_SCREENSHOTS=DIR it also
// saves screenshots of the main screens there.
//
// alice and bob sign in in two browser contexts; carol is an SDK client in
// node (another device, another person).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { Client } from '../../sdk/dist/index.js';

const APP = process.env.COURIER_APP_URL;
const WS = process.env.COURIER_URL;
const ADMIN = process.env.COURIER_ADMIN_TOKEN;
const CONTROL = process.env.COURIER_CONTROL_URL;
const CHROMIUM = process.env.COURIER_CHROMIUM_BIN;
const SHOTS = process.env.COURIER_SCREENSHOTS;
if (!APP || !WS || !ADMIN || !CONTROL || !CHROMIUM) throw new Error('run through tools/tests/web_app.rs');

const WAIT_MS = 20000;
let browser;
let people; // { alice, bob, carol }: { user, token }
let carol; // an SDK client
const rooms = {}; // name → ConversationInfo

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  const admin = new Client({ url: WS, token: ADMIN });
  const ws = await admin.createWorkspace('Acme');
  people = {};
  for (const n of ['alice', 'bob', 'carol']) people[n] = await admin.createUser(ws, n);
  admin.close();
  carol = new Client({ url: WS, token: people.carol.token, retryDeadlineMs: 60000 });
  await carol.call({ type: 'setProfile', displayName: 'Carol C.' });
  for (const name of ['general', 'random', 'history']) {
    rooms[name] = await carol.createChannel(name);
    await carol.invite(rooms[name].id, people.alice.user);
    await carol.invite(rooms[name].id, people.bob.user);
  }
});

after(async () => {
  if (pageErrors.length > 0) console.error(`errors in the pages:\n${pageErrors.join('\n')}`);
  carol?.close();
  await browser?.close();
});

async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

async function control(what) {
  const r = await fetch(`${CONTROL}/${what}`, { method: 'POST' });
  assert.equal(r.status, 200, `control ${what}: ${await r.text()}`);
}

/** Errors thrown in a page (the app's event loop must never die silently). */
const pageErrors = [];

async function newPage(context) {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e?.stack ?? e)));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`);
  });
  return page;
}

async function signIn(context, token) {
  const page = await newPage(context);
  await page.goto(APP);
  await page.fill('#token', token);
  await page.click('#signin-button');
  await page.waitForSelector('#main', { state: 'visible', timeout: WAIT_MS });
  return page;
}

const conv = (page, name) => page.locator('li.conv', { has: page.locator('.name', { hasText: new RegExp(`^${name}$`) }) });

async function open(page, name) {
  await conv(page, name).click();
  await page.waitForFunction((n) => document.getElementById('title')?.textContent === n, name, { timeout: WAIT_MS });
}

/** [seq, state, body] of every row of the open conversation. */
function rows(page) {
  return page.$$eval('#messages .msg', (els) =>
    els.map((e) => [e.dataset.seq ?? null, e.dataset.state, e.querySelector('.body').textContent]));
}

/** Waits until the open conversation shows exactly `bodies`, acked, with seqs first..first+n-1 in order. */
async function expectExactly(page, bodies, first = 1) {
  const want = bodies.map((b, i) => [String(first + i), 'acked', b]);
  const deadline = Date.now() + WAIT_MS;
  let got;
  for (;;) {
    got = await rows(page);
    if (JSON.stringify(got) === JSON.stringify(want)) return;
    if (Date.now() > deadline) break;
    await page.waitForTimeout(100);
  }
  assert.deepEqual(got, want);
}

async function badge(page, name) {
  return page.evaluate((n) => {
    for (const li of document.querySelectorAll('#conversations li.conv')) {
      if (li.querySelector('.name')?.textContent === n) return li.querySelector('.badge')?.textContent ?? null;
    }
    return null;
  }, name);
}

async function waitBadge(page, name, want) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const got = await badge(page, name);
    if (got === want) return;
    if (Date.now() > deadline) {
      const sidebar = await page.$eval('#conversations', (e) => e.outerHTML);
      assert.equal(got, want, `badge of ${name}; sidebar: ${sidebar}`);
    }
    await page.waitForTimeout(100);
  }
}

async function type(page, text) {
  await page.fill('#draft', text);
  await page.press('#draft', 'Enter');
}

let alice, bob, aliceCtx, bobCtx;

test('a bad token shows a clear error and no app', async () => {
  const ctx = await browser.newContext();
  const page = await newPage(ctx);
  await page.goto(APP);
  await page.fill('#token', 'cu1_' + 'ab'.repeat(48));
  await page.click('#signin-button');
  await page.waitForFunction(() => document.getElementById('signin-error')?.textContent !== '', null, { timeout: WAIT_MS });
  assert.match(await page.textContent('#signin-error'), /token was not accepted/);
  assert.equal(await page.isVisible('#main'), false);
  await shot(page, 'signin-error');
  await ctx.close();
});

test('alice and bob chat in a channel and a DM: optimistic send, then acked; names; badges', async () => {
  aliceCtx = await browser.newContext();
  bobCtx = await browser.newContext();
  alice = await signIn(aliceCtx, people.alice.token);
  bob = await signIn(bobCtx, people.bob.token);
  await open(alice, '#general');
  await type(alice, 'hello from alice');
  await expectExactly(alice, ['hello from alice']);
  await waitBadge(bob, '#general', '1');
  await open(bob, '#general');
  await expectExactly(bob, ['hello from alice']);
  await waitBadge(bob, '#general', null);
  assert.equal(await bob.textContent('#messages .msg .who'), 'alice');
  await carol.send(rooms.general.id, 'hi both, carol here');
  await expectExactly(alice, ['hello from alice', 'hi both, carol here']);
  await expectExactly(bob, ['hello from alice', 'hi both, carol here']);
  assert.deepEqual(await bob.$$eval('#messages .msg .who', (e) => e.map((x) => x.textContent)), ['alice', 'Carol C.']);
  // A DM carol opens from her device: it appears in alice's sidebar with a badge.
  const dm = await carol.openDm([people.alice.user]);
  await carol.send(dm.id, 'psst alice');
  await waitBadge(alice, 'Carol C.', '1');
  await open(alice, 'Carol C.');
  await expectExactly(alice, ['psst alice']);
  await type(alice, 'hi carol');
  await expectExactly(alice, ['psst alice', 'hi carol']);
  const page = await carol.history(dm.id, 'latest', 0n, 10);
  assert.deepEqual(page.messages.map((m) => m.body), ['psst alice', 'hi carol']);
  await open(alice, '#general');
  await shot(alice, 'chat');
});

test('a user with two tabs marks a channel read in one and the badge clears in the other', async () => {
  const bob2 = await newPage(bobCtx);
  await bob2.goto(APP); // signed in from the saved token
  await bob2.waitForSelector('#main', { state: 'visible', timeout: WAIT_MS });
  await carol.send(rooms.random.id, 'anyone here?');
  await waitBadge(bob, '#random', '1');
  await waitBadge(bob2, '#random', '1');
  await shot(bob2, 'sidebar-unread');
  await open(bob, '#random');
  await expectExactly(bob, ['anyone here?']);
  await waitBadge(bob2, '#random', null);
  await bob2.close();
  await open(bob, '#general');
});

test('kill -9 and restart with both tabs open: banner, then every message before, during and after exactly once, in order', async () => {
  const before = ['hello from alice', 'hi both, carol here'];
  await carol.send(rooms.general.id, 'before the crash');
  before.push('before the crash');
  await expectExactly(alice, before);
  await expectExactly(bob, before);
  await control('kill');
  await alice.waitForSelector('#banner', { state: 'visible', timeout: WAIT_MS });
  await bob.waitForSelector('#banner', { state: 'visible', timeout: WAIT_MS });
  await type(alice, 'sent during the outage');
  const pending = await rows(alice);
  assert.deepEqual(pending[pending.length - 1], [null, 'sending', 'sent during the outage'], 'shown at once, not yet acked');
  await shot(alice, 'reconnecting');
  await control('start');
  const during = [...before, 'sent during the outage'];
  await expectExactly(alice, during);
  await carol.send(rooms.general.id, 'after the restart');
  const all = [...during, 'after the restart'];
  await expectExactly(alice, all);
  await expectExactly(bob, all);
  await alice.waitForSelector('#banner', { state: 'hidden', timeout: WAIT_MS });
  await bob.waitForSelector('#banner', { state: 'hidden', timeout: WAIT_MS });
  const page = await carol.history(rooms.general.id, 'latest', 0n, 100);
  assert.deepEqual(page.messages.map((m) => m.body), all, 'stored exactly once');
});

test('a reload resumes from the cursors kept in IndexedDB (ids as strings) and stays exact', async () => {
  await alice.reload();
  await alice.waitForSelector('#main', { state: 'visible', timeout: WAIT_MS });
  await alice.waitForFunction(async (id) => {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open('courier', 1);
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const tx = db.transaction('cursors', 'readonly').objectStore('cursors').getAll();
    const all = await new Promise((resolve) => {
      tx.onsuccess = () => resolve(tx.result);
    });
    db.close();
    return all.some((text) => JSON.parse(text).cursors.some(([c, seq]) => c === id && seq === '5'));
  }, rooms.general.id.toString(), { timeout: WAIT_MS, polling: 200 });
  await open(alice, '#general');
  await carol.send(rooms.general.id, 'after the reload');
  await expectExactly(alice, [
    'hello from alice', 'hi both, carol here', 'before the crash', 'sent during the outage', 'after the restart',
    'after the reload',
  ]);
});

test('scroll-back through 500 messages', async () => {
  const bodies = Array.from({ length: 500 }, (_, i) => `old ${i + 1}`);
  for (let i = 0; i < bodies.length; i += 100) {
    await Promise.all(bodies.slice(i, i + 100).map((b) => carol.send(rooms.history.id, b)));
  }
  await open(alice, '#history');
  const deadline = Date.now() + WAIT_MS * 2;
  while ((await alice.locator('#messages .msg').count()) < 500 && Date.now() < deadline) {
    await alice.evaluate(() => {
      document.getElementById('messages').scrollTop = 0;
    });
    await alice.waitForTimeout(150);
  }
  const got = await rows(alice);
  assert.equal(got.length, 500);
  assert.deepEqual(got.map((r) => r[0]), bodies.map((_, i) => String(i + 1)));
  assert.deepEqual(got.map((r) => r[2]).sort(), [...bodies].sort());
  assert.equal(await alice.isVisible('.older'), false, 'no older messages left');
});
