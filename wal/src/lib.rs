//! `courier-wal`: the per-core write-ahead log of Courier.
//!
//! One [`Wal`] per shard (one glommio executor, one core) holds the
//! authoritative record of everything that shard decided. Callers append
//! opaque payloads tagged with a one-byte kind and get a log sequence number
//! ([`Lsn`]: 1, 2, 3, … with no gaps, across segments); they learn that a
//! record is durable from [`Wal::wait_durable`] and only then act on it
//! (ack, fan out, notify). The log knows nothing of messages: payloads are
//! bytes (rkyv archives in Courier) and come back 16-byte aligned so they can
//! be validated in place.
//!
//! # Design
//!
//! - **Group commit.** `append` is synchronous: it copies the record into a
//!   bounded staging queue and returns its LSN. A writer task owned by the log
//!   takes everything staged (up to the batch bounds), writes it with one
//!   direct-I/O write and one `fdatasync`, then completes that batch's waiters
//!   in LSN order. Records appended while a batch is in flight form the next
//!   batch, so batches grow with load and no timer is involved.
//! - **Segments** are fixed-size files, prepared ahead of time (preallocated
//!   and zero-filled, so record writes are pure overwrites), installed with
//!   header + fdatasync + rename + directory fsync before anything in them is
//!   acknowledged, and deleted whole by retention.
//! - **Recovery** verifies every retained record, truncates (zeroes) a torn
//!   tail, and refuses to open on any other damage, naming file and offset.
//! - **Snapshots** are caller blobs written atomically and verified on open.
//!
//! # What it must never do
//!
//! - Acknowledge a record (complete its `wait_durable`) before the
//!   `fdatasync` of its batch returned successfully.
//! - Retry a failed write or `fdatasync`: the first failure is sticky, every
//!   waiter and every later call gets [`Error::Failed`], a restart recovers.
//! - Return bytes that did not verify, or silently skip damaged data.
//! - Grow without bound: the append queue, batches, waiters, the in-memory
//!   index and every buffer have documented limits ([`constants`], [`WalOptions`]).
//!
//! # Layout
//!
//! - [`constants`]: every limit, with compile-time checks.
//! - [`format`](mod@format): on-disk layout as pure functions (shared with the inspector).
//! - `options.rs`: [`WalOptions`] and the test-only [`Faults`].
//! - `storage.rs`: the only code that touches files; fault injection.
//! - `wal.rs`: the [`Wal`] handle (append, wait, read, snapshot, retention).
//! - `writer.rs`: the group-commit writer task and segment rolls.
//! - `recovery.rs`: open-time verification and torn-tail repair.
//! - `scan.rs`, `read.rs`: reading records; `segment.rs`: the sparse index.
//! - `snapshot.rs`, `counters.rs`, `state.rs`, `error.rs`.
//! - [`history`]: the per-shard history store (committed messages apart from
//!   the log, indexed by conversation and seq; not yet used by the core).
//!
//! The byte layout, recovery rules and durability guarantees (and their
//! limits) are in `docs/WAL.md`.

#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod constants;
mod counters;
mod error;
pub mod format;
pub mod history;
mod options;
mod read;
mod recovery;
mod scan;
mod segment;
mod snapshot;
mod state;
mod storage;
mod wal;
mod writer;

pub use counters::Counters;
pub use error::{Error, HistoryRejection, Result};
pub use options::{FaultPoint, Faults, SyncMode, WalOptions};
pub use read::{Payload, Reader, Record};
pub use recovery::{InvalidSnapshot, OpenStats, Recovered, Snapshot, TailTruncation};
pub use snapshot::SnapshotPiece;
pub use storage::fs_type_name;
pub use wal::Wal;

use std::fmt;

/// Log sequence number: the position of a record in one shard's log.
/// The first record is `Lsn(1)`; `Lsn(0)` means "none".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// No record.
    pub const ZERO: Lsn = Lsn(0);

    /// The following LSN.
    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
