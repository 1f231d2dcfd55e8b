//! [`RaftCore::recover`]: rebuilds every group from the records read back
//! from the WAL, in order. Undecodable bytes are an error naming the
//! record's LSN.
//!
//! The WAL is shared, so its retained part can start after a group's older
//! checkpoint was deleted and still hold that group's later records (kept
//! for other groups, or because the group's newest checkpoint lost its
//! tail in a crash). Records of a group before its first retained snapshot
//! are therefore read too: its hard state counts, and the entries after a
//! *checkpoint* snapshot's index are taken from them when the checkpoint's
//! own copy of them was torn off. What recovery used decides the oldest
//! record the group needs ([`Rebuilt::base`]), so a deletion never removes
//! something a later recovery reads.
//!
//! Stale records that a later snapshot supersedes are accepted: an
//! incomplete snapshot followed by other records (the torn tail of an
//! earlier crash: its batch was never reported durable), a chunk whose
//! first chunk was deleted, entries that leave a gap. Only what nothing
//! supersedes is [`Error::Inconsistent`]: a gap still open at the end, a
//! group without any snapshot (its creation), a voter set without this
//! node.

use crate::core::validate_voters;
use crate::record::{decode, Record, SnapshotKind, SnapshotMeta};
use crate::storage::GroupStorage;
use crate::types::{ApplySnapshot, CoreConfig, GroupId, Lsn};
use crate::{Error, RaftCore, Result};
use bytes::Bytes;
use raft::eraftpb::{Entry, HardState};
use std::collections::BTreeMap;

/// A group as the records describe it.
#[derive(Default)]
struct Rebuilt {
    /// Its log, from its first retained snapshot on (None before that).
    storage: Option<GroupStorage>,
    /// Entries seen before the first retained snapshot, by index.
    early: BTreeMap<u64, Entry>,
    /// The latest hard state and its record.
    hard_state: Option<(HardState, Lsn)>,
    /// The latest complete snapshot's bytes (state machine) and first record.
    snapshot: Option<(Bytes, Lsn)>,
    /// Index → the record its entry was last written by.
    written: BTreeMap<u64, Lsn>,
    /// The group's first record seen (for error reports).
    first_seen: Option<Lsn>,
    /// Entries that did not follow the log (where, why): the group waits
    /// for a later snapshot that supersedes them, or recovery fails.
    broken: Option<(Lsn, String)>,
}

impl Rebuilt {
    /// The oldest record this group's state came from: the WAL before it
    /// is not needed by this group.
    fn base(&self, snapshot_lsn: Lsn) -> Lsn {
        let mut base = snapshot_lsn;
        if let Some((_, lsn)) = self.hard_state {
            base = base.min(lsn);
        }
        if let Some(&lsn) = self.written.values().min() {
            base = base.min(lsn);
        }
        base
    }

    /// Entries written: a later record replaces everything from its first
    /// index on (raft's truncate-on-conflict).
    fn entries(&mut self, lsn: Lsn, entries: Vec<Entry>) {
        let first = entries[0].index;
        self.written.retain(|&i, _| i < first);
        if let Some(storage) = &mut self.storage {
            match storage.append(&entries) {
                Ok(()) => {
                    let point = storage.snapshot_meta().index;
                    let fresh = entries.iter().filter(|e| e.index > point);
                    self.written.extend(fresh.map(|e| (e.index, lsn)));
                    return;
                }
                Err(last) => {
                    // Stale records can precede a group's newest checkpoint
                    // (one torn in an earlier crash, with part of what it
                    // needed deleted since): wait, from scratch, for a
                    // snapshot that supersedes them; none is an error.
                    let reason = format!("entries from {first} after last index {last}");
                    self.broken = Some((lsn, reason));
                    self.storage = None;
                    self.written.clear();
                    self.early.clear();
                }
            }
        }
        self.early.retain(|&i, _| i < first);
        self.written.extend(entries.iter().map(|e| (e.index, lsn)));
        self.early.extend(entries.into_iter().map(|e| (e.index, e)));
    }

    /// A complete snapshot. A checkpoint keeps the entries after its index
    /// (from the log, or from the early entries for the first one); a
    /// replacement drops them.
    fn install(&mut self, meta: &SnapshotMeta, kind: SnapshotKind, data: Vec<u8>, first: Lsn) {
        let storage = self
            .storage
            .get_or_insert_with(|| GroupStorage::new(meta.voters.clone()));
        let kept = kind == SnapshotKind::Checkpoint
            && storage.voters() == &meta.voters[..]
            && storage.term_of(meta.index) == Some(meta.term)
            && storage.compact_to(meta.index).is_some();
        if !kept {
            storage.install_snapshot(meta);
        }
        if kind == SnapshotKind::Checkpoint {
            let early: Vec<Entry> = self
                .early
                .range(meta.index + 1..)
                .map(|(_, e)| e.clone())
                .collect();
            let contiguous = early
                .iter()
                .zip(meta.index + 1..)
                .take_while(|(e, i)| e.index == *i)
                .count();
            if storage.last() == meta.index && contiguous > 0 {
                // Cannot leave a gap: the entries are consecutive from index + 1.
                let _ = storage.append(&early[..contiguous]);
            }
        }
        self.early.clear();
        self.broken = None;
        let last = storage.last();
        self.written.retain(|&i, _| i > meta.index && i <= last);
        self.snapshot = Some((Bytes::from(data), first));
    }

    /// The hard state the group restarts with: at least the snapshot's term
    /// and index; a torn batch can keep a hard state and lose the entries
    /// after it, so the commit index known locally is at most the last entry.
    fn final_hard_state(&self, storage: &GroupStorage) -> HardState {
        let meta = storage.snapshot_meta();
        let mut hs = self
            .hard_state
            .as_ref()
            .map(|(hs, _)| hs.clone())
            .unwrap_or_default();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.clamp(meta.index, storage.last());
        hs
    }
}

/// A snapshot whose chunks are being read.
struct Partial {
    group: GroupId,
    meta: SnapshotMeta,
    kind: SnapshotKind,
    total: u64,
    data: Vec<u8>,
    first: Lsn,
}

/// What recovery gives the caller besides the core.
#[derive(Debug)]
pub struct Recovered {
    /// Per group with a snapshot beyond index 0: the state machine to
    /// restore before the committed entries after it are applied again.
    pub snapshots: Vec<ApplySnapshot>,
    /// Groups rebuilt.
    pub groups: usize,
    /// Records read.
    pub records: u64,
    /// Incomplete snapshots dropped: torn tails, of this crash or of an
    /// earlier one (records appended after them by the next incarnation).
    /// Their batch was never reported durable, so nothing relied on them.
    pub incomplete_snapshots: u64,
    /// Snapshot chunks skipped because their first chunk was in a deleted
    /// WAL segment (below every group's needs).
    pub headless_chunks: u64,
}

fn inconsistent(lsn: Lsn, group: GroupId, reason: String) -> Error {
    Error::Inconsistent {
        lsn: lsn.0,
        group,
        reason,
    }
}

#[derive(Default)]
struct Scan {
    groups: BTreeMap<GroupId, Rebuilt>,
    partial: Option<Partial>,
    records: u64,
    incomplete_snapshots: u64,
    headless_chunks: u64,
}

impl Scan {
    fn record(&mut self, lsn: Lsn, record: Record) -> Result<()> {
        self.records += 1;
        if let Some(p) = &self.partial {
            let continues = matches!(&record, Record::SnapshotChunk { group, meta, kind, total, offset, .. }
                if *group == p.group && *meta == p.meta && *kind == p.kind && *total == p.total
                    && *offset == p.data.len() as u64);
            if !continues {
                self.partial = None;
                self.incomplete_snapshots += 1;
            }
        }
        match record {
            Record::SnapshotChunk {
                group,
                meta,
                kind,
                total,
                offset,
                data,
            } => {
                if self.partial.is_none() && offset != 0 {
                    // Its start was in a deleted segment: superseded.
                    self.groups
                        .entry(group)
                        .or_default()
                        .first_seen
                        .get_or_insert(lsn);
                    self.headless_chunks += 1;
                    return Ok(());
                }
                let p = self.partial.get_or_insert_with(|| Partial {
                    group,
                    meta,
                    kind,
                    total,
                    data: Vec::new(),
                    first: lsn,
                });
                p.data.extend_from_slice(&data);
                if p.data.len() as u64 == p.total {
                    if let Some(p) = self.partial.take() {
                        let g = self.groups.entry(p.group).or_default();
                        g.first_seen.get_or_insert(p.first);
                        g.install(&p.meta, p.kind, p.data, p.first);
                    }
                }
            }
            Record::Entries { group, entries } => {
                let g = self.groups.entry(group).or_default();
                g.first_seen.get_or_insert(lsn);
                g.entries(lsn, entries);
            }
            Record::HardState { group, hard_state } => {
                let g = self.groups.entry(group).or_default();
                g.first_seen.get_or_insert(lsn);
                g.hard_state = Some((hard_state, lsn));
            }
        }
        Ok(())
    }
}

impl RaftCore {
    /// Rebuilds a core from its WAL: `records` are `(lsn, kind, payload)`
    /// of this crate's kinds ([`crate::record::is_raft_kind`]), in LSN
    /// order, as read back after a restart (a torn tail just ends the
    /// list). Every group found is hosted again with its log, hard state
    /// and snapshot; its committed entries after the snapshot are reported
    /// again by the next [`RaftCore::ready`] calls, after
    /// [`Recovered::snapshots`] are restored.
    pub fn recover<I, P>(config: CoreConfig, records: I) -> Result<(RaftCore, Recovered)>
    where
        I: IntoIterator<Item = (Lsn, u8, P)>,
        P: AsRef<[u8]>,
    {
        let mut scan = Scan::default();
        for (lsn, kind, payload) in records {
            let record = decode(kind, payload.as_ref())
                .map_err(|source| Error::Decode { lsn: lsn.0, source })?;
            scan.record(lsn, record)?;
        }
        let incomplete_snapshots = scan.incomplete_snapshots + u64::from(scan.partial.is_some());
        let mut core = RaftCore::new(config);
        let mut snapshots = Vec::new();
        let groups = scan.groups.len();
        for (id, mut g) in scan.groups {
            let (Some(mut storage), Some((bytes, snapshot_lsn))) =
                (g.storage.take(), g.snapshot.clone())
            else {
                let (lsn, reason) = g.broken.take().unwrap_or_else(|| {
                    let reason = "records of a group without its snapshot (creation)";
                    (g.first_seen.unwrap_or(Lsn(0)), reason.into())
                });
                return Err(inconsistent(lsn, id, reason));
            };
            storage.set_hard_state(g.final_hard_state(&storage));
            if let Err(e) = validate_voters(&core.config, id, storage.voters()) {
                return Err(inconsistent(snapshot_lsn, id, e.to_string()));
            }
            let meta = storage.snapshot_meta();
            if meta.index > 0 {
                snapshots.push(ApplySnapshot {
                    group: id,
                    bytes,
                    index: meta.index,
                    term: meta.term,
                });
            }
            core.insert_group(id, storage, meta.index, Some(g.base(snapshot_lsn)))?;
        }
        Ok((
            core,
            Recovered {
                snapshots,
                groups,
                records: scan.records,
                incomplete_snapshots,
                headless_chunks: scan.headless_chunks,
            },
        ))
    }
}
