//! [`Wal`]: the handle the runtime holds. Appends are synchronous and cheap
//! (they copy the record into the bounded staging queue and take the next
//! LSN); durability is asynchronous ([`Wal::wait_durable`]); reads, snapshots,
//! retention and close are asynchronous.

use std::{
    cell::RefCell,
    future::poll_fn,
    ops::ControlFlow,
    path::Path,
    rc::Rc,
    task::{Poll, Waker},
};

use glommio::io::Directory;

use crate::{
    constants::{RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES},
    counters::Counters,
    format::{encode_record_header, record_bytes},
    options::WalOptions,
    read::{read_one, Payload, Reader, Record},
    recovery::{self, Recovered},
    snapshot,
    state::{FileCache, Shared, State},
    storage::{sync_dir_blocking, Paths, Storage},
    writer::{close_file, Writer},
    Error, Lsn, Result,
};

/// The write-ahead log of one shard, bound to the glommio executor that
/// opened it. Cheap to clone (`Rc`); `!Send`. The log stops accepting appends
/// when [`Wal::close`] is called or the last clone is dropped; the writer task
/// then flushes what was appended and exits.
#[derive(Clone)]
pub struct Wal {
    inner: Rc<Handle>,
}

struct Handle {
    shared: Rc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.begin_close();
    }
}

impl Wal {
    /// Open (or create) the log of `shard` in `dir`, inside a glommio executor.
    ///
    /// Runs recovery (see `docs/WAL.md`): verifies every retained record,
    /// truncates a torn tail, returns the newest valid snapshot and the next
    /// LSN, and starts the group-commit writer task. Replay what follows the
    /// snapshot with [`Wal::replay`] from [`Recovered::replay_from`].
    ///
    /// Fails with [`Error::Corrupt`] (file and offset) on damage that is not a
    /// torn tail, [`Error::Inconsistent`] when files are missing or foreign,
    /// [`Error::DirectIoUnsupported`] on tmpfs-like file systems,
    /// [`Error::InvalidOptions`] for out-of-bounds options.
    pub async fn open(dir: &Path, shard: u16, options: WalOptions) -> Result<(Wal, Recovered)> {
        options.validate()?;
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        if created {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir_blocking(parent)?;
            }
        }
        let storage = Storage::new(options.faults.clone());
        storage.probe_direct_io(dir).await?;
        let directory = Directory::open(dir)
            .await
            .map_err(|e| Error::io("open directory", dir, e))?;
        let staging_capacity = options.queue_bytes_max.min(1024 * 1024) as usize;
        let shared = Rc::new(Shared {
            shard,
            paths: Paths {
                dir: dir.to_path_buf(),
            },
            options,
            storage,
            dir: directory,
            state: RefCell::new(State {
                next_lsn: 1,
                durable_lsn: 0,
                failed: None,
                closing: false,
                writer_done: false,
                staging: Vec::with_capacity(staging_capacity),
                staged_records: 0,
                queued_records: 0,
                queued_bytes: 0,
                writer_waker: None,
                waiters: Vec::new(),
                room_waiters: Vec::new(),
                done_waiters: Vec::new(),
                segments: Default::default(),
                snapshots: Vec::new(),
                snapshot_busy: false,
                counters: Counters::default(),
            }),
            files: RefCell::new(FileCache::default()),
            verify_gate: glommio::sync::Semaphore::new(1),
        });
        let outcome = recovery::recover(&shared).await?;
        {
            let mut st = shared.state.borrow_mut();
            st.next_lsn = outcome.recovered.next_lsn.0;
            st.durable_lsn = outcome.recovered.next_lsn.0 - 1;
            st.segments = outcome.segments;
            st.snapshots = outcome.snapshots;
            st.check(&shared.options);
        }
        shared
            .files
            .borrow_mut()
            .set_active(outcome.active.number, outcome.active.file.clone());
        glommio::spawn_local(Writer::new(shared.clone(), outcome.active).run()).detach();
        Ok((
            Wal {
                inner: Rc::new(Handle { shared }),
            },
            outcome.recovered,
        ))
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Append a record and return its LSN, without waiting. Consecutive calls
    /// with no `.await` in between get consecutive LSNs. The record is durable
    /// only once [`Wal::wait_durable`] for its LSN returns `Ok`.
    ///
    /// Fails (appending nothing) with [`Error::Backpressure`] when the bounded
    /// queue is full, [`Error::PayloadTooLarge`], [`Error::Failed`] after a
    /// sticky failure, [`Error::Closed`] after close.
    pub fn append(&self, kind: u8, payload: &[u8]) -> Result<Lsn> {
        let shared = self.shared();
        let options = &shared.options;
        let mut st = shared.state.borrow_mut();
        if let Some(error) = st.failure() {
            return Err(error);
        }
        if st.closing {
            return Err(Error::Closed);
        }
        let len = payload.len() as u64;
        if len > options.payload_bytes_max() {
            return Err(Error::PayloadTooLarge {
                len,
                max: options.payload_bytes_max(),
            });
        }
        let size = record_bytes(len);
        if st.queued_records + 1 > options.queue_records_max
            || st.queued_bytes + size > options.queue_bytes_max
        {
            st.counters.backpressure_rejections += 1;
            return Err(Error::Backpressure {
                queued_records: st.queued_records,
                queued_bytes: st.queued_bytes,
                records_max: options.queue_records_max,
                bytes_max: options.queue_bytes_max,
            });
        }
        let lsn = st.next_lsn;
        st.next_lsn += 1;
        let mut header = [0u8; RECORD_HEADER_BYTES as usize];
        // batch_lsn is filled in (and the checksum computed) by the writer.
        encode_record_header(&mut header, len as u32, lsn, 0, kind);
        st.staging.extend_from_slice(&header);
        st.staging.extend_from_slice(payload);
        let pad = (size - RECORD_HEADER_BYTES - len) as usize;
        st.staging
            .extend_from_slice(&[0u8; RECORD_ALIGN_BYTES as usize][..pad]);
        st.staged_records += 1;
        st.queued_records += 1;
        st.queued_bytes += size;
        st.counters.records_appended += 1;
        let writer = st.writer_waker.take();
        drop(st);
        if let Some(writer) = writer {
            writer.wake();
        }
        Ok(Lsn(lsn))
    }

    fn room_for(&self, st: &State, records: u64, payload_bytes: u64) -> bool {
        let bytes = payload_bytes + records * (RECORD_HEADER_BYTES + RECORD_ALIGN_BYTES);
        let options = &self.shared().options;
        st.queued_records + records <= options.queue_records_max
            && st.queued_bytes + bytes <= options.queue_bytes_max
    }

    /// True if `records` records carrying `payload_bytes` bytes in total would
    /// be accepted by `append` right now.
    pub fn has_room(&self, records: u64, payload_bytes: u64) -> bool {
        self.room_for(&self.shared().state.borrow(), records, payload_bytes)
    }

    /// Wait until `records` records carrying `payload_bytes` bytes in total fit
    /// in the queue. Room is not reserved: append right after this returns,
    /// before the next `.await`. Fails at once with [`Error::Backpressure`] if
    /// the request exceeds the queue bounds themselves.
    pub async fn wait_for_room(&self, records: u64, payload_bytes: u64) -> Result<()> {
        let options = &self.shared().options;
        let bytes = payload_bytes + records * (RECORD_HEADER_BYTES + RECORD_ALIGN_BYTES);
        if records > options.queue_records_max || bytes > options.queue_bytes_max {
            return Err(Error::Backpressure {
                queued_records: records,
                queued_bytes: bytes,
                records_max: options.queue_records_max,
                bytes_max: options.queue_bytes_max,
            });
        }
        poll_fn(|cx| {
            let mut st = self.shared().state.borrow_mut();
            if let Some(error) = st.failure() {
                return Poll::Ready(Err(error));
            }
            if st.closing {
                return Poll::Ready(Err(Error::Closed));
            }
            if self.room_for(&st, records, payload_bytes) {
                return Poll::Ready(Ok(()));
            }
            // Each batch completion takes and wakes the whole list, and another
            // task may take the room first: register again unless this waker
            // is still listed (the list is short: one entry per waiting task).
            if !st.room_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                if st.room_waiters.len() as u64 >= options.waiters_max {
                    return Poll::Ready(Err(Error::TooManyWaiters {
                        max: options.waiters_max,
                    }));
                }
                st.room_waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Wait until the record `lsn` (and so every earlier one) is durable:
    /// written and `fdatasync`ed. Waiters of one batch complete in LSN order.
    ///
    /// Fails with [`Error::Failed`] if the log failed before `lsn` became
    /// durable (then it never will be), [`Error::LsnOutOfRange`] if `lsn` was
    /// not appended yet, [`Error::Closed`] if the writer is gone.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        let options = &self.shared().options;
        let mut registered: Option<Waker> = None;
        poll_fn(|cx| {
            let mut st = self.shared().state.borrow_mut();
            if lsn.0 <= st.durable_lsn {
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = st.failure() {
                return Poll::Ready(Err(error));
            }
            if lsn.0 >= st.next_lsn {
                let last = st.next_lsn - 1;
                return Poll::Ready(Err(st.out_of_range(lsn.0, last)));
            }
            if st.writer_done {
                return Poll::Ready(Err(Error::Closed));
            }
            if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                if st.waiters.len() as u64 >= options.waiters_max {
                    return Poll::Ready(Err(Error::TooManyWaiters {
                        max: options.waiters_max,
                    }));
                }
                st.waiters.push((lsn.0, cx.waker().clone()));
                registered = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Every LSN up to and including this one is durable (`Lsn(0)`: none yet).
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.shared().state.borrow().durable_lsn)
    }

    /// The LSN the next append will get.
    pub fn next_lsn(&self) -> Lsn {
        Lsn(self.shared().state.borrow().next_lsn)
    }

    /// The newest segment's number, the offset just past the last record
    /// placed in it, and that record's LSN (`next_lsn - 1`). Once that LSN
    /// is durable the segment's bytes below the offset never change: a
    /// consistent copy of a live log (`courier-net`'s backup while
    /// serving) takes them and zeros after. None before the first segment.
    pub fn active_end(&self) -> Option<(u64, u64, Lsn)> {
        let st = self.shared().state.borrow();
        let segment = st.segments.back()?;
        Some((
            segment.number,
            segment.end_offset,
            Lsn(segment.next_lsn.saturating_sub(1)),
        ))
    }

    /// The oldest LSN still retained.
    pub fn first_lsn(&self) -> Lsn {
        Lsn(self.shared().state.borrow().first_lsn())
    }

    /// The sticky failure, if the log has failed.
    pub fn failure(&self) -> Option<Error> {
        self.shared().state.borrow().failure()
    }

    /// The shard this log belongs to.
    pub fn shard(&self) -> u16 {
        self.shared().shard
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared().paths.dir
    }

    /// A copy of the counters.
    pub fn counters(&self) -> Counters {
        let st = self.shared().state.borrow();
        let mut counters = st.counters;
        counters.queue_records = st.queued_records;
        counters.queue_bytes = st.queued_bytes;
        counters
    }

    /// Read the durable record `lsn`: its kind and payload (16-byte aligned,
    /// no copy). One read of at most 64 KiB plus the record, located through
    /// the sparse index. Fails with [`Error::LsnOutOfRange`] for LSNs not
    /// durable or no longer retained, [`Error::Corrupt`] if the bytes on disk
    /// do not verify.
    pub async fn read(&self, lsn: Lsn) -> Result<(u8, Payload)> {
        read_one(self.shared(), lsn.0).await
    }

    /// Read several records (each as [`Wal::read`]); results in input order.
    pub async fn read_many(&self, lsns: &[Lsn]) -> Result<Vec<(u8, Payload)>> {
        let mut out = Vec::with_capacity(lsns.len());
        for &lsn in lsns {
            out.push(self.read(lsn).await?);
        }
        Ok(out)
    }

    /// A forward reader from `from` up to the currently durable LSN.
    pub fn reader(&self, from: Lsn) -> Result<Reader> {
        Reader::new(self.inner.shared.clone(), from)
    }

    /// Call `f` for every durable record from `from` on, in LSN order, until it
    /// returns `ControlFlow::Break` or the durable end is reached. Returns the
    /// last LSN passed to `f` (`from - 1` if none). Streams through the log with
    /// one 2 MiB buffer.
    pub async fn replay<F>(&self, from: Lsn, mut f: F) -> Result<Lsn>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        let mut reader = self.reader(from)?;
        let mut last = Lsn(from.0.max(1) - 1);
        while let Some(record) = reader.next().await? {
            last = record.lsn;
            if f(record).is_break() {
                break;
            }
        }
        Ok(last)
    }

    /// Write a snapshot of the caller's state covering every record up to and
    /// including `lsn` (which must be durable), atomically, then delete the
    /// oldest snapshots beyond [`WalOptions::snapshots_kept`]. A failure here
    /// leaves the log running and the previous snapshots in place.
    pub async fn write_snapshot(&self, lsn: Lsn, bytes: &[u8]) -> Result<()> {
        snapshot::write(&self.inner.shared, lsn.0, bytes).await
    }

    /// Write a snapshot covering `lsn`, a position at or beyond the log's
    /// next LSN (a replica caught up from a peer's snapshot), as an
    /// install file: the log itself is untouched now; the next
    /// [`Wal::open`] deletes every segment and snapshot, keeps this one and
    /// starts the log at `lsn + 1` (`docs/WAL.md`, "Recovery rules"). The
    /// caller stops using this log afterwards (it restarts).
    pub async fn write_install(&self, lsn: Lsn, bytes: &[u8]) -> Result<()> {
        snapshot::write_install(&self.inner.shared, lsn.0, bytes).await
    }

    /// The LSNs of the snapshots kept, oldest first.
    pub fn snapshot_lsns(&self) -> Vec<Lsn> {
        let st = self.shared().state.borrow();
        st.snapshots.iter().map(|&l| Lsn(l)).collect()
    }

    /// Up to `max` bytes of the body of the kept snapshot covering `lsn`,
    /// from byte `offset` (empty at or past the end), with the body's
    /// length and checksum (check it once every piece is in).
    /// [`Error::SnapshotRejected`] if that snapshot is not kept (any more).
    pub async fn read_snapshot_range(
        &self,
        lsn: Lsn,
        offset: u64,
        max: u64,
    ) -> Result<snapshot::SnapshotPiece> {
        snapshot::read_range(self.shared(), lsn.0, offset, max).await
    }

    /// Delete whole sealed segments whose records are all below `lsn`, and
    /// return the oldest LSN still retained. Never deletes the active segment,
    /// nor a record the oldest kept snapshot needs for replay (so with no
    /// snapshot nothing is deleted): the effective bound is
    /// `min(lsn, oldest kept snapshot + 1)`.
    pub async fn delete_segments_before(&self, lsn: Lsn) -> Result<Lsn> {
        let shared = self.shared();
        let doomed: Vec<(u64, std::path::PathBuf)> = {
            let mut st = shared.state.borrow_mut();
            let horizon = match st.snapshots.first() {
                Some(&oldest) => lsn.0.min(oldest + 1),
                None => 0,
            };
            let mut doomed = Vec::new();
            while st.segments.len() > 1
                && st.segments.front().is_some_and(|s| s.next_lsn <= horizon)
            {
                let segment = st.segments.pop_front().expect("checked non-empty");
                doomed.push((segment.number, segment.path));
            }
            st.counters.segments_deleted += doomed.len() as u64;
            doomed
        };
        for (number, path) in &doomed {
            shared.files.borrow_mut().forget(*number);
            shared.storage.remove(path).await?;
        }
        if !doomed.is_empty() {
            shared
                .storage
                .sync_dir(&shared.dir, &shared.paths.dir)
                .await?;
        }
        Ok(self.first_lsn())
    }

    /// Stop accepting appends, make everything appended so far durable, and
    /// stop the writer task. Returns the sticky failure if there was one.
    pub async fn close(&self) -> Result<()> {
        let shared = self.shared();
        shared.begin_close();
        let mut registered: Option<Waker> = None;
        poll_fn(|cx| {
            let mut st = shared.state.borrow_mut();
            if st.writer_done {
                return Poll::Ready(Ok(()));
            }
            if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                if st.done_waiters.len() as u64 >= shared.options.waiters_max {
                    return Poll::Ready(Err(Error::TooManyWaiters {
                        max: shared.options.waiters_max,
                    }));
                }
                st.done_waiters.push(cx.waker().clone());
                registered = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await?;
        // Close files explicitly: a dropped glommio file is only closed at the
        // executor's next I/O cycle, which may never come at shutdown.
        let files = shared.files.borrow_mut().take_all();
        for file in files {
            let _ = close_file(file).await;
        }
        match self.failure() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
