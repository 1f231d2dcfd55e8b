//! The replicated data path's pure parts (no glommio, no I/O): how a
//! core's records travel as Raft entries, the follower's apply rule, and
//! the compaction snapshot's bytes.
//!
//! An entry's data is [`ENTRY_FORMAT_VERSION`] (u8), a record count (u32
//! ≥ 1), then per record: LSN (u64), kind (u8), payload length (u32),
//! payload; little-endian; the LSNs consecutive. Empty data is raft's
//! term-start no-op and carries no record. A compaction snapshot is
//! [`SNAPSHOT_FORMAT_VERSION`] (u8) then the state LSN (u64) the raft
//! index it covers maps to.
//!
//! Must never: panic on bytes (everything decoded is checked and typed:
//! [`EntryError`]), produce an entry larger than the engine's proposal
//! bound, or decide to apply a record out of LSN order.

use crate::constants::PROPOSAL_BYTES_MAX;

/// Version byte of an entry's data.
pub const ENTRY_FORMAT_VERSION: u8 = 1;
/// Version byte of a compaction snapshot's bytes.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;
/// Bytes before the first record of an entry: version + count.
const ENTRY_HEADER_BYTES: usize = 1 + 4;
/// Bytes of a record's header inside an entry: LSN + kind + length.
pub const RECORD_HEADER_BYTES: usize = 8 + 1 + 4;

/// One core record (what `Effect::Append` asked to write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreRecord {
    /// The core's LSN for it (the state WAL's LSN on every replica).
    pub lsn: u64,
    /// courier-core's record kind.
    pub kind: u8,
    /// The record's bytes.
    pub payload: Vec<u8>,
}

/// Entry or snapshot bytes that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The bytes end inside `what`.
    #[error("truncated {what}")]
    Truncated {
        /// The field cut off.
        what: &'static str,
    },
    /// An unknown format version.
    #[error("format version {found}, expected {expected}")]
    Version {
        /// The version byte read.
        found: u8,
        /// The version this build writes.
        expected: u8,
    },
    /// A count of zero records.
    #[error("an entry with no record")]
    NoRecord,
    /// LSNs that do not follow each other.
    #[error("record LSN {got} after {previous}")]
    NotConsecutive {
        /// The record before.
        previous: u64,
        /// This record.
        got: u64,
    },
    /// Bytes left after the last record.
    #[error("{bytes} trailing bytes")]
    Trailing {
        /// How many.
        bytes: usize,
    },
    /// One record too large for any entry.
    #[error("a record of {bytes} bytes does not fit an entry ({max} at most)")]
    TooLarge {
        /// The record's payload bytes.
        bytes: usize,
        /// The most one record may hold.
        max: usize,
    },
}

/// Most payload bytes one record may have to fit in an entry alone.
pub const RECORD_PAYLOAD_MAX: usize = PROPOSAL_BYTES_MAX - ENTRY_HEADER_BYTES - RECORD_HEADER_BYTES;

/// Packs `records` (consecutive LSNs, in order) into entries of at most
/// [`PROPOSAL_BYTES_MAX`] bytes each, keeping the order; a record too
/// large for an entry of its own is refused.
pub fn encode_entries(records: &[CoreRecord]) -> Result<Vec<Vec<u8>>, EntryError> {
    let mut out = Vec::new();
    let mut current: Vec<&CoreRecord> = Vec::new();
    let mut bytes = ENTRY_HEADER_BYTES;
    for r in records {
        if r.payload.len() > RECORD_PAYLOAD_MAX {
            return Err(EntryError::TooLarge {
                bytes: r.payload.len(),
                max: RECORD_PAYLOAD_MAX,
            });
        }
        let size = RECORD_HEADER_BYTES + r.payload.len();
        if bytes + size > PROPOSAL_BYTES_MAX {
            out.push(encode_one(&current));
            current.clear();
            bytes = ENTRY_HEADER_BYTES;
        }
        current.push(r);
        bytes += size;
    }
    if !current.is_empty() {
        out.push(encode_one(&current));
    }
    Ok(out)
}

/// Encodes consecutive records in the entry encoding with no size bound
/// (fetch replies, which the link bounds instead).
pub fn encode_unbounded(records: &[CoreRecord]) -> Vec<u8> {
    encode_one(&records.iter().collect::<Vec<_>>())
}

fn encode_one(records: &[&CoreRecord]) -> Vec<u8> {
    let size: usize = records
        .iter()
        .map(|r| RECORD_HEADER_BYTES + r.payload.len())
        .sum();
    let mut out = Vec::with_capacity(ENTRY_HEADER_BYTES + size);
    out.push(ENTRY_FORMAT_VERSION);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        out.extend_from_slice(&r.lsn.to_le_bytes());
        out.push(r.kind);
        out.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.payload);
    }
    out
}

/// A little-endian reader over checked bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EntryError> {
        if self.0.len() < n {
            return Err(EntryError::Truncated { what });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, EntryError> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, EntryError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, EntryError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// Decodes an entry's data (not empty: the caller skips raft's no-ops).
pub fn decode_entry(data: &[u8]) -> Result<Vec<CoreRecord>, EntryError> {
    let mut r = Reader(data);
    let version = r.u8("version")?;
    if version != ENTRY_FORMAT_VERSION {
        return Err(EntryError::Version {
            found: version,
            expected: ENTRY_FORMAT_VERSION,
        });
    }
    let count = r.u32("count")?;
    if count == 0 {
        return Err(EntryError::NoRecord);
    }
    // Each record needs its header: a count the bytes cannot hold is
    // refused before anything is allocated for it.
    if (count as usize).saturating_mul(RECORD_HEADER_BYTES) > r.0.len() {
        return Err(EntryError::Truncated { what: "records" });
    }
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let lsn = r.u64("record lsn")?;
        let kind = r.u8("record kind")?;
        let len = r.u32("record length")? as usize;
        let payload = r.take(len, "record payload")?.to_vec();
        if let Some(previous) = records.last().map(|p: &CoreRecord| p.lsn) {
            if previous.checked_add(1) != Some(lsn) {
                return Err(EntryError::NotConsecutive { previous, got: lsn });
            }
        }
        records.push(CoreRecord { lsn, kind, payload });
    }
    if !r.0.is_empty() {
        return Err(EntryError::Trailing { bytes: r.0.len() });
    }
    Ok(records)
}

/// The LSN of an entry's first record (None for bytes too short to hold
/// one; the entry is not otherwise checked).
pub fn first_lsn(data: &[u8]) -> Option<u64> {
    let mut r = Reader(data.get(ENTRY_HEADER_BYTES..)?);
    r.u64("record lsn").ok()
}

/// The bytes of a compaction snapshot at state LSN `lsn`.
pub fn encode_snapshot(lsn: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(SNAPSHOT_FORMAT_VERSION);
    out.extend_from_slice(&lsn.to_le_bytes());
    out
}

/// The state LSN a compaction snapshot covers. Empty bytes (a group's
/// creation) cover nothing: LSN 0.
pub fn decode_snapshot(bytes: &[u8]) -> Result<u64, EntryError> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let mut r = Reader(bytes);
    let version = r.u8("snapshot version")?;
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(EntryError::Version {
            found: version,
            expected: SNAPSHOT_FORMAT_VERSION,
        });
    }
    let lsn = r.u64("snapshot lsn")?;
    if !r.0.is_empty() {
        return Err(EntryError::Trailing { bytes: r.0.len() });
    }
    Ok(lsn)
}

/// What a follower does with one committed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Already in the state WAL (re-applied after a restart): skip it.
    Skip,
    /// The next one: append it to the state WAL and replay it.
    Apply,
    /// Records between are missing: the state cannot go on (fatal).
    Gap {
        /// The LSN the state WAL needs next.
        expected: u64,
        /// The record's LSN.
        got: u64,
    },
}

/// The follower's rule for a committed record `lsn` when the state WAL's
/// last record is `last`.
pub fn follow(last: u64, lsn: u64) -> Follow {
    let expected = last + 1;
    if lsn < expected {
        Follow::Skip
    } else if lsn == expected {
        Follow::Apply
    } else {
        Follow::Gap { expected, got: lsn }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(lsn: u64, len: usize) -> CoreRecord {
        CoreRecord {
            lsn,
            kind: (lsn % 18) as u8 + 1,
            payload: vec![lsn as u8; len],
        }
    }

    #[test]
    fn records_round_trip_and_split_at_the_proposal_bound() {
        let records: Vec<CoreRecord> = (5..25).map(|l| rec(l, 100 * 1024)).collect();
        let entries = encode_entries(&records).unwrap();
        assert!(entries.len() > 1, "two MiB of records need several entries");
        assert!(entries.iter().all(|e| e.len() <= PROPOSAL_BYTES_MAX));
        let back: Vec<CoreRecord> = entries
            .iter()
            .flat_map(|e| decode_entry(e).unwrap())
            .collect();
        assert_eq!(back, records);
        assert_eq!(
            first_lsn(&entries[1]),
            Some(back[0].lsn + entries_len(&entries[0]))
        );
        assert_eq!(first_lsn(&entries[0]), Some(5));
        assert_eq!(first_lsn(&entries[0][..12]), None);
        let one = encode_entries(&[rec(1, 0)]).unwrap();
        assert_eq!(decode_entry(&one[0]).unwrap(), vec![rec(1, 0)]);
        assert!(encode_entries(&[]).unwrap().is_empty());
    }

    fn entries_len(data: &[u8]) -> u64 {
        decode_entry(data).unwrap().len() as u64
    }

    #[test]
    fn a_record_too_large_for_an_entry_is_refused() {
        let big = rec(1, RECORD_PAYLOAD_MAX + 1);
        assert_eq!(
            encode_entries(&[big]),
            Err(EntryError::TooLarge {
                bytes: RECORD_PAYLOAD_MAX + 1,
                max: RECORD_PAYLOAD_MAX
            })
        );
        let fits = encode_entries(&[rec(1, RECORD_PAYLOAD_MAX)]).unwrap();
        assert_eq!(fits.len(), 1);
        assert_eq!(fits[0].len(), PROPOSAL_BYTES_MAX);
    }

    #[test]
    fn every_truncation_and_bad_field_is_a_typed_error() {
        let data = encode_entries(&[rec(7, 3), rec(8, 2)]).unwrap().remove(0);
        for cut in 0..data.len() {
            assert!(
                matches!(
                    decode_entry(&data[..cut]),
                    Err(EntryError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut trailing = data.clone();
        trailing.push(0);
        assert_eq!(
            decode_entry(&trailing),
            Err(EntryError::Trailing { bytes: 1 })
        );
        let mut version = data.clone();
        version[0] = 9;
        assert!(matches!(
            decode_entry(&version),
            Err(EntryError::Version { found: 9, .. })
        ));
        let none = [ENTRY_FORMAT_VERSION, 0, 0, 0, 0];
        assert_eq!(decode_entry(&none), Err(EntryError::NoRecord));
        let huge = [ENTRY_FORMAT_VERSION, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode_entry(&huge),
            Err(EntryError::Truncated { .. })
        ));
        let mut gap = data;
        // The second record's LSN (after version, count, first header and payload).
        let at = ENTRY_HEADER_BYTES + RECORD_HEADER_BYTES + 3;
        gap[at..at + 8].copy_from_slice(&10u64.to_le_bytes());
        assert_eq!(
            decode_entry(&gap),
            Err(EntryError::NotConsecutive {
                previous: 7,
                got: 10
            })
        );
    }

    #[test]
    fn snapshot_bytes_round_trip() {
        assert_eq!(decode_snapshot(&encode_snapshot(42)), Ok(42));
        assert_eq!(decode_snapshot(&[]), Ok(0));
        assert!(matches!(
            decode_snapshot(&[2, 0]),
            Err(EntryError::Version { .. })
        ));
        assert!(matches!(
            decode_snapshot(&[1, 0]),
            Err(EntryError::Truncated { .. })
        ));
        let mut long = encode_snapshot(1);
        long.push(0);
        assert_eq!(
            decode_snapshot(&long),
            Err(EntryError::Trailing { bytes: 1 })
        );
    }

    #[test]
    fn follower_skips_what_it_has_applies_the_next_and_stops_at_a_gap() {
        assert_eq!(follow(10, 3), Follow::Skip);
        assert_eq!(follow(10, 10), Follow::Skip);
        assert_eq!(follow(10, 11), Follow::Apply);
        assert_eq!(follow(0, 1), Follow::Apply);
        assert_eq!(
            follow(10, 13),
            Follow::Gap {
                expected: 11,
                got: 13
            }
        );
    }
}
