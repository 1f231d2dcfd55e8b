//! The offline WAL inspector behind `courier wal inspect` and `courier wal
//! verify`: reads a data directory (or one shard's log directory) with plain
//! file reads — no daemon, no glommio, nothing written — and reports
//! segments, record counts, LSN ranges, per-kind counts and snapshots, and
//! every place where the log is damaged.
//!
//! It applies the recovery rules of `courier-wal` (docs/WAL.md) with the
//! byte layout of [`courier_wal::format`]:
//! - a segment with a bad header, or a sealed (not last) segment whose
//!   records are not exactly its LSN range followed by zero bytes, is
//!   **corrupt**;
//! - in the last segment, the first invalid position is a **torn tail**
//!   (recovery will zero it) unless a valid record of a later batch
//!   (`batch_lsn` past the expected LSN) or an earlier LSN follows it, which
//!   proves the damaged record had been durable: then it is **corrupt**;
//! - segments must continue each other's LSNs, and the oldest retained one
//!   must start at LSN 1 or at most one past the newest valid snapshot.
//!
//! Memory is bounded by one read window ([`WINDOW_BYTES`]) whatever the
//! size of the files.

use courier_wal::constants::{
    RECORD_ALIGN_BYTES, RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
    SNAPSHOT_HEADER_BYTES,
};
use courier_wal::format::{
    self, check_record_header, parse_segment_file_name, parse_snapshot_file_name, verify_record,
    HeaderCheck, RecordHeader, SegmentHeader, SnapshotHeader,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes read from a file at once.
pub const WINDOW_BYTES: usize = 4 * 1024 * 1024;

const _: () = assert!(WINDOW_BYTES as u64 >= 2 * RECORD_BYTES_LIMIT);

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Recovery repairs it without losing an acknowledged record (a torn
    /// tail, a leftover temporary file, an invalid old snapshot).
    Repairable,
    /// The daemon refuses to start: data that was durable is damaged.
    Corrupt,
}

/// One finding, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// How bad.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// Byte offset in the file.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// One segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentReport {
    /// The file.
    pub file: PathBuf,
    /// Its header (`None` if the header is damaged).
    pub header: Option<SegmentHeader>,
    /// Valid records read.
    pub records: u64,
    /// First and last valid LSN, if any record.
    pub lsns: Option<(u64, u64)>,
    /// Bytes up to the end of the last valid record.
    pub used_bytes: u64,
    /// The file's length.
    pub file_bytes: u64,
}

/// One snapshot file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotReport {
    /// The file.
    pub file: PathBuf,
    /// LSN it covers (from the header, or the file name if the header is bad).
    pub lsn: u64,
    /// Body bytes.
    pub body_bytes: u64,
    /// Header and body checksums verified.
    pub valid: bool,
}

/// One shard's log directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogReport {
    /// The directory.
    pub dir: PathBuf,
    /// Shard id (from the directory name or segment headers).
    pub shard: Option<u16>,
    /// Segments in number order.
    pub segments: Vec<SegmentReport>,
    /// Snapshots in LSN order.
    pub snapshots: Vec<SnapshotReport>,
    /// Valid records per kind byte.
    pub kinds: BTreeMap<u8, u64>,
    /// Everything found wrong.
    pub problems: Vec<Problem>,
}

impl LogReport {
    /// Valid records in all segments.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// First and last valid LSN of the log.
    pub fn lsns(&self) -> Option<(u64, u64)> {
        let first = self.segments.iter().find_map(|s| s.lsns)?.0;
        let last = self.segments.iter().rev().find_map(|s| s.lsns)?.1;
        Some((first, last))
    }

    /// True if the daemon would refuse this log.
    pub fn is_corrupt(&self) -> bool {
        self.problems
            .iter()
            .any(|p| p.severity == Severity::Corrupt)
    }
}

/// Progress of a scan, for a progress line on a terminal.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    /// The file being read.
    pub file: &'a Path,
    /// Bytes of it done.
    pub done: u64,
    /// Its size.
    pub total: u64,
}

/// Why a directory could not be inspected at all (as opposed to a damaged
/// log, which is a [`Problem`]).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct InspectError {
    /// The path.
    pub path: PathBuf,
    /// What failed.
    pub reason: String,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> InspectError {
    InspectError {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The log directories under `dir`: its `shard-K` subdirectories in shard
/// order, or `dir` itself if it holds segment files.
pub fn log_dirs(dir: &Path) -> Result<Vec<PathBuf>, InspectError> {
    let mut shards = Vec::new();
    let mut has_segments = false;
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(k) = name
            .strip_prefix("shard-")
            .and_then(|k| k.parse::<u16>().ok())
        {
            if entry.path().is_dir() {
                shards.push((k, entry.path()));
            }
        } else if parse_segment_file_name(&name).is_some() {
            has_segments = true;
        }
    }
    shards.sort();
    if shards.is_empty() {
        if has_segments {
            return Ok(vec![dir.to_owned()]);
        }
        return Err(io_err(
            dir,
            "no shard-K directories or WAL segments here (expected a courierd data directory)",
        ));
    }
    Ok(shards.into_iter().map(|(_, p)| p).collect())
}

/// A bounded read window over a file.
struct Window {
    file: File,
    len: u64,
    buf: Vec<u8>,
    start: u64,
}

impl Window {
    fn new(file: File, len: u64) -> Window {
        Window {
            file,
            len,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// `n` bytes at `offset` (fewer at the end of the file).
    fn get(&mut self, offset: u64, n: u64) -> std::io::Result<&[u8]> {
        let n = n.min(self.len.saturating_sub(offset));
        let end = offset + n;
        if offset < self.start || end > self.start + self.buf.len() as u64 {
            let want = (WINDOW_BYTES as u64).max(n).min(self.len - offset) as usize;
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, offset)?;
            self.start = offset;
        }
        let at = (offset - self.start) as usize;
        Ok(&self.buf[at..at + n as usize])
    }
}

/// Inspects every log under `dir` (see [`log_dirs`]).
pub fn inspect_data_dir(
    dir: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<LogReport>, InspectError> {
    log_dirs(dir)?
        .iter()
        .map(|d| inspect_log(d, progress))
        .collect()
}

/// Inspects one shard's log directory.
pub fn inspect_log(
    dir: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<LogReport, InspectError> {
    let mut report = LogReport {
        dir: dir.to_owned(),
        shard: dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|k| k.parse().ok()),
        ..LogReport::default()
    };
    let mut segments = Vec::new();
    let mut snapshots = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = parse_segment_file_name(&name) {
            segments.push((n, entry.path()));
        } else if let Some(lsn) = parse_snapshot_file_name(&name) {
            snapshots.push((lsn, entry.path()));
        } else if name.ends_with(format::TEMP_SUFFIX) {
            report.problems.push(Problem {
                severity: Severity::Repairable,
                file: entry.path(),
                offset: 0,
                reason: "temporary file (deleted at the next start)".to_owned(),
            });
        }
    }
    segments.sort();
    snapshots.sort();
    for (lsn, path) in &snapshots {
        let snap = inspect_snapshot(path, *lsn, progress)?;
        if !snap.valid {
            report.problems.push(Problem {
                severity: Severity::Repairable,
                file: path.clone(),
                offset: 0,
                reason: "invalid snapshot (ignored at start; older state is replayed)".to_owned(),
            });
        }
        report.snapshots.push(snap);
    }
    let newest_snapshot = report
        .snapshots
        .iter()
        .filter(|s| s.valid)
        .map(|s| s.lsn)
        .max();
    let count = segments.len();
    let mut expected_next: Option<u64> = None;
    let mut previous_number: Option<u64> = None;
    for (i, (number, path)) in segments.iter().enumerate() {
        if let Some(prev) = previous_number {
            if *number != prev + 1 {
                report.problems.push(Problem {
                    severity: Severity::Corrupt,
                    file: path.clone(),
                    offset: 0,
                    reason: format!(
                        "segment {} is missing (found {prev} then {number})",
                        prev + 1
                    ),
                });
            }
        }
        previous_number = Some(*number);
        let last = i + 1 == count;
        let next_first = segments.get(i + 1).and_then(|(_, p)| read_first_lsn(p));
        let seg = inspect_segment(path, last, next_first, &mut report, progress)?;
        if let Some(h) = seg.header {
            if report.shard.is_none() {
                report.shard = Some(h.shard);
            }
            match expected_next {
                Some(want) if h.first_lsn != want => report.problems.push(Problem {
                    severity: Severity::Corrupt,
                    file: path.clone(),
                    offset: 0,
                    reason: format!(
                        "segment starts at LSN {} but the previous one ends before LSN {want}",
                        h.first_lsn
                    ),
                }),
                None if h.first_lsn > 1 && newest_snapshot.is_none_or(|s| h.first_lsn > s + 1) => {
                    report.problems.push(Problem {
                        severity: Severity::Corrupt,
                        file: path.clone(),
                        offset: 0,
                        reason: format!(
                            "the oldest segment starts at LSN {} but no valid snapshot covers LSN {}",
                            h.first_lsn,
                            h.first_lsn - 1
                        ),
                    })
                }
                _ => {}
            }
            expected_next = Some(seg.lsns.map_or(h.first_lsn, |(_, l)| l + 1));
        }
        report.segments.push(seg);
    }
    Ok(report)
}

fn read_first_lsn(path: &Path) -> Option<u64> {
    let file = File::open(path).ok()?;
    let mut block = vec![0u8; SEGMENT_HEADER_BYTES as usize];
    file.read_exact_at(&mut block, 0).ok()?;
    SegmentHeader::decode(&block).ok().map(|h| h.first_lsn)
}

fn inspect_snapshot(
    path: &Path,
    name_lsn: u64,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<SnapshotReport, InspectError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let len = file.metadata().map_err(|e| io_err(path, e))?.len();
    let mut window = Window::new(file, len);
    let mut report = SnapshotReport {
        file: path.to_owned(),
        lsn: name_lsn,
        body_bytes: 0,
        valid: false,
    };
    let block = window
        .get(0, SNAPSHOT_HEADER_BYTES)
        .map_err(|e| io_err(path, e))?;
    let Ok(header) = SnapshotHeader::decode(block) else {
        return Ok(report);
    };
    report.lsn = header.lsn;
    report.body_bytes = header.body_len;
    if SNAPSHOT_HEADER_BYTES + header.body_len > len {
        return Ok(report);
    }
    let mut crc = 0u32;
    let mut done = 0u64;
    while done < header.body_len {
        let n = (header.body_len - done).min(WINDOW_BYTES as u64);
        let bytes = window
            .get(SNAPSHOT_HEADER_BYTES + done, n)
            .map_err(|e| io_err(path, e))?;
        crc = crc32c::crc32c_append(crc, bytes);
        done += n;
        progress(Progress {
            file: path,
            done,
            total: header.body_len,
        });
    }
    report.valid = crc == header.body_crc;
    Ok(report)
}

/// What stopped a segment scan.
enum Stop {
    /// Zero bytes: the end of the written part.
    End,
    /// An invalid record at this offset.
    Invalid(u64, String),
}

fn inspect_segment(
    path: &Path,
    last: bool,
    next_first_lsn: Option<u64>,
    log: &mut LogReport,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<SegmentReport, InspectError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let len = file.metadata().map_err(|e| io_err(path, e))?.len();
    let mut window = Window::new(file, len);
    let mut report = SegmentReport {
        file: path.to_owned(),
        header: None,
        records: 0,
        lsns: None,
        used_bytes: 0,
        file_bytes: len,
    };
    let corrupt = |offset: u64, reason: String| Problem {
        severity: Severity::Corrupt,
        file: path.to_owned(),
        offset,
        reason,
    };
    let block = window
        .get(0, SEGMENT_HEADER_BYTES)
        .map_err(|e| io_err(path, e))?;
    let header = match SegmentHeader::decode(block) {
        Ok(h) => h,
        Err(reason) => {
            log.problems
                .push(corrupt(0, format!("segment header: {reason}")));
            return Ok(report);
        }
    };
    report.header = Some(header);
    let end = len.min(header.segment_bytes);
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut expected = header.first_lsn;
    let mut ticks = 0u32;
    let stop = loop {
        ticks = ticks.wrapping_add(1);
        if ticks % 4096 == 0 {
            progress(Progress {
                file: path,
                done: pos,
                total: end,
            });
        }
        if pos + RECORD_HEADER_BYTES > end {
            break Stop::End;
        }
        let bytes = window
            .get(pos, RECORD_HEADER_BYTES)
            .map_err(|e| io_err(path, e))?;
        let record = match check_record_header(bytes, end - pos) {
            HeaderCheck::Zero => break Stop::End,
            HeaderCheck::Invalid(reason) => break Stop::Invalid(pos, reason),
            HeaderCheck::Plausible(h) => h,
        };
        if let Err(reason) = read_and_verify(&mut window, pos, &record) {
            break Stop::Invalid(pos, reason.unwrap_or_else(|e| e.to_string()));
        }
        if record.lsn != expected {
            break Stop::Invalid(
                pos,
                format!(
                    "record has LSN {} where LSN {expected} was expected",
                    record.lsn
                ),
            );
        }
        *log.kinds.entry(record.kind).or_insert(0) += 1;
        report.records += 1;
        report.lsns = Some((report.lsns.map_or(record.lsn, |(f, _)| f), record.lsn));
        expected += 1;
        pos += record.record_bytes();
        report.used_bytes = pos;
    };
    progress(Progress {
        file: path,
        done: end,
        total: end,
    });
    if report.used_bytes == 0 {
        report.used_bytes = SEGMENT_HEADER_BYTES;
    }
    if !last {
        // Sealed: exactly up to the next segment's first LSN, then zeros.
        if let Stop::Invalid(offset, reason) = stop {
            log.problems.push(corrupt(offset, reason));
        } else if let Some(offset) =
            first_nonzero(&mut window, pos, end).map_err(|e| io_err(path, e))?
        {
            log.problems.push(corrupt(
                offset,
                "non-zero bytes after the last record of a sealed segment".to_owned(),
            ));
        }
        if let Some(next) = next_first_lsn {
            if next != expected {
                log.problems.push(corrupt(
                    pos,
                    format!(
                        "sealed segment ends before LSN {expected} but the next segment starts at LSN {next}"
                    ),
                ));
            }
        }
        return Ok(report);
    }
    let (offset, reason) = match stop {
        Stop::End => {
            // Zeros at the tail, but a valid record further on would mean
            // lost records in between.
            match later_record(&mut window, pos, end, expected).map_err(|e| io_err(path, e))? {
                Some((at, lsn)) => (pos, format!("zero bytes where LSN {expected} was expected, but a valid record (LSN {lsn}) follows at offset {at}")),
                None => return Ok(report),
            }
        }
        Stop::Invalid(offset, reason) => (offset, reason),
    };
    match later_record(&mut window, offset, end, expected).map_err(|e| io_err(path, e))? {
        Some((at, lsn)) => log.problems.push(corrupt(
            offset,
            format!("{reason}; a valid record of a later batch (LSN {lsn} at offset {at}) follows, so it had been durable"),
        )),
        None => log.problems.push(Problem {
            severity: Severity::Repairable,
            file: path.to_owned(),
            offset,
            reason: format!("torn tail ({reason}); recovery zeroes it from here"),
        }),
    }
    Ok(report)
}

/// Reads and verifies the record at `pos`. `Err(Ok(reason))` for a bad
/// record, `Err(Err(io))` for a read failure.
fn read_and_verify(
    window: &mut Window,
    pos: u64,
    header: &RecordHeader,
) -> Result<(), Result<String, std::io::Error>> {
    let size = header.record_bytes();
    let bytes = window.get(pos, size).map_err(Err)?;
    if (bytes.len() as u64) < size {
        return Err(Ok("record runs past the end of the file".to_owned()));
    }
    verify_record(bytes, header).map_err(Ok)
}

/// The first valid record after `from` that proves records before it were
/// durable: one of a later batch than `expected` or with an earlier LSN.
fn later_record(
    window: &mut Window,
    from: u64,
    end: u64,
    expected: u64,
) -> std::io::Result<Option<(u64, u64)>> {
    let mut pos = format::align_up(from + 1, RECORD_ALIGN_BYTES);
    while pos + RECORD_HEADER_BYTES <= end {
        let bytes = window.get(pos, RECORD_HEADER_BYTES)?;
        if let HeaderCheck::Plausible(h) = check_record_header(bytes, end - pos) {
            if (h.batch_lsn > expected || h.lsn < expected)
                && read_and_verify(window, pos, &h).is_ok()
            {
                return Ok(Some((pos, h.lsn)));
            }
        }
        pos += RECORD_ALIGN_BYTES;
    }
    Ok(None)
}

fn first_nonzero(window: &mut Window, from: u64, end: u64) -> std::io::Result<Option<u64>> {
    let mut pos = from;
    while pos < end {
        let n = (end - pos).min(WINDOW_BYTES as u64);
        let bytes = window.get(pos, n)?;
        if let Some(i) = bytes.iter().position(|&b| b != 0) {
            return Ok(Some(pos + i as u64));
        }
        pos += n;
    }
    Ok(None)
}

/// The name of a record kind (`kind-N` for kinds this build does not know).
pub fn kind_label(kind: u8) -> String {
    courier_core::record::kind_name(kind)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("kind-{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_wal::constants::BLOCK_BYTES;
    use courier_wal::format::{encode_record_header, record_bytes, seal_record, segment_file_name};

    const SEGMENT_BYTES: u64 = 64 * 1024;

    /// Writes a segment holding `records` = (lsn, batch_lsn, kind, payload).
    fn write_segment(
        dir: &Path,
        number: u64,
        first_lsn: u64,
        records: &[(u64, u64, u8, Vec<u8>)],
    ) -> PathBuf {
        let mut bytes = vec![0u8; SEGMENT_BYTES as usize];
        SegmentHeader {
            shard: 3,
            number,
            first_lsn,
            segment_bytes: SEGMENT_BYTES,
        }
        .encode(&mut bytes[..BLOCK_BYTES as usize]);
        let mut pos = SEGMENT_HEADER_BYTES as usize;
        for (lsn, batch, kind, payload) in records {
            let size = record_bytes(payload.len() as u64) as usize;
            let rec = &mut bytes[pos..pos + size];
            encode_record_header(rec, payload.len() as u32, *lsn, *batch, *kind);
            rec[32..32 + payload.len()].copy_from_slice(payload);
            seal_record(rec);
            pos += size;
        }
        let path = dir.join(segment_file_name(number));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn recs(lsns: std::ops::RangeInclusive<u64>, kind: u8) -> Vec<(u64, u64, u8, Vec<u8>)> {
        lsns.map(|l| (l, l, kind, format!("payload {l}").into_bytes()))
            .collect()
    }

    fn inspect(dir: &Path) -> LogReport {
        inspect_log(dir, &mut |_| {}).unwrap()
    }

    /// Offset of the record with `lsn` in a segment written by `write_segment`.
    fn offset_of(records: &[(u64, u64, u8, Vec<u8>)], lsn: u64) -> u64 {
        let mut pos = SEGMENT_HEADER_BYTES;
        for (l, _, _, p) in records {
            if *l == lsn {
                return pos;
            }
            pos += record_bytes(p.len() as u64);
        }
        panic!("no lsn {lsn}");
    }

    fn flip(path: &Path, offset: u64) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[offset as usize] ^= 0x40;
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn the_committed_wal_fixture_reads_back_exactly() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wal/tests/fixtures/v1");
        let r = inspect(&fixture);
        assert_eq!(r.problems, vec![]);
        assert_eq!(r.shard, Some(7));
        assert_eq!(r.records(), 12);
        assert_eq!(r.lsns(), Some((1, 12)));
        let kinds: Vec<u8> = r.kinds.keys().copied().collect();
        assert_eq!(kinds, vec![1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(r.snapshots.len(), 1);
        assert!(r.snapshots[0].valid);
        assert_eq!(r.snapshots[0].lsn, 5);
    }

    #[test]
    fn a_clean_multi_segment_log_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, 1, &recs(1..=10, 12));
        write_segment(dir.path(), 2, 11, &recs(11..=15, 13));
        let r = inspect(dir.path());
        assert_eq!(r.problems, vec![]);
        assert_eq!(r.records(), 15);
        assert_eq!(r.lsns(), Some((1, 15)));
        assert_eq!(r.kinds, BTreeMap::from([(12, 10), (13, 5)]));
        assert_eq!(kind_label(12), "MessagePosted");
        assert_eq!(kind_label(200), "kind-200");
    }

    #[test]
    fn damage_in_the_last_batch_is_a_repairable_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = recs(1..=5, 12);
        // Records 4 and 5 were one batch; 5 is torn.
        records[4].1 = 4;
        let path = write_segment(dir.path(), 1, 1, &records);
        flip(&path, offset_of(&records, 5) + 40);
        let r = inspect(dir.path());
        assert!(!r.is_corrupt(), "{:?}", r.problems);
        assert_eq!(r.problems.len(), 1);
        assert_eq!(r.problems[0].severity, Severity::Repairable);
        assert_eq!(r.problems[0].offset, offset_of(&records, 5));
        assert_eq!(r.records(), 4);
    }

    #[test]
    fn damage_followed_by_a_later_batch_is_corruption_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let records = recs(1..=5, 12);
        let path = write_segment(dir.path(), 1, 1, &records);
        let at = offset_of(&records, 3);
        flip(&path, at + 36);
        let r = inspect(dir.path());
        assert!(r.is_corrupt());
        let p = &r.problems[0];
        assert_eq!(
            (p.severity, p.offset, p.file.clone()),
            (Severity::Corrupt, at, path)
        );
        assert!(p.reason.contains("checksum"), "{}", p.reason);
    }

    #[test]
    fn any_damage_in_a_sealed_segment_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let records = recs(1..=10, 12);
        let sealed = write_segment(dir.path(), 1, 1, &records);
        write_segment(dir.path(), 2, 11, &recs(11..=12, 12));
        // The very last record of the sealed segment.
        flip(&sealed, offset_of(&records, 10) + 33);
        let r = inspect(dir.path());
        assert!(r.is_corrupt());
        assert!(r
            .problems
            .iter()
            .any(|p| p.file == sealed && p.offset == offset_of(&records, 10)));
    }

    #[test]
    fn gaps_between_segments_and_bad_headers_are_corruption() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, 1, &recs(1..=3, 12));
        write_segment(dir.path(), 2, 5, &recs(5..=6, 12));
        assert!(inspect(dir.path()).is_corrupt());
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 1, 1, &recs(1..=3, 12));
        flip(&path, 20);
        let r = inspect(dir.path());
        assert!(r.is_corrupt());
        assert_eq!(r.problems[0].offset, 0);
        // The oldest segment past LSN 1 needs a snapshot before it.
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 4, 100, &recs(100..=101, 12));
        assert!(inspect(dir.path()).is_corrupt());
    }

    #[test]
    fn a_data_directory_lists_its_shards_in_order() {
        let root = tempfile::tempdir().unwrap();
        for k in [1u16, 0, 10] {
            let d = root.path().join(format!("shard-{k}"));
            std::fs::create_dir(&d).unwrap();
            write_segment(&d, 1, 1, &recs(1..=2, 12));
        }
        std::fs::write(root.path().join("MANIFEST"), "x").unwrap();
        let reports = inspect_data_dir(root.path(), &mut |_| {}).unwrap();
        let shards: Vec<_> = reports.iter().map(|r| r.shard).collect();
        assert_eq!(shards, vec![Some(0), Some(1), Some(10)]);
        assert!(inspect_data_dir(&root.path().join("nope"), &mut |_| {}).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert!(inspect_data_dir(empty.path(), &mut |_| {}).is_err());
    }
}
