// Benchmark (not a test) of the web app in headless Chromium against a
// running courierd (docs/PERFORMANCE.md, "Web app"):
//
// 1. first screen: from navigation to the sidebar rendered, for a user in
//    COURIER_BENCH_CONVERSATIONS (2,000) conversations (token already saved,
//    as on a return visit; a fresh browser context each time, so the cursor
//    store is empty and the app starts from Boot);
// 2. send → paint: from Enter in alice's tab to the message painted in
//    bob's tab (both on the same channel, two browser contexts), measured
//    with the page clocks (Date.now; same machine, same browser process).
//
// Run (a fresh server):
//   courierd --data-dir /tmp/bench-data --listen 127.0.0.1:7391 &
//   COURIER_URL=ws://127.0.0.1:7391/ COURIER_ADMIN_TOKEN=$(cat /tmp/bench-data/admin.token) \
//     node tools/web/app/bench/latency.mjs
import { chromium } from 'playwright-core';
import { Client } from '../../sdk/dist/index.js';

const WS = process.env.COURIER_URL;
const ADMIN = process.env.COURIER_ADMIN_TOKEN;
const CHROMIUM = process.env.COURIER_CHROMIUM_BIN ?? '/usr/bin/chromium';
const CONVERSATIONS = Number(process.env.COURIER_BENCH_CONVERSATIONS ?? 2000);
const LOADS = Number(process.env.COURIER_BENCH_LOADS ?? 20);
const SENDS = Number(process.env.COURIER_BENCH_SENDS ?? 300);
if (!WS || !ADMIN) throw new Error('set COURIER_URL and COURIER_ADMIN_TOKEN (see the header)');
const APP = WS.replace(/^ws/, 'http');

function pct(samples, p) {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}
const summary = (xs) =>
  `p50 ${pct(xs, 50).toFixed(0)} ms, p99 ${pct(xs, 99).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms (n=${xs.length})`;

const admin = new Client({ url: WS, token: ADMIN });
const ws = await admin.createWorkspace(`bench ${Date.now()}`);
const alice = await admin.createUser(ws, 'alice');
const bob = await admin.createUser(ws, 'bob');
admin.close();
const a = new Client({ url: WS, token: alice.token });
const started = Date.now();
let general;
for (let i = 0; i < CONVERSATIONS; i += 100) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(100, CONVERSATIONS - i) }, (_, j) => a.createChannel(`c${i + j}`)),
  );
  general ??= batch[0];
  await Promise.all(batch.slice(0, 10).map((c) => a.send(c.id, `hello ${c.name}`)));
}
console.error(`setup: ${CONVERSATIONS} conversations in ${Date.now() - started} ms`);

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
async function signedIn(token) {
  const ctx = await browser.newContext();
  await ctx.addInitScript((t) => localStorage.setItem('courier.token', t), token);
  return ctx;
}

// 1. Navigation → first screen.
const loads = [];
for (let i = 0; i < LOADS; i++) {
  const ctx = await signedIn(alice.token);
  const page = await ctx.newPage();
  const t0 = Date.now();
  await page.goto(APP);
  await page.waitForSelector('#conversations li.conv', { timeout: 30000 });
  loads.push(Date.now() - t0);
  if (i === 0) console.error(`sidebar rows: ${await page.locator('#conversations li.conv').count()}`);
  await ctx.close();
}

// 2. Send in one tab → painted in the other.
const b = new Client({ url: WS, token: bob.token });
await b.join(general.id);
b.close();
const pages = [];
for (const token of [alice.token, bob.token]) {
  const page = await (await signedIn(token)).newPage();
  await page.goto(APP);
  await page.locator('li.conv', { has: page.locator('.name', { hasText: /^#c0$/ }) }).click();
  await page.waitForFunction(() => document.getElementById('title')?.textContent === '#c0');
  pages.push(page);
}
const [pa, pb] = pages;
await pa.evaluate(() => {
  // Capture phase: runs before the app's own handler sends.
  document.getElementById('draft').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') window.sentAt = Date.now();
  }, true);
});
await pb.evaluate(() => {
  window.painted = new Map();
  new MutationObserver(() => {
    for (const el of document.querySelectorAll('#messages .msg .body')) {
      if (!window.painted.has(el.textContent)) window.painted.set(el.textContent, Date.now());
    }
  }).observe(document.getElementById('messages'), { childList: true, subtree: true });
});
const paints = [];
for (let i = 0; i < SENDS; i++) {
  const body = `bench ${i}`;
  await pa.fill('#draft', body);
  await pa.press('#draft', 'Enter');
  const t1 = await pb.waitForFunction((x) => window.painted.get(x), body, { timeout: 10000 });
  const t0 = await pa.evaluate(() => window.sentAt);
  paints.push((await t1.jsonValue()) - t0);
}
await browser.close();
console.log(`first screen, ${CONVERSATIONS} conversations: ${summary(loads)}`);
console.log(`send in one tab → painted in the other: ${summary(paints)}`);
process.exit(0);
