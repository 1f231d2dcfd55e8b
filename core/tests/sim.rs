//! Seeded simulation of a whole node: several shards, many clients doing
//! random sends (with retries of the same client_msg_id), joins, leaves,
//! invites, removals, DMs, history reads, syncs, boots, disconnects and
//! reconnects, while shards crash and restart from snapshot + durable WAL.
//!
//! Checked as it runs (see `support`): acks only for durable messages; every
//! message a client sees is durable, identical to its record, and seen by a
//! member (or, for history, a workspace user previewing a public channel);
//! seqs assigned gap-free and never reused; no client_msg_id stored twice;
//! a retried send gets the first ack; restore + replay equals live state.
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
//! `COURIER_SIM_SEEDS=N` runs seeds 0..N (default 500);
//! `COURIER_SIM_SEED=S` runs seed S alone. A failure prints its seed.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use courier_core::api::{ConversationId, Seq};
use support::{Chaos, Rng, Stats, World};

/// Steps of random activity per seed: a chaotic profile (frequent crashes,
/// short runs) and a busy one (long runs, long offline clients, conversations
/// that outgrow the recent cache, occasional crashes).
const CHAOTIC_STEPS: u64 = 2_500;
const BUSY_STEPS: u64 = 25_000;

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
    let mut rng = Rng::new(seed ^ 0xc0ff_ee00);
    let shard_count = 1 + rng.below(4) as u16;
    let busy = rng.chance(1, 2);
    let mut w = World::new(seed, shard_count);
    if busy {
        w.chaos_per_mille = 1;
        w.client_weight = 25;
        w.long_offline_pct = 30;
    }
    let admin_shard = rng.below(u64::from(shard_count)) as u16;
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
                let s = rng.below(u64::from(shard_count)) as u16;
                let c = w.user_client(user, ws, credential.clone(), s, false);
                first.get_or_insert(c);
                clients.push(c);
            }
        }
        let creator = first.expect("a client");
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
    for &c in &clients {
        w.clients[c].auto = true;
        w.clients[c].inbox.clear();
        w.disconnect(c);
    }
    for _ in 0..if busy { BUSY_STEPS } else { CHAOTIC_STEPS } {
        w.step_once(Chaos {
            clients_act: true,
            crashes: true,
        });
    }
    // Quiesce: shards come back, clients reconnect, retry unacked sends and
    // sync; twice, so the second round sees every retried message.
    for _ in 0..2 {
        w.settle();
        for &c in &clients {
            w.disconnect(c);
            w.clients[c].offline_until = 0;
        }
        w.settle();
    }
    w.drain_pushes();
    check_final(&w, &clients);
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

fn check_final(w: &World, clients: &[usize]) {
    let model = &w.model;
    let mut heads = std::collections::BTreeMap::new();
    for &conv in model.convs.keys() {
        heads.insert(conv, model.durable_history(conv).len() as u64);
    }
    for (&(conv, seq), &(sender, cmid)) in &model.acked {
        let p = model
            .messages
            .get(&(conv, seq))
            .unwrap_or_else(|| panic!("acknowledged message {conv}/{seq} lost"));
        assert!(p.durable_at.is_some());
        assert_eq!((p.rec.sender, p.rec.client_msg_id), (sender, cmid));
    }
    for &c in clients {
        let client = &w.clients[c];
        let user = client.user.expect("user client");
        assert_eq!(
            client.state,
            support::CState::Online,
            "client {c} did not come back"
        );
        for s in &client.sends {
            assert!(
                s.acked.is_some() || s.abandoned,
                "client {c}: send {:#x} neither acknowledged nor refused",
                s.cmid
            );
        }
        let expected: Vec<ConversationId> = model
            .convs
            .keys()
            .filter(|&&conv| model.member_now(conv, user.0))
            .map(|&conv| ConversationId(conv))
            .collect();
        let got: Vec<ConversationId> = client.convs.keys().copied().collect();
        assert_eq!(
            got, expected,
            "client {c} ({user:?}) ends with other conversations"
        );
        for (conv, cc) in &client.convs {
            let head = heads[&conv.0];
            let seqs: Vec<u64> = cc.msgs.keys().copied().collect();
            let want: Vec<u64> = (1..=head).collect();
            assert_eq!(
                seqs, want,
                "client {c}: conversation {conv:?} history differs from the durable one"
            );
            assert!(cc.msgs.values().all(|m| m.seq > Seq(0)));
        }
    }
}

#[test]
fn simulation() {
    let seeds: Vec<u64> = match std::env::var("COURIER_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("COURIER_SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("COURIER_SIM_SEEDS")
                .ok()
                .map_or(500, |s| s.parse().expect("COURIER_SIM_SEEDS is a number"));
            (0..n).collect()
        }
    };
    let started = Instant::now();
    let mut total = Stats::default();
    let (mut acks, mut live, mut reads, mut messages) = (0, 0, 0, 0);
    let (mut posts, mut shown, mut deduplicated) = (0, 0, 0);
    for &seed in &seeds {
        let outcome = match catch_unwind(AssertUnwindSafe(|| run_seed(seed))) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("simulation failed: rerun with COURIER_SIM_SEED={seed}");
                std::panic::resume_unwind(e);
            }
        };
        acks += outcome.acks;
        live += outcome.live_events;
        reads += outcome.reads_checked;
        messages += outcome.messages;
        posts += outcome.pushes.0;
        shown += outcome.pushes.1;
        deduplicated += outcome.pushes.2;
        total.crashes += outcome.stats.crashes;
        total.snapshots += outcome.stats.snapshots;
        total.restore_checks += outcome.stats.restore_checks;
        total.peer_messages += outcome.stats.peer_messages;
        total.sends += outcome.stats.sends;
        total.retries += outcome.stats.retries;
        total.requests += outcome.stats.requests;
        total.wal_reads += outcome.stats.wal_reads;
        total.truncated_syncs += outcome.stats.truncated_syncs;
    }
    eprintln!(
        "simulation: {} seeds in {:.1?}: {} messages durable, {} acks, {} live events and {} read messages checked, \
         {} sends ({} retries), {} requests, {} peer messages, {} WAL reads, {} truncated syncs, {} crashes, \
         {} snapshots, {} restore checks; push gateway: {} POSTs, {} shown, {} repeats dropped by key",
        seeds.len(),
        started.elapsed(),
        messages,
        acks,
        live,
        reads,
        total.sends,
        total.retries,
        total.requests,
        total.peer_messages,
        total.wal_reads,
        total.truncated_syncs,
        total.crashes,
        total.snapshots,
        total.restore_checks,
        posts,
        shown,
        deduplicated,
    );
}
