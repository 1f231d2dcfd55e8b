//! Starting and stopping the node: data directory, one pinned glommio
//! executor per shard, the channel mesh between them (built before any
//! executor starts), the shared listening port, signals.

use crate::config::Config;
use crate::datadir::DataDir;
use crate::metrics::Board;
use crate::shard::{self, Envelope, ShardSetup, Stop};
use anyhow::Context;
use courier_core::api::ShardId;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use std::net::SocketAddr;
use std::sync::Arc;

/// A started node.
pub struct Node {
    /// The address clients connect to (port resolved if 0 was asked).
    pub addr: SocketAddr,
    /// Stop flag; set it to stop the node.
    pub stop: Arc<Stop>,
    handles: Vec<glommio::ExecutorJoinHandle<anyhow::Result<()>>>,
}

impl Node {
    /// Starts every shard and returns once all of them serve.
    pub fn start(config: Config) -> anyhow::Result<Node> {
        let data = DataDir::open(&config.data_dir, config.shards)?;
        if data.created {
            tracing::info!(dir = %config.data_dir.display(), shards = config.shards, "created data directory");
        }
        if data.admin_token_written {
            tracing::info!(path = %data.admin_token_path().display(), "wrote a new admin token (mode 0600)");
        }
        let (addr, _port_holder) = resolve_port(config.listen)?;
        let config = Arc::new(config);
        let shards = data.manifest.shard_count;
        let mesh = MeshBuilder::<Envelope, _>::full(
            usize::from(shards),
            crate::constants::PEER_CHANNEL_CAPACITY,
        );
        let board = Board::new(shards);
        let stop = Stop::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let data = Arc::new(data);
        let mut handles = Vec::new();
        for k in 0..shards {
            let setup = ShardSetup {
                id: ShardId(k),
                shards,
                config: config.clone(),
                dir: data.shard_dir(k),
                admin_token_hash: data.admin_token_hash,
                mesh: mesh.clone(),
                listen: addr,
                board: board.clone(),
                stop: stop.clone(),
                ready: ready_tx.clone(),
            };
            let placement = if config.pin {
                Placement::Fixed(usize::from(k) % cpus)
            } else {
                Placement::Unbound
            };
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
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    stop.request(1);
                    anyhow::bail!("{e}");
                }
                Err(_) => anyhow::bail!("a shard exited during start"),
            }
        }
        #[cfg(feature = "failpoints")]
        crate::failpoints::get().arm();
        Ok(Node {
            addr,
            stop,
            handles,
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
        self.stop
            .exit_code
            .load(std::sync::atomic::Ordering::SeqCst)
    }
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
