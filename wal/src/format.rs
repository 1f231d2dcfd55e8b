//! The on-disk format, as pure functions over byte slices: segment headers,
//! record framing, snapshot headers and file names. No I/O happens here, so a
//! WAL inspector can reuse it on bytes it read any way it likes.
//!
//! All integers are little-endian. `docs/WAL.md` is the normative description;
//! this file and that document must change together (and the version-1
//! fixture test guards against accidental changes).
//!
//! Record layout (offsets from the record start, which is 16-byte aligned):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | `len`: payload length in bytes |
//! | 4 | 4 | `crc32c` of bytes `8 .. 32 + len` (rest of the header and the payload) |
//! | 8 | 8 | `lsn` |
//! | 16 | 8 | `batch_lsn`: first LSN of the group-commit write that carried the record |
//! | 24 | 1 | `kind` (opaque to the log) |
//! | 25 | 1 | marker `0xA5` |
//! | 26 | 6 | reserved, zero |
//! | 32 | len | payload |
//! | 32 + len | pad | zero bytes up to the next multiple of 16 |

use crate::constants::{
    BLOCK_BYTES, FORMAT_VERSION, RECORD_ALIGN_BYTES, RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES,
    RECORD_MARKER, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_MAGIC, SNAPSHOT_BYTES_LIMIT,
    SNAPSHOT_MAGIC,
};

/// Round `value` up to a multiple of `align` (a power of two).
pub const fn align_up(value: u64, align: u64) -> u64 {
    (value + align - 1) & !(align - 1)
}

/// Round `value` down to a multiple of `align` (a power of two).
pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// Bytes a record with a payload of `payload_len` bytes occupies on disk,
/// header and padding included.
pub const fn record_bytes(payload_len: u64) -> u64 {
    align_up(RECORD_HEADER_BYTES + payload_len, RECORD_ALIGN_BYTES)
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// CRC32C of `block` with the 4 bytes at `crc_at` taken as zero.
pub(crate) fn crc_skipping(block: &[u8], crc_at: usize) -> u32 {
    let crc = crc32c::crc32c(&block[..crc_at]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &block[crc_at + 4..])
}

/// The first block of every segment file.
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | magic `CRWALSEG` |
/// | 8 | 4 | format version (1) |
/// | 12 | 2 | shard id |
/// | 14 | 2 | reserved, zero |
/// | 16 | 8 | segment number |
/// | 24 | 8 | first LSN (the LSN of the first record the segment holds or will hold) |
/// | 32 | 8 | segment size in bytes (the file's preallocated length) |
/// | 40 | 4 | `crc32c` of the whole 4096-byte block with these 4 bytes taken as zero |
/// | 44 | 4052 | zero |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The shard (core) whose log this is.
    pub shard: u16,
    /// Segment number: 1 for the first segment of a log, +1 for each roll.
    pub number: u64,
    /// LSN of the first record stored in the segment.
    pub first_lsn: u64,
    /// Length of the segment file.
    pub segment_bytes: u64,
}

const SEGMENT_CRC_AT: usize = 40;

impl SegmentHeader {
    /// Write the header into `block`, which must be one zeroed [`BLOCK_BYTES`] block.
    pub fn encode(&self, block: &mut [u8]) {
        assert_eq!(block.len() as u64, BLOCK_BYTES);
        block.fill(0);
        block[0..8].copy_from_slice(&SEGMENT_MAGIC);
        block[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        block[12..14].copy_from_slice(&self.shard.to_le_bytes());
        block[16..24].copy_from_slice(&self.number.to_le_bytes());
        block[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        block[32..40].copy_from_slice(&self.segment_bytes.to_le_bytes());
        let crc = crc_skipping(block, SEGMENT_CRC_AT);
        block[SEGMENT_CRC_AT..SEGMENT_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(SegmentHeader::decode(block), Ok(*self));
    }

    /// Parse and fully validate a header block. The error says what is wrong.
    pub fn decode(block: &[u8]) -> Result<SegmentHeader, String> {
        if (block.len() as u64) < BLOCK_BYTES {
            return Err(format!(
                "header block is {} bytes, expected {BLOCK_BYTES}",
                block.len()
            ));
        }
        let block = &block[..BLOCK_BYTES as usize];
        if block[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".to_string());
        }
        let stored = le_u32(block, SEGMENT_CRC_AT);
        let computed = crc_skipping(block, SEGMENT_CRC_AT);
        if stored != computed {
            return Err(format!("segment header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"));
        }
        let version = le_u32(block, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "unsupported format version {version} (this build reads {FORMAT_VERSION})"
            ));
        }
        let header = SegmentHeader {
            shard: le_u16(block, 12),
            number: le_u64(block, 16),
            first_lsn: le_u64(block, 24),
            segment_bytes: le_u64(block, 32),
        };
        if le_u16(block, 14) != 0 {
            return Err("reserved header bytes are not zero".to_string());
        }
        if header.number == 0 || header.first_lsn == 0 {
            return Err("segment number and first LSN must be at least 1".to_string());
        }
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&header.segment_bytes)
            || header.segment_bytes % BLOCK_BYTES != 0
        {
            return Err(format!("implausible segment size {}", header.segment_bytes));
        }
        Ok(header)
    }
}

/// The fields of a record header (see the module docs for the layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length.
    pub len: u32,
    /// Stored checksum.
    pub crc: u32,
    /// The record's log sequence number.
    pub lsn: u64,
    /// First LSN of the batch (one write + one fdatasync) that carried the record.
    pub batch_lsn: u64,
    /// Caller-defined record kind.
    pub kind: u8,
}

impl RecordHeader {
    /// Bytes the whole record occupies on disk.
    pub fn record_bytes(&self) -> u64 {
        record_bytes(u64::from(self.len))
    }
}

/// What the 32 bytes at a record position say, before the checksum is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderCheck {
    /// All 32 bytes are zero: the end of the written part of the segment.
    Zero,
    /// The header cannot be a record header; the string says why.
    Invalid(String),
    /// A well-formed header; verify the whole record with [`verify_record`].
    Plausible(RecordHeader),
}

/// Encode a record header (checksum left zero; see [`seal_record`]).
pub fn encode_record_header(out: &mut [u8], len: u32, lsn: u64, batch_lsn: u64, kind: u8) {
    assert!(out.len() as u64 >= RECORD_HEADER_BYTES);
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&0u32.to_le_bytes());
    out[8..16].copy_from_slice(&lsn.to_le_bytes());
    out[16..24].copy_from_slice(&batch_lsn.to_le_bytes());
    out[24] = kind;
    out[25] = RECORD_MARKER;
    out[26..32].fill(0);
}

/// Overwrite the `batch_lsn` field of an encoded record header.
pub fn set_batch_lsn(record: &mut [u8], batch_lsn: u64) {
    record[16..24].copy_from_slice(&batch_lsn.to_le_bytes());
}

/// Compute and store the checksum of an encoded record. `record` is the header,
/// the payload and the zero padding (exactly [`record_bytes`] long).
pub fn seal_record(record: &mut [u8]) {
    let len = u64::from(le_u32(record, 0));
    assert_eq!(record.len() as u64, record_bytes(len));
    let end = (RECORD_HEADER_BYTES + len) as usize;
    let crc = crc32c::crc32c(&record[8..end]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Decode the header at the start of `bytes` (at least 32 bytes). `room` is the
/// number of bytes from the record start to the end of the segment.
pub fn check_record_header(bytes: &[u8], room: u64) -> HeaderCheck {
    let hdr = &bytes[..RECORD_HEADER_BYTES as usize];
    if hdr.iter().all(|&b| b == 0) {
        return HeaderCheck::Zero;
    }
    if hdr[25] != RECORD_MARKER {
        return HeaderCheck::Invalid(format!("bad record marker {:#04x}", hdr[25]));
    }
    if hdr[26..32].iter().any(|&b| b != 0) {
        return HeaderCheck::Invalid("reserved record header bytes are not zero".to_string());
    }
    let header = RecordHeader {
        len: le_u32(hdr, 0),
        crc: le_u32(hdr, 4),
        lsn: le_u64(hdr, 8),
        batch_lsn: le_u64(hdr, 16),
        kind: hdr[24],
    };
    let size = header.record_bytes();
    if size > RECORD_BYTES_LIMIT {
        return HeaderCheck::Invalid(format!("record length {} exceeds the limit", header.len));
    }
    if size > room {
        return HeaderCheck::Invalid(format!(
            "record of {size} bytes overruns the segment ({room} bytes left)"
        ));
    }
    if header.lsn == 0 || header.batch_lsn == 0 || header.batch_lsn > header.lsn {
        return HeaderCheck::Invalid(format!(
            "implausible lsn {} / batch lsn {}",
            header.lsn, header.batch_lsn
        ));
    }
    HeaderCheck::Plausible(header)
}

/// Verify a whole record (`record` is exactly `header.record_bytes()` long):
/// checksum and zero padding.
pub fn verify_record(record: &[u8], header: &RecordHeader) -> Result<(), String> {
    assert_eq!(record.len() as u64, header.record_bytes());
    let end = (RECORD_HEADER_BYTES + u64::from(header.len)) as usize;
    let computed = crc32c::crc32c(&record[8..end]);
    if computed != header.crc {
        return Err(format!(
            "record checksum mismatch at lsn {} (stored {:#010x}, computed {computed:#010x})",
            header.lsn, header.crc
        ));
    }
    if record[end..].iter().any(|&b| b != 0) {
        return Err(format!("record padding is not zero at lsn {}", header.lsn));
    }
    Ok(())
}

/// The payload bytes of a verified record.
pub fn record_payload<'a>(record: &'a [u8], header: &RecordHeader) -> &'a [u8] {
    let start = RECORD_HEADER_BYTES as usize;
    &record[start..start + header.len as usize]
}

/// The first block of every snapshot file.
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | magic `CRWALSNP` |
/// | 8 | 4 | format version (1) |
/// | 12 | 2 | shard id |
/// | 14 | 2 | reserved, zero |
/// | 16 | 8 | LSN covered: the state includes every record up to and including it |
/// | 24 | 8 | body length in bytes |
/// | 32 | 4 | `crc32c` of the body |
/// | 36 | 4 | `crc32c` of the whole block with these 4 bytes taken as zero |
/// | 40 | 4056 | zero |
///
/// The body follows at offset 4096, zero-padded to a multiple of 4096.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The shard (core) whose state this is.
    pub shard: u16,
    /// LSN covered by the snapshot.
    pub lsn: u64,
    /// Body length in bytes.
    pub body_len: u64,
    /// Checksum of the body.
    pub body_crc: u32,
}

const SNAPSHOT_CRC_AT: usize = 36;

impl SnapshotHeader {
    /// Write the header into `block` (one [`BLOCK_BYTES`] block).
    pub fn encode(&self, block: &mut [u8]) {
        assert_eq!(block.len() as u64, BLOCK_BYTES);
        block.fill(0);
        block[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
        block[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        block[12..14].copy_from_slice(&self.shard.to_le_bytes());
        block[16..24].copy_from_slice(&self.lsn.to_le_bytes());
        block[24..32].copy_from_slice(&self.body_len.to_le_bytes());
        block[32..36].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc_skipping(block, SNAPSHOT_CRC_AT);
        block[SNAPSHOT_CRC_AT..SNAPSHOT_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(SnapshotHeader::decode(block), Ok(*self));
    }

    /// Parse and validate a snapshot header block.
    pub fn decode(block: &[u8]) -> Result<SnapshotHeader, String> {
        if (block.len() as u64) < BLOCK_BYTES {
            return Err(format!(
                "snapshot header is {} bytes, expected {BLOCK_BYTES}",
                block.len()
            ));
        }
        let block = &block[..BLOCK_BYTES as usize];
        if block[0..8] != SNAPSHOT_MAGIC {
            return Err("bad snapshot magic".to_string());
        }
        let stored = le_u32(block, SNAPSHOT_CRC_AT);
        let computed = crc_skipping(block, SNAPSHOT_CRC_AT);
        if stored != computed {
            return Err(format!("snapshot header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"));
        }
        let version = le_u32(block, 8);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported snapshot format version {version}"));
        }
        let header = SnapshotHeader {
            shard: le_u16(block, 12),
            lsn: le_u64(block, 16),
            body_len: le_u64(block, 24),
            body_crc: le_u32(block, 32),
        };
        if header.body_len > SNAPSHOT_BYTES_LIMIT {
            return Err(format!(
                "snapshot body length {} exceeds the limit",
                header.body_len
            ));
        }
        Ok(header)
    }
}

/// Suffix of files being written (segments being prepared, snapshots being
/// written). Such files are deleted when the log is opened.
pub const TEMP_SUFFIX: &str = ".tmp";

/// File name of segment `number`: `wal-<20 digits>.seg`.
pub fn segment_file_name(number: u64) -> String {
    format!("wal-{number:020}.seg")
}

/// File name of the snapshot covering `lsn`: `snap-<20 digits>.snap`.
pub fn snapshot_file_name(lsn: u64) -> String {
    format!("snap-{lsn:020}.snap")
}

/// File name of a snapshot installed from a peer beyond the log's end,
/// covering `lsn`: `install-<20 digits>.snap` (same format as a snapshot).
/// The next open restarts the log after it (`docs/WAL.md`, "Recovery rules").
pub fn install_file_name(lsn: u64) -> String {
    format!("install-{lsn:020}.snap")
}

fn parse_numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment number of a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    parse_numbered(name, "wal-", ".seg")
}

/// The LSN of an install file name, if it is one.
pub fn parse_install_file_name(name: &str) -> Option<u64> {
    parse_numbered(name, "install-", ".snap")
}

/// The LSN of a snapshot file name, if it is one.
pub fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    parse_numbered(name, "snap-", ".snap")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trips_and_detects_every_bit_flip_in_its_block() {
        let header = SegmentHeader {
            shard: 7,
            number: 3,
            first_lsn: 1234,
            segment_bytes: 1 << 20,
        };
        let mut block = vec![0u8; BLOCK_BYTES as usize];
        header.encode(&mut block);
        assert_eq!(SegmentHeader::decode(&block), Ok(header));
        for bit in 0..BLOCK_BYTES as usize * 8 {
            let mut damaged = block.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                SegmentHeader::decode(&damaged).is_err(),
                "bit {bit} flip not detected"
            );
        }
    }

    #[test]
    fn record_encode_verify_round_trip_and_damage_detection() {
        let payload: Vec<u8> = (0..45u8).collect();
        let size = record_bytes(payload.len() as u64) as usize;
        assert_eq!(size, 80);
        let mut rec = vec![0u8; size];
        encode_record_header(&mut rec, payload.len() as u32, 9, 1, 3);
        rec[32..32 + payload.len()].copy_from_slice(&payload);
        set_batch_lsn(&mut rec, 8);
        seal_record(&mut rec);
        let header = match check_record_header(&rec, 4096) {
            HeaderCheck::Plausible(h) => h,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(
            (header.lsn, header.batch_lsn, header.kind, header.len),
            (9, 8, 3, 45)
        );
        assert_eq!(verify_record(&rec, &header), Ok(()));
        assert_eq!(record_payload(&rec, &header), &payload[..]);
        for bit in 0..size * 8 {
            let mut damaged = rec.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let detected = match check_record_header(&damaged, 4096) {
                HeaderCheck::Plausible(h) => {
                    h.record_bytes() as usize != size || verify_record(&damaged, &h).is_err()
                }
                HeaderCheck::Zero | HeaderCheck::Invalid(_) => true,
            };
            assert!(detected, "bit {bit} flip not detected");
        }
    }

    #[test]
    fn zero_header_means_end_and_overrun_is_invalid() {
        assert_eq!(check_record_header(&[0u8; 32], 4096), HeaderCheck::Zero);
        let mut rec = vec![0u8; 48];
        encode_record_header(&mut rec, 16, 1, 1, 0);
        seal_record(&mut rec);
        assert!(matches!(
            check_record_header(&rec, 32),
            HeaderCheck::Invalid(_)
        ));
    }

    #[test]
    fn file_names_parse_back_and_reject_lookalikes() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(
            parse_snapshot_file_name(&snapshot_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("wal-42.seg"), None);
        assert_eq!(
            parse_segment_file_name("wal-00000000000000000042.seg.tmp"),
            None
        );
        assert_eq!(
            parse_snapshot_file_name("snap-0000000000000000004x.snap"),
            None
        );
    }

    #[test]
    fn snapshot_header_round_trips() {
        let header = SnapshotHeader {
            shard: 1,
            lsn: 77,
            body_len: 5,
            body_crc: 0xdead_beef,
        };
        let mut block = vec![0u8; BLOCK_BYTES as usize];
        header.encode(&mut block);
        assert_eq!(SnapshotHeader::decode(&block), Ok(header));
        block[100] = 1;
        assert!(SnapshotHeader::decode(&block).is_err());
    }
}
