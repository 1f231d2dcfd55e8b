// The SDK in one page (docs/CLIENTS.md): open the exactly-once stream with
// a user token, find a channel, send a message, read the stream until the
// message comes back, mark what was read. Run it after `scripts/install-web-deps`:
//
//   COURIER_URL=ws://127.0.0.1:7070/ COURIER_TOKEN=cu1_… COURIER_CHANNEL=general \
//     node tools/web/sdk/examples/quickstart.mjs
//
// tools/web/sdk/test/server.test.mjs runs it against a real courierd.
import { Session, FileCursorStore } from '../dist/index.js';

const url = process.env.COURIER_URL ?? 'ws://127.0.0.1:7070/';
const token = process.env.COURIER_TOKEN; // cu1_…, from `courier admin create-user`
const channel = process.env.COURIER_CHANNEL ?? 'general';
const cursors = process.env.COURIER_CURSORS ?? 'cursors.json';
if (!token) throw new Error('set COURIER_TOKEN to a user token (cu1_…)');

// The stream: every message exactly once, in order, across reconnects. A
// new cursor file starts at each conversation's head; the next run resumes
// where this one stopped and first delivers what it missed.
const session = await Session.open({
  client: { url, token, deviceKind: 'tool', deviceName: 'quickstart' },
  cursorStore: new FileCursorStore(cursors),
});

// Requests go through the session's reconnecting client; ids are bigint.
const conversation = await session.client.lookup(channel, 'channel');
const ack = await session.client.send(conversation, 'hello from TypeScript'); // one id, retried until acked
console.log(`sent: #${channel} seq ${ack.seq}`);

// Read until our own message has come back through the stream.
let last = 0n;
while (last < ack.seq) {
  const e = await session.next(); // reconnects and catches up by itself
  if (e.type === 'message' && e.message.conversation === conversation) {
    console.log(`#${channel} ${e.message.seq}: ${e.message.body}`);
    last = e.message.seq;
  }
}
// Read state: other devices of the user see the badge clear.
await session.client.markRead(conversation, last);
console.log(`read up to seq ${last}`);
await session.saveCursors(); // also saved at most every 500 ms while messages flow
session.close();
