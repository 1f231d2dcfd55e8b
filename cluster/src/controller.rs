//! The controller's decision: when to write a new placement. Pure (time is
//! an input), so the grace period and the replacement timeout are unit
//! tested without etcd; [`crate::agent`] runs it on every tick while this
//! node holds the controller election.
//!
//! What it does today (shard movement comes with Raft, a later issue):
//! - **initial placement**: once at least `replication_factor` nodes are
//!   registered and the set has not changed for `grace` (a node still
//!   starting up, or a blip, does not count), epoch 1;
//! - **replacement**: a node holding replicas that has been missing from
//!   the registry for `replace_after` gets its replicas reassigned in a
//!   placement one epoch higher ([`crate::compute_placement`] moves
//!   nothing else). Nodes missing for less are treated as present, so a
//!   blip moves nothing.
//!
//! Nodes that join later move nothing (no rebalancing yet). A new controller
//! starts its clocks afresh, so a failover delays a replacement by at most
//! `replace_after` — never hastens it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::placement::compute_placement;
use crate::types::{NodeId, Placement};

/// The controller's memory between ticks: what set of nodes it saw, since
/// when, and since when each placed node has been missing.
#[derive(Debug)]
pub struct ControllerState {
    alive: BTreeSet<NodeId>,
    stable_since: Instant,
    missing_since: BTreeMap<NodeId, Instant>,
}

/// The cluster's fixed shape and the controller's timings, as
/// [`ControllerState::decide`] needs them.
#[derive(Clone, Copy, Debug)]
pub struct DecideParams {
    /// Shards of the cluster.
    pub shard_count: u32,
    /// Replicas per shard.
    pub replication_factor: u8,
    /// How long the node set must stay unchanged before the initial placement.
    pub grace: Duration,
    /// How long a placed node must be missing before its replicas are replaced.
    pub replace_after: Duration,
}

impl ControllerState {
    /// A controller that just took office at `now`.
    pub fn new(now: Instant) -> ControllerState {
        ControllerState {
            alive: BTreeSet::new(),
            stable_since: now,
            missing_since: BTreeMap::new(),
        }
    }

    /// Records the registry as seen at `now` and returns the placement to
    /// write, if one is due. Fails only when a due placement cannot be
    /// computed (fewer live nodes than the replication factor); the caller
    /// logs that and asks again next tick.
    pub fn decide(
        &mut self,
        now: Instant,
        params: &DecideParams,
        alive: &[NodeId],
        current: Option<&Placement>,
    ) -> Result<Option<Placement>> {
        let alive_set: BTreeSet<NodeId> = alive.iter().copied().collect();
        if alive_set != self.alive {
            self.alive = alive_set.clone();
            self.stable_since = now;
        }
        let Some(current) = current else {
            let ready = alive_set.len() >= usize::from(params.replication_factor)
                && now.duration_since(self.stable_since) >= params.grace;
            if !ready {
                return Ok(None);
            }
            let nodes: Vec<NodeId> = alive_set.into_iter().collect();
            let shards =
                compute_placement(params.shard_count, params.replication_factor, &nodes, None)?;
            return Ok(Some(Placement { epoch: 1, shards }));
        };

        let missing: BTreeSet<NodeId> = current
            .nodes()
            .into_iter()
            .filter(|n| !alive_set.contains(n))
            .collect();
        self.missing_since.retain(|node, _| missing.contains(node));
        for node in &missing {
            self.missing_since.entry(*node).or_insert(now);
        }
        let gone: BTreeSet<NodeId> = self
            .missing_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= params.replace_after)
            .map(|(node, _)| *node)
            .collect();
        if gone.is_empty() {
            return Ok(None);
        }
        // Missing but not yet gone counts as present: its replicas stay.
        let present: Vec<NodeId> = alive_set
            .iter()
            .chain(missing.difference(&gone))
            .copied()
            .collect();
        let shards = compute_placement(
            params.shard_count,
            params.replication_factor,
            &present,
            Some(&current.shards),
        )?;
        if shards == current.shards {
            return Ok(None);
        }
        Ok(Some(Placement {
            epoch: current.epoch + 1,
            shards,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: DecideParams = DecideParams {
        shard_count: 6,
        replication_factor: 3,
        grace: Duration::from_secs(2),
        replace_after: Duration::from_secs(10),
    };

    fn nodes(ids: &[u32]) -> Vec<NodeId> {
        ids.iter().map(|i| NodeId(*i)).collect()
    }

    #[test]
    fn initial_placement_waits_for_enough_nodes_and_a_stable_set() {
        let t0 = Instant::now();
        let mut state = ControllerState::new(t0);
        let s = Duration::from_secs;
        assert_eq!(
            state.decide(t0, &PARAMS, &nodes(&[1, 2]), None).unwrap(),
            None,
            "too few nodes"
        );
        assert_eq!(
            state
                .decide(t0 + s(5), &PARAMS, &nodes(&[1, 2]), None)
                .unwrap(),
            None,
            "still too few"
        );
        assert_eq!(
            state
                .decide(t0 + s(6), &PARAMS, &nodes(&[1, 2, 3]), None)
                .unwrap(),
            None,
            "set just changed"
        );
        assert_eq!(
            state
                .decide(t0 + s(7), &PARAMS, &nodes(&[1, 2, 3, 4]), None)
                .unwrap(),
            None,
            "changed again"
        );
        let placement = state
            .decide(t0 + s(9), &PARAMS, &nodes(&[1, 2, 3, 4]), None)
            .unwrap()
            .unwrap();
        assert_eq!(placement.epoch, 1);
        assert_eq!(placement.nodes(), nodes(&[1, 2, 3, 4]));
        placement.validate(6, 3).unwrap();
    }

    #[test]
    fn a_blip_moves_nothing_and_a_node_gone_past_the_timeout_is_replaced() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let all = nodes(&[1, 2, 3, 4]);
        let current = Placement {
            epoch: 1,
            shards: compute_placement(6, 3, &all, None).unwrap(),
        };
        let mut state = ControllerState::new(t0);
        assert_eq!(
            state.decide(t0, &PARAMS, &all, Some(&current)).unwrap(),
            None
        );
        // Node 2 blips for 9 s (less than replace_after) and comes back.
        assert_eq!(
            state
                .decide(t0 + s(1), &PARAMS, &nodes(&[1, 3, 4]), Some(&current))
                .unwrap(),
            None
        );
        assert_eq!(
            state
                .decide(t0 + s(10), &PARAMS, &nodes(&[1, 3, 4]), Some(&current))
                .unwrap(),
            None
        );
        assert_eq!(
            state
                .decide(t0 + s(10), &PARAMS, &all, Some(&current))
                .unwrap(),
            None
        );
        // Gone again: the clock restarts, and after replace_after it is replaced.
        assert_eq!(
            state
                .decide(t0 + s(20), &PARAMS, &nodes(&[1, 3, 4]), Some(&current))
                .unwrap(),
            None
        );
        assert_eq!(
            state
                .decide(t0 + s(29), &PARAMS, &nodes(&[1, 3, 4]), Some(&current))
                .unwrap(),
            None
        );
        let next = state
            .decide(t0 + s(30), &PARAMS, &nodes(&[1, 3, 4]), Some(&current))
            .unwrap()
            .unwrap();
        assert_eq!(next.epoch, 2);
        assert_eq!(next.nodes(), nodes(&[1, 3, 4]));
        next.validate(6, 3).unwrap();
    }

    #[test]
    fn a_node_missing_briefly_keeps_its_replicas_while_another_is_replaced() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let all = nodes(&[1, 2, 3, 4, 5]);
        let current = Placement {
            epoch: 4,
            shards: compute_placement(6, 3, &all, None).unwrap(),
        };
        let mut state = ControllerState::new(t0);
        state
            .decide(t0, &PARAMS, &nodes(&[1, 3, 4, 5]), Some(&current))
            .unwrap();
        // Node 2 gone for 10 s; node 5 missing only for the last second.
        let next = state
            .decide(t0 + s(10), &PARAMS, &nodes(&[1, 3, 4]), Some(&current))
            .unwrap()
            .unwrap();
        assert_eq!(next.epoch, 5);
        assert!(!next.nodes().contains(&NodeId(2)));
        for (old, new) in current.shards.iter().zip(&next.shards) {
            if old.contains(&NodeId(5)) {
                assert!(
                    new.contains(&NodeId(5)),
                    "node 5's replica moved on a blip: {old:?} -> {new:?}"
                );
            }
        }
    }

    #[test]
    fn too_few_nodes_for_a_replacement_is_reported_not_written() {
        let t0 = Instant::now();
        let all = nodes(&[1, 2, 3]);
        let current = Placement {
            epoch: 1,
            shards: compute_placement(6, 3, &all, None).unwrap(),
        };
        let mut state = ControllerState::new(t0);
        state
            .decide(t0, &PARAMS, &nodes(&[1, 2]), Some(&current))
            .unwrap();
        assert!(state
            .decide(
                t0 + Duration::from_secs(10),
                &PARAMS,
                &nodes(&[1, 2]),
                Some(&current)
            )
            .is_err());
    }
}
