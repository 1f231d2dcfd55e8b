//! The fake WAL per shard: framing, group fsyncs, power loss with torn
//! and reordered write-back, recovery, the sticky faults (EIO, ENOSPC),
//! the runtime's copy of durable messages into the history store
//! ([`super::HistoryModel`]) and reads from it, and the log truncated
//! behind snapshots.

use std::collections::VecDeque;

use courier_core::api::{ConversationId, Input, Lsn, Push, PushId, ReadToken, Seq};
use courier_core::record::Record;
use courier_core::Shard;

use super::{HistoryModel, World};

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
    /// The history store.
    pub history: HistoryModel,
    /// The first LSN the log still holds: recovery may read nothing below
    /// it (`wal` keeps every record as the test's ledger).
    pub first: u64,
    /// History reads in flight: (token, conversation, from, to).
    pub reads: VecDeque<(ReadToken, ConversationId, Seq, Seq)>,
    /// Pushes handed to the (fake) delivery thread, unanswered.
    pub pushes: VecDeque<(PushId, Push)>,
    /// The runtime's connection counter: restarts at 0 with the process, so
    /// connection ids are reused across restarts (the core must cope).
    pub next_conn: u64,
    pub crashes: u32,
}

impl Node {
    /// A node with empty storage running `shard` (or none).
    pub fn new(shard: Option<Shard>) -> Node {
        Node {
            shard,
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
            history: HistoryModel::default(),
            first: 1,
            reads: VecDeque::new(),
            pushes: VecDeque::new(),
            next_conn: 0,
            crashes: 0,
        }
    }
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
    /// A change of an earlier message (issue 17), not a message.
    pub change: bool,
}

/// Sector size of the simulated disk: the unit the kernel writes back, in
/// any order, and the unit a power loss tears.
pub const SECTOR_BYTES: usize = 512;

/// Frame header: `len: u32 LE`, `kind: u8`, `checksum: u64 LE`.
const FRAME_HEADER_BYTES: usize = 13;

/// FNV-1a over the kind and payload (the simulated disk's CRC).
pub(super) fn checksum(kind: u8, payload: &[u8]) -> u64 {
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

impl World {
    /// Tells the shard of a new storage fault, once (the runtime's
    /// `storage_failed`).
    pub(super) fn report_fault(&mut self, s: u16) {
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
        if self.replicated {
            // Reported at commit (see `fsync`).
            return;
        }
        self.model.on_durable(s, from, appended, self.step);
        self.feed_history(s, appended);
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

    pub(super) fn fsync(&mut self, s: u16) {
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
        if self.replicated {
            // The core heard `Durable` for these at commit (the state WAL
            // is off the ack path: `cluster::report_committed`); the
            // history task still syncs on its own schedule.
            if self.rng.chance(1, 2) {
                self.nodes[usize::from(s)].history.sync();
            }
            return;
        }
        self.model.on_durable(s, from, to, self.step);
        self.feed_history(s, to);
        // The history task syncs the store on its own schedule.
        if self.rng.chance(1, 2) {
            self.nodes[usize::from(s)].history.sync();
        }
        self.input(s, Input::Durable { lsn: Lsn(to) });
    }

    /// The runtime's durability task: every message record up to the
    /// durable LSN enters the history store before the core hears
    /// `Durable` (and, at a restart, the replay re-adds from `from`).
    pub(super) fn feed_history(&mut self, s: u16, durable: u64) {
        let seed = self.seed;
        let node = &mut self.nodes[usize::from(s)];
        for lsn in node.history.fed + 1..=durable {
            let (kind, payload) = &node.wal[(lsn - 1) as usize];
            if let Some((conv, seq)) = Record::history_key(*kind, payload) {
                if let Err(e) = node.history.append(conv, seq, lsn, payload) {
                    panic!("seed {seed}: shard {s}: {e}");
                }
            }
        }
        node.history.fed = node.history.fed.max(durable);
    }

    pub(super) fn complete_read(&mut self, s: u16) {
        let Some((token, conv, from, to)) = self.nodes[usize::from(s)].reads.pop_front() else {
            return;
        };
        let node = &mut self.nodes[usize::from(s)];
        let mut read = node.history.read(conv.0, from.0, to.0);
        if (read.len() as u64) < to.0 - from.0 + 1 {
            // As the runtime: the newest may still be staged.
            node.history.sync();
            read = node.history.read(conv.0, from.0, to.0);
        }
        // Replicated: a promoted core knows committed records its state WAL
        // has not fsync'ed yet, so the store (fed at durability) does not
        // have them: the page comes back short, as in the runtime.
        if self.replicated && (read.len() as u64) < to.0 - from.0 + 1 {
            if let Some(c) = self.cluster.as_mut() {
                c.stats.short_reads += 1;
            }
        }
        let node = &self.nodes[usize::from(s)];
        let messages = read
            .into_iter()
            .map(|(seq, lsn, payload)| {
                // Replicated: committed records are durable when appended.
                let durable = if self.replicated { node.wal.len() as u64 } else { node.durable };
                assert!(
                    lsn >= 1 && lsn <= durable,
                    "shard {s} read LSN {lsn} that is not durable"
                );
                assert!(
                    node.wal[(lsn - 1) as usize].1 == payload
                        && courier_core::record::Record::history_key(node.wal[(lsn - 1) as usize].0, &payload).is_some(),
                    "seed {}: shard {s}: the history store's (conversation {}, seq {seq}) differs from LSN {lsn}",
                    self.seed,
                    conv.0
                );
                (Seq(seq), bytes::Bytes::from(payload))
            })
            .collect();
        self.input(s, Input::HistoryRead { token, messages });
    }

    /// The runtime after writing a snapshot (single-node mode): sync the
    /// history store and drop the log below what both the newest durable
    /// snapshot and the store cover.
    pub(super) fn truncate_log(&mut self, s: u16) {
        let node = &mut self.nodes[usize::from(s)];
        let Some(&(snapshot, _)) = node
            .snapshots
            .iter()
            .rev()
            .find(|(l, _)| *l <= node.durable)
        else {
            return;
        };
        node.history.sync();
        let below = node.history.covered.min(snapshot) + 1;
        if below > node.first {
            self.stats.truncations += 1;
            node.first = below;
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
    pub(super) fn power_loss(&mut self, s: u16) -> u64 {
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
        let storage_faults = self.storage_faults;
        let node = &mut self.nodes[usize::from(s)];
        self.stats.history_staged_kept += node.history.power_loss(&mut self.rng, storage_faults);
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
}
