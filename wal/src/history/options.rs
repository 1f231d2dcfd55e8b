//! [`HistoryOptions`]: the knobs of one history store, each with documented
//! bounds checked by [`HistoryOptions::validate`].

use crate::{
    constants::{
        HISTORY_BATCH_BYTES_LIMIT, HISTORY_ENTRY_BYTES_LIMIT, HISTORY_SEGMENT_BYTES_MAX,
        HISTORY_SEGMENT_BYTES_MIN, HISTORY_STAGING_BYTES_LIMIT,
    },
    Error, Faults, Result,
};

/// Configuration of one history store. Start from [`HistoryOptions::recommended`].
///
/// Memory bound of an open store (see `docs/WAL.md`, "History store"):
/// `staging_bytes_max` + `batch_bytes_max` (the write buffer) + the active
/// segment's index (≤ 16 bytes per entry in it, so ≤ `segment_bytes` / 4)
/// + the summary of each sealed segment + one table row per conversation.
#[derive(Clone, Debug)]
pub struct HistoryOptions {
    /// A segment is sealed once it holds this many bytes (it may end one
    /// entry later). Bounds: `HISTORY_SEGMENT_BYTES_MIN ..= HISTORY_SEGMENT_BYTES_MAX`
    /// (64 KiB ..= 1 GiB), a multiple of 4096.
    pub segment_bytes: u64,
    /// Most entry bytes in one write. Bounds: `HISTORY_ENTRY_BYTES_LIMIT ..=
    /// HISTORY_BATCH_BYTES_LIMIT` (1 MiB ..= 8 MiB).
    pub batch_bytes_max: u64,
    /// Most bytes appended but not yet written by `sync`; beyond it `append`
    /// returns [`Error::Backpressure`]. Bounds: `batch_bytes_max ..=
    /// HISTORY_STAGING_BYTES_LIMIT` (256 MiB).
    pub staging_bytes_max: u64,
    /// Fault injection for tests (same plan type as the WAL's). `None` in production.
    pub faults: Option<Faults>,
}

impl HistoryOptions {
    /// 64 MiB segments, 1 MiB writes, 16 MiB staging.
    pub fn recommended() -> HistoryOptions {
        HistoryOptions {
            segment_bytes: 64 * 1024 * 1024,
            batch_bytes_max: 1024 * 1024,
            staging_bytes_max: 16 * 1024 * 1024,
            faults: None,
        }
    }

    /// Small segments for tests that want many seals.
    pub fn small_for_tests(segment_bytes: u64) -> HistoryOptions {
        HistoryOptions {
            segment_bytes,
            ..HistoryOptions::recommended()
        }
    }

    /// Check every bound; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |field: &'static str, reason: String| Err(Error::InvalidOptions { field, reason });
        if !(HISTORY_SEGMENT_BYTES_MIN..=HISTORY_SEGMENT_BYTES_MAX).contains(&self.segment_bytes)
            || self.segment_bytes % 4096 != 0
        {
            return bad(
                "segment_bytes",
                format!(
                    "{} is not a multiple of 4096 in {HISTORY_SEGMENT_BYTES_MIN} ..= {HISTORY_SEGMENT_BYTES_MAX}",
                    self.segment_bytes
                ),
            );
        }
        if !(HISTORY_ENTRY_BYTES_LIMIT..=HISTORY_BATCH_BYTES_LIMIT).contains(&self.batch_bytes_max)
        {
            return bad(
                "batch_bytes_max",
                format!(
                    "{} is outside {HISTORY_ENTRY_BYTES_LIMIT} ..= {HISTORY_BATCH_BYTES_LIMIT}",
                    self.batch_bytes_max
                ),
            );
        }
        if !(self.batch_bytes_max..=HISTORY_STAGING_BYTES_LIMIT).contains(&self.staging_bytes_max) {
            return bad(
                "staging_bytes_max",
                format!(
                    "{} is outside batch_bytes_max ..= {HISTORY_STAGING_BYTES_LIMIT}",
                    self.staging_bytes_max
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommended_is_valid_and_bounds_are_named() {
        HistoryOptions::recommended().validate().unwrap();
        HistoryOptions::small_for_tests(64 * 1024)
            .validate()
            .unwrap();
        let mut o = HistoryOptions::recommended();
        o.segment_bytes = 1000;
        assert!(matches!(
            o.validate(),
            Err(Error::InvalidOptions {
                field: "segment_bytes",
                ..
            })
        ));
        let mut o = HistoryOptions::recommended();
        o.staging_bytes_max = 1;
        assert!(matches!(
            o.validate(),
            Err(Error::InvalidOptions {
                field: "staging_bytes_max",
                ..
            })
        ));
    }
}
