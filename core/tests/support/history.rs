//! The fake history store per shard (the runtime's `shard::history` over
//! `courier_wal::history::HistoryStore`): message records the fake WAL made
//! durable are appended with their LSN as source, keyed by (conversation,
//! seq), under the store's own rules (duplicates of a replay skipped, a
//! seq that does not increase or a source that decreases refused);
//! `sync` makes staged entries durable; a power loss keeps the synced
//! entries and any in-order prefix of the staged ones (a torn tail cut).
//! Reads return synced entries only.

use std::collections::BTreeMap;

use super::rng::Rng;

/// A stored entry's key (conversation, seq) and value (LSN, payload).
pub type Entry = ((u64, u64), (u64, Vec<u8>));

/// One shard's history store.
#[derive(Default)]
pub struct HistoryModel {
    /// Durable entries: (conversation, seq) → (LSN, payload).
    pub synced: BTreeMap<(u64, u64), (u64, Vec<u8>)>,
    /// Appended since the last sync, in order.
    pub staged: Vec<Entry>,
    /// Last seq per conversation over synced and staged entries.
    pub last_seq: BTreeMap<u64, u64>,
    /// Highest source appended.
    pub highest: u64,
    /// Every message record with LSN ≤ this was appended (the runtime's
    /// `history_fed`).
    pub fed: u64,
    /// Every message record with LSN ≤ this is synced (`history_covered`:
    /// the log may be truncated below it).
    pub covered: u64,
}

impl HistoryModel {
    /// Appends as `HistoryStore::append` does: `Ok(false)` for a duplicate
    /// of what the store has (a replay), an error for what the store
    /// refuses (a caller bug: the simulation fails on it).
    pub fn append(
        &mut self,
        conv: u64,
        seq: u64,
        lsn: u64,
        payload: &[u8],
    ) -> Result<bool, String> {
        let last = self.last_seq.get(&conv).copied().unwrap_or(0);
        if seq <= last {
            if lsn <= self.highest {
                return Ok(false);
            }
            return Err(format!(
                "history store: seq {seq} of conversation {conv} at LSN {lsn} after seq {last}"
            ));
        }
        if lsn < self.highest {
            return Err(format!(
                "history store: LSN {lsn} below the highest source {}",
                self.highest
            ));
        }
        self.last_seq.insert(conv, seq);
        self.highest = lsn;
        self.staged.push(((conv, seq), (lsn, payload.to_vec())));
        Ok(true)
    }

    /// Makes everything staged durable.
    pub fn sync(&mut self) {
        for (key, value) in self.staged.drain(..) {
            self.synced.insert(key, value);
        }
        self.covered = self.covered.max(self.fed);
    }

    /// Highest source among durable entries (`HistoryStore::durable_source`).
    pub fn durable_source(&self) -> u64 {
        self.synced.values().map(|(l, _)| *l).max().unwrap_or(0)
    }

    /// A power loss: the synced entries stay; of the staged ones an
    /// in-order prefix may have reached the disk (the rest is a torn tail,
    /// cut at open) when `storage_faults`, else none. The counters restart
    /// as an open finds them.
    pub fn power_loss(&mut self, rng: &mut Rng, storage_faults: bool) -> u64 {
        let keep = if storage_faults {
            rng.below(self.staged.len() as u64 + 1) as usize
        } else {
            0
        };
        let kept = keep as u64;
        let staged: Vec<_> = self.staged.drain(..).collect();
        for (key, value) in staged.into_iter().take(keep) {
            self.synced.insert(key, value);
        }
        self.last_seq.clear();
        for &(conv, seq) in self.synced.keys() {
            let last = self.last_seq.entry(conv).or_insert(0);
            *last = (*last).max(seq);
        }
        self.highest = self.durable_source();
        self.fed = 0;
        self.covered = 0;
        kept
    }

    /// Synced messages `from ..= to` of a conversation, ascending, stopping
    /// at the first missing one.
    pub fn read(&self, conv: u64, from: u64, to: u64) -> Vec<(u64, u64, Vec<u8>)> {
        let mut out = Vec::new();
        for seq in from..=to {
            let Some((lsn, payload)) = self.synced.get(&(conv, seq)) else {
                break;
            };
            out.push((seq, *lsn, payload.clone()));
        }
        out
    }
}
