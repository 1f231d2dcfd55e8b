//! Crash test with a real `kill -9`.
//!
//! The test binary re-runs itself as a child (`COURIER_WAL_CRASH_CHILD=<dir>`)
//! that appends from many concurrent tasks, writes snapshots and deletes old
//! segments, and reports on stdout every record it saw become durable
//! (`R <lsn> <kind> <len> <crc32c>`) and every snapshot written (`S <lsn>`).
//! The parent kills it with SIGKILL at a random moment (also during its
//! recovery), reopens the log and checks that every reported-durable record
//! not covered by the snapshot is present, intact, in order, exactly once,
//! and that every record present is well-formed and appears once.
//!
//! `COURIER_WAL_CRASH_CYCLES=N` (default 20) sets the number of kills,
//! `COURIER_WAL_CRASH_SEED=S` the seed (printed, for reproduction of the
//! kill schedule; the interleaving itself is the machine's).
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, BufReader, Write},
    ops::ControlFlow,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{run, temp_dir, Rng};
use courier_wal::{Error, Lsn, Wal, WalOptions};

const CHILD_ENV: &str = "COURIER_WAL_CRASH_CHILD";
const INCARNATION_ENV: &str = "COURIER_WAL_CRASH_INCARNATION";
const APPENDERS: u64 = 32;

fn options() -> WalOptions {
    let mut options = WalOptions::small_for_tests(256 * 1024);
    options.batch_records_max = 64;
    options
}

/// Payload: incarnation (u32), task (u32), sequence (u64), body, crc32c of all
/// that (u32). Self-checking, and unique per (incarnation, task, sequence).
fn make_payload(rng: &mut Rng, incarnation: u32, task: u32, seq: u64) -> Vec<u8> {
    let body_len = rng.below(1500) as usize;
    let mut p = Vec::with_capacity(20 + body_len);
    p.extend_from_slice(&incarnation.to_le_bytes());
    p.extend_from_slice(&task.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    for _ in 0..body_len {
        p.push(rng.next_u64() as u8);
    }
    let crc = crc32c::crc32c(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

/// Identity of a well-formed payload, or `None` if it does not check out.
fn identity(p: &[u8]) -> Option<(u32, u32, u64)> {
    if p.len() < 20 {
        return None;
    }
    let (body, crc) = p.split_at(p.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return None;
    }
    Some((
        u32::from_le_bytes(body[0..4].try_into().ok()?),
        u32::from_le_bytes(body[4..8].try_into().ok()?),
        u64::from_le_bytes(body[8..16].try_into().ok()?),
    ))
}

fn snapshot_bytes(lsn: u64, record_crc: u32) -> Vec<u8> {
    format!("snapshot lsn={lsn} record-crc={record_crc:08x}").into_bytes()
}

fn report(line: String) {
    // One write per line; stdout is a pipe to the parent.
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).unwrap();
    out.flush().unwrap();
}

fn child(dir: PathBuf) {
    let incarnation: u32 = std::env::var(INCARNATION_ENV).unwrap().parse().unwrap();
    run(move || async move {
        let (wal, recovered) = Wal::open(&dir, 0, options()).await.unwrap();
        report(format!("READY {}\n", recovered.next_lsn));
        let mut tasks = Vec::new();
        for task in 0..APPENDERS as u32 {
            let wal = wal.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut rng = Rng::new(u64::from(incarnation) << 32 | u64::from(task));
                for seq in 0.. {
                    let payload = make_payload(&mut rng, incarnation, task, seq);
                    let kind = (task % 256) as u8;
                    let lsn = loop {
                        match wal.append(kind, &payload) {
                            Ok(lsn) => break lsn,
                            Err(Error::Backpressure { .. }) => {
                                wal.wait_for_room(1, payload.len() as u64).await.unwrap()
                            }
                            Err(e) => panic!("append: {e}"),
                        }
                    };
                    wal.wait_durable(lsn).await.unwrap();
                    report(format!(
                        "R {} {kind} {} {:08x}\n",
                        lsn,
                        payload.len(),
                        crc32c::crc32c(&payload)
                    ));
                }
            }));
        }
        // Snapshots and retention, concurrently with the appenders.
        let snapshotter = wal.clone();
        tasks.push(glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(15)).await;
                let lsn = snapshotter.durable_lsn();
                if lsn.0 == 0 {
                    continue;
                }
                let (_, payload) = snapshotter.read(lsn).await.unwrap();
                let bytes = snapshot_bytes(lsn.0, crc32c::crc32c(&payload));
                match snapshotter.write_snapshot(lsn, &bytes).await {
                    Ok(()) => report(format!("S {lsn}\n")),
                    Err(Error::SnapshotRejected { .. }) => continue,
                    Err(e) => panic!("snapshot: {e}"),
                }
                snapshotter.delete_segments_before(lsn).await.unwrap();
            }
        }));
        for t in tasks {
            t.await;
        }
    });
}

/// What children reported as durable: lsn -> (kind, len, crc).
#[derive(Default)]
struct Model {
    acked: BTreeMap<u64, (u8, usize, u32)>,
    snapshot_acked: u64,
    /// Every record ever seen in a verification: identity -> lsn.
    identities: HashMap<(u32, u32, u64), u64>,
}

struct CycleStats {
    /// Acknowledged records found in the log and compared with what was acknowledged.
    compared: u64,
    /// Acknowledged records no longer in the log, covered by the snapshot.
    covered: u64,
    present: u64,
    truncated: bool,
}

/// Reopen the log in a fresh executor and check it against the model.
fn verify(dir: &Path, model: Model) -> (Model, CycleStats) {
    let dir = dir.to_path_buf();
    run(move || async move { verify_async(&dir, model).await })
}

fn parent() {
    let cycles: u64 = std::env::var("COURIER_WAL_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("COURIER_WAL_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0xC0FFEE);
    println!("crash test: {cycles} cycles, seed {seed} (COURIER_WAL_CRASH_SEED)");
    let started = Instant::now();
    let data = temp_dir();
    let dir = data.path().join("shard-0");
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let (mut reports, mut compared, mut truncations, mut snapshots) = (0u64, 0u64, 0u64, 0u64);
    let mut last_present = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, &dir)
            .env(INCARNATION_ENV, cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    // A line cut by the kill has no newline: not a report.
                    Ok(_) if line.ends_with('\n') => {
                        if tx.send(line.clone()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => break,
                }
            }
        });
        // Kill anywhere from during recovery to well into the run.
        let delay = Duration::from_millis(rng.below(350));
        std::thread::sleep(delay);
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child exited by itself with {status} in cycle {cycle}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let mut cycle_reports = 0;
        for line in rx.try_iter() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["R", lsn, kind, len, crc] => {
                    let entry = (
                        kind.parse().unwrap(),
                        len.parse().unwrap(),
                        u32::from_str_radix(crc, 16).unwrap(),
                    );
                    let lsn: u64 = lsn.parse().unwrap();
                    if let Some(previous) = model.acked.insert(lsn, entry) {
                        assert_eq!(
                            previous, entry,
                            "lsn {lsn} acknowledged twice with different contents"
                        );
                    }
                    cycle_reports += 1;
                }
                ["S", lsn] => {
                    model.snapshot_acked = model.snapshot_acked.max(lsn.parse().unwrap());
                    snapshots += 1;
                }
                ["READY", _] => {}
                other => panic!("unexpected child output {other:?}"),
            }
        }
        reports += cycle_reports;
        let (back, stats) = verify(&dir, std::mem::take(&mut model));
        model = back;
        compared += stats.compared;
        truncations += u64::from(stats.truncated);
        last_present = stats.present;
        println!(
            "cycle {cycle:2}: killed after {:3} ms, {cycle_reports:5} new acks; {:5} acked records compared, {:6} covered by the snapshot; {:5} records retained{}",
            delay.as_millis(),
            stats.compared,
            stats.covered,
            stats.present,
            if stats.truncated { ", torn tail truncated" } else { "" }
        );
    }
    assert!(reports > 0, "no record was ever acknowledged");
    println!(
        "crash test passed: {cycles} kill -9 cycles, {reports} records acknowledged, {compared} acknowledged-record \
         comparisons after reopens, {snapshots} snapshots, {truncations} torn tails truncated, {last_present} records \
         retained at the end, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn verify_async(dir: &Path, mut model: Model) -> (Model, CycleStats) {
    let (wal, recovered) = Wal::open(dir, 0, options())
        .await
        .unwrap_or_else(|e| panic!("reopen failed: {e}"));
    let first = recovered.first_lsn.0;
    let next = recovered.next_lsn.0;
    let covered = recovered.snapshot.as_ref().map_or(0, |s| s.lsn.0);
    assert!(
        covered >= model.snapshot_acked,
        "acknowledged snapshot {} lost (have {covered})",
        model.snapshot_acked
    );
    if let Some(snapshot) = &recovered.snapshot {
        if snapshot.lsn.0 >= first {
            let (_, payload) = wal.read(snapshot.lsn).await.unwrap();
            assert_eq!(
                snapshot.bytes,
                snapshot_bytes(snapshot.lsn.0, crc32c::crc32c(&payload))
            );
        }
    }
    let mut present = 0u64;
    let mut expected = first;
    let mut failure = None;
    wal.replay(Lsn(first), |r| {
        let problem = if r.lsn.0 != expected {
            Some(format!("lsn {} out of order (expected {expected})", r.lsn))
        } else if let Some(id) = identity(r.payload) {
            match model.identities.insert(id, r.lsn.0) {
                Some(other) if other != r.lsn.0 => {
                    Some(format!("record {id:?} at both lsn {other} and {}", r.lsn))
                }
                _ => match model.acked.get(&r.lsn.0) {
                    Some(&(kind, len, crc))
                        if (kind, len, crc)
                            != (r.kind, r.payload.len(), crc32c::crc32c(r.payload)) =>
                    {
                        Some(format!("lsn {} differs from what was acknowledged", r.lsn))
                    }
                    _ => None,
                },
            }
        } else {
            Some(format!("lsn {} has a malformed payload", r.lsn))
        };
        if let Some(p) = problem {
            failure = Some(p);
            return ControlFlow::Break(());
        }
        expected += 1;
        present += 1;
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    if let Some(f) = failure {
        panic!("{f}");
    }
    assert_eq!(expected, next, "replay ended early");
    let (mut compared, mut covered_acks) = (0, 0);
    for &lsn in model.acked.keys() {
        assert!(
            lsn < next,
            "acknowledged lsn {lsn} lost: the log ends at {}",
            next - 1
        );
        if lsn >= first {
            compared += 1; // compared byte-wise during the replay above
        } else {
            assert!(
                lsn <= covered,
                "acknowledged lsn {lsn} deleted without a snapshot covering it"
            );
            covered_acks += 1;
        }
    }
    wal.close().await.unwrap();
    (
        model,
        CycleStats {
            compared,
            covered: covered_acks,
            present,
            truncated: recovered.truncated_tail.is_some(),
        },
    )
}

const TEST_NAME: &str = "crash_kill9_acknowledged_records_survive";

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return child(PathBuf::from(dir));
    }
    // Behave like a libtest binary for `--list` and name filters.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| TEST_NAME.contains(f.as_str())) {
        println!("test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out");
        return;
    }
    println!("test {TEST_NAME} ...");
    parent();
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}
