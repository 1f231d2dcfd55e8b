//! Ids, configuration and the outputs of the engine.

use crate::constants::{
    COMMITTED_BYTES_PER_READY_DEFAULT, ELECTION_SPREAD_TICKS_DEFAULT, ELECTION_TICKS_DEFAULT,
    ENTRIES_HARD_MAX, ENTRIES_SOFT_MAX, HEARTBEAT_TICKS_DEFAULT, INFLIGHT_MSGS_DEFAULT,
    MSG_BYTES_DEFAULT, UNCOMMITTED_BYTES_DEFAULT,
};
use crate::message::GroupMessage;
use crate::record::RawRecord;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt;

/// A Raft group (in Courier: a shard). Unique in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u32);

/// A node of the cluster: raft's peer id (never 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

/// A position in the core's WAL (`courier_wal::Lsn`'s value; this crate
/// does not depend on courier-wal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// Names one batch of records handed out by [`crate::RaftCore::ready`];
/// passed back to [`crate::RaftCore::persisted`] once the batch is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchToken(pub u64);

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
display_inner!(GroupId, NodeId, Lsn, BatchToken);

/// The engine's settings. Build with [`CoreConfig::new`] and adjust; the
/// defaults assume a 100 ms tick.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// This node.
    pub node: NodeId,
    /// Seed of the engine's own RNG, which draws every group's randomized
    /// election timeout (raft's own thread RNG is overridden so a seeded
    /// simulation replays exactly).
    pub seed: u64,
    /// Election timeout in ticks: the base (a follower's lease, a leader's
    /// quorum check); the randomized timeout is drawn in
    /// `[e, e + election_spread_ticks)`. Default 10.
    pub election_ticks: usize,
    /// Width of the randomized election timeout's range, ≥ 1. Default 5.
    pub election_spread_ticks: usize,
    /// Heartbeat interval in ticks. Default 2.
    pub heartbeat_ticks: usize,
    /// Append messages in flight per follower. Default 256.
    pub inflight_msgs: usize,
    /// Entry bytes per append message. Default 1 MiB.
    pub msg_bytes: u64,
    /// Uncommitted entry bytes a leader accepts before dropping proposals.
    /// Default 64 MiB.
    pub uncommitted_bytes: u64,
    /// Committed entry bytes handed out per group per ready. Default 16 MiB.
    pub committed_bytes_per_ready: u64,
    /// Uncompacted entries at which a group asks for a snapshot. Default
    /// [`ENTRIES_SOFT_MAX`].
    pub entries_soft_max: u64,
    /// Uncompacted entries at which a leader refuses proposals. Default
    /// [`ENTRIES_HARD_MAX`].
    pub entries_hard_max: u64,
}

impl CoreConfig {
    /// The defaults (see each field) for `node`.
    pub fn new(node: NodeId, seed: u64) -> CoreConfig {
        CoreConfig {
            node,
            seed,
            election_ticks: ELECTION_TICKS_DEFAULT,
            election_spread_ticks: ELECTION_SPREAD_TICKS_DEFAULT,
            heartbeat_ticks: HEARTBEAT_TICKS_DEFAULT,
            inflight_msgs: INFLIGHT_MSGS_DEFAULT,
            msg_bytes: MSG_BYTES_DEFAULT,
            uncommitted_bytes: UNCOMMITTED_BYTES_DEFAULT,
            committed_bytes_per_ready: COMMITTED_BYTES_PER_READY_DEFAULT,
            entries_soft_max: ENTRIES_SOFT_MAX,
            entries_hard_max: ENTRIES_HARD_MAX,
        }
    }

    /// raft's configuration for one group: `pre_vote` and `check_quorum`
    /// are always on (a partitioned leader steps down after an election
    /// timeout without a quorum; a node rejoining cannot disrupt a healthy
    /// leader), reads are not used, `applied` is where the state machine
    /// restarts (its snapshot).
    pub(crate) fn raft_config(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.node.0,
            election_tick: self.election_ticks,
            heartbeat_tick: self.heartbeat_ticks,
            applied,
            max_size_per_msg: self.msg_bytes,
            max_inflight_msgs: self.inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            min_election_tick: self.election_ticks,
            max_election_tick: self.election_ticks + self.election_spread_ticks.max(1),
            max_uncommitted_size: self.uncommitted_bytes,
            max_committed_size_per_ready: self.committed_bytes_per_ready,
            ..raft::Config::default()
        }
    }
}

/// A group's role on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Leads the group: may propose.
    Leader,
    /// Follows (or has no leader yet).
    Follower,
    /// Campaigning for a term.
    Candidate,
    /// Asking whether it could win a campaign (pre-vote).
    PreCandidate,
}

impl From<raft::StateRole> for Role {
    fn from(r: raft::StateRole) -> Role {
        match r {
            raft::StateRole::Leader => Role::Leader,
            raft::StateRole::Follower => Role::Follower,
            raft::StateRole::Candidate => Role::Candidate,
            raft::StateRole::PreCandidate => Role::PreCandidate,
        }
    }
}

/// A group's role, leader or term changed on this node: the caller stops
/// (or starts) accepting writes for it and redirects to `leader`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleChange {
    /// The group.
    pub group: GroupId,
    /// This node's role now.
    pub role: Role,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
}

/// Install this snapshot as the group's state machine (it replaces
/// everything applied before; entries after `index` follow).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplySnapshot {
    /// The group.
    pub group: GroupId,
    /// The state machine's bytes, as the leader's [`crate::SnapshotSource`]
    /// or a [`crate::RaftCore::compact`] produced them.
    pub bytes: Bytes,
    /// The last log index the snapshot covers.
    pub index: u64,
    /// That entry's term.
    pub term: u64,
}

/// Something to apply to a group's state machine, in log order per group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Apply {
    /// A committed entry, durable locally. `data` is empty for the no-op
    /// entry a new leader appends; the caller skips those. A proposal
    /// committed iff an entry with its `(term, index)` is applied.
    Entry {
        /// The group.
        group: GroupId,
        /// Its log index (consecutive per group).
        index: u64,
        /// The term it was proposed in.
        term: u64,
        /// The proposal's bytes.
        data: Bytes,
    },
    /// A snapshot received from the leader, durable locally.
    Snapshot(ApplySnapshot),
}

/// Everything every group produced since the last call, as one batch.
#[derive(Debug, Default)]
pub struct CoreReady {
    /// Present when `records` is not empty: report the batch durable with
    /// [`crate::RaftCore::persisted`].
    pub token: Option<BatchToken>,
    /// Records for the core's WAL, in order: `Wal::append(kind, payload)`
    /// each, consecutively, then one fsync for the whole batch.
    pub records: Vec<RawRecord>,
    /// Messages to send now, by destination node (FIFO per destination is
    /// not required; loss, duplication and reordering are tolerated).
    pub messages: BTreeMap<NodeId, Vec<GroupMessage>>,
    /// Committed entries and installed snapshots, in order per group. Each
    /// was durable locally before it is reported here.
    pub applies: Vec<Apply>,
    /// Role, leader or term changes.
    pub roles: Vec<RoleChange>,
    /// Groups holding more than `entries_soft_max` uncompacted entries: the
    /// caller should snapshot them and call [`crate::RaftCore::compact`].
    pub compact_wanted: Vec<crate::GroupId>,
}

impl CoreReady {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.token.is_none()
            && self.messages.is_empty()
            && self.applies.is_empty()
            && self.roles.is_empty()
            && self.compact_wanted.is_empty()
    }
}

/// The caller's state machine, asked for a snapshot when a follower lags
/// behind the compacted log.
pub trait SnapshotSource {
    /// `group`'s state machine as of an index it has applied (at most the
    /// last index the engine handed out, at least the group's compaction
    /// point): `(index, bytes)`, or `None` to be asked again later.
    fn snapshot(&mut self, group: GroupId) -> Option<(u64, Bytes)>;
}
