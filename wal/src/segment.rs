//! In-memory description of one segment file and its sparse LSN index.
//!
//! The index maps an LSN to a file offset without holding an entry per record:
//! it keeps the first record that starts in each [`INDEX_STRIDE_BYTES`] window
//! of the segment. A lookup finds the nearest entry at or before the LSN and the
//! reader scans forward from there, reading at most one stride plus one record.
//! Memory: [`INDEX_ENTRY_BYTES`] per stride, i.e. 8 KiB per 64 MiB segment,
//! whatever the record sizes (bounded by [`INDEX_ENTRIES_PER_SEGMENT_MAX`]).
//!
//! A sealed segment whose records all precede the newest snapshot is not
//! scanned at open ([`Verification::Deferred`]): its index is built, and its
//! records verified, by the first read that needs it (`recovery::verify_deferred`).

use std::path::PathBuf;

use crate::constants::{INDEX_ENTRIES_PER_SEGMENT_MAX, INDEX_STRIDE_BYTES, SEGMENT_HEADER_BYTES};

#[cfg(doc)]
use crate::constants::INDEX_ENTRY_BYTES;

/// One segment of the log as the running log knows it.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    /// Segment number (from the file name and header).
    pub(crate) number: u64,
    /// LSN of the first record the segment holds.
    pub(crate) first_lsn: u64,
    /// Path of the segment file.
    pub(crate) path: PathBuf,
    /// Length of the segment file.
    pub(crate) segment_bytes: u64,
    /// One past the last LSN written into this segment (`first_lsn` when empty).
    pub(crate) next_lsn: u64,
    /// One past the last byte of the last record written (header size when empty).
    pub(crate) end_offset: u64,
    /// Sparse LSN → offset index (complete only once `verification` is not
    /// [`Verification::Deferred`]).
    pub(crate) index: SparseIndex,
    /// Whether the records were verified and the index built.
    pub(crate) verification: Verification,
}

/// How far a segment's records have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verification {
    /// Every record was verified (at open, or written by this process, or by
    /// a deferred check) and the index is complete.
    Verified,
    /// Sealed and wholly covered by the newest snapshot: open checked only
    /// its header and size. `next_lsn` comes from the next segment's header;
    /// `end_offset` and the index are unknown until the first read verifies it.
    Deferred,
    /// The deferred check found damage: records below `lsn` verified and are
    /// indexed; any read of `lsn` or later fails with `offset` and `reason`.
    Damaged {
        /// First LSN that cannot be read.
        lsn: u64,
        /// Offset of the first bad byte position.
        offset: u64,
        /// What was wrong there.
        reason: String,
    },
}

impl Segment {
    pub(crate) fn new(number: u64, first_lsn: u64, path: PathBuf, segment_bytes: u64) -> Segment {
        Segment {
            number,
            first_lsn,
            path,
            segment_bytes,
            next_lsn: first_lsn,
            end_offset: SEGMENT_HEADER_BYTES,
            index: SparseIndex::default(),
            verification: Verification::Verified,
        }
    }

    /// A sealed segment that open did not scan: it ends before `next_lsn`
    /// (the next segment's first LSN), and nothing else is known yet.
    pub(crate) fn deferred(
        number: u64,
        first_lsn: u64,
        path: PathBuf,
        segment_bytes: u64,
        next_lsn: u64,
    ) -> Segment {
        assert!(next_lsn > first_lsn, "sealed segments are not empty");
        Segment {
            next_lsn,
            end_offset: segment_bytes,
            verification: Verification::Deferred,
            ..Segment::new(number, first_lsn, path, segment_bytes)
        }
    }

    /// Account for a record of `size` bytes with `lsn` written at `offset`.
    pub(crate) fn note_record(&mut self, lsn: u64, offset: u64, size: u64) {
        assert_eq!(lsn, self.next_lsn, "records are noted in LSN order");
        assert_eq!(offset, self.end_offset, "records are contiguous");
        assert!(
            offset + size <= self.segment_bytes,
            "record overruns its segment"
        );
        self.index.note(self.first_lsn, lsn, offset);
        self.next_lsn = lsn + 1;
        self.end_offset = offset + size;
    }

    /// Where to start scanning for `lsn` (which must be in this segment, and
    /// indexed: not deferred, not at or after damage), and where the scan can
    /// stop at the latest.
    pub(crate) fn locate(&self, lsn: u64) -> Located {
        assert!(
            lsn >= self.first_lsn && lsn < self.next_lsn,
            "lsn {lsn} not in segment"
        );
        match &self.verification {
            Verification::Verified => {}
            Verification::Deferred => panic!("locate in a deferred segment"),
            Verification::Damaged { lsn: bad, .. } => {
                assert!(lsn < *bad, "locate at or after damage")
            }
        }
        let delta = lsn - self.first_lsn;
        let entries = &self.index.entries;
        // Entries are sorted by LSN delta; find the last one at or before `delta`.
        let at = entries.partition_point(|e| u64::from(e.lsn_delta) <= delta);
        assert!(at > 0, "the first record of a segment is always indexed");
        let entry = entries[at - 1];
        let end_offset = match entries.get(at) {
            Some(next) => u64::from(next.offset),
            None => self.end_offset,
        };
        Located {
            start_lsn: self.first_lsn + u64::from(entry.lsn_delta),
            start_offset: u64::from(entry.offset),
            end_offset,
        }
    }
}

/// Result of [`Segment::locate`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Located {
    /// LSN of the record at `start_offset`.
    pub(crate) start_lsn: u64,
    /// Offset of an indexed record at or before the wanted LSN.
    pub(crate) start_offset: u64,
    /// The wanted record ends at or before this offset.
    pub(crate) end_offset: u64,
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    lsn_delta: u32,
    offset: u32,
}

/// The sparse index of one segment.
#[derive(Debug, Clone, Default)]
pub(crate) struct SparseIndex {
    entries: Vec<IndexEntry>,
}

impl SparseIndex {
    fn note(&mut self, first_lsn: u64, lsn: u64, offset: u64) {
        let window = offset / INDEX_STRIDE_BYTES;
        let new_window = match self.entries.last() {
            None => true,
            Some(last) => window > u64::from(last.offset) / INDEX_STRIDE_BYTES,
        };
        if new_window {
            let lsn_delta = u32::try_from(lsn - first_lsn).expect("segment LSN span fits u32");
            let offset = u32::try_from(offset).expect("segment offsets fit u32");
            self.entries.push(IndexEntry { lsn_delta, offset });
            assert!(self.entries.len() as u64 <= INDEX_ENTRIES_PER_SEGMENT_MAX);
        }
    }

    /// Number of entries (for tests and the memory bound).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_finds_a_start_at_or_before_and_an_end_after_every_record() {
        let mut seg = Segment::new(1, 100, PathBuf::from("x"), 1 << 20);
        let mut offsets = Vec::new();
        let mut offset = SEGMENT_HEADER_BYTES;
        for i in 0..5000u64 {
            let size = 16 * (2 + (i * 7919) % 300);
            if offset + size > seg.segment_bytes {
                break;
            }
            seg.note_record(100 + i, offset, size);
            offsets.push((offset, size));
            offset += size;
        }
        assert!(seg.index.len() as u64 <= seg.segment_bytes / INDEX_STRIDE_BYTES + 1);
        for (i, &(off, size)) in offsets.iter().enumerate() {
            let located = seg.locate(100 + i as u64);
            assert!(located.start_offset <= off);
            assert!(located.start_lsn <= 100 + i as u64);
            assert!(located.end_offset >= off + size);
            assert!(located.end_offset - located.start_offset <= INDEX_STRIDE_BYTES + 16 * 302);
        }
    }
}
