//! A private etcd per test: a single-member etcd on ephemeral loopback
//! ports with a temporary data directory, killed on drop (and restartable
//! on the same ports and data). For the cluster control plane's tests and
//! the cluster-mode daemon tests.
//!
//! etcd is found as `$COURIER_ETCD_BIN`, on PATH, or at /usr/bin/etcd; if
//! it is missing, [`etcd_bin`] runs `scripts/install-etcd` once (Debian's
//! etcd-server via apt-get) and reports the script's output if that does
//! not work. A test never skips for want of etcd.
//!
//! etcd runs with fast Raft timings (`--heartbeat-interval 50
//! --election-timeout 250`): the single member elects itself within a few
//! hundred milliseconds, and leases of 1 s are allowed.

use super::TestkitError;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a started etcd may take to report healthy.
pub const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A private single-member etcd.
#[derive(Debug)]
pub struct Etcd {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

fn etcd_on_path() -> Result<Option<PathBuf>, String> {
    if let Some(bin) = std::env::var_os("COURIER_ETCD_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            return Err(format!("COURIER_ETCD_BIN={} is not a file", bin.display()));
        }
        return Ok(Some(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    Ok(std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .chain([PathBuf::from("/usr/bin/etcd")])
        .find(|candidate| candidate.is_file()))
}

fn find_or_install() -> Result<PathBuf, String> {
    if let Some(bin) = etcd_on_path()? {
        return Ok(bin);
    }
    let script = super::workspace_root().join("scripts/install-etcd");
    let out = Command::new(&script).output().map_err(|e| {
        format!(
            "etcd is not installed and {} could not run: {e}",
            script.display()
        )
    })?;
    if !out.status.success() {
        return Err(format!(
            "etcd is not installed and {} failed ({}):\n{}{}\nInstall etcd 3.4+ or set COURIER_ETCD_BIN.",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    etcd_on_path()?.ok_or_else(|| {
        format!(
            "{} succeeded but no etcd binary is on PATH or at /usr/bin/etcd",
            script.display()
        )
    })
}

/// The etcd binary, installing it once if needed (see the module docs).
pub fn etcd_bin() -> Result<PathBuf, TestkitError> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(find_or_install)
        .clone()
        .map_err(TestkitError::Etcd)
}

/// The lowest port of the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), 32768 if it cannot be read.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// How many ports below the ephemeral range [`free_port`] chooses from.
const FIXED_PORTS: u16 = 12_000;

/// A loopback port that was free a moment ago, for a server a test stops
/// and starts again on the same port (etcd, a node's peer listener).
///
/// It lies *below* the kernel's ephemeral range. A port from that range
/// (what binding port 0 gives) can be taken while its server is down: by
/// any outgoing connection's automatic source port, or by a client
/// retrying a connect to it, which the kernel may complete as a
/// connection to itself. Either makes the restart fail with "address
/// already in use" — CI saw it when etcd was restarted under load.
///
/// A port is handed out at most once per process (the tests of one binary
/// run in parallel and would otherwise race between this probe and their
/// server's bind); ports already handed out are at most [`FIXED_PORTS`].
pub fn free_port() -> Result<u16, TestkitError> {
    use rand::Rng;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let high = ephemeral_low().max(FIXED_PORTS + 1024);
    let low = high - FIXED_PORTS;
    let mut rng = rand::thread_rng();
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..256 {
        let port = rng.gen_range(low..high);
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    Err(TestkitError::Etcd(format!(
        "no free port in 127.0.0.1:{low}..{high} after 256 tries"
    )))
}

impl Etcd {
    /// Picks ports and a data directory without starting etcd.
    pub fn reserve() -> Result<Etcd, TestkitError> {
        etcd_bin()?;
        Ok(Etcd {
            dir: super::test_dir()?,
            client_port: free_port()?,
            peer_port: free_port()?,
            child: None,
        })
    }

    /// A started, healthy etcd. A first start whose ports were taken
    /// meanwhile (another process bound one after [`free_port`] probed
    /// it) is tried again on new ports, at most three times.
    pub fn start() -> Result<Etcd, TestkitError> {
        let mut tries = 0;
        loop {
            let mut etcd = Etcd::reserve()?;
            match etcd.launch() {
                Ok(()) => return Ok(etcd),
                Err(TestkitError::Etcd(why))
                    if why.contains("address already in use") && tries < 2 =>
                {
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The client URLs, for `AgentConfig::endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.url()]
    }

    /// The client URL, `http://127.0.0.1:PORT` (what `courierd --etcd` takes).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts (or restarts, on the same ports and data) and waits until it
    /// reports healthy.
    pub fn launch(&mut self) -> Result<(), TestkitError> {
        if self.child.is_some() {
            return Err(TestkitError::Etcd("etcd already running".into()));
        }
        let bin = etcd_bin()?;
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(&bin)
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--heartbeat-interval", "50", "--election-timeout", "250"])
            .args(["--logger", "zap", "--log-outputs"])
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| TestkitError::Etcd(format!("start {}: {e}", bin.display())))?;
        self.child = Some(child);
        let deadline = Instant::now() + ETCD_READY_TIMEOUT;
        while !self.healthy() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(TestkitError::Etcd(format!(
                    "etcd exited with {status}; log:\n{}",
                    self.log_tail()
                )));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(TestkitError::Etcd(format!(
                    "etcd not healthy after {ETCD_READY_TIMEOUT:?}; log:\n{}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Whether `GET /health` answers healthy.
    pub fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.client_port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.contains("\"health\":\"true\"")
    }

    /// The last 20 lines of etcd's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The temporary directory holding etcd's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `kill -9`, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
