//! State shared by the [`crate::Wal`] handles and the group-commit writer task
//! of one executor: the append queue, the durability waiters, the segment
//! table and the counters.
//!
//! Everything is single-threaded (`Rc` + `RefCell`); a `RefCell` borrow is never
//! held across an `.await` (each access is a short synchronous section).

use std::{cell::RefCell, collections::VecDeque, path::Path, rc::Rc, sync::Arc, task::Waker};

use glommio::io::{Directory, DmaFile};

use crate::{
    constants::OPEN_SEALED_SEGMENTS_MAX,
    counters::Counters,
    options::WalOptions,
    segment::Segment,
    storage::{Paths, Storage},
    Error, Lsn, Result,
};

/// Immutable context plus the mutable state of one log.
pub(crate) struct Shared {
    pub(crate) shard: u16,
    pub(crate) paths: Paths,
    pub(crate) options: WalOptions,
    pub(crate) storage: Storage,
    pub(crate) dir: Directory,
    pub(crate) state: RefCell<State>,
    pub(crate) files: RefCell<FileCache>,
    /// One deferred segment check at a time (`recovery::verify_deferred`).
    pub(crate) verify_gate: glommio::sync::Semaphore,
}

/// The mutable state. Invariants (checked by [`State::check`]):
/// `durable_lsn < next_lsn`; `queued_records == next_lsn - 1 - durable_lsn`
/// unless failed; `staged_records <= queued_records`; queue within its bounds.
pub(crate) struct State {
    /// LSN the next append gets.
    pub(crate) next_lsn: u64,
    /// Every LSN up to and including this one is durable (0: none yet).
    pub(crate) durable_lsn: u64,
    /// The sticky failure, once there is one.
    pub(crate) failed: Option<Arc<Error>>,
    /// `close` was called or every handle dropped: no more appends.
    pub(crate) closing: bool,
    /// The writer task has exited.
    pub(crate) writer_done: bool,
    /// Encoded records appended but not yet taken by the writer, in LSN order
    /// (bounded by `queue_bytes_max`).
    pub(crate) staging: Vec<u8>,
    /// Records in `staging`.
    pub(crate) staged_records: u64,
    /// Records appended but not yet durable (staged + in flight).
    pub(crate) queued_records: u64,
    /// Bytes appended but not yet durable (staged + in flight).
    pub(crate) queued_bytes: u64,
    /// Wakes the writer when it sleeps waiting for records.
    pub(crate) writer_waker: Option<Waker>,
    /// `wait_durable` futures: (LSN, waker), bounded by `waiters_max`.
    pub(crate) waiters: Vec<(u64, Waker)>,
    /// `wait_for_room` futures, bounded by `waiters_max`.
    pub(crate) room_waiters: Vec<Waker>,
    /// `close` futures waiting for the writer to exit, bounded by `waiters_max`.
    pub(crate) done_waiters: Vec<Waker>,
    /// Retained segments, oldest first; the last one is the active segment.
    pub(crate) segments: VecDeque<Segment>,
    /// LSNs of the snapshots on disk, ascending.
    pub(crate) snapshots: Vec<u64>,
    /// A snapshot is being written (one at a time).
    pub(crate) snapshot_busy: bool,
    /// Metrics.
    pub(crate) counters: Counters,
}

impl State {
    /// The sticky error as the error every caller gets.
    pub(crate) fn failure(&self) -> Option<Error> {
        self.failed.as_ref().map(|cause| Error::Failed {
            cause: cause.clone(),
        })
    }

    /// Oldest LSN still retained.
    pub(crate) fn first_lsn(&self) -> u64 {
        self.segments.front().map_or(self.next_lsn, |s| s.first_lsn)
    }

    /// The segment holding `lsn`, if retained and written.
    pub(crate) fn segment_of(&self, lsn: u64) -> Option<&Segment> {
        let at = self.segments.partition_point(|s| s.first_lsn <= lsn);
        let segment = self.segments.get(at.checked_sub(1)?)?;
        (lsn < segment.next_lsn).then_some(segment)
    }

    pub(crate) fn out_of_range(&self, lsn: u64, last: u64) -> Error {
        Error::LsnOutOfRange {
            lsn: Lsn(lsn),
            first: Lsn(self.first_lsn()),
            last: Lsn(last),
        }
    }

    pub(crate) fn check(&self, options: &WalOptions) {
        assert!(self.durable_lsn < self.next_lsn);
        assert!(self.staged_records <= self.queued_records);
        assert!(self.queued_records <= options.queue_records_max);
        assert!(self.queued_bytes <= options.queue_bytes_max);
        assert!(self.staging.len() as u64 <= self.queued_bytes);
        if self.failed.is_none() {
            assert_eq!(self.queued_records, self.next_lsn - 1 - self.durable_lsn);
        }
    }
}

impl Shared {
    /// Enter the sticky failed state (first error wins) and wake everyone.
    pub(crate) fn fail(&self, error: Error) {
        tracing::error!(shard = self.shard, error = %error, "write-ahead log failed; refusing further appends");
        let wakers = {
            let mut st = self.state.borrow_mut();
            if st.failed.is_none() {
                st.failed = Some(Arc::new(error));
            }
            // Staged records will never be written; nothing of theirs was acknowledged.
            st.staging.clear();
            st.staged_records = 0;
            let mut wakers: Vec<Waker> = st.waiters.drain(..).map(|(_, w)| w).collect();
            wakers.append(&mut st.room_waiters);
            wakers.extend(st.writer_waker.take());
            wakers
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Begin closing: refuse appends and let the writer drain and exit.
    pub(crate) fn begin_close(&self) {
        let wakers = {
            let mut st = self.state.borrow_mut();
            st.closing = true;
            let mut wakers: Vec<Waker> = std::mem::take(&mut st.room_waiters);
            wakers.extend(st.writer_waker.take());
            wakers
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The writer task has exited.
    pub(crate) fn writer_exited(&self) {
        let wakers = {
            let mut st = self.state.borrow_mut();
            st.writer_done = true;
            let mut wakers = std::mem::take(&mut st.done_waiters);
            wakers.extend(st.waiters.drain(..).map(|(_, w)| w));
            wakers.append(&mut st.room_waiters);
            wakers
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// A file handle to read segment `number` at `path`.
    pub(crate) async fn segment_file(&self, number: u64, path: &Path) -> Result<Rc<DmaFile>> {
        if let Some(file) = self.files.borrow_mut().get(number) {
            return Ok(file);
        }
        let file = self.storage.open_read(path).await?;
        Ok(self.files.borrow_mut().insert_sealed(number, file))
    }
}

/// Open segment files: the active one (read + write, shared with the writer)
/// and a bounded LRU of sealed ones opened for reads.
#[derive(Default)]
pub(crate) struct FileCache {
    pub(crate) active: Option<(u64, Rc<DmaFile>)>,
    sealed: VecDeque<(u64, Rc<DmaFile>)>,
}

impl FileCache {
    fn get(&mut self, number: u64) -> Option<Rc<DmaFile>> {
        if let Some((n, file)) = &self.active {
            if *n == number {
                return Some(file.clone());
            }
        }
        let at = self.sealed.iter().position(|(n, _)| *n == number)?;
        let entry = self.sealed.remove(at)?;
        let file = entry.1.clone();
        self.sealed.push_back(entry);
        Some(file)
    }

    /// Remember `file` for `number` (unless another task already did) and
    /// return the handle to use.
    fn insert_sealed(&mut self, number: u64, file: Rc<DmaFile>) -> Rc<DmaFile> {
        if let Some(existing) = self.get(number) {
            return existing;
        }
        if self.sealed.len() >= OPEN_SEALED_SEGMENTS_MAX {
            self.sealed.pop_front();
        }
        self.sealed.push_back((number, file.clone()));
        file
    }

    /// The writer rolled to a new active segment; the old one becomes sealed.
    pub(crate) fn set_active(&mut self, number: u64, file: Rc<DmaFile>) {
        if let Some((old, old_file)) = self.active.take() {
            if self.sealed.len() >= OPEN_SEALED_SEGMENTS_MAX {
                self.sealed.pop_front();
            }
            self.sealed.push_back((old, old_file));
        }
        self.active = Some((number, file));
    }

    /// Take every cached handle (for closing the files).
    pub(crate) fn take_all(&mut self) -> Vec<Rc<DmaFile>> {
        let mut all: Vec<Rc<DmaFile>> = self.sealed.drain(..).map(|(_, f)| f).collect();
        all.extend(self.active.take().map(|(_, f)| f));
        all
    }

    /// Forget a deleted segment.
    pub(crate) fn forget(&mut self, number: u64) {
        self.sealed.retain(|(n, _)| *n != number);
    }
}
