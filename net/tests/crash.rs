//! Crash-restart of a real `courierd` under multi-writer load, checked by
//! the ledger (`courier_tools::ledger`): four writers send unique messages
//! to a public and a private channel, a DM and a group DM (retrying unknown
//! outcomes with the same `client_msg_id`, and re-sending some acknowledged
//! messages), observers record every live delivery, and the daemon is
//! killed with SIGKILL at random moments (one cycle in ten it is stopped
//! with SIGTERM instead, which writes snapshots that later recoveries
//! start from). After every restart every conversation is read from seq 1
//! and the ledger must be clean: no acknowledged message missing or moved,
//! no duplicate, nothing unexpected, no gap or reorder, nothing seen live
//! missing.
//!
//! `COURIER_CRASH_CYCLES=N` (default 50) and `COURIER_CRASH_SEED=S` choose
//! the run; the seed is printed, and a failure names seed and cycle. Every
//! restart's start time (spawn to ready line) is recorded and the maximum
//! and p99 are printed at the end; a start fails the test only past the
//! test kit's ready timeout (which then reports every thread's stack). Long
//! runs start a fresh set of users and conversations every 25 cycles and
//! read the older sets every 10th cycle and at the end (reading every
//! message after every restart would grow without bound).
//!
//! With `--features failpoints` the daemon also crashes *itself* at named
//! points (before a batch write, between write and fsync, after fsync
//! before the core hears of it, during a segment roll, during a snapshot),
//! and two broken-on-purpose modes (ack before fsync, no dedup) prove the
//! checker catches real loss and duplication (see docs/RELIABILITY.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::load::{check, env_u64, fixture, runtime, Fixture, Load, LoadOptions, Rng};
use common::Server;
use courier_tools::ledger::Ledger;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Flags every crash test runs the daemon with: rate limits off (writers
/// send as fast as fsyncs allow).
const FLAGS: &[&str] = &[
    "--rate-conn-per-sec",
    "0",
    "--rate-user-per-sec",
    "0",
    "--rate-workspace-per-sec",
    "0",
];

/// Cycles of one set of users and conversations in long runs.
const EPOCH_CYCLES: u64 = 25;

#[test]
fn kill_9_at_random_moments_under_load_loses_nothing_acknowledged() {
    let seed = env_u64("COURIER_CRASH_SEED", 0x5eed_c0de);
    let cycles = env_u64("COURIER_CRASH_CYCLES", 50);
    eprintln!(
        "crash test: seed {seed} (COURIER_CRASH_SEED), {cycles} cycles (COURIER_CRASH_CYCLES)"
    );
    let started = Instant::now();
    let mut server = Server::start_with(2, FLAGS);
    let rt = runtime();
    let ledger = Arc::new(Mutex::new(Ledger::new(seed)));
    let mut fixtures = vec![fixture(&server, ledger.clone(), "epoch0")];
    let mut rng = Rng::new(seed);
    let (mut kills, mut stops) = (0u64, 0u64);
    let mut load_stats = common::load::LoadStats::default();
    // Unknown outcomes found stored / not stored, summed over the checks.
    let (mut unknown_stored, mut unknown_absent) = (0u64, 0u64);
    let mut last = None;
    // Spawn-to-ready time of every restart.
    let mut starts: Vec<Duration> = Vec::with_capacity(cycles as usize);
    for cycle in 0..cycles {
        if cycle > 0 && cycle % EPOCH_CYCLES == 0 {
            let name = format!("epoch{}", cycle / EPOCH_CYCLES);
            fixtures.push(fixture(&server, ledger.clone(), &name));
        }
        let fx = fixtures.last().unwrap().clone();
        // One cycle in three, sends give up quickly (unknown outcomes,
        // retried with the same id in the next cycle); otherwise they keep
        // retrying over the restart.
        let options = LoadOptions {
            retry_deadline: Duration::from_millis(if rng.below(3) == 0 { 150 } else { 3000 }),
            ..LoadOptions::default()
        };
        let load = Load::start(&rt, server.addr, &fx, options, seed ^ cycle);
        // Crash at a random moment: right after the restart, mid-load…
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        if rng.below(10) == 0 {
            assert_eq!(
                server.terminate(),
                Some(0),
                "SIGTERM must drain and exit 0 (seed {seed} cycle {cycle})"
            );
            stops += 1;
        } else {
            server.kill9();
            kills += 1;
        }
        // …while clients keep retrying against a dead port, then restart.
        std::thread::sleep(Duration::from_millis(rng.below(100)));
        server.restart();
        starts.push(server.last_start());
        std::thread::sleep(Duration::from_millis(rng.below(200)));
        let (errors, stats) = load.stop(&rt);
        assert!(
            errors.is_empty(),
            "seed {seed} cycle {cycle}: members' sends refused: {errors:?}"
        );
        load_stats.sends += stats.sends;
        load_stats.retried_over_reconnect += stats.retried_over_reconnect;
        load_stats.gave_up += stats.gave_up;
        let all = cycle % 10 == 9 || cycle + 1 == cycles;
        let read: Vec<&Fixture> = if all {
            fixtures.iter().collect()
        } else {
            vec![fixtures.last().unwrap()]
        };
        let report = check(&rt, server.addr, &read);
        assert!(
            report.is_clean(),
            "seed {seed} (COURIER_CRASH_SEED) cycle {cycle}: {report}"
        );
        unknown_stored += report.indeterminate_present;
        unknown_absent += report.indeterminate_absent;
        last = Some(report);
    }
    let (acked, unknown, refused) = ledger.lock().unwrap().totals();
    starts.sort();
    let start_max = starts.last().copied().unwrap_or_default();
    let start_p99 = percentile(&starts, 99);
    eprintln!(
        "crash test: {} restarts: start (spawn to ready line) max {:.3} s, p99 {:.3} s, median {:.3} s",
        starts.len(),
        start_max.as_secs_f64(),
        start_p99.as_secs_f64(),
        percentile(&starts, 50).as_secs_f64()
    );
    eprintln!(
        "crash test: {cycles} cycles ({kills} kill -9, {stops} SIGTERM) in {:.1} s; seed {seed}; \
         {acked} messages acknowledged, {unknown} with unknown outcome, {refused} refused; \
         {} sends, {} retried over a reconnect, {} gave up (retried next cycle); \
         unknown outcomes at checks: {unknown_stored} stored, {unknown_absent} not stored; last check: {}",
        started.elapsed().as_secs_f64(),
        load_stats.sends,
        load_stats.retried_over_reconnect,
        load_stats.gave_up,
        last.map(|r| r.to_string()).unwrap_or_default()
    );
    assert!(
        cycles == 0 || acked > cycles,
        "the load hardly ran: {acked} acks"
    );
}

/// The `pct`-th percentile (nearest rank) of sorted durations; zero if empty.
fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(feature = "failpoints")]
mod failpoints {
    //! The daemon crashes itself at named points; the broken modes must be
    //! caught. Run: `cargo test -p courier-net --release --features failpoints --test crash`.
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// Runs load against a daemon started with `COURIER_FAILPOINT=spec`
    /// until it aborts by itself (at most 60 s), restarts it without the
    /// failpoint, reads everything and returns the ledger's report.
    fn crash_at(spec: &str, extra: &[&str], body_bytes: usize, seed: u64) -> String {
        let mut flags = FLAGS.to_vec();
        flags.extend_from_slice(extra);
        let mut server = Server::start_full(2, &flags, &[("COURIER_FAILPOINT", spec)], None);
        let rt = runtime();
        let ledger = Arc::new(Mutex::new(Ledger::new(seed).with_body_bytes(body_bytes)));
        let fx = fixture(&server, ledger.clone(), "fp");
        let options = LoadOptions {
            pace_ms_max: 0,
            ..LoadOptions::default()
        };
        let load = Load::start(&rt, server.addr, &fx, options, seed);
        let status = server
            .wait_exit(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{spec}: the daemon did not reach its failpoint in 60 s"));
        assert_eq!(status.signal(), Some(libc::SIGABRT), "{spec}: {status}");
        assert!(
            server.log().contains("failpoint: aborting"),
            "{spec}: no failpoint line in the log"
        );
        server.env.clear();
        server.restart();
        let (errors, _) = load.stop(&rt);
        assert!(errors.is_empty(), "{spec}: {errors:?}");
        let report = check(&rt, server.addr, &[&fx]);
        if spec.starts_with("snapshot_every:200") {
            assert!(
                server.log().contains("log truncated behind the snapshot"),
                "{spec}: no snapshot truncated the log"
            );
        }
        let (acked, unknown, _) = ledger.lock().unwrap().totals();
        eprintln!("failpoint {spec}: {acked} acked, {unknown} unknown; {report}");
        assert!(
            acked > 0,
            "{spec}: nothing was acknowledged before the crash"
        );
        if report.is_clean() {
            String::new()
        } else {
            report.to_string()
        }
    }

    #[test]
    fn crashes_inside_the_server_lose_nothing_acknowledged() {
        let seed = env_u64("COURIER_CRASH_SEED", 0xfa11);
        // (failpoint, extra flags, body bytes)
        let points: &[(&str, &[&str], usize)] = &[
            // Counts start when the daemon serves; the fixture's setup takes
            // a few dozen batches, the load the rest.
            ("wal_write:300", &[], 0),
            ("wal_sync:300", &[], 0),
            ("after_fsync:300", &[], 0),
            // 2 MiB segments and 2 KB bodies: a roll every ~900 messages per shard.
            ("wal_dirsync:0", &["--segment-mib", "2"], 2000),
            ("wal_dirsync:2", &["--segment-mib", "2"], 2000),
            ("snapshot_every:300,snapshot_write:0", &[], 0),
            ("snapshot_every:300,snapshot_sync:1", &[], 0),
            // Several snapshots written, then a crash: recovery starts from
            // the newest snapshot and replays the log after it.
            ("snapshot_every:100,after_fsync:600", &[], 0),
            // 2 MiB segments, 2 KB bodies and a snapshot every 200 records:
            // snapshots truncate the log behind them (old history then
            // lives only in the history store), then a crash; every
            // conversation is read from seq 1 after the restart.
            (
                "snapshot_every:200,after_fsync:1500",
                &["--segment-mib", "2"],
                2000,
            ),
        ];
        for (i, (spec, extra, body)) in points.iter().enumerate() {
            let failed = crash_at(spec, extra, *body, seed ^ i as u64);
            assert!(failed.is_empty(), "seed {seed} failpoint {spec}: {failed}");
        }
    }

    #[test]
    fn a_server_that_acks_before_fsync_is_caught() {
        // Broken on purpose: acks go out up to 100 ms before the record
        // reaches the WAL; the crash (a later batch write) loses them.
        let failed = crash_at("ack_before_fsync,wal_write:60", &[], 0, 0xbad1);
        assert!(
            failed.contains("acknowledged") && failed.contains("missing"),
            "the ledger did not catch lost acks: {failed:?}"
        );
    }

    #[test]
    fn a_server_that_skips_dedup_is_caught() {
        // Broken on purpose: every send gets a fresh id, so the writers'
        // re-sends of acknowledged messages are stored again.
        let mut server = Server::start_full(2, FLAGS, &[("COURIER_FAILPOINT", "skip_dedup")], None);
        let rt = runtime();
        let ledger = Arc::new(Mutex::new(Ledger::new(0xbad2)));
        let fx = fixture(&server, ledger.clone(), "fp");
        let options = LoadOptions {
            resend_acked_pct: 20,
            ..LoadOptions::default()
        };
        let load = Load::start(&rt, server.addr, &fx, options, 1);
        std::thread::sleep(Duration::from_millis(500));
        server.kill9();
        server.env.clear();
        server.restart();
        let (errors, _) = load.stop(&rt);
        assert!(errors.is_empty(), "{errors:?}");
        let report = check(&rt, server.addr, &[&fx]);
        assert!(
            report.has(|v| matches!(
                v,
                courier_tools::ledger::Violation::Duplicate { .. }
                    | courier_tools::ledger::Violation::AckChanged { .. }
            )),
            "the ledger did not catch duplicates: {report}"
        );
    }
}
