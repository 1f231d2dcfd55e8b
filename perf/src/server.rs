//! The server under test: a `courierd` the harness starts on a temporary
//! data directory (and stops), or an external one given with `--server`.
//! Also what the harness reads about it from outside: `/metrics`, and CPU
//! time and resident memory from `/proc/PID`.

use anyhow::{anyhow, bail, Context};
use clap::Args;
use courier_core::api::Credential;
use courier_tools::testkit::cluster::{Cluster, ClusterOptions};
use courier_tools::testkit::{Launch, ServerProcess};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a spawned daemon may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Options shared by every scenario: which server, how many load threads,
/// output format.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Use a running courierd at this address (ws://HOST:PORT or HOST:PORT)
    /// instead of starting one. Needs --admin-token.
    #[arg(long)]
    pub server: Option<String>,
    /// Admin token (ca1_…) of the external server (see DATA/admin.token).
    #[arg(long, env = "COURIER_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// PID of the external server, to report its CPU time and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// courierd binary to start [default: next to this binary, else built with cargo].
    #[arg(long, env = "COURIERD_BIN")]
    pub courierd: Option<PathBuf>,
    /// Shards of the started courierd [default: number of cores].
    #[arg(long)]
    pub shards: Option<u16>,
    /// Extra argument for the started courierd (repeatable), e.g. --server-arg=--pin=true.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Directory for temporary data directories; must be a disk file system
    /// (courierd uses O_DIRECT, which tmpfs lacks) [default: $TMPDIR or /tmp].
    #[arg(long, env = "COURIER_BENCH_DIR")]
    pub data_root: Option<PathBuf>,
    /// Load-generator threads (one tokio current-thread runtime each)
    /// [default: number of cores].
    #[arg(long)]
    pub client_threads: Option<usize>,
    /// Print one JSON object with every figure as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

impl Common {
    /// Load threads to run.
    pub fn threads(&self) -> usize {
        self.client_threads.unwrap_or_else(cores).max(1)
    }

    /// Where temporary data goes.
    pub fn data_root(&self) -> PathBuf {
        self.data_root.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Parameters for the JSON record.
    pub fn params(&self) -> Value {
        json!({
            "server": self.server.clone().unwrap_or_else(|| "spawned".to_owned()),
            "shards": self.shards.map(u64::from).unwrap_or(cores() as u64),
            "server_args": self.server_args,
            "client_threads": self.threads(),
        })
    }
}

/// Cores of this machine.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Raises this process's open-file limit (soft and hard) to at least
/// `want`; children started afterwards inherit it. Returns the new soft limit.
pub fn raise_nofile(want: u64) -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into our struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20);
    let target = want.min(nr_open);
    let new = libc::rlimit {
        rlim_cur: target,
        rlim_max: target.max(lim.rlim_max),
    };
    // SAFETY: setrlimit reads our struct. Raising the hard limit needs
    // CAP_SYS_RESOURCE (the harness runs as root on the bench machine).
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        let soft = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above, within the existing hard limit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) };
        return Ok(lim.rlim_max);
    }
    Ok(target)
}

/// `--cluster N` of `send` and `e2e`: the same measurement, in the same
/// run, against a replicated cluster from the test kit, next to the single
/// node's.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// After the single node, run the same measurement against an N-node
    /// replicated cluster (the test kit's: a private etcd and N cluster-mode
    /// courierds on loopback with the same --shards, replication factor
    /// min(N, 3)), served by its primary; 0 = no cluster run. Data goes
    /// under $COURIER_TEST_DIR or the system temporary directory.
    #[arg(long, default_value_t = 0)]
    pub cluster: usize,
}

/// How long a test cluster may take to elect its first primary.
const FIRST_PRIMARY: Duration = Duration::from_secs(120);

/// courierd's own WAL segment size (`--segment-mib` default), given to the
/// cluster's nodes so that they run like the single node (the test kit
/// would add 4 MiB).
const SEGMENT_MIB_DEFAULT: &str = "64";

/// A spawned courierd process: the test kit's [`ServerProcess`] (one
/// harness for tests and benchmarks), run with courierd's own defaults.
struct Spawned {
    server: ServerProcess,
    extra: Vec<String>,
    _temp: tempfile::TempDir,
}

/// The abuse limits of a spawned courierd.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimits {
    /// `--rate-conn-per-sec 0 --rate-user-per-sec 0
    /// --rate-workspace-per-sec 0`: benchmarks measure the engine, not the
    /// limits (which a closed-loop load would hit by design).
    Off,
    /// courierd's default per-connection, per-user and per-workspace limits.
    Default,
}

impl RateLimits {
    /// Its name in tables and JSON.
    pub fn key(self) -> &'static str {
        match self {
            RateLimits::Off => "off",
            RateLimits::Default => "default",
        }
    }
}

/// The server under test.
pub struct Target {
    /// Its address.
    pub addr: SocketAddr,
    /// The admin credential.
    pub admin: Credential,
    spawned: Option<Spawned>,
    external_pid: Option<u32>,
    /// A cluster started by [`Target::start_cluster`]; `addr` is its primary.
    cluster: Option<ClusterTarget>,
}

/// A test-kit cluster serving as the target.
struct ClusterTarget {
    cluster: Cluster,
    primary: usize,
}

/// Timings of one daemon start.
#[derive(Debug, Clone, Copy)]
pub struct StartTimes {
    /// From `spawn` to the ready line.
    pub ready_ns: u64,
}

fn parse_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .trim()
        .trim_start_matches("ws://")
        .trim_start_matches("http://");
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .parse()
        .with_context(|| format!("--server {url:?}: expected ws://IP:PORT on this machine"))
}

impl Target {
    /// Starts courierd (or connects to `--server`).
    pub fn start(common: &Common) -> anyhow::Result<Target> {
        if let Some(url) = &common.server {
            let addr = parse_addr(url)?;
            if !addr.ip().is_loopback() {
                bail!("--server must be a loopback address (benchmarks only target this machine)");
            }
            let token = common
                .admin_token
                .as_deref()
                .ok_or_else(|| anyhow!("--server needs --admin-token (DATA/admin.token)"))?;
            let admin = courier_proto::token::parse(token.trim())
                .map_err(|e| anyhow!("--admin-token: {e}"))?;
            return Ok(Target {
                addr,
                admin,
                spawned: None,
                external_pid: common.server_pid,
                cluster: None,
            });
        }
        let binary = match &common.courierd {
            Some(path) => path.clone(),
            None => courier_tools::testkit::courierd_binary()?,
        };
        let root = common.data_root();
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let temp = tempfile::Builder::new()
            .prefix("courier-bench-")
            .tempdir_in(&root)
            .with_context(|| format!("creating a data directory in {}", root.display()))?;
        let mut launch = Launch::new(
            &temp.path().join("data"),
            common.shards.unwrap_or(cores() as u16),
        );
        launch.binary = Some(binary);
        launch.log = temp.path().join("courierd.log");
        launch.args = server_args(RateLimits::Off, &common.server_args);
        launch.env = vec![(
            "COURIER_LOG".to_owned(),
            std::env::var("COURIER_LOG").unwrap_or_else(|_| "warn".into()),
        )];
        launch.test_defaults = false;
        launch.ready_timeout = READY_TIMEOUT;
        launch.die_with_parent = true;
        let server = ServerProcess::launch(launch)?;
        let admin = courier_proto::token::parse(&server.admin_token()?)
            .map_err(|e| anyhow!("{}/admin.token: {e}", server.data_dir().display()))?;
        Ok(Target {
            addr: server.addr(),
            admin,
            spawned: Some(Spawned {
                server,
                extra: common.server_args.clone(),
                _temp: temp,
            }),
            external_pid: None,
            cluster: None,
        })
    }

    /// Starts an `nodes`-node replicated cluster from the test kit (etcd
    /// and cluster-mode courierds, `--shards` and the extra arguments as
    /// for the single node, the abuse limits off) and waits for its
    /// primary, which is then the target's address. The probe sums CPU and
    /// memory over every node; metrics are the primary's.
    pub fn start_cluster(common: &Common, nodes: usize) -> anyhow::Result<Target> {
        Target::start_cluster_with(common, nodes, nodes.min(3) as u8)
    }

    /// [`Target::start_cluster`] with this replication factor (the
    /// cluster's voters; `--cluster-shards` is at least it).
    pub fn start_cluster_with(
        common: &Common,
        nodes: usize,
        replication_factor: u8,
    ) -> anyhow::Result<Target> {
        let binary = match &common.courierd {
            Some(path) => path.clone(),
            None => courier_tools::testkit::courierd_binary()?,
        };
        let mut options = ClusterOptions {
            nodes,
            shards: common.shards.unwrap_or(cores() as u16),
            replication_factor,
            cluster_shards: u32::from(replication_factor).max(4),
            binary: Some(binary),
            die_with_parent: true,
            ..ClusterOptions::default()
        };
        options.args = server_args(RateLimits::Off, &common.server_args);
        if !common
            .server_args
            .iter()
            .any(|a| a.starts_with("--segment-mib"))
        {
            options
                .args
                .extend(["--segment-mib".into(), SEGMENT_MIB_DEFAULT.into()]);
        }
        options.env.push((
            "COURIER_LOG".to_owned(),
            std::env::var("COURIER_LOG").unwrap_or_else(|_| "warn".into()),
        ));
        let mut cluster = Cluster::start(options).context("starting the cluster")?;
        let primary = cluster
            .wait_primary(FIRST_PRIMARY)
            .map_err(|e| anyhow!("{e}\n{}", cluster.logs(15)))?;
        let admin = cluster.admin_credential()?;
        Ok(Target {
            addr: cluster.node(primary).process().addr(),
            admin,
            spawned: None,
            external_pid: None,
            cluster: Some(ClusterTarget { cluster, primary }),
        })
    }

    /// Every node of a cluster target, in node order (node id = index +
    /// 1): client address and process id; empty for a single server.
    pub fn cluster_nodes(&self) -> Vec<(SocketAddr, Option<u32>)> {
        self.cluster.as_ref().map_or_else(Vec::new, |c| {
            c.cluster
                .nodes()
                .iter()
                .map(|n| (n.process().addr(), n.process().pid()))
                .collect()
        })
    }

    /// The index of a cluster target's primary (when it was started).
    pub fn primary_index(&self) -> Option<usize> {
        self.cluster.as_ref().map(|c| c.primary)
    }

    /// Cluster nodes that are not running any more, each as a paragraph:
    /// node, exit status, the last `lines` of its log.
    pub fn exited_nodes(&mut self, lines: usize) -> Vec<String> {
        let Some(c) = self.cluster.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for i in 0..c.cluster.nodes().len() {
            let process = c.cluster.node_mut(i).process_mut();
            if process.is_running() {
                continue;
            }
            let status = process
                .wait_exit(Duration::ZERO)
                .ok()
                .flatten()
                .map_or_else(|| "?".to_owned(), |s| s.to_string());
            out.push(format!(
                "node {} exited ({status}); its log:\n{}",
                i + 1,
                process.log_tail(lines)
            ));
        }
        out
    }

    /// The last `lines` of cluster node `index`'s log.
    pub fn node_log_tail(&self, index: usize, lines: usize) -> String {
        self.cluster
            .as_ref()
            .and_then(|c| c.cluster.nodes().get(index))
            .map_or_else(String::new, |n| n.process().log_tail(lines))
    }

    /// A server this harness did not start (e.g. a cluster node started by
    /// the `failover` scenario's test kit): setup only, no process control.
    pub fn external(addr: SocketAddr, admin: Credential) -> Target {
        Target {
            addr,
            admin,
            spawned: None,
            external_pid: None,
            cluster: None,
        }
    }

    /// `ws://ADDR/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The server's process id, if known.
    pub fn pid(&self) -> Option<u32> {
        match &self.spawned {
            Some(s) => s.server.pid(),
            None => self.external_pid,
        }
    }

    /// The data directory of a spawned server.
    pub fn data_dir(&self) -> Option<&Path> {
        self.spawned.as_ref().map(|s| s.server.data_dir())
    }

    fn spawned(&mut self, what: &str) -> anyhow::Result<&mut Spawned> {
        self.spawned
            .as_mut()
            .ok_or_else(|| anyhow!("cannot {what} an external server"))
    }

    /// `kill -9` of a spawned server (an error for an external one).
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.spawned("kill")?.server.kill9();
        Ok(())
    }

    /// SIGTERM and wait (a clean shutdown) of a spawned server.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.spawned("stop")?.server.stop()?;
        Ok(())
    }

    /// Kills a spawned server and starts it again on the same data
    /// directory and port.
    pub fn restart(&mut self) -> anyhow::Result<StartTimes> {
        let server = &mut self.spawned("restart")?.server;
        server.restart()?;
        Ok(StartTimes::of(server))
    }

    /// Stops a spawned server cleanly and starts it again on the same data
    /// directory and port with these abuse limits.
    pub fn restart_with_limits(&mut self, limits: RateLimits) -> anyhow::Result<StartTimes> {
        let s = self.spawned("reconfigure")?;
        s.server.stop()?;
        s.server.launch_mut().args = server_args(limits, &s.extra);
        s.server.restart()?;
        Ok(StartTimes::of(&s.server))
    }

    /// The server processes: the one server, or every node of a cluster
    /// (the primary first).
    fn pids(&self) -> Vec<u32> {
        let Some(c) = &self.cluster else {
            return self.pid().into_iter().collect();
        };
        let nodes = c.cluster.nodes();
        let order = std::iter::once(c.primary).chain((0..nodes.len()).filter(|i| *i != c.primary));
        order.filter_map(|i| nodes[i].process().pid()).collect()
    }

    /// The data directories of the spawned server or of every cluster node
    /// (the primary first).
    fn data_dirs(&self) -> Vec<PathBuf> {
        let Some(c) = &self.cluster else {
            return self.data_dir().map(Path::to_owned).into_iter().collect();
        };
        let nodes = c.cluster.nodes();
        let order = std::iter::once(c.primary).chain((0..nodes.len()).filter(|i| *i != c.primary));
        order
            .map(|i| nodes[i].process().data_dir().to_owned())
            .collect()
    }

    /// What the run left in the WALs of every node (read offline, with the
    /// WAL inspector): per node the state WAL's used bytes (up to each
    /// segment's last valid record; preallocated space not counted) over
    /// its `MessagePosted` records, and the raft WAL's retained bytes (it
    /// is compacted: a bound, not a per-message cost). Null for an external
    /// server.
    pub fn wal_footprint(&self) -> Value {
        let nodes: Vec<Value> = self.data_dirs().iter().map(|d| log_footprint(d)).collect();
        if nodes.is_empty() {
            return Value::Null;
        }
        let state: f64 = nodes.iter().filter_map(|n| n["state_bytes"].as_f64()).sum();
        let messages = nodes[0]["messages"].as_f64().unwrap_or(0.0);
        json!({
            "nodes": nodes,
            "state_bytes_all_nodes": state,
            "state_bytes_per_message_all_nodes": if messages > 0.0 { Some(state / messages) } else { None },
        })
    }

    /// What can be read about the server from another thread.
    pub fn probe(&self) -> Probe {
        Probe {
            addr: self.addr,
            pids: self.pids(),
            scrape: true,
        }
    }

    /// The last lines of a spawned server's log (every node's for a cluster).
    pub fn log_tail(&self) -> String {
        if let Some(c) = &self.cluster {
            return c.cluster.logs(15);
        }
        self.spawned
            .as_ref()
            .map_or_else(String::new, |s| s.server.log_tail(15))
    }
}

/// Reads the server's metrics, CPU time and memory; `Send`, cheap to clone.
#[derive(Clone, Debug)]
pub struct Probe {
    addr: SocketAddr,
    /// The server's processes (a cluster's nodes, primary first); CPU and
    /// memory are summed over them.
    pids: Vec<u32>,
    /// Whether `addr` serves courierd's `/metrics`.
    scrape: bool,
}

/// One reading of a [`Probe`].
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// When ([`crate::clock::now_ns`]).
    pub at_ns: u64,
    /// Server CPU time so far (summed over its processes).
    pub server_cpu_ns: Option<u64>,
    /// CPU time so far of each server process, when there are several (a
    /// cluster's nodes, primary first).
    pub process_cpu_ns: Vec<Option<u64>>,
    /// Load generator CPU time so far.
    pub client_cpu_ns: u64,
    /// Server resident memory.
    pub rss_kib: Option<u64>,
    /// Server metrics (empty if the scrape failed).
    pub metrics: BTreeMap<String, f64>,
}

impl Probe {
    /// A probe of a peer process (CPU and memory only, no metrics).
    pub fn process(addr: SocketAddr, pid: u32) -> Probe {
        Probe {
            addr,
            pids: vec![pid],
            scrape: false,
        }
    }

    /// The summed value of every `courier_*` metric over all shards.
    pub fn metrics(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        if !self.scrape {
            return Ok(BTreeMap::new());
        }
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(parse_metrics(&text))
    }

    /// CPU time (user + system) the server process(es) used, in ns;
    /// None if any of them cannot be read.
    pub fn cpu_ns(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().map(|p| proc_cpu_ns(*p)).sum()
    }

    /// Resident memory of the server process(es), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().map(|p| proc_rss_kib(*p)).sum()
    }

    /// Everything at once (the metrics scrape is a blocking HTTP request
    /// of about a millisecond).
    pub fn sample(&self) -> Sample {
        Sample {
            at_ns: crate::clock::now_ns(),
            server_cpu_ns: self.cpu_ns(),
            process_cpu_ns: if self.pids.len() > 1 {
                self.pids.iter().map(|p| proc_cpu_ns(*p)).collect()
            } else {
                Vec::new()
            },
            client_cpu_ns: self_cpu_ns(),
            rss_kib: self.rss_kib(),
            metrics: self.metrics().unwrap_or_default(),
        }
    }
}

/// One data directory's WAL footprint (see [`Target::wal_footprint`]).
fn log_footprint(dir: &Path) -> Value {
    use courier_tools::walinspect::inspect_data_dir;
    let used = |logs: &[courier_tools::walinspect::LogReport]| -> (u64, u64) {
        let bytes = logs
            .iter()
            .flat_map(|l| &l.segments)
            .map(|s| s.used_bytes)
            .sum();
        let kind = courier_core::record::KIND_MESSAGE_POSTED;
        let messages = logs.iter().filter_map(|l| l.kinds.get(&kind)).sum();
        (bytes, messages)
    };
    let state = match inspect_data_dir(dir, &mut |_| {}) {
        Ok(logs) => used(&logs),
        Err(e) => return json!({"error": e.to_string()}),
    };
    let raft_dir = dir.join("raft");
    let raft = if raft_dir.is_dir() {
        inspect_data_dir(&raft_dir, &mut |_| {})
            .ok()
            .map(|logs| used(&logs).0)
    } else {
        None
    };
    json!({
        "state_bytes": state.0,
        "messages": state.1,
        "state_bytes_per_message": if state.1 > 0 { Some(state.0 as f64 / state.1 as f64) } else { None },
        "raft_bytes_retained": raft,
    })
}

/// Figures between two samples: CPU used by the server and the load
/// generator (in cores), and the change of every server counter.
pub fn usage(a: &Sample, b: &Sample) -> Value {
    let wall = b.at_ns.saturating_sub(a.at_ns).max(1) as f64;
    let server = match (a.server_cpu_ns, b.server_cpu_ns) {
        (Some(x), Some(y)) => json!((y.saturating_sub(x)) as f64 / wall),
        _ => Value::Null,
    };
    let per_process: Vec<Value> = a
        .process_cpu_ns
        .iter()
        .zip(&b.process_cpu_ns)
        .map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => json!(y.saturating_sub(*x) as f64 / wall),
            _ => Value::Null,
        })
        .collect();
    let d = metrics_delta(&a.metrics, &b.metrics);
    let get = |k: &str| d.get(k).copied().unwrap_or(0.0);
    let batches = get("wal_batches_total");
    json!({
        "wall_s": wall / 1e9,
        "server_cpu_cores": server,
        "server_cpu_cores_per_process": per_process,
        "client_cpu_cores": b.client_cpu_ns.saturating_sub(a.client_cpu_ns) as f64 / wall,
        "server_rss_kib": b.rss_kib,
        "wal_appends": get("wal_appends_total"),
        "wal_batches": batches,
        "wal_records_per_batch": if batches > 0.0 { get("wal_appends_total") / batches } else { 0.0 },
        "wal_fsync_ms_mean": if batches > 0.0 { get("wal_fsync_seconds_sum") * 1e3 / batches } else { 0.0 },
        "wal_fsync_ms_max": b.metrics.get("wal_fsync_seconds_max").copied().unwrap_or(0.0) * 1e3,
        "wal_backpressure": get("wal_backpressure_total"),
        "frames_in": get("frames_in_total"),
        "frames_out": get("frames_out_total"),
        "slow_consumer_cutoffs": get("slow_consumer_cutoffs_total"),
        "rejects": get("core_rejects_total"),
    })
}

/// courierd's arguments for a benchmark run: no CPU pinning (the load
/// generator shares the machine), the abuse limits, then the user's extras.
fn server_args(limits: RateLimits, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec!["--pin".into(), "false".into()];
    if limits == RateLimits::Off {
        for flag in [
            "--rate-conn-per-sec",
            "--rate-user-per-sec",
            "--rate-workspace-per-sec",
        ] {
            args.extend([flag.to_owned(), "0".to_owned()]);
        }
    }
    args.extend(extra.iter().cloned());
    args
}

impl StartTimes {
    fn of(server: &ServerProcess) -> StartTimes {
        let ready = server.last_start().unwrap_or_default();
        StartTimes {
            ready_ns: u64::try_from(ready.as_nanos()).unwrap_or(u64::MAX),
        }
    }
}

/// Sums `courier_NAME{shard="k"} V` lines by NAME (without the prefix).
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix("courier_") else {
            continue;
        };
        let name_end = rest.find(['{', ' ']).unwrap_or(rest.len());
        let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let name = &rest[..name_end];
        if name.ends_with("_max") {
            let e = out.entry(name.to_owned()).or_insert(0.0f64);
            *e = e.max(value);
        } else {
            *out.entry(name.to_owned()).or_insert(0.0) += value;
        }
    }
    out
}

/// Differences of counters between two scrapes.
pub fn metrics_delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// utime + stime of a process, in ns.
pub fn proc_cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((utime + stime) * 1_000_000_000 / hz)
}

/// VmRSS of a process, in KiB.
pub fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Our own CPU time (the load generator), in ns.
pub fn self_cpu_ns() -> u64 {
    proc_cpu_ns(std::process::id()).unwrap_or(0)
}

/// Bytes of every file under `dir` (apparent sizes).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    let mut visited = 0usize;
    while let Some(d) = stack.pop() {
        visited += 1;
        if visited > 1_000_000 {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_over_shards() {
        let text = "# HELP courier_x y\ncourier_wal_batches_total{shard=\"0\"} 3\n\
                    courier_wal_batches_total{shard=\"1\"} 4\ncourier_wal_fsync_seconds_max{shard=\"0\"} 0.5\n\
                    courier_wal_fsync_seconds_max{shard=\"1\"} 0.25\nother 1\n";
        let m = parse_metrics(text);
        assert_eq!(m["wal_batches_total"], 7.0);
        assert_eq!(m["wal_fsync_seconds_max"], 0.5);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn own_cpu_and_rss_are_readable() {
        assert!(proc_rss_kib(std::process::id()).unwrap() > 0);
        assert!(proc_cpu_ns(std::process::id()).is_some());
    }
}
