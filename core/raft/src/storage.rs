//! One group's in-memory log: raft's view of stable storage
//! ([`raft::Storage`]). It holds the entries not yet compacted, the hard
//! state, the metadata of the latest snapshot and, for a leader serving a
//! lagging follower, at most one cached state-machine snapshot.
//!
//! What is here may be ahead of the WAL: entries are appended when the
//! engine hands their records to the caller, before the batch is durable
//! (raft requires that its `Ready` be readable from storage). The engine
//! tells raft what is durable separately (`on_persist_ready`), so nothing
//! here is acknowledged before its batch is persisted. After a crash,
//! [`crate::RaftCore::recover`] rebuilds this from the records that were
//! durable.
//!
//! Memory bound: entries between compactions, see
//! [`crate::constants::ENTRIES_HARD_MAX`].

use crate::record::SnapshotMeta;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::cell::Cell;
use std::collections::VecDeque;

/// A group's log, hard state and snapshot metadata.
#[derive(Debug)]
pub struct GroupStorage {
    hard_state: HardState,
    voters: Vec<u64>,
    /// Index and term of the latest snapshot: entries up to `snapshot_index`
    /// are compacted away.
    snapshot_index: u64,
    snapshot_term: u64,
    /// Entries `snapshot_index + 1 ..`, consecutive.
    entries: VecDeque<Entry>,
    /// A snapshot from the caller's `SnapshotSource` for lagging followers,
    /// and the tick it expires at.
    cached: Option<(Snapshot, u64)>,
    /// raft asked for a snapshot that the cache could not serve.
    wanted: Cell<bool>,
}

impl GroupStorage {
    /// An empty log of a new group with these voters (index 0, term 0).
    pub fn new(voters: Vec<u64>) -> GroupStorage {
        GroupStorage {
            hard_state: HardState::default(),
            voters,
            snapshot_index: 0,
            snapshot_term: 0,
            entries: VecDeque::new(),
            cached: None,
            wanted: Cell::new(false),
        }
    }

    /// Index of the first entry held (snapshot index + 1 when none).
    pub fn first(&self) -> u64 {
        self.snapshot_index + 1
    }

    /// Index of the last entry (the snapshot index when none).
    pub fn last(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    /// Entries held in memory (the quantity bounded by compaction).
    pub fn entry_count(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The voters.
    pub fn voters(&self) -> &[u64] {
        &self.voters
    }

    /// Metadata of the latest snapshot.
    pub fn snapshot_meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            index: self.snapshot_index,
            term: self.snapshot_term,
            voters: self.voters.clone(),
        }
    }

    /// The term of `index` if it is the snapshot's or held.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.first() || index > self.last() {
            return None;
        }
        self.entries
            .get((index - self.first()) as usize)
            .map(|e| e.term)
    }

    /// Entries `from ..= last`, cloned (for a compaction's checkpoint).
    pub fn entries_from(&self, from: u64) -> Vec<Entry> {
        let skip = from.saturating_sub(self.first()) as usize;
        self.entries.iter().skip(skip).cloned().collect()
    }

    /// Sets the hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Appends consecutive entries, replacing any held from the first one's
    /// index on. Entries at or below the snapshot index are skipped (they
    /// are committed and covered by it). Returns `Err(last)` when the first
    /// new entry would leave a gap after `last`.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), u64> {
        let keep: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.index > self.snapshot_index)
            .collect();
        let Some(first) = keep.first() else {
            return Ok(());
        };
        if first.index > self.last() + 1 {
            return Err(self.last());
        }
        self.entries.truncate((first.index - self.first()) as usize);
        self.entries.extend(keep.into_iter().cloned());
        Ok(())
    }

    /// Replaces the log with a snapshot (a follower installing one, or
    /// recovery): every entry is dropped, commit and term move up to it.
    pub fn install_snapshot(&mut self, meta: &SnapshotMeta) {
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        self.voters = meta.voters.clone();
        self.entries.clear();
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.cached = None;
    }

    /// Drops entries up to `index` (which must be held or be the snapshot
    /// index), making it the snapshot point.
    pub fn compact_to(&mut self, index: u64) -> Option<()> {
        let term = self.term_of(index)?;
        let drop = (index - self.snapshot_index) as usize;
        self.entries.drain(..drop);
        self.snapshot_index = index;
        self.snapshot_term = term;
        Some(())
    }

    /// Whether raft asked for a snapshot the cache could not serve (and
    /// clears the flag).
    pub fn take_wanted(&self) -> bool {
        self.wanted.replace(false)
    }

    /// Caches a snapshot for lagging followers until tick `expires`.
    pub fn cache_snapshot(&mut self, snapshot: Snapshot, expires: u64) {
        self.cached = Some((snapshot, expires));
    }

    /// Drops the cached snapshot if it expired at `now`.
    pub fn expire_cache(&mut self, now: u64) {
        if self
            .cached
            .as_ref()
            .is_some_and(|(_, expires)| *expires <= now)
        {
            self.cached = None;
        }
    }
}

fn conf_state(voters: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        ..ConfState::default()
    }
}

impl raft::Storage for GroupStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            conf_state(&self.voters),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - self.first()) as usize;
        let mut out: Vec<Entry> = self
            .entries
            .range(from..(high - self.first()) as usize)
            .cloned()
            .collect();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if let Some((snap, _)) = &self.cached {
            if snap.get_metadata().index >= request_index
                && snap.get_metadata().index >= self.snapshot_index
            {
                return Ok(snap.clone());
            }
        }
        self.wanted.set(true);
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    #[test]
    fn append_replaces_a_conflicting_suffix_and_refuses_gaps() {
        let mut s = GroupStorage::new(vec![1, 2, 3]);
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
        s.append(&[entry(2, 2)]).unwrap();
        assert_eq!((s.first(), s.last()), (1, 2));
        assert_eq!(s.term(2).unwrap(), 2);
        assert_eq!(s.append(&[entry(5, 2)]), Err(2));
        assert_eq!(
            s.entries(1, 3, None, ctx()).unwrap(),
            vec![entry(1, 1), entry(2, 2)]
        );
        assert_eq!(
            s.entries(1, 4, None, ctx()),
            Err(raft::Error::Store(StorageError::Unavailable))
        );
    }

    #[test]
    fn compaction_keeps_the_term_of_the_snapshot_point() {
        let mut s = GroupStorage::new(vec![1]);
        s.append(&(1..=10).map(|i| entry(i, 1 + i / 5)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(s.compact_to(6), Some(()));
        assert_eq!((s.first(), s.last(), s.entry_count()), (7, 10, 4));
        assert_eq!(s.term(6).unwrap(), 2);
        assert_eq!(s.term(5), Err(raft::Error::Store(StorageError::Compacted)));
        assert_eq!(
            s.entries(6, 8, None, ctx()),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        assert_eq!(s.compact_to(11), None, "beyond the log");
        // Entries already covered by the snapshot are skipped on append.
        s.append(&[entry(5, 1), entry(6, 2), entry(7, 2)]).unwrap();
        assert_eq!((s.first(), s.last()), (7, 7));
    }

    #[test]
    fn snapshot_requests_are_served_from_the_cache_or_flagged() {
        let mut s = GroupStorage::new(vec![1, 2]);
        assert!(s.snapshot(0, 2).is_err());
        assert!(s.take_wanted());
        assert!(!s.take_wanted());
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 0;
        s.cache_snapshot(snap.clone(), 10);
        assert_eq!(s.snapshot(0, 2).unwrap(), snap);
        s.expire_cache(10);
        assert!(s.snapshot(0, 2).is_err());
    }
}
