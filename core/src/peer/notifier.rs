//! Messages of the notification hand-off (see `crate::notifier`): the
//! owner's candidates to the home shards, and the home shards' confirmations
//! and `all` levels back to the owner.
//!
//! One plain-data struct per message (a later issue gives them a wire
//! form); [`NotifierMsg`] wraps them for [`super::PeerBody::Notifier`].

use crate::peer::{Candidate, Ticket};
use crate::types::{ConversationId, Event, UserId};
use std::sync::Arc;

role_messages! {
    /// Every message the notifier role receives.
    Notifier: NotifierMsg {
        Notify,
        NotifyDone,
        NotifyAll,
        NotifyAllRound,
    }
}

/// O → H: a durable message's notification candidates homed on the
/// receiving shard (see `crate::notifier`).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Notify {
    /// The message (an `Event::Message`, shared with the fanout).
    pub event: Arc<Event>,
    /// A DM or group DM (default level `All`).
    pub direct: bool,
    /// Candidates and why.
    pub candidates: Vec<Candidate>,
    /// On the last chunk for this home: confirm with `NotifyDone` once
    /// the decisions' records are durable (the id is the message's LSN
    /// at the owner).
    pub handoff: Option<Ticket>,
}

/// H → O: the decisions of a hand-off are durable; the owner's
/// watermark may pass the message.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NotifyDone {
    /// The `Notify`'s ticket.
    pub handoff: Ticket,
}

/// H → O: `user`'s level for `conversation` is durably `all` (or no
/// longer): keeps the owner's derived set of `all`-subscribers
/// (`crate::notifier::AllSubscribers`). Sent once the `NotifySet`
/// record is durable, and when a user whose level is `all` is re-added.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NotifyAll {
    /// User.
    pub user: UserId,
    /// Conversation.
    pub conversation: ConversationId,
    /// Level `all`.
    pub all: bool,
}

/// H → O: every (user, conversation) of `H`'s users whose level is
/// `all`, for `O`'s conversations, in chunks; `O` replaces its entries
/// for `H`'s users when the `last` chunk arrives. Sent at `H`'s start
/// and when `O` restarted.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NotifyAllRound {
    /// (user, conversation), sorted.
    pub entries: Vec<(UserId, ConversationId)>,
    /// First chunk.
    pub first: bool,
    /// Last chunk.
    pub last: bool,
}
