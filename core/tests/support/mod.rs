//! A deterministic world for the shards: fake clock, fake WAL per shard
//! (appends, group fsyncs that make a prefix durable, crashes that lose the
//! rest, snapshots), a fake network (FIFO per ordered shard pair, random
//! interleaving across pairs, messages to a crashed shard lost), fake
//! sockets, and clients. A model built from the durable records checks the
//! product's promises as events happen.
//!
//! Everything random comes from one seeded [`Rng`]; a run is a pure function
//! of its seed.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use courier_core::api::{
    Broadcast, CloseReason, ConnId, ConversationId, ConversationInfo, ConversationKind, Credential,
    DeviceInfo, DeviceKind, Effect, Event, HistoryAnchor, Input, Lsn, Message, Millis, PeerMsg,
    Push, PushAction, PushId, PushOutcome, ReadToken, Reject, ReqId, Request, Response, Seq,
    ShardId, UserId, WorkspaceId,
};
use courier_core::auth::hash_secret;
use courier_core::constants::TICK_MS;
use courier_core::record::{MessageRecord, Record};
use courier_core::{NotifyConfig, PushMode, Shard, ShardConfig};

/// The admin secret of every simulated node.
pub const ADMIN_SECRET: [u8; 32] = [0xad; 32];

/// splitmix64: small, fast, good enough for schedules.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_5eed_5eed_5eed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len() as u64) as usize])
        }
    }

    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        b
    }
}

/// What a socket carries to the server.
#[derive(Debug)]
pub enum Up {
    Hello {
        req: ReqId,
        credential: Credential,
        device: DeviceInfo,
    },
    Request {
        req: ReqId,
        request: Request,
    },
}

/// What a socket carries to the client.
#[derive(Debug, Clone)]
pub enum Down {
    Reply(ReqId, Result<Response, Reject>),
    Event(Arc<Event>),
    Closed(CloseReason),
}

/// A socket between a client and a shard.
#[derive(Debug)]
pub struct Link {
    pub client: usize,
    pub up: VecDeque<Up>,
    pub down: VecDeque<Down>,
    /// The server side still has it (not closed, shard not crashed).
    pub open: bool,
    /// `Input::Connected` was delivered.
    pub connected: bool,
}

/// One shard and its storage.
///
/// The storage model (see [`World::power_loss`]): `wal` is what the shard
/// appended (the page cache), `durable` the prefix a completed fsync made
/// durable. A crash is a power loss: of the records after `durable`, the
/// disk holds whatever sectors (or whole records) the kernel happened to
/// write back, in any order, the last one possibly torn; recovery keeps the
/// longest prefix of whole, checksummed frames. An fsync may fail with EIO (sticky: the
/// shard is told, never fsyncs again, and the daemon exits soon after) and
/// the log may fill up (ENOSPC: the append is refused, the shard is told,
/// reads go on; part of the refused frame may reach the disk).
pub struct Node {
    pub shard: Option<Shard>,
    pub wal: Vec<(u8, Vec<u8>)>,
    /// Per appended record, the message key if it is a `MessagePosted`
    /// (decoded once at append; checked after every restart).
    pub index: Vec<Option<Stored>>,
    pub durable: u64,
    /// Framed bytes of `wal` (what ENOSPC is measured against).
    pub log_bytes: u64,
    /// The disk is full beyond this many log bytes.
    pub capacity: Option<u64>,
    /// The next fsync fails with EIO.
    pub fsync_fails: bool,
    /// The sticky storage fault of this incarnation, and whether the shard
    /// was told.
    pub fault: Option<Fault>,
    pub fault_reported: bool,
    /// The frame an ENOSPC refused: only part of it can be on disk.
    pub refused: Option<Vec<u8>>,
    pub snapshots: Vec<(u64, Vec<u8>)>,
    pub reads: VecDeque<(ReadToken, Vec<Lsn>)>,
    /// Pushes handed to the (fake) delivery thread, unanswered.
    pub pushes: VecDeque<(PushId, Push)>,
    /// The runtime's connection counter: restarts at 0 with the process, so
    /// connection ids are reused across restarts (the core must cope).
    pub next_conn: u64,
    pub crashes: u32,
}

/// A sticky storage failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An fsync failed (EIO): nothing after it is acknowledged; the daemon
    /// exits and a restart reads the log back.
    Io,
    /// The log is full (ENOSPC): writes are refused, reads go on.
    NoSpace,
}

impl Fault {
    /// The reason the runtime (net/src/shard.rs) gives the core.
    pub fn reason(self) -> &'static str {
        match self {
            Fault::Io => "WAL failed: fsync: Input/output error (os error 5)",
            Fault::NoSpace => "WAL append failed: no space left on device",
        }
    }
}

/// The key of a stored message record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub conversation: u64,
    pub seq: u64,
    pub sender: u64,
    pub client_msg_id: u128,
    pub ts: u64,
}

/// Sector size of the simulated disk: the unit the kernel writes back, in
/// any order, and the unit a power loss tears.
pub const SECTOR_BYTES: usize = 512;

/// Frame header: `len: u32 LE`, `kind: u8`, `checksum: u64 LE`.
const FRAME_HEADER_BYTES: usize = 13;

/// FNV-1a over the kind and payload (the simulated disk's CRC).
fn checksum(kind: u8, payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in std::iter::once(&kind).chain(payload) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One record as laid out in the simulated log.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.push(kind);
    f.extend_from_slice(&checksum(kind, payload).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// Recovery: the records of the longest prefix of whole frames with a
/// valid checksum, and whether it stopped at a partly written frame (a torn
/// tail) rather than at clean zeros.
pub fn recover(disk: &[u8]) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut records = Vec::new();
    let mut at = 0;
    loop {
        let rest = &disk[at..];
        if rest.iter().all(|&b| b == 0) {
            return (records, false);
        }
        if rest.len() < FRAME_HEADER_BYTES {
            return (records, true);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = rest[4];
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&rest[5..13]);
        let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
            return (records, true);
        };
        if len == 0 || u64::from_le_bytes(sum) != checksum(kind, payload) {
            return (records, true);
        }
        records.push((kind, payload.to_vec()));
        at += FRAME_HEADER_BYTES + len;
    }
}

/// A message as the model knows it.
#[derive(Clone, Debug)]
pub struct Posted {
    pub shard: u16,
    pub lsn: u64,
    pub rec: MessageRecord,
    pub durable_at: Option<u64>,
}

/// What the durable logs say, updated as records are appended, made
/// durable, or lost in crashes.
#[derive(Default)]
pub struct Model {
    pub records: Vec<BTreeMap<u64, Record>>,
    pub messages: BTreeMap<(u64, u64), Posted>,
    pub durable_keys: BTreeMap<(u64, u64, u128), u64>,
    /// (conversation, user) → (step, member?) in durability order.
    pub membership: BTreeMap<(u64, u64), Vec<(u64, bool)>>,
    pub convs: BTreeMap<u64, (WorkspaceId, ConversationKind)>,
    pub users: BTreeMap<u64, WorkspaceId>,
    pub acked: BTreeMap<(u64, u64), (u64, u128)>,
    /// Messages delivered live: (conversation, seq) → (sender, key, ts).
    pub delivered: BTreeMap<(u64, u64), (u64, u128, u64)>,
    /// Durable read cursors: (user, conversation) → seq.
    pub cursors: BTreeMap<(u64, u64), u64>,
    /// When each read cursor move became durable: (user, conversation) →
    /// (step, seq), ascending.
    pub cursor_history: BTreeMap<(u64, u64), Vec<(u64, u64)>>,
    /// Statistics.
    pub acks: u64,
    pub live_events: u64,
    pub reads_checked: u64,
}

impl Model {
    fn on_append(&mut self, shard: u16, lsn: u64, kind: u8, payload: &[u8]) -> Option<Stored> {
        let rec = Record::decode(kind, payload).unwrap_or_else(|e| {
            panic!("shard {shard} appended an undecodable record at {lsn}: {e}")
        });
        let mut stored = None;
        if let Record::MessagePosted(m) = &rec {
            stored = Some(Stored {
                conversation: m.conversation,
                seq: m.seq,
                sender: m.sender,
                client_msg_id: m.client_msg_id,
                ts: m.ts,
            });
            let key = (m.conversation, m.seq);
            if let Some(old) = self.messages.get(&key) {
                panic!(
                    "seq reused: conversation {} seq {} appended again (first at shard {} lsn {}, durable {:?})",
                    m.conversation, m.seq, old.shard, old.lsn, old.durable_at
                );
            }
            if m.seq > 1 && !self.messages.contains_key(&(m.conversation, m.seq - 1)) {
                panic!(
                    "gap: conversation {} seq {} appended without seq {}",
                    m.conversation,
                    m.seq,
                    m.seq - 1
                );
            }
            self.messages.insert(
                key,
                Posted {
                    shard,
                    lsn,
                    rec: m.clone(),
                    durable_at: None,
                },
            );
        }
        self.records[usize::from(shard)].insert(lsn, rec);
        stored
    }

    fn on_durable(&mut self, shard: u16, from: u64, to: u64, step: u64) {
        for lsn in from + 1..=to {
            let rec = self.records[usize::from(shard)]
                .get(&lsn)
                .cloned()
                .unwrap_or_else(|| panic!("durable LSN {lsn} of shard {shard} unknown"));
            match rec {
                Record::MessagePosted(m) => {
                    let p = self
                        .messages
                        .get_mut(&(m.conversation, m.seq))
                        .expect("message in model");
                    p.durable_at = Some(step);
                    let key = (m.conversation, m.sender, m.client_msg_id);
                    if let Some(seq) = self.durable_keys.insert(key, m.seq) {
                        panic!(
                            "duplicate: client_msg_id {} of user {} in conversation {} stored as seq {} and {}",
                            m.client_msg_id, m.sender, m.conversation, seq, m.seq
                        );
                    }
                }
                Record::ConversationCreated {
                    conversation,
                    workspace,
                    kind,
                    members,
                    ..
                } => {
                    self.convs
                        .insert(conversation, (WorkspaceId(workspace), kind.into()));
                    for u in members {
                        self.membership
                            .entry((conversation, u))
                            .or_default()
                            .push((step, true));
                    }
                }
                Record::MemberAdded {
                    conversation, user, ..
                } => self
                    .membership
                    .entry((conversation, user))
                    .or_default()
                    .push((step, true)),
                Record::MemberRemoved {
                    conversation, user, ..
                } => self
                    .membership
                    .entry((conversation, user))
                    .or_default()
                    .push((step, false)),
                Record::UserCreated {
                    user, workspace, ..
                } => {
                    self.users.insert(user, WorkspaceId(workspace));
                }
                Record::CursorSet {
                    user,
                    conversation,
                    seq,
                } => {
                    let c = self.cursors.entry((user, conversation)).or_insert(0);
                    assert!(
                        seq > *c,
                        "durable cursor of {user} in {conversation} moved back"
                    );
                    *c = seq;
                    self.cursor_history
                        .entry((user, conversation))
                        .or_default()
                        .push((step, seq));
                }
                _ => {}
            }
        }
    }

    fn on_crash(&mut self, shard: u16, durable: u64) {
        let lost: Vec<u64> = self.records[usize::from(shard)]
            .range(durable + 1..)
            .map(|(l, _)| *l)
            .collect();
        for lsn in lost {
            if let Some(Record::MessagePosted(m)) = self.records[usize::from(shard)].remove(&lsn) {
                let p = self.messages.remove(&(m.conversation, m.seq));
                assert!(p.is_some_and(|p| p.durable_at.is_none()));
            }
        }
    }

    /// Whether `user` was a member of `conv` at some step in `[t0, t1]`.
    pub fn member_during(&self, conv: ConversationId, user: UserId, t0: u64, t1: u64) -> bool {
        let Some(events) = self.membership.get(&(conv.0, user.0)) else {
            return false;
        };
        let at_t0 = events
            .iter()
            .rev()
            .find(|(t, _)| *t <= t0)
            .is_some_and(|(_, m)| *m);
        at_t0 || events.iter().any(|(t, m)| *m && *t > t0 && *t <= t1)
    }

    /// The durable read cursor of `user` in `conv` (0 if none).
    pub fn cursor(&self, user: UserId, conv: ConversationId) -> u64 {
        self.cursors.get(&(user.0, conv.0)).copied().unwrap_or(0)
    }

    /// The durable read cursor of `user` in `conv` at step `t` (0 if none).
    pub fn cursor_at(&self, user: UserId, conv: ConversationId, t: u64) -> u64 {
        self.cursor_history
            .get(&(user.0, conv.0))
            .and_then(|h| h.iter().rev().find(|(at, _)| *at <= t))
            .map_or(0, |(_, seq)| *seq)
    }

    /// A read cursor shown to a device is durable: no restart undoes it.
    pub fn check_cursor_shown(&self, user: UserId, info: &ConversationInfo, what: &str) {
        let durable = self.cursor(user, info.id);
        assert!(
            !info.member || info.read.0 <= durable,
            "{what}: read cursor {} of {:?} shown to {user:?} is not durable (durable: {durable})",
            info.read.0,
            info.id
        );
    }

    /// Whether `user` is a member now.
    pub fn member_now(&self, conv: u64, user: u64) -> bool {
        self.membership
            .get(&(conv, user))
            .and_then(|e| e.last())
            .is_some_and(|(_, m)| *m)
    }

    /// The expected client view of a durable message, or a panic.
    pub fn check_message(&self, m: &Message, what: &str) -> u64 {
        let Some(p) = self.messages.get(&(m.conversation.0, m.seq.0)) else {
            panic!(
                "{what}: message {:?}/{} is not in any WAL",
                m.conversation, m.seq.0
            );
        };
        let Some(durable_at) = p.durable_at else {
            panic!(
                "{what}: message {:?}/{} is not durable",
                m.conversation, m.seq.0
            );
        };
        let r = &p.rec;
        let expected = Message {
            conversation: ConversationId(r.conversation),
            seq: Seq(r.seq),
            sender: UserId(r.sender),
            client_msg_id: r.client_msg_id,
            ts: Millis(r.ts),
            body: r.body.clone(),
            mentions: r.mentions.iter().copied().map(UserId).collect(),
            broadcast: r.broadcast.into(),
        };
        assert_eq!(m, &expected, "{what}: message differs from its record");
        durable_at
    }

    /// Durable messages of a conversation, checked gap-free.
    pub fn durable_history(&self, conv: u64) -> Vec<u64> {
        let seqs: Vec<u64> = self
            .messages
            .range((conv, 0)..=(conv, u64::MAX))
            .filter(|(_, p)| p.durable_at.is_some())
            .map(|((_, s), _)| *s)
            .collect();
        for (i, s) in seqs.iter().enumerate() {
            assert_eq!(
                *s,
                i as u64 + 1,
                "conversation {conv}: durable seqs have a gap"
            );
        }
        seqs
    }
}

/// A request a client waits on, with the step it was sent.
#[derive(Clone, Debug)]
pub enum Pend {
    Hello,
    /// A `Sync`; `reads`: the read cursors it named (empty: none, like a
    /// client that keeps no read state).
    Sync {
        reads: Vec<(ConversationId, Seq)>,
    },
    History {
        conv: ConversationId,
    },
    Send {
        idx: usize,
    },
    Membership {
        conv: Option<ConversationId>,
    },
    Leave {
        conv: ConversationId,
    },
    Boot,
    List,
    Other,
}

#[derive(Default, Clone, Debug)]
pub struct CConv {
    pub msgs: BTreeMap<u64, Message>,
    pub head: u64,
    pub fetching: bool,
    pub cursor: u64,
}

impl CConv {
    pub fn contiguous(&self) -> u64 {
        let mut n = 0;
        while self.msgs.contains_key(&(n + 1)) {
            n += 1;
        }
        n
    }
}

#[derive(Clone, Debug)]
pub struct OutSend {
    pub conv: ConversationId,
    pub cmid: u128,
    pub body: String,
    pub mentions: Vec<UserId>,
    pub broadcast: Broadcast,
    pub acked: Option<Seq>,
    pub abandoned: bool,
    pub inflight: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CState {
    Offline,
    Hello,
    Online,
}

/// A device of a user (or the admin tool).
pub struct Client {
    pub user: Option<UserId>,
    pub ws: Option<WorkspaceId>,
    pub credential: Credential,
    /// Random behaviour, gap repair and syncs on its own.
    pub auto: bool,
    pub conn: Option<ConnId>,
    pub state: CState,
    pub next_req: ReqId,
    pub pending: BTreeMap<ReqId, (Pend, u64)>,
    pub convs: BTreeMap<ConversationId, CConv>,
    pub sends: Vec<OutSend>,
    pub synced: bool,
    pub offline_until: u64,
    /// Scripted clients keep everything they receive.
    pub inbox: Vec<Down>,
}

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
    pub nodes: Vec<Node>,
    pub net: BTreeMap<(u16, u16), VecDeque<PeerMsg>>,
    pub links: BTreeMap<ConnId, Link>,
    pub clients: Vec<Client>,
    pub model: Model,
    /// Channel ids known to the world (targets for joins and reads).
    pub channels: Vec<(WorkspaceId, ConversationId)>,
    pub users: Vec<(WorkspaceId, UserId)>,
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
}

/// A push gateway that dedups by idempotency key, like a real one should.
#[derive(Default, Debug)]
pub struct Gateway {
    /// Answers 2xx (otherwise 503).
    pub down: bool,
    /// Every POST, in order: (key, action).
    pub posts: Vec<(String, PushAction)>,
    /// Keys answered 2xx (what a user saw once).
    pub shown: BTreeSet<String>,
    /// Keys answered 2xx whose durable mark must stop any re-send:
    /// key → (shard, LSN of its `PushSettled`).
    pub settled: BTreeMap<String, (u16, u64)>,
    /// Repeats the gateway dropped by key (the documented crash window).
    pub deduplicated: u64,
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
    pub sends: u64,
    pub retries: u64,
    pub requests: u64,
    pub wal_reads: u64,
    pub truncated_syncs: u64,
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
            sends,
            retries,
            requests,
            wal_reads,
            truncated_syncs,
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
        self.sends += sends;
        self.retries += retries;
        self.requests += requests;
        self.wal_reads += wal_reads;
        self.truncated_syncs += truncated_syncs;
    }
}

fn config(shard: u16, shard_count: u16, entropy: [u8; 32]) -> ShardConfig {
    ShardConfig {
        shard: ShardId(shard),
        shard_count,
        admin_token_hash: hash_secret(&ADMIN_SECRET),
        entropy,
        notify: NotifyConfig {
            push: PushMode::Gateway,
            grace_ms: SIM_GRACE_MS,
            broadcast_members_max: 4,
        },
    }
}

/// The grace window in the simulation (time advances ~1 ms a step).
pub const SIM_GRACE_MS: u64 = 1_000;

impl World {
    pub fn new(seed: u64, shard_count: u16) -> World {
        let mut w = World {
            seed,
            rng: Rng::new(seed),
            now: 1_700_000_000_000,
            step: 0,
            shard_count,
            nodes: Vec::new(),
            net: BTreeMap::new(),
            links: BTreeMap::new(),
            clients: Vec::new(),
            model: Model::default(),
            channels: Vec::new(),
            users: Vec::new(),
            stats: Stats::default(),
            chaos_per_mille: 10,
            client_weight: 12,
            long_offline_pct: 0,
            hold: BTreeSet::new(),
            gateway: Gateway::default(),
            storage_faults: false,
        };
        w.model.records = (0..shard_count).map(|_| BTreeMap::new()).collect();
        for s in 0..shard_count {
            let shard = Shard::new(config(s, shard_count, w.rng.bytes32()));
            w.nodes.push(Node {
                shard: Some(shard),
                wal: Vec::new(),
                index: Vec::new(),
                durable: 0,
                log_bytes: 0,
                capacity: None,
                fsync_fails: false,
                fault: None,
                fault_reported: false,
                refused: None,
                snapshots: Vec::new(),
                reads: VecDeque::new(),
                pushes: VecDeque::new(),
                next_conn: 0,
                crashes: 0,
            });
        }
        for s in 0..shard_count {
            let mut out = Vec::new();
            let now = Millis(w.now);
            if let Some(shard) = w.nodes[usize::from(s)].shard.as_mut() {
                shard.start(now, &mut out);
            }
            w.process(s, out);
        }
        w
    }

    // ----- Driving shards -----------------------------------------------------

    fn input(&mut self, s: u16, input: Input) {
        let now = Millis(self.now);
        let Some(shard) = self.nodes[usize::from(s)].shard.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        shard.handle(now, input, &mut out);
        self.process(s, out);
    }

    fn process(&mut self, s: u16, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Append { lsn, kind, payload } => {
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
                    assert!(shard.0 < self.shard_count);
                    self.stats.peer_messages += 1;
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
                Effect::ReadRecords { token, lsns } => {
                    self.stats.wal_reads += 1;
                    self.nodes[usize::from(s)].reads.push_back((token, lsns));
                }
                Effect::Push { id, push } => {
                    assert!(
                        id.0 <= self.nodes[usize::from(s)].durable,
                        "seed {}: push {} before its record is durable",
                        self.seed,
                        id.0
                    );
                    assert!(
                        !self.gateway.settled.contains_key(&push.idempotency_key),
                        "seed {}: {} pushed again after a durable 2xx",
                        self.seed,
                        push.idempotency_key
                    );
                    self.nodes[usize::from(s)].pushes.push_back((id, *push));
                }
            }
        }
        self.report_fault(s);
    }

    /// Tells the shard of a new storage fault, once (the runtime's
    /// `storage_failed`).
    fn report_fault(&mut self, s: u16) {
        let node = &mut self.nodes[usize::from(s)];
        let Some(fault) = node.fault else {
            return;
        };
        if node.fault_reported || node.shard.is_none() {
            return;
        }
        node.fault_reported = true;
        self.input(
            s,
            Input::StorageFailed {
                reason: fault.reason().into(),
            },
        );
    }

    /// Makes everything appended on shard `s` durable.
    pub fn fsync_all(&mut self, s: u16) {
        let node = &self.nodes[usize::from(s)];
        let appended = node.wal.len() as u64;
        if node.shard.is_none() || appended == node.durable || node.fault == Some(Fault::Io) {
            return;
        }
        let from = node.durable;
        self.nodes[usize::from(s)].durable = appended;
        self.model.on_durable(s, from, appended, self.step);
        self.input(s, Input::Durable { lsn: Lsn(appended) });
    }

    /// Hands a shard `Input::StorageFailed` (and holds its fsyncs).
    pub fn fail_storage(&mut self, s: u16) {
        self.input(
            s,
            Input::StorageFailed {
                reason: "simulated fsync error".into(),
            },
        );
        self.hold.insert(s);
    }

    fn fsync(&mut self, s: u16) {
        let node = &mut self.nodes[usize::from(s)];
        let appended = node.wal.len() as u64;
        if node.shard.is_none() || appended == node.durable || node.fault == Some(Fault::Io) {
            return;
        }
        if node.fsync_fails {
            // EIO: this batch is not durable, and nothing after it will be.
            node.fsync_fails = false;
            node.fault = Some(Fault::Io);
            self.stats.eio += 1;
            self.report_fault(s);
            return;
        }
        let from = node.durable;
        // A batch makes some prefix durable.
        let to = from + 1 + self.rng.below(appended - from);
        self.nodes[usize::from(s)].durable = to;
        self.model.on_durable(s, from, to, self.step);
        self.input(s, Input::Durable { lsn: Lsn(to) });
    }

    fn complete_read(&mut self, s: u16) {
        let Some((token, lsns)) = self.nodes[usize::from(s)].reads.pop_front() else {
            return;
        };
        let node = &self.nodes[usize::from(s)];
        let records = lsns
            .iter()
            .map(|l| {
                assert!(
                    l.0 >= 1 && l.0 <= node.durable,
                    "shard {s} read LSN {} that is not durable",
                    l.0
                );
                let (kind, payload) = &node.wal[(l.0 - 1) as usize];
                (*l, *kind, bytes::Bytes::from(payload.clone()))
            })
            .collect();
        self.input(s, Input::RecordsRead { token, records });
    }

    fn deliver_peer(&mut self, from: u16, to: u16) {
        let Some(msg) = self.net.get_mut(&(from, to)).and_then(VecDeque::pop_front) else {
            return;
        };
        self.input(
            to,
            Input::Peer {
                from: ShardId(from),
                msg,
            },
        );
    }

    /// The fake delivery thread answers the oldest push of shard `s`.
    pub fn answer_push(&mut self, s: u16) {
        let Some((id, push)) = self.nodes[usize::from(s)].pushes.pop_front() else {
            return;
        };
        let key = push.idempotency_key.clone();
        self.gateway.posts.push((key.clone(), push.action));
        let outcome = if self.gateway.down || self.rng.chance(1, 10) {
            PushOutcome::Retry
        } else {
            if !self.gateway.shown.insert(key.clone()) {
                self.gateway.deduplicated += 1;
            }
            PushOutcome::Delivered
        };
        let before = self.nodes[usize::from(s)].wal.len() as u64;
        self.input(s, Input::PushResult { id, outcome });
        if outcome == PushOutcome::Delivered && self.nodes[usize::from(s)].wal.len() as u64 > before
        {
            // The settle record is the first appended by the result.
            self.gateway.settled.insert(key, (s, before + 1));
        }
    }

    /// Ticks (with the gateway up) until every shard's outbox is empty;
    /// panics if it does not drain: a queued push was lost or stuck.
    pub fn drain_pushes(&mut self) {
        self.gateway.down = false;
        for _ in 0..10_000 {
            let depth: u64 = self
                .nodes
                .iter()
                .filter_map(|n| n.shard.as_ref())
                .map(|sh| sh.metrics().outbox_depth)
                .sum();
            if depth == 0 && !self.busy() {
                return;
            }
            if self.busy() {
                self.step_once(Chaos {
                    clients_act: false,
                    crashes: false,
                });
            } else {
                self.step += 1;
                self.tick();
            }
        }
        let stuck: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.shard.as_ref())
            .map(|sh| format!("{:?}", sh.metrics()))
            .collect();
        panic!(
            "seed {}: the push outbox did not drain: {stuck:#?}",
            self.seed
        );
    }

    pub fn tick(&mut self) {
        self.now += TICK_MS;
        for s in 0..self.shard_count {
            self.input(s, Input::Tick);
        }
    }

    pub fn crash(&mut self, s: u16) {
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

    /// A power loss on shard `s`: lays out what the disk holds after the
    /// fsync'ed prefix and recovers from it. Of the unsynced frames (and,
    /// after an ENOSPC, part of the refused one) each sector may or may not
    /// have been written back, in any order, and the last written one may
    /// be torn; recovery keeps the longest prefix of whole, checksummed
    /// frames, which must be a prefix of what was appended. Without
    /// `storage_faults` the whole unsynced tail is lost. Returns the records
    /// kept, which become the log and its durable prefix.
    fn power_loss(&mut self, s: u16) -> u64 {
        let node = &self.nodes[usize::from(s)];
        let synced = node.durable as usize;
        let appended = node.wal.len();
        let mut kept = synced;
        if self.storage_faults && (appended > synced || node.refused.is_some()) {
            // The unsynced bytes, and the units the kernel writes back:
            // sectors, or whole records (one write per record or batch).
            let mut tail: Vec<u8> = Vec::new();
            let mut units: Vec<std::ops::Range<usize>> = Vec::new();
            for (kind, payload) in &node.wal[synced..] {
                let start = tail.len();
                tail.extend_from_slice(&frame(*kind, payload));
                units.push(start..tail.len());
            }
            if let Some(refused) = &node.refused {
                let part = self.rng.below(refused.len() as u64) as usize;
                let start = tail.len();
                tail.extend_from_slice(&refused[..part]);
                units.push(start..tail.len());
            }
            if self.rng.chance(1, 2) {
                units = (0..tail.len().div_ceil(SECTOR_BYTES))
                    .map(|i| i * SECTOR_BYTES..((i + 1) * SECTOR_BYTES).min(tail.len()))
                    .collect();
            }
            let n = units.len();
            let written: Vec<bool> = match self.rng.below(4) {
                // Nothing reached the disk.
                0 => vec![false; n],
                // Written back in order up to some point.
                1 => {
                    let k = self.rng.below(n as u64 + 1) as usize;
                    (0..n).map(|i| i < k).collect()
                }
                // Written back in any order.
                _ => (0..n).map(|_| self.rng.chance(1, 2)).collect(),
            };
            if let Some(first_missing) = written.iter().position(|w| !w) {
                if written[first_missing..].iter().any(|w| *w) {
                    self.stats.reordered += 1;
                }
            }
            let mut disk = vec![0u8; tail.len()];
            for (unit, w) in units.iter().zip(&written) {
                if *w {
                    disk[unit.clone()].copy_from_slice(&tail[unit.clone()]);
                }
            }
            if let Some(last) = written.iter().rposition(|w| *w) {
                let unit = units[last].clone();
                if self.rng.chance(1, 2) && !unit.is_empty() {
                    // Torn: the power went while this unit was written.
                    let cut = unit.start + self.rng.below(unit.len() as u64) as usize;
                    disk[cut..unit.end].fill(0);
                    self.stats.torn_sectors += 1;
                }
            }
            let (records, damaged) = recover(&disk);
            let node = &self.nodes[usize::from(s)];
            assert!(
                synced + records.len() <= appended,
                "seed {}: recovery of shard {s} found more records than were appended",
                self.seed
            );
            for (i, rec) in records.iter().enumerate() {
                assert!(
                    *rec == node.wal[synced + i],
                    "seed {}: recovery of shard {s} returned a record that differs from LSN {}",
                    self.seed,
                    synced + i + 1
                );
            }
            kept = synced + records.len();
            self.stats.damaged_tails += u64::from(damaged);
            self.stats.unsynced_records_kept += records.len() as u64;
            self.stats.unsynced_records_lost += (appended - kept) as u64;
        }
        let node = &mut self.nodes[usize::from(s)];
        node.wal.truncate(kept);
        node.index.truncate(kept);
        node.durable = kept as u64;
        node.log_bytes = node
            .wal
            .iter()
            .map(|(_, p)| (FRAME_HEADER_BYTES + p.len()) as u64)
            .sum();
        kept as u64
    }

    /// The ledger invariants on the log a shard restarted from: per
    /// conversation, seqs are 1, 2, 3, … in LSN order (no gap, no reorder);
    /// no `(sender, client_msg_id)` is stored twice; every acknowledged
    /// message this shard owns is there under its acknowledged seq; every
    /// message delivered live is there, as delivered.
    fn check_recovered(&mut self, s: u16) {
        self.stats.recovery_checks += 1;
        let seed = self.seed;
        let node = &self.nodes[usize::from(s)];
        let mut heads: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        let mut keys: std::collections::HashSet<(u64, u64, u128)> =
            std::collections::HashSet::new();
        for (i, m) in node.index.iter().enumerate() {
            let Some(m) = m else { continue };
            let head = heads.entry(m.conversation).or_insert(0);
            assert_eq!(
                m.seq,
                *head + 1,
                "seed {seed}: shard {s} recovered conversation {} with seq {} after {} (LSN {})",
                m.conversation,
                m.seq,
                *head,
                i + 1
            );
            *head = m.seq;
            assert!(
                keys.insert((m.conversation, m.sender, m.client_msg_id)),
                "seed {seed}: shard {s} recovered a duplicate of {:#x} in conversation {}",
                m.client_msg_id,
                m.conversation
            );
        }
        let owned = |conv: u64| {
            courier_core::ids::shard_of(ConversationId(conv), self.shard_count) == ShardId(s)
        };
        let stored_at = |conv: u64, seq: u64, what: &str| -> Stored {
            let p = self.model.messages.get(&(conv, seq)).unwrap_or_else(|| {
                panic!("seed {seed}: {what} message {conv}/{seq} lost by shard {s}")
            });
            let stored = node
                .index
                .get((p.lsn - 1) as usize)
                .copied()
                .flatten()
                .unwrap_or_else(|| {
                    panic!("seed {seed}: {what} message {conv}/{seq} missing after the restart of shard {s}")
                });
            assert_eq!(
                (stored.conversation, stored.seq),
                (conv, seq),
                "seed {seed}: {what} message {conv}/{seq} stored under another seq"
            );
            stored
        };
        for (&(conv, seq), &(sender, cmid)) in &self.model.acked {
            if owned(conv) {
                let st = stored_at(conv, seq, "acknowledged");
                assert_eq!(
                    (st.sender, st.client_msg_id),
                    (sender, cmid),
                    "seed {seed}: acknowledged seq {conv}/{seq} holds another message after a restart"
                );
            }
        }
        for (&(conv, seq), &(sender, cmid, ts)) in &self.model.delivered {
            if owned(conv) {
                let st = stored_at(conv, seq, "live-delivered");
                assert_eq!(
                    (st.sender, st.client_msg_id, st.ts),
                    (sender, cmid, ts),
                    "seed {seed}: live-delivered {conv}/{seq} differs from the recovered record"
                );
            }
        }
    }

    pub fn restart(&mut self, s: u16) {
        if self.nodes[usize::from(s)].shard.is_some() {
            return;
        }
        let entropy = self.rng.bytes32();
        let cfg = config(s, self.shard_count, entropy);
        let node = &self.nodes[usize::from(s)];
        let mut shard = match node.snapshots.last() {
            Some((_, bytes)) => Shard::restore(cfg, bytes).expect("snapshot restores"),
            None => Shard::new(cfg),
        };
        let from = shard.last_lsn().0;
        for lsn in from + 1..=node.durable {
            let (kind, payload) = &node.wal[(lsn - 1) as usize];
            shard
                .replay(Lsn(lsn), *kind, payload)
                .expect("durable record replays");
        }
        self.check_recovered(s);
        let mut out = Vec::new();
        shard.start(Millis(self.now), &mut out);
        self.nodes[usize::from(s)].shard = Some(shard);
        self.process(s, out);
    }

    pub fn snapshot(&mut self, s: u16) {
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
            node.snapshots.remove(0);
        }
    }

    /// Restore + replay of everything appended equals the live state.
    pub fn check_restore(&mut self, s: u16) {
        let entropy = self.rng.bytes32();
        let node = &self.nodes[usize::from(s)];
        let Some(shard) = node.shard.as_ref() else {
            return;
        };
        if node.fault.is_some() {
            // The live state holds the record the disk refused.
            return;
        }
        self.stats.restore_checks += 1;
        let (lsn, live) = shard.snapshot();
        let cfg = config(s, self.shard_count, entropy);
        let mut copy = match node.snapshots.first() {
            Some((_, bytes)) => Shard::restore(cfg, bytes).expect("snapshot restores"),
            None => Shard::new(cfg),
        };
        for l in copy.last_lsn().0 + 1..=lsn.0 {
            let (kind, payload) = &node.wal[(l - 1) as usize];
            copy.replay(Lsn(l), *kind, payload).expect("record replays");
        }
        let (copy_lsn, copied) = copy.snapshot();
        assert_eq!(copy_lsn, lsn);
        assert!(
            copied == live,
            "shard {s}: restore + replay differs from the live state at LSN {}",
            lsn.0
        );
    }

    // ----- Clients ------------------------------------------------------------

    pub fn add_client(
        &mut self,
        credential: Credential,
        user: Option<(UserId, WorkspaceId)>,
        auto: bool,
    ) -> usize {
        self.clients.push(Client {
            user: user.map(|u| u.0),
            ws: user.map(|u| u.1),
            credential,
            auto,
            conn: None,
            state: CState::Offline,
            next_req: 1,
            pending: BTreeMap::new(),
            convs: BTreeMap::new(),
            sends: Vec::new(),
            synced: false,
            offline_until: 0,
            inbox: Vec::new(),
        });
        self.clients.len() - 1
    }

    /// Opens a socket to shard `s` and says hello.
    pub fn connect(&mut self, c: usize, s: u16) {
        assert!(self.clients[c].conn.is_none());
        let node = &mut self.nodes[usize::from(s)];
        if node.shard.is_none() {
            return;
        }
        let conn = ConnId::new(ShardId(s), node.next_conn);
        node.next_conn += 1;
        let req = self.clients[c].take_req();
        let credential = self.clients[c].credential.clone();
        let device = DeviceInfo {
            kind: DeviceKind::Desktop,
            name: format!("device-{c}"),
        };
        let mut up = VecDeque::new();
        up.push_back(Up::Hello {
            req,
            credential,
            device,
        });
        // A reused connection id belongs to a dead incarnation's socket.
        self.links.remove(&conn);
        self.links.insert(
            conn,
            Link {
                client: c,
                up,
                down: VecDeque::new(),
                open: true,
                connected: false,
            },
        );
        let client = &mut self.clients[c];
        client.conn = Some(conn);
        client.state = CState::Hello;
        client.pending.insert(req, (Pend::Hello, self.step));
    }

    /// Closes a client's socket from the client side.
    pub fn disconnect(&mut self, c: usize) {
        let Some(conn) = self.clients[c].conn else {
            return;
        };
        self.clients[c].go_offline(self.step + 3);
        if let Some(link) = self.links.remove(&conn) {
            if link.open && link.connected {
                self.input(conn.shard().0, Input::Disconnected { conn });
            }
        }
    }

    /// Queues a request on a client's socket.
    pub fn request(&mut self, c: usize, request: Request, pend: Pend) -> Option<ReqId> {
        let conn = self.clients[c].conn?;
        let req = self.clients[c].take_req();
        let link = self.links.get_mut(&conn)?;
        if !link.open {
            return None;
        }
        self.stats.requests += 1;
        if std::env::var_os("COURIER_SIM_TRACE").is_some() {
            eprintln!(
                "step {} client {c} conn {conn:?} -> {req} {request:?}",
                self.step
            );
        }
        link.up.push_back(Up::Request { req, request });
        self.clients[c].pending.insert(req, (pend, self.step));
        Some(req)
    }

    /// Delivers everything queued on client `c`'s socket to its shard now.
    pub fn pump(&mut self, c: usize) {
        let Some(conn) = self.clients[c].conn else {
            return;
        };
        while self
            .links
            .get(&conn)
            .is_some_and(|l| l.open && (!l.connected || !l.up.is_empty()))
        {
            self.deliver_up(conn);
        }
    }

    /// Delivers every queued message from shard `from` to shard `to` now.
    pub fn flush_net(&mut self, from: u16, to: u16) {
        while self.net.get(&(from, to)).is_some_and(|q| !q.is_empty()) {
            self.deliver_peer(from, to);
        }
    }

    fn deliver_up(&mut self, conn: ConnId) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let s = conn.shard().0;
        if !link.connected {
            link.connected = true;
            self.input(s, Input::Connected { conn });
            return;
        }
        let Some(up) = link.up.pop_front() else {
            return;
        };
        let input = match up {
            Up::Hello {
                req,
                credential,
                device,
            } => Input::Hello {
                conn,
                req,
                credential,
                device,
            },
            Up::Request { req, request } => Input::Request { conn, req, request },
        };
        self.input(s, input);
    }

    fn deliver_down(&mut self, conn: ConnId) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let Some(down) = link.down.pop_front() else {
            return;
        };
        let c = link.client;
        if self.clients[c].conn != Some(conn) {
            return;
        }
        if let Down::Closed(_) = down {
            self.links.remove(&conn);
        }
        self.client_receive(c, down);
    }

    // ----- Scheduling -----------------------------------------------------------

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
    }

    /// One random step.
    pub fn step_once(&mut self, chaos: Chaos) {
        self.step += 1;
        self.now += self.rng.below(3);
        if chaos.crashes && self.rng.below(1000) < self.chaos_per_mille {
            self.chaos_event();
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
            _ => self.tick(),
        }
    }

    fn chaos_event(&mut self) {
        let s = self.rng.below(u64::from(self.shard_count)) as u16;
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
        for s in 0..self.shard_count {
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
        panic!("the world did not settle");
    }

    /// The operator fixes every disk (no armed EIO, space freed) and
    /// restarts the daemons whose storage failed (a power loss is the
    /// harshest way to stop them).
    pub fn repair_storage(&mut self) {
        for s in 0..self.shard_count {
            let node = &mut self.nodes[usize::from(s)];
            node.fsync_fails = false;
            node.capacity = None;
            if node.fault.is_some() {
                self.crash(s);
            }
        }
    }

    /// Offline auto clients whose backoff elapsed reconnect.
    pub fn wake_clients(&mut self) {
        for c in 0..self.clients.len() {
            let client = &self.clients[c];
            if client.auto && client.state == CState::Offline && client.offline_until <= self.step {
                let s = self.rng.below(u64::from(self.shard_count)) as u16;
                if self.nodes[usize::from(s)].shard.is_some() {
                    self.connect(c, s);
                }
            }
        }
    }
}

impl Client {
    fn take_req(&mut self) -> ReqId {
        let r = self.next_req;
        self.next_req += 1;
        r
    }

    pub fn go_offline(&mut self, until: u64) {
        self.conn = None;
        self.state = CState::Offline;
        self.synced = false;
        self.offline_until = until;
        for (pend, _) in std::mem::take(&mut self.pending).into_values() {
            if let Pend::Send { idx } = pend {
                self.sends[idx].inflight = false;
            }
        }
        for conv in self.convs.values_mut() {
            conv.fetching = false;
        }
    }

    /// Replies of a request this client made, for scripted tests.
    pub fn reply_to(&self, req: ReqId) -> Option<&Result<Response, Reject>> {
        self.inbox.iter().find_map(|d| match d {
            Down::Reply(r, result) if *r == req => Some(result),
            _ => None,
        })
    }

    pub fn events(&self) -> Vec<Arc<Event>> {
        self.inbox
            .iter()
            .filter_map(|d| match d {
                Down::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }
}

// ----- Client behaviour (auto clients) and checks --------------------------------

impl World {
    fn client_receive(&mut self, c: usize, down: Down) {
        if std::env::var_os("COURIER_SIM_TRACE").is_some() {
            eprintln!(
                "step {} client {c} conn {:?} <- {down:?}",
                self.step, self.clients[c].conn
            );
        }
        if !self.clients[c].auto {
            self.check_down(c, &down);
            if let Down::Reply(req, _) = &down {
                self.clients[c].pending.remove(req);
            }
            if let Down::Closed(_) = &down {
                self.clients[c].go_offline(u64::MAX);
            }
            self.clients[c].inbox.push(down);
            return;
        }
        self.check_down(c, &down);
        match down {
            Down::Closed(reason) => {
                assert_ne!(
                    reason,
                    CloseReason::Revoked,
                    "sim never revokes tokens of auto clients"
                );
                let until = self.step + 10;
                self.clients[c].go_offline(until);
            }
            Down::Event(event) => self.on_event(c, &event),
            Down::Reply(req, result) => {
                let Some((pend, t0)) = self.clients[c].pending.remove(&req) else {
                    panic!("client {c}: reply to unknown request {req}");
                };
                self.on_reply(c, pend, t0, result);
            }
        }
    }

    /// Checks that hold for every client: messages are durable, identical to
    /// their records, and seen only by members.
    fn check_down(&mut self, c: usize, down: &Down) {
        let Some(user) = self.clients[c].user else {
            return;
        };
        let now = self.step;
        match down {
            Down::Event(event) => {
                if let Event::Joined(info) = event.as_ref() {
                    self.model.check_cursor_shown(user, info, "joined");
                }
                if let Event::Message(m) = event.as_ref() {
                    let durable_at = self.model.check_message(m, "live event");
                    self.model.live_events += 1;
                    self.model.delivered.insert(
                        (m.conversation.0, m.seq.0),
                        (m.sender.0, m.client_msg_id, m.ts.0),
                    );
                    assert!(
                        self.model
                            .member_during(m.conversation, user, durable_at, now),
                        "live event of {:?} seq {} reached non-member {:?}",
                        m.conversation,
                        m.seq.0,
                        user
                    );
                }
            }
            Down::Reply(req, Ok(response)) => {
                let t0 = match self.clients[c].pending.get(req) {
                    Some((_, t0)) => *t0,
                    None if !self.clients[c].auto => 0,
                    None => return,
                };
                let ws = self.clients[c].ws;
                self.check_read(user, ws, t0, response);
            }
            _ => {}
        }
    }

    fn check_read(&mut self, user: UserId, ws: Option<WorkspaceId>, t0: u64, response: &Response) {
        let now = self.step;
        let check = |model: &mut Model, m: &Message, preview: bool, what: &str| {
            model.check_message(m, what);
            model.reads_checked += 1;
            let member = model.member_during(m.conversation, user, t0, now);
            let public = preview
                && model
                    .convs
                    .get(&m.conversation.0)
                    .is_some_and(|(w, k)| Some(*w) == ws && *k == ConversationKind::PublicChannel);
            assert!(
                member || public,
                "{what}: message {:?}/{} reached non-member {:?}",
                m.conversation,
                m.seq.0,
                user
            );
        };
        match response {
            Response::History { messages, head } => {
                for w in messages.windows(2) {
                    assert_eq!(w[0].seq.0 + 1, w[1].seq.0, "history page has a gap");
                }
                for m in messages {
                    assert!(m.seq <= *head);
                    check(&mut self.model, m, true, "history");
                }
            }
            Response::Sync { changed, .. } => {
                for sc in changed {
                    assert!(sc.info.member);
                    self.model.check_cursor_shown(user, &sc.info, "sync");
                    assert_eq!(sc.info.unread, sc.info.head.0 - sc.info.read.0);
                    for w in sc.messages.windows(2) {
                        assert_eq!(w[0].seq.0 + 1, w[1].seq.0, "sync messages have a gap");
                    }
                    if let Some(last) = sc.messages.last() {
                        assert_eq!(last.seq, sc.info.head, "sync messages end below the head");
                    }
                    for m in &sc.messages {
                        check(&mut self.model, m, false, "sync");
                    }
                }
            }
            Response::Boot(page) => {
                for info in &page.conversations {
                    self.model.check_cursor_shown(user, info, "boot");
                }
                for (_, messages) in &page.pages {
                    for m in messages {
                        check(&mut self.model, m, false, "boot");
                    }
                }
                for w in page.conversations.windows(2) {
                    assert!(
                        w[0].last_activity >= w[1].last_activity,
                        "boot not sorted by activity"
                    );
                }
            }
            Response::Conversations(infos) => {
                for info in infos {
                    self.model.check_cursor_shown(user, info, "list");
                }
            }
            Response::Conversation(info) => self.model.check_cursor_shown(user, info, "join"),
            _ => {}
        }
    }

    fn on_event(&mut self, c: usize, event: &Event) {
        let client = &mut self.clients[c];
        match event {
            Event::Message(m) => {
                if let Some(conv) = client.convs.get_mut(&m.conversation) {
                    conv.head = conv.head.max(m.seq.0);
                    conv.msgs.insert(m.seq.0, m.clone());
                }
                self.fill_gaps(c);
            }
            Event::Joined(info) => {
                let conv = client.convs.entry(info.id).or_default();
                conv.head = conv.head.max(info.head.0);
                conv.cursor = conv.cursor.max(info.read.0);
                self.fill_gaps(c);
            }
            Event::Left { conversation } => {
                client.convs.remove(conversation);
            }
            Event::ReadCursor { conversation, seq } => {
                if let Some(conv) = client.convs.get_mut(conversation) {
                    assert!(
                        seq.0 >= conv.cursor,
                        "client {c}: read cursor of {conversation:?} moved backwards: {} after {}",
                        seq.0,
                        conv.cursor
                    );
                    conv.cursor = seq.0;
                }
            }
            Event::Notify { .. } => {}
        }
    }

    fn on_reply(&mut self, c: usize, pend: Pend, t0: u64, result: Result<Response, Reject>) {
        match (pend, result) {
            (Pend::Hello, Ok(Response::Welcome { .. })) => {
                self.clients[c].state = CState::Online;
                self.send_sync(c);
            }
            (Pend::Hello, Err(Reject::Unavailable(_))) => {
                // The home shard is starting; try again later.
                self.disconnect(c);
            }
            (Pend::Hello, other) => panic!("client {c}: hello failed: {other:?}"),
            (Pend::Sync { reads }, Ok(Response::Sync { changed, gone })) => {
                // A device that named its read cursors learns the user's:
                // every move durable when it asked (later ones come as
                // events), whatever other devices did while it was away.
                // Each named conversation is in `changed` with a cursor at
                // least that, or in `gone`, or the cursor it named is.
                let user = self.clients[c].user.expect("user client");
                for &(conv, named) in &reads {
                    let durable = self.model.cursor_at(user, conv, t0);
                    let shown = match changed.iter().find(|sc| sc.info.id == conv) {
                        Some(sc) => sc.info.read,
                        None if gone.contains(&conv) => continue,
                        None => named,
                    };
                    assert!(
                        shown.0 >= durable,
                        "client {c}: after a sync, read cursor of {conv:?} is {} but {durable} was durable when it asked",
                        shown.0
                    );
                }
                let client = &mut self.clients[c];
                for conv in gone {
                    client.convs.remove(&conv);
                }
                for sc in changed {
                    self.stats.truncated_syncs += u64::from(sc.truncated);
                    let conv = client.convs.entry(sc.info.id).or_default();
                    conv.head = conv.head.max(sc.info.head.0);
                    conv.cursor = conv.cursor.max(sc.info.read.0);
                    for m in sc.messages {
                        conv.msgs.insert(m.seq.0, m);
                    }
                }
                client.synced = true;
                self.fill_gaps(c);
                self.retry_unacked(c);
            }
            (Pend::Sync { .. }, Err(Reject::Unavailable(why)))
                if why.starts_with("storage failed") =>
            {
                // The home shard's disk failed: come back after a while.
                assert!(
                    why.contains(Fault::Io.reason()) || why.contains(Fault::NoSpace.reason()),
                    "sync refused without the storage failure's reason: {why}"
                );
                self.stats.storage_refusals += 1;
                self.disconnect(c);
                self.clients[c].offline_until = self.step + 50;
            }
            (Pend::Sync { .. }, Err(Reject::Unavailable(_))) => self.send_sync(c),
            (Pend::Sync { .. }, other) => panic!("client {c}: sync failed: {other:?}"),
            (Pend::History { conv }, result) => {
                let client = &mut self.clients[c];
                let known = client.convs.get_mut(&conv);
                match (known, result) {
                    (Some(cc), Ok(Response::History { messages, head })) => {
                        cc.fetching = false;
                        cc.head = cc.head.max(head.0);
                        for m in messages {
                            cc.msgs.insert(m.seq.0, m);
                        }
                    }
                    (Some(_), Err(Reject::NotFound)) => {
                        // Not a member any more: the `Left` is on its way;
                        // a sync settles it (the conversation stays marked
                        // as fetching until then, so no loop).
                        self.send_sync(c);
                        return;
                    }
                    (Some(cc), _) => cc.fetching = false,
                    (None, _) => {}
                }
                self.fill_gaps(c);
            }
            (Pend::Send { idx }, result) => {
                let user = self.clients[c].user;
                let send = &mut self.clients[c].sends[idx];
                send.inflight = false;
                match result {
                    Ok(Response::SendAck {
                        conversation,
                        seq,
                        ts,
                        ..
                    }) => {
                        assert_eq!(conversation, send.conv);
                        let Some(p) = self.model.messages.get(&(conversation.0, seq.0)) else {
                            panic!("ack of {conversation:?}/{} that is in no WAL", seq.0);
                        };
                        assert!(
                            p.durable_at.is_some(),
                            "ack before durability: {conversation:?}/{}",
                            seq.0
                        );
                        assert_eq!(p.rec.client_msg_id, send.cmid, "ack names another message");
                        assert_eq!(Some(UserId(p.rec.sender)), user);
                        assert_eq!(p.rec.ts, ts.0);
                        assert_eq!(p.rec.body, send.body);
                        if let Some(first) = send.acked {
                            assert_eq!(first, seq, "a retry was acked with another seq");
                        }
                        send.acked = Some(seq);
                        self.model.acks += 1;
                        self.model
                            .acked
                            .insert((conversation.0, seq.0), (p.rec.sender, send.cmid));
                    }
                    Err(Reject::NotFound) => send.abandoned = true,
                    Err(Reject::Unavailable(why)) => {
                        if why.starts_with("storage failed") {
                            // A clear refusal naming the failure.
                            assert!(
                                why.contains(Fault::Io.reason())
                                    || why.contains(Fault::NoSpace.reason()),
                                "send refused without the storage failure's reason: {why}"
                            );
                            self.stats.storage_refusals += 1;
                        }
                    }
                    other => panic!("send failed: {other:?}"),
                }
            }
            (Pend::Membership { conv }, Ok(Response::Conversation(info))) => {
                if let Some(expected) = conv {
                    assert_eq!(expected, info.id);
                }
                let cc = self.clients[c].convs.entry(info.id).or_default();
                cc.head = cc.head.max(info.head.0);
                self.fill_gaps(c);
            }
            (Pend::Leave { conv }, Ok(Response::Done)) => {
                self.clients[c].convs.remove(&conv);
            }
            (Pend::Boot, Ok(Response::Boot(page))) => {
                assert!(
                    page.conversations.len()
                        <= courier_core::constants::BOOT_CONVERSATIONS_MAX as usize
                );
            }
            (_, Err(Reject::Invalid(e))) | (_, Err(Reject::TooLarge(e))) => {
                panic!("client {c}: a well-formed request was refused: {e}")
            }
            (_, Err(Reject::Unauthenticated)) => {
                panic!("client {c}: session lost its authentication")
            }
            _ => {}
        }
    }

    /// Syncs; three times in four naming the read cursors known (the
    /// fourth is a client that keeps no read state).
    fn send_sync(&mut self, c: usize) {
        let cursors = self.clients[c]
            .convs
            .iter()
            .map(|(id, cc)| (*id, Seq(cc.contiguous())))
            .collect();
        let named: Vec<(ConversationId, Seq)> = if self.rng.chance(3, 4) {
            self.clients[c]
                .convs
                .iter()
                .map(|(id, cc)| (*id, Seq(cc.cursor)))
                .collect()
        } else {
            Vec::new()
        };
        let reads = named.iter().map(|(_, r)| *r).collect();
        self.request(
            c,
            Request::Sync { cursors, reads },
            Pend::Sync { reads: named },
        );
    }

    /// Asks for the messages after the contiguous prefix of each known
    /// conversation that lacks some.
    fn fill_gaps(&mut self, c: usize) {
        if self.clients[c].state != CState::Online {
            return;
        }
        let wanted: Vec<(ConversationId, u64)> = self.clients[c]
            .convs
            .iter()
            .filter(|(_, cc)| {
                !cc.fetching
                    && cc.contiguous() < cc.head.max(cc.msgs.keys().last().copied().unwrap_or(0))
            })
            .map(|(id, cc)| (*id, cc.contiguous()))
            .collect();
        for (conv, after) in wanted {
            let request = Request::History {
                conversation: conv,
                anchor: HistoryAnchor::After(Seq(after)),
                limit: courier_core::constants::HISTORY_PAGE_MAX,
            };
            if self.request(c, request, Pend::History { conv }).is_some() {
                if let Some(cc) = self.clients[c].convs.get_mut(&conv) {
                    cc.fetching = true;
                }
            }
        }
    }

    fn retry_unacked(&mut self, c: usize) {
        let idxs: Vec<usize> = self.clients[c]
            .sends
            .iter()
            .enumerate()
            .filter(|(_, s)| s.acked.is_none() && !s.abandoned && !s.inflight)
            .map(|(i, _)| i)
            .collect();
        for idx in idxs {
            self.resend(c, idx);
        }
    }

    fn resend(&mut self, c: usize, idx: usize) {
        let s = self.clients[c].sends[idx].clone();
        let request = Request::Send {
            conversation: s.conv,
            client_msg_id: s.cmid,
            body: s.body,
            mentions: s.mentions,
            broadcast: s.broadcast,
        };
        if self.request(c, request, Pend::Send { idx }).is_some() {
            self.stats.retries += 1;
            self.clients[c].sends[idx].inflight = true;
        }
    }

    /// One random action of an auto client.
    pub fn client_act(&mut self, c: usize) {
        let client = &self.clients[c];
        if client.state == CState::Offline {
            if client.offline_until <= self.step {
                let s = self.rng.below(u64::from(self.shard_count)) as u16;
                self.connect(c, s);
            }
            return;
        }
        if client.state != CState::Online || !client.synced || client.pending.len() >= 6 {
            return;
        }
        let user = client.user.expect("auto clients are users");
        let ws = client.ws.expect("auto clients are users");
        let member_convs: Vec<ConversationId> = client.convs.keys().copied().collect();
        let same_ws_users: Vec<UserId> = self
            .users
            .iter()
            .filter(|(w, u)| *w == ws && *u != user)
            .map(|(_, u)| *u)
            .collect();
        let ws_channels: Vec<ConversationId> = self
            .channels
            .iter()
            .filter(|(w, _)| *w == ws)
            .map(|(_, c)| *c)
            .collect();
        let any_conv: Vec<ConversationId> = self
            .model
            .convs
            .keys()
            .map(|&c| ConversationId(c))
            .collect();
        let roll = self.rng.below(100);
        match roll {
            0..=39 => {
                let Some(&conv) = self.rng.pick(&member_convs) else {
                    return;
                };
                self.stats.sends += 1;
                let n = self.clients[c].sends.len();
                let mut mentions = Vec::new();
                if self.rng.chance(1, 4) {
                    if let Some(&u) = self.rng.pick(&same_ws_users) {
                        mentions.push(u);
                    }
                }
                let broadcast = match self.rng.below(20) {
                    0 => Broadcast::Channel,
                    1 => Broadcast::Here,
                    _ => Broadcast::None,
                };
                let body_len = 1 + self.rng.below(40) as usize;
                let body = format!("c{c}-m{n}-{}", "x".repeat(body_len));
                self.clients[c].sends.push(OutSend {
                    conv,
                    cmid: u128::from(self.rng.next_u64()) << 64 | n as u128,
                    body,
                    mentions,
                    broadcast,
                    acked: None,
                    abandoned: false,
                    inflight: false,
                });
                self.resend(c, n);
            }
            40..=45 => {
                // Retry a recent send (acked or not) with the same key.
                let n = self.clients[c].sends.len();
                if n == 0 {
                    return;
                }
                let idx = n - 1 - self.rng.below(n.min(8) as u64) as usize;
                let s = &self.clients[c].sends[idx];
                if !s.inflight && !s.abandoned {
                    self.resend(c, idx);
                }
            }
            46..=55 => {
                // History of any conversation, member or not: non-members
                // must get exactly what a nonexistent one gets.
                let pool = if self.rng.chance(1, 3) {
                    &any_conv
                } else {
                    &member_convs
                };
                let Some(&conv) = self.rng.pick(pool) else {
                    return;
                };
                let head = self.clients[c].convs.get(&conv).map_or(0, |cc| cc.head);
                let anchor = match self.rng.below(3) {
                    0 => HistoryAnchor::Latest,
                    1 => HistoryAnchor::Before(Seq(self.rng.below(head + 2))),
                    _ => HistoryAnchor::After(Seq(self.rng.below(head + 2))),
                };
                let limit = 1 + self.rng.below(20) as u32;
                self.request(
                    c,
                    Request::History {
                        conversation: conv,
                        anchor,
                        limit,
                    },
                    Pend::Other,
                );
            }
            56..=61 => {
                let Some(&conv) = self.rng.pick(&ws_channels) else {
                    return;
                };
                self.request(
                    c,
                    Request::Join { conversation: conv },
                    Pend::Membership { conv: Some(conv) },
                );
            }
            62..=64 => {
                let Some(&conv) = self.rng.pick(&member_convs) else {
                    return;
                };
                if self.model.convs.get(&conv.0).is_some_and(|(_, k)| {
                    matches!(k, ConversationKind::Dm | ConversationKind::GroupDm)
                }) {
                    return;
                }
                self.request(
                    c,
                    Request::Leave { conversation: conv },
                    Pend::Leave { conv },
                );
            }
            65..=68 => {
                let (Some(&conv), Some(&u)) =
                    (self.rng.pick(&member_convs), self.rng.pick(&same_ws_users))
                else {
                    return;
                };
                if self.model.convs.get(&conv.0).is_some_and(|(_, k)| {
                    matches!(k, ConversationKind::Dm | ConversationKind::GroupDm)
                }) {
                    return;
                }
                self.request(
                    c,
                    Request::Invite {
                        conversation: conv,
                        user: u,
                    },
                    Pend::Other,
                );
            }
            69..=70 => {
                let (Some(&conv), Some(&u)) =
                    (self.rng.pick(&member_convs), self.rng.pick(&same_ws_users))
                else {
                    return;
                };
                if self.model.convs.get(&conv.0).is_some_and(|(_, k)| {
                    matches!(k, ConversationKind::Dm | ConversationKind::GroupDm)
                }) {
                    return;
                }
                self.request(
                    c,
                    Request::Remove {
                        conversation: conv,
                        user: u,
                    },
                    Pend::Other,
                );
            }
            71..=74 => {
                let k = 1 + self.rng.below(3) as usize;
                let mut users = Vec::new();
                for _ in 0..k {
                    if let Some(&u) = self.rng.pick(&same_ws_users) {
                        users.push(u);
                    }
                }
                if self.rng.chance(1, 10) {
                    // Someone of another workspace: must look nonexistent.
                    if let Some(&(_, u)) = self.rng.pick(&self.users.clone()) {
                        users.push(u);
                    }
                }
                if users.is_empty() {
                    return;
                }
                self.request(
                    c,
                    Request::OpenDm { users },
                    Pend::Membership { conv: None },
                );
            }
            75..=82 => {
                let Some(&conv) = self.rng.pick(&member_convs) else {
                    return;
                };
                let head = self.clients[c].convs.get(&conv).map_or(0, |cc| cc.head);
                let seq = Seq(self.rng.below(head + 3));
                self.request(
                    c,
                    Request::MarkRead {
                        conversation: conv,
                        seq,
                    },
                    Pend::Other,
                );
            }
            83..=86 => self.send_sync(c),
            87..=88 => {
                let limit = 1 + self.rng.below(10) as u32;
                let offset = self.rng.below(3) as u32;
                self.request(c, Request::Boot { limit, offset }, Pend::Boot);
            }
            89 => {
                self.request(c, Request::ListConversations, Pend::List);
            }
            90..=91 => {
                let Some(&conv) = self.rng.pick(&member_convs) else {
                    return;
                };
                let request = match self.rng.below(3) {
                    0 => Request::SetNotify {
                        conversation: conv,
                        level: courier_core::api::NotifyLevel::Mentions,
                        muted: self.rng.chance(1, 2),
                    },
                    1 => Request::SetFocus {
                        focused: Some(conv),
                        active: true,
                    },
                    _ => Request::SetDnd {
                        until: Some(Millis(self.now + 60_000)),
                    },
                };
                self.request(c, request, Pend::Other);
            }
            92..=93 => {
                let name = format!("ch-{}-{}", c, self.rng.below(1000));
                let private = self.rng.chance(1, 3);
                self.request(
                    c,
                    Request::CreateChannel { name, private },
                    Pend::Membership { conv: None },
                );
            }
            _ => {
                let until = if self.rng.below(100) < self.long_offline_pct {
                    self.step + 1_000 + self.rng.below(4_000)
                } else {
                    self.step + 5 + self.rng.below(50)
                };
                self.disconnect(c);
                self.clients[c].offline_until = until;
            }
        }
    }
}

// ----- Scripted helpers ------------------------------------------------------------

impl World {
    /// Runs until settled and returns the reply to `req` of scripted client `c`.
    pub fn await_reply(&mut self, c: usize, req: ReqId) -> Result<Response, Reject> {
        self.settle();
        self.clients[c]
            .reply_to(req)
            .cloned()
            .unwrap_or_else(|| panic!("client {c}: no reply to request {req}"))
    }

    /// A scripted request; runs until settled; returns the reply.
    pub fn call(&mut self, c: usize, request: Request) -> Result<Response, Reject> {
        let req = self
            .request(c, request, Pend::Other)
            .expect("client is connected");
        self.await_reply(c, req)
    }

    /// (Re)connects scripted client `c` to shard `s` until its hello is
    /// welcomed (a restarting home shard answers `Unavailable` at first).
    pub fn ensure_online(&mut self, c: usize, s: u16) {
        for _ in 0..100 {
            if self.clients[c].conn.is_none() {
                self.connect(c, s);
            }
            self.settle();
            let welcomed = self.clients[c].inbox.iter().rev().find_map(|d| match d {
                Down::Reply(_, Ok(Response::Welcome { .. })) => Some(true),
                Down::Reply(_, Err(Reject::Unavailable(_))) => Some(false),
                Down::Closed(_) => Some(false),
                _ => None,
            });
            if welcomed == Some(true) && self.clients[c].conn.is_some() {
                return;
            }
            self.disconnect(c);
            self.tick();
        }
        panic!("client {c} could not connect");
    }

    /// Connects an admin client on shard `s`.
    pub fn admin(&mut self, s: u16) -> usize {
        let c = self.add_client(Credential::Admin(ADMIN_SECRET), None, false);
        self.connect(c, s);
        self.settle();
        c
    }

    pub fn create_workspace(&mut self, admin: usize, name: &str) -> WorkspaceId {
        match self.call(admin, Request::CreateWorkspace { name: name.into() }) {
            Ok(Response::WorkspaceCreated { workspace }) => workspace,
            other => panic!("create workspace: {other:?}"),
        }
    }

    /// Creates a user; returns its credential.
    pub fn create_user(
        &mut self,
        admin: usize,
        ws: WorkspaceId,
        name: &str,
    ) -> (UserId, Credential) {
        match self.call(
            admin,
            Request::CreateUser {
                workspace: ws,
                name: name.into(),
            },
        ) {
            Ok(Response::TokenIssued {
                user,
                token,
                secret,
            }) => {
                self.users.push((ws, user));
                (
                    user,
                    Credential::User {
                        user,
                        token,
                        secret,
                    },
                )
            }
            other => panic!("create user: {other:?}"),
        }
    }

    /// A connected client of a user on shard `s`.
    pub fn user_client(
        &mut self,
        user: UserId,
        ws: WorkspaceId,
        credential: Credential,
        s: u16,
        auto: bool,
    ) -> usize {
        let c = self.add_client(credential, Some((user, ws)), auto);
        self.connect(c, s);
        self.settle();
        c
    }

    pub fn create_channel(&mut self, c: usize, name: &str, private: bool) -> ConversationId {
        let ws = self.clients[c].ws.expect("user client");
        match self.call(
            c,
            Request::CreateChannel {
                name: name.into(),
                private,
            },
        ) {
            Ok(Response::Conversation(info)) => {
                self.channels.push((ws, info.id));
                info.id
            }
            other => panic!("create channel: {other:?}"),
        }
    }
}
