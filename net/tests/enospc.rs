//! A real full disk under a real `courierd`: the data directory is a small
//! loop-mounted ext4 (`mkfs.ext4 -m 0`), filled up while ledger writers
//! send 8 KB messages. Once a shard cannot prepare its next WAL segment:
//! sends to it are refused with `Unavailable` (cause `StorageFailed`, a
//! definite refusal; the detail says "storage failed: … no space left …")
//! and never stored (each refused probe is a ledger `refused`),
//! `/healthz` answers 503 naming the storage failure (on every connection,
//! whichever shard accepts it), reads keep working (history pages and a
//! `Sync` that agrees with them), and the ledger is clean — before a
//! restart, after a restart on the still-full disk, and after space is
//! freed and the node takes writes again; after a clean stop the offline
//! WAL inspector finds no torn or damaged record in any shard's log.
//!
//! Needs root, a free loop device and the right to mount; without them it
//! prints `SKIPPED enospc: <why>` and returns (run with `--nocapture` to
//! see it). A missing `mkfs.ext4` fails the test. The mount is always
//! removed by a drop guard, also when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../wal/tests/common/loop_mount.rs"]
mod loop_mount;

use common::load::{check, fixture, runtime, Load, LoadOptions};
use common::*;
use courier_core::api::*;
use courier_tools::ledger::Ledger;
use loop_mount::{LoopMount, MountError};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Free bytes on the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs fills the struct we pass for a valid C string.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

/// Writes a filler file until at most `leave` bytes are free.
fn fill(path: &Path, leave: u64) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 256 * 1024];
    let mut written = 0u64;
    while free_bytes(path.parent().unwrap()) > leave + chunk.len() as u64 {
        f.write_all(&chunk).unwrap();
        f.sync_data().unwrap();
        written += chunk.len() as u64;
    }
    written
}

/// Every `/healthz` over `tries` fresh connections (they land on every
/// shard): (status, body) pairs.
fn health(server: &Server, tries: usize) -> Vec<(u16, String)> {
    (0..tries).map(|_| server.http_get("/healthz")).collect()
}

#[test]
fn a_full_disk_refuses_sends_keeps_reads_and_loses_nothing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED enospc: needs root to loop-mount a small ext4 (not root)");
        return;
    }
    // Root without loop devices or without the right to mount (e.g. an
    // unprivileged container) cannot run this test either.
    let mount = match LoopMount::new(&test_root(), 48) {
        Ok(mount) => mount,
        Err(MountError::Mkfs(e)) => panic!("mkfs.ext4 (e2fsprogs) is needed by this test: {e}"),
        Err(MountError::Mount(e)) => {
            eprintln!("SKIPPED enospc: cannot loop-mount a small ext4: {e}");
            return;
        }
    };
    let data = mount.path().join("data");
    let flags = [
        "--segment-mib",
        "2",
        "--rate-conn-per-sec",
        "0",
        "--rate-user-per-sec",
        "0",
    ];
    let mut server = Server::start_full(2, &flags, &[], Some(data.clone()));
    let rt = runtime();
    let ledger = Arc::new(Mutex::new(Ledger::new(0xd15c).with_body_bytes(8000)));
    let fx = fixture(&server, ledger.clone(), "full");
    // Each shard holds an active and a prepared 2 MiB segment; leave 1 MiB
    // so the next preparation fails.
    let filler = mount.path().join("filler");
    let filled = fill(&filler, 1024 * 1024);
    eprintln!(
        "enospc: filler of {} MiB, {} KiB left",
        filled >> 20,
        free_bytes(mount.path()) >> 10
    );

    let load = Load::start(
        &rt,
        server.addr,
        &fx,
        LoadOptions {
            pace_ms_max: 0,
            resend_acked_pct: 2,
            retry_deadline: Duration::from_secs(1),
        },
        7,
    );
    // Until a shard's storage fails (a 503 from some connection).
    let started = Instant::now();
    let first_failure = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the disk never filled: {}",
            server.log()
        );
        if let Some(h) = health(&server, 1).into_iter().find(|h| h.0 == 503) {
            break h;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "enospc: first storage failure after {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        first_failure.1.trim()
    );
    // Every connection reports it, whichever shard accepts it.
    let all = health(&server, 24);
    assert!(
        all.iter().all(|h| h.0 == 503),
        "/healthz must be 503 on every connection once a shard's storage failed: {all:?}"
    );
    assert!(
        first_failure.1.contains("storage failed"),
        "{first_failure:?}"
    );
    // Keep writing until every conversation's owner refuses: each send is
    // acknowledged (its shard still has room), refused with `Unavailable`,
    // or — if it was in flight when the shard's log failed — never answered
    // (the client times out; see docs/RELIABILITY.md).
    let (writer, credential, convs) = fx.writers[0].clone();
    let mut refusing = std::collections::BTreeSet::new();
    let (mut probes, mut unanswered) = (0, 0);
    let mut options =
        courier_tools::ConnectOptions::new(format!("ws://{}/", server.addr), credential);
    options.request_timeout = Duration::from_secs(2);
    let (conn, _events) = rt
        .block_on(courier_tools::Connection::connect(&options))
        .unwrap();
    while refusing.len() < convs.len() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not every shard filled up: {refusing:?}"
        );
        for conv in &convs {
            let p = ledger.lock().unwrap().plan(writer, *conv);
            probes += 1;
            let request = Request::Send {
                conversation: p.conversation,
                client_msg_id: p.client_msg_id,
                body: p.body.clone(),
                mentions: vec![],
                broadcast: Broadcast::None,
            };
            // Not under the ledger's lock: the writer tasks take it on the
            // runtime's workers, which the connection needs to answer.
            let result = rt.block_on(conn.request(request));
            let mut l = ledger.lock().unwrap();
            match result {
                Ok(Response::SendAck { seq, .. }) => l.acked(p.key, seq),
                Err(courier_tools::ClientError::Rejected(Reject::Unavailable {
                    cause,
                    detail: why,
                })) => {
                    assert_eq!(cause, UnavailableCause::StorageFailed, "{why}");
                    assert!(
                        why.contains("storage failed") && why.contains("no space left"),
                        "a refusal must say why: {why:?}"
                    );
                    // Refused, never acknowledged: it must not appear.
                    l.refused(p.key);
                    refusing.insert(*conv);
                }
                Err(courier_tools::ClientError::Timeout(_)) => {
                    l.indeterminate(p.key);
                    unanswered += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(conn);
    let (errors, stats) = load.stop(&rt);
    assert!(
        errors.is_empty(),
        "refused other than Unavailable: {errors:?}"
    );
    let (acked, unknown, _) = ledger.lock().unwrap().totals();
    eprintln!(
        "enospc: every shard refuses after {:.1} s; {acked} messages acknowledged, {unknown} unknown ({} writer sends gave up, {probes} probes, {unanswered} never answered)",
        started.elapsed().as_secs_f64(),
        stats.gave_up
    );
    assert!(acked > 50, "only {acked} acks before the disk filled");
    assert!(stats.gave_up > 0, "no writer's send was refused");
    // Reads keep working, and everything acknowledged is there: history
    // (the ledger's full read) and sync (the head of every conversation
    // agrees with the history read, and its newest message is inline).
    let report = check(&rt, server.addr, &[&fx]);
    assert!(report.is_clean(), "before restart: {report}");
    eprintln!("enospc: full disk, before restart: {report}");
    let (observer, observed) = fx.observers[0].clone();
    let mut reader = courier_tools::ConnectOptions::new(format!("ws://{}/", server.addr), observer);
    reader.request_timeout = Duration::from_secs(10);
    let (mut conn, _events) = rt
        .block_on(courier_tools::Connection::connect(&reader))
        .unwrap();
    let cursors = observed.iter().map(|c| (*c, Seq(0))).collect();
    let changed = match rt.block_on(conn.request(Request::Sync {
        cursors,
        reads: vec![],
    })) {
        Ok(Response::Sync { changed, gone }) => {
            assert!(gone.is_empty(), "{gone:?}");
            changed
        }
        other => panic!("sync on a full disk: {other:?}"),
    };
    for conv in &observed {
        let (messages, head) = rt
            .block_on(courier_tools::ledger::read_conversation(&mut conn, *conv))
            .unwrap();
        let synced = changed
            .iter()
            .find(|s| s.info.id == *conv)
            .unwrap_or_else(|| panic!("sync left out conversation {}", conv.0));
        assert_eq!(synced.info.head, head, "conversation {}", conv.0);
        assert_eq!(
            synced.messages.last().map(|m| (m.seq, &m.body)),
            messages.last().map(|m| (m.seq, &m.body)),
            "conversation {}",
            conv.0
        );
    }
    drop(conn);

    // Stop (the storage failure makes the exit code 1), restart on the
    // still-full disk: nothing partial, nothing lost.
    let code = server.terminate();
    eprintln!("enospc: SIGTERM on a full disk exited with {code:?}");
    assert!(matches!(code, Some(0 | 1)), "{code:?}");
    server.restart();
    let report = check(&rt, server.addr, &[&fx]);
    assert!(
        report.is_clean(),
        "after restart on the full disk: {report}"
    );

    // Free space: the node takes writes again.
    std::fs::remove_file(&filler).unwrap();
    server.kill9();
    server.restart();
    let all = health(&server, 8);
    assert!(all.iter().all(|h| h.0 == 200), "{all:?}");
    let load = Load::start(&rt, server.addr, &fx, LoadOptions::default(), 8);
    std::thread::sleep(Duration::from_millis(500));
    let (errors, _) = load.stop(&rt);
    assert!(errors.is_empty(), "{errors:?}");
    let report = check(&rt, server.addr, &[&fx]);
    assert!(report.is_clean(), "after freeing space: {report}");
    let (after, _, _) = ledger.lock().unwrap().totals();
    assert!(after > acked, "no acks after space was freed");
    // Nothing partial on disk: after a clean stop every shard's log reads
    // back without a torn tail or damage (the offline inspector).
    assert_eq!(server.terminate(), Some(0), "{}", server.log());
    for shard in 0..server.shards {
        let dir = data.join(format!("shard-{shard}"));
        let report = courier_tools::walinspect::inspect_log(&dir, &mut |_| {}).unwrap();
        assert!(
            report.problems.is_empty(),
            "shard {shard}'s log after a clean stop: {:?}",
            report.problems
        );
    }
    drop(server);
    drop(mount);
}
