// Where a Session keeps its cursors between runs: a file in Node, IndexedDB
// in a browser, or memory. The stored form is JSON with ids and seqs as
// decimal strings (never JSON numbers, which lose ids above 2^53).

/** Conversations a stored cursor set may name at most (the server's
 * per-user maximum is 10,000); a longer one is refused as corrupt. */
export const CURSOR_STORE_CONVERSATIONS_MAX = 100000;

export interface StoredCursors {
  user: bigint;
  cursors: [bigint, bigint][];
}

export interface CursorStore {
  load(): Promise<StoredCursors | null>;
  save(c: StoredCursors): Promise<void>;
}

/** The JSON text of a cursor set. */
export function cursorsToJson(c: StoredCursors): string {
  return JSON.stringify({
    version: 1,
    user: c.user.toString(),
    cursors: c.cursors.map(([id, seq]) => [id.toString(), seq.toString()]),
  });
}

/** Parses `cursorsToJson` output; throws on anything else. */
export function cursorsFromJson(text: string): StoredCursors {
  const v = JSON.parse(text) as { version?: unknown; user?: unknown; cursors?: unknown };
  const digits = (s: unknown): bigint => {
    if (typeof s !== 'string' || !/^[0-9]{1,20}$/.test(s)) throw new Error(`cursor store: bad id ${JSON.stringify(s)}`);
    return BigInt(s);
  };
  if (v.version !== 1 || !Array.isArray(v.cursors)) throw new Error('cursor store: not a version 1 cursor set');
  if (v.cursors.length > CURSOR_STORE_CONVERSATIONS_MAX) throw new Error('cursor store: too many conversations');
  const cursors = v.cursors.map((e: unknown): [bigint, bigint] => {
    if (!Array.isArray(e) || e.length !== 2) throw new Error('cursor store: bad entry');
    return [digits(e[0]), digits(e[1])];
  });
  return { user: digits(v.user), cursors };
}

/** Keeps cursors in memory (for tests, or a tab that needs no persistence). */
export class MemoryCursorStore implements CursorStore {
  private value: string | null = null;
  async load(): Promise<StoredCursors | null> {
    return this.value === null ? null : cursorsFromJson(this.value);
  }
  async save(c: StoredCursors): Promise<void> {
    this.value = cursorsToJson(c);
  }
}

/** A file in Node, replaced atomically (write a temporary file, fsync, rename). */
export class FileCursorStore implements CursorStore {
  constructor(readonly path: string) {}

  async load(): Promise<StoredCursors | null> {
    const fs = await nodeFs();
    let text: string;
    try {
      text = await fs.readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return null;
      throw e;
    }
    return cursorsFromJson(text);
  }

  async save(c: StoredCursors): Promise<void> {
    const fs = await nodeFs();
    const tmp = `${this.path}.tmp`;
    const fh = await fs.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(cursorsToJson(c));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, this.path);
  }
}

type NodeFs = typeof import('node:fs/promises');
function nodeFs(): Promise<NodeFs> {
  const name = 'node:fs/promises'; // not a static import: browser bundles stay free of it
  return import(/* @vite-ignore */ name) as Promise<NodeFs>;
}

/** IndexedDB in a browser: database `courier`, object store `cursors`, one record per key. */
export class IndexedDbCursorStore implements CursorStore {
  constructor(readonly key: string) {}

  private db(): Promise<IDBDatabase> {
    return new Promise((resolve, reject) => {
      const open = indexedDB.open('courier', 1);
      open.onupgradeneeded = () => open.result.createObjectStore('cursors');
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error ?? new Error('indexedDB.open failed'));
    });
  }

  async load(): Promise<StoredCursors | null> {
    const db = await this.db();
    try {
      const text = await new Promise<unknown>((resolve, reject) => {
        const r = db.transaction('cursors', 'readonly').objectStore('cursors').get(this.key);
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error ?? new Error('IndexedDB read failed'));
      });
      return typeof text === 'string' ? cursorsFromJson(text) : null;
    } finally {
      db.close();
    }
  }

  async save(c: StoredCursors): Promise<void> {
    const db = await this.db();
    try {
      await new Promise<void>((resolve, reject) => {
        const tx = db.transaction('cursors', 'readwrite');
        tx.objectStore('cursors').put(cursorsToJson(c), this.key);
        tx.oncomplete = () => resolve();
        tx.onerror = () => reject(tx.error ?? new Error('IndexedDB write failed'));
      });
    } finally {
      db.close();
    }
  }
}
