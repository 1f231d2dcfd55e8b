//! The checks of the `catchup_msgs` fuzz target, shared with the corpus
//! replay in `core/raft/tests/catchup_fuzz_corpus.rs` (included there with
//! `#[path]`), so the test suite checks exactly what the fuzzer checks.
//!
//! The input is decoded as every message a peer sends during a fetch or a
//! catch-up from a snapshot (`courier_raft::replica::{fetch, catchup}`):
//! never panics; what decodes re-encodes to the same bytes and stays
//! within its documented bounds; a snapshot reply fed to a download never
//! holds more than the body it announced.
#![allow(dead_code)]

use courier_raft::replica::catchup::{self, SnapshotDownload, SnapshotReply};
use courier_raft::replica::fetch;

/// Decodes `data` as each message; returns how many kinds accepted it.
pub fn messages(data: &[u8]) -> usize {
    let mut ok = 0;
    if let Ok(r) = catchup::decode_snapshot_request(data) {
        assert_eq!(catchup::encode_snapshot_request(r), data);
        ok += 1;
    }
    if let Ok(r) = catchup::decode_history_request(data) {
        assert_eq!(catchup::encode_history_request(r), data);
        ok += 1;
    }
    if let Ok(r) = catchup::decode_snapshot_reply(data) {
        assert_eq!(catchup::encode_snapshot_reply(&r), data);
        if let SnapshotReply::Piece {
            bytes, body_len, ..
        } = &r
        {
            assert!(bytes.len() as u64 <= catchup::SNAPSHOT_CHUNK_BYTES);
            assert!(*body_len <= catchup::SNAPSHOT_BYTES_MAX);
        }
        let mut d = SnapshotDownload::default();
        let _ = d.on_reply(r);
        assert!(d.held() <= catchup::SNAPSHOT_BYTES_MAX);
        ok += 1;
    }
    if let Ok(r) = catchup::decode_history_reply(data) {
        assert_eq!(catchup::encode_history_reply(&r), data);
        assert!(r.entries.len() <= catchup::HISTORY_CHUNK_ENTRIES as usize);
        assert!(r.entries.windows(2).all(|w| w[0].source < w[1].source));
        assert!(r.entries.iter().all(|e| e.source > r.after));
        ok += 1;
    }
    if let Ok(r) = fetch::decode_request(data) {
        assert_eq!(fetch::encode_request(r), data);
        ok += 1;
    }
    match fetch::decode_reply(data) {
        Ok(fetch::Reply::Gone { first_lsn }) => {
            assert_eq!(fetch::encode_gone(first_lsn), data);
            ok += 1;
        }
        Ok(fetch::Reply::Records(records)) => {
            assert!(records.windows(2).all(|w| w[0].lsn + 1 == w[1].lsn));
            ok += 1;
        }
        Err(_) => {}
    }
    ok
}
