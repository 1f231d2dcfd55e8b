//! The check of the `history_index` fuzz target, shared with the corpus
//! replay in `wal/tests/history_fuzz_corpus.rs` (included there with
//! `#[path]`), so the test suite checks exactly what the fuzzer checks.
//!
//! [`decoders`]: the history store's decoders (`courier_wal::history::format`)
//! on any bytes: entries walked back to back as a segment's entry area,
//! segment and index header blocks, a directory block, positions, the
//! conversation table and fences. Never panics; whatever decodes
//! re-encodes to something that decodes to the same value (entries and
//! headers: to the same bytes).
#![allow(dead_code)]

use courier_wal::constants::{BLOCK_BYTES, HISTORY_ENTRY_HEADER_BYTES};
use courier_wal::history::format::{
    check_entry_header, decode_dir_block, decode_fences, decode_positions, decode_table,
    encode_dir_block, encode_entry_header, encode_fences, encode_positions, encode_table,
    seal_entry, set_batch_delta, verify_entry, DirEntry, EntryCheck, HistorySegmentHeader,
    IndexHeader,
};

fn block_of(data: &[u8]) -> Vec<u8> {
    let mut block = vec![0u8; BLOCK_BYTES as usize];
    let n = data.len().min(block.len());
    block[..n].copy_from_slice(&data[..n]);
    block
}

fn le_u32(data: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    for (i, b) in a.iter_mut().enumerate() {
        *b = data.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(a)
}

/// Entries back to back from offset 0: every verified entry re-encodes to
/// exactly its bytes.
fn entries(data: &[u8]) {
    let mut pos = 0usize;
    while pos + HISTORY_ENTRY_HEADER_BYTES as usize <= data.len() {
        let room = (data.len() - pos) as u64;
        let header = match check_entry_header(&data[pos..], room) {
            EntryCheck::Plausible(h) => h,
            EntryCheck::Zero | EntryCheck::Invalid(_) => break,
        };
        let size = header.entry_bytes() as usize;
        let bytes = &data[pos..pos + size];
        if verify_entry(bytes, &header).is_err() {
            break;
        }
        let mut again = vec![0u8; size];
        encode_entry_header(&mut again, &header);
        let start = HISTORY_ENTRY_HEADER_BYTES as usize;
        let end = start + header.len as usize;
        again[start..end].copy_from_slice(&bytes[start..end]);
        set_batch_delta(&mut again, header.batch_delta);
        seal_entry(&mut again);
        assert_eq!(again, bytes, "entry at {pos} does not re-encode");
        pos += size;
    }
}

/// Header blocks: what decodes re-encodes identically.
fn headers(data: &[u8]) {
    let block = block_of(data);
    if let Ok(h) = HistorySegmentHeader::decode(&block) {
        let mut again = vec![0u8; BLOCK_BYTES as usize];
        h.encode(&mut again);
        assert_eq!(HistorySegmentHeader::decode(&again), Ok(h));
    }
    if let Ok(h) = IndexHeader::decode(&block) {
        let mut again = vec![0u8; BLOCK_BYTES as usize];
        h.encode(&mut again);
        assert_eq!(IndexHeader::decode(&again), Ok(h));
        // The layout never overflows and keeps sections in order.
        assert!(h.fences_offset() < h.dir_offset() || h.dir_blocks() == 0);
        assert!(h.dir_offset() <= h.positions_offset());
        assert!(h.positions_offset() <= h.table_offset());
        assert!(h.table_offset() <= h.file_bytes());
    }
}

/// Index sections: decode, re-encode, decode again to the same value.
fn sections(data: &[u8]) {
    let block = block_of(data);
    if let Ok(dir) = decode_dir_block(&block) {
        let mut again = vec![0u8; BLOCK_BYTES as usize];
        encode_dir_block(&dir, &mut again);
        assert_eq!(decode_dir_block(&again), Ok(dir.clone()));
        // The first entry's positions, taken from the bytes after the block.
        let rest = data.get(BLOCK_BYTES as usize..).unwrap_or(&[]);
        positions(rest, &dir[0]);
    }
    let count = u64::from(le_u32(data, 0) % 512);
    let body = data.get(4..).unwrap_or(&[]);
    if let Ok(rows) = decode_table(body, count, u64::from(le_u32(data, 0) >> 9)) {
        let mut again = vec![0u8; rows.len() * 32];
        encode_table(&rows, &mut again);
        assert_eq!(&again[..], &body[..again.len()]);
    }
    if let Ok(fences) = decode_fences(body, count) {
        let mut again = vec![0u8; fences.len() * 8];
        encode_fences(&fences, &mut again);
        assert_eq!(&again[..], &body[..again.len()]);
    }
}

fn positions(bytes: &[u8], entry: &DirEntry) {
    let fixed = DirEntry {
        pos_count: entry.pos_count.min(4096),
        pos_crc: crc32c_of(bytes, entry.pos_count.min(4096)),
        ..*entry
    };
    if let Ok(ps) = decode_positions(bytes, &fixed, u64::from(u32::MAX)) {
        let mut again = vec![0u8; ps.len() * 16];
        encode_positions(&ps, &mut again);
        assert_eq!(&again[..], &bytes[..again.len()]);
    }
}

/// CRC32C as the format computes it (so the fuzzer reaches the checks
/// behind the checksum): the same polynomial via a tiny bitwise loop.
fn crc32c_of(bytes: &[u8], count: u32) -> u32 {
    let len = (count as usize * 16).min(bytes.len());
    let mut crc = !0u32;
    for &b in &bytes[..len] {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Every history decoder on `data`.
pub fn decoders(data: &[u8]) {
    entries(data);
    headers(data);
    sections(data);
}
