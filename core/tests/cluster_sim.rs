//! Seeded simulation of replicated shards: three nodes, each running one
//! or two cores as courierd does (core *s* of every node is Raft group
//! *s*; group 0's leader is the primary), each core a courier-core shard
//! with the sans-IO replica courierd drives
//! (`courier_raft::replica`), a raft WAL and a state WAL on simulated
//! disks with power loss, a network that loses, duplicates, delays and
//! reorders messages, partitions that cut a node off, node crashes and
//! restarts, failed fsyncs; the single-node simulation's clients (random
//! sends with retries, joins, leaves, history, syncs, boots, reconnects)
//! talk to whichever node serves. See `support/cluster.rs` for the model
//! and docs/CLUSTER.md for what it does not model.
//!
//! Checked as it runs by the single-node simulation's checker: acks and
//! deliveries only for committed records, no seq reused, no gap, no
//! duplicate client_msg_id, a retried send gets the first ack, every read
//! is a committed record seen by a member; plus, for the cluster: every
//! node's state WAL holds the committed log byte for byte (no divergence),
//! every node that starts serving holds every acknowledged message, a
//! replica never reports a divergence. At the end, after healing and
//! settling: nothing acknowledged lost, every observer holds identical,
//! gap-free seqs, every node caught up with the committed log.
//!
//! Seeds. Without variables a run explores [`SEEDS_DEFAULT`] seeds from a
//! base taken from the commit under test (the first 48 bits of
//! `git rev-parse HEAD`; 0 without git), as `tests/sim.rs` does: every
//! commit explores new schedules, a rerun of a commit repeats it.
//! `COURIER_CLUSTER_SIM_SEEDS=N` runs N seeds, `COURIER_CLUSTER_SIM_BASE=B`
//! starts at B, `COURIER_CLUSTER_SIM_SEED=S` runs seed S alone (a failure
//! prints the smallest failing seed of the range and this command);
//! `COURIER_CLUSTER_SIM_THREADS=T` sets the worker threads (default:
//! available parallelism, at most 8). A seed is a pure function of its
//! number: threads change only the wall time.

mod support;

use std::io::Write;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use support::{ClusterStats, Rng, World};

/// Seeds a run explores without `COURIER_CLUSTER_SIM_SEEDS` (≈ 15 s here,
/// two threads).
const SEEDS_DEFAULT: u64 = 300;
/// Hex digits of the commit id that make the default base.
const BASE_HEX_DIGITS: usize = 12;
/// Steps of random activity per seed: a chaotic profile (a chaos event
/// every ~250 steps) and a long one (every ~1,000 steps, long offline
/// clients, logs that compact and fetch many times).
const CHAOTIC_STEPS: u64 = 6_000;
const LONG_STEPS: u64 = 20_000;
/// Upper bound of the default worker count.
const THREADS_MAX: usize = 8;
/// What reruns one seed.
const RERUN: &str = "cargo test -p courier-core --release --test cluster_sim";

struct Outcome {
    cluster: ClusterStats,
    acks: u64,
    messages: u64,
    live: u64,
}

fn run_seed(seed: u64) -> Outcome {
    let mut rng = Rng::new(seed ^ 0xc105_7e12);
    let shards = 1 + rng.below(2) as u16;
    let mut w = World::new_cluster(seed, shards);
    w.storage_faults = true;
    let long = rng.chance(1, 3);
    w.chaos_per_mille = if long { 1 } else { 4 };
    if long {
        w.long_offline_pct = 30;
    }
    let admin = w.admin(0);
    let mut clients = Vec::new();
    let ws = w.create_workspace(admin, "acme");
    let users = 2 + rng.below(3);
    let mut first = None;
    for u in 0..users {
        let (user, credential) = w.create_user(admin, ws, &format!("u{u}"));
        for _ in 0..1 + rng.below(2) {
            let s = rng.below(u64::from(shards)) as u16;
            let c = w.user_client(user, ws, credential.clone(), s, false);
            first.get_or_insert(c);
            clients.push(c);
        }
    }
    let creator = first.expect("a client");
    for ch in 0..1 + rng.below(2) {
        w.create_channel(creator, &format!("c{ch}"), rng.chance(1, 3));
    }
    w.chaos_then_check(&clients, if long { LONG_STEPS } else { CHAOTIC_STEPS });
    w.check_cluster_final();
    Outcome {
        cluster: w.cluster.as_ref().map(|c| c.stats).unwrap_or_default(),
        acks: w.model.acks,
        messages: w.model.durable_keys.len() as u64,
        live: w.model.live_events,
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
    )
}

fn plan() -> Range<u64> {
    if let Some(seed) = env_u64("COURIER_CLUSTER_SIM_SEED") {
        return seed..seed + 1;
    }
    let n = env_u64("COURIER_CLUSTER_SIM_SEEDS").unwrap_or(SEEDS_DEFAULT);
    let base = env_u64("COURIER_CLUSTER_SIM_BASE").unwrap_or_else(commit_base);
    base..base.checked_add(n).expect("base + seeds overflows")
}

/// The default base: the commit under test, or 0 without git.
fn commit_base() -> u64 {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|h| {
            h.get(..BASE_HEX_DIGITS)
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        })
        .unwrap_or(0)
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    cluster: ClusterStats,
    acks: u64,
    messages: u64,
    live: u64,
}

type Failure = Mutex<Option<(u64, Box<dyn std::any::Any + Send>)>>;

/// Runs seeds in increasing order until the range ends or a smaller seed
/// failed (the failure reported is the smallest failing seed).
fn worker(range: &Range<u64>, next: &AtomicU64, stop_at: &AtomicU64, failure: &Failure) -> Totals {
    let mut t = Totals::default();
    loop {
        let seed = next.fetch_add(1, Ordering::SeqCst);
        if seed >= range.end || seed >= stop_at.load(Ordering::SeqCst) {
            return t;
        }
        match catch_unwind(AssertUnwindSafe(|| run_seed(seed))) {
            Ok(o) => {
                t.seeds += 1;
                t.cluster.add(&o.cluster);
                t.acks += o.acks;
                t.messages += o.messages;
                t.live += o.live;
            }
            Err(payload) => {
                eprintln!(
                    "cluster simulation failed at seed {seed}: rerun with COURIER_CLUSTER_SIM_SEED={seed} {RERUN}"
                );
                stop_at.fetch_min(seed, Ordering::SeqCst);
                let mut first = failure.lock().unwrap_or_else(|e| e.into_inner());
                if first.as_ref().is_none_or(|(s, _)| seed < *s) {
                    *first = Some((seed, payload));
                }
                return t;
            }
        }
    }
}

#[test]
fn cluster_simulation() {
    let range = plan();
    let threads = env_u64("COURIER_CLUSTER_SIM_THREADS").map_or_else(
        || {
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(THREADS_MAX)
        },
        |t| usize::try_from(t.max(1)).unwrap_or(1),
    );
    let _ = writeln!(
        std::io::stderr(),
        "cluster simulation: seeds {}..{}; threads {threads}; this run again: \
         COURIER_CLUSTER_SIM_BASE={} COURIER_CLUSTER_SIM_SEEDS={} {RERUN}",
        range.start,
        range.end,
        range.start,
        range.end - range.start
    );
    let started = Instant::now();
    let next = AtomicU64::new(range.start);
    let stop_at = AtomicU64::new(u64::MAX);
    let failure: Failure = Mutex::new(None);
    let mut total = Totals::default();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| worker(&range, &next, &stop_at, &failure)))
            .collect();
        for h in workers {
            match h.join() {
                Ok(t) => {
                    total.seeds += t.seeds;
                    total.cluster.add(&t.cluster);
                    total.acks += t.acks;
                    total.messages += t.messages;
                    total.live += t.live;
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    });
    if let Some((seed, payload)) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        eprintln!(
            "cluster simulation failed: seed {seed} is the smallest failing seed of {}..{}; \
             rerun it alone with COURIER_CLUSTER_SIM_SEED={seed} {RERUN}",
            range.start, range.end
        );
        std::panic::resume_unwind(payload);
    }
    let c = &total.cluster;
    let _ = writeln!(
        std::io::stderr(),
        "cluster simulation: {} seeds in {:.1?}: {} records committed, {} messages, {} acks, {} live events; \
         {} packets ({} dropped, {} duplicated), {} partitions, {} crashes, {} demotions, {} promotions, \
         {} compactions, {} fetches, {} WAL reads cut short; {} of {} ticks without a serving node, \
         longest outage {} ticks; 0 violations",
        total.seeds,
        started.elapsed(),
        c.committed,
        total.messages,
        total.acks,
        total.live,
        c.packets,
        c.dropped,
        c.duplicated,
        c.partitions,
        c.crashes,
        c.demotions,
        c.promotions,
        c.compactions,
        c.fetches,
        c.short_reads,
        c.unserved_ticks,
        c.ticks,
        c.outage_max_ticks,
    );
    assert_eq!(total.seeds, range.end - range.start, "every seed ran");
    assert!(c.promotions > 0 && total.acks > 0, "the cluster served");
}
