//! Any bytes as the record area of a one-segment log on disk, recovered by
//! `courier_wal::Wal::open` and read by the offline inspector, which must
//! agree (see `harness/wal.rs`). Files go under `$COURIER_FUZZ_DIR` (or the
//! system temporary directory), which must support O_DIRECT (not tmpfs).
#![no_main]
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

#[path = "../harness/wal.rs"]
mod harness;

thread_local! {
    static EXECUTOR: LocalExecutor = LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .expect("a glommio executor");
    static DIR: PathBuf = std::env::var_os("COURIER_FUZZ_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("courier-fuzz-wal-{}", std::process::id()));
}

fuzz_target!(|data: &[u8]| {
    DIR.with(|dir| {
        harness::recovery(data, dir, &|d| {
            EXECUTOR.with(|ex| ex.run(harness::open_and_replay(d)))
        });
    });
});
