//! Backup while serving (`POST /admin/backup`, `courier admin backup DIR`):
//! a copy of the data directory that `courierd --data-dir DIR` starts from,
//! taken without stopping writes.
//!
//! How (single-node mode): the request lands on one shard, which checks the
//! admin token and DIR (absolute, absent or empty), creates DIR with the
//! manifest and the admin token, and posts the backup on the [`Backups`]
//! board every shard looks at once per tick. Each shard then, holding its
//! snapshot lock (so no snapshot, pruning or log truncation runs
//! meanwhile): writes a snapshot of its state, and on a thread of its own
//! copies `shard-K/history/` first and `shard-K/` (snapshots, log
//! segments) second — sealed files are hard-linked (their bytes never
//! change; a link keeps them alive after the server deletes its name), the
//! live segment of each kind is copied up to where its bytes are final
//! (taken on the shard before the copy: the store's durable end, the
//! log's last placed record once durable), zeros after — fsyncing every
//! file and directory ([`copy_shard`]). History before log matters: the store only
//! holds durable log records, so the copied store is never ahead of the
//! copied log (the boot relies on it), and the copied log reaches back to
//! what the copied store covers (the log is truncated only behind it).
//! The request answers with a JSON report once every shard is done, and
//! writes it to `DIR/BACKUP.json` last: a directory without it is not a
//! finished backup.
//!
//! What it holds: every message acknowledged before the request arrived
//! (acknowledged = durable in its shard's log, which the copy starts
//! after), and possibly some later ones: each shard is copied as of its
//! own moment, exactly like a `kill -9` stops shards at different points,
//! which recovery handles (docs/RELIABILITY.md).
//!
//! Bounds: one backup at a time (a second is refused with 409); a backup
//! that is not done within [`BACKUP_TIMEOUT`] answers 504 (the shards'
//! copies may still finish; the directory then lacks `BACKUP.json`).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How long a backup request waits for every shard.
pub const BACKUP_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the request looks whether every shard is done.
pub const BACKUP_POLL: Duration = Duration::from_millis(20);
/// The report file written last into a finished backup.
pub const BACKUP_REPORT_FILE: &str = "BACKUP.json";

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Another backup is running.
    #[error("another backup is running")]
    Busy,
    /// The target directory is not usable.
    #[error("backup directory {dir}: {reason}")]
    BadDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A shard could not take its part.
    #[error("shard {shard}: {reason}")]
    Shard {
        /// The shard.
        shard: u16,
        /// Why.
        reason: String,
    },
    /// Not done in time.
    #[error("not done within {0:?}")]
    Timeout(Duration),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { op, path, source }
}

/// What one shard copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardCopy {
    /// The snapshot the copy starts from (0: none).
    pub snapshot_lsn: u64,
    /// The log's durable LSN when the copy began.
    pub durable_lsn: u64,
    /// Files hard-linked.
    pub linked: u64,
    /// Files copied.
    pub copied: u64,
    /// Bytes copied (not counting links).
    pub bytes_copied: u64,
}

impl ShardCopy {
    /// The report's row for shard `k`.
    pub fn json(&self, k: u16) -> Value {
        json!({
            "shard": k,
            "snapshot_lsn": self.snapshot_lsn,
            "durable_lsn": self.durable_lsn,
            "files_linked": self.linked,
            "files_copied": self.copied,
            "bytes_copied": self.bytes_copied,
        })
    }
}

/// The backup every shard takes part in: shared by all shards (bounded:
/// one backup, one slot per shard).
#[derive(Default)]
pub struct Backups {
    board: Mutex<Board>,
}

#[derive(Default)]
struct Board {
    next_id: u64,
    active: Option<Active>,
}

struct Active {
    id: u64,
    dir: PathBuf,
    /// Per shard: picked up by the shard.
    taken: Vec<bool>,
    /// Per shard: its outcome.
    done: Vec<Option<Result<ShardCopy, String>>>,
}

impl Backups {
    /// Posts a backup into `dir` for `shards` shards; returns its id.
    pub fn begin(&self, dir: PathBuf, shards: u16) -> Result<u64, BackupError> {
        let mut board = self.lock();
        if board.active.is_some() {
            return Err(BackupError::Busy);
        }
        board.next_id += 1;
        let id = board.next_id;
        board.active = Some(Active {
            id,
            dir,
            taken: vec![false; usize::from(shards)],
            done: vec![None; usize::from(shards)],
        });
        Ok(id)
    }

    /// Shard `k`'s part of the running backup, once: (id, directory).
    pub fn take(&self, k: u16) -> Option<(u64, PathBuf)> {
        let mut board = self.lock();
        let active = board.active.as_mut()?;
        let taken = active.taken.get_mut(usize::from(k))?;
        if *taken {
            return None;
        }
        *taken = true;
        Some((active.id, active.dir.clone()))
    }

    /// Shard `k` finished its part of backup `id`.
    pub fn finish(&self, id: u64, k: u16, outcome: Result<ShardCopy, String>) {
        let mut board = self.lock();
        if let Some(active) = board.active.as_mut().filter(|a| a.id == id) {
            if let Some(slot) = active.done.get_mut(usize::from(k)) {
                *slot = Some(outcome);
            }
        }
    }

    /// Every shard's outcome once all are in (the backup is then over).
    pub fn outcome(&self, id: u64) -> Option<Vec<Result<ShardCopy, String>>> {
        let mut board = self.lock();
        let active = board.active.as_ref().filter(|a| a.id == id)?;
        if active.done.iter().any(Option::is_none) {
            return None;
        }
        let active = board.active.take()?;
        Some(active.done.into_iter().flatten().collect())
    }

    /// Gives up on backup `id` (timed out).
    pub fn abandon(&self, id: u64) {
        let mut board = self.lock();
        if board.active.as_ref().is_some_and(|a| a.id == id) {
            board.active = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        // A panic while holding this lock leaves plain data behind: go on.
        self.board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Checks the target: absolute, and absent or an empty directory; then
/// creates it with the data directory's manifest and admin token (mode
/// 0600) and one empty `shard-K/history/` per shard, all synced.
pub fn prepare_dir(data_dir: &Path, dir: &Path, shards: u16) -> Result<(), BackupError> {
    let bad = |reason: &str| BackupError::BadDir {
        dir: dir.to_path_buf(),
        reason: reason.to_string(),
    };
    if !dir.is_absolute() {
        return Err(bad("must be an absolute path on the server's machine"));
    }
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io("reading", dir))?;
        if entries.next().is_some() {
            return Err(bad("exists and is not empty"));
        }
    }
    if dir.starts_with(data_dir) || data_dir.starts_with(dir) {
        return Err(bad("must not be inside the data directory (or contain it)"));
    }
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    for name in ["MANIFEST", "admin.token"] {
        let from = data_dir.join(name);
        if from.exists() {
            copy_file(&from, &dir.join(name))?;
        }
    }
    for k in 0..shards {
        let shard = dir.join(format!("shard-{k}"));
        std::fs::create_dir_all(shard.join("history")).map_err(io("creating", &shard))?;
        sync_dir(&shard)?;
    }
    sync_dir(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Writes the report to `DIR/BACKUP.json` (temporary file, fsync, rename,
/// directory fsync): the mark of a finished backup.
pub fn write_report(dir: &Path, report: &Value) -> Result<(), BackupError> {
    let path = dir.join(BACKUP_REPORT_FILE);
    let tmp = dir.join(format!("{BACKUP_REPORT_FILE}.tmp"));
    std::fs::write(&tmp, format!("{report:#}\n")).map_err(io("writing", &tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
    sync_dir(dir)
}

/// Where a live segment ends: its number and the offset below which its
/// bytes never change (`Wal::active_end` once durable,
/// `HistoryStore::active_end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEnd {
    /// The segment's number.
    pub number: u64,
    /// Bytes below this offset never change.
    pub offset: u64,
}

/// Copies one shard's directory `src` (the WAL's) into `dst`: its history
/// store first, then its log and snapshots (see the module doc for why in
/// that order). `history` and `log` say where their live segments end
/// (taken before the copy, on the shard): segments below are sealed and
/// hard-linked, the live one is copied up to its end (zeros after, as the
/// server's own file after a crash), anything newer (a roll since) is
/// left out, and so is the index of a store segment sealed since. The
/// caller holds the shard's snapshot lock. Blocking: run it off the
/// shard's thread.
pub fn copy_shard(
    src: &Path,
    dst: &Path,
    history: LiveEnd,
    log: Option<LiveEnd>,
) -> Result<ShardCopy, BackupError> {
    let mut copy = ShardCopy::default();
    copy_kind(
        &src.join("history"),
        &dst.join("history"),
        "hist-",
        Some(history),
        &mut copy,
    )?;
    copy_kind(src, dst, "wal-", log, &mut copy)?;
    Ok(copy)
}

/// The number in a `PREFIX<digits>.ext` file name.
fn file_number(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.split('.').next()?.parse().ok()
}

/// Copies the files of one directory whose names start with `prefix` (and
/// the snapshots, `snap-`), as [`copy_shard`] says. Temporary files are
/// skipped.
fn copy_kind(
    src: &Path,
    dst: &Path,
    prefix: &str,
    live: Option<LiveEnd>,
    copy: &mut ShardCopy,
) -> Result<(), BackupError> {
    std::fs::create_dir_all(dst).map_err(io("creating", dst))?;
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(src).map_err(io("reading", src))? {
        let entry = entry.map_err(io("reading", src))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let wanted = name.starts_with(prefix) || name.starts_with("snap-");
        if wanted && !name.ends_with(courier_wal::format::TEMP_SUFFIX) {
            names.push(name);
        }
    }
    names.sort();
    for name in &names {
        let (from, to) = (src.join(name), dst.join(name));
        let number = file_number(name, prefix);
        let segment = name.ends_with(".seg");
        match (number, live) {
            (Some(n), Some(l)) if n > l.number || (n == l.number && !segment) => continue,
            (Some(n), Some(l)) if n == l.number => {
                copy.bytes_copied += copy_prefix(&from, &to, l.offset)?;
                copy.copied += 1;
                continue;
            }
            _ => {}
        }
        if std::fs::hard_link(&from, &to).is_err() {
            copy.bytes_copied += copy_file(&from, &to)?;
            copy.copied += 1;
        } else {
            copy.linked += 1;
        }
    }
    sync_dir(dst)
}

/// Copies the first `len` bytes of a file, keeps the file's length (zeros
/// after) and fsyncs the copy; returns the bytes copied.
fn copy_prefix(from: &Path, to: &Path, len: u64) -> Result<u64, BackupError> {
    use std::io::{Read, Write};
    let source = std::fs::File::open(from).map_err(io("opening", from))?;
    let full = source.metadata().map_err(io("reading", from))?.len();
    let mut target = std::fs::File::create(to).map_err(io("creating", to))?;
    let copied = std::io::copy(&mut source.take(len), &mut target).map_err(io("copying", from))?;
    if copied != len {
        return Err(BackupError::Io {
            op: "copying",
            path: from.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{copied} of {len} bytes"),
            ),
        });
    }
    target.flush().map_err(io("writing", to))?;
    target.set_len(full.max(len)).map_err(io("extending", to))?;
    target.sync_all().map_err(io("syncing", to))?;
    Ok(copied)
}

/// Copies a file and fsyncs the copy; returns the bytes copied.
fn copy_file(from: &Path, to: &Path) -> Result<u64, BackupError> {
    let bytes = std::fs::copy(from, to).map_err(io("copying", from))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", to))?;
    Ok(bytes)
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_backup_at_a_time_and_each_shard_takes_its_part_once() {
        let b = Backups::default();
        let id = b.begin(PathBuf::from("/x"), 2).unwrap();
        assert!(matches!(
            b.begin(PathBuf::from("/y"), 2),
            Err(BackupError::Busy)
        ));
        assert_eq!(b.take(0), Some((id, PathBuf::from("/x"))));
        assert_eq!(b.take(0), None);
        b.finish(id, 0, Ok(ShardCopy::default()));
        assert!(b.outcome(id).is_none(), "shard 1 is not done");
        assert_eq!(b.take(1), Some((id, PathBuf::from("/x"))));
        b.finish(id, 1, Err("disk".into()));
        let outcome = b.outcome(id).unwrap();
        assert_eq!(outcome.len(), 2);
        assert!(outcome[1].is_err());
        assert!(
            b.begin(PathBuf::from("/y"), 2).is_ok(),
            "the board is free again"
        );
    }

    #[test]
    fn copies_the_live_segments_up_to_their_end_links_the_sealed_ones_skips_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("src");
        std::fs::create_dir_all(src.join("history")).unwrap();
        for (name, body) in [
            ("wal-00000000000000000001.seg", "a"),
            ("wal-00000000000000000002.seg", "bb"),
            ("snap-00000000000000000007.snap", "s"),
            ("wal-00000000000000000003.seg.tmp", "t"),
            ("history/hist-00000000000000000001.seg", "h1"),
            ("history/hist-00000000000000000001.idx", "i1"),
            ("history/hist-00000000000000000002.seg", "h22"),
            ("history/hist-00000000000000000002.idx", "i2"),
            ("history/hist-00000000000000000003.seg", "h3"),
        ] {
            std::fs::write(src.join(name), body).unwrap();
        }
        let dst = root.path().join("dst");
        let history = LiveEnd {
            number: 2,
            offset: 2,
        };
        let log = LiveEnd {
            number: 2,
            offset: 1,
        };
        let copy = copy_shard(&src, &dst, history, Some(log)).unwrap();
        assert_eq!(copy.copied, 2, "the live log and store segments");
        assert_eq!(
            copy.linked, 4,
            "the sealed log and store segments, the store's index, the snapshot"
        );
        assert_eq!(copy.bytes_copied, 1 + 2);
        assert!(!dst.join("wal-00000000000000000003.seg.tmp").exists());
        assert_eq!(
            std::fs::read_to_string(dst.join("history/hist-00000000000000000001.idx")).unwrap(),
            "i1"
        );
        // The live segments: their stable prefix, zeros up to their length.
        assert_eq!(
            std::fs::read(dst.join("wal-00000000000000000002.seg")).unwrap(),
            b"b\0"
        );
        assert_eq!(
            std::fs::read(dst.join("history/hist-00000000000000000002.seg")).unwrap(),
            b"h2\0"
        );
        assert!(
            !dst.join("history/hist-00000000000000000002.idx").exists(),
            "an index sealed after the live end was taken is left out"
        );
    }

    #[test]
    fn refuses_a_relative_or_non_empty_or_nested_target() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("MANIFEST"), "m").unwrap();
        assert!(prepare_dir(&data, Path::new("rel"), 1).is_err());
        assert!(prepare_dir(&data, &data.join("b"), 1).is_err());
        let full = root.path().join("full");
        std::fs::create_dir_all(&full).unwrap();
        std::fs::write(full.join("x"), "x").unwrap();
        assert!(prepare_dir(&data, &full, 1).is_err());
        let ok = root.path().join("ok");
        prepare_dir(&data, &ok, 2).unwrap();
        assert!(ok.join("shard-1/history").is_dir());
        assert_eq!(std::fs::read_to_string(ok.join("MANIFEST")).unwrap(), "m");
    }
}
