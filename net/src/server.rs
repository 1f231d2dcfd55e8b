//! Starting and stopping the node: data directory, one pinned glommio
//! executor per shard, the channels between them (built before any
//! executor starts, see [`PeerEnds`]), the shared listening port, signals.
//!
//! # No start step can sleep through a peer
//! glommio 0.9's executor loop can park with a runnable task: when it stops
//! for preemption before running anything (any unconsumed completion on
//! its latency ring, such as the eventfd read that another executor's
//! notification completes), it polls I/O and parks without looking at its
//! task queues. A task just woken by another executor (a shared channel's
//! connect or receive) then waits for some other event, which during start
//! may never come. This hung `courierd`'s start about once in 300 restarts
//! under load, in glommio's `MeshBuilder::join` (the first shard to join
//! parks until the last one notifies it), after WAL recovery and before
//! the shard's first timer (docs/RELIABILITY.md, "Fixed bugs"). Two things
//! keep it from recurring:
//! - every shard arms a wake-up timer before its first await
//!   (`shard::start_wakeups`) and keeps one for its whole life
//!   (the tick task), so a lost wake-up costs at most one tick;
//! - the channels between shards are made here, before any executor runs
//!   ([`peer_channels`]), and each shard connects its ends first thing
//!   (`shard::connect_peers`): no join handshake, and the only
//!   wait on a peer is at the very start, when every executor is starting.

use crate::cluster::replicas::ReplicaStart;
use crate::cluster::Mode;
use crate::config::Config;
use crate::datadir::{AdminToken, DataDir, LockedDir};
use crate::metrics::Board;
use crate::shard::{self, Envelope, ShardSetup, Stop};
use anyhow::Context;
use courier_core::api::ShardId;
use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::{LocalExecutorBuilder, Placement};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A started node.
pub struct Node {
    /// The address clients connect to (port resolved if 0 was asked).
    pub addr: SocketAddr,
    /// Stop flag; set it to stop the node.
    pub stop: Arc<Stop>,
    handles: Vec<glommio::ExecutorJoinHandle<anyhow::Result<()>>>,
    /// The cluster agent (cluster mode); stopped after the shards, which
    /// leaves the cluster (revokes the node's lease).
    cluster: Option<courier_cluster::ClusterAgent>,
}

impl Node {
    /// Starts every shard and returns once all of them serve.
    ///
    /// Each start phase is logged (`start: …` lines, with the
    /// milliseconds since the start began), so a slow start names the
    /// phase it is in: data directory, then per shard WAL open, recovery,
    /// channel mesh, core start, listening; then every shard serving.
    pub fn start(mut config: Config) -> anyhow::Result<Node> {
        let started = Instant::now();
        tracing::info!(dir = %config.data_dir.display(), "start: opening the data directory");
        let (addr, _port_holder) = resolve_port(config.listen)?;
        let _peer_port_holder = crate::cluster::peers::reserve_peer_port(&mut config)?;
        let (data, mode, cluster) = open_data(&config, addr)?;
        if data.created {
            tracing::info!(dir = %config.data_dir.display(), shards = config.shards, "created data directory");
        }
        if data.admin_token_written {
            tracing::info!(path = %data.admin_token_path().display(), "wrote a new admin token (mode 0600)");
        }
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            shards = data.manifest.shard_count,
            %addr,
            "start: data directory locked; starting the shards"
        );
        let config = Arc::new(config);
        let shards = data.manifest.shard_count;
        let mut peers =
            peer_channels(usize::from(shards), crate::constants::PEER_CHANNEL_CAPACITY).into_iter();
        let board = Board::new(shards);
        let stop = Stop::new();
        let mut replicas = replica_setup(&config, cluster.as_ref(), shards, &stop)?.into_iter();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let data = Arc::new(data);
        let mut handles = Vec::new();
        for k in 0..shards {
            let Some(peers) = peers.next() else {
                anyhow::bail!("no channel ends for shard {k}");
            };
            let setup = ShardSetup {
                id: ShardId(k),
                shards,
                config: config.clone(),
                dir: data.shard_dir(k),
                admin_token_hash: data.admin_token_hash,
                mode: mode.clone(),
                peers,
                listen: addr,
                board: board.clone(),
                stop: stop.clone(),
                ready: ready_tx.clone(),
                replica: replicas.next().flatten().map(|rx| shard::ReplicaSetup {
                    rx,
                    dir: config.data_dir.join("raft").join(format!("shard-{k}")),
                }),
            };
            let placement = core_placement(config.pin, k, cpus);
            let ready = ready_tx.clone();
            let data = data.clone();
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("shard-{k}"))
                .spawn(move || async move {
                    let _data = data; // keeps the directory lock alive
                    let result = shard::run(setup).await;
                    if let Err(e) = &result {
                        let _ = ready.send(Err(format!("{e:#}")));
                    }
                    result
                })
                .map_err(|e| anyhow::anyhow!("starting executor for shard {k}: {e}"))?;
            handles.push(handle);
        }
        drop(ready_tx);
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(k)) => tracing::info!(
                    shard = k.0,
                    ms = started.elapsed().as_millis() as u64,
                    "start: shard serving"
                ),
                Ok(Err(e)) => {
                    stop.request(1);
                    anyhow::bail!("{e}");
                }
                Err(_) => anyhow::bail!("a shard exited during start"),
            }
        }
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "start: every shard serves"
        );
        #[cfg(feature = "failpoints")]
        crate::failpoints::get().arm();
        Ok(Node {
            addr,
            stop,
            handles,
            cluster,
        })
    }

    /// Waits until every shard has stopped; returns the exit code.
    pub fn wait(self) -> i32 {
        for h in self.handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "shard failed");
                    self.stop.request(1);
                }
                Err(e) => {
                    tracing::error!(error = ?e, "shard thread panicked");
                    self.stop.request(2);
                }
            }
        }
        if let Some(agent) = self.cluster {
            agent.stop(courier_cluster::Departure::Leave);
        }
        self.stop
            .exit_code
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Opens the data directory for the node's mode: single-node as always, or
/// in cluster mode after joining the cluster (which may refuse the
/// directory, see [`crate::cluster::join`]). Returns the directory, the
/// shards' [`Mode`] and the cluster agent.
fn open_data(
    config: &Config,
    addr: SocketAddr,
) -> anyhow::Result<(DataDir, Arc<Mode>, Option<courier_cluster::ClusterAgent>)> {
    let Some(settings) = &config.cluster else {
        let data = DataDir::open(&config.data_dir, config.shards)?;
        let mode = Arc::new(Mode::single(data.admin_token_hash));
        return Ok((data, mode, None));
    };
    let mut locked = LockedDir::lock(&config.data_dir)?;
    let joined = crate::cluster::join(settings, &mut locked, addr, config.shards)?;
    let data = locked.finish(
        config.shards,
        settings.node_id.0,
        AdminToken::Cluster(joined.admin_token_hash),
    )?;
    let view = Arc::new(crate::cluster::NodeView::new(
        u64::from(settings.node_id.0),
        config.shards,
    ));
    let mode = Arc::new(Mode::cluster(joined.admin_token_hash, &joined.agent, view));
    tracing::info!(
        close_code = courier_proto::close::NOT_SERVING,
        "cluster mode: client sessions are refused (NOT_SERVING) until this node knows its \
         cluster's voters; then every core accepts them and routes them to the primary \
         (docs/CLUSTER.md, \"Clients on any node\")"
    );
    Ok((data, mode, Some(joined.agent)))
}

/// Where shard `k`'s executor runs: pinned to a CPU with `--pin`.
fn core_placement(pin: bool, k: u16, cpus: usize) -> Placement {
    if pin {
        Placement::Fixed(usize::from(k) % cpus)
    } else {
        Placement::Unbound
    }
}

/// Cluster mode: starts the thread that learns the voters and builds the
/// node links (`crate::cluster::replicas`); returns each core's receiving
/// end (all `None` in single-node mode).
fn replica_setup(
    config: &Config,
    agent: Option<&courier_cluster::ClusterAgent>,
    shards: u16,
    stop: &Arc<Stop>,
) -> anyhow::Result<Vec<Option<std::sync::mpsc::Receiver<ReplicaStart>>>> {
    let (Some(settings), Some(agent)) = (&config.cluster, agent) else {
        return Ok((0..shards).map(|_| None).collect());
    };
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| std::sync::mpsc::channel()).unzip();
    crate::cluster::replicas::spawn(crate::cluster::replicas::Setup {
        status: agent.subscribe(),
        node: settings.node_id.0,
        peer_listen: settings.peer_listen,
        cores: shards,
        dir: config.data_dir.join("raft"),
        cores_tx: txs,
        stop: stop.clone(),
    })?;
    Ok(rxs.into_iter().map(Some).collect())
}

/// One shard's ends of the bounded channels to and from every other shard.
/// Made by [`peer_channels`] on the main thread before any executor starts;
/// the shard connects them first thing on its own executor
/// ([`crate::shard::run`]).
pub struct PeerEnds<T: Send = Envelope> {
    /// `to[k]`: what this shard sends to shard `k` (`None` for itself).
    pub to: Vec<Option<SharedSender<T>>>,
    /// `from[k]`: what shard `k` sends to this shard (`None` for itself).
    pub from: Vec<Option<SharedReceiver<T>>>,
}

impl<T: Send> Default for PeerEnds<T> {
    /// No ends (what is left in a setup once the shard took its ends).
    fn default() -> Self {
        PeerEnds {
            to: Vec::new(),
            from: Vec::new(),
        }
    }
}

/// One bounded single-producer single-consumer channel per ordered pair of
/// distinct shards, each holding at most `capacity` envelopes; returns the
/// ends of shard `k` at index `k`.
pub fn peer_channels<T: Send>(shards: usize, capacity: usize) -> Vec<PeerEnds<T>> {
    let mut ends: Vec<PeerEnds<T>> = (0..shards)
        .map(|_| PeerEnds {
            to: (0..shards).map(|_| None).collect(),
            from: (0..shards).map(|_| None).collect(),
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from != to {
                let (sender, receiver) = shared_channel::new_bounded(capacity);
                ends[from].to[to] = Some(sender);
                ends[to].from[from] = Some(receiver);
            }
        }
    }
    ends
}

/// Every shard binds the same address with SO_REUSEPORT. For port 0 we pick
/// the port once (by binding it here, also with SO_REUSEPORT, and closing
/// that socket again) so all shards share it.
/// The returned socket (bound, never listening, so it gets no connections)
/// holds the port until the shards have bound it.
fn resolve_port(addr: SocketAddr) -> anyhow::Result<(SocketAddr, Option<socket2::Socket>)> {
    if addr.port() != 0 {
        return Ok((addr, None));
    }
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    let local = socket
        .local_addr()?
        .as_socket()
        .context("listener has no IP address")?;
    Ok((local, Some(socket)))
}

#[cfg(test)]
mod tests {
    //! The shard channels' start handshake, on real glommio executors.
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;

    /// Rounds. Without `start_wakeups` this loop hung (an executor parked
    /// for good) within 300 rounds on a loaded 2-core machine, in the
    /// connect or in the receive; so did glommio's `MeshBuilder::join`.
    const ROUNDS: u64 = 300;

    /// How long one round may take (a healthy round takes milliseconds).
    const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

    /// Two executors, each with the shard's start wake-ups, connect their
    /// ends while one of them starts up to 2 ms late (so the other waits on
    /// it), then exchange one message each way; every round must end.
    #[test]
    fn shard_channels_connect_with_a_late_peer_and_carry_messages() {
        for round in 0..ROUNDS {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let mut handles = Vec::new();
            for (k, ends) in peer_channels::<usize>(2, 16).into_iter().enumerate() {
                let done = done_tx.clone();
                let late = Duration::from_micros((round * 7 + k as u64 * 13) % 5 * 500);
                let handle = LocalExecutorBuilder::new(Placement::Unbound)
                    .name(&format!("test-shard-{k}"))
                    .spawn(move || async move {
                        // As `shard::run` does before its first await.
                        let serving = crate::shard::start_wakeups();
                        if !late.is_zero() {
                            // A timer sleep parks this executor, like a
                            // shard whose thread starts late.
                            glommio::timer::sleep(late).await;
                        }
                        let (senders, receivers) = crate::shard::connect_peers(ends).await;
                        let peer = 1 - k;
                        let sender = senders[peer].as_ref().expect("a sender to the peer");
                        let sent = sender.send(k).await;
                        assert!(sent.is_ok(), "send to shard {peer} failed");
                        let (from, receiver) = &receivers[0];
                        assert_eq!(*from, peer);
                        let got = receiver.recv().await.expect("the peer's message");
                        assert_eq!(got, peer);
                        serving.set(true);
                        let _ = done.send(k);
                    })
                    .unwrap();
                handles.push(handle);
            }
            drop(done_tx);
            for _ in 0..2 {
                assert!(
                    done_rx.recv_timeout(ROUND_TIMEOUT).is_ok(),
                    "round {round}: the shard channels did not connect within {ROUND_TIMEOUT:?}"
                );
            }
            for h in handles {
                h.join().unwrap();
            }
        }
    }
}
