// The SDK's plain data types: what requests carry and what replies and
// events decode to (docs/PROTOCOL.md). Every id, seq and cursor is a
// `bigint` (ids are 64-bit, client message ids 128-bit: a JavaScript
// number loses them above 2^53); times in milliseconds and counts are
// numbers (they stay far below 2^53).

/** `ConversationKind` of the schema. */
export type ConversationKind = 'public' | 'private' | 'dm' | 'groupDm';
/** `DeviceKind` of the schema. */
export type DeviceKind = 'desktop' | 'web' | 'mobile' | 'tool';
/** `Broadcast` of the schema (`@here`, `@channel`). */
export type Broadcast = 'none' | 'here' | 'channel';
/** `NotifyReason` of the schema. */
export type NotifyReason = 'dm' | 'mention' | 'broadcast' | 'channel';
/** `History` anchors: the newest page, before a seq, after a seq. */
export type Anchor = 'latest' | 'before' | 'after';

/** One conversation as the server describes it. */
export interface ConversationInfo {
  id: bigint;
  kind: ConversationKind;
  name: string;
  /** DMs only: the participants. */
  members: bigint[];
  memberCount: number;
  head: bigint;
  read: bigint;
  unread: number;
  mentions: number;
  member: boolean;
  lastActivityMs: number;
  preview: string | null;
}

/** One stored message. */
export interface Message {
  conversation: bigint;
  seq: bigint;
  sender: bigint;
  /** 128-bit, chosen by the sender. */
  clientMsgId: bigint;
  tsMs: number;
  body: string;
  mentions: bigint[];
  broadcast: Broadcast;
}

/** One entry of a `SyncReply`. */
export interface SyncConversation {
  info: ConversationInfo;
  messages: Message[];
  truncated: boolean;
}

/** A user's profile (`UserProfile`). */
export interface UserProfile {
  user: bigint;
  handle: string;
  version: bigint;
  displayName: string | null;
  realName: string | null;
  title: string | null;
  timeZone: string | null;
  avatarUrl: string | null;
}

/** `BootReply`: the first screen of a fresh device. */
export interface BootPage {
  user: bigint;
  userName: string;
  workspace: bigint;
  workspaceName: string;
  conversations: ConversationInfo[];
  total: number;
  pages: { conversation: bigint; messages: Message[] }[];
}

/** Requests a client may send (after `Hello`). */
export type Request =
  | { type: 'createWorkspace'; name: string }
  | { type: 'createUser'; workspace: bigint; name: string }
  | { type: 'issueToken'; user: bigint }
  | { type: 'revokeToken'; user: bigint; token: bigint }
  | { type: 'createChannel'; name: string; private?: boolean }
  | { type: 'join'; conversation: bigint }
  | { type: 'leave'; conversation: bigint }
  | { type: 'invite'; conversation: bigint; user: bigint }
  | { type: 'remove'; conversation: bigint; user: bigint }
  | { type: 'openDm'; users: bigint[] }
  | { type: 'listConversations' }
  | { type: 'lookup'; name: string; kind: 'user' | 'channel' }
  | {
      type: 'send';
      conversation: bigint;
      clientMsgId: bigint;
      body: string;
      mentions?: bigint[];
      broadcast?: Broadcast;
    }
  | { type: 'sync'; cursors: [bigint, bigint][]; reads?: bigint[] }
  | { type: 'history'; conversation: bigint; anchor: Anchor; seq?: bigint; limit: number }
  | { type: 'boot'; limit: number; offset?: number }
  | { type: 'markRead'; conversation: bigint; seq: bigint }
  | { type: 'setFocus'; focused: bigint; active: boolean }
  | { type: 'setDnd'; untilMs: number }
  | { type: 'getUsers'; users: bigint[] }
  | { type: 'setProfile'; user?: bigint; displayName?: string };

/** Replies (the matching response of a request). */
export type Response =
  | {
      type: 'welcome';
      user: bigint;
      workspace: bigint;
      nowMs: number;
      admin: boolean;
      rateConnPerSec: number;
      rateConnBurst: number;
      rateUserPerSec: number;
      rateUserBurst: number;
    }
  | { type: 'workspaceCreated'; workspace: bigint }
  | { type: 'tokenIssued'; user: bigint; tokenId: bigint; token: string }
  | { type: 'done' }
  | { type: 'conversation'; info: ConversationInfo }
  | { type: 'conversations'; items: ConversationInfo[] }
  | { type: 'found'; id: bigint }
  | { type: 'sendAck'; conversation: bigint; seq: bigint; tsMs: number; broadcastIgnored: boolean }
  | { type: 'sync'; changed: SyncConversation[]; gone: bigint[] }
  | { type: 'history'; messages: Message[]; head: bigint }
  | { type: 'boot'; page: BootPage }
  | { type: 'users'; users: UserProfile[] }
  | { type: 'other'; body: string };

/** Events the server pushes (request id 0). */
export type ServerEvent =
  | { type: 'message'; message: Message }
  | { type: 'readCursor'; conversation: bigint; seq: bigint }
  | { type: 'joined'; info: ConversationInfo }
  | { type: 'left'; conversation: bigint }
  | { type: 'notify'; conversation: bigint; seq: bigint; reason: NotifyReason }
  /** A user of the workspace changed their profile: a cached profile older than `version` is stale. */
  | { type: 'profileChanged'; user: bigint; version: bigint };

/** The `Welcome` of a connection. */
export type Welcome = Extract<Response, { type: 'welcome' }>;
/** The `SendAck` of a send. */
export type SendAck = Extract<Response, { type: 'sendAck' }>;
