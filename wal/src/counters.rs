//! Plain-integer counters of one log, for metrics export (`/metrics`) and
//! benchmarks. Read them with [`crate::Wal::counters`]; they are a copy.

use std::time::Duration;

use crate::constants::FSYNC_HISTOGRAM_BUCKETS;

/// Monotonic counters and current gauges of one log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records accepted by `append`.
    pub records_appended: u64,
    /// Records made durable.
    pub records_durable: u64,
    /// Group-commit batches written (each is one write and one `fdatasync`).
    pub batches: u64,
    /// Largest number of records seen in one batch.
    pub batch_records_max: u64,
    /// Bytes handed to the kernel by batch writes (block-aligned, so a partial
    /// last block rewritten by the next batch counts twice).
    pub bytes_written: u64,
    /// Sum of batch write latencies, in nanoseconds.
    pub write_ns_total: u64,
    /// `fdatasync` calls of batches.
    pub fsyncs: u64,
    /// Sum of batch `fdatasync` latencies, in nanoseconds.
    pub fsync_ns_total: u64,
    /// Slowest batch `fdatasync`, in nanoseconds.
    pub fsync_ns_max: u64,
    /// Batch `fdatasync` latency histogram: bucket `i` counts syncs that took
    /// less than `2^i` µs (the last bucket also counts everything slower).
    pub fsync_us_log2_buckets: [u64; FSYNC_HISTOGRAM_BUCKETS],
    /// Appends refused with [`crate::Error::Backpressure`].
    pub backpressure_rejections: u64,
    /// Records appended but not yet durable, now (gauge).
    pub queue_records: u64,
    /// Bytes appended but not yet durable, now (gauge).
    pub queue_bytes: u64,
    /// Segment rolls.
    pub segments_rolled: u64,
    /// Segments deleted by retention.
    pub segments_deleted: u64,
    /// Snapshots written.
    pub snapshots_written: u64,
}

impl Counters {
    pub(crate) fn note_fsync(&mut self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.fsyncs += 1;
        self.fsync_ns_total = self.fsync_ns_total.saturating_add(ns);
        self.fsync_ns_max = self.fsync_ns_max.max(ns);
        let us = ns / 1000;
        // Bucket i holds us < 2^i: i = bit length of us.
        let bucket = (u64::BITS - us.leading_zeros()) as usize;
        self.fsync_us_log2_buckets[bucket.min(FSYNC_HISTOGRAM_BUCKETS - 1)] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_histogram_buckets_by_power_of_two_microseconds() {
        let mut c = Counters::default();
        c.note_fsync(Duration::from_nanos(500)); // 0 us -> bucket 0
        c.note_fsync(Duration::from_micros(1)); // bucket 1
        c.note_fsync(Duration::from_micros(85)); // 64 <= 85 < 128 -> bucket 7
        c.note_fsync(Duration::from_secs(100_000)); // overflow -> last bucket
        assert_eq!(c.fsync_us_log2_buckets[0], 1);
        assert_eq!(c.fsync_us_log2_buckets[1], 1);
        assert_eq!(c.fsync_us_log2_buckets[7], 1);
        assert_eq!(c.fsync_us_log2_buckets[FSYNC_HISTOGRAM_BUCKETS - 1], 1);
        assert_eq!(c.fsyncs, 4);
    }
}
