//! The replicated world: the shard's state machine on three nodes, each a
//! courier-core shard, the sans-IO replica of `courier_raft::replica` (the
//! one courierd drives), a raft WAL and a state WAL on simulated disks; a
//! lossy network between them; the world's clients talk to the node that
//! serves.
//!
//! How it plugs into [`World`] (one shard, `shard_count` 1): the world's
//! `nodes[0]` is the *serving* node's storage and started core. When a
//! node's replica says [`Check::Start`] its storage is swapped into
//! `nodes[0]` and its core started; when that node crashes or demotes
//! (crash-only) its storage is swapped back and every client connection
//! drops, as when courierd exits. A node may start serving only once the
//! previous one stopped (a deposed leader still serving blocks the next
//! start until it notices: a later start, never a lost behaviour of the
//! deposed side). Clients connect to whichever node serves (the redirect
//! a real client follows is implicit).
//!
//! The core's `Effect::Append`s are staged into the serving replica and
//! proposed at the end of each input (a pump turn); committed records
//! reach the state WAL through the replica's effects, and the core hears
//! `Durable` from that WAL's fsyncs: an ack means committed on a quorum
//! and durable in the serving node's state WAL.
//!
//! The ledger ([`super::Model`]) learns a record when it is first
//! committed (first applied anywhere): committed is durable in a cluster.
//! Every node's state WAL must hold the same bytes at every LSN
//! (divergence is a failure), acknowledged messages must be in the state
//! WAL of every node that starts serving, and a Diverged fatal of a
//! replica is a failure; a Demoted fatal is a crash.
//!
//! Faults: message loss, duplication, delay and reordering; partitions
//! that isolate a node and heal; crashes (power loss: each WAL keeps an
//! arbitrary valid prefix of what was not fsync'ed, sectors torn and
//! reordered for the state WAL) and restarts; EIO on the serving node's
//! state WAL fsync (the node exits soon after); small raft logs, so
//! compaction and the fetch of missing committed records run.

use std::collections::VecDeque;

use courier_core::api::{ConnId, Lsn, Millis, Push, PushId};
use courier_core::Shard;
use courier_raft::record::RawRecord;
use courier_raft::replica::entry::CoreRecord;
use courier_raft::replica::{fetch, Check, Effect, Fatal, FatalKind, NodeFacts, Replica};
use courier_raft::{BatchToken, CoreConfig, GroupId, GroupMessage, NodeId, Role};

use super::{config, Node, Stored, World};

/// Nodes of the simulated cluster (voters 1..=NODES).
pub const NODES: usize = 3;
/// The raft log's compaction thresholds in the simulation (small, so that
/// compaction, snapshots and fetches happen).
pub const ENTRIES_SOFT_MAX: u64 = 16;
pub const ENTRIES_HARD_MAX: u64 = 64;
/// Simulation steps per raft tick (a message takes 1–3 steps, up to 12
/// with faults; the election timeout is 10–20 ticks).
pub const TICK_STEPS: u64 = 10;

/// What travels between nodes.
#[derive(Clone, Debug)]
pub enum Wire {
    Raft(Vec<u8>),
    FetchRequest(fetch::FetchRequest),
    FetchReply(Vec<u8>),
}

/// A message in flight.
#[derive(Clone, Debug)]
pub struct Packet {
    pub at: u64,
    pub from: usize,
    pub to: usize,
    pub wire: Wire,
}

/// One node of the cluster.
pub struct CNode {
    /// Cluster node id (1-based).
    pub id: u64,
    /// The replica; None while the node is down.
    pub machine: Option<Replica>,
    /// The state WAL and the (un-started) core; a placeholder while the
    /// node serves (its storage is then the world's `nodes[0]`).
    pub store: Node,
    /// The raft WAL: durable records (LSN, kind, payload).
    pub raft_wal: Vec<(courier_raft::Lsn, u8, Vec<u8>)>,
    pub raft_next: u64,
    /// Raft batches written, not fsync'ed.
    pub raft_pending: VecDeque<(BatchToken, Vec<RawRecord>)>,
    pub fetch_turn: usize,
    pub restarts: u64,
}

/// Counters of one run.
#[derive(Default, Debug, Clone, Copy)]
pub struct ClusterStats {
    pub packets: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub partitions: u64,
    pub crashes: u64,
    pub demotions: u64,
    pub promotions: u64,
    pub compactions: u64,
    pub fetches: u64,
    pub committed: u64,
    /// WAL reads of the serving core cut short at its state WAL's durable
    /// LSN (records it replayed as committed, not fsync'ed there yet).
    pub short_reads: u64,
}

impl ClusterStats {
    pub fn add(&mut self, o: &ClusterStats) {
        self.packets += o.packets;
        self.dropped += o.dropped;
        self.duplicated += o.duplicated;
        self.partitions += o.partitions;
        self.crashes += o.crashes;
        self.demotions += o.demotions;
        self.promotions += o.promotions;
        self.compactions += o.compactions;
        self.fetches += o.fetches;
        self.committed += o.committed;
        self.short_reads += o.short_reads;
    }
}

/// The cluster beside the world.
pub struct Cluster {
    pub nodes: Vec<CNode>,
    /// The node whose storage is the world's `nodes[0]`.
    pub serving: Option<usize>,
    pub packets: Vec<Packet>,
    /// A node cut off from the others until a step.
    pub cut: Option<(usize, u64)>,
    /// Every committed record, LSN i+1 at i: what every state WAL must
    /// hold.
    pub log: Vec<(u8, Vec<u8>, Option<Stored>)>,
    pub stats: ClusterStats,
    /// Network faults on (off while settling).
    pub faulty: bool,
    /// The step of the last raft tick.
    pub ticked_at: u64,
    /// The ledger's durable LSN: what some serving core was told is
    /// durable (its state WAL's fsyncs) or took as durable (the committed
    /// records it replayed before it started).
    pub durable: u64,
}

fn engine_config(node: u64, seed: u64) -> CoreConfig {
    let mut c = CoreConfig::new(NodeId(node), seed);
    c.entries_soft_max = ENTRIES_SOFT_MAX;
    c.entries_hard_max = ENTRIES_HARD_MAX;
    c
}

fn voters() -> Vec<u64> {
    (1..=NODES as u64).collect()
}

impl World {
    /// A world whose one shard is replicated on [`NODES`] nodes; returns
    /// once a node serves.
    pub fn new_cluster(seed: u64) -> World {
        let mut w = World::new(seed, 1);
        // The single-node shard World::new started is not used.
        w.nodes[0] = Node::new(None);
        w.replicated = true;
        let mut nodes = Vec::new();
        for i in 0..NODES {
            nodes.push(CNode {
                id: i as u64 + 1,
                machine: None,
                store: Node::new(None),
                raft_wal: Vec::new(),
                raft_next: 1,
                raft_pending: VecDeque::new(),
                fetch_turn: 0,
                restarts: 0,
            });
        }
        w.cluster = Some(Box::new(Cluster {
            nodes,
            serving: None,
            packets: Vec::new(),
            cut: None,
            log: Vec::new(),
            stats: ClusterStats::default(),
            faulty: false,
            ticked_at: 0,
            durable: 0,
        }));
        for k in 0..NODES {
            w.node_start(k);
        }
        w.settle();
        w
    }

    fn cl(&mut self) -> &mut Cluster {
        self.cluster.as_mut().expect("a replicated world")
    }

    fn cl_ref(&self) -> &Cluster {
        self.cluster.as_ref().expect("a replicated world")
    }

    /// The storage of node `k`: the world's `nodes[0]` while it serves.
    fn store(&mut self, k: usize) -> &mut Node {
        if self.cl_ref().serving == Some(k) {
            &mut self.nodes[0]
        } else {
            &mut self.cl().nodes[k].store
        }
    }

    fn store_ref(&self, k: usize) -> &Node {
        if self.cl_ref().serving == Some(k) {
            &self.nodes[0]
        } else {
            &self.cl_ref().nodes[k].store
        }
    }

    fn machine(&mut self, k: usize) -> Option<&mut Replica> {
        self.cl().nodes[k].machine.as_mut()
    }

    /// Boots node `k` from its disks: the core replays the state WAL (not
    /// started), the replica recovers from the raft WAL.
    fn node_start(&mut self, k: usize) {
        if self.cl_ref().nodes[k].machine.is_some() {
            return;
        }
        let entropy = self.rng.bytes32();
        let mut shard = Shard::new(config(0, 1, entropy));
        let seed = self.seed;
        let store = &mut self.cl().nodes[k].store;
        for (i, (kind, payload)) in store.wal.iter().enumerate() {
            if let Err(e) = shard.replay(Lsn(i as u64 + 1), *kind, payload) {
                panic!(
                    "seed {seed}: node {k} replays its state WAL: LSN {}: {e}",
                    i + 1
                );
            }
        }
        store.shard = Some(shard);
        store.next_conn = 0;
        let state_lsn = store.wal.len() as u64;
        let n = &self.cl_ref().nodes[k];
        let records = n.raft_wal.clone();
        let cfg = engine_config(n.id, self.rng.next_u64());
        let machine = Replica::recover(cfg, GroupId(0), &voters(), records, state_lsn)
            .unwrap_or_else(|e| panic!("seed {seed}: node {k} recovers its raft WAL: {e}"));
        let n = &mut self.cl().nodes[k];
        n.machine = Some(machine);
        n.fetch_turn = 0;
        if std::env::var_os("COURIER_SIM_TRACE").is_some() {
            eprintln!(
                "step {} node {k}: started, state LSN {state_lsn}",
                self.step
            );
        }
        self.drive(k);
    }

    /// What node `k`'s other cores say: it has one core (shard 0).
    fn facts(&self, k: usize) -> NodeFacts {
        let Some(m) = self.cl_ref().nodes[k].machine.as_ref() else {
            return NodeFacts::default();
        };
        NodeFacts {
            primary: m
                .raft()
                .status(GroupId(0))
                .and_then(|s| s.leader)
                .map(|n| n.0),
            any_started: self.cl_ref().serving == Some(k),
            all_ready: m.ready(),
        }
    }

    /// A replica's fatal: a crash (Demoted), a failure (Diverged).
    fn fatal(&mut self, k: usize, f: Fatal) {
        assert_eq!(
            f.kind,
            FatalKind::Demoted,
            "seed {}: node {k} diverged: {}",
            self.seed,
            f.why
        );
        if std::env::var_os("COURIER_SIM_TRACE").is_some() {
            eprintln!("step {}: node {k}: {}", self.step, f.why);
        }
        self.cl().stats.demotions += 1;
        self.node_crash(k);
    }

    /// The ledger learns that a serving core holds LSNs up to `lsn` durable.
    pub fn ledger_durable(&mut self, lsn: u64) {
        let from = self.cl_ref().durable;
        if lsn > from {
            let step = self.step;
            self.model.on_durable(0, from, lsn, step);
            self.cl().durable = lsn;
        }
    }

    /// The serving node's pump turn ended: proposes the staged records.
    pub fn cluster_flush(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        let Some(k) = self.cl_ref().serving else {
            assert!(staged.is_empty(), "records staged with no node serving");
            return;
        };
        let Some(m) = self.machine(k) else { return };
        let mut result = Ok(());
        for (lsn, kind, payload) in staged {
            result = result.and_then(|()| m.stage(lsn, kind, payload));
        }
        let result = result.and_then(|()| m.flush());
        match result {
            Ok(()) => self.drive(k),
            Err(f) => self.fatal(k, f),
        }
    }

    /// Drives node `k`'s replica and carries out its effects.
    fn drive(&mut self, k: usize) {
        let durable = self.store_ref(k).durable;
        let facts = self.facts(k);
        let Some(m) = self.machine(k) else { return };
        let mut effects = Vec::new();
        let driven = m.drive(durable, facts, &mut effects);
        self.execute(k, effects);
        if let Err(f) = driven {
            self.fatal(k, f);
        }
    }

    fn execute(&mut self, k: usize, effects: Vec<Effect>) {
        for effect in effects {
            if self.cl_ref().nodes[k].machine.is_none() {
                return; // crashed meanwhile
            }
            if std::env::var_os("COURIER_SIM_TRACE").is_some()
                && !matches!(
                    effect,
                    Effect::Send(..) | Effect::Append(_) | Effect::Replay(_)
                )
            {
                eprintln!("step {} node {k}: {effect:?}", self.step);
            }
            match effect {
                Effect::Send(to, m) => {
                    self.send(k, to.0 as usize - 1, Wire::Raft(m.encode()));
                }
                Effect::Persist(token, records) => {
                    self.cl().nodes[k].raft_pending.push_back((token, records));
                }
                Effect::Append(r) => self.state_append(k, r, false),
                Effect::Replay(r) => self.state_append(k, r, true),
                Effect::Compacted { .. } => self.cl().stats.compactions += 1,
                Effect::FetchStarted { .. } => self.cl().stats.fetches += 1,
                Effect::Role(_) | Effect::Fetched { .. } => {}
            }
        }
    }

    /// A committed record reaches node `k`'s state WAL (replayed into its
    /// core first on a follower), checked against the committed log.
    fn state_append(&mut self, k: usize, r: CoreRecord, replay: bool) {
        let seed = self.seed;
        let log_len = self.cl_ref().log.len() as u64;
        let stored = if r.lsn <= log_len {
            let (kind, payload, stored) = &self.cl_ref().log[(r.lsn - 1) as usize];
            assert!(
                *kind == r.kind && *payload == r.payload,
                "seed {seed}: node {k} committed another record at LSN {}",
                r.lsn
            );
            *stored
        } else {
            assert_eq!(
                r.lsn,
                log_len + 1,
                "seed {seed}: node {k} committed LSN {} after {log_len}",
                r.lsn
            );
            let stored = self.model.on_append(0, r.lsn, r.kind, &r.payload);
            let cl = self.cl();
            cl.log.push((r.kind, r.payload.clone(), stored));
            cl.stats.committed += 1;
            stored
        };
        let store = self.store(k);
        assert_eq!(
            r.lsn,
            store.wal.len() as u64 + 1,
            "seed {seed}: node {k}'s state WAL out of LSN order"
        );
        if replay {
            let shard = store.shard.as_mut().expect("a live node has a core");
            if let Err(e) = shard.replay(Lsn(r.lsn), r.kind, &r.payload) {
                panic!("seed {seed}: node {k} replays committed LSN {}: {e}", r.lsn);
            }
        }
        store.log_bytes += r.payload.len() as u64 + 13;
        store.wal.push((r.kind, r.payload));
        store.index.push(stored);
    }

    fn send(&mut self, from: usize, to: usize, wire: Wire) {
        let faulty = self.cl_ref().faulty;
        let cut = self.cl_ref().cut.map(|(n, _)| n);
        if cut == Some(from) || cut == Some(to) {
            self.cl().stats.dropped += 1;
            return;
        }
        if faulty && self.rng.chance(1, 20) {
            self.cl().stats.dropped += 1;
            return;
        }
        let copies = if faulty && self.rng.chance(1, 30) {
            self.cl().stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = 1 + self.rng.below(if faulty { 12 } else { 3 });
            let at = self.step + delay;
            self.cl().packets.push(Packet {
                at,
                from,
                to,
                wire: wire.clone(),
            });
        }
    }
}

impl World {
    /// Delivers a due packet (a random one: reordering).
    fn deliver_packet(&mut self) {
        let step = self.step;
        let due: Vec<usize> = (0..self.cl_ref().packets.len())
            .filter(|&i| self.cl_ref().packets[i].at <= step)
            .collect();
        let Some(&i) = self.rng.pick(&due) else {
            return;
        };
        let p = self.cl().packets.swap_remove(i);
        self.cl().stats.packets += 1;
        let cut = self.cl_ref().cut.map(|(n, _)| n);
        if cut == Some(p.from) || cut == Some(p.to) || self.machine(p.to).is_none() {
            return;
        }
        match p.wire {
            Wire::Raft(bytes) => {
                let msg = GroupMessage::decode(&bytes).expect("our own encoding decodes");
                if let Some(m) = self.machine(p.to) {
                    let _ = m.step(msg);
                }
                self.drive(p.to);
            }
            Wire::FetchRequest(request) => self.serve_fetch(p.to, p.from, request),
            Wire::FetchReply(bytes) => {
                let records = fetch::decode_reply(&bytes).expect("our own encoding decodes");
                let Some(m) = self.machine(p.to) else { return };
                let mut effects = Vec::new();
                let applied = m.on_fetch_reply(records, &mut effects);
                self.execute(p.to, effects);
                match applied {
                    Ok(()) => self.drive(p.to),
                    Err(f) => self.fatal(p.to, f),
                }
            }
        }
    }

    /// Node `k` answers a fetch from its durable state WAL (one chunk).
    fn serve_fetch(&mut self, k: usize, to: usize, request: fetch::FetchRequest) {
        let store = self.store_ref(k);
        let end = fetch::chunk_end(request).min(store.durable);
        let records: Vec<CoreRecord> = (request.from.max(1)..=end)
            .map(|lsn| {
                let (kind, payload) = &store.wal[(lsn - 1) as usize];
                CoreRecord {
                    lsn,
                    kind: *kind,
                    payload: payload.clone(),
                }
            })
            .collect();
        self.send(k, to, Wire::FetchReply(fetch::encode_reply(&records)));
    }

    /// Node `k` asks a peer for the records of its fetch in progress.
    fn fetch_step(&mut self, k: usize) {
        let turn = self.cl_ref().nodes[k].fetch_turn;
        let Some((peer, request)) = self.machine(k).and_then(|m| m.fetch_request(turn)) else {
            return;
        };
        self.cl().nodes[k].fetch_turn += 1;
        self.send(k, peer as usize - 1, Wire::FetchRequest(request));
    }

    /// The raft WAL of node `k` makes its oldest pending batch durable.
    fn raft_fsync(&mut self, k: usize) {
        let seed = self.seed;
        let n = &mut self.cl().nodes[k];
        let Some((token, records)) = n.raft_pending.pop_front() else {
            return;
        };
        let first = n.raft_next;
        for (kind, payload) in records {
            n.raft_wal
                .push((courier_raft::Lsn(n.raft_next), kind, payload));
            n.raft_next += 1;
        }
        let Some(m) = n.machine.as_mut() else { return };
        if let Err(e) = m.persisted(token, courier_raft::Lsn(first)) {
            panic!("seed {seed}: node {k}: raft batch report: {e}");
        }
        // Segments below what the engine needs are deleted.
        if let Some(min) = m.raft().min_needed_lsn() {
            n.raft_wal.retain(|(lsn, _, _)| *lsn >= min);
        }
        self.drive(k);
    }

    /// A follower's state WAL makes a prefix of its records durable (the
    /// serving node's is the world's `fsync`).
    fn follower_fsync(&mut self, k: usize) {
        let store = &self.cl_ref().nodes[k].store;
        let appended = store.wal.len() as u64;
        if store.durable >= appended {
            return;
        }
        let to = store.durable + 1 + self.rng.below(appended - store.durable);
        self.cl().nodes[k].store.durable = to;
    }

    /// A raft tick on every live node, then each one's check: a started
    /// replica that lost leadership demotes; a ready one starts its core
    /// once no other node serves.
    pub fn cluster_tick(&mut self) {
        if let Some((_, until)) = self.cl_ref().cut {
            if until <= self.step {
                self.cl().cut = None;
            }
        }
        for k in 0..NODES {
            let step = self.step;
            let Some(m) = self.machine(k) else { continue };
            if std::env::var_os("COURIER_SIM_TRACE").is_some() {
                let g = GroupId(0);
                eprintln!(
                    "step {step} node {k}: tick: applied {:?} committed {:?} compacted {:?} fetching {:?}",
                    m.raft().applied_index(g),
                    m.raft().commit_index(g),
                    m.raft().compacted_index(g),
                    m.fetching()
                );
            }
            if let Err(f) = m.tick() {
                self.fatal(k, f);
                continue;
            }
            let facts = self.facts(k);
            let Some(m) = self.machine(k) else { continue };
            match m.check(facts) {
                Err(f) => self.fatal(k, f),
                Ok(Check::Start) if self.cl_ref().serving.is_none() => self.promote(k),
                Ok(_) => self.drive(k),
            }
        }
    }

    /// Node `k` starts its core and serves: its storage becomes the
    /// world's shard; every acknowledged message must be in its state WAL.
    fn promote(&mut self, k: usize) {
        self.cl().stats.promotions += 1;
        if let Some(m) = self.machine(k) {
            m.started();
        }
        let mut store = std::mem::replace(&mut self.cl().nodes[k].store, Node::new(None));
        std::mem::swap(&mut self.nodes[0], &mut store);
        debug_assert!(store.shard.is_none() && store.wal.is_empty());
        self.cl().serving = Some(k);
        self.check_recovered(0);
        // The core starts on the committed records it replayed: to it they
        // are durable (they are on a quorum's raft WAL).
        let replayed = self.nodes[0].wal.len() as u64;
        self.ledger_durable(replayed);
        let mut out = Vec::new();
        let now = Millis(self.now);
        if let Some(shard) = self.nodes[0].shard.as_mut() {
            shard.start(now, &mut out);
        }
        self.process(0, out);
        self.cluster_flush();
    }

    /// The serving node stops (exit): its clients' connections drop, its
    /// storage goes back to it.
    fn unserve(&mut self) {
        let Some(k) = self.cl_ref().serving else {
            return;
        };
        self.cl().serving = None;
        self.staged.clear();
        let node = &mut self.nodes[0];
        node.shard = None;
        node.reads.clear();
        node.fault = None;
        node.fault_reported = false;
        node.fsync_fails = false;
        let durable = node.durable;
        let lost: Vec<(PushId, Push)> = node.pushes.drain(..).collect();
        for (_, push) in lost {
            if self.rng.chance(1, 2) {
                self.gateway
                    .posts
                    .push((push.idempotency_key.clone(), push.action));
                self.gateway.shown.insert(push.idempotency_key);
            }
        }
        self.gateway.settled.retain(|_, (_, lsn)| *lsn <= durable);
        let dead: Vec<ConnId> = self.links.keys().copied().collect();
        for conn in dead {
            if let Some(link) = self.links.remove(&conn) {
                let client = &mut self.clients[link.client];
                if client.conn == Some(conn) {
                    client.go_offline(self.step + 5);
                }
            }
        }
        let store = std::mem::replace(&mut self.nodes[0], Node::new(None));
        self.cl().nodes[k].store = store;
    }

    /// Node `k` crashes: a power loss on both its WALs.
    pub fn node_crash(&mut self, k: usize) {
        if self.cl_ref().nodes[k].machine.is_none() {
            return;
        }
        if self.cl_ref().serving == Some(k) {
            self.unserve();
        }
        self.cl().stats.crashes += 1;
        self.stats.crashes += 1;
        // The state WAL: the world's power loss, on this node's storage.
        let mut store = std::mem::replace(&mut self.cl().nodes[k].store, Node::new(None));
        std::mem::swap(&mut self.nodes[0], &mut store);
        self.power_loss(0);
        std::mem::swap(&mut self.nodes[0], &mut store);
        store.shard = None;
        store.crashes += 1;
        self.cl().nodes[k].store = store;
        // The raft WAL keeps a prefix of the records not fsync'ed.
        let pending: Vec<RawRecord> = self.cl().nodes[k]
            .raft_pending
            .drain(..)
            .flat_map(|(_, r)| r)
            .collect();
        let keep = if self.storage_faults {
            self.rng.below(pending.len() as u64 + 1) as usize
        } else {
            0
        };
        let n = &mut self.cl().nodes[k];
        for (kind, payload) in pending.into_iter().take(keep) {
            n.raft_wal
                .push((courier_raft::Lsn(n.raft_next), kind, payload));
            n.raft_next += 1;
        }
        n.machine = None;
        n.restarts += 1;
        if std::env::var_os("COURIER_SIM_TRACE").is_some() {
            eprintln!("step {} node {k}: crashed", self.step);
        }
        self.cl().packets.retain(|p| p.to != k);
    }

    /// Whether the cluster has work in flight (settling waits for it).
    pub fn cluster_busy(&self) -> bool {
        let cl = self.cl_ref();
        let log = cl.log.len() as u64;
        cl.serving.is_none()
            || cl.nodes.iter().any(|n| {
                n.machine.is_none()
                    || !n.raft_pending.is_empty()
                    || n.machine
                        .as_ref()
                        .is_some_and(|m| m.state_lsn() < log || !m.quiet())
            })
            || cl.packets.iter().any(|p| match &p.wire {
                Wire::Raft(bytes) => GroupMessage::decode(bytes)
                    .map(|m| !m.msg.entries.is_empty() || m.msg.has_snapshot())
                    .unwrap_or(true),
                _ => true,
            })
    }

    /// Settling: the partition heals, every node restarts, faults stop.
    pub fn cluster_restart_all(&mut self) {
        self.cl().cut = None;
        self.cl().faulty = false;
        for k in 0..NODES {
            self.node_start(k);
        }
    }

    /// A chaos event: crash or restart a node, cut one off, fail the
    /// serving node's next state WAL fsync.
    pub fn cluster_chaos(&mut self) {
        let k = self.rng.below(NODES as u64) as usize;
        match self.rng.below(10) {
            0..=2 => {
                if self.cl_ref().nodes[k].machine.is_some() {
                    self.node_crash(k);
                } else {
                    self.node_start(k);
                }
            }
            3..=5 => self.node_start(k),
            6 | 7 => {
                if self.cl_ref().cut.is_none() {
                    let until = self.step + 200 + self.rng.below(2_000);
                    self.cl().cut = Some((k, until));
                    self.cl().stats.partitions += 1;
                }
            }
            8 => {
                if let Some(s) = self.cl_ref().serving {
                    self.node_crash(s);
                }
            }
            _ => {
                if self.storage_faults && self.cl_ref().serving.is_some() {
                    self.nodes[0].fsync_fails = true;
                }
            }
        }
    }

    /// One step of the cluster's own activity.
    pub fn cluster_step(&mut self, faults: bool) {
        self.cl().faulty = faults;
        let step = self.step;
        if step >= self.cl_ref().ticked_at + TICK_STEPS {
            self.cl().ticked_at = step;
            if !faults {
                // Settling: nodes that went down come back.
                self.cluster_restart_all();
            }
            self.cluster_tick();
            return;
        }
        let mut options: Vec<(u64, usize, u8)> = Vec::new();
        if self.cl_ref().packets.iter().any(|p| p.at <= step) {
            options.push((40, 0, 0));
        }
        for k in 0..NODES {
            let n = &self.cl_ref().nodes[k];
            if !n.raft_pending.is_empty() {
                options.push((12, k, 1));
            }
            if self.cl_ref().serving != Some(k) && n.store.durable < n.store.wal.len() as u64 {
                options.push((4, k, 2));
            }
            if n.machine.as_ref().is_some_and(|m| m.fetching().is_some()) {
                options.push((1, k, 3));
            }
        }
        options.push((1, 0, 4));
        let total: u64 = options.iter().map(|o| o.0).sum();
        let mut roll = self.rng.below(total);
        let mut choice = (0, 4);
        for (weight, k, kind) in options {
            if roll < weight {
                choice = (k, kind);
                break;
            }
            roll -= weight;
        }
        match choice {
            (_, 0) => self.deliver_packet(),
            (k, 1) => self.raft_fsync(k),
            (k, 2) => self.follower_fsync(k),
            (k, 3) => self.fetch_step(k),
            _ => {} // idle: time passes
        }
    }

    /// The final checks of a replicated run (after settling): every node
    /// is up, every state WAL holds exactly the committed log, byte for
    /// byte, and one node serves as the group's leader.
    pub fn check_cluster_final(&self) {
        let seed = self.seed;
        let cl = self.cl_ref();
        let k = cl
            .serving
            .unwrap_or_else(|| panic!("seed {seed}: no node serves at the end"));
        for (i, n) in cl.nodes.iter().enumerate() {
            let m = n
                .machine
                .as_ref()
                .unwrap_or_else(|| panic!("seed {seed}: node {i} down at the end"));
            let store = self.store_ref(i);
            assert_eq!(
                store.wal.len(),
                cl.log.len(),
                "seed {seed}: node {i}'s state WAL did not catch up"
            );
            for (lsn, (rec, committed)) in store.wal.iter().zip(&cl.log).enumerate() {
                assert!(
                    rec.0 == committed.0 && rec.1 == committed.1,
                    "seed {seed}: node {i} holds another record at LSN {}",
                    lsn + 1
                );
            }
            if i == k {
                let st = m.raft().status(GroupId(0)).expect("group 0");
                assert_eq!(
                    st.role,
                    Role::Leader,
                    "seed {seed}: the serving node does not lead"
                );
            }
        }
    }
}

impl World {
    /// One line per node, for failure messages.
    pub fn cluster_summary(&self) -> String {
        let cl = self.cl_ref();
        let mut out = format!(
            "step {} serving {:?} cut {:?} committed {} packets {}",
            self.step,
            cl.serving,
            cl.cut,
            cl.log.len(),
            cl.packets.len()
        );
        for (k, n) in cl.nodes.iter().enumerate() {
            let store = self.store_ref(k);
            let m = n.machine.as_ref().map(|m| {
                (
                    m.raft().status(GroupId(0)),
                    m.state_lsn(),
                    m.ready(),
                    m.fetching(),
                    m.raft().commit_index(GroupId(0)),
                    m.raft().applied_index(GroupId(0)),
                )
            });
            out.push_str(&format!(
                "\n  node {k}: wal {} durable {} pending {} machine {m:?}",
                store.wal.len(),
                store.durable,
                n.raft_pending.len()
            ));
        }
        out
    }
}
