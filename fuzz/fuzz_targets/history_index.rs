//! Any bytes through the history store's entry and index decoders
//! (`courier_wal::history::format`; see `harness/history.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/history.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::decoders(data);
});
