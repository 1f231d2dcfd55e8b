//! Test kit: real `courierd` processes for end-to-end tests of any crate
//! (tools, perf, net): spawn on an ephemeral port with a data directory,
//! wait for the ready line, `kill -9`, restart on the same port and data
//! directory, read the admin token. Every crate's daemon tests go through
//! [`ServerProcess`] (courier-net's own integration tests wrap it in their
//! `Server`), so what it learns about a daemon that misbehaves at start is
//! learned once.
//!
//! # A daemon that never becomes ready
//! A start is given [`READY_TIMEOUT`]. If the ready line has not come by
//! then, the error ([`TestkitError::NotReady`]) carries every thread's
//! stack of the stuck process ([`thread_dump`]: `gdb -batch -ex "thread
//! apply all bt"` when gdb is installed, bounded to [`THREAD_DUMP_TIMEOUT`],
//! and each thread's name, state and kernel wait channel from `/proc`)
//! next to the end of its log, which names the start phase it reached.
//! Each successful start's duration, spawn to ready line, is kept
//! ([`ServerProcess::last_start`]).
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
//! # etcd
//! [`etcd::Etcd`] runs a private etcd per test (ephemeral ports, temporary
//! data directory, killed on drop) for the cluster control plane's tests
//! and cluster-mode daemons.
//!
//! # Node and Chromium
//! [`web`] installs the npm packages of `tools/web` and Chromium on first
//! use, runs the JavaScript tests of the web SDK and the web app, and lets
//! them kill and restart the daemon through a loopback control endpoint.
//!
//! Failure contract: every function returns a [`TestkitError`] naming what
//! failed and where the daemon's log is; nothing here panics.

pub mod cluster;
pub mod etcd;
pub mod web;

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

/// How long a SIGTERM'ed daemon may take to drain and exit before the test
/// kit kills it and reports the failure.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on the `gdb` run of [`thread_dump`].
pub const THREAD_DUMP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a daemon that closed its stdout before the ready line gets to
/// exit, so that the error can say how it exited.
const EXIT_AFTER_EOF_TIMEOUT: Duration = Duration::from_secs(5);

/// The line `courierd` prints on stdout once every shard serves.
pub const READY_PREFIX: &str = "courierd ready listen=";

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
    /// The daemon ran but printed no ready line within the timeout; it was
    /// killed after its threads' stacks were taken.
    #[error(
        "courierd (pid {pid}) not ready within {after:?} (log: {log}); log ends with:\n{log_tail}\n\
         threads:\n{threads}"
    )]
    NotReady {
        /// The stuck process.
        pid: u32,
        /// How long the test kit waited.
        after: Duration,
        /// The daemon's log file.
        log: PathBuf,
        /// The last lines of that log (the start phase it reached).
        log_tail: String,
        /// Every thread's stack ([`thread_dump`]).
        threads: String,
    },
    /// etcd could not be found, installed, started or reached.
    #[error("test etcd: {0}")]
    Etcd(String),
    /// Node, the npm packages of `tools/web` or Chromium could not be
    /// found, installed or run ([`web`]).
    #[error("web tests: {0}")]
    Web(String),
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
    // The web app's built files are embedded in the daemon (net/src/web.rs).
    let mut stack: Vec<PathBuf> = [
        "net",
        "core",
        "wal",
        "tools/web/app/dist",
        "Cargo.lock",
        "Cargo.toml",
    ]
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

/// Everything about how a daemon is started; kept by [`ServerProcess`] and
/// used again for every restart (change it between starts with
/// [`ServerProcess::launch_mut`]).
#[derive(Clone, Debug)]
pub struct Launch {
    /// The daemon binary; `None` means [`courierd_binary`].
    pub binary: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// Where the daemon's stderr (its log) is appended, across restarts.
    pub log: PathBuf,
    /// If set, every line the daemon prints on stdout is appended here.
    pub stdout: Option<PathBuf>,
    /// `--shards`.
    pub shards: u16,
    /// Extra arguments. `--pin false` and `--segment-mib 4` are added
    /// unless these name the flag.
    pub args: Vec<String>,
    /// Extra environment. `COURIER_LOG` defaults to the test's own, else
    /// `info`.
    pub env: Vec<(String, String)>,
    /// Whether to add the test defaults (`--pin false`, `--segment-mib 4`)
    /// that [`Launch::args`] does not name. Benchmarks turn this off to run
    /// the daemon's own defaults.
    pub test_defaults: bool,
    /// How long a start may take to print its ready line (default
    /// [`READY_TIMEOUT`]; a benchmark recovering gigabytes wants more).
    pub ready_timeout: Duration,
    /// Whether the daemon gets SIGKILL when the thread that started it
    /// exits (`PR_SET_PDEATHSIG`). Off by default, since tests start
    /// daemons from threads that end before the daemon should; a benchmark
    /// that starts from its main thread turns it on so an interrupted run
    /// leaves no daemon behind.
    pub die_with_parent: bool,
}

impl Launch {
    /// A launch of `shards` shards on `data_dir`, logging next to it
    /// (`DATA_DIR.courierd.log`).
    pub fn new(data_dir: &Path, shards: u16) -> Launch {
        let name = data_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("data");
        Launch {
            binary: None,
            data_dir: data_dir.to_owned(),
            log: data_dir.with_file_name(format!("{name}.courierd.log")),
            stdout: None,
            shards,
            args: Vec::new(),
            env: Vec::new(),
            test_defaults: true,
            ready_timeout: READY_TIMEOUT,
            die_with_parent: false,
        }
    }

    fn names_flag(&self, flag: &str) -> bool {
        self.args
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    }
}

/// A running (or killed, restartable) `courierd` process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Option<Child>,
    binary: PathBuf,
    launch: Launch,
    addr: SocketAddr,
    last_start: Option<Duration>,
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
        let mut launch = Launch::new(data_dir, shards);
        launch.args = extra.iter().map(|s| (*s).to_owned()).collect();
        ServerProcess::launch(launch)
    }

    /// Starts a daemon as `launch` says, on an ephemeral port of 127.0.0.1,
    /// and waits for its ready line.
    pub fn launch(launch: Launch) -> Result<ServerProcess, TestkitError> {
        let binary = match &launch.binary {
            Some(b) => b.clone(),
            None => courierd_binary()?,
        };
        let mut server = ServerProcess {
            child: None,
            binary,
            launch,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            last_start: None,
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
            log: self.launch.log.clone(),
        }
    }

    /// The last lines of the daemon's log (a temporary directory may be gone
    /// by the time someone reads the error).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.launch.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How the daemon is (re)started; changes apply from the next start.
    pub fn launch_mut(&mut self) -> &mut Launch {
        &mut self.launch
    }

    /// The daemon's command for a start on `listen` (stderr appended to the
    /// log), and the file its stdout is copied to, if any.
    fn command(
        &self,
        listen: SocketAddr,
    ) -> Result<(Command, Option<std::fs::File>), TestkitError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.launch.log)
            .map_err(|e| TestkitError::File {
                path: self.launch.log.clone(),
                reason: e.to_string(),
            })?;
        let captured = match &self.launch.stdout {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| TestkitError::File {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?,
            ),
            None => None,
        };
        let mut command = Command::new(&self.binary);
        command
            .arg("--data-dir")
            .arg(&self.launch.data_dir)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--shards")
            .arg(self.launch.shards.to_string());
        for (flag, value) in [("--pin", "false"), ("--segment-mib", "4")] {
            if self.launch.test_defaults && !self.launch.names_flag(flag) {
                command.args([flag, value]);
            }
        }
        command
            .args(&self.launch.args)
            .env(
                "COURIER_LOG",
                std::env::var("COURIER_LOG").unwrap_or("info".into()),
            )
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        with_parent_limits(&mut command, self.launch.die_with_parent);
        Ok((command, captured))
    }

    /// Spawns the daemon on `listen` and waits for its ready line (see the
    /// module docs for what a daemon that never becomes ready leaves).
    fn start(&mut self, listen: SocketAddr) -> Result<(), TestkitError> {
        if self.child.is_some() {
            return Err(self.process_error("start while still running"));
        }
        let (mut command, captured) = self.command(listen)?;
        let spawned = std::time::Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| self.process_error(format!("spawning {}: {e}", self.binary.display())))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(self.process_error("no stdout pipe"));
        };
        let (tx, rx) = mpsc::channel();
        // Reads the ready line, then keeps draining stdout (into the capture
        // file, if any) so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            use std::io::Write;
            let mut captured = captured;
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(file) = captured.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                if let Some(addr) = line.strip_prefix(READY_PREFIX) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let pid = child.id();
        self.child = Some(child);
        let ready_timeout = self.launch.ready_timeout;
        match rx.recv_timeout(ready_timeout) {
            Ok(addr) => {
                self.last_start = Some(spawned.elapsed());
                self.addr = addr
                    .parse()
                    .map_err(|_| self.process_error(format!("bad ready line address {addr:?}")))?;
                Ok(())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Stdout closed without a ready line: it exited (or is
                // about to).
                let status = self.wait_exit(EXIT_AFTER_EOF_TIMEOUT)?;
                self.kill9();
                let what = match status {
                    Some(s) => format!("exited with {s} before it was ready"),
                    None => "closed its stdout before it was ready".to_owned(),
                };
                Err(self.process_error(format!("{what}; log ends with:\n{}", self.log_tail(20))))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let threads = thread_dump(pid);
                self.kill9();
                Err(TestkitError::NotReady {
                    pid,
                    after: ready_timeout,
                    log: self.launch.log.clone(),
                    log_tail: self.log_tail(40),
                    threads,
                })
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
        &self.launch.data_dir
    }

    /// The daemon's log file (its stderr, appended across restarts).
    pub fn log_path(&self) -> &Path {
        &self.launch.log
    }

    /// How long the last successful start took, from spawn to ready line.
    pub fn last_start(&self) -> Option<Duration> {
        self.last_start
    }

    /// The admin token's text (`DATA_DIR/admin.token`).
    pub fn admin_token(&self) -> Result<String, TestkitError> {
        let path = self.launch.data_dir.join("admin.token");
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
                path: self.launch.data_dir.join("admin.token"),
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

    /// Waits up to `timeout` for the process to exit on its own; returns its
    /// status (and forgets the process) if it did, `None` if it still runs
    /// (or was not running).
    pub fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<std::process::ExitStatus>, TestkitError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Ok(None);
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Ok(Some(status));
                }
                Ok(None) => {}
                Err(e) => return Err(self.process_error(format!("waiting: {e}"))),
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `kill -9` and reap. Nothing is flushed: what was acknowledged must
    /// survive, and that is what tests check.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (at most [`STOP_TIMEOUT`]) for the daemon to drain
    /// and exit; returns its exit code. One that does not exit in time is
    /// killed and reported as an error.
    pub fn stop(&mut self) -> Result<Option<i32>, TestkitError> {
        let Some(pid) = self.pid() else {
            return Ok(None);
        };
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        if rc != 0 {
            self.kill9();
            return Err(self.process_error(format!(
                "SIGTERM failed: {}",
                std::io::Error::last_os_error()
            )));
        }
        match self.wait_exit(STOP_TIMEOUT)? {
            Some(status) => Ok(status.code()),
            None => {
                self.kill9();
                Err(self.process_error(format!(
                    "did not stop within {STOP_TIMEOUT:?} of SIGTERM; log ends with:\n{}",
                    self.log_tail(20)
                )))
            }
        }
    }

    /// Starts the stopped daemon again on the same data directory and port,
    /// once (no retry: a start that fails is the test's business).
    pub fn start_again(&mut self) -> Result<(), TestkitError> {
        self.start(self.addr)
    }

    /// Kills the process (if running) and starts it again on the same data
    /// directory and port, retrying while it exits at start (the old port
    /// may not be free yet) for up to [`REBIND_TIMEOUT`]. A daemon that runs
    /// but never becomes ready is not retried.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.restart_at(self.addr)
    }

    /// [`ServerProcess::restart`] on another address (same data directory):
    /// the server "moves", as when a client fails over to another node.
    /// Port 0 picks an ephemeral one; [`ServerProcess::addr`] tells which.
    pub fn restart_at(&mut self, listen: SocketAddr) -> Result<(), TestkitError> {
        self.kill9();
        let deadline = std::time::Instant::now() + REBIND_TIMEOUT;
        loop {
            match self.start(listen) {
                Ok(()) => return Ok(()),
                Err(e @ TestkitError::NotReady { .. }) => return Err(e),
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// Sets up the child between fork and exec: it gets the parent's hard
/// open-file limit as its soft limit (courierd does not raise its own, and a
/// load test's parent may have raised its limit), and, if `die_with_parent`,
/// it is killed when the thread that started it ends.
fn with_parent_limits(command: &mut Command, die_with_parent: bool) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe calls (getrlimit, setrlimit, prctl) on its own
    // stack; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            if die_with_parent {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            }
            Ok(())
        });
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every thread's stack of a (stuck) process, for a failure message: `gdb
/// -batch -p PID -ex "thread apply all bt"` when gdb is installed (bounded
/// to [`THREAD_DUMP_TIMEOUT`]), then each thread's name, state and kernel
/// wait channel from `/proc` (enough to tell a futex wait from an io_uring
/// wait or a busy loop even without gdb).
pub fn thread_dump(pid: u32) -> String {
    let mut dump = String::new();
    let gdb = Command::new("timeout")
        .arg(THREAD_DUMP_TIMEOUT.as_secs().to_string())
        .args(["gdb", "-batch", "-p", &pid.to_string()])
        .args(["-ex", "thread apply all bt"])
        .stdin(Stdio::null())
        .output();
    match gdb {
        Ok(out) if out.status.success() && !out.stdout.is_empty() => {
            dump.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        Ok(out) => dump.push_str(&format!(
            "(gdb gave no stacks: {}; {})\n",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => dump.push_str(&format!("(gdb not run: {e})\n")),
    }
    dump.push_str("threads (tid name state wchan):\n");
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    for task in tasks.into_iter().flatten().flatten() {
        let path = task.path();
        let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default();
        let state = read("status")
            .lines()
            .find_map(|l| l.strip_prefix("State:").map(|s| s.trim().to_owned()))
            .unwrap_or_default();
        dump.push_str(&format!(
            "{} {} {} wchan={}\n",
            task.file_name().to_string_lossy(),
            read("comm").trim(),
            state,
            read("wchan").trim()
        ));
    }
    dump
}
