//! The checks of the `raft_records` fuzz target, shared with the corpus
//! replay in `core/raft/tests/fuzz_corpus.rs` (included there with
//! `#[path]`), so the test suite checks exactly what the fuzzer checks.
//!
//! The input is read twice:
//! - as one record payload, decoded as each of courier-raft's record kinds
//!   (`courier_raft::record::decode`): never panics, and an entries or
//!   hard-state record that decodes re-encodes to the same bytes;
//! - as a stream of records `[kind u8][len u16 LE][payload]`, given to
//!   `RaftCore::recover` as a WAL read back after a crash: never panics,
//!   whatever it returns.
#![allow(dead_code)]

use courier_raft::record::{self, Record, KIND_ENTRIES, KIND_HARD_STATE, KIND_SNAPSHOT};
use courier_raft::{CoreConfig, GroupId, Lsn, NodeId, RaftCore, SnapshotSource};

/// Decodes `data` as each record kind, then recovers from it as a stream.
pub fn records(data: &[u8]) {
    for kind in [KIND_ENTRIES, KIND_HARD_STATE, KIND_SNAPSHOT] {
        let Ok(r) = record::decode(kind, data) else {
            continue;
        };
        let mut again = Vec::new();
        match &r {
            Record::Entries { group, entries } => {
                record::encode_entries(*group, entries, &mut again)
            }
            Record::HardState { group, hard_state } => {
                again.push(record::encode_hard_state(*group, hard_state))
            }
            Record::SnapshotChunk { .. } => {}
        }
        if let Some((k, p)) = again.first() {
            assert_eq!((*k, &p[..]), (kind, data), "re-encoding differs");
        }
    }
    recover(data);
}

/// Splits `data` into `[kind][len u16 LE][payload]` records (a short tail
/// ends the stream, like a torn WAL) and recovers a core from them.
pub fn recover(data: &[u8]) -> Option<usize> {
    let mut stream = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let kind = rest[0];
        let len = u16::from_le_bytes([rest[1], rest[2]]) as usize;
        if rest.len() < 3 + len {
            break;
        }
        stream.push((Lsn(stream.len() as u64 + 1), kind, &rest[3..3 + len]));
        rest = &rest[3 + len..];
    }
    let config = CoreConfig::new(NodeId(1), 0);
    let (mut core, recovered) = RaftCore::recover(config, stream).ok()?;
    assert_eq!(core.groups().count(), recovered.groups);
    // What recovery accepted must run: elections time out, a single-node
    // group elects itself and commits, batches are persisted.
    let mut lsn = 1_000_000;
    for _ in 0..25 {
        core.tick();
        let rd = core.ready(&mut NoSnapshots);
        if let Some(token) = rd.token {
            let _ = core.persisted(token, Lsn(lsn));
            lsn += rd.records.len() as u64;
        }
    }
    Some(recovered.groups)
}

/// A state machine that never has a snapshot to give.
struct NoSnapshots;

impl SnapshotSource for NoSnapshots {
    fn snapshot(&mut self, _: GroupId) -> Option<(u64, courier_raft::Bytes)> {
        None
    }
}
