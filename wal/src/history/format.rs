//! The history store's on-disk format as pure functions over byte slices:
//! segment headers, entry framing, index files (header, fences, directory
//! blocks, positions, conversation table) and file names. No I/O happens
//! here, so the fuzz target and an inspector can use it on any bytes.
//!
//! All integers are little-endian. `docs/WAL.md` ("History store") is the
//! normative description; this file and that section change together.
//!
//! Entry layout (offsets from the entry start, which is 16-byte aligned):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | `len`: payload length |
//! | 4 | 4 | `crc32c` of bytes `8 .. 48 + len` |
//! | 8 | 8 | `ordinal`: position of the entry in the store (1, 2, 3, … across segments) |
//! | 16 | 4 | `batch_delta`: `ordinal` − first ordinal of the sync that wrote it |
//! | 20 | 1 | `kind`: 1 message, 2 retention point |
//! | 21 | 1 | marker `0xB7` |
//! | 22 | 2 | reserved, zero |
//! | 24 | 8 | conversation |
//! | 32 | 8 | seq |
//! | 40 | 8 | source (WAL LSN or Raft index the entry came from) |
//! | 48 | len | payload |
//! | 48 + len | pad | zero up to the next multiple of 16 |

use crate::format::{crc_skipping, le_u16, le_u32, le_u64};
use crate::{
    constants::{
        BLOCK_BYTES, HISTORY_CONVERSATIONS_LIMIT, HISTORY_DIR_BLOCK_ENTRIES,
        HISTORY_DIR_BLOCK_HEADER_BYTES, HISTORY_DIR_ENTRY_BYTES, HISTORY_ENTRY_BYTES_LIMIT,
        HISTORY_ENTRY_HEADER_BYTES, HISTORY_ENTRY_MARKER, HISTORY_FORMAT_VERSION,
        HISTORY_INDEX_MAGIC, HISTORY_POSITION_BYTES, HISTORY_SEGMENT_ENTRIES_MAX,
        HISTORY_SEGMENT_HEADER_BYTES, HISTORY_SEGMENT_MAGIC, HISTORY_TABLE_ENTRY_BYTES,
        RECORD_ALIGN_BYTES,
    },
    format::align_up,
};

/// Bytes an entry with a payload of `payload_len` bytes occupies on disk.
pub const fn entry_bytes(payload_len: u64) -> u64 {
    align_up(HISTORY_ENTRY_HEADER_BYTES + payload_len, RECORD_ALIGN_BYTES)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A committed message: `(conversation, seq, payload)`.
    Message,
    /// `drop_before(conversation, seq)`: history of the conversation now
    /// starts at `seq`. Carries no payload.
    Retention,
}

impl EntryKind {
    fn byte(self) -> u8 {
        match self {
            EntryKind::Message => 1,
            EntryKind::Retention => 2,
        }
    }

    fn from_byte(b: u8) -> Option<EntryKind> {
        match b {
            1 => Some(EntryKind::Message),
            2 => Some(EntryKind::Retention),
            _ => None,
        }
    }
}

/// The fields of an entry header (see the module docs for the layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// Payload length.
    pub len: u32,
    /// Store-wide position of the entry: 1, 2, 3, … with no gaps.
    pub ordinal: u64,
    /// `ordinal` minus the first ordinal of the sync that wrote the entry.
    pub batch_delta: u32,
    /// Message or retention point.
    pub kind: EntryKind,
    /// The conversation.
    pub conversation: u64,
    /// The seq within the conversation (for a retention point: the new start).
    pub seq: u64,
    /// The log position the entry came from.
    pub source: u64,
}

impl EntryHeader {
    /// Bytes the whole entry occupies on disk.
    pub fn entry_bytes(&self) -> u64 {
        entry_bytes(u64::from(self.len))
    }

    /// First ordinal of the sync (batch) that wrote this entry.
    pub fn batch_ordinal(&self) -> u64 {
        self.ordinal.saturating_sub(u64::from(self.batch_delta))
    }
}

/// What the 48 bytes at an entry position say, before the checksum is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryCheck {
    /// All 48 bytes are zero: the end of the written entries.
    Zero,
    /// Not an entry header; the string says why.
    Invalid(String),
    /// A well-formed header; verify the whole entry with [`verify_entry`].
    Plausible(EntryHeader),
}

/// Encode `header` (checksum left zero; see [`seal_entry`]) into `out`.
pub fn encode_entry_header(out: &mut [u8], header: &EntryHeader) {
    assert!(out.len() as u64 >= HISTORY_ENTRY_HEADER_BYTES);
    put_u32(out, 0, header.len);
    put_u32(out, 4, 0);
    put_u64(out, 8, header.ordinal);
    put_u32(out, 16, header.batch_delta);
    out[20] = header.kind.byte();
    out[21] = HISTORY_ENTRY_MARKER;
    out[22..24].fill(0);
    put_u64(out, 24, header.conversation);
    put_u64(out, 32, header.seq);
    put_u64(out, 40, header.source);
}

/// Overwrite the `batch_delta` field of an encoded entry.
pub fn set_batch_delta(entry: &mut [u8], batch_delta: u32) {
    put_u32(entry, 16, batch_delta);
}

/// Compute and store the checksum of an encoded entry (header, payload and
/// zero padding, exactly [`entry_bytes`] long).
pub fn seal_entry(entry: &mut [u8]) {
    let len = u64::from(le_u32(entry, 0));
    assert_eq!(entry.len() as u64, entry_bytes(len));
    let end = (HISTORY_ENTRY_HEADER_BYTES + len) as usize;
    let crc = crc32c::crc32c(&entry[8..end]);
    put_u32(entry, 4, crc);
}

/// Decode the entry header at the start of `bytes` (at least 48 bytes).
/// `room` is the number of bytes from the entry start to where it must end.
pub fn check_entry_header(bytes: &[u8], room: u64) -> EntryCheck {
    if (bytes.len() as u64) < HISTORY_ENTRY_HEADER_BYTES {
        return EntryCheck::Invalid("truncated entry header".to_string());
    }
    let hdr = &bytes[..HISTORY_ENTRY_HEADER_BYTES as usize];
    if hdr.iter().all(|&b| b == 0) {
        return EntryCheck::Zero;
    }
    if hdr[21] != HISTORY_ENTRY_MARKER {
        return EntryCheck::Invalid(format!("bad entry marker {:#04x}", hdr[21]));
    }
    if hdr[22..24].iter().any(|&b| b != 0) {
        return EntryCheck::Invalid("reserved entry header bytes are not zero".to_string());
    }
    let Some(kind) = EntryKind::from_byte(hdr[20]) else {
        return EntryCheck::Invalid(format!("unknown entry kind {}", hdr[20]));
    };
    let header = EntryHeader {
        len: le_u32(hdr, 0),
        ordinal: le_u64(hdr, 8),
        batch_delta: le_u32(hdr, 16),
        kind,
        conversation: le_u64(hdr, 24),
        seq: le_u64(hdr, 32),
        source: le_u64(hdr, 40),
    };
    let size = header.entry_bytes();
    if size > HISTORY_ENTRY_BYTES_LIMIT || size > room {
        return EntryCheck::Invalid(format!(
            "entry of {size} bytes does not fit (room {room}, limit {HISTORY_ENTRY_BYTES_LIMIT})"
        ));
    }
    if header.ordinal == 0 || u64::from(header.batch_delta) >= header.ordinal {
        return EntryCheck::Invalid(format!(
            "implausible ordinal {} / batch delta {}",
            header.ordinal, header.batch_delta
        ));
    }
    if kind == EntryKind::Retention && header.len != 0 {
        return EntryCheck::Invalid("a retention entry has a payload".to_string());
    }
    EntryCheck::Plausible(header)
}

/// Verify a whole entry (`entry` is exactly `header.entry_bytes()` long):
/// checksum and zero padding.
pub fn verify_entry(entry: &[u8], header: &EntryHeader) -> Result<(), String> {
    let size = header.entry_bytes() as usize;
    if entry.len() < size {
        return Err("entry is truncated".to_string());
    }
    let end = HISTORY_ENTRY_HEADER_BYTES as usize + header.len as usize;
    let stored = le_u32(entry, 4);
    let computed = crc32c::crc32c(&entry[8..end]);
    if stored != computed {
        return Err(format!(
            "entry checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    if entry[end..size].iter().any(|&b| b != 0) {
        return Err("non-zero entry padding".to_string());
    }
    Ok(())
}

/// The first block of every history segment file.
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | magic `CRHISSEG` |
/// | 8 | 4 | format version (1) |
/// | 12 | 2 | shard id |
/// | 14 | 2 | reserved, zero |
/// | 16 | 8 | segment number (≥ 1) |
/// | 24 | 8 | first ordinal: ordinal of the first entry the segment holds |
/// | 32 | 4 | `crc32c` of the whole block, these 4 bytes taken as zero |
/// | 36 | 4060 | zero |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistorySegmentHeader {
    /// The shard whose store this is.
    pub shard: u16,
    /// Segment number: 1 for the first segment, +1 for each seal.
    pub number: u64,
    /// Ordinal of the first entry stored in the segment.
    pub first_ordinal: u64,
}

const SEGMENT_CRC_AT: usize = 32;

impl HistorySegmentHeader {
    /// Write the header into `block` (one [`BLOCK_BYTES`] block).
    pub fn encode(&self, block: &mut [u8]) {
        assert_eq!(block.len() as u64, HISTORY_SEGMENT_HEADER_BYTES);
        block.fill(0);
        block[0..8].copy_from_slice(&HISTORY_SEGMENT_MAGIC);
        put_u32(block, 8, HISTORY_FORMAT_VERSION);
        block[12..14].copy_from_slice(&self.shard.to_le_bytes());
        put_u64(block, 16, self.number);
        put_u64(block, 24, self.first_ordinal);
        let crc = crc_skipping(block, SEGMENT_CRC_AT);
        put_u32(block, SEGMENT_CRC_AT, crc);
    }

    /// Parse and validate a header block; the error says what is wrong.
    pub fn decode(block: &[u8]) -> Result<HistorySegmentHeader, String> {
        let block = check_block(block, &HISTORY_SEGMENT_MAGIC, SEGMENT_CRC_AT, "segment")?;
        if le_u16(block, 14) != 0 {
            return Err("reserved header bytes are not zero".to_string());
        }
        let header = HistorySegmentHeader {
            shard: le_u16(block, 12),
            number: le_u64(block, 16),
            first_ordinal: le_u64(block, 24),
        };
        if header.number == 0 || header.first_ordinal == 0 {
            return Err("segment number and first ordinal must be at least 1".to_string());
        }
        Ok(header)
    }
}

/// Common checks of a header block: length, magic, checksum, version.
fn check_block<'a>(
    block: &'a [u8],
    magic: &[u8; 8],
    crc_at: usize,
    what: &str,
) -> Result<&'a [u8], String> {
    if (block.len() as u64) < BLOCK_BYTES {
        return Err(format!("{what} header block is {} bytes", block.len()));
    }
    let block = &block[..BLOCK_BYTES as usize];
    if block[0..8] != magic[..] {
        return Err(format!("bad {what} magic"));
    }
    let stored = le_u32(block, crc_at);
    let computed = crc_skipping(block, crc_at);
    if stored != computed {
        return Err(format!(
            "{what} header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let version = le_u32(block, 8);
    if version != HISTORY_FORMAT_VERSION {
        return Err(format!(
            "unsupported {what} format version {version} (this build reads {HISTORY_FORMAT_VERSION})"
        ));
    }
    Ok(block)
}

/// The header block of an index file `hist-N.idx`, written when segment `N`
/// is sealed. The sections follow at block-aligned offsets (see
/// [`IndexHeader::fences_offset`] and friends).
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | magic `CRHISIDX` |
/// | 8 | 4 | format version (1) |
/// | 12 | 2 | shard id |
/// | 14 | 2 | reserved, zero |
/// | 16 | 8 | segment number |
/// | 24 | 8 | first ordinal of the segment |
/// | 32 | 8 | entries in the segment (messages and retention points) |
/// | 40 | 8 | data end: offset just past the last entry |
/// | 48 | 8 | highest source in the segment (0 if none) |
/// | 56 | 8 | directory entries (conversations with messages in the segment) |
/// | 64 | 8 | positions (messages in the segment) |
/// | 72 | 8 | conversation table rows |
/// | 80 | 4 | `crc32c` of the fences section (its `8 × blocks` bytes) |
/// | 84 | 4 | `crc32c` of the table section (its `32 × rows` bytes) |
/// | 88 | 4 | `crc32c` of the whole block, these 4 bytes taken as zero |
/// | 92 | 4004 | zero |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexHeader {
    /// The shard whose store this is.
    pub shard: u16,
    /// The segment this index describes.
    pub number: u64,
    /// Ordinal of the segment's first entry.
    pub first_ordinal: u64,
    /// Entries in the segment (the next segment starts at `first_ordinal + entries`).
    pub entries: u64,
    /// Offset just past the segment's last entry.
    pub data_end: u64,
    /// Highest `source` of the segment's entries (0 if it has none).
    pub max_source: u64,
    /// Conversations with messages in the segment.
    pub dir_entries: u64,
    /// Messages in the segment.
    pub positions: u64,
    /// Rows of the conversation table (every conversation the store knows).
    pub table_rows: u64,
    /// Checksum of the fences section.
    pub fences_crc: u32,
    /// Checksum of the table section.
    pub table_crc: u32,
}

const INDEX_CRC_AT: usize = 88;

impl IndexHeader {
    /// Write the header into `block` (one [`BLOCK_BYTES`] block).
    pub fn encode(&self, block: &mut [u8]) {
        assert_eq!(block.len() as u64, BLOCK_BYTES);
        block.fill(0);
        block[0..8].copy_from_slice(&HISTORY_INDEX_MAGIC);
        put_u32(block, 8, HISTORY_FORMAT_VERSION);
        block[12..14].copy_from_slice(&self.shard.to_le_bytes());
        put_u64(block, 16, self.number);
        put_u64(block, 24, self.first_ordinal);
        put_u64(block, 32, self.entries);
        put_u64(block, 40, self.data_end);
        put_u64(block, 48, self.max_source);
        put_u64(block, 56, self.dir_entries);
        put_u64(block, 64, self.positions);
        put_u64(block, 72, self.table_rows);
        put_u32(block, 80, self.fences_crc);
        put_u32(block, 84, self.table_crc);
        let crc = crc_skipping(block, INDEX_CRC_AT);
        put_u32(block, INDEX_CRC_AT, crc);
    }

    /// Parse and validate an index header block; the error says what is wrong.
    pub fn decode(block: &[u8]) -> Result<IndexHeader, String> {
        let block = check_block(block, &HISTORY_INDEX_MAGIC, INDEX_CRC_AT, "index")?;
        if le_u16(block, 14) != 0 {
            return Err("reserved header bytes are not zero".to_string());
        }
        let h = IndexHeader {
            shard: le_u16(block, 12),
            number: le_u64(block, 16),
            first_ordinal: le_u64(block, 24),
            entries: le_u64(block, 32),
            data_end: le_u64(block, 40),
            max_source: le_u64(block, 48),
            dir_entries: le_u64(block, 56),
            positions: le_u64(block, 64),
            table_rows: le_u64(block, 72),
            fences_crc: le_u32(block, 80),
            table_crc: le_u32(block, 84),
        };
        if h.number == 0 || h.first_ordinal == 0 || h.entries == 0 {
            return Err("segment number, first ordinal and entries must be at least 1".to_string());
        }
        if h.entries > HISTORY_SEGMENT_ENTRIES_MAX
            || h.positions > h.entries
            || h.dir_entries > h.positions
            || (h.positions > 0 && h.dir_entries == 0)
            || h.table_rows > HISTORY_CONVERSATIONS_LIMIT
            || h.table_rows < h.dir_entries
        {
            return Err(format!(
                "implausible counts: {} entries, {} positions, {} conversations, {} table rows",
                h.entries, h.positions, h.dir_entries, h.table_rows
            ));
        }
        if h.data_end < HISTORY_SEGMENT_HEADER_BYTES + h.entries * HISTORY_ENTRY_HEADER_BYTES
            || h.data_end % RECORD_ALIGN_BYTES != 0
            || h.data_end > u64::from(u32::MAX)
        {
            return Err(format!("implausible data end {}", h.data_end));
        }
        Ok(h)
    }

    /// Directory blocks in the file.
    pub fn dir_blocks(&self) -> u64 {
        self.dir_entries.div_ceil(HISTORY_DIR_BLOCK_ENTRIES)
    }

    /// Offset of the fences section (one `u64` first conversation per directory block).
    pub fn fences_offset(&self) -> u64 {
        BLOCK_BYTES
    }

    /// Bytes of the fences section (without padding).
    pub fn fences_bytes(&self) -> u64 {
        self.dir_blocks() * 8
    }

    /// Offset of the first directory block.
    pub fn dir_offset(&self) -> u64 {
        self.fences_offset() + align_up(self.fences_bytes(), BLOCK_BYTES)
    }

    /// Offset of the positions section.
    pub fn positions_offset(&self) -> u64 {
        self.dir_offset() + self.dir_blocks() * BLOCK_BYTES
    }

    /// Offset of the conversation table section.
    pub fn table_offset(&self) -> u64 {
        self.positions_offset() + align_up(self.positions * HISTORY_POSITION_BYTES, BLOCK_BYTES)
    }

    /// Bytes of the table section (without padding).
    pub fn table_bytes(&self) -> u64 {
        self.table_rows * HISTORY_TABLE_ENTRY_BYTES
    }

    /// Length of the whole index file.
    pub fn file_bytes(&self) -> u64 {
        self.table_offset() + align_up(self.table_bytes(), BLOCK_BYTES)
    }
}

/// One conversation's entry in a segment's directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The conversation.
    pub conversation: u64,
    /// Its first seq in this segment.
    pub first_seq: u64,
    /// Its last seq in this segment.
    pub last_seq: u64,
    /// The previous segment holding messages of the conversation (0: none).
    pub prev_segment: u64,
    /// Index of its first position in the positions section.
    pub pos_start: u32,
    /// Number of its positions (messages in this segment), at least 1.
    pub pos_count: u32,
    /// `crc32c` of its `16 × pos_count` position bytes.
    pub pos_crc: u32,
}

/// Encode up to [`HISTORY_DIR_BLOCK_ENTRIES`] directory entries (sorted by
/// conversation) into one 4096-byte block: count (`u32`), `crc32c` of the
/// block with these 4 bytes as zero (`u32`), 8 reserved bytes, then 48-byte
/// entries (conversation, first seq, last seq, previous segment, position
/// start `u32`, position count `u32`, positions crc `u32`, 4 reserved).
pub fn encode_dir_block(entries: &[DirEntry], block: &mut [u8]) {
    assert!(!entries.is_empty() && entries.len() as u64 <= HISTORY_DIR_BLOCK_ENTRIES);
    assert_eq!(block.len() as u64, BLOCK_BYTES);
    block.fill(0);
    put_u32(block, 0, entries.len() as u32);
    for (i, e) in entries.iter().enumerate() {
        let at = (HISTORY_DIR_BLOCK_HEADER_BYTES + i as u64 * HISTORY_DIR_ENTRY_BYTES) as usize;
        put_u64(block, at, e.conversation);
        put_u64(block, at + 8, e.first_seq);
        put_u64(block, at + 16, e.last_seq);
        put_u64(block, at + 24, e.prev_segment);
        put_u32(block, at + 32, e.pos_start);
        put_u32(block, at + 36, e.pos_count);
        put_u32(block, at + 40, e.pos_crc);
    }
    let crc = crc_skipping(block, 4);
    put_u32(block, 4, crc);
}

/// Decode and validate one directory block.
pub fn decode_dir_block(block: &[u8]) -> Result<Vec<DirEntry>, String> {
    if (block.len() as u64) < BLOCK_BYTES {
        return Err("truncated directory block".to_string());
    }
    let block = &block[..BLOCK_BYTES as usize];
    if le_u32(block, 4) != crc_skipping(block, 4) {
        return Err("directory block checksum mismatch".to_string());
    }
    let count = u64::from(le_u32(block, 0));
    if count == 0 || count > HISTORY_DIR_BLOCK_ENTRIES {
        return Err(format!("directory block holds {count} entries"));
    }
    let mut out: Vec<DirEntry> = Vec::with_capacity(count as usize);
    for i in 0..count {
        let at = (HISTORY_DIR_BLOCK_HEADER_BYTES + i * HISTORY_DIR_ENTRY_BYTES) as usize;
        let e = DirEntry {
            conversation: le_u64(block, at),
            first_seq: le_u64(block, at + 8),
            last_seq: le_u64(block, at + 16),
            prev_segment: le_u64(block, at + 24),
            pos_start: le_u32(block, at + 32),
            pos_count: le_u32(block, at + 36),
            pos_crc: le_u32(block, at + 40),
        };
        let sorted = out.last().is_none_or(|p| p.conversation < e.conversation);
        if !sorted || e.first_seq > e.last_seq || e.pos_count == 0 || e.first_seq == 0 {
            return Err(format!("implausible directory entry {i}: {e:?}"));
        }
        if u64::from(e.pos_count) > e.last_seq - e.first_seq + 1 {
            return Err(format!("directory entry {i} has more positions than seqs"));
        }
        out.push(e);
    }
    Ok(out)
}

/// Where one message lies in its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Its seq.
    pub seq: u64,
    /// Offset of the entry in the segment file (16-byte aligned).
    pub offset: u32,
    /// Bytes the entry occupies (header, payload, padding).
    pub bytes: u32,
}

/// Encode positions as 16-byte rows: seq `u64`, offset `u32`, bytes `u32`.
pub fn encode_positions(positions: &[Position], out: &mut [u8]) {
    assert_eq!(
        out.len() as u64,
        positions.len() as u64 * HISTORY_POSITION_BYTES
    );
    for (i, p) in positions.iter().enumerate() {
        let at = i * HISTORY_POSITION_BYTES as usize;
        put_u64(out, at, p.seq);
        put_u32(out, at + 8, p.offset);
        put_u32(out, at + 12, p.bytes);
    }
}

/// Decode and validate one conversation's positions: seqs strictly increase
/// within `first ..= last`, offsets lie in `header end .. data_end`.
pub fn decode_positions(
    bytes: &[u8],
    entry: &DirEntry,
    data_end: u64,
) -> Result<Vec<Position>, String> {
    let count = entry.pos_count as usize;
    if bytes.len() < count * HISTORY_POSITION_BYTES as usize {
        return Err("truncated positions".to_string());
    }
    let bytes = &bytes[..count * HISTORY_POSITION_BYTES as usize];
    if crc32c::crc32c(bytes) != entry.pos_crc {
        return Err(format!(
            "positions of conversation {} fail their checksum",
            entry.conversation
        ));
    }
    let mut out: Vec<Position> = Vec::with_capacity(count);
    for i in 0..count {
        let at = i * HISTORY_POSITION_BYTES as usize;
        let p = Position {
            seq: le_u64(bytes, at),
            offset: le_u32(bytes, at + 8),
            bytes: le_u32(bytes, at + 12),
        };
        let end = u64::from(p.offset) + u64::from(p.bytes);
        let ordered = out.last().is_none_or(|prev| prev.seq < p.seq);
        if !ordered
            || p.seq < entry.first_seq
            || p.seq > entry.last_seq
            || u64::from(p.offset) < HISTORY_SEGMENT_HEADER_BYTES
            || u64::from(p.offset) % RECORD_ALIGN_BYTES != 0
            || u64::from(p.bytes) < HISTORY_ENTRY_HEADER_BYTES
            || end > data_end
        {
            return Err(format!("implausible position {i}: {p:?}"));
        }
        out.push(p);
    }
    if out.first().map(|p| p.seq) != Some(entry.first_seq)
        || out.last().map(|p| p.seq) != Some(entry.last_seq)
    {
        return Err("positions do not span the directory entry's seqs".to_string());
    }
    Ok(out)
}

/// One row of the conversation table written with every seal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRow {
    /// The conversation.
    pub conversation: u64,
    /// Its highest seq in the store (0: none yet).
    pub last_seq: u64,
    /// The newest segment holding a message of it (0: none).
    pub last_segment: u64,
    /// Its retention point: seqs below are gone (0 or 1: none).
    pub retention: u64,
}

/// Encode table rows (sorted by conversation) as 32-byte rows.
pub fn encode_table(rows: &[TableRow], out: &mut [u8]) {
    assert_eq!(
        out.len() as u64,
        rows.len() as u64 * HISTORY_TABLE_ENTRY_BYTES
    );
    for (i, r) in rows.iter().enumerate() {
        let at = i * HISTORY_TABLE_ENTRY_BYTES as usize;
        put_u64(out, at, r.conversation);
        put_u64(out, at + 8, r.last_seq);
        put_u64(out, at + 16, r.last_segment);
        put_u64(out, at + 24, r.retention);
    }
}

/// Decode and validate `count` table rows; `segment` is the number of the
/// segment the table was sealed with (no row may point past it).
pub fn decode_table(bytes: &[u8], count: u64, segment: u64) -> Result<Vec<TableRow>, String> {
    let need = count.saturating_mul(HISTORY_TABLE_ENTRY_BYTES);
    if count > HISTORY_CONVERSATIONS_LIMIT || (bytes.len() as u64) < need {
        return Err(format!("truncated or oversized table of {count} rows"));
    }
    let mut out: Vec<TableRow> = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let at = i * HISTORY_TABLE_ENTRY_BYTES as usize;
        let r = TableRow {
            conversation: le_u64(bytes, at),
            last_seq: le_u64(bytes, at + 8),
            last_segment: le_u64(bytes, at + 16),
            retention: le_u64(bytes, at + 24),
        };
        let sorted = out.last().is_none_or(|p| p.conversation < r.conversation);
        if !sorted || r.last_segment > segment || (r.last_segment > 0) != (r.last_seq > 0) {
            return Err(format!("implausible table row {i}: {r:?}"));
        }
        out.push(r);
    }
    Ok(out)
}

/// Encode fences (first conversation of each directory block).
pub fn encode_fences(fences: &[u64], out: &mut [u8]) {
    assert_eq!(out.len(), fences.len() * 8);
    for (i, f) in fences.iter().enumerate() {
        put_u64(out, i * 8, *f);
    }
}

/// Decode `count` fences, which must strictly increase.
pub fn decode_fences(bytes: &[u8], count: u64) -> Result<Vec<u64>, String> {
    if (bytes.len() as u64) < count.saturating_mul(8) {
        return Err("truncated fences".to_string());
    }
    let mut out: Vec<u64> = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let f = le_u64(bytes, i * 8);
        if out.last().is_some_and(|&p| p >= f) {
            return Err(format!("fences out of order at {i}"));
        }
        out.push(f);
    }
    Ok(out)
}

/// File name of history segment `number`.
pub fn segment_file_name(number: u64) -> String {
    format!("hist-{number:020}.seg")
}

/// File name of the index of history segment `number`.
pub fn index_file_name(number: u64) -> String {
    format!("hist-{number:020}.idx")
}

fn parse_numbered(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix("hist-")?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment number in a history segment file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    parse_numbered(name, ".seg")
}

/// The segment number in a history index file name.
pub fn parse_index_file_name(name: &str) -> Option<u64> {
    parse_numbered(name, ".idx")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: EntryKind, payload: &[u8], ordinal: u64, delta: u32) -> (EntryHeader, Vec<u8>) {
        let header = EntryHeader {
            len: payload.len() as u32,
            ordinal,
            batch_delta: 0,
            kind,
            conversation: 7,
            seq: 42,
            source: 1234,
        };
        let mut bytes = vec![0u8; entry_bytes(payload.len() as u64) as usize];
        encode_entry_header(&mut bytes, &header);
        bytes[48..48 + payload.len()].copy_from_slice(payload);
        set_batch_delta(&mut bytes, delta);
        seal_entry(&mut bytes);
        (
            EntryHeader {
                batch_delta: delta,
                ..header
            },
            bytes,
        )
    }

    #[test]
    fn entry_round_trips_and_every_bit_flip_is_caught() {
        let payload: Vec<u8> = (0..37u8).collect();
        let (header, bytes) = entry(EntryKind::Message, &payload, 9, 3);
        assert_eq!(bytes.len(), 96);
        assert_eq!(
            check_entry_header(&bytes, 4096),
            EntryCheck::Plausible(header)
        );
        assert_eq!(verify_entry(&bytes, &header), Ok(()));
        assert_eq!(header.batch_ordinal(), 6);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let caught = match check_entry_header(&damaged, 4096) {
                EntryCheck::Plausible(h) => {
                    h.entry_bytes() != header.entry_bytes() || verify_entry(&damaged, &h).is_err()
                }
                EntryCheck::Zero | EntryCheck::Invalid(_) => true,
            };
            assert!(caught, "bit {bit} flip not detected");
        }
    }

    #[test]
    fn zero_header_is_the_end_and_bad_headers_are_invalid() {
        assert_eq!(check_entry_header(&[0u8; 48], 4096), EntryCheck::Zero);
        assert!(matches!(
            check_entry_header(&[0u8; 47], 4096),
            EntryCheck::Invalid(_)
        ));
        let (_, bytes) = entry(EntryKind::Message, &[1; 100], 5, 0);
        assert!(matches!(
            check_entry_header(&bytes, 64),
            EntryCheck::Invalid(_)
        ));
        let (_, bytes) = entry(EntryKind::Message, &[], 5, 5);
        assert!(matches!(
            check_entry_header(&bytes, 4096),
            EntryCheck::Invalid(_)
        ));
        let (header, bytes) = entry(EntryKind::Retention, &[], 5, 0);
        assert_eq!(
            check_entry_header(&bytes, 4096),
            EntryCheck::Plausible(header)
        );
    }

    #[test]
    fn segment_and_index_headers_round_trip_and_reject_damage() {
        let seg = HistorySegmentHeader {
            shard: 3,
            number: 9,
            first_ordinal: 1000,
        };
        let mut block = vec![0u8; BLOCK_BYTES as usize];
        seg.encode(&mut block);
        assert_eq!(HistorySegmentHeader::decode(&block), Ok(seg));
        block[200] = 1;
        assert!(HistorySegmentHeader::decode(&block).is_err());
        let idx = IndexHeader {
            shard: 3,
            number: 9,
            first_ordinal: 1000,
            entries: 500,
            data_end: 4096 + 500 * 64,
            max_source: 77,
            dir_entries: 200,
            positions: 490,
            table_rows: 300,
            fences_crc: 1,
            table_crc: 2,
        };
        idx.encode(&mut block);
        assert_eq!(IndexHeader::decode(&block), Ok(idx));
        assert_eq!(idx.dir_blocks(), 3);
        assert!(idx.dir_offset() >= idx.fences_offset() + idx.fences_bytes());
        assert_eq!(idx.positions_offset(), idx.dir_offset() + 3 * BLOCK_BYTES);
        assert!(idx.table_offset() >= idx.positions_offset() + 490 * 16);
        assert_eq!(idx.file_bytes() % BLOCK_BYTES, 0);
        for at in [0, 16, 40, 88, 95, 4000] {
            let mut damaged = block.clone();
            damaged[at] ^= 0x10;
            assert!(
                IndexHeader::decode(&damaged).is_err(),
                "damage at {at} not caught"
            );
        }
    }

    #[test]
    fn directory_positions_table_and_fences_round_trip() {
        let dir: Vec<DirEntry> = (0..HISTORY_DIR_BLOCK_ENTRIES)
            .map(|i| DirEntry {
                conversation: 10 + i * 3,
                first_seq: 1 + i,
                last_seq: 10 + 2 * i,
                prev_segment: i % 4,
                pos_start: i as u32 * 2,
                pos_count: 2,
                pos_crc: i as u32,
            })
            .collect();
        let mut block = vec![0u8; BLOCK_BYTES as usize];
        encode_dir_block(&dir, &mut block);
        assert_eq!(decode_dir_block(&block), Ok(dir.clone()));
        block[100] ^= 1;
        assert!(decode_dir_block(&block).is_err());

        let positions = [
            Position {
                seq: 3,
                offset: 4096,
                bytes: 64,
            },
            Position {
                seq: 5,
                offset: 8192,
                bytes: 128,
            },
        ];
        let mut raw = vec![0u8; 32];
        encode_positions(&positions, &mut raw);
        let entry = DirEntry {
            conversation: 1,
            first_seq: 3,
            last_seq: 5,
            prev_segment: 0,
            pos_start: 0,
            pos_count: 2,
            pos_crc: crc32c::crc32c(&raw),
        };
        assert_eq!(
            decode_positions(&raw, &entry, 8192 + 128),
            Ok(positions.to_vec())
        );
        assert!(
            decode_positions(&raw, &entry, 8192).is_err(),
            "past data end"
        );
        raw[0] ^= 1;
        assert!(decode_positions(&raw, &entry, 1 << 20).is_err());

        let rows = [
            TableRow {
                conversation: 1,
                last_seq: 9,
                last_segment: 2,
                retention: 0,
            },
            TableRow {
                conversation: 4,
                last_seq: 0,
                last_segment: 0,
                retention: 7,
            },
        ];
        let mut raw = vec![0u8; 64];
        encode_table(&rows, &mut raw);
        assert_eq!(decode_table(&raw, 2, 2), Ok(rows.to_vec()));
        assert!(
            decode_table(&raw, 2, 1).is_err(),
            "row points past its segment"
        );
        assert!(decode_table(&raw, 3, 2).is_err());

        let mut raw = vec![0u8; 24];
        encode_fences(&[1, 5, 9], &mut raw);
        assert_eq!(decode_fences(&raw, 3), Ok(vec![1, 5, 9]));
        encode_fences(&[1, 9, 5], &mut raw);
        assert!(decode_fences(&raw, 3).is_err());
    }

    #[test]
    fn file_names_parse_back_and_reject_lookalikes() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_index_file_name(&index_file_name(7)), Some(7));
        assert_eq!(parse_segment_file_name(&index_file_name(7)), None);
        assert_eq!(parse_segment_file_name("hist-42.seg"), None);
        assert_eq!(
            parse_segment_file_name("wal-00000000000000000042.seg"),
            None
        );
    }
}
