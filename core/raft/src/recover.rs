//! [`RaftCore::recover`]: rebuilds every group from the records read back
//! from the WAL, in order. A torn tail (an incomplete snapshot at the end)
//! is dropped: its batch was never reported durable. Anything else that
//! does not decode or does not follow is an error naming the record's LSN.

use crate::record::{decode, Record, SnapshotMeta};
use crate::storage::GroupStorage;
use crate::types::{ApplySnapshot, CoreConfig, GroupId, Lsn};
use crate::{Error, RaftCore, Result};
use bytes::Bytes;
use std::collections::BTreeMap;

/// A group as the records describe it.
struct Rebuilt {
    storage: GroupStorage,
    /// Its latest complete snapshot's bytes (state machine).
    snapshot: Bytes,
    /// First record of that snapshot.
    snapshot_lsn: Lsn,
    /// The record of the hard state in effect.
    hard_state_lsn: Lsn,
    /// Index → the record its entry was last written by.
    written: BTreeMap<u64, Lsn>,
}

impl Rebuilt {
    /// The oldest record this group's state came from: the WAL before it
    /// is not needed by this group. Exact even when the tail of a
    /// checkpoint was torn off (its snapshot kept, its hard state or
    /// re-written entries lost): then older records still count.
    fn base(&self) -> Lsn {
        let oldest_entry = self
            .written
            .values()
            .min()
            .copied()
            .unwrap_or(self.snapshot_lsn);
        self.snapshot_lsn.min(self.hard_state_lsn).min(oldest_entry)
    }
}

/// A snapshot whose chunks are being read.
struct Partial {
    group: GroupId,
    meta: SnapshotMeta,
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
    /// Records of a group older than its first snapshot still in the WAL:
    /// superseded by a later checkpoint of that group (the WAL before it
    /// was kept for other groups) and skipped.
    pub superseded: u64,
    /// Whether an incomplete snapshot at the end was dropped (torn tail).
    pub torn_snapshot: bool,
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
    /// Groups with records seen before any snapshot of theirs: the first
    /// such record. A later snapshot supersedes them; none is corruption.
    orphans: BTreeMap<GroupId, Lsn>,
    records: u64,
    superseded: u64,
}

impl Scan {
    fn record(&mut self, lsn: Lsn, record: Record) -> Result<()> {
        self.records += 1;
        if let Some(p) = &self.partial {
            let continues = matches!(&record, Record::SnapshotChunk { group, meta, total, offset, .. }
                if *group == p.group && *meta == p.meta && *total == p.total && *offset == p.data.len() as u64);
            if !continues {
                return Err(inconsistent(
                    lsn,
                    p.group,
                    "snapshot chunks interrupted".into(),
                ));
            }
        }
        match record {
            Record::SnapshotChunk {
                group,
                meta,
                total,
                offset,
                data,
            } => {
                if self.partial.is_none() && offset != 0 {
                    return Err(inconsistent(
                        lsn,
                        group,
                        format!("snapshot chunk at offset {offset} without its start"),
                    ));
                }
                let p = self.partial.get_or_insert_with(|| Partial {
                    group,
                    meta,
                    total,
                    data: Vec::new(),
                    first: lsn,
                });
                p.data.extend_from_slice(&data);
                if p.data.len() as u64 == p.total {
                    if let Some(p) = self.partial.take() {
                        self.install(p);
                    }
                }
            }
            Record::Entries { group, entries } => {
                let Some(g) = self.groups.get_mut(&group) else {
                    self.orphan(group, lsn);
                    return Ok(());
                };
                g.storage.append(&entries).map_err(|last| {
                    inconsistent(
                        lsn,
                        group,
                        format!("entries from {} after last index {last}", entries[0].index),
                    )
                })?;
                let first = entries[0].index;
                g.written.retain(|&i, _| i < first);
                let point = g.storage.snapshot_meta().index;
                g.written.extend(
                    entries
                        .iter()
                        .filter(|e| e.index > point)
                        .map(|e| (e.index, lsn)),
                );
            }
            Record::HardState { group, hard_state } => {
                let Some(g) = self.groups.get_mut(&group) else {
                    self.orphan(group, lsn);
                    return Ok(());
                };
                g.storage.set_hard_state(hard_state);
                g.hard_state_lsn = lsn;
            }
        }
        Ok(())
    }

    fn orphan(&mut self, group: GroupId, lsn: Lsn) {
        self.superseded += 1;
        self.orphans.entry(group).or_insert(lsn);
    }

    /// A complete snapshot: a compaction checkpoint (the log still has its
    /// index with its term: later entries are kept, as raft's restore does)
    /// or a replacement (the log is dropped).
    fn install(&mut self, p: Partial) {
        self.orphans.remove(&p.group);
        let g = self.groups.entry(p.group).or_insert_with(|| Rebuilt {
            storage: GroupStorage::new(p.meta.voters.clone()),
            snapshot: Bytes::new(),
            snapshot_lsn: p.first,
            hard_state_lsn: p.first,
            written: BTreeMap::new(),
        });
        let matches = g.storage.term_of(p.meta.index) == Some(p.meta.term)
            && g.storage.voters() == &p.meta.voters[..];
        if !(matches && g.storage.compact_to(p.meta.index).is_some()) {
            g.storage.install_snapshot(&p.meta);
        }
        let mut hs = g.storage.hard_state().clone();
        hs.commit = hs.commit.max(p.meta.index);
        hs.term = hs.term.max(p.meta.term);
        g.storage.set_hard_state(hs);
        g.written.retain(|&i, _| i > p.meta.index);
        g.snapshot = Bytes::from(p.data);
        g.snapshot_lsn = p.first;
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
        let torn_snapshot = scan.partial.is_some();
        if let Some((&group, &lsn)) = scan.orphans.iter().next() {
            return Err(inconsistent(
                lsn,
                group,
                "records of a group without its snapshot (creation)".into(),
            ));
        }
        let mut core = RaftCore::new(config);
        let mut snapshots = Vec::new();
        let groups = scan.groups.len();
        for (id, mut g) in scan.groups {
            let meta = g.storage.snapshot_meta();
            // A torn batch can keep a hard state and lose the entries after
            // it: the commit index known locally is at most the last entry.
            let mut hs = g.storage.hard_state().clone();
            let commit = hs.commit.clamp(meta.index, g.storage.last());
            if commit != hs.commit {
                hs.commit = commit;
                g.storage.set_hard_state(hs);
            }
            if !g.storage.voters().contains(&core.config.node.0) {
                let reason = format!(
                    "this node {} is not a voter of {:?}",
                    core.config.node,
                    g.storage.voters()
                );
                return Err(inconsistent(g.snapshot_lsn, id, reason));
            }
            let base = g.base();
            if meta.index > 0 {
                snapshots.push(ApplySnapshot {
                    group: id,
                    bytes: g.snapshot,
                    index: meta.index,
                    term: meta.term,
                });
            }
            core.insert_group(id, g.storage, meta.index, Some(base))?;
        }
        Ok((
            core,
            Recovered {
                snapshots,
                groups,
                records: scan.records,
                superseded: scan.superseded,
                torn_snapshot,
            },
        ))
    }
}
