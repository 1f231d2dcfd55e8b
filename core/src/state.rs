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
//!   head, dedup window, mention index; plus the memory-only set of
//!   interested shards and the LSNs of its messages not yet durable. No
//!   per-message index: message bodies live in the shard's history store,
//!   keyed by (conversation, seq).
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

use crate::bitset::ShardSet;
use crate::cache::RecentCache;
use crate::constants::{
    DEDUP_WINDOW_PER_CONVERSATION, NOTIFY_HANDOFFS_MAX, OUTBOX_ENTRIES_MAX, PUSHED_ENTRIES_MAX,
    RECENT_CACHE_BYTES_MAX, RECENT_MESSAGES_PER_CONVERSATION,
};
use crate::dirindex::DirIndex;
use crate::hash::{HashState, Map};
use crate::ids::{shard_of, IdAllocator, Placed};
use crate::record::{ChangeRecord, MessageRecord, Record, ReplyRecord, StoredBroadcast};
use crate::text::preview;
use crate::types::{
    Broadcast, Change, ChangeKind, ChannelSettings, ConnId, ConversationId, ConversationKind,
    DeviceKind, Live, Lsn, Message, Millis, NotifyLevel, NotifyReason, Posting, Profile, Role, Seq,
    ShardId, Thread, UserId, WorkspaceId,
};

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
    /// The sorted people directory: confirmed users and the display names
    /// their home shards reported (`DirectoryNameSet`, persisted; the
    /// order is memory, rebuilt at restore).
    pub dir: DirIndex,
    /// Workspace roles with their versions (`RoleSet`); a user not here
    /// is a member at version 0. Authoritative.
    pub roles: BTreeMap<UserId, (Role, u64)>,
    /// Invites by id (`InviteCreated`; the dead ones are dropped at each
    /// creation): at most INVITES_PER_WORKSPACE_MAX live.
    pub invites: BTreeMap<u64, Invite>,
    /// The id the next invite gets (1 for a new workspace).
    pub next_invite: u64,
    /// Members (not only admins) may create invites (`InvitePolicySet`).
    pub members_may_invite: bool,
}

/// A workspace invite (issue 16, item 4), on the workspace shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    /// sha256 of its secret.
    pub hash: [u8; 32],
    /// Its creator (`None`: an admin session).
    pub creator: Option<UserId>,
    /// The role redeemed users get.
    pub role: Role,
    /// How many users it may create.
    pub max_uses: u32,
    /// How many it created.
    pub uses: u32,
    /// Created at.
    pub created: Millis,
    /// Valid before this time.
    pub expires: Millis,
    /// Revoked.
    pub revoked: bool,
}

impl Invite {
    /// Used up, expired at `now` or revoked.
    pub fn dead(&self, now: Millis) -> bool {
        self.revoked || self.uses >= self.max_uses || now >= self.expires
    }
}

impl Workspace {
    /// A user's role and its version (member at 0 when never set).
    pub fn role_of(&self, user: UserId) -> (Role, u64) {
        self.roles.get(&user).copied().unwrap_or((Role::Member, 0))
    }

    /// How many owners the workspace has (O(users with a role set)).
    pub fn owners(&self) -> usize {
        self.roles
            .values()
            .filter(|(r, _)| *r == Role::Owner)
            .count()
    }
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
    /// A channel's new name (issue 16, part 4): its owner shard must apply
    /// the rename (or refuse it); keyed by the channel's id.
    Rename {
        /// Workspace.
        workspace: WorkspaceId,
        /// The name the channel has until the rename is confirmed.
        old: String,
        /// The name claimed.
        new: String,
        /// Who renames it.
        actor: UserId,
        /// Their role when they asked (the owner checks again).
        role: Role,
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
    /// Last `SetFocus{active: true}` (refreshed by the client every
    /// ACTIVITY_REFRESH_MS while used; `None` once it reports idle).
    pub active_at: Option<Millis>,
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
    /// The profile (`ProfileSet`).
    pub profile: Profile,
    /// The profile's version: 0 until the first change, then one more per
    /// change.
    pub profile_version: u64,
    /// The workspace role, as the workspace shard last told (`UserRoleSet`).
    pub role: Role,
    /// Its version at the workspace shard (0: never set, a member).
    pub role_version: u64,
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
    /// Oldest first, with the entry (entries never change once inserted):
    /// a snapshot's capture copies this run without one hash lookup per
    /// entry.
    order: VecDeque<(UserId, u128, DedupEntry)>,
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
        self.order.push_back((sender, cmid, entry));
        while self.order.len() > DEDUP_WINDOW_PER_CONVERSATION {
            if let Some((sender, cmid, _)) = self.order.pop_front() {
                self.map.remove(&(sender, cmid));
            }
        }
    }

    /// Entries oldest first (snapshots).
    pub fn entries(&self) -> impl Iterator<Item = (UserId, u128, DedupEntry)> + '_ {
        self.order.iter().copied()
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
    /// Memory: the LSNs of the newest messages that may not be durable yet
    /// (seqs `head - len + 1 ..= head`, ascending); [`State::settle`] drops
    /// them as they become durable. Bounded by the messages appended and
    /// not yet durable (≤ `PENDING_COMMITS_MAX` per shard); not in
    /// snapshots (everything a snapshot covers is durable).
    pub undurable: VecDeque<u64>,
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
    /// Memory: home shards of the members (durable or not), the shards
    /// told about each message's activity (see `OwnerRole::fanout`). Kept by
    /// `State::apply` and rebuilt at restore.
    pub homes: ShardSet,
    /// Issue 17: the seqs that are changes (edits, deletes, reactions), not
    /// messages, ascending (8 bytes per change, like the mention index):
    /// unread and DM mention counts skip them.
    pub changes: Vec<u64>,
    /// Issue 17: the current state of every message with at least one
    /// change, by seq (at most LIVE_MESSAGES_PER_CONVERSATION_MAX, checked
    /// by the owner before a change is sequenced). History, sync and boot
    /// pages are served through it ([`Conversation::present`]).
    pub live: BTreeMap<u64, LiveEntry>,
    /// Issue 17: the seq of the newest message (not change), 0 if none:
    /// the one whose text is the preview.
    pub last_post: u64,
    /// Memory: issue-17 changes appended but not yet durable, as (LSN,
    /// event), in LSN order; [`State::settle`] applies them to `live` once
    /// durable, so no reader sees a change that a crash could undo. Same
    /// bound as `undurable`.
    pub unsettled_changes: VecDeque<(u64, Message)>,
    /// Issue 16, part 4: the channel's settings as of its durable events
    /// (what infos show); `name` above is the durable name likewise. The
    /// settings with the events not yet durable applied too are
    /// [`Conversation::current_settings`] (what the owner decides by).
    pub settings: ChannelSettings,
    /// Threads (issue 17, part 2): every reply, by seq → (root, shown in
    /// the channel). About 40 bytes per reply (like the mention index,
    /// it grows with the conversation's history).
    pub replies: BTreeMap<u64, (u64, bool)>,
    /// Threads: each root's reply seqs, ascending (8 bytes per reply plus
    /// about 50 per root): thread pages.
    pub threads: BTreeMap<u64, Vec<u64>>,
    /// Threads: the seqs of replies not shown in the channel, ascending (8
    /// bytes each): unread counts skip them like changes.
    pub hidden: Vec<u64>,
    /// Issue 17, part 3: the pinned messages as of durable pin events
    /// (the seqs whose `live` entry is pinned), ascending; at most
    /// PINS_PER_CONVERSATION_MAX (checked by the owner, counting the pins
    /// not yet durable too). `ListPins` pages through it.
    pub pins: BTreeSet<u64>,
}

/// The state of a changed message (issue 17): its [`Live`] and, once
/// edited, its current text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveEntry {
    /// Edited, deleted, reactions, version.
    pub live: Live,
    /// The text of the last edit (empty unless `live.edited`).
    pub text: String,
}

impl Conversation {
    /// The highest seq whose record is durable: what readers may see.
    pub fn visible_head(&self, durable: Lsn) -> Seq {
        match self.undurable.back() {
            None => self.head,
            Some(&last) if last <= durable.0 => self.head,
            Some(_) => {
                let durable_tail = self.undurable.partition_point(|&l| l <= durable.0);
                Seq(self.head.0 - (self.undurable.len() - durable_tail) as u64)
            }
        }
    }

    /// Whether `user` is a member whose membership is durable.
    pub fn is_member(&self, user: UserId, durable: Lsn) -> bool {
        self.members.get(&user).is_some_and(|m| m.lsn <= durable)
    }

    /// Recomputes [`Conversation::homes`] from the members (O(members):
    /// at restore and after a removal).
    pub fn recompute_homes(&mut self, shard_count: u16) {
        self.homes = ShardSet::new();
        for user in self.members.keys() {
            self.homes.insert(shard_of(*user, shard_count));
        }
    }

    /// Whether this is a DM or group DM.
    pub fn is_dm(&self) -> bool {
        matches!(self.kind, ConversationKind::Dm | ConversationKind::GroupDm)
    }

    /// Mentions of `user` with `read < seq <= head`. In DMs every message
    /// counts (the badge semantics of DMs); in channels direct mentions and
    /// effective `@channel`s (`@here` only notifies).
    pub fn mention_count(&self, user: UserId, read: Seq, head: Seq) -> u64 {
        if self.is_dm() {
            return self.messages_between(read, head);
        }
        let count = |seqs: &[u64]| {
            let lo = seqs.partition_point(|&s| s <= read.0);
            let hi = seqs.partition_point(|&s| s <= head.0);
            hi.saturating_sub(lo) as u64
        };
        count(self.mentions.get(&user).map_or(&[][..], Vec::as_slice)) + count(&self.broadcasts)
    }

    /// Messages (not changes, not replies shown only in their thread)
    /// with `read < seq <= head`: unread counts. O(log changes + log
    /// replies).
    pub fn messages_between(&self, read: Seq, head: Seq) -> u64 {
        if head <= read {
            return 0;
        }
        let between = |seqs: &[u64]| {
            let lo = seqs.partition_point(|&s| s <= read.0);
            let hi = seqs.partition_point(|&s| s <= head.0);
            (hi - lo) as u64
        };
        (head.0 - read.0)
            .saturating_sub(between(&self.changes))
            .saturating_sub(between(&self.hidden))
    }

    /// Whether `seq` is a reply in a thread (issue 17, part 2).
    pub fn is_reply(&self, seq: Seq) -> bool {
        self.replies.contains_key(&seq.0)
    }

    /// The seq of the newest reply of `root`'s thread at or below `head`
    /// (`Seq(0)`: none).
    pub fn newest_reply(&self, root: Seq, head: Seq) -> Seq {
        let seqs = self.threads.get(&root.0).map_or(&[][..], Vec::as_slice);
        let end = seqs.partition_point(|&s| s <= head.0);
        Seq(end.checked_sub(1).map_or(0, |i| seqs[i]))
    }

    /// Applies a durable change to its target's state (issue 17) and keeps
    /// the preview current; returns the target if it is now deleted.
    fn settle_change(&mut self, event: &Message) -> Option<Seq> {
        if let (None, Some(thread)) = (event.change, event.thread) {
            // Threads: a durable reply updates its root's summary.
            let entry = self.live.entry(thread.root.0).or_default();
            crate::live::apply_parts(&mut entry.live, &mut entry.text, event);
            return None;
        }
        let change = event.change?;
        if change.kind.is_setting() {
            if let Some(name) = self.settings.apply(change.kind, &event.body) {
                self.name = name;
            }
            return None;
        }
        let target = change.target;
        let entry = self.live.entry(target.0).or_default();
        crate::live::apply_parts(&mut entry.live, &mut entry.text, event);
        let deleted = entry.live.deleted;
        if entry.live.pinned {
            self.pins.insert(target.0);
        } else {
            self.pins.remove(&target.0);
        }
        if target.0 == self.last_post {
            self.preview = if deleted {
                None
            } else if entry.live.edited.is_some() {
                Some(preview(&entry.text))
            } else {
                self.preview.take()
            };
        }
        deleted.then_some(target)
    }

    /// `live` with the changes not yet durable applied too (snapshots:
    /// everything in a snapshot counts as durable once it is usable), and
    /// the targets those changes delete.
    pub fn live_with_unsettled(&self) -> (BTreeMap<u64, LiveEntry>, Vec<Seq>) {
        let mut live = self.live.clone();
        let mut deleted = Vec::new();
        for (_, event) in &self.unsettled_changes {
            if let (None, Some(thread)) = (event.change, event.thread) {
                let entry = live.entry(thread.root.0).or_default();
                crate::live::apply_parts(&mut entry.live, &mut entry.text, event);
                continue;
            }
            let Some(change) = event.change.filter(|c| !c.kind.is_setting()) else {
                continue;
            };
            let entry = live.entry(change.target.0).or_default();
            crate::live::apply_parts(&mut entry.live, &mut entry.text, event);
            if entry.live.deleted {
                deleted.push(change.target);
            }
        }
        (live, deleted)
    }

    /// The name and settings with every sequenced setting event applied,
    /// durable or not: what the owner decides the next request by (a post
    /// after an archive in the sequence must be refused). O(changes not
    /// yet durable).
    pub fn current_settings(&self) -> (String, ChannelSettings) {
        let mut name = self.name.clone();
        let mut settings = self.settings.clone();
        for (_, event) in &self.unsettled_changes {
            if let Some(change) = event.change {
                if let Some(new) = settings.apply(change.kind, &event.body) {
                    name = new;
                }
            }
        }
        (name, settings)
    }

    /// Whether the channel is archived once every sequenced event counts
    /// ([`Conversation::current_settings`], without copying).
    pub fn archived_now(&self) -> bool {
        let mut archived = self.settings.archived;
        for (_, event) in &self.unsettled_changes {
            match event.change.map(|c| c.kind) {
                Some(ChangeKind::Archive) => archived = true,
                Some(ChangeKind::Unarchive) => archived = false,
                _ => {}
            }
        }
        archived
    }

    /// Who may post once every sequenced event counts.
    pub fn posting_now(&self) -> Posting {
        let mut posting = self.settings.posting;
        for (_, event) in &self.unsettled_changes {
            match event.change.map(|c| c.kind) {
                Some(ChangeKind::PostingEveryone) => posting = Posting::Everyone,
                Some(ChangeKind::PostingAdmins) => posting = Posting::Admins,
                _ => {}
            }
        }
        posting
    }

    /// Pins once every sequenced event counts (durable or not): what the
    /// owner bounds by PINS_PER_CONVERSATION_MAX. O(changes not yet
    /// durable).
    pub fn pins_now(&self) -> usize {
        let pending = self
            .unsettled_changes
            .iter()
            .filter(|(_, e)| e.change.is_some_and(|c| c.kind == ChangeKind::Pin))
            .count();
        self.pins.len() + pending
    }

    /// Whether `seq` is a change, not a message.
    pub fn is_change(&self, seq: Seq) -> bool {
        self.changes.binary_search(&seq.0).is_ok()
    }

    /// A stored message or change as served now: a message gets its
    /// current state (a deleted one loses body and mentions); an edit of a
    /// message deleted since loses its text. Never serves a deleted body.
    pub fn present(&self, mut m: Message) -> Message {
        match m.change {
            None => {
                if let Some(e) = self.live.get(&m.seq.0) {
                    m.live = e.live.clone();
                    if e.live.deleted {
                        m.body = String::new();
                        m.mentions = Vec::new();
                    } else if e.live.edited.is_some() {
                        m.body.clone_from(&e.text);
                    }
                }
            }
            Some(c) => {
                let deleted = self.live.get(&c.target.0).is_some_and(|e| e.live.deleted);
                if deleted && c.kind == ChangeKind::Edit {
                    m.body = String::new();
                }
            }
        }
        m
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
    /// Home role: the push outbox, by id (the `PushQueued` LSN).
    pub outbox: BTreeMap<u64, OutboxEntry>,
    /// Home role: outbox ids by (user, conversation, seq, clear): finds a
    /// user's entries when a cursor moves and refuses a second entry for
    /// the same (user, message).
    pub outbox_index: BTreeMap<(UserId, ConversationId, Seq, bool), u64>,
    /// Home role: the newest delivered push per (user, conversation) not yet
    /// cleared (a read sends its `clear`); at most PUSHED_ENTRIES_MAX.
    pub pushed: BTreeMap<(UserId, ConversationId), Seq>,
    /// Home role (issue 17): the newest delivered push per (user,
    /// conversation) that a delete's `clear` retracted while still unread
    /// (the clear forgot it in `pushed`, and it may stand above older
    /// delivered, unread pushes). A hand-off decided again after a restart
    /// pushes nothing at or below it, as with `pushed`; forgotten once the
    /// cursor reaches it (the read rule takes over). At most
    /// PUSHED_ENTRIES_MAX.
    pub retracted: BTreeMap<(UserId, ConversationId), Seq>,
    /// Owner role: every message with an LSN at or below this was handed
    /// off and confirmed by its candidates' home shards
    /// (`NotifyHandedOff`); a start hands off the later ones again.
    pub handoff_watermark: u64,
    /// Owner role: the newest messages after `handoff_watermark`, as
    /// (LSN, conversation, seq) in LSN order, at most `NOTIFY_HANDOFFS_MAX`
    /// (older ones fall out and count in `handoff_tail_dropped`): what a
    /// start hands off again. In snapshots (version 5).
    pub handoff_tail: VecDeque<(u64, ConversationId, Seq)>,
    /// Memory: messages that fell out of `handoff_tail` (by its bound)
    /// since this state was built; a start counts them as abandoned.
    pub handoff_tail_dropped: u64,
    /// Memory: (LSN, conversation) of every message not yet known durable,
    /// in LSN order (see [`Conversation::undurable`]; same bound).
    pub unsettled: VecDeque<(u64, ConversationId)>,
}

/// A queued push or clear (durable: `PushQueued` … `PushSettled`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Recipient.
    pub user: UserId,
    /// Conversation.
    pub conversation: ConversationId,
    /// Message.
    pub seq: Seq,
    /// Author.
    pub sender: UserId,
    /// Why.
    pub reason: NotifyReason,
    /// Start of the body.
    pub preview: String,
    /// Not before.
    pub due: Millis,
    /// A retraction.
    pub clear: bool,
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
            outbox: BTreeMap::new(),
            outbox_index: BTreeMap::new(),
            pushed: BTreeMap::new(),
            retracted: BTreeMap::new(),
            handoff_watermark: 0,
            handoff_tail: VecDeque::new(),
            handoff_tail_dropped: 0,
            unsettled: VecDeque::new(),
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

    /// Adds an outbox entry (live, replay and snapshot restore).
    pub(crate) fn queue_push(&mut self, id: u64, e: OutboxEntry) -> Result<(), ApplyError> {
        let key = (e.user, e.conversation, e.seq, e.clear);
        if self.outbox.contains_key(&id) || self.outbox_index.contains_key(&key) {
            return Err(ApplyError::Inconsistent(format!(
                "push {id} for user {} in {} at {} queued twice",
                e.user.0, e.conversation.0, e.seq.0
            )));
        }
        if self.outbox.len() >= OUTBOX_ENTRIES_MAX {
            return Err(ApplyError::Inconsistent(
                "outbox beyond OUTBOX_ENTRIES_MAX".into(),
            ));
        }
        // A clear forgets the delivered push it retracts, not a newer one
        // (a clear for a push read while in flight must not lose the
        // `clear` of a later, unread push, nor let a repeated hand-off of
        // it push again). A clear the cursor does not cover (a delete's,
        // issue 17) forgets the push without the older, unread ones being
        // read: it is kept in `retracted`, or a hand-off decided again
        // after a restart would push them a second time.
        let pushed = (e.user, e.conversation);
        if let Some(s) = self
            .pushed
            .get(&pushed)
            .copied()
            .filter(|s| e.clear && *s <= e.seq)
        {
            self.pushed.remove(&pushed);
            let read = self
                .users
                .get(&e.user)
                .map_or(Seq(0), |u| u.cursor(e.conversation));
            if read < s {
                self.remember_retracted(e.user, e.conversation, s);
            }
        }
        self.outbox_index.insert(key, id);
        self.outbox.insert(id, e);
        Ok(())
    }

    fn settle_push(&mut self, id: u64, delivered: bool) -> Result<(), ApplyError> {
        let e = self
            .outbox
            .remove(&id)
            .ok_or(ApplyError::Missing { what: "push", id })?;
        self.outbox_index
            .remove(&(e.user, e.conversation, e.seq, e.clear));
        if delivered && !e.clear {
            self.remember_pushed(e.user, e.conversation, e.seq);
        }
        Ok(())
    }

    /// Notes a delivered push awaiting its clear (bounded: beyond
    /// PUSHED_ENTRIES_MAX new ones are not remembered and get no clear).
    pub(crate) fn remember_pushed(&mut self, user: UserId, conv: ConversationId, seq: Seq) {
        let key = (user, conv);
        if let Some(s) = self.pushed.get_mut(&key) {
            *s = (*s).max(seq);
        } else if self.pushed.len() < PUSHED_ENTRIES_MAX {
            self.pushed.insert(key, seq);
        }
    }

    /// Notes a delivered push retracted unread (bounded like `pushed`).
    pub(crate) fn remember_retracted(&mut self, user: UserId, conv: ConversationId, seq: Seq) {
        let key = (user, conv);
        if let Some(s) = self.retracted.get_mut(&key) {
            *s = (*s).max(seq);
        } else if self.retracted.len() < PUSHED_ENTRIES_MAX {
            self.retracted.insert(key, seq);
        }
    }

    /// The newest seq of `conv` delivered to `user` by a push whose
    /// memory is kept (`pushed`, or `retracted` by a delete): no hand-off
    /// decided again pushes a message at or below it.
    pub fn pushed_up_to(&self, user: UserId, conv: ConversationId) -> Option<Seq> {
        let key = (user, conv);
        self.pushed
            .get(&key)
            .copied()
            .max(self.retracted.get(&key).copied())
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
            undurable: VecDeque::new(),
            last_activity: created,
            preview: None,
            dedup: Dedup::new(self.hash),
            mentions: self.hash.map(),
            broadcasts: Vec::new(),
            interested: ShardSet::new(),
            homes: ShardSet::new(),
            changes: Vec::new(),
            live: BTreeMap::new(),
            last_post: 0,
            unsettled_changes: VecDeque::new(),
            pins: BTreeSet::new(),
            settings: ChannelSettings::default(),
            replies: BTreeMap::new(),
            threads: BTreeMap::new(),
            hidden: Vec::new(),
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
            profile: Profile::default(),
            profile_version: 0,
            role: Role::Member,
            role_version: 0,
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
            dir: DirIndex::default(),
            roles: BTreeMap::new(),
            invites: BTreeMap::new(),
            next_invite: 1,
            members_may_invite: false,
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
                let entry = ws.users.get_mut(&name).filter(|e| e.user.0 == *user);
                let Some(entry) = entry else {
                    return Err(ApplyError::Inconsistent(format!(
                        "user {user} confirmed but not in the directory"
                    )));
                };
                entry.confirmed = true;
                ws.dir.confirm(UserId(*user), &name);
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
                conv.recompute_homes(self.shard_count);
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
                let shard_count = self.shard_count;
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
                conv.homes.insert(shard_of(UserId(*user), shard_count));
            }
            Record::MemberRemoved {
                conversation,
                user,
                ts: _,
            } => {
                let shard_count = self.shard_count;
                let conv = self.conversation_mut(*conversation)?;
                if conv.members.remove(&UserId(*user)).is_none() {
                    return Err(ApplyError::Inconsistent(format!(
                        "user {user} removed from {conversation} but not a member"
                    )));
                }
                conv.recompute_homes(shard_count);
            }
            Record::MessagePosted(m) => self.apply_message(lsn, m, None)?,
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
                let key = (UserId(*user), ConversationId(*conversation));
                if self.retracted.get(&key).is_some_and(|s| s.0 <= *seq) {
                    self.retracted.remove(&key);
                }
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
            Record::DndSet { user, until } => self.user_mut(*user)?.dnd_until = until.map(Millis),
            Record::PushQueued {
                user,
                conversation,
                seq,
                sender,
                reason,
                preview,
                due,
                clear,
            } => {
                self.user_mut(*user)?;
                let entry = OutboxEntry {
                    user: UserId(*user),
                    conversation: ConversationId(*conversation),
                    seq: Seq(*seq),
                    sender: UserId(*sender),
                    reason: (*reason).into(),
                    preview: preview.clone(),
                    due: Millis(*due),
                    clear: *clear,
                };
                self.queue_push(lsn.0, entry)?;
            }
            Record::PushSettled { id, delivered } => self.settle_push(*id, *delivered)?,
            Record::NotifyHandedOff { lsn: mark } => {
                self.set_handoff_watermark(lsn, *mark)?;
            }
            Record::MessageChanged(_) | Record::ReplyPosted(_) => self.apply_live(lsn, record)?,
            Record::ChannelRenameClaimed { .. } | Record::ChannelRenameConfirmed { .. } => {
                self.apply_rename(lsn, record)?
            }
            _ => self.apply_people(lsn, record)?,
        }
        Ok(())
    }

    /// A change of an earlier message (issue 17): the next seq, like a
    /// message (visibility, cache), but no activity, no dedup entry, no
    /// mention and no hand-off; the target's state changes by
    /// [`crate::live::apply_parts`].
    fn apply_change(&mut self, lsn: Lsn, c: &ChangeRecord) -> Result<(), ApplyError> {
        let conv = self.conversation_mut(c.conversation)?;
        if c.seq != conv.head.0 + 1 {
            return Err(ApplyError::Inconsistent(format!(
                "change seq {} in {} after head {}",
                c.seq, c.conversation, conv.head.0
            )));
        }
        let kind = ChangeKind::from(c.kind);
        if kind.is_setting() {
            if c.target != 0 || conv.is_dm() {
                return Err(ApplyError::Inconsistent(format!(
                    "setting {} in {}: target {} or not a channel",
                    c.seq, c.conversation, c.target
                )));
            }
        } else if c.target == 0 || c.target >= c.seq || conv.is_change(Seq(c.target)) {
            return Err(ApplyError::Inconsistent(format!(
                "change {} in {} targets {}, not a message",
                c.seq, c.conversation, c.target
            )));
        }
        let event = change_of(c);
        conv.head = Seq(c.seq);
        conv.undurable.push_back(lsn.0);
        conv.changes.push(c.seq);
        conv.unsettled_changes.push_back((lsn.0, event.clone()));
        self.cache.push(lsn.0, event);
        self.unsettled
            .push_back((lsn.0, ConversationId(c.conversation)));
        Ok(())
    }

    /// A rename's name claim on the workspace shard (issue 16, part 4; see
    /// `crate::settings`): the new name taken unconfirmed, then the old
    /// (applied) or the new (refused) name freed.
    fn apply_rename(&mut self, lsn: Lsn, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::ChannelRenameClaimed {
                workspace,
                conversation,
                old,
                new,
                actor,
                role,
            } => {
                self.check_owned("workspace", ws_id(*workspace))?;
                if self.claims.contains_key(conversation) {
                    return Err(ApplyError::Inconsistent(format!(
                        "rename of {conversation} while a claim of it is pending"
                    )));
                }
                let ws = self.workspace_mut(*workspace)?;
                let private = match ws.channels.get(old) {
                    Some(e) if e.id.0 == *conversation => e.private,
                    _ => {
                        return Err(ApplyError::Inconsistent(format!(
                            "rename of {conversation}: it does not hold {old:?}"
                        )))
                    }
                };
                if ws.channels.contains_key(new) {
                    return Err(ApplyError::Inconsistent(format!(
                        "channel name {new:?} claimed twice"
                    )));
                }
                let entry = ChannelName {
                    id: ConversationId(*conversation),
                    private,
                    confirmed: false,
                };
                ws.channels.insert(new.clone(), entry);
                let claim = Claim::Rename {
                    workspace: ws_id(*workspace),
                    old: old.clone(),
                    new: new.clone(),
                    actor: UserId(*actor),
                    role: (*role).into(),
                };
                self.claims.insert(*conversation, (claim, lsn));
            }
            Record::ChannelRenameConfirmed {
                workspace,
                conversation,
                applied,
            } => {
                let Some((Claim::Rename { old, new, .. }, _)) = self.claims.remove(conversation)
                else {
                    return Err(ApplyError::Inconsistent(format!(
                        "rename of {conversation} confirmed without a pending claim"
                    )));
                };
                let ws = self.workspace_mut(*workspace)?;
                let (freed, kept) = if *applied { (old, new) } else { (new, old) };
                ws.channels.remove(&freed);
                match ws.channels.get_mut(&kept) {
                    Some(e) if e.id.0 == *conversation => e.confirmed = true,
                    _ => {
                        return Err(ApplyError::Inconsistent(format!(
                            "rename of {conversation}: {kept:?} not in the directory"
                        )))
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The people records (issue 16): a profile on the home shard, a
    /// display name in the workspace directory.
    fn apply_people(&mut self, lsn: Lsn, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::ProfileSet {
                user,
                version,
                profile,
            } => {
                let u = self.user_mut(*user)?;
                if *version != u.profile_version + 1 {
                    return Err(ApplyError::Inconsistent(format!(
                        "profile of {user} at version {version} after {}",
                        u.profile_version
                    )));
                }
                u.profile = crate::profile::from_record(profile);
                u.profile_version = *version;
            }
            Record::DirectoryNameSet {
                workspace,
                user,
                display_name,
                version,
            } => {
                self.check_owned("workspace", ws_id(*workspace))?;
                let ws = self.workspace_mut(*workspace)?;
                if !ws.dir.set_name(UserId(*user), display_name, *version) {
                    return Err(ApplyError::Inconsistent(format!(
                        "directory name of {user} at version {version}, not after {}",
                        ws.dir.version(UserId(*user))
                    )));
                }
            }
            Record::RoleSet {
                workspace,
                user,
                role,
                version,
            } => {
                self.check_owned("workspace", ws_id(*workspace))?;
                let ws = self.workspace_mut(*workspace)?;
                let held = ws.role_of(UserId(*user)).1;
                if *version != held + 1 {
                    return Err(ApplyError::Inconsistent(format!(
                        "role of {user} at version {version} after {held}"
                    )));
                }
                ws.roles.insert(UserId(*user), ((*role).into(), *version));
            }
            Record::UserRoleSet {
                user,
                role,
                version,
            } => {
                let u = self.user_mut(*user)?;
                if *version <= u.role_version {
                    return Err(ApplyError::Inconsistent(format!(
                        "role of {user} at version {version}, not after {}",
                        u.role_version
                    )));
                }
                u.role = (*role).into();
                u.role_version = *version;
                if u.role == Role::Deactivated {
                    u.tokens.clear();
                }
            }
            _ => self.apply_invite(lsn, record)?,
        }
        Ok(())
    }

    /// The invite records (issue 16, item 4), on the workspace shard.
    fn apply_invite(&mut self, lsn: Lsn, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::InviteCreated {
                workspace,
                invite,
                hash,
                creator,
                role,
                max_uses,
                created,
                expires,
            } => {
                self.check_owned("workspace", ws_id(*workspace))?;
                let ws = self.workspace_mut(*workspace)?;
                if *invite != ws.next_invite {
                    return Err(ApplyError::Inconsistent(format!(
                        "invite {invite} created, expected {}",
                        ws.next_invite
                    )));
                }
                let created = Millis(*created);
                ws.invites.retain(|_, i| !i.dead(created));
                ws.next_invite = invite + 1;
                let invite_state = Invite {
                    hash: *hash,
                    creator: (*creator != 0).then_some(UserId(*creator)),
                    role: (*role).into(),
                    max_uses: *max_uses,
                    uses: 0,
                    created,
                    expires: Millis(*expires),
                    revoked: false,
                };
                ws.invites.insert(*invite, invite_state);
            }
            Record::InviteRedeemed {
                workspace,
                invite,
                user,
                name,
            } => {
                self.check_owned("workspace", ws_id(*workspace))?;
                let ws = self.workspace_mut(*workspace)?;
                let Some(i) = ws.invites.get_mut(invite).filter(|i| i.uses < i.max_uses) else {
                    return Err(ApplyError::Inconsistent(format!(
                        "invite {invite} redeemed but unknown or used up"
                    )));
                };
                i.uses += 1;
                let role = i.role;
                if role != Role::Member {
                    ws.roles.insert(UserId(*user), (role, 1));
                }
                let claim = Record::UserClaimed {
                    workspace: *workspace,
                    user: *user,
                    name: name.clone(),
                };
                self.apply(lsn, &claim)?;
            }
            Record::InviteRevoked { workspace, invite } => {
                self.check_owned("workspace", ws_id(*workspace))?;
                let ws = self.workspace_mut(*workspace)?;
                let Some(i) = ws.invites.get_mut(invite) else {
                    return Err(ApplyError::Inconsistent(format!(
                        "unknown invite {invite} revoked"
                    )));
                };
                i.revoked = true;
            }
            Record::InvitePolicySet {
                workspace,
                members_may_invite,
            } => {
                self.check_owned("workspace", ws_id(*workspace))?;
                self.workspace_mut(*workspace)?.members_may_invite = *members_may_invite;
            }
            _ => unreachable!("apply_invite called with another record"),
        }
        Ok(())
    }

    /// The records of issue 17 that live in a conversation's sequence
    /// besides messages: changes and (part 2) replies.
    fn apply_live(&mut self, lsn: Lsn, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::MessageChanged(c) => self.apply_change(lsn, c),
            Record::ReplyPosted(r) => self.apply_reply(lsn, r),
            _ => Ok(()),
        }
    }

    /// A reply (issue 17, part 2): a message (see `apply_message`) whose
    /// root must be an earlier message, not a change or a reply; indexed
    /// for thread pages and unread counts, and queued like a change so
    /// its root's summary moves once it is durable (`settle`).
    fn apply_reply(&mut self, lsn: Lsn, r: &ReplyRecord) -> Result<(), ApplyError> {
        let m = &r.message;
        let conv = self.conversation_mut(m.conversation)?;
        let root = Seq(r.root);
        if r.root == 0 || r.root >= m.seq || conv.is_change(root) || conv.is_reply(root) {
            return Err(ApplyError::Inconsistent(format!(
                "reply {} in {} to {}, not a message",
                m.seq, m.conversation, r.root
            )));
        }
        let thread = Thread {
            root,
            in_channel: r.in_channel,
        };
        self.apply_message(lsn, m, Some(thread))?;
        let conv = self.conversation_mut(m.conversation)?;
        conv.replies.insert(m.seq, (r.root, r.in_channel));
        conv.threads.entry(r.root).or_default().push(m.seq);
        if !r.in_channel {
            conv.hidden.push(m.seq);
        }
        conv.unsettled_changes.push_back((lsn.0, reply_of(r)));
        Ok(())
    }

    fn apply_message(
        &mut self,
        lsn: Lsn,
        m: &MessageRecord,
        thread: Option<Thread>,
    ) -> Result<(), ApplyError> {
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
        conv.undurable.push_back(lsn.0);
        conv.last_activity = Millis(m.ts);
        // A reply shown in its thread only is not the channel's preview.
        if thread.is_none_or(|t| t.in_channel) {
            conv.preview = Some(preview(&m.body));
            conv.last_post = m.seq;
        }
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
        let mut message = message_of(m);
        message.thread = thread;
        self.cache.push(lsn.0, message);
        let conversation = ConversationId(m.conversation);
        self.unsettled.push_back((lsn.0, conversation));
        if lsn.0 > self.handoff_watermark {
            self.handoff_tail
                .push_back((lsn.0, conversation, Seq(m.seq)));
            if self.handoff_tail.len() > NOTIFY_HANDOFFS_MAX {
                self.handoff_tail.pop_front();
                self.handoff_tail_dropped += 1;
            }
        }
        Ok(())
    }

    /// `NotifyHandedOff { lsn: mark }` at `lsn`: the watermark moves
    /// forward (never back, never to its own record) and the hand-off tail
    /// drops what it covers.
    fn set_handoff_watermark(&mut self, lsn: Lsn, mark: u64) -> Result<(), ApplyError> {
        if mark < self.handoff_watermark || mark >= lsn.0 {
            return Err(ApplyError::Inconsistent(format!(
                "hand-off watermark {mark} after {} at LSN {}",
                self.handoff_watermark, lsn.0
            )));
        }
        self.handoff_watermark = mark;
        while self
            .handoff_tail
            .front()
            .is_some_and(|(l, _, _)| *l <= mark)
        {
            self.handoff_tail.pop_front();
        }
        Ok(())
    }

    /// Forgets the LSNs of messages that became durable (every LSN ≤
    /// `durable`): [`Conversation::visible_head`] no longer needs them.
    /// O(messages settled).
    pub fn settle(&mut self, durable: Lsn) {
        while let Some(&(lsn, conversation)) = self.unsettled.front() {
            if lsn > durable.0 {
                break;
            }
            self.unsettled.pop_front();
            if let Some(c) = self.conversations.get_mut(&conversation) {
                debug_assert_eq!(c.undurable.front(), Some(&lsn));
                c.undurable.pop_front();
                if c.unsettled_changes.front().is_some_and(|(l, _)| *l == lsn) {
                    if let Some((_, event)) = c.unsettled_changes.pop_front() {
                        if let Some(target) = c.settle_change(&event) {
                            self.cache.redact(conversation, target);
                        }
                    }
                }
            }
        }
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
        change: None,
        live: Live::default(),
        thread: None,
    }
}

/// The client view of a reply record (issue 17, part 2): its message with
/// `thread` set.
pub fn reply_of(r: &ReplyRecord) -> Message {
    let mut m = message_of(&r.message);
    m.thread = Some(Thread {
        root: Seq(r.root),
        in_channel: r.in_channel,
    });
    m
}

/// The client view of a change record (issue 17): a `Message` with its
/// `change` set, the actor as sender, the text as body.
pub fn change_of(c: &ChangeRecord) -> Message {
    Message {
        conversation: ConversationId(c.conversation),
        seq: Seq(c.seq),
        sender: UserId(c.actor),
        client_msg_id: 0,
        ts: Millis(c.ts),
        body: c.text.clone(),
        mentions: Vec::new(),
        broadcast: Broadcast::None,
        change: Some(Change {
            kind: c.kind.into(),
            target: Seq(c.target),
        }),
        live: Live::default(),
        thread: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{compose, slot_on_shard};
    use crate::record::{StoredBroadcast, StoredKind};

    const SHARDS: u16 = 2;

    fn state() -> State {
        State::new(ShardId(0), SHARDS, HashState::new(&[3; 32]))
    }

    /// An id placed on shard `shard`, allocated by shard 1.
    fn id_on(shard: u16, n: u32) -> u64 {
        compose(
            slot_on_shard(u64::from(n), ShardId(shard), SHARDS),
            ShardId(1),
            n,
        )
    }

    fn conversation(id: u64, kind: StoredKind, members: Vec<u64>) -> Record {
        Record::ConversationCreated {
            conversation: id,
            workspace: 1,
            kind,
            name: String::new(),
            members,
            creator: None,
            ts: 0,
        }
    }

    fn message(
        conv: u64,
        seq: u64,
        sender: u64,
        cmid: u128,
        mentions: Vec<u64>,
        b: StoredBroadcast,
    ) -> Record {
        Record::MessagePosted(MessageRecord {
            conversation: conv,
            seq,
            sender,
            client_msg_id: cmid,
            ts: seq,
            body: format!("m{seq}"),
            mentions,
            broadcast: b,
            broadcast_ignored: false,
        })
    }

    /// Applies `records` at LSNs 1, 2, …; the last must give `expected`.
    fn check(records: Vec<Record>, expected: Result<(), &str>) -> State {
        let mut s = state();
        let n = records.len();
        for (i, r) in records.into_iter().enumerate() {
            let got = s.apply(Lsn(i as u64 + 1), &r);
            if i + 1 < n {
                assert_eq!(got, Ok(()), "record {i}");
            } else {
                match (got, expected) {
                    (Ok(()), Ok(())) => {}
                    (Err(e), Err(want)) => {
                        assert!(e.to_string().contains(want), "{e} lacks {want:?}")
                    }
                    (got, want) => panic!("got {got:?}, want {want:?}"),
                }
            }
        }
        s
    }

    #[test]
    fn apply_refuses_records_that_do_not_fit() {
        let c = id_on(0, 5);
        let foreign = id_on(1, 6);
        let chan = || conversation(c, StoredKind::PublicChannel, vec![10]);
        let none = StoredBroadcast::None;
        check(vec![chan()], Ok(()));
        check(vec![chan(), chan()], Err("created twice"));
        check(
            vec![conversation(foreign, StoredKind::PublicChannel, vec![])],
            Err("not placed"),
        );
        check(
            vec![conversation(c, StoredKind::GroupDm, vec![3, 2, 4])],
            Err("not sorted"),
        );
        check(vec![chan(), message(c, 1, 10, 1, vec![], none)], Ok(()));
        check(
            vec![chan(), message(c, 2, 10, 1, vec![], none)],
            Err("after head 0"),
        );
        check(
            vec![
                chan(),
                message(c, 1, 10, 1, vec![], none),
                message(c, 2, 10, 1, vec![], none),
            ],
            Err("duplicates a client_msg_id"),
        );
        check(
            vec![message(c, 1, 10, 1, vec![], none)],
            Err("does not exist"),
        );
        check(
            vec![
                chan(),
                Record::MemberAdded {
                    conversation: c,
                    user: 10,
                    ts: 0,
                },
            ],
            Err("added twice"),
        );
        check(
            vec![
                chan(),
                Record::MemberRemoved {
                    conversation: c,
                    user: 11,
                    ts: 0,
                },
            ],
            Err("not a member"),
        );
        check(
            vec![Record::UserConfirmed {
                workspace: 1,
                user: 2,
            }],
            Err("without a pending claim"),
        );
        let user = id_on(0, 7);
        let created = Record::UserCreated {
            user,
            workspace: 1,
            name: "ann".into(),
            workspace_name: "Acme".into(),
            token: 1,
            token_hash: [0; 32],
        };
        let cursor = |seq| Record::CursorSet {
            user,
            conversation: c,
            seq,
        };
        check(vec![created.clone(), cursor(3)], Ok(()));
        check(vec![created, cursor(3), cursor(3)], Err("backwards"));
    }

    #[test]
    fn visibility_follows_durability() {
        let c = id_on(0, 5);
        let none = StoredBroadcast::None;
        let s = check(
            vec![
                conversation(c, StoredKind::PublicChannel, vec![10]),
                message(c, 1, 10, 1, vec![], none),
                Record::MemberAdded {
                    conversation: c,
                    user: 11,
                    ts: 0,
                },
                message(c, 2, 10, 2, vec![], none),
                message(c, 3, 10, 3, vec![], none),
            ],
            Ok(()),
        );
        let conv = &s.conversations[&ConversationId(c)];
        let visible: Vec<u64> = (0..=5).map(|d| conv.visible_head(Lsn(d)).0).collect();
        assert_eq!(visible, vec![0, 0, 1, 1, 2, 3]);
        let member: Vec<bool> = (0..=5)
            .map(|d| conv.is_member(UserId(11), Lsn(d)))
            .collect();
        assert_eq!(member, vec![false, false, false, true, true, true]);
        assert_eq!(s.handoff_tail.len(), 3, "every message is owed a hand-off");
        // Settling forgets the LSNs of durable messages, nothing else.
        let mut s = s;
        s.settle(Lsn(4));
        let conv = &s.conversations[&ConversationId(c)];
        assert_eq!(conv.undurable, vec![5]);
        assert_eq!(conv.visible_head(Lsn(4)).0, 2);
        assert_eq!(conv.visible_head(Lsn(5)).0, 3);
        s.settle(Lsn(5));
        assert!(s.unsettled.is_empty());
        assert_eq!(
            s.conversations[&ConversationId(c)].visible_head(Lsn(5)).0,
            3
        );
    }

    #[test]
    fn mention_counts() {
        let c = id_on(0, 5);
        let d = id_on(0, 9);
        let none = StoredBroadcast::None;
        let s = check(
            vec![
                conversation(c, StoredKind::PublicChannel, vec![10, 11]),
                message(c, 1, 10, 1, vec![11, 11], none),
                message(c, 2, 10, 2, vec![], none),
                message(c, 3, 10, 3, vec![11], StoredBroadcast::Channel),
                message(c, 4, 10, 4, vec![], StoredBroadcast::Here),
                message(c, 5, 11, 5, vec![11, 10], none),
                conversation(d, StoredKind::Dm, vec![10, 11]),
                message(d, 1, 10, 1, vec![], none),
                message(d, 2, 10, 2, vec![], none),
            ],
            Ok(()),
        );
        let conv = &s.conversations[&ConversationId(c)];
        // (user, read, head) → mentions
        let table = [
            (11, 0, 5, 2), // seq 1 (once, however often named), seq 3 (@channel); 5 is self
            (11, 1, 5, 1),
            (11, 3, 5, 0),
            (11, 0, 2, 1), // only what the head covers
            (10, 0, 5, 2), // @channel at 3 and the mention at 5
        ];
        for (user, read, head, want) in table {
            assert_eq!(
                conv.mention_count(UserId(user), Seq(read), Seq(head)),
                want,
                "user {user} read {read} head {head}"
            );
        }
        let dm = &s.conversations[&ConversationId(d)];
        assert_eq!(
            dm.mention_count(UserId(11), Seq(0), Seq(2)),
            2,
            "every DM message counts"
        );
        assert_eq!(
            s.dms[&(WorkspaceId(1), vec![UserId(10), UserId(11)])],
            ConversationId(d)
        );
    }
}
