//! Seeded simulation of a whole node: several shards, many clients doing
//! random sends (with retries of the same client_msg_id), joins, leaves,
//! invites, removals, DMs, history reads, syncs, boots, workspace role
//! changes (member, guest, admin; the first user of each workspace is its
//! owner), workspace invites (created, revoked, redeemed on connections
//! with no session, some expired or used up), disconnects and reconnects,
//! while shards crash and restart from snapshot + durable WAL.
//!
//! Checked as it runs (see `support`): acks only for durable messages; every
//! message a client sees is durable, identical to its record, and seen by a
//! member (or, for history, a workspace user previewing a public channel);
//! seqs assigned gap-free and never reused; no client_msg_id stored twice;
//! a retried send gets the first ack; restore + replay equals live state;
//! a read cursor never moves back on a device, every read cursor shown
//! (Sync, Boot, lists, joins) is durable, and a `Sync` naming read cursors
//! answers at least every cursor durable when it was sent.
//! Checked at the end, after every client reconnected and synced: no
//! acknowledged message lost; every conversation's durable seqs are 1..=n;
//! every client holds exactly its user's conversations and their whole
//! durable history.
//!
//! Notifications: every push is emitted only once its outbox record is
//! durable, never again after a durable 2xx (crashes in between are the
//! documented window the idempotency key covers), and at the end every
//! outbox drains (no queued push lost across crashes).
//!
//! Storage faults (`World::storage_faults`): a crash is a power loss that
//! keeps an arbitrary valid prefix of the records not yet fsync'ed (sectors
//! written back in any order, the last one maybe torn; recovery truncates
//! at the first damaged frame); an fsync may fail with EIO (the shard stops
//! acknowledging, the daemon exits); the log may fill up (ENOSPC: sends are
//! refused naming the cause, reads go on). After every restart the
//! recovered log is checked against the ledger: every acknowledged message
//! present under its seq, none twice, seqs gap-free in LSN order, every
//! message delivered live present as delivered.
//!
//! Messages that live (issue 17): devices edit, delete and react to the
//! messages they hold. Every change served is durable; every message served
//! is its record with the durable changes up to its `live.version` applied
//! (a deleted one without body, an edit of a deleted one without text), and
//! a read shows every change durable when it was asked; unread counts count
//! messages only; at the end every device, applying the change events it
//! holds with `courier_core::live::apply`, has every message in the owner's
//! final state (text, edited, deleted, reactions), across crashes.
//!
//! Channel settings (issue 16, part 4): devices set topics and purposes,
//! rename, archive, unarchive and restrict posting in channels they are in;
//! an ack names a durable setting event, refusals are the typed ones the
//! rules allow, sends to archived or admins-only channels are refused; at
//! the end every device, folding the setting events it holds in seq order,
//! has each channel's settings as the durable records say.
//!
//! Seeds. Without variables a run explores 5,000 seeds `base..base+5000`
//! whose `base` comes from the commit under test (the first 48 bits of
//! `git rev-parse HEAD`, run in the crate's directory; 0 when git or the
//! repository is unavailable), so every commit explores new schedules and
//! re-running a commit repeats it exactly. The base, the range and the
//! command that repeats the run are printed first; a failure prints the
//! smallest failing seed of the range and the command that reruns it alone.
//!
//! - `COURIER_SIM_SEED=S`: seed S alone (what a failure tells you to run);
//! - `COURIER_SIM_SEEDS=N`: N seeds from the base (default 5,000);
//! - `COURIER_SIM_BASE=B`: start at B instead of the commit's base
//!   (`COURIER_SIM_BASE=0 COURIER_SIM_SEEDS=N` is the old `0..N`);
//! - `COURIER_SIM_THREADS=T`: worker threads (default: the available
//!   parallelism, at most 8); each seed is a pure function of its number,
//!   so threads change only the wall time, never the outcome;
//! - `COURIER_SIM_TRACE=1`: print what every client receives (use with
//!   one seed).

mod support;

use std::any::Any;
use std::io::Write;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use courier_core::api::{PeopleRequest, Request, Response, Role};
use support::{Rng, Stats, World};

/// Steps of random activity per seed: a chaotic profile (frequent crashes,
/// short runs) and a busy one (long runs, long offline clients, conversations
/// that outgrow the recent cache, occasional crashes).
const CHAOTIC_STEPS: u64 = 2_500;
const BUSY_STEPS: u64 = 25_000;

/// Seeds a run explores without `COURIER_SIM_SEEDS`.
const SEEDS_DEFAULT: u64 = 5_000;
/// The base when git cannot name the commit (a source tarball).
const BASE_FALLBACK: u64 = 0;
/// Hex digits of the commit id that make the base (48 bits: room for any
/// seed count above it, and short enough to type).
const BASE_HEX_DIGITS: usize = 12;
/// Upper bound of the default worker count.
const THREADS_MAX: usize = 8;
/// What reruns one seed.
const RERUN: &str = "cargo test -p courier-core --release --test sim";

struct Outcome {
    stats: Stats,
    acks: u64,
    live_events: u64,
    reads_checked: u64,
    messages: u64,
    /// Gateway: POSTs, distinct keys shown, repeats dropped by key.
    pushes: (u64, u64, u64),
}

fn run_seed(seed: u64) -> Outcome {
    assert!(
        seed % 7 != 3 || std::env::var_os("INJECT").is_none(),
        "injected failure at {seed}"
    );
    let mut rng = Rng::new(seed ^ 0xc0ff_ee00);
    let shard_count = 1 + rng.below(4) as u16;
    let busy = rng.chance(1, 2);
    // A third of the seeds add edges (cluster mode's connection-only
    // shards) that clients connect to like any shard, with node links
    // between them and the state shards that break.
    let edges = if rng.chance(1, 3) {
        1 + rng.below(3) as u16
    } else {
        0
    };
    let addresses = u64::from(shard_count + edges);
    let mut w = World::with_edges(seed, shard_count, edges);
    w.storage_faults = true;
    if busy {
        w.chaos_per_mille = 1;
        w.client_weight = 25;
        w.long_offline_pct = 30;
    }
    let admin_shard = rng.below(addresses) as u16;
    let admin = w.admin(admin_shard);
    let mut clients = Vec::new();
    for (wi, ws_name) in ["acme", "globex"].iter().enumerate() {
        let ws = w.create_workspace(admin, ws_name);
        let user_count = 2 + rng.below(4);
        let mut first = None;
        for u in 0..user_count {
            let (user, credential) = w.create_user(admin, ws, &format!("u{wi}-{u}"));
            let devices = 1 + rng.below(2);
            for _ in 0..devices {
                let s = rng.below(addresses) as u16;
                let c = w.user_client(user, ws, credential.clone(), s, false);
                first.get_or_insert(c);
                clients.push(c);
            }
        }
        let creator = first.expect("a client");
        // The first user owns the workspace: its role changes succeed.
        let owner = w.clients[creator].user.expect("a user client");
        let set = Request::People(PeopleRequest::SetRole {
            user: owner,
            role: Role::Owner,
        });
        assert_eq!(w.call(admin, set), Ok(Response::Done));
        let channels = if busy {
            1 + rng.below(2)
        } else {
            2 + rng.below(2)
        };
        for ch in 0..channels {
            let private = rng.chance(1, 3);
            w.create_channel(creator, &format!("c{ch}"), private);
        }
    }
    // From here on, clients behave on their own: reconnect, sync, act.
    w.chaos_then_check(&clients, if busy { BUSY_STEPS } else { CHAOTIC_STEPS });
    Outcome {
        stats: w.stats,
        acks: w.model.acks,
        live_events: w.model.live_events,
        reads_checked: w.model.reads_checked,
        messages: w.model.durable_keys.len() as u64,
        pushes: (
            w.gateway.posts.len() as u64,
            w.gateway.shown.len() as u64,
            w.gateway.deduplicated,
        ),
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

/// The base of the default range: the commit under test, or the fallback.
/// Returns the base and where it came from.
fn commit_base() -> (u64, String) {
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned());
    let base = head.as_deref().and_then(|h| {
        h.get(..BASE_HEX_DIGITS)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
    });
    match (base, head) {
        (Some(base), Some(head)) => (base, format!("commit {head}")),
        _ => (
            BASE_FALLBACK,
            "the fixed fallback (git could not name the commit)".to_owned(),
        ),
    }
}

/// The seeds to run, and a line saying why.
fn plan() -> (Range<u64>, String) {
    if let Some(seed) = env_u64("COURIER_SIM_SEED") {
        let range = seed..seed + 1;
        return (range, format!("seed {seed} (COURIER_SIM_SEED)"));
    }
    let n = env_u64("COURIER_SIM_SEEDS").unwrap_or(SEEDS_DEFAULT);
    let (base, from) = match env_u64("COURIER_SIM_BASE") {
        Some(b) => (b, "COURIER_SIM_BASE".to_owned()),
        None => commit_base(),
    };
    let end = base
        .checked_add(n)
        .expect("COURIER_SIM_BASE + COURIER_SIM_SEEDS overflows");
    let why = format!(
        "{n} seeds {base}..{end} (base {base} from {from}); \
         this run again: COURIER_SIM_BASE={base} COURIER_SIM_SEEDS={n} {RERUN}"
    );
    (base..end, why)
}

/// Sums of the outcomes of the seeds run.
#[derive(Default)]
struct Totals {
    seeds: u64,
    stats: Stats,
    acks: u64,
    live: u64,
    reads: u64,
    messages: u64,
    posts: u64,
    shown: u64,
    deduplicated: u64,
}

impl Totals {
    fn of(o: &Outcome) -> Totals {
        Totals {
            seeds: 1,
            stats: o.stats,
            acks: o.acks,
            live: o.live_events,
            reads: o.reads_checked,
            messages: o.messages,
            posts: o.pushes.0,
            shown: o.pushes.1,
            deduplicated: o.pushes.2,
        }
    }

    fn merge(&mut self, o: Totals) {
        self.seeds += o.seeds;
        self.acks += o.acks;
        self.live += o.live;
        self.reads += o.reads;
        self.messages += o.messages;
        self.posts += o.posts;
        self.shown += o.shown;
        self.deduplicated += o.deduplicated;
        self.stats.add(&o.stats);
    }
}

/// The first failure: the smallest failing seed and its panic.
type Failure = Mutex<Option<(u64, Box<dyn Any + Send>)>>;

/// Runs seeds of `range` handed out in increasing order until the range
/// ends or a smaller seed failed. Every seed below a failing one is still
/// run, so the failure reported is always the smallest failing seed of the
/// range, whatever the thread count and timing.
fn worker(range: &Range<u64>, next: &AtomicU64, stop_at: &AtomicU64, failure: &Failure) -> Totals {
    let mut totals = Totals::default();
    loop {
        let seed = next.fetch_add(1, Ordering::SeqCst);
        if seed >= range.end || seed >= stop_at.load(Ordering::SeqCst) {
            return totals;
        }
        match catch_unwind(AssertUnwindSafe(|| run_seed(seed))) {
            Ok(outcome) => totals.merge(Totals::of(&outcome)),
            Err(payload) => {
                eprintln!(
                    "simulation failed at seed {seed}: rerun with COURIER_SIM_SEED={seed} {RERUN}"
                );
                stop_at.fetch_min(seed, Ordering::SeqCst);
                let mut first = failure.lock().unwrap_or_else(|e| e.into_inner());
                if first.as_ref().is_none_or(|(s, _)| seed < *s) {
                    *first = Some((seed, payload));
                }
                return totals;
            }
        }
    }
}

#[test]
fn simulation() {
    let (range, why) = plan();
    let threads = env_u64("COURIER_SIM_THREADS").map_or_else(
        || {
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(THREADS_MAX)
        },
        |t| usize::try_from(t.max(1)).unwrap_or(1),
    );
    // Straight to stderr (not captured by the test harness): the range
    // shows in every CI log, passing or not.
    let _ = writeln!(std::io::stderr(), "simulation: {why}; threads: {threads}");
    let started = Instant::now();
    let next = AtomicU64::new(range.start);
    let stop_at = AtomicU64::new(u64::MAX);
    let failure: Failure = Mutex::new(None);
    let mut total = Totals::default();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| worker(&range, &next, &stop_at, &failure)))
            .collect();
        for w in workers {
            match w.join() {
                Ok(t) => total.merge(t),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    });
    if let Some((seed, payload)) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        eprintln!(
            "simulation failed: seed {seed} is the smallest failing seed of {}..{}; \
             rerun it alone with COURIER_SIM_SEED={seed} {RERUN}",
            range.start, range.end
        );
        std::panic::resume_unwind(payload);
    }
    let t = &total.stats;
    let _ = writeln!(
        std::io::stderr(),
        "simulation: {} seeds in {:.1?}: {} messages durable, {} acks, {} live events and {} read messages checked, \
         {} sends ({} retries), {} requests, {} peer messages (each through its wire form; largest {} bytes), {} history reads, \
         {} truncated syncs, {} crashes, {} snapshots, {} restore checks, {} role changes done and {} refused, \
         {} invites created, {} redeemed, {} refused; push gateway: {} POSTs, {} shown, {} repeats dropped by key",
        total.seeds,
        started.elapsed(),
        total.messages,
        total.acks,
        total.live,
        total.reads,
        t.sends,
        t.retries,
        t.requests,
        t.peer_messages,
        t.peer_wire_bytes_max,
        t.wal_reads,
        t.truncated_syncs,
        t.crashes,
        t.snapshots,
        t.restore_checks,
        t.roles_set,
        t.roles_refused,
        t.invites_created,
        t.invites_redeemed,
        t.invites_refused,
        total.posts,
        total.shown,
        total.deduplicated,
    );
    let _ = writeln!(
        std::io::stderr(),
        "storage faults: {} power losses ({} reordered write-backs, {} torn writes, {} damaged tails truncated; \
         {} unsynced records kept, {} lost), {} failed fsyncs (EIO), {} full disks (ENOSPC), \
         {} sends and syncs refused naming the storage failure, {} restarts checked against the ledger",
        t.crashes,
        t.reordered,
        t.torn_sectors,
        t.damaged_tails,
        t.unsynced_records_kept,
        t.unsynced_records_lost,
        t.eio,
        t.enospc,
        t.storage_refusals,
        t.recovery_checks,
    );
    let _ = writeln!(
        std::io::stderr(),
        "messages that live (issue 17): {} edits, deletes and reactions sequenced, {} answered Done (no change), \
         {} refused (someone else's message, or deleted); every device ends with every message in the owner's state",
        t.changes_acked,
        t.changes_noop,
        t.changes_refused,
    );
    let _ = writeln!(
        std::io::stderr(),
        "threads (issue 17, part 2): {} replies sequenced, {} refused (root deleted, a reply, archived), \
         {} thread pages read; every device ends with every root's reply count, last reply and participants as the owner's",
        t.replies_acked,
        t.replies_refused,
        t.thread_pages,
    );
    let _ = writeln!(
        std::io::stderr(),
        "channel settings (issue 16, part 4): {} settings sequenced ({} renames), {} answered Done, \
         {} refused (role, archived, name taken); {} sends refused (archived or admins only); \
         every device ends with every channel's settings as the durable events say",
        t.settings_acked,
        t.renames_acked,
        t.settings_noop,
        t.settings_refused,
        t.sends_refused_by_settings,
    );
    let _ = writeln!(
        std::io::stderr(),
        "profiles (issue 16, part 5): {} profile changes asked for, {} profile events delivered, \
         each to a session of the user's workspace",
        t.profile_sets,
        t.profile_events,
    );
    assert!(
        range.end - range.start < 500 || t.profile_events > 0,
        "the seeds delivered profile events"
    );
    let _ = writeln!(
        std::io::stderr(),
        "history store: {} history reads, {} log truncations behind snapshots; restarts with the store \
         behind the snapshot (re-added from the log) {}, ahead of it {}; {} unsynced store entries kept by power losses",
        t.wal_reads,
        t.truncations,
        t.history_behind,
        t.history_ahead,
        t.history_staged_kept,
    );
    let _ = writeln!(
        std::io::stderr(),
        "edges: {} node links between an edge and a state shard broken, {} messages in flight lost with them",
        t.link_breaks,
        t.link_lost,
    );
    assert!(
        range.end - range.start < 500 || t.link_breaks > 0,
        "the seeds exercised broken links between edges and state shards"
    );
    assert!(
        range.end - range.start < 500
            || (t.truncations > 0 && t.history_behind > 0 && t.history_ahead > 0),
        "the seeds exercised log truncation and a store behind and ahead of the snapshot"
    );
    assert_eq!(total.seeds, range.end - range.start, "every seed ran");
}
