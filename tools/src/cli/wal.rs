//! `courier wal inspect` and `courier wal verify`: print what
//! `courier_tools::walinspect` finds in a data directory. Long scans show a
//! progress line on stderr when it is a terminal.

use super::output::Out;
use courier_tools::walinspect::{
    inspect_data_dir, kind_label, LogReport, Problem, Progress, Severity,
};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The log is corrupt (exit code 1); the details were printed.
#[derive(Debug, thiserror::Error)]
#[error("the write-ahead log is corrupt: {0}")]
pub struct Corrupt(pub String);

/// A progress line on stderr, redrawn at most every 100 ms, only on a terminal.
struct ProgressLine {
    tty: bool,
    drawn: Option<Instant>,
}

impl ProgressLine {
    fn new() -> ProgressLine {
        // SAFETY: isatty(2) only inspects the descriptor.
        let tty = unsafe { libc::isatty(2) } == 1;
        ProgressLine { tty, drawn: None }
    }

    fn update(&mut self, p: Progress<'_>) {
        if !self.tty
            || self
                .drawn
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.drawn = Some(Instant::now());
        let pct = p
            .done
            .saturating_mul(100)
            .checked_div(p.total)
            .unwrap_or(100);
        let name = p.file.display().to_string();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[Kscanning {name} {pct:>3}%");
        let _ = err.flush();
    }

    fn clear(&mut self) {
        if self.tty && self.drawn.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

fn scan(dir: &Path) -> anyhow::Result<Vec<LogReport>> {
    let mut line = ProgressLine::new();
    let result = inspect_data_dir(dir, &mut |p| line.update(p));
    line.clear();
    Ok(result?)
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Repairable => "repairable",
        Severity::Corrupt => "corrupt",
    }
}

fn problem_json(shard: Option<u16>, p: &Problem) -> serde_json::Value {
    json!({
        "type": "problem",
        "shard": shard,
        "severity": severity_name(p.severity),
        "file": p.file.display().to_string(),
        "offset": p.offset,
        "reason": p.reason,
    })
}

fn problem_text(p: &Problem) -> String {
    format!(
        "  {}: {} at offset {}: {}",
        severity_name(p.severity).to_uppercase(),
        p.file.display(),
        p.offset,
        p.reason
    )
}

fn shard_json(r: &LogReport) -> serde_json::Value {
    let kinds: serde_json::Map<String, serde_json::Value> = r
        .kinds
        .iter()
        .map(|(k, n)| (kind_label(*k), json!(n)))
        .collect();
    json!({
        "type": "shard",
        "shard": r.shard,
        "dir": r.dir.display().to_string(),
        "segments": r.segments.len(),
        "snapshots": r.snapshots.len(),
        "records": r.records(),
        "lsn_first": r.lsns().map(|l| l.0),
        "lsn_last": r.lsns().map(|l| l.1),
        "kinds": kinds,
        "corrupt": r.is_corrupt(),
    })
}

fn lsn_range(lsns: Option<(u64, u64)>) -> String {
    lsns.map_or("-".to_owned(), |(a, b)| format!("{a}..={b}"))
}

/// `courier wal inspect DATA_DIR`.
pub fn inspect(out: &Out, dir: &Path) -> anyhow::Result<()> {
    let reports = scan(dir)?;
    for r in &reports {
        // People read the summary first; JSON consumers get it last, after
        // the lines it sums up.
        if !out.json {
            out.emit(shard_json(r), || inspect_summary(r))?;
        }
        for s in &r.segments {
            out.emit(
                json!({
                    "type": "segment",
                    "shard": r.shard,
                    "file": s.file.display().to_string(),
                    "number": s.header.map(|h| h.number),
                    "first_lsn": s.header.map(|h| h.first_lsn),
                    "records": s.records,
                    "lsn_first": s.lsns.map(|l| l.0),
                    "lsn_last": s.lsns.map(|l| l.1),
                    "used_bytes": s.used_bytes,
                    "file_bytes": s.file_bytes,
                }),
                || {
                    format!(
                        "  segment {}  lsn {}  {} records  {} of {} bytes used",
                        s.file
                            .file_name()
                            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                        lsn_range(s.lsns),
                        s.records,
                        s.used_bytes,
                        s.file_bytes
                    )
                },
            )?;
        }
        for s in &r.snapshots {
            out.emit(
                json!({
                    "type": "snapshot",
                    "shard": r.shard,
                    "file": s.file.display().to_string(),
                    "lsn": s.lsn,
                    "body_bytes": s.body_bytes,
                    "valid": s.valid,
                }),
                || {
                    format!(
                        "  snapshot {}  covers lsn ..={}  {} bytes  {}",
                        s.file
                            .file_name()
                            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                        s.lsn,
                        s.body_bytes,
                        if s.valid { "valid" } else { "INVALID" }
                    )
                },
            )?;
        }
        for p in &r.problems {
            out.emit(problem_json(r.shard, p), || problem_text(p))?;
        }
        if out.json {
            out.emit(shard_json(r), String::new)?;
        }
    }
    Ok(())
}

fn inspect_summary(r: &LogReport) -> String {
    let kinds: Vec<String> = r
        .kinds
        .iter()
        .map(|(k, n)| format!("{} {n}", kind_label(*k)))
        .collect();
    format!(
        "{} ({}): {} segments, {} records, lsn {}{}\n  kinds: {}",
        r.shard
            .map_or_else(|| "log".to_owned(), |k| format!("shard {k}")),
        r.dir.display(),
        r.segments.len(),
        r.records(),
        lsn_range(r.lsns()),
        if r.is_corrupt() { ", CORRUPT" } else { "" },
        if kinds.is_empty() {
            "-".to_owned()
        } else {
            kinds.join(", ")
        }
    )
}

/// `courier wal verify DATA_DIR`: exit 0 if every log would open.
pub fn verify(out: &Out, dir: &Path) -> anyhow::Result<()> {
    let reports = scan(dir)?;
    let mut first_corrupt = None;
    for r in &reports {
        for p in &r.problems {
            if p.severity == Severity::Corrupt && first_corrupt.is_none() {
                first_corrupt = Some(format!(
                    "{} at offset {}: {}",
                    p.file.display(),
                    p.offset,
                    p.reason
                ));
            }
            out.emit(problem_json(r.shard, p), || problem_text(p))?;
        }
        out.emit(shard_json(r), || {
            format!(
                "{}: {} ({} records, lsn {})",
                r.shard
                    .map_or_else(|| r.dir.display().to_string(), |k| format!("shard {k}")),
                if r.is_corrupt() { "CORRUPT" } else { "ok" },
                r.records(),
                lsn_range(r.lsns())
            )
        })?;
    }
    match first_corrupt {
        Some(place) => Err(Corrupt(place).into()),
        None => Ok(()),
    }
}
