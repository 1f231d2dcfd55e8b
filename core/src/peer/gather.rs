//! Messages the scatter-gathers at the home shard receive: the request and
//! the owners' and workspace's answers.
//!
//! One plain-data struct per message (a later issue gives them a wire
//! form); [`GatherMsg`] wraps them for [`super::PeerBody::Gather`].

use crate::peer::{GatherRequest, Origin, Summary, Ticket, Who};
use crate::types::{ConversationId, UserId, UserProfile};

role_messages! {
    /// Every message the gather role receives.
    Gather: GatherMsg {
        Start,
        PublicChannelsReply,
        SummariesReply,
        UsersStart,
        ProfilesReply,
    }
}

/// C → H: `Sync`, `Boot` or `ListConversations`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Start {
    /// Request.
    pub origin: Origin,
    /// User.
    pub who: Who,
    /// Which.
    pub request: GatherRequest,
}

/// W → H: the public channels.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PublicChannelsReply {
    /// Gather id.
    pub gather: Ticket,
    /// Channels (at most LIST_PUBLIC_CHANNELS_MAX).
    pub conversations: Vec<ConversationId>,
}

/// O → H: the summaries.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SummariesReply {
    /// Gather id.
    pub gather: Ticket,
    /// One per item, same order.
    pub summaries: Vec<Summary>,
}

/// C → H(requester): `GetUsers`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct UsersStart {
    /// Request.
    pub origin: Origin,
    /// Asker.
    pub who: Who,
    /// Users (at most GET_USERS_MAX, unique).
    pub users: Vec<UserId>,
}

/// H(user) → H(requester): the profiles found (of the asker's workspace).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ProfilesReply {
    /// Gather id.
    pub gather: Ticket,
    /// Profiles, in no particular order.
    pub profiles: Vec<UserProfile>,
}
