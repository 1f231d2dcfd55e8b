//! The shard's vocabulary: ids, client requests, responses, rejects, events
//! and the other plain types every module speaks.
//!
//! Everything here is plain owned data with no dependency on any other core
//! module's types, so the modules below [`crate::api`] (`peer`, `notify`,
//! `state`, `record`, the roles, …) import it without importing the runtime
//! contract. [`crate::api`] re-exports all of it: the public paths are
//! `courier_core::api::X`. Nothing in this module performs I/O.

/// Index of a shard (one per core) in `0..shard_count`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct ShardId(pub u16);

/// A workspace (tenant). See [`crate::ids`] for the bit layout of all ids.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct WorkspaceId(pub u64);

/// A user; belongs to exactly one workspace.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct UserId(pub u64);

/// A channel, DM or group DM.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct ConversationId(pub u64);

/// Position of a message in its conversation: 1, 2, 3, … without gaps.
/// `Seq(0)` means "nothing" (an empty conversation's head, an unset cursor).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Seq(pub u64);

/// Log sequence number of a WAL record on one shard: 1, 2, 3, …
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Lsn(pub u64);

/// A client connection, unique across the node: the runtime allocates it as
/// `(shard << 48) | local counter`, so [`ConnId::shard`] says which shard holds
/// the socket and where replies go.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct ConnId(pub u64);

impl ConnId {
    /// Builds a connection id for a socket held by `shard`.
    pub fn new(shard: ShardId, local: u64) -> ConnId {
        assert!(local < (1 << 48), "connection counter overflow");
        ConnId((u64::from(shard.0) << 48) | local)
    }

    /// The shard whose runtime holds this connection's socket.
    pub fn shard(self) -> ShardId {
        ShardId((self.0 >> 48) as u16)
    }
}

/// Request id chosen by the client, echoed in the reply.
pub type ReqId = u32;

/// Idempotency key of a send, chosen by the client (random 128 bits).
pub type ClientMsgId = u128;

/// Wall-clock time in milliseconds since the Unix epoch. Time is an input:
/// the shard never reads a clock.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Millis(pub u64);

/// What kind of conversation.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum ConversationKind {
    /// Anyone in the workspace may see and join it.
    PublicChannel,
    /// Visible to and joinable by invitation only.
    PrivateChannel,
    /// Exactly two people; id derived from the pair, opening it is idempotent.
    Dm,
    /// Three to eight people; fixed membership, opening it is idempotent.
    GroupDm,
}

/// How a user wants to be notified about one conversation.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum NotifyLevel {
    /// Every message.
    All,
    /// Only direct mentions, `@channel`/`@here`, and DMs.
    Mentions,
    /// Nothing.
    Nothing,
}

/// What kind of device a connection is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum DeviceKind {
    /// Desktop app.
    Desktop,
    /// Browser.
    Web,
    /// Phone or tablet.
    Mobile,
    /// A tool (CLI, bench, bot): never counted as a person's active device.
    Tool,
}

/// A credential presented in `Hello`, already split by the codec.
/// The token's text form is defined in `docs/PROTOCOL.md`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Credential {
    /// The node's admin token (its secret bytes).
    Admin([u8; 32]),
    /// A user device token: which user, which token, and its secret.
    User {
        /// The user the token belongs to (routes the check to the home shard).
        user: UserId,
        /// The token's id (so one token can be revoked).
        token: u64,
        /// 32 secret bytes; only their hash is stored.
        secret: [u8; 32],
    },
}

/// Where a history page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum HistoryAnchor {
    /// The newest messages.
    Latest,
    /// Messages with `seq < s`, newest first in the page's range.
    Before(Seq),
    /// Messages with `seq > s`, oldest first.
    After(Seq),
}

/// A client request after authentication. Admin requests need an admin
/// session; the rest act as the session's user.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Request {
    /// Admin: create a workspace.
    CreateWorkspace {
        /// Display name, 1..=NAME_BYTES_MAX bytes.
        name: String,
    },
    /// Admin: create a user; the reply carries its first token.
    CreateUser {
        /// Workspace the user belongs to.
        workspace: WorkspaceId,
        /// Unique within the workspace.
        name: String,
    },
    /// Admin: issue another device token for a user.
    IssueToken {
        /// The user.
        user: UserId,
    },
    /// Admin, or a user for their own tokens: revoke one token (`Some`) or
    /// all of a user's tokens (`None`). Connections authenticated with a
    /// revoked token are closed at once.
    RevokeToken {
        /// The user.
        user: UserId,
        /// The token id, or all.
        token: Option<u64>,
    },
    /// Create a channel in the session user's workspace; the creator joins it.
    CreateChannel {
        /// Unique among the workspace's channels.
        name: String,
        /// Private channels are invitation-only.
        private: bool,
    },
    /// Join a public channel.
    Join {
        /// The channel.
        conversation: ConversationId,
    },
    /// Leave a channel (not a DM).
    Leave {
        /// The channel.
        conversation: ConversationId,
    },
    /// Add a user of the same workspace to a channel the session user is in.
    Invite {
        /// The channel.
        conversation: ConversationId,
        /// Who to add.
        user: UserId,
    },
    /// Remove a member from a channel (creator or admin role). Cuts their live
    /// stream for it at once.
    Remove {
        /// The channel.
        conversation: ConversationId,
        /// Who to remove.
        user: UserId,
    },
    /// Open (or find) the DM / group DM with these users besides oneself.
    OpenDm {
        /// 1 other user → DM; 2..=7 → group DM.
        users: Vec<UserId>,
    },
    /// Public channels of the workspace plus every conversation the user is in.
    ListConversations,
    /// Resolve a name within the session user's workspace.
    Lookup {
        /// A user name or channel name.
        name: String,
        /// Which directory to look in.
        kind: LookupKind,
    },
    /// Post a message.
    Send {
        /// Target conversation.
        conversation: ConversationId,
        /// Idempotency key: a retry with the same key returns the first ack.
        client_msg_id: ClientMsgId,
        /// UTF-8 text, at most BODY_BYTES_MAX bytes.
        body: String,
        /// Users mentioned directly.
        mentions: Vec<UserId>,
        /// `@channel` / `@here`.
        broadcast: Broadcast,
    },
    /// Catch up: the client's last contiguous seq per conversation it knows,
    /// and the read cursors it knows.
    Sync {
        /// `(conversation, last seq held)` pairs; conversations missing here
        /// count as known up to `Seq(0)`.
        cursors: Vec<(ConversationId, Seq)>,
        /// Empty, or the read cursor the client knows for each entry of
        /// `cursors` (same order; any other length is `Invalid`): a
        /// conversation whose read cursor is not the one named here is in
        /// the reply even if its head did not move (with no messages).
        /// Empty (a client that keeps no read state): only heads count.
        reads: Vec<Seq>,
    },
    /// A page of one conversation's history.
    History {
        /// The conversation.
        conversation: ConversationId,
        /// Where the page starts.
        anchor: HistoryAnchor,
        /// At most HISTORY_PAGE_MAX messages.
        limit: u32,
    },
    /// What the first screen needs.
    Boot {
        /// Conversation-list page size (at most BOOT_CONVERSATIONS_MAX).
        limit: u32,
        /// Skip this many conversations of the activity-sorted list (paging).
        offset: u32,
    },
    /// Edit, delete or react to an earlier message (issue 17): a new event
    /// in the conversation's sequence naming `target`. Answered with
    /// `SendAck` (the change's seq).
    Change {
        /// The conversation.
        conversation: ConversationId,
        /// The message changed.
        target: Seq,
        /// What to do.
        kind: ChangeKind,
        /// New text (edit, at most BODY_BYTES_MAX) or emoji (react,
        /// unreact, at most REACTION_BYTES_MAX); empty for a delete.
        text: String,
    },
    /// Threads (issue 17, part 2): post a reply in the thread of `root`
    /// (a message, not a change or a reply, not deleted). Answered with
    /// `SendAck` like `Send`; the same idempotency key rules.
    Reply {
        /// The conversation.
        conversation: ConversationId,
        /// The thread's root.
        root: Seq,
        /// Also show it in the channel.
        in_channel: bool,
        /// Idempotency key: a retry with the same key returns the first ack.
        client_msg_id: ClientMsgId,
        /// UTF-8 text, at most BODY_BYTES_MAX bytes.
        body: String,
        /// Users mentioned directly.
        mentions: Vec<UserId>,
        /// `@channel` / `@here`.
        broadcast: Broadcast,
    },
    /// Threads (issue 17, part 2): a page of a root's replies, answered
    /// with `Response::Thread`: the root first (current state, with its summary)
    /// when `after` is below it, then up to `limit` (at most
    /// THREAD_PAGE_MAX) replies with `seq > after`, ascending; `head` is
    /// the seq of the thread's newest reply (page on with `after` = the
    /// last seq returned until it reaches `head`).
    Thread {
        /// The conversation.
        conversation: ConversationId,
        /// The thread's root.
        root: Seq,
        /// Cursor: replies after this seq.
        after: Seq,
        /// Page size.
        limit: u32,
    },
    /// Change a channel setting (issue 16, part 4): a new event in the
    /// channel's sequence (a `Message` whose change kind is the setting,
    /// target `Seq(0)`, body the value). Answered with `SendAck` (its
    /// seq), or `Done` if the setting already has that value.
    SetChannel {
        /// The channel.
        conversation: ConversationId,
        /// Which setting ([`ChangeKind::is_setting`]).
        kind: ChangeKind,
        /// Topic or purpose (at most TOPIC_BYTES_MAX), new name (a
        /// channel name); empty for the others.
        text: String,
    },
    /// Advance the user's read cursor (monotonic; lower values are ignored).
    MarkRead {
        /// The conversation.
        conversation: ConversationId,
        /// Highest read seq.
        seq: Seq,
    },
    /// Per-conversation notification preference.
    SetNotify {
        /// The conversation.
        conversation: ConversationId,
        /// Level.
        level: NotifyLevel,
        /// Muted conversations notify only for what `level` overrides (DMs,
        /// direct mentions) — see docs/NOTIFICATIONS.md.
        muted: bool,
    },
    /// Device state: which conversation is on screen, and whether the person
    /// is active. Kept in memory only.
    SetFocus {
        /// The conversation on screen, if any.
        focused: Option<ConversationId>,
        /// Recent user activity on this device.
        active: bool,
    },
    /// Do-not-disturb until this time (`None` ends it).
    SetDnd {
        /// End of the window.
        until: Option<Millis>,
    },
    /// Profiles, lookups, the directory and member lists (issue 16).
    People(PeopleRequest),
    // pins, typing, presence (issue 17, parts 3-4)
    /// A page of a conversation's pinned messages (issue 17, part 3): their
    /// seqs, newest message first. Read access as for `History`.
    ListPins {
        /// The conversation.
        conversation: ConversationId,
        /// Only pins of messages below this seq (`Seq(0)`: from the newest).
        before: Seq,
        /// Page size, 1..=PINS_PAGE_MAX.
        limit: u32,
    },
    /// "I am typing in this conversation" (issue 17, part 4): ephemeral,
    /// never stored. Members who may post; answered `Done` (also when the
    /// connection's rate, one per TYPING_INTERVAL_MS per conversation,
    /// drops it). The other members' connected sessions get
    /// [`Event::Typing`].
    Typing {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Subscribe this connection to the presence of `users` (issue 17,
    /// part 4), replacing its previous set (empty: none); at most
    /// PRESENCE_WATCH_PER_CONN_MAX. Answered `Done`; the current state of
    /// each user of the workspace follows as [`Event::Presence`], then
    /// every change. Users outside the workspace are ignored.
    WatchPresence {
        /// The users.
        users: Vec<UserId>,
    },
    /// One user's presence now (`NotFound` outside the workspace).
    GetPresence {
        /// The user.
        user: UserId,
    },
    /// Set or clear the manual away of the session's user (memory only).
    SetAway {
        /// Away.
        away: bool,
    },
}

/// A user's presence (issue 17, part 4): `Active` while at least one of
/// their devices is connected and they have not set themselves away.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum Presence {
    /// No device connected, or set away by hand.
    #[default]
    Away,
    /// A device is connected and the user is not set away.
    Active,
}

/// A user's role in their workspace (held on the workspace's shard, copied
/// to the user's home shard and into every session). See `crate::auth`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum Role {
    /// Everything an admin may, and grants or revokes the owner role.
    Owner,
    /// Creates users, changes roles (not owners'), deactivates users,
    /// removes anyone from a channel they are in.
    Admin,
    /// Creates channels, browses and joins public ones.
    #[default]
    Member,
    /// Sees only the conversations they were added to: no public-channel
    /// preview, browsing or creation.
    Guest,
    /// Deactivated: no tokens, no sessions, in no channel; their messages
    /// stay in history. Final.
    Deactivated,
}

impl Role {
    /// Owner or admin.
    pub fn is_admin(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// The lower-case name used by the CLI and the docs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Guest => "guest",
            Role::Deactivated => "deactivated",
        }
    }
}

/// Which name directory a [`Request::Lookup`] searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum LookupKind {
    /// Users of the workspace.
    User,
    /// Channels of the workspace the user can see.
    Channel,
}

/// Broadcast mentions of a message.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum Broadcast {
    /// None.
    #[default]
    None,
    /// `@here`: members who are online.
    Here,
    /// `@channel`: all members.
    Channel,
}

/// One stored message as clients see it.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Message {
    /// Conversation.
    pub conversation: ConversationId,
    /// Position in the conversation.
    pub seq: Seq,
    /// Author.
    pub sender: UserId,
    /// The author's idempotency key (lets the sender's other devices match it).
    pub client_msg_id: ClientMsgId,
    /// Server time at sequencing.
    pub ts: Millis,
    /// Text.
    pub body: String,
    /// Directly mentioned users.
    pub mentions: Vec<UserId>,
    /// `@channel` / `@here`.
    pub broadcast: Broadcast,
    /// `None` for a message; for a change of an earlier message (issue 17)
    /// what it does and to which seq. A change's `body` is the new text of
    /// an edit or the emoji of a reaction (empty for a delete), `sender`
    /// is who made it; it has no mentions and never notifies.
    pub change: Option<Change>,
    /// A message's current state as of `live.version` (history and sync
    /// pages); default for live events and for changes.
    pub live: Live,
    /// Threads (issue 17, part 2): `Some` for a reply, naming its thread's
    /// root (a message, never a change or another reply) and whether it
    /// is also shown in the channel. A reply is a message like any other
    /// (own seq, mentions, notifications, edits, reactions).
    pub thread: Option<Thread>,
}

/// Where a reply belongs (issue 17, part 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Thread {
    /// The seq of the thread's root message.
    pub root: Seq,
    /// Also shown in the channel: counts for the channel's unread and
    /// preview like any message. `false`: seen in the thread only.
    pub in_channel: bool,
}

/// A thread root's summary (issue 17, part 2), part of its [`Live`]
/// state: at most THREAD_PARTICIPANTS_MAX participants, so a root's
/// summary is bounded (about 60 bytes).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct ThreadSummary {
    /// Replies sequenced (a deleted reply stays counted: its tombstone
    /// stays in the thread).
    pub replies: u32,
    /// Time of the newest reply (`Millis(0)`: none).
    pub last_reply: Millis,
    /// Seq of the newest reply (`Seq(0)`: none).
    pub last_seq: Seq,
    /// The most recent distinct repliers, newest first (at most
    /// THREAD_PARTICIPANTS_MAX).
    pub participants: Vec<UserId>,
}

/// What a change event does to its target message (issue 17).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ChangeKind {
    /// Replace the text (`body` of the change).
    Edit,
    /// Remove the message: it stays as a tombstone without body.
    Delete,
    /// The change's sender adds the reaction named by its `body`.
    React,
    /// The change's sender removes the reaction named by its `body`.
    Unreact,
    // Channel settings (issue 16, part 4): `target` is `Seq(0)`, `body`
    // the new value; the event changes the channel, not a message.
    /// Set the topic to `body` (empty: none).
    Topic,
    /// Set the purpose to `body` (empty: none).
    Purpose,
    /// Rename the channel to `body` (the name claim moves with it).
    Rename,
    /// Archive: read-only for everyone until unarchived.
    Archive,
    /// Unarchive.
    Unarchive,
    /// Everyone may post.
    PostingEveryone,
    /// Only workspace admins and owners may post (an announcement channel).
    PostingAdmins,
    // pins (issue 17, part 3)
    /// Pin the target message to the conversation (`body` empty).
    Pin,
    /// Unpin the target message (`body` empty).
    Unpin,
}

impl ChangeKind {
    /// Whether this kind is a channel setting (issue 16, part 4), not a
    /// change of a message.
    pub fn is_setting(self) -> bool {
        !matches!(
            self,
            ChangeKind::Edit
                | ChangeKind::Delete
                | ChangeKind::React
                | ChangeKind::Unreact
                | ChangeKind::Pin
                | ChangeKind::Unpin
        )
    }

    /// Whether this kind pins or unpins a message (issue 17, part 3).
    pub fn is_pin(self) -> bool {
        matches!(self, ChangeKind::Pin | ChangeKind::Unpin)
    }
}

/// Who may post in a channel (issue 16, part 4).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum Posting {
    /// Every member.
    #[default]
    Everyone,
    /// Workspace admins and owners only.
    Admins,
}

/// A channel's settings (issue 16, part 4), changed only by sequenced
/// setting events ([`ChangeKind::is_setting`]); defaults for DMs.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct ChannelSettings {
    /// Topic (at most TOPIC_BYTES_MAX; empty: none).
    pub topic: String,
    /// Purpose (at most TOPIC_BYTES_MAX; empty: none).
    pub purpose: String,
    /// Archived: read-only (no posts, changes or settings but unarchive),
    /// still readable by its members.
    pub archived: bool,
    /// Who may post.
    pub posting: Posting,
}

impl ChannelSettings {
    /// Applies a setting event's kind and value; returns the new name for
    /// a rename (the name is kept beside the settings). A message change
    /// changes nothing.
    pub fn apply(&mut self, kind: ChangeKind, value: &str) -> Option<String> {
        match kind {
            ChangeKind::Topic => self.topic = value.to_owned(),
            ChangeKind::Purpose => self.purpose = value.to_owned(),
            ChangeKind::Rename => return Some(value.to_owned()),
            ChangeKind::Archive => self.archived = true,
            ChangeKind::Unarchive => self.archived = false,
            ChangeKind::PostingEveryone => self.posting = Posting::Everyone,
            ChangeKind::PostingAdmins => self.posting = Posting::Admins,
            ChangeKind::Edit
            | ChangeKind::Delete
            | ChangeKind::React
            | ChangeKind::Unreact
            | ChangeKind::Pin
            | ChangeKind::Unpin => {}
        }
        None
    }
}

/// A change event's kind and target (issue 17).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Change {
    /// What it does.
    pub kind: ChangeKind,
    /// The message it changes (always a message, never another change).
    pub target: Seq,
}

/// One reaction on a message: the emoji and who reacted with it (sorted,
/// one entry per user).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Reaction {
    /// The emoji (a short name or the character, at most REACTION_BYTES_MAX).
    pub emoji: String,
    /// Users who reacted, ascending.
    pub users: Vec<UserId>,
}

/// The current state of a message after its changes (issue 17); see
/// `courier_core::live::apply` for the one rule every holder applies.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Live {
    /// Time of the last edit (`None`: never edited).
    pub edited: Option<Millis>,
    /// Deleted: the body is gone for good.
    pub deleted: bool,
    /// Reactions in the order first added (at most REACTIONS_PER_MESSAGE_MAX).
    pub reactions: Vec<Reaction>,
    /// The seq of the last change this state includes (`Seq(0)`: none). A
    /// holder applies a change event only if its seq is above this, so a
    /// current-state page followed by older change events stays current.
    /// Replies to a thread root move it too (issue 17, part 2).
    pub version: Seq,
    /// Threads (issue 17, part 2): the summary of the replies to this
    /// message (default: none); boxed so a `Message`, and every event
    /// enum holding one, stays small.
    pub thread: Box<ThreadSummary>,
    /// Pinned to its conversation (issue 17, part 3; a delete unpins).
    pub pinned: bool,
}

/// A conversation as listed to a member.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ConversationInfo {
    /// Id.
    pub id: ConversationId,
    /// Kind.
    pub kind: ConversationKind,
    /// Channel name; for DMs empty (clients show the members).
    pub name: String,
    /// Members of DMs and group DMs (empty for channels).
    pub members: Vec<UserId>,
    /// Member count.
    pub member_count: u32,
    /// Highest seq.
    pub head: Seq,
    /// The user's read cursor (`Seq(0)` for non-members).
    pub read: Seq,
    /// Messages after the read cursor.
    pub unread: u64,
    /// Mentions of the user after the read cursor.
    pub mentions: u64,
    /// Whether the user is a member.
    pub member: bool,
    /// Time of the last message (or creation).
    pub last_activity: Millis,
    /// Start of the last message's body (at most PREVIEW_BYTES_MAX, cut at a
    /// char boundary), if any.
    pub preview: Option<String>,
    /// Channel settings (issue 16, part 4) as of `head`'s durable events;
    /// defaults for DMs. Boxed: infos travel inside cross-core messages,
    /// which are kept small.
    pub settings: Box<ChannelSettings>,
}

/// What the client missed in one conversation.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SyncConversation {
    /// The conversation, its counters and preview.
    pub info: ConversationInfo,
    /// Messages after the client's cursor, oldest first, gap-free; when
    /// `truncated`, only the newest page (the client pages older ones with
    /// `History`).
    pub messages: Vec<Message>,
    /// More was missed than fits inline.
    pub truncated: bool,
}

/// A request budget the runtime enforces (a token bucket): on average
/// `per_sec` requests per second, with bursts of up to `burst`. `per_sec` 0
/// means no limit (or not told).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_sec: u32,
    /// Requests that may go at once when the budget is full.
    pub burst: u32,
}

impl RateLimit {
    /// No limit, or none told.
    pub const NONE: RateLimit = RateLimit {
        per_sec: 0,
        burst: 0,
    };
}

/// Successful replies, one variant per request (plus `Welcome` for `Hello`).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Response {
    /// Session established.
    Welcome {
        /// The user, or `None` for an admin session.
        user: Option<UserId>,
        /// The user's workspace.
        workspace: Option<WorkspaceId>,
        /// Server time.
        now: Millis,
        /// The request budget of this connection, so a client can pace
        /// itself instead of being refused. The core leaves it unset
        /// ([`RateLimit::NONE`]); the runtime, which enforces it, fills it in.
        conn_rate: RateLimit,
        /// The request budget of the user on the connection's shard
        /// (shared by the user's devices there); filled in like `conn_rate`.
        user_rate: RateLimit,
    },
    /// A workspace was created.
    WorkspaceCreated {
        /// Its id.
        workspace: WorkspaceId,
    },
    /// A user was created (or a token issued): the token's text is shown
    /// only here.
    TokenIssued {
        /// The user.
        user: UserId,
        /// The token's id.
        token: u64,
        /// The 32 secret bytes (the codec renders the text form).
        secret: [u8; 32],
    },
    /// Request done, nothing to return.
    Done,
    /// A conversation (created, joined, opened).
    Conversation(ConversationInfo),
    /// `ListConversations`.
    Conversations(Vec<ConversationInfo>),
    /// `Lookup` found this id (users and conversations share the id space).
    Found {
        /// The id.
        id: u64,
    },
    /// A send is durable.
    SendAck {
        /// The conversation.
        conversation: ConversationId,
        /// Its seq.
        seq: Seq,
        /// Server time of sequencing.
        ts: Millis,
        /// `@channel`/`@here` was ignored for notifications (channel too big).
        broadcast_ignored: bool,
    },
    /// `Sync`: every conversation that changed after the client's cursors, and
    /// those the user left or lost.
    Sync {
        /// Changed conversations, most recently active first.
        changed: Vec<SyncConversation>,
        /// Conversations the client named that the user can no longer see.
        gone: Vec<ConversationId>,
    },
    /// `History`.
    History {
        /// Messages in ascending seq order.
        messages: Vec<Message>,
        /// The conversation's head when the page was read.
        head: Seq,
    },
    /// `Boot`.
    Boot(Box<BootPage>),
    /// The answer to a [`Request::People`].
    People(PeopleResponse),
    /// Threads (issue 17, part 2): a page of a thread (`Request::Thread`).
    /// On the client protocol it is a `HistoryReply` (same fields).
    Thread {
        /// The root first when the cursor was below it, then replies,
        /// ascending.
        messages: Vec<Message>,
        /// The seq of the thread's newest reply (`Seq(0)`: none).
        head: Seq,
    },
    // pins, typing, presence (issue 17, parts 3-4)
    /// `ListPins`: pinned messages' seqs, descending (as of durable pins).
    Pins {
        /// The conversation.
        conversation: ConversationId,
        /// Pinned seqs, newest message first.
        pins: Vec<Seq>,
        /// `before` for the next page (`Seq(0)`: this was the last).
        next: Seq,
    },
    /// `GetPresence`.
    Presence {
        /// The user.
        user: UserId,
        /// Their presence.
        presence: Presence,
        /// Set away by hand (`SetAway`).
        manual_away: bool,
    },
}

/// The first screen.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BootPage {
    /// The user.
    pub user: UserId,
    /// The user's name.
    pub user_name: String,
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Workspace name.
    pub workspace_name: String,
    /// The requested page of conversations, most recent activity first.
    pub conversations: Vec<ConversationInfo>,
    /// Total number of the user's conversations (for paging).
    pub total: u32,
    /// The newest messages of the first conversation(s) of the page.
    pub pages: Vec<(ConversationId, Vec<Message>)>,
}

/// Why a request was refused. A client's mistake is a value, never a panic.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Reject {
    /// No valid session (bad or revoked token, or request before `Hello`).
    Unauthenticated,
    /// Needs an admin session, or (in a user session) the workspace role
    /// admin or owner.
    NotAdmin,
    /// The session's workspace role does not allow it (a guest creating or
    /// browsing channels, a write to a deactivated user); the text says
    /// which rule. Never used where the answer would reveal a conversation
    /// the user may not see: those are `NotFound`.
    Forbidden(String),
    /// No such object *or* not visible to this user: the two are
    /// indistinguishable on purpose.
    NotFound,
    /// Name already taken.
    AlreadyExists,
    /// The request is malformed or out of range; the text says which field.
    Invalid(String),
    /// Over a documented limit; the text names it.
    TooLarge(String),
    /// Too many requests; retry after this many milliseconds.
    RateLimited {
        /// Time until the budget that refused has room for one request.
        retry_after_ms: u64,
        /// The budget that refused (the connection's or the user's), so a
        /// client can pace the rest of its requests.
        limit: RateLimit,
    },
    /// The server cannot serve the request now. `cause` says whether the
    /// outcome is known (see [`UnavailableCause::outcome_known`]): a
    /// definite refusal did nothing, an unknown outcome (a peer did not
    /// answer in time) may still take effect, so retry with the same
    /// `client_msg_id`.
    Unavailable {
        /// Why, and so whether the request may have taken effect.
        cause: UnavailableCause,
        /// For people: names the limit, the shard or the storage error.
        detail: String,
    },
    /// Invites (issue 16, item 4; appended, so the peer wire form of the
    /// variants above stays): the invite's expiry passed.
    InviteExpired,
    /// The invite was redeemed as many times as it allows.
    InviteUsedUp,
    /// An admin revoked the invite.
    InviteRevoked,
    /// Issue 16, part 4 (appended): the channel is archived, so read-only
    /// (posts, changes and settings other than unarchive are refused).
    Archived,
}

impl Reject {
    /// `Unavailable` with this cause and detail text.
    pub fn unavailable(cause: UnavailableCause, detail: impl Into<String>) -> Self {
        Reject::Unavailable {
            cause,
            detail: detail.into(),
        }
    }
}

/// Why a request was answered `Unavailable`: the typed part of the answer,
/// telling a definite refusal from an unknown outcome without parsing text
/// (docs/RELIABILITY.md promise 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum UnavailableCause {
    /// The server did not say (an older server, or a cause this build does
    /// not know). Read conservatively: the outcome is unknown.
    Unspecified,
    /// A shard the request needs is starting (replaying its log). Definite:
    /// nothing was done.
    Starting,
    /// A documented bound on requests in flight is full (the detail names
    /// it, e.g. `PENDING_COMMITS_MAX`). Definite: nothing was done.
    Overloaded,
    /// The shard's storage failed before the request appended anything.
    /// Definite: nothing was stored and never will be from this attempt.
    StorageFailed,
    /// The shard's storage failed while a record this answer depends on (an
    /// earlier attempt of the same send, say) was not yet durable. Unknown:
    /// that record may survive the restart.
    NotDurable,
    /// Reading history from the log failed. Definite: a read changes nothing.
    ReadFailed,
    /// The shard has no ids left for a new conversation or user. Definite:
    /// nothing was created.
    IdsExhausted,
    /// Another shard (a home or owner shard, a member's home shard) did not
    /// answer in time. Unknown: the request may still take effect.
    PeerTimeout,
}

impl UnavailableCause {
    /// True when the request certainly did not take effect (a definite
    /// refusal); false when it may have (retry with the same
    /// `client_msg_id`).
    pub fn outcome_known(&self) -> bool {
        match self {
            UnavailableCause::Starting
            | UnavailableCause::Overloaded
            | UnavailableCause::StorageFailed
            | UnavailableCause::ReadFailed
            | UnavailableCause::IdsExhausted => true,
            UnavailableCause::Unspecified
            | UnavailableCause::NotDurable
            | UnavailableCause::PeerTimeout => false,
        }
    }
}

/// Things pushed to connections without a request.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Event {
    /// A new message (also delivered to the sender's own devices).
    Message(Message),
    /// The user's read cursor moved (from any device).
    ReadCursor {
        /// The conversation.
        conversation: ConversationId,
        /// New cursor.
        seq: Seq,
    },
    /// The user joined or was added to a conversation.
    Joined(ConversationInfo),
    /// The user left or was removed; live events for it stop.
    Left {
        /// The conversation.
        conversation: ConversationId,
    },
    /// An in-app notification (the device should show it, not push it).
    Notify {
        /// The message's conversation.
        conversation: ConversationId,
        /// Its seq.
        seq: Seq,
        /// Why it notifies.
        reason: NotifyReason,
    },
    /// A user of the session's workspace changed their profile (issue 16,
    /// part 5): a cached profile older than `version` is stale (re-read it
    /// with `GetUsers`). A hint for live caches: a session that was not
    /// connected when it happened sees the new version in its next read.
    ProfileChanged {
        /// The user.
        user: UserId,
        /// The profile's new version.
        version: u64,
    },
    // pins, typing, presence (issue 17, parts 3-4)
    /// `user` is typing in `conversation` (never to the typist's own
    /// sessions): show it for TYPING_EXPIRY_MS unless repeated. Ephemeral:
    /// a session not connected never gets it.
    Typing {
        /// The conversation.
        conversation: ConversationId,
        /// Who types.
        user: UserId,
    },
    /// A watched user's presence (`WatchPresence`): the current state
    /// after subscribing, then each change.
    Presence {
        /// The user.
        user: UserId,
        /// Their presence now.
        presence: Presence,
    },
}

/// The message of an event that posts one (issue 17: not a change).
pub fn posted(event: &Event) -> Option<&Message> {
    match event {
        Event::Message(m) if m.change.is_none() => Some(m),
        _ => None,
    }
}

/// Why a message notifies a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum NotifyReason {
    /// A DM or group DM.
    Dm,
    /// A direct mention.
    Mention,
    /// `@channel` / `@here`.
    Broadcast,
    /// The conversation is set to notify on all messages.
    Channel,
}

/// Why the shard wants a connection closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum CloseReason {
    /// The session's token was revoked or the user removed.
    Revoked,
    /// Authentication failed.
    Unauthenticated,
    /// The shard tracks CONNECTIONS_PER_SHARD_MAX connections already.
    Overloaded,
}

/// Device facts sent in `Hello`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DeviceInfo {
    /// Kind.
    pub kind: DeviceKind,
    /// Client-chosen stable device name (≤ NAME_BYTES_MAX bytes), e.g. "laptop".
    pub name: String,
}

// ---------------------------------------------------------------------------
// People (issue 16): profiles, lookups, the directory, member lists.

/// A user's status line: an emoji, a text and when it ends. Empty emoji and
/// text mean no status.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Status {
    /// An emoji or `:shortcode:` (at most STATUS_EMOJI_BYTES_MAX bytes, no
    /// spaces or control characters).
    pub emoji: String,
    /// Text (at most STATUS_TEXT_BYTES_MAX bytes, no control characters).
    pub text: String,
    /// The status disappears at this time (`None`: until changed). Readers
    /// are shown no status once it passed; nothing is written then.
    pub expires: Option<Millis>,
}

impl Status {
    /// No status set.
    pub fn is_empty(&self) -> bool {
        self.emoji.is_empty() && self.text.is_empty()
    }
}

/// What people see of a user besides the handle. Every field may be empty;
/// limits and character rules are in `crate::constants` and
/// `crate::text::check_profile_update`.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Profile {
    /// The name clients show (falling back to the handle when empty).
    pub display_name: String,
    /// Full name.
    pub real_name: String,
    /// Job title.
    pub title: String,
    /// IANA time zone name, e.g. `Europe/Berlin` (not checked against a
    /// zone database: the server keeps no clock rules).
    pub time_zone: String,
    /// `https://` URL of the picture.
    pub avatar_url: String,
    /// Status line.
    pub status: Status,
}

/// A user as lookups and the directory return them.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct UserProfile {
    /// The user.
    pub user: UserId,
    /// The handle (unique in the workspace).
    pub handle: String,
    /// The profile (a status past its expiry is shown empty).
    pub profile: Profile,
    /// Grows by one with every change of the profile: clients cache by
    /// `(user, version)` and replace an entry only by a higher version.
    pub version: u64,
}

/// A change to a profile: `None` leaves a field as it is, `Some("")`
/// clears it.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct ProfileUpdate {
    /// New display name.
    pub display_name: Option<String>,
    /// New real name.
    pub real_name: Option<String>,
    /// New title.
    pub title: Option<String>,
    /// New time zone.
    pub time_zone: Option<String>,
    /// New avatar URL.
    pub avatar_url: Option<String>,
    /// New status (an empty one clears it).
    pub status: Option<Status>,
}

impl ProfileUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == ProfileUpdate::default()
    }
}

/// Where a directory page starts: after this entry (the sort key and user
/// of the last entry of the previous page, as returned in `next`).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct DirectoryCursor {
    /// The sort key the entry was listed under (lower-case display name or
    /// handle).
    pub key: String,
    /// The user.
    pub user: UserId,
}

/// One line of the workspace directory.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DirectoryEntry {
    /// The user.
    pub user: UserId,
    /// Handle.
    pub handle: String,
    /// Display name (may be empty).
    pub display_name: String,
    /// The profile version the display name is from (fetch the rest with
    /// `GetUsers` when the cached version is lower).
    pub version: u64,
}

/// The people requests (issue 16), grouped under [`Request::People`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum PeopleRequest {
    /// Change a profile: one's own (`user` `None` or oneself), or, in an
    /// admin session, anyone's (`user` required). Answered with the new
    /// profile and version.
    SetProfile {
        /// Whose profile; `None`: the session's user.
        user: Option<UserId>,
        /// What changes (boxed: it is the largest request by far).
        update: Box<ProfileUpdate>,
    },
    /// Profiles of these users of the session's workspace (at most
    /// GET_USERS_MAX); users that do not exist or belong to another
    /// workspace are left out of the answer.
    GetUsers {
        /// Who.
        users: Vec<UserId>,
    },
    /// The profile of the user with this handle in the session's workspace.
    GetUserByHandle {
        /// Handle.
        handle: String,
    },
    /// A page of the workspace directory, sorted by lower-case display name
    /// (the handle when it has none), then id.
    Directory {
        /// Only users whose handle or display name starts with this
        /// (case-insensitive; empty: everyone).
        prefix: String,
        /// Continue after this entry (`next` of the previous page).
        after: Option<DirectoryCursor>,
        /// At most DIRECTORY_PAGE_MAX entries.
        limit: u32,
    },
    /// A page of the workspace's public channels, by name (all of them,
    /// where `ListConversations` stops at LIST_PUBLIC_CHANNELS_MAX).
    BrowseChannels {
        /// Continue after this name (`next` of the previous page).
        after: Option<String>,
        /// At most CHANNEL_PAGE_MAX channels.
        limit: u32,
    },
    /// Change a user's workspace role (admin or owner role, or an admin
    /// session). `Role::Deactivated` deactivates: the user's tokens are
    /// revoked and their sessions closed at once, they are removed from
    /// every channel, their messages stay. Answered `Done` once the user's
    /// home shard applied it.
    SetRole {
        /// Whose role.
        user: UserId,
        /// The new role.
        role: Role,
    },
    /// The ids of the session user's tokens (one per device; secrets are
    /// never shown again). Revoke one with `Request::RevokeToken` naming
    /// oneself.
    ListTokens,
    /// A page of a conversation's members, by user id.
    ListMembers {
        /// The conversation (the session user must be allowed to read it).
        conversation: ConversationId,
        /// Continue after this user (`next` of the previous page).
        after: Option<UserId>,
        /// At most MEMBERS_PAGE_MAX members.
        limit: u32,
    },
    /// Create a workspace invite (an admin or owner, or any member when
    /// the workspace allows it, see `SetInvitePolicy`). Answered
    /// `InviteCreated` with its one-time-shown secret.
    CreateInvite {
        /// The workspace; `None`: the session's (an admin session names it).
        workspace: Option<WorkspaceId>,
        /// How many users it may create, 1..=INVITE_USES_MAX.
        max_uses: u32,
        /// Valid for this long, 1 ms ..= INVITE_EXPIRY_MAX_MS.
        expires_in_ms: u64,
        /// The role redeemed users get: member, guest or admin (never
        /// owner; admin only from an admin or owner).
        role: Role,
    },
    /// The workspace's invites (admins and owners): live ones and those
    /// used up, expired or revoked since the last creation.
    ListInvites {
        /// The workspace; `None`: the session's.
        workspace: Option<WorkspaceId>,
    },
    /// Revoke an invite (admins and owners). Answered `Done`.
    RevokeInvite {
        /// The workspace; `None`: the session's.
        workspace: Option<WorkspaceId>,
        /// The invite's id.
        invite: u64,
    },
    /// Whether members (not only admins) may create invites (admins and
    /// owners; off for a new workspace). Answered `Done`.
    SetInvitePolicy {
        /// The workspace; `None`: the session's.
        workspace: Option<WorkspaceId>,
        /// Members may create member and guest invites.
        members_may_invite: bool,
    },
    /// Redeem an invite: create a user with this handle and return its
    /// first token (`Response::TokenIssued`). Allowed before `Hello`, on a
    /// connection with no session (it needs no token); the connection
    /// stays without a session: send `Hello` with the new token next.
    RedeemInvite {
        /// The invite's workspace (from the invite code).
        workspace: WorkspaceId,
        /// The invite's id (from the code).
        invite: u64,
        /// The invite's secret (from the code).
        secret: [u8; 32],
        /// The new user's handle.
        handle: String,
    },
}

/// Answers to [`PeopleRequest`]s, in [`Response::People`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum PeopleResponse {
    /// `GetUsers`, `GetUserByHandle` (one entry), `SetProfile` (one entry,
    /// the new version).
    Users(Vec<UserProfile>),
    /// `Directory`.
    Directory {
        /// Entries in directory order.
        entries: Vec<DirectoryEntry>,
        /// Where the next page starts; `None`: this was the last.
        next: Option<DirectoryCursor>,
    },
    /// `BrowseChannels`: (id, name) by name.
    Channels {
        /// Public channels, ascending by name.
        channels: Vec<(ConversationId, String)>,
        /// Where the next page starts; `None`: this was the last.
        next: Option<String>,
    },
    /// `ListTokens`.
    Tokens {
        /// Token ids, ascending.
        tokens: Vec<u64>,
        /// The token of the session that asked.
        current: u64,
    },
    /// `ListMembers`.
    Members {
        /// The conversation.
        conversation: ConversationId,
        /// Members, ascending by id.
        members: Vec<UserId>,
        /// Member count of the conversation.
        total: u32,
        /// Where the next page starts; `None`: this was the last.
        next: Option<UserId>,
    },
    /// `CreateInvite`: the invite and its secret, shown only here.
    InviteCreated {
        /// The invite.
        invite: InviteInfo,
        /// The secret (only its hash is stored).
        secret: [u8; 32],
    },
    /// `ListInvites`, ascending by id.
    Invites(Vec<InviteInfo>),
}

/// A workspace invite as listed (its secret is never shown again).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct InviteInfo {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// Its id, unique in the workspace (1, 2, …).
    pub id: u64,
    /// Who created it (`None`: an admin session).
    pub creator: Option<UserId>,
    /// The role redeemed users get.
    pub role: Role,
    /// How many users it may create.
    pub max_uses: u32,
    /// How many it created.
    pub uses: u32,
    /// Created at, ms.
    pub created: Millis,
    /// Not valid from this time on, ms.
    pub expires: Millis,
    /// Revoked by an admin.
    pub revoked: bool,
}
