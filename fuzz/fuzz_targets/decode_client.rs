//! Any bytes a client can send, through the server's frame decoder: verify
//! then copy out. Must never panic; a valid frame must re-encode and decode
//! to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = courier_proto::decode_client(data) {
        let bytes = courier_proto::Encoder::new().client(&frame);
        assert_eq!(courier_proto::decode_client(&bytes).ok(), Some(frame));
    }
});
