//! [`WalOptions`]: the knobs of one log, each with documented bounds, and the
//! test-only fault plan ([`Faults`]).

use std::{
    io,
    sync::{Arc, Mutex, PoisonError},
};

use crate::{
    constants::{
        BATCH_BYTES_LIMIT, BATCH_RECORDS_LIMIT, BLOCK_BYTES, QUEUE_BYTES_LIMIT,
        QUEUE_RECORDS_LIMIT, RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES, SEGMENT_BYTES_MAX,
        SEGMENT_BYTES_MIN, SEGMENT_HEADER_BYTES, SNAPSHOTS_KEPT_LIMIT, WAITERS_LIMIT,
    },
    Error, Result,
};

/// Configuration of one log. There is no `Default`: start from
/// [`WalOptions::recommended`] and change what you mean to change.
///
/// Memory bound of one open log: `queue_bytes_max` (staged records) +
/// `batch_bytes_max` + 8 KiB (the write buffer) + 2 MiB (a scan buffer while
/// replaying) + the sparse index (8 bytes per 64 KiB of retained log).
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Size of each segment file, preallocated and zero-filled before use.
    /// Bounds: `SEGMENT_BYTES_MIN ..= SEGMENT_BYTES_MAX` (64 KiB ..= 1 GiB),
    /// a multiple of 4096, and at least one block larger than `record_bytes_max`.
    pub segment_bytes: u64,
    /// Largest record on disk (32-byte header + payload, padded to 16).
    /// Bounds: `64 ..= RECORD_BYTES_LIMIT` (1 MiB), at most `batch_bytes_max`.
    pub record_bytes_max: u64,
    /// Most record bytes in one group-commit write.
    /// Bounds: `record_bytes_max ..= BATCH_BYTES_LIMIT` (8 MiB).
    pub batch_bytes_max: u64,
    /// Most records in one group-commit write. Bounds: `1 ..= BATCH_RECORDS_LIMIT`.
    pub batch_records_max: u64,
    /// Most bytes appended but not yet durable (staged + in flight); beyond it
    /// `append` returns [`Error::Backpressure`].
    /// Bounds: `2 * batch_bytes_max ..= QUEUE_BYTES_LIMIT` (256 MiB).
    pub queue_bytes_max: u64,
    /// Most records appended but not yet durable.
    /// Bounds: `batch_records_max ..= QUEUE_RECORDS_LIMIT`.
    pub queue_records_max: u64,
    /// Most `wait_durable` futures registered at once.
    /// Bounds: `queue_records_max ..= WAITERS_LIMIT`.
    pub waiters_max: u64,
    /// Snapshots kept on disk; older ones are deleted after a new one is
    /// written. Bounds: `1 ..= SNAPSHOTS_KEPT_LIMIT` (16).
    pub snapshots_kept: u32,
    /// How a batch is made durable (both modes give the same guarantee).
    pub sync: SyncMode,
    /// Fault injection for tests. `None` in production.
    pub faults: Option<Faults>,
}

/// How the writer makes a batch durable. Both modes acknowledge a record only
/// once its batch is on stable storage, and both treat a failure as sticky.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// One direct write, then one `fdatasync` of the segment: two kernel
    /// operations (two io_uring round trips) per batch.
    Fdatasync,
    /// The active segment is opened with `O_DSYNC`, so each batch write
    /// completes only once its data is durable (synchronized I/O data
    /// integrity, exactly what `fdatasync` gives): one kernel operation per
    /// batch, which saves a round trip; the kernel uses a FUA write where the
    /// device supports it and a cache flush otherwise.
    Dsync,
}

impl WalOptions {
    /// The values the daemon uses: 64 MiB segments, 1 MiB records and batches,
    /// 4096 records per batch, a 16 MiB / 32768-record queue, two snapshots.
    pub fn recommended() -> WalOptions {
        WalOptions {
            segment_bytes: 64 * 1024 * 1024,
            record_bytes_max: RECORD_BYTES_LIMIT,
            batch_bytes_max: 1024 * 1024,
            batch_records_max: 4096,
            queue_bytes_max: 16 * 1024 * 1024,
            queue_records_max: 32_768,
            waiters_max: 131_072,
            snapshots_kept: 2,
            sync: SyncMode::Fdatasync,
            faults: None,
        }
    }

    /// Small segments and records, so tests exercise rolls with little data.
    pub fn small_for_tests(segment_bytes: u64) -> WalOptions {
        let record_bytes_max = (segment_bytes - SEGMENT_HEADER_BYTES).min(16 * 1024);
        WalOptions {
            segment_bytes,
            record_bytes_max,
            batch_bytes_max: record_bytes_max.max(64 * 1024),
            batch_records_max: 1024,
            queue_bytes_max: 4 * 1024 * 1024,
            queue_records_max: 16_384,
            waiters_max: 65_536,
            snapshots_kept: 2,
            sync: SyncMode::Fdatasync,
            faults: None,
        }
    }

    /// The largest payload `append` accepts under these options.
    pub fn payload_bytes_max(&self) -> u64 {
        self.record_bytes_max - RECORD_HEADER_BYTES
    }

    /// Check every bound documented on the fields.
    pub fn validate(&self) -> Result<()> {
        fn bad(field: &'static str, reason: String) -> Result<()> {
            Err(Error::InvalidOptions { field, reason })
        }
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes)
            || self.segment_bytes % BLOCK_BYTES != 0
        {
            return bad("segment_bytes", format!("{} is not a multiple of {BLOCK_BYTES} in {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}", self.segment_bytes));
        }
        if !(2 * RECORD_HEADER_BYTES..=RECORD_BYTES_LIMIT).contains(&self.record_bytes_max)
            || self.record_bytes_max % 16 != 0
        {
            return bad(
                "record_bytes_max",
                format!(
                    "{} is not a multiple of 16 in 64..={RECORD_BYTES_LIMIT}",
                    self.record_bytes_max
                ),
            );
        }
        if self.record_bytes_max > self.segment_bytes - SEGMENT_HEADER_BYTES {
            return bad(
                "record_bytes_max",
                format!(
                    "{} does not fit in a segment of {} bytes",
                    self.record_bytes_max, self.segment_bytes
                ),
            );
        }
        if !(self.record_bytes_max..=BATCH_BYTES_LIMIT).contains(&self.batch_bytes_max) {
            return bad(
                "batch_bytes_max",
                format!(
                    "{} is outside record_bytes_max..={BATCH_BYTES_LIMIT}",
                    self.batch_bytes_max
                ),
            );
        }
        if !(1..=BATCH_RECORDS_LIMIT).contains(&self.batch_records_max) {
            return bad(
                "batch_records_max",
                format!(
                    "{} is outside 1..={BATCH_RECORDS_LIMIT}",
                    self.batch_records_max
                ),
            );
        }
        if !(2 * self.batch_bytes_max..=QUEUE_BYTES_LIMIT).contains(&self.queue_bytes_max) {
            return bad(
                "queue_bytes_max",
                format!(
                    "{} is outside 2 * batch_bytes_max..={QUEUE_BYTES_LIMIT}",
                    self.queue_bytes_max
                ),
            );
        }
        if !(self.batch_records_max..=QUEUE_RECORDS_LIMIT).contains(&self.queue_records_max) {
            return bad(
                "queue_records_max",
                format!(
                    "{} is outside batch_records_max..={QUEUE_RECORDS_LIMIT}",
                    self.queue_records_max
                ),
            );
        }
        if !(self.queue_records_max..=WAITERS_LIMIT).contains(&self.waiters_max) {
            return bad(
                "waiters_max",
                format!(
                    "{} is outside queue_records_max..={WAITERS_LIMIT}",
                    self.waiters_max
                ),
            );
        }
        if !(1..=SNAPSHOTS_KEPT_LIMIT).contains(&self.snapshots_kept) {
            return bad(
                "snapshots_kept",
                format!(
                    "{} is outside 1..={SNAPSHOTS_KEPT_LIMIT}",
                    self.snapshots_kept
                ),
            );
        }
        Ok(())
    }
}

/// A place in the storage layer where a test can inject an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// The group-commit write of a batch of records.
    SegmentWrite,
    /// The `fdatasync` after a batch write.
    SegmentSync,
    /// Preallocating and zero-filling a new segment file.
    SegmentPrepare,
    /// `fsync` of the log directory (after creating, renaming or deleting files).
    DirSync,
    /// Writing a snapshot file.
    SnapshotWrite,
    /// `fdatasync` of a snapshot file.
    SnapshotSync,
    /// A history store's batch write (`crate::history`).
    HistoryWrite,
    /// A history store's `fdatasync` after its batch writes.
    HistorySync,
    /// Sealing a history segment: writing and syncing its index file and
    /// creating the next segment.
    HistorySeal,
}

#[derive(Debug)]
struct Fault {
    point: FaultPoint,
    skip: u64,
    errno: i32,
}

/// A shared, thread-safe fault plan. Clone it into [`WalOptions::faults`] and
/// keep a clone to arm faults while the log runs. Only tests use this: the
/// check costs one uncontended lock per I/O operation when a plan is present
/// and nothing when `faults` is `None`.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    plan: Arc<Mutex<Vec<Fault>>>,
}

impl Faults {
    /// An empty plan.
    pub fn new() -> Faults {
        Faults::default()
    }

    /// Make the operation at `point` fail once with `errno`, after `skip`
    /// more successful operations at that point.
    pub fn fail_once(&self, point: FaultPoint, skip: u64, errno: i32) {
        self.plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Fault { point, skip, errno });
    }

    /// Remove every armed fault.
    pub fn clear(&self) {
        self.plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Called by the storage layer before each operation at `point`.
    pub(crate) fn check(&self, point: FaultPoint) -> io::Result<()> {
        let mut plan = self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(index) = plan.iter().position(|f| f.point == point) else {
            return Ok(());
        };
        if plan[index].skip > 0 {
            plan[index].skip -= 1;
            return Ok(());
        }
        let fault = plan.remove(index);
        Err(io::Error::from_raw_os_error(fault.errno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommended_and_test_options_are_valid() {
        WalOptions::recommended().validate().unwrap();
        WalOptions::small_for_tests(SEGMENT_BYTES_MIN)
            .validate()
            .unwrap();
        WalOptions::small_for_tests(1 << 20).validate().unwrap();
    }

    #[test]
    fn out_of_bounds_options_are_rejected_by_name() {
        let check = |f: &dyn Fn(&mut WalOptions), field: &str| {
            let mut o = WalOptions::recommended();
            f(&mut o);
            match o.validate() {
                Err(Error::InvalidOptions { field: got, .. }) => assert_eq!(got, field),
                other => panic!("expected InvalidOptions for {field}, got {other:?}"),
            }
        };
        check(&|o| o.segment_bytes = 1000, "segment_bytes");
        check(
            &|o| o.segment_bytes = SEGMENT_BYTES_MAX + BLOCK_BYTES,
            "segment_bytes",
        );
        check(&|o| o.record_bytes_max = 8, "record_bytes_max");
        check(&|o| o.batch_bytes_max = 1024, "batch_bytes_max");
        check(&|o| o.batch_records_max = 0, "batch_records_max");
        check(
            &|o| o.queue_bytes_max = o.batch_bytes_max,
            "queue_bytes_max",
        );
        check(&|o| o.queue_records_max = 1, "queue_records_max");
        check(&|o| o.waiters_max = 1, "waiters_max");
        check(&|o| o.snapshots_kept = 0, "snapshots_kept");
    }

    #[test]
    fn faults_fire_once_after_skipping() {
        let faults = Faults::new();
        faults.fail_once(FaultPoint::SegmentSync, 2, libc::EIO);
        assert!(faults.check(FaultPoint::SegmentWrite).is_ok());
        assert!(faults.check(FaultPoint::SegmentSync).is_ok());
        assert!(faults.check(FaultPoint::SegmentSync).is_ok());
        let err = faults.check(FaultPoint::SegmentSync).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert!(faults.check(FaultPoint::SegmentSync).is_ok());
    }
}
