//! Any bytes through the decoders of the fetch and catch-up messages
//! peers exchange (see `harness/catchup.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/catchup.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::messages(data);
});
