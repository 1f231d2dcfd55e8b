//! Cursor files: where a client was in each conversation, kept on local disk
//! so a restarted client resumes where it stopped.
//!
//! Text, one conversation per line, written atomically (a temporary file,
//! `fsync`, `rename`) with mode 0600:
//!
//! ```text
//! # courier cursors v1
//! user 4294967297
//! 8589934593 42
//! ```
//!
//! The `user` line ties the file to one user: loading it for another user is
//! an error rather than a silent mix-up.

use crate::constants::CURSOR_FILE_CONVERSATIONS_MAX;
use crate::error::ClientError;
use courier_core::api::{ConversationId, Seq, UserId};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const HEADER: &str = "# courier cursors v1";

/// The contents of a cursor file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorFile {
    /// Whose cursors these are.
    pub user: UserId,
    /// `(conversation, last delivered seq)`.
    pub cursors: Vec<(ConversationId, Seq)>,
}

fn err(path: &Path, reason: impl Into<String>) -> ClientError {
    ClientError::CursorFile {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

impl CursorFile {
    /// Reads a cursor file; `Ok(None)` if it does not exist.
    pub fn load(path: &Path) -> Result<Option<CursorFile>, ClientError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(path, e.to_string())),
        };
        CursorFile::parse(&text)
            .map(Some)
            .map_err(|reason| err(path, reason))
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<CursorFile, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => return Err(format!("first line is not {HEADER:?}")),
        }
        let user = match lines.next() {
            Some((_, line)) => line
                .strip_prefix("user ")
                .and_then(|u| u.parse().ok())
                .map(UserId)
                .ok_or_else(|| "second line is not `user ID`".to_owned())?,
            None => return Err("missing `user` line".to_owned()),
        };
        let mut cursors = Vec::new();
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            if cursors.len() >= CURSOR_FILE_CONVERSATIONS_MAX {
                return Err(format!(
                    "more than {CURSOR_FILE_CONVERSATIONS_MAX} conversations"
                ));
            }
            let parsed = line
                .split_once(' ')
                .and_then(|(c, s)| Some((ConversationId(c.parse().ok()?), Seq(s.parse().ok()?))));
            match parsed {
                Some(pair) => cursors.push(pair),
                None => return Err(format!("line {}: expected `CONVERSATION SEQ`", i + 1)),
            }
        }
        Ok(CursorFile { user, cursors })
    }

    /// The text form.
    pub fn render(&self) -> String {
        let mut s = format!("{HEADER}\nuser {}\n", self.user.0);
        for (c, seq) in &self.cursors {
            s.push_str(&format!("{} {}\n", c.0, seq.0));
        }
        s
    }

    /// Writes the file atomically (temporary file, fsync, rename), creating
    /// its directory if needed.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(path, e.to_string()))?;
        }
        let tmp: PathBuf = {
            let mut name = path.as_os_str().to_owned();
            name.push(".tmp");
            name.into()
        };
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(self.render().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| err(path, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cursors");
        assert_eq!(CursorFile::load(&path).unwrap(), None);
        let file = CursorFile {
            user: UserId(5),
            cursors: vec![(ConversationId(1), Seq(2)), (ConversationId(3), Seq(0))],
        };
        file.save(&path).unwrap();
        assert_eq!(CursorFile::load(&path).unwrap(), Some(file));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn rejects_malformed_files() {
        for bad in [
            "",
            "user 1\n",
            "# courier cursors v1\n",
            "# courier cursors v1\nuser x\n",
            "# courier cursors v1\nuser 1\n5\n",
            "# courier cursors v1\nuser 1\n5 -1\n",
        ] {
            assert!(CursorFile::parse(bad).is_err(), "{bad:?}");
        }
    }
}
