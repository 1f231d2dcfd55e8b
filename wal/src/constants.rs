//! Every limit of the write-ahead log as a named constant, with compile-time
//! checks of how the limits relate to each other.
//!
//! Options ([`crate::WalOptions`]) may choose values *inside* these limits; the
//! on-disk format and the recovery rules only ever rely on the limits here, so
//! a log written with one set of options can be opened with another.

/// The unit of direct I/O: every write and read starts and ends on a multiple
/// of this many bytes, and every buffer handed to the kernel is aligned to it.
pub const BLOCK_BYTES: u64 = 4096;

/// On-disk format version written into segment and snapshot headers.
pub const FORMAT_VERSION: u32 = 1;

/// Magic bytes at offset 0 of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CRWALSEG";

/// Magic bytes at offset 0 of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"CRWALSNP";

/// A segment starts with one block holding its header; records follow.
pub const SEGMENT_HEADER_BYTES: u64 = BLOCK_BYTES;

/// A snapshot file starts with one block holding its header; the body follows.
pub const SNAPSHOT_HEADER_BYTES: u64 = BLOCK_BYTES;

/// Fixed size of a record header (`len`, `crc32c`, `lsn`, `batch_lsn`, `kind`,
/// marker, reserved). A multiple of [`RECORD_ALIGN_BYTES`] so that payloads
/// start aligned too.
pub const RECORD_HEADER_BYTES: u64 = 32;

/// Records start on, and are padded to, this alignment within a segment.
/// Because segments and read buffers are [`BLOCK_BYTES`]-aligned, every payload
/// handed to a caller starts 16-byte aligned in memory (rkyv needs 8 or 16).
pub const RECORD_ALIGN_BYTES: u64 = 16;

/// Non-zero byte at offset 25 of every record header. An all-zero header marks
/// the end of written data in a segment (segments are zero-filled up front).
pub const RECORD_MARKER: u8 = 0xA5;

/// Largest record on disk (header + payload + padding) that any version of
/// this crate writes or accepts while reading. [`crate::WalOptions`] may lower it.
pub const RECORD_BYTES_LIMIT: u64 = 1024 * 1024;

/// Largest payload a record can carry under [`RECORD_BYTES_LIMIT`].
pub const RECORD_PAYLOAD_BYTES_LIMIT: u64 = RECORD_BYTES_LIMIT - RECORD_HEADER_BYTES;

/// Smallest allowed segment (tests use tiny segments to exercise rolls).
pub const SEGMENT_BYTES_MIN: u64 = 64 * 1024;

/// Largest allowed segment. Offsets inside a segment fit in a `u32`, which keeps
/// the in-memory index entries at 8 bytes.
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Most records one segment can hold (every record is at least one header).
pub const SEGMENT_RECORDS_MAX: u64 = SEGMENT_BYTES_MAX / RECORD_HEADER_BYTES;

/// Upper limit for [`crate::WalOptions::batch_bytes_max`]: the most record bytes
/// one group-commit write carries.
pub const BATCH_BYTES_LIMIT: u64 = 8 * 1024 * 1024;

/// Upper limit for [`crate::WalOptions::batch_records_max`].
pub const BATCH_RECORDS_LIMIT: u64 = 65_536;

/// Upper limit for [`crate::WalOptions::queue_bytes_max`]: bytes appended but
/// not yet durable (staged plus in flight).
pub const QUEUE_BYTES_LIMIT: u64 = 256 * 1024 * 1024;

/// Upper limit for [`crate::WalOptions::queue_records_max`].
pub const QUEUE_RECORDS_LIMIT: u64 = 1024 * 1024;

/// Upper limit for [`crate::WalOptions::waiters_max`]: registered
/// `wait_durable` futures at once.
pub const WAITERS_LIMIT: u64 = 4 * 1024 * 1024;

/// The sparse LSN index holds one entry for the first record that starts in
/// each window of this many bytes of a segment. A read by LSN therefore reads
/// at most `INDEX_STRIDE_BYTES + RECORD_BYTES_LIMIT` (plus alignment) bytes, and
/// the index costs [`INDEX_ENTRY_BYTES`] per stride: 8 KiB per 64 MiB segment.
pub const INDEX_STRIDE_BYTES: u64 = 64 * 1024;

/// Size of one sparse index entry in memory (`u32` LSN delta + `u32` offset).
pub const INDEX_ENTRY_BYTES: u64 = 8;

/// Most index entries a segment can have.
pub const INDEX_ENTRIES_PER_SEGMENT_MAX: u64 = SEGMENT_BYTES_MAX / INDEX_STRIDE_BYTES + 1;

/// Size of each read issued while scanning (recovery, replay). Large enough to
/// hold the largest record starting anywhere inside the first block.
pub const SCAN_CHUNK_BYTES: u64 = 2 * 1024 * 1024;

/// Largest single read issued for a read by LSN.
pub const POINT_READ_BYTES_MAX: u64 = INDEX_STRIDE_BYTES + RECORD_BYTES_LIMIT + 2 * BLOCK_BYTES;

/// Size of the zero buffer used to fill a fresh segment before it is used.
pub const ZERO_FILL_CHUNK_BYTES: u64 = 1024 * 1024;

/// Largest snapshot body accepted (written or read). The body is held in
/// memory by the caller, so this is a sanity bound, not a target.
pub const SNAPSHOT_BYTES_LIMIT: u64 = 16 * 1024 * 1024 * 1024;

/// Snapshots are written and read in chunks of this size.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;

/// Upper limit for [`crate::WalOptions::snapshots_kept`].
pub const SNAPSHOTS_KEPT_LIMIT: u32 = 16;

/// Number of buckets of the fsync latency histogram in [`crate::Counters`]:
/// bucket `i` counts syncs that took less than `2^i` microseconds; the last
/// bucket also takes everything slower.
pub const FSYNC_HISTOGRAM_BUCKETS: usize = 24;

/// Sealed segments kept open for reads at once (least recently used first out).
pub const OPEN_SEALED_SEGMENTS_MAX: usize = 8;

/// Name of the small non-empty file written in every log directory and opened
/// first, before any other direct-I/O file (glommio issues 605/670: probing
/// I/O polling on an empty file wrongly enables it).
pub const PROBE_FILE_NAME: &str = "direct-io-probe";

const _: () = assert!(BLOCK_BYTES.is_power_of_two());
const _: () = assert!(RECORD_ALIGN_BYTES.is_power_of_two());
const _: () = assert!(BLOCK_BYTES % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(RECORD_HEADER_BYTES % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(
    RECORD_ALIGN_BYTES % 8 == 0,
    "rkyv needs 8-byte aligned roots"
);
const _: () = assert!(SEGMENT_HEADER_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(SNAPSHOT_HEADER_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(RECORD_BYTES_LIMIT % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(SEGMENT_BYTES_MIN % BLOCK_BYTES == 0);
const _: () = assert!(SEGMENT_BYTES_MAX % BLOCK_BYTES == 0);
const _: () = assert!(SEGMENT_BYTES_MIN > SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES);
const _: () = assert!(
    SEGMENT_BYTES_MAX <= u32::MAX as u64,
    "index offsets are u32"
);
const _: () = assert!(
    SEGMENT_RECORDS_MAX <= u32::MAX as u64,
    "index LSN deltas are u32"
);
const _: () = assert!(SEGMENT_BYTES_MAX >= SEGMENT_HEADER_BYTES + RECORD_BYTES_LIMIT);
const _: () = assert!(BATCH_BYTES_LIMIT >= RECORD_BYTES_LIMIT);
const _: () = assert!(BATCH_BYTES_LIMIT <= u32::MAX as u64);
const _: () = assert!(QUEUE_BYTES_LIMIT >= BATCH_BYTES_LIMIT);
const _: () = assert!(QUEUE_RECORDS_LIMIT >= BATCH_RECORDS_LIMIT);
const _: () = assert!(SCAN_CHUNK_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(SCAN_CHUNK_BYTES >= RECORD_BYTES_LIMIT + BLOCK_BYTES);
const _: () = assert!(INDEX_STRIDE_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(INDEX_STRIDE_BYTES <= SEGMENT_BYTES_MIN);
const _: () = assert!(POINT_READ_BYTES_MAX % BLOCK_BYTES == 0);
const _: () = assert!(ZERO_FILL_CHUNK_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(SNAPSHOTS_KEPT_LIMIT >= 1);
const _: () = assert!(FSYNC_HISTOGRAM_BUCKETS >= 2 && FSYNC_HISTOGRAM_BUCKETS < 64);

// ---------------------------------------------------------------------------
// History store (`crate::history`): limits of the per-shard store of
// committed messages. `docs/WAL.md` "History store" describes the format.
// ---------------------------------------------------------------------------

/// On-disk format version of history segment and index files.
pub const HISTORY_FORMAT_VERSION: u32 = 1;

/// Magic bytes at offset 0 of every history segment file (`hist-N.seg`).
pub const HISTORY_SEGMENT_MAGIC: [u8; 8] = *b"CRHISSEG";

/// Magic bytes at offset 0 of every history index file (`hist-N.idx`).
pub const HISTORY_INDEX_MAGIC: [u8; 8] = *b"CRHISIDX";

/// A history segment starts with one header block; entries follow.
pub const HISTORY_SEGMENT_HEADER_BYTES: u64 = BLOCK_BYTES;

/// Fixed size of a history entry header (`len`, `crc32c`, ordinal, batch
/// delta, kind, marker, conversation, seq, source). A multiple of
/// [`RECORD_ALIGN_BYTES`], so payloads start 16-byte aligned.
pub const HISTORY_ENTRY_HEADER_BYTES: u64 = 48;

/// Non-zero byte at offset 21 of every history entry header (an all-zero
/// header marks the end of written entries).
pub const HISTORY_ENTRY_MARKER: u8 = 0xB7;

/// Largest history entry on disk (header + payload + padding), as for WAL records.
pub const HISTORY_ENTRY_BYTES_LIMIT: u64 = RECORD_BYTES_LIMIT;

/// Largest payload of a history entry.
pub const HISTORY_PAYLOAD_BYTES_LIMIT: u64 = HISTORY_ENTRY_BYTES_LIMIT - HISTORY_ENTRY_HEADER_BYTES;

/// Smallest history segment bound (tests use tiny segments to get many seals).
pub const HISTORY_SEGMENT_BYTES_MIN: u64 = 64 * 1024;

/// Largest history segment bound. A segment ends at most one entry past its
/// bound, and offsets inside it fit a `u32` (index positions are 16 bytes).
pub const HISTORY_SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Most entries one history segment can hold (every entry is at least a header
/// plus 16 bytes of padding-aligned payload room).
pub const HISTORY_SEGMENT_ENTRIES_MAX: u64 =
    (HISTORY_SEGMENT_BYTES_MAX + HISTORY_ENTRY_BYTES_LIMIT) / HISTORY_ENTRY_HEADER_BYTES;

/// Upper limit for `HistoryOptions::batch_bytes_max`: entry bytes in one write.
pub const HISTORY_BATCH_BYTES_LIMIT: u64 = 8 * 1024 * 1024;

/// Upper limit for `HistoryOptions::staging_bytes_max`: bytes appended but
/// not yet written by `sync` (beyond it `append` answers `Backpressure`).
pub const HISTORY_STAGING_BYTES_LIMIT: u64 = 256 * 1024 * 1024;

/// Most entries staged at once (each staged entry is at least one header).
pub const HISTORY_STAGING_ENTRIES_LIMIT: u64 =
    HISTORY_STAGING_BYTES_LIMIT / HISTORY_ENTRY_HEADER_BYTES;

/// Size of one directory entry in an index file (conversation, first and
/// last seq, previous segment, position slice, its checksum).
pub const HISTORY_DIR_ENTRY_BYTES: u64 = 48;

/// Header of one directory block (count, checksum, reserved).
pub const HISTORY_DIR_BLOCK_HEADER_BYTES: u64 = 16;

/// Directory entries per 4 KiB directory block. The in-memory summary of a
/// sealed segment keeps one 8-byte fence (first conversation id) per block.
pub const HISTORY_DIR_BLOCK_ENTRIES: u64 =
    (BLOCK_BYTES - HISTORY_DIR_BLOCK_HEADER_BYTES) / HISTORY_DIR_ENTRY_BYTES;

/// One position in an index file: seq (`u64`), offset (`u32`), bytes (`u32`).
pub const HISTORY_POSITION_BYTES: u64 = 16;

/// One row of the conversation table written with every seal: conversation,
/// last seq, last segment, retention point.
pub const HISTORY_TABLE_ENTRY_BYTES: u64 = 32;

/// Most conversations one store tracks (the table is loaded at open).
pub const HISTORY_CONVERSATIONS_LIMIT: u64 = 1 << 24;

/// Sealed segment and index files kept open for reads (least recently used out).
pub const HISTORY_OPEN_FILES_MAX: usize = 16;

/// Decoded directory blocks and positions kept in memory for reads (least
/// recently used out): paging back walks a conversation's segments from the
/// newest each time, and this keeps those walks off the disk.
pub const HISTORY_INDEX_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Conversations laid out into a sealed segment's index file between two
/// yields to the executor (a seal never stalls the shard for the whole index).
pub const HISTORY_SEAL_CONVERSATIONS_PER_TURN: usize = 512;

/// Largest merged read when a page's entries are fetched (`read_many`).
pub const HISTORY_READ_MERGE_BYTES: usize = 256 * 1024;

/// Bytes a merged read may fetch that no entry asked for.
pub const HISTORY_READ_AMPLIFICATION_BYTES: usize = 32 * 1024;

/// Most entries one `read` / `read_before` returns.
pub const HISTORY_PAGE_ENTRIES_LIMIT: u64 = 10_000;

/// Most payload bytes one page returns (at least one entry is always returned).
pub const HISTORY_PAGE_BYTES_LIMIT: u64 = 16 * 1024 * 1024;

const _: () = assert!(HISTORY_ENTRY_HEADER_BYTES % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(HISTORY_SEGMENT_HEADER_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(HISTORY_ENTRY_BYTES_LIMIT % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(HISTORY_SEGMENT_BYTES_MIN % BLOCK_BYTES == 0);
const _: () = assert!(HISTORY_SEGMENT_BYTES_MIN > HISTORY_SEGMENT_HEADER_BYTES);
const _: () = assert!(
    HISTORY_SEGMENT_BYTES_MAX + HISTORY_ENTRY_BYTES_LIMIT <= u32::MAX as u64,
    "positions store u32 offsets"
);
const _: () = assert!(
    HISTORY_SEGMENT_ENTRIES_MAX <= u32::MAX as u64,
    "directory position slices are u32"
);
const _: () = assert!(HISTORY_BATCH_BYTES_LIMIT >= HISTORY_ENTRY_BYTES_LIMIT);
const _: () = assert!(HISTORY_STAGING_BYTES_LIMIT >= HISTORY_BATCH_BYTES_LIMIT);
const _: () = assert!(
    HISTORY_STAGING_ENTRIES_LIMIT <= u32::MAX as u64,
    "entry batch deltas are u32"
);
const _: () = assert!(
    HISTORY_DIR_BLOCK_HEADER_BYTES + HISTORY_DIR_BLOCK_ENTRIES * HISTORY_DIR_ENTRY_BYTES
        <= BLOCK_BYTES
);
const _: () = assert!(HISTORY_DIR_BLOCK_ENTRIES >= 64);
const _: () = assert!(BLOCK_BYTES % HISTORY_POSITION_BYTES == 0);
const _: () = assert!(BLOCK_BYTES % HISTORY_TABLE_ENTRY_BYTES == 0);
const _: () = assert!(HISTORY_READ_MERGE_BYTES as u64 % BLOCK_BYTES == 0);
const _: () = assert!(HISTORY_READ_AMPLIFICATION_BYTES <= HISTORY_READ_MERGE_BYTES);
const _: () = assert!(HISTORY_PAGE_BYTES_LIMIT >= HISTORY_ENTRY_BYTES_LIMIT);
const _: () = assert!(HISTORY_OPEN_FILES_MAX >= 4);
const _: () = assert!(HISTORY_INDEX_CACHE_BYTES >= 4 * BLOCK_BYTES as usize);
