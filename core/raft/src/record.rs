//! The records the engine writes into the core's WAL and reads back at
//! recovery: kind bytes and a versioned, little-endian encoding.
//!
//! Every payload starts with [`RECORD_FORMAT_VERSION`] (1 byte) and the
//! group id (u32). Then, by kind:
//!
//! | kind | name | body |
//! | --- | --- | --- |
//! | `0x41` | [`KIND_ENTRIES`] | count u32 ≥ 1, then per entry: index u64, term u64, type u8 (0 normal, 1 conf change, 2 conf change v2), data len u32, data, context len u32, context; indexes consecutive |
//! | `0x42` | [`KIND_HARD_STATE`] | term u64, vote u64, commit u64 |
//! | `0x43` | [`KIND_SNAPSHOT`] | index u64, term u64, snapshot kind u8 (0 replace, 1 checkpoint: [`SnapshotKind`]), voter count u8 (1..=7), voters u64 each, total bytes u64, offset u64, chunk len u32, chunk |
//!
//! A snapshot is one or more consecutive chunk records (offsets 0, 512 KiB,
//! …) that end when `offset + len == total`; an empty snapshot is one chunk
//! of length 0. Decoding checks every length against the input and returns
//! a [`DecodeError`], never panics (fuzzed: `fuzz/fuzz_targets/raft_records.rs`).

use crate::constants::{
    RECORD_FORMAT_VERSION, RECORD_PAYLOAD_BYTES_MAX, SNAPSHOT_BYTES_MAX, SNAPSHOT_CHUNK_BYTES,
    VOTERS_MAX,
};
use crate::{DecodeError, GroupId};
use bytes::Bytes;
use raft::eraftpb::{Entry, EntryType, HardState};

/// A run of consecutive log entries of one group.
pub const KIND_ENTRIES: u8 = 0x41;
/// A group's hard state (term, vote, commit).
pub const KIND_HARD_STATE: u8 = 0x42;
/// One chunk of a group's snapshot (metadata + state-machine bytes).
pub const KIND_SNAPSHOT: u8 = 0x43;

/// Whether `kind` is one of this crate's record kinds (the runtime passes
/// only those to [`crate::RaftCore::recover`]).
pub fn is_raft_kind(kind: u8) -> bool {
    matches!(kind, KIND_ENTRIES | KIND_HARD_STATE | KIND_SNAPSHOT)
}

/// Bytes of an entry's header inside an entries record.
const ENTRY_HEADER_BYTES: usize = 8 + 8 + 1 + 4 + 4;
/// Bytes before the first entry of an entries record.
const ENTRIES_HEADER_BYTES: usize = 1 + 4 + 4;

/// Metadata of a snapshot: the log position it replaces and the voters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Last log index the snapshot covers.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The group's voters at that point.
    pub voters: Vec<u64>,
}

/// What a snapshot does to the log before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// Received from the leader: the log it replaces is dropped entirely
    /// (entries after its index in older records do not belong to it).
    Replace = 0,
    /// A group's creation or a compaction checkpoint: entries after its
    /// index stay valid (they are re-written right after it, and recovery
    /// also takes them from older records if that tail was torn off).
    Checkpoint = 1,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Consecutive entries, first index first.
    Entries {
        /// The group.
        group: GroupId,
        /// At least one entry.
        entries: Vec<Entry>,
    },
    /// A hard state.
    HardState {
        /// The group.
        group: GroupId,
        /// Term, vote, commit.
        hard_state: HardState,
    },
    /// A chunk of a snapshot.
    SnapshotChunk {
        /// The group.
        group: GroupId,
        /// The snapshot's metadata (repeated in every chunk).
        meta: SnapshotMeta,
        /// Replacement or checkpoint.
        kind: SnapshotKind,
        /// Total bytes of the snapshot data.
        total: u64,
        /// Where this chunk starts in the data.
        offset: u64,
        /// The chunk.
        data: Bytes,
    },
}

/// An encoded record: (kind byte, payload) for `Wal::append(kind, payload)`.
pub type RawRecord = (u8, Vec<u8>);

fn start(group: GroupId, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.push(RECORD_FORMAT_VERSION);
    out.extend_from_slice(&group.0.to_le_bytes());
    out
}

fn entry_bytes(e: &Entry) -> usize {
    ENTRY_HEADER_BYTES + e.data.len() + e.context.len()
}

/// Encodes `entries` (consecutive) as one or more entries records of at
/// most [`RECORD_PAYLOAD_BYTES_MAX`] bytes each, appended to `out`.
pub fn encode_entries(group: GroupId, entries: &[Entry], out: &mut Vec<RawRecord>) {
    let mut rest = entries;
    while !rest.is_empty() {
        let mut bytes = ENTRIES_HEADER_BYTES;
        let mut n = 0;
        while n < rest.len()
            && (n == 0 || bytes + entry_bytes(&rest[n]) <= RECORD_PAYLOAD_BYTES_MAX)
        {
            bytes += entry_bytes(&rest[n]);
            n += 1;
        }
        let (now, later) = rest.split_at(n);
        let mut p = start(group, bytes);
        p.extend_from_slice(&(now.len() as u32).to_le_bytes());
        for e in now {
            p.extend_from_slice(&e.index.to_le_bytes());
            p.extend_from_slice(&e.term.to_le_bytes());
            p.push(e.get_entry_type() as u8);
            p.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
            p.extend_from_slice(&e.data);
            p.extend_from_slice(&(e.context.len() as u32).to_le_bytes());
            p.extend_from_slice(&e.context);
        }
        out.push((KIND_ENTRIES, p));
        rest = later;
    }
}

/// Encodes a hard state record.
pub fn encode_hard_state(group: GroupId, hs: &HardState) -> RawRecord {
    let mut p = start(group, 1 + 4 + 24);
    p.extend_from_slice(&hs.term.to_le_bytes());
    p.extend_from_slice(&hs.vote.to_le_bytes());
    p.extend_from_slice(&hs.commit.to_le_bytes());
    (KIND_HARD_STATE, p)
}

/// Encodes a snapshot as chunk records of at most [`SNAPSHOT_CHUNK_BYTES`]
/// of data each (one empty chunk for empty data), appended to `out`.
pub fn encode_snapshot(
    group: GroupId,
    meta: &SnapshotMeta,
    kind: SnapshotKind,
    data: &[u8],
    out: &mut Vec<RawRecord>,
) {
    let total = data.len() as u64;
    let mut offset = 0usize;
    loop {
        let len = (data.len() - offset).min(SNAPSHOT_CHUNK_BYTES);
        let mut p = start(group, 64 + 8 * meta.voters.len() + len);
        p.extend_from_slice(&meta.index.to_le_bytes());
        p.extend_from_slice(&meta.term.to_le_bytes());
        p.push(kind as u8);
        p.push(meta.voters.len() as u8);
        for v in &meta.voters {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p.extend_from_slice(&total.to_le_bytes());
        p.extend_from_slice(&(offset as u64).to_le_bytes());
        p.extend_from_slice(&(len as u32).to_le_bytes());
        p.extend_from_slice(&data[offset..offset + len]);
        out.push((KIND_SNAPSHOT, p));
        offset += len;
        if offset == data.len() {
            break;
        }
    }
}

/// A cursor over untrusted bytes: every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated { what });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(b))
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.bytes.len() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

fn invalid(what: &'static str, reason: String) -> DecodeError {
    DecodeError::Invalid { what, reason }
}

/// Decodes one record read back from the WAL.
pub fn decode(kind: u8, payload: &[u8]) -> Result<Record, DecodeError> {
    if !is_raft_kind(kind) {
        return Err(DecodeError::UnknownKind { kind });
    }
    let mut c = Cursor { bytes: payload };
    let version = c.u8("version")?;
    if version != RECORD_FORMAT_VERSION {
        return Err(DecodeError::Version { found: version });
    }
    let group = GroupId(c.u32("group")?);
    let record = match kind {
        KIND_ENTRIES => Record::Entries {
            group,
            entries: decode_entries(&mut c)?,
        },
        KIND_HARD_STATE => {
            let hard_state = HardState {
                term: c.u64("term")?,
                vote: c.u64("vote")?,
                commit: c.u64("commit")?,
                ..HardState::default()
            };
            Record::HardState { group, hard_state }
        }
        _ => decode_snapshot_chunk(group, &mut c)?,
    };
    c.finish()?;
    Ok(record)
}

fn decode_entries(c: &mut Cursor<'_>) -> Result<Vec<Entry>, DecodeError> {
    let count = c.u32("entry count")? as usize;
    if count == 0 || count > c.bytes.len() / ENTRY_HEADER_BYTES {
        return Err(invalid(
            "entry count",
            format!("{count} for {} bytes", c.bytes.len()),
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let mut e = Entry {
            index: c.u64("entry index")?,
            term: c.u64("entry term")?,
            ..Entry::default()
        };
        let entry_type = match c.u8("entry type")? {
            0 => EntryType::EntryNormal,
            1 => EntryType::EntryConfChange,
            2 => EntryType::EntryConfChangeV2,
            t => return Err(invalid("entry type", format!("{t}"))),
        };
        e.set_entry_type(entry_type);
        let len = c.u32("entry data length")? as usize;
        if len > RECORD_PAYLOAD_BYTES_MAX {
            return Err(invalid("entry data length", format!("{len}")));
        }
        e.data = Bytes::copy_from_slice(c.take(len, "entry data")?);
        let len = c.u32("entry context length")? as usize;
        e.context = Bytes::copy_from_slice(c.take(len, "entry context")?);
        if e.index == 0 || e.term == 0 {
            return Err(invalid(
                "entry",
                format!("index {} term {}", e.index, e.term),
            ));
        }
        if i > 0 && entries.last().map(|p: &Entry| p.index + 1) != Some(e.index) {
            return Err(invalid(
                "entry index",
                format!("{} does not follow", e.index),
            ));
        }
        entries.push(e);
    }
    Ok(entries)
}

fn decode_snapshot_chunk(group: GroupId, c: &mut Cursor<'_>) -> Result<Record, DecodeError> {
    let index = c.u64("snapshot index")?;
    let term = c.u64("snapshot term")?;
    let kind = match c.u8("snapshot kind")? {
        0 => SnapshotKind::Replace,
        1 => SnapshotKind::Checkpoint,
        k => return Err(invalid("snapshot kind", format!("{k}"))),
    };
    let n = c.u8("voter count")? as usize;
    if n == 0 || n > VOTERS_MAX {
        return Err(invalid("voter count", format!("{n}")));
    }
    let mut voters = Vec::with_capacity(n);
    for _ in 0..n {
        voters.push(c.u64("voter")?);
    }
    let total = c.u64("snapshot total")?;
    let offset = c.u64("chunk offset")?;
    let len = c.u32("chunk length")? as usize;
    if total > SNAPSHOT_BYTES_MAX || len > SNAPSHOT_CHUNK_BYTES {
        return Err(invalid(
            "snapshot size",
            format!("total {total}, chunk {len}"),
        ));
    }
    if offset.checked_add(len as u64).is_none_or(|end| end > total) {
        return Err(invalid("chunk", format!("{offset}+{len} beyond {total}")));
    }
    let data = Bytes::copy_from_slice(c.take(len, "chunk data")?);
    let meta = SnapshotMeta {
        index,
        term,
        voters,
    };
    Ok(Record::SnapshotChunk {
        group,
        meta,
        kind,
        total,
        offset,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::PROPOSAL_BYTES_MAX;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: Bytes::copy_from_slice(data),
            ..Entry::default()
        }
    }

    #[test]
    fn entries_round_trip_and_split_at_the_record_limit() {
        let big = vec![7u8; PROPOSAL_BYTES_MAX];
        let entries: Vec<Entry> = (1..=5).map(|i| entry(i, 2, &big)).collect();
        let mut out = Vec::new();
        encode_entries(GroupId(9), &entries, &mut out);
        assert_eq!(out.len(), 5, "one 512 KiB entry per record");
        let mut back = Vec::new();
        for (kind, p) in &out {
            assert!(p.len() <= RECORD_PAYLOAD_BYTES_MAX);
            match decode(*kind, p).unwrap() {
                Record::Entries { group, entries } => {
                    assert_eq!(group, GroupId(9));
                    back.extend(entries);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, entries);
    }

    #[test]
    fn snapshot_chunks_round_trip() {
        let data: Vec<u8> = (0..(SNAPSHOT_CHUNK_BYTES * 2 + 10))
            .map(|i| i as u8)
            .collect();
        let meta = SnapshotMeta {
            index: 40,
            term: 3,
            voters: vec![1, 2, 3],
        };
        let mut out = Vec::new();
        encode_snapshot(GroupId(1), &meta, SnapshotKind::Checkpoint, &data, &mut out);
        assert_eq!(out.len(), 3);
        let mut joined = Vec::new();
        for (kind, p) in &out {
            let Record::SnapshotChunk {
                meta: m,
                total,
                offset,
                data: d,
                ..
            } = decode(*kind, p).unwrap()
            else {
                panic!("not a chunk")
            };
            assert_eq!(
                (m.clone(), total, offset),
                (meta.clone(), data.len() as u64, joined.len() as u64)
            );
            joined.extend_from_slice(&d);
        }
        assert_eq!(joined, data);
        let kinds: Vec<SnapshotKind> = out
            .iter()
            .map(|(k, p)| match decode(*k, p) {
                Ok(Record::SnapshotChunk { kind, .. }) => kind,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, vec![SnapshotKind::Checkpoint; 3]);
        let mut empty = Vec::new();
        encode_snapshot(GroupId(1), &meta, SnapshotKind::Replace, &[], &mut empty);
        assert_eq!(empty.len(), 1);
    }

    #[test]
    fn damaged_input_is_a_typed_error_at_every_length() {
        let mut out = Vec::new();
        encode_entries(
            GroupId(1),
            &[entry(1, 1, b"abc"), entry(2, 1, b"")],
            &mut out,
        );
        out.push(encode_hard_state(GroupId(1), &HardState::default()));
        encode_snapshot(
            GroupId(1),
            &SnapshotMeta {
                index: 1,
                term: 1,
                voters: vec![1],
            },
            SnapshotKind::Replace,
            b"xy",
            &mut out,
        );
        for (kind, p) in &out {
            for cut in 0..p.len() {
                assert!(
                    decode(*kind, &p[..cut]).is_err(),
                    "prefix {cut} of kind {kind}"
                );
            }
            let mut longer = p.clone();
            longer.push(0);
            assert_eq!(
                decode(*kind, &longer),
                Err(DecodeError::TrailingBytes { count: 1 })
            );
            let mut v2 = p.clone();
            v2[0] = 2;
            assert_eq!(decode(*kind, &v2), Err(DecodeError::Version { found: 2 }));
        }
        assert_eq!(
            decode(0x01, &[1]),
            Err(DecodeError::UnknownKind { kind: 1 })
        );
    }
}
