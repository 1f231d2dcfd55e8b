//! Limits and timings of node-to-node links (docs/LINKS.md). Every queue and
//! buffer of the link layer is bounded by one of these; the relations
//! between them are checked at compile time below.

use std::time::Duration;

/// First eight bytes of every connection, sent by the connecting side.
pub const MAGIC: [u8; 8] = *b"CourLink";

/// Version of the link protocol (handshake and frames). A node refuses a
/// peer that speaks another version.
pub const VERSION: u16 = 1;

/// Bytes of the connecting side's handshake.
pub const HANDSHAKE_BYTES: usize = 48;

/// Bytes of the accepting side's handshake reply.
pub const REPLY_BYTES: usize = 36;

/// Bytes of a frame header: body length (u32) and CRC32C of the body (u32).
pub const FRAME_HEADER_BYTES: usize = 8;

/// Bytes of a message header inside a frame body: destination core (u16),
/// source core (u16), kind (u8), payload length (u32).
pub const MESSAGE_HEADER_BYTES: usize = 9;

/// Largest frame, header included. A peer announcing a longer body is cut
/// off before anything is allocated for it. 4 MiB leaves room for a Raft
/// append of many entries or a snapshot chunk while keeping what one
/// connection can make a node buffer small.
pub const FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Largest payload of one message: what is left of a frame after its
/// header and one message header. `LinkHandle::send` refuses larger ones.
pub const PAYLOAD_BYTES_MAX: usize = FRAME_BYTES_MAX - FRAME_HEADER_BYTES - MESSAGE_HEADER_BYTES;

/// The writer closes a frame once its body passes this many bytes and
/// starts another one in the same write (a batch is one `write_all` of one
/// or a few frames). Smaller frames bound the receiver's buffer per frame
/// and the work redone by its checksum when a frame is torn.
pub const FRAME_TARGET_BYTES: usize = 256 * 1024;

/// Payload bytes a writer takes from its queue for one write (a batch);
/// more queued goes out in the next write, at once. Bounds the encoder's
/// buffer per link to about this plus one message.
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Cores per node at most (core ids are 16-bit; the same bound as
/// `crate::constants::SHARDS_MAX`).
pub const CORES_MAX: u16 = 1024;

/// Default bound on messages queued by one core for one peer node
/// (connected or not). `send` returns `Full` beyond it.
pub const QUEUE_MESSAGES_MAX_DEFAULT: usize = 64 * 1024;

/// Default bound on payload bytes queued by one core for one peer node.
/// Per core the link layer holds at most peers × this in its queues, plus
/// one batch being written per peer.
pub const QUEUE_BYTES_MAX_DEFAULT: usize = 32 * 1024 * 1024;

/// Messages in flight on one cross-core forward channel (from the core
/// that accepted a connection to the destination core), per ordered pair.
pub const FORWARD_CHANNEL_CAPACITY: usize = 4096;

/// Messages waiting in one core's inbox for the layer above.
pub const INBOX_CAPACITY: usize = 16 * 1024;

/// (source node, source core) pairs a core's inbox tracks for its
/// stale-generation check. Beyond it, messages from new sources are
/// delivered without the check and counted (`untracked_sources`).
pub const INBOX_SOURCES_MAX: usize = 64 * 1024;

/// Default bound on connections one core serves as the accepting side at
/// once (`LinkConfig::accepted_connections_max`). A cluster
/// needs cores × (nodes − 1) per node in all; beyond this bound a new
/// connection is closed at once and counted (`accept_over_limit`).
pub const ACCEPTED_CONNECTIONS_MAX: usize = 4096;

/// Time allowed to connect and to finish the handshake (either side).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Each side sends an empty frame when it has sent nothing for this long,
/// so the other side can tell a quiet link from a dead one.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);

/// A side that has heard nothing from its peer for this long closes the
/// connection (the connecting side then reconnects).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// First reconnect delay (before jitter).
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(50);

/// Largest reconnect delay (before jitter). Kept well under Raft's
/// shortest election timeout (1 s: `RAFT_TICK` × `ELECTION_TICKS_DEFAULT`,
/// asserted in `cluster/replicas.rs`): a leader whose link to a follower
/// that just restarted is still backing off cannot hear it, and if the
/// third node dies meanwhile it loses its quorum (`check_quorum`) and steps
/// down although two of three nodes run. One attempt per quarter second to
/// a dead peer costs a refused connect on the LAN.
pub const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// How often the accept loop, the forward pumps, accepted connections'
/// readers and in-flight writes look at the stop flag and their deadlines,
/// and the period of the wake-up timer each core keeps (see
/// `net/src/server.rs` on glommio's lost wake-ups). Idle writers do not
/// tick: they sleep until a send, a stop or their next keepalive.
pub const TICK: Duration = Duration::from_millis(10);

const _: () =
    assert!(FRAME_TARGET_BYTES + MESSAGE_HEADER_BYTES + FRAME_HEADER_BYTES <= FRAME_BYTES_MAX);
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
/// How long `LinkHandle::shutdown` waits for the link tasks to end (they
/// end within a tick or two; this only bounds a stop that goes wrong).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

const _: () = assert!(FRAME_TARGET_BYTES <= BATCH_BYTES_MAX);
const _: () = assert!(KEEPALIVE_INTERVAL.as_millis() * 3 <= IDLE_TIMEOUT.as_millis());
const _: () = assert!(BACKOFF_INITIAL.as_millis() <= BACKOFF_MAX.as_millis());
const _: () = assert!(PAYLOAD_BYTES_MAX <= QUEUE_BYTES_MAX_DEFAULT);
// A cross-shard message for another node's shard fits in one frame.
const _: () = assert!(
    courier_core::constants::PEER_WIRE_BYTES_MAX + MESSAGE_HEADER_BYTES + FRAME_HEADER_BYTES
        <= FRAME_BYTES_MAX
);
