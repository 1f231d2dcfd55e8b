//! Reading durable records back: one record by LSN (history reads) and a
//! forward [`Reader`] from an LSN (replay). Both re-verify every record they
//! return (checksum, padding, LSN sequence): damaged data is an
//! [`Error::Corrupt`] naming the file and offset, never garbage. A segment
//! that open deferred is verified as a whole (and indexed) before the first
//! read that needs its index; damage found then fails every read at or
//! after it.
//!
//! Payload alignment: records are 16-byte aligned in segments and reads are
//! block-aligned into block-aligned buffers, so every payload slice handed out
//! starts on a 16-byte boundary in memory, as rkyv's in-place validation needs.

use std::{fmt, ops::Deref, path::PathBuf, rc::Rc};

use glommio::io::ReadResult;

use crate::{
    constants::{
        BLOCK_BYTES, POINT_READ_BYTES_MAX, RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES,
        SCAN_CHUNK_BYTES, SEGMENT_HEADER_BYTES,
    },
    format::{align_down, align_up, check_record_header, HeaderCheck, RecordHeader},
    recovery::verify_deferred,
    scan::{read_record, Chunk, Scanned},
    segment::{Located, Segment, Verification},
    state::{Shared, State},
    Error, Lsn, Result,
};

/// The payload of one record, borrowed from an aligned read buffer (no copy).
/// Derefs to `&[u8]`, whose start is 16-byte aligned.
#[derive(Clone)]
pub struct Payload {
    buf: ReadResult,
    start: usize,
    len: usize,
}

impl Payload {
    pub(crate) fn new(buf: ReadResult, start: usize, len: usize) -> Payload {
        let payload = Payload { buf, start, len };
        assert_eq!(
            payload.as_ptr() as usize % RECORD_ALIGN_BYTES as usize,
            0,
            "payloads are 16-byte aligned"
        );
        payload
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.len)
    }
}

/// One record as a [`Reader`] yields it; `payload` is 16-byte aligned.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The caller-defined kind given to `append`.
    pub kind: u8,
    /// The payload given to `append`.
    pub payload: &'a [u8],
}

/// Where a segment is, copied out of the shared table (no borrow across awaits).
struct SegmentRef {
    number: u64,
    path: PathBuf,
    segment_bytes: u64,
    next_lsn: u64,
}

impl SegmentRef {
    fn of(segment: &Segment) -> SegmentRef {
        SegmentRef {
            number: segment.number,
            path: segment.path.clone(),
            segment_bytes: segment.segment_bytes,
            next_lsn: segment.next_lsn,
        }
    }
}

/// Where a read of `lsn` starts, if the segment's index can say.
enum Lookup {
    Found(SegmentRef, Located),
    /// The segment holding `lsn` (this number) was deferred at open.
    Deferred(u64),
}

fn lookup(st: &State, lsn: u64, last: u64) -> Result<Lookup> {
    let segment = st
        .segment_of(lsn)
        .ok_or_else(|| st.out_of_range(lsn, last))?;
    match &segment.verification {
        Verification::Deferred => Ok(Lookup::Deferred(segment.number)),
        Verification::Damaged {
            lsn: bad,
            offset,
            reason,
        } if lsn >= *bad => Err(Error::corrupt(&segment.path, *offset, reason.clone())),
        Verification::Verified | Verification::Damaged { .. } => {
            Ok(Lookup::Found(SegmentRef::of(segment), segment.locate(lsn)))
        }
    }
}

/// Find where to read `lsn` (retained, at most `last`), verifying its
/// segment first if open deferred it.
async fn locate(shared: &Shared, lsn: u64, last: u64) -> Result<(SegmentRef, Located)> {
    let number = match lookup(&shared.state.borrow(), lsn, last)? {
        Lookup::Found(segment, located) => return Ok((segment, located)),
        Lookup::Deferred(number) => number,
    };
    verify_deferred(shared, number).await?;
    match lookup(&shared.state.borrow(), lsn, last)? {
        Lookup::Found(segment, located) => Ok((segment, located)),
        Lookup::Deferred(_) => unreachable!("verify_deferred leaves no retained segment deferred"),
    }
}

/// Read the record with LSN `lsn`, which must be durable and retained.
pub(crate) async fn read_one(shared: &Shared, lsn: u64) -> Result<(u8, Payload)> {
    let last = {
        let st = shared.state.borrow();
        if lsn == 0 || lsn > st.durable_lsn || lsn < st.first_lsn() {
            return Err(st.out_of_range(lsn, st.durable_lsn));
        }
        st.durable_lsn
    };
    let (segment, located) = locate(shared, lsn, last).await?;
    let file = shared.segment_file(segment.number, &segment.path).await?;
    let window =
        align_up(located.end_offset, BLOCK_BYTES) - align_down(located.start_offset, BLOCK_BYTES);
    let mut chunk = Chunk::new(
        file,
        segment.path.clone(),
        segment.segment_bytes,
        window.clamp(BLOCK_BYTES, POINT_READ_BYTES_MAX),
    );
    let mut pos = located.start_offset;
    for expected in located.start_lsn..lsn {
        // Records before the wanted one are only stepped over: their headers
        // must frame correctly; their payloads are not ours to verify.
        pos += skip_record(shared, &mut chunk, &segment, pos, expected).await?;
    }
    let header = expect_record(shared, &mut chunk, &segment, pos, lsn).await?;
    let (buf, at) = chunk.buffer_at(pos + RECORD_HEADER_BYTES);
    Ok((header.kind, Payload::new(buf, at, header.len as usize)))
}

/// Step over the record at `pos`, which must frame as record `expected`:
/// returns its size. Its checksum is not verified (it is not returned).
async fn skip_record(
    shared: &Shared,
    chunk: &mut Chunk,
    segment: &SegmentRef,
    pos: u64,
    expected: u64,
) -> Result<u64> {
    if pos + RECORD_HEADER_BYTES > segment.segment_bytes
        || !chunk
            .fill(&shared.storage, pos, RECORD_HEADER_BYTES)
            .await?
    {
        return Err(Error::corrupt(
            &segment.path,
            pos,
            format!("record lsn {expected} is missing"),
        ));
    }
    match check_record_header(
        chunk.bytes(pos, RECORD_HEADER_BYTES),
        segment.segment_bytes - pos,
    ) {
        HeaderCheck::Plausible(header) if header.lsn == expected => Ok(header.record_bytes()),
        HeaderCheck::Plausible(header) => Err(Error::corrupt(
            &segment.path,
            pos,
            format!("expected lsn {expected}, found {}", header.lsn),
        )),
        HeaderCheck::Zero => Err(Error::corrupt(
            &segment.path,
            pos,
            format!("record lsn {expected} is missing"),
        )),
        HeaderCheck::Invalid(reason) => Err(Error::corrupt(&segment.path, pos, reason)),
    }
}

/// Read the record at `pos`, which must be the valid record `expected`.
async fn expect_record(
    shared: &Shared,
    chunk: &mut Chunk,
    segment: &SegmentRef,
    pos: u64,
    expected: u64,
) -> Result<RecordHeader> {
    assert!(
        expected < segment.next_lsn,
        "reads stay within written records"
    );
    match read_record(chunk, &shared.storage, pos, segment.segment_bytes).await? {
        Scanned::Record(header) if header.lsn == expected => Ok(header),
        Scanned::Record(header) => Err(Error::corrupt(
            &segment.path,
            pos,
            format!("expected lsn {expected}, found {}", header.lsn),
        )),
        Scanned::End | Scanned::Eof => Err(Error::corrupt(
            &segment.path,
            pos,
            format!("record lsn {expected} is missing"),
        )),
        Scanned::Invalid(reason) => Err(Error::corrupt(&segment.path, pos, reason)),
    }
}

/// A forward iterator over durable records, from a start LSN up to the LSN
/// that was durable when the reader was created ([`Reader::end`]). Holds one
/// scan buffer (2 MiB) at a time; never loads the whole log.
pub struct Reader {
    shared: Rc<Shared>,
    next_lsn: u64,
    end_lsn: u64,
    current: Option<(SegmentRef, Chunk, u64)>,
}

impl Reader {
    pub(crate) fn new(shared: Rc<Shared>, from: Lsn) -> Result<Reader> {
        let from = Lsn(from.0.max(1));
        let end_lsn = {
            let st = shared.state.borrow();
            let first = st.first_lsn();
            if from.0 < first || from.0 > st.durable_lsn + 1 {
                return Err(st.out_of_range(from.0, st.durable_lsn));
            }
            st.durable_lsn
        };
        Ok(Reader {
            shared,
            next_lsn: from.0,
            end_lsn,
            current: None,
        })
    }

    /// The last LSN this reader will return.
    pub fn end(&self) -> Lsn {
        Lsn(self.end_lsn)
    }

    /// The next record, or `None` after [`Reader::end`].
    pub async fn next(&mut self) -> Result<Option<Record<'_>>> {
        if self.next_lsn > self.end_lsn {
            return Ok(None);
        }
        let lsn = self.next_lsn;
        let in_current = matches!(&self.current, Some((segment, _, _)) if lsn < segment.next_lsn);
        if !in_current {
            self.current = None;
            // From a segment's first record no index is needed (this reader
            // verifies every record it returns), so a deferred segment is
            // not checked as a whole first.
            let from_start = {
                let st = self.shared.state.borrow();
                let segment = st
                    .segment_of(lsn)
                    .ok_or_else(|| st.out_of_range(lsn, self.end_lsn))?;
                (segment.first_lsn == lsn).then(|| {
                    let located = Located {
                        start_lsn: lsn,
                        start_offset: SEGMENT_HEADER_BYTES,
                        end_offset: segment.segment_bytes,
                    };
                    (SegmentRef::of(segment), located)
                })
            };
            let (segment, located) = match from_start {
                Some(found) => found,
                None => locate(&self.shared, lsn, self.end_lsn).await?,
            };
            let file = self
                .shared
                .segment_file(segment.number, &segment.path)
                .await?;
            let mut chunk = Chunk::new(
                file,
                segment.path.clone(),
                segment.segment_bytes,
                SCAN_CHUNK_BYTES,
            );
            // Skip from the indexed record to the one asked for.
            let mut pos = located.start_offset;
            let mut expected = located.start_lsn;
            while expected < lsn {
                pos += skip_record(&self.shared, &mut chunk, &segment, pos, expected).await?;
                expected += 1;
            }
            self.current = Some((segment, chunk, pos));
        }
        let (segment, chunk, pos) = self.current.as_mut().expect("set above");
        let header = expect_record(&self.shared, chunk, segment, *pos, lsn).await?;
        let record_pos = *pos;
        *pos += header.record_bytes();
        self.next_lsn += 1;
        let payload = chunk.bytes(record_pos + RECORD_HEADER_BYTES, u64::from(header.len));
        debug_assert_eq!(payload.as_ptr() as usize % RECORD_ALIGN_BYTES as usize, 0);
        Ok(Some(Record {
            lsn: Lsn(lsn),
            kind: header.kind,
            payload,
        }))
    }
}
