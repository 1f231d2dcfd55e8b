//! The history store: one per shard, the copy of committed messages that
//! lives apart from the write-ahead log, so that the log (or Raft's log) can
//! be truncated behind snapshots while history stays readable.
//!
//! Entries are `(conversation, seq, payload)` with the log position they
//! came from (`source`: WAL LSN or Raft index). Seqs strictly increase per
//! conversation (gaps are allowed); sources never decrease.
//!
//! # Design
//!
//! - **Segments** (`hist-N.seg`) are written sequentially with direct I/O:
//!   [`HistoryStore::append`] stages an encoded entry (synchronous,
//!   bounded), [`HistoryStore::sync`] writes the staged entries in batches
//!   (one write each) and `fdatasync`s once, then reports the highest durable
//!   `source`. A segment is sealed once the next entry would pass
//!   `segment_bytes`.
//! - **Index files** (`hist-N.idx`), written, synced and renamed when
//!   segment N is sealed, hold a **full** per-conversation index: a
//!   directory (per conversation: seq range, previous segment holding it,
//!   where its positions are) in 4 KiB blocks, the positions (seq, offset,
//!   length: 16 bytes per message), and the whole conversation table.
//!   Full, not sparse: a chat store interleaves thousands of conversations,
//!   so a sparse index would read most of a segment to find one
//!   conversation's page; 16 bytes per message on disk buys one merged read.
//! - **Memory** holds one table row per conversation, one summary per
//!   sealed segment (its index header and an 8-byte fence per directory
//!   block of 85 conversations), and the active segment's index (bounded by
//!   the segment size), plus a bounded read cache (4 MiB) of decoded index
//!   parts. Nothing per message of a sealed segment:
//!   [`HistoryStore::memory`] reports it, `docs/WAL.md` gives the formula.
//! - **Recovery** checks every sealed segment against its index (headers,
//!   checksums, sizes, ordinals), loads the table from the newest index,
//!   verifies every entry of the active segment, cuts a torn tail and
//!   refuses any other damage. Entries of sealed segments are verified by
//!   every read that returns them.
//! - **Retention** deletes whole sealed segments, oldest first.
//!
//! # Failure contract
//!
//! A failed write or `fdatasync` (or seal) is sticky, as in the WAL: every
//! later write (`append`, `drop_before`, `sync`, retention) returns
//! [`crate::Error::Failed`]; reads go on and return what `sync` reported
//! durable (a full disk stops writes, not reads); reopening recovers. Damage is [`crate::Error::Corrupt`] naming the file
//! and offset. Caller mistakes are [`crate::Error::HistoryRejected`] and change nothing.
//!
//! `courier-net` keeps one per shard (`net/src/shard/history.rs`): durable
//! message records go in with their WAL LSN as source; History reads come
//! out; the log is truncated behind snapshots below what it holds.

mod cache;
pub mod format;
mod options;
mod read;
mod recovery;
mod retention;
mod scan;
mod state;
mod writer;

use std::{fmt, path::PathBuf, rc::Rc};

pub use options::HistoryOptions;

use crate::{Payload, Result};

/// What [`HistoryStore::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Staged; durable after the next [`HistoryStore::sync`].
    Staged,
    /// The store already has this `(conversation, seq)` (a replay of the log
    /// from [`HistoryStore::durable_source`]): nothing was staged.
    Duplicate,
}

/// One message read back.
#[derive(Clone)]
pub struct HistoryEntry {
    /// Its seq in the conversation.
    pub seq: u64,
    /// The log position it came from.
    pub source: u64,
    /// Its payload, 16-byte aligned, verified.
    pub payload: Payload,
}

impl fmt::Debug for HistoryEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HistoryEntry(seq {}, source {}, {:?})",
            self.seq, self.source, self.payload
        )
    }
}

/// One message read by [`HistoryStore::scan`], with its conversation.
#[derive(Clone, PartialEq, Eq)]
pub struct ScannedEntry {
    /// The conversation.
    pub conversation: u64,
    /// Its seq in the conversation.
    pub seq: u64,
    /// The log position it came from.
    pub source: u64,
    /// Its payload (verified).
    pub payload: Vec<u8>,
}

impl fmt::Debug for ScannedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ScannedEntry(conversation {}, seq {}, source {}, {} bytes)",
            self.conversation,
            self.seq,
            self.source,
            self.payload.len()
        )
    }
}

/// The answer to a read.
#[derive(Debug, Clone)]
pub enum Page {
    /// The entries asked for (ascending for `read`, descending for
    /// `read_before`); fewer than asked when the conversation has no more.
    Entries(Vec<HistoryEntry>),
    /// The range asked for lies below where this conversation's history now
    /// starts (retention removed it): nothing was read. Entries from
    /// `first_seq` on can be read.
    StartsAt {
        /// The first seq that can still be read.
        first_seq: u64,
    },
}

/// A torn tail cut at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The active segment.
    pub segment: PathBuf,
    /// Where the cut was made (just past the last valid entry).
    pub offset: u64,
    /// Bytes removed.
    pub bytes: u64,
}

/// What [`HistoryStore::open`] found.
#[derive(Debug, Clone)]
pub struct HistoryRecovered {
    /// Highest `source` durable in the store: replay the log from it,
    /// inclusive (one source may carry several entries; re-appending what
    /// the store has is harmless).
    pub durable_source: u64,
    /// Segments on disk (sealed + the active one).
    pub segments: u64,
    /// Entries found in the active segment.
    pub active_entries: u64,
    /// Conversations known.
    pub conversations: u64,
    /// A torn write cut from the active segment, if any.
    pub truncated_tail: Option<TornTail>,
}

/// What [`HistoryStore::apply_retention`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Sealed segments deleted (with their index files).
    pub segments_deleted: u64,
    /// Bytes of segment and index files deleted.
    pub bytes_freed: u64,
}

/// Memory a store holds, by part (bytes). See `docs/WAL.md` for the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryMemory {
    /// Conversations in the table.
    pub conversations: u64,
    /// The conversation table (hash map buckets).
    pub table_bytes: usize,
    /// Sealed segments on disk.
    pub sealed_segments: u64,
    /// Summaries of the sealed segments (header + fences each).
    pub sealed_summary_bytes: usize,
    /// Durable entries in the active segment.
    pub active_entries: u64,
    /// The active segment's index.
    pub active_index_bytes: usize,
    /// The staging buffer and the staged seqs.
    pub staging_bytes: usize,
    /// The read cache of decoded index parts (≤ `HISTORY_INDEX_CACHE_BYTES`).
    pub cache_bytes: usize,
}

impl HistoryMemory {
    /// In-memory size of one sealed segment's summary without its fences.
    pub const SEALED_FIXED_BYTES: usize = std::mem::size_of::<state::Sealed>();

    /// Everything except the active segment's index and the staging buffer
    /// (which the segment size and `staging_bytes_max` bound).
    pub fn summary_bytes(&self) -> usize {
        self.table_bytes + self.sealed_summary_bytes
    }
}

/// A shard's history store (see the module docs). Cheap to clone; all clones
/// are the same store. Use it from the executor that opened it.
#[derive(Clone)]
pub struct HistoryStore {
    inner: Rc<state::Inner>,
}

impl HistoryStore {
    /// Open the store in `dir` (created if missing; must support `O_DIRECT`),
    /// recovering what is there. Fails with [`crate::Error::Corrupt`] or
    /// [`crate::Error::Inconsistent`] on damage other than a torn tail.
    pub async fn open(
        dir: &std::path::Path,
        shard: u16,
        options: HistoryOptions,
    ) -> Result<(HistoryStore, HistoryRecovered)> {
        let (inner, recovered) = recovery::open(dir, shard, options).await?;
        Ok((HistoryStore { inner }, recovered))
    }

    /// Stage message `(conversation, seq)` from log position `source`.
    /// `seq` must exceed the conversation's last seq and `source` must not be
    /// below any source appended before — except that an entry the store
    /// already has (`seq` at or below the last, `source` at or below the
    /// highest) is skipped as [`Appended::Duplicate`] without comparing
    /// bytes (the log that replays it is the one that produced it).
    /// Errors: [`crate::Error::HistoryRejected`], [`crate::Error::Backpressure`]
    /// (call `sync`), [`crate::Error::Failed`], [`crate::Error::Closed`].
    pub fn append(
        &self,
        conversation: u64,
        seq: u64,
        source: u64,
        payload: &[u8],
    ) -> Result<Appended> {
        writer::append(&self.inner, conversation, seq, source, payload)
    }

    /// Stage a retention point: after the next `sync`, seqs below `seq` of
    /// `conversation` are gone for reads ([`Page::StartsAt`]), and from disk
    /// once [`HistoryStore::apply_retention`] can delete their segments.
    pub fn drop_before(&self, conversation: u64, seq: u64) -> Result<()> {
        writer::drop_before(&self.inner, conversation, seq)
    }

    /// Write and `fdatasync` everything staged (sealing segments as they
    /// fill); returns [`HistoryStore::durable_source`]. A failure is sticky.
    pub async fn sync(&self) -> Result<u64> {
        writer::sync(&self.inner).await
    }

    /// Highest `source` among the durable entries; every entry appended
    /// before the last successful `sync` is durable. The caller may truncate
    /// its log below it (not at it: one source may carry several entries).
    pub fn durable_source(&self) -> u64 {
        self.inner.state.borrow().durable_source
    }

    /// Up to `max_entries` durable messages of `conversation` with
    /// `seq >= from_seq`, ascending, at most `max_bytes` of payload (at
    /// least one entry). [`Page::StartsAt`] if `from_seq` lies below where
    /// the conversation's history now starts.
    pub async fn read(
        &self,
        conversation: u64,
        from_seq: u64,
        max_entries: u64,
        max_bytes: u64,
    ) -> Result<Page> {
        read::read(&self.inner, conversation, from_seq, max_entries, max_bytes).await
    }

    /// Up to `max_entries` durable messages with `seq < before_seq`, newest
    /// first (History pages). [`Page::StartsAt`] if nothing below
    /// `before_seq` is left because retention removed it.
    pub async fn read_before(
        &self,
        conversation: u64,
        before_seq: u64,
        max_entries: u64,
        max_bytes: u64,
    ) -> Result<Page> {
        read::read_before(
            &self.inner,
            conversation,
            before_seq,
            max_entries,
            max_bytes,
        )
        .await
    }

    /// Up to `max_entries` durable messages of every conversation whose
    /// source is above `after_source`, in the order they were appended
    /// (sources ascending), at most `max_bytes` of payload (at least one
    /// entry when there is one; bounds clamped to a History page's).
    /// Continue from the last entry's source: a replica copies a peer's
    /// store this way (`after_source` = what its own store holds).
    pub async fn scan(
        &self,
        after_source: u64,
        max_entries: u64,
        max_bytes: u64,
    ) -> Result<Vec<ScannedEntry>> {
        scan::scan(&self.inner, after_source, max_entries, max_bytes).await
    }

    /// Delete sealed segments, oldest first, while more than `keep_sealed`
    /// remain (if given) or every conversation in the oldest is below its
    /// retention point. The newest sealed segment is never deleted.
    pub async fn apply_retention(&self, keep_sealed: Option<u64>) -> Result<RetentionReport> {
        retention::apply_retention(&self.inner, keep_sealed).await
    }

    /// The active segment's number and the offset just past its last
    /// durable entry: its bytes below never change (a consistent copy of
    /// a live store takes them and zeros after; sealed segments below it
    /// never change at all).
    pub fn active_end(&self) -> (u64, u64) {
        let st = self.inner.state.borrow();
        (st.active.number, st.active.durable_end)
    }

    /// Memory held now, by part.
    pub fn memory(&self) -> HistoryMemory {
        let mut memory = self.inner.state.borrow().memory();
        memory.cache_bytes = self.inner.cache.borrow().bytes();
        memory
    }

    /// Sync what is staged, then refuse further calls and close files.
    pub async fn close(&self) -> Result<u64> {
        let durable = self.sync().await?;
        self.inner.state.borrow_mut().closed = true;
        self.inner.files.borrow_mut().clear();
        Ok(durable)
    }
}
