//! The group-commit writer: one glommio task per log that turns staged
//! records into batches, writes each batch with one direct write, makes it
//! durable with one `fdatasync`, and only then completes the waiters of that
//! batch, in LSN order.
//!
//! Records appended while a batch's write or sync is in flight accumulate in
//! the staging queue and form the next batch, so the batch size adapts to the
//! load with no timer. Exactly one batch is in flight at a time: when a batch
//! is written, every earlier batch is already durable. Recovery relies on
//! this (see `recovery.rs`): only the newest batch of the log can be torn.
//!
//! The writer never retries a failed write or sync (after a failed fsync the
//! page cache or the device may have dropped the data): the first error is
//! made sticky and the task exits.
//!
//! Segment roll: the next segment is prepared in the background while the
//! current one fills (created under a temporary name, preallocated and
//! zero-filled so later writes are pure overwrites). At roll time its header
//! is written and synced, it is renamed to its final name and the directory is
//! synced, all before any record is written into it.

use std::{
    future::poll_fn,
    path::PathBuf,
    rc::Rc,
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use glommio::io::{DmaBuffer, DmaFile};

use crate::{
    constants::{BLOCK_BYTES, SEGMENT_HEADER_BYTES, ZERO_FILL_CHUNK_BYTES},
    format::{align_down, align_up, record_bytes, seal_record, set_batch_lsn, SegmentHeader},
    options::{FaultPoint, SyncMode},
    segment::Segment,
    state::Shared,
    Result,
};

/// The segment records are appended to.
pub(crate) struct ActiveSegment {
    pub(crate) number: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Rc<DmaFile>,
    pub(crate) segment_bytes: u64,
    /// One past the last record written.
    pub(crate) tail: u64,
    /// Copy of the block containing `tail`: bytes before `tail % BLOCK_BYTES`
    /// are records already written, the rest is zero. The next batch rewrites
    /// this block with the same prefix (direct I/O writes whole blocks).
    pub(crate) tail_block: Vec<u8>,
}

/// A segment file prepared ahead of use, still under its temporary name.
pub(crate) struct Prepared {
    number: u64,
    tmp_path: PathBuf,
    file: Rc<DmaFile>,
    segment_bytes: u64,
}

/// Create, preallocate and zero-fill segment file `number` under a temporary name.
pub(crate) async fn prepare_segment(
    shared: Rc<Shared>,
    number: u64,
    segment_bytes: u64,
) -> Result<Prepared> {
    let tmp_path = shared.paths.segment_tmp(number);
    let result = async {
        let file = shared.storage.create_rw(&tmp_path).await?;
        shared
            .storage
            .preallocate(FaultPoint::SegmentPrepare, &file, &tmp_path, segment_bytes)
            .await?;
        // One zeroed buffer written over and over; a smaller one for the rest.
        let chunk = ZERO_FILL_CHUNK_BYTES.min(segment_bytes);
        let mut zeros = file.alloc_dma_buffer(chunk as usize);
        zeros.as_bytes_mut().fill(0);
        let zeros = Rc::new(zeros);
        let mut pos = 0;
        while pos < segment_bytes {
            let len = chunk.min(segment_bytes - pos);
            let buf = if len == chunk {
                zeros.clone()
            } else {
                let mut rest = file.alloc_dma_buffer(len as usize);
                rest.as_bytes_mut().fill(0);
                Rc::new(rest)
            };
            shared
                .storage
                .write_all_shared(&file, &tmp_path, buf, pos)
                .await?;
            pos += len;
        }
        Ok(Prepared {
            number,
            tmp_path: tmp_path.clone(),
            file,
            segment_bytes,
        })
    }
    .await;
    if result.is_err() {
        // Best effort: a leftover temporary file is deleted at the next open anyway.
        let _ = shared.storage.remove(&tmp_path).await;
    }
    result
}

/// Install a prepared segment as segment `number` starting at `first_lsn`:
/// header, sync, rename, directory sync. Returns the new active segment.
pub(crate) async fn install_segment(
    shared: &Shared,
    prepared: Prepared,
    first_lsn: u64,
) -> Result<ActiveSegment> {
    let Prepared {
        number,
        tmp_path,
        file,
        segment_bytes,
    } = prepared;
    let mut header = file.alloc_dma_buffer(BLOCK_BYTES as usize);
    SegmentHeader {
        shard: shared.shard,
        number,
        first_lsn,
        segment_bytes,
    }
    .encode(header.as_bytes_mut());
    shared
        .storage
        .write_all(None, &file, &tmp_path, header, 0)
        .await?;
    shared
        .storage
        .sync(FaultPoint::SegmentSync, &file, &tmp_path)
        .await?;
    let path = shared.paths.segment(number);
    shared.storage.rename(&file, &tmp_path, &path).await?;
    shared
        .storage
        .sync_dir(&shared.dir, &shared.paths.dir)
        .await?;
    let file = match shared.options.sync {
        SyncMode::Fdatasync => file,
        SyncMode::Dsync => {
            // O_DSYNC cannot be added to an open file (F_SETFL ignores it), and
            // zero-filling through it would sync every chunk: reopen now.
            let dsync = shared.storage.open_rw_dsync(&path).await?;
            close_file(file).await?;
            dsync
        }
    };
    Ok(ActiveSegment {
        number,
        path,
        file,
        segment_bytes,
        tail: SEGMENT_HEADER_BYTES,
        tail_block: vec![0; BLOCK_BYTES as usize],
    })
}

/// Close a file now if this is its last handle (else it closes with the last one).
pub(crate) async fn close_file(file: Rc<DmaFile>) -> Result<()> {
    let path = file.path().map(|p| p.to_path_buf()).unwrap_or_default();
    file.close_rc()
        .await
        .map(|_| ())
        .map_err(|e| crate::Error::io("close", path, e))
}

/// One batch on its way to disk.
struct Batch {
    buf: DmaBuffer,
    pos: u64,
    first_lsn: u64,
    last_lsn: u64,
    records: u64,
    record_bytes: u64,
}

enum Step {
    Batch,
    Exit,
}

/// The writer task's own state.
pub(crate) struct Writer {
    shared: Rc<Shared>,
    active: ActiveSegment,
    prepared: Option<glommio::Task<Result<Prepared>>>,
    ready: Vec<(u64, Waker)>,
}

impl Writer {
    pub(crate) fn new(shared: Rc<Shared>, active: ActiveSegment) -> Writer {
        let prepared = Some(glommio::spawn_local(prepare_segment(
            shared.clone(),
            active.number + 1,
            shared.options.segment_bytes,
        )));
        Writer {
            shared,
            active,
            prepared,
            ready: Vec::new(),
        }
    }

    /// The task body: batch, write, sync, complete; until closed or failed.
    pub(crate) async fn run(mut self) {
        loop {
            match self.next_step().await {
                Step::Exit => break,
                Step::Batch => {}
            }
            if let Err(error) = self.commit_batch().await {
                self.shared.fail(error);
                break;
            }
        }
        if let Some(task) = self.prepared.take() {
            if let Ok(prepared) = task.await {
                let _ = close_file(prepared.file).await;
                let _ = self.shared.storage.remove(&prepared.tmp_path).await;
            }
        }
        // Release the active file before telling `close` we are done.
        let shared = self.shared.clone();
        drop(self);
        shared.writer_exited();
    }

    async fn next_step(&self) -> Step {
        poll_fn(|cx| {
            let mut st = self.shared.state.borrow_mut();
            if st.failed.is_some() {
                Poll::Ready(Step::Exit)
            } else if st.staged_records > 0 {
                Poll::Ready(Step::Batch)
            } else if st.closing {
                Poll::Ready(Step::Exit)
            } else {
                st.writer_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Roll if needed, then write and sync one batch and complete its waiters.
    async fn commit_batch(&mut self) -> Result<()> {
        let (first_size, first_lsn) = {
            let st = self.shared.state.borrow();
            let len =
                u32::from_le_bytes([st.staging[0], st.staging[1], st.staging[2], st.staging[3]]);
            let mut lsn = [0u8; 8];
            lsn.copy_from_slice(&st.staging[8..16]);
            (record_bytes(u64::from(len)), u64::from_le_bytes(lsn))
        };
        if self.active.tail + first_size > self.active.segment_bytes {
            self.roll(first_lsn).await?;
        }
        let batch = self.fill_batch();
        let write_len = batch.buf.len() as u64;
        let started = Instant::now();
        self.shared
            .storage
            .write_all(
                Some(FaultPoint::SegmentWrite),
                &self.active.file,
                &self.active.path,
                batch.buf,
                batch.pos,
            )
            .await?;
        let written = Instant::now();
        match self.shared.options.sync {
            SyncMode::Fdatasync => {
                self.shared
                    .storage
                    .sync(
                        FaultPoint::SegmentSync,
                        &self.active.file,
                        &self.active.path,
                    )
                    .await?
            }
            // The write above was already durable when it completed.
            SyncMode::Dsync => self.shared.storage.inject_sync_fault(&self.active.path)?,
        }
        let synced = Instant::now();
        self.complete(
            batch.first_lsn,
            batch.last_lsn,
            batch.records,
            batch.record_bytes,
            write_len,
            written - started,
            synced - written,
        );
        Ok(())
    }

    async fn roll(&mut self, first_lsn: u64) -> Result<()> {
        let number = self.active.number + 1;
        let segment_bytes = self.shared.options.segment_bytes;
        let prepared = match self.prepared.take() {
            Some(task) => match task.await {
                Ok(prepared)
                    if prepared.number == number && prepared.segment_bytes == segment_bytes =>
                {
                    Ok(prepared)
                }
                Ok(other) => {
                    drop(other.file);
                    let _ = self.shared.storage.remove(&other.tmp_path).await;
                    prepare_segment(self.shared.clone(), number, segment_bytes).await
                }
                Err(error) => {
                    // Space may have been freed since; try once more, inline.
                    tracing::warn!(shard = self.shared.shard, %error, "preparing the next segment failed; retrying at roll");
                    prepare_segment(self.shared.clone(), number, segment_bytes).await
                }
            },
            None => prepare_segment(self.shared.clone(), number, segment_bytes).await,
        }?;
        let active = install_segment(&self.shared, prepared, first_lsn).await?;
        {
            let mut st = self.shared.state.borrow_mut();
            st.segments.push_back(Segment::new(
                number,
                first_lsn,
                active.path.clone(),
                segment_bytes,
            ));
            st.counters.segments_rolled += 1;
        }
        self.shared
            .files
            .borrow_mut()
            .set_active(number, active.file.clone());
        self.active = active;
        self.prepared = Some(glommio::spawn_local(prepare_segment(
            self.shared.clone(),
            number + 1,
            segment_bytes,
        )));
        Ok(())
    }

    /// Move records from the staging queue into a block-aligned DMA buffer:
    /// as many as fit the batch bounds and the segment, at least one.
    fn fill_batch(&mut self) -> Batch {
        let shared = self.shared.clone();
        let options = &shared.options;
        let mut guard = shared.state.borrow_mut();
        let st = &mut *guard;
        let room = self.active.segment_bytes - self.active.tail;
        let mut taken: u64 = 0;
        let mut records: u64 = 0;
        while (taken as usize) < st.staging.len() && records < options.batch_records_max {
            let at = taken as usize;
            let len = u32::from_le_bytes([
                st.staging[at],
                st.staging[at + 1],
                st.staging[at + 2],
                st.staging[at + 3],
            ]);
            let size = record_bytes(u64::from(len));
            if taken + size > room || (records > 0 && taken + size > options.batch_bytes_max) {
                break;
            }
            taken += size;
            records += 1;
        }
        assert!(
            records > 0,
            "a batch carries at least one record (rolled if needed)"
        );

        let first_lsn = st.durable_lsn + 1;
        let prefix = self.active.tail % BLOCK_BYTES;
        let pos = self.active.tail - prefix;
        let write_len = align_up(prefix + taken, BLOCK_BYTES);
        let mut buf = self.active.file.alloc_dma_buffer(write_len as usize);
        let bytes = buf.as_bytes_mut();
        let (prefix, taken_usize) = (prefix as usize, taken as usize);
        bytes[..prefix].copy_from_slice(&self.active.tail_block[..prefix]);
        bytes[prefix..prefix + taken_usize].copy_from_slice(&st.staging[..taken_usize]);
        bytes[prefix + taken_usize..].fill(0);

        let segment = st
            .segments
            .back_mut()
            .expect("the active segment is in the table");
        assert_eq!(segment.number, self.active.number);
        let mut offset = 0usize;
        let mut lsn = first_lsn;
        while offset < taken_usize {
            let at = prefix + offset;
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            let size = record_bytes(u64::from(len)) as usize;
            let record = &mut bytes[at..at + size];
            let mut staged_lsn = [0u8; 8];
            staged_lsn.copy_from_slice(&record[8..16]);
            assert_eq!(
                u64::from_le_bytes(staged_lsn),
                lsn,
                "staged records are consecutive"
            );
            set_batch_lsn(record, first_lsn);
            seal_record(record);
            segment.note_record(lsn, self.active.tail + offset as u64, size as u64);
            offset += size;
            lsn += 1;
        }
        st.staging.drain(..taken_usize);
        st.staged_records -= records;

        let new_tail = self.active.tail + taken;
        if new_tail % BLOCK_BYTES == 0 {
            self.active.tail_block.fill(0);
        } else {
            let last_block = (align_down(new_tail, BLOCK_BYTES) - pos) as usize;
            self.active
                .tail_block
                .copy_from_slice(&bytes[last_block..last_block + BLOCK_BYTES as usize]);
        }
        self.active.tail = new_tail;
        Batch {
            buf,
            pos,
            first_lsn,
            last_lsn: lsn - 1,
            records,
            record_bytes: taken,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn complete(
        &mut self,
        first_lsn: u64,
        last_lsn: u64,
        records: u64,
        record_bytes: u64,
        write_len: u64,
        write_took: Duration,
        sync_took: Duration,
    ) {
        let room_wakers = {
            let mut st = self.shared.state.borrow_mut();
            assert_eq!(
                st.durable_lsn + 1,
                first_lsn,
                "batches complete in LSN order"
            );
            st.durable_lsn = last_lsn;
            st.queued_records -= records;
            st.queued_bytes -= record_bytes;
            let c = &mut st.counters;
            c.batches += 1;
            c.records_durable += records;
            c.batch_records_max = c.batch_records_max.max(records);
            c.bytes_written += write_len;
            c.write_ns_total += u64::try_from(write_took.as_nanos()).unwrap_or(u64::MAX);
            c.note_fsync(sync_took);
            let mut i = 0;
            while i < st.waiters.len() {
                if st.waiters[i].0 <= last_lsn {
                    self.ready.push(st.waiters.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            st.check(&self.shared.options);
            std::mem::take(&mut st.room_waiters)
        };
        // Stable sort: the list is nearly sorted already, which it detects in O(n).
        self.ready.sort_by_key(|(lsn, _)| *lsn);
        for (_, waker) in self.ready.drain(..) {
            waker.wake();
        }
        room_wakers.into_iter().for_each(Waker::wake);
    }
}
