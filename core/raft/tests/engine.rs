//! `RaftCore` driven by hand: batching of every group into one WAL batch,
//! applies only after `persisted`, proposals refused with the leader named,
//! the log bound, compaction and `min_needed_lsn`, recovery (including a
//! deleted WAL prefix, a torn snapshot and damaged records), and a lagging
//! follower caught up by snapshot.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use courier_raft::record::{self, Record, KIND_ENTRIES};
use courier_raft::{
    Apply, CoreConfig, Error, GroupId, Lsn, NodeId, ProposeError, RaftCore, Role, SnapshotSource,
};
use std::collections::BTreeMap;

type Wal = Vec<(Lsn, u8, Vec<u8>)>;

/// Every group's state machine: applied (index, data), and a snapshot of it.
#[derive(Default)]
struct Machines {
    applied: BTreeMap<GroupId, Vec<(u64, Bytes)>>,
    asked: u32,
    /// Filler appended to snapshots (to make them span several chunks).
    pad: usize,
}

impl Machines {
    fn last(&self, g: GroupId) -> u64 {
        self.applied
            .get(&g)
            .and_then(|v| v.last())
            .map_or(0, |e| e.0)
    }
    fn bytes(&self, g: GroupId) -> Bytes {
        let mut items: Vec<u8> = self
            .applied
            .get(&g)
            .into_iter()
            .flatten()
            .flat_map(|(_, d)| d.to_vec())
            .collect();
        items.resize(items.len() + self.pad, 0xAB);
        Bytes::from(items)
    }
}

impl SnapshotSource for Machines {
    fn snapshot(&mut self, group: GroupId) -> Option<(u64, Bytes)> {
        self.asked += 1;
        Some((self.last(group), self.bytes(group)))
    }
}

struct Node {
    core: RaftCore,
    wal: Wal,
    machines: Machines,
    snapshots: Vec<(GroupId, u64, Bytes)>,
    /// `compact_wanted` of the last ready.
    wanted: Vec<GroupId>,
}

impl Node {
    fn new(id: u64, groups: u32, voters: &[u64]) -> Node {
        Node::with_config(config(id), groups, voters)
    }

    fn with_config(c: CoreConfig, groups: u32, voters: &[u64]) -> Node {
        let mut core = RaftCore::new(c);
        for g in 0..groups {
            core.create_group(GroupId(g), voters).unwrap();
        }
        Node {
            core,
            wal: Vec::new(),
            machines: Machines::default(),
            snapshots: Vec::new(),
            wanted: Vec::new(),
        }
    }

    fn apply(&mut self, applies: Vec<Apply>) {
        for a in applies {
            match a {
                Apply::Entry {
                    group, index, data, ..
                } => {
                    assert_eq!(index, self.machines.last(group) + 1, "in order");
                    self.machines
                        .applied
                        .entry(group)
                        .or_default()
                        .push((index, data));
                }
                Apply::Snapshot(s) => {
                    self.snapshots.push((s.group, s.index, s.bytes.clone()));
                    // The test machine keeps only its last index after a snapshot.
                    self.machines
                        .applied
                        .insert(s.group, vec![(s.index, Bytes::new())]);
                }
            }
        }
    }

    /// One ready, persisted at once; returns the messages.
    fn round(&mut self) -> Vec<courier_raft::GroupMessage> {
        let rd = self.core.ready(&mut self.machines);
        self.apply(rd.applies);
        self.wanted = rd.compact_wanted;
        if let Some(token) = rd.token {
            let first = Lsn(self.wal.len() as u64 + 1);
            for (k, p) in rd.records {
                self.wal.push((Lsn(self.wal.len() as u64 + 1), k, p));
            }
            self.core.persisted(token, first).unwrap();
        }
        rd.messages.into_values().flatten().collect()
    }

    fn settle(&mut self) {
        for _ in 0..10 {
            self.round();
        }
    }
}

fn config(id: u64) -> CoreConfig {
    CoreConfig::new(NodeId(id), 42)
}

fn recover(id: u64, wal: &Wal) -> (RaftCore, courier_raft::Recovered) {
    RaftCore::recover(
        config(id),
        wal.iter().map(|(l, k, p)| (*l, *k, p.as_slice())),
    )
    .unwrap()
}

/// A single-node node leading `groups` groups.
fn leader_of(groups: u32) -> Node {
    let mut n = Node::new(1, groups, &[1]);
    n.settle();
    for g in 0..groups {
        n.core.campaign(GroupId(g)).unwrap();
    }
    n.settle();
    for g in 0..groups {
        assert_eq!(n.core.status(GroupId(g)).unwrap().role, Role::Leader);
    }
    n
}

#[test]
fn one_batch_holds_every_group_and_applies_wait_for_persisted() {
    let mut n = leader_of(8);
    for g in 0..8 {
        n.core.propose(GroupId(g), b"x").unwrap();
    }
    let rd = n.core.ready(&mut n.machines);
    let token = rd.token.expect("a batch");
    let groups: std::collections::BTreeSet<u32> = rd
        .records
        .iter()
        .filter(|(k, _)| *k == KIND_ENTRIES)
        .map(|(k, p)| match record::decode(*k, p).unwrap() {
            Record::Entries { group, .. } => group.0,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(groups.len(), 8, "all groups' entries in the one batch");
    assert!(
        rd.applies.is_empty(),
        "nothing applied before the batch is durable"
    );
    let again = n.core.ready(&mut n.machines);
    assert!(again.applies.is_empty() && again.token.is_none());
    n.core.persisted(token, Lsn(1000)).unwrap();
    let rd = n.core.ready(&mut n.machines);
    let applied: Vec<u32> = rd
        .applies
        .iter()
        .filter_map(|a| match a {
            Apply::Entry { group, data, .. } if &data[..] == b"x" => Some(group.0),
            _ => None,
        })
        .collect();
    assert_eq!(applied, (0..8).collect::<Vec<_>>());
}

#[test]
fn persisted_out_of_order_is_refused() {
    let mut n = leader_of(1);
    n.core.propose(GroupId(0), b"a").unwrap();
    let t1 = n.core.ready(&mut n.machines).token.unwrap();
    n.core.propose(GroupId(0), b"b").unwrap();
    let t2 = n.core.ready(&mut n.machines).token.unwrap();
    assert!(matches!(
        n.core.persisted(t2, Lsn(1)),
        Err(Error::UnexpectedToken { .. })
    ));
    n.core.persisted(t1, Lsn(1)).unwrap();
    n.core.persisted(t2, Lsn(5)).unwrap();
}

#[test]
fn recovery_rebuilds_every_group_and_applies_again_in_order() {
    let mut n = leader_of(3);
    for i in 0..20u8 {
        for g in 0..3 {
            n.core.propose(GroupId(g), &[i, g as u8]).unwrap();
        }
        n.round();
    }
    n.settle();
    let (mut core, rec) = recover(1, &n.wal);
    assert_eq!(rec.groups, 3);
    assert!(rec.snapshots.is_empty() && rec.incomplete_snapshots == 0);
    let mut again = Node {
        core: RaftCore::new(config(1)),
        wal: n.wal.clone(),
        machines: Machines::default(),
        snapshots: vec![],
        wanted: vec![],
    };
    std::mem::swap(&mut again.core, &mut core);
    again.settle();
    for g in 0..3 {
        let group = GroupId(g);
        assert_eq!(again.core.commit_index(group), n.core.commit_index(group));
        assert_eq!(
            again.machines.applied[&group], n.machines.applied[&group],
            "same entries, same order"
        );
    }
}

#[test]
fn compaction_frees_the_log_and_the_wal_prefix() {
    let mut c = config(1);
    c.entries_soft_max = 10;
    c.entries_hard_max = 20;
    let mut n = Node::with_config(c, 2, &[1]);
    n.settle();
    n.core.campaign(GroupId(0)).unwrap();
    n.core.campaign(GroupId(1)).unwrap();
    n.settle();
    let mut full = None;
    for i in 0..30u8 {
        if let Err(e) = n.core.propose(GroupId(0), &[i]) {
            full = Some(e);
            break;
        }
        n.round();
    }
    assert!(
        matches!(full, Some(ProposeError::LogFull { entries: 20, .. })),
        "{full:?}"
    );
    n.settle();
    assert_eq!(n.wanted, vec![GroupId(0)]);
    assert_eq!(n.core.min_needed_lsn(), Some(Lsn(1)));
    let applied = n.machines.last(GroupId(0));
    let snap0 = n.machines.bytes(GroupId(0));
    assert_eq!(n.core.compacted_index(GroupId(0)), Some(0));
    n.core.compact(GroupId(0), applied, snap0.clone()).unwrap();
    assert_eq!(n.core.uncompacted(GroupId(0)), Some(0));
    assert_eq!(n.core.compacted_index(GroupId(0)), Some(applied));
    assert!(matches!(
        n.core.compact(GroupId(0), applied + 5, Bytes::new()),
        Err(Error::InvalidCompaction { .. })
    ));
    n.settle();
    n.core.propose(GroupId(0), b"after").unwrap();
    // Group 1 (idle) still pins the creation batch; re-checkpointing it at
    // its compaction point moves the minimum forward.
    assert_eq!(n.core.pinning_groups(), vec![GroupId(1)]);
    let idle = n.machines.last(GroupId(1));
    n.core
        .compact(GroupId(1), idle, n.machines.bytes(GroupId(1)))
        .unwrap();
    n.settle();
    let min = n.core.min_needed_lsn().unwrap();
    assert!(min > Lsn(10), "min_needed_lsn {min:?}");
    let kept: Wal = n.wal.iter().filter(|r| r.0 >= min).cloned().collect();
    let (core, rec) = recover(1, &kept);
    assert_eq!(rec.snapshots.len(), 2);
    let s0 = rec
        .snapshots
        .iter()
        .find(|s| s.group == GroupId(0))
        .unwrap();
    assert_eq!((s0.index, &s0.bytes), (applied, &snap0));
    assert_eq!(
        core.commit_index(GroupId(0)),
        n.core.commit_index(GroupId(0))
    );
}

#[test]
fn a_torn_snapshot_is_dropped_and_the_older_state_kept() {
    let mut n = leader_of(1);
    for i in 0..5u8 {
        n.core.propose(GroupId(0), &[i]).unwrap();
        n.round();
    }
    n.settle();
    let applied = n.machines.last(GroupId(0));
    let big = Bytes::from(vec![9u8; 700 * 1024]);
    n.core.compact(GroupId(0), applied, big).unwrap();
    let rd = n.core.ready(&mut n.machines);
    assert!(rd.records.len() >= 3, "two chunks, a hard state, ...");
    let mut torn = n.wal.clone();
    let (k, p) = &rd.records[0];
    torn.push((Lsn(torn.len() as u64 + 1), *k, p.clone()));
    let (core, rec) = recover(1, &torn);
    assert_eq!(rec.incomplete_snapshots, 1);
    assert!(rec.snapshots.is_empty());
    assert_eq!(
        core.commit_index(GroupId(0)),
        n.core.commit_index(GroupId(0))
    );
    assert_eq!(
        core.log_term(GroupId(0), applied),
        n.core.log_term(GroupId(0), applied)
    );
}

#[test]
fn damaged_records_are_typed_errors_naming_their_lsn() {
    let mut n = leader_of(1);
    n.core.propose(GroupId(0), b"a").unwrap();
    n.settle();
    let mut bad = n.wal.clone();
    bad[2].2[0] = 77;
    match RaftCore::recover(
        config(1),
        bad.iter().map(|(l, k, p)| (*l, *k, p.as_slice())),
    ) {
        Err(Error::Decode { lsn: 3, .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    // An entries record lost in the middle leaves a gap: inconsistent.
    let mut gap = n.wal.clone();
    let first_entries = gap.iter().position(|r| r.1 == KIND_ENTRIES).unwrap();
    gap.remove(first_entries);
    assert!(matches!(
        RaftCore::recover(
            config(1),
            gap.iter().map(|(l, k, p)| (*l, *k, p.as_slice()))
        ),
        Err(Error::Inconsistent { .. })
    ));
    // Records of a group whose snapshot (creation) is gone: inconsistent.
    let orphan: Wal = n.wal[2..].to_vec();
    assert!(matches!(
        RaftCore::recover(
            config(1),
            orphan.iter().map(|(l, k, p)| (*l, *k, p.as_slice()))
        ),
        Err(Error::Inconsistent { .. })
    ));
}

/// Three nodes, messages delivered at once between the connected ones.
fn exchange(nodes: &mut [Node], connected: &[bool]) {
    for _ in 0..30 {
        let mut inbox = Vec::new();
        for (i, n) in nodes.iter_mut().enumerate() {
            for m in n.round() {
                if connected[i] && connected[(m.msg.to - 1) as usize] {
                    inbox.push(m);
                }
            }
        }
        for m in inbox {
            let to = (m.msg.to - 1) as usize;
            nodes[to].core.step(m).unwrap();
        }
    }
}

#[test]
fn followers_refuse_naming_the_leader_and_a_lagging_one_gets_a_snapshot() {
    let voters = [1, 2, 3];
    let mut c1 = config(1);
    c1.entries_soft_max = 8;
    let mut nodes = vec![
        Node::with_config(c1, 1, &voters),
        Node::new(2, 1, &voters),
        Node::new(3, 1, &voters),
    ];
    let g = GroupId(0);
    nodes[0].core.campaign(g).unwrap();
    exchange(&mut nodes, &[true; 3]);
    assert_eq!(nodes[0].core.status(g).unwrap().role, Role::Leader);
    assert_eq!(
        nodes[1].core.propose(g, b"x"),
        Err(ProposeError::NotLeader {
            group: g,
            leader: Some(NodeId(1)),
            term: 1
        })
    );
    // Node 3 is cut off while the leader commits and compacts.
    for i in 0..20u8 {
        nodes[0].core.propose(g, &[i]).unwrap();
        exchange(&mut nodes, &[true, true, false]);
    }
    for n in nodes.iter_mut().take(2) {
        let last = n.machines.last(g);
        n.core.compact(g, last, n.machines.bytes(g)).unwrap();
    }
    exchange(&mut nodes, &[true, true, false]);
    // The leader's state machine is large: its snapshot spans two chunks.
    nodes[0].machines.pad = 700 * 1024;
    for _ in 0..10 {
        for n in nodes.iter_mut() {
            n.core.tick();
        }
        exchange(&mut nodes, &[true; 3]);
    }
    assert!(
        nodes[0].machines.asked >= 1,
        "the leader's state machine was asked"
    );
    let (group, index, bytes) = nodes[2]
        .snapshots
        .last()
        .cloned()
        .expect("node 3 installed a snapshot");
    assert_eq!(group, g);
    assert!(index >= 20);
    assert_eq!(
        (index, bytes),
        (nodes[0].machines.last(g), nodes[0].machines.bytes(g))
    );
    // The installed snapshot is durable in node 3's WAL (as a replacement,
    // in chunks) and comes back at recovery.
    let (_, rec) = recover(3, &nodes[2].wal);
    let s = rec
        .snapshots
        .iter()
        .find(|s| s.group == g)
        .expect("recovered snapshot");
    assert_eq!((s.index, &s.bytes), (index, &nodes[0].machines.bytes(g)));
    let chunks = nodes[2]
        .wal
        .iter()
        .filter(|r| r.1 == courier_raft::record::KIND_SNAPSHOT)
        .count();
    assert!(chunks >= 3, "creation + two chunks, got {chunks}");
    nodes[0].core.propose(g, b"late").unwrap();
    exchange(&mut nodes, &[true; 3]);
    assert_eq!(
        nodes[2].machines.applied[&g].last().map(|e| e.1.clone()),
        Some(Bytes::from_static(b"late"))
    );
}

/// Regression (simulation seed 129): a compaction checkpoint torn after its
/// snapshot (its hard state and re-written entries lost), then the WAL
/// deleted below what that recovery said it needs, then recovered again:
/// the entries after the compaction point come from records older than
/// the snapshot and must not be lost.
#[test]
fn a_torn_checkpoint_then_a_deleted_prefix_keeps_the_entries_after_it() {
    let mut n = leader_of(1);
    for i in 0..6u8 {
        n.core.propose(GroupId(0), &[i]).unwrap();
        n.round();
    }
    n.settle();
    let point = n.machines.last(GroupId(0)) - 2;
    // Compact group 0 two entries behind its last (the state machine is
    // allowed to lag), and lose the checkpoint's tail in a crash.
    n.core
        .compact(GroupId(0), point, Bytes::from_static(b"state"))
        .unwrap();
    let rd = n.core.ready(&mut n.machines);
    let mut wal = n.wal.clone();
    let (k, p) = &rd.records[0];
    wal.push((Lsn(wal.len() as u64 + 1), *k, p.clone()));
    let (core, _) = recover(1, &wal);
    let last = n.core.log_term(GroupId(0), point + 2);
    assert_eq!(core.log_term(GroupId(0), point + 2), last);
    // The runtime deletes what this incarnation does not need.
    let min = core.min_needed_lsn().unwrap();
    assert!(min > Lsn(3), "the creation checkpoint is deleted ({min:?})");
    let kept: Wal = wal.iter().filter(|r| r.0 >= min).cloned().collect();
    let (again, rec) = recover(1, &kept);
    assert_eq!(
        again.log_term(GroupId(0), point + 2),
        last,
        "entries after the compaction point lost"
    );
    assert_eq!(
        again.commit_index(GroupId(0)),
        core.commit_index(GroupId(0))
    );
    let s = rec
        .snapshots
        .iter()
        .find(|s| s.group == GroupId(0))
        .unwrap();
    assert_eq!((s.index, &s.bytes[..]), (point, &b"state"[..]));
}

#[test]
fn misaddressed_and_unknown_group_messages_are_typed_errors() {
    let mut n = leader_of(1);
    let mut msg = courier_raft::eraftpb::Message::default();
    msg.set_msg_type(courier_raft::eraftpb::MessageType::MsgHeartbeat);
    msg.to = 9;
    msg.from = 2;
    let m = courier_raft::GroupMessage {
        group: GroupId(0),
        msg: msg.clone(),
    };
    assert!(matches!(
        n.core.step(m),
        Err(Error::Misaddressed { to: 9, .. })
    ));
    msg.to = 1;
    let m = courier_raft::GroupMessage {
        group: GroupId(5),
        msg,
    };
    assert!(matches!(
        n.core.step(m),
        Err(Error::UnknownGroup { group: GroupId(5) })
    ));
}

/// Regression (simulation seed 3851): a deposed leader's stale suffix is
/// replaced by the new leader's entries, in a batch that also raises its
/// commit index. Torn at any record, that batch must never leave a commit
/// index that covers a stale entry (the hard state is written after the
/// entries it covers).
#[test]
fn a_torn_batch_never_commits_a_deposed_leaders_suffix() {
    let voters = [1, 2, 3];
    let g = GroupId(0);
    let mut nodes = vec![
        Node::new(1, 1, &voters),
        Node::new(2, 1, &voters),
        Node::new(3, 1, &voters),
    ];
    nodes[0].core.campaign(g).unwrap();
    exchange(&mut nodes, &[true; 3]);
    nodes[0].core.propose(g, b"committed").unwrap();
    exchange(&mut nodes, &[true; 3]);
    // Node 1 is cut off and appends a suffix nobody else gets.
    for i in 0..3u8 {
        nodes[0].core.propose(g, &[b's', i]).unwrap();
    }
    exchange(&mut nodes, &[false, true, true]);
    let stale_last = nodes[0].core.commit_index(g).unwrap() + 3;
    assert_eq!(nodes[0].core.log_term(g, stale_last), Some(1));
    // Nodes 2 and 3 elect a new leader once their election timeout passes.
    let leader = (0..60)
        .find_map(|_| {
            for n in nodes.iter_mut().skip(1) {
                n.core.tick();
            }
            exchange(&mut nodes, &[false, true, true]);
            (1..3).find(|&i| nodes[i].core.status(g).unwrap().role == Role::Leader)
        })
        .expect("a new leader");
    let term = nodes[leader].core.status(g).unwrap().term;
    assert!(term >= 2);
    for i in 0..5u8 {
        nodes[leader].core.propose(g, &[b'n', i]).unwrap();
    }
    exchange(&mut nodes, &[false, true, true]);
    // Node 1 comes back; catch the batch that replaces its suffix.
    let mut caught = None;
    for _ in 0..100 {
        for n in nodes.iter_mut() {
            n.core.tick();
        }
        let mut inbox = Vec::new();
        for n in nodes.iter_mut().skip(1) {
            inbox.extend(n.round());
        }
        let n0 = &mut nodes[0];
        let rd = n0.core.ready(&mut n0.machines);
        let replaces = rd.records.iter().any(|(k, p)| match record::decode(*k, p) {
            Ok(Record::Entries { entries, .. }) => {
                entries.iter().any(|e| e.term == 2 && e.index <= stale_last)
            }
            _ => false,
        });
        if replaces {
            caught = Some(rd.records);
            break;
        }
        nodes[0].apply(rd.applies);
        if let Some(token) = rd.token {
            let first = Lsn(nodes[0].wal.len() as u64 + 1);
            for (k, p) in rd.records {
                let lsn = Lsn(nodes[0].wal.len() as u64 + 1);
                nodes[0].wal.push((lsn, k, p));
            }
            nodes[0].core.persisted(token, first).unwrap();
        }
        inbox.extend(rd.messages.into_values().flatten());
        for m in inbox {
            let to = (m.msg.to - 1) as usize;
            nodes[to].core.step(m).unwrap();
        }
    }
    let records = caught.expect("the replacing batch");
    for cut in 0..=records.len() {
        let mut wal = nodes[0].wal.clone();
        for (k, p) in &records[..cut] {
            wal.push((Lsn(wal.len() as u64 + 1), *k, p.clone()));
        }
        let (core, _) = recover(1, &wal);
        let commit = core.commit_index(g).unwrap();
        for i in 1..=commit {
            assert_eq!(
                core.log_term(g, i),
                nodes[leader].core.log_term(g, i),
                "cut {cut}: index {i} committed with a stale term"
            );
        }
    }
}

#[test]
fn leadership_moves_to_the_node_asked_and_applied_index_follows_applies() {
    let voters = [1, 2, 3];
    let mut nodes = vec![
        Node::new(1, 1, &voters),
        Node::new(2, 1, &voters),
        Node::new(3, 1, &voters),
    ];
    let g = GroupId(0);
    nodes[0].core.campaign(g).unwrap();
    exchange(&mut nodes, &[true; 3]);
    assert_eq!(nodes[0].core.status(g).unwrap().role, Role::Leader);
    nodes[0].core.propose(g, b"a").unwrap();
    exchange(&mut nodes, &[true; 3]);
    let applied = nodes[2].core.applied_index(g).unwrap();
    assert_eq!(applied, nodes[2].machines.last(g));
    assert!(applied >= 2, "the no-op and the proposal: {applied}");
    // A transfer to a node that cannot answer blocks proposals until it
    // is abandoned.
    nodes[0].core.transfer_leader(g, NodeId(2)).unwrap();
    assert_eq!(nodes[0].core.transferring(g), Some(NodeId(2)));
    assert!(matches!(
        nodes[0].core.propose(g, b"x"),
        Err(ProposeError::Dropped { .. })
    ));
    nodes[0].core.abort_transfer(g).unwrap();
    assert_eq!(nodes[0].core.transferring(g), None);
    // Node 2 never hears of it (its "campaign now" message is lost).
    exchange(&mut nodes, &[true, false, true]);
    nodes[0].core.propose(g, b"y").unwrap();
    exchange(&mut nodes, &[true; 3]);
    assert_eq!(nodes[0].core.status(g).unwrap().role, Role::Leader);
    nodes[0].core.transfer_leader(g, NodeId(3)).unwrap();
    exchange(&mut nodes, &[true; 3]);
    let status = nodes[2].core.status(g).unwrap();
    assert_eq!(status.role, Role::Leader);
    assert_eq!(nodes[0].core.status(g).unwrap().leader, Some(NodeId(3)));
    assert!(matches!(
        nodes[0].core.propose(g, b"b"),
        Err(ProposeError::NotLeader {
            leader: Some(NodeId(3)),
            ..
        })
    ));
    assert!(nodes[2]
        .core
        .transfer_leader(GroupId(9), NodeId(1))
        .is_err());
}

/// Regression (cluster simulation seed 127): a follower installs a
/// snapshot in a ready whose batch is not durable yet, and its election
/// timeout fires meanwhile. raft's applied index is still below the
/// snapshot, and a campaign reads the entries after it, which the snapshot
/// replaced: raft panicked ("unexpected error getting unapplied entries").
#[test]
fn a_follower_ticking_while_its_snapshot_batch_is_in_flight_campaigns_only_after_it() {
    let voters = [1, 2, 3];
    let mut c1 = config(1);
    c1.entries_soft_max = 8;
    let mut nodes = vec![
        Node::with_config(c1, 1, &voters),
        Node::new(2, 1, &voters),
        Node::new(3, 1, &voters),
    ];
    let g = GroupId(0);
    nodes[0].core.campaign(g).unwrap();
    exchange(&mut nodes, &[true; 3]);
    for i in 0..20u8 {
        nodes[0].core.propose(g, &[i]).unwrap();
        exchange(&mut nodes, &[true, true, false]);
    }
    for n in nodes.iter_mut().take(2) {
        let last = n.machines.last(g);
        n.core.compact(g, last, n.machines.bytes(g)).unwrap();
    }
    exchange(&mut nodes, &[true, true, false]);
    // Node 3 rejoins; the batch that installs its snapshot is held (a slow
    // disk) while its clock runs past any election timeout, alone.
    let mut held = None;
    for _ in 0..100 {
        for n in nodes.iter_mut().take(2) {
            n.core.tick();
        }
        let mut inbox: Vec<courier_raft::GroupMessage> = Vec::new();
        for n in nodes.iter_mut().take(2) {
            inbox.extend(n.round());
        }
        let n3 = &mut nodes[2];
        let rd = n3.core.ready(&mut n3.machines);
        n3.apply(rd.applies);
        inbox.extend(rd.messages.into_values().flatten());
        if let Some(token) = rd.token {
            let snapshot = rd
                .records
                .iter()
                .any(|r| r.0 == courier_raft::record::KIND_SNAPSHOT);
            if snapshot {
                held = Some((token, rd.records));
                break;
            }
            let first = Lsn(n3.wal.len() as u64 + 1);
            for (k, p) in rd.records {
                let lsn = Lsn(n3.wal.len() as u64 + 1);
                n3.wal.push((lsn, k, p));
            }
            n3.core.persisted(token, first).unwrap();
        }
        for m in inbox {
            let to = (m.msg.to - 1) as usize;
            let _ = nodes[to].core.step(m);
        }
    }
    let (token, records) = held.expect("node 3 got a snapshot");
    for _ in 0..100 {
        nodes[2].core.tick();
    }
    assert_ne!(nodes[2].core.status(g).unwrap().role, Role::Leader);
    let n3 = &mut nodes[2];
    let first = Lsn(n3.wal.len() as u64 + 1);
    for (k, p) in records {
        let lsn = Lsn(n3.wal.len() as u64 + 1);
        n3.wal.push((lsn, k, p));
    }
    n3.core.persisted(token, first).unwrap();
    exchange(&mut nodes, &[true; 3]);
    nodes[0].core.propose(g, b"late").unwrap();
    exchange(&mut nodes, &[true; 3]);
    assert_eq!(
        nodes[2].machines.applied[&g].last().map(|e| e.1.clone()),
        Some(Bytes::from_static(b"late")),
        "node 3 caught up after its snapshot batch became durable"
    );
}

/// `leader_silent` is what lets the primary's other groups campaign at
/// once after a failover: a follower that hears its leader is not silent
/// (and a campaign of its then is refused by the others' leases, changing
/// nothing); once the leader is gone for a base election timeout, it is
/// silent and one campaign wins, with no randomized timeout waited for.
#[test]
fn a_follower_whose_leader_went_silent_wins_a_campaign_at_once() {
    let voters = [1, 2, 3];
    let mut nodes = vec![
        Node::new(1, 1, &voters),
        Node::new(2, 1, &voters),
        Node::new(3, 1, &voters),
    ];
    let g = GroupId(0);
    nodes[0].core.campaign(g).unwrap();
    exchange(&mut nodes, &[true; 3]);
    assert_eq!(nodes[0].core.status(g).unwrap().role, Role::Leader);
    assert!(!nodes[0].core.leader_silent(g), "a leader is never silent");
    assert!(!nodes[1].core.leader_silent(g));
    // A campaign while the leader is heard: refused (pre-vote, leases),
    // the term stays and the next heartbeat makes it a follower again.
    let term = nodes[0].core.status(g).unwrap().term;
    nodes[1].core.campaign(g).unwrap();
    exchange(&mut nodes, &[true; 3]);
    for _ in 0..config(1).heartbeat_ticks {
        for n in &mut nodes {
            n.core.tick();
        }
        exchange(&mut nodes, &[true; 3]);
    }
    assert_eq!(nodes[0].core.status(g).unwrap().role, Role::Leader);
    assert_eq!(nodes[0].core.status(g).unwrap().term, term);
    assert_eq!(nodes[1].core.status(g).unwrap().leader, Some(NodeId(1)));
    // Node 1 dies. Its followers tick for a base election timeout (less
    // than any randomized one, so neither campaigned on its own yet).
    let base = config(2).election_ticks;
    for _ in 0..base {
        for n in &mut nodes[1..] {
            n.core.tick();
        }
        exchange(&mut nodes, &[false, true, true]);
    }
    assert_eq!(nodes[1].core.status(g).unwrap().role, Role::Follower);
    assert!(nodes[1].core.leader_silent(g));
    nodes[1].core.campaign(g).unwrap();
    exchange(&mut nodes, &[false, true, true]);
    assert_eq!(nodes[1].core.status(g).unwrap().role, Role::Leader);
    assert_eq!(nodes[2].core.status(g).unwrap().leader, Some(NodeId(2)));
}
