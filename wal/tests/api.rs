//! Behaviour of the public API on a healthy disk: LSNs, group commit,
//! backpressure, rolls, reads, replay, snapshots, retention, close.
#![allow(clippy::unwrap_used)]

mod common;

use std::{cell::RefCell, ops::ControlFlow, rc::Rc};

use common::{check_all, fill, kind, payload, run, small_options, temp_dir, Rng};
use courier_wal::{Error, Lsn, Wal, WalOptions};

#[test]
fn appends_get_consecutive_lsns_and_survive_reopen() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (wal, recovered) = Wal::open(&path, 3, small_options(1 << 20)).await.unwrap();
        assert_eq!(recovered.next_lsn, Lsn(1));
        assert_eq!(recovered.snapshot, None);
        assert_eq!(wal.durable_lsn(), Lsn(0));
        // Synchronous appends in a row, as the runtime does for one core step.
        let lsns: Vec<Lsn> = (1..=10)
            .map(|i| wal.append(kind(i), &payload(1, i, 300)).unwrap())
            .collect();
        assert_eq!(lsns, (1..=10).map(Lsn).collect::<Vec<_>>());
        wal.wait_durable(Lsn(10)).await.unwrap();
        assert_eq!(wal.durable_lsn(), Lsn(10));
        for i in 1..=10 {
            let (k, p) = wal.read(Lsn(i)).await.unwrap();
            assert_eq!((k, &p[..]), (kind(i), &payload(1, i, 300)[..]));
            assert_eq!(p.as_ptr() as usize % 16, 0, "payloads are 16-byte aligned");
        }
        assert_eq!(check_all(&wal, 1, Lsn(1), 300).await, 10);
        wal.close().await.unwrap();

        let (wal, recovered) = Wal::open(&path, 3, small_options(1 << 20)).await.unwrap();
        assert_eq!(recovered.next_lsn, Lsn(11));
        assert_eq!(recovered.truncated_tail, None);
        assert_eq!(check_all(&wal, 1, Lsn(1), 300).await, 10);
        assert_eq!(wal.append(0, b"x").unwrap(), Lsn(11));
        wal.close().await.unwrap();
    });
}

#[test]
fn concurrent_appenders_share_fsyncs_and_complete_in_lsn_order() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (wal, _) = Wal::open(&path, 0, small_options(4 << 20)).await.unwrap();
        let completed: Rc<RefCell<Vec<u64>>> = Rc::default();
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let wal = wal.clone();
                let completed = completed.clone();
                glommio::spawn_local(async move {
                    for i in 0..40u64 {
                        let lsn = wal.append(7, &payload(t, i, 200)).unwrap();
                        wal.wait_durable(lsn).await.unwrap();
                        assert!(wal.durable_lsn() >= lsn);
                        completed.borrow_mut().push(lsn.0);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let completed = completed.take();
        assert_eq!(completed.len(), 64 * 40);
        assert!(
            completed.windows(2).all(|w| w[0] < w[1]),
            "waiters complete in LSN order"
        );
        let c = wal.counters();
        assert_eq!(c.records_durable, 64 * 40);
        assert_eq!(c.fsyncs, c.batches);
        // 64 closed-loop appenders: batches must be shared, not one fsync per record.
        assert!(
            c.records_durable / c.batches >= 16,
            "records per fsync too low: {c:?}"
        );
        assert!(c.batch_records_max <= small_options(4 << 20).batch_records_max);
        wal.close().await.unwrap();
    });
}

#[test]
fn full_queue_refuses_appends_with_backpressure_until_room() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut options = small_options(1 << 20);
        options.batch_records_max = 4;
        options.queue_records_max = 8;
        let (wal, _) = Wal::open(&path, 0, options).await.unwrap();
        for i in 1..=8 {
            assert_eq!(wal.append(1, b"abc").unwrap(), Lsn(i));
        }
        assert!(!wal.has_room(1, 3));
        match wal.append(1, b"abc") {
            Err(Error::Backpressure {
                queued_records: 8,
                records_max: 8,
                ..
            }) => {}
            other => panic!("expected backpressure, got {other:?}"),
        }
        assert_eq!(wal.counters().backpressure_rejections, 1);
        assert_eq!(wal.next_lsn(), Lsn(9), "a refused append takes no LSN");
        wal.wait_for_room(1, 3).await.unwrap();
        assert_eq!(wal.append(1, b"abc").unwrap(), Lsn(9));
        assert!(matches!(
            wal.wait_for_room(9, 0).await,
            Err(Error::Backpressure { .. })
        ));
        wal.wait_durable(Lsn(9)).await.unwrap();
        // Byte bound too.
        let too_big = vec![0u8; wal_payload_max(&wal) as usize + 1];
        assert!(matches!(
            wal.append(1, &too_big),
            Err(Error::PayloadTooLarge { .. })
        ));
        wal.close().await.unwrap();
    });
}

fn wal_payload_max(_wal: &Wal) -> u64 {
    small_options(1 << 20).payload_bytes_max()
}

#[test]
fn queue_byte_bound_is_enforced() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut options = small_options(1 << 20);
        options.batch_bytes_max = 16 * 1024;
        options.queue_bytes_max = 32 * 1024;
        let (wal, _) = Wal::open(&path, 0, options).await.unwrap();
        let record = vec![9u8; 4000];
        let mut accepted = 0;
        loop {
            match wal.append(2, &record) {
                Ok(_) => accepted += 1,
                Err(Error::Backpressure {
                    queued_bytes,
                    bytes_max,
                    ..
                }) => {
                    assert!(queued_bytes <= bytes_max);
                    break;
                }
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(accepted, 32 * 1024 / 4032);
        wal.wait_durable(Lsn(accepted)).await.unwrap();
        wal.close().await.unwrap();
    });
}

#[test]
fn records_span_many_segments_and_read_back_by_lsn_after_reopen() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let options = small_options(64 * 1024);
        let (wal, _) = Wal::open(&path, 0, options.clone()).await.unwrap();
        let last = fill(&wal, 5, 3000, 37, 1500).await;
        assert_eq!(last, Lsn(3000));
        let rolled = wal.counters().segments_rolled;
        assert!(rolled >= 20, "expected many rolls, got {rolled}");
        let mut rng = Rng::new(77);
        for _ in 0..300 {
            let lsn = 1 + rng.below(3000);
            let (k, p) = wal.read(Lsn(lsn)).await.unwrap();
            assert_eq!(
                (k, &p[..]),
                (kind(lsn), &payload(5, lsn, 1500)[..]),
                "lsn {lsn}"
            );
        }
        let many = wal
            .read_many(&[Lsn(3000), Lsn(1), Lsn(1500)])
            .await
            .unwrap();
        assert_eq!(many[1].1.as_ref(), &payload(5, 1, 1500)[..]);
        assert!(matches!(
            wal.read(Lsn(3001)).await,
            Err(Error::LsnOutOfRange { .. })
        ));
        assert!(matches!(
            wal.read(Lsn(0)).await,
            Err(Error::LsnOutOfRange { .. })
        ));
        wal.close().await.unwrap();

        let (wal, recovered) = Wal::open(&path, 0, options).await.unwrap();
        assert_eq!(recovered.next_lsn, Lsn(3001));
        assert_eq!(check_all(&wal, 5, Lsn(1), 1500).await, 3000);
        for lsn in [1u64, 2, 999, 1000, 2999, 3000] {
            let (_, p) = wal.read(Lsn(lsn)).await.unwrap();
            assert_eq!(&p[..], &payload(5, lsn, 1500)[..]);
        }
        // Replay from the middle, and stop early.
        let mut seen = Vec::new();
        let last = wal
            .replay(Lsn(1234), |r| {
                seen.push(r.lsn.0);
                if seen.len() == 10 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await
            .unwrap();
        assert_eq!(seen, (1234..1244).collect::<Vec<_>>());
        assert_eq!(last, Lsn(1243));
        wal.close().await.unwrap();
    });
}

#[test]
fn snapshots_are_returned_on_open_and_retention_keeps_what_they_need() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let options = small_options(64 * 1024);
        let (wal, _) = Wal::open(&path, 9, options.clone()).await.unwrap();
        fill(&wal, 8, 1000, 50, 1000).await;
        // Retention without a snapshot deletes nothing.
        assert_eq!(wal.delete_segments_before(Lsn(900)).await.unwrap(), Lsn(1));
        assert!(matches!(
            wal.write_snapshot(Lsn(1001), b"future").await,
            Err(Error::SnapshotRejected { .. })
        ));
        wal.write_snapshot(Lsn(400), b"state@400").await.unwrap();
        assert!(matches!(
            wal.write_snapshot(Lsn(400), b"again").await,
            Err(Error::SnapshotRejected { .. })
        ));
        wal.write_snapshot(Lsn(800), b"state@800").await.unwrap();
        // The oldest kept snapshot (400) bounds retention.
        let first = wal.delete_segments_before(Lsn(800)).await.unwrap();
        assert!(first.0 > 1 && first.0 <= 401, "first retained {first}");
        assert!(matches!(
            wal.read(Lsn(1)).await,
            Err(Error::LsnOutOfRange { .. })
        ));
        wal.write_snapshot(Lsn(1000), b"state@1000").await.unwrap();
        let first = wal.delete_segments_before(Lsn(1000)).await.unwrap();
        assert!(first.0 > 401 && first.0 <= 801, "first retained {first}");
        assert_eq!(wal.counters().snapshots_written, 3);
        wal.close().await.unwrap();

        let snapshots: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("snap-"))
            .collect();
        assert_eq!(
            snapshots.len(),
            2,
            "pruned to snapshots_kept: {snapshots:?}"
        );

        let (wal, recovered) = Wal::open(&path, 9, options.clone()).await.unwrap();
        let snapshot = recovered.snapshot.clone().unwrap();
        assert_eq!(
            (snapshot.lsn, &snapshot.bytes[..]),
            (Lsn(1000), &b"state@1000"[..])
        );
        assert_eq!(recovered.first_lsn, first);
        assert_eq!(recovered.replay_from(), Lsn(1001));
        assert_eq!(check_all(&wal, 8, first, 1000).await, 1001 - first.0);
        wal.close().await.unwrap();

        // Damage the newest snapshot: the older one is used and the bad one set aside.
        let newest = path.join(courier_wal::format::snapshot_file_name(1000));
        let mut bytes = std::fs::read(&newest).unwrap();
        bytes[4096] ^= 0x40;
        std::fs::write(&newest, &bytes).unwrap();
        let (wal, recovered) = Wal::open(&path, 9, options).await.unwrap();
        assert_eq!(recovered.snapshot.as_ref().unwrap().lsn, Lsn(800));
        assert_eq!(recovered.snapshot.as_ref().unwrap().bytes, b"state@800");
        assert_eq!(recovered.invalid_snapshots.len(), 1);
        assert!(recovered.invalid_snapshots[0].reason.contains("checksum"));
        wal.close().await.unwrap();
    });
}

#[test]
fn a_snapshot_installed_beyond_the_end_restarts_the_log_after_it_and_ranges_read_back() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let options = small_options(64 * 1024);
        let (wal, _) = Wal::open(&path, 9, options.clone()).await.unwrap();
        fill(&wal, 8, 300, 50, 300).await;
        // A kept snapshot reads back in ranges, with its length and checksum.
        let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        wal.write_snapshot(Lsn(200), &body).await.unwrap();
        assert_eq!(wal.snapshot_lsns(), vec![Lsn(200)]);
        let mut got = Vec::new();
        while (got.len() as u64) < 10_000 {
            let piece = wal
                .read_snapshot_range(Lsn(200), got.len() as u64, 4_000)
                .await
                .unwrap();
            assert_eq!((piece.lsn, piece.body_len), (Lsn(200), 10_000));
            assert!(!piece.bytes.is_empty() && piece.bytes.len() <= 4_000);
            got.extend_from_slice(&piece.bytes);
        }
        assert_eq!(got, body);
        let piece = wal
            .read_snapshot_range(Lsn(200), 10_000, 4_000)
            .await
            .unwrap();
        assert!(piece.bytes.is_empty());
        assert_eq!(piece.body_crc, crc32c::crc32c(&body));
        assert!(matches!(
            wal.read_snapshot_range(Lsn(100), 0, 10).await,
            Err(Error::SnapshotRejected { .. })
        ));
        // An install must lie beyond the log.
        assert!(matches!(
            wal.write_install(Lsn(300), b"x").await,
            Err(Error::SnapshotRejected { .. })
        ));
        wal.write_install(Lsn(5_000), b"state@5000").await.unwrap();
        // Nothing changes until the next open.
        assert_eq!(check_all(&wal, 8, Lsn(1), 300).await, 300);
        wal.close().await.unwrap();
        drop(wal);

        let (wal, recovered) = Wal::open(&path, 9, options.clone()).await.unwrap();
        let snapshot = recovered.snapshot.clone().unwrap();
        assert_eq!(
            (snapshot.lsn, &snapshot.bytes[..]),
            (Lsn(5_000), &b"state@5000"[..])
        );
        assert_eq!(
            (recovered.first_lsn, recovered.next_lsn),
            (Lsn(5_001), Lsn(5_001))
        );
        assert!(matches!(
            wal.read(Lsn(300)).await,
            Err(Error::LsnOutOfRange { .. })
        ));
        assert_eq!(
            wal.append(kind(5_001), &payload(1, 5_001, 10)).unwrap(),
            Lsn(5_001)
        );
        wal.wait_durable(Lsn(5_001)).await.unwrap();
        wal.close().await.unwrap();
        drop(wal);
        let names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".seg") || n.ends_with(".snap"))
            .collect();
        assert_eq!(
            names.len(),
            2,
            "one segment and the installed snapshot: {names:?}"
        );

        let (wal, recovered) = Wal::open(&path, 9, options).await.unwrap();
        assert_eq!(recovered.next_lsn, Lsn(5_002));
        assert_eq!(recovered.replay_from(), Lsn(5_001));
        let (k, p) = wal.read(Lsn(5_001)).await.unwrap();
        assert_eq!((k, p.to_vec()), (kind(5_001), payload(1, 5_001, 10)));
        wal.close().await.unwrap();
    });
}

#[test]
fn an_install_interrupted_at_any_step_completes_at_the_next_open_and_a_damaged_one_is_set_aside() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let options = small_options(64 * 1024);
        let names = |ext: &str| -> Vec<String> {
            let mut n: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(ext))
                .collect();
            n.sort();
            n
        };
        let (wal, _) = Wal::open(&path, 9, options.clone()).await.unwrap();
        fill(&wal, 8, 200, 50, 300).await;
        // A damaged install file is set aside and the log stays as it was.
        wal.write_install(Lsn(900), b"state@900").await.unwrap();
        wal.close().await.unwrap();
        drop(wal);
        let install = path.join(courier_wal::format::install_file_name(900));
        let mut bytes = std::fs::read(&install).unwrap();
        bytes[4096] ^= 1;
        std::fs::write(&install, &bytes).unwrap();
        let (wal, recovered) = Wal::open(&path, 9, options.clone()).await.unwrap();
        assert_eq!(
            (recovered.first_lsn, recovered.next_lsn),
            (Lsn(1), Lsn(201))
        );
        assert_eq!(check_all(&wal, 8, Lsn(1), 300).await, 200);
        assert_eq!(names(".invalid").len(), 1);
        // Crash after the old segments were deleted, before the new one.
        wal.write_install(Lsn(1_000), b"state@1000").await.unwrap();
        wal.close().await.unwrap();
        drop(wal);
        for name in names(".seg") {
            std::fs::remove_file(path.join(name)).unwrap();
        }
        let (wal, recovered) = Wal::open(&path, 9, options.clone()).await.unwrap();
        assert_eq!(recovered.snapshot.unwrap().bytes, b"state@1000");
        assert_eq!(recovered.next_lsn, Lsn(1_001));
        wal.close().await.unwrap();
        drop(wal);
        // Crash after the new segment, before the rename: done again.
        std::fs::copy(
            path.join(courier_wal::format::snapshot_file_name(1_000)),
            path.join(courier_wal::format::install_file_name(1_000)),
        )
        .unwrap();
        let (wal, recovered) = Wal::open(&path, 9, options).await.unwrap();
        assert_eq!(recovered.snapshot.unwrap().bytes, b"state@1000");
        assert_eq!(
            (recovered.first_lsn, recovered.next_lsn),
            (Lsn(1_001), Lsn(1_001))
        );
        assert_eq!(names(".seg").len(), 1);
        assert_eq!(names(".snap").len(), 1, "{:?}", names(".snap"));
        assert_eq!(wal.append(1, b"next").unwrap(), Lsn(1_001));
        wal.close().await.unwrap();
    });
}

#[test]
fn close_flushes_appended_records_and_refuses_new_ones() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (wal, _) = Wal::open(&path, 0, small_options(64 * 1024)).await.unwrap();
        for i in 1..=500 {
            wal.append(kind(i), &payload(3, i, 400)).unwrap();
        }
        wal.close().await.unwrap();
        assert_eq!(wal.durable_lsn(), Lsn(500));
        assert!(matches!(wal.append(0, b"late"), Err(Error::Closed)));
        assert!(matches!(
            wal.wait_durable(Lsn(501)).await,
            Err(Error::LsnOutOfRange { .. })
        ));
        let (wal, recovered) = Wal::open(&path, 0, small_options(64 * 1024)).await.unwrap();
        assert_eq!(recovered.next_lsn, Lsn(501));
        assert_eq!(check_all(&wal, 3, Lsn(1), 400).await, 500);
        wal.close().await.unwrap();
    });
}

#[test]
fn open_refuses_tmpfs_and_bad_options_and_foreign_shards() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let shm = std::path::Path::new("/dev/shm");
        if courier_wal::fs_type_name(shm) == "tmpfs" {
            let tmpfs_dir = tempfile::tempdir_in(shm).unwrap();
            match Wal::open(tmpfs_dir.path(), 0, WalOptions::recommended()).await {
                Err(Error::DirectIoUnsupported { .. }) => {}
                Err(other) => panic!("expected DirectIoUnsupported, got {other}"),
                Ok(_) => panic!("expected DirectIoUnsupported, got a log"),
            }
        } else {
            println!("/dev/shm is not tmpfs here; the tmpfs refusal is not exercised");
        }
        let mut bad = WalOptions::recommended();
        bad.segment_bytes = 12345;
        assert!(matches!(
            Wal::open(&path, 0, bad).await,
            Err(Error::InvalidOptions {
                field: "segment_bytes",
                ..
            })
        ));

        let (wal, _) = Wal::open(&path, 1, small_options(64 * 1024)).await.unwrap();
        wal.close().await.unwrap();
        drop(wal);
        assert!(matches!(
            Wal::open(&path, 2, small_options(64 * 1024)).await,
            Err(Error::Inconsistent { .. })
        ));
    });
}

#[test]
fn dsync_mode_acknowledges_rolls_and_recovers_like_fdatasync_mode() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut options = small_options(64 * 1024);
        options.sync = courier_wal::SyncMode::Dsync;
        let (wal, _) = Wal::open(&path, 0, options.clone()).await.unwrap();
        fill(&wal, 4, 800, 16, 900).await;
        let c = wal.counters();
        assert!(c.segments_rolled >= 5);
        assert_eq!(c.records_durable, 800);
        wal.close().await.unwrap();
        // Reopen in the other mode: the files are the same format.
        let (wal, recovered) = Wal::open(&path, 0, small_options(64 * 1024)).await.unwrap();
        assert_eq!(recovered.next_lsn, Lsn(801));
        assert_eq!(check_all(&wal, 4, Lsn(1), 900).await, 800);
        wal.close().await.unwrap();
        let (wal, _) = Wal::open(&path, 0, options).await.unwrap();
        fill(&wal, 4, 100, 10, 900).await;
        assert_eq!(check_all(&wal, 4, Lsn(1), 900).await, 900);
        wal.close().await.unwrap();
    });
}

#[test]
fn segments_of_any_block_multiple_size_are_fully_preallocated() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        // 1.5 MiB: not a multiple of the 1 MiB zero-fill chunk.
        let mut options = small_options(1536 * 1024);
        options.segment_bytes = 1536 * 1024;
        let (wal, _) = Wal::open(&path, 0, options.clone()).await.unwrap();
        fill(&wal, 6, 10, 10, 100).await;
        wal.close().await.unwrap();
        let file = path.join(courier_wal::format::segment_file_name(1));
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 1536 * 1024);
        let (wal, recovered) = Wal::open(&path, 0, options).await.unwrap();
        assert_eq!(recovered.next_lsn, Lsn(11));
        wal.close().await.unwrap();
    });
}

/// Regression: a task that was woken for room but lost the race to another
/// task must be woken again at the next batch completion.
#[test]
fn room_waiters_that_lose_the_race_are_woken_again() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut options = small_options(1 << 20);
        options.batch_records_max = 4;
        options.queue_records_max = 8;
        let (wal, _) = Wal::open(&path, 0, options).await.unwrap();
        for _ in 0..8 {
            wal.append(1, b"fill").unwrap();
        }
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let wal = wal.clone();
                glommio::spawn_local(async move {
                    for _ in 0..3 {
                        wal.wait_for_room(4, 16).await.unwrap();
                        let mut last = Lsn(0);
                        for _ in 0..4 {
                            last = wal.append(2, b"more").unwrap();
                        }
                        wal.wait_durable(last).await.unwrap();
                    }
                })
            })
            .collect();
        let all = async {
            for t in tasks {
                t.await;
            }
        };
        glommio::timer::timeout(std::time::Duration::from_secs(20), async {
            all.await;
            Ok(())
        })
        .await
        .expect("a room waiter was never woken again");
        assert_eq!(wal.durable_lsn(), Lsn(8 + 3 * 3 * 4));
        wal.close().await.unwrap();
    });
}
