//! Replays the committed fuzz corpus of the server's HTTP and WebSocket
//! layers, of the WAL and of peer frames between nodes
//! (fuzz/corpus/{http_route,ws_frames,handshake,wal_records,wal_recovery,
//! peer_frame}) as a regression suite, with the same checks
//! the fuzz targets make (`fuzz/harness/`); every crasher a fuzzer finds is
//! added there. (The flatbuffers decoders' corpora are replayed by
//! net/proto/tests/codec.rs.)
#![allow(clippy::unwrap_used)]

#[path = "../../fuzz/harness/handshake.rs"]
mod handshake_harness;
#[path = "../../fuzz/harness/peer_frame.rs"]
mod peer_frame_harness;
#[path = "../../fuzz/harness/wal.rs"]
mod wal_harness;

use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn http_route_corpus() {
    let inputs = corpus("http_route");
    assert!(inputs.len() >= 5);
    let mut upgrades = 0;
    for input in &inputs {
        if let courier_net::http::Route::Upgrade { head_len, .. } = courier_net::http::route(input)
        {
            assert!(head_len <= input.len());
            upgrades += 1;
        }
    }
    assert_eq!(upgrades, 2, "the two upgrade seeds must route to Upgrade");
}

#[test]
fn ws_frames_corpus() {
    let inputs = corpus("ws_frames");
    assert!(inputs.len() >= 5);
    let mut messages = 0;
    for input in &inputs {
        for m in courier_net::gateway::read_ws_messages(input) {
            assert!(m.len() <= courier_proto::constants::CLIENT_FRAME_BYTES_MAX);
            messages += 1;
        }
    }
    assert!(
        messages >= 5,
        "the well-formed seeds must decode ({messages})"
    );
}

#[test]
fn handshake_corpus() {
    let inputs = corpus("handshake");
    assert!(inputs.len() >= 5);
    let decoded: usize = inputs.iter().map(|i| handshake_harness::handshake(i)).sum();
    assert!(
        decoded >= 4,
        "the well-formed seeds must decode ({decoded})"
    );
}

#[test]
fn wal_records_corpus() {
    let inputs = corpus("wal_records");
    assert!(inputs.len() >= 5);
    for input in &inputs {
        wal_harness::records(input);
    }
}

#[test]
fn wal_recovery_corpus() {
    let inputs = corpus("wal_recovery");
    assert!(inputs.len() >= 5);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let log = dir.path().join("shard-0");
    // Exactly as the fuzz target runs it.
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .unwrap();
    for input in &inputs {
        wal_harness::recovery(input, &log, &|d| {
            executor.run(wal_harness::open_and_replay(d))
        });
    }
}

#[test]
fn peer_frame_corpus() {
    let inputs = corpus("peer_frame");
    assert!(inputs.len() >= 10);
    let decoded = inputs
        .iter()
        .filter(|i| peer_frame_harness::peer_frame(i))
        .count();
    assert_eq!(
        decoded,
        inputs.len() - 3,
        "every seed but the three malformed ones (short, version 2, header only) decodes"
    );
    // The same bytes as leader hints (kind 9): none panics; a good hint
    // and its mutations.
    let hint = courier_net::shard::LeaderHint { leader: 2, term: 9 }.encode();
    assert!(peer_frame_harness::leader_hint(&hint));
    for i in 0..hint.len() {
        let mut bad = hint.to_vec();
        bad[i] ^= 0x5a;
        assert_eq!(peer_frame_harness::leader_hint(&bad), i != 0, "byte {i}");
        assert!(!peer_frame_harness::leader_hint(&hint[..i]));
    }
    for input in &inputs {
        peer_frame_harness::leader_hint(input);
    }
}
