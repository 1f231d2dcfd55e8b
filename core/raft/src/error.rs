//! Typed errors of `courier-raft`: decoding ([`DecodeError`], for records
//! read back from the WAL and messages from peers), proposals
//! ([`ProposeError`], a domain refusal the caller turns into a redirect) and
//! everything else ([`Error`]).

use crate::{GroupId, NodeId};

/// Bytes that are not a valid record or message. Never a panic: every
/// length and count is checked against the input before it is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside `what`.
    #[error("truncated: input ended inside {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// The first byte is not a format version this build reads.
    #[error("unknown format version {found}")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// The record kind is not one of [`crate::record`]'s kinds.
    #[error("unknown record kind {kind:#04x}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// Bytes left over after a complete record.
    #[error("{count} trailing bytes after the record")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A field has a value no writer produces.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The protobuf body of a message did not parse.
    #[error("message body: {0}")]
    Protobuf(String),
}

/// A proposal the engine refused; nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node does not lead the group: redirect to `leader` if known.
    #[error("group {group}: not the leader (leader: {leader:?}, term {term})")]
    NotLeader {
        /// The group.
        group: GroupId,
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
        /// This node's current term in the group.
        term: u64,
    },
    /// No such group on this core.
    #[error("group {group} is not hosted here")]
    UnknownGroup {
        /// The group.
        group: GroupId,
    },
    /// The payload is larger than [`crate::constants::PROPOSAL_BYTES_MAX`].
    #[error("proposal of {bytes} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The group holds [`crate::constants::ENTRIES_HARD_MAX`] uncompacted
    /// entries: the caller must compact it (snapshot) first.
    #[error("group {group}: {entries} uncompacted entries, compaction needed")]
    LogFull {
        /// The group.
        group: GroupId,
        /// Entries held.
        entries: u64,
    },
    /// raft dropped it (e.g. a leadership transfer is in progress).
    #[error("group {group}: proposal dropped by raft")]
    Dropped {
        /// The group.
        group: GroupId,
    },
}

/// Every other failure of the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A record read back from the log did not decode; `lsn` locates it.
    #[error("record at LSN {lsn}: {source}")]
    Decode {
        /// Position of the record in the WAL.
        lsn: u64,
        /// What was wrong.
        source: DecodeError,
    },
    /// Records that decode but cannot follow each other (a gap in a group's
    /// entries, a snapshot chunk out of place, a hard state beyond the log).
    #[error("record at LSN {lsn}, group {group}: {reason}")]
    Inconsistent {
        /// Position of the record in the WAL.
        lsn: u64,
        /// The group.
        group: GroupId,
        /// What is inconsistent.
        reason: String,
    },
    /// No such group on this core.
    #[error("group {group} is not hosted here")]
    UnknownGroup {
        /// The group.
        group: GroupId,
    },
    /// A message addressed to another node reached this one.
    #[error("group {group}: message for node {to} stepped on node {node}")]
    Misaddressed {
        /// The group.
        group: GroupId,
        /// The message's destination.
        to: u64,
        /// This node.
        node: NodeId,
    },
    /// `create_group` for a group that exists.
    #[error("group {group} already exists")]
    GroupExists {
        /// The group.
        group: GroupId,
    },
    /// A voter set that is empty, too large, has duplicates or lacks this node.
    #[error("group {group}: invalid voters {voters:?}: {reason}")]
    InvalidVoters {
        /// The group.
        group: GroupId,
        /// The voters given.
        voters: Vec<u64>,
        /// Why.
        reason: &'static str,
    },
    /// `persisted` with a token that is not the oldest batch in flight.
    #[error("persisted({got}) but the oldest batch in flight is {expected:?}")]
    UnexpectedToken {
        /// The token reported.
        got: u64,
        /// The oldest in flight, if any.
        expected: Option<u64>,
    },
    /// `compact` at an index the engine cannot snapshot at.
    #[error("group {group}: cannot compact at {index}: {reason}")]
    InvalidCompaction {
        /// The group.
        group: GroupId,
        /// The index asked for.
        index: u64,
        /// Why.
        reason: String,
    },
    /// raft refused a call (a message for another node, an unknown peer, an
    /// invalid configuration).
    #[error("group {group}: raft: {source}")]
    Raft {
        /// The group.
        group: GroupId,
        /// raft's error.
        source: raft::Error,
    },
}

/// Result of the engine's fallible calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
