//! Any bytes as a cross-shard message in its wire form, as a node would
//! receive it from another node (see `harness/peer.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/peer.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::peer_msg(data);
});
