//! Recovery against damaged files: torn tails cut at every byte offset,
//! garbage tails, bit flips and zeroed blocks in sealed segments, damage in
//! the middle of the last segment, damage after open, damage in segments that
//! open leaves to the first read (covered by the snapshot). Every case must end in
//! either the exact set of intact records or an error naming file and offset;
//! never a panic, never garbage.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{check_all, fill, kind, payload, run, small_options, temp_dir, Rng};
use courier_wal::{
    constants::{BLOCK_BYTES, SEGMENT_HEADER_BYTES},
    format::{check_record_header, segment_file_name, HeaderCheck},
    Error, Lsn, Wal,
};

const SEGMENT: u64 = 64 * 1024;
const SEED: u64 = 11;
const MAX_LEN: u64 = 900;

/// A record as found in a segment file.
#[derive(Clone, Copy, Debug)]
struct OnDisk {
    lsn: u64,
    offset: u64,
    size: u64,
    batch_lsn: u64,
}

/// Walk the records of a segment file with the public format functions.
fn records_of(path: &Path) -> Vec<OnDisk> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    while pos + 32 <= bytes.len() as u64 {
        match check_record_header(&bytes[pos as usize..], bytes.len() as u64 - pos) {
            HeaderCheck::Plausible(h) => {
                out.push(OnDisk {
                    lsn: h.lsn,
                    offset: pos,
                    size: h.record_bytes(),
                    batch_lsn: h.batch_lsn,
                });
                pos += h.record_bytes();
            }
            _ => break,
        }
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Copy every file of `from` into a fresh directory.
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = temp_dir();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

fn patch(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
}

/// Build a closed log of several 64 KiB segments; the last records are small
/// and each in its own batch.
async fn build_log(path: &Path, records: u64) -> u64 {
    let (wal, _) = Wal::open(path, 0, small_options(SEGMENT)).await.unwrap();
    fill(&wal, SEED, records, 13, MAX_LEN).await;
    // Three tiny single-record batches at the very end.
    for len in [0usize, 45, 100] {
        let lsn = wal.append(kind(0), &vec![len as u8; len]).unwrap();
        wal.wait_durable(lsn).await.unwrap();
    }
    let last = wal.durable_lsn().0;
    wal.close().await.unwrap();
    last
}

fn expect_corrupt(
    result: Result<(Wal, courier_wal::Recovered), Error>,
    file: &Path,
    offset: u64,
    what: &str,
) {
    match result {
        Err(Error::Corrupt {
            segment,
            offset: got,
            reason,
        }) => {
            assert_eq!(segment, file, "{what}: wrong file ({reason})");
            assert_eq!(got, offset, "{what}: wrong offset ({reason})");
            let shown = Error::Corrupt {
                segment,
                offset: got,
                reason,
            }
            .to_string();
            assert!(
                shown.contains(&file.display().to_string()) && shown.contains(&offset.to_string())
            );
        }
        Err(other) => panic!(
            "{what}: expected Corrupt at {}:{offset}, got {other}",
            file.display()
        ),
        Ok((_, recovered)) => panic!(
            "{what}: expected Corrupt at {}:{offset}, opened: {recovered:?}",
            file.display()
        ),
    }
}

/// Replay everything and check: regular records match their deterministic
/// payloads, the three tiny ones match theirs, LSNs are 1..next.
async fn check_recovered(wal: &Wal, total_regular: u64) -> u64 {
    let mut expected = 1;
    wal.replay(Lsn(1), |r| {
        assert_eq!(r.lsn.0, expected);
        if expected <= total_regular {
            assert_eq!(
                r.payload,
                &payload(SEED, expected, MAX_LEN)[..],
                "lsn {expected}"
            );
        } else {
            let len = [0usize, 45, 100][(expected - total_regular - 1) as usize];
            assert_eq!(r.payload, &vec![len as u8; len][..], "lsn {expected}");
        }
        expected += 1;
        std::ops::ControlFlow::Continue(())
    })
    .await
    .unwrap();
    expected - 1
}

#[test]
fn tail_cut_at_every_byte_offset_keeps_exactly_the_whole_records() {
    let original = temp_dir();
    let path = original.path().to_path_buf();
    run(move || async move {
        let last = build_log(&path, 300).await;
        let segments = segment_files(&path);
        assert!(segments.len() >= 3);
        let tail_file = segments.last().unwrap().clone();
        let records = records_of(&tail_file);
        let tail3 = &records[records.len() - 3..];
        assert_eq!(tail3[2].lsn, last);
        let from = tail3[0].offset;
        let to = tail3[2].offset + tail3[2].size + 16;
        let original = std::fs::read(&tail_file).unwrap();
        let mut checked = 0;
        for cut in from..=to {
            let copy = copy_dir(&path);
            let seg = copy.path().join(tail_file.file_name().unwrap());
            std::fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(cut)
                .unwrap();
            let whole = records.iter().filter(|r| r.offset + r.size <= cut).count() as u64;
            let first_in_file = records[0].lsn;
            let expected_next = first_in_file + whole;
            let (wal, recovered) = Wal::open(copy.path(), 0, small_options(SEGMENT))
                .await
                .unwrap();
            assert_eq!(recovered.next_lsn, Lsn(expected_next), "cut at {cut}");
            // A partial record is a torn tail if any of its bytes that remain
            // are non-zero (a cut inside an all-zero prefix looks like the end).
            let partial = records.iter().any(|r| {
                r.offset < cut
                    && cut < r.offset + r.size
                    && original[r.offset as usize..cut as usize]
                        .iter()
                        .any(|&b| b != 0)
            });
            assert_eq!(
                recovered.truncated_tail.is_some(),
                partial,
                "cut at {cut}: {:?}",
                recovered.truncated_tail
            );
            assert_eq!(check_recovered(&wal, last - 3).await, expected_next - 1);
            // New records overwrite the torn bytes; the old ones never come back.
            if cut % 5 == 0 {
                let lsn = wal.append(200, b"after-recovery").unwrap();
                wal.wait_durable(lsn).await.unwrap();
                wal.close().await.unwrap();
                let (wal, recovered) = Wal::open(copy.path(), 0, small_options(SEGMENT))
                    .await
                    .unwrap();
                assert_eq!(recovered.next_lsn, Lsn(expected_next + 1));
                assert_eq!(recovered.truncated_tail, None);
                let (k, p) = wal.read(Lsn(expected_next)).await.unwrap();
                assert_eq!((k, &p[..]), (200, &b"after-recovery"[..]));
                wal.close().await.unwrap();
            } else {
                wal.close().await.unwrap();
            }
            checked += 1;
        }
        assert!(checked > 200);
    });
}

#[test]
fn garbage_in_the_last_batch_is_truncated_and_zeroed_for_good() {
    let original = temp_dir();
    let path = original.path().to_path_buf();
    run(move || async move {
        let last = build_log(&path, 200).await;
        let tail_file = segment_files(&path).last().unwrap().clone();
        let records = records_of(&tail_file);
        let victim = *records.last().unwrap();
        assert_eq!(victim.lsn, last);
        assert_eq!(victim.batch_lsn, last, "the last record is its own batch");
        let mut rng = Rng::new(5);
        for byte in victim.offset..victim.offset + victim.size {
            let copy = copy_dir(&path);
            let seg = copy.path().join(tail_file.file_name().unwrap());
            let flip = 1u8 << rng.below(8);
            patch(&seg, |b| b[byte as usize] ^= flip);
            let (wal, recovered) = Wal::open(copy.path(), 0, small_options(SEGMENT))
                .await
                .unwrap();
            let cut = recovered
                .truncated_tail
                .clone()
                .unwrap_or_else(|| panic!("byte {byte}: not truncated"));
            assert_eq!(cut.offset, victim.offset);
            assert_eq!(recovered.next_lsn, Lsn(last), "byte {byte}");
            assert_eq!(check_recovered(&wal, last - 3).await, last - 1);
            wal.close().await.unwrap();
            // The damaged bytes were zeroed on disk.
            let bytes = std::fs::read(&seg).unwrap();
            assert!(
                bytes[victim.offset as usize..(victim.offset + victim.size) as usize]
                    .iter()
                    .all(|&b| b == 0)
            );
            let (wal, recovered) = Wal::open(copy.path(), 0, small_options(SEGMENT))
                .await
                .unwrap();
            assert_eq!(
                (recovered.next_lsn, recovered.truncated_tail),
                (Lsn(last), None)
            );
            wal.close().await.unwrap();
        }
    });
}

/// Where verification of a sealed segment (records ending at `end`) reports
/// a bit flipped in byte `byte`.
fn flip_detected_at(records: &[OnDisk], end: u64, byte: u64) -> u64 {
    if byte < SEGMENT_HEADER_BYTES {
        0
    } else if byte < end {
        records
            .iter()
            .find(|r| byte < r.offset + r.size)
            .unwrap()
            .offset
    } else if SEGMENT - end >= 32 && byte < end + 32 {
        end // read as an invalid record header
    } else {
        byte // the first non-zero byte after the last record
    }
}

#[test]
fn random_bit_flips_in_sealed_segments_are_always_detected_with_file_and_offset() {
    let original = temp_dir();
    let path = original.path().to_path_buf();
    run(move || async move {
        build_log(&path, 600).await;
        let segments = segment_files(&path);
        let sealed = &segments[..segments.len() - 1];
        assert!(sealed.len() >= 4);
        let mut rng = Rng::new(0xF11F);
        for trial in 0..250 {
            let victim = &sealed[rng.below(sealed.len() as u64) as usize];
            let records = records_of(victim);
            let end = records
                .last()
                .map_or(SEGMENT_HEADER_BYTES, |r| r.offset + r.size);
            // Half the flips in the header and records, half anywhere.
            let byte = if trial % 2 == 0 {
                rng.below(end)
            } else {
                rng.below(SEGMENT)
            };
            let bit = rng.below(8);
            let expected = flip_detected_at(&records, end, byte);
            let copy = copy_dir(&path);
            let file = copy.path().join(victim.file_name().unwrap());
            patch(&file, |b| b[byte as usize] ^= 1 << bit);
            let result = Wal::open(copy.path(), 0, small_options(SEGMENT)).await;
            expect_corrupt(
                result,
                &file,
                expected,
                &format!("trial {trial}: flip byte {byte} bit {bit}"),
            );
        }
    });
}

/// With a snapshot covering the sealed segments, open checks only their
/// headers; the first read of a segment verifies all of it. A flipped bit in
/// a record fails every read from that record on with its file and offset,
/// records before it still read (and verify), and open never returns damage
/// as data. A flip in a header still fails the open.
#[test]
fn bit_flips_in_segments_covered_by_the_snapshot_are_detected_by_reads() {
    let original = temp_dir();
    let path = original.path().to_path_buf();
    run(move || async move {
        build_log(&path, 600).await;
        let segments = segment_files(&path);
        let sealed = &segments[..segments.len() - 1];
        assert!(sealed.len() >= 4);
        let covered = records_of(sealed.last().unwrap()).last().unwrap().lsn;
        {
            let (wal, recovered) = Wal::open(&path, 0, small_options(SEGMENT)).await.unwrap();
            assert_eq!(recovered.stats.segments_deferred, 0, "no snapshot yet");
            wal.write_snapshot(Lsn(covered), b"state").await.unwrap();
            wal.close().await.unwrap();
        }
        let mut rng = Rng::new(0xDEF3);
        for trial in 0..120 {
            let victim = &sealed[rng.below(sealed.len() as u64) as usize];
            let records = records_of(victim);
            let end = records.last().unwrap().offset + records.last().unwrap().size;
            let byte = if trial % 2 == 0 {
                rng.below(end)
            } else {
                rng.below(SEGMENT)
            };
            let bit = rng.below(8);
            let at = flip_detected_at(&records, end, byte);
            let what = format!("trial {trial}: flip byte {byte} bit {bit}");
            let copy = copy_dir(&path);
            let file = copy.path().join(victim.file_name().unwrap());
            patch(&file, |b| b[byte as usize] ^= 1 << bit);
            let result = Wal::open(copy.path(), 0, small_options(SEGMENT)).await;
            if at == 0 {
                expect_corrupt(result, &file, 0, &what);
                continue;
            }
            let (wal, recovered) = result.unwrap();
            assert_eq!(
                recovered.stats.segments_deferred,
                sealed.len() as u64,
                "{what}"
            );
            assert_eq!(recovered.stats.segments_scanned, 1, "{what}");
            // Read every record of the victim, newest first (so the first read
            // that verifies the segment is not the damaged record itself).
            for r in records.iter().rev() {
                match wal.read(Lsn(r.lsn)).await {
                    Ok((_, p)) => {
                        assert!(r.offset < at, "{what}: lsn {} at {} read", r.lsn, r.offset);
                        assert_eq!(&p[..], &payload(SEED, r.lsn, MAX_LEN)[..], "{what}");
                    }
                    Err(Error::Corrupt {
                        segment, offset, ..
                    }) => {
                        assert!(r.offset >= at, "{what}: lsn {} refused", r.lsn);
                        assert_eq!((segment, offset), (file.clone(), at), "{what}");
                    }
                    Err(e) => panic!("{what}: {e}"),
                }
            }
            // Replay from the snapshot does not touch the damage.
            let replayed = wal
                .replay(recovered.replay_from(), |_| {
                    std::ops::ControlFlow::Continue(())
                })
                .await
                .unwrap();
            assert_eq!(replayed, Lsn(recovered.next_lsn.0 - 1), "{what}");
            wal.close().await.unwrap();
        }
    });
}

#[test]
fn every_zeroed_block_of_a_sealed_segment_is_detected() {
    let original = temp_dir();
    let path = original.path().to_path_buf();
    run(move || async move {
        build_log(&path, 500).await;
        let segments = segment_files(&path);
        let mut trials = 0;
        for victim in &segments[..segments.len() - 1] {
            let records = records_of(victim);
            let end = records.last().unwrap().offset + records.last().unwrap().size;
            for block in 0..end.div_ceil(BLOCK_BYTES) {
                let start = block * BLOCK_BYTES;
                let expected = if block == 0 {
                    0
                } else {
                    records
                        .iter()
                        .find(|r| r.offset + r.size > start)
                        .unwrap()
                        .offset
                };
                let copy = copy_dir(&path);
                let file = copy.path().join(victim.file_name().unwrap());
                patch(&file, |b| {
                    b[start as usize..(start + BLOCK_BYTES) as usize].fill(0)
                });
                let result = Wal::open(copy.path(), 0, small_options(SEGMENT)).await;
                expect_corrupt(
                    result,
                    &file,
                    expected,
                    &format!("{} block {block}", victim.display()),
                );
                trials += 1;
            }
        }
        assert!(trials >= 40);
    });
}

#[test]
fn damage_followed_by_later_batches_in_the_last_segment_is_corruption_not_a_torn_tail() {
    let original = temp_dir();
    let path = original.path().to_path_buf();
    run(move || async move {
        let (wal, _) = Wal::open(&path, 0, small_options(1 << 20)).await.unwrap();
        fill(&wal, SEED, 60, 1, MAX_LEN).await; // 60 single-record batches
        for i in 61..=63 {
            wal.append(kind(i), &payload(SEED, i, MAX_LEN)).unwrap();
        }
        wal.wait_durable(Lsn(63)).await.unwrap(); // one batch of 3 (or more batches)
        wal.close().await.unwrap();
        let file = segment_files(&path).pop().unwrap();
        let records = records_of(&file);
        assert_eq!(records.len(), 63);

        // A flip in record 30: records 31.. come from later batches.
        let copy = copy_dir(&path);
        let f = copy.path().join(file.file_name().unwrap());
        patch(&f, |b| b[records[29].offset as usize + 40] ^= 4);
        expect_corrupt(
            Wal::open(copy.path(), 0, small_options(1 << 20)).await,
            &f,
            records[29].offset,
            "mid flip",
        );

        // A zeroed block in the middle.
        let copy = copy_dir(&path);
        let f = copy.path().join(file.file_name().unwrap());
        let block = records[20].offset / BLOCK_BYTES * BLOCK_BYTES;
        let expected = records
            .iter()
            .find(|r| r.offset + r.size > block)
            .unwrap()
            .offset;
        patch(&f, |b| {
            b[block as usize..(block + BLOCK_BYTES) as usize].fill(0)
        });
        expect_corrupt(
            Wal::open(copy.path(), 0, small_options(1 << 20)).await,
            &f,
            expected,
            "zeroed block",
        );

        // Damage inside the newest batch is indistinguishable from a torn
        // write: that batch is dropped, nothing before it.
        let newest = records[62].batch_lsn;
        let first_of_newest = records.iter().find(|r| r.lsn == newest).unwrap();
        let copy = copy_dir(&path);
        let f = copy.path().join(file.file_name().unwrap());
        patch(&f, |b| b[first_of_newest.offset as usize + 33] ^= 1);
        let (wal, recovered) = Wal::open(copy.path(), 0, small_options(1 << 20))
            .await
            .unwrap();
        assert_eq!(recovered.next_lsn, Lsn(newest));
        assert_eq!(
            recovered.truncated_tail.unwrap().offset,
            first_of_newest.offset
        );
        assert_eq!(check_all(&wal, SEED, Lsn(1), MAX_LEN).await, newest - 1);
        wal.close().await.unwrap();
    });
}

#[test]
fn damage_after_open_is_reported_by_reads_never_returned_as_data() {
    let original = temp_dir();
    let path = original.path().to_path_buf();
    run(move || async move {
        let (wal, _) = Wal::open(&path, 0, small_options(SEGMENT)).await.unwrap();
        fill(&wal, SEED, 400, 20, MAX_LEN).await;
        let first = segment_files(&path)[0].clone();
        let records = records_of(&first);
        let victim = records[10];
        patch(&first, |b| b[victim.offset as usize + 35] ^= 0x10);
        match wal.read(Lsn(victim.lsn)).await {
            Err(Error::Corrupt {
                segment, offset, ..
            }) => assert_eq!((segment, offset), (first.clone(), victim.offset)),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        match wal
            .replay(Lsn(1), |_| std::ops::ControlFlow::Continue(()))
            .await
        {
            Err(Error::Corrupt {
                segment, offset, ..
            }) => assert_eq!((segment, offset), (first.clone(), victim.offset)),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Other records still read fine.
        let (_, p) = wal.read(Lsn(victim.lsn + 1)).await.unwrap();
        assert_eq!(&p[..], &payload(SEED, victim.lsn + 1, MAX_LEN)[..]);
        wal.close().await.unwrap();
    });
}

#[test]
fn missing_segments_bad_headers_and_leftover_temporaries() {
    let original = temp_dir();
    let path = original.path().to_path_buf();
    run(move || async move {
        build_log(&path, 400).await;
        let segments = segment_files(&path);

        // A hole in the segment sequence.
        let copy = copy_dir(&path);
        std::fs::remove_file(copy.path().join(segments[1].file_name().unwrap())).unwrap();
        assert!(matches!(
            Wal::open(copy.path(), 0, small_options(SEGMENT)).await,
            Err(Error::Inconsistent { .. })
        ));

        // A damaged header of the last segment is corruption, not a torn tail.
        let copy = copy_dir(&path);
        let f = copy
            .path()
            .join(segments.last().unwrap().file_name().unwrap());
        patch(&f, |b| b[20] ^= 1);
        expect_corrupt(
            Wal::open(copy.path(), 0, small_options(SEGMENT)).await,
            &f,
            0,
            "last header",
        );

        // The oldest segment deleted without a snapshot: records 1.. are gone.
        let copy = copy_dir(&path);
        std::fs::remove_file(copy.path().join(segments[0].file_name().unwrap())).unwrap();
        assert!(matches!(
            Wal::open(copy.path(), 0, small_options(SEGMENT)).await,
            Err(Error::Inconsistent { .. })
        ));

        // Temporary files are leftovers of interrupted work and are removed.
        let copy = copy_dir(&path);
        let tmp = copy.path().join(format!("{}.tmp", segment_file_name(999)));
        std::fs::write(&tmp, b"half-prepared").unwrap();
        let (wal, recovered) = Wal::open(copy.path(), 0, small_options(SEGMENT))
            .await
            .unwrap();
        assert!(!tmp.exists());
        assert_eq!(recovered.truncated_tail, None);
        wal.close().await.unwrap();
    });
}
