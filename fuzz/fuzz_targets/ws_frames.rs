//! WebSocket frames as the server reads them, with the server's limits:
//! any byte stream after the upgrade. Must never panic and never yield a
//! message over the client frame limit.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for message in courier_net::gateway::read_ws_messages(data) {
        assert!(message.len() <= courier_proto::constants::CLIENT_FRAME_BYTES_MAX);
    }
});
