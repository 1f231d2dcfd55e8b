//! Any bytes as a peer message frame from another node's link (kind 4:
//! version, from, to, then the message's wire form; see
//! `harness/peer_frame.rs`), and as a leader hint (kind 9).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/peer_frame.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::peer_frame(data);
    harness::leader_hint(data);
});
