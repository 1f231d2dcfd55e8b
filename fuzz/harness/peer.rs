//! The checks of the `peer_msg` fuzz target, shared with the corpus replay
//! in `core/tests/peer_wire.rs` (included there with `#[path]`), so the test
//! suite checks exactly what the fuzzer checks: any bytes through
//! `PeerMsg::decode` never panic, and a message that decodes encodes again
//! to bytes that decode to the same message.
#![allow(dead_code)]

use courier_core::api::PeerMsg;

/// Decodes `data` as a peer message; whether it decoded.
pub fn peer_msg(data: &[u8]) -> bool {
    let Ok(msg) = PeerMsg::decode(data) else {
        return false;
    };
    let again = match msg.encode() {
        Ok(bytes) => bytes,
        Err(e) => panic!("a decoded peer message does not encode: {e}"),
    };
    match PeerMsg::decode(&again) {
        Ok(back) => assert_eq!(back, msg, "re-encoded peer message decodes differently"),
        Err(e) => panic!("a re-encoded peer message does not decode: {e}"),
    }
    true
}
