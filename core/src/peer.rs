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
//! handler sends [`conn::Reply`] to `origin.conn.shard()`.
//!
//! Messages are grouped by the role that receives them: one module per role
//! (`peer::owner::Send` is a message to a conversation's owner), one struct
//! per message, one enum per role wrapping them; each role has one entry
//! point taking its enum, and `Shard::on_peer` only picks the role.

/// Declares a role's message enum — one variant per message struct, named
/// like it — and `From` each struct into [`PeerBody`], so a handler sends
/// `peer::owner::Send { .. }` and the role is implied.
macro_rules! role_messages {
    ($(#[$doc:meta])* $role:ident: $enum:ident { $($msg:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
        pub enum $enum {
            $(
                #[doc = concat!("See [`", stringify!($msg), "`].")]
                $msg($msg),
            )+
        }

        $(
            impl From<$msg> for $crate::peer::PeerBody {
                fn from(m: $msg) -> Self {
                    $crate::peer::PeerBody::$role($enum::$msg(m))
                }
            }
        )+
    };
}

pub(crate) mod conn;
pub(crate) mod gather;
pub(crate) mod home;
pub(crate) mod notifier;
pub(crate) mod owner;
pub(crate) mod wire;
pub(crate) mod workspace;

use crate::types::{
    ConnId, ConversationId, ConversationInfo, DeviceInfo, Message, ReqId, Role, Seq, UserId,
    WorkspaceId,
};

/// Where a reply goes: a connection (on its shard) and the request id.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
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
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Ticket {
    /// The issuer's incarnation.
    pub incarnation: u64,
    /// The issuer's id.
    pub id: u64,
}

/// An authenticated user acting.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Who {
    /// The session's user.
    pub user: UserId,
    /// The user's workspace.
    pub workspace: WorkspaceId,
    /// The user's workspace role as the home shard knew it when the
    /// session began (kept current: a role change updates every session).
    pub role: Role,
}

/// A notification candidate (see [`crate::notify::candidates`]).
pub use crate::notify::Candidate;

/// Who performs a membership removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Actor {
    /// A user session.
    User(Who),
    /// An admin session.
    Admin,
}

/// A device registration sent to a restarted home shard.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SummaryItem {
    /// The conversation.
    pub conversation: ConversationId,
    /// The user's read cursor (from the home shard).
    pub read: Seq,
    /// What is wanted.
    pub mode: SummaryMode,
}

/// An owner's answer about one conversation.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
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

/// A cross-shard message, grouped by the role that receives it (see the
/// module doc for the roles `C`, `H`, `O`, `W`). Each role's messages are
/// plain-data structs in its submodule, wrapped by its enum.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum PeerBody {
    /// New incarnation → all: "I restarted; my memory-only state is gone".
    /// Receivers forget the sender's connections, clear it from interest
    /// sets, re-send their subscriptions, devices and membership rounds.
    Restarted,
    /// To the connection role.
    Conn(conn::ConnMsg),
    /// To the owner role.
    Owner(owner::OwnerMsg),
    /// To the home role.
    Home(home::HomeMsg),
    /// To the workspace role.
    Workspace(workspace::WorkspaceMsg),
    /// To a scatter-gather at the home shard.
    Gather(gather::GatherMsg),
    /// To the notifier (home side: `Notify`; owner side: the rest).
    Notifier(notifier::NotifierMsg),
}
