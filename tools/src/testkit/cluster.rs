//! A replicated `courierd` cluster for failure tests and the failover
//! benchmark: a private etcd ([`super::etcd::Etcd`]) and N cluster-mode
//! daemons ([`ServerProcess`]) on ephemeral loopback ports with their own
//! data directories, each restartable on the same data directory and the
//! same client and peer ports.
//!
//! What a test does with it:
//! - [`Cluster::start`] launches every node at once (a node may wait for a
//!   quorum of its peers before it prints its ready line, so they are
//!   started in parallel);
//! - [`Cluster::kill9`], [`Cluster::stop`] (SIGTERM), [`Cluster::restart`]
//!   any node; [`Cluster::kill_all`] / [`Cluster::restart_all`];
//! - [`Cluster::etcd_mut`] to kill and relaunch etcd;
//! - with [`ClusterOptions::proxies`], each node's peer listener is behind
//!   a [`Proxy`] and the node advertises the proxy's address
//!   (`--peer-advertise`): [`Cluster::cut`] blackholes every byte *to* the
//!   node from its peers (node links are one-way: each node sends on the
//!   connections it dialed, so the node hears nothing — no votes, no
//!   append acknowledgements — while what it sends still arrives until it
//!   steps down); [`Cluster::heal`] ends it;
//! - [`Cluster::probe`] tells whether a node is the primary (an admin
//!   `Hello` answered with `Welcome` — every node that joined its cluster
//!   accepts sessions — and its `GET /admin/cluster` says it serves), a
//!   node that is not (sessions accepted and routed to the primary, or
//!   refused with 4011 `NOT_SERVING` before the node joined), or down;
//!   [`Cluster::wait_primary`] waits until exactly one node is the
//!   primary, restarting on the way every node that exited by itself
//!   (a deposed primary exits on purpose; this is its supervisor);
//! - [`Cluster::servers`] is the `ws://a/,ws://b/,ws://c/` list a client is
//!   given.
//!
//! Failure contract: every function returns a [`TestkitError`] naming the
//! node and its log; nothing here panics. Dropping the cluster kills every
//! daemon, the proxies and etcd, and removes the directory — unless the
//! thread is panicking (a failing test): then the directory, with every
//! node's whole log, is kept and its path printed.

use super::etcd::{free_port, Etcd};
use super::{Launch, ServerProcess, TestkitError};
use crate::proxy::Proxy;
use crate::{ClientError, ConnectOptions, Connection};
use courier_core::api::Credential;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// Most nodes a test cluster runs (a Raft group has at most 7 voters).
pub const CLUSTER_NODES_MAX: usize = 7;

/// Time a [`Cluster::probe`] allows for connect + `Hello` + answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause between rounds of [`Cluster::wait_primary`].
pub const PRIMARY_POLL: Duration = Duration::from_millis(50);

/// Most restarts of nodes that exited by themselves one
/// [`Cluster::wait_primary`] performs (a node that exits at every start
/// is a failure, not something to retry forever).
pub const SUPERVISOR_RESTARTS_MAX: usize = 16;

/// How a test cluster is started.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Nodes (1..=[`CLUSTER_NODES_MAX`]); ids are 1..=nodes.
    pub nodes: usize,
    /// `--shards` of every node (cores; each hosts one Raft group).
    pub shards: u16,
    /// `--cluster-shards` (the creating node's; at least the replication
    /// factor).
    pub cluster_shards: u32,
    /// `--replication-factor`.
    pub replication_factor: u8,
    /// Put a [`Proxy`] in front of every node's peer listener and
    /// advertise it (`--peer-advertise`), so [`Cluster::cut`] works.
    pub proxies: bool,
    /// Extra `courierd` arguments for every node.
    pub args: Vec<String>,
    /// Extra environment for every node.
    pub env: Vec<(String, String)>,
    /// The daemon binary; `None` means [`super::courierd_binary`].
    pub binary: Option<PathBuf>,
    /// See [`Launch::die_with_parent`] (benchmarks turn it on).
    pub die_with_parent: bool,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            nodes: 3,
            shards: 2,
            cluster_shards: 4,
            replication_factor: 3,
            proxies: false,
            args: vec![
                // Writers send as fast as the cluster commits.
                "--rate-conn-per-sec".into(),
                "0".into(),
                "--rate-user-per-sec".into(),
                "0".into(),
                "--rate-workspace-per-sec".into(),
                "0".into(),
            ],
            env: Vec::new(),
            binary: None,
            die_with_parent: false,
        }
    }
}

/// What [`Cluster::probe`] found a node to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The primary: its state shards serve (`serving_clients`).
    Serving,
    /// Not the primary: it accepts sessions and routes them to the
    /// primary, or (closed with 4011 `NOT_SERVING`, the reason given) it
    /// has not joined its cluster yet.
    NotServing(String),
    /// Not reachable, or another answer (the text says which).
    Down(String),
}

/// How a node's exit that nobody asked for was seen by the supervisor.
#[derive(Clone, Debug)]
pub struct Exit {
    /// Index of the node (0-based; its id is index + 1).
    pub node: usize,
    /// Its exit status.
    pub status: ExitStatus,
    /// When the supervisor noticed.
    pub at: Instant,
}

/// One node of a [`Cluster`].
pub struct ClusterNode {
    /// Node id (≥ 1).
    pub id: u32,
    process: ServerProcess,
    peer: SocketAddr,
    proxy: Option<Proxy>,
}

impl ClusterNode {
    /// The daemon.
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }

    /// The daemon, to signal or restart it directly.
    pub fn process_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    /// Where it listens for its peers (`--peer-listen`).
    pub fn peer_listen(&self) -> SocketAddr {
        self.peer
    }

    /// What it advertises to its peers: the proxy's address, or
    /// `--peer-listen` without proxies.
    pub fn peer_advertised(&self) -> SocketAddr {
        self.proxy.as_ref().map_or(self.peer, Proxy::addr)
    }

    /// The proxy in front of its peer listener, if the cluster has them.
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_ref()
    }
}

/// A running test cluster (see the module docs).
pub struct Cluster {
    nodes: Vec<ClusterNode>,
    exits: Vec<Exit>,
    // Dropped after the nodes (fields drop in order): daemons first, then
    // the etcd they talk to, then their directories.
    etcd: Etcd,
    /// Always Some until drop, which keeps it (and says where) when the
    /// test is failing or `COURIER_KEEP_TEST_DIR` is set, so every node's
    /// whole log can be read.
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.process.kill9();
        }
        if std::thread::panicking() || std::env::var_os("COURIER_KEEP_TEST_DIR").is_some() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "test cluster: kept {} (node logs: nodeN.courierd.log)",
                    kept.display()
                );
            }
        }
    }
}

/// The cluster-mode arguments of node `id` (everything but `--data-dir`,
/// `--listen` and `--shards`, which [`ServerProcess`] adds).
pub fn node_args(
    options: &ClusterOptions,
    etcd_url: &str,
    id: u32,
    peer_listen: SocketAddr,
    peer_advertise: Option<SocketAddr>,
) -> Vec<String> {
    let mut args = vec![
        "--etcd".to_owned(),
        etcd_url.to_owned(),
        "--node-id".to_owned(),
        id.to_string(),
        "--peer-listen".to_owned(),
        peer_listen.to_string(),
        "--replication-factor".to_owned(),
        options.replication_factor.to_string(),
        "--cluster-shards".to_owned(),
        options.cluster_shards.to_string(),
    ];
    if let Some(advertise) = peer_advertise {
        args.push("--peer-advertise".to_owned());
        args.push(advertise.to_string());
    }
    args.extend(options.args.iter().cloned());
    args
}

/// `ws://A/,ws://B/,…` for client addresses.
pub fn server_list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| format!("ws://{a}/"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What an admin `Hello`'s outcome says about the node.
pub fn classify(outcome: &Result<(), ClientError>) -> Probe {
    match outcome {
        Ok(()) => Probe::Serving,
        Err(ClientError::Closed {
            code: Some(courier_proto::close::NOT_SERVING),
            reason,
        }) => Probe::NotServing(reason.clone()),
        Err(e) => Probe::Down(e.to_string()),
    }
}

/// Starts every launch at once (threads) and waits for all; the first
/// failure is returned after every start finished (the started ones are
/// dropped, i.e. killed).
fn launch_all(launches: Vec<Launch>) -> Result<Vec<ServerProcess>, TestkitError> {
    if launches.iter().any(|l| l.die_with_parent) {
        // The parent-death signal fires when the *thread* that spawned the
        // child ends, so a node started from a short-lived thread would be
        // killed as soon as its start returned: start them one by one here.
        return launches.into_iter().map(ServerProcess::launch).collect();
    }
    let results: Vec<Result<ServerProcess, TestkitError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = launches
            .into_iter()
            .map(|launch| scope.spawn(move || ServerProcess::launch(launch)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(TestkitError::Binary("a launch thread panicked".into()))
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

impl Cluster {
    /// Starts etcd and `options.nodes` nodes (in parallel) and returns once
    /// every node printed its ready line. It does not wait for a primary:
    /// see [`Cluster::wait_primary`].
    pub fn start(options: ClusterOptions) -> Result<Cluster, TestkitError> {
        if options.nodes == 0 || options.nodes > CLUSTER_NODES_MAX {
            return Err(TestkitError::Binary(format!(
                "a test cluster has 1..={CLUSTER_NODES_MAX} nodes, not {}",
                options.nodes
            )));
        }
        let etcd = Etcd::start()?;
        let dir = super::test_dir()?;
        let mut peers = Vec::with_capacity(options.nodes);
        let mut proxies = Vec::with_capacity(options.nodes);
        let mut launches = Vec::with_capacity(options.nodes);
        for index in 0..options.nodes {
            let id = index as u32 + 1;
            let peer = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let proxy = if options.proxies {
                Some(Proxy::start(peer).map_err(|e| TestkitError::Process {
                    what: format!("node {id}: peer proxy: {e}"),
                    log: dir.path().to_owned(),
                })?)
            } else {
                None
            };
            let advertise = proxy.as_ref().map(Proxy::addr);
            let mut launch = Launch::new(&dir.path().join(format!("node{id}")), options.shards);
            launch.binary = options.binary.clone();
            launch.args = node_args(&options, &etcd.url(), id, peer, advertise);
            launch.env = options.env.clone();
            launch.die_with_parent = options.die_with_parent;
            peers.push(peer);
            proxies.push(proxy);
            launches.push(launch);
        }
        let processes = launch_all(launches)?;
        let nodes = processes
            .into_iter()
            .zip(peers.into_iter().zip(proxies))
            .enumerate()
            .map(|(index, (process, (peer, proxy)))| ClusterNode {
                id: index as u32 + 1,
                process,
                peer,
                proxy,
            })
            .collect();
        Ok(Cluster {
            nodes,
            exits: Vec::new(),
            etcd,
            path: dir.path().to_owned(),
            dir: Some(dir),
        })
    }

    /// The nodes.
    pub fn nodes(&self) -> &[ClusterNode] {
        &self.nodes
    }

    /// Node `index` (0-based; an index past the end names the last node).
    pub fn node(&self, index: usize) -> &ClusterNode {
        &self.nodes[index.min(self.nodes.len() - 1)]
    }

    /// Node `index`, mutable.
    pub fn node_mut(&mut self, index: usize) -> &mut ClusterNode {
        let last = self.nodes.len() - 1;
        &mut self.nodes[index.min(last)]
    }

    /// The etcd.
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// The etcd, to kill and relaunch it.
    pub fn etcd_mut(&mut self) -> &mut Etcd {
        &mut self.etcd
    }

    /// The directory holding every node's data and log.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Client addresses, by node.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.process.addr()).collect()
    }

    /// The server list a client is given: every node, `ws://a/,ws://b/,…`.
    pub fn servers(&self) -> String {
        server_list(&self.addrs())
    }

    /// The admin token (written by whichever node created the cluster).
    pub fn admin_token(&self) -> Result<String, TestkitError> {
        let mut last = None;
        for node in &self.nodes {
            match node.process.admin_token() {
                Ok(token) => return Ok(token),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| TestkitError::Binary("no nodes".into())))
    }

    /// The admin credential.
    pub fn admin_credential(&self) -> Result<Credential, TestkitError> {
        let text = self.admin_token()?;
        crate::token::parse(&text).map_err(|e| TestkitError::File {
            path: self.path.as_path().to_owned(),
            reason: format!("admin token: {e}"),
        })
    }

    /// Exits the supervisor saw so far (nodes that exited by themselves):
    /// one entry per exit over the cluster's life, which is one test's (a
    /// node exiting at every start fails [`Cluster::wait_primary`] after
    /// [`SUPERVISOR_RESTARTS_MAX`] restarts).
    pub fn exits(&self) -> &[Exit] {
        &self.exits
    }

    /// What node `index` answers to an admin `Hello` now.
    pub fn probe(&self, index: usize) -> Probe {
        let (Ok(token), Ok(credential)) = (self.admin_token(), self.admin_credential()) else {
            return Probe::Down("no admin token yet".into());
        };
        let mut options = ConnectOptions::new(self.node(index).process.url(), credential);
        options.connect_timeout = PROBE_TIMEOUT;
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return Probe::Down(format!("no runtime: {e}")),
        };
        let outcome = runtime.block_on(async {
            Connection::connect(&options)
                .await
                .map(|(connection, _events)| drop(connection))
        });
        match classify(&outcome) {
            // Every node that joined accepts sessions (clients on any
            // node); the primary is the one whose status says it serves.
            Probe::Serving => {
                let url = self.node(index).process.url();
                let status = runtime.block_on(crate::admin_http::cluster_status(
                    &url,
                    &token,
                    PROBE_TIMEOUT,
                ));
                match status {
                    Ok(crate::admin_http::ClusterReport::Cluster(view)) if view.serving_clients => {
                        Probe::Serving
                    }
                    Ok(_) => Probe::NotServing("accepts sessions; not the primary".into()),
                    Err(e) => Probe::Down(format!("GET /admin/cluster: {e}")),
                }
            }
            other => other,
        }
    }

    /// Restarts every node that exited by itself (recording the exit in
    /// [`Cluster::exits`]); returns how many.
    pub fn supervise(&mut self) -> Result<usize, TestkitError> {
        let mut restarted = 0;
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            if node.process.pid().is_none() {
                continue; // stopped on purpose by the test
            }
            if let Some(status) = node.process.wait_exit(Duration::ZERO)? {
                self.exits.push(Exit {
                    node: index,
                    status,
                    at: Instant::now(),
                });
                node.process.restart()?;
                restarted += 1;
            }
        }
        Ok(restarted)
    }

    /// Waits up to `timeout` until exactly one node serves; returns its
    /// index. Nodes that exit meanwhile are restarted ([`Cluster::supervise`]).
    pub fn wait_primary(&mut self, timeout: Duration) -> Result<usize, TestkitError> {
        let deadline = Instant::now() + timeout;
        let mut restarts = 0;
        loop {
            restarts += self.supervise()?;
            if restarts > SUPERVISOR_RESTARTS_MAX {
                return Err(TestkitError::Process {
                    what: format!(
                        "nodes exited {restarts} times while waiting for a primary: {:?}",
                        self.exits
                    ),
                    log: self.path.as_path().to_owned(),
                });
            }
            let probes: Vec<Probe> = (0..self.nodes.len()).map(|i| self.probe(i)).collect();
            let serving: Vec<usize> = probes
                .iter()
                .enumerate()
                .filter(|(_, p)| **p == Probe::Serving)
                .map(|(i, _)| i)
                .collect();
            if let [only] = serving[..] {
                return Ok(only);
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::Process {
                    what: format!("no single serving node within {timeout:?}: {probes:?}"),
                    log: self.path.as_path().to_owned(),
                });
            }
            std::thread::sleep(PRIMARY_POLL);
        }
    }

    /// `kill -9` node `index`.
    pub fn kill9(&mut self, index: usize) {
        self.node_mut(index).process.kill9();
    }

    /// SIGTERM node `index` and wait for it; its exit code.
    pub fn stop(&mut self, index: usize) -> Result<Option<i32>, TestkitError> {
        self.node_mut(index).process.stop()
    }

    /// Kills node `index` if it runs and starts it again on the same data
    /// directory and ports.
    pub fn restart(&mut self, index: usize) -> Result<(), TestkitError> {
        self.node_mut(index).process.restart()
    }

    /// `kill -9` every node at once (as close together as signals go).
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.process.kill9();
        }
    }

    /// Starts every node that is not running, in parallel, on its data
    /// directory and ports.
    pub fn restart_all(&mut self) -> Result<(), TestkitError> {
        if self.nodes.iter().any(|n| n.process.launch.die_with_parent) {
            // See `launch_all`: not from short-lived threads.
            return self.nodes.iter_mut().try_for_each(|n| n.process.restart());
        }
        let results: Vec<Result<(), TestkitError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .nodes
                .iter_mut()
                .map(|node| scope.spawn(move || node.process.restart()))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(TestkitError::Binary("a restart thread panicked".into()))
                    })
                })
                .collect()
        });
        results.into_iter().collect()
    }

    /// Blackholes every peer connection *to* node `index` (see the module
    /// docs); fails if the cluster has no proxies.
    pub fn cut(&self, index: usize) -> Result<(), TestkitError> {
        self.proxy_of(index)?.blackhole();
        Ok(())
    }

    /// Ends [`Cluster::cut`].
    pub fn heal(&self, index: usize) -> Result<(), TestkitError> {
        self.proxy_of(index)?.heal();
        Ok(())
    }

    fn proxy_of(&self, index: usize) -> Result<&Proxy, TestkitError> {
        let node = self.node(index);
        node.proxy.as_ref().ok_or_else(|| TestkitError::Process {
            what: format!("node {}: the cluster was started without proxies", node.id),
            log: node.process.log_path().to_owned(),
        })
    }

    /// The last `lines` lines of every node's log, for a failure message.
    pub fn logs(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|n| format!("---- node {} ----\n{}\n", n.id, n.process.log_tail(lines)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! What can be checked without a cluster: arguments, the server list,
    //! probe classification, option bounds.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn node_args_name_the_cluster_flags_and_the_advertised_proxy() {
        let options = ClusterOptions::default();
        let peer: SocketAddr = "127.0.0.1:17001".parse().unwrap();
        let proxy: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let args = node_args(&options, "http://127.0.0.1:2379", 2, peer, Some(proxy));
        let text = args.join(" ");
        assert!(text.starts_with(
            "--etcd http://127.0.0.1:2379 --node-id 2 --peer-listen 127.0.0.1:17001 \
             --replication-factor 3 --cluster-shards 4 --peer-advertise 127.0.0.1:5001"
        ));
        assert!(text.ends_with("--rate-workspace-per-sec 0"));
        let plain = node_args(&options, "http://e:1", 1, peer, None);
        assert!(!plain.iter().any(|a| a == "--peer-advertise"));
    }

    #[test]
    fn the_server_list_is_what_the_client_library_accepts() {
        let addrs: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let list = server_list(&addrs);
        assert_eq!(
            list,
            "ws://127.0.0.1:1/,ws://127.0.0.1:2/,ws://127.0.0.1:3/"
        );
        let parsed = crate::connection::server_list(&list).unwrap();
        assert_eq!(parsed.len(), 3);
    }

    #[test]
    fn a_4011_close_is_not_serving_and_anything_else_down() {
        assert_eq!(classify(&Ok(())), Probe::Serving);
        let not_serving = Err(ClientError::Closed {
            code: Some(courier_proto::close::NOT_SERVING),
            reason: "primary is node 2".into(),
        });
        assert_eq!(
            classify(&not_serving),
            Probe::NotServing("primary is node 2".into())
        );
        let refused = Err(ClientError::Timeout(Duration::from_secs(1)));
        assert!(matches!(classify(&refused), Probe::Down(_)));
        let other = Err(ClientError::Closed {
            code: Some(courier_proto::close::UNAUTHENTICATED),
            reason: String::new(),
        });
        assert!(matches!(classify(&other), Probe::Down(_)));
    }

    #[test]
    fn a_cluster_of_no_nodes_or_too_many_is_refused_before_anything_starts() {
        for nodes in [0, CLUSTER_NODES_MAX + 1] {
            let options = ClusterOptions {
                nodes,
                ..ClusterOptions::default()
            };
            assert!(matches!(
                Cluster::start(options),
                Err(TestkitError::Binary(_))
            ));
        }
    }
}
