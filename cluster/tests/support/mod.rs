//! Test kit: a private etcd per test, on ephemeral loopback ports with a
//! temporary data directory, killed on drop; agent configs with short
//! timings; polling helpers.
//!
//! etcd is found as `$COURIER_ETCD_BIN`, on PATH, or at /usr/bin/etcd; if
//! it is missing the kit runs `scripts/install-etcd` once (Debian's
//! etcd-server via apt-get), and fails the test with the script's output if
//! that does not work. A test never skips for want of etcd.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use courier_cluster::{AgentConfig, ClusterId, ClusterParams, NodeId, NodeSpec, Timing};

/// A private single-member etcd.
pub struct Etcd {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

fn etcd_on_path() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("COURIER_ETCD_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "COURIER_ETCD_BIN={} is not a file",
            bin.display()
        );
        return Some(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .chain([PathBuf::from("/usr/bin/etcd")])
        .find(|candidate| candidate.is_file())
}

/// The etcd binary, installing it once if needed.
pub fn etcd_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = etcd_on_path() {
            return bin;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-etcd");
        let output = Command::new(&script).output();
        match output {
            Ok(out) if out.status.success() => etcd_on_path().unwrap_or_else(|| {
                panic!("{} succeeded but no etcd binary is on PATH or at /usr/bin/etcd", script.display())
            }),
            Ok(out) => panic!(
                "etcd is not installed and {} failed ({}):\n{}{}\nInstall etcd 3.4+ or set COURIER_ETCD_BIN.",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("etcd is not installed and {} could not run: {e}", script.display()),
        }
    })
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

impl Etcd {
    /// Picks ports and a data directory without starting etcd.
    pub fn reserve() -> Etcd {
        etcd_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        Etcd {
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
        }
    }

    /// A started, healthy etcd.
    pub fn start() -> Etcd {
        let mut etcd = Etcd::reserve();
        etcd.launch();
        etcd
    }

    /// The client URL, for `AgentConfig::endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        vec![format!("http://127.0.0.1:{}", self.client_port)]
    }

    /// Starts (or restarts, on the same ports and data) and waits until it
    /// reports healthy.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "etcd already running");
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = self.dir.path().join("etcd.log");
        let child = Command::new(etcd_bin())
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("t={peer}")])
            // Fast raft timings: a 1 s lease TTL is then allowed, and the
            // single member elects itself within a few hundred ms.
            .args(["--heartbeat-interval", "50", "--election-timeout", "250"])
            .args(["--logger", "zap", "--log-outputs"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", etcd_bin().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.healthy() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("etcd exited with {status}; log:\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "etcd not healthy after 30 s; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn healthy(&self) -> bool {
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

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
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

/// Short timings for tests: 1 s lease, 300 ms grace, 2 s replacement.
pub fn timing() -> Timing {
    Timing {
        lease_ttl: Duration::from_secs(1),
        grace: Duration::from_millis(300),
        replace_after: Duration::from_secs(2),
        tick: Duration::from_millis(100),
        request_timeout: Duration::from_secs(1),
        duplicate_wait: Duration::ZERO,
        start_timeout: Some(Duration::from_secs(30)),
    }
}

/// Parameters of a test cluster.
pub fn params(shard_count: u32, replication_factor: u8) -> ClusterParams {
    ClusterParams {
        shard_count,
        replication_factor,
        admin_token_sha256: [7; 32],
    }
}

/// Config of node `id` (client port 7000 + id, peer 8000 + id: only
/// recorded, never bound).
pub fn agent_config(etcd: &Etcd, cluster: &str, id: u32, params: ClusterParams) -> AgentConfig {
    AgentConfig {
        endpoints: etcd.endpoints(),
        cluster: cluster.to_string(),
        params,
        recorded_cluster_id: None::<ClusterId>,
        node: NodeSpec {
            node_id: NodeId(id),
            client_addr: format!("127.0.0.1:{}", 7000 + id),
            peer_addr: format!("127.0.0.1:{}", 8000 + id),
            cores: 2,
        },
        timing: timing(),
    }
}

/// Polls `probe` every 50 ms until it returns Some, or panics after
/// `timeout` saying what was awaited.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A current-thread runtime for the async parts of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Logs to the test output (RUST_LOG, default info for this crate).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("courier_cluster=info")),
        )
        .with_test_writer()
        .try_init();
}
