//! Limits of the wire protocol. Both ends enforce them; docs/PROTOCOL.md lists them.

/// Protocol version spoken by this codec (`Hello.protocol_version`).
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest frame a client may send (one WebSocket message). A `Sync` naming
/// 10,000 conversations is 160 KB of cursors; a `Send` body is far smaller.
pub const CLIENT_FRAME_BYTES_MAX: usize = 256 * 1024;

/// Largest frame the server sends. Sync replies are bounded by the core's
/// inline limits well below this.
pub const SERVER_FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Flatbuffers verifier: deepest nesting accepted (our schema nests ≤ 6).
pub const VERIFIER_DEPTH_MAX: usize = 16;

/// Flatbuffers verifier: tables in one client frame (a request is 1–3).
pub const CLIENT_VERIFIER_TABLES_MAX: usize = 64;

/// Flatbuffers verifier: tables in one server frame.
pub const SERVER_VERIFIER_TABLES_MAX: usize = 1_000_000;

/// Most ids in a vector field of a client frame (mentions, DM members).
pub const CLIENT_IDS_MAX: usize = 4_096;

/// Most cursors in one `Sync`: the core's limit (one per conversation a
/// user may be in), so the codec and the core refuse the same requests.
pub const SYNC_CURSORS_MAX: usize = courier_core::constants::SYNC_CURSORS_MAX;

/// Most ids in one `GetUsers`: the core's limit.
pub const GET_USERS_MAX: usize = courier_core::constants::GET_USERS_MAX;

/// Longest `Directory.after_key` in bytes: the core's limit.
pub const DIRECTORY_CURSOR_BYTES_MAX: usize = courier_core::constants::DIRECTORY_CURSOR_BYTES_MAX;

/// Longest `Hello.device_name` in bytes: the core's limit for every name.
pub const DEVICE_NAME_BYTES_MAX: usize = courier_core::constants::NAME_BYTES_MAX;

const _: () = assert!(SYNC_CURSORS_MAX * 16 < CLIENT_FRAME_BYTES_MAX);
// A `Sync` of a user at the conversation limit with its read cursors
// (`Sync.reads`, 8 bytes per conversation) fits a client frame, with room
// for the frame's tables.
const _: () = assert!(
    courier_core::constants::CONVERSATIONS_PER_USER_MAX * (16 + 8) + 4 * 1024
        < CLIENT_FRAME_BYTES_MAX
);
const _: () = assert!(CLIENT_FRAME_BYTES_MAX < SERVER_FRAME_BYTES_MAX);
