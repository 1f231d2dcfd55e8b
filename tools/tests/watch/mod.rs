//! A running `courier watch` for the CLI's end-to-end tests (live.rs,
//! settings.rs, profile_events.rs): the child's stdout lines arrive on a
//! channel (unbounded, but a test's watch prints a handful of lines); the
//! child is killed when the `Watch` is dropped.
#![allow(dead_code)] // each test file uses a part of it
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a test waits for the next line.
const LINE_WAIT: Duration = Duration::from_secs(10);
/// How long without a line counts as quiet.
const QUIET_WAIT: Duration = Duration::from_millis(500);

/// A running `courier watch`, its stdout lines on a channel.
pub struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    /// Spawns `cmd` (a `courier … watch …` command) with stdout piped.
    pub fn start(mut cmd: Command) -> Watch {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    /// The next line, if one comes within 10 s.
    pub fn line(&self) -> Option<String> {
        self.lines.recv_timeout(LINE_WAIT).ok()
    }

    /// The next line; fails the test if none comes within 10 s.
    pub fn next(&self) -> String {
        self.line().expect("a line within 10 s")
    }

    /// No line within 500 ms.
    pub fn quiet(&self) -> bool {
        self.lines.recv_timeout(QUIET_WAIT).is_err()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
