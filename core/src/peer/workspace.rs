//! Messages the workspace role (`W`) receives: creations and name
//! directories.
//!
//! One plain-data struct per message (a later issue gives them a wire
//! form); [`WorkspaceMsg`] wraps them for [`super::PeerBody::Workspace`].

use crate::peer::{Actor, Origin, Ticket, Who};
use crate::types::{ConversationId, DirectoryCursor, LookupKind, Role, UserId, WorkspaceId};

role_messages! {
    /// Every message the workspace role receives.
    Workspace: WorkspaceMsg {
        CreateWorkspace,
        CreateUser,
        UserHomeReady,
        ClaimChannel,
        ChannelReady,
        Lookup,
        PublicChannels,
        DirectoryNames,
        Directory,
        UserByHandle,
        BrowseChannels,
        SetRole,
        Invites,
        Redeem,
        // channel settings (issue 16, part 4)
        RenameChannel,
        RenameDone,
    }
}

/// O → W: claim a new name for a channel (issue 16, part 4).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RenameChannel {
    /// Request.
    pub origin: Origin,
    /// Who renames it (O checked them).
    pub who: Who,
    /// Channel.
    pub conversation: ConversationId,
    /// Its current name (W checks it holds it).
    pub old: String,
    /// The new name (checked at `C`).
    pub new: String,
}

/// O → W: a claimed rename was sequenced (`applied`) or refused.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RenameDone {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Channel.
    pub conversation: ConversationId,
    /// The channel carries the new name (else the new name is freed).
    pub applied: bool,
}

/// C → W: create a workspace placed on `slot`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CreateWorkspace {
    /// Request.
    pub origin: Origin,
    /// Placement slot (maps to `W`).
    pub slot: u16,
    /// Display name.
    pub name: String,
}

/// C → W: create a user (claim the name, then its home creates it).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CreateUser {
    /// Request.
    pub origin: Origin,
    /// Who asks: the admin session, or a user whose role `W` checks.
    pub actor: Actor,
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Handle.
    pub name: String,
}

/// H → W: the user is durably created.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct UserHomeReady {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// User.
    pub user: UserId,
}

/// H → W: claim a channel name.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ClaimChannel {
    /// Request.
    pub origin: Origin,
    /// Creator.
    pub who: Who,
    /// Name.
    pub name: String,
    /// Private.
    pub private: bool,
}

/// O → W: the channel is durably created.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ChannelReady {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Channel.
    pub conversation: ConversationId,
}

/// C → W: resolve a name.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Lookup {
    /// Request.
    pub origin: Origin,
    /// Asker.
    pub who: Who,
    /// Name.
    pub name: String,
    /// Directory.
    pub kind: LookupKind,
}

/// H → W: public channels of a workspace (for a list gather).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PublicChannels {
    /// Gather id at `H`.
    pub gather: Ticket,
    /// Workspace.
    pub workspace: WorkspaceId,
}

/// H → W: display names of users of `workspace` homed on `H`, after a
/// profile change became durable and, for every user with a profile, at
/// the first tick after `H`'s start (W writes only versions newer than it
/// holds).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DirectoryNames {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// (user, display name, profile version), at most PEER_BATCH_MAX.
    pub entries: Vec<(UserId, String, u64)>,
}

/// C → W: a directory page.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Directory {
    /// Request.
    pub origin: Origin,
    /// Asker.
    pub who: Who,
    /// Prefix (may be empty).
    pub prefix: String,
    /// Continue after.
    pub after: Option<DirectoryCursor>,
    /// Page size (checked at `C`).
    pub limit: u32,
}

/// C → W: the profile of the user with this handle (W resolves it, the
/// user's home answers the client).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct UserByHandle {
    /// Request.
    pub origin: Origin,
    /// Asker.
    pub who: Who,
    /// Handle.
    pub handle: String,
}

/// C → W: a page of public channels by name.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BrowseChannels {
    /// Request.
    pub origin: Origin,
    /// Asker.
    pub who: Who,
    /// Continue after this name.
    pub after: Option<String>,
    /// Page size (checked at `C`).
    pub limit: u32,
}

/// H → W: change a user's role (`H` checked the user exists and named
/// its workspace; `W` checks the actor's role in its own table).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SetRole {
    /// Request.
    pub origin: Origin,
    /// Who asks.
    pub actor: Actor,
    /// The user's workspace.
    pub workspace: WorkspaceId,
    /// Whose role.
    pub user: UserId,
    /// The new role.
    pub role: Role,
}

/// What an [`Invites`] message asks of the workspace shard.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum InviteOp {
    /// Create one (checked by `C`: uses and expiry in range).
    Create {
        /// How many users it may create.
        max_uses: u32,
        /// Valid for this long, ms.
        expires_in_ms: u64,
        /// The role redeemed users get.
        role: Role,
    },
    /// List them.
    List,
    /// Revoke one.
    Revoke {
        /// Its id.
        invite: u64,
    },
    /// Set whether members may create invites.
    Policy {
        /// Members may.
        members_may_invite: bool,
    },
}

/// C → W: manage a workspace's invites (issue 16, item 4); `W` checks the
/// actor's role in its own table.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Invites {
    /// Request.
    pub origin: Origin,
    /// Who asks.
    pub actor: Actor,
    /// The workspace.
    pub workspace: WorkspaceId,
    /// What.
    pub op: InviteOp,
}

/// C → W: redeem an invite (a connection with no session): claim the
/// handle, then the new user's home shard answers with its first token.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Redeem {
    /// Request.
    pub origin: Origin,
    /// The workspace.
    pub workspace: WorkspaceId,
    /// The invite.
    pub invite: u64,
    /// Its secret, as the client sent it.
    pub secret: [u8; 32],
    /// The new user's handle (checked by `C`).
    pub handle: String,
}
