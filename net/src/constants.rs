//! Limits of the daemon's runtime. Defaults here; most can be changed in the
//! config file (see docs/OPERATIONS.md). Every queue the runtime owns is
//! bounded by one of these.

use std::time::Duration;

/// Shards at most (ids are 16-bit; more than 1,024 cores is not a machine we run on).
pub const SHARDS_MAX: u16 = 1024;

/// Messages in flight on one cross-shard channel (each direction, each pair).
pub const PEER_CHANNEL_CAPACITY: usize = 4096;

/// Cross-shard messages queued locally for one peer before this shard stops
/// reading client sockets (backpressure instead of unbounded memory).
pub const PEER_QUEUE_HIGH_WATER: usize = 16 * 1024;

/// Bytes queued for one socket before it is cut off as a slow consumer.
pub const OUTBOX_BYTES_MAX_DEFAULT: usize = 8 * 1024 * 1024;

/// Time allowed for the HTTP upgrade request to arrive.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of an HTTP request head we read before refusing it.
pub const HTTP_HEAD_BYTES_MAX: usize = 8 * 1024;

/// Time allowed between the upgrade and a successful `Hello`.
pub const PREAUTH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// A connection that sends nothing (not even a pong) for this long is closed.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// The server pings every connection this often (or every third of the idle
/// timeout, if that is shorter), busy or not.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// Connections per shard at most; more are refused at accept.
pub const CONNECTIONS_PER_SHARD_MAX_DEFAULT: usize = 200_000;

/// Requests per second one connection may make (bursts of twice that).
/// A person types far slower; a reconnecting client's sync and history
/// pages fit in the burst.
pub const RATE_CONN_PER_SEC_DEFAULT: u32 = 100;

/// Requests per second one user may make on one shard, over all devices.
pub const RATE_USER_PER_SEC_DEFAULT: u32 = 200;

const _: () = assert!(RATE_USER_PER_SEC_DEFAULT >= RATE_CONN_PER_SEC_DEFAULT);

/// Undecodable frames tolerated on one connection before it is closed.
pub const BAD_FRAMES_MAX: u32 = 16;

/// Bytes tungstenite reads from a socket at once (allocated per connection).
pub const WS_READ_BUFFER_BYTES: usize = 4 * 1024;

/// Interval of `Input::Tick` and of publishing per-shard metrics.
pub const TICK_INTERVAL: Duration = Duration::from_millis(50);

/// Smallest WAL segment courierd accepts, in MiB: a segment holds its
/// header block and at least one record of the WAL's largest size.
pub const SEGMENT_MIB_MIN: u64 = (courier_wal::constants::RECORD_BYTES_LIMIT
    + courier_wal::constants::SEGMENT_HEADER_BYTES)
    .div_ceil(1024 * 1024);

/// Largest WAL segment courierd accepts, in MiB (the WAL's own maximum).
pub const SEGMENT_MIB_MAX: u64 = courier_wal::constants::SEGMENT_BYTES_MAX / (1024 * 1024);

const _: () = assert!(SEGMENT_MIB_MIN <= 64 && 64 <= SEGMENT_MIB_MAX);

/// Records in the WAL since the last snapshot that trigger a new one.
pub const SNAPSHOT_EVERY_RECORDS: u64 = 200_000;

/// Records read back from the WAL for one core request at most (the core
/// bounds its own requests well below this).
pub const READ_BATCH_RECORDS_MAX: usize = 4096;

const _: () = assert!(PEER_QUEUE_HIGH_WATER >= PEER_CHANNEL_CAPACITY);
const _: () =
    assert!(OUTBOX_BYTES_MAX_DEFAULT >= 2 * courier_proto::constants::SERVER_FRAME_BYTES_MAX);
