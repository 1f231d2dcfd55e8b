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

/// Cluster mode: requests one connection may have in flight (forwarded by
/// its core's edge and not answered yet). One more is refused at once with
/// `Unavailable` (cause `Overloaded`); the client library keeps far fewer
/// (the TypeScript SDK at most 256). Bounds the edge's per-connection
/// record of what to answer if the primary changes (docs/CLUSTER.md,
/// "Clients on any node").
pub const REQUESTS_IN_FLIGHT_PER_CONN_MAX: usize = 4_096;

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

/// Requests per second one workspace's sessions may make on one shard, over
/// all its users (bursts of twice that). Beyond it requests are *paced*
/// (the connection's reader waits for a token, so the socket pushes back),
/// not refused: a noisy tenant then costs the shard at most this many
/// requests per second and no retry storm, and every other workspace keeps
/// its latency. 1,000/s per core is far above what people type (a 10K-user
/// workspace sending one message per user per 10 s spreads 1,000/s over
/// every shard) and about 1–2 % of what one shard can sequence.
pub const RATE_WORKSPACE_PER_SEC_DEFAULT: u32 = 1_000;

const _: () = assert!(RATE_WORKSPACE_PER_SEC_DEFAULT >= RATE_USER_PER_SEC_DEFAULT);

/// Longest single wait of a paced request before it checks again (a
/// closing connection stops waiting at the next check).
pub const PACE_WAIT_MAX: Duration = Duration::from_millis(100);

/// Undecodable frames tolerated on one connection before it is closed.
pub const BAD_FRAMES_MAX: u32 = 16;

/// Bytes tungstenite takes from a connection at once: its read buffer,
/// allocated per connection for the connection's lifetime (plus, while a
/// frame is arriving, room for that frame). Small, because every idle
/// connection holds it; socket reads are larger (`SOCKET_READ_BYTES`).
pub const WS_READ_BUFFER_BYTES: usize = 256;

/// Bytes read from a socket at once, into one buffer per shard shared by
/// all its connections (`gateway::LeanStream`): whatever tungstenite did
/// not take yet is kept by the connection until it does.
pub const SOCKET_READ_BYTES: usize = 16 * 1024;

const _: () = assert!(WS_READ_BUFFER_BYTES >= 14); // a whole frame header
const _: () = assert!(SOCKET_READ_BYTES >= WS_READ_BUFFER_BYTES);

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

/// Records in the WAL since the last snapshot that trigger a new one (the
/// default of `snapshot_every_records`).
pub const SNAPSHOT_EVERY_RECORDS: u64 = 200_000;
/// The smallest `snapshot_every_records` accepted.
pub const SNAPSHOT_EVERY_RECORDS_MIN: u64 = 1_000;
/// How often a snapshot that must follow one being taken (shutdown, a
/// backup) looks whether that one is done.
pub const SNAPSHOT_BUSY_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Messages read back from the history store for one core request at
/// most. The core reads one `History` page at a time (`HISTORY_PAGE_MAX`
/// messages, checked below at compile time); the runtime asserts it on
/// every read.
pub const READ_BATCH_RECORDS_MAX: usize = 4096;

/// Payload bytes one history-store read may return (the store's
/// `max_bytes`): a whole page of the largest messages
/// (`HISTORY_PAGE_MAX` × (`MESSAGE_BYTES_MAX` + 1 KiB of record
/// encoding), checked below), so the core gets the whole range and cuts
/// it to `HISTORY_PAGE_BYTES_MAX` itself.
pub const HISTORY_READ_BYTES_MAX: u64 = 4 << 20;

const _: () = assert!(
    courier_core::constants::HISTORY_PAGE_MAX as u64
        * (courier_core::constants::MESSAGE_BYTES_MAX as u64 + 1024)
        <= HISTORY_READ_BYTES_MAX
);

const _: () = assert!(courier_core::constants::HISTORY_PAGE_MAX as usize <= READ_BATCH_RECORDS_MAX);

const _: () = assert!(PEER_QUEUE_HIGH_WATER >= PEER_CHANNEL_CAPACITY);
const _: () =
    assert!(OUTBOX_BYTES_MAX_DEFAULT >= 2 * courier_proto::constants::SERVER_FRAME_BYTES_MAX);

/// The grace shutdown gives cross-shard requests already in flight.
pub const SHUTDOWN_PEER_GRACE: Duration = Duration::from_millis(100);

/// How long shutdown waits for the WAL to make what was appended durable.
pub const SHUTDOWN_DURABLE_WAIT: Duration = Duration::from_secs(5);

/// How long shutdown waits for the durability task to report what was
/// appended (the WAL made it durable just before; this only covers the
/// task's turn on the executor).
pub const SHUTDOWN_REPORT_WAIT: Duration = Duration::from_millis(500);

/// How long shutdown waits for every connection to be closed and forgotten.
pub const SHUTDOWN_CONNS_WAIT: Duration = Duration::from_secs(2);
