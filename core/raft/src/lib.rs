//! `courier-raft`: many Raft groups per core sharing one log.
//!
//! Courier replicates each shard with a Raft group (TiKV's `raft` crate,
//! sans-IO `RawNode`), and a core hosts many groups — leaders and followers
//! of different shards — over **one** write-ahead log. This crate is the
//! engine between them, as deterministic and I/O-free as courier-core: a
//! [`RaftCore`] per core takes inputs (ticks, peer messages, proposals,
//! "batch N is durable") and produces, in one [`CoreReady`] for all its
//! groups, the records to append to the core's WAL, the messages to send
//! and the committed entries to apply. One fsync covers every group's
//! records of a batch.
//!
//! # Use
//!
//! ```text
//! loop {
//!     core.tick() / core.step(msg) / core.propose(group, bytes) / core.compact(..)
//!     let rd = core.ready(&mut state_machines);
//!     send rd.messages; apply rd.applies in order; redirect on rd.roles
//!     if let Some(token) = rd.token {
//!         first = wal.append(kind, payload) for each of rd.records (consecutively)
//!         wal.wait_durable(last).await;  core.persisted(token, first)
//!     }
//! }
//! ```
//!
//! After a restart, [`RaftCore::recover`] rebuilds every group from the
//! records read back ([`record::is_raft_kind`]), returning the snapshots
//! to restore; the committed entries after them are applied again.
//!
//! # What it must never do
//!
//! - Report an entry in [`CoreReady::applies`] before the batch holding it
//!   was reported durable with [`RaftCore::persisted`], or a snapshot
//!   before its own batch was; send a message raft allows only after
//!   persistence (votes, append acknowledgements) before that either.
//! - Apply out of order: per group, applies are consecutive log indexes
//!   (asserted), snapshots replace everything before them.
//! - Let a node that is not the leader accept a proposal (typed
//!   [`ProposeError::NotLeader`] naming the leader), or a leader without a
//!   quorum stay leader: `check_quorum` and `pre_vote` are always on.
//! - Grow without bound: a group keeps at most `entries_hard_max`
//!   uncompacted entries (then proposals are refused with
//!   [`ProposeError::LogFull`] until the caller compacts), at most one cached
//!   snapshot, and what the caller has not yet taken from `ready`.
//! - Panic on bytes read back from the WAL: decoding is checked and typed
//!   ([`DecodeError`], [`Error::Decode`], [`Error::Inconsistent`]).
//! - Do I/O, read clocks or spawn anything: no glommio, no tokio, no files.
//!
//! Messages between nodes ([`GroupMessage`]) are raft's protobuf and are
//! trusted: they must only come from the nodes of the same cluster.
//!
//! # Layout
//!
//! - [`constants`]: every limit and default.
//! - `core.rs`: [`RaftCore`] — groups, batching, proposals, compaction.
//! - `recover.rs`: [`RaftCore::recover`].
//! - `storage.rs`: a group's in-memory log ([`raft::Storage`]).
//! - [`record`]: WAL record kinds and their encoding.
//! - [`message`]: the encoding of messages between nodes.
//! - [`replica`]: Courier's replicated data path for one core (records as
//!   entries, follower replay, promotion, crash-only demotion, compaction,
//!   fetch), sans-IO, driven by courier-net and by the cluster simulation.
//! - `types.rs`: ids, [`CoreConfig`], [`CoreReady`] and its parts.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod constants;
mod core;
mod error;
pub mod message;
pub mod record;
mod recover;
pub mod replica;
mod storage;
mod types;

pub use crate::core::RaftCore;
/// The byte buffer type of entries and snapshots.
pub use bytes::Bytes;
pub use error::{DecodeError, Error, ProposeError, Result};
pub use message::GroupMessage;
/// raft's protobuf types, for callers that inspect messages.
pub use raft::eraftpb;
pub use recover::Recovered;
pub use types::{
    Apply, ApplySnapshot, BatchToken, CoreConfig, CoreReady, GroupId, Lsn, NodeId, Role,
    RoleChange, SnapshotSource,
};
