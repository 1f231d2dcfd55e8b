//! Snapshots: the whole persistent state of a shard as of one LSN, in a
//! versioned rkyv encoding.
//!
//! Byte layout: `b"CSNP"`, the format version as a little-endian `u32`,
//! then the rkyv archive (0.8, little-endian, validated with bytecheck on
//! restore) of [`SnapshotV1`]. Every collection is sorted by id, so the
//! snapshot of a state is a pure function of that state: two shards that
//! applied the same records produce identical bytes (the simulation checks
//! live state against restore + replay this way).
//!
//! Not in a snapshot: memory-only state (connections, subscriptions,
//! devices, derived conversation lists, interest sets, pending tables) and
//! the LSNs that gate visibility (everything in a snapshot is durable once
//! the snapshot is usable). The DM directory and public-channel lists are
//! rebuilt from the conversations and directories.
//!
//! Failure contract: [`restore`] returns a [`RestoreError`] for anything
//! that is not a valid snapshot of this shard; it never panics on input.

use rkyv::{rancor, util::AlignedVec, Archive, Deserialize, Serialize};
use std::sync::Arc;

use crate::constants::NOTIFY_HANDOFFS_MAX;
use crate::hash::HashState;
use crate::record::{
    ProfileRecord, StoredBroadcast, StoredChange, StoredKind, StoredLevel, StoredReason, StoredRole,
};
use crate::state::{
    ApplyError, ChannelName, Claim, Cursor, DedupEntry, Invite, LiveEntry, Member, NameEntry,
    NotifyPref, State,
};
use crate::types::{
    Broadcast, Change, ChangeKind, ConversationId, Live, Lsn, Message, Millis, Reaction, Seq,
    ShardId, Thread, ThreadSummary, UserId, WorkspaceId,
};

/// Snapshot magic.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"CSNP";
/// Current snapshot format version (7: [`SnapshotV7`], version 6 plus the
/// workspace invites and invite policy; 6: [`SnapshotV6`], version 5 without
/// the per-message seq → LSN index — every conversation's `lsns` is
/// written empty, message bodies live in the history store — plus the
/// hand-off tail, the messages after the watermark a start hands off
/// again; 5: [`SnapshotV5`], version 4 plus workspace roles; 4:
/// [`SnapshotV4`], version 3 plus profiles and the directory's display
/// names; 3: version 2 plus the owner's notification hand-off watermark;
/// 2: version 1 plus the push outbox). Versions 1 to 5 are still read:
/// their index is checked and dropped (the hand-off tail is taken from
/// it), with no roles (1–4), no profiles and no display names (1–3: the
/// builds that wrote them had none), an empty outbox (1), and a watermark
/// at the snapshot's LSN (1, 2: the builds that wrote them never handed
/// off again, so nothing before is owed). Versions 1 to 6 hold no invites.
///
/// 8: [`SnapshotV8`], version 7 plus the messages that live (issue 17):
/// per conversation its change seqs, newest message and the state of
/// every changed message, and the kind and target of cached changes;
/// and the home role's pushes retracted unread by a delete
/// (`State::retracted`). Versions 1 to 7 hold none.
///
/// 9: [`SnapshotV9`], version 8 plus channel settings (issue 16, part 4):
/// each channel's settings (every sequenced setting event applied; its
/// name, renames applied, is version 1's) unless they are the defaults, and the
/// workspace role's renames in flight. Versions 1 to 8 hold none (every
/// channel has default settings).
///
/// 10: [`SnapshotV10`], version 9 plus threads (issue 17, part 2): per
/// conversation with replies, every reply's (seq, root, shown in the
/// channel) and each root's summary with every sequenced reply applied.
/// Versions 1 to 9 hold none (no build that wrote them had threads).
pub const SNAPSHOT_VERSION: u32 = 10;

/// Why snapshot bytes could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// Shorter than the header.
    #[error("snapshot too short ({len} bytes)")]
    TooShort {
        /// Length.
        len: usize,
    },
    /// Not a snapshot.
    #[error("not a snapshot (bad magic)")]
    BadMagic,
    /// A format this build does not read.
    #[error(
        "snapshot format version {version} is not supported (this build reads 1..={SNAPSHOT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// The archive does not validate.
    #[error("snapshot does not validate: {0}")]
    Invalid(String),
    /// A snapshot of another shard or node layout.
    #[error(
        "snapshot of shard {found_shard}/{found_count}, expected {expected_shard}/{expected_count}"
    )]
    WrongShard {
        /// Configured shard.
        expected_shard: u16,
        /// Configured count.
        expected_count: u16,
        /// Snapshot's shard.
        found_shard: u16,
        /// Snapshot's count.
        found_count: u16,
    },
    /// Valid encoding, impossible content.
    #[error("snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

impl From<ApplyError> for RestoreError {
    fn from(e: ApplyError) -> RestoreError {
        RestoreError::Inconsistent(e.to_string())
    }
}

/// Version 1 of the snapshot.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct SnapshotV1 {
    shard: u16,
    shard_count: u16,
    last_lsn: u64,
    next_id_counter: u64,
    workspaces: Vec<SnapWorkspace>,
    users: Vec<SnapUser>,
    conversations: Vec<SnapConversation>,
    claims: Vec<SnapClaim>,
    cache: Vec<SnapCache>,
}

/// Version 2: version 1 and the home role's push state.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct SnapshotV2 {
    v1: SnapshotV1,
    /// Sorted by id.
    outbox: Vec<SnapPush>,
    /// (user, conversation, seq), sorted.
    pushed: Vec<(u64, u64, u64)>,
}

/// Version 3: version 2 and the owner role's hand-off watermark.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct SnapshotV3 {
    v2: SnapshotV2,
    /// `State::handoff_watermark`.
    handoff_watermark: u64,
}

/// Version 4: version 3 and the people state of issue 16.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct SnapshotV4 {
    v3: SnapshotV3,
    /// Home role: profiles of users homed here (version > 0), by user.
    profiles: Vec<SnapProfile>,
    /// Workspace role: (workspace, user, display name, version), by
    /// workspace then user.
    dir_names: Vec<(u64, u64, String, u64)>,
}

/// Version 5: version 4 and the workspace roles of issue 16, part 2.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct SnapshotV5 {
    v4: SnapshotV4,
    /// Workspace role: (workspace, user, role, version), by workspace then
    /// user.
    ws_roles: Vec<(u64, u64, StoredRole, u64)>,
    /// Home role: (user, role, version) of users homed here with a role
    /// version > 0, by user.
    user_roles: Vec<(u64, StoredRole, u64)>,
}

/// Version 6: version 5 with every conversation's `lsns` empty (the
/// seq → LSN index is gone: memory and snapshots no longer grow with
/// history), and the owner role's hand-off tail.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct SnapshotV6 {
    v5: SnapshotV5,
    /// `State::handoff_tail`: (LSN, conversation, seq), in LSN order.
    handoff_tail: Vec<(u64, u64, u64)>,
}

/// Version 7: version 6 and the workspace invites of issue 16, part 3.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct SnapshotV7 {
    v6: SnapshotV6,
    /// Workspace role: the invite state of every workspace that has any,
    /// by workspace.
    invites: Vec<SnapInvites>,
}

/// One workspace's invites and invite policy.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapInvites {
    workspace: u64,
    next_invite: u64,
    members_may_invite: bool,
    /// By id.
    invites: Vec<SnapInvite>,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapInvite {
    id: u64,
    hash: [u8; 32],
    /// 0: an admin session.
    creator: u64,
    role: StoredRole,
    max_uses: u32,
    uses: u32,
    created: u64,
    expires: u64,
    revoked: bool,
}

/// Version 8: version 7 and the messages that live (issue 17).
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct SnapshotV8 {
    v7: SnapshotV7,
    /// Conversations with at least one change, by id.
    live: Vec<SnapLiveConv>,
    /// Home role: `State::retracted`, (user, conversation, seq), sorted.
    retracted: Vec<(u64, u64, u64)>,
}

/// Version 9: version 8 and the channel settings of issue 16, part 4.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct SnapshotV9 {
    v8: SnapshotV8,
    /// Channels with a setting or a rename, by id.
    settings: Vec<SnapSettings>,
    /// Workspace role: `Claim::Rename`s in flight, by channel id.
    renames: Vec<SnapRename>,
}

/// Version 10: version 9 and threads (issue 17, part 2).
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
pub struct SnapshotV10 {
    v9: SnapshotV9,
    /// Conversations with at least one reply, by id.
    threads: Vec<SnapThreads>,
}

/// A conversation's threads.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapThreads {
    conversation: u64,
    /// (seq, root, shown in the channel) of every reply, ascending.
    replies: Vec<(u64, u64, bool)>,
    /// Every root's summary, by seq.
    roots: Vec<SnapRoot>,
}

/// A thread root's summary and its state's version.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapRoot {
    seq: u64,
    replies: u32,
    last_reply: u64,
    last_seq: u64,
    /// Newest first, at most THREAD_PARTICIPANTS_MAX.
    participants: Vec<u64>,
    version: u64,
}

/// A channel's name and settings with every sequenced event applied.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapSettings {
    conversation: u64,
    name: String,
    topic: String,
    purpose: String,
    archived: bool,
    admins_only: bool,
}

/// A rename's name claim in flight (see `crate::settings`).
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapRename {
    conversation: u64,
    workspace: u64,
    old: String,
    new: String,
    actor: u64,
    role: StoredRole,
}

/// A conversation's issue-17 state.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapLiveConv {
    conversation: u64,
    /// `Conversation::changes`, ascending.
    changes: Vec<u64>,
    /// `Conversation::last_post`.
    last_post: u64,
    /// `Conversation::live`, by seq.
    entries: Vec<SnapLive>,
    /// (seq, target, kind) of the changes in the recent cache.
    cached: Vec<(u64, u64, StoredChange)>,
}

/// One changed message.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapLive {
    seq: u64,
    edited: Option<u64>,
    deleted: bool,
    /// (emoji, users ascending), in the order first added.
    reactions: Vec<(String, Vec<u64>)>,
    version: u64,
    text: String,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapProfile {
    user: u64,
    version: u64,
    profile: ProfileRecord,
}

/// The people state of a snapshot (empty before version 4; no roles
/// before version 5).
#[derive(Default)]
struct People {
    profiles: Vec<SnapProfile>,
    dir_names: Vec<(u64, u64, String, u64)>,
    ws_roles: Vec<(u64, u64, StoredRole, u64)>,
    user_roles: Vec<(u64, StoredRole, u64)>,
    /// None before version 7.
    invites: Vec<SnapInvites>,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapPush {
    id: u64,
    user: u64,
    conversation: u64,
    seq: u64,
    sender: u64,
    reason: StoredReason,
    preview: String,
    due: u64,
    clear: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapWorkspace {
    id: u64,
    name: String,
    created: u64,
    /// (handle, user, confirmed)
    users: Vec<(String, u64, bool)>,
    /// (name, channel, private, confirmed)
    channels: Vec<(String, u64, bool, bool)>,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapUser {
    id: u64,
    workspace: u64,
    name: String,
    workspace_name: String,
    tokens: Vec<(u64, [u8; 32])>,
    next_token: u64,
    cursors: Vec<(u64, u64)>,
    prefs: Vec<(u64, StoredLevel, bool)>,
    dnd_until: Option<u64>,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapDedup {
    sender: u64,
    client_msg_id: u128,
    seq: u64,
    ts: u64,
    broadcast_ignored: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapConversation {
    id: u64,
    workspace: u64,
    kind: StoredKind,
    name: String,
    creator: Option<u64>,
    created: u64,
    /// (user, joined_seq)
    members: Vec<(u64, u64)>,
    head: u64,
    /// The seq → LSN index of versions 1–4 (`lsns[seq - 1]`); empty from
    /// version 5 on.
    lsns: Vec<u64>,
    last_activity: u64,
    preview: Option<String>,
    /// Oldest first.
    dedup: Vec<SnapDedup>,
    mentions: Vec<(u64, Vec<u64>)>,
    broadcasts: Vec<u64>,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapClaim {
    id: u64,
    workspace: u64,
    name: String,
    channel: bool,
    private: bool,
    creator: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapMessage {
    seq: u64,
    sender: u64,
    client_msg_id: u128,
    ts: u64,
    body: String,
    mentions: Vec<u64>,
    broadcast: StoredBroadcast,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
struct SnapCache {
    conversation: u64,
    stamp: u64,
    messages: Vec<SnapMessage>,
}

fn sorted<T, K: Ord>(mut v: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    v.sort_by_key(key);
    v
}

/// Version 2 of `state` around its version 1 part: the push outbox.
fn snapshot_v2(state: &State, v1: SnapshotV1) -> SnapshotV2 {
    SnapshotV2 {
        v1,
        outbox: state
            .outbox
            .iter()
            .map(|(id, e)| SnapPush {
                id: *id,
                user: e.user.0,
                conversation: e.conversation.0,
                seq: e.seq.0,
                sender: e.sender.0,
                reason: StoredReason::from(e.reason),
                preview: e.preview.clone(),
                due: e.due.0,
                clear: e.clear,
            })
            .collect(),
        pushed: state
            .pushed
            .iter()
            .map(|((u, c), s)| (u.0, c.0, s.0))
            .collect(),
    }
}

/// Version 7 of `state` around its version 1 part.
fn snapshot_v7(state: &State, v1: SnapshotV1) -> SnapshotV7 {
    let mut invites: Vec<SnapInvites> = state
        .workspaces
        .values()
        .filter(|w| w.next_invite > 1 || w.members_may_invite)
        .map(|w| SnapInvites {
            workspace: w.id.0,
            next_invite: w.next_invite,
            members_may_invite: w.members_may_invite,
            invites: w
                .invites
                .iter()
                .map(|(id, i)| SnapInvite {
                    id: *id,
                    hash: i.hash,
                    creator: i.creator.map_or(0, |u| u.0),
                    role: i.role.into(),
                    max_uses: i.max_uses,
                    uses: i.uses,
                    created: i.created.0,
                    expires: i.expires.0,
                    revoked: i.revoked,
                })
                .collect(),
        })
        .collect();
    invites.sort_by_key(|w| w.workspace);
    SnapshotV7 {
        v6: snapshot_v6(state, v1),
        invites,
    }
}

/// Version 6 of `state` around its version 1 part.
fn snapshot_v6(state: &State, v1: SnapshotV1) -> SnapshotV6 {
    SnapshotV6 {
        v5: snapshot_v5(state, snapshot_v2(state, v1)),
        handoff_tail: state
            .handoff_tail
            .iter()
            .map(|(l, c, s)| (*l, c.0, s.0))
            .collect(),
    }
}

fn snap_profiles(state: &State) -> Vec<SnapProfile> {
    let profiles = state
        .users
        .values()
        .filter(|u| u.profile_version > 0)
        .map(|u| SnapProfile {
            user: u.id.0,
            version: u.profile_version,
            profile: crate::profile::to_record(&u.profile),
        })
        .collect();
    sorted(profiles, |p: &SnapProfile| p.user)
}

fn snap_dir_names(state: &State) -> Vec<(u64, u64, String, u64)> {
    let mut names: Vec<_> = state
        .workspaces
        .values()
        .flat_map(|w| {
            w.dir
                .names()
                .map(|(u, n, v)| (w.id.0, u.0, n.to_owned(), v))
        })
        .collect();
    names.sort_by_key(|e| (e.0, e.1));
    names
}

/// Decodes the archive of a snapshot of `version` into its parts.
#[allow(clippy::type_complexity)]
fn decode_version(
    version: u32,
    aligned: &[u8],
    live: &mut Vec<SnapLiveConv>,
    retracted: &mut Vec<(u64, u64, u64)>,
    v9_parts: &mut (Vec<SnapSettings>, Vec<SnapRename>, Vec<SnapThreads>),
) -> Result<
    (
        SnapshotV1,
        Vec<SnapPush>,
        Vec<(u64, u64, u64)>,
        Option<u64>,
        People,
        (Vec<(u64, u64, u64)>, u64),
    ),
    RestoreError,
> {
    let invalid = |e: rancor::Error| RestoreError::Invalid(e.to_string());
    let decoded = match version {
        1 => (
            rkyv::from_bytes::<SnapshotV1, rancor::Error>(aligned).map_err(invalid)?,
            Vec::new(),
            Vec::new(),
            None,
            People::default(),
            None,
        ),
        2 => {
            let v2 = rkyv::from_bytes::<SnapshotV2, rancor::Error>(aligned).map_err(invalid)?;
            (v2.v1, v2.outbox, v2.pushed, None, People::default(), None)
        }
        3 => {
            let v3 = rkyv::from_bytes::<SnapshotV3, rancor::Error>(aligned).map_err(invalid)?;
            let w = Some(v3.handoff_watermark);
            (
                v3.v2.v1,
                v3.v2.outbox,
                v3.v2.pushed,
                w,
                People::default(),
                None,
            )
        }
        4 => {
            let v4 = rkyv::from_bytes::<SnapshotV4, rancor::Error>(aligned).map_err(invalid)?;
            let (v1, outbox, pushed, w, people) = split_v4(v4);
            (v1, outbox, pushed, w, people, None)
        }
        5 => {
            let v5 = rkyv::from_bytes::<SnapshotV5, rancor::Error>(aligned).map_err(invalid)?;
            let (v1, outbox, pushed, w, people) = split_v5(v5);
            (v1, outbox, pushed, w, people, None)
        }
        6 => {
            let v6 = rkyv::from_bytes::<SnapshotV6, rancor::Error>(aligned).map_err(invalid)?;
            let (v1, outbox, pushed, w, people) = split_v5(v6.v5);
            (v1, outbox, pushed, w, people, Some((v6.handoff_tail, 0)))
        }
        7 => {
            let v7 = rkyv::from_bytes::<SnapshotV7, rancor::Error>(aligned).map_err(invalid)?;
            let (v1, outbox, pushed, w, mut people) = split_v5(v7.v6.v5);
            people.invites = v7.invites;
            (v1, outbox, pushed, w, people, Some((v7.v6.handoff_tail, 0)))
        }
        8..=10 => {
            let v8 = if version == 10 {
                let v10 =
                    rkyv::from_bytes::<SnapshotV10, rancor::Error>(aligned).map_err(invalid)?;
                *v9_parts = (v10.v9.settings, v10.v9.renames, v10.threads);
                v10.v9.v8
            } else if version == 9 {
                let v9 = rkyv::from_bytes::<SnapshotV9, rancor::Error>(aligned).map_err(invalid)?;
                *v9_parts = (v9.settings, v9.renames, Vec::new());
                v9.v8
            } else {
                rkyv::from_bytes::<SnapshotV8, rancor::Error>(aligned).map_err(invalid)?
            };
            *live = v8.live;
            *retracted = v8.retracted;
            let v7 = v8.v7;
            let (v1, outbox, pushed, w, mut people) = split_v5(v7.v6.v5);
            people.invites = v7.invites;
            (v1, outbox, pushed, w, people, Some((v7.v6.handoff_tail, 0)))
        }
        _ => return Err(RestoreError::UnsupportedVersion { version }),
    };
    // Versions 1–5: the hand-off tail comes from the seq → LSN index.
    let (v1, outbox, pushed, w, people, tail) = decoded;
    let tail = tail.unwrap_or_else(|| tail_from_index(&v1.conversations, w.unwrap_or(v1.last_lsn)));
    Ok((v1, outbox, pushed, w, people, tail))
}

/// The parts of a version 4 archive (also inside versions 5 and 6).
#[allow(clippy::type_complexity)]
fn split_v4(
    v4: SnapshotV4,
) -> (
    SnapshotV1,
    Vec<SnapPush>,
    Vec<(u64, u64, u64)>,
    Option<u64>,
    People,
) {
    let people = People {
        profiles: v4.profiles,
        dir_names: v4.dir_names,
        ..People::default()
    };
    let v3 = v4.v3;
    let w = Some(v3.handoff_watermark);
    (v3.v2.v1, v3.v2.outbox, v3.v2.pushed, w, people)
}

/// The parts of a version 5 archive (also inside version 6): version 4's
/// and the roles.
#[allow(clippy::type_complexity)]
fn split_v5(
    v5: SnapshotV5,
) -> (
    SnapshotV1,
    Vec<SnapPush>,
    Vec<(u64, u64, u64)>,
    Option<u64>,
    People,
) {
    let (v1, outbox, pushed, w, mut people) = split_v4(v5.v4);
    people.ws_roles = v5.ws_roles;
    people.user_roles = v5.user_roles;
    (v1, outbox, pushed, w, people)
}

/// Entries of a conversation's seq → LSN index in a snapshot of `version`:
/// one per message before version 6, none from it on.
fn index_len(version: u32, head: u64) -> u64 {
    if version < 6 {
        head
    } else {
        0
    }
}

/// The hand-off tail of a version 1–5 snapshot, from its seq → LSN index:
/// the newest `NOTIFY_HANDOFFS_MAX` messages after the watermark, in LSN
/// order, and how many more there were. One pass per conversation from its
/// newest message back to the watermark, then a sort of what was kept.
fn tail_from_index(conversations: &[SnapConversation], mark: u64) -> (Vec<(u64, u64, u64)>, u64) {
    let mut all: Vec<(u64, u64, u64)> = Vec::new();
    for c in conversations {
        let first = c.lsns.partition_point(|&l| l <= mark);
        for (i, l) in c.lsns.iter().enumerate().skip(first) {
            all.push((*l, c.id, i as u64 + 1));
        }
    }
    all.sort_unstable();
    let dropped = all.len().saturating_sub(NOTIFY_HANDOFFS_MAX);
    (all.split_off(dropped), dropped as u64)
}

/// Restores profiles (users already restored) and display names
/// (workspaces and their confirmed users already restored).
fn restore_people(state: &mut State, people: People) -> Result<(), RestoreError> {
    for p in people.profiles {
        let Some(user) = state.users.get_mut(&UserId(p.user)) else {
            return Err(inconsistent(format!(
                "profile of {} not homed here",
                p.user
            )));
        };
        if p.version == 0 {
            return Err(inconsistent(format!("profile of {} at version 0", p.user)));
        }
        user.profile = crate::profile::from_record(&p.profile);
        user.profile_version = p.version;
    }
    for (ws, user, name, version) in people.dir_names {
        let Some(w) = state.workspaces.get_mut(&WorkspaceId(ws)) else {
            return Err(inconsistent(format!(
                "display name in unknown workspace {ws}"
            )));
        };
        if !w.dir.set_name(UserId(user), &name, version) {
            return Err(inconsistent(format!("display name of {user} twice")));
        }
    }
    for (ws, user, role, version) in people.ws_roles {
        let Some(w) = state.workspaces.get_mut(&WorkspaceId(ws)) else {
            return Err(inconsistent(format!("role in unknown workspace {ws}")));
        };
        if version == 0
            || w.roles
                .insert(UserId(user), (role.into(), version))
                .is_some()
        {
            return Err(inconsistent(format!("role of {user}: version 0 or twice")));
        }
    }
    for (user, role, version) in people.user_roles {
        let Some(u) = state.users.get_mut(&UserId(user)) else {
            return Err(inconsistent(format!("role of {user} not homed here")));
        };
        if version == 0 {
            return Err(inconsistent(format!("role of {user} at version 0")));
        }
        u.role = role.into();
        u.role_version = version;
    }
    for w in people.invites {
        restore_invites(state, w)?;
    }
    Ok(())
}

fn restore_invites(state: &mut State, w: SnapInvites) -> Result<(), RestoreError> {
    let Some(ws) = state.workspaces.get_mut(&WorkspaceId(w.workspace)) else {
        return Err(inconsistent(format!(
            "invites of unknown workspace {}",
            w.workspace
        )));
    };
    ws.next_invite = w.next_invite;
    ws.members_may_invite = w.members_may_invite;
    for i in w.invites {
        if i.id == 0 || i.id >= w.next_invite || i.uses > i.max_uses {
            return Err(inconsistent(format!(
                "invite {} of workspace {}",
                i.id, w.workspace
            )));
        }
        let invite = Invite {
            hash: i.hash,
            creator: (i.creator != 0).then_some(UserId(i.creator)),
            role: i.role.into(),
            max_uses: i.max_uses,
            uses: i.uses,
            created: Millis(i.created),
            expires: Millis(i.expires),
            revoked: i.revoked,
        };
        ws.invites.insert(i.id, invite);
    }
    Ok(())
}

/// Versions 3 to 5 of `state` around its version 2 part: the hand-off
/// watermark, the people state, the roles.
fn snapshot_v5(state: &State, v2: SnapshotV2) -> SnapshotV5 {
    SnapshotV5 {
        v4: SnapshotV4 {
            v3: SnapshotV3 {
                v2,
                handoff_watermark: state.handoff_watermark,
            },
            profiles: snap_profiles(state),
            dir_names: snap_dir_names(state),
        },
        ws_roles: snap_ws_roles(state),
        user_roles: snap_user_roles(state),
    }
}

fn snap_ws_roles(state: &State) -> Vec<(u64, u64, StoredRole, u64)> {
    let mut roles: Vec<_> = state
        .workspaces
        .values()
        .flat_map(|w| {
            w.roles
                .iter()
                .map(|(u, (r, v))| (w.id.0, u.0, StoredRole::from(*r), *v))
        })
        .collect();
    roles.sort_by_key(|e| (e.0, e.1));
    roles
}

fn snap_user_roles(state: &State) -> Vec<(u64, StoredRole, u64)> {
    let roles = state
        .users
        .values()
        .filter(|u| u.role_version > 0)
        .map(|u| (u.id.0, StoredRole::from(u.role), u.role_version))
        .collect();
    sorted(roles, |r: &(u64, StoredRole, u64)| r.0)
}

/// Encodes the state as of `last_lsn`: [`capture`] then
/// [`Capture::encode`].
pub fn encode(state: &State, last_lsn: Lsn) -> Vec<u8> {
    capture(state, last_lsn).encode()
}

/// A copy of a shard's persistent state as of one LSN, detached from the
/// state (owned, `Send`): the part of a snapshot that must run on the
/// shard's thread, between two inputs, so that it is consistent as of
/// that LSN. Its cost is a clone of the state (proportional to state, not
/// history); [`Capture::encode`] — the rkyv serialization, most of the
/// cost — can then run on any thread while the shard goes on.
#[derive(Debug)]
pub struct Capture {
    /// Everything but the recent cache.
    snapshot: SnapshotV10,
    /// (conversation, seq) of messages a delete not yet durable removes:
    /// redacted in the cache's copy (issue 17: `settle` redacts them; a
    /// snapshot counts them as durable).
    pending_deletes: std::collections::BTreeSet<(u64, u64)>,
    /// The recent cache, unsorted: (conversation, stamp, messages shared
    /// with the cache), made into `SnapshotV1::cache` by `encode`.
    cache: Vec<(u64, u64, Vec<Arc<Message>>)>,
}

impl Capture {
    /// The LSN the captured state is as of.
    pub fn lsn(&self) -> Lsn {
        Lsn(self.snapshot.v9.v8.v7.v6.v5.v4.v3.v2.v1.last_lsn)
    }

    /// The snapshot bytes (magic, version, archive): the same bytes
    /// [`encode`] gives for the state that was captured.
    pub fn encode(mut self) -> Vec<u8> {
        let mut cache = std::mem::take(&mut self.cache);
        cache.sort_unstable_by_key(|e| e.0);
        let pending = &self.pending_deletes;
        self.snapshot.v9.v8.v7.v6.v5.v4.v3.v2.v1.cache = cache
            .into_iter()
            .map(|(conversation, stamp, messages)| SnapCache {
                conversation,
                stamp,
                messages: messages
                    .iter()
                    .map(|m| {
                        if redacted(pending, conversation, m) {
                            let mut m = Message::clone(m);
                            m.body = String::new();
                            m.mentions = Vec::new();
                            snap_message(&m)
                        } else {
                            snap_message(m)
                        }
                    })
                    .collect(),
            })
            .collect();
        let body = match rkyv::to_bytes::<rancor::Error>(&self.snapshot) {
            Ok(bytes) => bytes,
            Err(e) => panic!("snapshot serialization failed: {e}"),
        };
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }
}

// A capture is handed to another thread to be encoded.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Capture>();
};

fn snap_message(m: &Message) -> SnapMessage {
    SnapMessage {
        seq: m.seq.0,
        sender: m.sender.0,
        client_msg_id: m.client_msg_id,
        ts: m.ts.0,
        body: m.body.clone(),
        mentions: m.mentions.iter().map(|u| u.0).collect(),
        broadcast: m.broadcast.into(),
    }
}

/// Copies the state as of `last_lsn` into a [`Capture`].
pub fn capture(state: &State, last_lsn: Lsn) -> Capture {
    let workspaces = state
        .workspaces
        .values()
        .map(|w| SnapWorkspace {
            id: w.id.0,
            name: w.name.clone(),
            created: w.created.0,
            users: sorted(
                w.users
                    .iter()
                    .map(|(n, e)| (n.clone(), e.user.0, e.confirmed))
                    .collect(),
                |e| e.0.clone(),
            ),
            channels: sorted(
                w.channels
                    .iter()
                    .map(|(n, c)| (n.clone(), c.id.0, c.private, c.confirmed))
                    .collect(),
                |e| e.0.clone(),
            ),
        })
        .collect();
    let users = state
        .users
        .values()
        .map(|u| SnapUser {
            id: u.id.0,
            workspace: u.workspace.0,
            name: u.name.clone(),
            workspace_name: u.workspace_name.clone(),
            tokens: u.tokens.iter().map(|(t, h)| (*t, *h)).collect(),
            next_token: u.next_token,
            cursors: sorted(
                u.cursors.iter().map(|(c, cur)| (c.0, cur.seq.0)).collect(),
                |e| e.0,
            ),
            prefs: sorted(
                u.prefs
                    .iter()
                    .map(|(c, p)| (c.0, StoredLevel::from(p.level), p.muted))
                    .collect(),
                |e| e.0,
            ),
            dnd_until: u.dnd_until.map(|m| m.0),
        })
        .collect();
    let conversations = state
        .conversations
        .values()
        .map(|c| SnapConversation {
            id: c.id.0,
            workspace: c.workspace.0,
            kind: c.kind.into(),
            // Issue 16, part 4: with every sequenced rename applied (a
            // snapshot's state counts as durable once it is usable).
            name: if c.unsettled_changes.is_empty() {
                c.name.clone()
            } else {
                c.current_settings().0
            },
            creator: c.creator.map(|u| u.0),
            created: c.created.0,
            members: sorted(
                c.members
                    .iter()
                    .map(|(u, m)| (u.0, m.joined_seq.0))
                    .collect(),
                |e| e.0,
            ),
            head: c.head.0,
            lsns: Vec::new(),
            last_activity: c.last_activity.0,
            preview: settled_preview(c),
            dedup: c
                .dedup
                .entries()
                .map(|(sender, cmid, e)| SnapDedup {
                    sender: sender.0,
                    client_msg_id: cmid,
                    seq: e.seq.0,
                    ts: e.ts.0,
                    broadcast_ignored: e.broadcast_ignored,
                })
                .collect(),
            mentions: sorted(
                c.mentions.iter().map(|(u, s)| (u.0, s.clone())).collect(),
                |e| e.0,
            ),
            broadcasts: c.broadcasts.clone(),
        })
        .collect();
    let claims = snap_claims(state);
    let cache = state
        .cache
        .export_shared()
        .into_iter()
        .map(|(conv, stamp, messages)| (conv.0, stamp, messages))
        .collect();
    let pending_deletes = pending_deletes(state);
    let snapshot = SnapshotV1 {
        shard: state.shard.0,
        shard_count: state.shard_count,
        last_lsn: last_lsn.0,
        next_id_counter: state.ids.next_counter(),
        workspaces: sorted(workspaces, |w: &SnapWorkspace| w.id),
        users: sorted(users, |u: &SnapUser| u.id),
        conversations: sorted(conversations, |c: &SnapConversation| c.id),
        claims,
        cache: Vec::new(),
    };
    let v9 = SnapshotV9 {
        v8: SnapshotV8 {
            v7: snapshot_v7(state, snapshot),
            live: snap_live(state),
            retracted: state
                .retracted
                .iter()
                .map(|((u, c), s)| (u.0, c.0, s.0))
                .collect(),
        },
        settings: snap_settings(state),
        renames: snap_renames(state),
    };
    Capture {
        snapshot: SnapshotV10 {
            v9,
            threads: snap_threads(state),
        },
        cache,
        pending_deletes,
    }
}

/// Channels whose current settings are not the defaults (issue 16, part
/// 4), by id; their current name is version 1's too.
fn snap_settings(state: &State) -> Vec<SnapSettings> {
    let list = state
        .conversations
        .values()
        .filter(|c| !c.is_dm() && !c.changes.is_empty())
        .filter_map(|c| {
            let (name, settings) = c.current_settings();
            if settings == crate::types::ChannelSettings::default() {
                return None;
            }
            Some(SnapSettings {
                conversation: c.id.0,
                name,
                topic: settings.topic,
                purpose: settings.purpose,
                archived: settings.archived,
                admins_only: settings.posting == crate::types::Posting::Admins,
            })
        })
        .collect();
    sorted(list, |e: &SnapSettings| e.conversation)
}

/// The renames in flight (claims keyed by channel id, ascending).
fn snap_renames(state: &State) -> Vec<SnapRename> {
    state
        .claims
        .iter()
        .filter_map(|(id, (claim, _))| match claim {
            Claim::Rename {
                workspace,
                old,
                new,
                actor,
                role,
            } => Some(SnapRename {
                conversation: *id,
                workspace: workspace.0,
                old: old.clone(),
                new: new.clone(),
                actor: actor.0,
                role: (*role).into(),
            }),
            _ => None,
        })
        .collect()
}

/// Restores version 9's settings and renames (conversations, workspaces
/// and claims already restored).
fn restore_settings(
    state: &mut State,
    settings: Vec<SnapSettings>,
    renames: Vec<SnapRename>,
) -> Result<(), RestoreError> {
    for e in settings {
        let Some(c) = state.conversations.get_mut(&ConversationId(e.conversation)) else {
            return Err(inconsistent(format!(
                "settings of {} not here",
                e.conversation
            )));
        };
        c.name = e.name;
        c.settings = crate::types::ChannelSettings {
            topic: e.topic,
            purpose: e.purpose,
            archived: e.archived,
            posting: if e.admins_only {
                crate::types::Posting::Admins
            } else {
                crate::types::Posting::Everyone
            },
        };
    }
    for r in renames {
        let known = state
            .workspaces
            .get(&WorkspaceId(r.workspace))
            .and_then(|w| w.channels.get(&r.new))
            .is_some_and(|e| e.id.0 == r.conversation && !e.confirmed);
        if !known || state.claims.contains_key(&r.conversation) {
            return Err(inconsistent(format!(
                "rename of {} to {:?}: not an unconfirmed name, or twice",
                r.conversation, r.new
            )));
        }
        let claim = Claim::Rename {
            workspace: WorkspaceId(r.workspace),
            old: r.old,
            new: r.new,
            actor: UserId(r.actor),
            role: r.role.into(),
        };
        state.claims.insert(r.conversation, (claim, Lsn(0)));
    }
    Ok(())
}

/// The name claims in flight, as stored (renames apart: version 9).
fn snap_claims(state: &State) -> Vec<SnapClaim> {
    state
        .claims
        .iter()
        .filter_map(|(id, (claim, _))| match claim {
            Claim::User { workspace, name } => Some(SnapClaim {
                id: *id,
                workspace: workspace.0,
                name: name.clone(),
                channel: false,
                private: false,
                creator: 0,
            }),
            Claim::Channel {
                workspace,
                name,
                private,
                creator,
            } => Some(SnapClaim {
                id: *id,
                workspace: workspace.0,
                name: name.clone(),
                channel: true,
                private: *private,
                creator: creator.0,
            }),
            Claim::Rename { .. } => None,
        })
        .collect()
}

/// (conversation, seq) of the messages a delete not yet durable removes
/// (issue 17: `settle` redacts them from the cache; a snapshot counts them
/// as durable, so its copy of the cache is redacted already).
fn pending_deletes(state: &State) -> std::collections::BTreeSet<(u64, u64)> {
    state
        .conversations
        .values()
        .filter(|c| !c.unsettled_changes.is_empty())
        .flat_map(|c| c.live_with_unsettled().1.into_iter().map(|s| (c.id.0, s.0)))
        .collect()
}

/// Whether a cached message (or an edit of it) loses its text in the
/// snapshot: its target is deleted by a change not yet durable.
fn redacted(pending: &std::collections::BTreeSet<(u64, u64)>, conv: u64, m: &Message) -> bool {
    if pending.is_empty() {
        return false;
    }
    let target = m
        .change
        .filter(|c| c.kind == ChangeKind::Edit)
        .map_or(m.seq, |c| c.target);
    pending.contains(&(conv, target.0))
}

/// A conversation's preview with its changes not yet durable applied
/// (issue 17: what restore + replay gives).
fn settled_preview(c: &crate::state::Conversation) -> Option<String> {
    if c.unsettled_changes.is_empty() {
        return c.preview.clone();
    }
    match c.live_with_unsettled().0.get(&c.last_post) {
        Some(e) if e.live.deleted => None,
        Some(e) if e.live.edited.is_some() => Some(crate::text::preview(&e.text)),
        _ => c.preview.clone(),
    }
}

/// Issue 17, part 3: a pinned message is written as one more entry of its
/// reactions, this emoji with no users — one no client can react with
/// (`text::check_change` refuses control characters) and no reaction has
/// (it always has a user) — so the version 9 layout holds pins unchanged.
const PINNED_MARK: &str = "\u{0}pinned";

/// A message's reactions as written, with [`PINNED_MARK`] last if pinned.
fn snap_reactions(live: &Live) -> Vec<(String, Vec<u64>)> {
    let mut out: Vec<(String, Vec<u64>)> = live
        .reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.users.iter().map(|u| u.0).collect()))
        .collect();
    if live.pinned {
        out.push((PINNED_MARK.to_owned(), Vec::new()));
    }
    out
}

/// The issue-17 state of every conversation with a change, by id.
fn snap_live(state: &State) -> Vec<SnapLiveConv> {
    let live = state
        .conversations
        .values()
        .filter(|c| !c.changes.is_empty())
        .map(|c| SnapLiveConv {
            conversation: c.id.0,
            changes: c.changes.clone(),
            last_post: c.last_post,
            entries: c
                .live_with_unsettled()
                .0
                .iter()
                .map(|(seq, e)| SnapLive {
                    seq: *seq,
                    edited: e.live.edited.map(|t| t.0),
                    deleted: e.live.deleted,
                    reactions: snap_reactions(&e.live),
                    version: e.live.version.0,
                    text: e.text.clone(),
                })
                .collect(),
            cached: state
                .cache
                .range(c.id, Seq(1), c.head)
                .iter()
                .filter_map(|m| m.change.map(|ch| (m.seq.0, ch.target.0, ch.kind.into())))
                .collect(),
        })
        .collect();
    sorted(live, |l: &SnapLiveConv| l.conversation)
}

/// Restores the recent caches and the issue-17 state (conversations
/// already restored).
fn restore_cache(
    state: &mut State,
    cache: Vec<SnapCache>,
    live: Vec<SnapLiveConv>,
    threads: Vec<SnapThreads>,
) -> Result<(), RestoreError> {
    let cached_changes = restore_live(state, live)?;
    restore_threads(state, threads)?;
    for entry in cache {
        let conv = ConversationId(entry.conversation);
        let Some(c) = state.conversations.get(&conv) else {
            return Err(inconsistent(format!(
                "cache of unknown conversation {}",
                conv.0
            )));
        };
        let head = c.head.0;
        let threads = c.replies.clone();
        let count = entry.messages.len() as u64;
        let contiguous = entry
            .messages
            .iter()
            .enumerate()
            .all(|(i, m)| m.seq + count == head + i as u64 + 1);
        if !contiguous {
            return Err(inconsistent(format!(
                "cache of {} is not the newest run",
                conv.0
            )));
        }
        let messages = entry
            .messages
            .into_iter()
            .map(|m| Message {
                conversation: conv,
                seq: Seq(m.seq),
                sender: UserId(m.sender),
                client_msg_id: m.client_msg_id,
                ts: Millis(m.ts),
                body: m.body,
                mentions: m.mentions.into_iter().map(UserId).collect(),
                broadcast: Broadcast::from(m.broadcast),
                change: cached_changes.get(&(conv.0, m.seq)).copied(),
                live: Live::default(),
                thread: threads.get(&m.seq).map(|&(root, in_channel)| Thread {
                    root: Seq(root),
                    in_channel,
                }),
            })
            .collect();
        state.cache.import(conv, entry.stamp, messages);
    }
    Ok(())
}

/// The threads of every conversation with a reply, by id (issue 17, part
/// 2): each root's summary with every sequenced reply applied (a snapshot
/// counts as durable once it is usable).
fn snap_threads(state: &State) -> Vec<SnapThreads> {
    let threads = state
        .conversations
        .values()
        .filter(|c| !c.replies.is_empty())
        .map(|c| {
            let live = c.live_with_unsettled().0;
            SnapThreads {
                conversation: c.id.0,
                replies: c.replies.iter().map(|(s, (r, i))| (*s, *r, *i)).collect(),
                roots: c
                    .threads
                    .keys()
                    .filter_map(|root| live.get(root).map(|e| (root, e)))
                    .map(|(root, e)| SnapRoot {
                        seq: *root,
                        replies: e.live.thread.replies,
                        last_reply: e.live.thread.last_reply.0,
                        last_seq: e.live.thread.last_seq.0,
                        participants: e.live.thread.participants.iter().map(|u| u.0).collect(),
                        version: e.live.version.0,
                    })
                    .collect(),
            }
        })
        .collect();
    sorted(threads, |t: &SnapThreads| t.conversation)
}

/// Restores the threads (issue 17, part 2) into the restored
/// conversations, after the changes' state (a root's summary goes into
/// its state entry, which that restore may have made) and before the
/// caches (cached replies get their thread from it).
fn restore_threads(state: &mut State, threads: Vec<SnapThreads>) -> Result<(), RestoreError> {
    for t in threads {
        let Some(c) = state.conversations.get_mut(&ConversationId(t.conversation)) else {
            return Err(inconsistent(format!(
                "threads of unknown conversation {}",
                t.conversation
            )));
        };
        let head = c.head.0;
        let ascending = t.replies.windows(2).all(|w| w[0].0 < w[1].0);
        for &(seq, root, in_channel) in &t.replies {
            if !ascending || seq > head || root == 0 || root >= seq || c.replies.contains_key(&root)
            {
                return Err(inconsistent(format!(
                    "reply {seq} of {} to {root}: out of order, past the head or not to a root",
                    t.conversation
                )));
            }
            c.replies.insert(seq, (root, in_channel));
            c.threads.entry(root).or_default().push(seq);
            if !in_channel {
                c.hidden.push(seq);
            }
        }
        // `last_post` is the newest seq that is neither a change nor a
        // reply shown in its thread only (`apply_message`); a conversation
        // without changes got its head (`restore_live` restores it only
        // for those with changes), wrong when the newest are such replies.
        let hidden = |seq: u64| c.replies.get(&seq).is_some_and(|&(_, shown)| !shown);
        let mut last = c.head.0;
        while last > 0 && (c.is_change(Seq(last)) || hidden(last)) {
            last -= 1;
        }
        c.last_post = last;
        for r in t.roots {
            if !c.threads.contains_key(&r.seq) {
                return Err(inconsistent(format!(
                    "thread summary of {} in {} without replies",
                    r.seq, t.conversation
                )));
            }
            let entry = c.live.entry(r.seq).or_default();
            entry.live.version = entry.live.version.max(Seq(r.version));
            *entry.live.thread = ThreadSummary {
                replies: r.replies,
                last_reply: Millis(r.last_reply),
                last_seq: Seq(r.last_seq),
                participants: r.participants.into_iter().map(UserId).collect(),
            };
        }
    }
    Ok(())
}

/// Restores the issue-17 state into the restored conversations; returns
/// the (conversation, seq) → change of the cached changes.
fn restore_live(
    state: &mut State,
    live: Vec<SnapLiveConv>,
) -> Result<std::collections::BTreeMap<(u64, u64), Change>, RestoreError> {
    let mut cached = std::collections::BTreeMap::new();
    for l in live {
        let Some(c) = state.conversations.get_mut(&ConversationId(l.conversation)) else {
            return Err(inconsistent(format!(
                "changes of unknown conversation {}",
                l.conversation
            )));
        };
        let head = c.head.0;
        let ascending = l.changes.windows(2).all(|w| w[0] < w[1]);
        if !ascending || l.changes.last().is_some_and(|&s| s > head) || l.last_post > head {
            return Err(inconsistent(format!(
                "changes of {} out of order or past the head",
                l.conversation
            )));
        }
        c.changes = l.changes;
        c.last_post = l.last_post;
        for e in l.entries {
            if e.seq == 0 || e.seq > head || c.is_change(Seq(e.seq)) {
                return Err(inconsistent(format!(
                    "changed message {} of {} is not a message",
                    e.seq, l.conversation
                )));
            }
            let mut pinned = false;
            let reactions = e
                .reactions
                .into_iter()
                .filter(|(emoji, users)| {
                    let mark = emoji == PINNED_MARK && users.is_empty();
                    pinned |= mark;
                    !mark
                })
                .map(|(emoji, users)| Reaction {
                    emoji,
                    users: users.into_iter().map(UserId).collect(),
                })
                .collect();
            let live = Live {
                edited: e.edited.map(Millis),
                deleted: e.deleted,
                reactions,
                version: Seq(e.version),
                thread: Box::default(),
                pinned,
            };
            if pinned {
                c.pins.insert(e.seq);
            }
            c.live.insert(e.seq, LiveEntry { live, text: e.text });
        }
        for (seq, target, kind) in l.cached {
            let change = Change {
                kind: kind.into(),
                target: Seq(target),
            };
            cached.insert((l.conversation, seq), change);
        }
    }
    Ok(cached)
}

fn inconsistent(what: String) -> RestoreError {
    RestoreError::Inconsistent(what)
}

/// Decodes a snapshot into a state for `shard` of `shard_count`; returns
/// the state and the LSN it is as of.
pub fn restore(
    shard: ShardId,
    shard_count: u16,
    hash: HashState,
    bytes: &[u8],
) -> Result<(State, Lsn), RestoreError> {
    if bytes.len() < 8 {
        return Err(RestoreError::TooShort { len: bytes.len() });
    }
    if bytes[..4] != SNAPSHOT_MAGIC {
        return Err(RestoreError::BadMagic);
    }
    let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len() - 8);
    aligned.extend_from_slice(&bytes[8..]);
    let mut live = Vec::new();
    let mut retracted = Vec::new();
    let mut v9 = (Vec::new(), Vec::new(), Vec::new());
    let (snap, outbox, pushed, watermark, people, tail) =
        decode_version(version, &aligned, &mut live, &mut retracted, &mut v9)?;
    let watermark = watermark.unwrap_or(snap.last_lsn);
    if watermark > snap.last_lsn {
        return Err(inconsistent(format!(
            "hand-off watermark {watermark} beyond the snapshot's LSN {}",
            snap.last_lsn
        )));
    }
    if snap.shard != shard.0 || snap.shard_count != shard_count {
        return Err(RestoreError::WrongShard {
            expected_shard: shard.0,
            expected_count: shard_count,
            found_shard: snap.shard,
            found_count: snap.shard_count,
        });
    }
    let mut state = State::new(shard, shard_count, hash);
    if snap.next_id_counter == 0 {
        return Err(inconsistent("id counter 0".into()));
    }
    state.ids.set_next_counter(snap.next_id_counter);
    for w in snap.workspaces {
        let id = WorkspaceId(w.id);
        if !state.owns(id) {
            return Err(ApplyError::NotOwned {
                what: "workspace",
                id: w.id,
            }
            .into());
        }
        let mut ws = state.new_workspace(id, w.name, Millis(w.created));
        for (name, user, confirmed) in w.users {
            if confirmed {
                ws.dir.confirm(UserId(user), &name);
            }
            ws.users.insert(
                name,
                NameEntry {
                    user: UserId(user),
                    confirmed,
                },
            );
        }
        for (name, conv, private, confirmed) in w.channels {
            if confirmed && !private {
                ws.public_channels.insert(ConversationId(conv));
            }
            ws.channels.insert(
                name,
                ChannelName {
                    id: ConversationId(conv),
                    private,
                    confirmed,
                },
            );
        }
        if state.workspaces.insert(id, ws).is_some() {
            return Err(inconsistent(format!("workspace {} twice", w.id)));
        }
    }
    for u in snap.users {
        let id = UserId(u.id);
        if !state.owns(id) {
            return Err(ApplyError::NotOwned {
                what: "user",
                id: u.id,
            }
            .into());
        }
        let mut user = state.new_user(id, WorkspaceId(u.workspace), u.name, u.workspace_name);
        user.tokens = u.tokens.into_iter().collect();
        user.next_token = u.next_token;
        for (conv, seq) in u.cursors {
            user.cursors.insert(
                ConversationId(conv),
                Cursor {
                    seq: Seq(seq),
                    lsn: Lsn(0),
                },
            );
        }
        for (conv, level, muted) in u.prefs {
            user.prefs.insert(
                ConversationId(conv),
                NotifyPref {
                    level: level.into(),
                    muted,
                },
            );
        }
        user.dnd_until = u.dnd_until.map(Millis);
        if state.users.insert(id, user).is_some() {
            return Err(inconsistent(format!("user {} twice", u.id)));
        }
    }
    restore_people(&mut state, people)?;
    for c in snap.conversations {
        let id = ConversationId(c.id);
        if !state.owns(id) {
            return Err(ApplyError::NotOwned {
                what: "conversation",
                id: c.id,
            }
            .into());
        }
        if c.lsns.len() as u64 != index_len(version, c.head) {
            return Err(inconsistent(format!("conversation {}: index length", c.id)));
        }
        let mut conv = state.new_conversation(
            id,
            WorkspaceId(c.workspace),
            c.kind.into(),
            c.name,
            c.creator.map(UserId),
            Millis(c.created),
        );
        for (user, joined) in c.members {
            conv.members.insert(
                UserId(user),
                Member {
                    joined_seq: Seq(joined),
                    lsn: Lsn(0),
                },
            );
        }
        conv.recompute_homes(state.shard_count);
        conv.head = Seq(c.head);
        conv.last_activity = Millis(c.last_activity);
        conv.preview = c.preview;
        for d in c.dedup {
            conv.dedup_restore(
                UserId(d.sender),
                d.client_msg_id,
                DedupEntry {
                    seq: Seq(d.seq),
                    ts: Millis(d.ts),
                    broadcast_ignored: d.broadcast_ignored,
                },
            );
        }
        for (user, seqs) in c.mentions {
            conv.mentions.insert(UserId(user), seqs);
        }
        conv.broadcasts = c.broadcasts;
        // Before version 7 every seq is a message.
        conv.last_post = c.head;
        if conv.is_dm() {
            let key = (conv.workspace, conv.sorted_members());
            if state.dms.insert(key, id).is_some() {
                return Err(inconsistent(format!("DM {} duplicates a member set", c.id)));
            }
        }
        if state.conversations.insert(id, conv).is_some() {
            return Err(inconsistent(format!("conversation {} twice", c.id)));
        }
    }
    for claim in snap.claims {
        let value = if claim.channel {
            Claim::Channel {
                workspace: WorkspaceId(claim.workspace),
                name: claim.name,
                private: claim.private,
                creator: UserId(claim.creator),
            }
        } else {
            Claim::User {
                workspace: WorkspaceId(claim.workspace),
                name: claim.name,
            }
        };
        state.claims.insert(claim.id, (value, Lsn(0)));
    }
    restore_cache(&mut state, snap.cache, live, v9.2)?;
    restore_settings(&mut state, v9.0, v9.1)?;
    for p in outbox {
        if !state.users.contains_key(&UserId(p.user)) {
            return Err(inconsistent(format!("push {} for a user not here", p.id)));
        }
        let entry = crate::state::OutboxEntry {
            user: UserId(p.user),
            conversation: ConversationId(p.conversation),
            seq: Seq(p.seq),
            sender: UserId(p.sender),
            reason: p.reason.into(),
            preview: p.preview,
            due: Millis(p.due),
            clear: p.clear,
        };
        state.queue_push(p.id, entry)?;
    }
    for (user, conv, seq) in pushed {
        state.remember_pushed(UserId(user), ConversationId(conv), Seq(seq));
    }
    for (user, conv, seq) in retracted {
        state.remember_retracted(UserId(user), ConversationId(conv), Seq(seq));
    }
    state.handoff_watermark = watermark;
    restore_tail(&mut state, tail, snap.last_lsn)?;
    Ok((state, Lsn(snap.last_lsn)))
}

/// Restores the hand-off tail (conversations and watermark already
/// restored): LSNs strictly increasing in `(watermark, last_lsn]`, each a
/// message of a conversation owned here, at most `NOTIFY_HANDOFFS_MAX`.
fn restore_tail(
    state: &mut State,
    (tail, dropped): (Vec<(u64, u64, u64)>, u64),
    last_lsn: u64,
) -> Result<(), RestoreError> {
    if tail.len() > NOTIFY_HANDOFFS_MAX {
        return Err(inconsistent(format!(
            "hand-off tail of {} messages (NOTIFY_HANDOFFS_MAX {NOTIFY_HANDOFFS_MAX})",
            tail.len()
        )));
    }
    let mut previous = state.handoff_watermark;
    for (lsn, conv, seq) in tail {
        let known = state
            .conversations
            .get(&ConversationId(conv))
            .is_some_and(|c| seq >= 1 && seq <= c.head.0);
        if lsn <= previous || lsn > last_lsn || !known {
            return Err(inconsistent(format!(
                "hand-off tail entry (LSN {lsn}, conversation {conv}, seq {seq})"
            )));
        }
        previous = lsn;
        state
            .handoff_tail
            .push_back((lsn, ConversationId(conv), Seq(seq)));
    }
    state.handoff_tail_dropped = dropped;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    const WS: u64 = 1;
    const ANN: u64 = 2;
    const BOB: u64 = 3;

    /// One shard of one: a workspace with ann and bob, ann with a profile
    /// (and its display name in the directory).
    fn state() -> State {
        let mut s = State::new(ShardId(0), 1, HashState::new(&[7; 32]));
        let mut records = vec![Record::WorkspaceCreated {
            workspace: WS,
            name: "acme".into(),
            ts: 1,
        }];
        for (user, name) in [(ANN, "ann"), (BOB, "bob")] {
            records.push(Record::UserClaimed {
                workspace: WS,
                user,
                name: name.into(),
            });
            records.push(Record::UserCreated {
                user,
                workspace: WS,
                name: name.into(),
                workspace_name: "acme".into(),
                token: 1,
                token_hash: [1; 32],
            });
            records.push(Record::UserConfirmed {
                workspace: WS,
                user,
            });
        }
        records.push(Record::ProfileSet {
            user: ANN,
            version: 1,
            profile: Box::new(ProfileRecord {
                display_name: "Zoe Ann".into(),
                title: "CTO".into(),
                ..ProfileRecord::default()
            }),
        });
        records.push(Record::DirectoryNameSet {
            workspace: WS,
            user: ANN,
            display_name: "Zoe Ann".into(),
            version: 1,
        });
        records.push(Record::RoleSet {
            workspace: WS,
            user: BOB,
            role: StoredRole::Guest,
            version: 1,
        });
        records.push(Record::UserRoleSet {
            user: BOB,
            role: StoredRole::Guest,
            version: 1,
        });
        for (i, r) in records.iter().enumerate() {
            s.apply(Lsn(i as u64 + 1), r).expect("applies");
        }
        s
    }

    fn listed(s: &State) -> Vec<u64> {
        let ws = &s.workspaces[&WorkspaceId(WS)];
        ws.dir
            .page("", None, 10)
            .0
            .iter()
            .map(|e| e.user.0)
            .collect()
    }

    fn restore_bytes(bytes: &[u8]) -> Result<(State, Lsn), RestoreError> {
        restore(ShardId(0), 1, HashState::new(&[7; 32]), bytes)
    }

    /// A delete's `clear` of the newest delivered push of a conversation
    /// forgets it in `pushed` while an older delivered push is unread
    /// (issue 17): the home keeps it in `retracted`, across a snapshot, so
    /// a hand-off decided again after a restart pushes neither twice (seed
    /// 44281016265500 pushed seq 11 again after seq 12 was deleted); a
    /// cursor reaching it forgets it, and a read's clear keeps nothing.
    #[test]
    fn a_push_retracted_unread_is_remembered_until_read() {
        let mut s = state();
        let conv = 77;
        let push = |seq, clear| Record::PushQueued {
            user: BOB,
            conversation: conv,
            seq,
            sender: ANN,
            reason: StoredReason::Dm,
            preview: String::new(),
            due: 0,
            clear,
        };
        let settled = |id| Record::PushSettled {
            id,
            delivered: true,
        };
        let cursor = |seq| Record::CursorSet {
            user: BOB,
            conversation: conv,
            seq,
        };
        let records = [
            push(11, false),
            settled(100),
            push(12, false),
            settled(102),
            push(12, true), // seq 12 deleted, seq 11 unread
        ];
        for (i, r) in records.iter().enumerate() {
            s.apply(Lsn(100 + i as u64), r).expect("applies");
        }
        let key = (UserId(BOB), ConversationId(conv));
        assert_eq!(s.pushed.get(&key), None, "the clear forgot it");
        assert_eq!(s.pushed_up_to(key.0, key.1), Some(Seq(12)));
        let bytes = encode(&s, Lsn(104));
        let (mut back, _) = restore_bytes(&bytes).expect("restores");
        assert_eq!(encode(&back, Lsn(104)), bytes, "equal states, equal bytes");
        assert_eq!(back.pushed_up_to(key.0, key.1), Some(Seq(12)));
        back.apply(Lsn(105), &cursor(12)).expect("applies");
        assert_eq!(back.pushed_up_to(key.0, key.1), None, "read: rule 2");
        // A read's clear (the cursor covers the push) keeps nothing.
        let read = [push(13, false), settled(106), cursor(13), push(13, true)];
        for (i, r) in read.iter().enumerate() {
            back.apply(Lsn(106 + i as u64), r).expect("applies");
        }
        assert!(back.retracted.is_empty() && back.pushed.is_empty());
    }

    /// Invites and the invite policy survive a snapshot; an invite dead at
    /// the next creation is dropped by it; a version 6 snapshot loads
    /// with none.
    #[test]
    fn invites_round_trip() {
        let mut s = state();
        let create = |invite, created, expires| Record::InviteCreated {
            workspace: WS,
            invite,
            hash: [invite as u8; 32],
            creator: ANN,
            role: StoredRole::Guest,
            max_uses: 1,
            created,
            expires,
        };
        let records = [
            create(1, 100, 200),
            create(2, 150, 9_000),
            Record::InviteRedeemed {
                workspace: WS,
                invite: 2,
                user: 77,
                name: "gus".into(),
            },
            Record::InvitePolicySet {
                workspace: WS,
                members_may_invite: true,
            },
            // Invite 1 expired at 200, invite 2 is used up: both dropped.
            create(3, 300, 9_000),
            Record::InviteRevoked {
                workspace: WS,
                invite: 3,
            },
        ];
        for (i, r) in records.iter().enumerate() {
            s.apply(Lsn(100 + i as u64), r).expect("applies");
        }
        let ws = &s.workspaces[&WorkspaceId(WS)];
        assert_eq!(ws.invites.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(ws.role_of(UserId(77)), (crate::types::Role::Guest, 1));
        assert_eq!(ws.next_invite, 4);
        let bytes = encode(&s, Lsn(200));
        let (back, _) = restore_bytes(&bytes).expect("restores");
        let w = &back.workspaces[&WorkspaceId(WS)];
        assert!(w.members_may_invite);
        assert_eq!(w.next_invite, 4);
        assert_eq!(w.invites, ws.invites);
        assert_eq!(encode(&back, Lsn(200)), bytes, "restores to what it holds");
        let mut aligned = AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes[8..]);
        let v7 = rkyv::from_bytes::<SnapshotV10, rancor::Error>(&aligned)
            .expect("v10")
            .v9
            .v8
            .v7;
        let mut seven = SNAPSHOT_MAGIC.to_vec();
        seven.extend_from_slice(&7u32.to_le_bytes());
        seven.extend_from_slice(&rkyv::to_bytes::<rancor::Error>(&v7).expect("encodes"));
        let (from_v7, _) = restore_bytes(&seven).expect("a version 7 snapshot restores");
        assert_eq!(from_v7.workspaces[&WorkspaceId(WS)].invites, ws.invites);
        let v6 = v7.v6;
        let mut six = SNAPSHOT_MAGIC.to_vec();
        six.extend_from_slice(&6u32.to_le_bytes());
        six.extend_from_slice(&rkyv::to_bytes::<rancor::Error>(&v6).expect("encodes"));
        let (old, _) = restore_bytes(&six).expect("a version 6 snapshot restores");
        let w = &old.workspaces[&WorkspaceId(WS)];
        assert!(w.invites.is_empty() && w.next_invite == 1 && !w.members_may_invite);
    }

    #[test]
    fn profiles_and_directory_names_round_trip() {
        let s = state();
        let bytes = encode(&s, Lsn(9));
        let (back, lsn) = restore_bytes(&bytes).expect("restores");
        assert_eq!(lsn, Lsn(9));
        assert_eq!(encode(&back, Lsn(9)), bytes, "equal states, equal bytes");
        let ann = &back.users[&UserId(ANN)];
        assert_eq!(
            (ann.profile.title.as_str(), ann.profile_version),
            ("CTO", 1)
        );
        assert_eq!(listed(&back), vec![BOB, ANN], "bob < zoe ann");
        let bob = &back.users[&UserId(BOB)];
        assert_eq!((bob.role, bob.role_version), (crate::types::Role::Guest, 1));
        let ws = &back.workspaces[&WorkspaceId(WS)];
        assert_eq!(ws.role_of(UserId(BOB)), (crate::types::Role::Guest, 1));
        assert_eq!(ws.role_of(UserId(ANN)), (crate::types::Role::Member, 0));
    }

    /// A version 4 snapshot (before roles) loads with everyone a member; a
    /// version 3 snapshot (written before profiles existed) still loads,
    /// with no profiles and the directory listing users by handle; a later
    /// version than this build knows is refused, naming it.
    #[test]
    fn versions_3_and_4_load_and_unknown_versions_are_refused() {
        let s = state();
        let bytes = encode(&s, Lsn(9));
        let mut aligned = AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes[8..]);
        let v5 = rkyv::from_bytes::<SnapshotV10, rancor::Error>(&aligned)
            .expect("v10")
            .v9
            .v8
            .v7
            .v6
            .v5;
        let v4 = rkyv::to_bytes::<rancor::Error>(&v5.v4).expect("encodes");
        let mut four = SNAPSHOT_MAGIC.to_vec();
        four.extend_from_slice(&4u32.to_le_bytes());
        four.extend_from_slice(&v4);
        let (back, _) = restore_bytes(&four).expect("a version 4 snapshot restores");
        assert_eq!(back.users[&UserId(ANN)].profile_version, 1);
        assert_eq!(back.users[&UserId(BOB)].role_version, 0, "no roles in v4");
        let v3 = rkyv::to_bytes::<rancor::Error>(&v5.v4.v3).expect("encodes");
        let mut old = SNAPSHOT_MAGIC.to_vec();
        old.extend_from_slice(&3u32.to_le_bytes());
        old.extend_from_slice(&v3);
        let (back, _) = restore_bytes(&old).expect("a version 3 snapshot restores");
        let ann = &back.users[&UserId(ANN)];
        assert_eq!(ann.profile_version, 0);
        assert_eq!(listed(&back), vec![ANN, BOB], "by handle without names");
        let mut future = bytes.clone();
        let next = SNAPSHOT_VERSION + 1;
        future[4..8].copy_from_slice(&next.to_le_bytes());
        assert_eq!(
            restore_bytes(&future).err(),
            Some(RestoreError::UnsupportedVersion { version: next })
        );
    }

    /// Issue 17: changed messages, change seqs, the newest message and the
    /// cached changes survive a snapshot; the bytes are a pure function of
    /// the state.
    #[test]
    fn messages_that_live_round_trip() {
        use crate::record::{ChangeRecord, StoredChange};
        let mut s = state();
        let conv = 50u64;
        let created = Record::ConversationCreated {
            conversation: conv,
            workspace: WS,
            kind: StoredKind::PublicChannel,
            name: "general".into(),
            members: vec![ANN, BOB],
            creator: Some(ANN),
            ts: 2,
        };
        s.apply(Lsn(20), &created).expect("creates");
        let post = |seq: u64| {
            Record::MessagePosted(crate::record::MessageRecord {
                conversation: conv,
                seq,
                sender: ANN,
                client_msg_id: u128::from(seq),
                ts: 3,
                body: format!("m{seq}"),
                mentions: vec![BOB],
                broadcast: StoredBroadcast::None,
                broadcast_ignored: false,
            })
        };
        let change = |seq, target, kind, text: &str| {
            Record::MessageChanged(Box::new(ChangeRecord {
                conversation: conv,
                seq,
                target,
                actor: BOB,
                ts: 4,
                kind,
                text: text.into(),
            }))
        };
        let records = [
            post(1),
            post(2),
            change(3, 1, StoredChange::Edit, "m1 fixed"),
            change(4, 2, StoredChange::React, "+1"),
            change(5, 2, StoredChange::Delete, ""),
            post(6),
            change(7, 6, StoredChange::React, "eyes"),
            change(8, 6, StoredChange::Pin, ""),
            change(9, 1, StoredChange::Pin, ""),
            change(10, 1, StoredChange::Unpin, ""),
        ];
        for (i, r) in records.iter().enumerate() {
            s.apply(Lsn(21 + i as u64), r).expect("applies");
        }
        s.settle(Lsn(30));
        let bytes = encode(&s, Lsn(30));
        let (back, _) = restore_bytes(&bytes).expect("restores");
        assert_eq!(encode(&back, Lsn(30)), bytes, "same bytes after restore");
        let c = &back.conversations[&ConversationId(conv)];
        assert_eq!(c.changes, vec![3, 4, 5, 7, 8, 9, 10]);
        assert_eq!(c.last_post, 6);
        // Issue 17, part 3: the pin survives, the unpinned one does not.
        assert_eq!(c.pins.iter().copied().collect::<Vec<_>>(), vec![6]);
        assert!(c.live[&6].live.pinned && !c.live[&1].live.pinned);
        assert_eq!(c.messages_between(Seq(0), Seq(7)), 3, "messages only");
        let page: Vec<(u64, String, bool, usize)> = back
            .cache
            .range(ConversationId(conv), Seq(1), Seq(7))
            .into_iter()
            .map(|m| c.present(m))
            .map(|m| (m.seq.0, m.body, m.live.deleted, m.live.reactions.len()))
            .collect();
        assert_eq!(
            page,
            vec![
                (1, "m1 fixed".into(), false, 0),
                (2, String::new(), true, 0),
                (3, "m1 fixed".into(), false, 0),
                (4, "+1".into(), false, 0),
                (5, String::new(), false, 0),
                (6, "m6".into(), false, 1),
                (7, "eyes".into(), false, 0),
            ]
        );
    }

    /// Threads (issue 17, part 2) survive a snapshot: replies keep their
    /// root (also in the restored cache), roots their summaries (a reply
    /// not yet durable counts: a snapshot is durable once usable), hidden
    /// replies stay out of unread counts; the bytes are a pure function of
    /// the state.
    #[test]
    fn threads_round_trip() {
        use crate::record::{ChangeRecord, MessageRecord, ReplyRecord, StoredChange};
        let mut s = state();
        let conv = 50u64;
        let created = Record::ConversationCreated {
            conversation: conv,
            workspace: WS,
            kind: StoredKind::PublicChannel,
            name: "general".into(),
            members: vec![ANN, BOB],
            creator: Some(ANN),
            ts: 2,
        };
        s.apply(Lsn(20), &created).expect("creates");
        let message = |seq: u64, sender| MessageRecord {
            conversation: conv,
            seq,
            sender,
            client_msg_id: u128::from(seq),
            ts: 10 * seq,
            body: format!("m{seq}"),
            mentions: vec![],
            broadcast: StoredBroadcast::None,
            broadcast_ignored: false,
        };
        let reply = |seq, sender, root, in_channel| {
            Record::ReplyPosted(Box::new(ReplyRecord {
                message: message(seq, sender),
                root,
                in_channel,
            }))
        };
        let records = [
            Record::MessagePosted(message(1, ANN)),
            reply(2, BOB, 1, false),
            Record::MessageChanged(Box::new(ChangeRecord {
                conversation: conv,
                seq: 3,
                target: 1,
                actor: BOB,
                ts: 30,
                kind: StoredChange::React,
                text: "+1".into(),
            })),
            reply(4, ANN, 1, true),
            reply(5, BOB, 1, false),
        ];
        for (i, r) in records.iter().enumerate() {
            s.apply(Lsn(21 + i as u64), r).expect("applies");
        }
        // The last reply is not durable yet.
        s.settle(Lsn(24));
        let bytes = encode(&s, Lsn(25));
        let (back, _) = restore_bytes(&bytes).expect("restores");
        assert_eq!(encode(&back, Lsn(25)), bytes, "same bytes after restore");
        let c = &back.conversations[&ConversationId(conv)];
        assert_eq!(c.threads[&1], vec![2, 4, 5]);
        assert_eq!(c.hidden, vec![2, 5]);
        assert_eq!(
            c.messages_between(Seq(0), Seq(5)),
            2,
            "the root and the reply shown in the channel"
        );
        assert_eq!(c.last_post, 4, "a hidden reply is not the preview");
        let root = c.present(back.cache.range(ConversationId(conv), Seq(1), Seq(1))[0].clone());
        let t = &root.live.thread;
        assert_eq!(
            (
                t.replies,
                t.last_seq,
                t.participants.clone(),
                root.live.version
            ),
            (3, Seq(5), vec![UserId(BOB), UserId(ANN)], Seq(5))
        );
        assert_eq!(root.live.reactions.len(), 1, "its reaction too");
        let threads: Vec<Option<u64>> = back
            .cache
            .range(ConversationId(conv), Seq(1), Seq(5))
            .iter()
            .map(|m| m.thread.map(|t| t.root.0))
            .collect();
        assert_eq!(threads, vec![None, Some(1), None, Some(1), Some(1)]);
        // A version 9 snapshot (no threads) still restores: no replies.
        let mut aligned = AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes[8..]);
        let v9 = rkyv::from_bytes::<SnapshotV10, rancor::Error>(&aligned)
            .expect("v10")
            .v9;
        let mut nine = SNAPSHOT_MAGIC.to_vec();
        nine.extend_from_slice(&9u32.to_le_bytes());
        nine.extend_from_slice(&rkyv::to_bytes::<rancor::Error>(&v9).expect("encodes"));
        let (old, _) = restore_bytes(&nine).expect("a version 9 snapshot restores");
        let c = &old.conversations[&ConversationId(conv)];
        assert!(c.replies.is_empty() && c.threads.is_empty());
        assert_eq!(c.head, Seq(5));
    }

    /// A conversation without changes whose newest seqs are replies shown
    /// in their thread only restores their root, not them, as its newest
    /// post (the simulation found restore + replay disagreeing, seeds
    /// 212088678395601 and 248250335982751: a later edit or delete of the
    /// root then changed the preview only in the live state). Fails
    /// without the recomputation in `restore_threads`.
    #[test]
    fn hidden_replies_are_not_the_last_post_after_restore() {
        use crate::record::{MessageRecord, ReplyRecord};
        let mut s = state();
        let conv = 51u64;
        let created = Record::ConversationCreated {
            conversation: conv,
            workspace: WS,
            kind: StoredKind::PublicChannel,
            name: "quiet".into(),
            members: vec![ANN, BOB],
            creator: Some(ANN),
            ts: 2,
        };
        s.apply(Lsn(20), &created).expect("creates");
        let message = |seq: u64| MessageRecord {
            conversation: conv,
            seq,
            sender: BOB,
            client_msg_id: u128::from(seq),
            ts: 10 * seq,
            body: format!("m{seq}"),
            mentions: vec![],
            broadcast: StoredBroadcast::None,
            broadcast_ignored: false,
        };
        let reply = |seq: u64, in_channel| {
            Record::ReplyPosted(Box::new(ReplyRecord {
                message: message(seq),
                root: 1,
                in_channel,
            }))
        };
        let records = [
            Record::MessagePosted(message(1)),
            reply(2, true),
            reply(3, false),
            reply(4, false),
        ];
        for (i, r) in records.iter().enumerate() {
            s.apply(Lsn(21 + i as u64), r).expect("applies");
        }
        s.settle(Lsn(24));
        assert_eq!(s.conversations[&ConversationId(conv)].last_post, 2);
        let bytes = encode(&s, Lsn(24));
        let (back, _) = restore_bytes(&bytes).expect("restores");
        let c = &back.conversations[&ConversationId(conv)];
        assert_eq!(c.last_post, 2, "the reply also shown in the channel");
    }

    /// A version 5 snapshot (with the seq → LSN index) restores to what
    /// version 6 holds for the same state: the index is checked and
    /// dropped, and the hand-off tail is taken from it. Version 6 holds
    /// nothing per message.
    #[test]
    fn version_5_index_is_dropped_and_gives_the_handoff_tail() {
        let mut s = state();
        let conv = 50u64;
        let mut lsn = 20;
        let created = Record::ConversationCreated {
            conversation: conv,
            workspace: WS,
            kind: StoredKind::PublicChannel,
            name: "general".into(),
            members: vec![ANN, BOB],
            creator: Some(ANN),
            ts: 2,
        };
        s.apply(Lsn(lsn), &created).expect("creates");
        let mut lsns = Vec::new();
        for seq in 1..=5u64 {
            lsn += 1;
            let m = Record::MessagePosted(crate::record::MessageRecord {
                conversation: conv,
                seq,
                sender: ANN,
                client_msg_id: u128::from(seq),
                ts: 3,
                body: format!("m{seq}"),
                mentions: Vec::new(),
                broadcast: StoredBroadcast::None,
                broadcast_ignored: false,
            });
            s.apply(Lsn(lsn), &m).expect("posts");
            lsns.push(lsn);
            if seq == 2 {
                lsn += 1;
                let mark = Record::NotifyHandedOff { lsn: lsn - 1 };
                s.apply(Lsn(lsn), &mark).expect("marks");
            }
        }
        s.settle(Lsn(lsn));
        let tail: Vec<u64> = s.handoff_tail.iter().map(|e| e.0).collect();
        assert_eq!(tail, lsns[2..].to_vec(), "messages after the watermark");
        let bytes = encode(&s, Lsn(lsn));
        let mut aligned = AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes[8..]);
        let v6 = rkyv::from_bytes::<SnapshotV10, rancor::Error>(&aligned)
            .expect("v10")
            .v9
            .v8
            .v7
            .v6;
        assert!(v6
            .v5
            .v4
            .v3
            .v2
            .v1
            .conversations
            .iter()
            .all(|c| c.lsns.is_empty()));
        let as_v5 = |index: Vec<u64>| {
            let mut v5 = rkyv::from_bytes::<SnapshotV10, rancor::Error>(&aligned)
                .expect("v10")
                .v9
                .v8
                .v7
                .v6
                .v5;
            for c in &mut v5.v4.v3.v2.v1.conversations {
                if c.id == conv {
                    c.lsns = index.clone();
                }
            }
            let mut old = SNAPSHOT_MAGIC.to_vec();
            old.extend_from_slice(&5u32.to_le_bytes());
            old.extend_from_slice(&rkyv::to_bytes::<rancor::Error>(&v5).expect("encodes"));
            old
        };
        let (back, at) =
            restore_bytes(&as_v5(lsns.clone())).expect("a version 5 snapshot restores");
        assert_eq!(encode(&back, at), bytes, "restores to what version 6 holds");
        assert!(matches!(
            restore_bytes(&as_v5(lsns[1..].to_vec())),
            Err(RestoreError::Inconsistent(_))
        ));
    }
}
