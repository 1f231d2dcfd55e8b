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
    let path = shared.paths.snapshot(lsn);
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
    let result = write_file(shared, lsn, bytes).await;
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

async fn write_file(shared: &Shared, lsn: u64, bytes: &[u8]) -> Result<()> {
    let tmp = shared.paths.snapshot_tmp(lsn);
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
    let path = shared.paths.snapshot(lsn);
    shared.storage.rename(&file, &tmp, &path).await?;
    shared
        .storage
        .sync_dir(&shared.dir, &shared.paths.dir)
        .await?;
    Ok(())
}
