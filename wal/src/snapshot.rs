//! Snapshots: a caller-provided blob tagged with the LSN it covers, written
//! atomically (temporary file, fdatasync, rename, directory fsync) with its own
//! checksums, and read back and verified when the log is opened.
//!
//! A snapshot failure is not sticky: the log itself is untouched, the
//! temporary file is removed and the caller gets the error.

use std::rc::Rc;

use crate::{
    constants::{BLOCK_BYTES, SNAPSHOT_BYTES_LIMIT, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_HEADER_BYTES},
    format::{align_up, SnapshotHeader},
    options::FaultPoint,
    state::Shared,
    Error, Lsn, Result,
};

/// Result of reading a snapshot file.
pub(crate) enum Loaded {
    /// The body, checksum-verified.
    Valid(Vec<u8>),
    /// The file is damaged; the string says how.
    Invalid(String),
}

/// Read and verify the snapshot covering `lsn`. I/O errors are errors; damage
/// is [`Loaded::Invalid`].
pub(crate) async fn load(shared: &Shared, lsn: u64) -> Result<Loaded> {
    load_at(shared, lsn, shared.paths.snapshot(lsn)).await
}

/// [`load`] from the file at `path` (a snapshot or an install file).
pub(crate) async fn load_at(shared: &Shared, lsn: u64, path: std::path::PathBuf) -> Result<Loaded> {
    let file = shared.storage.open_read(&path).await?;
    let file_len = file
        .file_size()
        .await
        .map_err(|e| Error::io("stat", &path, e))?;
    if file_len < SNAPSHOT_HEADER_BYTES {
        return Ok(Loaded::Invalid(format!(
            "file of {file_len} bytes has no complete header"
        )));
    }
    let block = shared.storage.read(&file, &path, 0, BLOCK_BYTES).await?;
    let header = match SnapshotHeader::decode(&block) {
        Ok(header) => header,
        Err(reason) => return Ok(Loaded::Invalid(reason)),
    };
    if header.lsn != lsn {
        return Ok(Loaded::Invalid(format!(
            "header says lsn {}, the file name {lsn}",
            header.lsn
        )));
    }
    if header.shard != shared.shard {
        return Ok(Loaded::Invalid(format!(
            "snapshot of shard {}, not {}",
            header.shard, shared.shard
        )));
    }
    let needed = SNAPSHOT_HEADER_BYTES + align_up(header.body_len, BLOCK_BYTES);
    if file_len < needed {
        return Ok(Loaded::Invalid(format!(
            "file is {file_len} bytes, the header needs {needed}"
        )));
    }
    let body_len = usize::try_from(header.body_len).map_err(|_| Error::SnapshotRejected {
        lsn: Lsn(lsn),
        reason: "body does not fit in memory on this platform".to_string(),
    })?;
    let mut body = Vec::with_capacity(body_len);
    let mut pos = SNAPSHOT_HEADER_BYTES;
    while (body.len() as u64) < header.body_len {
        let want = (header.body_len - body.len() as u64).min(SNAPSHOT_CHUNK_BYTES);
        let data = shared
            .storage
            .read(&file, &path, pos, align_up(want, BLOCK_BYTES))
            .await?;
        if (data.len() as u64) < want {
            return Ok(Loaded::Invalid(format!(
                "file ends inside the body at {}",
                pos + data.len() as u64
            )));
        }
        body.extend_from_slice(&data[..want as usize]);
        pos += align_up(want, BLOCK_BYTES);
    }
    let crc = crc32c::crc32c(&body);
    if crc != header.body_crc {
        return Ok(Loaded::Invalid(format!(
            "body checksum mismatch (stored {:#010x}, computed {crc:#010x})",
            header.body_crc
        )));
    }
    Ok(Loaded::Valid(body))
}

/// Clears the one-snapshot-at-a-time flag however `write` ends.
struct Busy<'a>(&'a Shared);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.state.borrow_mut().snapshot_busy = false;
    }
}

/// Write a snapshot covering `lsn`, then prune old ones.
pub(crate) async fn write(shared: &Rc<Shared>, lsn: u64, bytes: &[u8]) -> Result<()> {
    {
        let mut st = shared.state.borrow_mut();
        let reject = |reason: String| {
            Err(Error::SnapshotRejected {
                lsn: Lsn(lsn),
                reason,
            })
        };
        if let Some(error) = st.failure() {
            return Err(error);
        }
        if lsn > st.durable_lsn {
            return reject(format!("only lsn {} is durable", st.durable_lsn));
        }
        if lsn < st.first_lsn().saturating_sub(1) {
            return reject(format!(
                "records before lsn {} are already deleted",
                st.first_lsn()
            ));
        }
        if let Some(&newest) = st.snapshots.last() {
            if lsn <= newest {
                return reject(format!("a snapshot at lsn {newest} already exists"));
            }
        }
        if bytes.len() as u64 > SNAPSHOT_BYTES_LIMIT {
            return reject(format!(
                "{} bytes exceed the limit of {SNAPSHOT_BYTES_LIMIT}",
                bytes.len()
            ));
        }
        if st.snapshot_busy {
            return reject("another snapshot is being written".to_string());
        }
        st.snapshot_busy = true;
    }
    let _busy = Busy(shared);
    let tmp = shared.paths.snapshot_tmp(lsn);
    let result = write_file(shared, lsn, bytes, &tmp, &shared.paths.snapshot(lsn)).await;
    if let Err(error) = result {
        let _ = shared.storage.remove(&tmp).await;
        return Err(error);
    }
    let pruned: Vec<u64> = {
        let mut st = shared.state.borrow_mut();
        st.snapshots.push(lsn);
        st.counters.snapshots_written += 1;
        let excess = st
            .snapshots
            .len()
            .saturating_sub(shared.options.snapshots_kept as usize);
        st.snapshots.drain(..excess).collect()
    };
    for old in &pruned {
        shared.storage.remove(&shared.paths.snapshot(*old)).await?;
    }
    if !pruned.is_empty() {
        shared
            .storage
            .sync_dir(&shared.dir, &shared.paths.dir)
            .await?;
    }
    Ok(())
}

async fn write_file(
    shared: &Shared,
    lsn: u64,
    bytes: &[u8],
    tmp: &std::path::Path,
    path: &std::path::Path,
) -> Result<()> {
    let tmp = tmp.to_path_buf();
    let file = shared.storage.create_rw(&tmp).await?;
    let body_len = bytes.len() as u64;
    let total = SNAPSHOT_HEADER_BYTES + align_up(body_len, BLOCK_BYTES);
    shared
        .storage
        .preallocate(FaultPoint::SnapshotWrite, &file, &tmp, total)
        .await?;
    let mut block = file.alloc_dma_buffer(BLOCK_BYTES as usize);
    SnapshotHeader {
        shard: shared.shard,
        lsn,
        body_len,
        body_crc: crc32c::crc32c(bytes),
    }
    .encode(block.as_bytes_mut());
    shared
        .storage
        .write_all(Some(FaultPoint::SnapshotWrite), &file, &tmp, block, 0)
        .await?;
    let mut pos = SNAPSHOT_HEADER_BYTES;
    for piece in bytes.chunks(SNAPSHOT_CHUNK_BYTES as usize) {
        let len = align_up(piece.len() as u64, BLOCK_BYTES) as usize;
        let mut buf = file.alloc_dma_buffer(len);
        let out = buf.as_bytes_mut();
        out[..piece.len()].copy_from_slice(piece);
        out[piece.len()..].fill(0);
        shared
            .storage
            .write_all(Some(FaultPoint::SnapshotWrite), &file, &tmp, buf, pos)
            .await?;
        pos += len as u64;
    }
    shared
        .storage
        .sync(FaultPoint::SnapshotSync, &file, &tmp)
        .await?;
    shared.storage.rename(&file, &tmp, path).await?;
    shared
        .storage
        .sync_dir(&shared.dir, &shared.paths.dir)
        .await?;
    Ok(())
}

/// Write `bytes` as a snapshot covering `lsn`, a position beyond the log's
/// end (a replica caught up from a peer's snapshot), under the install
/// name: the next open restarts the log after it (`recovery`). Written
/// like a snapshot (temporary file, fdatasync, rename, directory fsync),
/// so an install file that exists is whole.
pub(crate) async fn write_install(shared: &Rc<Shared>, lsn: u64, bytes: &[u8]) -> Result<()> {
    {
        let mut st = shared.state.borrow_mut();
        let reject = |reason: String| {
            Err(Error::SnapshotRejected {
                lsn: Lsn(lsn),
                reason,
            })
        };
        if let Some(error) = st.failure() {
            return Err(error);
        }
        if lsn < st.next_lsn {
            return reject(format!(
                "the log reaches lsn {} already: write a snapshot",
                st.next_lsn - 1
            ));
        }
        if bytes.len() as u64 > SNAPSHOT_BYTES_LIMIT {
            return reject(format!(
                "{} bytes exceed the limit of {SNAPSHOT_BYTES_LIMIT}",
                bytes.len()
            ));
        }
        if st.snapshot_busy {
            return reject("another snapshot is being written".to_string());
        }
        st.snapshot_busy = true;
    }
    let _busy = Busy(shared);
    let tmp = shared.paths.install_tmp(lsn);
    let result = write_file(shared, lsn, bytes, &tmp, &shared.paths.install(lsn)).await;
    if result.is_err() {
        let _ = shared.storage.remove(&tmp).await;
    }
    result
}

/// A piece of a kept snapshot's body ([`read_range`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPiece {
    /// The LSN the snapshot covers.
    pub lsn: Lsn,
    /// The whole body's length.
    pub body_len: u64,
    /// The whole body's CRC32C (check it once every piece is in).
    pub body_crc: u32,
    /// Bytes `offset .. offset + len` of the body.
    pub bytes: Vec<u8>,
}

/// Up to `max` bytes of the body of the kept snapshot covering `lsn`, from
/// `offset`. The header is verified (checksum, LSN, shard); the body's
/// checksum covers the whole body, so the reader checks it at the end.
pub(crate) async fn read_range(
    shared: &Shared,
    lsn: u64,
    offset: u64,
    max: u64,
) -> Result<SnapshotPiece> {
    let reject = |reason: String| Error::SnapshotRejected {
        lsn: Lsn(lsn),
        reason,
    };
    if !shared.state.borrow().snapshots.contains(&lsn) {
        return Err(reject("no such snapshot is kept".to_string()));
    }
    let path = shared.paths.snapshot(lsn);
    let file = shared.storage.open_read(&path).await?;
    let block = shared.storage.read(&file, &path, 0, BLOCK_BYTES).await?;
    let header = SnapshotHeader::decode(&block).map_err(|r| Error::corrupt(&path, 0, r))?;
    if header.lsn != lsn || header.shard != shared.shard {
        return Err(Error::corrupt(
            &path,
            0,
            format!("header of lsn {} shard {}", header.lsn, header.shard),
        ));
    }
    let end = header.body_len.min(offset.saturating_add(max));
    let mut bytes = Vec::new();
    if offset < end {
        let pos = SNAPSHOT_HEADER_BYTES + offset;
        let base = pos - pos % BLOCK_BYTES;
        let want = SNAPSHOT_HEADER_BYTES + end - base;
        let data = shared
            .storage
            .read(&file, &path, base, align_up(want, BLOCK_BYTES))
            .await?;
        let from = (pos - base) as usize;
        let to = from + (end - offset) as usize;
        if data.len() < to {
            return Err(Error::corrupt(
                &path,
                base + data.len() as u64,
                "file ends inside the body",
            ));
        }
        bytes.extend_from_slice(&data[from..to]);
    }
    Ok(SnapshotPiece {
        lsn: Lsn(lsn),
        body_len: header.body_len,
        body_crc: header.body_crc,
        bytes,
    })
}
