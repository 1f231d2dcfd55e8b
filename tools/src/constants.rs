//! Limits and timings of the client library. Every queue the library owns is
//! bounded by one of these; the defaults can be changed per connection through
//! [`crate::ConnectOptions`] and [`crate::ClientOptions`].

use std::time::Duration;

/// Requests awaiting a reply on one connection at most (the default of
/// [`crate::ConnectOptions::in_flight_max`]). A caller past the bound waits
/// for a slot; the pending-reply table never holds more entries.
pub const IN_FLIGHT_MAX_DEFAULT: usize = 256;

/// Events buffered between a connection's socket reader and its consumer at
/// most (the default of [`crate::ConnectOptions::event_queue_max`]). When the
/// consumer falls behind, further events are dropped and it is told
/// [`crate::Incoming::Lagged`]; a [`crate::Session`] then re-syncs.
pub const EVENT_QUEUE_MAX_DEFAULT: usize = 4096;

/// Server URLs one client may be given at most (`--server ws://a,ws://b`,
/// the nodes of a cluster it may fail over between).
pub const SERVERS_MAX: usize = 16;

/// Time allowed for TCP connect + WebSocket upgrade + `Hello`/`Welcome`.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// Time allowed for one request's reply.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// The client pings a quiet server this often (the server pings every 20 s
/// and closes a connection after 60 s of silence).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

/// A server silent for this long (not even a pong) is taken for gone: the
/// connection is closed and a [`crate::Session`] reconnects.
pub const SERVER_SILENCE_MAX: Duration = Duration::from_secs(45);

/// A frame the server does not take within this long (its socket buffer
/// stays full) ends the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// First reconnect delay; doubles per failed attempt up to
/// [`BACKOFF_MAX`], with full jitter.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(50);

/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Longest pause after a round of servers that all refused the session
/// with 4011 `NOT_SERVING` (none is the primary yet: an election or a
/// failover is under way, which takes about a second). The backoff delay
/// applies, capped at this, so a failover costs a reconnect, not seconds.
pub const NOT_SERVING_RETRY_MAX: Duration = Duration::from_millis(200);

/// Messages asked for in one `History` request during gap repair (the
/// server's `HISTORY_PAGE_MAX`).
pub const HISTORY_PAGE: u32 = 100;

/// Out-of-order messages buffered per conversation while its gap is being
/// repaired. Messages past the bound are dropped and fetched again by the
/// repair, which runs up to the conversation's known head.
pub const PENDING_PER_CONVERSATION_MAX: usize = 1024;

/// Conversations a cursor file may name (the server's per-user maximum is
/// 10,000); a longer file is refused as corrupt.
pub const CURSOR_FILE_CONVERSATIONS_MAX: usize = 100_000;

/// How often a session writes its cursor file while messages flow.
pub const CURSOR_SAVE_INTERVAL: Duration = Duration::from_millis(500);

/// How long `courier admin backup` waits for the server's report at
/// least (the server gives up after `courier_net::backup::BACKUP_TIMEOUT`,
/// 10 minutes).
pub const BACKUP_WAIT: Duration = Duration::from_secs(660);

/// Largest frame the client accepts from the server (one WebSocket message).
pub const SERVER_FRAME_BYTES_MAX: usize = courier_proto::constants::SERVER_FRAME_BYTES_MAX;

const _: () = assert!(BACKOFF_INITIAL.as_millis() < BACKOFF_MAX.as_millis());
const _: () = assert!(PING_INTERVAL.as_secs() * 2 < SERVER_SILENCE_MAX.as_secs());
const _: () = assert!(PENDING_PER_CONVERSATION_MAX >= HISTORY_PAGE as usize);
