//! Opening a log directory: find the newest valid snapshot, check every
//! segment header, verify record by record every segment that replay needs
//! (from the one holding the first LSN after the snapshot on), rebuild their
//! sparse indexes, and repair a torn tail. Sealed segments wholly covered by
//! the snapshot are verified later, by the first read that needs them
//! ([`verify_deferred`]).
//!
//! Rules (see `docs/WAL.md`):
//! - Temporary files (`*.tmp`: a segment being prepared, a snapshot being
//!   written) never held acknowledged data and are deleted.
//! - A segment with a bad header is corruption: segments only get their final
//!   name after their header is synced.
//! - A sealed segment (not the last) must hold exactly the records from its
//!   first LSN up to the next segment's first LSN, followed by zero bytes; any
//!   deviation is corruption (at open, or at the first read of a deferred one).
//! - In the last segment, the first invalid position `X` (expected LSN `n`)
//!   is a torn tail unless a valid record written by a *later* batch
//!   (`batch_lsn > n`) or out of order (`lsn < n`) follows it: batches are
//!   written one at a time, each after the previous one is durable, so such a
//!   record proves record `n` had been durable. A torn tail is zeroed on disk
//!   (and synced) so it can never reappear; corruption fails the open with the
//!   file and offset. The last segment is always scanned at open.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    rc::Rc,
    time::{Duration, Instant},
};

use glommio::io::DmaFile;

use crate::{
    constants::{
        BLOCK_BYTES, PROBE_FILE_NAME, SCAN_CHUNK_BYTES, SEGMENT_HEADER_BYTES, ZERO_FILL_CHUNK_BYTES,
    },
    format::{
        align_down, align_up, parse_install_file_name, parse_segment_file_name,
        parse_snapshot_file_name, SegmentHeader, TEMP_SUFFIX,
    },
    options::FaultPoint,
    scan::{examine_after_tail, read_record, Chunk, Scanned},
    segment::{Segment, Verification},
    snapshot::{self, Loaded},
    state::Shared,
    writer::{install_segment, prepare_segment, ActiveSegment},
    Error, Lsn, Result,
};

/// The newest valid snapshot found when opening a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot covers every record up to and including this LSN.
    pub lsn: Lsn,
    /// The caller's bytes, checksum-verified.
    pub bytes: Vec<u8>,
}

/// A torn tail that recovery removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailTruncation {
    /// The last segment.
    pub segment: PathBuf,
    /// Offset of the first invalid byte position (the new end of the log).
    pub offset: u64,
    /// Bytes zeroed from `offset` on.
    pub bytes_zeroed: u64,
    /// Why the record at `offset` was not valid.
    pub reason: String,
}

/// A snapshot file that failed validation and was renamed to `*.invalid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSnapshot {
    /// Its new path.
    pub path: PathBuf,
    /// What was wrong.
    pub reason: String,
}

/// What [`crate::Wal::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The newest valid snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Oldest LSN still in the log (earlier ones were deleted by retention).
    pub first_lsn: Lsn,
    /// The LSN the next append will get; every LSN below it (from
    /// `first_lsn` on) is in the log and durable.
    pub next_lsn: Lsn,
    /// The torn tail that was removed, if there was one.
    pub truncated_tail: Option<TailTruncation>,
    /// Damaged snapshots that were set aside.
    pub invalid_snapshots: Vec<InvalidSnapshot>,
    /// What open read and how long it took (for logs and metrics).
    pub stats: OpenStats,
}

/// Work done by [`crate::Wal::open`], for operators: where startup time goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenStats {
    /// Retained segments.
    pub segments: u64,
    /// Segments verified record by record at open (the ones replay needs,
    /// and always the last one).
    pub segments_scanned: u64,
    /// Sealed segments wholly covered by the snapshot: only their headers and
    /// sizes were checked; their records are verified on first read.
    pub segments_deferred: u64,
    /// Records verified at open.
    pub records_verified: u64,
    /// Reading and verifying the newest valid snapshot (and setting aside
    /// damaged newer ones).
    pub snapshot_load: Duration,
    /// Checking segment headers and scanning the segments replay needs,
    /// including the torn-tail repair.
    pub segment_scan: Duration,
}

impl Recovered {
    /// Where replay should start: after the snapshot, or at the oldest record.
    pub fn replay_from(&self) -> Lsn {
        match &self.snapshot {
            Some(snapshot) => Lsn(snapshot.lsn.0 + 1),
            None => self.first_lsn,
        }
    }
}

/// Everything recovery hands to the running log.
pub(crate) struct Outcome {
    pub(crate) recovered: Recovered,
    pub(crate) segments: VecDeque<Segment>,
    pub(crate) active: ActiveSegment,
    pub(crate) snapshots: Vec<u64>,
}

struct Listing {
    segments: Vec<u64>,
    snapshots: Vec<u64>,
    installs: Vec<u64>,
    temporaries: Vec<PathBuf>,
}

async fn list(dir: &Path) -> Result<Listing> {
    let names = crate::storage::file_names(dir, false).await?;
    let mut listing = Listing {
        segments: Vec::new(),
        snapshots: Vec::new(),
        installs: Vec::new(),
        temporaries: Vec::new(),
    };
    for name in names {
        if name.ends_with(TEMP_SUFFIX) {
            listing.temporaries.push(dir.join(&name));
        } else if let Some(number) = parse_segment_file_name(&name) {
            listing.segments.push(number);
        } else if let Some(lsn) = parse_snapshot_file_name(&name) {
            listing.snapshots.push(lsn);
        } else if let Some(lsn) = parse_install_file_name(&name) {
            listing.installs.push(lsn);
        } else if name != PROBE_FILE_NAME {
            tracing::debug!(file = %name, "ignoring unknown file in the log directory");
        }
    }
    listing.segments.sort_unstable();
    listing.snapshots.sort_unstable();
    listing.installs.sort_unstable();
    Ok(listing)
}

/// Deletes the temporary files (never held acknowledged data).
async fn remove_temporaries(shared: &Shared, listing: &Listing) -> Result<()> {
    for tmp in &listing.temporaries {
        shared.storage.remove(tmp).await?;
    }
    if !listing.temporaries.is_empty() {
        shared
            .storage
            .sync_dir(&shared.dir, &shared.paths.dir)
            .await?;
    }
    Ok(())
}

/// Finishes installing a snapshot beyond the log's end
/// ([`crate::Wal::write_install`]): the newest valid install file `s`
/// replaces the whole log. Every segment and snapshot is deleted, an empty
/// segment starting at `s + 1` is created, and only then is the install
/// file renamed to the snapshot of `s` (the commit point: a crash before
/// it redoes every step, after it the log is a snapshot and an empty
/// segment after it, which the usual rules accept). A damaged install file
/// is set aside (`*.invalid`) and the log is left as it was. Returns
/// whether the listing changed.
async fn finish_install(shared: &Rc<Shared>, listing: &Listing) -> Result<bool> {
    let dir = shared.paths.dir.clone();
    let mut installed = None;
    for &lsn in listing.installs.iter().rev() {
        let path = shared.paths.install(lsn);
        match snapshot::load_at(shared, lsn, path.clone()).await? {
            Loaded::Valid(_) if installed.is_none() => installed = Some(lsn),
            Loaded::Valid(_) => shared.storage.remove(&path).await?,
            Loaded::Invalid(reason) => {
                let to = PathBuf::from(format!("{}.invalid", path.display()));
                tracing::warn!(file = %path.display(), %reason, "install file is damaged; setting it aside");
                std::fs::rename(&path, &to).map_err(|e| Error::io("rename", &path, e))?;
            }
        }
    }
    if listing.installs.is_empty() {
        return Ok(false);
    }
    let Some(lsn) = installed else {
        shared.storage.sync_dir(&shared.dir, &dir).await?;
        return Ok(true);
    };
    for &number in &listing.segments {
        shared.storage.remove(&shared.paths.segment(number)).await?;
    }
    for &old in &listing.snapshots {
        shared.storage.remove(&shared.paths.snapshot(old)).await?;
    }
    shared.storage.sync_dir(&shared.dir, &dir).await?;
    let prepared = prepare_segment(shared.clone(), 1, shared.options.segment_bytes).await?;
    drop(install_segment(shared, prepared, lsn + 1).await?);
    let from = shared.paths.install(lsn);
    let to = shared.paths.snapshot(lsn);
    std::fs::rename(&from, &to).map_err(|e| Error::io("rename", &from, e))?;
    shared.storage.sync_dir(&shared.dir, &dir).await?;
    tracing::info!(
        lsn,
        "installed a snapshot beyond the log's end: the log restarts after it"
    );
    Ok(true)
}

/// Run recovery for the log whose context is `shared` (its state still empty).
pub(crate) async fn recover(shared: &Rc<Shared>) -> Result<Outcome> {
    let dir = shared.paths.dir.clone();
    let mut stats = OpenStats::default();
    let mut listing = list(&dir).await?;
    remove_temporaries(shared, &listing).await?;
    if finish_install(shared, &listing).await? {
        listing = list(&dir).await?;
    }

    // Newest valid snapshot; damaged newer ones are set aside.
    let snapshot_started = Instant::now();
    let mut snapshot = None;
    let mut invalid_snapshots = Vec::new();
    let mut kept = listing.snapshots.clone();
    while let Some(&lsn) = kept.last() {
        match snapshot::load(shared, lsn).await? {
            Loaded::Valid(bytes) => {
                snapshot = Some(Snapshot {
                    lsn: Lsn(lsn),
                    bytes,
                });
                break;
            }
            Loaded::Invalid(reason) => {
                kept.pop();
                let from = shared.paths.snapshot(lsn);
                let to = PathBuf::from(format!("{}.invalid", from.display()));
                tracing::warn!(file = %from.display(), %reason, "snapshot is damaged; setting it aside");
                std::fs::rename(&from, &to).map_err(|e| Error::io("rename", &from, e))?;
                shared.storage.sync_dir(&shared.dir, &dir).await?;
                invalid_snapshots.push(InvalidSnapshot { path: to, reason });
            }
        }
    }

    stats.snapshot_load = snapshot_started.elapsed();
    let scan_started = Instant::now();

    if listing.segments.is_empty() {
        if !kept.is_empty() || !invalid_snapshots.is_empty() {
            return Err(Error::Inconsistent {
                dir,
                reason: "snapshots exist but no segment does".to_string(),
            });
        }
        let prepared = prepare_segment(shared.clone(), 1, shared.options.segment_bytes).await?;
        let active = install_segment(shared, prepared, 1).await?;
        let segment = Segment::new(1, 1, active.path.clone(), active.segment_bytes);
        return Ok(Outcome {
            recovered: Recovered {
                snapshot: None,
                first_lsn: Lsn(1),
                next_lsn: Lsn(1),
                truncated_tail: None,
                invalid_snapshots,
                stats: OpenStats {
                    segments: 1,
                    segment_scan: scan_started.elapsed(),
                    ..stats
                },
            },
            segments: VecDeque::from([segment]),
            active,
            snapshots: kept,
        });
    }

    for pair in listing.segments.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(Error::Inconsistent {
                dir,
                reason: format!(
                    "segment {} is missing (found {} and {})",
                    pair[0] + 1,
                    pair[0],
                    pair[1]
                ),
            });
        }
    }

    // Pass 1: headers.
    let mut opened: Vec<(Segment, Rc<DmaFile>, u64)> = Vec::with_capacity(listing.segments.len());
    let last_index = listing.segments.len() - 1;
    for (i, &number) in listing.segments.iter().enumerate() {
        let path = shared.paths.segment(number);
        let file = if i == last_index {
            shared
                .storage
                .open_active(&path, shared.options.sync)
                .await?
        } else {
            shared.storage.open_read(&path).await?
        };
        let file_len = file
            .file_size()
            .await
            .map_err(|e| Error::io("stat", &path, e))?;
        if file_len < BLOCK_BYTES {
            return Err(Error::corrupt(
                &path,
                0,
                format!("file of {file_len} bytes has no complete header"),
            ));
        }
        let block = shared.storage.read(&file, &path, 0, BLOCK_BYTES).await?;
        let header =
            SegmentHeader::decode(&block).map_err(|reason| Error::corrupt(&path, 0, reason))?;
        if header.number != number {
            return Err(Error::corrupt(
                &path,
                0,
                format!("header says segment {}", header.number),
            ));
        }
        if header.shard != shared.shard {
            return Err(Error::Inconsistent {
                dir,
                reason: format!(
                    "{} belongs to shard {}, not {}",
                    path.display(),
                    header.shard,
                    shared.shard
                ),
            });
        }
        if let Some((previous, _, _)) = opened.last() {
            if header.first_lsn <= previous.first_lsn {
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!(
                        "first lsn {} does not follow the previous segment's {}",
                        header.first_lsn, previous.first_lsn
                    ),
                ));
            }
        }
        opened.push((
            Segment::new(number, header.first_lsn, path, header.segment_bytes),
            file,
            file_len,
        ));
    }

    // Pass 2: records. A sealed segment that ends at or before the first LSN
    // replay needs is only checked for its size here; its records are
    // verified by the first read of it (`verify_deferred`).
    let replay_from = snapshot.as_ref().map_or(0, |s| s.lsn.0 + 1);
    stats.segments = opened.len() as u64;
    let mut segments = VecDeque::with_capacity(opened.len());
    let mut active = None;
    let mut truncated_tail = None;
    let next_first: Vec<Option<u64>> = (0..opened.len())
        .map(|i| opened.get(i + 1).map(|(s, _, _)| s.first_lsn))
        .collect();
    for (i, (mut segment, file, file_len)) in opened.into_iter().enumerate() {
        if let Some(next_first_lsn) = next_first[i].filter(|&n| n <= replay_from) {
            check_sealed_size(&segment, file_len)?;
            segments.push_back(Segment::deferred(
                segment.number,
                segment.first_lsn,
                segment.path,
                segment.segment_bytes,
                next_first_lsn,
            ));
            stats.segments_deferred += 1;
            continue;
        }
        stats.segments_scanned += 1;
        let mut chunk = Chunk::new(
            file.clone(),
            segment.path.clone(),
            segment.segment_bytes,
            SCAN_CHUNK_BYTES,
        );
        let stop = scan_records(shared, &mut chunk, &mut segment).await?;
        stats.records_verified += segment.next_lsn - segment.first_lsn;
        match next_first[i] {
            Some(next_first_lsn) => {
                check_sealed(shared, &mut chunk, &segment, file_len, stop, next_first_lsn).await?;
                segments.push_back(segment);
            }
            None => {
                let (tail, truncation) =
                    repair_tail(shared, &mut chunk, &segment, file_len, stop).await?;
                assert_eq!(tail, segment.end_offset);
                truncated_tail = truncation;
                let mut tail_block = vec![0u8; BLOCK_BYTES as usize];
                let block_start = align_down(tail, BLOCK_BYTES);
                if tail > block_start {
                    let prefix = (tail - block_start) as usize;
                    if !chunk
                        .fill(&shared.storage, block_start, prefix as u64)
                        .await?
                    {
                        return Err(Error::corrupt(
                            &segment.path,
                            block_start,
                            "tail block vanished while recovering",
                        ));
                    }
                    tail_block[..prefix].copy_from_slice(chunk.bytes(block_start, prefix as u64));
                }
                active = Some(ActiveSegment {
                    number: segment.number,
                    path: segment.path.clone(),
                    file: file.clone(),
                    segment_bytes: segment.segment_bytes,
                    tail,
                    tail_block,
                });
                segments.push_back(segment);
            }
        }
    }
    let active = active.expect("the last segment becomes the active one");
    let first_lsn = segments.front().map_or(1, |s| s.first_lsn);
    let next_lsn = segments.back().map_or(1, |s| s.next_lsn);

    match &snapshot {
        Some(s) if first_lsn > s.lsn.0 + 1 => {
            return Err(Error::Inconsistent {
                dir,
                reason: format!(
                    "the snapshot covers up to lsn {} but the oldest retained record is {first_lsn}: records in between are gone",
                    s.lsn
                ),
            })
        }
        Some(s) if s.lsn.0 >= next_lsn => {
            return Err(Error::Inconsistent {
                dir,
                reason: format!("the snapshot covers lsn {} but the log ends before it, at {}", s.lsn, next_lsn - 1),
            })
        }
        None if first_lsn != 1 => {
            return Err(Error::Inconsistent {
                dir,
                reason: format!("there is no snapshot and the oldest retained record is {first_lsn}, not 1"),
            })
        }
        _ => {}
    }
    Ok(Outcome {
        recovered: Recovered {
            snapshot,
            first_lsn: Lsn(first_lsn),
            next_lsn: Lsn(next_lsn),
            truncated_tail,
            invalid_snapshots,
            stats: OpenStats {
                segment_scan: scan_started.elapsed(),
                ..stats
            },
        },
        segments,
        active,
        snapshots: kept,
    })
}

/// Verify a segment that open deferred (see [`Verification::Deferred`]),
/// as open verifies a sealed segment, and install its index. Damage is
/// recorded in the segment table ([`Verification::Damaged`]) so every later
/// read of a record at or after it fails with the file and offset, and
/// earlier records stay readable; it is not an error of this call, which
/// fails only if the file cannot be read. One check runs at a time per log
/// (the others wait for it), so concurrent reads of a deferred segment scan
/// it once, with one scan buffer. A segment deleted by retention meanwhile
/// is left alone.
pub(crate) async fn verify_deferred(shared: &Shared, number: u64) -> Result<()> {
    // The gate is never closed, so acquiring fails only if the log is gone.
    let _permit = shared
        .verify_gate
        .acquire_permit(1)
        .await
        .map_err(|_| Error::Closed)?;
    let found = {
        let st = shared.state.borrow();
        st.segments
            .iter()
            .find(|s| s.number == number && s.verification == Verification::Deferred)
            .map(|s| (s.first_lsn, s.path.clone(), s.segment_bytes, s.next_lsn))
    };
    let Some((first_lsn, path, segment_bytes, next_lsn)) = found else {
        return Ok(()); // verified by another read meanwhile, or deleted
    };
    let started = Instant::now();
    let file = shared.segment_file(number, &path).await?;
    let file_len = file
        .file_size()
        .await
        .map_err(|e| Error::io("stat", &path, e))?;
    let mut scanned = Segment::new(number, first_lsn, path.clone(), segment_bytes);
    let mut chunk = Chunk::new(file, path.clone(), segment_bytes, SCAN_CHUNK_BYTES);
    let stop = scan_records(shared, &mut chunk, &mut scanned).await?;
    let verification = match check_sealed(shared, &mut chunk, &scanned, file_len, stop, next_lsn)
        .await
    {
        Ok(()) => Verification::Verified,
        Err(Error::Corrupt { offset, reason, .. }) => {
            tracing::error!(file = %path.display(), offset, %reason, first_unreadable_lsn = scanned.next_lsn, "write-ahead log segment is damaged; reads from there on fail");
            Verification::Damaged {
                lsn: scanned.next_lsn,
                offset,
                reason,
            }
        }
        Err(e) => return Err(e),
    };
    tracing::debug!(file = %path.display(), records = scanned.next_lsn - first_lsn, ms = started.elapsed().as_millis() as u64, "verified a segment deferred at open");
    let mut st = shared.state.borrow_mut();
    if let Some(segment) = st.segments.iter_mut().find(|s| s.number == number) {
        segment.index = scanned.index;
        segment.end_offset = scanned.end_offset;
        segment.verification = verification;
    }
    Ok(())
}

/// Where and why a segment scan stopped.
#[derive(Debug)]
enum Stop {
    /// All-zero header at the offset, or no room for another record header.
    End(u64),
    /// The file ends inside the record at the offset.
    Eof(u64),
    /// Invalid bytes at the offset.
    Invalid(u64, String),
}

/// Verify records from the segment start, in LSN order, noting each in the
/// segment's index; stop at the first position that is not the next record.
async fn scan_records(shared: &Shared, chunk: &mut Chunk, segment: &mut Segment) -> Result<Stop> {
    let mut pos = SEGMENT_HEADER_BYTES;
    loop {
        match read_record(chunk, &shared.storage, pos, segment.segment_bytes).await? {
            Scanned::End => return Ok(Stop::End(pos)),
            Scanned::Eof => return Ok(Stop::Eof(pos)),
            Scanned::Invalid(reason) => return Ok(Stop::Invalid(pos, reason)),
            Scanned::Record(header) => {
                if header.lsn != segment.next_lsn {
                    return Ok(Stop::Invalid(
                        pos,
                        format!("expected lsn {}, found {}", segment.next_lsn, header.lsn),
                    ));
                }
                let size = header.record_bytes();
                segment.note_record(header.lsn, pos, size);
                pos += size;
            }
        }
    }
}

/// A sealed segment file has exactly the size its header gives.
fn check_sealed_size(segment: &Segment, file_len: u64) -> Result<()> {
    if file_len == segment.segment_bytes {
        return Ok(());
    }
    Err(Error::corrupt(
        &segment.path,
        file_len.min(segment.segment_bytes),
        format!(
            "sealed segment file is {file_len} bytes, its header says {}",
            segment.segment_bytes
        ),
    ))
}

/// A sealed segment must end cleanly exactly where the next one starts.
async fn check_sealed(
    shared: &Shared,
    chunk: &mut Chunk,
    segment: &Segment,
    file_len: u64,
    stop: Stop,
    next_first_lsn: u64,
) -> Result<()> {
    let path = &segment.path;
    let end = match stop {
        Stop::End(pos) => pos,
        Stop::Eof(pos) => {
            return Err(Error::corrupt(
                path,
                pos,
                format!("sealed segment file ends at {file_len}, inside a record"),
            ))
        }
        Stop::Invalid(pos, reason) => return Err(Error::corrupt(path, pos, reason)),
    };
    if segment.next_lsn != next_first_lsn {
        return Err(Error::corrupt(
            path,
            end,
            format!(
                "sealed segment ends before lsn {} but the next segment starts at lsn {next_first_lsn}",
                segment.next_lsn
            ),
        ));
    }
    check_sealed_size(segment, file_len)?;
    // Everything after the last record was zero-filled; damage there is damage too.
    let mut pos = end;
    while pos < segment.segment_bytes {
        let len = (segment.segment_bytes - pos).min(SCAN_CHUNK_BYTES - BLOCK_BYTES);
        if !chunk.fill(&shared.storage, pos, len).await? {
            return Err(Error::corrupt(
                path,
                pos,
                "sealed segment is shorter than its size",
            ));
        }
        if let Some(at) = chunk.bytes(pos, len).iter().position(|&b| b != 0) {
            return Err(Error::corrupt(
                path,
                pos + at as u64,
                "non-zero bytes after the last record of a sealed segment",
            ));
        }
        pos += len;
    }
    Ok(())
}

enum StopKind {
    End,
    Invalid,
}

/// Decide whether what follows the last valid record of the last segment is a
/// torn tail (zero it) or corruption (fail). Returns the tail offset.
async fn repair_tail(
    shared: &Shared,
    chunk: &mut Chunk,
    segment: &Segment,
    file_len: u64,
    stop: Stop,
) -> Result<(u64, Option<TailTruncation>)> {
    let path = &segment.path;
    let (at, reason, stop_kind) = match stop {
        Stop::End(pos) => (pos, None, StopKind::End),
        Stop::Eof(pos) => (
            pos,
            Some(format!("file ends at {file_len}, inside the record")),
            StopKind::End,
        ),
        Stop::Invalid(pos, reason) => (pos, Some(reason), StopKind::Invalid),
    };
    let after = examine_after_tail(
        chunk,
        &shared.storage,
        at,
        file_len,
        segment.segment_bytes,
        segment.next_lsn,
    )
    .await?;
    if let Some((offset, header)) = after.later_batch {
        return Err(Error::corrupt(
            path,
            at,
            format!(
                "invalid record (expected lsn {}: {}) followed by a valid record (lsn {}, batch {}) at offset {offset} that was written after it was durable",
                segment.next_lsn,
                reason.as_deref().unwrap_or("zero header"),
                header.lsn,
                header.batch_lsn
            ),
        ));
    }
    // A file that simply ends (no bytes of a next record) is a clean end; a
    // partial record or stray bytes after the last valid record are a torn tail.
    let torn = matches!(stop_kind, StopKind::Invalid) || after.nonzero_end > at;
    let short = file_len < segment.segment_bytes;
    if !torn && !short {
        return Ok((at, None));
    }
    let mut truncation = None;
    if torn {
        let reason = reason.unwrap_or_else(|| "zero header followed by stray bytes".to_string());
        tracing::warn!(file = %path.display(), offset = at, bytes = after.nonzero_end.saturating_sub(at), %reason, "truncating torn tail of the write-ahead log");
        zero_range(shared, chunk, segment, at, after.nonzero_end.max(at)).await?;
        truncation = Some(TailTruncation {
            segment: path.clone(),
            offset: at,
            bytes_zeroed: after.nonzero_end.saturating_sub(at),
            reason,
        });
    }
    if short {
        // Restore the preallocated, zero-filled length so later writes stay overwrites.
        shared
            .storage
            .preallocate(
                FaultPoint::SegmentPrepare,
                &chunk.file,
                path,
                segment.segment_bytes,
            )
            .await?;
        let from = align_up(file_len, BLOCK_BYTES).max(align_up(at, BLOCK_BYTES));
        zero_blocks(shared, &chunk.file, path, from, segment.segment_bytes).await?;
    }
    shared
        .storage
        .sync(FaultPoint::SegmentSync, &chunk.file, path)
        .await?;
    Ok((at, truncation))
}

/// Overwrite `[from, to)` with zeros, keeping the bytes before `from` in its block.
async fn zero_range(
    shared: &Shared,
    chunk: &mut Chunk,
    segment: &Segment,
    from: u64,
    to: u64,
) -> Result<()> {
    let path = &segment.path;
    let block_start = align_down(from, BLOCK_BYTES);
    let mut first = chunk.file.alloc_dma_buffer(BLOCK_BYTES as usize);
    first.as_bytes_mut().fill(0);
    let prefix = from - block_start;
    if prefix > 0 {
        if !chunk.fill(&shared.storage, block_start, prefix).await? {
            return Err(Error::corrupt(
                path,
                block_start,
                "tail block vanished while recovering",
            ));
        }
        first.as_bytes_mut()[..prefix as usize].copy_from_slice(chunk.bytes(block_start, prefix));
    }
    shared
        .storage
        .write_all(None, &chunk.file, path, first, block_start)
        .await?;
    let end = align_up(to, BLOCK_BYTES).min(segment.segment_bytes);
    zero_blocks(shared, &chunk.file, path, block_start + BLOCK_BYTES, end).await
}

/// Write zero blocks over `[from, to)` (both block-aligned).
async fn zero_blocks(
    shared: &Shared,
    file: &DmaFile,
    path: &Path,
    from: u64,
    to: u64,
) -> Result<()> {
    let mut pos = from;
    while pos < to {
        let len = (to - pos).min(ZERO_FILL_CHUNK_BYTES);
        let mut buf = file.alloc_dma_buffer(len as usize);
        buf.as_bytes_mut().fill(0);
        shared.storage.write_all(None, file, path, buf, pos).await?;
        pos += len;
    }
    Ok(())
}
