//! The one error type of the crate: every variant carries the context needed to
//! act on it (file, offset, LSN, limit) without a log line.
//!
//! Failure contract: an I/O error while writing or syncing the log is sticky.
//! The log stops, every pending and future append or wait gets
//! [`Error::Failed`] carrying the first cause, and nothing after the failure
//! is acknowledged. Reopening the log (a restart) is the only way back.

use std::{io, path::PathBuf, sync::Arc};

use crate::Lsn;

/// Result type of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the write-ahead log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing (`"fdatasync"`, `"write"`, …).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The file system ran out of space (`ENOSPC`). Nothing acknowledged is
    /// affected: free space and reopen the log.
    #[error("no space left on device: {op} {path}")]
    NoSpace {
        /// What we were doing.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
    },

    /// The log directory is on a file system without `O_DIRECT` (tmpfs, …).
    #[error("{path} does not support direct I/O (O_DIRECT): {reason}; put the log on a disk-backed file system such as ext4 or xfs")]
    DirectIoUnsupported {
        /// The log directory.
        path: PathBuf,
        /// What the check found.
        reason: String,
    },

    /// Data on disk is damaged in a way that is not a torn write at the tail.
    /// The log refuses to open; an explicit repair tool may salvage it.
    #[error("corrupt write-ahead log: {segment} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file (segment or snapshot).
        segment: PathBuf,
        /// Byte offset in that file of the first damaged record or header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// The log directory is inconsistent as a whole (a missing segment, a
    /// snapshot the records cannot follow, another shard's files).
    #[error("inconsistent write-ahead log directory {dir}: {reason}")]
    Inconsistent {
        /// The log directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The log failed earlier (sticky failure) and refuses all further work.
    #[error("write-ahead log failed earlier and stopped: {cause}")]
    Failed {
        /// The first error, shared by everyone who is told about it.
        cause: Arc<Error>,
    },

    /// The append queue is full; nothing was appended. Wait for room with
    /// [`crate::Wal::wait_for_room`] (or for durability of earlier records) and retry.
    #[error("append queue full: {queued_records} records / {queued_bytes} bytes not yet durable (max {records_max} / {bytes_max})")]
    Backpressure {
        /// Records appended but not yet durable.
        queued_records: u64,
        /// Bytes appended but not yet durable.
        queued_bytes: u64,
        /// The record bound.
        records_max: u64,
        /// The byte bound.
        bytes_max: u64,
    },

    /// Too many `wait_durable` futures are registered at once.
    #[error("too many durability waiters ({max})")]
    TooManyWaiters {
        /// The bound ([`crate::WalOptions::waiters_max`]).
        max: u64,
    },

    /// A payload is larger than [`crate::WalOptions::record_bytes_max`] allows.
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// The payload length.
        len: u64,
        /// The largest payload accepted.
        max: u64,
    },

    /// An LSN outside what the log holds: not yet appended, not yet durable
    /// (for reads), or already deleted by retention.
    #[error("LSN {lsn} is out of range: the log holds {first} ..= {last}")]
    LsnOutOfRange {
        /// The LSN asked for.
        lsn: Lsn,
        /// The oldest LSN still retained.
        first: Lsn,
        /// The newest LSN available for this operation.
        last: Lsn,
    },

    /// A snapshot request that cannot be honoured.
    #[error("snapshot at LSN {lsn} rejected: {reason}")]
    SnapshotRejected {
        /// The LSN the snapshot claims to cover.
        lsn: Lsn,
        /// Why.
        reason: String,
    },

    /// An option is outside its documented bounds.
    #[error("invalid WalOptions.{field}: {reason}")]
    InvalidOptions {
        /// The option.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },

    /// The log was closed (or is closing); nothing more is accepted.
    #[error("write-ahead log is closed")]
    Closed,

    /// The history store ([`crate::history`]) refused an append; nothing was
    /// staged. A caller bug, not damage: the store stays usable.
    #[error("history store refused conversation {conversation} seq {seq} from source {source_position}: {rejection}")]
    HistoryRejected {
        /// The conversation.
        conversation: u64,
        /// The seq given.
        seq: u64,
        /// The log position (WAL LSN or Raft index) given.
        source_position: u64,
        /// Why.
        rejection: HistoryRejection,
    },
}

/// Why the history store refused an append (see [`Error::HistoryRejected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryRejection {
    /// The seq is not above the conversation's last seq, and the source is
    /// new (above every source seen): not a replay of a stored entry.
    #[error("seq is not above the conversation's last seq {last_seq}")]
    SeqNotIncreasing {
        /// The conversation's highest seq so far (stored or staged).
        last_seq: u64,
    },
    /// Seq 0 is not a seq (seqs start at 1).
    #[error("seq 0 is not a seq")]
    SeqZero,
    /// A new entry whose source is below one already appended: the store
    /// could not say how far it got.
    #[error("source is below the highest source {highest} already appended")]
    SourceDecreasing {
        /// The highest source appended so far.
        highest: u64,
    },
    /// The payload is larger than an entry can carry.
    #[error("payload of {len} bytes exceeds {max}")]
    PayloadTooLarge {
        /// The payload length.
        len: u64,
        /// The largest payload.
        max: u64,
    },
    /// The store tracks its maximum number of conversations.
    #[error("the store already tracks {max} conversations")]
    TooManyConversations {
        /// `HISTORY_CONVERSATIONS_LIMIT`.
        max: u64,
    },
}

impl Error {
    /// The underlying cause: for [`Error::Failed`] the first error, else `self`.
    pub fn root_cause(&self) -> &Error {
        match self {
            Error::Failed { cause } => cause.root_cause(),
            other => other,
        }
    }

    /// True if the root cause is running out of disk space.
    pub fn is_no_space(&self) -> bool {
        matches!(self.root_cause(), Error::NoSpace { .. })
    }

    /// Wrap an I/O error from `op` on `path`, turning `ENOSPC` into [`Error::NoSpace`].
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Error {
        let source: io::Error = source.into();
        let path = path.into();
        // glommio wraps OS errors in its own messages, keeping only the kind.
        if source.raw_os_error() == Some(libc::ENOSPC)
            || source.kind() == io::ErrorKind::StorageFull
        {
            Error::NoSpace { op, path }
        } else {
            Error::Io { op, path, source }
        }
    }

    pub(crate) fn corrupt(
        segment: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corrupt {
            segment: segment.into(),
            offset,
            reason: reason.into(),
        }
    }
}
