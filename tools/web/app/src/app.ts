// Courier's web app: sign in with a token; a sidebar of the user's
// conversations by activity with unread and mention badges (Boot); a
// message view with scroll-back (History) and live messages (the SDK's
// exactly-once Session); a composer with optimistic display that turns into
// the acknowledged message; a reconnect banner and exact catch-up after a
// network drop or a server restart; read state kept in step across tabs
// and devices (MarkRead / ReadCursorEvent); SetFocus, and browser
// notifications only when the tab is not focused; display names (GetUsers).
//
// Plain DOM, no framework. Built with esbuild into dist/ (build.mjs), which
// courierd embeds and serves at `/`.

import {
  ClosedError,
  IndexedDbCursorStore,
  RejectedError,
  Session,
  randomClientMsgId,
  type BootPage,
  type ConversationInfo,
  type Message,
  type Status,
  type UserProfile,
} from '../../sdk/src/index.js';

/** Messages per History page when opening a conversation or scrolling back. */
const PAGE = 50;
/** Conversations asked per Boot page; the sidebar loads at most BOOT_PAGES_MAX pages. */
const BOOT_PAGE = 100;
const BOOT_PAGES_MAX = 100;
/** Messages of conversations not known yet (their JoinedEvent or Boot page
 * comes later) kept at most, over all conversations (the oldest go first). */
const ORPHANS_MAX = 1000;
/** Messages held per conversation not on screen at most (the oldest are dropped first). */
const HELD_MAX = 1000;
/** Re-send SetFocus{active} at most this often while the person interacts (the server forgets after 15 s). */
const ACTIVE_EVERY_MS = 5000;
const TOKEN_KEY = 'courier.token';

interface Pending {
  clientMsgId: bigint;
  body: string;
  state: 'sending' | 'failed';
}

interface Conv {
  info: ConversationInfo;
  /** Messages held, by seq: one contiguous range ending at the newest
   * delivered (live messages continue it; History pages extend it back). */
  messages: Map<bigint, Message>;
  /** Whether the newest page was fetched (Boot or History Latest). */
  loaded: boolean;
  loadingOlder: boolean;
  pending: Pending[];
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const state = {
  session: null as Session | null,
  me: 0n,
  convs: new Map<bigint, Conv>(),
  users: new Map<bigint, UserProfile>(),
  wantedUsers: new Set<bigint>(),
  current: null as bigint | null,
  /** Messages that arrived before their conversation was known, in arrival order. */
  orphans: [] as Message[],
  lastActive: 0,
  catchingUp: false,
};

// ------------------------------------------------------------------ sign-in

function showSignIn(error = ''): void {
  $('main').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = error;
  $<HTMLInputElement>('token').focus();
}

function describe(e: unknown): string {
  if (e instanceof RejectedError && e.code === 'Unauthenticated') return 'That token was not accepted. Check it and try again.';
  if (e instanceof ClosedError && e.code !== null && e.code >= 4000) return `The server refused the session: ${e.reason}`;
  if (e instanceof Error) return `Cannot sign in: ${e.message}`;
  return `Cannot sign in: ${String(e)}`;
}

async function signIn(token: string): Promise<void> {
  $('signin-error').textContent = '';
  $<HTMLButtonElement>('signin-button').disabled = true;
  try {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
    const session = await Session.open({
      client: { url, token, deviceKind: 'web', deviceName: 'Web browser', retryDeadlineMs: 10000, onStatus },
      // One cursor set per token (the token's user and token id).
      cursorStore: new IndexedDbCursorStore(`cursors-${token.slice(4, 36)}`),
    });
    localStorage.setItem(TOKEN_KEY, token);
    state.session = session;
    state.me = session.user;
    const more = await boot(session);
    $('signin').hidden = true;
    $('main').hidden = false;
    void run(session);
    if (more !== null) bootRest(session, more).catch(() => undefined);
  } catch (e) {
    localStorage.removeItem(TOKEN_KEY);
    showSignIn(describe(e));
  } finally {
    $<HTMLButtonElement>('signin-button').disabled = false;
  }
}

function onStatus(s: Status): void {
  const banner = $('banner');
  if (s.state === 'connected') {
    if (s.generation > 1) {
      state.catchingUp = true;
      banner.textContent = 'Reconnected — catching up…';
      banner.hidden = false;
    }
  } else {
    banner.textContent = 'Connection lost — reconnecting…';
    banner.hidden = false;
  }
}

// ------------------------------------------------------------------ boot

/** The first Boot page: enough for the first screen. Returns the offset of
 * the next page, or null when that was all. */
async function boot(session: Session): Promise<number | null> {
  const b = await session.client.boot(BOOT_PAGE, 0);
  $('me').textContent = b.userName;
  $('workspace').textContent = b.workspaceName;
  applyBoot(b);
  await fetchUsers();
  renderSidebar();
  const next = b.conversations.length;
  return next > 0 && next < b.total ? next : null;
}

/** The rest of the sidebar, after the first screen is shown. */
async function bootRest(session: Session, offset: number): Promise<void> {
  for (let page = 1; page < BOOT_PAGES_MAX && state.session === session; page++) {
    const b = await session.client.boot(BOOT_PAGE, offset);
    applyBoot(b);
    adoptOrphans();
    offset += b.conversations.length;
    if (b.conversations.length === 0 || offset >= b.total) break;
  }
  await fetchUsers();
  renderSidebar();
}

function applyBoot(b: BootPage): void {
  for (const info of b.conversations) {
    // A conversation the live stream already reported keeps its newer state.
    if (!state.convs.has(info.id)) upsert(info);
  }
  for (const p of b.pages) {
    const c = state.convs.get(p.conversation);
    if (c && p.messages.length > 0) {
      hold(c, p.messages);
      c.loaded = true;
    }
  }
}

function upsert(info: ConversationInfo): Conv {
  let c = state.convs.get(info.id);
  if (!c) {
    c = { info, messages: new Map(), loaded: false, loadingOlder: false, pending: [] };
    state.convs.set(info.id, c);
  } else {
    const read = c.info.read > info.read ? c.info.read : info.read;
    c.info = { ...info, read, unread: Math.max(0, Number(info.head - read)) };
  }
  info.members.forEach(wantUser);
  return c;
}

// ------------------------------------------------------------------ people

function wantUser(id: bigint): void {
  if (id !== 0n && !state.users.has(id)) state.wantedUsers.add(id);
}

async function fetchUsers(): Promise<void> {
  const session = state.session;
  if (!session || state.wantedUsers.size === 0) return;
  const ids = [...state.wantedUsers].slice(0, 1000);
  ids.forEach((id) => state.wantedUsers.delete(id));
  try {
    for (const u of await session.client.getUsers(ids)) state.users.set(u.user, u);
  } catch {
    // Names are cosmetic: ids stay shown until a later fetch succeeds.
  }
}

function nameOf(id: bigint): string {
  const u = state.users.get(id);
  return u ? u.displayName || u.handle : `user ${id}`;
}

function convName(c: Conv): string {
  if (c.info.kind === 'dm' || c.info.kind === 'groupDm') {
    const others = c.info.members.filter((m) => m !== state.me);
    return others.length > 0 ? others.map(nameOf).join(', ') : c.info.name || 'DM';
  }
  return `#${c.info.name}`;
}

// ------------------------------------------------------------------ live stream

async function run(session: Session): Promise<void> {
  for (;;) {
    let e;
    try {
      e = await session.next();
    } catch (err) {
      if (state.session !== session) return; // signed out
      showSignIn(describe(err));
      return;
    }
    switch (e.type) {
      case 'message':
        onMessage(e.message);
        break;
      case 'readCursor':
        onRead(e.conversation, e.seq);
        break;
      case 'joined':
        upsert(e.info);
        adoptOrphans();
        break;
      case 'left':
        state.convs.delete(e.conversation);
        if (state.current === e.conversation) state.current = null;
        break;
      case 'notify':
        notify(e.conversation, e.seq);
        break;
      case 'profileChanged': {
        // A newer profile: fetch it again (names re-render below).
        const held = state.users.get(e.user);
        if (held && held.version < e.version) state.wantedUsers.add(e.user);
        break;
      }
      case 'caughtUp':
        state.catchingUp = false;
        $('banner').hidden = true;
        break;
    }
    if (state.wantedUsers.size > 0) await fetchUsers();
    renderSidebar();
    if (e.type !== 'notify' && e.type !== 'readCursor') renderMessages(false);
  }
}

function onMessage(m: Message): void {
  const c = state.convs.get(m.conversation);
  if (!c) {
    // Its JoinedEvent (another shard may send it) or Boot page comes later.
    state.orphans.push(m);
    if (state.orphans.length > ORPHANS_MAX) state.orphans.shift();
    return;
  }
  wantUser(m.sender);
  const isNew = m.seq > c.info.head; // counted once, however often it is applied
  if (isNew) c.info.head = m.seq;
  c.info.lastActivityMs = Math.max(c.info.lastActivityMs, m.tsMs);
  c.info.preview = m.body.slice(0, 100);
  hold(c, [m]);
  c.pending = c.pending.filter((p) => p.clientMsgId !== m.clientMsgId);
  if (m.sender === state.me) onRead(m.conversation, m.seq);
  else if (m.seq > c.info.read) {
    c.info.unread = Math.max(0, Number(c.info.head - c.info.read));
    const dm = c.info.kind === 'dm' || c.info.kind === 'groupDm';
    if (isNew && (dm || m.mentions.includes(state.me) || m.broadcast !== 'none')) c.info.mentions++;
  }
  if (state.current === m.conversation && visible()) markRead(c);
}

/** Applies the orphans whose conversation is known now. */
function adoptOrphans(): void {
  const waiting = state.orphans;
  state.orphans = [];
  for (const m of waiting) onMessage(m);
}

function onRead(conversation: bigint, seq: bigint): void {
  const c = state.convs.get(conversation);
  if (!c || seq <= c.info.read) return;
  c.info.read = seq;
  c.info.unread = Math.max(0, Number(c.info.head - seq));
  if (c.info.unread === 0) c.info.mentions = 0;
}

function visible(): boolean {
  return document.visibilityState === 'visible';
}

function markRead(c: Conv): void {
  if (c.info.head > c.info.read && state.session) {
    onRead(c.info.id, c.info.head);
    state.session.client.markRead(c.info.id, c.info.head).catch(() => undefined);
  }
}

function notify(conversation: bigint, seq: bigint): void {
  if (document.hasFocus() || typeof Notification === 'undefined' || Notification.permission !== 'granted') return;
  const c = state.convs.get(conversation);
  if (!c) return;
  const m = c.messages.get(seq);
  const n = new Notification(convName(c), { body: m ? `${nameOf(m.sender)}: ${m.body}` : c.info.preview ?? '' });
  n.onclick = () => {
    window.focus();
    void open(conversation);
  };
}

// ------------------------------------------------------------------ conversations

async function open(id: bigint): Promise<void> {
  const c = state.convs.get(id);
  const session = state.session;
  if (!c || !session) return;
  state.current = id;
  $('composer').hidden = false;
  renderSidebar();
  if (!c.loaded) {
    const page = await session.client.history(id, 'latest', 0n, PAGE);
    hold(c, page.messages);
    c.loaded = true;
    await fetchUsers();
  }
  if (state.current !== id) return;
  renderMessages(true);
  if (visible()) markRead(c);
  sendFocus(true);
  $<HTMLTextAreaElement>('draft').focus();
}

/** Adds messages to what a conversation holds; one not on screen keeps at most HELD_MAX. */
function hold(c: Conv, messages: Message[]): void {
  for (const m of messages) {
    c.messages.set(m.seq, m);
    wantUser(m.sender);
  }
  if (state.current !== c.info.id && c.messages.size > HELD_MAX) {
    const seqs = [...c.messages.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const s of seqs.slice(0, seqs.length - HELD_MAX)) c.messages.delete(s);
    c.loaded = false; // older ones dropped: reopening fetches the newest page again
  }
}

/** The lowest seq held, or null. */
function oldest(c: Conv): bigint | null {
  let low: bigint | null = null;
  for (const s of c.messages.keys()) if (low === null || s < low) low = s;
  return low;
}

async function loadOlder(c: Conv): Promise<void> {
  const session = state.session;
  const low = oldest(c);
  if (!session || c.loadingOlder || low === null || low <= 1n) return;
  c.loadingOlder = true;
  try {
    const page = await session.client.history(c.info.id, 'before', low, PAGE);
    hold(c, page.messages);
    await fetchUsers();
    const box = $('messages');
    const fromBottom = box.scrollHeight - box.scrollTop;
    renderMessages(false);
    box.scrollTop = box.scrollHeight - fromBottom; // keep what the reader looks at in place
  } finally {
    c.loadingOlder = false;
  }
}

function sendFocus(active: boolean): void {
  const session = state.session;
  if (!session) return;
  state.lastActive = Date.now();
  const focused = document.hasFocus() && state.current !== null ? state.current : 0n;
  session.client.setFocus(focused, active && focused !== 0n).catch(() => undefined);
}

async function send(): Promise<void> {
  const session = state.session;
  const draft = $<HTMLTextAreaElement>('draft');
  const body = draft.value.trim();
  if (!session || state.current === null || body === '') return;
  const c = state.convs.get(state.current);
  if (!c) return;
  draft.value = '';
  const p: Pending = { clientMsgId: randomClientMsgId(), body, state: 'sending' };
  c.pending.push(p);
  renderMessages(true);
  try {
    // Retried with the same client message id across reconnects until acked.
    const ack = await session.client.sendWithId(c.info.id, p.clientMsgId, body);
    if (c.pending.includes(p)) {
      c.pending = c.pending.filter((x) => x !== p);
      if (!c.messages.has(ack.seq)) {
        hold(c, [{
          conversation: c.info.id,
          seq: ack.seq,
          sender: state.me,
          clientMsgId: p.clientMsgId,
          tsMs: ack.tsMs,
          body,
          mentions: [],
          broadcast: 'none',
        }]);
      }
      onRead(c.info.id, ack.seq);
    }
  } catch {
    p.state = 'failed';
  }
  renderMessages(false);
  renderSidebar();
}

async function ask(what: 'channel' | 'dm'): Promise<void> {
  const session = state.session;
  if (!session) return;
  const name = prompt(what === 'channel' ? 'New channel name (a-z, 0-9, . _ -)' : 'Message whom? (their handle)');
  if (!name) return;
  try {
    const info =
      what === 'channel'
        ? await session.client.createChannel(name.trim())
        : await session.client.openDm([await session.client.lookup(name.trim(), 'user')]);
    upsert(info);
    await fetchUsers();
    await open(info.id);
  } catch (e) {
    alert(e instanceof Error ? e.message : String(e));
  }
}

// ------------------------------------------------------------------ rendering

function renderSidebar(): void {
  const list = $('conversations');
  const convs = [...state.convs.values()]
    .filter((c) => c.info.member)
    .sort((a, b) => b.info.lastActivityMs - a.info.lastActivityMs);
  list.replaceChildren(
    ...convs.map((c) => {
      const li = document.createElement('li');
      li.className = 'conv';
      li.dataset.conv = c.info.id.toString();
      if (c.info.unread > 0) li.classList.add('unread');
      if (c.info.id === state.current) li.classList.add('current');
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = convName(c);
      li.append(name);
      if (c.info.unread > 0) {
        const badge = document.createElement('span');
        badge.className = c.info.mentions > 0 ? 'badge' : 'badge quiet';
        badge.textContent = String(c.info.mentions > 0 ? c.info.mentions : c.info.unread);
        badge.title = `${c.info.unread} unread, ${c.info.mentions} mentions`;
        li.append(badge);
      }
      li.onclick = () => void open(c.info.id);
      return li;
    }),
  );
}

function renderMessages(toBottom: boolean): void {
  const box = $('messages');
  const c = state.current === null ? undefined : state.convs.get(state.current);
  if (!c) {
    $('title').textContent = '';
    box.replaceChildren();
    return;
  }
  $('title').textContent = convName(c);
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const rows: HTMLElement[] = [];
  const low = oldest(c);
  if (low !== null && low > 1n) {
    const older = document.createElement('div');
    older.className = 'older';
    older.textContent = 'Scroll up for older messages';
    rows.push(older);
  }
  const seqs = [...c.messages.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const seq of seqs) {
    const m = c.messages.get(seq)!;
    rows.push(row(nameOf(m.sender), m.body, 'acked', m.clientMsgId, m.tsMs, seq));
  }
  for (const p of c.pending) rows.push(row(nameOf(state.me), p.body, p.state, p.clientMsgId, Date.now(), null));
  box.replaceChildren(...rows);
  if (toBottom || atBottom) box.scrollTop = box.scrollHeight;
}

function row(who: string, body: string, st: string, cmid: bigint, ts: number, seq: bigint | null): HTMLElement {
  const div = document.createElement('div');
  div.className = 'msg';
  div.dataset.state = st;
  div.dataset.cmid = cmid.toString();
  if (seq !== null) div.dataset.seq = seq.toString();
  const w = document.createElement('span');
  w.className = 'who';
  w.textContent = who;
  const t = document.createElement('span');
  t.className = 'when';
  t.textContent = new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const b = document.createElement('span');
  b.className = 'body';
  b.textContent = st === 'failed' ? `${body} (not sent)` : body;
  div.append(w, t, b);
  return div;
}

// ------------------------------------------------------------------ wiring

function wire(): void {
  $('signin').addEventListener('submit', (ev) => {
    ev.preventDefault();
    void signIn($<HTMLInputElement>('token').value.trim());
  });
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    void send();
  });
  $('draft').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      void send();
    }
  });
  $('messages').addEventListener('scroll', () => {
    const c = state.current === null ? undefined : state.convs.get(state.current);
    if (c && $('messages').scrollTop < 60) void loadOlder(c);
  });
  $('new-channel').onclick = () => void ask('channel');
  $('new-dm').onclick = () => void ask('dm');
  $('signout').onclick = () => {
    localStorage.removeItem(TOKEN_KEY);
    const s = state.session;
    state.session = null;
    s?.close();
    state.convs.clear();
    state.current = null;
    showSignIn();
  };
  window.addEventListener('focus', () => {
    const c = state.current === null ? undefined : state.convs.get(state.current);
    if (c) markRead(c);
    sendFocus(true);
    renderSidebar();
  });
  window.addEventListener('blur', () => sendFocus(false));
  document.addEventListener('visibilitychange', () => sendFocus(visible()));
  for (const ev of ['keydown', 'pointerdown']) {
    window.addEventListener(ev, () => {
      if (Date.now() - state.lastActive > ACTIVE_EVERY_MS) sendFocus(true);
      if (typeof Notification !== 'undefined' && Notification.permission === 'default') {
        void Notification.requestPermission();
      }
    });
  }
}

wire();
const saved = localStorage.getItem(TOKEN_KEY);
if (saved) void signIn(saved);
else showSignIn();
