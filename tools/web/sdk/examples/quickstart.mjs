// The SDK in one page (docs/CLIENTS.md): connect with a user token, find a
// channel, send a message, read the exactly-once stream until caught up,
// mark what was read. Run it after `scripts/install-web-deps`:
//
//   COURIER_URL=ws://127.0.0.1:7070/ COURIER_TOKEN=cu1_… COURIER_CHANNEL=general \
//     node tools/web/sdk/examples/quickstart.mjs
//
// tools/web/sdk/test/server.test.mjs runs it against a real courierd.
import { Client, Session, FileCursorStore } from '../dist/index.js';

const url = process.env.COURIER_URL ?? 'ws://127.0.0.1:7070/';
const token = process.env.COURIER_TOKEN; // cu1_…, from `courier admin create-user`
const channel = process.env.COURIER_CHANNEL ?? 'general';
const cursors = process.env.COURIER_CURSORS ?? 'cursors.json';
if (!token) throw new Error('set COURIER_TOKEN to a user token (cu1_…)');

// Requests go through a reconnecting client; ids are bigint.
const client = new Client({ url, token, deviceKind: 'tool', deviceName: 'quickstart' });
const conversation = await client.lookup(channel, 'channel');
const ack = await client.send(conversation, 'hello from TypeScript'); // one id, retried until acked
console.log(`sent: #${channel} seq ${ack.seq}`);
client.close();

// The stream: every message exactly once, in order, resuming from the
// cursor file on the next run.
const session = await Session.open({
  client: { url, token, deviceName: 'quickstart' },
  cursorStore: new FileCursorStore(cursors),
});
let last = 0n;
for (;;) {
  const e = await session.next(); // reconnects and catches up by itself
  if (e.type === 'message' && e.message.conversation === conversation) {
    console.log(`#${channel} ${e.message.seq}: ${e.message.body}`);
    last = e.message.seq;
  }
  if (e.type === 'caughtUp') break;
}
// Read state: other devices of the user see the badge clear.
if (last > 0n) await session.client.markRead(conversation, last);
console.log(`read up to seq ${last}`);
session.close();
