//! Messages the home role (`H`) of a user receives: sessions, tokens, the
//! derived conversation list, cursors, preferences, devices.
//!
//! One plain-data struct per message (a later issue gives them a wire
//! form); [`HomeMsg`] wraps them for [`super::PeerBody::Home`].

use crate::peer::{Actor, DeviceReg, Origin, Ticket, Who};
use crate::types::{
    ConnId, ConversationId, ConversationInfo, DeviceInfo, Millis, NotifyLevel, ProfileUpdate, Role,
    Seq, UserId, WorkspaceId,
};

role_messages! {
    /// Every message the home role receives.
    Home: HomeMsg {
        MembershipRound,
        Activity,
        DevicesRegister,
        Auth,
        DeviceGone,
        CreateUser,
        IssueToken,
        RevokeToken,
        CreateChannel,
        Join,
        Invite,
        OpenDm,
        VerifyMember,
        MemberAdded,
        MemberRemoved,
        SetCursor,
        SetNotify,
        SetFocus,
        SetDnd,
        SetProfile,
        GetProfiles,
        SetRole,
        RoleChanged,
        ListTokens,
        // messages that live (issue 17)
        MessageDeleted,
        // presence (issue 17, part 4)
        PresenceWatch,
        PresenceGet,
        SetAway,
    }
}

/// C → H: `C`'s first connection starts (`watch`) or its last stops
/// watching `user`'s presence (issue 17, part 4). `H` answers a watch of a
/// user of `workspace` with `PresenceChanged` (the state now); others it
/// ignores.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PresenceWatch {
    /// The watched user (homed on `H`).
    pub user: UserId,
    /// The watchers' workspace (unused for an unwatch).
    pub workspace: WorkspaceId,
    /// Start (`true`) or stop.
    pub watch: bool,
}

/// C → H: `GetPresence` of a user homed on `H`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PresenceGet {
    /// Request.
    pub origin: Origin,
    /// The asker's workspace (another's user is `NotFound`).
    pub workspace: WorkspaceId,
    /// The user.
    pub user: UserId,
}

/// C → H(user): `SetAway` (memory only).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SetAway {
    /// Request.
    pub origin: Origin,
    /// The user (the session's).
    pub user: UserId,
    /// Away by hand.
    pub away: bool,
}

/// O → H: every durable membership of `O`'s conversations for users
/// homed on `H`, in chunks; `H` replaces its derived entries for `O`'s
/// conversations when the `last` chunk arrives.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MembershipRound {
    /// (user, conversation, the conversation's visible last activity).
    pub entries: Vec<(UserId, ConversationId, Millis)>,
    /// First chunk.
    pub first: bool,
    /// Last chunk.
    pub last: bool,
}

/// O → every home shard of the conversation's members, once per
/// durable message: its time, which orders `Boot` pages at `H`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Activity {
    /// The conversation.
    pub conversation: ConversationId,
    /// The message's `ts` (activity never moves backwards).
    pub at: Millis,
}

/// O → every home shard of the conversation's members, once a delete is
/// durable (issue 17): retract the message's pushes (cancel queued ones,
/// `clear` a delivered one), so its text shows nowhere.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MessageDeleted {
    /// The conversation.
    pub conversation: ConversationId,
    /// The deleted message.
    pub seq: Seq,
}

/// C → restarted H: sessions on `C` for users homed on `H`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DevicesRegister {
    /// The sessions.
    pub devices: Vec<DeviceReg>,
}

/// C → H: check a `Hello`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Auth {
    /// The hello.
    pub origin: Origin,
    /// Claimed user.
    pub user: UserId,
    /// Token id.
    pub token: u64,
    /// Secret.
    pub secret: [u8; 32],
    /// Device.
    pub device: DeviceInfo,
}

/// C → H: a session ended.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DeviceGone {
    /// User.
    pub user: UserId,
    /// Connection.
    pub conn: ConnId,
}

/// W → H: create a claimed user (idempotent; retried until confirmed).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CreateUser {
    /// The admin's request, on the first attempt.
    pub origin: Option<Origin>,
    /// User.
    pub user: UserId,
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Workspace display name.
    pub workspace_name: String,
    /// Handle.
    pub name: String,
    /// The role the workspace shard holds for the user (an invite's),
    /// with its version; `None`: member at version 0.
    pub role: Option<(Role, u64)>,
}

/// C → H: issue a token.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct IssueToken {
    /// Request.
    pub origin: Origin,
    /// User.
    pub user: UserId,
}

/// C → H: revoke tokens.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RevokeToken {
    /// Request.
    pub origin: Origin,
    /// User.
    pub user: UserId,
    /// One or all.
    pub token: Option<u64>,
}

/// C → H(creator): create a channel (checks the creator's limits).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CreateChannel {
    /// Request.
    pub origin: Origin,
    /// Creator.
    pub who: Who,
    /// Name.
    pub name: String,
    /// Private.
    pub private: bool,
}

/// C → H: join a public channel (H checks limits, adds the cursor).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Join {
    /// Request.
    pub origin: Origin,
    /// Joiner.
    pub who: Who,
    /// Channel.
    pub conversation: ConversationId,
}

/// C → H(invitee): invite (H checks the invitee's workspace and limits).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Invite {
    /// Request.
    pub origin: Origin,
    /// Inviter.
    pub who: Who,
    /// Channel.
    pub conversation: ConversationId,
    /// Invitee.
    pub user: UserId,
}

/// C → H(requester): open a DM (H checks limits).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct OpenDm {
    /// Request.
    pub origin: Origin,
    /// Requester.
    pub who: Who,
    /// All members, requester included, sorted and unique.
    pub members: Vec<UserId>,
}

/// O → H(member): may `user` be in a new DM of `workspace`?
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct VerifyMember {
    /// Pending creation at `O`.
    pub pending: Ticket,
    /// Member.
    pub user: UserId,
    /// Workspace.
    pub workspace: WorkspaceId,
}

/// O → H: `user` is (durably) a member; update the derived list,
/// subscribe the user's sessions, then answer `origin`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MemberAdded {
    /// User.
    pub user: UserId,
    /// Conversation.
    pub conversation: ConversationId,
    /// Its info for the user (H fills in the cursor); boxed, so cross-core
    /// messages stay small (an info carries the channel's settings).
    pub info: Box<ConversationInfo>,
    /// The request to answer with the info, if any.
    pub origin: Option<Origin>,
}

/// O → H: `user` is (durably) no longer a member.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MemberRemoved {
    /// User.
    pub user: UserId,
    /// Conversation.
    pub conversation: ConversationId,
}

/// O → H: move a cursor forward (from `MarkRead`, or from a send when
/// `origin` is `None`).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SetCursor {
    /// Request, if any.
    pub origin: Option<Origin>,
    /// User.
    pub user: UserId,
    /// Conversation.
    pub conversation: ConversationId,
    /// New cursor.
    pub seq: Seq,
}

/// O → H: persist the preference.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SetNotify {
    /// Request.
    pub origin: Origin,
    /// User.
    pub user: UserId,
    /// Conversation.
    pub conversation: ConversationId,
    /// Level.
    pub level: NotifyLevel,
    /// Muted.
    pub muted: bool,
}

/// C → H: device focus / activity (memory only).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SetFocus {
    /// Request.
    pub origin: Origin,
    /// User.
    pub user: UserId,
    /// Focused conversation.
    pub focused: Option<ConversationId>,
    /// Active.
    pub active: bool,
}

/// C → H: do-not-disturb.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SetDnd {
    /// Request.
    pub origin: Origin,
    /// User.
    pub user: UserId,
    /// End.
    pub until: Option<Millis>,
}

/// C → H: change a profile (checked at `C`: the update is valid, and a
/// user session changes only its own).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SetProfile {
    /// Request.
    pub origin: Origin,
    /// Who asks (a user for themself, or an admin).
    pub actor: Actor,
    /// Whose profile.
    pub user: UserId,
    /// The change.
    pub update: ProfileUpdate,
}

/// Where a home shard sends the profiles it was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ProfilesTo {
    /// To a `GetUsers` gather at the sending shard.
    Gather(Ticket),
    /// Straight to the client (`GetUserByHandle`, resolved by `W`).
    Client(Origin),
}

/// H(requester) or W → H: the profiles of these users homed on `H` that
/// belong to `workspace` (others are left out).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct GetProfiles {
    /// Where the answer goes.
    pub to: ProfilesTo,
    /// The asker's workspace.
    pub workspace: WorkspaceId,
    /// Users (at most PEER_BATCH_MAX).
    pub users: Vec<UserId>,
}

/// C → H of the user: change a user's role. `H` names the user's
/// workspace (an admin session does not know it) and forwards to `W`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SetRole {
    /// Request.
    pub origin: Origin,
    /// Who asks.
    pub actor: Actor,
    /// Whose role.
    pub user: UserId,
    /// The new role.
    pub role: Role,
}

/// W → H: a user's role at the workspace shard (after its `RoleSet` is
/// durable, and for every user with a role in the round W sends at its
/// first tick and after H restarted). `H` writes only a newer version;
/// the request's answer goes once `H` has applied it.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RoleChanged {
    /// The `SetRole` request, when this answers one.
    pub origin: Option<Origin>,
    /// (user, role, version), at most PEER_BATCH_MAX.
    pub entries: Vec<(UserId, Role, u64)>,
}

/// C → H: the ids of a user's tokens (`current`: the asking session's).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ListTokens {
    /// Request.
    pub origin: Origin,
    /// The session's user.
    pub user: UserId,
    /// The session's token.
    pub current: u64,
}
