//! Test kit: real `courierd` processes for end-to-end tests of any crate
//! (tools, perf, net): spawn on an ephemeral port with a data directory,
//! wait for the ready line, `kill -9`, restart on the same port and data
//! directory, read the admin token.
//!
//! # Finding the daemon
//! [`courierd_binary`] resolves, once per process:
//! 1. `$COURIERD_BIN`, if set (a binary built any way you like);
//! 2. else `courierd` in the target directory of the running executable
//!    (`target/<profile>/courierd`, next to `target/<profile>/deps/<test>`),
//!    if it is newer than every source file of the crates it is built from;
//! 3. else it runs `cargo build -p courier-net --bin courierd` with the same
//!    profile and target directory (cargo releases its build lock before it
//!    runs tests, so this works from inside `cargo test`) and uses the result.
//!
//! Under `cargo test --workspace` the daemon is already built (courier-net's
//! own integration tests need it), so step 2 applies and costs nothing.
//!
//! # Data directories
//! `courierd` writes its WAL with O_DIRECT, which tmpfs does not support:
//! [`ServerProcess::spawn_temp`] creates its directory under
//! `$COURIER_TEST_DIR` if set, else the system temporary directory (a real
//! disk file system on the machines we test on).
//!
//! Failure contract: every function returns a [`TestkitError`] naming what
//! failed and where the daemon's log is; nothing here panics.

use crate::ConnectOptions;
use courier_core::api::Credential;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, SystemTime};

/// How long a daemon may take to print its ready line (recovery included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a restart keeps retrying while the old port is not yet free.
pub const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the test kit could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The daemon binary could not be found or built.
    #[error("cannot find or build courierd: {0}")]
    Binary(String),
    /// Spawning, waiting for or signalling the process failed.
    #[error("courierd: {what} (log: {log})")]
    Process {
        /// What went wrong.
        what: String,
        /// The daemon's log file.
        log: PathBuf,
    },
    /// A file of the data directory could not be read or created.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        reason: String,
    },
}

/// The workspace root this crate was built from.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// `(target dir, profile dir)` of the running executable, e.g.
/// (`target`, `target/release`).
fn target_dirs() -> Option<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_owned();
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir = dir.parent()?.to_owned();
    }
    let target = dir.parent()?.to_owned();
    Some((target, dir))
}

fn newest_source_mtime(root: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack: Vec<PathBuf> = ["net", "core", "wal", "Cargo.lock", "Cargo.toml"]
        .iter()
        .map(|p| root.join(p))
        .collect();
    // Bounded walk: the source trees are a few hundred files.
    let mut visited = 0usize;
    while let Some(path) = stack.pop() {
        visited += 1;
        if visited > 100_000 {
            return None;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == "target" || name.starts_with('.') || name == "fuzz_corpus" {
                continue;
            }
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Ok(m) = meta.modified() {
            newest = newest.max(Some(m));
        }
    }
    newest
}

fn find_or_build() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("COURIERD_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("COURIERD_BIN={} is not a file", bin.display()))
        };
    }
    let (target, profile_dir) =
        target_dirs().ok_or("cannot tell the target directory of this executable")?;
    let candidate = profile_dir.join("courierd");
    let root = workspace_root();
    let fresh = match (
        std::fs::metadata(&candidate).and_then(|m| m.modified()),
        newest_source_mtime(&root),
    ) {
        (Ok(built), Some(source)) => built >= source,
        _ => false,
    };
    if fresh {
        return Ok(candidate);
    }
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let profile = if profile == "debug" { "dev" } else { profile };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--quiet", "-p", "courier-net", "--bin", "courierd"])
        .args(["--profile", profile])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build -p courier-net --bin courierd failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!("built, but {} is missing", candidate.display()))
    }
}

/// The `courierd` binary to test against (see the module docs).
pub fn courierd_binary() -> Result<PathBuf, TestkitError> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(find_or_build)
        .clone()
        .map_err(TestkitError::Binary)
}

/// A directory for test data on a file system that supports O_DIRECT.
pub fn test_dir() -> Result<tempfile::TempDir, TestkitError> {
    let root = std::env::var_os("COURIER_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&root).map_err(|e| TestkitError::File {
        path: root.clone(),
        reason: e.to_string(),
    })?;
    tempfile::Builder::new()
        .prefix("courier-test-")
        .tempdir_in(&root)
        .map_err(|e| TestkitError::File {
            path: root,
            reason: e.to_string(),
        })
}

/// A running (or killed, restartable) `courierd` process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Option<Child>,
    binary: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    shards: u16,
    extra: Vec<String>,
    addr: SocketAddr,
    /// Keeps a temporary directory alive as long as the server.
    _temp: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Starts `courierd --data-dir DATA_DIR --listen 127.0.0.1:0 --shards N`
    /// and waits for its ready line.
    pub fn spawn(data_dir: &Path, shards: u16) -> Result<ServerProcess, TestkitError> {
        ServerProcess::spawn_with(data_dir, shards, &[])
    }

    /// [`ServerProcess::spawn`] with extra `courierd` arguments.
    pub fn spawn_with(
        data_dir: &Path,
        shards: u16,
        extra: &[&str],
    ) -> Result<ServerProcess, TestkitError> {
        let name = data_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("data");
        let mut server = ServerProcess {
            child: None,
            binary: courierd_binary()?,
            data_dir: data_dir.to_owned(),
            log: data_dir.with_file_name(format!("{name}.courierd.log")),
            shards,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            _temp: None,
        };
        server.start(server.addr)?;
        Ok(server)
    }

    /// Starts a server on a fresh temporary data directory (removed when the
    /// `ServerProcess` is dropped).
    pub fn spawn_temp(shards: u16) -> Result<ServerProcess, TestkitError> {
        let temp = test_dir()?;
        let mut server = ServerProcess::spawn(&temp.path().join("data"), shards)?;
        server._temp = Some(temp);
        Ok(server)
    }

    fn process_error(&self, what: impl Into<String>) -> TestkitError {
        TestkitError::Process {
            what: what.into(),
            log: self.log.clone(),
        }
    }

    /// The last lines of the daemon's log (a temporary directory may be gone
    /// by the time someone reads the error).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn start(&mut self, listen: SocketAddr) -> Result<(), TestkitError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| TestkitError::File {
                path: self.log.clone(),
                reason: e.to_string(),
            })?;
        let mut child = Command::new(&self.binary)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--shards")
            .arg(self.shards.to_string())
            .args(["--pin", "false", "--segment-mib", "4"])
            .args(&self.extra)
            .env(
                "COURIER_LOG",
                std::env::var("COURIER_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| self.process_error(format!("spawning {}: {e}", self.binary.display())))?;
        let Some(stdout) = child.stdout.take() else {
            return Err(self.process_error("no stdout pipe"));
        };
        let (tx, rx) = mpsc::channel();
        // Reads the ready line, then keeps draining stdout so the daemon
        // never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix("courierd ready listen=") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(addr) => {
                self.addr = addr
                    .parse()
                    .map_err(|_| self.process_error(format!("bad ready line address {addr:?}")))?;
                Ok(())
            }
            Err(_) => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                self.kill9();
                let what = match status {
                    Some(s) => format!("exited with {s} before it was ready"),
                    None => format!("not ready within {READY_TIMEOUT:?}"),
                };
                Err(self.process_error(format!("{what}; log ends with:\n{}", self.log_tail(20))))
            }
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The daemon's log file (its stderr, appended across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The admin token's text (`DATA_DIR/admin.token`).
    pub fn admin_token(&self) -> Result<String, TestkitError> {
        let path = self.data_dir.join("admin.token");
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_owned())
            .map_err(|e| TestkitError::File {
                path,
                reason: e.to_string(),
            })
    }

    /// Connect options for the admin session.
    pub fn admin_options(&self) -> Result<ConnectOptions, TestkitError> {
        let text = self.admin_token()?;
        let credential: Credential =
            crate::token::parse(&text).map_err(|e| TestkitError::File {
                path: self.data_dir.join("admin.token"),
                reason: e.to_string(),
            })?;
        Ok(ConnectOptions::new(self.url(), credential))
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9` and reap. Nothing is flushed: what was acknowledged must
    /// survive, and that is what tests check.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns its exit code.
    pub fn stop(&mut self) -> Result<Option<i32>, TestkitError> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        if rc != 0 {
            let _ = child.kill();
        }
        child
            .wait()
            .map(|s| s.code())
            .map_err(|e| self.process_error(format!("waiting: {e}")))
    }

    /// Kills the process (if running) and starts it again on the same data
    /// directory and port, retrying while the port is still taken.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.kill9();
        let deadline = std::time::Instant::now() + REBIND_TIMEOUT;
        loop {
            match self.start(self.addr) {
                Ok(()) => return Ok(()),
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
