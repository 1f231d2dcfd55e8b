//! Any bytes through the WAL's record and header decoders
//! (`courier_wal::format`; see `harness/wal.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness/wal.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::records(data);
});
