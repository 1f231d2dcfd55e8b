//! Failpoints for crash and negative-control tests. Compiled only with the
//! `failpoints` cargo feature of `courier-net`: the default build of
//! `courierd` contains none of this.
//!
//! `COURIER_FAILPOINT` holds a comma-separated list of `name` or
//! `name:count` entries:
//!
//! | name | effect |
//! | --- | --- |
//! | `wal_write:N` | abort instead of the (N+1)-th group-commit write of a batch |
//! | `wal_sync:N` | abort instead of the (N+1)-th `fdatasync` of a segment (the batch was written) |
//! | `wal_dirsync:N` | abort instead of the (N+1)-th directory fsync: a segment roll's rename (with no snapshots or retention running, every one after start is a roll) |
//! | `snapshot_write:N` | abort in the (N+1)-th write of a snapshot file |
//! | `snapshot_sync:N` | abort instead of the (N+1)-th `fdatasync` of a snapshot file |
//! | `after_fsync:N` | abort after the (N+1)-th durability report from the WAL, before the core hears of it (records durable, nothing acknowledged) |
//! | `snapshot_every:N` | take a snapshot every N records (instead of `SNAPSHOT_EVERY_RECORDS`) |
//! | `ack_before_fsync` | **broken on purpose**: tell the core a record is durable as soon as it is appended, and hold it back from the WAL for 100 ms |
//! | `skip_dedup` | **broken on purpose**: give every `Send` a fresh random `client_msg_id`, so retries are never deduplicated |
//!
//! Counts start once every shard serves (the recovery's own I/O is not
//! counted). The WAL points use `courier-wal`'s fault hook
//! ([`courier_wal::Faults`]): the operation fails with `EIO` before it is
//! issued, and the daemon then aborts at once (no drain, no snapshot, no
//! close), which is a crash just before that operation. An abort prints
//! `failpoint: …` on stderr. The two broken modes exist so that tests can
//! prove the ledger checker catches real loss and duplication.

use courier_core::api::Request;
use courier_wal::{FaultPoint, Faults};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// How long `ack_before_fsync` holds records back from the WAL.
pub const ACK_BEFORE_FSYNC_DELAY: Duration = Duration::from_millis(100);

/// The parsed `COURIER_FAILPOINT`.
#[derive(Debug, Default)]
pub struct Failpoints {
    wal: Vec<(FaultPoint, u64)>,
    after_fsync: Option<u64>,
    /// Records between snapshots, if overridden.
    pub snapshot_every: Option<u64>,
    /// Ack before the record is durable (broken on purpose).
    pub ack_before_fsync: bool,
    /// Never deduplicate sends (broken on purpose).
    pub skip_dedup: bool,
    faults: Faults,
    armed: AtomicBool,
    durable_reports: AtomicU64,
}

static FAILPOINTS: OnceLock<Failpoints> = OnceLock::new();

/// The failpoints of this process (parsed from the environment once).
/// An unknown name or a bad count aborts with a message: a test asking for
/// a failpoint that does not exist must not pass by accident.
pub fn get() -> &'static Failpoints {
    FAILPOINTS.get_or_init(|| match std::env::var("COURIER_FAILPOINT") {
        Ok(spec) => parse(&spec).unwrap_or_else(|e| {
            eprintln!("failpoint: bad COURIER_FAILPOINT={spec:?}: {e}");
            std::process::abort();
        }),
        Err(_) => Failpoints::default(),
    })
}

fn parse(spec: &str) -> Result<Failpoints, String> {
    let mut f = Failpoints::default();
    for entry in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, count) = match entry.split_once(':') {
            Some((n, c)) => (
                n,
                Some(
                    c.parse::<u64>()
                        .map_err(|_| format!("bad count in {entry:?}"))?,
                ),
            ),
            None => (entry, None),
        };
        let count_or_zero = count.unwrap_or(0);
        match name {
            "wal_write" => f.wal.push((FaultPoint::SegmentWrite, count_or_zero)),
            "wal_sync" => f.wal.push((FaultPoint::SegmentSync, count_or_zero)),
            "wal_dirsync" => f.wal.push((FaultPoint::DirSync, count_or_zero)),
            "snapshot_write" => f.wal.push((FaultPoint::SnapshotWrite, count_or_zero)),
            "snapshot_sync" => f.wal.push((FaultPoint::SnapshotSync, count_or_zero)),
            "after_fsync" => f.after_fsync = Some(count_or_zero),
            "snapshot_every" => {
                f.snapshot_every = Some(
                    count
                        .filter(|n| *n > 0)
                        .ok_or("snapshot_every needs a count > 0")?,
                )
            }
            "ack_before_fsync" => f.ack_before_fsync = true,
            "skip_dedup" => f.skip_dedup = true,
            other => return Err(format!("unknown failpoint {other:?}")),
        }
    }
    Ok(f)
}

impl Failpoints {
    /// The fault plan to put in every shard's `WalOptions` (armed later).
    pub fn wal_faults(&self) -> Option<Faults> {
        (!self.wal.is_empty()).then(|| self.faults.clone())
    }

    /// Starts counting: called once every shard serves.
    pub fn arm(&self) {
        for (point, skip) in &self.wal {
            self.faults.fail_once(*point, *skip, libc::EIO);
        }
        self.armed.store(true, Ordering::SeqCst);
        if self.any() {
            tracing::warn!(failpoints = ?self, "failpoints armed (test build)");
        }
    }

    fn any(&self) -> bool {
        !self.wal.is_empty()
            || self.after_fsync.is_some()
            || self.snapshot_every.is_some()
            || self.ack_before_fsync
            || self.skip_dedup
    }

    /// A storage error surfaced: if a WAL failpoint is armed it was ours,
    /// and the process dies here as if it had crashed before the operation.
    pub fn on_storage_error(&self, what: &str) {
        if !self.wal.is_empty() && self.armed.load(Ordering::SeqCst) {
            crash(what);
        }
    }

    /// The WAL reported records durable; `after_fsync` may crash here.
    pub fn on_durable_report(&self) {
        let Some(limit) = self.after_fsync else {
            return;
        };
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        if self.durable_reports.fetch_add(1, Ordering::SeqCst) >= limit {
            crash("after_fsync: records durable, core not told");
        }
    }

    /// `skip_dedup`: a fresh idempotency key for every send.
    pub fn rewrite(&self, request: &mut Request) {
        if !self.skip_dedup {
            return;
        }
        if let Request::Send { client_msg_id, .. } = request {
            let mut bytes = [0u8; 16];
            if getrandom::getrandom(&mut bytes).is_ok() {
                *client_msg_id = u128::from_le_bytes(bytes) | 1;
            }
        }
    }
}

/// Dies like a crash: a line on stderr, then `abort()` (no unwinding, no
/// flushing, no cleanup).
pub fn crash(what: &str) -> ! {
    eprintln!("failpoint: aborting: {what}");
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_unknown_names_are_refused() {
        let f = parse("wal_sync:3, after_fsync:7,snapshot_every:50,skip_dedup").unwrap();
        assert_eq!(f.wal, vec![(FaultPoint::SegmentSync, 3)]);
        assert_eq!(f.after_fsync, Some(7));
        assert_eq!(f.snapshot_every, Some(50));
        assert!(f.skip_dedup && !f.ack_before_fsync);
        assert!(parse("wal_sink:1").is_err());
        assert!(parse("wal_sync:x").is_err());
        assert!(parse("snapshot_every").is_err());
        assert!(!parse("").unwrap().any());
    }
}
