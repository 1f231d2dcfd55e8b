//! [`ClusterAgent`]: a node's membership in the cluster, run on its own
//! thread with a single-threaded tokio runtime, so no shard core ever waits
//! on etcd. The caller reads [`ClusterStatus`] snapshots (a
//! `tokio::sync::watch` channel: the latest value only, no queue).
//!
//! # Life of an agent
//!
//! 1. **Join** ([`ClusterAgent::start`] blocks until done): connect to
//!    etcd, create the cluster or check its identity, register the node
//!    under a fresh lease. etcd unreachable → retry with backoff
//!    ([`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]), a warning per attempt,
//!    until `start_timeout` if set. A wrong cluster id or a duplicate live
//!    node id → an error at once (a duplicate is first given
//!    `duplicate_wait` to expire, for a node restarted after `kill -9`
//!    whose old lease still runs).
//! 2. **Serve**, concurrently: renew the lease every TTL/3; refresh the
//!    status every tick (nodes, placement, controller); campaign for
//!    controller and, once elected, run [`ControllerState::decide`] every
//!    tick and write placements fenced by the election key.
//! 3. **Failures**: any etcd error ends the session: the status says
//!    `etcd_connected: false` with the error, **the last placement is
//!    kept** (the caller keeps serving it), and after a backoff the session
//!    restarts on the same lease. If the lease was lost (expired while etcd
//!    was away, or revoked), the node registers again with a new lease.
//! 4. **Stop** ([`ClusterAgent::stop`]): [`Departure::Leave`] revokes the
//!    lease (the node leaves the registry and the election at once);
//!    [`Departure::Vanish`] just stops, as if the process was killed.

use std::convert::Infallible;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::constants::{
    BACKOFF_MAX, BACKOFF_MIN, GRACE_DEFAULT, LEASE_TTL_DEFAULT, REPLACE_AFTER_DEFAULT,
    REQUEST_TIMEOUT_DEFAULT, TICK_DEFAULT,
};
use crate::control::{ControlPlane, ControllerFence, Joined};
use crate::controller::{ControllerState, DecideParams};
use crate::error::{Error, Result};
use crate::types::{
    now_ms, ClusterConfig, ClusterId, ClusterParams, ClusterStatus, NodeId, NodeInfo,
};

/// The node as it registers itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Unique among live nodes.
    pub node_id: NodeId,
    /// Where clients connect.
    pub client_addr: String,
    /// Where other nodes connect.
    pub peer_addr: String,
    /// Shard cores.
    pub cores: u16,
    /// The data directory's identity ([`NodeInfo::instance`]): a restart
    /// after `kill -9` takes over its previous registration at once.
    pub instance: Option<String>,
}

/// The agent's timings. `Timing::default()` is what a production node
/// uses; tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// TTL of the node's lease: a killed node leaves the registry (and the
    /// controller role) within this. Default [`LEASE_TTL_DEFAULT`].
    pub lease_ttl: Duration,
    /// Stable node set needed before the initial placement. Default [`GRACE_DEFAULT`].
    pub grace: Duration,
    /// Absence after which a node's replicas are reassigned. Default [`REPLACE_AFTER_DEFAULT`].
    pub replace_after: Duration,
    /// Status refresh and controller check period. Default [`TICK_DEFAULT`].
    pub tick: Duration,
    /// Deadline of one etcd request. Default [`REQUEST_TIMEOUT_DEFAULT`].
    pub request_timeout: Duration,
    /// How long to wait at start for a registration holding this node id
    /// to expire before refusing (a restart after `kill -9`). Zero refuses
    /// at once. Default: `lease_ttl` + 1 s.
    pub duplicate_wait: Duration,
    /// Give up joining after this (None: retry for ever).
    pub start_timeout: Option<Duration>,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease_ttl: LEASE_TTL_DEFAULT,
            grace: GRACE_DEFAULT,
            replace_after: REPLACE_AFTER_DEFAULT,
            tick: TICK_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            duplicate_wait: LEASE_TTL_DEFAULT + Duration::from_secs(1),
            start_timeout: None,
        }
    }
}

/// Everything an agent needs to join.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// etcd client URLs, `http://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// Cluster name: the etcd key prefix `/courier/<cluster>/`.
    pub cluster: String,
    /// Parameters if this node creates the cluster (ignored when joining).
    pub params: ClusterParams,
    /// Cluster id recorded in the data directory; None for a fresh node.
    pub recorded_cluster_id: Option<ClusterId>,
    /// This node.
    pub node: NodeSpec,
    /// Timings.
    pub timing: Timing,
}

/// How an agent stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// Revoke the lease: the node leaves the registry and, if it was the
    /// controller, the election at once. A clean shutdown.
    Leave,
    /// Stop renewing and say nothing, as if the process was killed: the
    /// registration expires after the lease TTL. For crash drills and tests.
    Vanish,
}

/// A running agent (see the module docs). Dropping it is
/// [`ClusterAgent::stop`] with [`Departure::Leave`].
pub struct ClusterAgent {
    status: watch::Receiver<ClusterStatus>,
    joined: Joined,
    stop: Option<oneshot::Sender<Departure>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Ready = Result<(watch::Receiver<ClusterStatus>, Joined)>;

impl ClusterAgent {
    /// Starts the agent's thread and blocks until the node has joined the
    /// cluster and registered (see the module docs for retries). Fails with
    /// [`Error::ClusterIdMismatch`], [`Error::ClusterMissing`],
    /// [`Error::DuplicateNode`], [`Error::InvalidParams`] or
    /// [`Error::StartTimeout`].
    ///
    /// Blocking: call it from a plain thread (e.g. `main` before the shard
    /// executors start), never from inside an async executor.
    pub fn start(config: AgentConfig) -> Result<ClusterAgent> {
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Ready>(1);
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("cluster-{}", config.node.node_id))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Agent {
                            reason: format!("tokio runtime: {e}"),
                        }));
                        return;
                    }
                };
                runtime.block_on(run(config, ready_tx, stop_rx));
            })
            .map_err(|e| Error::Agent {
                reason: format!("spawn: {e}"),
            })?;
        let ready = ready_rx.recv().map_err(|_| Error::Agent {
            reason: "the agent thread ended before joining".into(),
        });
        match ready {
            Ok(Ok((status, joined))) => Ok(ClusterAgent {
                status,
                joined,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) | Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }

    /// The latest status (what etcd said at the last successful refresh).
    /// A clone: to look without copying the placement, use
    /// [`ClusterAgent::subscribe`] and `borrow()`.
    pub fn status(&self) -> ClusterStatus {
        self.status.borrow().clone()
    }

    /// A receiver that is notified of every status change.
    pub fn subscribe(&self) -> watch::Receiver<ClusterStatus> {
        self.status.clone()
    }

    /// Whether this node created the cluster.
    pub fn joined(&self) -> Joined {
        self.joined
    }

    /// Stops the agent and waits for its thread.
    pub fn stop(mut self, departure: Departure) {
        self.stop_inner(departure);
    }

    fn stop_inner(&mut self, departure: Departure) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(departure);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ClusterAgent {
    fn drop(&mut self) {
        self.stop_inner(Departure::Leave);
    }
}

/// Retry delays: [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`].
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

fn node_info(spec: &NodeSpec) -> NodeInfo {
    NodeInfo {
        node_id: spec.node_id,
        client_addr: spec.client_addr.clone(),
        peer_addr: spec.peer_addr.clone(),
        cores: spec.cores,
        started_at_ms: now_ms(),
        instance: spec.instance.clone(),
    }
}

/// Registers under a fresh lease; waits up to `duplicate_wait` for a stale
/// registration of the same id to expire. Returns the lease.
async fn register(cp: &ControlPlane, info: &NodeInfo, timing: &Timing) -> Result<i64> {
    let deadline = Instant::now() + timing.duplicate_wait;
    let mut logged = false;
    loop {
        let lease = cp.grant_lease(timing.lease_ttl).await?;
        match cp.register(info, lease).await {
            Ok(()) => return Ok(lease),
            Err(e) => {
                // Best effort: the lease expires by itself anyway.
                let _ = cp.revoke_lease(lease).await;
                let retry = matches!(e, Error::DuplicateNode { .. }) && Instant::now() < deadline;
                if !retry {
                    return Err(e);
                }
                if !logged {
                    tracing::warn!(node_id = %info.node_id, wait = ?timing.duplicate_wait,
                        "node id is registered (a previous run of this node?); waiting for its lease to expire");
                    logged = true;
                }
                tokio::time::sleep(timing.tick).await;
            }
        }
    }
}

async fn join(
    config: &AgentConfig,
    info: &NodeInfo,
) -> Result<(ControlPlane, ClusterConfig, Joined, i64)> {
    let cp = ControlPlane::connect(
        &config.endpoints,
        &config.cluster,
        config.timing.request_timeout,
    )
    .await?;
    let (cluster_config, joined) = cp
        .create_or_join(&config.params, config.recorded_cluster_id)
        .await?;
    let lease = register(&cp, info, &config.timing).await?;
    Ok((cp, cluster_config, joined, lease))
}

async fn run(
    config: AgentConfig,
    ready: mpsc::SyncSender<Ready>,
    mut stop: oneshot::Receiver<Departure>,
) {
    let node_id = config.node.node_id;
    let deadline = config.timing.start_timeout.map(|t| Instant::now() + t);
    let mut backoff = Backoff::new();
    let mut info = node_info(&config.node);
    let (cp, cluster_config, joined, lease) = loop {
        match join(&config, &info).await {
            Ok(joined) => break joined,
            Err(e) if e.is_transient() => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let _ = ready.send(Err(Error::StartTimeout {
                        cluster: config.cluster.clone(),
                        timeout: config.timing.start_timeout.unwrap_or_default(),
                        last_error: e.to_string(),
                    }));
                    return;
                }
                let delay = backoff.next();
                tracing::warn!(cluster = %config.cluster, endpoints = ?config.endpoints, error = %e,
                    retry_in = ?delay, "etcd unreachable while joining; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                tracing::error!(cluster = %config.cluster, node_id = %node_id, error = %e, "cannot join");
                let _ = ready.send(Err(e));
                return;
            }
        }
    };
    let (status_tx, status_rx) = watch::channel(ClusterStatus {
        cluster: config.cluster.clone(),
        config: cluster_config.clone(),
        node_id,
        etcd_connected: true,
        etcd_error: None,
        registered: true,
        controller: None,
        nodes: Vec::new(),
        placement: None,
    });
    if ready.send(Ok((status_rx, joined))).is_err() {
        return;
    }

    let params = DecideParams {
        shard_count: cluster_config.shard_count,
        replication_factor: cluster_config.replication_factor,
        grace: config.timing.grace,
        replace_after: config.timing.replace_after,
    };
    let mut lease = Some(lease);
    let mut backoff = Backoff::new();
    loop {
        let current = match lease {
            Some(lease) => lease,
            None => {
                info = node_info(&config.node);
                let attempt = tokio::select! {
                    departure = &mut stop => return depart(&cp, None, departure.unwrap_or(Departure::Leave)).await,
                    attempt = register(&cp, &info, &config.timing) => attempt,
                };
                match attempt {
                    Ok(new_lease) => {
                        tracing::info!(node_id = %node_id, "registered again after losing the lease");
                        lease = Some(new_lease);
                        new_lease
                    }
                    Err(e) => {
                        let delay = backoff.next();
                        tracing::warn!(node_id = %node_id, error = %e, retry_in = ?delay, "cannot register again");
                        record_error(&status_tx, &e);
                        tokio::select! {
                            departure = &mut stop => return depart(&cp, None, departure.unwrap_or(Departure::Leave)).await,
                            () = tokio::time::sleep(delay) => continue,
                        }
                    }
                }
            }
        };
        let started = Instant::now();
        let session = Session {
            cp: &cp,
            info: &info,
            lease: current,
            timing: &config.timing,
            params,
            status: &status_tx,
        };
        let ended = tokio::select! {
            departure = &mut stop => return depart(&cp, Some(current), departure.unwrap_or(Departure::Leave)).await,
            Err(e) = session.run() => e,
        };
        if started.elapsed() > 2 * BACKOFF_MAX {
            backoff = Backoff::new();
        }
        // Whatever ended the session, find out whether the lease survived
        // (etcd reports a lost lease in several ways: a zero TTL, "lease not
        // found" on keep-alive, put or campaign; and a restarted etcd may
        // have expired it). An unanswered question means etcd is away.
        let lease_gone = match &ended {
            Error::LeaseLost { .. } => true,
            _ => matches!(cp.lease_remaining(current).await, Ok(None)),
        };
        if lease_gone {
            tracing::warn!(node_id = %node_id, error = %ended, "lease lost; registering again");
            lease = None;
            status_tx.send_modify(|s| s.registered = false);
            continue;
        }
        let delay = backoff.next();
        if ended.is_transient() {
            tracing::warn!(node_id = %node_id, error = %ended, retry_in = ?delay,
                "lost etcd; keeping the last placement and reconnecting");
        } else {
            // E.g. a hand-edited, unparsable key: etcd is up but the data
            // is not usable. Reported, retried, nothing withdrawn.
            tracing::error!(node_id = %node_id, error = %ended, retry_in = ?delay,
                "control plane error; keeping the last placement and retrying");
        }
        record_error(&status_tx, &ended);
        tokio::select! {
            departure = &mut stop => return depart(&cp, lease, departure.unwrap_or(Departure::Leave)).await,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Records a failed exchange: a transient error means etcd is away; any
/// error is shown. The placement and node list stay as last seen.
fn record_error(status: &watch::Sender<ClusterStatus>, error: &Error) {
    status.send_modify(|s| {
        if error.is_transient() {
            s.etcd_connected = false;
        }
        s.etcd_error = Some(error.to_string());
    });
}

async fn depart(cp: &ControlPlane, lease: Option<i64>, departure: Departure) {
    match (departure, lease) {
        (Departure::Leave, Some(lease)) => match cp.revoke_lease(lease).await {
            Ok(()) => tracing::info!(cluster = %cp.cluster(), "left the cluster"),
            Err(e) => {
                tracing::warn!(error = %e, "could not revoke the lease on leaving; it will expire")
            }
        },
        _ => tracing::info!(cluster = %cp.cluster(), ?departure, "agent stopped"),
    }
}

/// One connected stretch of the agent's life: ends with the error that
/// ended it (never with Ok).
struct Session<'a> {
    cp: &'a ControlPlane,
    info: &'a NodeInfo,
    lease: i64,
    timing: &'a Timing,
    params: DecideParams,
    status: &'a watch::Sender<ClusterStatus>,
}

impl Session<'_> {
    async fn run(&self) -> Result<Infallible> {
        tokio::select! {
            r = self.keep_alive() => r,
            r = self.refresh() => r,
            r = self.control() => r,
        }
    }

    async fn keep_alive(&self) -> Result<Infallible> {
        let mut keep_alive = self.cp.keep_alive(self.info.node_id, self.lease).await?;
        let period = (self.timing.lease_ttl / 3).max(Duration::from_millis(100));
        loop {
            keep_alive.renew().await?;
            tokio::time::sleep(period).await;
        }
    }

    async fn refresh(&self) -> Result<Infallible> {
        loop {
            let nodes = self.cp.nodes().await?;
            if !nodes.iter().any(|n| n.node_id == self.info.node_id) {
                // Our key was deleted by hand while the lease lives: put it back.
                tracing::warn!(node_id = %self.info.node_id, "own registry key missing; registering again");
                self.cp.register(self.info, self.lease).await?;
            }
            let placement = self.cp.placement().await?;
            let controller = self.cp.controller().await?;
            let placement = placement.map(|p| p.value).filter(|p| {
                let valid = p.validate(self.params.shard_count, self.params.replication_factor);
                if let Err(reason) = &valid {
                    tracing::error!(epoch = p.epoch, %reason, "invalid placement in etcd; keeping the previous one");
                }
                valid.is_ok()
            });
            self.status.send_if_modified(|s| {
                let next_placement = placement.or_else(|| s.placement.clone());
                let changed = !s.etcd_connected
                    || s.etcd_error.is_some()
                    || !s.registered
                    || s.nodes != nodes
                    || s.controller != controller.map(|c| c.0)
                    || s.placement != next_placement;
                s.etcd_connected = true;
                s.etcd_error = None;
                s.registered = true;
                s.nodes = nodes;
                s.controller = controller.map(|c| c.0);
                s.placement = next_placement;
                changed
            });
            tokio::time::sleep(self.timing.tick).await;
        }
    }

    async fn control(&self) -> Result<Infallible> {
        loop {
            let fence = self.cp.campaign(self.info.node_id, self.lease).await?;
            match self.lead(&fence).await {
                Err(Error::NotController { key }) => {
                    tracing::warn!(node_id = %self.info.node_id, %key, "no longer controller");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn lead(&self, fence: &ControllerFence) -> Result<Infallible> {
        let mut state = ControllerState::new(Instant::now());
        // The last problem logged, so a standing one is logged once, not
        // every tick.
        let mut problem: Option<String> = None;
        loop {
            let alive: Vec<NodeId> = self.cp.nodes().await?.iter().map(|n| n.node_id).collect();
            let current = self.cp.placement().await?;
            let valid = current
                .as_ref()
                .map(|p| {
                    p.value
                        .validate(self.params.shard_count, self.params.replication_factor)
                })
                .transpose();
            let now_problem = match valid {
                Err(reason) => Some(format!(
                    "invalid placement in etcd, the controller will not touch it: {reason}"
                )),
                Ok(_) => match state.decide(
                    Instant::now(),
                    &self.params,
                    &alive,
                    current.as_ref().map(|p| &p.value),
                ) {
                    Ok(None) => None,
                    Ok(Some(next)) => match self
                        .cp
                        .write_placement(fence, current.as_ref(), &next)
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(epoch = next.epoch, nodes = ?next.nodes(), "new placement");
                            None
                        }
                        Err(Error::PlacementConflict { expected, found }) => {
                            tracing::warn!(
                                ?expected,
                                ?found,
                                "placement changed under the controller; re-reading"
                            );
                            None
                        }
                        Err(e) => return Err(e),
                    },
                    Err(e) => Some(format!(
                        "placement due but not computable, waiting for nodes: {e}"
                    )),
                },
            };
            if now_problem != problem {
                if let Some(text) = &now_problem {
                    tracing::error!("{text}");
                }
                problem = now_problem;
            }
            tokio::time::sleep(self.timing.tick).await;
        }
    }
}
