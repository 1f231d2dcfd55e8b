// A TCP proxy between an SDK client and courierd, for the recovery tests:
// it can cut every connection (a network drop), refuse new ones (an
// outage), and swallow what the server sends on the open ones (a lost ack).
import net from 'node:net';

export class Proxy {
  constructor(target) {
    this.target = new URL(target);
    this.pairs = new Set();
    this.refusing = false;
    this.server = net.createServer((client) => this.accept(client));
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `ws://127.0.0.1:${this.server.address().port}/`;
  }

  accept(client) {
    if (this.refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(this.target.port), this.target.hostname);
    const pair = { client, upstream, swallow: false };
    this.pairs.add(pair);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (!pair.swallow) client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  }

  /** Drops every open connection (both directions). */
  cut() {
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    this.pairs.clear();
  }

  /** New connections are refused until `resume()`. */
  refuse() {
    this.refusing = true;
  }

  resume() {
    this.refusing = false;
  }

  /** On the connections open now, nothing the server sends reaches the client. */
  swallowReplies() {
    for (const p of this.pairs) p.swallow = true;
  }

  close() {
    this.cut();
    this.server.close();
  }
}
