//! Any bytes through courier-raft's record decoder and its recovery from a
//! WAL (see `harness/raft.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/raft.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::records(data);
});
