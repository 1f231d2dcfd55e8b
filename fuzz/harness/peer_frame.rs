//! The checks of the `peer_frame` fuzz target, shared with the corpus
//! replay in `net/tests/fuzz_corpus.rs`: any bytes through
//! `courier_net::shard::decode_peer` (a peer message as it arrives from
//! another node's link, kind 4) never panic, and a frame that decodes
//! encodes again to bytes that decode to the same (from, to, message);
//! the same bytes as a leader hint (kind 9, `LeaderHint::decode`) never
//! panic, and a hint that decodes encodes to the same bytes.
#![allow(dead_code)]

use courier_net::shard::{decode_peer, encode_peer, LeaderHint};

/// Decodes `data` as a peer frame; whether it decoded.
pub fn peer_frame(data: &[u8]) -> bool {
    let Ok((from, to, msg)) = decode_peer(data) else {
        return false;
    };
    let again = match encode_peer(from, to, &msg) {
        Ok(bytes) => bytes,
        Err(e) => panic!("a decoded peer frame does not encode: {e}"),
    };
    match decode_peer(&again) {
        Ok(back) => assert_eq!(
            back,
            (from, to, msg),
            "re-encoded peer frame decodes differently"
        ),
        Err(e) => panic!("a re-encoded peer frame does not decode: {e}"),
    }
    true
}

/// Decodes `data` as a leader hint; whether it decoded.
pub fn leader_hint(data: &[u8]) -> bool {
    let Ok(hint) = LeaderHint::decode(data) else {
        return false;
    };
    assert_eq!(
        &hint.encode()[..],
        data,
        "a leader hint re-encodes differently"
    );
    true
}
