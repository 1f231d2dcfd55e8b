//! Reading a store's messages in the order they were appended, from a log
//! position on ([`scan`]): what a replica that lags behind a peer's
//! truncated log copies from the peer's store (docs/CLUSTER.md, "Catching
//! up from a snapshot"). Sources never decrease along the ordinals, so the
//! scan starts at the oldest segment whose highest source passes the
//! position and reads forward; every entry is verified (checksum, bounds)
//! before it is returned, damage is [`Error::Corrupt`] with file and
//! offset. Only durable entries are read (a sealed segment up to its data
//! end, the active one up to its durable end); retention points are
//! skipped.

use crate::{
    constants::{
        HISTORY_ENTRY_HEADER_BYTES, HISTORY_PAGE_BYTES_LIMIT, HISTORY_PAGE_ENTRIES_LIMIT,
        HISTORY_SEGMENT_HEADER_BYTES, SCAN_CHUNK_BYTES,
    },
    scan::Chunk,
    Error, Result,
};

use super::{
    format::{check_entry_header, verify_entry, EntryCheck, EntryKind},
    read::file_of,
    state::{FileKind, Inner},
    ScannedEntry,
};

/// Up to `max_entries` durable messages whose source is above
/// `after_source`, in the order they were appended, with at most
/// `max_bytes` of payload (at least one entry when there is one). The
/// bounds are clamped to a History page's ([`HISTORY_PAGE_ENTRIES_LIMIT`],
/// [`HISTORY_PAGE_BYTES_LIMIT`]).
pub(crate) async fn scan(
    inner: &Inner,
    after_source: u64,
    max_entries: u64,
    max_bytes: u64,
) -> Result<Vec<ScannedEntry>> {
    let segments: Vec<(u64, u64)> = {
        let st = inner.state.borrow();
        st.readable()?;
        let sealed = st
            .sealed
            .iter()
            .map(|s| (s.header.number, s.header.data_end, s.header.max_source));
        let active = (
            st.active.number,
            st.active.durable_end,
            st.active.max_source,
        );
        sealed
            .chain(std::iter::once(active))
            .filter(|(_, _, max)| *max > after_source)
            .map(|(number, end, _)| (number, end))
            .collect()
    };
    let max_entries = max_entries.clamp(1, HISTORY_PAGE_ENTRIES_LIMIT);
    let max_bytes = max_bytes.min(HISTORY_PAGE_BYTES_LIMIT);
    let mut out = Vec::new();
    let mut bytes = 0u64;
    for (number, end) in segments {
        let path = inner.segment_path(number);
        let file = file_of(inner, number, FileKind::Segment).await?;
        let mut chunk = Chunk::new(file, path.clone(), end, SCAN_CHUNK_BYTES);
        let mut pos = HISTORY_SEGMENT_HEADER_BYTES;
        while pos + HISTORY_ENTRY_HEADER_BYTES <= end {
            if !chunk
                .fill(&inner.storage, pos, HISTORY_ENTRY_HEADER_BYTES)
                .await?
            {
                return Err(Error::corrupt(
                    &path,
                    pos,
                    "segment ends before its data end",
                ));
            }
            let h =
                match check_entry_header(chunk.bytes(pos, HISTORY_ENTRY_HEADER_BYTES), end - pos) {
                    EntryCheck::Plausible(h) => h,
                    EntryCheck::Zero => {
                        return Err(Error::corrupt(&path, pos, "zeros before the data end"))
                    }
                    EntryCheck::Invalid(reason) => return Err(Error::corrupt(&path, pos, reason)),
                };
            let len = h.entry_bytes();
            if !chunk.fill(&inner.storage, pos, len).await? {
                return Err(Error::corrupt(&path, pos, "entry cut by the file's end"));
            }
            let entry = chunk.bytes(pos, len);
            verify_entry(entry, &h).map_err(|r| Error::corrupt(&path, pos, r))?;
            if h.kind == EntryKind::Message && h.source > after_source {
                let payload = u64::from(h.len);
                let full = out.len() as u64 >= max_entries || bytes + payload > max_bytes;
                if full && !out.is_empty() {
                    return Ok(out);
                }
                bytes += payload;
                let at = HISTORY_ENTRY_HEADER_BYTES as usize;
                out.push(ScannedEntry {
                    conversation: h.conversation,
                    seq: h.seq,
                    source: h.source,
                    payload: entry[at..at + h.len as usize].to_vec(),
                });
            }
            pos += len;
        }
    }
    Ok(out)
}
