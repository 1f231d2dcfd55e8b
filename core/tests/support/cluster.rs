//! The replicated world: the world's shards on three nodes as courierd
//! runs them — every node runs one core per shard, core *s* of every node
//! hosts Raft group *s* — each core a courier-core shard, the sans-IO
//! replica of `courier_raft::replica` (the one courierd drives), a raft WAL
//! and a state WAL on simulated disks; a lossy network between the nodes;
//! the world's clients talk to the node that serves.
//!
//! How it plugs into [`World`]: the world's `nodes[s]` is the *serving*
//! node's core *s* (storage and started core). Group 0's leader is the
//! primary; the other groups hand their leadership to it
//! ([`Replica::check`]); when every core of a node says [`Check::Start`]
//! its storages are swapped into the world's `nodes` and its cores started;
//! when that node crashes or demotes (crash-only) they are swapped back and
//! every client connection and cross-shard message drops, as when courierd
//! exits. A node may start serving only once the
//! previous one stopped (a deposed leader still serving blocks the next
//! start until it notices: a later start, never a lost behaviour of the
//! deposed side). Clients connect to whichever node serves (the redirect
//! a real client follows is implicit).
//!
//! The core's `Effect::Append`s are staged into the serving replica and
//! proposed at the end of each input (a pump turn); committed records
//! reach the state WAL through the replica's effects, and the core hears
//! `Durable` as soon as they are appended there (as courierd's
//! `journal::durability_task` in cluster mode): an ack means committed on
//! a quorum; the state WAL's fsyncs come later, and a power loss before
//! them loses its tail, which the restart re-applies from the raft WAL.
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

/// A message in flight between the cores `shard` of two nodes.
#[derive(Clone, Debug)]
pub struct Packet {
    pub at: u64,
    pub from: usize,
    pub to: usize,
    pub shard: u16,
    pub wire: Wire,
}

/// One core of a node: its replica and disks.
pub struct CCore {
    /// The replica; None while the node is down.
    pub machine: Option<Replica>,
    /// The state WAL and the (un-started) core; a placeholder while the
    /// node serves (its storage is then the world's `nodes[s]`).
    pub store: Node,
    /// The raft WAL: durable records (LSN, kind, payload).
    pub raft_wal: Vec<(courier_raft::Lsn, u8, Vec<u8>)>,
    pub raft_next: u64,
    /// Raft batches written, not fsync'ed.
    pub raft_pending: VecDeque<(BatchToken, Vec<RawRecord>)>,
    pub fetch_turn: usize,
}

/// One node of the cluster.
pub struct CNode {
    /// Cluster node id (1-based).
    pub id: u64,
    pub up: bool,
    pub cores: Vec<CCore>,
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
    /// Raft ticks.
    pub ticks: u64,
    /// Raft ticks during which no node served (at the start, and after the
    /// serving node crashed, was demoted or was cut off).
    pub unserved_ticks: u64,
    /// The longest run of such ticks that a promotion ended.
    pub outage_max_ticks: u64,
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
        self.ticks += o.ticks;
        self.unserved_ticks += o.unserved_ticks;
        self.outage_max_ticks = self.outage_max_ticks.max(o.outage_max_ticks);
    }
}

/// A committed record: kind, payload, the message it stores if any.
pub type Committed = (u8, Vec<u8>, Option<Stored>);

/// The cluster beside the world.
pub struct Cluster {
    pub nodes: Vec<CNode>,
    /// The node whose cores' storage is the world's `nodes`.
    pub serving: Option<usize>,
    pub packets: Vec<Packet>,
    /// A node cut off from the others until a step.
    pub cut: Option<(usize, u64)>,
    /// Per shard, every committed record, LSN i+1 at i: what every state
    /// WAL of that shard must hold.
    pub logs: Vec<Vec<Committed>>,
    pub stats: ClusterStats,
    /// Network faults on (off while settling).
    pub faulty: bool,
    /// The step of the last raft tick.
    pub ticked_at: u64,
    /// Per shard, the ledger's durable LSN: what some serving core was
    /// told is durable (its state WAL's fsyncs) or took as durable (the
    /// committed records it replayed before it started).
    pub durable: Vec<u64>,
    /// Ticks since no node serves (0 while one does).
    pub unserved_run: u64,
    /// Committed records the serving node appended to a state WAL during
    /// the effects being carried out: (shard, LSN), reported `Durable`
    /// once they are done.
    pub reports: Vec<(u16, u64)>,
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

fn trace() -> bool {
    std::env::var_os("COURIER_SIM_TRACE").is_some()
}

impl World {
    /// A world whose `shards` shards are replicated on [`NODES`] nodes;
    /// returns once a node serves.
    pub fn new_cluster(seed: u64, shards: u16) -> World {
        let mut w = World::new(seed, shards);
        // The single-node shards World::new started are not used.
        for s in 0..usize::from(shards) {
            w.nodes[s] = Node::new(None);
        }
        w.net.clear();
        w.replicated = true;
        let nodes = (0..NODES)
            .map(|i| CNode {
                id: i as u64 + 1,
                up: false,
                cores: (0..shards)
                    .map(|_| CCore {
                        machine: None,
                        store: Node::new(None),
                        raft_wal: Vec::new(),
                        raft_next: 1,
                        raft_pending: VecDeque::new(),
                        fetch_turn: 0,
                    })
                    .collect(),
                restarts: 0,
            })
            .collect();
        w.cluster = Some(Box::new(Cluster {
            nodes,
            serving: None,
            unserved_run: 0,
            packets: Vec::new(),
            cut: None,
            logs: vec![Vec::new(); usize::from(shards)],
            stats: ClusterStats::default(),
            faulty: false,
            ticked_at: 0,
            durable: vec![0; usize::from(shards)],
            reports: Vec::new(),
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

    fn shards(&self) -> u16 {
        self.shard_count
    }

    /// The storage of node `k`'s core `s`: the world's `nodes[s]` while
    /// the node serves.
    fn store(&mut self, k: usize, s: u16) -> &mut Node {
        if self.cl_ref().serving == Some(k) {
            &mut self.nodes[usize::from(s)]
        } else {
            &mut self.cl().nodes[k].cores[usize::from(s)].store
        }
    }

    fn store_ref(&self, k: usize, s: u16) -> &Node {
        if self.cl_ref().serving == Some(k) {
            &self.nodes[usize::from(s)]
        } else {
            &self.cl_ref().nodes[k].cores[usize::from(s)].store
        }
    }

    fn core(&mut self, k: usize, s: u16) -> &mut CCore {
        &mut self.cl().nodes[k].cores[usize::from(s)]
    }

    fn core_ref(&self, k: usize, s: u16) -> &CCore {
        &self.cl_ref().nodes[k].cores[usize::from(s)]
    }

    fn machine(&mut self, k: usize, s: u16) -> Option<&mut Replica> {
        self.core(k, s).machine.as_mut()
    }

    /// Boots node `k` from its disks: each core replays its state WAL (not
    /// started), each replica recovers from its raft WAL.
    fn node_start(&mut self, k: usize) {
        if self.cl_ref().nodes[k].up {
            return;
        }
        self.cl().nodes[k].up = true;
        for s in 0..self.shards() {
            self.core_start(k, s);
        }
        if trace() {
            eprintln!("step {} node {k}: started", self.step);
        }
        for s in 0..self.shards() {
            self.drive(k, s);
        }
    }

    fn core_start(&mut self, k: usize, s: u16) {
        let entropy = self.rng.bytes32();
        let shards = self.shards();
        let mut shard = Shard::new(config(s, shards, entropy));
        let seed = self.seed;
        let store = &mut self.core(k, s).store;
        for (i, (kind, payload)) in store.wal.iter().enumerate() {
            if let Err(e) = shard.replay(Lsn(i as u64 + 1), *kind, payload) {
                panic!(
                    "seed {seed}: node {k} core {s} replays its state WAL: LSN {}: {e}",
                    i + 1
                );
            }
        }
        store.shard = Some(shard);
        store.next_conn = 0;
        let state_lsn = store.wal.len() as u64;
        let id = self.cl_ref().nodes[k].id;
        let records = self.core_ref(k, s).raft_wal.clone();
        let cfg = engine_config(id, self.rng.next_u64());
        let group = GroupId(u32::from(s));
        let machine = Replica::recover(cfg, group, &voters(), records, state_lsn)
            .unwrap_or_else(|e| panic!("seed {seed}: node {k} core {s} recovers: {e}"));
        let core = self.core(k, s);
        core.machine = Some(machine);
        core.fetch_turn = 0;
    }

    /// What node `k`'s cores say: the primary is group 0's leader.
    fn facts(&self, k: usize) -> NodeFacts {
        let n = &self.cl_ref().nodes[k];
        let primary = n.cores[0]
            .machine
            .as_ref()
            .and_then(|m| m.raft().status(GroupId(0)))
            .and_then(|s| s.leader)
            .map(|n| n.0);
        NodeFacts {
            primary,
            any_started: self.cl_ref().serving == Some(k),
            all_ready: n.up
                && n.cores
                    .iter()
                    .all(|c| c.machine.as_ref().is_some_and(|m| m.ready())),
        }
    }

    /// A replica's fatal: a crash of its node (Demoted), a failure
    /// (Diverged).
    fn fatal(&mut self, k: usize, s: u16, f: Fatal) {
        assert_eq!(
            f.kind,
            FatalKind::Demoted,
            "seed {}: node {k} core {s} diverged: {}",
            self.seed,
            f.why
        );
        if trace() {
            eprintln!("step {}: node {k} core {s}: {}", self.step, f.why);
        }
        self.cl().stats.demotions += 1;
        self.node_crash(k);
    }

    /// The serving node's pump turns ended: proposes the staged records.
    pub fn cluster_flush(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        let Some(k) = self.cl_ref().serving else {
            assert!(staged.is_empty(), "records staged with no node serving");
            return;
        };
        let mut touched: Vec<u16> = Vec::new();
        for (s, lsn, kind, payload) in staged {
            if !touched.contains(&s) {
                touched.push(s);
            }
            let Some(m) = self.machine(k, s) else { return };
            if let Err(f) = m.stage(lsn, kind, payload) {
                return self.fatal(k, s, f);
            }
        }
        for s in touched {
            let Some(m) = self.machine(k, s) else { return };
            match m.flush() {
                Ok(()) => self.drive(k, s),
                Err(f) => return self.fatal(k, s, f),
            }
        }
    }

    /// Drives node `k`'s core `s` replica and carries out its effects.
    fn drive(&mut self, k: usize, s: u16) {
        let durable = self.store_ref(k, s).durable;
        let facts = self.facts(k);
        let Some(m) = self.machine(k, s) else { return };
        let mut effects = Vec::new();
        let driven = m.drive(durable, facts, &mut effects);
        self.execute(k, s, effects);
        self.report_committed();
        if let Err(f) = driven {
            if self.cl_ref().nodes[k].up {
                self.fatal(k, s, f);
            }
        }
    }

    fn execute(&mut self, k: usize, s: u16, effects: Vec<Effect>) {
        for effect in effects {
            if self.core_ref(k, s).machine.is_none() {
                return; // crashed meanwhile
            }
            if trace()
                && !matches!(
                    effect,
                    Effect::Send(..) | Effect::Append(_) | Effect::Replay(_)
                )
            {
                eprintln!("step {} node {k} core {s}: {effect:?}", self.step);
            }
            match effect {
                Effect::Send(to, m) => {
                    self.send(k, to.0 as usize - 1, s, Wire::Raft(m.encode()));
                }
                Effect::Persist(token, records) => {
                    self.core(k, s).raft_pending.push_back((token, records));
                }
                Effect::Append(r) => self.state_append(k, s, r, false),
                Effect::Replay(r) => self.state_append(k, s, r, true),
                Effect::Compacted { .. } => self.cl().stats.compactions += 1,
                Effect::FetchStarted { .. } => self.cl().stats.fetches += 1,
                Effect::Role(_) | Effect::Fetched { .. } => {}
            }
        }
    }

    /// A committed record reaches node `k`'s core `s` state WAL (replayed
    /// into its core first on a follower), checked against the committed
    /// log.
    fn state_append(&mut self, k: usize, s: u16, r: CoreRecord, replay: bool) {
        let seed = self.seed;
        let si = usize::from(s);
        let log_len = self.cl_ref().logs[si].len() as u64;
        let stored = if r.lsn <= log_len {
            let (kind, payload, stored) = &self.cl_ref().logs[si][(r.lsn - 1) as usize];
            assert!(
                *kind == r.kind && *payload == r.payload,
                "seed {seed}: node {k} core {s} committed another record at LSN {}",
                r.lsn
            );
            *stored
        } else {
            assert_eq!(
                r.lsn,
                log_len + 1,
                "seed {seed}: node {k} core {s} committed LSN {} after {log_len}",
                r.lsn
            );
            let stored = self.model.on_append(s, r.lsn, r.kind, &r.payload);
            let cl = self.cl();
            cl.logs[si].push((r.kind, r.payload.clone(), stored));
            cl.stats.committed += 1;
            stored
        };
        let store = self.store(k, s);
        assert_eq!(
            r.lsn,
            store.wal.len() as u64 + 1,
            "seed {seed}: node {k} core {s}: state WAL out of LSN order"
        );
        if replay {
            let shard = store.shard.as_mut().expect("a live node has a core");
            if let Err(e) = shard.replay(Lsn(r.lsn), r.kind, &r.payload) {
                panic!(
                    "seed {seed}: node {k} core {s} replays committed LSN {}: {e}",
                    r.lsn
                );
            }
        }
        store.log_bytes += r.payload.len() as u64 + 13;
        store.wal.push((r.kind, r.payload));
        store.index.push(stored);
        if !replay && self.cl_ref().serving == Some(k) {
            self.cl().reports.push((s, r.lsn));
        }
    }

    /// The serving node's durability reports: a committed record is
    /// durable once appended to its state WAL (module docs) — the ledger
    /// learns it, the history store is fed, and the core hears `Durable`.
    fn report_committed(&mut self) {
        let reports = std::mem::take(&mut self.cl().reports);
        for (s, lsn) in reports {
            if self.nodes[usize::from(s)].shard.is_none() {
                continue; // the node stopped serving meanwhile
            }
            self.ledger_durable(s, lsn);
            self.feed_history(s, lsn);
            self.input(s, courier_core::api::Input::Durable { lsn: Lsn(lsn) });
        }
    }

    /// The ledger learns that a serving core `s` holds LSNs up to `lsn`
    /// durable.
    pub fn ledger_durable(&mut self, s: u16, lsn: u64) {
        let from = self.cl_ref().durable[usize::from(s)];
        if lsn > from {
            let step = self.step;
            self.model.on_durable(s, from, lsn, step);
            self.cl().durable[usize::from(s)] = lsn;
        }
    }

    fn send(&mut self, from: usize, to: usize, shard: u16, wire: Wire) {
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
                shard,
                wire: wire.clone(),
            });
        }
    }

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
        let (to, s) = (p.to, p.shard);
        if cut == Some(p.from) || cut == Some(to) || self.machine(to, s).is_none() {
            return;
        }
        match p.wire {
            Wire::Raft(bytes) => {
                let msg = GroupMessage::decode(&bytes).expect("our own encoding decodes");
                if let Some(m) = self.machine(to, s) {
                    let _ = m.step(msg);
                }
                self.drive(to, s);
            }
            Wire::FetchRequest(request) => self.serve_fetch(to, s, p.from, request),
            Wire::FetchReply(bytes) => {
                let reply = fetch::decode_reply(&bytes).expect("our own encoding decodes");
                // The simulated state WALs are never truncated: no peer
                // answers `Gone` here (the catch-up from a snapshot is the
                // driver's, tested with real nodes).
                let fetch::Reply::Records(records) = reply else {
                    return;
                };
                let Some(m) = self.machine(to, s) else { return };
                let mut effects = Vec::new();
                let applied = m.on_fetch_reply(records, &mut effects);
                self.execute(to, s, effects);
                match applied {
                    Ok(()) => self.drive(to, s),
                    Err(f) => self.fatal(to, s, f),
                }
            }
        }
    }

    /// Node `k`'s core `s` answers a fetch from its durable state WAL (one
    /// chunk).
    fn serve_fetch(&mut self, k: usize, s: u16, to: usize, request: fetch::FetchRequest) {
        let store = self.store_ref(k, s);
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
        self.send(k, to, s, Wire::FetchReply(fetch::encode_reply(&records)));
    }

    /// Node `k`'s core `s` asks a peer for the records of its fetch.
    fn fetch_step(&mut self, k: usize, s: u16) {
        let turn = self.core_ref(k, s).fetch_turn;
        let Some((peer, request)) = self.machine(k, s).and_then(|m| m.fetch_request(turn)) else {
            return;
        };
        self.core(k, s).fetch_turn += 1;
        self.send(k, peer as usize - 1, s, Wire::FetchRequest(request));
    }

    /// Node `k`'s core `s` raft WAL makes its oldest pending batch durable.
    fn raft_fsync(&mut self, k: usize, s: u16) {
        let seed = self.seed;
        let c = self.core(k, s);
        let Some((token, records)) = c.raft_pending.pop_front() else {
            return;
        };
        let first = c.raft_next;
        for (kind, payload) in records {
            c.raft_wal
                .push((courier_raft::Lsn(c.raft_next), kind, payload));
            c.raft_next += 1;
        }
        let Some(m) = c.machine.as_mut() else { return };
        if let Err(e) = m.persisted(token, courier_raft::Lsn(first)) {
            panic!("seed {seed}: node {k} core {s}: raft batch report: {e}");
        }
        // Segments below what the engine needs are deleted.
        if let Some(min) = m.raft().min_needed_lsn() {
            c.raft_wal.retain(|(lsn, _, _)| *lsn >= min);
        }
        self.drive(k, s);
    }

    /// A follower's state WAL makes a prefix of its records durable (the
    /// serving node's is the world's `fsync`).
    fn follower_fsync(&mut self, k: usize, s: u16) {
        let store = &self.core_ref(k, s).store;
        let appended = store.wal.len() as u64;
        if store.durable >= appended {
            return;
        }
        let to = store.durable + 1 + self.rng.below(appended - store.durable);
        self.core(k, s).store.durable = to;
    }

    /// A raft tick on every live core, then each one's check: a started
    /// replica that lost leadership demotes its node; groups other than 0
    /// hand leadership to the primary; a node whose cores all say start
    /// starts them once no other node serves.
    pub fn cluster_tick(&mut self) {
        if let Some((_, until)) = self.cl_ref().cut {
            if until <= self.step {
                self.cl().cut = None;
            }
        }
        self.cl().stats.ticks += 1;
        if self.cl_ref().serving.is_none() {
            let cl = self.cl();
            cl.unserved_run += 1;
            cl.stats.unserved_ticks += 1;
        }
        for k in 0..NODES {
            let mut starts = 0;
            for s in 0..self.shards() {
                if !self.cl_ref().nodes[k].up {
                    break;
                }
                self.trace_tick(k, s);
                let Some(m) = self.machine(k, s) else {
                    continue;
                };
                if let Err(f) = m.tick() {
                    self.fatal(k, s, f);
                    break;
                }
                let facts = self.facts(k);
                let Some(m) = self.machine(k, s) else {
                    continue;
                };
                match m.check(facts) {
                    Err(f) => {
                        self.fatal(k, s, f);
                        break;
                    }
                    Ok(Check::Start) => starts += 1,
                    Ok(_) => {}
                }
                self.drive(k, s);
            }
            let all = starts == self.shards();
            if all && self.cl_ref().nodes[k].up && self.cl_ref().serving.is_none() {
                self.promote(k);
            }
        }
    }

    fn trace_tick(&self, k: usize, s: u16) {
        if !trace() {
            return;
        }
        if let Some(m) = self.core_ref(k, s).machine.as_ref() {
            let g = GroupId(u32::from(s));
            eprintln!(
                "step {} node {k} core {s}: tick: {:?} applied {:?} committed {:?} compacted {:?} fetching {:?}",
                self.step,
                m.raft().status(g).map(|st| (st.role, st.term, st.leader)),
                m.raft().applied_index(g),
                m.raft().commit_index(g),
                m.raft().compacted_index(g),
                m.fetching()
            );
        }
    }

    /// Node `k` starts its cores and serves: their storage becomes the
    /// world's shards; every acknowledged message must be in its state
    /// WALs.
    fn promote(&mut self, k: usize) {
        let cl = self.cl();
        cl.stats.promotions += 1;
        cl.stats.outage_max_ticks = cl.stats.outage_max_ticks.max(cl.unserved_run);
        cl.unserved_run = 0;
        self.cl().serving = Some(k);
        for s in 0..self.shards() {
            if let Some(m) = self.machine(k, s) {
                m.started();
            }
            let store = std::mem::replace(&mut self.core(k, s).store, Node::new(None));
            let placeholder = std::mem::replace(&mut self.nodes[usize::from(s)], store);
            debug_assert!(placeholder.shard.is_none() && placeholder.wal.is_empty());
            self.check_recovered(s);
            // The core starts on the committed records it replayed: to it
            // they are durable (they are on a quorum's raft WAL).
            let replayed = self.nodes[usize::from(s)].wal.len() as u64;
            self.ledger_durable(s, replayed);
        }
        for s in 0..self.shards() {
            let mut out = Vec::new();
            let now = Millis(self.now);
            if let Some(shard) = self.nodes[usize::from(s)].shard.as_mut() {
                shard.start(now, &mut out);
            }
            self.process(s, out);
        }
        self.cluster_flush();
    }

    /// The serving node stops (exit): its clients' connections and the
    /// messages between its cores drop, its storage goes back to it.
    fn unserve(&mut self) {
        let Some(k) = self.cl_ref().serving else {
            return;
        };
        self.cl().serving = None;
        self.staged.clear();
        self.net.clear();
        for s in 0..self.shards() {
            let node = &mut self.nodes[usize::from(s)];
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
            self.gateway
                .settled
                .retain(|_, (shard, lsn)| *shard != s || *lsn <= durable);
            let store = std::mem::replace(&mut self.nodes[usize::from(s)], Node::new(None));
            self.core(k, s).store = store;
        }
        let dead: Vec<ConnId> = self.links.keys().copied().collect();
        for conn in dead {
            if let Some(link) = self.links.remove(&conn) {
                let client = &mut self.clients[link.client];
                if client.conn == Some(conn) {
                    client.go_offline(self.step + 5);
                }
            }
        }
    }

    /// Node `k` crashes: a power loss on every WAL of every core.
    pub fn node_crash(&mut self, k: usize) {
        if !self.cl_ref().nodes[k].up {
            return;
        }
        if self.cl_ref().serving == Some(k) {
            self.unserve();
        }
        self.cl().stats.crashes += 1;
        self.stats.crashes += 1;
        for s in 0..self.shards() {
            self.core_crash(k, s);
        }
        let n = &mut self.cl().nodes[k];
        n.up = false;
        n.restarts += 1;
        self.cl().packets.retain(|p| p.to != k);
        if trace() {
            eprintln!("step {} node {k}: crashed", self.step);
        }
    }

    fn core_crash(&mut self, k: usize, s: u16) {
        let si = usize::from(s);
        // The state WAL: the world's power loss, on this core's storage.
        let mut store = std::mem::replace(&mut self.core(k, s).store, Node::new(None));
        std::mem::swap(&mut self.nodes[si], &mut store);
        self.power_loss(s);
        std::mem::swap(&mut self.nodes[si], &mut store);
        store.shard = None;
        store.crashes += 1;
        self.core(k, s).store = store;
        // The raft WAL keeps a prefix of the records not fsync'ed.
        let pending: Vec<RawRecord> = self
            .core(k, s)
            .raft_pending
            .drain(..)
            .flat_map(|(_, r)| r)
            .collect();
        let keep = if self.storage_faults {
            self.rng.below(pending.len() as u64 + 1) as usize
        } else {
            0
        };
        let c = self.core(k, s);
        for (kind, payload) in pending.into_iter().take(keep) {
            c.raft_wal
                .push((courier_raft::Lsn(c.raft_next), kind, payload));
            c.raft_next += 1;
        }
        c.machine = None;
    }

    /// Whether the cluster has work in flight (settling waits for it).
    pub fn cluster_busy(&self) -> bool {
        let cl = self.cl_ref();
        cl.serving.is_none()
            || cl.nodes.iter().any(|n| {
                !n.up
                    || n.cores.iter().zip(&cl.logs).any(|(c, log)| {
                        !c.raft_pending.is_empty()
                            || c.machine
                                .as_ref()
                                .is_some_and(|m| m.state_lsn() < log.len() as u64 || !m.quiet())
                    })
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

    /// A chaos event: crash or restart a node, cut one off, fail the next
    /// fsync of one of the serving node's state WALs.
    pub fn cluster_chaos(&mut self) {
        let k = self.rng.below(NODES as u64) as usize;
        match self.rng.below(10) {
            0..=2 => {
                if self.cl_ref().nodes[k].up {
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
                if let Some(k) = self.cl_ref().serving {
                    self.node_crash(k);
                }
            }
            _ => {
                let s = self.rng.below(u64::from(self.shards())) as usize;
                if self.storage_faults && self.cl_ref().serving.is_some() {
                    self.nodes[s].fsync_fails = true;
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
        let mut options: Vec<(u64, usize, u16, u8)> = Vec::new();
        if self.cl_ref().packets.iter().any(|p| p.at <= step) {
            options.push((40, 0, 0, 0));
        }
        for k in 0..NODES {
            for s in 0..self.shards() {
                let c = self.core_ref(k, s);
                if !c.raft_pending.is_empty() {
                    options.push((12, k, s, 1));
                }
                let serving = self.cl_ref().serving == Some(k);
                if !serving && c.store.durable < c.store.wal.len() as u64 {
                    options.push((4, k, s, 2));
                }
                if c.machine.as_ref().is_some_and(|m| m.fetching().is_some()) {
                    options.push((1, k, s, 3));
                }
            }
        }
        options.push((1, 0, 0, 4));
        let total: u64 = options.iter().map(|o| o.0).sum();
        let mut roll = self.rng.below(total);
        let mut choice = (0, 0, 4);
        for (weight, k, s, kind) in options {
            if roll < weight {
                choice = (k, s, kind);
                break;
            }
            roll -= weight;
        }
        match choice {
            (_, _, 0) => {
                // A few at once: heartbeats of every group must not pile
                // up behind the ticks (check_quorum would depose leaders).
                for _ in 0..1 + self.rng.below(u64::from(self.shards()) * 2) {
                    self.deliver_packet();
                }
            }
            (k, s, 1) => self.raft_fsync(k, s),
            (k, s, 2) => self.follower_fsync(k, s),
            (k, s, 3) => self.fetch_step(k, s),
            _ => {} // idle: time passes
        }
    }

    /// The final checks of a replicated run (after settling): every node
    /// is up, every state WAL holds exactly its shard's committed log,
    /// byte for byte, and the serving node leads every group.
    pub fn check_cluster_final(&self) {
        let seed = self.seed;
        let cl = self.cl_ref();
        let k = cl
            .serving
            .unwrap_or_else(|| panic!("seed {seed}: no node serves at the end"));
        for (i, n) in cl.nodes.iter().enumerate() {
            assert!(n.up, "seed {seed}: node {i} down at the end");
            for s in 0..self.shards() {
                let log = &cl.logs[usize::from(s)];
                let store = self.store_ref(i, s);
                assert_eq!(
                    store.wal.len(),
                    log.len(),
                    "seed {seed}: node {i} core {s}: state WAL did not catch up"
                );
                for (lsn, (rec, committed)) in store.wal.iter().zip(log).enumerate() {
                    assert!(
                        rec.0 == committed.0 && rec.1 == committed.1,
                        "seed {seed}: node {i} core {s} holds another record at LSN {}",
                        lsn + 1
                    );
                }
                if i == k {
                    let m = n.cores[usize::from(s)].machine.as_ref().expect("up");
                    let st = m.raft().status(GroupId(u32::from(s))).expect("group");
                    assert_eq!(
                        st.role,
                        Role::Leader,
                        "seed {seed}: the serving node does not lead group {s}"
                    );
                }
            }
        }
    }

    /// One line per core, for failure messages.
    pub fn cluster_summary(&self) -> String {
        let cl = self.cl_ref();
        let committed: Vec<usize> = cl.logs.iter().map(Vec::len).collect();
        let mut out = format!(
            "step {} serving {:?} cut {:?} committed {committed:?} packets {}",
            self.step,
            cl.serving,
            cl.cut,
            cl.packets.len()
        );
        for (k, n) in cl.nodes.iter().enumerate() {
            for s in 0..self.shards() {
                let c = &n.cores[usize::from(s)];
                let store = self.store_ref(k, s);
                let g = GroupId(u32::from(s));
                let m = c.machine.as_ref().map(|m| {
                    (
                        m.raft().status(g),
                        m.state_lsn(),
                        m.ready(),
                        m.fetching(),
                        m.raft().commit_index(g),
                        m.raft().applied_index(g),
                    )
                });
                out.push_str(&format!(
                    "\n  node {k} core {s}: wal {} durable {} pending {} machine {m:?}",
                    store.wal.len(),
                    store.durable,
                    c.raft_pending.len()
                ));
            }
        }
        out
    }
}
