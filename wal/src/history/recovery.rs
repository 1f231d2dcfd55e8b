//! Opening a history store: list the directory, check every sealed segment
//! against its index file (headers, checksums, sizes, ordinals), load the
//! conversation table of the newest index, scan and verify every entry of
//! the active segment, cut a torn tail, and refuse any other damage with
//! [`Error::Corrupt`] (file and offset) or [`Error::Inconsistent`].

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    rc::Rc,
};

use glommio::io::Directory;

use crate::{
    constants::{
        BLOCK_BYTES, HISTORY_ENTRY_HEADER_BYTES, HISTORY_SEGMENT_HEADER_BYTES, RECORD_ALIGN_BYTES,
        SCAN_CHUNK_BYTES,
    },
    format::{align_down, align_up, TEMP_SUFFIX},
    scan::Chunk,
    storage::Storage,
    Error, FaultPoint, Result,
};

use super::{
    format::{
        check_entry_header, decode_fences, decode_table, parse_index_file_name,
        parse_segment_file_name, verify_entry, EntryCheck, EntryHeader, EntryKind,
        HistorySegmentHeader, IndexHeader,
    },
    state::{apply, Active, Conv, FileCache, Inner, Sealed, State, Written},
    writer::create_segment,
    HistoryOptions, HistoryRecovered, TornTail,
};

struct Listing {
    segments: Vec<u64>,
    indexes: Vec<u64>,
    temporaries: Vec<PathBuf>,
}

async fn list(dir: &Path) -> Result<Listing> {
    let names = crate::storage::file_names(dir, true).await?;
    let mut listing = Listing {
        segments: Vec::new(),
        indexes: Vec::new(),
        temporaries: Vec::new(),
    };
    for name in names {
        if name.ends_with(TEMP_SUFFIX) {
            listing.temporaries.push(dir.join(&name));
        } else if let Some(n) = parse_segment_file_name(&name) {
            listing.segments.push(n);
        } else if let Some(n) = parse_index_file_name(&name) {
            listing.indexes.push(n);
        }
    }
    listing.segments.sort_unstable();
    listing.indexes.sort_unstable();
    Ok(listing)
}

fn inconsistent(dir: &Path, reason: String) -> Error {
    Error::Inconsistent {
        dir: dir.to_path_buf(),
        reason,
    }
}

/// Open (or create) the store in `dir`.
pub(crate) async fn open(
    dir: &Path,
    shard: u16,
    options: HistoryOptions,
) -> Result<(Rc<Inner>, HistoryRecovered)> {
    options.validate()?;
    let storage = Storage::new(options.faults.clone());
    let listing = list(dir).await?;
    storage.probe_direct_io(dir).await?;
    let directory = Directory::open(dir)
        .await
        .map_err(|e| Error::io("open directory", dir, e))?;
    let placeholder = storage
        .open_read(&dir.join(crate::constants::PROBE_FILE_NAME))
        .await?;
    let inner = Rc::new(Inner {
        shard,
        dir_path: dir.to_path_buf(),
        dir: directory,
        storage,
        options,
        state: RefCell::new(State {
            failed: None,
            closed: false,
            convs: HashMap::new(),
            pending: HashMap::new(),
            staging: Vec::new(),
            staged_entries: 0,
            highest_source: 0,
            durable_source: 0,
            next_ordinal: 1,
            sealed: VecDeque::new(),
            active: Active::new(0, PathBuf::new(), placeholder, 1),
        }),
        io_lock: glommio::sync::Semaphore::new(1),
        files: RefCell::new(FileCache::default()),
        cache: RefCell::default(),
    });
    let recovered = recover(&inner, listing).await?;
    Ok((inner, recovered))
}

async fn recover(inner: &Rc<Inner>, listing: Listing) -> Result<HistoryRecovered> {
    let dir = inner.dir_path.clone();
    let mut removed = listing.temporaries.clone();
    let first = listing.segments.first().copied().unwrap_or(u64::MAX);
    // An index below the oldest segment is left over from a retention pass
    // that deleted the segment first and crashed before the index.
    removed.extend(
        listing
            .indexes
            .iter()
            .filter(|&&n| n < first)
            .map(|&n| inner.index_path(n)),
    );
    for path in &removed {
        inner.storage.remove(path).await?;
    }
    if !removed.is_empty() {
        inner.storage.sync_dir(&inner.dir, &dir).await?;
    }
    let segments = listing.segments;
    for pair in segments.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(inconsistent(
                &dir,
                format!("history segment {} is missing", pair[0] + 1),
            ));
        }
    }
    let indexed: Vec<u64> = listing
        .indexes
        .into_iter()
        .filter(|&n| n >= first)
        .collect();
    let last = segments.last().copied();
    for &n in &indexed {
        if last.is_none_or(|l| n > l) {
            return Err(inconsistent(&dir, format!("index {n} has no segment")));
        }
    }
    let mut sealed_numbers = segments.clone();
    let active_number = match last {
        Some(l) if !indexed.contains(&l) => sealed_numbers.pop().map(|_| l),
        _ => None,
    };
    if sealed_numbers.len() != indexed.len() {
        return Err(inconsistent(
            &dir,
            "a sealed history segment (not the newest) has no index file".to_string(),
        ));
    }
    let mut next_ordinal = 1;
    for &n in &sealed_numbers {
        let sealed = load_sealed(inner, n).await?;
        if sealed.header.first_ordinal != next_ordinal && n != segments[0] {
            return Err(Error::corrupt(
                inner.segment_path(n),
                0,
                format!(
                    "first ordinal {} does not follow the previous segment's {}",
                    sealed.header.first_ordinal,
                    next_ordinal - 1
                ),
            ));
        }
        next_ordinal = sealed.header.first_ordinal + sealed.header.entries;
        inner.state.borrow_mut().sealed.push_back(sealed);
    }
    load_table(inner).await?;
    let truncated_tail = match active_number {
        Some(n) => scan_active(inner, n, next_ordinal).await?,
        None => {
            let number = sealed_numbers.last().map_or(1, |n| n + 1);
            let active = create_segment(inner, number, next_ordinal).await?;
            inner.state.borrow_mut().active = active;
            None
        }
    };
    let mut st = inner.state.borrow_mut();
    st.next_ordinal = st.active.first_ordinal + st.active.entries;
    st.highest_source = st.durable_source;
    Ok(HistoryRecovered {
        durable_source: st.durable_source,
        segments: st.sealed.len() as u64 + 1,
        active_entries: st.active.entries,
        conversations: st.convs.len() as u64,
        truncated_tail,
    })
}

/// Check sealed segment `n` against its index file and load its summary.
async fn load_sealed(inner: &Inner, n: u64) -> Result<Sealed> {
    let idx_path = inner.index_path(n);
    let idx = inner.storage.open_read(&idx_path).await?;
    let block = inner.storage.read(&idx, &idx_path, 0, BLOCK_BYTES).await?;
    let header = IndexHeader::decode(&block).map_err(|r| Error::corrupt(&idx_path, 0, r))?;
    if header.number != n || header.shard != inner.shard {
        return Err(Error::corrupt(
            &idx_path,
            0,
            format!(
                "index of segment {} of shard {}",
                header.number, header.shard
            ),
        ));
    }
    let size = inner.storage.file_size(&idx, &idx_path).await?;
    if size < header.file_bytes() {
        return Err(Error::corrupt(
            &idx_path,
            size,
            format!(
                "index file is {size} bytes, expected {}",
                header.file_bytes()
            ),
        ));
    }
    let at = header.fences_offset();
    let fences_bytes = align_up(header.fences_bytes().max(1), BLOCK_BYTES);
    let raw = inner
        .storage
        .read(&idx, &idx_path, at, fences_bytes)
        .await?;
    let raw = &raw[..header.fences_bytes() as usize];
    if crc32c::crc32c(raw) != header.fences_crc {
        return Err(Error::corrupt(&idx_path, at, "fences fail their checksum"));
    }
    let fences =
        decode_fences(raw, header.dir_blocks()).map_err(|r| Error::corrupt(&idx_path, at, r))?;
    crate::writer::close_file(idx).await?;
    let seg_path = inner.segment_path(n);
    let seg = inner.storage.open_read(&seg_path).await?;
    let block = inner.storage.read(&seg, &seg_path, 0, BLOCK_BYTES).await?;
    let seg_header =
        HistorySegmentHeader::decode(&block).map_err(|r| Error::corrupt(&seg_path, 0, r))?;
    if seg_header.number != n
        || seg_header.shard != inner.shard
        || seg_header.first_ordinal != header.first_ordinal
    {
        return Err(Error::corrupt(
            &seg_path,
            0,
            format!("segment header {seg_header:?} does not match its index"),
        ));
    }
    let seg_size = inner.storage.file_size(&seg, &seg_path).await?;
    if seg_size < header.data_end {
        return Err(Error::corrupt(
            &seg_path,
            seg_size,
            format!("segment ends before its data end {}", header.data_end),
        ));
    }
    crate::writer::close_file(seg).await?;
    Ok(Sealed {
        header,
        fences: fences.into_boxed_slice(),
    })
}

/// Load the conversation table of the newest sealed segment, if any.
async fn load_table(inner: &Inner) -> Result<()> {
    let Some(header) = inner.state.borrow().sealed.back().map(|s| s.header) else {
        return Ok(());
    };
    let path = inner.index_path(header.number);
    let file = inner.storage.open_read(&path).await?;
    let at = header.table_offset();
    let raw = inner
        .storage
        .read(
            &file,
            &path,
            at,
            align_up(header.table_bytes().max(1), BLOCK_BYTES),
        )
        .await?;
    let raw = raw.get(..header.table_bytes() as usize).unwrap_or(&[]);
    if crc32c::crc32c(raw) != header.table_crc {
        return Err(Error::corrupt(
            &path,
            at,
            "conversation table fails its checksum",
        ));
    }
    let rows = decode_table(raw, header.table_rows, header.number)
        .map_err(|r| Error::corrupt(&path, at, r))?;
    crate::writer::close_file(file).await?;
    let mut st = inner.state.borrow_mut();
    st.durable_source = header.max_source;
    st.convs = rows
        .into_iter()
        .map(|r| {
            let conv = Conv {
                last_seq: r.last_seq,
                last_segment: r.last_segment,
                retention: r.retention,
            };
            (r.conversation, conv)
        })
        .collect();
    Ok(())
}

/// Scan the active segment `n`: verify every entry, account for it, and cut
/// a torn tail.
async fn scan_active(inner: &Inner, n: u64, next_ordinal: u64) -> Result<Option<TornTail>> {
    let path = inner.segment_path(n);
    let file = inner.storage.open_rw(&path).await?;
    let len = inner.storage.file_size(&file, &path).await?;
    if len < HISTORY_SEGMENT_HEADER_BYTES {
        return Err(Error::corrupt(
            &path,
            0,
            format!("segment is {len} bytes, shorter than its header"),
        ));
    }
    let block = inner.storage.read(&file, &path, 0, BLOCK_BYTES).await?;
    let header = HistorySegmentHeader::decode(&block).map_err(|r| Error::corrupt(&path, 0, r))?;
    let first_ok = header.first_ordinal == next_ordinal || inner.state.borrow().sealed.is_empty();
    if header.number != n || header.shard != inner.shard || !first_ok {
        return Err(Error::corrupt(
            &path,
            0,
            format!("segment header {header:?} does not follow the sealed segments"),
        ));
    }
    inner.state.borrow_mut().active =
        Active::new(n, path.clone(), file.clone(), header.first_ordinal);
    let mut chunk = Chunk::new(file.clone(), path.clone(), len, SCAN_CHUNK_BYTES);
    let mut pos = HISTORY_SEGMENT_HEADER_BYTES;
    let mut expected = header.first_ordinal;
    let mut written = Vec::new();
    let mut last_seqs: HashMap<u64, u64> = HashMap::new();
    while let Some(h) = valid_entry_at(inner, &mut chunk, pos, len).await? {
        if h.ordinal != expected {
            break;
        }
        let seq_ok = match h.kind {
            EntryKind::Message => {
                let stored = || {
                    let st = inner.state.borrow();
                    st.convs.get(&h.conversation).map_or(0, |c| c.last_seq)
                };
                let last = *last_seqs.entry(h.conversation).or_insert_with(stored);
                last_seqs.insert(h.conversation, h.seq);
                h.seq > last
            }
            EntryKind::Retention => true,
        };
        if !seq_ok {
            return Err(Error::corrupt(
                &path,
                pos,
                format!(
                    "seq {} of conversation {} does not increase",
                    h.seq, h.conversation
                ),
            ));
        }
        written.push(Written {
            header: h,
            offset: pos,
        });
        pos += h.entry_bytes();
        expected += 1;
    }
    let torn = check_tail(inner, &mut chunk, pos, len, expected).await?;
    if len > pos {
        inner.storage.truncate(&file, &path, pos).await?;
        inner
            .storage
            .sync(FaultPoint::HistorySync, &file, &path)
            .await?;
    }
    let block_start = align_down(pos, BLOCK_BYTES);
    let mut tail_block = vec![0u8; BLOCK_BYTES as usize];
    if pos % BLOCK_BYTES != 0 {
        chunk
            .fill(&inner.storage, block_start, pos - block_start)
            .await?;
        let prefix = chunk.bytes(block_start, pos - block_start);
        tail_block[..prefix.len()].copy_from_slice(prefix);
    }
    let mut st = inner.state.borrow_mut();
    apply(&mut st, &written);
    st.active.written = pos;
    st.active.tail_block = tail_block;
    drop(st);
    Ok(torn.then(|| TornTail {
        segment: path,
        offset: pos,
        bytes: len - pos,
    }))
}

/// The verified entry at `pos`, or `None` if there is none (end, damage, torn).
async fn valid_entry_at(
    inner: &Inner,
    chunk: &mut Chunk,
    pos: u64,
    len: u64,
) -> Result<Option<EntryHeader>> {
    if pos + HISTORY_ENTRY_HEADER_BYTES > len
        || !chunk
            .fill(&inner.storage, pos, HISTORY_ENTRY_HEADER_BYTES)
            .await?
    {
        return Ok(None);
    }
    let h = match check_entry_header(chunk.bytes(pos, HISTORY_ENTRY_HEADER_BYTES), len - pos) {
        EntryCheck::Plausible(h) => h,
        EntryCheck::Zero | EntryCheck::Invalid(_) => return Ok(None),
    };
    if !chunk.fill(&inner.storage, pos, h.entry_bytes()).await? {
        return Ok(None);
    }
    Ok(verify_entry(chunk.bytes(pos, h.entry_bytes()), &h)
        .is_ok()
        .then_some(h))
}

/// After the last valid entry (at `end`, expected ordinal `n`): is the rest
/// of the file a torn write of the newest sync (true: cut it), only zeros
/// (false), or damage (error)? A valid entry further on that a later sync
/// wrote (batch ordinal above `n`), or an older one (ordinal below `n`),
/// proves `end` held durable data.
async fn check_tail(inner: &Inner, chunk: &mut Chunk, end: u64, len: u64, n: u64) -> Result<bool> {
    let mut nonzero = false;
    let mut pos = end;
    while pos + RECORD_ALIGN_BYTES <= len {
        if !chunk.fill(&inner.storage, pos, RECORD_ALIGN_BYTES).await? {
            break;
        }
        if chunk.bytes(pos, RECORD_ALIGN_BYTES).iter().any(|&b| b != 0) {
            nonzero = true;
            {
                if let Some(h) = valid_entry_at(inner, chunk, pos, len).await? {
                    if h.batch_ordinal() > n || h.ordinal < n {
                        let path = inner.segment_path(inner.state.borrow().active.number);
                        return Err(Error::corrupt(
                            path,
                            end,
                            format!("damaged entry (ordinal {n}) before a durable entry at offset {pos}"),
                        ));
                    }
                }
            }
        }
        pos += RECORD_ALIGN_BYTES;
    }
    Ok(nonzero)
}
