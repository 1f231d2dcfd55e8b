// Frames to bytes and back, on top of the code flatc generates from
// net/proto/schema/courier.fbs (src/generated/, `scripts/gen-proto`).
// Encoding writes the `CRR1` file identifier; decoding refuses a buffer
// without it. Ids stay `bigint` all the way (see types.ts).

import * as flatbuffers from 'flatbuffers';
import * as w from './generated/courier/wire.js';
import { ProtocolError, RejectedError, ERROR_CODES } from './errors.js';
import type {
  Anchor,
  Broadcast,
  ConversationInfo,
  ConversationKind,
  DeviceKind,
  Message,
  NotifyReason,
  Request,
  Response,
  ServerEvent,
  UserProfile,
} from './types.js';

const MASK64 = (1n << 64n) - 1n;

const KINDS: ConversationKind[] = ['public', 'private', 'dm', 'groupDm'];
const BROADCASTS: Broadcast[] = ['none', 'here', 'channel'];
const REASONS: NotifyReason[] = ['dm', 'mention', 'broadcast', 'channel'];
const DEVICE_KINDS: Record<DeviceKind, w.DeviceKind> = {
  desktop: w.DeviceKind.Desktop,
  web: w.DeviceKind.Web,
  mobile: w.DeviceKind.Mobile,
  tool: w.DeviceKind.Tool,
};
const ANCHORS: Record<Anchor, w.Anchor> = {
  latest: w.Anchor.Latest,
  before: w.Anchor.Before,
  after: w.Anchor.After,
};

function ids(b: flatbuffers.Builder, values: bigint[]): flatbuffers.Offset {
  b.startVector(8, values.length, 8);
  for (let i = values.length - 1; i >= 0; i--) b.addInt64(values[i]! & MASK64);
  return b.endVector();
}

function finish(b: flatbuffers.Builder, requestId: number, type: w.Body, body: flatbuffers.Offset): Uint8Array {
  const frame = w.Frame.createFrame(b, requestId >>> 0, type, body);
  w.Frame.finishFrameBuffer(b, frame);
  return b.asUint8Array();
}

/** The `Hello` frame (request id 1 by convention). */
export function encodeHello(requestId: number, token: string, kind: DeviceKind, deviceName: string): Uint8Array {
  const b = new flatbuffers.Builder(256);
  const t = b.createString(token);
  const n = b.createString(deviceName);
  return finish(b, requestId, w.Body.Hello, w.Hello.createHello(b, t, DEVICE_KINDS[kind], n, 1));
}

/** One request frame. */
export function encodeRequest(requestId: number, r: Request): Uint8Array {
  const b = new flatbuffers.Builder(256);
  const [type, body] = encodeBody(b, r);
  return finish(b, requestId, type, body);
}

function encodeBody(b: flatbuffers.Builder, r: Request): [w.Body, flatbuffers.Offset] {
  switch (r.type) {
    case 'createWorkspace':
      return [w.Body.CreateWorkspace, w.CreateWorkspace.createCreateWorkspace(b, b.createString(r.name))];
    case 'createUser': {
      const name = b.createString(r.name);
      return [w.Body.CreateUser, w.CreateUser.createCreateUser(b, r.workspace, name)];
    }
    case 'issueToken':
      return [w.Body.IssueToken, w.IssueToken.createIssueToken(b, r.user)];
    case 'revokeToken':
      return [w.Body.RevokeToken, w.RevokeToken.createRevokeToken(b, r.user, r.token)];
    case 'createChannel':
      return [w.Body.CreateChannel, w.CreateChannel.createCreateChannel(b, b.createString(r.name), !!r.private)];
    case 'join':
      return [w.Body.Join, w.Join.createJoin(b, r.conversation)];
    case 'leave':
      return [w.Body.Leave, w.Leave.createLeave(b, r.conversation)];
    case 'invite':
      return [w.Body.Invite, w.Invite.createInvite(b, r.conversation, r.user)];
    case 'remove':
      return [w.Body.Remove, w.Remove.createRemove(b, r.conversation, r.user)];
    case 'openDm':
      return [w.Body.OpenDm, w.OpenDm.createOpenDm(b, ids(b, r.users))];
    case 'listConversations':
      return [w.Body.ListConversations, w.ListConversations.createListConversations(b)];
    case 'lookup': {
      const name = b.createString(r.name);
      const kind = r.kind === 'user' ? w.LookupKind.User : w.LookupKind.Channel;
      return [w.Body.Lookup, w.Lookup.createLookup(b, name, kind)];
    }
    case 'send':
      return [w.Body.Send, encodeSend(b, r)];
    case 'sync':
      return [w.Body.Sync, encodeSync(b, r.cursors, r.reads)];
    case 'history':
      return [
        w.Body.History,
        w.History.createHistory(b, r.conversation, ANCHORS[r.anchor], r.seq ?? 0n, r.limit),
      ];
    case 'boot':
      return [w.Body.Boot, w.Boot.createBoot(b, r.limit, r.offset ?? 0)];
    case 'markRead':
      return [w.Body.MarkRead, w.MarkRead.createMarkRead(b, r.conversation, r.seq)];
    case 'setFocus':
      return [w.Body.SetFocus, w.SetFocus.createSetFocus(b, r.focused, r.active)];
    case 'setDnd':
      return [w.Body.SetDnd, w.SetDnd.createSetDnd(b, BigInt(r.untilMs))];
    case 'getUsers':
      return [w.Body.GetUsers, w.GetUsers.createGetUsers(b, ids(b, r.users))];
    case 'setProfile': {
      const name = r.displayName === undefined ? 0 : b.createString(r.displayName);
      w.SetProfile.startSetProfile(b);
      w.SetProfile.addUser(b, r.user ?? 0n);
      if (name) w.SetProfile.addDisplayName(b, name);
      return [w.Body.SetProfile, w.SetProfile.endSetProfile(b)];
    }
  }
}

function encodeSend(b: flatbuffers.Builder, r: Extract<Request, { type: 'send' }>): flatbuffers.Offset {
  const body = b.createString(r.body);
  const mentions = r.mentions && r.mentions.length > 0 ? ids(b, r.mentions) : 0;
  w.Send.startSend(b);
  w.Send.addConversation(b, r.conversation);
  w.Send.addClientMsgId(b, w.U128.createU128(b, r.clientMsgId & MASK64, (r.clientMsgId >> 64n) & MASK64));
  w.Send.addBody(b, body);
  if (mentions) w.Send.addMentions(b, mentions);
  w.Send.addBroadcast(b, BROADCASTS.indexOf(r.broadcast ?? 'none') as w.Broadcast);
  return w.Send.endSend(b);
}

function encodeSync(b: flatbuffers.Builder, cursors: [bigint, bigint][], reads?: bigint[]): flatbuffers.Offset {
  w.Sync.startCursorsVector(b, cursors.length);
  for (let i = cursors.length - 1; i >= 0; i--) {
    const [c, s] = cursors[i]!;
    w.Cursor.createCursor(b, c, s);
  }
  const cv = b.endVector();
  const rv = reads && reads.length > 0 ? ids(b, reads) : 0;
  return w.Sync.createSync(b, cv, rv);
}

/** A decoded server frame. */
export type ServerFrame =
  | { kind: 'reply'; requestId: number; response: Response }
  | { kind: 'error'; requestId: number; error: RejectedError }
  | { kind: 'event'; event: ServerEvent }
  /** An event kind this SDK does not know (a newer server): skip it. */
  | { kind: 'unknown'; requestId: number; body: number };

/** Decodes one server frame; throws `ProtocolError` if it is not one. */
export function decodeServer(bytes: Uint8Array): ServerFrame {
  const bb = new flatbuffers.ByteBuffer(bytes);
  if (bytes.length < 8 || !w.Frame.bufferHasIdentifier(bb)) {
    throw new ProtocolError('not a Courier frame (no CRR1 identifier)');
  }
  try {
    const f = w.Frame.getRootAsFrame(bb);
    return decodeFrame(f);
  } catch (e) {
    if (e instanceof ProtocolError) throw e;
    throw new ProtocolError(`undecodable frame: ${String(e)}`);
  }
}

function need<T>(v: T | null | undefined, what: string): T {
  if (v === null || v === undefined) throw new ProtocolError(`missing ${what}`);
  return v;
}

function decodeFrame(f: w.Frame): ServerFrame {
  const requestId = f.requestId();
  const t = f.bodyType();
  const body = <T>(o: T): T => need(f.body(o), 'frame body') as T;
  switch (t) {
    case w.Body.ErrorReply: {
      const e = body(new w.ErrorReply());
      const code = ERROR_CODES[e.code()] ?? `Error${e.code()}`;
      const err = new RejectedError(code, e.message() ?? '', Number(e.retryAfterMs()), e.unavailable());
      return { kind: 'error', requestId, error: err };
    }
    case w.Body.MessageEvent:
      return event({ type: 'message', message: message(need(body(new w.MessageEvent()).message(), 'message')) });
    case w.Body.ReadCursorEvent: {
      const e = body(new w.ReadCursorEvent());
      return event({ type: 'readCursor', conversation: e.conversation(), seq: e.seq() });
    }
    case w.Body.JoinedEvent:
      return event({ type: 'joined', info: info(need(body(new w.JoinedEvent()).info(), 'info')) });
    case w.Body.LeftEvent:
      return event({ type: 'left', conversation: body(new w.LeftEvent()).conversation() });
    case w.Body.NotifyEvent: {
      const e = body(new w.NotifyEvent());
      const reason = REASONS[e.reason()] ?? 'channel';
      return event({ type: 'notify', conversation: e.conversation(), seq: e.seq(), reason });
    }
    case w.Body.ProfileChangedEvent: {
      const e = body(new w.ProfileChangedEvent());
      return event({ type: 'profileChanged', user: e.user(), version: e.version() });
    }
    default: {
      const response = decodeResponse(f, t);
      if (response === null) return { kind: 'unknown', requestId, body: t };
      return { kind: 'reply', requestId, response };
    }
  }
}

function event(e: ServerEvent): ServerFrame {
  return { kind: 'event', event: e };
}

function decodeResponse(f: w.Frame, t: w.Body): Response | null {
  const body = <T>(o: T): T => need(f.body(o), 'frame body') as T;
  switch (t) {
    case w.Body.Welcome: {
      const x = body(new w.Welcome());
      return {
        type: 'welcome',
        user: x.user(),
        workspace: x.workspace(),
        nowMs: Number(x.nowMs()),
        admin: x.admin(),
        rateConnPerSec: x.rateConnPerSec(),
        rateConnBurst: x.rateConnBurst(),
        rateUserPerSec: x.rateUserPerSec(),
        rateUserBurst: x.rateUserBurst(),
      };
    }
    case w.Body.WorkspaceCreated:
      return { type: 'workspaceCreated', workspace: body(new w.WorkspaceCreated()).workspace() };
    case w.Body.TokenIssued: {
      const x = body(new w.TokenIssued());
      return { type: 'tokenIssued', user: x.user(), tokenId: x.tokenId(), token: need(x.token(), 'token') };
    }
    case w.Body.Done:
      return { type: 'done' };
    case w.Body.ConversationReply:
      return { type: 'conversation', info: info(need(body(new w.ConversationReply()).info(), 'info')) };
    case w.Body.ConversationList: {
      const x = body(new w.ConversationList());
      return { type: 'conversations', items: list(x.itemsLength(), (i) => x.items(i), info) };
    }
    case w.Body.Found:
      return { type: 'found', id: body(new w.Found()).id() };
    case w.Body.SendAck: {
      const x = body(new w.SendAck());
      return {
        type: 'sendAck',
        conversation: x.conversation(),
        seq: x.seq(),
        tsMs: Number(x.tsMs()),
        broadcastIgnored: x.broadcastIgnored(),
      };
    }
    case w.Body.SyncReply:
      return decodeSyncReply(body(new w.SyncReply()));
    case w.Body.HistoryPage: {
      const x = body(new w.HistoryPage());
      return { type: 'history', messages: list(x.messagesLength(), (i) => x.messages(i), message), head: x.head() };
    }
    case w.Body.BootReply:
      return decodeBoot(body(new w.BootReply()));
    case w.Body.UserList: {
      const x = body(new w.UserList());
      return { type: 'users', users: list(x.usersLength(), (i) => x.users(i), profile) };
    }
    case w.Body.DirectoryPage:
    case w.Body.MemberPage:
    case w.Body.ChannelPage:
      return { type: 'other', body: w.Body[t] ?? String(t) };
    default:
      return null;
  }
}

function decodeSyncReply(x: w.SyncReply): Response {
  const changed = list(
    x.changedLength(),
    (i) => x.changed(i),
    (c) => ({
      info: info(need(c.info(), 'info')),
      messages: list(c.messagesLength(), (i) => c.messages(i), message),
      truncated: c.truncated(),
    }),
  );
  const gone: bigint[] = [];
  for (let i = 0; i < x.goneLength(); i++) gone.push(need(x.gone(i), 'gone'));
  return { type: 'sync', changed, gone };
}

function decodeBoot(x: w.BootReply): Response {
  return {
    type: 'boot',
    page: {
      user: x.user(),
      userName: x.userName() ?? '',
      workspace: x.workspace(),
      workspaceName: x.workspaceName() ?? '',
      conversations: list(x.conversationsLength(), (i) => x.conversations(i), info),
      total: x.total(),
      pages: list(
        x.pagesLength(),
        (i) => x.pages(i),
        (p) => ({ conversation: p.conversation(), messages: list(p.messagesLength(), (i) => p.messages(i), message) }),
      ),
    },
  };
}

function list<R, T>(n: number, get: (i: number) => R | null, map: (r: R) => T): T[] {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(map(need(get(i), 'vector entry')));
  return out;
}

function info(x: w.ConversationInfo): ConversationInfo {
  const members: bigint[] = [];
  for (let i = 0; i < x.membersLength(); i++) members.push(need(x.members(i), 'member'));
  return {
    id: x.id(),
    kind: KINDS[x.kind()] ?? 'public',
    name: x.name() ?? '',
    members,
    memberCount: x.memberCount(),
    head: x.head(),
    read: x.read(),
    unread: Number(x.unread()),
    mentions: Number(x.mentions()),
    member: x.member(),
    lastActivityMs: Number(x.lastActivityMs()),
    preview: x.preview(),
  };
}

function message(x: w.Message): Message {
  const id = need(x.clientMsgId(), 'client_msg_id');
  const mentions: bigint[] = [];
  for (let i = 0; i < x.mentionsLength(); i++) mentions.push(need(x.mentions(i), 'mention'));
  return {
    conversation: x.conversation(),
    seq: x.seq(),
    sender: x.sender(),
    clientMsgId: (id.hi() << 64n) | id.lo(),
    tsMs: Number(x.tsMs()),
    body: need(x.body(), 'body'),
    mentions,
    broadcast: BROADCASTS[x.broadcast()] ?? 'none',
  };
}

function profile(x: w.UserProfile): UserProfile {
  return {
    user: x.user(),
    handle: x.handle() ?? '',
    version: x.version(),
    displayName: x.displayName(),
    realName: x.realName(),
    title: x.title(),
    timeZone: x.timeZone(),
    avatarUrl: x.avatarUrl(),
  };
}

/** A random 128-bit client message id (Web Crypto, in browsers and Node). */
export function randomClientMsgId(): bigint {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  let v = 0n;
  for (const byte of bytes) v = (v << 8n) | BigInt(byte);
  return v === 0n ? 1n : v;
}

/** Encodes a server frame (tests and tools only: the server side of the codec). */
export function encodeServerMessage(requestId: number, m: Message): Uint8Array {
  const b = new flatbuffers.Builder(256);
  const body = b.createString(m.body);
  w.Message.startMessage(b);
  w.Message.addConversation(b, m.conversation);
  w.Message.addSeq(b, m.seq);
  w.Message.addSender(b, m.sender);
  w.Message.addClientMsgId(b, w.U128.createU128(b, m.clientMsgId & MASK64, (m.clientMsgId >> 64n) & MASK64));
  w.Message.addTsMs(b, BigInt(m.tsMs));
  w.Message.addBody(b, body);
  const msg = w.Message.endMessage(b);
  return finish(b, requestId, w.Body.MessageEvent, w.MessageEvent.createMessageEvent(b, msg));
}
