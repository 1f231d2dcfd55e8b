//! [`RaftCore`]: the groups of one core, their batched `Ready`, proposals,
//! compaction and the WAL position they still need.

use crate::constants::{
    PROPOSAL_BYTES_MAX, SNAPSHOT_BYTES_MAX, SNAPSHOT_CACHE_TICKS, SNAPSHOT_RETRY_TICKS, VOTERS_MAX,
};
use crate::message::GroupMessage;
use crate::record::{
    encode_entries, encode_hard_state, encode_snapshot, RawRecord, SnapshotKind, SnapshotMeta,
};
use crate::storage::GroupStorage;
use crate::types::{
    Apply, ApplySnapshot, BatchToken, CoreConfig, CoreReady, GroupId, Lsn, NodeId, Role,
    RoleChange, SnapshotSource,
};
use crate::{Error, ProposeError, Result};
use bytes::Bytes;
use raft::eraftpb::{EntryType, MessageType, Snapshot};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One Raft group hosted by the core.
pub(crate) struct Group {
    pub(crate) node: RawNode<GroupStorage>,
    /// Last index handed to the caller in an [`Apply`].
    pub(crate) handed: u64,
    /// Oldest WAL position this group needs at recovery (its latest durable
    /// checkpoint); `None` until its first checkpoint is durable.
    pub(crate) base_lsn: Option<Lsn>,
    /// Snapshot bytes of a compaction, written at the next `ready`.
    checkpoint: Option<Bytes>,
    /// (term, role, leader) last reported in a [`RoleChange`].
    reported: Option<(u64, StateRole, u64)>,
    /// Peer → tick it was first seen in the snapshot state.
    snapshot_since: BTreeMap<u64, u64>,
}

/// A batch handed out and not yet reported durable.
#[derive(Default)]
struct InFlight {
    token: u64,
    /// (group, raft ready number) to report persisted.
    readies: Vec<(GroupId, u64)>,
    /// Messages raft allows only after the ready is durable.
    messages: Vec<GroupMessage>,
    /// Installed snapshots, reported once durable.
    snapshots: Vec<ApplySnapshot>,
    /// (group, position of its checkpoint's first record in the batch).
    checkpoints: Vec<(GroupId, u64)>,
}

/// A small deterministic PRNG (SplitMix64) for election timeouts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Many Raft groups of one core sharing one log (see the crate doc).
pub struct RaftCore {
    pub(crate) config: CoreConfig,
    pub(crate) groups: BTreeMap<GroupId, Group>,
    rng: Rng,
    now: u64,
    next_token: u64,
    inflight: VecDeque<InFlight>,
    /// Messages released by `persisted`, sent at the next `ready`.
    outbox: Vec<GroupMessage>,
    /// Snapshots released by `persisted`, applied at the next `ready`.
    released: Vec<Apply>,
    /// Groups created but not yet in a batch (their creation checkpoint).
    created: BTreeSet<GroupId>,
    logger: slog::Logger,
}

pub(crate) fn validate_voters(config: &CoreConfig, group: GroupId, voters: &[u64]) -> Result<()> {
    let reason = if voters.is_empty() || voters.len() > VOTERS_MAX {
        Some("must have 1..=7 voters")
    } else if voters.contains(&0) {
        Some("node id 0 is not valid")
    } else if !voters.contains(&config.node.0) {
        Some("must include this node")
    } else if (1..voters.len()).any(|i| voters[..i].contains(&voters[i])) {
        Some("duplicate voter")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidVoters {
            group,
            voters: voters.to_vec(),
            reason,
        }),
        None => Ok(()),
    }
}

impl RaftCore {
    /// An empty core (no groups) for a fresh WAL.
    pub fn new(config: CoreConfig) -> RaftCore {
        let rng = Rng(config.seed ^ config.node.0.wrapping_mul(0xA24B_AED4_963E_E407));
        RaftCore {
            config,
            groups: BTreeMap::new(),
            rng,
            now: 0,
            next_token: 1,
            inflight: VecDeque::new(),
            outbox: Vec::new(),
            released: Vec::new(),
            created: BTreeSet::new(),
            logger: slog::Logger::root(slog::Discard, slog::o!()),
        }
    }

    /// Adds a new group with these voters (the same on every replica) and
    /// an empty log; its creation is written at the next [`Self::ready`].
    pub fn create_group(&mut self, group: GroupId, voters: &[u64]) -> Result<()> {
        if self.groups.contains_key(&group) {
            return Err(Error::GroupExists { group });
        }
        validate_voters(&self.config, group, voters)?;
        self.insert_group(group, GroupStorage::new(voters.to_vec()), 0, None)?;
        self.created.insert(group);
        Ok(())
    }

    /// Builds a group's raft node over `storage`; `applied` is where the
    /// caller's state machine stands (its snapshot).
    pub(crate) fn insert_group(
        &mut self,
        group: GroupId,
        storage: GroupStorage,
        applied: u64,
        base_lsn: Option<Lsn>,
    ) -> Result<()> {
        let node = RawNode::new(&self.config.raft_config(applied), storage, &self.logger)
            .map_err(|source| Error::Raft { group, source })?;
        let mut g = Group {
            node,
            handed: applied,
            base_lsn,
            checkpoint: None,
            reported: None,
            snapshot_since: BTreeMap::new(),
        };
        Self::rerandomize(&mut self.rng, &self.config, &mut g);
        self.groups.insert(group, g);
        Ok(())
    }

    /// raft draws election timeouts from the thread RNG whenever it resets
    /// its election timer; redraw them from the seeded RNG so that runs
    /// replay exactly. Called after every input to a group.
    fn rerandomize(rng: &mut Rng, config: &CoreConfig, g: &mut Group) {
        if g.node.raft.election_elapsed == 0 {
            let e = config.election_ticks;
            let spread = config.election_spread_ticks.max(1);
            let t = e + (rng.next() % spread as u64) as usize;
            g.node.raft.set_randomized_election_timeout(t);
        }
    }

    /// Advances every group's logical clock by one tick (the runtime calls
    /// this at a fixed period, 100 ms by default).
    pub fn tick(&mut self) {
        self.now += 1;
        let now = self.now;
        for g in self.groups.values_mut() {
            // Not while an installed snapshot waits for its batch: raft may
            // campaign at this tick, which reads the entries after its
            // applied index, already replaced by the snapshot (a panic in
            // raft; found by the cluster simulation, seed 127).
            if !Self::snapshot_in_flight(g) {
                g.node.tick();
            }
            Self::retry_snapshots(g, now);
            g.node.mut_store().expire_cache(now);
            Self::rerandomize(&mut self.rng, &self.config, g);
        }
    }

    /// A snapshot was installed in the group's log and its batch is not
    /// durable yet: raft's applied index is still below it, so raft must
    /// not campaign (it would read entries the snapshot replaced).
    fn snapshot_in_flight(g: &Group) -> bool {
        g.node.store().snapshot_meta().index > g.node.raft.raft_log.applied
    }

    /// A snapshot message may be lost: a follower still in the snapshot
    /// state after [`SNAPSHOT_RETRY_TICKS`] is reported failed so the leader
    /// sends another.
    fn retry_snapshots(g: &mut Group, now: u64) {
        if g.node.raft.state != StateRole::Leader {
            g.snapshot_since.clear();
            return;
        }
        let snapshotting: Vec<u64> = g
            .node
            .raft
            .prs()
            .iter()
            .filter(|(_, p)| p.state == ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        g.snapshot_since
            .retain(|peer, _| snapshotting.contains(peer));
        for peer in snapshotting {
            let since = *g.snapshot_since.entry(peer).or_insert(now);
            if now - since >= SNAPSHOT_RETRY_TICKS {
                g.node.report_snapshot(peer, SnapshotStatus::Failure);
                g.snapshot_since.remove(&peer);
            }
        }
    }

    /// Steps a message from a peer into its group.
    pub fn step(&mut self, message: GroupMessage) -> Result<()> {
        let GroupMessage { group, msg } = message;
        let g = self
            .groups
            .get_mut(&group)
            .ok_or(Error::UnknownGroup { group })?;
        if msg.to != self.config.node.0 {
            let node = self.config.node;
            return Err(Error::Misaddressed {
                group,
                to: msg.to,
                node,
            });
        }
        if Self::snapshot_in_flight(g)
            && matches!(
                msg.get_msg_type(),
                MessageType::MsgTimeoutNow | MessageType::MsgHup
            )
        {
            // A campaign now would make raft panic (see `tick`): the leader
            // transfer fails and is retried or aborted by its leader.
            return Ok(());
        }
        let r = g
            .node
            .step(msg)
            .map_err(|source| Error::Raft { group, source });
        Self::rerandomize(&mut self.rng, &self.config, g);
        r
    }

    /// Starts an election for `group` now (e.g. the placement's preferred
    /// leader at start).
    pub fn campaign(&mut self, group: GroupId) -> Result<()> {
        let g = self
            .groups
            .get_mut(&group)
            .ok_or(Error::UnknownGroup { group })?;
        if Self::snapshot_in_flight(g) {
            return Ok(()); // see `tick`: the next election timeout campaigns
        }
        let r = g
            .node
            .campaign()
            .map_err(|source| Error::Raft { group, source });
        Self::rerandomize(&mut self.rng, &self.config, g);
        r
    }

    /// Whether `group` has heard nothing from a leader for at least the
    /// base election timeout on this node (or knows none): a campaign now
    /// is not refused by peers for their leader lease (`check_quorum`)
    /// merely because of this node's own view. A leader is never silent.
    pub fn leader_silent(&self, group: GroupId) -> bool {
        let Some(g) = self.groups.get(&group) else {
            return false;
        };
        let r = &g.node.raft;
        match r.state {
            StateRole::Leader => false,
            _ => r.leader_id == 0 || r.election_elapsed >= r.election_timeout(),
        }
    }

    /// Asks this node, leading `group`, to hand leadership to `to` (raft's
    /// leadership transfer: the leader stops accepting proposals, brings
    /// `to` up to date and tells it to campaign at once). Ignored by raft
    /// when this node does not lead or a transfer to `to` is under way; an
    /// unfinished transfer is abandoned after an election timeout, so the
    /// caller may simply ask again.
    pub fn transfer_leader(&mut self, group: GroupId, to: NodeId) -> Result<()> {
        let g = self
            .groups
            .get_mut(&group)
            .ok_or(Error::UnknownGroup { group })?;
        g.node.transfer_leader(to.0);
        Self::rerandomize(&mut self.rng, &self.config, g);
        Ok(())
    }

    /// The node a leadership transfer of `group` is under way to (raft
    /// drops proposals meanwhile), if any.
    pub fn transferring(&self, group: GroupId) -> Option<NodeId> {
        self.groups
            .get(&group)?
            .node
            .raft
            .lead_transferee
            .map(NodeId)
    }

    /// Abandons a leadership transfer of `group` under way (this node
    /// keeps leading and accepts proposals again); nothing if none is.
    pub fn abort_transfer(&mut self, group: GroupId) -> Result<()> {
        let g = self
            .groups
            .get_mut(&group)
            .ok_or(Error::UnknownGroup { group })?;
        g.node.raft.abort_leader_transfer();
        Ok(())
    }

    /// The last index of `group` handed to the caller in an [`Apply`] (or
    /// restored from a snapshot): what its state machine has applied.
    pub fn applied_index(&self, group: GroupId) -> Option<u64> {
        Some(self.groups.get(&group)?.handed)
    }

    /// The index `group`'s log is compacted to (its snapshot's index; 0
    /// before any compaction).
    pub fn compacted_index(&self, group: GroupId) -> Option<u64> {
        Some(self.groups.get(&group)?.node.store().snapshot_meta().index)
    }

    /// Proposes `data` to `group`. Returns the `(term, index)` the entry
    /// will have: it committed iff an [`Apply::Entry`] with that term and
    /// index is reported later (another term at that index means it was
    /// lost with a deposed leader). Refused unless this node leads.
    pub fn propose(&mut self, group: GroupId, data: &[u8]) -> Result<(u64, u64), ProposeError> {
        let hard_max = self.config.entries_hard_max;
        let g = self
            .groups
            .get_mut(&group)
            .ok_or(ProposeError::UnknownGroup { group })?;
        let raft = &g.node.raft;
        if raft.state != StateRole::Leader {
            let leader = (raft.leader_id != 0).then_some(NodeId(raft.leader_id));
            return Err(ProposeError::NotLeader {
                group,
                leader,
                term: raft.term,
            });
        }
        if data.len() > PROPOSAL_BYTES_MAX {
            return Err(ProposeError::TooLarge {
                bytes: data.len(),
                max: PROPOSAL_BYTES_MAX,
            });
        }
        let entries = raft.raft_log.last_index() - g.node.store().snapshot_meta().index;
        if entries >= hard_max {
            return Err(ProposeError::LogFull { group, entries });
        }
        g.node
            .propose(Vec::new(), data.to_vec())
            .map_err(|_| ProposeError::Dropped { group })?;
        Ok((g.node.raft.term, g.node.raft.raft_log.last_index()))
    }

    /// Compacts `group`'s log up to `index`, which the caller's state
    /// machine has applied and whose state is `snapshot`. The snapshot is
    /// written (with the group's hard state and remaining entries) at the
    /// next [`Self::ready`]; once that batch is durable the WAL before it is
    /// no longer needed by this group ([`Self::min_needed_lsn`]). Calling it
    /// at the current compaction point re-writes the group's checkpoint, which
    /// moves an idle group's oldest needed record forward.
    pub fn compact(&mut self, group: GroupId, index: u64, snapshot: Bytes) -> Result<()> {
        let g = self
            .groups
            .get_mut(&group)
            .ok_or(Error::UnknownGroup { group })?;
        let bad = |reason: String| Error::InvalidCompaction {
            group,
            index,
            reason,
        };
        if index > g.handed {
            return Err(bad(format!(
                "not applied yet (handed out up to {})",
                g.handed
            )));
        }
        // raft's own applied index may lag what was handed out (it never
        // passes what is durable locally); compacting beyond it makes
        // raft panic at its next campaign, which reads the entries after
        // its applied index (found by the cluster simulation, seed 127).
        let applied = g.node.raft.raft_log.applied;
        if index > applied {
            return Err(bad(format!("beyond raft's applied index {applied}")));
        }
        if snapshot.len() as u64 > SNAPSHOT_BYTES_MAX {
            return Err(bad(format!("snapshot of {} bytes", snapshot.len())));
        }
        let point = g.node.store().snapshot_meta().index;
        if index < point {
            return Err(bad(format!("below the compaction point {point}")));
        }
        g.node
            .mut_store()
            .compact_to(index)
            .ok_or_else(|| bad("index not in the log".into()))?;
        g.checkpoint = Some(snapshot);
        Ok(())
    }

    /// Gathers every group's `Ready` into one batch (see [`CoreReady`]).
    /// `source` is asked for snapshots that lagging followers need.
    pub fn ready(&mut self, source: &mut dyn SnapshotSource) -> CoreReady {
        let mut out = CoreReady::default();
        let mut batch = InFlight {
            token: self.next_token,
            ..InFlight::default()
        };
        out.applies.append(&mut self.released);
        for m in self.outbox.drain(..) {
            out.messages.entry(NodeId(m.msg.to)).or_default().push(m);
        }
        let created = std::mem::take(&mut self.created);
        let now = self.now;
        for (&id, g) in self.groups.iter_mut() {
            Self::serve_snapshot(id, g, source, now);
            if created.contains(&id) {
                let meta = g.node.store().snapshot_meta();
                Self::write_checkpoint(
                    id,
                    g,
                    &meta,
                    SnapshotKind::Checkpoint,
                    &[],
                    &mut out.records,
                    &mut batch,
                );
            }
            if let Some(bytes) = g.checkpoint.take() {
                let meta = g.node.store().snapshot_meta();
                Self::write_checkpoint(
                    id,
                    g,
                    &meta,
                    SnapshotKind::Checkpoint,
                    &bytes,
                    &mut out.records,
                    &mut batch,
                );
            }
            Self::gather(id, g, &mut out, &mut batch);
            Self::report_role(id, g, &mut out.roles);
            if g.node.store().entry_count() >= self.config.entries_soft_max {
                out.compact_wanted.push(id);
            }
        }
        self.seal(batch, &mut out);
        out
    }

    /// Asks the caller for a snapshot when raft wanted one for a follower.
    fn serve_snapshot(id: GroupId, g: &mut Group, source: &mut dyn SnapshotSource, now: u64) {
        if !g.node.store().take_wanted() {
            return;
        }
        let Some((index, bytes)) = source.snapshot(id) else {
            return;
        };
        let store = g.node.store();
        let Some(term) = store.term_of(index) else {
            return;
        };
        if index > g.handed || index < store.snapshot_meta().index {
            return;
        }
        let mut snap = Snapshot {
            data: bytes,
            ..Snapshot::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.mut_conf_state().voters = store.voters().to_vec();
        g.node
            .mut_store()
            .cache_snapshot(snap, now + SNAPSHOT_CACHE_TICKS);
    }

    /// Writes a group's checkpoint: its snapshot, its hard state and the
    /// entries after the snapshot, so that nothing older is needed.
    fn write_checkpoint(
        id: GroupId,
        g: &Group,
        meta: &SnapshotMeta,
        kind: SnapshotKind,
        data: &[u8],
        records: &mut Vec<RawRecord>,
        batch: &mut InFlight,
    ) {
        batch.checkpoints.push((id, records.len() as u64));
        encode_snapshot(id, meta, kind, data, records);
        let store = g.node.store();
        records.push(encode_hard_state(id, store.hard_state()));
        encode_entries(id, &store.entries_from(meta.index + 1), records);
    }

    /// Takes one group's raft `Ready` into the batch.
    fn gather(id: GroupId, g: &mut Group, out: &mut CoreReady, batch: &mut InFlight) {
        if !g.node.has_ready() {
            return;
        }
        let mut rd = g.node.ready();
        for msg in rd.take_messages() {
            out.messages
                .entry(NodeId(msg.to))
                .or_default()
                .push(GroupMessage { group: id, msg });
        }
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            let m = snap.get_metadata();
            let meta = SnapshotMeta {
                index: m.index,
                term: m.term,
                voters: m.get_conf_state().voters.clone(),
            };
            g.node.mut_store().install_snapshot(&meta);
            Self::write_checkpoint(
                id,
                g,
                &meta,
                SnapshotKind::Replace,
                &snap.data,
                &mut out.records,
                batch,
            );
            batch.snapshots.push(ApplySnapshot {
                group: id,
                bytes: snap.data.clone(),
                index: m.index,
                term: m.term,
            });
            g.handed = m.index;
        }
        for e in rd.take_committed_entries() {
            assert!(
                e.index <= g.node.raft.raft_log.persisted,
                "committed entry {} not durable",
                e.index
            );
            assert_eq!(e.index, g.handed + 1, "group {id}: applies out of order");
            g.handed = e.index;
            if e.get_entry_type() == EntryType::EntryNormal {
                out.applies.push(Apply::Entry {
                    group: id,
                    index: e.index,
                    term: e.term,
                    data: e.data,
                });
            }
        }
        // Entries before the hard state: a commit index must never be
        // durable ahead of the entries it covers. A torn batch that kept the
        // hard state but lost the entries (replacing a deposed leader's
        // suffix) would otherwise make the stale suffix look committed after
        // a restart (simulation seed 3851). The other way round is safe: a
        // torn batch with the entries but not the new term or vote
        // communicated nothing (votes and acknowledgements leave only once
        // their batch is reported durable).
        if !rd.entries().is_empty() {
            if let Err(last) = g.node.mut_store().append(rd.entries()) {
                unreachable!("raft appended after a gap at {last}");
            }
            encode_entries(id, rd.entries(), &mut out.records);
        }
        if let Some(hs) = rd.hs() {
            g.node.mut_store().set_hard_state(hs.clone());
            out.records.push(encode_hard_state(id, hs));
        }
        for msg in rd.take_persisted_messages() {
            batch.messages.push(GroupMessage { group: id, msg });
        }
        batch.readies.push((id, rd.number()));
        g.node.advance_append_async(rd);
        Self::sync_applied(g);
    }

    /// Tells raft how far the caller has applied: what was handed out, but
    /// never beyond what raft considers durable (an installed snapshot is
    /// handed out only once its batch is).
    fn sync_applied(g: &mut Group) {
        let log = &g.node.raft.raft_log;
        let target = g.handed.min(log.persisted).min(log.committed);
        if target > log.applied {
            g.node.advance_apply_to(target);
        }
    }

    fn report_role(id: GroupId, g: &mut Group, roles: &mut Vec<RoleChange>) {
        let r = &g.node.raft;
        let now = (r.term, r.state, r.leader_id);
        if g.reported != Some(now) {
            g.reported = Some(now);
            let leader = (r.leader_id != 0).then_some(NodeId(r.leader_id));
            roles.push(RoleChange {
                group: id,
                role: Role::from(r.state),
                leader,
                term: r.term,
            });
        }
    }

    /// Turns the gathered batch into a token (when it has records) or
    /// attaches what waits for durability to the last batch in flight.
    fn seal(&mut self, mut batch: InFlight, out: &mut CoreReady) {
        if !out.records.is_empty() {
            out.token = Some(BatchToken(batch.token));
            self.next_token += 1;
            self.inflight.push_back(batch);
        } else if let Some(last) = self.inflight.back_mut() {
            last.readies.append(&mut batch.readies);
            last.messages.append(&mut batch.messages);
            debug_assert!(batch.snapshots.is_empty() && batch.checkpoints.is_empty());
        } else {
            // Nothing in flight: everything raft handed out is durable.
            for (id, number) in batch.readies {
                if let Some(g) = self.groups.get_mut(&id) {
                    g.node.on_persist_ready(number);
                }
            }
            for m in batch.messages {
                out.messages.entry(NodeId(m.msg.to)).or_default().push(m);
            }
        }
    }

    /// The batch `token` is durable; its records start at `first_lsn` in
    /// the WAL (they were appended consecutively). Batches must be reported
    /// in the order they were handed out. Call [`Self::ready`] next: the
    /// messages and snapshots that waited for this batch come out there.
    pub fn persisted(&mut self, token: BatchToken, first_lsn: Lsn) -> Result<()> {
        let expected = self.inflight.front().map(|b| b.token);
        if expected != Some(token.0) {
            return Err(Error::UnexpectedToken {
                got: token.0,
                expected,
            });
        }
        let Some(batch) = self.inflight.pop_front() else {
            return Err(Error::UnexpectedToken {
                got: token.0,
                expected,
            });
        };
        for (id, number) in batch.readies {
            if let Some(g) = self.groups.get_mut(&id) {
                g.node.on_persist_ready(number);
                Self::sync_applied(g);
            }
        }
        for (id, offset) in batch.checkpoints {
            if let Some(g) = self.groups.get_mut(&id) {
                g.base_lsn = Some(Lsn(first_lsn.0 + offset));
            }
        }
        self.outbox.extend(batch.messages);
        self.released
            .extend(batch.snapshots.into_iter().map(Apply::Snapshot));
        Ok(())
    }

    /// The oldest WAL position any group still needs to recover: records
    /// before it may be deleted (`Wal::delete_segments_before`). `None`
    /// when no group has a durable checkpoint yet (nothing written is needed
    /// by a group that is not durable, but keep the WAL until this is Some).
    pub fn min_needed_lsn(&self) -> Option<Lsn> {
        self.groups.values().filter_map(|g| g.base_lsn).min()
    }

    /// The groups whose checkpoint is at `min_needed_lsn` (compact them to
    /// move it forward).
    pub fn pinning_groups(&self) -> Vec<GroupId> {
        let min = self.min_needed_lsn();
        self.groups
            .iter()
            .filter(|(_, g)| g.base_lsn == min)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Groups hosted.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    /// `group`'s role, leader and term on this node.
    pub fn status(&self, group: GroupId) -> Option<RoleChange> {
        let r = &self.groups.get(&group)?.node.raft;
        let leader = (r.leader_id != 0).then_some(NodeId(r.leader_id));
        Some(RoleChange {
            group,
            role: Role::from(r.state),
            leader,
            term: r.term,
        })
    }

    /// `group`'s commit index on this node.
    pub fn commit_index(&self, group: GroupId) -> Option<u64> {
        Some(self.groups.get(&group)?.node.raft.raft_log.committed)
    }

    /// The term of `group`'s entry at `index` if this node holds it (in
    /// memory, which may be ahead of the WAL) or it is the snapshot point.
    pub fn log_term(&self, group: GroupId, index: u64) -> Option<u64> {
        self.groups.get(&group)?.node.store().term_of(index)
    }

    /// `group`'s compaction point: the index its latest snapshot covers.
    pub fn snapshot_index(&self, group: GroupId) -> Option<u64> {
        Some(self.groups.get(&group)?.node.store().snapshot_meta().index)
    }

    /// Entries `group` holds in memory (bounded by compaction).
    pub fn uncompacted(&self, group: GroupId) -> Option<u64> {
        Some(self.groups.get(&group)?.node.store().entry_count())
    }

    /// Batches handed out and not yet reported durable.
    pub fn batches_in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Current logical time in ticks.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.config.node
    }
}
