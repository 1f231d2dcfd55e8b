//! Any bytes a server (or a man in the middle) can send, through the
//! client's frame decoder. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = courier_proto::decode_server(data) {
        let bytes = courier_proto::Encoder::new().server(&frame);
        assert_eq!(courier_proto::decode_server(&bytes).ok(), Some(frame));
    }
});
