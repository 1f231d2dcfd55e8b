//! The cross-shard protocol: every message one shard sends another, carried
//! opaquely by the runtime inside [`crate::api::PeerMsg`].
//!
//! Roles (one shard usually plays all of them for different entities):
//! - **connection shard** `C`: holds the socket, the session and the local
//!   subscriptions; forwards requests and delivers replies and events;
//! - **home shard** `H` of a user: tokens, cursors, preferences, devices,
//!   the derived list of the user's conversations; runs scatter-gathers
//!   (`Sync`, `Boot`, `ListConversations`);
//! - **owner shard** `O` of a conversation: membership, sequencing,
//!   history, the set of interested shards;
//! - **workspace shard** `W`: names and directories.
//!
//! Runtime contract: messages between one pair of shards arrive in the
//! order they were sent (FIFO per ordered pair; messages to a crashed shard
//! may be lost). Several protocols rely on it: an owner's `Unsubscribed`
//! overtakes no earlier `Fanout`, membership rounds arrive whole and before
//! later membership changes, a `Restarted` precedes everything its sender
//! sends afterwards.
//!
//! Every message that answers a client carries an [`Origin`]; the final
//! handler sends [`PeerBody::Reply`] to `origin.conn.shard()`.

use std::sync::Arc;

use crate::api::{
    Broadcast, ClientMsgId, CloseReason, ConnId, ConversationId, ConversationInfo, DeviceInfo,
    Event, HistoryAnchor, LookupKind, Message, Millis, NotifyLevel, Reject, ReqId, Response, Seq,
    UserId, WorkspaceId,
};

/// Where a reply goes: a connection (on its shard) and the request id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The connection; its shard is [`ConnId::shard`].
    pub conn: ConnId,
    /// The client's request id.
    pub req: ReqId,
    /// The incarnation of the connection's shard that accepted the request.
    /// A shard drops replies for an earlier incarnation: its runtime may
    /// reuse connection ids after a restart.
    pub incarnation: u64,
}

/// A shard-local request id that crosses shards and comes back (watch
/// batches, gathers, DM creations). The incarnation lets the issuer drop
/// answers addressed to an earlier start of itself, whose counters began at
/// the same values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket {
    /// The issuer's incarnation.
    pub incarnation: u64,
    /// The issuer's id.
    pub id: u64,
}

/// An authenticated user acting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Who {
    /// The session's user.
    pub user: UserId,
    /// The user's workspace.
    pub workspace: WorkspaceId,
}

/// A notification candidate (see [`crate::notify::candidates`]).
pub use crate::notify::Candidate;

/// Who performs a membership removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A user session.
    User(Who),
    /// An admin session.
    Admin,
}

/// A device registration sent to a restarted home shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceReg {
    /// The connection.
    pub conn: ConnId,
    /// Its user.
    pub user: UserId,
    /// The token it authenticated with.
    pub token: u64,
    /// Its device facts.
    pub device: DeviceInfo,
    /// The connection shard's incarnation.
    pub incarnation: u64,
}

/// What a scatter-gather asks an owner about one conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryMode {
    /// Info if the user is a member.
    Info,
    /// Info, or for a public channel of the workspace a non-member preview.
    Preview,
    /// Info plus the messages after `after` (inline if small and cached,
    /// else `truncated` with the newest page).
    Sync {
        /// The client's last contiguous seq.
        after: Seq,
    },
    /// Info plus the newest `count` messages (as far as cached).
    Page {
        /// How many.
        count: usize,
    },
}

/// One conversation of a scatter-gather.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SummaryItem {
    /// The conversation.
    pub conversation: ConversationId,
    /// The user's read cursor (from the home shard).
    pub read: Seq,
    /// What is wanted.
    pub mode: SummaryMode,
}

/// An owner's answer about one conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The conversation.
    pub conversation: ConversationId,
    /// `None`: not visible to the user (or does not exist).
    pub info: Option<ConversationInfo>,
    /// Messages, ascending and contiguous, ending at `info.head`.
    pub messages: Vec<Message>,
    /// More was missed than `messages` holds.
    pub truncated: bool,
}

/// A scatter-gather request at the home shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatherRequest {
    /// `Request::Sync`.
    Sync {
        /// The client's cursors.
        cursors: Vec<(ConversationId, Seq)>,
        /// The read cursors the client knows, one per cursor (or none).
        reads: Vec<Seq>,
    },
    /// `Request::Boot`.
    Boot {
        /// Page size.
        limit: u32,
        /// Page offset.
        offset: u32,
    },
    /// `Request::ListConversations`.
    List,
}

/// A cross-shard message. See the module doc for the roles `C`, `H`, `O`, `W`.
#[derive(Debug)]
pub enum PeerBody {
    // ----- Replies and lifecycle -------------------------------------------
    /// Any → C: the answer to a client request.
    Reply {
        /// Where it goes.
        origin: Origin,
        /// The answer.
        result: Result<Response, Reject>,
    },
    /// New incarnation → all: "I restarted; my memory-only state is gone".
    /// Receivers forget the sender's connections, clear it from interest
    /// sets, re-send their subscriptions, devices and membership rounds.
    Restarted,
    /// O → H: every durable membership of `O`'s conversations for users
    /// homed on `H`, in chunks; `H` replaces its derived entries for `O`'s
    /// conversations when the `last` chunk arrives.
    MembershipRound {
        /// (user, conversation, the conversation's visible last activity).
        entries: Vec<(UserId, ConversationId, Millis)>,
        /// First chunk.
        first: bool,
        /// Last chunk.
        last: bool,
    },
    /// O → every home shard of the conversation's members, once per
    /// durable message: its time, which orders `Boot` pages at `H`.
    Activity {
        /// The conversation.
        conversation: ConversationId,
        /// The message's `ts` (activity never moves backwards).
        at: Millis,
    },
    /// C → restarted H: sessions on `C` for users homed on `H`.
    DevicesRegister {
        /// The sessions.
        devices: Vec<DeviceReg>,
    },

    // ----- Sessions ----------------------------------------------------------
    /// C → H: check a `Hello`.
    Auth {
        /// The hello.
        origin: Origin,
        /// Claimed user.
        user: UserId,
        /// Token id.
        token: u64,
        /// Secret.
        secret: [u8; 32],
        /// Device.
        device: DeviceInfo,
    },
    /// H → C: the token is good; subscribe to these, then `Welcome`.
    AuthOk {
        /// The hello.
        origin: Origin,
        /// The user.
        who: Who,
        /// Token id.
        token: u64,
        /// The user's conversations (derived list).
        conversations: Vec<ConversationId>,
    },
    /// H → C: the hello is refused.
    AuthFailed {
        /// The hello.
        origin: Origin,
        /// Why.
        reject: Reject,
    },
    /// C → H: a session ended.
    DeviceGone {
        /// User.
        user: UserId,
        /// Connection.
        conn: ConnId,
    },
    /// H → C: close these sessions (token revoked).
    CloseConns {
        /// Connections on `C`.
        conns: Vec<ConnId>,
        /// `C`'s incarnation they belong to (stale ones are ignored).
        incarnation: u64,
        /// Why.
        reason: CloseReason,
    },
    /// O → H: a durable message's notification candidates homed on the
    /// receiving shard (see `crate::notifier`).
    Notify {
        /// The message (an `Event::Message`, shared with the fanout).
        event: Arc<Event>,
        /// A DM or group DM (default level `All`).
        direct: bool,
        /// Candidates and why.
        candidates: Vec<Candidate>,
        /// On the last chunk for this home: confirm with `NotifyDone` once
        /// the decisions' records are durable (the id is the message's LSN
        /// at the owner).
        handoff: Option<Ticket>,
    },
    /// H → O: the decisions of a hand-off are durable; the owner's
    /// watermark may pass the message.
    NotifyDone {
        /// The `Notify`'s ticket.
        handoff: Ticket,
    },
    /// H → C: an event for some of a user's devices.
    DeliverToConns {
        /// User (connections are checked to still be theirs).
        user: UserId,
        /// Connections on `C`.
        conns: Vec<ConnId>,
        /// `C`'s incarnation they belong to.
        incarnation: u64,
        /// Event.
        event: Arc<Event>,
    },
    /// H → C: subscribe these sessions of `user` to a conversation they
    /// joined; once the owner confirms, deliver `event` and send `reply`.
    SubscribeConns {
        /// User.
        user: UserId,
        /// Conversation.
        conversation: ConversationId,
        /// The user's connections on `C`.
        conns: Vec<ConnId>,
        /// `C`'s incarnation they belong to.
        incarnation: u64,
        /// `Event::Joined`.
        event: Option<Arc<Event>>,
        /// The join's answer, if its request came through `C`.
        reply: Option<(Origin, Result<Response, Reject>)>,
    },

    // ----- Interest ----------------------------------------------------------
    /// C → O: these users have sessions on `C` that want live events; the
    /// owner checks each membership and answers with verdicts.
    Watch {
        /// Batch number (monotonic per incarnation of `C`).
        nonce: Ticket,
        /// (user, conversation) pairs.
        items: Vec<(Who, ConversationId)>,
    },
    /// O → C: verdicts; `true` means `C` is now in the interest set.
    WatchReply {
        /// The batch.
        nonce: Ticket,
        /// (user, conversation, member).
        verdicts: Vec<(UserId, ConversationId, bool)>,
    },
    /// C → O: no session on `C` wants this conversation any more.
    Unwatch {
        /// Conversation.
        conversation: ConversationId,
    },
    /// O → C: `user` left or was removed: stop their live events now.
    Unsubscribed {
        /// Conversation.
        conversation: ConversationId,
        /// User.
        user: UserId,
    },
    /// O → C: a durable event of a conversation for `C`'s subscribers.
    Fanout {
        /// Conversation.
        conversation: ConversationId,
        /// The event (shared, encoded once by `C`'s runtime).
        event: Arc<Event>,
    },

    // ----- Directories and admin --------------------------------------------
    /// C → W: create a workspace placed on `slot`.
    CreateWorkspace {
        /// Request.
        origin: Origin,
        /// Placement slot (maps to `W`).
        slot: u16,
        /// Display name.
        name: String,
    },
    /// C → W: create a user (claim the name, then its home creates it).
    CreateUser {
        /// Request.
        origin: Origin,
        /// Workspace.
        workspace: WorkspaceId,
        /// Handle.
        name: String,
    },
    /// W → H: create a claimed user (idempotent; retried until confirmed).
    CreateUserHome {
        /// The admin's request, on the first attempt.
        origin: Option<Origin>,
        /// User.
        user: UserId,
        /// Workspace.
        workspace: WorkspaceId,
        /// Workspace display name.
        workspace_name: String,
        /// Handle.
        name: String,
    },
    /// H → W: the user is durably created.
    UserHomeReady {
        /// Workspace.
        workspace: WorkspaceId,
        /// User.
        user: UserId,
    },
    /// C → H: issue a token.
    IssueToken {
        /// Request.
        origin: Origin,
        /// User.
        user: UserId,
    },
    /// C → H: revoke tokens.
    RevokeToken {
        /// Request.
        origin: Origin,
        /// User.
        user: UserId,
        /// One or all.
        token: Option<u64>,
    },
    /// C → H(creator): create a channel (checks the creator's limits).
    CreateChannel {
        /// Request.
        origin: Origin,
        /// Creator.
        who: Who,
        /// Name.
        name: String,
        /// Private.
        private: bool,
    },
    /// H → W: claim a channel name.
    ClaimChannel {
        /// Request.
        origin: Origin,
        /// Creator.
        who: Who,
        /// Name.
        name: String,
        /// Private.
        private: bool,
    },
    /// W → O: create a claimed channel (idempotent; retried until confirmed).
    CreateChannelHome {
        /// The creator's request, on the first attempt.
        origin: Option<Origin>,
        /// Channel.
        conversation: ConversationId,
        /// Workspace.
        workspace: WorkspaceId,
        /// Name.
        name: String,
        /// Private.
        private: bool,
        /// Creator.
        creator: UserId,
    },
    /// O → W: the channel is durably created.
    ChannelReady {
        /// Workspace.
        workspace: WorkspaceId,
        /// Channel.
        conversation: ConversationId,
    },
    /// C → W: resolve a name.
    Lookup {
        /// Request.
        origin: Origin,
        /// Asker.
        who: Who,
        /// Name.
        name: String,
        /// Directory.
        kind: LookupKind,
    },
    /// W → O: a private channel's name matched; answer only a member.
    LookupPrivate {
        /// Request.
        origin: Origin,
        /// Asker.
        who: Who,
        /// Channel.
        conversation: ConversationId,
    },
    /// H → W: public channels of a workspace (for a list gather).
    PublicChannels {
        /// Gather id at `H`.
        gather: Ticket,
        /// Workspace.
        workspace: WorkspaceId,
    },
    /// W → H: the public channels.
    PublicChannelsReply {
        /// Gather id.
        gather: Ticket,
        /// Channels (at most LIST_PUBLIC_CHANNELS_MAX).
        conversations: Vec<ConversationId>,
    },

    // ----- Membership ----------------------------------------------------------
    /// C → H: join a public channel (H checks limits, adds the cursor).
    Join {
        /// Request.
        origin: Origin,
        /// Joiner.
        who: Who,
        /// Channel.
        conversation: ConversationId,
    },
    /// C → H(invitee): invite (H checks the invitee's workspace and limits).
    Invite {
        /// Request.
        origin: Origin,
        /// Inviter.
        who: Who,
        /// Channel.
        conversation: ConversationId,
        /// Invitee.
        user: UserId,
    },
    /// H → O: add a member (join when `actor.user == user`, else invite).
    AddMember {
        /// Request.
        origin: Origin,
        /// Who asks.
        actor: Who,
        /// Who is added.
        user: UserId,
        /// Channel.
        conversation: ConversationId,
        /// The added user's read cursor.
        read: Seq,
    },
    /// C → O: leave (`actor` is the user) or remove.
    RemoveMember {
        /// Request.
        origin: Origin,
        /// Who asks.
        actor: Actor,
        /// Who is removed.
        user: UserId,
        /// Channel.
        conversation: ConversationId,
    },
    /// C → H(requester): open a DM (H checks limits).
    OpenDm {
        /// Request.
        origin: Origin,
        /// Requester.
        who: Who,
        /// All members, requester included, sorted and unique.
        members: Vec<UserId>,
    },
    /// H → O(DM slot): find or create the DM.
    OpenDmOwner {
        /// Request.
        origin: Origin,
        /// Requester.
        who: Who,
        /// All members, sorted and unique.
        members: Vec<UserId>,
    },
    /// O → H(member): may `user` be in a new DM of `workspace`?
    VerifyMember {
        /// Pending creation at `O`.
        pending: Ticket,
        /// Member.
        user: UserId,
        /// Workspace.
        workspace: WorkspaceId,
    },
    /// H → O: the verdict.
    VerifyReply {
        /// Pending creation.
        pending: Ticket,
        /// Member.
        user: UserId,
        /// Exists, same workspace, under its conversation limit.
        ok: bool,
    },
    /// O → H: `user` is (durably) a member; update the derived list,
    /// subscribe the user's sessions, then answer `origin`.
    MemberAdded {
        /// User.
        user: UserId,
        /// Conversation.
        conversation: ConversationId,
        /// Its info for the user (H fills in the cursor).
        info: ConversationInfo,
        /// The request to answer with the info, if any.
        origin: Option<Origin>,
    },
    /// O → H: `user` is (durably) no longer a member.
    MemberRemoved {
        /// User.
        user: UserId,
        /// Conversation.
        conversation: ConversationId,
    },

    // ----- Messages, reads, cursors, preferences ----------------------------
    /// C → O: post.
    Send {
        /// Request.
        origin: Origin,
        /// Sender.
        who: Who,
        /// Conversation.
        conversation: ConversationId,
        /// Idempotency key.
        client_msg_id: ClientMsgId,
        /// Text.
        body: String,
        /// Mentioned users (sorted, unique).
        mentions: Vec<UserId>,
        /// Broadcast.
        broadcast: Broadcast,
    },
    /// C → O: a history page.
    History {
        /// Request.
        origin: Origin,
        /// Reader.
        who: Who,
        /// Conversation.
        conversation: ConversationId,
        /// Anchor.
        anchor: HistoryAnchor,
        /// Page size.
        limit: u32,
    },
    /// C → O: mark read (O authorizes and clamps to its head).
    MarkRead {
        /// Request.
        origin: Origin,
        /// Reader.
        who: Who,
        /// Conversation.
        conversation: ConversationId,
        /// Seq.
        seq: Seq,
    },
    /// O → H: move a cursor forward (from `MarkRead`, or from a send when
    /// `origin` is `None`).
    SetCursor {
        /// Request, if any.
        origin: Option<Origin>,
        /// User.
        user: UserId,
        /// Conversation.
        conversation: ConversationId,
        /// New cursor.
        seq: Seq,
    },
    /// C → O: set a notification preference (O authorizes).
    SetNotify {
        /// Request.
        origin: Origin,
        /// User.
        who: Who,
        /// Conversation.
        conversation: ConversationId,
        /// Level.
        level: NotifyLevel,
        /// Muted.
        muted: bool,
    },
    /// O → H: persist the preference.
    SetNotifyHome {
        /// Request.
        origin: Origin,
        /// User.
        user: UserId,
        /// Conversation.
        conversation: ConversationId,
        /// Level.
        level: NotifyLevel,
        /// Muted.
        muted: bool,
    },
    /// H → O: `user`'s level for `conversation` is durably `all` (or no
    /// longer): keeps the owner's derived set of `all`-subscribers
    /// (`crate::notifier::AllSubscribers`). Sent once the `NotifySet`
    /// record is durable, and when a user whose level is `all` is re-added.
    NotifyAll {
        /// User.
        user: UserId,
        /// Conversation.
        conversation: ConversationId,
        /// Level `all`.
        all: bool,
    },
    /// H → O: every (user, conversation) of `H`'s users whose level is
    /// `all`, for `O`'s conversations, in chunks; `O` replaces its entries
    /// for `H`'s users when the `last` chunk arrives. Sent at `H`'s start
    /// and when `O` restarted.
    NotifyAllRound {
        /// (user, conversation), sorted.
        entries: Vec<(UserId, ConversationId)>,
        /// First chunk.
        first: bool,
        /// Last chunk.
        last: bool,
    },
    /// C → H: device focus / activity (memory only).
    SetFocus {
        /// Request.
        origin: Origin,
        /// User.
        user: UserId,
        /// Focused conversation.
        focused: Option<ConversationId>,
        /// Active.
        active: bool,
    },
    /// C → H: do-not-disturb.
    SetDnd {
        /// Request.
        origin: Origin,
        /// User.
        user: UserId,
        /// End.
        until: Option<Millis>,
    },

    // ----- Scatter-gather -----------------------------------------------------
    /// C → H: `Sync`, `Boot` or `ListConversations`.
    Gather {
        /// Request.
        origin: Origin,
        /// User.
        who: Who,
        /// Which.
        request: GatherRequest,
    },
    /// H → O: summaries of some of the user's conversations.
    Summaries {
        /// Gather id at `H`.
        gather: Ticket,
        /// User.
        who: Who,
        /// Items (at most PEER_BATCH_MAX).
        items: Vec<SummaryItem>,
    },
    /// O → H: the summaries.
    SummariesReply {
        /// Gather id.
        gather: Ticket,
        /// One per item, same order.
        summaries: Vec<Summary>,
    },
}
