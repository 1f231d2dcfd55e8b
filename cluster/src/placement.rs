//! The placement function: which nodes hold each shard's replicas, and
//! which replica is the preferred leader. Pure and deterministic (same
//! inputs, same output, whatever the order of `alive`), so every controller
//! would compute the same map and the tests can check it exhaustively.
//!
//! # Algorithm
//!
//! 1. **Keep** every replica of the previous placement whose node is alive,
//!    in its order; a shard whose first replica is alive keeps its
//!    preferred leader. A node that joined moves nothing (rebalancing onto
//!    new nodes is shard movement, a later issue).
//! 2. **Fill** each shard's missing slots, shard by shard in order, with the
//!    alive node not already in the shard that holds the fewest replicas;
//!    ties go to the node sharing the fewest shards with the replicas
//!    already chosen, then to the lowest id. The second rule scatters
//!    shards over many node combinations (rather than disjoint groups of
//!    `replication_factor` nodes), so a dead node's replicas can be
//!    replaced on many survivors, spreading the load and the catch-up.
//! 3. **Lead**: a shard whose leader was lost (or new) takes as leader the
//!    replica leading the fewest shards (ties: replica order); then, while
//!    a node leads two or more shards more than another, leadership of
//!    those shards is shifted along a chain of replicas from the first to
//!    the second (an augmenting path, found breadth-first).
//!
//! Guarantees (tested below): exactly `replication_factor` distinct alive
//! nodes per shard; replicas that stay alive never move; an initial
//! placement has per-node replica and leader counts within one of each
//! other.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::types::NodeId;

/// Computes the replicas of every shard (first = preferred leader).
///
/// `previous` is the current placement's `shards`, or None for the first
/// placement. Fails with [`Error::Placement`] when fewer distinct nodes are
/// alive than `replication_factor`, or `previous` has another shard count.
pub fn compute_placement(
    shard_count: u32,
    replication_factor: u8,
    alive: &[NodeId],
    previous: Option<&[Vec<NodeId>]>,
) -> Result<Vec<Vec<NodeId>>> {
    let nodes: BTreeSet<NodeId> = alive.iter().copied().collect();
    let rf = usize::from(replication_factor);
    let fail = |reason: &'static str| Error::Placement {
        shard_count,
        replication_factor,
        nodes: nodes.len(),
        reason,
    };
    if rf == 0 {
        return Err(fail("replication factor 0"));
    }
    if nodes.len() < rf {
        return Err(fail("fewer live nodes than the replication factor"));
    }
    if let Some(previous) = previous {
        if previous.len() != shard_count as usize {
            return Err(fail("the previous placement has another shard count"));
        }
    }

    // 1. Keep.
    let mut shards: Vec<Vec<NodeId>> = Vec::with_capacity(shard_count as usize);
    let mut leader_kept: Vec<bool> = Vec::with_capacity(shard_count as usize);
    for shard in 0..shard_count as usize {
        let mut kept: Vec<NodeId> = Vec::with_capacity(rf);
        let old = previous
            .and_then(|p| p.get(shard))
            .map_or(&[][..], Vec::as_slice);
        for node in old {
            if nodes.contains(node) && !kept.contains(node) && kept.len() < rf {
                kept.push(*node);
            }
        }
        leader_kept.push(old.first().is_some_and(|n| kept.first() == Some(n)));
        shards.push(kept);
    }
    let mut replicas: BTreeMap<NodeId, u32> = nodes.iter().map(|n| (*n, 0)).collect();
    let mut leaders: BTreeMap<NodeId, u32> = replicas.clone();
    for (shard, kept) in shards.iter().enumerate() {
        for node in kept {
            *replicas.entry(*node).or_default() += 1;
        }
        if leader_kept[shard] {
            *leaders.entry(kept[0]).or_default() += 1;
        }
    }

    // 2. Fill. `together[(a, b)]` counts the shards nodes a < b share.
    let mut together: BTreeMap<(NodeId, NodeId), u32> = BTreeMap::new();
    let pair = |a: NodeId, b: NodeId| if a < b { (a, b) } else { (b, a) };
    for kept in &shards {
        for (i, a) in kept.iter().enumerate() {
            for b in &kept[i + 1..] {
                *together.entry(pair(*a, *b)).or_default() += 1;
            }
        }
    }
    for kept in &mut shards {
        while kept.len() < rf {
            let pick = replicas
                .iter()
                .filter(|(node, _)| !kept.contains(node))
                .min_by_key(|(node, count)| {
                    let shared: u32 = kept
                        .iter()
                        .map(|k| together.get(&pair(**node, *k)).copied().unwrap_or(0))
                        .sum();
                    (**count, shared, **node)
                })
                .map(|(node, _)| *node)
                .ok_or_else(|| fail("no node left for a replica"))?;
            for k in kept.iter() {
                *together.entry(pair(pick, *k)).or_default() += 1;
            }
            kept.push(pick);
            *replicas.entry(pick).or_default() += 1;
        }
    }

    // 3. Lead.
    for (shard, replicas_of) in shards.iter_mut().enumerate() {
        if leader_kept[shard] {
            continue;
        }
        let (position, _) = replicas_of
            .iter()
            .enumerate()
            .min_by_key(|(position, node)| (leaders.get(node).copied().unwrap_or(0), *position))
            .ok_or_else(|| fail("empty shard"))?;
        let leader = replicas_of.remove(position);
        replicas_of.insert(0, leader);
        *leaders.entry(leader).or_default() += 1;
    }
    // Balance: while some node leads two or more shards more than another,
    // find a chain of leadership hand-overs among the shards whose leader
    // is being chosen (breadth-first: a → b when a leads such a shard that
    // has a replica on b) from a most-loaded node to one two below it, and
    // shift along it. Each shift lowers Σ leaders², so this ends; the
    // bound documents it.
    let shifts_max = (shard_count as usize).saturating_mul(nodes.len()).max(1);
    for _ in 0..shifts_max {
        let most = leaders.values().copied().max().unwrap_or(0);
        let mut parent: BTreeMap<NodeId, (NodeId, usize)> = BTreeMap::new();
        let mut queue: std::collections::VecDeque<NodeId> = leaders
            .iter()
            .filter(|(_, c)| **c == most)
            .map(|(n, _)| *n)
            .collect();
        let mut seen: BTreeSet<NodeId> = queue.iter().copied().collect();
        let mut target = None;
        while let Some(a) = queue.pop_front() {
            if leaders.get(&a).copied().unwrap_or(0) + 2 <= most {
                target = Some(a);
                break;
            }
            for (shard, replicas_of) in shards.iter().enumerate() {
                if leader_kept[shard] || replicas_of[0] != a {
                    continue;
                }
                for b in &replicas_of[1..] {
                    if seen.insert(*b) {
                        parent.insert(*b, (a, shard));
                        queue.push_back(*b);
                    }
                }
            }
        }
        let Some(mut node) = target else { break };
        *leaders.entry(node).or_default() += 1;
        while let Some((from, shard)) = parent.get(&node).copied() {
            let replicas_of = &mut shards[shard];
            let position = replicas_of
                .iter()
                .position(|n| *n == node)
                .ok_or_else(|| fail("broken chain"))?;
            let new_leader = replicas_of.remove(position);
            replicas_of.insert(0, new_leader);
            node = from;
        }
        *leaders.entry(node).or_default() -= 1;
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::RangeInclusive<u32>) -> Vec<NodeId> {
        range.map(NodeId).collect()
    }

    fn counts(
        shards: &[Vec<NodeId>],
        nodes: &[NodeId],
    ) -> (BTreeMap<NodeId, u32>, BTreeMap<NodeId, u32>) {
        let mut replicas: BTreeMap<NodeId, u32> = nodes.iter().map(|n| (*n, 0)).collect();
        let mut leaders = replicas.clone();
        for shard in shards {
            for node in shard {
                *replicas.get_mut(node).unwrap() += 1;
            }
            *leaders.get_mut(&shard[0]).unwrap() += 1;
        }
        (replicas, leaders)
    }

    fn spread(counts: &BTreeMap<NodeId, u32>) -> u32 {
        counts.values().max().unwrap() - counts.values().min().unwrap()
    }

    /// Shape check shared by every case: length, distinct alive nodes.
    fn check_shape(shards: &[Vec<NodeId>], shard_count: u32, rf: u8, alive: &[NodeId]) {
        assert_eq!(shards.len(), shard_count as usize);
        for (s, replicas) in shards.iter().enumerate() {
            assert_eq!(replicas.len(), usize::from(rf), "shard {s}: {replicas:?}");
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(
                distinct.len(),
                replicas.len(),
                "shard {s} has two replicas on a node: {replicas:?}"
            );
            assert!(
                replicas.iter().all(|n| alive.contains(n)),
                "shard {s} on a dead node: {replicas:?}"
            );
        }
    }

    #[test]
    fn initial_placement_is_balanced_and_never_doubles_a_replica() {
        for node_count in 1..=9u32 {
            for rf in 1..=5u8 {
                if u32::from(rf) > node_count {
                    continue;
                }
                for shard_count in [1u32, 2, 3, 7, 16, 64, 257] {
                    let alive = ids(1..=node_count);
                    let shards = compute_placement(shard_count, rf, &alive, None).unwrap();
                    check_shape(&shards, shard_count, rf, &alive);
                    let (replicas, leaders) = counts(&shards, &alive);
                    let case = format!("nodes {node_count} rf {rf} shards {shard_count}");
                    assert!(spread(&replicas) <= 1, "{case}: replicas {replicas:?}");
                    assert!(spread(&leaders) <= 1, "{case}: leaders {leaders:?}");
                }
            }
        }
    }

    #[test]
    fn three_nodes_rf3_put_every_shard_everywhere_with_leaders_round_robin() {
        let shards = compute_placement(4, 3, &ids(1..=3), None).unwrap();
        let leaders: Vec<u32> = shards.iter().map(|s| s[0].0).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1]);
    }

    #[test]
    fn placement_is_deterministic_whatever_the_order_of_alive_nodes() {
        let forward = ids(1..=7);
        let mut backward = forward.clone();
        backward.reverse();
        backward.push(NodeId(3)); // a duplicate in the input changes nothing
        let a = compute_placement(50, 3, &forward, None).unwrap();
        let b = compute_placement(50, 3, &backward, None).unwrap();
        assert_eq!(a, b);
        let prev = a.clone();
        let dead_removed: Vec<NodeId> = forward.iter().copied().filter(|n| n.0 != 4).collect();
        assert_eq!(
            compute_placement(50, 3, &dead_removed, Some(&prev)).unwrap(),
            compute_placement(50, 3, &dead_removed, Some(&prev)).unwrap()
        );
    }

    #[test]
    fn a_dead_node_moves_only_its_own_replicas_and_the_load_stays_even() {
        for (node_count, rf, shard_count) in [
            (4u32, 3u8, 8u32),
            (5, 3, 32),
            (6, 3, 64),
            (9, 5, 100),
            (3, 1, 10),
        ] {
            let alive = ids(1..=node_count);
            let before = compute_placement(shard_count, rf, &alive, None).unwrap();
            let dead = NodeId(2);
            let survivors: Vec<NodeId> = alive.iter().copied().filter(|n| *n != dead).collect();
            let after = compute_placement(shard_count, rf, &survivors, Some(&before)).unwrap();
            check_shape(&after, shard_count, rf, &survivors);
            let case = format!("nodes {node_count} rf {rf} shards {shard_count}");
            let mut moved = 0;
            for (old, new) in before.iter().zip(&after) {
                for node in old.iter().filter(|n| **n != dead) {
                    assert!(
                        new.contains(node),
                        "{case}: a live replica moved: {old:?} -> {new:?}"
                    );
                }
                if old[0] != dead {
                    assert_eq!(
                        old[0], new[0],
                        "{case}: a live leader changed: {old:?} -> {new:?}"
                    );
                }
                moved += new.iter().filter(|n| !old.contains(n)).count();
            }
            let on_dead = before.iter().filter(|s| s.contains(&dead)).count();
            assert_eq!(
                moved, on_dead,
                "{case}: exactly the dead node's replicas move"
            );
            let (replicas, leaders) = counts(&after, &survivors);
            assert!(spread(&replicas) <= 2, "{case}: replicas {replicas:?}");
            assert!(spread(&leaders) <= 2, "{case}: leaders {leaders:?}");
        }
    }

    #[test]
    fn a_joining_node_moves_nothing() {
        let before = compute_placement(16, 3, &ids(1..=3), None).unwrap();
        let after = compute_placement(16, 3, &ids(1..=4), Some(&before)).unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn too_few_nodes_or_a_mismatched_previous_placement_is_an_error() {
        let err = compute_placement(8, 3, &ids(1..=2), None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Placement {
                    nodes: 2,
                    replication_factor: 3,
                    ..
                }
            ),
            "{err}"
        );
        let prev = compute_placement(8, 3, &ids(1..=3), None).unwrap();
        let err = compute_placement(9, 3, &ids(1..=3), Some(&prev)).unwrap_err();
        assert!(matches!(err, Error::Placement { .. }), "{err}");
    }
}
