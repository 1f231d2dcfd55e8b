//! Every limit and default of `courier-raft`, in one place, with the
//! compile-time checks of how they relate (see docs/CLUSTER.md, "Raft per
//! shard: the engine").

/// Version byte at the start of every record payload this crate writes.
/// Decoding any other value is [`crate::DecodeError::Version`].
pub const RECORD_FORMAT_VERSION: u8 = 1;

/// Version byte at the start of every encoded message between nodes.
pub const MESSAGE_FORMAT_VERSION: u8 = 1;

/// Largest record payload the engine emits. Mirrors courier-wal's
/// `RECORD_PAYLOAD_BYTES_LIMIT` (1 MiB record minus its 32-byte header),
/// which this crate cannot import: courier-wal depends on glommio.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 1024 * 1024 - 32;

/// Bytes of one record's fixed header: version (1) + group (4) + the
/// largest kind-specific header (the snapshot chunk's, see `record.rs`).
pub const RECORD_HEADER_BYTES_MAX: usize = 128;

/// Largest voter set of a group (Courier's replication factor is 1..=7).
pub const VOTERS_MAX: usize = 7;

/// Largest payload of one proposal. With the entry's own header it always
/// fits in one record, so an entry never spans records.
pub const PROPOSAL_BYTES_MAX: usize = 512 * 1024;

/// Bytes of snapshot data carried by one snapshot-chunk record.
pub const SNAPSHOT_CHUNK_BYTES: usize = 512 * 1024;

/// Largest state-machine snapshot of one group (caller's bytes). A larger
/// one is refused by [`crate::RaftCore::compact`] and by decoding.
pub const SNAPSHOT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Uncompacted entries per group above which the engine asks the caller for
/// a snapshot ([`crate::CoreReady::compact_wanted`]).
pub const ENTRIES_SOFT_MAX: u64 = 4_096;

/// Uncompacted entries per group at which the leader refuses proposals
/// ([`crate::ProposeError::LogFull`]) until the caller compacts. This is
/// the memory bound of a group's log: at most this many entries of at most
/// [`PROPOSAL_BYTES_MAX`] each (plus what an in-flight batch appends).
pub const ENTRIES_HARD_MAX: u64 = 16_384;

/// Ticks a leader waits for a follower to leave the snapshot state before
/// it reports the snapshot as failed (lost on the network) and retries.
pub const SNAPSHOT_RETRY_TICKS: u64 = 30;

/// Ticks a snapshot obtained from the [`crate::SnapshotSource`] is kept to
/// serve lagging followers before it is dropped (memory bound: at most one
/// cached snapshot per group).
pub const SNAPSHOT_CACHE_TICKS: u64 = 50;

/// Default: ticks between heartbeats. At Courier's 100 ms tick: 200 ms.
pub const HEARTBEAT_TICKS_DEFAULT: usize = 2;

/// Default: election timeout in ticks (1 s at 100 ms: a follower's lease
/// and a leader's quorum check); the randomized timeout is drawn in
/// `[ELECTION_TICKS_DEFAULT, ELECTION_TICKS_DEFAULT +
/// ELECTION_SPREAD_TICKS_DEFAULT)`: 1.0–1.5 s.
pub const ELECTION_TICKS_DEFAULT: usize = 10;

/// Default: width of the randomized election timeout's range. Half the
/// base, not raft's usual whole base: a failover waits for the first
/// survivor's timeout, so the range's top bounds it (1.5 s instead of
/// 2 s), while the base — what decides whether a slow leader is deposed —
/// stays. Five 100 ms steps still part two campaigns: they collide only
/// when both fire within a round trip.
pub const ELECTION_SPREAD_TICKS_DEFAULT: usize = 5;

/// Default: append messages in flight per follower.
pub const INFLIGHT_MSGS_DEFAULT: usize = 256;

/// Default: entry bytes per append message (one WAL record's worth).
pub const MSG_BYTES_DEFAULT: u64 = 1024 * 1024;

/// Default: bytes of proposed-but-uncommitted entries a leader accepts.
pub const UNCOMMITTED_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Default: bytes of committed entries handed out per group per ready.
pub const COMMITTED_BYTES_PER_READY_DEFAULT: u64 = 16 * 1024 * 1024;

const _: () = assert!(PROPOSAL_BYTES_MAX + RECORD_HEADER_BYTES_MAX <= RECORD_PAYLOAD_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES + RECORD_HEADER_BYTES_MAX <= RECORD_PAYLOAD_BYTES_MAX);
const _: () = assert!(ENTRIES_SOFT_MAX < ENTRIES_HARD_MAX);
const _: () = assert!(HEARTBEAT_TICKS_DEFAULT < ELECTION_TICKS_DEFAULT);
const _: () = assert!(ELECTION_SPREAD_TICKS_DEFAULT >= 1);
