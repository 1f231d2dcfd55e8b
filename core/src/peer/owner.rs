//! Messages the owner role (`O`) of a conversation receives: interest,
//! membership, sequencing, history, read marks, preferences, summaries.
//!
//! One plain-data struct per message (a later issue gives them a wire
//! form); [`OwnerMsg`] wraps them for [`super::PeerBody::Owner`].

use crate::peer::{Actor, Origin, SummaryItem, Ticket, Who};
use crate::types::{
    Broadcast, ChangeKind, ClientMsgId, ConversationId, HistoryAnchor, NotifyLevel, Seq, UserId,
    WorkspaceId,
};

role_messages! {
    /// Every message the owner role receives.
    Owner: OwnerMsg {
        Watch,
        Unwatch,
        CreateChannel,
        LookupPrivate,
        AddMember,
        RemoveMember,
        OpenDm,
        VerifyReply,
        Send,
        History,
        MarkRead,
        SetNotify,
        Summaries,
        ListMembers,
        Evict,
        // messages that live (issue 17)
        ChangeMessage,
        // channel settings (issue 16, part 4)
        ApplyRename,
        // threads (issue 17, part 2)
        PostReply,
        ThreadPage,
        // pins, typing (issue 17, parts 3-4)
        ListPins,
        Typing,
    }
}

/// C → O: a member types (issue 17, part 4; rate-limited at `C`).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Typing {
    /// Request.
    pub origin: Origin,
    /// The typist (must be allowed to post).
    pub who: Who,
    /// Conversation.
    pub conversation: ConversationId,
}

/// C → O: a page of pinned messages (issue 17, part 3).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ListPins {
    /// Request.
    pub origin: Origin,
    /// Reader (read access, as for `History`).
    pub who: Who,
    /// Conversation.
    pub conversation: ConversationId,
    /// Only seqs below this (`Seq(0)`: from the newest).
    pub before: Seq,
    /// Page size (checked at `C`).
    pub limit: u32,
}

/// W → O: apply a claimed rename (retried until W has the outcome).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ApplyRename {
    /// The renamer's request, on the first attempt.
    pub origin: Option<Origin>,
    /// Who renames it (checked again).
    pub who: Who,
    /// Channel.
    pub conversation: ConversationId,
    /// The new name.
    pub name: String,
}

/// C → O: these users have sessions on `C` that want live events; the
/// owner checks each membership and answers with verdicts.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Watch {
    /// Batch number (monotonic per incarnation of `C`).
    pub nonce: Ticket,
    /// (user, conversation) pairs.
    pub items: Vec<(Who, ConversationId)>,
}

/// C → O: no session on `C` wants this conversation any more.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Unwatch {
    /// Conversation.
    pub conversation: ConversationId,
}

/// W → O: create a claimed channel (idempotent; retried until confirmed).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CreateChannel {
    /// The creator's request, on the first attempt.
    pub origin: Option<Origin>,
    /// Channel.
    pub conversation: ConversationId,
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Name.
    pub name: String,
    /// Private.
    pub private: bool,
    /// Creator.
    pub creator: UserId,
}

/// W → O: a private channel's name matched; answer only a member.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LookupPrivate {
    /// Request.
    pub origin: Origin,
    /// Asker.
    pub who: Who,
    /// Channel.
    pub conversation: ConversationId,
}

/// H → O: add a member (join when `actor.user == user`, else invite).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AddMember {
    /// Request.
    pub origin: Origin,
    /// Who asks.
    pub actor: Who,
    /// Who is added.
    pub user: UserId,
    /// Channel.
    pub conversation: ConversationId,
    /// The added user's read cursor.
    pub read: Seq,
}

/// C → O: leave (`actor` is the user) or remove.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RemoveMember {
    /// Request.
    pub origin: Origin,
    /// Who asks.
    pub actor: Actor,
    /// Who is removed.
    pub user: UserId,
    /// Channel.
    pub conversation: ConversationId,
}

/// H → O(DM slot): find or create the DM.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct OpenDm {
    /// Request.
    pub origin: Origin,
    /// Requester.
    pub who: Who,
    /// All members, sorted and unique.
    pub members: Vec<UserId>,
}

/// H → O: the verdict.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct VerifyReply {
    /// Pending creation.
    pub pending: Ticket,
    /// Member.
    pub user: UserId,
    /// Exists, same workspace, under its conversation limit.
    pub ok: bool,
}

/// C → O: post.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Send {
    /// Request.
    pub origin: Origin,
    /// Sender.
    pub who: Who,
    /// Conversation.
    pub conversation: ConversationId,
    /// Idempotency key.
    pub client_msg_id: ClientMsgId,
    /// Text.
    pub body: String,
    /// Mentioned users (sorted, unique).
    pub mentions: Vec<UserId>,
    /// Broadcast.
    pub broadcast: Broadcast,
}

/// C → O: post a reply in a thread (issue 17, part 2): a `Send` with
/// its root.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PostReply {
    /// The message, checked at `C` like a `Send`.
    pub send: Send,
    /// The thread's root.
    pub root: Seq,
    /// Also shown in the channel.
    pub in_channel: bool,
}

/// C → O: a page of a thread (issue 17, part 2).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ThreadPage {
    /// Request.
    pub origin: Origin,
    /// Reader.
    pub who: Who,
    /// Conversation.
    pub conversation: ConversationId,
    /// The thread's root.
    pub root: Seq,
    /// Replies after this seq.
    pub after: Seq,
    /// Page size (clamped to THREAD_PAGE_MAX).
    pub limit: u32,
}

/// C → O: edit, delete or react to an earlier message (issue 17).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ChangeMessage {
    /// Request.
    pub origin: Origin,
    /// Who changes it.
    pub who: Who,
    /// Conversation.
    pub conversation: ConversationId,
    /// The message changed.
    pub target: Seq,
    /// What.
    pub kind: ChangeKind,
    /// New text or emoji (checked at `C`); empty for a delete.
    pub text: String,
}

/// C → O: a history page.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct History {
    /// Request.
    pub origin: Origin,
    /// Reader.
    pub who: Who,
    /// Conversation.
    pub conversation: ConversationId,
    /// Anchor.
    pub anchor: HistoryAnchor,
    /// Page size.
    pub limit: u32,
}

/// C → O: mark read (O authorizes and clamps to its head).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MarkRead {
    /// Request.
    pub origin: Origin,
    /// Reader.
    pub who: Who,
    /// Conversation.
    pub conversation: ConversationId,
    /// Seq.
    pub seq: Seq,
}

/// C → O: set a notification preference (O authorizes).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SetNotify {
    /// Request.
    pub origin: Origin,
    /// User.
    pub who: Who,
    /// Conversation.
    pub conversation: ConversationId,
    /// Level.
    pub level: NotifyLevel,
    /// Muted.
    pub muted: bool,
}

/// H → O: summaries of some of the user's conversations.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Summaries {
    /// Gather id at `H`.
    pub gather: Ticket,
    /// User.
    pub who: Who,
    /// Items (at most PEER_BATCH_MAX).
    pub items: Vec<SummaryItem>,
}

/// C → O: a page of a conversation's members.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ListMembers {
    /// Request.
    pub origin: Origin,
    /// Asker (needs read access).
    pub who: Who,
    /// Conversation.
    pub conversation: ConversationId,
    /// Continue after this user.
    pub after: Option<UserId>,
    /// Page size (checked at `C`).
    pub limit: u32,
}

/// H → O: remove a deactivated user from a channel (no answer; DMs keep
/// their members). Sent when the deactivation is applied and again after
/// every membership round that still lists the user.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Evict {
    /// The deactivated user.
    pub user: UserId,
    /// The conversation.
    pub conversation: ConversationId,
}
