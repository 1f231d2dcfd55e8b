//! Cluster mode's data path on one core, the I/O side: the decisions are
//! `courier_raft::replica::Replica`'s (sans-IO, docs/ARCHITECTURE.md);
//! this module drives it with glommio tasks, the raft WAL, the state WAL
//! (the shard's journal) and the node links, and carries out its effects
//! (docs/CLUSTER.md, "The data path").
//!
//! Two logs per core. The **raft WAL** (`DATA/raft/shard-k`) holds
//! `courier_raft::RaftCore`'s records, one fsync per batch. The **state
//! WAL** (the shard's usual WAL) holds only committed core records, in
//! commit order, so its LSNs are the core's own numbering on every node;
//! the journal's durability task reports `Input::Durable` once it made
//! them durable: acks, fanout and notifications leave only then.
//!
//! Tasks: the driver (the machine's `drive` whenever woken), the ticker
//! (raft tick, re-proposal, `check`: start the core when every core of the
//! node is ready, serve when all started), the persister (raft WAL appends
//! and fsyncs), the receiver (raft messages, fetch requests and replies)
//! and, while a fetch is in progress, the fetcher.
//!
//! Exits: a [`Fatal`] of the machine ends the process with
//! [`EXIT_DEMOTED`] or [`EXIT_DIVERGED`]; a restart rebuilds the committed
//! state.
//!
//! Must never: hand an input to an un-started core; carry out the
//! machine's effects out of order.

pub(crate) use courier_raft::replica::{catchup, entry, fetch};

use super::{now_ms, ShardCtx};
use crate::cluster::replicas::ReplicaStart;
use crate::cluster::NodeView;
use crate::link::{self, CoreId, Inbox, LinkHandle};
use crate::sync::Signal;
use courier_core::api::{Input, Lsn};
use courier_raft::record::RawRecord;
use courier_raft::replica::{Check, Effect, Fatal, FatalKind, NodeFacts};
use courier_raft::{BatchToken, CoreConfig, GroupId, GroupMessage, NodeId};
use courier_wal::Wal;
use entry::CoreRecord;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
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
/// gap, an undecodable entry or snapshot, a record the core refuses).
pub const EXIT_DIVERGED: i32 = 76;
/// Link message kind of a Raft message (`GroupMessage` encoding).
pub const LINK_KIND_RAFT: u8 = 1;
/// Raft tick period (the engine's defaults assume 100 ms: heartbeat
/// 200 ms, election timeout 1.0–1.5 s).
pub const RAFT_TICK: Duration = Duration::from_millis(100);
/// How often a core that leads its group but has not started looks
/// whether the node's other cores are ready too (between ticks: a start
/// waits for the last core's readiness, not for the next tick).
pub const PROMOTION_POLL: Duration = Duration::from_millis(10);
/// Inputs held for a core that has not started yet (peer messages from
/// cores of this node that started first). More is fatal: never dropped.
pub const HELD_INPUTS_MAX: usize = 65_536;
/// Uncompacted entries at which a group compacts. Raised from the
/// engine's 4,096 so that a follower that falls behind the leader's
/// compaction point (and must fetch the missing records from a peer) is
/// rare.
pub const ENTRIES_SOFT_MAX: u64 = 32_768;
/// Uncompacted entries at which the leader refuses proposals (memory bound
/// of a group's log: this many entries, each one pump turn's records).
pub const ENTRIES_HARD_MAX: u64 = 131_072;
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

const _: () = assert!(fetch::FETCH_CHUNK_BYTES * 2 < crate::link::constants::PAYLOAD_BYTES_MAX);

/// One core's replica runtime (see the module docs).
pub(crate) struct Replica {
    /// The decisions (sans-IO).
    pub(super) machine: RefCell<courier_raft::replica::Replica>,
    pub(super) group: GroupId,
    wal: Rc<Wal>,
    pub(super) links: LinkHandle,
    view: Arc<NodeView>,
    /// Raft WAL batches waiting to be appended, in order (bounded by the
    /// engine's batches in flight).
    batches: RefCell<VecDeque<(BatchToken, Vec<RawRecord>)>>,
    batches_wake: Signal,
    drive_wake: Signal,
    /// Raft WAL position below which segments were last deleted.
    cut: Cell<u64>,
    /// Told when a fetch reply was applied.
    fetch_wake: Signal,
    /// Fetch and catch-up requests of peers being answered now (at most
    /// [`FETCHES_SERVED_MAX`]; more are dropped and asked again).
    fetches_served: Cell<usize>,
    /// This core catching up from a peer's snapshot (`catchup`).
    pub(super) catchup: super::catchup::CatchUpSlot,
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

/// The value, or the machine's [`Fatal`] as the process's exit.
fn or_exit<T>(shard: u16, result: Result<T, Fatal>) -> T {
    match result {
        Ok(v) => v,
        Err(f) => {
            let code = match f.kind {
                FatalKind::Demoted => EXIT_DEMOTED,
                FatalKind::Diverged => EXIT_DIVERGED,
            };
            fatal(shard, code, &f.why)
        }
    }
}

impl ShardCtx {
    /// Cluster mode, core not started: keeps what must reach the core once
    /// it starts (peer messages, bounded), drops the rest (connections are
    /// announced again at start; ticks and durability reports are moot).
    ///
    /// Messages from edges are dropped, not held: the core's `Restarted`
    /// at start makes every edge send again what it holds
    /// (`edge`), and a node that never becomes primary would otherwise
    /// hold them until the bound.
    pub(super) fn hold(&self, input: Input) {
        if let Input::Peer { from, .. } = &input {
            if usize::from(from.0) >= self.peer_out.len() {
                self.count(crate::metrics::M::peer_link_dropped_total, 1);
                return;
            }
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
    if !start.voters.contains(&view.node) {
        return super::nonvoter::attach(ctx, start, view);
    }
    let (links, inbox) = start.links.start()?;
    let wal = open_wal(ctx, dir).await?;
    let state_lsn = ctx.appended.get();
    let machine = recover(id.0, view.node, &start.voters, &wal, state_lsn).await?;
    let fetching = machine.fetching().is_some();
    let r = Rc::new(Replica {
        machine: RefCell::new(machine),
        group: GroupId(u32::from(id.0)),
        wal: Rc::new(wal),
        links,
        view,
        batches: RefCell::new(VecDeque::new()),
        batches_wake: Signal::default(),
        drive_wake: Signal::default(),
        cut: Cell::new(0),
        fetch_wake: Signal::default(),
        fetches_served: Cell::new(0),
        catchup: Default::default(),
    });
    if ctx.replica.set(r.clone()).is_err() {
        anyhow::bail!("replica attached twice");
    }
    let shards = ctx.peer_out.len() as u16;
    let routes = super::edge::Routes::new(
        r.view.node,
        &start.voters,
        shards,
        r.links.clone(),
        r.view.clone(),
    )?;
    ctx.attach_edge(routes)?;
    glommio::spawn_local(driver(ctx.clone(), r.clone())).detach();
    glommio::spawn_local(persister(ctx.clone(), r.clone())).detach();
    glommio::spawn_local(receiver(ctx.clone(), r.clone(), inbox)).detach();
    if fetching {
        glommio::spawn_local(fetcher(ctx.clone(), r.clone())).detach();
    }
    glommio::spawn_local(ticker(ctx.clone(), r.clone())).detach();
    glommio::spawn_local(promoter(ctx.clone(), r.clone())).detach();
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

/// The replica from the raft WAL (or a new group on an empty one); a
/// compaction snapshot beyond the state WAL makes it fetch first.
async fn recover(
    shard: u16,
    node: u64,
    voters: &[u64],
    wal: &Wal,
    state_lsn: u64,
) -> anyhow::Result<courier_raft::replica::Replica> {
    let config = engine_config(node)?;
    let mut records = Vec::new();
    let from = Lsn(wal.first_lsn().0.max(1));
    wal.replay(courier_wal::Lsn(from.0), |r| {
        records.push((courier_raft::Lsn(r.lsn.0), r.kind, r.payload.to_vec()));
        std::ops::ControlFlow::Continue(())
    })
    .await?;
    let count = records.len();
    let group = GroupId(u32::from(shard));
    let machine =
        courier_raft::replica::Replica::recover(config, group, voters, records, state_lsn)?;
    let fetch = machine.fetching();
    tracing::info!(shard, records = count, fetch = ?fetch, "replica: raft WAL recovered");
    Ok(machine)
}

impl Replica {
    fn shard(&self) -> u16 {
        self.group.0 as u16
    }

    /// What the node's cores say, for the machine.
    fn facts(&self) -> NodeFacts {
        NodeFacts {
            primary: self.view.primary(),
            any_started: self
                .view
                .cores
                .iter()
                .any(|c| c.started.load(Ordering::SeqCst)),
            all_ready: self.view.all_ready(),
        }
    }

    /// Takes an `Effect::Append` of the core (proposed at the pump's end).
    pub(super) fn stage(&self, lsn: Lsn, kind: u8, payload: Vec<u8>) {
        let staged = self.machine.borrow_mut().stage(lsn.0, kind, payload);
        or_exit(self.shard(), staged);
    }

    /// End of a pump turn: proposes what the core appended.
    pub(super) fn flush(&self, shard: u16) {
        or_exit(shard, self.machine.borrow_mut().flush());
        self.drive_wake.notify();
    }

    /// Takes everything the engine has ready and carries it out.
    fn drive(self: &Rc<Self>, ctx: &Rc<ShardCtx>) {
        let mut effects = Vec::new();
        let durable = ctx.wal.durable_lsn().0;
        let facts = self.facts();
        let driven = self
            .machine
            .borrow_mut()
            .drive(durable, facts, &mut effects);
        or_exit(ctx.id.0, driven);
        self.execute(ctx, effects);
        self.publish();
    }

    /// Carries out the machine's effects, in order.
    fn execute(self: &Rc<Self>, ctx: &Rc<ShardCtx>, effects: Vec<Effect>) {
        let shard = ctx.id.0;
        for effect in effects {
            match effect {
                Effect::Send(node, m) => self.send(shard, node, &m),
                Effect::Persist(token, records) => {
                    self.batches.borrow_mut().push_back((token, records));
                    self.batches_wake.notify();
                }
                Effect::Append(r) => ctx.append(Lsn(r.lsn), r.kind, r.payload),
                Effect::Replay(r) => {
                    if let Err(e) = ctx.core.borrow_mut().replay(Lsn(r.lsn), r.kind, &r.payload) {
                        fatal(shard, EXIT_DIVERGED, &format!("record {}: {e}", r.lsn));
                    }
                    ctx.append(Lsn(r.lsn), r.kind, r.payload);
                }
                Effect::Role(rc) => {
                    let me = &self.view.cores[usize::from(shard)];
                    me.leader
                        .store(rc.leader.map_or(0, |n| n.0), Ordering::SeqCst);
                    me.term.store(rc.term, Ordering::SeqCst);
                    tracing::info!(shard, role = ?rc.role, leader = ?rc.leader, term = rc.term, "replica: role");
                }
                Effect::Compacted { index, lsn } => {
                    tracing::info!(shard, index, lsn, "replica: raft log compacted");
                }
                Effect::FetchStarted { target } => {
                    let state_lsn = self.machine.borrow().state_lsn();
                    tracing::info!(
                        shard,
                        target,
                        state_lsn,
                        "replica: snapshot beyond the state WAL; fetching the records from a peer"
                    );
                    glommio::spawn_local(fetcher(ctx.clone(), self.clone())).detach();
                }
                Effect::Fetched { lsn } => {
                    tracing::info!(shard, lsn, "replica: fetched the missing records");
                }
            }
        }
    }

    fn send(&self, shard: u16, node: NodeId, m: &GroupMessage) {
        let to = link::NodeId(node.0 as u32);
        let dest = CoreId(m.group.0 as u16);
        // A message lost here is like one lost on the network: raft sends
        // again what it still needs.
        if let Err(e) = self.links.send(to, dest, LINK_KIND_RAFT, m.encode().into()) {
            tracing::debug!(shard, error = %e, "replica: raft message not queued");
        }
    }

    fn publish(&self) {
        let machine = self.machine.borrow();
        let raft = machine.raft();
        let Some(me) = self.view.cores.get(self.group.0 as usize) else {
            return;
        };
        let applied = raft.applied_index(self.group).unwrap_or(0);
        me.applied.store(applied, Ordering::SeqCst);
        me.committed
            .store(raft.commit_index(self.group).unwrap_or(0), Ordering::SeqCst);
        me.applied_lsn.store(machine.state_lsn(), Ordering::SeqCst);
        // A core with a leadership transfer under way is not ready: raft
        // drops its proposals, and the transfer may still succeed.
        me.ready.store(machine.ready(), Ordering::SeqCst);
    }

    /// Once a tick: the machine's check; start the core when it says so,
    /// serve when every core of the node started.
    fn check(&self, ctx: &Rc<ShardCtx>) {
        let facts = self.facts();
        let checked = self.machine.borrow_mut().check(facts);
        let checked = or_exit(ctx.id.0, checked);
        if checked == Check::Start && !ctx.started.get() {
            self.machine.borrow_mut().started();
            start_core(ctx, &self.view);
        }
        let all_started = self
            .view
            .cores
            .iter()
            .all(|c| c.started.load(Ordering::SeqCst));
        if checked != Check::Wait && all_started && !self.view.serving() {
            self.view.set_serving(true);
            tracing::info!(
                node = self.view.node,
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
        ctx.execute(effect, ctx.id);
    }
    // The node's connections are its edges' (`edge`); only peer messages
    // from state shards were held.
    {
        let mut pending = ctx.pending.borrow_mut();
        let held: Vec<Input> = ctx.held.borrow_mut().drain(..).collect();
        pending.extend(held.into_iter().map(|i| (super::Dest::State, i)));
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
        let ticked = r.machine.borrow_mut().tick(); // re-proposes what raft dropped
        or_exit(ctx.id.0, ticked);
        r.check(&ctx);
        ctx.send_leader_hints();
        r.drive_wake.notify();
    }
}

/// Between ticks, while the core has not started: once its replica is
/// ready (leads, applied its term's no-op) the check runs every
/// [`PROMOTION_POLL`], so the node starts as soon as its last core is
/// ready instead of up to a tick later on each core (a failover's
/// clients wait for that). Only on the primary (group 0's leader), where
/// a ready replica's check neither campaigns nor transfers: ticks do.
async fn promoter(ctx: Rc<ShardCtx>, r: Rc<Replica>) {
    while !ctx.stop.is_requested() {
        glommio::timer::sleep(PROMOTION_POLL).await;
        let primary = r.view.primary() == Some(r.view.node);
        if primary && !r.view.serving() && r.machine.borrow().ready() {
            r.check(&ctx);
        }
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
        if m.new_session {
            ctx.on_link_session(m.from_node, m.from_core);
        }
        match m.kind {
            LINK_KIND_RAFT => {}
            super::edge::LINK_KIND_PEER => {
                ctx.on_link_peer(&m);
                continue;
            }
            fetch::LINK_KIND_FETCH_REQUEST => {
                serve_fetch(&ctx, &r, &m);
                continue;
            }
            fetch::LINK_KIND_FETCH_REPLY => {
                super::catchup::on_fetch_reply(&ctx, &r, &m);
                continue;
            }
            catchup::LINK_KIND_SNAPSHOT_REQUEST => {
                super::catchup::serve_snapshot(&ctx, &r, &m);
                continue;
            }
            catchup::LINK_KIND_HISTORY_REQUEST => {
                super::catchup::serve_history(&ctx, &r, &m);
                continue;
            }
            catchup::LINK_KIND_SNAPSHOT_REPLY | catchup::LINK_KIND_HISTORY_REPLY => {
                r.catchup.deliver(m.kind, m.payload.clone());
                continue;
            }
            _ => continue,
        }
        match GroupMessage::decode(&m.payload) {
            Ok(msg) => {
                if let Err(e) = r.machine.borrow_mut().step(msg) {
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
                .machine
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
    let Some(min) = r.machine.borrow().raft().min_needed_lsn() else {
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
    /// Takes one of the [`FETCHES_SERVED_MAX`] slots for answering a peer
    /// (false: all taken; the request is dropped and asked again).
    pub(super) fn take_serve_slot(&self) -> bool {
        if self.fetches_served.get() >= FETCHES_SERVED_MAX {
            return false;
        }
        self.fetches_served.set(self.fetches_served.get() + 1);
        true
    }

    /// Gives a slot back once the answer was sent.
    pub(super) fn release_serve_slot(&self) {
        self.fetches_served
            .set(self.fetches_served.get().saturating_sub(1));
    }

    /// A peer's chunk of the records being fetched (the machine applies
    /// it); once the fetch is done the engine is driven again.
    pub(super) fn on_fetch_records(self: &Rc<Self>, ctx: &Rc<ShardCtx>, records: Vec<CoreRecord>) {
        let mut effects = Vec::new();
        let applied = self
            .machine
            .borrow_mut()
            .on_fetch_reply(records, &mut effects);
        or_exit(ctx.id.0, applied);
        let done = effects.iter().any(|e| matches!(e, Effect::Fetched { .. }));
        self.execute(ctx, effects);
        self.fetch_wake.notify();
        if done {
            self.drive_wake.notify();
        }
    }
}

/// Asks peers in turn for the records of the fetch in progress until it
/// is done, a chunk per request, again after [`FETCH_RETRY`] without
/// progress (then the next peer).
async fn fetcher(ctx: Rc<ShardCtx>, r: Rc<Replica>) {
    let mut turn = 0usize;
    while !ctx.stop.is_requested() {
        if r.machine.borrow().fetching().is_none() {
            return;
        }
        if r.catchup.running() {
            glommio::timer::sleep(FETCH_RETRY).await;
            continue;
        }
        let Some((peer, request)) = r.machine.borrow().fetch_request(turn) else {
            glommio::timer::sleep(FETCH_RETRY).await;
            continue;
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
        let before = r.machine.borrow().state_lsn();
        let _ = crate::sync::with_timeout(FETCH_RETRY, r.fetch_wake.wait()).await;
        if r.machine.borrow().state_lsn() == before {
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
    if !r.take_serve_slot() {
        return;
    }
    let (ctx, r, to, core) = (ctx.clone(), r.clone(), m.from_node, m.from_core);
    glommio::spawn_local(async move {
        let reply = match read_chunk(&ctx.wal, request).await {
            Ok(fetch::Reply::Records(records)) => fetch::encode_reply(&records),
            Ok(fetch::Reply::Gone { first_lsn }) => fetch::encode_gone(first_lsn),
            Err(e) => {
                tracing::warn!(shard = ctx.id.0, error = %e, "replica: reading records for a peer");
                fetch::encode_reply(&[])
            }
        };
        if let Err(e) = r
            .links
            .send(to, core, fetch::LINK_KIND_FETCH_REPLY, reply.into())
        {
            tracing::debug!(shard = ctx.id.0, error = %e, "replica: fetch reply not queued");
        }
        r.release_serve_slot();
    })
    .detach();
}

/// Reads the durable records of one reply to `request`, or says they are
/// gone (the state WAL was truncated past `from`).
async fn read_chunk(wal: &Wal, request: fetch::FetchRequest) -> courier_wal::Result<fetch::Reply> {
    let end = fetch::chunk_end(request);
    let gone = || fetch::Reply::Gone {
        first_lsn: wal.first_lsn().0,
    };
    if request.from >= 1 && request.from < wal.first_lsn().0 {
        return Ok(gone());
    }
    if request.from == 0 || request.from > end || request.from > wal.durable_lsn().0 {
        return Ok(fetch::Reply::Records(Vec::new()));
    }
    let mut reader = match wal.reader(courier_wal::Lsn(request.from)) {
        Ok(reader) => reader,
        Err(courier_wal::Error::LsnOutOfRange { .. }) if request.from < wal.first_lsn().0 => {
            return Ok(gone())
        }
        Err(e) => return Err(e),
    };
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
    Ok(fetch::Reply::Records(out))
}
