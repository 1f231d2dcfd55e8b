//! The WAL records of a shard: every persistent state change is one
//! [`Record`], encoded with rkyv and tagged with a kind byte.
//!
//! The live path builds a record, appends it (`Effect::Append`) and applies
//! it; replay decodes the same bytes and applies them with the same function
//! (`Shard::apply`), so live state and recovered state cannot diverge.
//! Records hold raw `u64` ids and small stored enums so that the on-disk
//! format does not depend on the API types' derives.
//!
//! Format: the payload is the rkyv archive (0.8, little-endian, validated
//! with bytecheck on decode) of the whole [`Record`] enum; the WAL frame's
//! kind byte repeats the variant ([`Record::kind`]) so tools can filter
//! without decoding, and decoding checks the two agree.
//!
//! Failure contract: [`Record::decode`] returns a [`RecordError`] for an
//! unknown kind, bytes that do not validate, or a kind byte that disagrees
//! with the payload; it never panics on any input.

use rkyv::{rancor, util::AlignedVec, Archive, Deserialize, Serialize};

use crate::types::{Broadcast, ChangeKind, ConversationKind, NotifyLevel, NotifyReason, Role};

/// Kind byte of [`Record::WorkspaceCreated`].
pub const KIND_WORKSPACE_CREATED: u8 = 1;
/// Kind byte of [`Record::UserClaimed`].
pub const KIND_USER_CLAIMED: u8 = 2;
/// Kind byte of [`Record::UserConfirmed`].
pub const KIND_USER_CONFIRMED: u8 = 3;
/// Kind byte of [`Record::UserCreated`].
pub const KIND_USER_CREATED: u8 = 4;
/// Kind byte of [`Record::TokenIssued`].
pub const KIND_TOKEN_ISSUED: u8 = 5;
/// Kind byte of [`Record::TokensRevoked`].
pub const KIND_TOKENS_REVOKED: u8 = 6;
/// Kind byte of [`Record::ChannelClaimed`].
pub const KIND_CHANNEL_CLAIMED: u8 = 7;
/// Kind byte of [`Record::ChannelConfirmed`].
pub const KIND_CHANNEL_CONFIRMED: u8 = 8;
/// Kind byte of [`Record::ConversationCreated`].
pub const KIND_CONVERSATION_CREATED: u8 = 9;
/// Kind byte of [`Record::MemberAdded`].
pub const KIND_MEMBER_ADDED: u8 = 10;
/// Kind byte of [`Record::MemberRemoved`].
pub const KIND_MEMBER_REMOVED: u8 = 11;
/// Kind byte of [`Record::MessagePosted`].
pub const KIND_MESSAGE_POSTED: u8 = 12;
/// Kind byte of [`Record::CursorSet`].
pub const KIND_CURSOR_SET: u8 = 13;
/// Kind byte of [`Record::NotifySet`].
pub const KIND_NOTIFY_SET: u8 = 14;
/// Kind byte of [`Record::DndSet`].
pub const KIND_DND_SET: u8 = 15;
/// Kind byte of [`Record::PushQueued`].
pub const KIND_PUSH_QUEUED: u8 = 16;
/// Kind byte of [`Record::PushSettled`].
pub const KIND_PUSH_SETTLED: u8 = 17;
/// Kind byte of [`Record::NotifyHandedOff`].
pub const KIND_NOTIFY_HANDED_OFF: u8 = 18;
/// Kind byte of [`Record::ProfileSet`].
pub const KIND_PROFILE_SET: u8 = 19;
/// Kind byte of [`Record::DirectoryNameSet`].
pub const KIND_DIRECTORY_NAME_SET: u8 = 20;
/// Kind byte of [`Record::RoleSet`].
pub const KIND_ROLE_SET: u8 = 21;
/// Kind byte of [`Record::UserRoleSet`].
pub const KIND_USER_ROLE_SET: u8 = 22;
/// Kind byte of [`Record::InviteCreated`].
pub const KIND_INVITE_CREATED: u8 = 23;
/// Kind byte of [`Record::InviteRedeemed`].
pub const KIND_INVITE_REDEEMED: u8 = 24;
/// Kind byte of [`Record::InviteRevoked`].
pub const KIND_INVITE_REVOKED: u8 = 25;
/// Kind byte of [`Record::InvitePolicySet`].
pub const KIND_INVITE_POLICY_SET: u8 = 26;
/// Kind byte of [`Record::ChannelRenameClaimed`] (issue 16, part 4).
pub const KIND_CHANNEL_RENAME_CLAIMED: u8 = 27;
/// Kind byte of [`Record::ChannelRenameConfirmed`] (issue 16, part 4).
pub const KIND_CHANNEL_RENAME_CONFIRMED: u8 = 28;
/// Kind byte of [`Record::MessageChanged`] (issue 17; kinds 40 and up are
/// the messages that live).
pub const KIND_MESSAGE_CHANGED: u8 = 40;
/// Kind byte of [`Record::ReplyPosted`] (issue 17, part 2: threads; kinds
/// 41 to 44 are the threads').
pub const KIND_REPLY_POSTED: u8 = 41;

/// A workspace role as stored.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredRole {
    /// [`Role::Owner`].
    Owner,
    /// [`Role::Admin`].
    Admin,
    /// [`Role::Member`].
    Member,
    /// [`Role::Guest`].
    Guest,
    /// [`Role::Deactivated`].
    Deactivated,
}

impl From<Role> for StoredRole {
    fn from(r: Role) -> StoredRole {
        match r {
            Role::Owner => StoredRole::Owner,
            Role::Admin => StoredRole::Admin,
            Role::Member => StoredRole::Member,
            Role::Guest => StoredRole::Guest,
            Role::Deactivated => StoredRole::Deactivated,
        }
    }
}

impl From<StoredRole> for Role {
    fn from(r: StoredRole) -> Role {
        match r {
            StoredRole::Owner => Role::Owner,
            StoredRole::Admin => Role::Admin,
            StoredRole::Member => Role::Member,
            StoredRole::Guest => Role::Guest,
            StoredRole::Deactivated => Role::Deactivated,
        }
    }
}

/// Why a push notifies, as stored.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredReason {
    /// [`NotifyReason::Dm`].
    Dm,
    /// [`NotifyReason::Mention`].
    Mention,
    /// [`NotifyReason::Broadcast`].
    Broadcast,
    /// [`NotifyReason::Channel`].
    Channel,
}

impl From<NotifyReason> for StoredReason {
    fn from(r: NotifyReason) -> StoredReason {
        match r {
            NotifyReason::Dm => StoredReason::Dm,
            NotifyReason::Mention => StoredReason::Mention,
            NotifyReason::Broadcast => StoredReason::Broadcast,
            NotifyReason::Channel => StoredReason::Channel,
        }
    }
}

impl From<StoredReason> for NotifyReason {
    fn from(r: StoredReason) -> NotifyReason {
        match r {
            StoredReason::Dm => NotifyReason::Dm,
            StoredReason::Mention => NotifyReason::Mention,
            StoredReason::Broadcast => NotifyReason::Broadcast,
            StoredReason::Channel => NotifyReason::Channel,
        }
    }
}

/// A conversation kind as stored.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredKind {
    /// [`ConversationKind::PublicChannel`].
    PublicChannel,
    /// [`ConversationKind::PrivateChannel`].
    PrivateChannel,
    /// [`ConversationKind::Dm`].
    Dm,
    /// [`ConversationKind::GroupDm`].
    GroupDm,
}

impl From<ConversationKind> for StoredKind {
    fn from(kind: ConversationKind) -> StoredKind {
        match kind {
            ConversationKind::PublicChannel => StoredKind::PublicChannel,
            ConversationKind::PrivateChannel => StoredKind::PrivateChannel,
            ConversationKind::Dm => StoredKind::Dm,
            ConversationKind::GroupDm => StoredKind::GroupDm,
        }
    }
}

impl From<StoredKind> for ConversationKind {
    fn from(kind: StoredKind) -> ConversationKind {
        match kind {
            StoredKind::PublicChannel => ConversationKind::PublicChannel,
            StoredKind::PrivateChannel => ConversationKind::PrivateChannel,
            StoredKind::Dm => ConversationKind::Dm,
            StoredKind::GroupDm => ConversationKind::GroupDm,
        }
    }
}

/// A notification level as stored.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredLevel {
    /// [`NotifyLevel::All`].
    All,
    /// [`NotifyLevel::Mentions`].
    Mentions,
    /// [`NotifyLevel::Nothing`].
    Nothing,
}

impl From<NotifyLevel> for StoredLevel {
    fn from(level: NotifyLevel) -> StoredLevel {
        match level {
            NotifyLevel::All => StoredLevel::All,
            NotifyLevel::Mentions => StoredLevel::Mentions,
            NotifyLevel::Nothing => StoredLevel::Nothing,
        }
    }
}

impl From<StoredLevel> for NotifyLevel {
    fn from(level: StoredLevel) -> NotifyLevel {
        match level {
            StoredLevel::All => NotifyLevel::All,
            StoredLevel::Mentions => NotifyLevel::Mentions,
            StoredLevel::Nothing => NotifyLevel::Nothing,
        }
    }
}

/// A broadcast mention as stored.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredBroadcast {
    /// [`Broadcast::None`].
    None,
    /// [`Broadcast::Here`].
    Here,
    /// [`Broadcast::Channel`].
    Channel,
}

impl From<Broadcast> for StoredBroadcast {
    fn from(b: Broadcast) -> StoredBroadcast {
        match b {
            Broadcast::None => StoredBroadcast::None,
            Broadcast::Here => StoredBroadcast::Here,
            Broadcast::Channel => StoredBroadcast::Channel,
        }
    }
}

impl From<StoredBroadcast> for Broadcast {
    fn from(b: StoredBroadcast) -> Broadcast {
        match b {
            StoredBroadcast::None => Broadcast::None,
            StoredBroadcast::Here => Broadcast::Here,
            StoredBroadcast::Channel => Broadcast::Channel,
        }
    }
}

pub use stored::{ChangeRecord, MessageRecord, ProfileRecord, Record, ReplyRecord, StoredChange};

// rkyv derives public resolver types whose fields carry no docs.
#[allow(missing_docs)]
mod stored {
    use super::{ChangeKind, StoredBroadcast, StoredKind, StoredLevel, StoredReason, StoredRole};
    use rkyv::{Archive, Deserialize, Serialize};

    /// A posted message: the authoritative copy of a message is this record.
    #[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
    pub struct MessageRecord {
        /// Conversation.
        pub conversation: u64,
        /// Its seq (head + 1 when sequenced).
        pub seq: u64,
        /// Author.
        pub sender: u64,
        /// The author's idempotency key (rebuilds the dedup window on replay).
        pub client_msg_id: u128,
        /// Server time at sequencing, ms.
        pub ts: u64,
        /// Text.
        pub body: String,
        /// Directly mentioned users (unique, as sent).
        pub mentions: Vec<u64>,
        /// `@channel` / `@here` as sent.
        pub broadcast: StoredBroadcast,
        /// The broadcast was ignored (conversation over BROADCAST_MEMBERS_MAX).
        pub broadcast_ignored: bool,
    }

    /// What a change does, as stored (issue 17).
    #[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
    pub enum StoredChange {
        /// [`ChangeKind::Edit`].
        Edit,
        /// [`ChangeKind::Delete`].
        Delete,
        /// [`ChangeKind::React`].
        React,
        /// [`ChangeKind::Unreact`].
        Unreact,
        // channel settings (issue 16, part 4): appended, target 0
        /// [`ChangeKind::Topic`].
        Topic,
        /// [`ChangeKind::Purpose`].
        Purpose,
        /// [`ChangeKind::Rename`].
        Rename,
        /// [`ChangeKind::Archive`].
        Archive,
        /// [`ChangeKind::Unarchive`].
        Unarchive,
        /// [`ChangeKind::PostingEveryone`].
        PostingEveryone,
        /// [`ChangeKind::PostingAdmins`].
        PostingAdmins,
        // pins (issue 17, part 3): appended
        /// [`ChangeKind::Pin`].
        Pin,
        /// [`ChangeKind::Unpin`].
        Unpin,
    }

    impl From<ChangeKind> for StoredChange {
        fn from(k: ChangeKind) -> StoredChange {
            match k {
                ChangeKind::Edit => StoredChange::Edit,
                ChangeKind::Delete => StoredChange::Delete,
                ChangeKind::React => StoredChange::React,
                ChangeKind::Unreact => StoredChange::Unreact,
                ChangeKind::Topic => StoredChange::Topic,
                ChangeKind::Purpose => StoredChange::Purpose,
                ChangeKind::Rename => StoredChange::Rename,
                ChangeKind::Archive => StoredChange::Archive,
                ChangeKind::Unarchive => StoredChange::Unarchive,
                ChangeKind::PostingEveryone => StoredChange::PostingEveryone,
                ChangeKind::PostingAdmins => StoredChange::PostingAdmins,
                ChangeKind::Pin => StoredChange::Pin,
                ChangeKind::Unpin => StoredChange::Unpin,
            }
        }
    }

    impl From<StoredChange> for ChangeKind {
        fn from(k: StoredChange) -> ChangeKind {
            match k {
                StoredChange::Edit => ChangeKind::Edit,
                StoredChange::Delete => ChangeKind::Delete,
                StoredChange::React => ChangeKind::React,
                StoredChange::Unreact => ChangeKind::Unreact,
                StoredChange::Topic => ChangeKind::Topic,
                StoredChange::Purpose => ChangeKind::Purpose,
                StoredChange::Rename => ChangeKind::Rename,
                StoredChange::Archive => ChangeKind::Archive,
                StoredChange::Unarchive => ChangeKind::Unarchive,
                StoredChange::PostingEveryone => ChangeKind::PostingEveryone,
                StoredChange::PostingAdmins => ChangeKind::PostingAdmins,
                StoredChange::Pin => ChangeKind::Pin,
                StoredChange::Unpin => ChangeKind::Unpin,
            }
        }
    }

    /// A change of an earlier message (issue 17): its own seq in the
    /// conversation, the target's seq, who and what. Also a channel
    /// setting (issue 16, part 4: a setting kind, target 0, the value as
    /// text), sequenced and stored exactly like a change. Boxed in
    /// [`Record::MessageChanged`] so the record enum keeps its size.
    #[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
    pub struct ChangeRecord {
        /// Conversation.
        pub conversation: u64,
        /// Its own seq (head + 1 when sequenced).
        pub seq: u64,
        /// The message changed (a message, never a change).
        pub target: u64,
        /// Who changed it.
        pub actor: u64,
        /// Server time at sequencing, ms.
        pub ts: u64,
        /// What.
        pub kind: StoredChange,
        /// New text (edit) or emoji (reactions); empty for a delete.
        pub text: String,
    }

    /// A reply in a thread (issue 17, part 2): a message exactly as
    /// [`MessageRecord`] stores it, plus its root and whether it is also
    /// shown in the channel. Boxed in [`Record::ReplyPosted`] so the
    /// record enum keeps its size.
    #[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
    pub struct ReplyRecord {
        /// The message (its own seq, sender, body, mentions, ...).
        pub message: MessageRecord,
        /// The seq of the thread's root (a message, not a change or reply).
        pub root: u64,
        /// Also shown in the channel.
        pub in_channel: bool,
    }

    /// A user's whole profile as stored (boxed in [`Record::ProfileSet`], so
    /// the record enum's archived size, which old records were written
    /// with, does not change).
    #[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
    pub struct ProfileRecord {
        /// Display name.
        pub display_name: String,
        /// Real name.
        pub real_name: String,
        /// Title.
        pub title: String,
        /// Time zone.
        pub time_zone: String,
        /// Avatar URL.
        pub avatar_url: String,
        /// Status emoji.
        pub status_emoji: String,
        /// Status text.
        pub status_text: String,
        /// Status expiry, ms.
        pub status_expires: Option<u64>,
    }

    /// One WAL record. Which shard writes it is stated per variant; replaying a
    /// record on another shard is an inconsistency.
    #[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
    pub enum Record {
        /// Workspace shard: a workspace exists.
        WorkspaceCreated {
            /// Id (allocated by this shard).
            workspace: u64,
            /// Display name.
            name: String,
            /// Creation time, ms.
            ts: u64,
        },
        /// Workspace shard: a user name is taken by a user id allocated here;
        /// the user's home shard is asked to create the user.
        UserClaimed {
            /// Workspace.
            workspace: u64,
            /// The new user's id (allocated by this shard, homed anywhere).
            user: u64,
            /// Handle.
            name: String,
        },
        /// Workspace shard: the user's home shard has durably created it.
        UserConfirmed {
            /// Workspace.
            workspace: u64,
            /// User.
            user: u64,
        },
        /// Home shard: a user exists, with its first token.
        UserCreated {
            /// User.
            user: u64,
            /// Workspace.
            workspace: u64,
            /// Handle.
            name: String,
            /// The workspace's display name (immutable; copied for `Boot`).
            workspace_name: String,
            /// First token's id.
            token: u64,
            /// sha256 of the token's secret.
            token_hash: [u8; 32],
        },
        /// Home shard: another token.
        TokenIssued {
            /// User.
            user: u64,
            /// Token id.
            token: u64,
            /// sha256 of the secret.
            token_hash: [u8; 32],
        },
        /// Home shard: one token (`Some`) or all tokens (`None`) revoked.
        TokensRevoked {
            /// User.
            user: u64,
            /// Which.
            token: Option<u64>,
        },
        /// Workspace shard: a channel name is taken by a conversation id
        /// allocated here; the owner shard is asked to create the channel.
        ChannelClaimed {
            /// Workspace.
            workspace: u64,
            /// The new channel's id.
            conversation: u64,
            /// Name.
            name: String,
            /// Private channel.
            private: bool,
            /// Creator (its first member).
            creator: u64,
        },
        /// Workspace shard: the owner shard has durably created the channel.
        ChannelConfirmed {
            /// Workspace.
            workspace: u64,
            /// Channel.
            conversation: u64,
        },
        /// Owner shard: a conversation exists with these first members.
        ConversationCreated {
            /// Id (allocated by the workspace shard for channels, here for DMs).
            conversation: u64,
            /// Workspace.
            workspace: u64,
            /// Kind.
            kind: StoredKind,
            /// Channel name; empty for DMs.
            name: String,
            /// First members, sorted and unique.
            members: Vec<u64>,
            /// The creator of a channel (owner role); `None` for DMs.
            creator: Option<u64>,
            /// Creation time, ms.
            ts: u64,
        },
        /// Owner shard: a user joined or was added.
        MemberAdded {
            /// Conversation.
            conversation: u64,
            /// User.
            user: u64,
            /// Time, ms.
            ts: u64,
        },
        /// Owner shard: a user left or was removed.
        MemberRemoved {
            /// Conversation.
            conversation: u64,
            /// User.
            user: u64,
            /// Time, ms.
            ts: u64,
        },
        /// Owner shard: a message.
        MessagePosted(MessageRecord),
        /// Home shard: a read cursor moved forward.
        CursorSet {
            /// User.
            user: u64,
            /// Conversation.
            conversation: u64,
            /// New cursor.
            seq: u64,
        },
        /// Home shard: per-conversation notification preference.
        NotifySet {
            /// User.
            user: u64,
            /// Conversation.
            conversation: u64,
            /// Level.
            level: StoredLevel,
            /// Muted.
            muted: bool,
        },
        /// Home shard: do-not-disturb window.
        DndSet {
            /// User.
            user: u64,
            /// End, ms; `None` ends it.
            until: Option<u64>,
        },
        /// Home shard: a push (or, with `clear`, a retraction) joins the
        /// outbox; its id is this record's LSN.
        PushQueued {
            /// Recipient.
            user: u64,
            /// Conversation.
            conversation: u64,
            /// Message.
            seq: u64,
            /// Author.
            sender: u64,
            /// Why.
            reason: StoredReason,
            /// Start of the body.
            preview: String,
            /// Not before this time, ms (the grace window).
            due: u64,
            /// A retraction of an earlier delivered push.
            clear: bool,
        },
        /// Home shard: an outbox entry is done: `delivered` after the
        /// gateway's 2xx, otherwise cancelled (read in time) or refused.
        PushSettled {
            /// The `PushQueued` record's LSN.
            id: u64,
            /// The gateway answered 2xx.
            delivered: bool,
        },
        /// Owner shard: the notification hand-off watermark. Every message
        /// of this shard's conversations whose record has an LSN ≤ `lsn`
        /// was handed off, and every home shard with candidates confirmed
        /// its decisions durable. A restart hands off again the messages
        /// after it (docs/NOTIFICATIONS.md, "The hand-off").
        NotifyHandedOff {
            /// The highest such message LSN (below this record's own).
            lsn: u64,
        },
        /// Home shard: a user's profile, whole, at its new version (one more
        /// than the last).
        ProfileSet {
            /// User.
            user: u64,
            /// The new version.
            version: u64,
            /// The profile.
            profile: Box<ProfileRecord>,
        },
        /// Workspace shard: the directory's copy of a user's display name,
        /// from the user's home shard (only a higher version is written).
        DirectoryNameSet {
            /// Workspace.
            workspace: u64,
            /// User.
            user: u64,
            /// Display name (may be empty).
            display_name: String,
            /// The profile version it is from.
            version: u64,
        },
        /// Workspace shard: a user's role, authoritative, at its new
        /// version (one more than the last; users without one are members
        /// at version 0).
        RoleSet {
            /// Workspace.
            workspace: u64,
            /// User.
            user: u64,
            /// The role.
            role: StoredRole,
            /// The new version.
            version: u64,
        },
        /// Home shard: the copy of a user's role the workspace shard sent
        /// (only a higher version is written). `Deactivated` is applied
        /// with the revocation of every token.
        UserRoleSet {
            /// User.
            user: u64,
            /// The role.
            role: StoredRole,
            /// Its version at the workspace shard.
            version: u64,
        },
        /// Workspace shard: an invite exists (issue 16, item 4). Applying
        /// it also drops the workspace's invites dead at `created` (used
        /// up, expired or revoked), so their number stays bounded.
        InviteCreated {
            /// Workspace.
            workspace: u64,
            /// The invite's id (the workspace's next one).
            invite: u64,
            /// sha256 of its secret.
            hash: [u8; 32],
            /// Its creator; 0: an admin session.
            creator: u64,
            /// The role redeemed users get.
            role: StoredRole,
            /// How many users it may create.
            max_uses: u32,
            /// Creation time, ms.
            created: u64,
            /// Valid before this time, ms.
            expires: u64,
        },
        /// Workspace shard: an invite was redeemed: one use taken, and the
        /// new user's handle claimed exactly as [`Record::UserClaimed`]
        /// does (with the invite's role at version 1 unless it is member).
        InviteRedeemed {
            /// Workspace.
            workspace: u64,
            /// The invite.
            invite: u64,
            /// The new user's id (allocated by this shard).
            user: u64,
            /// Handle.
            name: String,
        },
        /// Workspace shard: an admin revoked an invite.
        InviteRevoked {
            /// Workspace.
            workspace: u64,
            /// The invite.
            invite: u64,
        },
        /// Workspace shard: whether members may create invites.
        InvitePolicySet {
            /// Workspace.
            workspace: u64,
            /// Members may create member and guest invites.
            members_may_invite: bool,
        },
        // messages that live (issue 17)
        /// Owner shard: an edit, delete or reaction of an earlier message,
        /// sequenced like a message (boxed: the enum keeps its size).
        MessageChanged(Box<ChangeRecord>),
        // channel settings (issue 16, part 4); channel settings themselves
        // are `MessageChanged` records of a setting kind (target 0)
        /// Workspace shard: a channel's new name is claimed (taken, not
        /// yet resolvable; the old one still resolves); the owner shard is
        /// asked to apply the rename.
        ChannelRenameClaimed {
            /// Workspace.
            workspace: u64,
            /// Channel.
            conversation: u64,
            /// Its name until confirmed.
            old: String,
            /// The new name.
            new: String,
            /// Who renames it.
            actor: u64,
            /// Their role when they asked.
            role: StoredRole,
        },
        /// Workspace shard: the owner applied the rename (`applied`: the
        /// old name is freed, the new one resolves) or refused it (the new
        /// name is freed).
        ChannelRenameConfirmed {
            /// Workspace.
            workspace: u64,
            /// Channel.
            conversation: u64,
            /// Applied, or refused.
            applied: bool,
        },
        // threads (issue 17, part 2)
        /// Owner shard: a reply in a thread, sequenced like a message.
        ReplyPosted(Box<ReplyRecord>),
    }
}

/// Why a record's bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The kind byte names no record.
    #[error("unknown record kind {kind}")]
    UnknownKind {
        /// The byte.
        kind: u8,
    },
    /// The payload failed validation.
    #[error("record of kind {kind} ({name}) does not validate: {detail}")]
    Invalid {
        /// The kind byte.
        kind: u8,
        /// Its name.
        name: &'static str,
        /// The validator's message.
        detail: String,
    },
    /// The payload is a different record than the kind byte says.
    #[error("kind byte {kind} but payload is a {found} record")]
    KindMismatch {
        /// The kind byte.
        kind: u8,
        /// The payload's kind name.
        found: &'static str,
    },
}

/// Name of a kind byte (`None` if unknown), for tools and errors.
pub fn kind_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        KIND_WORKSPACE_CREATED => "WorkspaceCreated",
        KIND_USER_CLAIMED => "UserClaimed",
        KIND_USER_CONFIRMED => "UserConfirmed",
        KIND_USER_CREATED => "UserCreated",
        KIND_TOKEN_ISSUED => "TokenIssued",
        KIND_TOKENS_REVOKED => "TokensRevoked",
        KIND_CHANNEL_CLAIMED => "ChannelClaimed",
        KIND_CHANNEL_CONFIRMED => "ChannelConfirmed",
        KIND_CONVERSATION_CREATED => "ConversationCreated",
        KIND_MEMBER_ADDED => "MemberAdded",
        KIND_MEMBER_REMOVED => "MemberRemoved",
        KIND_MESSAGE_POSTED => "MessagePosted",
        KIND_CURSOR_SET => "CursorSet",
        KIND_NOTIFY_SET => "NotifySet",
        KIND_DND_SET => "DndSet",
        KIND_PUSH_QUEUED => "PushQueued",
        KIND_PUSH_SETTLED => "PushSettled",
        KIND_NOTIFY_HANDED_OFF => "NotifyHandedOff",
        KIND_PROFILE_SET => "ProfileSet",
        KIND_DIRECTORY_NAME_SET => "DirectoryNameSet",
        KIND_ROLE_SET => "RoleSet",
        KIND_USER_ROLE_SET => "UserRoleSet",
        KIND_INVITE_CREATED => "InviteCreated",
        KIND_INVITE_REDEEMED => "InviteRedeemed",
        KIND_INVITE_REVOKED => "InviteRevoked",
        KIND_INVITE_POLICY_SET => "InvitePolicySet",
        KIND_MESSAGE_CHANGED => "MessageChanged",
        KIND_CHANNEL_RENAME_CLAIMED => "ChannelRenameClaimed",
        KIND_CHANNEL_RENAME_CONFIRMED => "ChannelRenameConfirmed",
        KIND_REPLY_POSTED => "ReplyPosted",
        _ => return None,
    })
}

impl Record {
    /// The kind byte of this record.
    pub fn kind(&self) -> u8 {
        match self {
            Record::WorkspaceCreated { .. } => KIND_WORKSPACE_CREATED,
            Record::UserClaimed { .. } => KIND_USER_CLAIMED,
            Record::UserConfirmed { .. } => KIND_USER_CONFIRMED,
            Record::UserCreated { .. } => KIND_USER_CREATED,
            Record::TokenIssued { .. } => KIND_TOKEN_ISSUED,
            Record::TokensRevoked { .. } => KIND_TOKENS_REVOKED,
            Record::ChannelClaimed { .. } => KIND_CHANNEL_CLAIMED,
            Record::ChannelConfirmed { .. } => KIND_CHANNEL_CONFIRMED,
            Record::ConversationCreated { .. } => KIND_CONVERSATION_CREATED,
            Record::MemberAdded { .. } => KIND_MEMBER_ADDED,
            Record::MemberRemoved { .. } => KIND_MEMBER_REMOVED,
            Record::MessagePosted(_) => KIND_MESSAGE_POSTED,
            Record::CursorSet { .. } => KIND_CURSOR_SET,
            Record::NotifySet { .. } => KIND_NOTIFY_SET,
            Record::DndSet { .. } => KIND_DND_SET,
            Record::PushQueued { .. } => KIND_PUSH_QUEUED,
            Record::PushSettled { .. } => KIND_PUSH_SETTLED,
            Record::NotifyHandedOff { .. } => KIND_NOTIFY_HANDED_OFF,
            Record::ProfileSet { .. } => KIND_PROFILE_SET,
            Record::DirectoryNameSet { .. } => KIND_DIRECTORY_NAME_SET,
            Record::RoleSet { .. } => KIND_ROLE_SET,
            Record::UserRoleSet { .. } => KIND_USER_ROLE_SET,
            Record::InviteCreated { .. } => KIND_INVITE_CREATED,
            Record::InviteRedeemed { .. } => KIND_INVITE_REDEEMED,
            Record::InviteRevoked { .. } => KIND_INVITE_REVOKED,
            Record::InvitePolicySet { .. } => KIND_INVITE_POLICY_SET,
            Record::MessageChanged(_) => KIND_MESSAGE_CHANGED,
            Record::ChannelRenameClaimed { .. } => KIND_CHANNEL_RENAME_CLAIMED,
            Record::ChannelRenameConfirmed { .. } => KIND_CHANNEL_RENAME_CONFIRMED,
            Record::ReplyPosted(_) => KIND_REPLY_POSTED,
        }
    }

    /// The rkyv payload of this record.
    pub fn encode(&self) -> Vec<u8> {
        match rkyv::to_bytes::<rancor::Error>(self) {
            Ok(bytes) => bytes.into_vec(),
            // Serializing plain owned data into memory cannot fail short of
            // allocation failure, which aborts anyway.
            Err(e) => panic!("record serialization failed: {e}"),
        }
    }

    /// Decodes and validates a record read back from the WAL. `payload`
    /// need not be aligned.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Record, RecordError> {
        let name = kind_name(kind).ok_or(RecordError::UnknownKind { kind })?;
        let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let record = rkyv::from_bytes::<Record, rancor::Error>(&aligned).map_err(|e| {
            RecordError::Invalid {
                kind,
                name,
                detail: e.to_string(),
            }
        })?;
        if record.kind() != kind {
            return Err(RecordError::KindMismatch {
                kind,
                found: kind_name(record.kind()).unwrap_or("?"),
            });
        }
        Ok(record)
    }

    /// The history-store key `(conversation, seq)` of a `MessagePosted`,
    /// `MessageChanged` or `ReplyPosted` record, `None` for every other kind (and for bytes that do not
    /// validate: the runtime stores only what the core wrote). The runtime
    /// uses it to copy each durable message into the shard's history store
    /// without knowing the record encoding; it validates the archive but
    /// deserializes nothing.
    pub fn history_key(kind: u8, payload: &[u8]) -> Option<(u64, u64)> {
        if kind != KIND_MESSAGE_POSTED && kind != KIND_MESSAGE_CHANGED && kind != KIND_REPLY_POSTED
        {
            return None;
        }
        let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let archived = rkyv::access::<stored::ArchivedRecord, rancor::Error>(&aligned).ok()?;
        match archived {
            stored::ArchivedRecord::MessagePosted(m) if kind == KIND_MESSAGE_POSTED => {
                Some((m.conversation.to_native(), m.seq.to_native()))
            }
            stored::ArchivedRecord::MessageChanged(c) if kind == KIND_MESSAGE_CHANGED => {
                Some((c.conversation.to_native(), c.seq.to_native()))
            }
            stored::ArchivedRecord::ReplyPosted(r) if kind == KIND_REPLY_POSTED => Some((
                r.message.conversation.to_native(),
                r.message.seq.to_native(),
            )),
            _ => None,
        }
    }

    /// Decodes an entry of the history store: a `MessagePosted`, a
    /// `MessageChanged` or a `ReplyPosted` record (the store keeps no kind byte; the archive
    /// names its variant). Anything else is an error.
    pub fn decode_history(payload: &[u8]) -> Result<Record, RecordError> {
        let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let record = rkyv::from_bytes::<Record, rancor::Error>(&aligned).map_err(|e| {
            RecordError::Invalid {
                kind: KIND_MESSAGE_POSTED,
                name: "MessagePosted or MessageChanged",
                detail: e.to_string(),
            }
        })?;
        match record {
            Record::MessagePosted(_) | Record::MessageChanged(_) | Record::ReplyPosted(_) => {
                Ok(record)
            }
            other => Err(RecordError::KindMismatch {
                kind: KIND_MESSAGE_POSTED,
                found: kind_name(other.kind()).unwrap_or("?"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stored::ArchivedRecord;

    /// `size_of::<ArchivedRecord>()` before issue 16 added records: the
    /// largest variant is `MessagePosted`; `ProfileSet` boxes its profile
    /// to stay below it.
    const ARCHIVED_RECORD_BYTES: usize = 96;

    fn samples() -> Vec<Record> {
        vec![
            Record::WorkspaceCreated {
                workspace: 1,
                name: "Acme".into(),
                ts: 5,
            },
            Record::UserClaimed {
                workspace: 1,
                user: 2,
                name: "ann".into(),
            },
            Record::UserConfirmed {
                workspace: 1,
                user: 2,
            },
            Record::UserCreated {
                user: 2,
                workspace: 1,
                name: "ann".into(),
                workspace_name: "Acme".into(),
                token: 1,
                token_hash: [3; 32],
            },
            Record::TokenIssued {
                user: 2,
                token: 2,
                token_hash: [4; 32],
            },
            Record::TokensRevoked {
                user: 2,
                token: None,
            },
            Record::ChannelClaimed {
                workspace: 1,
                conversation: 9,
                name: "general".into(),
                private: false,
                creator: 2,
            },
            Record::ChannelConfirmed {
                workspace: 1,
                conversation: 9,
            },
            Record::ConversationCreated {
                conversation: 9,
                workspace: 1,
                kind: StoredKind::GroupDm,
                name: String::new(),
                members: vec![2, 3, 4],
                creator: None,
                ts: 7,
            },
            Record::MemberAdded {
                conversation: 9,
                user: 5,
                ts: 8,
            },
            Record::MemberRemoved {
                conversation: 9,
                user: 5,
                ts: 9,
            },
            Record::MessagePosted(MessageRecord {
                conversation: 9,
                seq: 1,
                sender: 2,
                client_msg_id: u128::MAX - 3,
                ts: 10,
                body: "héllo @bob".into(),
                mentions: vec![3],
                broadcast: StoredBroadcast::Here,
                broadcast_ignored: true,
            }),
            Record::CursorSet {
                user: 2,
                conversation: 9,
                seq: 1,
            },
            Record::NotifySet {
                user: 2,
                conversation: 9,
                level: StoredLevel::Mentions,
                muted: true,
            },
            Record::DndSet {
                user: 2,
                until: Some(99),
            },
            Record::PushQueued {
                user: 2,
                conversation: 9,
                seq: 1,
                sender: 3,
                reason: StoredReason::Mention,
                preview: "héllo".into(),
                due: 30_010,
                clear: false,
            },
            Record::PushSettled {
                id: 17,
                delivered: true,
            },
            Record::NotifyHandedOff { lsn: 41 },
            Record::ProfileSet {
                user: 2,
                version: 3,
                profile: Box::new(ProfileRecord {
                    display_name: "Ann Lee".into(),
                    time_zone: "Europe/Berlin".into(),
                    status_emoji: "🌴".into(),
                    status_expires: Some(77),
                    ..ProfileRecord::default()
                }),
            },
            Record::DirectoryNameSet {
                workspace: 1,
                user: 2,
                display_name: "Ann Lee".into(),
                version: 3,
            },
            Record::RoleSet {
                workspace: 1,
                user: 2,
                role: StoredRole::Guest,
                version: 1,
            },
            Record::UserRoleSet {
                user: 2,
                role: StoredRole::Deactivated,
                version: 2,
            },
            Record::InviteCreated {
                workspace: 1,
                invite: 1,
                hash: [5; 32],
                creator: 2,
                role: StoredRole::Guest,
                max_uses: 3,
                created: 10,
                expires: 86_400_010,
            },
            Record::InviteRedeemed {
                workspace: 1,
                invite: 1,
                user: 6,
                name: "gus".into(),
            },
            Record::InviteRevoked {
                workspace: 1,
                invite: 1,
            },
            Record::InvitePolicySet {
                workspace: 1,
                members_may_invite: true,
            },
            Record::MessageChanged(Box::new(ChangeRecord {
                conversation: 7,
                seq: 43,
                target: 42,
                actor: 2,
                ts: 30_100,
                kind: StoredChange::Edit,
                text: "fixed".into(),
            })),
            Record::ChannelRenameClaimed {
                workspace: 1,
                conversation: 7,
                old: "general".into(),
                new: "town-square".into(),
                actor: 2,
                role: StoredRole::Admin,
            },
            Record::ChannelRenameConfirmed {
                workspace: 1,
                conversation: 7,
                applied: true,
            },
            Record::MessageChanged(Box::new(ChangeRecord {
                conversation: 7,
                seq: 44,
                target: 0,
                actor: 2,
                ts: 30_200,
                kind: StoredChange::Topic,
                text: "launch week".into(),
            })),
            Record::ReplyPosted(Box::new(ReplyRecord {
                message: MessageRecord {
                    conversation: 7,
                    seq: 45,
                    sender: 3,
                    client_msg_id: 12,
                    ts: 30_300,
                    body: "in the thread @ann".into(),
                    mentions: vec![2],
                    broadcast: StoredBroadcast::None,
                    broadcast_ignored: false,
                },
                root: 42,
                in_channel: false,
            })),
        ]
    }

    /// The archived record enum keeps the size old logs were written with:
    /// rkyv places the root at the end of the buffer, so a larger enum would
    /// make every older record fail to decode.
    #[test]
    fn archived_size_unchanged() {
        assert_eq!(std::mem::size_of::<ArchivedRecord>(), ARCHIVED_RECORD_BYTES);
    }

    #[test]
    fn every_kind_roundtrips() {
        let records = samples();
        // Kinds 1..=26, then 40 (issue 17), 27 and 28 (issue 16, part 4),
        // a setting (kind 40 again) and 41 (threads).
        assert_eq!(records.len(), usize::from(KIND_INVITE_POLICY_SET) + 5);
        for record in records {
            let bytes = record.encode();
            // Decode from an unaligned copy as the WAL may hand it over.
            let mut shifted = vec![0u8];
            shifted.extend_from_slice(&bytes);
            let decoded = Record::decode(record.kind(), &shifted[1..]).expect("decodes");
            assert_eq!(decoded, record);
            assert!(kind_name(record.kind()).is_some());
        }
    }

    #[test]
    fn decode_rejects_bad_input() {
        assert_eq!(
            Record::decode(0, &[]),
            Err(RecordError::UnknownKind { kind: 0 })
        );
        assert_eq!(
            Record::decode(200, &[1, 2, 3]),
            Err(RecordError::UnknownKind { kind: 200 })
        );
        assert!(matches!(
            Record::decode(KIND_CURSOR_SET, &[0xff; 7]),
            Err(RecordError::Invalid { .. })
        ));
        let bytes = samples()[0].encode();
        assert!(matches!(
            Record::decode(KIND_DND_SET, &bytes),
            Err(RecordError::KindMismatch { .. })
        ));
        // Flipped bytes never panic.
        let message = samples()[11].encode();
        for i in 0..message.len() {
            let mut bad = message.clone();
            bad[i] ^= 0x5a;
            let _ = Record::decode(KIND_MESSAGE_POSTED, &bad);
        }
    }

    #[test]
    fn history_key_names_messages_only() {
        for r in samples() {
            let key = Record::history_key(r.kind(), &r.encode());
            match &r {
                Record::MessagePosted(m) => assert_eq!(key, Some((m.conversation, m.seq))),
                Record::MessageChanged(c) => assert_eq!(key, Some((c.conversation, c.seq))),
                Record::ReplyPosted(r) => {
                    assert_eq!(key, Some((r.message.conversation, r.message.seq)))
                }
                _ => assert_eq!(key, None, "{r:?}"),
            }
        }
        let message = samples()[11].encode();
        assert_eq!(
            Record::history_key(KIND_MESSAGE_POSTED, &message[..7]),
            None
        );
        assert_eq!(Record::history_key(KIND_CURSOR_SET, &message), None);
    }

    #[test]
    fn history_entries_decode_without_their_kind_byte() {
        for r in samples() {
            let got = Record::decode_history(&r.encode());
            match r {
                Record::MessagePosted(_) | Record::MessageChanged(_) | Record::ReplyPosted(_) => {
                    assert_eq!(got, Ok(r))
                }
                _ => assert!(
                    matches!(got, Err(RecordError::KindMismatch { .. })),
                    "{got:?}"
                ),
            }
        }
        assert!(Record::decode_history(&[1, 2, 3]).is_err());
    }
}
