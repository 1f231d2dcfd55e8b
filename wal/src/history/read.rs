//! Reading a conversation's history: forward from a seq ([`read`]) and
//! newest-first before a seq ([`read_before`]). A conversation's segments
//! form a chain (each directory entry names the previous segment holding
//! the conversation), which a read walks from the newest; inside a segment
//! the directory entry's positions give every entry's offset, and the
//! entries of a page are fetched with one merged, concurrent `read_many`
//! per segment. Every entry is verified (checksum, conversation, seq)
//! before it is returned; damage is [`Error::Corrupt`] with file and offset.
//!
//! A range below where the conversation's history now starts (its
//! retention point, or the oldest segment retention kept) is answered with
//! [`Page::StartsAt`], never with a silent gap.

use std::rc::Rc;

use glommio::io::{DmaFile, ReadResult};

use crate::{
    constants::{
        BLOCK_BYTES, HISTORY_ENTRY_HEADER_BYTES, HISTORY_PAGE_BYTES_LIMIT,
        HISTORY_PAGE_ENTRIES_LIMIT, HISTORY_POSITION_BYTES, HISTORY_READ_AMPLIFICATION_BYTES,
        HISTORY_READ_MERGE_BYTES,
    },
    read::Payload,
    Error, Result,
};

use super::{
    cache::Cached,
    format::{
        check_entry_header, decode_dir_block, decode_positions, verify_entry, DirEntry, EntryCheck,
        EntryKind, IndexHeader, Position,
    },
    state::{Conv, FileKind, Inner},
    HistoryEntry, Page,
};

/// One segment's part of a conversation.
struct Node {
    segment: u64,
    first_seq: u64,
    last_seq: u64,
    prev_segment: u64,
    /// `None` for the active segment (positions in memory).
    dir: Option<(DirEntry, u64, u64)>,
}

enum Walk {
    Node(Node),
    /// The segment was deleted by retention.
    Deleted,
}

/// A file of segment `number`, from the active segment or the cache.
pub(crate) async fn file_of(inner: &Inner, number: u64, kind: FileKind) -> Result<Rc<DmaFile>> {
    {
        let st = inner.state.borrow();
        if kind == FileKind::Segment && number == st.active.number {
            return Ok(st.active.file.clone());
        }
    }
    if let Some(file) = inner.files.borrow_mut().get(number, kind) {
        return Ok(file);
    }
    let path = match kind {
        FileKind::Segment => inner.segment_path(number),
        FileKind::Index => inner.index_path(number),
    };
    let file = inner.storage.open_read(&path).await?;
    inner.files.borrow_mut().put(number, kind, file.clone());
    Ok(file)
}

/// Conversation `c` in segment `number`.
async fn node_of(inner: &Inner, c: u64, number: u64) -> Result<Walk> {
    let (header, block) = {
        let st = inner.state.borrow();
        if number == st.active.number {
            let Some(ac) = st.active.convs.get(&c) else {
                return Err(Error::Inconsistent {
                    dir: inner.dir_path.clone(),
                    reason: format!(
                        "conversation {c} is not in the active segment its table row names"
                    ),
                });
            };
            let (first, last) = match (ac.positions.first(), ac.positions.last()) {
                (Some(f), Some(l)) => (f.seq, l.seq),
                _ => unreachable!("an active conversation has a position"),
            };
            return Ok(Walk::Node(Node {
                segment: number,
                first_seq: first,
                last_seq: last,
                prev_segment: ac.prev_segment,
                dir: None,
            }));
        }
        let oldest = st.oldest_segment();
        if number < oldest {
            return Ok(Walk::Deleted);
        }
        let sealed = &st.sealed[(number - oldest) as usize];
        (sealed.header, sealed.dir_block_of(c))
    };
    let path = inner.index_path(number);
    let missing = || {
        Error::corrupt(
            &path,
            header.dir_offset(),
            format!("conversation {c} is missing from the directory"),
        )
    };
    let block = block.ok_or_else(missing)?;
    let entries = dir_block(inner, &header, block).await?;
    let at_entry = entries
        .binary_search_by_key(&c, |e| e.conversation)
        .map_err(|_| missing())?;
    let e = entries[at_entry];
    Ok(Walk::Node(Node {
        segment: number,
        first_seq: e.first_seq,
        last_seq: e.last_seq,
        prev_segment: e.prev_segment,
        dir: Some((e, header.positions_offset(), header.data_end)),
    }))
}

/// A segment this read was using was deleted by retention meanwhile; a
/// retry answers [`Page::StartsAt`].
fn deleted_meanwhile(inner: &Inner, segment: u64) -> Error {
    Error::io(
        "read",
        inner.segment_path(segment),
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "segment deleted by retention during the read; retry",
        ),
    )
}

/// Positions of `node` with `lo <= seq < hi`.
async fn positions(inner: &Inner, c: u64, node: &Node, lo: u64, hi: u64) -> Result<Vec<Position>> {
    let dir = match node.dir {
        Some(dir) => dir,
        None => {
            {
                let st = inner.state.borrow();
                if st.active.number == node.segment {
                    let all = st
                        .active
                        .convs
                        .get(&c)
                        .map_or(&[][..], |ac| &ac.positions[..]);
                    let from = all.partition_point(|p| p.seq < lo);
                    let to = all.partition_point(|p| p.seq < hi);
                    return Ok(all[from..to.max(from)].to_vec());
                }
            }
            // The segment was sealed while this read waited: its positions
            // are in its index file now.
            match node_of(inner, c, node.segment).await? {
                Walk::Node(Node { dir: Some(dir), .. }) => dir,
                Walk::Node(_) | Walk::Deleted => {
                    return Err(deleted_meanwhile(inner, node.segment))
                }
            }
        }
    };
    let (entry, offset, data_end) = dir;
    let path = inner.index_path(node.segment);
    let key = (node.segment, entry.conversation, true);
    let cached = inner.cache.borrow_mut().get(key);
    let all = match cached {
        Some(Cached::Positions(all)) => all,
        _ => {
            let file = file_of(inner, node.segment, FileKind::Index).await?;
            let at = offset + u64::from(entry.pos_start) * HISTORY_POSITION_BYTES;
            let len = entry.pos_count as usize * HISTORY_POSITION_BYTES as usize;
            let merge = (HISTORY_READ_MERGE_BYTES, HISTORY_READ_AMPLIFICATION_BYTES);
            let raw = inner
                .storage
                .read_many(&file, &path, vec![(at, len)], merge.0, merge.1)
                .await?;
            let all: Rc<[Position]> = decode_positions(&raw[0], &entry, data_end)
                .map_err(|r| Error::corrupt(&path, at, r))?
                .into();
            inner
                .cache
                .borrow_mut()
                .put(key, Cached::Positions(all.clone()));
            all
        }
    };
    let from = all.partition_point(|p| p.seq < lo);
    let to = all.partition_point(|p| p.seq < hi);
    Ok(all[from..to.max(from)].to_vec())
}

/// Directory block `block` of sealed segment `header.number`, from the cache
/// or read and verified.
async fn dir_block(inner: &Inner, header: &IndexHeader, block: u64) -> Result<Rc<[DirEntry]>> {
    let key = (header.number, block, false);
    if let Some(Cached::Dir(entries)) = inner.cache.borrow_mut().get(key) {
        return Ok(entries);
    }
    let path = inner.index_path(header.number);
    let file = file_of(inner, header.number, FileKind::Index).await?;
    let at = header.dir_offset() + block * BLOCK_BYTES;
    let raw = inner.storage.read(&file, &path, at, BLOCK_BYTES).await?;
    let entries: Rc<[DirEntry]> = decode_dir_block(&raw)
        .map_err(|r| Error::corrupt(&path, at, r))?
        .into();
    inner
        .cache
        .borrow_mut()
        .put(key, Cached::Dir(entries.clone()));
    Ok(entries)
}

/// Page bounds, capped by the store's limits.
struct Budget {
    entries: u64,
    bytes: u64,
    taken_entries: u64,
    taken_bytes: u64,
}

impl Budget {
    fn new(max_entries: u64, max_bytes: u64) -> Budget {
        Budget {
            entries: max_entries.min(HISTORY_PAGE_ENTRIES_LIMIT),
            bytes: max_bytes.min(HISTORY_PAGE_BYTES_LIMIT),
            taken_entries: 0,
            taken_bytes: 0,
        }
    }

    fn full(&self) -> bool {
        self.taken_entries >= self.entries
    }

    /// Take `p` if it fits (the first entry always fits).
    fn take(&mut self, p: &Position) -> bool {
        let payload = u64::from(p.bytes) - HISTORY_ENTRY_HEADER_BYTES;
        let fits = self.taken_entries == 0 || self.taken_bytes + payload <= self.bytes;
        if self.full() || !fits {
            self.entries = self.taken_entries;
            return false;
        }
        self.taken_entries += 1;
        self.taken_bytes += payload;
        true
    }
}

fn conv_of(inner: &Inner, c: u64) -> Option<Conv> {
    inner.state.borrow().convs.get(&c).copied()
}

/// Forward read: entries `seq >= from`, ascending.
pub(crate) async fn read(
    inner: &Inner,
    c: u64,
    from: u64,
    max_entries: u64,
    max_bytes: u64,
) -> Result<Page> {
    inner.state.borrow().readable()?;
    let Some(conv) = conv_of(inner, c) else {
        return Ok(Page::Entries(Vec::new()));
    };
    let from = from.max(1);
    if conv.retention > from {
        return Ok(Page::StartsAt {
            first_seq: conv.retention,
        });
    }
    let mut nodes = Vec::new();
    let mut segment = conv.last_segment;
    let mut deleted = false;
    while segment != 0 {
        match node_of(inner, c, segment).await? {
            Walk::Deleted => {
                deleted = true;
                break;
            }
            Walk::Node(node) => {
                segment = node.prev_segment;
                let reached = node.first_seq <= from;
                nodes.push(node);
                if reached {
                    break;
                }
            }
        }
    }
    if deleted {
        let start = nodes.last().map_or(conv.last_seq + 1, |n| n.first_seq);
        if from < start {
            return Ok(Page::StartsAt {
                first_seq: start.max(conv.retention),
            });
        }
    }
    let mut budget = Budget::new(max_entries, max_bytes);
    let mut picks = Vec::new();
    for node in nodes.iter().rev() {
        if node.last_seq < from {
            continue;
        }
        for p in positions(inner, c, node, from, u64::MAX).await? {
            if !budget.take(&p) {
                break;
            }
            picks.push((node.segment, p));
        }
        if budget.full() {
            break;
        }
    }
    Ok(Page::Entries(fetch(inner, c, &picks).await?))
}

/// Newest-first read: entries `seq < before`, descending.
pub(crate) async fn read_before(
    inner: &Inner,
    c: u64,
    before: u64,
    max_entries: u64,
    max_bytes: u64,
) -> Result<Page> {
    inner.state.borrow().readable()?;
    let Some(conv) = conv_of(inner, c) else {
        return Ok(Page::Entries(Vec::new()));
    };
    let floor = conv.retention.max(1);
    if conv.retention > 1 && before <= conv.retention {
        return Ok(Page::StartsAt {
            first_seq: conv.retention,
        });
    }
    let mut budget = Budget::new(max_entries, max_bytes);
    let mut picks = Vec::new();
    let mut segment = conv.last_segment;
    let mut oldest_first = None;
    let mut deleted = false;
    while segment != 0 && !budget.full() {
        let node = match node_of(inner, c, segment).await? {
            Walk::Deleted => {
                deleted = true;
                break;
            }
            Walk::Node(node) => node,
        };
        oldest_first = Some(node.first_seq);
        if node.first_seq < before {
            for p in positions(inner, c, &node, floor, before)
                .await?
                .iter()
                .rev()
            {
                if !budget.take(p) {
                    break;
                }
                picks.push((node.segment, *p));
            }
        }
        if node.first_seq <= floor {
            break;
        }
        segment = node.prev_segment;
    }
    if deleted && picks.is_empty() {
        let start = oldest_first.unwrap_or(conv.last_seq + 1);
        if before <= start {
            return Ok(Page::StartsAt {
                first_seq: start.max(conv.retention),
            });
        }
    }
    Ok(Page::Entries(fetch(inner, c, &picks).await?))
}

/// Read and verify the picked entries, segment by segment, in pick order.
async fn fetch(inner: &Inner, c: u64, picks: &[(u64, Position)]) -> Result<Vec<HistoryEntry>> {
    let mut out = Vec::with_capacity(picks.len());
    let mut at = 0;
    while at < picks.len() {
        let segment = picks[at].0;
        let end = at
            + picks[at..]
                .iter()
                .take_while(|(s, _)| *s == segment)
                .count();
        let group = &picks[at..end];
        let path = inner.segment_path(segment);
        let file = file_of(inner, segment, FileKind::Segment).await?;
        let ranges = group
            .iter()
            .map(|(_, p)| (u64::from(p.offset), p.bytes as usize))
            .collect();
        let bufs = inner
            .storage
            .read_many(
                &file,
                &path,
                ranges,
                HISTORY_READ_MERGE_BYTES,
                HISTORY_READ_AMPLIFICATION_BYTES,
            )
            .await?;
        for ((_, p), buf) in group.iter().zip(bufs) {
            out.push(verified(&path, c, p, buf)?);
        }
        at = end;
    }
    Ok(out)
}

/// The entry at `p` in `buf`, if it is exactly what the index says.
fn verified(path: &std::path::Path, c: u64, p: &Position, buf: ReadResult) -> Result<HistoryEntry> {
    let offset = u64::from(p.offset);
    let h = match check_entry_header(&buf, u64::from(p.bytes)) {
        EntryCheck::Plausible(h) => h,
        EntryCheck::Zero => return Err(Error::corrupt(path, offset, "indexed entry is missing")),
        EntryCheck::Invalid(reason) => return Err(Error::corrupt(path, offset, reason)),
    };
    if h.kind != EntryKind::Message
        || h.conversation != c
        || h.seq != p.seq
        || h.entry_bytes() != u64::from(p.bytes)
    {
        return Err(Error::corrupt(
            path,
            offset,
            format!("expected conversation {c} seq {}, found {h:?}", p.seq),
        ));
    }
    verify_entry(&buf, &h).map_err(|r| Error::corrupt(path, offset, r))?;
    Ok(HistoryEntry {
        seq: h.seq,
        source: h.source,
        payload: Payload::new(buf, HISTORY_ENTRY_HEADER_BYTES as usize, h.len as usize),
    })
}
