//! The in-memory state of a history store and what it costs: the
//! conversation table (one row per conversation), the active segment's full
//! index (bounded by the segment size), and one small summary per sealed
//! segment (its index header and one 8-byte fence per 85 conversations).
//! Nothing here grows per message of a sealed segment.
//!
//! Also the pure parts of sealing: [`apply`] turns durable entries into
//! index and table updates, [`IndexBuilder`] lays out a segment's index file.

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    mem::size_of,
    path::PathBuf,
    rc::Rc,
    sync::Arc,
};

use glommio::io::{Directory, DmaFile};

use crate::{
    constants::{
        BLOCK_BYTES, HISTORY_DIR_BLOCK_ENTRIES, HISTORY_OPEN_FILES_MAX, HISTORY_POSITION_BYTES,
        HISTORY_SEGMENT_HEADER_BYTES, HISTORY_TABLE_ENTRY_BYTES,
    },
    storage::Storage,
    Error, Result,
};

use super::{
    format::{
        encode_dir_block, encode_fences, encode_positions, encode_table, DirEntry, EntryHeader,
        EntryKind, IndexHeader, Position, TableRow,
    },
    HistoryOptions,
};

/// One conversation's durable state (one table row).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Conv {
    /// Highest durable seq (0: none).
    pub(crate) last_seq: u64,
    /// Newest segment holding one of its messages (0: none).
    pub(crate) last_segment: u64,
    /// Seqs below this are gone (0 or 1: nothing dropped).
    pub(crate) retention: u64,
}

/// A conversation's messages in the active segment.
#[derive(Debug)]
pub(crate) struct ActiveConv {
    pub(crate) prev_segment: u64,
    pub(crate) positions: Vec<Position>,
}

/// What stays in memory of a sealed segment.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) header: IndexHeader,
    /// First conversation of each directory block.
    pub(crate) fences: Box<[u64]>,
}

impl Sealed {
    /// Index of the directory block that may hold `conversation`.
    pub(crate) fn dir_block_of(&self, conversation: u64) -> Option<u64> {
        let at = self.fences.partition_point(|&f| f <= conversation);
        (at > 0).then(|| at as u64 - 1)
    }
}

/// The segment being appended to.
pub(crate) struct Active {
    pub(crate) number: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Rc<DmaFile>,
    pub(crate) first_ordinal: u64,
    /// Offset just past the last entry written (not necessarily durable yet).
    pub(crate) written: u64,
    /// Offset just past the last durable entry.
    pub(crate) durable_end: u64,
    /// Durable entries (messages and retention points).
    pub(crate) entries: u64,
    pub(crate) max_source: u64,
    /// The partial last block as written; the next write repeats its prefix.
    pub(crate) tail_block: Vec<u8>,
    pub(crate) convs: HashMap<u64, ActiveConv>,
    pub(crate) positions: u64,
}

impl Active {
    pub(crate) fn new(number: u64, path: PathBuf, file: Rc<DmaFile>, first_ordinal: u64) -> Active {
        Active {
            number,
            path,
            file,
            first_ordinal,
            written: HISTORY_SEGMENT_HEADER_BYTES,
            durable_end: HISTORY_SEGMENT_HEADER_BYTES,
            entries: 0,
            max_source: 0,
            tail_block: vec![0; BLOCK_BYTES as usize],
            convs: HashMap::new(),
            positions: 0,
        }
    }
}

/// A durable entry to account for: its header and offset in the active segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Written {
    pub(crate) header: EntryHeader,
    pub(crate) offset: u64,
}

/// Everything mutable, behind one `RefCell` (never borrowed across an await).
pub(crate) struct State {
    pub(crate) failed: Option<Arc<Error>>,
    pub(crate) closed: bool,
    pub(crate) convs: HashMap<u64, Conv>,
    /// Highest staged (not yet durable) seq per conversation: bounded by the
    /// staged entries.
    pub(crate) pending: HashMap<u64, u64>,
    pub(crate) staging: Vec<u8>,
    pub(crate) staged_entries: u64,
    pub(crate) highest_source: u64,
    pub(crate) durable_source: u64,
    pub(crate) next_ordinal: u64,
    pub(crate) sealed: VecDeque<Sealed>,
    pub(crate) active: Active,
}

impl State {
    /// `Err` if the store failed (sticky) or was closed.
    pub(crate) fn usable(&self) -> Result<()> {
        match (&self.failed, self.closed) {
            (Some(cause), _) => Err(Error::Failed {
                cause: cause.clone(),
            }),
            (None, true) => Err(Error::Closed),
            (None, false) => Ok(()),
        }
    }

    /// Reads go on after a sticky write failure (a full disk stops writes,
    /// not reads): they only see entries a successful `sync` made durable,
    /// whose bytes a later failed write never touches. Only `close` stops
    /// them.
    pub(crate) fn readable(&self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Number of the oldest segment still on disk.
    pub(crate) fn oldest_segment(&self) -> u64 {
        self.sealed
            .front()
            .map_or(self.active.number, |s| s.header.number)
    }

    /// The table rows, sorted by conversation (written with every seal).
    pub(crate) fn table_rows(&self) -> Vec<TableRow> {
        let mut rows: Vec<TableRow> = self
            .convs
            .iter()
            .map(|(&conversation, c)| TableRow {
                conversation,
                last_seq: c.last_seq,
                last_segment: c.last_segment,
                retention: c.retention,
            })
            .collect();
        rows.sort_unstable_by_key(|r| r.conversation);
        rows
    }

    /// Memory held by the summaries and indexes (see [`super::HistoryMemory`]).
    pub(crate) fn memory(&self) -> super::HistoryMemory {
        let sealed_summary_bytes = self
            .sealed
            .iter()
            .map(|s| size_of::<Sealed>() + s.fences.len() * 8)
            .sum();
        let positions_bytes: usize = self
            .active
            .convs
            .values()
            .map(|c| c.positions.capacity() * size_of::<Position>())
            .sum();
        super::HistoryMemory {
            conversations: self.convs.len() as u64,
            table_bytes: map_bytes(&self.convs),
            sealed_segments: self.sealed.len() as u64,
            sealed_summary_bytes,
            active_entries: self.active.entries,
            active_index_bytes: map_bytes(&self.active.convs) + positions_bytes,
            staging_bytes: self.staging.capacity() + map_bytes(&self.pending),
            cache_bytes: 0,
        }
    }
}

/// Bytes a `HashMap` holds: its buckets (hashbrown keeps capacity at 7/8 of
/// a power-of-two bucket count) times slot size plus one control byte.
pub(crate) fn map_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    let capacity = map.capacity();
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity * 8 / 7).next_power_of_two();
    buckets * (size_of::<(K, V)>() + 1)
}

/// Account for durable entries of the active segment (after their sync,
/// and when recovery scans the active segment): positions, table rows,
/// retention points, the durable source.
pub(crate) fn apply(st: &mut State, written: &[Written]) {
    for w in written {
        let h = &w.header;
        let active = &mut st.active;
        assert_eq!(
            h.ordinal,
            active.first_ordinal + active.entries,
            "entries become durable in ordinal order"
        );
        assert_eq!(w.offset, active.durable_end, "entries are contiguous");
        active.entries += 1;
        active.durable_end = w.offset + h.entry_bytes();
        active.max_source = active.max_source.max(h.source);
        st.durable_source = st.durable_source.max(h.source);
        let conv = st.convs.entry(h.conversation).or_default();
        match h.kind {
            EntryKind::Message => {
                assert!(h.seq > conv.last_seq, "seqs increase per conversation");
                let prev_segment = conv.last_segment;
                conv.last_seq = h.seq;
                conv.last_segment = active.number;
                let bytes = u32::try_from(h.entry_bytes()).expect("entries fit u32");
                let offset = u32::try_from(w.offset).expect("segment offsets fit u32");
                active
                    .convs
                    .entry(h.conversation)
                    .or_insert_with(|| ActiveConv {
                        prev_segment,
                        positions: Vec::new(),
                    })
                    .positions
                    .push(Position {
                        seq: h.seq,
                        offset,
                        bytes,
                    });
                active.positions += 1;
                if st.pending.get(&h.conversation) == Some(&h.seq) {
                    st.pending.remove(&h.conversation);
                }
            }
            EntryKind::Retention => conv.retention = conv.retention.max(h.seq),
        }
    }
}

/// A segment's index file, laid out: the bytes to write and the in-memory summary.
pub(crate) struct BuiltIndex {
    pub(crate) bytes: Vec<u8>,
    pub(crate) sealed: Sealed,
}

/// What an index header says about its segment besides the index itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegmentFacts {
    pub(crate) number: u64,
    pub(crate) first_ordinal: u64,
    pub(crate) entries: u64,
    pub(crate) data_end: u64,
    pub(crate) max_source: u64,
}

/// Lay out an index file from a segment's facts and per-conversation
/// positions in one go (the seal does the same with yields).
#[cfg(test)]
pub(crate) fn build_index_parts(
    shard: u16,
    facts: SegmentFacts,
    active_convs: &HashMap<u64, ActiveConv>,
    rows: &[TableRow],
) -> BuiltIndex {
    let mut convs: Vec<(&u64, &ActiveConv)> = active_convs.iter().collect();
    convs.sort_unstable_by_key(|(c, _)| **c);
    let total: u64 = convs.iter().map(|(_, c)| c.positions.len() as u64).sum();
    let mut builder = IndexBuilder::new(shard, facts, convs.len() as u64, total, rows.len() as u64);
    for (&conversation, c) in convs {
        builder.add(conversation, c);
    }
    builder.finish(rows)
}

/// Lays out an index file one conversation at a time (in ascending order),
/// so that a seal can yield to the executor between conversations.
pub(crate) struct IndexBuilder {
    header: IndexHeader,
    bytes: Vec<u8>,
    dir: Vec<DirEntry>,
    start: usize,
}

impl IndexBuilder {
    /// A builder for `conversations` conversations holding `positions`
    /// messages in all, and a table of `table_rows` rows.
    pub(crate) fn new(
        shard: u16,
        facts: SegmentFacts,
        conversations: u64,
        positions: u64,
        table_rows: u64,
    ) -> IndexBuilder {
        let header = IndexHeader {
            shard,
            number: facts.number,
            first_ordinal: facts.first_ordinal,
            entries: facts.entries,
            data_end: facts.data_end,
            max_source: facts.max_source,
            dir_entries: conversations,
            positions,
            table_rows,
            fences_crc: 0,
            table_crc: 0,
        };
        IndexBuilder {
            bytes: vec![0u8; header.file_bytes() as usize],
            dir: Vec::with_capacity(conversations as usize),
            start: 0,
            header,
        }
    }

    /// Add the next conversation: its positions go straight to their place
    /// and are checksummed there.
    pub(crate) fn add(&mut self, conversation: u64, c: &ActiveConv) {
        assert!(
            self.dir
                .last()
                .is_none_or(|d| d.conversation < conversation),
            "conversations are added in ascending order"
        );
        let (first, last) = match (c.positions.first(), c.positions.last()) {
            (Some(f), Some(l)) => (f.seq, l.seq),
            _ => unreachable!("an active conversation has a position"),
        };
        let at =
            self.header.positions_offset() as usize + self.start * HISTORY_POSITION_BYTES as usize;
        let slice = &mut self.bytes[at..at + c.positions.len() * HISTORY_POSITION_BYTES as usize];
        encode_positions(&c.positions, slice);
        self.dir.push(DirEntry {
            conversation,
            first_seq: first,
            last_seq: last,
            prev_segment: c.prev_segment,
            pos_start: u32::try_from(self.start).expect("positions per segment fit u32"),
            pos_count: u32::try_from(c.positions.len()).expect("positions per segment fit u32"),
            pos_crc: crc32c::crc32c(slice),
        });
        self.start += c.positions.len();
    }

    /// Fences, directory blocks, the table and the header.
    pub(crate) fn finish(mut self, rows: &[TableRow]) -> BuiltIndex {
        let header = &mut self.header;
        assert_eq!(
            self.dir.len() as u64,
            header.dir_entries,
            "every conversation added"
        );
        assert_eq!(self.start as u64, header.positions, "every position added");
        assert_eq!(rows.len() as u64, header.table_rows);
        let bytes = &mut self.bytes;
        let fences: Vec<u64> = self
            .dir
            .chunks(HISTORY_DIR_BLOCK_ENTRIES as usize)
            .map(|block| block[0].conversation)
            .collect();
        let fences_at = header.fences_offset() as usize;
        let fences_end = fences_at + fences.len() * 8;
        encode_fences(&fences, &mut bytes[fences_at..fences_end]);
        header.fences_crc = crc32c::crc32c(&bytes[fences_at..fences_end]);
        for (i, block) in self
            .dir
            .chunks(HISTORY_DIR_BLOCK_ENTRIES as usize)
            .enumerate()
        {
            let at = (header.dir_offset() + i as u64 * BLOCK_BYTES) as usize;
            encode_dir_block(block, &mut bytes[at..at + BLOCK_BYTES as usize]);
        }
        let at = header.table_offset() as usize;
        let len = rows.len() * HISTORY_TABLE_ENTRY_BYTES as usize;
        encode_table(rows, &mut bytes[at..at + len]);
        header.table_crc = crc32c::crc32c(&bytes[at..at + len]);
        header.encode(&mut bytes[..BLOCK_BYTES as usize]);
        debug_assert_eq!(bytes.len() as u64, header.file_bytes());
        BuiltIndex {
            bytes: self.bytes,
            sealed: Sealed {
                header: self.header,
                fences: fences.into_boxed_slice(),
            },
        }
    }
}

/// Which file of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Segment,
    Index,
}

/// Sealed segment and index files kept open for reads, least recently used
/// first; at most [`HISTORY_OPEN_FILES_MAX`].
#[derive(Default)]
pub(crate) struct FileCache {
    files: Vec<(u64, FileKind, Rc<DmaFile>)>,
}

impl FileCache {
    pub(crate) fn get(&mut self, number: u64, kind: FileKind) -> Option<Rc<DmaFile>> {
        let at = self
            .files
            .iter()
            .position(|(n, k, _)| *n == number && *k == kind)?;
        let entry = self.files.remove(at);
        let file = entry.2.clone();
        self.files.push(entry);
        Some(file)
    }

    pub(crate) fn put(&mut self, number: u64, kind: FileKind, file: Rc<DmaFile>) {
        if self.files.len() >= HISTORY_OPEN_FILES_MAX {
            self.files.remove(0);
        }
        self.files.push((number, kind, file));
    }

    pub(crate) fn forget(&mut self, number: u64) {
        self.files.retain(|(n, _, _)| *n != number);
    }

    pub(crate) fn clear(&mut self) {
        self.files.clear();
    }
}

/// Everything one store shares between its handle's methods.
pub(crate) struct Inner {
    pub(crate) shard: u16,
    pub(crate) dir_path: PathBuf,
    pub(crate) dir: Directory,
    pub(crate) storage: Storage,
    pub(crate) options: HistoryOptions,
    pub(crate) state: RefCell<State>,
    /// One `sync`, seal or retention pass at a time.
    pub(crate) io_lock: glommio::sync::Semaphore,
    pub(crate) files: RefCell<FileCache>,
    pub(crate) cache: RefCell<super::cache::IndexCache>,
}

impl Inner {
    pub(crate) fn segment_path(&self, number: u64) -> PathBuf {
        self.dir_path.join(super::format::segment_file_name(number))
    }

    pub(crate) fn index_path(&self, number: u64) -> PathBuf {
        self.dir_path.join(super::format::index_file_name(number))
    }

    /// Record the first write or sync failure (sticky) and return it wrapped.
    pub(crate) fn fail(&self, error: Error) -> Error {
        let mut st = self.state.borrow_mut();
        let cause = match &st.failed {
            Some(first) => first.clone(),
            None => {
                tracing::error!(shard = self.shard, %error, "history store failed; it stops until reopened");
                let cause = Arc::new(error);
                st.failed = Some(cause.clone());
                cause
            }
        };
        Error::Failed { cause }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::format::{decode_dir_block, decode_fences, decode_positions, decode_table};

    /// Positions as `apply` would build them: `convs` conversations
    /// round-robin, `per` messages each, 64-byte entries.
    fn active_convs(convs: u64, per: u64) -> (HashMap<u64, ActiveConv>, u64, u64) {
        let mut map: HashMap<u64, ActiveConv> = HashMap::new();
        let mut offset = HISTORY_SEGMENT_HEADER_BYTES as u32;
        for round in 0..per {
            for c in 0..convs {
                let conv = map.entry(c * 1000 + 1).or_insert(ActiveConv {
                    prev_segment: c % 3,
                    positions: Vec::new(),
                });
                conv.positions.push(Position {
                    seq: round + 1,
                    offset,
                    bytes: 64,
                });
                offset += 64;
            }
        }
        (map, convs * per, u64::from(offset))
    }

    #[test]
    fn index_round_trips_through_its_decoders() {
        let (convs, positions, end) = active_convs(300, 3);
        let rows: Vec<TableRow> = (0..400u64)
            .map(|i| TableRow {
                conversation: i * 1000 + 1,
                last_seq: 3,
                last_segment: 4,
                retention: 0,
            })
            .collect();
        let built = build_index_parts(1, facts(4, positions, end), &convs, &rows);
        let h = IndexHeader::decode(&built.bytes).unwrap();
        assert_eq!((h.dir_entries, h.positions, h.table_rows), (300, 900, 400));
        assert_eq!(h.file_bytes(), built.bytes.len() as u64);
        let fences_at = h.fences_offset() as usize;
        let fences = decode_fences(&built.bytes[fences_at..], h.dir_blocks()).unwrap();
        assert_eq!(&fences[..], &built.sealed.fences[..]);
        assert_eq!(
            fences.len() as u64,
            300u64.div_ceil(HISTORY_DIR_BLOCK_ENTRIES)
        );
        for c in 0..300u64 {
            let conversation = c * 1000 + 1;
            let block = built.sealed.dir_block_of(conversation).unwrap();
            let at = (h.dir_offset() + block * BLOCK_BYTES) as usize;
            let dir = decode_dir_block(&built.bytes[at..at + BLOCK_BYTES as usize]).unwrap();
            let e = dir.iter().find(|e| e.conversation == conversation).unwrap();
            assert_eq!((e.first_seq, e.last_seq, e.prev_segment), (1, 3, c % 3));
            let at = (h.positions_offset() + u64::from(e.pos_start) * 16) as usize;
            let ps = decode_positions(&built.bytes[at..], e, h.data_end).unwrap();
            assert_eq!(ps, convs[&conversation].positions);
        }
        let at = h.table_offset() as usize;
        assert_eq!(
            decode_table(&built.bytes[at..], h.table_rows, 4).unwrap(),
            rows
        );
    }

    fn facts(number: u64, entries: u64, data_end: u64) -> SegmentFacts {
        SegmentFacts {
            number,
            first_ordinal: 11,
            entries,
            data_end,
            max_source: 99,
        }
    }

    #[test]
    fn sealed_summary_is_one_fence_per_85_conversations_whatever_the_messages() {
        for (convs, per) in [(1u64, 5000u64), (85, 50), (86, 50), (10_000, 3)] {
            let (map, positions, end) = active_convs(convs, per);
            let built = build_index_parts(1, facts(2, positions, end), &map, &[]);
            assert_eq!(
                built.sealed.fences.len() as u64,
                convs.div_ceil(HISTORY_DIR_BLOCK_ENTRIES)
            );
            let bytes = size_of::<Sealed>() + built.sealed.fences.len() * 8;
            assert!(bytes <= size_of::<Sealed>() + 8 * (convs as usize / 85 + 1));
        }
    }

    #[test]
    fn map_bytes_counts_buckets_of_a_grown_map() {
        let mut map: HashMap<u64, Conv> = HashMap::new();
        assert_eq!(map_bytes(&map), 0);
        for i in 0..1000 {
            map.insert(i, Conv::default());
        }
        let bytes = map_bytes(&map);
        assert!(bytes >= 1000 * (size_of::<(u64, Conv)>() + 1));
        assert!(bytes <= 2 * 1024 * (size_of::<(u64, Conv)>() + 1));
    }
}
