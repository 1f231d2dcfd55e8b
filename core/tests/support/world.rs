//! The world: composition of shards, storage, network, clients and
//! checker; the step loop, chaos, crash and restart.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use courier_core::api::{
    ConnId, ConversationId, Effect, Input, Lsn, Millis, PeerMsg, Push, PushId, ShardId, UserId,
    WorkspaceId,
};
use courier_core::auth::hash_secret;
use courier_core::constants::TICK_MS;
use courier_core::{NotifyConfig, PushMode, Shard, ShardConfig};

use courier_core::record::Record;

use super::{frame, CState, Client, Down, Fault, Gateway, Link, Model, Node, Rng};

/// The admin secret of every simulated node.
pub const ADMIN_SECRET: [u8; 32] = [0xad; 32];

/// Switches for the random scheduler.
#[derive(Clone, Copy, Debug)]
pub struct Chaos {
    pub clients_act: bool,
    pub crashes: bool,
}

/// The world.
pub struct World {
    pub seed: u64,
    pub rng: Rng,
    pub now: u64,
    pub step: u64,
    pub shard_count: u16,
    /// Edge shards after the state shards (connections only; cluster
    /// mode's clients on any node): ids `shard_count..shard_count + edges`.
    pub edges: u16,
    /// A `Restarted` owed to an edge on a state shard's behalf after the
    /// edge's link to it broke (the runtime's outbound-break rule,
    /// net/src/shard/edge.rs): (edge, state shard), delivered at a random
    /// later step.
    pub resets: Vec<(u16, u16)>,
    pub nodes: Vec<Node>,
    pub net: BTreeMap<(u16, u16), VecDeque<PeerMsg>>,
    pub links: BTreeMap<ConnId, Link>,
    pub clients: Vec<Client>,
    pub model: Model,
    /// Channel ids known to the world (targets for joins and reads).
    pub channels: Vec<(WorkspaceId, ConversationId)>,
    pub users: Vec<(WorkspaceId, UserId)>,
    /// Invites created (workspace, id, secret): targets for redemptions.
    pub invites: Vec<(WorkspaceId, u64, [u8; 32])>,
    pub stats: Stats,
    /// Chaos events (crash, restart, snapshot, restore check) per 1000
    /// steps.
    pub chaos_per_mille: u64,
    /// Client actions: weight among ~100 of a step.
    pub client_weight: u64,
    /// Chance (per 100) that a disconnecting client stays away long
    /// (thousands of steps: large gaps, truncated syncs, WAL reads).
    pub long_offline_pct: u64,
    /// Shards whose group commits are held back (scripted tests).
    pub hold: BTreeSet<u16>,
    /// The fake push gateway.
    pub gateway: Gateway,
    /// Power losses keep an arbitrary valid prefix of the unsynced records
    /// (otherwise they lose all of them), and chaos fails fsyncs (EIO) and
    /// fills disks (ENOSPC).
    pub storage_faults: bool,
    /// The shard is replicated on several nodes ([`super::cluster`]).
    pub replicated: bool,
    /// The cluster beside the world (replicated worlds only).
    pub cluster: Option<Box<super::Cluster>>,
    /// Records the serving core appended in the current input, proposed
    /// at its end (replicated worlds only): (shard, LSN, kind, payload).
    pub staged: Vec<(u16, u64, u8, Vec<u8>)>,
}

#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub crashes: u64,
    /// Unsynced records that survived a power loss / were lost.
    pub unsynced_records_kept: u64,
    pub unsynced_records_lost: u64,
    /// Power losses whose write-back was out of order (a later sector on
    /// disk, an earlier one not).
    pub reordered: u64,
    /// Power losses that tore the last unit (sector or record) written.
    pub torn_sectors: u64,
    /// Recoveries that stopped at a damaged frame (torn, a sector missing
    /// inside it, or a partial ENOSPC frame) and truncated it.
    pub damaged_tails: u64,
    /// Failed fsyncs (EIO) and refused appends (ENOSPC).
    pub eio: u64,
    pub enospc: u64,
    /// Sends and syncs refused because a shard's storage failed.
    pub storage_refusals: u64,
    /// Restarts after which the ledger invariants were checked.
    pub recovery_checks: u64,
    pub snapshots: u64,
    pub restore_checks: u64,
    pub peer_messages: u64,
    /// The largest peer message's wire form, bytes.
    pub peer_wire_bytes_max: usize,
    pub sends: u64,
    pub retries: u64,
    pub requests: u64,
    /// History reads (from the history store).
    pub wal_reads: u64,
    pub truncated_syncs: u64,
    /// `SetRole`s answered `Done` / refused for the actor's role.
    pub roles_set: u64,
    pub roles_refused: u64,
    /// Invites created, redeemed, and refused (either, for the actor's
    /// role or the invite's state).
    pub invites_created: u64,
    pub invites_redeemed: u64,
    pub invites_refused: u64,
    /// Snapshots after which the log was truncated.
    pub truncations: u64,
    /// Node links between an edge and a state shard broken, and the
    /// messages in flight they lost.
    pub link_breaks: u64,
    pub link_lost: u64,
    /// Restarts that read the log from below the snapshot to complete
    /// the history store (it was behind), and ones where it was ahead.
    pub history_behind: u64,
    pub history_ahead: u64,
    /// Unsynced history-store entries that survived a power loss.
    pub history_staged_kept: u64,
    /// Issue 17: changes acknowledged (sequenced), answered `Done` (no-op),
    /// refused (not the author, or the message deleted meanwhile).
    pub changes_acked: u64,
    pub changes_noop: u64,
    pub changes_refused: u64,
    /// Threads (issue 17, part 2): replies acknowledged, refused (root
    /// deleted, archived, no longer a member), thread pages read.
    pub replies_acked: u64,
    pub replies_refused: u64,
    pub thread_pages: u64,
    /// Issue 16, part 4: channel settings sequenced (renames among them),
    /// answered `Done`, refused (role, archived, name taken).
    pub settings_acked: u64,
    pub renames_acked: u64,
    pub settings_noop: u64,
    pub settings_refused: u64,
    /// Sends refused because the channel was archived or admins-only.
    pub sends_refused_by_settings: u64,
    /// Profile changes asked for, and profile events delivered (issue 16,
    /// part 5).
    pub profile_sets: u64,
    pub profile_events: u64,
}

impl Stats {
    /// Adds another run's counters (totals over seeds).
    pub fn add(&mut self, o: &Stats) {
        let Stats {
            crashes,
            unsynced_records_kept,
            unsynced_records_lost,
            reordered,
            torn_sectors,
            damaged_tails,
            eio,
            enospc,
            storage_refusals,
            recovery_checks,
            snapshots,
            restore_checks,
            peer_messages,
            peer_wire_bytes_max,
            sends,
            retries,
            requests,
            wal_reads,
            truncated_syncs,
            roles_set,
            roles_refused,
            invites_created,
            invites_redeemed,
            invites_refused,
            truncations,
            link_breaks,
            link_lost,
            history_behind,
            history_ahead,
            history_staged_kept,
            changes_acked,
            changes_noop,
            changes_refused,
            replies_acked,
            replies_refused,
            thread_pages,
            settings_acked,
            renames_acked,
            settings_noop,
            settings_refused,
            sends_refused_by_settings,
            profile_sets,
            profile_events,
        } = *o;
        self.crashes += crashes;
        self.unsynced_records_kept += unsynced_records_kept;
        self.unsynced_records_lost += unsynced_records_lost;
        self.reordered += reordered;
        self.torn_sectors += torn_sectors;
        self.damaged_tails += damaged_tails;
        self.eio += eio;
        self.enospc += enospc;
        self.storage_refusals += storage_refusals;
        self.recovery_checks += recovery_checks;
        self.snapshots += snapshots;
        self.restore_checks += restore_checks;
        self.peer_messages += peer_messages;
        self.peer_wire_bytes_max = self.peer_wire_bytes_max.max(peer_wire_bytes_max);
        self.sends += sends;
        self.retries += retries;
        self.requests += requests;
        self.wal_reads += wal_reads;
        self.roles_set += roles_set;
        self.roles_refused += roles_refused;
        self.invites_created += invites_created;
        self.invites_redeemed += invites_redeemed;
        self.invites_refused += invites_refused;
        self.truncated_syncs += truncated_syncs;
        self.truncations += truncations;
        self.link_breaks += link_breaks;
        self.link_lost += link_lost;
        self.history_behind += history_behind;
        self.history_ahead += history_ahead;
        self.history_staged_kept += history_staged_kept;
        self.changes_acked += changes_acked;
        self.changes_noop += changes_noop;
        self.changes_refused += changes_refused;
        self.replies_acked += replies_acked;
        self.replies_refused += replies_refused;
        self.thread_pages += thread_pages;
        self.settings_acked += settings_acked;
        self.renames_acked += renames_acked;
        self.settings_noop += settings_noop;
        self.settings_refused += settings_refused;
        self.sends_refused_by_settings += sends_refused_by_settings;
        self.profile_sets += profile_sets;
        self.profile_events += profile_events;
    }
}

pub(super) fn config(shard: u16, shard_count: u16, entropy: [u8; 32]) -> ShardConfig {
    config_with_edges(shard, shard_count, 0, entropy)
}

pub(super) fn config_with_edges(
    shard: u16,
    shard_count: u16,
    edges: u16,
    entropy: [u8; 32],
) -> ShardConfig {
    ShardConfig {
        shard: ShardId(shard),
        shard_count,
        edges,
        admin_token_hash: hash_secret(&ADMIN_SECRET),
        entropy,
        notify: NotifyConfig {
            push: PushMode::Gateway,
            grace_ms: SIM_GRACE_MS,
            broadcast_members_max: 4,
        },
        edit_window_ms: courier_core::constants::EDIT_WINDOW_MS_DEFAULT,
    }
}

/// The grace window in the simulation (time advances ~1 ms a step).
pub const SIM_GRACE_MS: u64 = 1_000;

impl World {
    pub fn new(seed: u64, shard_count: u16) -> World {
        World::with_edges(seed, shard_count, 0)
    }

    /// A world whose clients may also connect to `edges` edge shards.
    pub fn with_edges(seed: u64, shard_count: u16, edges: u16) -> World {
        let mut w = World {
            seed,
            rng: Rng::new(seed),
            now: 1_700_000_000_000,
            step: 0,
            shard_count,
            edges,
            resets: Vec::new(),
            nodes: Vec::new(),
            net: BTreeMap::new(),
            links: BTreeMap::new(),
            clients: Vec::new(),
            model: Model::default(),
            channels: Vec::new(),
            users: Vec::new(),
            invites: Vec::new(),
            stats: Stats::default(),
            chaos_per_mille: 10,
            client_weight: 12,
            long_offline_pct: 0,
            hold: BTreeSet::new(),
            gateway: Gateway::default(),
            storage_faults: false,
            replicated: false,
            cluster: None,
            staged: Vec::new(),
        };
        w.model.records = (0..shard_count).map(|_| BTreeMap::new()).collect();
        for s in 0..shard_count + edges {
            let shard = Shard::new(config_with_edges(s, shard_count, edges, w.rng.bytes32()));
            w.nodes.push(Node::new(Some(shard)));
        }
        for s in 0..shard_count + edges {
            let mut out = Vec::new();
            let now = Millis(w.now);
            if let Some(shard) = w.nodes[usize::from(s)].shard.as_mut() {
                shard.start(now, &mut out);
            }
            w.process(s, out);
        }
        w
    }

    pub(super) fn input(&mut self, s: u16, input: Input) {
        let now = Millis(self.now);
        let Some(shard) = self.nodes[usize::from(s)].shard.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        shard.handle(now, input, &mut out);
        self.process(s, out);
        if self.replicated {
            self.cluster_flush();
        }
    }

    pub(super) fn process(&mut self, s: u16, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Append { lsn, kind, payload } => {
                    if self.replicated {
                        // Proposed at the end of the input; the state WAL
                        // gets it once committed.
                        self.staged.push((s, lsn.0, kind, payload));
                        continue;
                    }
                    let node = &mut self.nodes[usize::from(s)];
                    if node.fault.is_some() {
                        // As net/src/shard.rs: after a storage failure the
                        // runtime drops appends (the core was or is about to
                        // be told; nothing of them is ever acknowledged).
                        continue;
                    }
                    assert_eq!(
                        lsn.0,
                        node.wal.len() as u64 + 1,
                        "shard {s}: LSN out of order"
                    );
                    let framed = frame(kind, &payload);
                    if node
                        .capacity
                        .is_some_and(|c| node.log_bytes + framed.len() as u64 > c)
                    {
                        self.stats.enospc += 1;
                        node.fault = Some(Fault::NoSpace);
                        node.refused = Some(framed);
                        continue;
                    }
                    node.log_bytes += framed.len() as u64;
                    node.wal.push((kind, payload.clone()));
                    let stored = self.model.on_append(s, lsn.0, kind, &payload);
                    self.nodes[usize::from(s)].index.push(stored);
                }
                Effect::ToShard { shard, msg } => {
                    assert!(shard.0 < self.addresses());
                    self.stats.peer_messages += 1;
                    // Every message crosses its wire form (as between
                    // nodes) and must come back equal.
                    let bytes = msg
                        .encode()
                        .unwrap_or_else(|e| panic!("peer message has no wire form: {e}: {msg:?}"));
                    let back = PeerMsg::decode(&bytes)
                        .unwrap_or_else(|e| panic!("peer message does not decode: {e}: {msg:?}"));
                    assert_eq!(back, msg, "peer message changed on the wire");
                    self.stats.peer_wire_bytes_max =
                        self.stats.peer_wire_bytes_max.max(bytes.len());
                    save_to_corpus(&msg, &bytes);
                    let msg = back;
                    if self.nodes[usize::from(shard.0)].shard.is_some() {
                        self.net.entry((s, shard.0)).or_default().push_back(msg);
                    }
                }
                Effect::Reply { conn, req, result } => {
                    assert_eq!(
                        conn.shard(),
                        ShardId(s),
                        "reply for a connection of another shard"
                    );
                    if let Some(link) = self.links.get_mut(&conn) {
                        if link.open {
                            link.down.push_back(Down::Reply(req, result));
                        }
                    }
                }
                Effect::Deliver { conns, event } => {
                    assert!(!conns.is_empty(), "empty delivery");
                    for conn in conns {
                        assert_eq!(conn.shard(), ShardId(s));
                        if let Some(link) = self.links.get_mut(&conn) {
                            if link.open {
                                link.down.push_back(Down::Event(event.clone()));
                            }
                        }
                    }
                }
                Effect::Close { conn, reason } => {
                    if let Some(link) = self.links.get_mut(&conn) {
                        if link.open {
                            link.open = false;
                            link.up.clear();
                            link.down.push_back(Down::Closed(reason));
                        }
                    }
                    // The socket is gone: the runtime says so.
                    self.input(s, Input::Disconnected { conn });
                }
                Effect::ReadHistory {
                    token,
                    conversation,
                    from,
                    to,
                } => {
                    self.stats.wal_reads += 1;
                    self.nodes[usize::from(s)]
                        .reads
                        .push_back((token, conversation, from, to));
                }
                Effect::Push { id, push } => {
                    // Replicated: what a serving core holds durable (a
                    // promoted core replayed committed records its own
                    // state WAL may not have fsync'ed yet).
                    let durable = match &self.cluster {
                        Some(c) => c.durable[usize::from(s)],
                        None => self.nodes[usize::from(s)].durable,
                    };
                    assert!(
                        id.0 <= durable,
                        "seed {}: push {} before its record is durable",
                        self.seed,
                        id.0
                    );
                    assert!(
                        !self.gateway.settled.contains_key(&push.idempotency_key),
                        "seed {}: {} pushed again after a durable 2xx; changes of it: {:?}",
                        self.seed,
                        push.idempotency_key,
                        self.model.changes_of(push.conversation.0, push.seq.0)
                    );
                    self.nodes[usize::from(s)].pushes.push_back((id, *push));
                }
            }
        }
        self.report_fault(s);
    }

    /// Every shard address: state shards, then edges.
    pub fn addresses(&self) -> u16 {
        self.shard_count + self.edges
    }

    /// Whether `s` is an edge.
    pub fn is_edge(&self, s: u16) -> bool {
        s >= self.shard_count
    }

    /// A random address for a client to connect to.
    pub fn client_shard(&mut self) -> u16 {
        self.rng.below(u64::from(self.addresses())) as u16
    }

    pub fn tick(&mut self) {
        self.now += TICK_MS;
        for s in 0..self.addresses() {
            self.input(s, Input::Tick);
        }
    }

    pub fn crash(&mut self, s: u16) {
        if self.is_edge(s) {
            return self.edge_crash(s);
        }
        if self.replicated {
            if let Some(k) = self.cluster.as_ref().and_then(|c| c.serving) {
                self.node_crash(k);
            }
            return;
        }
        let node = &mut self.nodes[usize::from(s)];
        if node.shard.is_none() {
            return;
        }
        self.stats.crashes += 1;
        node.shard = None;
        node.crashes += 1;
        let synced = node.durable;
        let durable = self.power_loss(s);
        // Recovery reads the kept records back: from now on they are as
        // durable as the fsync'ed ones.
        self.model.on_durable(s, synced, durable, self.step);
        let node = &mut self.nodes[usize::from(s)];
        // The process is gone and the operator fixed the disk.
        node.fault = None;
        node.fault_reported = false;
        node.refused = None;
        node.capacity = None;
        node.fsync_fails = false;
        node.snapshots.retain(|(l, _)| *l <= durable);
        node.reads.clear();
        let lost: Vec<(PushId, Push)> = node.pushes.drain(..).collect();
        node.next_conn = 0;
        // A crash between the gateway's 2xx and the durable mark: the
        // gateway saw it; the restarted shard sends it again.
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
        self.model.on_crash(s, durable);
        self.net.retain(|(_, to), _| *to != s);
        self.drop_sockets_of(s);
    }

    pub fn restart(&mut self, s: u16) {
        if self.is_edge(s) {
            return self.edge_restart(s);
        }
        if self.replicated {
            self.cluster_restart_all();
            return;
        }
        if self.nodes[usize::from(s)].shard.is_some() {
            return;
        }
        let entropy = self.rng.bytes32();
        let cfg = config_with_edges(s, self.shard_count, self.edges, entropy);
        let node = &self.nodes[usize::from(s)];
        let mut shard = match node.snapshots.last() {
            Some((_, bytes)) => Shard::restore(cfg, bytes).expect("snapshot restores"),
            None => Shard::new(cfg),
        };
        let snapshot = shard.last_lsn().0;
        // Recovery = snapshot + history store + the log's tail: the core
        // replays after its snapshot, the store re-adds from its durable
        // source (behind or ahead of the snapshot); neither may need what
        // the log no longer holds.
        let store = node.history.durable_source().max(node.first);
        let from = (snapshot + 1).min(store);
        assert!(
            from >= node.first,
            "seed {}: shard {s} needs LSN {from}, the log starts at {}",
            self.seed,
            node.first
        );
        if store < snapshot + 1 {
            self.stats.history_behind += 1;
        } else if store > snapshot + 1 {
            self.stats.history_ahead += 1;
        }
        let seed = self.seed;
        let node = &mut self.nodes[usize::from(s)];
        for lsn in from..=node.durable {
            let (kind, payload) = &node.wal[(lsn - 1) as usize];
            if lsn >= store {
                if let Some((conv, seq)) = Record::history_key(*kind, payload) {
                    if let Err(e) = node.history.append(conv, seq, lsn, payload) {
                        panic!("seed {seed}: shard {s} replay: {e}");
                    }
                }
            }
            if lsn > snapshot {
                shard
                    .replay(Lsn(lsn), *kind, payload)
                    .expect("durable record replays");
            }
        }
        node.history.sync();
        node.history.fed = node.durable;
        node.history.covered = node.durable;
        self.check_recovered(s);
        let mut out = Vec::new();
        shard.start(Millis(self.now), &mut out);
        self.nodes[usize::from(s)].shard = Some(shard);
        self.process(s, out);
    }

    pub fn snapshot(&mut self, s: u16) {
        if self.replicated {
            return; // a restarted node replays its whole state WAL
        }
        let node = &self.nodes[usize::from(s)];
        let Some(shard) = node.shard.as_ref() else {
            return;
        };
        if node.fault.is_some() {
            // As the runtime: no snapshot after a storage failure (it could
            // cover a record the disk refused).
            return;
        }
        self.stats.snapshots += 1;
        let (lsn, bytes) = shard.snapshot();
        let node = &mut self.nodes[usize::from(s)];
        node.snapshots.push((lsn.0, bytes));
        if node.snapshots.len() > 2 {
            // Keep the newest durable one: the log may be truncated
            // behind it (the runtime only writes durable snapshots).
            let durable = node.durable;
            let newest_durable = node.snapshots.iter().rposition(|(l, _)| *l <= durable);
            node.snapshots
                .remove(if newest_durable == Some(0) { 1 } else { 0 });
        }
        self.truncate_log(s);
    }

    /// Whether anything is in flight.
    pub fn busy(&self) -> bool {
        self.net.values().any(|q| !q.is_empty())
            || self.nodes.iter().enumerate().any(|(s, n)| {
                n.shard.is_some()
                    && ((n.wal.len() as u64 > n.durable
                        && !self.hold.contains(&(s as u16))
                        && n.fault != Some(Fault::Io))
                        || !n.reads.is_empty()
                        || !n.pushes.is_empty())
            })
            || self
                .links
                .values()
                .any(|l| !l.down.is_empty() || (l.open && (!l.up.is_empty() || !l.connected)))
            || !self.resets.is_empty()
            || (self.replicated && self.cluster_busy())
    }

    /// One random step.
    pub fn step_once(&mut self, chaos: Chaos) {
        self.step += 1;
        self.now += self.rng.below(3);
        if chaos.crashes && self.rng.below(1000) < self.chaos_per_mille {
            self.chaos_event();
            return;
        }
        if self.replicated && self.rng.chance(1, 2) {
            self.cluster_step(chaos.crashes);
            return;
        }
        if chaos.crashes {
            // After a failed fsync the daemon drains and exits (exit code 1);
            // here, within a few dozen steps, as a power loss.
            for s in 0..self.shard_count {
                if self.nodes[usize::from(s)].fault == Some(Fault::Io) && self.rng.chance(1, 30) {
                    self.crash(s);
                }
            }
        }
        let pairs: Vec<(u16, u16)> = self
            .net
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        let syncable: Vec<u16> = (0..self.shard_count)
            .filter(|&s| {
                let n = &self.nodes[usize::from(s)];
                n.shard.is_some()
                    && n.wal.len() as u64 > n.durable
                    && !self.hold.contains(&s)
                    && n.fault != Some(Fault::Io)
            })
            .collect();
        let readable: Vec<u16> = (0..self.shard_count)
            .filter(|&s| !self.nodes[usize::from(s)].reads.is_empty())
            .collect();
        let pushing: Vec<u16> = (0..self.shard_count)
            .filter(|&s| !self.nodes[usize::from(s)].pushes.is_empty())
            .collect();
        let ups: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(_, l)| l.open && (!l.connected || !l.up.is_empty()))
            .map(|(c, _)| *c)
            .collect();
        let downs: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(_, l)| !l.down.is_empty())
            .map(|(c, _)| *c)
            .collect();
        let mut options: Vec<(u64, u8)> = Vec::new();
        if !pairs.is_empty() {
            options.push((30, 0));
        }
        if !syncable.is_empty() {
            options.push((12, 1));
        }
        if !readable.is_empty() {
            options.push((6, 2));
        }
        if !ups.is_empty() {
            options.push((20, 3));
        }
        if !pushing.is_empty() {
            options.push((6, 7));
        }
        if !downs.is_empty() {
            options.push((20, 4));
        }
        if !self.resets.is_empty() {
            options.push((3, 8));
        }
        if chaos.clients_act {
            options.push((self.client_weight, 5));
        }
        options.push((1, 6)); // tick
        let total: u64 = options.iter().map(|o| o.0).sum();
        let mut roll = self.rng.below(total);
        let mut choice = 6;
        for (weight, kind) in options {
            if roll < weight {
                choice = kind;
                break;
            }
            roll -= weight;
        }
        match choice {
            0 => {
                let &(from, to) = self.rng.pick(&pairs).expect("pairs");
                self.deliver_peer(from, to);
            }
            1 => {
                let &s = self.rng.pick(&syncable).expect("syncable");
                self.fsync(s);
            }
            2 => {
                let &s = self.rng.pick(&readable).expect("readable");
                self.complete_read(s);
            }
            3 => {
                let &c = self.rng.pick(&ups).expect("ups");
                self.deliver_up(c);
            }
            4 => {
                let &c = self.rng.pick(&downs).expect("downs");
                self.deliver_down(c);
            }
            5 => {
                let c = self.rng.below(self.clients.len() as u64) as usize;
                if self.clients[c].auto {
                    self.client_act(c);
                }
            }
            7 => {
                let &s = self.rng.pick(&pushing).expect("pushing");
                self.answer_push(s);
            }
            8 => {
                let k = self.rng.below(self.resets.len() as u64) as usize;
                let (edge, from) = self.resets.swap_remove(k);
                let msg = PeerMsg::restarted();
                self.input(
                    edge,
                    Input::Peer {
                        from: ShardId(from),
                        msg,
                    },
                );
            }
            _ => self.tick(),
        }
    }

    pub(super) fn chaos_event(&mut self) {
        if self.replicated {
            self.cluster_chaos();
            return;
        }
        let s = self.rng.below(u64::from(self.addresses())) as u16;
        if self.is_edge(s) {
            return self.edge_chaos(s);
        }
        let kinds = if self.storage_faults { 12 } else { 10 };
        match self.rng.below(kinds) {
            0..=2 => {
                if self.nodes[usize::from(s)].shard.is_some() {
                    self.crash(s);
                } else {
                    self.restart(s);
                }
            }
            3..=5 => self.restart(s),
            6..=7 => self.snapshot(s),
            8 => self.gateway.down = !self.gateway.down,
            9 => self.check_restore(s),
            10 => self.nodes[usize::from(s)].fsync_fails = true,
            _ => {
                // The disk fills up within the next few KiB of log.
                let node = &mut self.nodes[usize::from(s)];
                if node.capacity.is_none() {
                    node.capacity = Some(node.log_bytes + self.rng.below(4096));
                }
            }
        }
    }

    /// Runs until nothing is in flight (clients may still act on what they
    /// receive), restarting crashed shards first.
    pub fn settle(&mut self) {
        self.gateway.down = false;
        for s in 0..self.addresses() {
            self.restart(s);
        }
        let mut idle_ticks = 0;
        for _ in 0..2_000_000 {
            if self.busy() {
                self.step_once(Chaos {
                    clients_act: false,
                    crashes: false,
                });
                idle_ticks = 0;
            } else {
                // Let timers fire and offline clients come back.
                idle_ticks += 1;
                if idle_ticks > 200 {
                    return;
                }
                self.step += 1;
                self.tick();
                self.wake_clients();
            }
        }
        if self.replicated {
            panic!("the world did not settle: {}", self.cluster_summary());
        }
        panic!("the world did not settle");
    }

    /// Offline auto clients whose backoff elapsed reconnect.
    pub fn wake_clients(&mut self) {
        for c in 0..self.clients.len() {
            let client = &self.clients[c];
            if client.auto && client.state == CState::Offline && client.offline_until <= self.step {
                let s = self.client_shard();
                if self.nodes[usize::from(s)].shard.is_some() {
                    self.connect(c, s);
                }
            }
        }
    }
}

impl World {
    /// An edge's process dies: its connections and what was sent to it
    /// are gone (it holds nothing durable).
    fn edge_crash(&mut self, s: u16) {
        if self.nodes[usize::from(s)].shard.take().is_none() {
            return;
        }
        self.stats.crashes += 1;
        self.nodes[usize::from(s)].next_conn = 0;
        self.net.retain(|(_, to), _| *to != s);
        self.resets.retain(|(edge, _)| *edge != s);
        self.drop_sockets_of(s);
    }

    /// Shard `s`'s process died: its sockets are gone and their clients go
    /// offline for a while.
    fn drop_sockets_of(&mut self, s: u16) {
        let dead: Vec<ConnId> = self
            .links
            .keys()
            .copied()
            .filter(|c| c.shard() == ShardId(s))
            .collect();
        for conn in dead {
            if let Some(link) = self.links.remove(&conn) {
                let client = &mut self.clients[link.client];
                if client.conn == Some(conn) {
                    client.go_offline(self.step + 5);
                }
            }
        }
    }

    /// A fresh edge (a new incarnation; it tells the state shards).
    fn edge_restart(&mut self, s: u16) {
        if self.nodes[usize::from(s)].shard.is_some() {
            return;
        }
        let cfg = config_with_edges(s, self.shard_count, self.edges, self.rng.bytes32());
        let mut shard = Shard::new(cfg);
        let mut out = Vec::new();
        shard.start(Millis(self.now), &mut out);
        self.nodes[usize::from(s)].shard = Some(shard);
        self.process(s, out);
    }

    /// Chaos at an edge: a crash, a restart, or a broken node link between
    /// it and a state shard (either direction).
    fn edge_chaos(&mut self, s: u16) {
        match self.rng.below(6) {
            0 => self.edge_crash(s),
            1 | 2 => self.edge_restart(s),
            _ => {
                let t = self.rng.below(u64::from(self.shard_count)) as u16;
                if self.rng.chance(1, 2) {
                    self.break_link(s, t);
                } else {
                    self.break_link(t, s);
                }
            }
        }
    }

    /// The node link carrying `from` → `to` breaks: what was in flight is
    /// lost. As the runtime does (net/src/shard/edge.rs): the receiver
    /// hears `Restarted` from the sender before anything sent on the next
    /// connection, and an edge that sent hears `Restarted` from the state
    /// shard some time later (its link's break notice).
    pub fn break_link(&mut self, from: u16, to: u16) {
        self.stats.link_breaks += 1;
        let queue = self.net.entry((from, to)).or_default();
        self.stats.link_lost += queue.len() as u64;
        queue.clear();
        queue.push_back(PeerMsg::restarted());
        if self.is_edge(from) {
            self.resets.push((from, to));
        }
    }
}

/// With `COURIER_PEER_CORPUS=DIR`, the first message of each kind the run
/// sends is written to `DIR/<role>-<message>` in its wire form: how the
/// seeds of the `peer_msg` fuzz target (fuzz/corpus/peer_msg) were made.
fn save_to_corpus(msg: &PeerMsg, bytes: &[u8]) {
    let Some(dir) = std::env::var_os("COURIER_PEER_CORPUS") else {
        return;
    };
    // `PeerMsg(Owner(Send(Send { ..` → "owner-send".
    let debug = format!("{msg:?}");
    let parts: Vec<&str> = debug.split('(').skip(1).take(2).collect();
    let name = parts
        .iter()
        .map(|p| p.trim_end_matches(')').to_lowercase())
        .collect::<Vec<_>>()
        .join("-");
    let path = std::path::Path::new(&dir).join(name);
    if !path.exists() {
        if let Err(e) = std::fs::write(&path, bytes) {
            panic!("cannot write {}: {e}", path.display());
        }
    }
}
