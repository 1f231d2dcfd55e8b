//! The persistent state of a shard and the one function that changes it:
//! [`State::apply`], shared by the live path and replay.
//!
//! A shard holds three kinds of entities, each on the shard its id is
//! placed on ([`crate::ids::shard_of`]):
//!
//! - [`Workspace`]s with their name directories (users and channels by name,
//!   the public-channel list, and name claims not yet confirmed);
//! - [`User`]s homed here: token hashes, read cursors, notification
//!   preferences, DND; plus memory-only state (connected devices, the
//!   derived list of the user's conversations);
//! - [`Conversation`]s owned here: kind, name, members (authoritative),
//!   head, the seq→LSN index, dedup window, mention index; plus the
//!   memory-only set of interested shards.
//!
//! and the [`RecentCache`] of the conversations' newest messages.
//!
//! `apply` validates that a record fits the state (the right shard, the
//! next seq, an existing conversation…) and fails with [`ApplyError`]
//! otherwise: on replay that is a corrupt or foreign log; on the live path
//! it is a programmer error and the caller panics.
//!
//! Visibility rule: a record's effects are applied at once (so the next
//! sequence number and uniqueness checks see it), but readers only see
//! what is durable: [`Conversation::visible_head`] and
//! [`Conversation::is_member`] take the durable LSN.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::api::{
    Broadcast, ConnId, ConversationId, ConversationKind, DeviceKind, Lsn, Message, Millis,
    NotifyLevel, Seq, ShardId, UserId, WorkspaceId,
};
use crate::bitset::ShardSet;
use crate::cache::RecentCache;
use crate::constants::{
    DEDUP_WINDOW_PER_CONVERSATION, RECENT_CACHE_BYTES_MAX, RECENT_MESSAGES_PER_CONVERSATION,
};
use crate::hash::{HashState, Map};
use crate::ids::{shard_of, IdAllocator, Placed};
use crate::record::{MessageRecord, Record, StoredBroadcast};
use crate::text::preview;

/// Why a record does not apply to the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The record's entity is placed on another shard.
    #[error("{what} {id} is not placed on this shard")]
    NotOwned {
        /// Entity kind.
        what: &'static str,
        /// Its id.
        id: u64,
    },
    /// The record names an entity that does not exist.
    #[error("{what} {id} does not exist")]
    Missing {
        /// Entity kind.
        what: &'static str,
        /// Its id.
        id: u64,
    },
    /// The record contradicts the state.
    #[error("inconsistent record: {0}")]
    Inconsistent(String),
}

/// A workspace and its directories (on the workspace's shard).
#[derive(Debug)]
pub struct Workspace {
    /// Id.
    pub id: WorkspaceId,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created: Millis,
    /// User handles → user id, and whether the home shard confirmed it.
    pub users: Map<String, NameEntry>,
    /// Channel names → channel.
    pub channels: Map<String, ChannelName>,
    /// Confirmed public channels (for `ListConversations`).
    pub public_channels: BTreeSet<ConversationId>,
}

/// A user handle in a workspace directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameEntry {
    /// The user.
    pub user: UserId,
    /// The home shard has durably created the user.
    pub confirmed: bool,
}

/// A channel name in a workspace directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelName {
    /// The channel.
    pub id: ConversationId,
    /// Private channel.
    pub private: bool,
    /// The owner shard has durably created the channel.
    pub confirmed: bool,
}

/// A name claim whose second half is not confirmed yet (retried).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// A user: its home shard must create it.
    User {
        /// Workspace.
        workspace: WorkspaceId,
        /// Handle.
        name: String,
    },
    /// A channel: its owner shard must create it.
    Channel {
        /// Workspace.
        workspace: WorkspaceId,
        /// Name.
        name: String,
        /// Private.
        private: bool,
        /// First member.
        creator: UserId,
    },
}

/// A read cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Highest read seq.
    pub seq: Seq,
    /// LSN of the record that set it (0 after restore: durable).
    pub lsn: Lsn,
}

/// A per-conversation notification preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyPref {
    /// Level.
    pub level: NotifyLevel,
    /// Muted.
    pub muted: bool,
}

/// A connected device of a user (memory only, on the home shard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The token it authenticated with.
    pub token: u64,
    /// The incarnation of the shard holding the connection.
    pub incarnation: u64,
    /// Kind.
    pub kind: DeviceKind,
    /// Client-chosen name.
    pub name: String,
    /// Conversation on screen.
    pub focused: Option<ConversationId>,
    /// Recent activity.
    pub active: bool,
    /// When `active` or `focused` last changed.
    pub changed: Millis,
}

/// A user homed on this shard.
#[derive(Debug)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Handle.
    pub name: String,
    /// Workspace display name (immutable).
    pub workspace_name: String,
    /// Token id → sha256(secret).
    pub tokens: BTreeMap<u64, [u8; 32]>,
    /// Next token id.
    pub next_token: u64,
    /// Read cursors.
    pub cursors: Map<ConversationId, Cursor>,
    /// Notification preferences.
    pub prefs: Map<ConversationId, NotifyPref>,
    /// Do-not-disturb until.
    pub dnd_until: Option<Millis>,
    /// Memory: connected devices.
    pub devices: BTreeMap<ConnId, Device>,
    /// Memory: the user's conversations, derived from the owners
    /// (rebuilt at start, kept current by owner messages).
    pub conversations: BTreeSet<ConversationId>,
}

impl User {
    /// The read cursor of a conversation (`Seq(0)` if none).
    pub fn cursor(&self, conv: ConversationId) -> Seq {
        self.cursors.get(&conv).map_or(Seq(0), |c| c.seq)
    }
}

/// A member of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Head when the member joined.
    pub joined_seq: Seq,
    /// LSN of the record that added it (0 after restore: durable).
    pub lsn: Lsn,
}

/// An entry of the dedup window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupEntry {
    /// The message's seq.
    pub seq: Seq,
    /// Its timestamp.
    pub ts: Millis,
    /// Its broadcast was ignored.
    pub broadcast_ignored: bool,
}

/// The last DEDUP_WINDOW_PER_CONVERSATION `(sender, client_msg_id)` of a
/// conversation.
#[derive(Debug)]
pub struct Dedup {
    map: Map<(UserId, u128), DedupEntry>,
    order: VecDeque<(UserId, u128)>,
}

impl Dedup {
    fn new(hash: HashState) -> Dedup {
        Dedup {
            map: hash.map(),
            order: VecDeque::new(),
        }
    }

    /// The original of a retried send.
    pub fn get(&self, sender: UserId, cmid: u128) -> Option<DedupEntry> {
        self.map.get(&(sender, cmid)).copied()
    }

    fn insert(&mut self, sender: UserId, cmid: u128, entry: DedupEntry) {
        let old = self.map.insert((sender, cmid), entry);
        assert!(old.is_none(), "dedup: duplicate key inserted");
        self.order.push_back((sender, cmid));
        while self.order.len() > DEDUP_WINDOW_PER_CONVERSATION {
            if let Some(key) = self.order.pop_front() {
                self.map.remove(&key);
            }
        }
    }

    /// Entries oldest first (snapshots).
    pub fn entries(&self) -> impl Iterator<Item = (UserId, u128, DedupEntry)> + '_ {
        self.order.iter().map(|k| (k.0, k.1, self.map[k]))
    }
}

/// A conversation owned by this shard.
#[derive(Debug)]
pub struct Conversation {
    /// Id.
    pub id: ConversationId,
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Kind.
    pub kind: ConversationKind,
    /// Channel name (empty for DMs).
    pub name: String,
    /// The channel's creator (owner role); `None` for DMs.
    pub creator: Option<UserId>,
    /// Creation time.
    pub created: Millis,
    /// Members (authoritative).
    pub members: Map<UserId, Member>,
    /// Highest assigned seq (durable or not).
    pub head: Seq,
    /// LSN of each message: `lsns[seq - 1]` (8 bytes per message).
    pub lsns: Vec<u64>,
    /// Time of the last message (or creation).
    pub last_activity: Millis,
    /// Preview of the last message.
    pub preview: Option<String>,
    /// Idempotency window.
    pub dedup: Dedup,
    /// Channels: seqs mentioning each user directly (8 bytes per mention).
    pub mentions: Map<UserId, Vec<u64>>,
    /// Channels: seqs with an effective `@channel`.
    pub broadcasts: Vec<u64>,
    /// Memory: shards with at least one subscribed connection.
    pub interested: ShardSet,
}

impl Conversation {
    /// The highest seq whose record is durable: what readers may see.
    pub fn visible_head(&self, durable: Lsn) -> Seq {
        match self.lsns.last() {
            None => Seq(0),
            Some(&last) if last <= durable.0 => self.head,
            Some(_) => Seq(self.lsns.partition_point(|&l| l <= durable.0) as u64),
        }
    }

    /// Whether `user` is a member whose membership is durable.
    pub fn is_member(&self, user: UserId, durable: Lsn) -> bool {
        self.members.get(&user).is_some_and(|m| m.lsn <= durable)
    }

    /// Whether this is a DM or group DM.
    pub fn is_dm(&self) -> bool {
        matches!(self.kind, ConversationKind::Dm | ConversationKind::GroupDm)
    }

    /// LSN of a message (`seq` must exist).
    pub fn lsn_of(&self, seq: Seq) -> Lsn {
        assert!(seq.0 >= 1 && seq.0 <= self.head.0, "seq out of range");
        Lsn(self.lsns[(seq.0 - 1) as usize])
    }

    /// Mentions of `user` with `read < seq <= head`. In DMs every message
    /// counts (the badge semantics of DMs); in channels direct mentions and
    /// effective `@channel`s (`@here` only notifies).
    pub fn mention_count(&self, user: UserId, read: Seq, head: Seq) -> u64 {
        if self.is_dm() {
            return head.0.saturating_sub(read.0);
        }
        let count = |seqs: &[u64]| {
            let lo = seqs.partition_point(|&s| s <= read.0);
            let hi = seqs.partition_point(|&s| s <= head.0);
            hi.saturating_sub(lo) as u64
        };
        count(self.mentions.get(&user).map_or(&[][..], Vec::as_slice)) + count(&self.broadcasts)
    }

    /// Restores a dedup entry (snapshots, oldest first).
    pub fn dedup_restore(&mut self, sender: UserId, cmid: u128, entry: DedupEntry) {
        self.dedup.insert(sender, cmid, entry);
    }

    /// Sorted members (for DM infos and membership rounds).
    pub fn sorted_members(&self) -> Vec<UserId> {
        let mut members: Vec<UserId> = self.members.keys().copied().collect();
        members.sort_unstable();
        members
    }
}

/// The directory key of a DM: workspace and sorted members.
pub type DmKey = (WorkspaceId, Vec<UserId>);

/// Everything a shard persists (through records and snapshots), plus the
/// memory-only fields that hang off the same entities.
#[derive(Debug)]
pub struct State {
    /// This shard.
    pub shard: ShardId,
    /// Shards of the node.
    pub shard_count: u16,
    /// Hash keys for every map.
    pub hash: HashState,
    /// Id allocation.
    pub ids: IdAllocator,
    /// Workspaces placed here.
    pub workspaces: Map<WorkspaceId, Workspace>,
    /// Users homed here.
    pub users: Map<UserId, User>,
    /// Conversations owned here.
    pub conversations: Map<ConversationId, Conversation>,
    /// DM directory: (workspace, sorted members) → DM.
    pub dms: Map<DmKey, ConversationId>,
    /// Name claims not yet confirmed, by claimed id, with the LSN of the
    /// claim (0 after restore: durable).
    pub claims: BTreeMap<u64, (Claim, Lsn)>,
    /// Recent messages.
    pub cache: RecentCache,
}

fn ws_id(id: u64) -> WorkspaceId {
    WorkspaceId(id)
}

impl State {
    /// Empty state.
    pub fn new(shard: ShardId, shard_count: u16, hash: HashState) -> State {
        State {
            shard,
            shard_count,
            hash,
            ids: IdAllocator::new(shard),
            workspaces: hash.map(),
            users: hash.map(),
            conversations: hash.map(),
            dms: hash.map(),
            claims: BTreeMap::new(),
            cache: RecentCache::new(
                RECENT_CACHE_BYTES_MAX,
                RECENT_MESSAGES_PER_CONVERSATION,
                hash,
            ),
        }
    }

    /// Whether an entity is placed on this shard.
    pub fn owns(&self, id: impl Placed) -> bool {
        shard_of(id, self.shard_count) == self.shard
    }

    fn check_owned(&self, what: &'static str, id: impl Placed) -> Result<(), ApplyError> {
        if self.owns(id) {
            Ok(())
        } else {
            Err(ApplyError::NotOwned { what, id: id.raw() })
        }
    }

    fn workspace_mut(&mut self, id: u64) -> Result<&mut Workspace, ApplyError> {
        self.workspaces
            .get_mut(&ws_id(id))
            .ok_or(ApplyError::Missing {
                what: "workspace",
                id,
            })
    }

    fn user_mut(&mut self, id: u64) -> Result<&mut User, ApplyError> {
        self.users
            .get_mut(&UserId(id))
            .ok_or(ApplyError::Missing { what: "user", id })
    }

    fn conversation_mut(&mut self, id: u64) -> Result<&mut Conversation, ApplyError> {
        self.conversations
            .get_mut(&ConversationId(id))
            .ok_or(ApplyError::Missing {
                what: "conversation",
                id,
            })
    }

    /// A new conversation (used by apply and snapshot restore).
    pub fn new_conversation(
        &self,
        id: ConversationId,
        workspace: WorkspaceId,
        kind: ConversationKind,
        name: String,
        creator: Option<UserId>,
        created: Millis,
    ) -> Conversation {
        Conversation {
            id,
            workspace,
            kind,
            name,
            creator,
            created,
            members: self.hash.map(),
            head: Seq(0),
            lsns: Vec::new(),
            last_activity: created,
            preview: None,
            dedup: Dedup::new(self.hash),
            mentions: self.hash.map(),
            broadcasts: Vec::new(),
            interested: ShardSet::new(),
        }
    }

    /// A new user (used by apply and snapshot restore).
    pub fn new_user(
        &self,
        id: UserId,
        workspace: WorkspaceId,
        name: String,
        workspace_name: String,
    ) -> User {
        User {
            id,
            workspace,
            name,
            workspace_name,
            tokens: BTreeMap::new(),
            next_token: 1,
            cursors: self.hash.map(),
            prefs: self.hash.map(),
            dnd_until: None,
            devices: BTreeMap::new(),
            conversations: BTreeSet::new(),
        }
    }

    /// A new workspace (used by apply and snapshot restore).
    pub fn new_workspace(&self, id: WorkspaceId, name: String, created: Millis) -> Workspace {
        Workspace {
            id,
            name,
            created,
            users: self.hash.map(),
            channels: self.hash.map(),
            public_channels: BTreeSet::new(),
        }
    }

    /// Applies one record written at `lsn`. The same function runs live
    /// (right after the record is appended) and on replay.
    pub fn apply(&mut self, lsn: Lsn, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::WorkspaceCreated {
                workspace,
                name,
                ts,
            } => {
                let id = ws_id(*workspace);
                self.check_owned("workspace", id)?;
                if self.workspaces.contains_key(&id) {
                    return Err(ApplyError::Inconsistent(format!(
                        "workspace {workspace} created twice"
                    )));
                }
                self.ids.observe(*workspace);
                let ws = self.new_workspace(id, name.clone(), Millis(*ts));
                self.workspaces.insert(id, ws);
            }
            Record::UserClaimed {
                workspace,
                user,
                name,
            } => {
                self.check_owned("workspace", ws_id(*workspace))?;
                let ws = self.workspace_mut(*workspace)?;
                if ws.users.contains_key(name) {
                    return Err(ApplyError::Inconsistent(format!(
                        "user name {name:?} claimed twice"
                    )));
                }
                ws.users.insert(
                    name.clone(),
                    NameEntry {
                        user: UserId(*user),
                        confirmed: false,
                    },
                );
                self.ids.observe(*user);
                self.claims.insert(
                    *user,
                    (
                        Claim::User {
                            workspace: ws_id(*workspace),
                            name: name.clone(),
                        },
                        lsn,
                    ),
                );
            }
            Record::UserConfirmed { workspace, user } => {
                let Some((Claim::User { name, .. }, _)) = self.claims.remove(user) else {
                    return Err(ApplyError::Inconsistent(format!(
                        "user {user} confirmed without a pending claim"
                    )));
                };
                let ws = self.workspace_mut(*workspace)?;
                match ws.users.get_mut(&name) {
                    Some(entry) if entry.user == UserId(*user) => entry.confirmed = true,
                    _ => {
                        return Err(ApplyError::Inconsistent(format!(
                            "user {user} confirmed but not in the directory"
                        )))
                    }
                }
            }
            Record::UserCreated {
                user,
                workspace,
                name,
                workspace_name,
                token,
                token_hash,
            } => {
                let id = UserId(*user);
                self.check_owned("user", id)?;
                if self.users.contains_key(&id) {
                    return Err(ApplyError::Inconsistent(format!(
                        "user {user} created twice"
                    )));
                }
                let mut u =
                    self.new_user(id, ws_id(*workspace), name.clone(), workspace_name.clone());
                u.tokens.insert(*token, *token_hash);
                u.next_token = token + 1;
                self.users.insert(id, u);
            }
            Record::TokenIssued {
                user,
                token,
                token_hash,
            } => {
                let u = self.user_mut(*user)?;
                if u.tokens.insert(*token, *token_hash).is_some() {
                    return Err(ApplyError::Inconsistent(format!(
                        "token {token} issued twice"
                    )));
                }
                u.next_token = u.next_token.max(token + 1);
            }
            Record::TokensRevoked { user, token } => {
                let u = self.user_mut(*user)?;
                match token {
                    Some(t) => {
                        u.tokens.remove(t);
                    }
                    None => u.tokens.clear(),
                }
            }
            Record::ChannelClaimed {
                workspace,
                conversation,
                name,
                private,
                creator,
            } => {
                self.check_owned("workspace", ws_id(*workspace))?;
                let ws = self.workspace_mut(*workspace)?;
                if ws.channels.contains_key(name) {
                    return Err(ApplyError::Inconsistent(format!(
                        "channel name {name:?} claimed twice"
                    )));
                }
                ws.channels.insert(
                    name.clone(),
                    ChannelName {
                        id: ConversationId(*conversation),
                        private: *private,
                        confirmed: false,
                    },
                );
                self.ids.observe(*conversation);
                self.claims.insert(
                    *conversation,
                    (
                        Claim::Channel {
                            workspace: ws_id(*workspace),
                            name: name.clone(),
                            private: *private,
                            creator: UserId(*creator),
                        },
                        lsn,
                    ),
                );
            }
            Record::ChannelConfirmed {
                workspace,
                conversation,
            } => {
                let Some((Claim::Channel { name, private, .. }, _)) =
                    self.claims.remove(conversation)
                else {
                    return Err(ApplyError::Inconsistent(format!(
                        "channel {conversation} confirmed without a pending claim"
                    )));
                };
                let ws = self.workspace_mut(*workspace)?;
                match ws.channels.get_mut(&name) {
                    Some(entry) if entry.id == ConversationId(*conversation) => {
                        entry.confirmed = true
                    }
                    _ => {
                        return Err(ApplyError::Inconsistent(format!(
                            "channel {conversation} confirmed but not in the directory"
                        )))
                    }
                }
                if !private {
                    ws.public_channels.insert(ConversationId(*conversation));
                }
            }
            Record::ConversationCreated {
                conversation,
                workspace,
                kind,
                name,
                members,
                creator,
                ts,
            } => {
                let id = ConversationId(*conversation);
                self.check_owned("conversation", id)?;
                if self.conversations.contains_key(&id) {
                    return Err(ApplyError::Inconsistent(format!(
                        "conversation {conversation} created twice"
                    )));
                }
                if !members.windows(2).all(|w| w[0] < w[1]) {
                    return Err(ApplyError::Inconsistent(format!(
                        "conversation {conversation}: members not sorted"
                    )));
                }
                self.ids.observe(*conversation);
                let kind: ConversationKind = (*kind).into();
                let mut conv = self.new_conversation(
                    id,
                    ws_id(*workspace),
                    kind,
                    name.clone(),
                    creator.map(UserId),
                    Millis(*ts),
                );
                for m in members {
                    conv.members.insert(
                        UserId(*m),
                        Member {
                            joined_seq: Seq(0),
                            lsn,
                        },
                    );
                }
                if conv.is_dm() {
                    let key = (
                        ws_id(*workspace),
                        members.iter().copied().map(UserId).collect(),
                    );
                    if self.dms.insert(key, id).is_some() {
                        return Err(ApplyError::Inconsistent(format!(
                            "DM {conversation} duplicates a member set"
                        )));
                    }
                }
                self.conversations.insert(id, conv);
            }
            Record::MemberAdded {
                conversation,
                user,
                ts: _,
            } => {
                let conv = self.conversation_mut(*conversation)?;
                let joined_seq = conv.head;
                if conv
                    .members
                    .insert(UserId(*user), Member { joined_seq, lsn })
                    .is_some()
                {
                    return Err(ApplyError::Inconsistent(format!(
                        "user {user} added twice to {conversation}"
                    )));
                }
            }
            Record::MemberRemoved {
                conversation,
                user,
                ts: _,
            } => {
                let conv = self.conversation_mut(*conversation)?;
                if conv.members.remove(&UserId(*user)).is_none() {
                    return Err(ApplyError::Inconsistent(format!(
                        "user {user} removed from {conversation} but not a member"
                    )));
                }
            }
            Record::MessagePosted(m) => self.apply_message(lsn, m)?,
            Record::CursorSet {
                user,
                conversation,
                seq,
            } => {
                let u = self.user_mut(*user)?;
                let cursor = u
                    .cursors
                    .entry(ConversationId(*conversation))
                    .or_insert(Cursor {
                        seq: Seq(0),
                        lsn: Lsn(0),
                    });
                if *seq <= cursor.seq.0 {
                    return Err(ApplyError::Inconsistent(format!(
                        "cursor of {user} in {conversation} moved backwards"
                    )));
                }
                *cursor = Cursor {
                    seq: Seq(*seq),
                    lsn,
                };
            }
            Record::NotifySet {
                user,
                conversation,
                level,
                muted,
            } => {
                let u = self.user_mut(*user)?;
                u.prefs.insert(
                    ConversationId(*conversation),
                    NotifyPref {
                        level: (*level).into(),
                        muted: *muted,
                    },
                );
            }
            Record::DndSet { user, until } => {
                let u = self.user_mut(*user)?;
                u.dnd_until = until.map(Millis);
            }
        }
        Ok(())
    }

    fn apply_message(&mut self, lsn: Lsn, m: &MessageRecord) -> Result<(), ApplyError> {
        let conv = self.conversation_mut(m.conversation)?;
        if m.seq != conv.head.0 + 1 {
            return Err(ApplyError::Inconsistent(format!(
                "message seq {} in {} after head {}",
                m.seq, m.conversation, conv.head.0
            )));
        }
        let sender = UserId(m.sender);
        if conv.dedup.get(sender, m.client_msg_id).is_some() {
            return Err(ApplyError::Inconsistent(format!(
                "message {} in {} duplicates a client_msg_id in the window",
                m.seq, m.conversation
            )));
        }
        conv.head = Seq(m.seq);
        conv.lsns.push(lsn.0);
        conv.last_activity = Millis(m.ts);
        conv.preview = Some(preview(&m.body));
        conv.dedup.insert(
            sender,
            m.client_msg_id,
            DedupEntry {
                seq: Seq(m.seq),
                ts: Millis(m.ts),
                broadcast_ignored: m.broadcast_ignored,
            },
        );
        if !conv.is_dm() {
            if m.broadcast == StoredBroadcast::Channel && !m.broadcast_ignored {
                conv.broadcasts.push(m.seq);
            } else {
                for &u in &m.mentions {
                    if u != m.sender {
                        let seqs = conv.mentions.entry(UserId(u)).or_default();
                        if seqs.last() != Some(&m.seq) {
                            seqs.push(m.seq);
                        }
                    }
                }
            }
        }
        let message = message_of(m);
        self.cache.push(lsn.0, message);
        Ok(())
    }
}

/// The client view of a message record.
pub fn message_of(m: &MessageRecord) -> Message {
    Message {
        conversation: ConversationId(m.conversation),
        seq: Seq(m.seq),
        sender: UserId(m.sender),
        client_msg_id: m.client_msg_id,
        ts: Millis(m.ts),
        body: m.body.clone(),
        mentions: m.mentions.iter().copied().map(UserId).collect(),
        broadcast: Broadcast::from(m.broadcast),
    }
}
