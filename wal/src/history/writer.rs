//! The write path of the history store: `append` stages an encoded entry
//! (synchronously, bounded), `sync` writes everything staged in batches
//! (one direct write each, at most `batch_bytes_max`) followed by one
//! `fdatasync`, and seals the active segment once it reached its size:
//! index file written, synced, renamed, directory synced, then the next
//! segment created the same way. Any write or sync failure is sticky.

use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::{
    constants::{
        BLOCK_BYTES, HISTORY_CONVERSATIONS_LIMIT, HISTORY_ENTRY_HEADER_BYTES,
        HISTORY_PAYLOAD_BYTES_LIMIT, HISTORY_SEAL_CONVERSATIONS_PER_TURN,
        HISTORY_SEGMENT_HEADER_BYTES,
    },
    error::HistoryRejection,
    format::{align_down, align_up, TEMP_SUFFIX},
    Error, FaultPoint, Result,
};

use super::{
    format::{
        check_entry_header, encode_entry_header, entry_bytes, seal_entry, set_batch_delta,
        EntryCheck, EntryHeader, EntryKind, HistorySegmentHeader,
    },
    state::{apply, Active, IndexBuilder, Inner, SegmentFacts, State, Written},
    Appended,
};

fn reject(conversation: u64, seq: u64, source: u64, rejection: HistoryRejection) -> Error {
    Error::HistoryRejected {
        conversation,
        seq,
        source_position: source,
        rejection,
    }
}

/// Stage a message (see [`super::HistoryStore::append`]).
pub(crate) fn append(
    inner: &Inner,
    conversation: u64,
    seq: u64,
    source: u64,
    payload: &[u8],
) -> Result<Appended> {
    let mut st = inner.state.borrow_mut();
    st.usable()?;
    let rejected = |r| Err(reject(conversation, seq, source, r));
    if seq == 0 {
        return rejected(HistoryRejection::SeqZero);
    }
    let len = payload.len() as u64;
    if len > HISTORY_PAYLOAD_BYTES_LIMIT {
        return rejected(HistoryRejection::PayloadTooLarge {
            len,
            max: HISTORY_PAYLOAD_BYTES_LIMIT,
        });
    }
    let durable = st.convs.get(&conversation).copied();
    let last_seq = st
        .pending
        .get(&conversation)
        .copied()
        .unwrap_or_else(|| durable.map_or(0, |c| c.last_seq));
    if seq <= last_seq {
        // A replay of what the store already has (the caller replays its log
        // from `durable_source`): harmless. A new log position claiming an
        // old seq is a caller bug.
        if source <= st.highest_source {
            return Ok(Appended::Duplicate);
        }
        return rejected(HistoryRejection::SeqNotIncreasing { last_seq });
    }
    if source < st.highest_source {
        return rejected(HistoryRejection::SourceDecreasing {
            highest: st.highest_source,
        });
    }
    if durable.is_none()
        && !st.pending.contains_key(&conversation)
        && (st.convs.len() + st.pending.len()) as u64 >= HISTORY_CONVERSATIONS_LIMIT
    {
        return rejected(HistoryRejection::TooManyConversations {
            max: HISTORY_CONVERSATIONS_LIMIT,
        });
    }
    let header = EntryHeader {
        len: len as u32,
        ordinal: st.next_ordinal,
        batch_delta: 0,
        kind: EntryKind::Message,
        conversation,
        seq,
        source,
    };
    stage(inner, &mut st, &header, payload)?;
    st.pending.insert(conversation, seq);
    st.highest_source = source;
    Ok(Appended::Staged)
}

/// Stage a retention point (see [`super::HistoryStore::drop_before`]).
pub(crate) fn drop_before(inner: &Inner, conversation: u64, seq: u64) -> Result<()> {
    let mut st = inner.state.borrow_mut();
    st.usable()?;
    if seq <= 1
        || st
            .convs
            .get(&conversation)
            .is_some_and(|c| c.retention >= seq)
    {
        return Ok(());
    }
    let header = EntryHeader {
        len: 0,
        ordinal: st.next_ordinal,
        batch_delta: 0,
        kind: EntryKind::Retention,
        conversation,
        seq,
        source: st.highest_source,
    };
    stage(inner, &mut st, &header, &[])
}

/// Encode an entry at the end of the staging buffer, within its bound.
fn stage(inner: &Inner, st: &mut State, header: &EntryHeader, payload: &[u8]) -> Result<()> {
    let size = entry_bytes(u64::from(header.len));
    let staged = st.staging.len() as u64;
    if staged + size > inner.options.staging_bytes_max {
        return Err(Error::Backpressure {
            queued_records: st.staged_entries,
            queued_bytes: staged,
            records_max: crate::constants::HISTORY_STAGING_ENTRIES_LIMIT,
            bytes_max: inner.options.staging_bytes_max,
        });
    }
    let at = st.staging.len();
    st.staging.resize(at + size as usize, 0);
    let entry = &mut st.staging[at..];
    encode_entry_header(entry, header);
    let start = HISTORY_ENTRY_HEADER_BYTES as usize;
    entry[start..start + payload.len()].copy_from_slice(payload);
    st.staged_entries += 1;
    st.next_ordinal += 1;
    Ok(())
}

/// Make everything staged durable; returns the durable source. Failures are sticky.
pub(crate) async fn sync(inner: &Inner) -> Result<u64> {
    let _permit = inner
        .io_lock
        .acquire_permit(1)
        .await
        .map_err(|_| Error::Closed)?;
    inner.state.borrow().usable()?;
    if let Err(error) = write_staged(inner).await {
        return Err(inner.fail(error));
    }
    Ok(inner.state.borrow().durable_source)
}

/// Size of the first staged entry, if any.
fn first_staged(st: &State) -> Option<u64> {
    if st.staging.is_empty() {
        return None;
    }
    let len = u32::from_le_bytes([st.staging[0], st.staging[1], st.staging[2], st.staging[3]]);
    Some(entry_bytes(u64::from(len)))
}

async fn write_staged(inner: &Inner) -> Result<()> {
    let mut written: Vec<Written> = Vec::new();
    let mut group_first: Option<u64> = None;
    loop {
        let next = first_staged(&inner.state.borrow());
        let Some(size) = next else { break };
        let full = {
            let st = inner.state.borrow();
            st.active.written > HISTORY_SEGMENT_HEADER_BYTES
                && st.active.written + size > inner.options.segment_bytes
        };
        if full {
            if !written.is_empty() {
                sync_and_apply(inner, &mut written).await?;
                group_first = None;
            }
            seal_and_roll(inner).await?;
        }
        let (buf, pos, batch) = fill_batch(inner, &mut group_first);
        let (file, path) = {
            let st = inner.state.borrow();
            (st.active.file.clone(), st.active.path.clone())
        };
        inner
            .storage
            .write_all(Some(FaultPoint::HistoryWrite), &file, &path, buf, pos)
            .await?;
        written.extend(batch);
    }
    if !written.is_empty() {
        sync_and_apply(inner, &mut written).await?;
    }
    let full = inner.state.borrow().active.written >= inner.options.segment_bytes;
    if full {
        seal_and_roll(inner).await?;
    }
    Ok(())
}

async fn sync_and_apply(inner: &Inner, written: &mut Vec<Written>) -> Result<()> {
    let (file, path) = {
        let st = inner.state.borrow();
        (st.active.file.clone(), st.active.path.clone())
    };
    inner
        .storage
        .sync(FaultPoint::HistorySync, &file, &path)
        .await?;
    apply(&mut inner.state.borrow_mut(), written);
    written.clear();
    Ok(())
}

/// Move staged entries into one block-aligned buffer: at most
/// `batch_bytes_max`, never past the segment bound (at least one entry).
/// Stamps each entry's batch delta (relative to the first entry written
/// since the last sync) and checksum.
fn fill_batch(inner: &Inner, group_first: &mut Option<u64>) -> (DmaBuffer, u64, Vec<Written>) {
    let mut guard = inner.state.borrow_mut();
    let st = &mut *guard;
    let options = &inner.options;
    let mut taken = 0usize;
    while taken < st.staging.len() {
        let b = &st.staging[taken..];
        let size = entry_bytes(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))) as usize;
        let total = (taken + size) as u64;
        if taken > 0
            && (total > options.batch_bytes_max
                || st.active.written + total > options.segment_bytes)
        {
            break;
        }
        taken += size;
    }
    let active = &mut st.active;
    let prefix = (active.written % BLOCK_BYTES) as usize;
    let pos = active.written - prefix as u64;
    let write_len = align_up((prefix + taken) as u64, BLOCK_BYTES) as usize;
    let mut buf = active.file.alloc_dma_buffer(write_len);
    let bytes = buf.as_bytes_mut();
    bytes[..prefix].copy_from_slice(&active.tail_block[..prefix]);
    bytes[prefix..prefix + taken].copy_from_slice(&st.staging[..taken]);
    bytes[prefix + taken..].fill(0);
    let mut batch = Vec::new();
    let mut at = prefix;
    while at < prefix + taken {
        let header = match check_entry_header(&bytes[at..], u64::MAX) {
            EntryCheck::Plausible(h) => h,
            other => panic!("staged entry does not decode: {other:?}"),
        };
        let first = *group_first.get_or_insert(header.ordinal);
        let delta = u32::try_from(header.ordinal - first).expect("staged entries fit u32");
        let size = header.entry_bytes() as usize;
        set_batch_delta(&mut bytes[at..at + size], delta);
        seal_entry(&mut bytes[at..at + size]);
        batch.push(Written {
            header: EntryHeader {
                batch_delta: delta,
                ..header
            },
            offset: pos + at as u64,
        });
        at += size;
    }
    st.staging.drain(..taken);
    st.staged_entries -= batch.len() as u64;
    let new_end = active.written + taken as u64;
    let last_block = (align_down(new_end, BLOCK_BYTES) - pos) as usize;
    if new_end % BLOCK_BYTES == 0 {
        active.tail_block.fill(0);
    } else {
        active
            .tail_block
            .copy_from_slice(&bytes[last_block..last_block + BLOCK_BYTES as usize]);
    }
    active.written = new_end;
    (buf, pos, batch)
}

/// Seal the active segment (index file) and start the next one.
async fn seal_and_roll(inner: &Inner) -> Result<()> {
    // The active segment's index does not change while the seal runs (only
    // `sync` and recovery account for entries, and this is `sync`), so the
    // layout can yield to the executor between groups of conversations.
    let (facts, keys, positions, rows) = {
        let st = inner.state.borrow();
        let active = &st.active;
        assert_eq!(active.written, active.durable_end, "seal after sync");
        let mut keys: Vec<u64> = active.convs.keys().copied().collect();
        keys.sort_unstable();
        let facts = SegmentFacts {
            number: active.number,
            first_ordinal: active.first_ordinal,
            entries: active.entries,
            data_end: active.durable_end,
            max_source: active.max_source,
        };
        (facts, keys, active.positions, st.table_rows())
    };
    let (number, next_ordinal) = (facts.number, facts.first_ordinal + facts.entries);
    let mut builder = IndexBuilder::new(
        inner.shard,
        facts,
        keys.len() as u64,
        positions,
        rows.len() as u64,
    );
    for group in keys.chunks(HISTORY_SEAL_CONVERSATIONS_PER_TURN) {
        {
            let st = inner.state.borrow();
            assert_eq!(st.active.number, number, "one seal at a time");
            for conversation in group {
                let c = st
                    .active
                    .convs
                    .get(conversation)
                    .expect("the active index is stable while sealing");
                builder.add(*conversation, c);
            }
        }
        glommio::yield_if_needed().await;
    }
    let built = builder.finish(&rows);
    write_file_atomically(inner, &inner.index_path(number), &built.bytes).await?;
    let active = create_segment(inner, number + 1, next_ordinal).await?;
    let mut st = inner.state.borrow_mut();
    st.sealed.push_back(built.sealed);
    st.active = active;
    Ok(())
}

/// Write `bytes` (a multiple of 4096) as `path`: `*.tmp`, write, `fdatasync`,
/// rename, directory `fsync`.
pub(crate) async fn write_file_atomically(
    inner: &Inner,
    path: &std::path::Path,
    bytes: &[u8],
) -> Result<()> {
    let tmp = tmp_path(path);
    let file = inner.storage.create_rw(&tmp).await?;
    let mut buf = file.alloc_dma_buffer(bytes.len());
    buf.as_bytes_mut().copy_from_slice(bytes);
    let point = Some(FaultPoint::HistorySeal);
    inner.storage.write_all(point, &file, &tmp, buf, 0).await?;
    inner
        .storage
        .sync(FaultPoint::HistorySeal, &file, &tmp)
        .await?;
    inner.storage.rename(&file, &tmp, path).await?;
    inner.storage.sync_dir(&inner.dir, &inner.dir_path).await?;
    crate::writer::close_file(file).await
}

fn tmp_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TEMP_SUFFIX);
    name.into()
}

/// Create segment `number` (header only) and open it as the active segment.
pub(crate) async fn create_segment(
    inner: &Inner,
    number: u64,
    first_ordinal: u64,
) -> Result<Active> {
    let path = inner.segment_path(number);
    let mut header = vec![0u8; BLOCK_BYTES as usize];
    HistorySegmentHeader {
        shard: inner.shard,
        number,
        first_ordinal,
    }
    .encode(&mut header);
    write_file_atomically(inner, &path, &header).await?;
    let file: Rc<_> = inner.storage.open_rw(&path).await?;
    Ok(Active::new(number, path, file, first_ordinal))
}
