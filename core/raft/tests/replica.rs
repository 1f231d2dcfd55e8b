//! `courier_raft::replica::Replica` driven by hand: a single-voter group
//! becomes ready, says start, and hands its own records to the state WAL
//! only once committed, in LSN order; the staging bound is a typed fatal.
//! (Three nodes under faults: `core/tests/cluster_sim.rs`.)
#![allow(clippy::unwrap_used)]

use courier_raft::replica::entry::CoreRecord;
use courier_raft::replica::{Check, Effect, FatalKind, NodeFacts, Replica, STAGED_BYTES_MAX};
use courier_raft::{CoreConfig, GroupId, Lsn, NodeId};

/// A replica, its raft WAL and the effects seen.
struct Harness {
    r: Replica,
    wal_next: u64,
    appended: Vec<CoreRecord>,
}

impl Harness {
    fn new() -> Harness {
        let config = CoreConfig::new(NodeId(1), 7);
        let r = Replica::recover(config, GroupId(0), &[1], Vec::new(), 0).unwrap();
        Harness {
            r,
            wal_next: 1,
            appended: Vec::new(),
        }
    }

    fn facts(&self) -> NodeFacts {
        NodeFacts {
            primary: Some(1),
            any_started: false,
            all_ready: self.r.ready(),
        }
    }

    /// Drives until nothing is left, persisting every raft batch at once.
    fn drive(&mut self) {
        for _ in 0..20 {
            let mut out = Vec::new();
            let facts = self.facts();
            self.r.drive(0, facts, &mut out).unwrap();
            if out.is_empty() {
                return;
            }
            for e in out {
                match e {
                    Effect::Persist(token, records) => {
                        let first = self.wal_next;
                        self.wal_next += records.len() as u64;
                        self.r.persisted(token, Lsn(first)).unwrap();
                    }
                    Effect::Append(rec) => self.appended.push(rec),
                    Effect::Replay(rec) => panic!("a leader replayed {}", rec.lsn),
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn a_single_voter_starts_and_appends_its_records_only_once_committed() {
    let mut h = Harness::new();
    let mut started = false;
    for _ in 0..100 {
        h.r.tick().unwrap();
        h.drive();
        let facts = h.facts();
        if h.r.check(facts).unwrap() == Check::Start {
            started = true;
            break;
        }
    }
    assert!(
        started,
        "the only voter leads, applies its no-op and may start"
    );
    h.r.started();
    for lsn in 1..=3u64 {
        h.r.stage(lsn, 2, vec![lsn as u8; 10]).unwrap();
    }
    assert!(!h.r.quiet());
    h.r.flush().unwrap();
    // The proposal's batch is not durable yet: nothing reaches the state
    // WAL (a single voter commits once its own raft WAL has the entry).
    let mut out = Vec::new();
    let facts = h.facts();
    h.r.drive(0, facts, &mut out).unwrap();
    assert!(!out.iter().any(|e| matches!(e, Effect::Append(_))));
    for e in out {
        if let Effect::Persist(token, records) = e {
            let first = h.wal_next;
            h.wal_next += records.len() as u64;
            h.r.persisted(token, Lsn(first)).unwrap();
        }
    }
    assert!(h.appended.is_empty());
    h.drive();
    let lsns: Vec<u64> = h.appended.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, vec![1, 2, 3], "committed, in LSN order, once each");
    assert_eq!(h.r.state_lsn(), 3);
    assert!(h.r.quiet());
}

#[test]
fn records_raft_cannot_take_beyond_the_staging_bound_are_a_demotion() {
    let mut h = Harness::new();
    h.r.stage(1, 2, vec![0; STAGED_BYTES_MAX]).unwrap();
    let f = h.r.stage(2, 2, vec![0; 1]).unwrap_err();
    assert_eq!(f.kind, FatalKind::Demoted);
}
