//! The replicated data path's decisions for one core, sans-IO: a
//! [`Replica`] wraps the core's [`RaftCore`] (one group, `GroupId(core)`)
//! and decides what happens to the core's records, without doing any I/O.
//! courier-net's `shard::replica` drives it with glommio, files and node
//! links; the cluster simulation (`core/tests/cluster_sim.rs`) drives it
//! with a seeded scheduler, simulated disks and a lossy network.
//!
//! Two logs per core. The **raft WAL** holds the engine's records
//! ([`Effect::Persist`]); the **state WAL** (the shard's usual WAL) holds
//! only committed core records, in commit order, so its LSNs are the
//! core's own numbering on every node.
//!
//! Inputs: a tick ([`Replica::tick`]), a raft message
//! ([`Replica::step`]), a raft batch durable ([`Replica::persisted`]), the
//! records the core appended in a pump turn ([`Replica::stage`], then
//! [`Replica::flush`]), the state WAL's durable LSN (an argument of
//! [`Replica::drive`], for compaction and for the snapshots served to
//! lagging followers), and records fetched from a peer
//! ([`Replica::on_fetch_reply`]). Outputs: [`Effect`]s in the order they
//! must be carried out, and a [`Fatal`] when the process must end.
//!
//! - **Leader (serving)**: the core applies speculatively; the records of
//!   one pump turn become one or more proposals ([`entry`]). When a
//!   proposal of ours comes back committed its records are
//!   [`Effect::Append`]ed to the state WAL; the core is told they are
//!   durable once that WAL made them durable (the driver's state WAL does
//!   that): acks, fanout and notifications leave only then.
//! - **Follower (hot standby)**: the core stays un-started; each committed
//!   record is [`Effect::Replay`]ed into it and appended to the state WAL
//!   ([`entry::follow`]: skip what is there, stop at a gap).
//! - **Promotion**: a replica is ready when it leads its group and applied
//!   its term's no-op; groups other than 0 hand leadership to the node's
//!   primary (group 0's leader), and on the primary a group whose leader
//!   went silent campaigns at once instead of waiting for its own
//!   timeout. [`Replica::check`] says when the core may start (every core
//!   of the node ready, [`NodeFacts`]).
//! - **Demotion is crash-only**: a started replica that loses leadership,
//!   a refused proposal, or a committed entry that is not ours is a
//!   [`Fatal`] of kind [`FatalKind::Demoted`]; an inconsistency of the
//!   replicated records (gap, undecodable entry or snapshot) is
//!   [`FatalKind::Diverged`]. A restart rebuilds the committed state.
//! - **Compaction** at the latest applied point whose state LSN is durable
//!   in the state WAL; a follower handed a snapshot beyond its state WAL
//!   fetches the missing committed records from a peer first
//!   ([`Effect::FetchStarted`], [`Replica::fetch_request`]).
//!
//! Must never: emit a record for the state WAL before it is committed;
//! emit state WAL records out of LSN order; replay into a started core;
//! let a started replica go on after losing leadership.

pub mod catchup;
pub mod entry;
pub mod fetch;

use crate::record::RawRecord;
use crate::{
    Apply, BatchToken, Bytes, CoreConfig, GroupId, GroupMessage, NodeId, ProposeError, RaftCore,
    Role, RoleChange, SnapshotSource,
};
use entry::{CoreRecord, Follow};
use std::collections::VecDeque;

/// Payload bytes of records waiting to be proposed (raft dropping
/// proposals for longer than that is fatal).
pub const STAGED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Why a replica must end its process (crash-only: a restart rebuilds the
/// committed state from disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatalKind {
    /// Lost leadership after serving, a refused proposal, a committed entry
    /// that is not ours (courierd exits 75).
    Demoted,
    /// The replicated records do not fit the state (courierd exits 76).
    Diverged,
}

/// A reason to end the process, typed by [`FatalKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct Fatal {
    /// Which exit.
    pub kind: FatalKind,
    /// What happened, for the log.
    pub why: String,
}

fn demoted(why: impl Into<String>) -> Fatal {
    Fatal {
        kind: FatalKind::Demoted,
        why: why.into(),
    }
}

fn diverged(why: impl Into<String>) -> Fatal {
    Fatal {
        kind: FatalKind::Diverged,
        why: why.into(),
    }
}

/// What the driver must do, in order.
#[derive(Debug)]
pub enum Effect {
    /// Send a raft message to a peer (loss is fine: raft sends again).
    Send(NodeId, GroupMessage),
    /// Append these records to the raft WAL consecutively, then report
    /// them with [`Replica::persisted`] once durable.
    Persist(BatchToken, Vec<RawRecord>),
    /// Leader: append our committed record to the state WAL (the core gets
    /// `Durable` from that WAL).
    Append(CoreRecord),
    /// Follower: replay a committed record into the un-started core, then
    /// append it to the state WAL (a replay error is fatal: diverged).
    Replay(CoreRecord),
    /// The group's role changed (for status and logs).
    Role(RoleChange),
    /// The log was compacted at `index` (state LSN `lsn`).
    Compacted {
        /// Raft index.
        index: u64,
        /// State LSN.
        lsn: u64,
    },
    /// A snapshot beyond the state WAL arrived: fetch the records up to
    /// `target` from peers ([`Replica::fetch_request`]); nothing more is
    /// applied until they are in.
    FetchStarted {
        /// The state LSN the snapshot covers.
        target: u64,
    },
    /// The fetch is done.
    Fetched {
        /// The state LSN reached.
        lsn: u64,
    },
}

/// What the node's other cores say, for [`Replica::check`] and demotion.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeFacts {
    /// The node that leads group 0 (the primary), if known.
    pub primary: Option<u64>,
    /// Some core of this node started (the node served).
    pub any_started: bool,
    /// Every core of this node is ready.
    pub all_ready: bool,
}

/// What [`Replica::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing to do now.
    Wait,
    /// Leads, the node is the primary, no transfer under way; the core
    /// started already or some core of the node is not ready yet.
    Leading,
    /// Start the core on the committed state (then [`Replica::started`]).
    Start,
}

/// A fetch in progress.
#[derive(Debug)]
struct Fetching {
    /// The state LSN the snapshot covers: fetch up to it.
    target: u64,
    /// The snapshot's raft index (its applied point once fetched).
    index: u64,
    /// The applies of the same ready after the snapshot.
    deferred: VecDeque<Apply>,
}

/// Errors of [`Replica::recover`].
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The engine refused the records or the group.
    #[error("raft: {0}")]
    Raft(#[from] crate::Error),
    /// A compaction snapshot's bytes do not decode.
    #[error("snapshot: {0}")]
    Snapshot(#[from] entry::EntryError),
}

/// One core's replica (see the module docs).
pub struct Replica {
    group: GroupId,
    node: u64,
    /// The group's voters (cluster node ids).
    voters: Vec<u64>,
    raft: RaftCore,
    /// Records appended by the core in this pump turn: at most
    /// [`STAGED_BYTES_MAX`] payload bytes.
    staged: Vec<CoreRecord>,
    staged_bytes: usize,
    /// Our proposals not applied yet: (term, index), in order (bounded by
    /// the engine's uncompacted entries).
    proposed: VecDeque<(u64, u64)>,
    /// Last LSN handed to the state WAL.
    state_lsn: u64,
    /// (raft index, state LSN) after each apply since the last compaction
    /// (bounded like the log: the engine's `entries_hard_max`).
    points: VecDeque<(u64, u64)>,
    /// Leads its group and applied its term's no-op.
    ready: bool,
    /// The core started (serves): committed entries must be ours.
    started: bool,
    fetch: Option<Fetching>,
}

/// Serves a lagging follower's snapshot: the state position only (its
/// records must already be in the follower's state WAL, or be fetched).
struct Source<'a> {
    points: &'a VecDeque<(u64, u64)>,
    durable: u64,
}

/// The latest applied point whose state LSN is durable in the state WAL.
fn durable_point(points: &VecDeque<(u64, u64)>, durable: u64) -> Option<(u64, u64)> {
    points
        .iter()
        .rev()
        .find(|(_, lsn)| *lsn <= durable)
        .copied()
}

impl SnapshotSource for Source<'_> {
    fn snapshot(&mut self, _group: GroupId) -> Option<(u64, Bytes)> {
        let (index, lsn) = durable_point(self.points, self.durable)?;
        Some((index, Bytes::from(entry::encode_snapshot(lsn))))
    }
}

impl Replica {
    /// The engine from the raft WAL's records (or a new group when there
    /// are none), and the replica over it: `state_lsn` is the state WAL's
    /// last record. A compaction snapshot beyond it starts a fetch.
    pub fn recover(
        config: CoreConfig,
        group: GroupId,
        voters: &[u64],
        records: Vec<(crate::Lsn, u8, Vec<u8>)>,
        state_lsn: u64,
    ) -> Result<Replica, RecoverError> {
        let node = config.node.0;
        if records.is_empty() {
            let mut raft = RaftCore::new(config);
            raft.create_group(group, voters)?;
            return Ok(Replica::new(group, node, voters, raft, state_lsn, None));
        }
        let (raft, recovered) = RaftCore::recover(config, records)?;
        let mut fetch = None;
        for s in &recovered.snapshots {
            let lsn = entry::decode_snapshot(&s.bytes)?;
            if lsn > state_lsn {
                fetch = Some((s.index, lsn));
            }
        }
        Ok(Replica::new(group, node, voters, raft, state_lsn, fetch))
    }

    fn new(
        group: GroupId,
        node: u64,
        voters: &[u64],
        raft: RaftCore,
        state_lsn: u64,
        fetch: Option<(u64, u64)>,
    ) -> Replica {
        Replica {
            group,
            node,
            voters: voters.to_vec(),
            raft,
            staged: Vec::new(),
            staged_bytes: 0,
            proposed: VecDeque::new(),
            state_lsn,
            points: VecDeque::new(),
            ready: false,
            started: false,
            fetch: fetch.map(|(index, target)| Fetching {
                target,
                index,
                deferred: VecDeque::new(),
            }),
        }
    }

    /// The engine (status, indexes, raft WAL trimming).
    pub fn raft(&self) -> &RaftCore {
        &self.raft
    }

    /// The group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Last LSN handed to the state WAL.
    pub fn state_lsn(&self) -> u64 {
        self.state_lsn
    }

    /// Leads its group and applied its term's no-op, with no leadership
    /// transfer under way (raft drops proposals during one).
    pub fn ready(&self) -> bool {
        self.ready && self.raft.transferring(self.group).is_none()
    }

    /// The state LSN a fetch in progress aims at.
    pub fn fetching(&self) -> Option<u64> {
        self.fetch.as_ref().map(|f| f.target)
    }

    /// Nothing staged and none of our proposals waiting to be applied.
    pub fn quiet(&self) -> bool {
        self.staged.is_empty() && self.proposed.is_empty()
    }

    /// The core was started (after [`Check::Start`]).
    pub fn started(&mut self) {
        self.started = true;
    }

    /// A raft tick; records raft dropped last time are proposed again.
    pub fn tick(&mut self) -> Result<(), Fatal> {
        self.raft.tick();
        self.flush()
    }

    /// A raft message from a peer (refusals are logged by the caller and
    /// otherwise harmless).
    pub fn step(&mut self, msg: GroupMessage) -> crate::Result<()> {
        self.raft.step(msg)
    }

    /// The raft batch `token` is durable from raft WAL LSN `first` on.
    pub fn persisted(&mut self, token: BatchToken, first: crate::Lsn) -> crate::Result<()> {
        self.raft.persisted(token, first)
    }

    /// Takes one record the core appended (proposed at [`Replica::flush`]).
    pub fn stage(&mut self, lsn: u64, kind: u8, payload: Vec<u8>) -> Result<(), Fatal> {
        let bytes = self.staged_bytes + payload.len();
        if bytes > STAGED_BYTES_MAX {
            return Err(demoted(format!(
                "{bytes} bytes of records wait for raft to accept them"
            )));
        }
        self.staged_bytes = bytes;
        self.staged.push(CoreRecord { lsn, kind, payload });
        Ok(())
    }

    /// End of a pump turn: proposes what the core appended. Records raft
    /// is too busy for (a leadership transfer, its bound of uncommitted
    /// bytes, a log waiting for compaction) stay staged, ahead of anything
    /// the core appends meanwhile: nothing of them was acknowledged.
    pub fn flush(&mut self) -> Result<(), Fatal> {
        let mut records = std::mem::take(&mut self.staged);
        if records.is_empty() {
            return Ok(());
        }
        self.staged_bytes = 0;
        let entries = entry::encode_entries(&records)
            .map_err(|e| demoted(format!("proposal refused: {e}")))?;
        for data in entries {
            match self.raft.propose(self.group, &data) {
                Ok(at) => self.proposed.push_back(at),
                Err(ProposeError::Dropped { .. } | ProposeError::LogFull { .. }) => {
                    let first = entry::first_lsn(&data).unwrap_or(0);
                    records.retain(|r| r.lsn >= first);
                    self.staged_bytes = records.iter().map(|r| r.payload.len()).sum();
                    self.staged = records;
                    break;
                }
                Err(e) => return Err(demoted(format!("proposal refused: {e}"))),
            }
        }
        Ok(())
    }

    /// Once a tick: a replica that does not lead demotes a node that
    /// served; one that leads hands leadership to the primary (groups
    /// other than 0) or, when every core of the node is ready, says start.
    pub fn check(&mut self, facts: NodeFacts) -> Result<Check, Fatal> {
        let Some(st) = self.raft.status(self.group) else {
            return Ok(Check::Wait);
        };
        if st.role != Role::Leader {
            self.demote_if_started(facts)?;
            self.follow_the_primary(st.role, facts);
            return Ok(Check::Wait);
        }
        if let Some(primary) = facts.primary.filter(|p| *p != self.node) {
            if self.group.0 != 0 {
                let _ = self.raft.transfer_leader(self.group, NodeId(primary));
            }
            return Ok(Check::Wait);
        }
        if self.raft.transferring(self.group).is_some() {
            // A transfer to a node that was the primary (group 0's leader
            // has changed since, e.g. to this node): raft drops proposals
            // until it ends, so end it before this core may start.
            let _ = self.raft.abort_transfer(self.group);
            return Ok(Check::Wait);
        }
        if self.ready() && !self.started && facts.all_ready {
            return Ok(Check::Start);
        }
        Ok(Check::Leading)
    }

    /// This node leads group 0 (it is, or is becoming, the primary) and
    /// this group has heard from no leader for an election timeout: it
    /// campaigns now instead of waiting for its own randomized timeout, and
    /// so joins the primary in one vote round instead of an election
    /// elsewhere followed by a leadership transfer. The peers' leases have
    /// run out too (they lost the old leader at the same moment, and group
    /// 0 elected only after a base election timeout), so they grant it if
    /// this log is up to date; if it is not, the usual election and
    /// transfer follow. Not while a real vote of ours is out
    /// (`Candidate`): a second campaign would only raise the term again.
    fn follow_the_primary(&mut self, role: Role, facts: NodeFacts) {
        let campaigning = matches!(role, Role::Follower | Role::PreCandidate);
        if self.group.0 != 0
            && campaigning
            && facts.primary == Some(self.node)
            && self.raft.leader_silent(self.group)
        {
            let _ = self.raft.campaign(self.group);
        }
    }

    fn demote_if_started(&self, facts: NodeFacts) -> Result<(), Fatal> {
        if self.started || facts.any_started {
            return Err(demoted(
                "lost the leadership of its group after the node started serving",
            ));
        }
        Ok(())
    }

    /// Takes everything the engine has ready until it has nothing more
    /// (nothing while a fetch is in progress). `state_durable` is the
    /// state WAL's durable LSN.
    pub fn drive(
        &mut self,
        state_durable: u64,
        facts: NodeFacts,
        out: &mut Vec<Effect>,
    ) -> Result<(), Fatal> {
        while self.fetch.is_none() {
            let rd = {
                let mut source = Source {
                    points: &self.points,
                    durable: state_durable,
                };
                self.raft.ready(&mut source)
            };
            if rd.is_empty() {
                break;
            }
            // A compaction wish alone, with no point to compact to beyond
            // the current one, is nothing to do: stop here, or the loop
            // would spin (and wrote a checkpoint per turn: a node grew to
            // 22 GB with its state WAL behind).
            let only_compaction = rd.token.is_none()
                && rd.messages.is_empty()
                && rd.applies.is_empty()
                && rd.roles.is_empty();
            for (node, msgs) in rd.messages {
                out.extend(msgs.into_iter().map(|m| Effect::Send(node, m)));
            }
            if let Some(token) = rd.token {
                out.push(Effect::Persist(token, rd.records));
            }
            for rc in rd.roles {
                self.role(rc, facts, out)?;
            }
            self.apply_all(rd.applies.into(), out)?;
            let compacted = !rd.compact_wanted.is_empty()
                && self.fetch.is_none()
                && self.compact(state_durable, out);
            if only_compaction && !compacted {
                break;
            }
        }
        Ok(())
    }

    fn role(
        &mut self,
        rc: RoleChange,
        facts: NodeFacts,
        out: &mut Vec<Effect>,
    ) -> Result<(), Fatal> {
        if rc.group != self.group {
            return Ok(());
        }
        let leader = rc.role == Role::Leader;
        out.push(Effect::Role(rc));
        if !leader {
            self.ready = false;
            self.demote_if_started(facts)?;
        }
        Ok(())
    }

    /// Applies in order; a snapshot beyond the state WAL starts a fetch
    /// and keeps the applies after it until the records are in.
    fn apply_all(
        &mut self,
        mut applies: VecDeque<Apply>,
        out: &mut Vec<Effect>,
    ) -> Result<(), Fatal> {
        while let Some(a) = applies.pop_front() {
            if let Apply::Snapshot(s) = &a {
                let lsn = entry::decode_snapshot(&s.bytes)
                    .map_err(|e| diverged(format!("snapshot {}: {e}", s.index)))?;
                if lsn > self.state_lsn {
                    self.fetch = Some(Fetching {
                        target: lsn,
                        index: s.index,
                        deferred: applies,
                    });
                    out.push(Effect::FetchStarted { target: lsn });
                    return Ok(());
                }
            }
            self.apply(a, out)?;
        }
        Ok(())
    }

    fn apply(&mut self, apply: Apply, out: &mut Vec<Effect>) -> Result<(), Fatal> {
        match apply {
            Apply::Entry {
                index, term, data, ..
            } => {
                if data.is_empty() {
                    self.no_op(term);
                } else {
                    let records = entry::decode_entry(&data)
                        .map_err(|e| diverged(format!("entry {index}: {e}")))?;
                    if self.started {
                        self.commit_own(index, term, records, out)?;
                    } else {
                        self.follow(index, records, out)?;
                    }
                }
                self.points.push_back((index, self.state_lsn));
            }
            Apply::Snapshot(s) => {
                let lsn = entry::decode_snapshot(&s.bytes)
                    .map_err(|e| diverged(format!("snapshot {}: {e}", s.index)))?;
                // apply_all fetched what was missing first.
                debug_assert!(lsn <= self.state_lsn);
                self.points.push_back((s.index, lsn));
            }
        }
        Ok(())
    }

    /// The no-op of a term: this replica is ready once it is its own term's.
    fn no_op(&mut self, term: u64) {
        if let Some(st) = self.raft.status(self.group) {
            if st.role == Role::Leader && st.term == term {
                self.ready = true;
            }
        }
    }

    /// A committed entry on a started (serving) core: ours, in order; its
    /// records go to the state WAL.
    fn commit_own(
        &mut self,
        index: u64,
        term: u64,
        records: Vec<CoreRecord>,
        out: &mut Vec<Effect>,
    ) -> Result<(), Fatal> {
        let ours = self.proposed.pop_front();
        if ours != Some((term, index)) {
            return Err(demoted(format!(
                "committed entry ({term}, {index}) is not our proposal {ours:?}"
            )));
        }
        for r in records {
            if r.lsn != self.state_lsn + 1 {
                return Err(diverged(format!(
                    "record LSN {} after {}",
                    r.lsn, self.state_lsn
                )));
            }
            self.state_lsn = r.lsn;
            out.push(Effect::Append(r));
        }
        Ok(())
    }

    /// A committed entry on a follower: replay, then state WAL.
    fn follow(
        &mut self,
        index: u64,
        records: Vec<CoreRecord>,
        out: &mut Vec<Effect>,
    ) -> Result<(), Fatal> {
        for r in records {
            if let Follow::Gap { expected, got } = self.follow_one(r, out) {
                return Err(diverged(format!(
                    "entry {index}: record LSN {got}, the state WAL needs {expected}"
                )));
            }
        }
        Ok(())
    }

    /// One committed record on a follower (`entry::follow`); a gap is
    /// returned, not applied.
    fn follow_one(&mut self, r: CoreRecord, out: &mut Vec<Effect>) -> Follow {
        let step = entry::follow(self.state_lsn, r.lsn);
        if step == Follow::Apply {
            self.state_lsn = r.lsn;
            out.push(Effect::Replay(r));
        }
        step
    }

    /// Compacts the log at the latest applied point durable in the state
    /// WAL. Whether it compacted: only when that point is beyond the log's
    /// current compaction point (a compaction at the same point would only
    /// write the same checkpoint again).
    fn compact(&mut self, state_durable: u64, out: &mut Vec<Effect>) -> bool {
        let Some((index, lsn)) = durable_point(&self.points, state_durable) else {
            return false;
        };
        let point = self.raft.compacted_index(self.group).unwrap_or(0);
        if index <= point {
            return false;
        }
        let bytes = Bytes::from(entry::encode_snapshot(lsn));
        match self.raft.compact(self.group, index, bytes) {
            Ok(()) => {
                self.points.retain(|(i, _)| *i >= index);
                out.push(Effect::Compacted { index, lsn });
                true
            }
            Err(_) => false,
        }
    }

    /// A peer's chunk of the records being fetched: applied in order
    /// (stale or repeated ones skipped, a gap ends the chunk: a reply to an
    /// older request); once the target is reached the deferred applies
    /// run. Call [`Replica::drive`] after [`Effect::Fetched`].
    pub fn on_fetch_reply(
        &mut self,
        records: Vec<CoreRecord>,
        out: &mut Vec<Effect>,
    ) -> Result<(), Fatal> {
        let Some(target) = self.fetching() else {
            return Ok(());
        };
        for r in records.into_iter().filter(|r| r.lsn <= target) {
            if let Follow::Gap { .. } = self.follow_one(r, out) {
                break;
            }
        }
        if self.state_lsn < target {
            return Ok(());
        }
        let Some(done) = self.fetch.take() else {
            return Ok(());
        };
        out.push(Effect::Fetched { lsn: target });
        self.points.push_back((done.index, done.target));
        self.apply_all(done.deferred, out)
    }

    /// The request of the fetch in progress and the peer to ask at retry
    /// `turn`: the group's leader first, then the other voters in turn.
    pub fn fetch_request(&self, turn: usize) -> Option<(u64, fetch::FetchRequest)> {
        let target = self.fetching()?;
        let leader = self
            .raft
            .status(self.group)
            .and_then(|s| s.leader)
            .map(|n| n.0)
            .filter(|n| *n != self.node);
        let mut peers: Vec<u64> = leader.into_iter().collect();
        let others = self.voters.iter().copied();
        peers.extend(others.filter(|n| *n != self.node && Some(*n) != leader));
        let peer = *peers.get(turn % peers.len().max(1))?;
        let request = fetch::FetchRequest {
            from: self.state_lsn + 1,
            to: target,
        };
        Some((peer, request))
    }
}
