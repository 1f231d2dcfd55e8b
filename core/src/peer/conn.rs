//! Messages the connection role (`C`) receives: answers, session verdicts,
//! deliveries, watch verdicts, fanout.
//!
//! One plain-data struct per message (a later issue gives them a wire
//! form); [`ConnMsg`] wraps them for [`super::PeerBody::Conn`].

use crate::peer::{Origin, Ticket, Who};
use crate::types::{
    CloseReason, ConnId, ConversationId, Event, Presence, Reject, Response, Role, UserId,
    WorkspaceId,
};
use std::sync::Arc;

role_messages! {
    /// Every message the conn role receives.
    Conn: ConnMsg {
        Reply,
        AuthOk,
        AuthFailed,
        CloseConns,
        DeliverToConns,
        SubscribeConns,
        WatchReply,
        Unsubscribed,
        Fanout,
        SessionRole,
        ProfileChanged,
        // presence (issue 17, part 4)
        PresenceChanged,
    }
}

/// H → C: a watched user's presence: the state now after a watch, then
/// each change (one message per watching shard, whatever the number of
/// watching connections there).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PresenceChanged {
    /// The user.
    pub user: UserId,
    /// Their presence.
    pub presence: Presence,
}

/// Any → C: the answer to a client request.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Reply {
    /// Where it goes.
    pub origin: Origin,
    /// The answer.
    pub result: Result<Response, Reject>,
}

/// H → C: the token is good; subscribe to these, then `Welcome`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AuthOk {
    /// The hello.
    pub origin: Origin,
    /// The user.
    pub who: Who,
    /// Token id.
    pub token: u64,
    /// The user's conversations (derived list).
    pub conversations: Vec<ConversationId>,
}

/// H → C: the hello is refused.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AuthFailed {
    /// The hello.
    pub origin: Origin,
    /// Why.
    pub reject: Reject,
}

/// H → C: close these sessions (token revoked).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CloseConns {
    /// Connections on `C`.
    pub conns: Vec<ConnId>,
    /// `C`'s incarnation they belong to (stale ones are ignored).
    pub incarnation: u64,
    /// Why.
    pub reason: CloseReason,
}

/// H → C: an event for some of a user's devices.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DeliverToConns {
    /// User (connections are checked to still be theirs).
    pub user: UserId,
    /// Connections on `C`.
    pub conns: Vec<ConnId>,
    /// `C`'s incarnation they belong to.
    pub incarnation: u64,
    /// Event.
    pub event: Arc<Event>,
}

/// H → C: subscribe these sessions of `user` to a conversation they
/// joined; once the owner confirms, deliver `event` and send `reply`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SubscribeConns {
    /// User.
    pub user: UserId,
    /// Conversation.
    pub conversation: ConversationId,
    /// The user's connections on `C`.
    pub conns: Vec<ConnId>,
    /// `C`'s incarnation they belong to.
    pub incarnation: u64,
    /// `Event::Joined`.
    pub event: Option<Arc<Event>>,
    /// The join's answer, if its request came through `C`.
    pub reply: Option<(Origin, Result<Response, Reject>)>,
}

/// O → C: verdicts; `true` means `C` is now in the interest set.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WatchReply {
    /// The batch.
    pub nonce: Ticket,
    /// (user, conversation, member).
    pub verdicts: Vec<(UserId, ConversationId, bool)>,
}

/// O → C: `user` left or was removed: stop their live events now.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Unsubscribed {
    /// Conversation.
    pub conversation: ConversationId,
    /// User.
    pub user: UserId,
}

/// O → C: a durable event of a conversation for `C`'s subscribers.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Fanout {
    /// Conversation.
    pub conversation: ConversationId,
    /// The event (shared, encoded once by `C`'s runtime).
    pub event: Arc<Event>,
}

/// H → C: a user's role changed; sessions of `conns` (of `incarnation`)
/// act with the new role from now on.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SessionRole {
    /// The user.
    pub user: UserId,
    /// The user's connections on the receiving shard.
    pub conns: Vec<ConnId>,
    /// The receiving shard's incarnation they belong to.
    pub incarnation: u64,
    /// The new role.
    pub role: Role,
}

/// H → every connection shard (state shards and edges): a user's profile
/// change is durable; deliver `Event::ProfileChanged` to every session of
/// `workspace` held there (issue 16, part 5). One message per shard per
/// change, whatever the workspace's size.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ProfileChanged {
    /// The user's workspace.
    pub workspace: WorkspaceId,
    /// The user.
    pub user: UserId,
    /// The profile's new version.
    pub version: u64,
}
