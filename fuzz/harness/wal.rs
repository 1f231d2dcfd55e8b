//! The checks of the WAL fuzz targets, shared with the corpus replay in
//! `net/tests/fuzz_corpus.rs` (included there with `#[path]`), so the test
//! suite checks exactly what the fuzzer checks.
//!
//! - [`records`]: the record decoder of `courier_wal::format` on any bytes:
//!   headers, checksums, padding, payloads; segment and snapshot headers.
//!   Never panics; whatever verifies re-encodes to the same bytes.
//! - [`recovery`]: the bytes become the record area of a one-segment log on
//!   disk, opened by the offline inspector (`courier_tools::walinspect`) and
//!   by the real recovery (`courier_wal::Wal::open`). Neither panics, and
//!   they agree: the inspector calls the log corrupt exactly when `open`
//!   refuses it, and otherwise `open` recovers exactly the records the
//!   inspector counted, which replay returns in LSN order; after `open`
//!   repaired a torn tail, the inspector finds nothing wrong.
//!
//! Each fuzz target uses one of the two checks.
#![allow(dead_code)]

use courier_wal::constants::{BLOCK_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use courier_wal::format::{
    check_record_header, encode_record_header, record_bytes, record_payload, seal_record,
    verify_record, HeaderCheck, SegmentHeader, SnapshotHeader,
};
use std::path::Path;

/// Segment size of the recovery harness (the WAL's minimum).
pub const SEGMENT_BYTES: u64 = 64 * 1024;

/// What opening a log gave: `(next LSN, whether a torn tail was
/// truncated)`, or the error as text (`corrupt: …` for damage).
pub type Opened = Result<(u64, bool), String>;

/// Walks `data` as a segment's record area the way a scanner does.
pub fn records(data: &[u8]) {
    // Header blocks: decode, and a decoded header re-encodes identically.
    let mut block = vec![0u8; BLOCK_BYTES as usize];
    let n = data.len().min(block.len());
    block[..n].copy_from_slice(&data[..n]);
    if let Ok(h) = SegmentHeader::decode(&block) {
        let mut again = vec![0u8; BLOCK_BYTES as usize];
        h.encode(&mut again);
        assert_eq!(SegmentHeader::decode(&again), Ok(h));
    }
    if let Ok(h) = SnapshotHeader::decode(&block) {
        let mut again = vec![0u8; BLOCK_BYTES as usize];
        h.encode(&mut again);
        assert_eq!(SnapshotHeader::decode(&again), Ok(h));
    }
    // Records, back to back from offset 0 (16-byte aligned positions).
    let mut pos = 0usize;
    while pos + RECORD_HEADER_BYTES as usize <= data.len() {
        let room = (data.len() - pos) as u64;
        let header = match check_record_header(&data[pos..], room) {
            HeaderCheck::Zero | HeaderCheck::Invalid(_) => break,
            HeaderCheck::Plausible(h) => h,
        };
        let size = header.record_bytes() as usize;
        assert!(size as u64 <= room, "a plausible header must fit its room");
        let record = &data[pos..pos + size];
        if verify_record(record, &header).is_err() {
            break;
        }
        let payload = record_payload(record, &header);
        assert_eq!(payload.len(), header.len as usize);
        // Re-encode: the same bytes.
        let mut again = vec![0u8; record_bytes(u64::from(header.len)) as usize];
        encode_record_header(
            &mut again,
            header.len,
            header.lsn,
            header.batch_lsn,
            header.kind,
        );
        let start = RECORD_HEADER_BYTES as usize;
        again[start..start + payload.len()].copy_from_slice(payload);
        seal_record(&mut again);
        assert_eq!(again, record, "a verified record must re-encode to itself");
        pos += size;
    }
}

/// Writes a one-segment log for shard 0 whose record area is `data`
/// (cut or zero-padded to the segment) into `dir` (emptied first).
pub fn write_log(dir: &Path, data: &[u8]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("creating the log directory");
    let mut file = vec![0u8; SEGMENT_BYTES as usize];
    SegmentHeader {
        shard: 0,
        number: 1,
        first_lsn: 1,
        segment_bytes: SEGMENT_BYTES,
    }
    .encode(&mut file[..BLOCK_BYTES as usize]);
    let area = &mut file[SEGMENT_HEADER_BYTES as usize..];
    let n = data.len().min(area.len());
    area[..n].copy_from_slice(&data[..n]);
    std::fs::write(dir.join(courier_wal::format::segment_file_name(1)), &file)
        .expect("writing the segment");
}

/// The differential check of inspector and recovery (see the module docs).
/// `dir` must be on a file system with O_DIRECT (not tmpfs); `run` runs a
/// future to completion on a glommio executor.
pub fn recovery(data: &[u8], dir: &Path, run: &dyn Fn(&Path) -> Opened) {
    write_log(dir, data);
    let report = courier_tools::walinspect::inspect_log(dir, &mut |_| {})
        .expect("the inspector reads the directory");
    let inspected_last = report.lsns().map_or(0, |(_, last)| last);
    let opened = run(dir);
    match (&opened, report.is_corrupt()) {
        (Err(e), true) => {
            assert!(
                e.starts_with("corrupt:"),
                "recovery refused the log for another reason than corruption: {e}"
            );
        }
        (Ok((next, _)), false) => {
            assert_eq!(
                *next,
                inspected_last + 1,
                "recovery and the inspector disagree on the last record: {:?}",
                report.problems
            );
            // The repaired log is clean.
            let again = courier_tools::walinspect::inspect_log(dir, &mut |_| {})
                .expect("the inspector reads the directory");
            let problems: Vec<_> = again
                .problems
                .iter()
                .filter(|p| !p.file.to_string_lossy().ends_with(".tmp"))
                .collect();
            assert!(
                problems.is_empty(),
                "after recovery the inspector still finds {problems:?}"
            );
            assert_eq!(again.lsns().map_or(0, |(_, l)| l), inspected_last);
        }
        (Err(e), false) => panic!(
            "recovery refused a log the inspector accepts ({:?}): {e}",
            report.problems
        ),
        (Ok((next, _)), true) => panic!(
            "recovery opened (next LSN {next}) a log the inspector calls corrupt: {:?}",
            report.problems
        ),
    }
}

/// Opens the log in `dir` with the real recovery, replays every record and
/// closes it: `(next LSN, whether a tail was truncated)`, or the error.
pub async fn open_and_replay(dir: &Path) -> Opened {
    let options = courier_wal::WalOptions::small_for_tests(SEGMENT_BYTES);
    let (wal, recovered) = courier_wal::Wal::open(dir, 0, options)
        .await
        .map_err(|e| match e {
            courier_wal::Error::Corrupt { .. } | courier_wal::Error::Inconsistent { .. } => {
                format!("corrupt: {e}")
            }
            other => format!("other: {other}"),
        })?;
    let mut expected = recovered.replay_from().0;
    let end = wal
        .replay(recovered.replay_from(), |r| {
            assert_eq!(r.lsn.0, expected, "replay out of order");
            expected += 1;
            std::ops::ControlFlow::Continue(())
        })
        .await
        .map_err(|e| format!("replay after open failed: {e:?}"))?;
    let _ = end;
    assert_eq!(
        expected, recovered.next_lsn.0,
        "replay returned another count"
    );
    wal.close().await.map_err(|e| format!("close: {e:?}"))?;
    Ok((recovered.next_lsn.0, recovered.truncated_tail.is_some()))
}
