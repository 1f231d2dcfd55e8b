//! The shard's contract with the world: the inputs and effects through which
//! a runtime drives a [`crate::Shard`], plus the vocabulary they carry (ids,
//! client requests, responses, events), defined in `crate::types` and
//! re-exported here so every public path is `courier_core::api::X`.
//!
//! Everything here is plain owned data. The runtime in `courier-net` turns
//! wire frames into [`Request`]s, feeds [`Input`]s to the shard and carries out
//! the [`Effect`]s it returns; the simulation in `core/tests` does the same
//! with fakes. Nothing in this module performs I/O.

use std::sync::Arc;

pub use crate::types::*;

/// Cross-shard messages. Opaque to the runtime: it only carries them —
/// as values between the cores of a node, as bytes ([`PeerMsg::encode`],
/// [`PeerMsg::decode`]) between nodes.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PeerMsg(pub(crate) crate::peer::PeerBody);

pub use crate::peer::wire::{PeerWireError, PEER_WIRE_VERSION};

impl PeerMsg {
    /// The message's wire form for a shard on another node: a version byte
    /// and the validated rkyv archive (`peer::wire`). Refuses a message
    /// larger than [`crate::constants::PEER_WIRE_BYTES_MAX`].
    pub fn encode(&self) -> Result<Vec<u8>, PeerWireError> {
        crate::peer::wire::encode(self)
    }

    /// "I restarted; my memory-only state is gone" — what a shard sends
    /// every other at start. The cluster runtime also hands it to a shard
    /// itself, on behalf of a peer, when messages between the two may have
    /// been lost (a node link broke, a group's leader moved): see
    /// `Shard::on_restarted` and docs/CLUSTER.md, "Clients on any node".
    pub fn restarted() -> PeerMsg {
        PeerMsg(crate::peer::PeerBody::Restarted)
    }

    /// Whether this is [`PeerMsg::restarted`].
    pub fn is_restarted(&self) -> bool {
        matches!(self.0, crate::peer::PeerBody::Restarted)
    }

    /// The message in `bytes` (from [`PeerMsg::encode`] on a node of the
    /// same cluster); checked, never panics.
    pub fn decode(bytes: &[u8]) -> Result<PeerMsg, PeerWireError> {
        crate::peer::wire::decode(bytes)
    }
}

/// Token of an outstanding history read requested by [`Effect::ReadHistory`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadToken(pub u64);

/// Everything that can happen to a shard.
#[derive(Debug)]
pub enum Input {
    /// A socket was accepted by this shard's runtime.
    Connected {
        /// Its id.
        conn: ConnId,
    },
    /// The first frame of a connection.
    Hello {
        /// Connection.
        conn: ConnId,
        /// Request id to reply to.
        req: ReqId,
        /// Credential.
        credential: Credential,
        /// Device.
        device: DeviceInfo,
    },
    /// A request on an authenticated (or not yet: the shard answers
    /// `Unauthenticated`) connection.
    Request {
        /// Connection.
        conn: ConnId,
        /// Request id.
        req: ReqId,
        /// What it asks.
        request: Request,
    },
    /// The socket is gone (closed, timed out, cut off as a slow consumer).
    Disconnected {
        /// Connection.
        conn: ConnId,
    },
    /// A message from another shard.
    Peer {
        /// Sender.
        from: ShardId,
        /// Body.
        msg: PeerMsg,
    },
    /// Every record with LSN ≤ `lsn` is durable.
    Durable {
        /// Highest durable LSN.
        lsn: Lsn,
    },
    /// The WAL failed for good (sticky): stop acknowledging writes.
    StorageFailed {
        /// What failed.
        reason: String,
    },
    /// Messages requested by [`Effect::ReadHistory`], ascending by seq: the
    /// whole range asked for, or fewer when the read failed (the core then
    /// answers the request `Unavailable`, cause `ReadFailed`).
    HistoryRead {
        /// The request's token.
        token: ReadToken,
        /// Each message's seq and its `MessagePosted` record payload (the
        /// bytes the core appended with kind
        /// [`crate::record::KIND_MESSAGE_POSTED`]).
        messages: Vec<(Seq, bytes::Bytes)>,
    },
    /// Time passes (the runtime sends one every TICK_MS).
    Tick,
    /// The push gateway's answer to an [`Effect::Push`].
    PushResult {
        /// The push's id.
        id: PushId,
        /// What the gateway said.
        outcome: PushOutcome,
    },
}

/// Id of a queued push or clear: the LSN of its `PushQueued` record on the
/// home shard (unique, and the same after replay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushId(pub u64);

/// What a push asks the gateway to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushAction {
    /// Show a notification.
    Notify,
    /// Retract the notification for this message (it was read) and update
    /// the badge.
    Clear,
}

/// One POST to the push gateway (see docs/NOTIFICATIONS.md for the JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// Notify or clear.
    pub action: PushAction,
    /// Recipient.
    pub user: UserId,
    /// Kinds of the user's devices connected when the push was sent (the
    /// gateway targets the user's registered push tokens).
    pub devices: Vec<DeviceKind>,
    /// Conversation.
    pub conversation: ConversationId,
    /// Message.
    pub seq: Seq,
    /// Why it notifies (the gateway JSON's `kind`: `dm`, `mention`,
    /// `channel`; `keyword` is reserved).
    pub reason: NotifyReason,
    /// Author.
    pub sender: UserId,
    /// Start of the body (at most PREVIEW_BYTES_MAX); the runtime may
    /// redact it.
    pub preview: String,
    /// The user's unread badge: conversations with a pushed, unread message.
    pub badge: u32,
    /// Stable across retries and restarts: the gateway drops repeats.
    pub idempotency_key: String,
}

/// The gateway's answer to one push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// 2xx: delivered; the shard records it durably and never sends it again.
    Delivered,
    /// Network error, timeout, 5xx or 429: retried with backoff.
    Retry,
    /// Any other status: the gateway refuses it for good; dropped.
    Rejected,
}

/// Everything a shard asks the world to do. The runtime executes effects in
/// the order given.
#[derive(Debug)]
pub enum Effect {
    /// Append a record to this shard's WAL. The shard numbers records itself:
    /// the runtime asserts the WAL assigned `lsn`.
    Append {
        /// Expected LSN.
        lsn: Lsn,
        /// Record kind (see `crate::record`).
        kind: u8,
        /// rkyv bytes.
        payload: Vec<u8>,
    },
    /// Carry a message to another shard (or to this one: the runtime loops it
    /// back as an `Input::Peer`).
    ToShard {
        /// Destination.
        shard: ShardId,
        /// Body.
        msg: PeerMsg,
    },
    /// Answer a request on a connection held by this shard.
    Reply {
        /// Connection.
        conn: ConnId,
        /// Request id.
        req: ReqId,
        /// Outcome.
        result: Result<Response, Reject>,
    },
    /// Send one event to these local connections. The runtime encodes it once.
    Deliver {
        /// Connections on this shard.
        conns: Vec<ConnId>,
        /// The event.
        event: Arc<Event>,
    },
    /// Close a local connection.
    Close {
        /// Connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Read messages `from ..= to` of a conversation back from the shard's
    /// history store (every `MessagePosted` record the runtime reported
    /// durable is in it, keyed by conversation and seq; see
    /// [`crate::record::Record::history_key`]); answer with
    /// `Input::HistoryRead`. At most `HISTORY_PAGE_MAX` messages, all durable.
    ReadHistory {
        /// Token to answer with.
        token: ReadToken,
        /// Conversation.
        conversation: ConversationId,
        /// First seq (≥ 1).
        from: Seq,
        /// Last seq, inclusive (≥ `from`).
        to: Seq,
    },
    /// POST this to the push gateway; answer with `Input::PushResult`. Only
    /// emitted for durable outbox entries, at most PUSH_IN_FLIGHT_MAX at once.
    Push {
        /// Id to answer with.
        id: PushId,
        /// The request.
        push: Box<Push>,
    },
}
