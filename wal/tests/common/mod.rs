//! Helpers shared by the integration tests: executors, data directories on a
//! real file system, deterministic payloads, and a small seeded PRNG.
#![allow(dead_code, clippy::unwrap_used)]

use std::{future::Future, path::PathBuf};

use courier_wal::{Lsn, Wal, WalOptions};
use glommio::{LocalExecutorBuilder, Placement};

/// Run `f` to completion on a fresh glommio executor thread.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let out = f().await;
            // Let the reactor run one more I/O cycle: files dropped (not closed)
            // at the end of `f` are closed asynchronously on the next cycle.
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            out
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Base directory for test data: `COURIER_WAL_TEST_DIR` or the system temp
/// dir, which must be on a file system with O_DIRECT (not tmpfs).
pub fn base_dir() -> PathBuf {
    let base = std::env::var_os("COURIER_WAL_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let fs = courier_wal::fs_type_name(&base);
    assert!(
        fs != "tmpfs",
        "{} is tmpfs, which has no O_DIRECT; set COURIER_WAL_TEST_DIR to a directory on a disk file system",
        base.display()
    );
    base
}

/// A fresh temporary directory on a real file system.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("courier-wal-test-")
        .tempdir_in(base_dir())
        .unwrap()
}

/// xorshift64*: small, seeded, deterministic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Deterministic payload for `(seed, lsn)`: length in `0..max_len`, content
/// derived from both, so any record can be checked knowing only its LSN.
pub fn payload(seed: u64, lsn: u64, max_len: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ lsn.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let len = rng.below(max_len) as usize;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Kind byte used with [`payload`].
pub fn kind(lsn: u64) -> u8 {
    (lsn % 251) as u8
}

/// Append `count` deterministic records, one batch at a time of `per_batch`
/// (each batch waits for durability), and return the last LSN.
pub async fn fill(wal: &Wal, seed: u64, count: u64, per_batch: u64, max_len: u64) -> Lsn {
    let mut last = wal.durable_lsn();
    let mut done = 0;
    while done < count {
        let n = per_batch.min(count - done);
        for _ in 0..n {
            let lsn = wal.next_lsn().0;
            let got = wal.append(kind(lsn), &payload(seed, lsn, max_len)).unwrap();
            assert_eq!(got.0, lsn);
            last = got;
        }
        wal.wait_durable(last).await.unwrap();
        done += n;
    }
    last
}

/// Replay `from..` and check every record against [`payload`]; returns the
/// LSNs seen (which must be consecutive from `from`).
pub async fn check_all(wal: &Wal, seed: u64, from: Lsn, max_len: u64) -> u64 {
    let mut expected = from.0;
    let mut bad = None;
    wal.replay(from, |record| {
        if record.lsn.0 != expected
            || record.kind != kind(expected)
            || record.payload != payload(seed, expected, max_len).as_slice()
            || record.payload.as_ptr() as usize % 16 != 0
        {
            bad = Some(record.lsn);
            return std::ops::ControlFlow::Break(());
        }
        expected += 1;
        std::ops::ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(bad, None, "record mismatch");
    expected - from.0
}

/// Options with tiny segments for tests.
pub fn small_options(segment_bytes: u64) -> WalOptions {
    WalOptions::small_for_tests(segment_bytes)
}
