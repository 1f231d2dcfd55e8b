//! Replays the committed fuzz corpus of the server's HTTP and WebSocket
//! layers (fuzz/corpus/{http_route,ws_frames}) as a regression suite; every
//! crasher a fuzzer finds is added there.
#![allow(clippy::unwrap_used)]

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
