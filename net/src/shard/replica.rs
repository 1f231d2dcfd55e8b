//! Cluster mode's data path on one core: the core's shard is a Raft group
//! (`GroupId(core)`) replicated on the voter nodes, and an acknowledgement
//! waits for a quorum commit (docs/CLUSTER.md, "The data path").
//!
//! Two logs per core. The **raft WAL** (`DATA/raft/shard-k`) holds
//! `courier_raft::RaftCore`'s records, one fsync per batch. The **state
//! WAL** (the shard's usual WAL) holds only committed core records, in
//! commit order, so its LSNs are the core's own numbering on every node.
//!
//! - **Leader (serving)**: the core applies speculatively at
//!   `Effect::Append` as always; the records of one pump turn become one
//!   or more proposals (`entry`). When a proposal of ours comes back
//!   committed, its records go to the state WAL, and the journal's
//!   durability task reports `Input::Durable` once that WAL made them
//!   durable: acks, fanout and notifications leave only then.
//! - **Follower (hot standby)**: the core stays un-started; each committed
//!   record is appended to the state WAL and replayed (`entry::follow`:
//!   skip what is there, stop at a gap).
//! - **Promotion**: a core is ready when it leads its group and applied its
//!   term's no-op; groups other than 0 hand leadership to group 0's leader
//!   (the primary). When every core of the node is ready each starts its
//!   shard; when all started the node serves sessions.
//! - **Demotion is crash-only**: a started core that loses leadership, a
//!   refused proposal, or a committed entry that is not ours exits the
//!   process with [`EXIT_DEMOTED`]; an inconsistency of the replicated
//!   records (gap, undecodable entry, a snapshot beyond the state WAL)
//!   with [`EXIT_DIVERGED`]. A restart rebuilds the committed state.
//!
//! Must never: report a record durable to the core before it is committed
//! and in the state WAL; write the state WAL out of LSN order; hand an
//! input to an un-started core; keep serving after losing leadership.

pub(crate) mod entry;
pub(crate) mod fetch;

use super::{now_ms, ShardCtx};
use crate::cluster::replicas::ReplicaStart;
use crate::cluster::NodeView;
use crate::link::{self, CoreId, Inbox, LinkHandle};
use crate::sync::Signal;
use courier_core::api::{Input, Lsn};
use courier_raft::record::RawRecord;
use courier_raft::{
    Apply, BatchToken, Bytes, CoreConfig, GroupId, GroupMessage, NodeId, ProposeError, RaftCore,
    Role, RoleChange, SnapshotSource,
};
use courier_wal::Wal;
use entry::{CoreRecord, Follow};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Exit code of a node whose serving core lost leadership, had a proposal
/// refused, or saw a committed entry that was not its own (crash-only
/// demotion; the restart rejoins as a follower).
pub const EXIT_DEMOTED: i32 = 75;
/// Exit code of a node whose replicated records do not fit its state (a
/// gap, an undecodable entry, a snapshot beyond its state WAL: fetching
/// the missing records from a peer is not built).
pub const EXIT_DIVERGED: i32 = 76;
/// Link message kind of a Raft message (`GroupMessage` encoding).
pub const LINK_KIND_RAFT: u8 = 1;
/// Raft tick period (the engine's defaults assume 100 ms: heartbeat
/// 200 ms, election timeout 1–2 s).
pub const RAFT_TICK: Duration = Duration::from_millis(100);
/// Inputs held for a core that has not started yet (peer messages from
/// cores of this node that started first). More is fatal: never dropped.
pub const HELD_INPUTS_MAX: usize = 65_536;
/// Uncompacted entries at which a group compacts. Raised from the
/// engine's 4,096 because a follower that falls behind the leader's
/// compaction point needs the missing records fetched from a peer, which
/// is not built (it exits with [`EXIT_DIVERGED`]).
pub const ENTRIES_SOFT_MAX: u64 = 32_768;
/// Uncompacted entries at which the leader refuses proposals (memory bound
/// of a group's log: this many entries, each one pump turn's records).
pub const ENTRIES_HARD_MAX: u64 = 131_072;
/// Payload bytes of records waiting to be proposed (raft dropping
/// proposals for longer than that is fatal: exit 75).
pub const STAGED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Fetch requests a core answers at once.
const FETCHES_SERVED_MAX: usize = 2;
/// How long a follower waits for a fetch reply before asking again
/// (another voter, in turn).
const FETCH_RETRY: Duration = Duration::from_secs(1);
/// Environment variable that sets the compaction threshold (entries; the
/// hard bound is four times it), for tests and tuning.
pub const ENTRIES_SOFT_MAX_ENV: &str = "COURIER_RAFT_ENTRIES_SOFT_MAX";
/// Raft WAL records between deletions of its segments below
/// `min_needed_lsn`.
const RAFT_WAL_CUT_EVERY: u64 = 4_096;

/// One core's replica runtime (see the module docs).
pub(crate) struct Replica {
    group: GroupId,
    node: u64,
    /// The group's voters (cluster node ids).
    voters: Vec<u64>,
    raft: RefCell<RaftCore>,
    wal: Rc<Wal>,
    links: LinkHandle,
    view: Arc<NodeView>,
    /// Records appended by the core in this pump turn, proposed at its end
    /// (or at the next tick when raft dropped them): at most
    /// [`STAGED_BYTES_MAX`] payload bytes.
    staged: RefCell<Vec<CoreRecord>>,
    staged_bytes: Cell<usize>,
    /// Our proposals not applied yet: (term, index), in order.
    proposed: RefCell<VecDeque<(u64, u64)>>,
    /// Last LSN handed to the state WAL.
    state_lsn: Cell<u64>,
    /// (raft index, state LSN) after each apply since the last compaction.
    points: RefCell<VecDeque<(u64, u64)>>,
    /// Leads its group and applied its term's no-op.
    ready: Cell<bool>,
    /// Raft WAL batches waiting to be appended, in order.
    batches: RefCell<VecDeque<(BatchToken, Vec<RawRecord>)>>,
    batches_wake: Signal,
    drive_wake: Signal,
    /// Raft WAL position below which segments were last deleted.
    cut: Cell<u64>,
    /// Records being fetched from a peer; the engine is not driven
    /// meanwhile (at most one ready's applies wait here).
    fetch: RefCell<Option<Fetching>>,
    /// Told when a fetch reply was applied.
    fetch_wake: Signal,
    /// Fetch requests of peers being answered now (at most
    /// [`FETCHES_SERVED_MAX`]; more are dropped and asked again).
    fetches_served: Cell<usize>,
}

/// A fetch in progress (see `fetch`).
struct Fetching {
    /// The state LSN the snapshot covers: fetch up to it.
    target: u64,
    /// The snapshot's raft index (its applied point once fetched).
    index: u64,
    /// The applies of the same ready after the snapshot.
    deferred: VecDeque<Apply>,
}

/// Logs why and exits the process at once (crash-only).
pub(crate) fn fatal(shard: u16, code: i32, why: &str) -> ! {
    tracing::error!(
        shard,
        code,
        "replica: {why}; exiting (a restart rebuilds the committed state from disk)"
    );
    eprintln!("courierd: shard {shard}: replica: {why}; exiting with {code}");
    std::process::exit(code)
}

impl ShardCtx {
    /// Cluster mode, core not started: keeps what must reach the core once
    /// it starts (peer messages, bounded), drops the rest (connections are
    /// announced again at start; ticks and durability reports are moot).
    pub(super) fn hold(&self, input: Input) {
        if let Input::Peer { .. } = input {
            let mut held = self.held.borrow_mut();
            if held.len() >= HELD_INPUTS_MAX {
                fatal(
                    self.id.0,
                    EXIT_DEMOTED,
                    "too many peer messages held before start",
                );
            }
            held.push_back(input);
        }
    }
}

/// Waits for this core's voters and links, then runs its replica.
pub(super) async fn await_start(
    ctx: Rc<ShardCtx>,
    rx: std::sync::mpsc::Receiver<ReplicaStart>,
    dir: std::path::PathBuf,
) {
    let start = loop {
        match rx.try_recv() {
            Ok(start) => break start,
            Err(std::sync::mpsc::TryRecvError::Empty) if !ctx.stop.is_requested() => {
                glommio::timer::sleep(RAFT_TICK).await;
            }
            Err(_) => return,
        }
    };
    if let Err(e) = attach(&ctx, start, &dir).await {
        tracing::error!(shard = ctx.id.0, error = %format!("{e:#}"), "replica: could not start");
        ctx.stop.request(1);
    }
}

async fn attach(ctx: &Rc<ShardCtx>, start: ReplicaStart, dir: &Path) -> anyhow::Result<()> {
    let id = ctx.id;
    let view = ctx
        .mode
        .view()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("cluster mode without a node view"))?;
    let (links, inbox) = start.links.start()?;
    let wal = open_wal(ctx, dir).await?;
    let state_lsn = ctx.appended.get();
    let (raft, fetch_to) = recover(id.0, view.node, &start.voters, &wal, state_lsn).await?;
    let r = Rc::new(Replica {
        group: GroupId(u32::from(id.0)),
        node: view.node,
        voters: start.voters.clone(),
        raft: RefCell::new(raft),
        wal: Rc::new(wal),
        links,
        view,
        staged: RefCell::new(Vec::new()),
        staged_bytes: Cell::new(0),
        proposed: RefCell::new(VecDeque::new()),
        state_lsn: Cell::new(state_lsn),
        points: RefCell::new(VecDeque::new()),
        ready: Cell::new(false),
        batches: RefCell::new(VecDeque::new()),
        batches_wake: Signal::default(),
        drive_wake: Signal::default(),
        cut: Cell::new(0),
        fetch: RefCell::new(fetch_to.map(|(index, target)| Fetching {
            target,
            index,
            deferred: VecDeque::new(),
        })),
        fetch_wake: Signal::default(),
        fetches_served: Cell::new(0),
    });
    if ctx.replica.set(r.clone()).is_err() {
        anyhow::bail!("replica attached twice");
    }
    glommio::spawn_local(driver(ctx.clone(), r.clone())).detach();
    glommio::spawn_local(persister(ctx.clone(), r.clone())).detach();
    glommio::spawn_local(receiver(ctx.clone(), r.clone(), inbox)).detach();
    if r.fetch.borrow().is_some() {
        glommio::spawn_local(fetcher(ctx.clone(), r.clone())).detach();
    }
    glommio::spawn_local(ticker(ctx.clone(), r.clone())).detach();
    tracing::info!(shard = id.0, state_lsn, voters = ?start.voters, "replica: running");
    r.drive_wake.notify();
    Ok(())
}

async fn open_wal(ctx: &ShardCtx, dir: &Path) -> anyhow::Result<Wal> {
    let mut options = courier_wal::WalOptions::recommended();
    options.segment_bytes = ctx.config.segment_bytes;
    let (wal, _) = Wal::open(dir, ctx.id.0, options)
        .await
        .map_err(|e| anyhow::anyhow!("opening the raft WAL in {}: {e}", dir.display()))?;
    Ok(wal)
}

/// The engine's configuration: thresholds from [`ENTRIES_SOFT_MAX_ENV`]
/// when set (the hard bound four times it), else the module's defaults.
fn engine_config(node: u64) -> anyhow::Result<CoreConfig> {
    let mut seed = [0u8; 8];
    getrandom::getrandom(&mut seed)?;
    let mut config = CoreConfig::new(NodeId(node), u64::from_le_bytes(seed));
    config.entries_soft_max = ENTRIES_SOFT_MAX;
    config.entries_hard_max = ENTRIES_HARD_MAX;
    if let Ok(text) = std::env::var(ENTRIES_SOFT_MAX_ENV) {
        let soft: u64 = text.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
            anyhow::anyhow!("{ENTRIES_SOFT_MAX_ENV}={text:?} is not a count of at least 1")
        })?;
        config.entries_soft_max = soft;
        config.entries_hard_max = soft.saturating_mul(4);
    }
    Ok(config)
}

/// The engine from the raft WAL (or a new group on an empty one), and the
/// (raft index, state LSN) of a compaction snapshot beyond the state WAL
/// whose records must be fetched from a peer before anything is applied.
async fn recover(
    shard: u16,
    node: u64,
    voters: &[u64],
    wal: &Wal,
    state_lsn: u64,
) -> anyhow::Result<(RaftCore, Option<(u64, u64)>)> {
    let config = engine_config(node)?;
    let mut records = Vec::new();
    let from = Lsn(wal.first_lsn().0.max(1));
    wal.replay(courier_wal::Lsn(from.0), |r| {
        records.push((courier_raft::Lsn(r.lsn.0), r.kind, r.payload.to_vec()));
        std::ops::ControlFlow::Continue(())
    })
    .await?;
    if records.is_empty() {
        let mut raft = RaftCore::new(config);
        raft.create_group(GroupId(u32::from(shard)), voters)?;
        return Ok((raft, None));
    }
    let count = records.len();
    let (raft, recovered) = RaftCore::recover(config, records)?;
    let mut fetch = None;
    for s in &recovered.snapshots {
        let lsn = entry::decode_snapshot(&s.bytes)?;
        if lsn > state_lsn {
            fetch = Some((s.index, lsn));
        }
    }
    let snapshots = recovered.snapshots.len();
    tracing::info!(shard, records = count, snapshots, fetch = ?fetch, "replica: raft WAL recovered");
    Ok((raft, fetch))
}

/// The latest applied point whose state LSN is durable in the state WAL.
fn durable_point(points: &VecDeque<(u64, u64)>, durable: u64) -> Option<(u64, u64)> {
    points
        .iter()
        .rev()
        .find(|(_, lsn)| *lsn <= durable)
        .copied()
}

/// Serves a lagging follower's snapshot: the state position only (its
/// records must already be in the follower's state WAL; see the docs).
struct Source<'a> {
    points: &'a VecDeque<(u64, u64)>,
    durable: u64,
}

impl SnapshotSource for Source<'_> {
    fn snapshot(&mut self, _group: GroupId) -> Option<(u64, Bytes)> {
        let (index, lsn) = durable_point(self.points, self.durable)?;
        Some((index, Bytes::from(entry::encode_snapshot(lsn))))
    }
}

impl Replica {
    /// Takes an `Effect::Append` of the core (proposed at the pump's end).
    pub(super) fn stage(&self, lsn: Lsn, kind: u8, payload: Vec<u8>) {
        let bytes = self.staged_bytes.get() + payload.len();
        if bytes > STAGED_BYTES_MAX {
            let why = format!("{bytes} bytes of records wait for raft to accept them");
            fatal(self.group.0 as u16, EXIT_DEMOTED, &why);
        }
        self.staged_bytes.set(bytes);
        self.staged.borrow_mut().push(CoreRecord {
            lsn: lsn.0,
            kind,
            payload,
        });
    }

    /// End of a pump turn: proposes what the core appended.
    pub(super) fn flush(&self, shard: u16) {
        let mut records = std::mem::take(&mut *self.staged.borrow_mut());
        if records.is_empty() {
            return;
        }
        self.staged_bytes.set(0);
        let entries = entry::encode_entries(&records)
            .unwrap_or_else(|e| fatal(shard, EXIT_DEMOTED, &format!("proposal refused: {e}")));
        for data in entries {
            match self.raft.borrow_mut().propose(self.group, &data) {
                Ok(at) => self.proposed.borrow_mut().push_back(at),
                Err(ProposeError::Dropped { .. } | ProposeError::LogFull { .. }) => {
                    // raft is busy (a leadership transfer, its bound of
                    // uncommitted bytes, or a log waiting for compaction):
                    // nothing of these records was acknowledged; propose
                    // them again at the next tick, ahead of anything the
                    // core appends meanwhile.
                    let first = entry::first_lsn(&data).unwrap_or(0);
                    records.retain(|r| r.lsn >= first);
                    tracing::debug!(shard, first, "replica: proposal dropped by raft; retrying");
                    let mut staged = self.staged.borrow_mut();
                    records.append(&mut staged);
                    let bytes = records.iter().map(|r| r.payload.len()).sum();
                    self.staged_bytes.set(bytes);
                    *staged = records;
                    break;
                }
                Err(e) => fatal(shard, EXIT_DEMOTED, &format!("proposal refused: {e}")),
            }
        }
        self.drive_wake.notify();
    }

    /// Takes everything the engine has ready until it has nothing more.
    fn drive(self: &Rc<Self>, ctx: &Rc<ShardCtx>) {
        while self.fetch.borrow().is_none() {
            let rd = {
                let points = self.points.borrow();
                let mut source = Source {
                    points: &points,
                    durable: ctx.wal.durable_lsn().0,
                };
                self.raft.borrow_mut().ready(&mut source)
            };
            if rd.is_empty() {
                break;
            }
            // A compaction wish alone, with no point to compact to beyond
            // the current one, is nothing to do: stop here, or the loop
            // would spin (and, before this check, wrote a checkpoint per
            // turn: a node grew to 22 GB with its state WAL behind).
            let only_compaction = rd.token.is_none()
                && rd.messages.is_empty()
                && rd.applies.is_empty()
                && rd.roles.is_empty();
            self.send(ctx.id.0, rd.messages);
            if let Some(token) = rd.token {
                self.batches.borrow_mut().push_back((token, rd.records));
                self.batches_wake.notify();
            }
            for rc in rd.roles {
                self.role(ctx, &rc);
            }
            self.apply_all(ctx, rd.applies.into());
            let compacted =
                !rd.compact_wanted.is_empty() && self.fetch.borrow().is_none() && self.compact(ctx);
            if only_compaction && !compacted {
                break;
            }
        }
        self.publish();
    }

    fn send(&self, shard: u16, messages: BTreeMap<NodeId, Vec<GroupMessage>>) {
        for (node, msgs) in messages {
            for m in msgs {
                let to = link::NodeId(node.0 as u32);
                let dest = CoreId(m.group.0 as u16);
                // A message lost here is like one lost on the network:
                // raft sends again what it still needs.
                if let Err(e) = self.links.send(to, dest, LINK_KIND_RAFT, m.encode().into()) {
                    tracing::debug!(shard, error = %e, "replica: raft message not queued");
                }
            }
        }
    }

    /// Applies in order; a snapshot beyond the state WAL starts a fetch
    /// and keeps the applies after it until the records are in.
    fn apply_all(self: &Rc<Self>, ctx: &Rc<ShardCtx>, mut applies: VecDeque<Apply>) {
        while let Some(a) = applies.pop_front() {
            if let Apply::Snapshot(s) = &a {
                let lsn = entry::decode_snapshot(&s.bytes).unwrap_or_else(|e| {
                    fatal(
                        ctx.id.0,
                        EXIT_DIVERGED,
                        &format!("snapshot {}: {e}", s.index),
                    )
                });
                if lsn > self.state_lsn.get() {
                    let state_lsn = self.state_lsn.get();
                    tracing::info!(
                        shard = ctx.id.0,
                        index = s.index,
                        lsn,
                        state_lsn,
                        "replica: snapshot beyond the state WAL; fetching the records from a peer"
                    );
                    *self.fetch.borrow_mut() = Some(Fetching {
                        target: lsn,
                        index: s.index,
                        deferred: applies,
                    });
                    glommio::spawn_local(fetcher(ctx.clone(), self.clone())).detach();
                    return;
                }
            }
            self.apply(ctx, a);
        }
    }

    fn apply(&self, ctx: &Rc<ShardCtx>, apply: Apply) {
        let shard = ctx.id.0;
        match apply {
            Apply::Entry {
                index, term, data, ..
            } => {
                if data.is_empty() {
                    self.no_op(term);
                } else {
                    let records = entry::decode_entry(&data).unwrap_or_else(|e| {
                        fatal(shard, EXIT_DIVERGED, &format!("entry {index}: {e}"))
                    });
                    if ctx.started.get() {
                        self.commit_own(ctx, index, term, records);
                    } else {
                        self.follow(ctx, index, records);
                    }
                }
                self.points
                    .borrow_mut()
                    .push_back((index, self.state_lsn.get()));
            }
            Apply::Snapshot(s) => {
                let lsn = entry::decode_snapshot(&s.bytes).unwrap_or_else(|e| {
                    fatal(shard, EXIT_DIVERGED, &format!("snapshot {}: {e}", s.index))
                });
                // apply_all fetched what was missing first.
                debug_assert!(lsn <= self.state_lsn.get());
                self.points.borrow_mut().push_back((s.index, lsn));
            }
        }
    }

    /// The no-op of a term: this core is ready once it is its own term's.
    fn no_op(&self, term: u64) {
        let raft = self.raft.borrow();
        if let Some(st) = raft.status(self.group) {
            if st.role == Role::Leader && st.term == term {
                self.ready.set(true);
            }
        }
    }

    /// A committed entry on a started (serving) core: ours, in order; its
    /// records go to the state WAL, whose durability task reports them.
    fn commit_own(&self, ctx: &Rc<ShardCtx>, index: u64, term: u64, records: Vec<CoreRecord>) {
        let shard = ctx.id.0;
        let ours = self.proposed.borrow_mut().pop_front();
        if ours != Some((term, index)) {
            let why = format!("committed entry ({term}, {index}) is not our proposal {ours:?}");
            fatal(shard, EXIT_DEMOTED, &why);
        }
        for r in records {
            if r.lsn != self.state_lsn.get() + 1 {
                let why = format!("record LSN {} after {}", r.lsn, self.state_lsn.get());
                fatal(shard, EXIT_DIVERGED, &why);
            }
            self.state_lsn.set(r.lsn);
            ctx.append(Lsn(r.lsn), r.kind, r.payload);
        }
    }

    /// A committed entry on a follower: state WAL, then replay.
    fn follow(&self, ctx: &Rc<ShardCtx>, index: u64, records: Vec<CoreRecord>) {
        for r in records {
            if let Follow::Gap { expected, got } = self.follow_one(ctx, r) {
                let why =
                    format!("entry {index}: record LSN {got}, the state WAL needs {expected}");
                fatal(ctx.id.0, EXIT_DIVERGED, &why);
            }
        }
    }

    /// One committed record on a follower (`entry::follow`); a gap is
    /// returned, not applied.
    fn follow_one(&self, ctx: &Rc<ShardCtx>, r: CoreRecord) -> Follow {
        let step = entry::follow(self.state_lsn.get(), r.lsn);
        if step == Follow::Apply {
            if let Err(e) = ctx.core.borrow_mut().replay(Lsn(r.lsn), r.kind, &r.payload) {
                fatal(ctx.id.0, EXIT_DIVERGED, &format!("record {}: {e}", r.lsn));
            }
            self.state_lsn.set(r.lsn);
            ctx.append(Lsn(r.lsn), r.kind, r.payload);
        }
        step
    }

    fn role(&self, ctx: &Rc<ShardCtx>, rc: &RoleChange) {
        if rc.group != self.group {
            return;
        }
        let me = &self.view.cores[usize::from(ctx.id.0)];
        me.leader
            .store(rc.leader.map_or(0, |n| n.0), Ordering::SeqCst);
        me.term.store(rc.term, Ordering::SeqCst);
        tracing::info!(shard = ctx.id.0, role = ?rc.role, leader = ?rc.leader, term = rc.term, "replica: role");
        if rc.role != Role::Leader {
            self.ready.set(false);
            self.demote_if_started(ctx);
        }
    }

    /// Crash-only demotion: once any core of the node started, a core that
    /// does not lead its group ends the process.
    fn demote_if_started(&self, ctx: &ShardCtx) {
        if ctx.started.get()
            || self
                .view
                .cores
                .iter()
                .any(|c| c.started.load(Ordering::SeqCst))
        {
            fatal(
                ctx.id.0,
                EXIT_DEMOTED,
                "lost the leadership of its group after the node started serving",
            );
        }
    }

    /// Compacts the log at the latest applied point durable in the state WAL.
    /// Whether it compacted: only when that point is beyond the log's
    /// current compaction point (a compaction at the same point would only
    /// write the same checkpoint again).
    fn compact(&self, ctx: &ShardCtx) -> bool {
        let durable = ctx.wal.durable_lsn().0;
        let Some((index, lsn)) = durable_point(&self.points.borrow(), durable) else {
            return false;
        };
        let point = self.raft.borrow().compacted_index(self.group).unwrap_or(0);
        if index <= point {
            return false;
        }
        let bytes = Bytes::from(entry::encode_snapshot(lsn));
        match self.raft.borrow_mut().compact(self.group, index, bytes) {
            Ok(()) => {
                self.points.borrow_mut().retain(|(i, _)| *i >= index);
                tracing::info!(shard = ctx.id.0, index, lsn, "replica: raft log compacted");
                true
            }
            Err(e) => {
                tracing::warn!(shard = ctx.id.0, error = %e, "replica: compaction refused");
                false
            }
        }
    }

    fn publish(&self) {
        let raft = self.raft.borrow();
        let Some(me) = self.view.cores.get(self.group.0 as usize) else {
            return;
        };
        let applied = raft.applied_index(self.group).unwrap_or(0);
        me.applied.store(applied, Ordering::SeqCst);
        me.committed
            .store(raft.commit_index(self.group).unwrap_or(0), Ordering::SeqCst);
        me.applied_lsn.store(self.state_lsn.get(), Ordering::SeqCst);
        // A core with a leadership transfer under way is not ready: raft
        // drops its proposals, and the transfer may still succeed.
        let transferring = raft.transferring(self.group).is_some();
        me.ready
            .store(self.ready.get() && !transferring, Ordering::SeqCst);
    }

    /// Once a tick: hand leadership to the primary, start the core when
    /// every core of the node is ready, serve when all started.
    fn check(&self, ctx: &Rc<ShardCtx>) {
        let Some(st) = self.raft.borrow().status(self.group) else {
            return;
        };
        if st.role != Role::Leader {
            self.demote_if_started(ctx);
            return;
        }
        if let Some(primary) = self.view.primary().filter(|p| *p != self.node) {
            if self.group.0 != 0 {
                let _ = self
                    .raft
                    .borrow_mut()
                    .transfer_leader(self.group, NodeId(primary));
            }
            return;
        }
        if self.raft.borrow().transferring(self.group).is_some() {
            // A transfer to a node that was the primary (group 0's leader
            // has changed since, e.g. to this node): raft drops proposals
            // until it ends, so end it before this core may start.
            let _ = self.raft.borrow_mut().abort_transfer(self.group);
            return;
        }
        let me = &self.view.cores[usize::from(ctx.id.0)];
        if me.ready.load(Ordering::SeqCst) && !ctx.started.get() && self.view.all_ready() {
            start_core(ctx, &self.view);
        }
        let all_started = self
            .view
            .cores
            .iter()
            .all(|c| c.started.load(Ordering::SeqCst));
        if all_started && !self.view.serving() {
            self.view.set_serving(true);
            tracing::info!(
                node = self.node,
                "replica: every core leads its group and started: serving clients"
            );
        }
    }
}

/// Starts the core's shard on top of the committed state: its start
/// effects, the connections open now, then the peer messages held.
fn start_core(ctx: &Rc<ShardCtx>, view: &NodeView) {
    ctx.started.set(true);
    view.cores[usize::from(ctx.id.0)]
        .started
        .store(true, Ordering::SeqCst);
    let mut effects = Vec::new();
    ctx.core.borrow_mut().start(now_ms(), &mut effects);
    for effect in effects {
        ctx.execute(effect);
    }
    let conns: Vec<_> = ctx.conns.borrow().keys().copied().collect();
    {
        let mut pending = ctx.pending.borrow_mut();
        pending.extend(conns.into_iter().map(|conn| Input::Connected { conn }));
        pending.extend(ctx.held.borrow_mut().drain(..));
    }
    ctx.drain_pending();
    tracing::info!(
        shard = ctx.id.0,
        lsn = ctx.appended.get(),
        "replica: core started as the group's leader"
    );
}

async fn driver(ctx: Rc<ShardCtx>, r: Rc<Replica>) {
    while !ctx.stop.is_requested() {
        r.drive_wake.wait().await;
        r.drive(&ctx);
    }
}

async fn ticker(ctx: Rc<ShardCtx>, r: Rc<Replica>) {
    while !ctx.stop.is_requested() {
        glommio::timer::sleep(RAFT_TICK).await;
        r.raft.borrow_mut().tick();
        r.flush(ctx.id.0); // records raft dropped last time
        r.check(&ctx);
        r.drive_wake.notify();
    }
}

/// Stops this core's links (their sockets closed) and closes the raft WAL;
/// the shard's stop sequence awaits it before the executor ends.
pub(super) async fn shutdown(ctx: &ShardCtx) {
    let Some(r) = ctx.replica.get() else {
        return;
    };
    let left = r.links.shutdown().await;
    if left > 0 {
        tracing::warn!(
            shard = ctx.id.0,
            tasks = left,
            "replica: link tasks still running at stop"
        );
    }
    if let Err(e) = r.wal.close().await {
        tracing::warn!(shard = ctx.id.0, error = %e, "replica: closing the raft WAL");
    }
}

async fn receiver(ctx: Rc<ShardCtx>, r: Rc<Replica>, inbox: Inbox) {
    while let Some(m) = inbox.recv().await {
        match m.kind {
            LINK_KIND_RAFT => {}
            fetch::LINK_KIND_FETCH_REQUEST => {
                serve_fetch(&ctx, &r, &m);
                continue;
            }
            fetch::LINK_KIND_FETCH_REPLY => {
                r.on_fetch_reply(&ctx, &m.payload);
                continue;
            }
            _ => continue,
        }
        match GroupMessage::decode(&m.payload) {
            Ok(msg) => {
                if let Err(e) = r.raft.borrow_mut().step(msg) {
                    tracing::debug!(error = %e, "replica: raft message refused");
                }
            }
            Err(e) => {
                tracing::warn!(from = %m.from_node, error = %e, "replica: undecodable raft message")
            }
        }
        r.drive_wake.notify();
    }
}

/// Appends the engine's batches to the raft WAL in order, waits for one
/// fsync covering them, reports them durable, then trims the WAL.
async fn persister(ctx: Rc<ShardCtx>, r: Rc<Replica>) {
    let shard = ctx.id.0;
    loop {
        let mut done = Vec::new();
        loop {
            let next = r.batches.borrow_mut().pop_front();
            let Some((token, records)) = next else { break };
            match append_all(&r.wal, records).await {
                Ok(first) => done.push((token, first)),
                Err(_) if ctx.stop.is_requested() => return, // closed for the stop
                Err(e) => fatal(shard, 1, &format!("raft WAL append failed: {e}")),
            }
        }
        if done.is_empty() {
            r.batches_wake.wait().await;
            continue;
        }
        let last = courier_wal::Lsn(r.wal.next_lsn().0 - 1);
        if let Err(e) = r.wal.wait_durable(last).await {
            if ctx.stop.is_requested() {
                return;
            }
            fatal(shard, 1, &format!("raft WAL failed: {e}"));
        }
        for (token, first) in done {
            if let Err(e) = r
                .raft
                .borrow_mut()
                .persisted(token, courier_raft::Lsn(first))
            {
                fatal(shard, 1, &format!("raft batch report: {e}"));
            }
        }
        r.drive_wake.notify();
        trim(&r, shard).await;
    }
}

/// Appends one batch's records consecutively; returns the first LSN.
async fn append_all(wal: &Wal, records: Vec<RawRecord>) -> courier_wal::Result<u64> {
    let mut first = None;
    for (kind, payload) in records {
        let lsn = loop {
            match wal.append(kind, &payload) {
                Ok(lsn) => break lsn,
                Err(courier_wal::Error::Backpressure { .. }) => {
                    wal.wait_for_room(1, payload.len() as u64).await?;
                }
                Err(e) => return Err(e),
            }
        };
        first.get_or_insert(lsn.0);
    }
    Ok(first.unwrap_or(0))
}

/// Deletes raft WAL segments the engine no longer needs (a marker snapshot
/// just below `min_needed_lsn` lets the WAL delete and restart after it).
async fn trim(r: &Replica, shard: u16) {
    let Some(min) = r.raft.borrow().min_needed_lsn() else {
        return;
    };
    if min.0 < r.cut.get() + RAFT_WAL_CUT_EVERY || min.0 <= 1 {
        return;
    }
    r.cut.set(min.0);
    let marker = courier_wal::Lsn(min.0 - 1);
    if let Err(e) = r.wal.write_snapshot(marker, b"raft").await {
        tracing::warn!(shard, error = %e, "replica: raft WAL marker failed");
        return;
    }
    if let Err(e) = r.wal.delete_segments_before(courier_wal::Lsn(min.0)).await {
        tracing::warn!(shard, error = %e, "replica: deleting raft WAL segments failed");
    }
}

impl Replica {
    /// A peer's chunk of the records being fetched: applied in order
    /// (stale or repeated ones are skipped); once the target is reached
    /// the deferred applies run and the engine is driven again.
    fn on_fetch_reply(self: &Rc<Self>, ctx: &Rc<ShardCtx>, payload: &[u8]) {
        let records = match fetch::decode_reply(payload) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(shard = ctx.id.0, error = %e, "replica: undecodable fetch reply");
                return;
            }
        };
        let Some(target) = self.fetch.borrow().as_ref().map(|f| f.target) else {
            return;
        };
        for r in records.into_iter().filter(|r| r.lsn <= target) {
            if let Follow::Gap { .. } = self.follow_one(ctx, r) {
                break; // a reply to an older request: ask again
            }
        }
        self.fetch_wake.notify();
        if self.state_lsn.get() < target {
            return;
        }
        let Some(done) = self.fetch.borrow_mut().take() else {
            return;
        };
        tracing::info!(
            shard = ctx.id.0,
            lsn = target,
            "replica: fetched the missing records"
        );
        self.points
            .borrow_mut()
            .push_back((done.index, done.target));
        self.apply_all(ctx, done.deferred);
        self.drive_wake.notify();
    }

    /// The voters to ask, the group's leader first.
    fn fetch_peers(&self) -> Vec<u64> {
        let leader = self
            .raft
            .borrow()
            .status(self.group)
            .and_then(|s| s.leader)
            .map(|n| n.0)
            .filter(|n| *n != self.node);
        let mut peers: Vec<u64> = leader.into_iter().collect();
        let others = self.voters.iter().copied();
        peers.extend(others.filter(|n| *n != self.node && Some(*n) != leader));
        peers
    }
}

/// Asks peers in turn for the records of the fetch in progress until it
/// is done, a chunk per request, again after [`FETCH_RETRY`] without
/// progress (then the next peer).
async fn fetcher(ctx: Rc<ShardCtx>, r: Rc<Replica>) {
    let mut turn = 0usize;
    while !ctx.stop.is_requested() {
        let Some(target) = r.fetch.borrow().as_ref().map(|f| f.target) else {
            return;
        };
        let peers = r.fetch_peers();
        let Some(&peer) = peers.get(turn % peers.len().max(1)) else {
            glommio::timer::sleep(FETCH_RETRY).await;
            continue;
        };
        let request = fetch::FetchRequest {
            from: r.state_lsn.get() + 1,
            to: target,
        };
        let bytes = fetch::encode_request(request);
        let to = link::NodeId(peer as u32);
        let dest = CoreId(r.group.0 as u16);
        if let Err(e) = r
            .links
            .send(to, dest, fetch::LINK_KIND_FETCH_REQUEST, bytes.into())
        {
            tracing::debug!(shard = ctx.id.0, error = %e, "replica: fetch request not queued");
        }
        let before = r.state_lsn.get();
        let _ = crate::sync::with_timeout(FETCH_RETRY, r.fetch_wake.wait()).await;
        if r.state_lsn.get() == before {
            turn += 1;
        }
    }
}

/// Answers a peer's fetch request from the state WAL (durable records
/// only), one chunk, on its own task; at most [`FETCHES_SERVED_MAX`] at
/// once (the peer asks again).
fn serve_fetch(ctx: &Rc<ShardCtx>, r: &Rc<Replica>, m: &link::Inbound) {
    let request = match fetch::decode_request(&m.payload) {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(shard = ctx.id.0, from = %m.from_node, error = %e, "replica: undecodable fetch request");
            return;
        }
    };
    if r.fetches_served.get() >= FETCHES_SERVED_MAX {
        return;
    }
    r.fetches_served.set(r.fetches_served.get() + 1);
    let (ctx, r, to, core) = (ctx.clone(), r.clone(), m.from_node, m.from_core);
    glommio::spawn_local(async move {
        let records = read_chunk(&ctx.wal, request).await.unwrap_or_else(|e| {
            tracing::warn!(shard = ctx.id.0, error = %e, "replica: reading records for a peer");
            Vec::new()
        });
        let reply = fetch::encode_reply(&records);
        if let Err(e) = r
            .links
            .send(to, core, fetch::LINK_KIND_FETCH_REPLY, reply.into())
        {
            tracing::debug!(shard = ctx.id.0, error = %e, "replica: fetch reply not queued");
        }
        r.fetches_served.set(r.fetches_served.get() - 1);
    })
    .detach();
}

/// Reads the durable records of one reply to `request`.
async fn read_chunk(
    wal: &Wal,
    request: fetch::FetchRequest,
) -> courier_wal::Result<Vec<CoreRecord>> {
    let end = fetch::chunk_end(request);
    if request.from == 0 || request.from > end || request.from > wal.durable_lsn().0 {
        return Ok(Vec::new());
    }
    let mut reader = wal.reader(courier_wal::Lsn(request.from))?;
    let mut out = Vec::new();
    let mut bytes = 0;
    while let Some(record) = reader.next().await? {
        if record.lsn.0 > end || bytes >= fetch::FETCH_CHUNK_BYTES {
            break;
        }
        bytes += record.payload.len();
        out.push(CoreRecord {
            lsn: record.lsn.0,
            kind: record.kind,
            payload: record.payload.to_vec(),
        });
    }
    Ok(out)
}
