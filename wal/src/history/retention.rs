//! Retention: deleting whole sealed segments, oldest first. A segment goes
//! when the store keeps more sealed segments than asked, or when every
//! conversation in it is entirely below its retention point
//! (`drop_before`). The newest sealed segment always stays: its index
//! carries the conversation table and the durable source recovery needs.
//! Reads of what went answer [`super::Page::StartsAt`].

use crate::{constants::BLOCK_BYTES, format::align_up, Error, Result};

use super::{format::decode_dir_block, state::Inner, RetentionReport};

/// See [`super::HistoryStore::apply_retention`].
pub(crate) async fn apply_retention(
    inner: &Inner,
    keep_sealed: Option<u64>,
) -> Result<RetentionReport> {
    let _permit = inner
        .io_lock
        .acquire_permit(1)
        .await
        .map_err(|_| Error::Closed)?;
    inner.state.borrow().usable()?;
    let mut report = RetentionReport::default();
    loop {
        let (number, count) = {
            let st = inner.state.borrow();
            match st.sealed.front() {
                Some(front) if st.sealed.len() > 1 => (front.header.number, st.sealed.len() as u64),
                _ => break,
            }
        };
        let by_count = keep_sealed.is_some_and(|keep| count > keep);
        if !by_count && !all_below_retention(inner, number).await? {
            break;
        }
        report.bytes_freed += delete_segment(inner, number).await?;
        report.segments_deleted += 1;
    }
    Ok(report)
}

/// True if every conversation of sealed segment `number` has all its
/// entries there below its retention point.
async fn all_below_retention(inner: &Inner, number: u64) -> Result<bool> {
    let header = {
        let st = inner.state.borrow();
        match st.sealed.front() {
            Some(s) if s.header.number == number => s.header,
            _ => return Ok(false),
        }
    };
    let path = inner.index_path(number);
    let file = inner.storage.open_read(&path).await?;
    for block in 0..header.dir_blocks() {
        let at = header.dir_offset() + block * BLOCK_BYTES;
        let raw = inner.storage.read(&file, &path, at, BLOCK_BYTES).await?;
        let entries = decode_dir_block(&raw).map_err(|r| Error::corrupt(&path, at, r))?;
        let st = inner.state.borrow();
        let kept = entries.iter().any(|e| {
            st.convs
                .get(&e.conversation)
                .is_none_or(|c| e.last_seq >= c.retention)
        });
        if kept {
            return Ok(false);
        }
    }
    crate::writer::close_file(file).await?;
    Ok(true)
}

/// Forget the oldest sealed segment, then delete its segment file and index
/// (in that order: an index left without its segment is removed at the next
/// open), then sync the directory. Returns the bytes freed.
async fn delete_segment(inner: &Inner, number: u64) -> Result<u64> {
    let sealed = inner.state.borrow_mut().sealed.pop_front();
    let Some(sealed) = sealed else { return Ok(0) };
    assert_eq!(
        sealed.header.number, number,
        "retention deletes the oldest segment"
    );
    inner.files.borrow_mut().forget(number);
    inner.cache.borrow_mut().forget_segment(number);
    let seg = inner.segment_path(number);
    let seg_bytes = align_up(sealed.header.data_end, BLOCK_BYTES);
    inner.storage.remove(&seg).await?;
    inner.storage.remove(&inner.index_path(number)).await?;
    inner.storage.sync_dir(&inner.dir, &inner.dir_path).await?;
    Ok(seg_bytes + sealed.header.file_bytes())
}
