//! A real full disk: a small loop-mounted ext4 (`mkfs.ext4 -m 0`). Appends must
//! fail cleanly with a typed error, nothing acknowledged may be lost, and the
//! log must reopen. Needs root (loop devices, mount); skipped with a printed
//! reason otherwise. The mount is always cleaned up by a drop guard.
#![allow(clippy::unwrap_used)]

mod common;

#[path = "common/loop_mount.rs"]
mod loop_mount;

use common::{base_dir, check_all, kind, payload, run};
use courier_wal::{Error, Lsn, Wal, WalOptions};
use loop_mount::LoopMount;

const SEED: u64 = 31;
const MAX_LEN: u64 = 3000;

#[test]
fn a_full_disk_fails_appends_cleanly_and_loses_nothing_acknowledged() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: the ENOSPC test needs root for a loop-mounted ext4");
        return;
    }
    let mount = LoopMount::new(&base_dir(), 24)
        .unwrap_or_else(|e| panic!("cannot set up the loop-mounted ext4 as root: {e}"));
    let path = mount.path().join("wal");
    let mut options = WalOptions::small_for_tests(1024 * 1024);
    options.record_bytes_max = 16 * 1024;
    run(move || async move {
        let (wal, _) = Wal::open(&path, 0, options.clone()).await.unwrap();
        // Several concurrent appenders until the disk is full.
        let acked = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let errors = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (wal, acked, errors) = (wal.clone(), acked.clone(), errors.clone());
                glommio::spawn_local(async move {
                    loop {
                        let next = wal.next_lsn().0;
                        let lsn = match wal.append(kind(next), &payload(SEED, next, MAX_LEN)) {
                            Ok(lsn) => lsn,
                            Err(Error::Backpressure { .. }) => {
                                // A failure shows up on the next append.
                                let _ = wal.wait_for_room(1, MAX_LEN).await;
                                continue;
                            }
                            Err(e) => {
                                errors.borrow_mut().push(e);
                                return;
                            }
                        };
                        match wal.wait_durable(lsn).await {
                            Ok(()) => acked.borrow_mut().push(lsn.0),
                            Err(e) => {
                                errors.borrow_mut().push(e);
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let errors = errors.take();
        assert_eq!(errors.len(), 8);
        for e in errors.iter() {
            assert!(
                e.is_no_space() || matches!(e, Error::Failed { .. }),
                "unexpected error {e}"
            );
        }
        assert!(
            errors.iter().any(|e| e.is_no_space()),
            "no NoSpace among {errors:?}"
        );
        let max_acked = acked.borrow().iter().copied().max().unwrap();
        assert!(max_acked > 1000, "the disk held only {max_acked} records");
        assert_eq!(wal.durable_lsn(), Lsn(max_acked));
        println!(
            "disk full after {max_acked} acknowledged records ({} segments)",
            wal.counters().segments_rolled + 1
        );
        assert!(wal.close().await.is_err());
        drop(wal);

        // Reopen on the still-full disk: every acknowledged record is there.
        let (wal, recovered) = Wal::open(&path, 0, options.clone()).await.unwrap();
        assert!(recovered.next_lsn.0 > max_acked);
        assert!(check_all(&wal, SEED, Lsn(1), MAX_LEN).await >= max_acked);
        // Appending fails cleanly again once the segment is full, never panics.
        let mut last_error = None;
        for _ in 0..10_000 {
            let next = wal.next_lsn().0;
            match wal.append(kind(next), &payload(SEED, next, MAX_LEN)) {
                Ok(lsn) => {
                    if let Err(e) = wal.wait_durable(lsn).await {
                        last_error = Some(e);
                        break;
                    }
                }
                Err(e) => {
                    last_error = Some(e);
                    break;
                }
            }
        }
        let e = last_error.expect("the disk is still full");
        assert!(e.is_no_space(), "{e}");
        let durable = wal.durable_lsn();
        drop(wal);
        let (wal, _) = Wal::open(&path, 0, options).await.unwrap();
        assert!(check_all(&wal, SEED, Lsn(1), MAX_LEN).await >= durable.0);
        wal.close()
            .await
            .unwrap_or_else(|e| panic!("close after reopen: {e}"));
    });
    drop(mount);
}
