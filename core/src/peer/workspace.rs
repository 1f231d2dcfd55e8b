//! Messages the workspace role (`W`) receives: creations and name
//! directories.
//!
//! One plain-data struct per message (a later issue gives them a wire
//! form); [`WorkspaceMsg`] wraps them for [`super::PeerBody::Workspace`].

use crate::peer::{Origin, Ticket, Who};
use crate::types::{ConversationId, LookupKind, UserId, WorkspaceId};

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
    }
}

/// C → W: create a workspace placed on `slot`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateWorkspace {
    /// Request.
    pub origin: Origin,
    /// Placement slot (maps to `W`).
    pub slot: u16,
    /// Display name.
    pub name: String,
}

/// C → W: create a user (claim the name, then its home creates it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateUser {
    /// Request.
    pub origin: Origin,
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Handle.
    pub name: String,
}

/// H → W: the user is durably created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserHomeReady {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// User.
    pub user: UserId,
}

/// H → W: claim a channel name.
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelReady {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Channel.
    pub conversation: ConversationId,
}

/// C → W: resolve a name.
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicChannels {
    /// Gather id at `H`.
    pub gather: Ticket,
    /// Workspace.
    pub workspace: WorkspaceId,
}
