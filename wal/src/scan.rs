//! Reading records out of a segment file in large aligned chunks, shared by
//! recovery, replay and reads by LSN. Every record is verified (marker,
//! bounds, checksum, padding) before a caller sees it; the caller checks that
//! LSNs follow each other.

use std::{path::PathBuf, rc::Rc};

use glommio::io::{DmaFile, ReadResult};

use crate::{
    constants::{BLOCK_BYTES, RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, RECORD_MARKER},
    format::{align_down, align_up, check_record_header, verify_record, HeaderCheck, RecordHeader},
    storage::Storage,
    Result,
};

/// A window of a segment file held in one aligned buffer.
pub(crate) struct Chunk {
    pub(crate) file: Rc<DmaFile>,
    pub(crate) path: PathBuf,
    /// Reads never go past this offset (the segment size).
    limit: u64,
    /// Preferred read size.
    chunk_bytes: u64,
    base: u64,
    data: Option<ReadResult>,
}

impl Chunk {
    pub(crate) fn new(file: Rc<DmaFile>, path: PathBuf, limit: u64, chunk_bytes: u64) -> Chunk {
        assert_eq!(chunk_bytes % BLOCK_BYTES, 0);
        Chunk {
            file,
            path,
            limit,
            chunk_bytes,
            base: 0,
            data: None,
        }
    }

    fn loaded_end(&self) -> u64 {
        self.base + self.data.as_ref().map_or(0, |d| d.len() as u64)
    }

    fn covers(&self, pos: u64, len: u64) -> bool {
        self.data.is_some() && pos >= self.base && pos + len <= self.loaded_end()
    }

    /// Make bytes `[pos, pos + len)` available. Returns false if the file ends
    /// before `pos + len`.
    pub(crate) async fn fill(&mut self, storage: &Storage, pos: u64, len: u64) -> Result<bool> {
        if self.covers(pos, len) {
            return Ok(true);
        }
        assert!(pos + len <= self.limit, "read past the segment end");
        let base = align_down(pos, BLOCK_BYTES);
        let end = (base + self.chunk_bytes)
            .max(align_up(pos + len, BLOCK_BYTES))
            .min(align_up(self.limit, BLOCK_BYTES));
        self.data = None;
        let data = storage
            .read(&self.file, &self.path, base, end - base)
            .await?;
        self.base = base;
        self.data = Some(data);
        Ok(self.covers(pos, len))
    }

    /// Bytes `[pos, pos + len)`, which a successful [`Chunk::fill`] made available.
    /// Because reads start block-aligned in block-aligned buffers, a slice at a
    /// 16-aligned file offset is 16-aligned in memory.
    pub(crate) fn bytes(&self, pos: u64, len: u64) -> &[u8] {
        assert!(self.covers(pos, len), "bytes not loaded");
        let data = self.data.as_ref().expect("covers() implies loaded");
        let start = (pos - self.base) as usize;
        &data[start..start + len as usize]
    }

    /// The loaded buffer and the offset of `pos` in it (for zero-copy payloads).
    pub(crate) fn buffer_at(&self, pos: u64) -> (ReadResult, usize) {
        let data = self.data.as_ref().expect("bytes loaded");
        (data.clone(), (pos - self.base) as usize)
    }
}

/// What [`read_record`] found at a position.
#[derive(Debug)]
pub(crate) enum Scanned {
    /// A verified record; its bytes are loaded in the chunk.
    Record(RecordHeader),
    /// An all-zero header, or no room for a header before the segment end.
    End,
    /// The file ends before the header or the record does.
    Eof,
    /// Bytes that are not a valid record.
    Invalid(String),
}

/// Read and verify the record at `pos` (not its LSN: the caller knows what it expects).
pub(crate) async fn read_record(
    chunk: &mut Chunk,
    storage: &Storage,
    pos: u64,
    segment_bytes: u64,
) -> Result<Scanned> {
    if pos + RECORD_HEADER_BYTES > segment_bytes {
        return Ok(Scanned::End);
    }
    if !chunk.fill(storage, pos, RECORD_HEADER_BYTES).await? {
        return Ok(Scanned::Eof);
    }
    let header =
        match check_record_header(chunk.bytes(pos, RECORD_HEADER_BYTES), segment_bytes - pos) {
            HeaderCheck::Zero => return Ok(Scanned::End),
            HeaderCheck::Invalid(reason) => return Ok(Scanned::Invalid(reason)),
            HeaderCheck::Plausible(header) => header,
        };
    let size = header.record_bytes();
    if !chunk.fill(storage, pos, size).await? {
        return Ok(Scanned::Eof);
    }
    Ok(match verify_record(chunk.bytes(pos, size), &header) {
        Ok(()) => Scanned::Record(header),
        Err(reason) => Scanned::Invalid(reason),
    })
}

/// What lies after the first invalid position of the last segment.
#[derive(Debug)]
pub(crate) struct AfterTail {
    /// One past the last non-zero byte at or after the start (the start if none).
    pub(crate) nonzero_end: u64,
    /// A valid record proving the damage is not a torn tail: it was written by
    /// a later batch than the missing record (or is out of order).
    pub(crate) later_batch: Option<(u64, RecordHeader)>,
    /// Valid records of the torn batch itself that were skipped.
    pub(crate) same_batch_records: u64,
}

/// Examine `[from, file_end)` of the last segment after the first invalid
/// record position `from`, where LSN `missing` was expected. Looks at every
/// 16-byte aligned position for a valid record: one from a batch that started
/// after `missing` (or with an LSN below it) means the invalid record had been
/// durable, which is corruption, not a torn write.
pub(crate) async fn examine_after_tail(
    chunk: &mut Chunk,
    storage: &Storage,
    from: u64,
    file_end: u64,
    segment_bytes: u64,
    missing: u64,
) -> Result<AfterTail> {
    let end = file_end.min(segment_bytes);
    let mut out = AfterTail {
        nonzero_end: from,
        later_batch: None,
        same_batch_records: 0,
    };
    let mut pos = from;
    while pos < end {
        if !chunk
            .fill(storage, pos, (end - pos).min(RECORD_HEADER_BYTES))
            .await?
        {
            break;
        }
        // Fast path over the loaded bytes: note non-zero bytes and stop at the
        // first position that could hold a record header.
        let loaded_end = chunk.loaded_end().min(end);
        let mut candidate = None;
        while pos < loaded_end {
            if pos + RECORD_HEADER_BYTES > loaded_end && loaded_end < end {
                break; // the header straddles the buffer end: reload from here
            }
            let step = (loaded_end - pos).min(RECORD_ALIGN_BYTES);
            if let Some(last) = chunk.bytes(pos, step).iter().rposition(|&b| b != 0) {
                out.nonzero_end = out.nonzero_end.max(pos + last as u64 + 1);
            }
            if pos > from
                && pos + RECORD_HEADER_BYTES <= loaded_end
                && chunk.bytes(pos + MARKER_AT, 1)[0] == RECORD_MARKER
            {
                candidate = Some(pos);
                break;
            }
            pos += RECORD_ALIGN_BYTES;
        }
        let Some(at) = candidate else { continue };
        // Slow path: is there a whole valid record at `at`?
        pos = at + RECORD_ALIGN_BYTES;
        let HeaderCheck::Plausible(header) =
            check_record_header(chunk.bytes(at, RECORD_HEADER_BYTES), segment_bytes - at)
        else {
            continue;
        };
        let size = header.record_bytes();
        if at + size > end || !chunk.fill(storage, at, size).await? {
            continue;
        }
        if verify_record(chunk.bytes(at, size), &header).is_err() {
            continue;
        }
        if header.batch_lsn > missing || header.lsn < missing {
            out.later_batch = Some((at, header));
            return Ok(out);
        }
        out.same_batch_records += 1;
        out.nonzero_end = out.nonzero_end.max(at + size);
        pos = at + size;
    }
    Ok(out)
}

/// Offset of the marker byte in a record header.
const MARKER_AT: u64 = 25;
