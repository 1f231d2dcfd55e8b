//! The committed format-version-1 fixture (`tests/fixtures/v1/`) must open
//! and replay exactly, and its bytes must match the layout documented in
//! `docs/WAL.md`. A format change that breaks either fails here.
//!
//! To regenerate after a *deliberate* format change (with a new version
//! number and a new fixture directory), run this test with
//! `COURIER_WAL_REGENERATE_FIXTURES=1`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{run, temp_dir};
use courier_wal::{Lsn, Wal, WalOptions};

const SHARD: u16 = 7;
const SNAPSHOT_LSN: u64 = 5;
const SNAPSHOT_BYTES: &[u8] = b"fixture snapshot v1: state after lsn 5";

/// The records of the fixture: (kind, payload), LSN = index + 1.
fn records() -> Vec<(u8, Vec<u8>)> {
    let mut out = vec![
        (1, Vec::new()),
        (2, b"a".to_vec()),
        (3, b"exactly sixteen!".to_vec()),
        (4, (0u8..=255).collect()),
        (5, vec![0xAB; 1000]),
    ];
    for i in 0..7u8 {
        out.push((
            10 + i,
            format!("message {i} in the v1 fixture").into_bytes(),
        ));
    }
    out
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn options() -> WalOptions {
    WalOptions::small_for_tests(64 * 1024)
}

fn regenerate() {
    let work = temp_dir();
    let path = work.path().to_path_buf();
    run(move || async move {
        let (wal, _) = Wal::open(&path, SHARD, options()).await.unwrap();
        for (i, (kind, payload)) in records().into_iter().enumerate() {
            // One record per batch keeps batch_lsn (and so the bytes) deterministic.
            let lsn = wal.append(kind, &payload).unwrap();
            assert_eq!(lsn, Lsn(i as u64 + 1));
            wal.wait_durable(lsn).await.unwrap();
            if lsn.0 == SNAPSHOT_LSN {
                wal.write_snapshot(lsn, SNAPSHOT_BYTES).await.unwrap();
            }
        }
        wal.close().await.unwrap();
    });
    let target = fixture_dir();
    std::fs::create_dir_all(&target).unwrap();
    for name in [
        courier_wal::format::segment_file_name(1),
        courier_wal::format::snapshot_file_name(SNAPSHOT_LSN),
    ] {
        std::fs::copy(work.path().join(&name), target.join(&name)).unwrap();
    }
}

#[test]
fn version_1_fixture_opens_replays_and_matches_the_documented_layout() {
    if std::env::var_os("COURIER_WAL_REGENERATE_FIXTURES").is_some() {
        regenerate();
    }
    let segment = std::fs::read(fixture_dir().join("wal-00000000000000000001.seg")).unwrap();
    let snapshot = std::fs::read(fixture_dir().join("snap-00000000000000000005.snap")).unwrap();

    // Segment header (docs/WAL.md, "Segment header"); all integers little-endian.
    assert_eq!(segment.len(), 64 * 1024);
    assert_eq!(&segment[0..8], b"CRWALSEG");
    assert_eq!(segment[8..12], 1u32.to_le_bytes()); // format version
    assert_eq!(segment[12..14], SHARD.to_le_bytes());
    assert_eq!(segment[16..24], 1u64.to_le_bytes()); // segment number
    assert_eq!(segment[24..32], 1u64.to_le_bytes()); // first LSN
    assert_eq!(segment[32..40], (64u64 * 1024).to_le_bytes()); // segment size
    assert!(segment[44..4096].iter().all(|&b| b == 0));

    // Records (docs/WAL.md, "Record").
    let mut pos = 4096usize;
    for (i, (kind, payload)) in records().iter().enumerate() {
        let lsn = i as u64 + 1;
        let rec = &segment[pos..];
        let len = u32::from_le_bytes(rec[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, payload.len());
        let crc = u32::from_le_bytes(rec[4..8].try_into().unwrap());
        assert_eq!(
            crc,
            crc32c::crc32c(&rec[8..32 + len]),
            "lsn {lsn}: checksum covers bytes 8..32+len"
        );
        assert_eq!(rec[8..16], lsn.to_le_bytes());
        assert_eq!(
            rec[16..24],
            lsn.to_le_bytes(),
            "batch lsn: one record per batch"
        );
        assert_eq!((rec[24], rec[25]), (*kind, 0xA5));
        assert!(rec[26..32].iter().all(|&b| b == 0));
        assert_eq!(&rec[32..32 + len], &payload[..]);
        let size = (32 + len).div_ceil(16) * 16;
        assert!(
            rec[32 + len..size].iter().all(|&b| b == 0),
            "padding is zero"
        );
        assert_eq!(pos % 16, 0);
        pos += size;
    }
    assert!(
        segment[pos..].iter().all(|&b| b == 0),
        "zero after the last record"
    );

    // Snapshot header (docs/WAL.md, "Snapshot file").
    assert_eq!(&snapshot[0..8], b"CRWALSNP");
    assert_eq!(snapshot[8..12], 1u32.to_le_bytes());
    assert_eq!(snapshot[12..14], SHARD.to_le_bytes());
    assert_eq!(snapshot[16..24], SNAPSHOT_LSN.to_le_bytes());
    assert_eq!(
        snapshot[24..32],
        (SNAPSHOT_BYTES.len() as u64).to_le_bytes()
    );
    assert_eq!(
        snapshot[32..36],
        crc32c::crc32c(SNAPSHOT_BYTES).to_le_bytes()
    );
    assert_eq!(&snapshot[4096..4096 + SNAPSHOT_BYTES.len()], SNAPSHOT_BYTES);

    // And the current code opens and replays it (on a copy: opening writes).
    let work = temp_dir();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), work.path().join(entry.file_name())).unwrap();
    }
    let path = work.path().to_path_buf();
    run(move || async move {
        let (wal, recovered) = Wal::open(&path, SHARD, options()).await.unwrap();
        let expected = records();
        assert_eq!(recovered.next_lsn, Lsn(expected.len() as u64 + 1));
        assert_eq!(recovered.truncated_tail, None);
        let snapshot = recovered.snapshot.clone().unwrap();
        assert_eq!(
            (snapshot.lsn, &snapshot.bytes[..]),
            (Lsn(SNAPSHOT_LSN), SNAPSHOT_BYTES)
        );
        let mut seen = Vec::new();
        wal.replay(Lsn(1), |r| {
            seen.push((r.lsn.0, r.kind, r.payload.to_vec()));
            std::ops::ControlFlow::Continue(())
        })
        .await
        .unwrap();
        let want: Vec<_> = expected
            .iter()
            .enumerate()
            .map(|(i, (k, p))| (i as u64 + 1, *k, p.clone()))
            .collect();
        assert_eq!(seen, want);
        let (kind, payload) = wal.read(Lsn(4)).await.unwrap();
        assert_eq!(
            (kind, &payload[..]),
            (4, &(0u8..=255).collect::<Vec<_>>()[..])
        );
        // The log goes on from the fixture.
        let lsn = wal.append(99, b"after the fixture").unwrap();
        assert_eq!(lsn, Lsn(expected.len() as u64 + 1));
        wal.wait_durable(lsn).await.unwrap();
        wal.close().await.unwrap();
    });
}
