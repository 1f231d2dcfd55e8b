//! Injected storage faults: a failed fdatasync or write makes the log
//! sticky-failed, acknowledges nothing after the failure and never retries;
//! a failed roll (ENOSPC) fails cleanly with a typed error; a failed snapshot
//! leaves the log running. Every acknowledged record survives a reopen.
#![allow(clippy::unwrap_used)]

mod common;

use std::{cell::RefCell, rc::Rc};

use common::{check_all, fill, kind, payload, run, small_options, temp_dir};
use courier_wal::{Error, FaultPoint, Faults, Lsn, SyncMode, Wal};

const SEED: u64 = 21;
const MAX_LEN: u64 = 600;

type Outcomes = Vec<(Lsn, Result<(), Error>)>;

/// Outcome of every wait of `tasks` concurrent appenders, `per_task` records each.
async fn append_concurrently(wal: &Wal, tasks: u64, per_task: u64) -> Outcomes {
    let results: Rc<RefCell<Outcomes>> = Rc::default();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let wal = wal.clone();
            let results = results.clone();
            glommio::spawn_local(async move {
                for _ in 0..per_task {
                    let lsn = match wal.append(
                        kind(wal.next_lsn().0),
                        &payload(SEED, wal.next_lsn().0, MAX_LEN),
                    ) {
                        Ok(lsn) => lsn,
                        Err(e) => {
                            results.borrow_mut().push((Lsn(0), Err(e)));
                            return;
                        }
                    };
                    let outcome = wal.wait_durable(lsn).await;
                    let failed = outcome.is_err();
                    results.borrow_mut().push((lsn, outcome));
                    if failed {
                        return;
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await;
    }
    Rc::try_unwrap(results).ok().unwrap().into_inner()
}

fn assert_sticky(wal: &Wal, durable_before: Lsn, results: &[(Lsn, Result<(), Error>)], what: &str) {
    assert!(!results.is_empty());
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(!failed.is_empty(), "{what}: nothing failed");
    for (lsn, r) in results {
        match r {
            Ok(()) => assert!(*lsn <= wal.durable_lsn(), "{what}: ack beyond durable"),
            Err(Error::Failed { .. }) => {}
            Err(other) => panic!("{what}: unexpected error {other}"),
        }
    }
    // Nothing was acknowledged after the failure.
    assert_eq!(
        wal.durable_lsn(),
        durable_before,
        "{what}: durable LSN moved after the failure"
    );
    assert!(results
        .iter()
        .all(|(lsn, r)| r.is_err() || *lsn <= durable_before));
    assert!(wal.failure().is_some());
}

fn check_fault(point: FaultPoint, sync: SyncMode) {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let faults = Faults::new();
        let mut options = small_options(1 << 20);
        options.faults = Some(faults.clone());
        options.sync = sync;
        let (wal, _) = Wal::open(&path, 0, options).await.unwrap();
        let durable_before = fill(&wal, SEED, 100, 10, MAX_LEN).await;
        let fsyncs_before = wal.counters().fsyncs;
        faults.fail_once(point, 0, libc::EIO);
        let results = append_concurrently(&wal, 16, 10).await;
        assert_sticky(&wal, durable_before, &results, &format!("{point:?}"));
        match results.iter().find_map(|(_, r)| r.as_ref().err()) {
            Some(Error::Failed { cause }) => match cause.as_ref() {
                Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::EIO)),
                other => panic!("unexpected cause {other}"),
            },
            other => panic!("unexpected {other:?}"),
        }
        // The fault is gone, yet the log never retries and refuses everything new.
        faults.clear();
        assert!(matches!(wal.append(1, b"after"), Err(Error::Failed { .. })));
        assert!(matches!(
            wal.wait_durable(Lsn(durable_before.0 + 1)).await,
            Err(Error::Failed { .. })
        ));
        assert!(matches!(
            wal.write_snapshot(durable_before, b"s").await,
            Err(Error::Failed { .. })
        ));
        wal.wait_durable(durable_before).await.unwrap(); // acknowledged earlier, still true
        assert_eq!(
            wal.counters().fsyncs,
            fsyncs_before,
            "no batch completed after the failure"
        );
        assert!(matches!(wal.close().await, Err(Error::Failed { .. })));

        // A restart recovers every acknowledged record.
        let (wal, recovered) = Wal::open(&path, 0, small_options(1 << 20)).await.unwrap();
        assert!(recovered.next_lsn > durable_before);
        assert!(check_all(&wal, SEED, Lsn(1), MAX_LEN).await >= durable_before.0);
        wal.close().await.unwrap();
    });
}

#[test]
fn failed_fdatasync_is_sticky_and_acknowledges_nothing_after() {
    check_fault(FaultPoint::SegmentSync, SyncMode::Fdatasync);
}

#[test]
fn failed_sync_in_dsync_mode_is_sticky_and_acknowledges_nothing_after() {
    check_fault(FaultPoint::SegmentSync, SyncMode::Dsync);
}

#[test]
fn failed_batch_write_is_sticky_and_acknowledges_nothing_after() {
    check_fault(FaultPoint::SegmentWrite, SyncMode::Fdatasync);
}

#[test]
fn no_space_for_the_next_segment_fails_appends_with_a_typed_error() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let faults = Faults::new();
        // Call 1 creates segment 1 (fresh log); call 2 prepares segment 2 in the
        // background; call 3 is the retry at roll time.
        faults.fail_once(FaultPoint::SegmentPrepare, 1, libc::ENOSPC);
        faults.fail_once(FaultPoint::SegmentPrepare, 0, libc::ENOSPC);
        let mut options = small_options(64 * 1024);
        options.faults = Some(faults.clone());
        let (wal, _) = Wal::open(&path, 0, options).await.unwrap();
        let mut acked = Lsn(0);
        let error = loop {
            let lsn = match wal.append(
                kind(wal.next_lsn().0),
                &payload(SEED, wal.next_lsn().0, MAX_LEN),
            ) {
                Ok(lsn) => lsn,
                Err(e) => break e,
            };
            match wal.wait_durable(lsn).await {
                Ok(()) => acked = lsn,
                Err(e) => break e,
            }
        };
        assert!(error.is_no_space(), "expected NoSpace, got {error}");
        assert!(matches!(
            error.root_cause(),
            Error::NoSpace {
                op: "fallocate",
                ..
            }
        ));
        assert!(acked.0 > 10);
        assert_eq!(wal.durable_lsn(), acked);
        assert!(matches!(wal.append(0, b"x"), Err(e) if e.is_no_space()));
        drop(wal);

        let (wal, recovered) = Wal::open(&path, 0, small_options(64 * 1024)).await.unwrap();
        assert_eq!(recovered.next_lsn, Lsn(acked.0 + 1));
        assert_eq!(check_all(&wal, SEED, Lsn(1), MAX_LEN).await, acked.0);
        // With space back, the log rolls and goes on.
        fill(&wal, SEED, 200, 20, MAX_LEN).await;
        assert!(wal.counters().segments_rolled >= 1);
        wal.close().await.unwrap();
    });
}

#[test]
fn failed_directory_sync_at_roll_is_sticky() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let faults = Faults::new();
        let mut options = small_options(64 * 1024);
        options.faults = Some(faults.clone());
        let (wal, _) = Wal::open(&path, 0, options).await.unwrap();
        fill(&wal, SEED, 20, 5, MAX_LEN).await;
        faults.fail_once(FaultPoint::DirSync, 0, libc::EIO);
        let mut acked = wal.durable_lsn();
        let error = loop {
            let lsn = wal
                .append(
                    kind(wal.next_lsn().0),
                    &payload(SEED, wal.next_lsn().0, MAX_LEN),
                )
                .unwrap();
            match wal.wait_durable(lsn).await {
                Ok(()) => acked = lsn,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                error.root_cause(),
                Error::Io {
                    op: "fsync directory",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(wal.durable_lsn(), acked);
        assert!(matches!(wal.append(0, b"x"), Err(Error::Failed { .. })));
        drop(wal);
        let (wal, recovered) = Wal::open(&path, 0, small_options(64 * 1024)).await.unwrap();
        assert!(recovered.next_lsn > acked);
        assert!(check_all(&wal, SEED, Lsn(1), MAX_LEN).await >= acked.0);
        wal.close().await.unwrap();
    });
}

#[test]
fn failed_snapshot_leaves_the_log_running_and_no_partial_file() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let faults = Faults::new();
        let mut options = small_options(1 << 20);
        options.faults = Some(faults.clone());
        let (wal, _) = Wal::open(&path, 0, options).await.unwrap();
        let last = fill(&wal, SEED, 50, 10, MAX_LEN).await;
        faults.fail_once(FaultPoint::SnapshotSync, 0, libc::EIO);
        let big = vec![7u8; 3 * 1024 * 1024 + 5];
        match wal.write_snapshot(last, &big).await {
            Err(Error::Io {
                op: "fdatasync", ..
            }) => {}
            other => panic!("expected the injected fdatasync error, got {other:?}"),
        }
        let leftovers: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("snap-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert!(wal.failure().is_none());
        let last = fill(&wal, SEED, 10, 10, MAX_LEN).await;
        wal.write_snapshot(last, &big).await.unwrap();
        wal.close().await.unwrap();
        let (wal, recovered) = Wal::open(&path, 0, small_options(1 << 20)).await.unwrap();
        let snapshot = recovered.snapshot.unwrap();
        assert_eq!(snapshot.lsn, last);
        assert_eq!(snapshot.bytes, big);
        wal.close().await.unwrap();
    });
}
