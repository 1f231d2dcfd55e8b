//! The fake push gateway and the delivery thread that answers the shards' pushes.

use std::collections::{BTreeMap, BTreeSet};

use courier_core::api::{Input, PushAction, PushOutcome};

use super::{Chaos, World};

/// A push gateway that dedups by idempotency key, like a real one should.
#[derive(Default, Debug)]
pub struct Gateway {
    /// Answers 2xx (otherwise 503).
    pub down: bool,
    /// Every POST, in order: (key, action).
    pub posts: Vec<(String, PushAction)>,
    /// Keys answered 2xx (what a user saw once).
    pub shown: BTreeSet<String>,
    /// Keys answered 2xx whose durable mark must stop any re-send:
    /// key → (shard, LSN of its `PushSettled`).
    pub settled: BTreeMap<String, (u16, u64)>,
    /// Repeats the gateway dropped by key (the documented crash window).
    pub deduplicated: u64,
}

impl World {
    /// The fake delivery thread answers the oldest push of shard `s`.
    pub fn answer_push(&mut self, s: u16) {
        let Some((id, push)) = self.nodes[usize::from(s)].pushes.pop_front() else {
            return;
        };
        let key = push.idempotency_key.clone();
        self.gateway.posts.push((key.clone(), push.action));
        let outcome = if self.gateway.down || self.rng.chance(1, 10) {
            PushOutcome::Retry
        } else {
            if !self.gateway.shown.insert(key.clone()) {
                self.gateway.deduplicated += 1;
            }
            PushOutcome::Delivered
        };
        let before = self.nodes[usize::from(s)].wal.len() as u64;
        self.input(s, Input::PushResult { id, outcome });
        if outcome == PushOutcome::Delivered && self.nodes[usize::from(s)].wal.len() as u64 > before
        {
            // The settle record is the first appended by the result.
            self.gateway.settled.insert(key, (s, before + 1));
        }
    }

    /// Ticks (with the gateway up) until every shard's outbox is empty;
    /// panics if it does not drain: a queued push was lost or stuck.
    pub fn drain_pushes(&mut self) {
        self.gateway.down = false;
        for _ in 0..10_000 {
            let depth: u64 = self
                .nodes
                .iter()
                .filter_map(|n| n.shard.as_ref())
                .map(|sh| sh.metrics().outbox_depth)
                .sum();
            if depth == 0 && !self.busy() {
                return;
            }
            if self.busy() {
                self.step_once(Chaos {
                    clients_act: false,
                    crashes: false,
                });
            } else {
                self.step += 1;
                self.tick();
            }
        }
        let stuck: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.shard.as_ref())
            .map(|sh| format!("{:?}", sh.metrics()))
            .collect();
        panic!(
            "seed {}: the push outbox did not drain: {stuck:#?}",
            self.seed
        );
    }
}
