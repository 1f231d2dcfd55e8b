//! Messages the scatter-gathers at the home shard receive: the request and
//! the owners' and workspace's answers.
//!
//! One plain-data struct per message (a later issue gives them a wire
//! form); [`GatherMsg`] wraps them for [`super::PeerBody::Gather`].

use crate::peer::{GatherRequest, Origin, Summary, Ticket, Who};
use crate::types::ConversationId;

role_messages! {
    /// Every message the gather role receives.
    Gather: GatherMsg {
        Start,
        PublicChannelsReply,
        SummariesReply,
    }
}

/// C → H: `Sync`, `Boot` or `ListConversations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    /// Request.
    pub origin: Origin,
    /// User.
    pub who: Who,
    /// Which.
    pub request: GatherRequest,
}

/// W → H: the public channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicChannelsReply {
    /// Gather id.
    pub gather: Ticket,
    /// Channels (at most LIST_PUBLIC_CHANNELS_MAX).
    pub conversations: Vec<ConversationId>,
}

/// O → H: the summaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummariesReply {
    /// Gather id.
    pub gather: Ticket,
    /// One per item, same order.
    pub summaries: Vec<Summary>,
}
