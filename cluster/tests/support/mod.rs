//! Test kit: a private etcd per test (`courier_tools::testkit::etcd`: on
//! ephemeral loopback ports with a temporary data directory, killed on
//! drop, installed once with `scripts/install-etcd` if missing; a test
//! never skips for want of etcd), agent configs with short timings;
//! polling helpers.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use courier_cluster::{AgentConfig, ClusterId, ClusterParams, NodeId, NodeSpec, Timing};

/// A private single-member etcd; every failure to provide one fails the
/// test with the test kit's explanation (and etcd's log).
pub struct Etcd(courier_tools::testkit::etcd::Etcd);

impl Etcd {
    /// Picks ports and a data directory without starting etcd.
    pub fn reserve() -> Etcd {
        Etcd(courier_tools::testkit::etcd::Etcd::reserve().unwrap_or_else(|e| panic!("{e}")))
    }

    /// A started, healthy etcd.
    pub fn start() -> Etcd {
        Etcd(courier_tools::testkit::etcd::Etcd::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// The client URL, for `AgentConfig::endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        self.0.endpoints()
    }

    /// Starts (or restarts, on the same ports and data) and waits until it
    /// reports healthy.
    pub fn launch(&mut self) {
        self.0.launch().unwrap_or_else(|e| panic!("{e}"));
    }

    /// `kill -9`, then reap.
    pub fn kill(&mut self) {
        self.0.kill();
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
            instance: None,
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
