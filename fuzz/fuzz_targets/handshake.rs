//! A connection's whole front door: request head, route, WebSocket frames
//! after the upgrade, client frame decoding (see `harness/handshake.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/handshake.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::handshake(data);
});
