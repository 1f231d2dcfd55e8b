//! A node link's decoders on untrusted bytes: handshake, reply, frames and
//! frame bodies (see `harness/link.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/link.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::link_frames(data);
});
