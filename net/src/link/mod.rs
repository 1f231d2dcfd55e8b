//! Node-to-node links: the transport a cluster's Raft and peer messages
//! travel on (docs/LINKS.md has the wire format, bounds and guarantees).
//!
//! Each core of a node keeps **one outgoing TCP connection per remote
//! node**, carrying its messages for every core of that node. The remote
//! node accepts the connection on whichever of its cores the kernel picks
//! (every core listens on the peer port with SO_REUSEPORT); that accepting
//! core hands each message to its destination core over a bounded
//! cross-core channel, and the destination core's [`Inbox`] yields it to
//! the layer above. Payloads are opaque bytes tagged with a kind byte; this
//! module never looks inside them.
//!
//! # Guarantees
//! - **FIFO per (source core, destination core)**, across the accepting
//!   core's forward and across reconnects: every connection has a
//!   generation that only grows, and an inbox drops a message whose
//!   generation is older than one it already delivered from the same
//!   source core (it could only arrive late by racing a newer connection
//!   through another accepting core).
//! - **At most once**: a message is written once and never retransmitted;
//!   there are no duplicates. A message written on a connection that later
//!   breaks may be lost; the break is reported ([`LinkHandle::take_downs`],
//!   counters), and the layer above (Raft) retransmits what it still needs.
//! - **Bounded**: a full queue makes [`LinkHandle::send`] fail with
//!   [`SendError::Full`] at once; nothing here grows without a bound (the
//!   bounds are in [`constants`] and [`LinkConfig`]). A peer that stops
//!   reading fills its socket, then the sender's queue, then `send` fails.
//! - **Reconnects** with jittered exponential backoff; messages queued
//!   while disconnected are kept (up to the queue bound) and sent on the
//!   next connection.
//! - **Peers can be learnt and move**: every link reads its peer's address
//!   from the node's shared [`PeerBook`] at each (re)connect; a node added
//!   to the book after start gets links within a tick, and a node whose
//!   address changes is reconnected to at the new one. A message for a
//!   node with no address in the book is refused
//!   ([`SendError::UnknownNode`]), never queued.
//!
//! Failure contract: nothing a peer sends makes this module panic; bad
//! handshakes are refused with a reason both sides log and count; bad
//! frames close the connection and are counted.
//!
//! # Layout
//! - [`codec`]: handshake, reply and frame encoding (pure).
//! - [`backoff`]: reconnect delays, seeded.
//! - [`book`]: the shared peer address book.
//! - `outbound`: per-peer queues and the writer task of each link.
//! - `inbound`: the accept loop, the reader of each accepted connection,
//!   the forward to destination cores, and the [`Inbox`].
//! - [`counters`]: plain counters for the metrics code.
//! - [`constants`]: every bound and timing.
//!
//! # Use
//! On the main thread, [`build`] makes one [`CoreLinks`] per core (the
//! cross-core channels must exist before the executors start) and the
//! node's [`PeerBook`] ([`LinkNode::book`], filled from
//! [`LinkConfig::peers`]; update it from any thread); each core's
//! executor calls [`CoreLinks::start`] and gets its [`LinkHandle`] (send,
//! status, counters, stop) and its [`Inbox`] (receive). The inbox must be
//! drained by a task that never waits on a `send` of this module (`send`
//! never waits, so this holds unless the caller builds its own wait).
//! Before the executor exits, await [`LinkHandle::shutdown`]: a link task
//! left behind when an executor ends never runs again and keeps its socket
//! open, so its peer would only notice at the idle timeout.

pub mod backoff;
pub mod book;
pub mod codec;
pub mod constants;
pub mod counters;
mod inbound;
mod outbound;

pub use book::{PeerBook, PeerBookError};
pub use counters::LinkCounters;
pub use inbound::{Inbound, Inbox};
pub use outbound::{LinkDown, LinkFailure, PeerStatus, Refusal};

use crate::sync::Signal;
use bytes::Bytes;
use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A node of the cluster (the same number as `courier_cluster::NodeId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A core (executor) of a node, `0..cores`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoreId(pub u16);

impl fmt::Display for CoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A remote node and where its peer port listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr {
    /// The node.
    pub node: NodeId,
    /// Its peer listen address.
    pub addr: SocketAddr,
}

/// Everything the links of one node need. Build it with
/// [`LinkConfig::new`], which takes the fields that need thought and fills
/// the bounds and timings from [`constants`]; tests then shrink them.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// This node's cluster; a peer of another cluster is refused.
    pub cluster_id: u128,
    /// This node.
    pub node: NodeId,
    /// Cores of this node (`1..=CORES_MAX`), one [`CoreLinks`] each.
    pub cores: u16,
    /// Peer listen address (port 0 picks one; see [`LinkNode::addr`]).
    pub listen: SocketAddr,
    /// The other nodes known at start: the initial content of the node's
    /// [`PeerBook`]. Every core connects to each node of the book.
    pub peers: Vec<PeerAddr>,
    /// Messages one core queues for one peer at most.
    pub queue_messages_max: usize,
    /// Payload bytes one core queues for one peer at most.
    pub queue_bytes_max: usize,
    /// Capacity of each cross-core forward channel.
    pub forward_capacity: usize,
    /// Capacity of each core's inbox.
    pub inbox_capacity: usize,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Seed of the reconnect jitter (each link mixes in its core and peer).
    pub seed: u64,
    /// Idle time after which a side sends a keepalive.
    pub keepalive_interval: Duration,
    /// Silence after which a side closes the connection.
    pub idle_timeout: Duration,
    /// Time allowed to connect and finish the handshake (either side).
    pub handshake_timeout: Duration,
    /// Connections each core serves as the accepting side at once.
    pub accepted_connections_max: usize,
}

impl LinkConfig {
    /// A configuration with the default bounds and timings, and a jitter
    /// seed from the OS (a constant one if the OS has none to give).
    pub fn new(
        cluster_id: u128,
        node: NodeId,
        cores: u16,
        listen: SocketAddr,
        peers: Vec<PeerAddr>,
    ) -> LinkConfig {
        let mut seed = [0u8; 8];
        if getrandom::getrandom(&mut seed).is_err() {
            seed = u64::from(node.0).to_le_bytes();
        }
        LinkConfig {
            cluster_id,
            node,
            cores,
            listen,
            peers,
            queue_messages_max: constants::QUEUE_MESSAGES_MAX_DEFAULT,
            queue_bytes_max: constants::QUEUE_BYTES_MAX_DEFAULT,
            forward_capacity: constants::FORWARD_CHANNEL_CAPACITY,
            inbox_capacity: constants::INBOX_CAPACITY,
            backoff_initial: constants::BACKOFF_INITIAL,
            backoff_max: constants::BACKOFF_MAX,
            seed: u64::from_le_bytes(seed),
            keepalive_interval: constants::KEEPALIVE_INTERVAL,
            idle_timeout: constants::IDLE_TIMEOUT,
            handshake_timeout: constants::HANDSHAKE_TIMEOUT,
            accepted_connections_max: constants::ACCEPTED_CONNECTIONS_MAX,
        }
    }

    fn check(&self) -> Result<(), LinkError> {
        let bad = |what: String| Err(LinkError::Config(what));
        if self.cores == 0 || self.cores > constants::CORES_MAX {
            return bad(format!(
                "cores = {}, must be 1..={}",
                self.cores,
                constants::CORES_MAX
            ));
        }
        if self.queue_messages_max == 0 || self.queue_bytes_max == 0 {
            return bad("queue bounds must be positive".into());
        }
        if self.forward_capacity == 0 || self.inbox_capacity == 0 {
            return bad("channel capacities must be positive".into());
        }
        if self.keepalive_interval.is_zero() || self.idle_timeout < self.keepalive_interval * 2 {
            return bad("idle_timeout must be at least twice keepalive_interval".into());
        }
        for (i, p) in self.peers.iter().enumerate() {
            if p.node == self.node {
                return bad(format!("node {} lists itself as a peer", p.node));
            }
            if self.peers[..i].iter().any(|q| q.node == p.node) {
                return bad(format!("peer {} listed twice", p.node));
            }
        }
        if self.peers.len() > book::PEER_BOOK_NODES_MAX {
            return bad(format!(
                "{} peers, at most {}",
                self.peers.len(),
                book::PEER_BOOK_NODES_MAX
            ));
        }
        Ok(())
    }
}

/// Why the links could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The configuration is inconsistent.
    #[error("link configuration: {0}")]
    Config(String),
    /// The peer port could not be bound.
    #[error("cannot listen for peers on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Why [`LinkHandle::send`] did not queue a message. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The queue for that node is at its bound (messages or bytes). Retry
    /// later or drop; the queue never grows past its bound.
    #[error("link queue to node {node} is full ({messages} messages, {bytes} bytes)")]
    Full {
        /// The destination node.
        node: NodeId,
        /// Messages queued for it.
        messages: usize,
        /// Payload bytes queued for it.
        bytes: usize,
    },
    /// No address is known for that node: it is neither in
    /// [`LinkConfig::peers`] nor learnt by the [`PeerBook`] since (or it is
    /// this node). Nothing is queued: messages for a node become
    /// sendable once the book holds its address.
    #[error("no link to node {0}: its address is not known")]
    UnknownNode(NodeId),
    /// The payload is longer than [`constants::PAYLOAD_BYTES_MAX`].
    #[error("payload of {len} bytes, at most {max}", max = constants::PAYLOAD_BYTES_MAX)]
    TooLarge {
        /// The payload's length.
        len: usize,
    },
    /// The links of this core were stopped.
    #[error("links stopped")]
    Stopped,
}

/// One message for the inbox of a destination core, as it crosses from
/// the accepting core (hence `Send`).
pub(crate) struct Envelope {
    from_node: NodeId,
    from_core: CoreId,
    generation: u64,
    kind: u8,
    payload: Bytes,
}

/// A node's links before its executors start: its resolved address, its
/// peer address book and one [`CoreLinks`] per core.
pub struct LinkNode {
    /// The peer listen address (the port resolved if 0 was asked).
    pub addr: SocketAddr,
    /// `cores[k]` goes to core `k`'s executor.
    pub cores: Vec<CoreLinks>,
    /// Where the peers are: [`LinkConfig::peers`] at first; set a node's
    /// address here (from any thread, before or after the cores start)
    /// and every core's links follow within a tick.
    pub book: PeerBook,
}

/// One core's part of the links, made on the main thread by [`build`] and
/// moved to the core's executor, which calls [`CoreLinks::start`].
pub struct CoreLinks {
    config: Arc<LinkConfig>,
    core: CoreId,
    addr: SocketAddr,
    book: PeerBook,
    /// `forward_to[k]`: to core `k`'s inbox (`None` for this core).
    forward_to: Vec<Option<SharedSender<Envelope>>>,
    /// `forward_from[k]`: from core `k` (`None` for this core).
    forward_from: Vec<Option<SharedReceiver<Envelope>>>,
    /// Holds an ephemeral port until every core has bound it.
    _port: Arc<Option<socket2::Socket>>,
}

/// Checks `config`, resolves port 0, and makes the bounded cross-core
/// forward channels (one per ordered pair of distinct cores, each of
/// `forward_capacity`).
pub fn build(config: LinkConfig) -> Result<LinkNode, LinkError> {
    config.check()?;
    let book =
        PeerBook::with(&config.peers).map_err(|e| LinkError::Config(format!("peers: {e}")))?;
    let (addr, holder) = resolve_port(config.listen)?;
    let cores = usize::from(config.cores);
    let mut to: Vec<Vec<Option<SharedSender<Envelope>>>> = (0..cores)
        .map(|_| (0..cores).map(|_| None).collect())
        .collect();
    let mut from: Vec<Vec<Option<SharedReceiver<Envelope>>>> = (0..cores)
        .map(|_| (0..cores).map(|_| None).collect())
        .collect();
    for a in 0..cores {
        for b in 0..cores {
            if a != b {
                let (s, r) = shared_channel::new_bounded(config.forward_capacity);
                to[a][b] = Some(s);
                from[b][a] = Some(r);
            }
        }
    }
    let config = Arc::new(config);
    let holder = Arc::new(holder);
    let cores = to
        .into_iter()
        .zip(from)
        .enumerate()
        .map(|(k, (forward_to, forward_from))| CoreLinks {
            config: config.clone(),
            core: CoreId(k as u16),
            addr,
            book: book.clone(),
            forward_to,
            forward_from,
            _port: holder.clone(),
        })
        .collect();
    Ok(LinkNode { addr, cores, book })
}

/// Port 0: bind once (SO_REUSEPORT, never listening) to learn a port all
/// cores then share; the socket holds the port until they have bound it
/// (drop it after). Another port is returned as it is, with no socket.
pub(crate) fn resolve_port(
    addr: SocketAddr,
) -> Result<(SocketAddr, Option<socket2::Socket>), LinkError> {
    if addr.port() != 0 {
        return Ok((addr, None));
    }
    let listen_err = |source| LinkError::Listen { addr, source };
    let socket = new_socket(addr).map_err(listen_err)?;
    socket.bind(&addr.into()).map_err(listen_err)?;
    let local = socket
        .local_addr()
        .map_err(listen_err)?
        .as_socket()
        .ok_or_else(|| listen_err(std::io::Error::other("not an IP address")))?;
    Ok((local, Some(socket)))
}

fn new_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    // A restarted node binds its port again at once, whatever sockets of
    // its previous life are still in TIME_WAIT.
    socket.set_reuse_address(true)?;
    Ok(socket)
}

fn listen(addr: SocketAddr) -> Result<crate::listener::Listener, LinkError> {
    // SO_REUSEPORT and SO_REUSEADDR, as `new_socket`.
    crate::listener::Listener::bind(addr, true).map_err(|source| LinkError::Listen { addr, source })
}

/// State shared by one core's link tasks (single-threaded).
pub(crate) struct CoreState {
    config: Arc<LinkConfig>,
    core: CoreId,
    /// One per node of the book (not this one), in the order learnt; a
    /// node is never removed (see [`book`]), so at most
    /// [`book::PEER_BOOK_NODES_MAX`].
    peers: std::cell::RefCell<Vec<Rc<outbound::Peer>>>,
    book: PeerBook,
    /// The book version last applied to `peers`.
    book_seen: Cell<u64>,
    counters: counters::Counters,
    stopped: Cell<bool>,
    /// Notified at stop: one per forward receiver (`stop_signal`; a
    /// handful per core, created at start).
    stop_signals: std::cell::RefCell<Vec<Rc<Signal>>>,
    /// Link tasks running on this core (see [`spawn`]).
    tasks: Cell<usize>,
}

impl CoreState {
    fn stopped(&self) -> bool {
        self.stopped.get()
    }

    /// A signal notified when the links stop, for a task that waits on
    /// something else meanwhile (`inbound::pump`): it must not wake on a
    /// timer to look at `stopped` while a channel receive is pending
    /// (glommio keeps a waker per poll of a pending receive).
    fn stop_signal(&self) -> Rc<Signal> {
        let signal = Rc::new(Signal::default());
        if self.stopped() {
            signal.notify();
        }
        self.stop_signals.borrow_mut().push(signal.clone());
        signal
    }

    /// This core's link to `node`, if it has one.
    fn peer(&self, node: NodeId) -> Option<Rc<outbound::Peer>> {
        self.peers.borrow().iter().find(|p| p.node == node).cloned()
    }

    /// Applies the book if it changed since the last call: a link (and
    /// its writer task) for every node new to this core, and the new
    /// address for every node that moved (its writer is woken to follow).
    fn follow_book(self: &Rc<Self>) {
        let version = self.book.version();
        if version == self.book_seen.get() || self.stopped() {
            return;
        }
        self.book_seen.set(version);
        for entry in self.book.entries() {
            if entry.node == self.config.node {
                continue;
            }
            match self.peer(entry.node) {
                Some(peer) => peer.move_to(entry.addr),
                None => {
                    self.add_peer(entry);
                }
            }
        }
    }

    /// Starts this core's link to a node the book knows and this core
    /// does not have yet (None if the book does not know it).
    fn learn(self: &Rc<Self>, node: NodeId) -> Option<Rc<outbound::Peer>> {
        if node == self.config.node || self.stopped() {
            return None;
        }
        let addr = self.book.get(node)?;
        Some(self.add_peer(PeerAddr { node, addr }))
    }

    fn add_peer(self: &Rc<Self>, entry: PeerAddr) -> Rc<outbound::Peer> {
        let peer = Rc::new(outbound::Peer::new(entry));
        self.peers.borrow_mut().push(peer.clone());
        tracing::debug!(core = self.core.0, peer = entry.node.0, addr = %entry.addr, "link: peer added");
        spawn(self, outbound::run_peer(self.clone(), peer.clone()));
        peer
    }
}

/// Counts a running link task; dropped when the task ends (or is dropped).
struct TaskGuard(Rc<CoreState>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let tasks = self.0.tasks.get();
        assert!(tasks > 0, "link task count underflow");
        self.0.tasks.set(tasks - 1);
    }
}

/// Spawns a link task of this core, counted so that
/// [`LinkHandle::shutdown`] can wait for every one to end.
fn spawn(state: &Rc<CoreState>, task: impl std::future::Future<Output = ()> + 'static) {
    state.tasks.set(state.tasks.get() + 1);
    let guard = TaskGuard(state.clone());
    glommio::spawn_local(async move {
        let _guard = guard;
        task.await;
    })
    .detach();
}

/// Runs `fut` until it ends (`Some`) or the links stop (`None`, within a
/// tick). The stop watch is only armed if `fut` does not end at its first
/// poll, so a wait that is usually immediate costs no timer.
async fn unless_stopped<T>(
    state: &CoreState,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    use futures::FutureExt as _;
    let watch = async {
        while !state.stopped() {
            glommio::timer::sleep(constants::TICK).await;
        }
        None
    };
    futures_lite::future::or(fut.map(Some), watch).await
}

impl CoreLinks {
    /// Starts this core's links on the current glommio executor: binds the
    /// peer port, spawns one writer task per peer, the accept loop, the
    /// forward receivers and a wake-up timer. Returns at once.
    ///
    /// Must be called on the executor of this core; fails only if the peer
    /// port cannot be bound.
    pub fn start(self) -> Result<(LinkHandle, Inbox), LinkError> {
        let CoreLinks {
            config,
            core,
            addr,
            book,
            forward_to,
            forward_from,
            _port,
        } = self;
        let listener = listen(addr)?;
        drop(_port);
        let state = Rc::new(CoreState {
            config: config.clone(),
            core,
            peers: std::cell::RefCell::new(Vec::new()),
            book,
            book_seen: Cell::new(u64::MAX),
            counters: counters::Counters::default(),
            stopped: Cell::new(false),
            stop_signals: std::cell::RefCell::new(Vec::new()),
            tasks: Cell::new(0),
        });
        // A link (and writer task) per node of the book.
        state.follow_book();
        // A timer for the core's life, so a wait on another executor (the
        // channel connects) never sleeps through glommio's lost wake-ups;
        // each tick also applies a changed peer book.
        let ticking = state.clone();
        spawn(&state, async move {
            while !ticking.stopped() {
                glommio::timer::sleep(constants::TICK).await;
                ticking.follow_book();
            }
        });
        let inbox = inbound::start(state.clone(), listener, forward_to, forward_from);
        Ok((LinkHandle { state }, inbox))
    }
}

/// A core's sending side of the links (cheap to clone, this core only).
#[derive(Clone)]
pub struct LinkHandle {
    state: Rc<CoreState>,
}

impl LinkHandle {
    /// Queues a message for core `dest_core` of node `dest_node`, to be
    /// written with everything else queued for that node at the writer's
    /// next turn. Never waits; fails at once with [`SendError::Full`] when
    /// the node's queue is at its bound. Queued messages survive a
    /// disconnection (they go out on the next connection); a message whose
    /// `dest_core` the node does not have is dropped when the link learns
    /// the node's core count, and counted (`misrouted`).
    pub fn send(
        &self,
        dest_node: NodeId,
        dest_core: CoreId,
        kind: u8,
        payload: Bytes,
    ) -> Result<(), SendError> {
        if self.state.stopped() {
            return Err(SendError::Stopped);
        }
        if payload.len() > constants::PAYLOAD_BYTES_MAX {
            return Err(SendError::TooLarge { len: payload.len() });
        }
        // A node the book learnt since this core's last tick gets its link
        // now, so a send right after `PeerBook::set` is not refused.
        let peer = match self.state.peer(dest_node) {
            Some(peer) => peer,
            None => self
                .state
                .learn(dest_node)
                .ok_or(SendError::UnknownNode(dest_node))?,
        };
        let result = peer.enqueue(&self.state.config, dest_core, kind, payload);
        if result.is_err() {
            counters::add(&self.state.counters.queue_full, 1);
        }
        result
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.state.config.node
    }

    /// This core.
    pub fn core(&self) -> CoreId {
        self.state.core
    }

    /// The state of the link to `node` (None if this core has no link to
    /// it: its address is not known).
    pub fn status(&self, node: NodeId) -> Option<PeerStatus> {
        self.state.peer(node).map(|p| p.status())
    }

    /// The node's peer address book (shared by every core).
    pub fn book(&self) -> &PeerBook {
        &self.state.book
    }

    /// The link breaks since the last call, at most one notice per peer
    /// (several breaks of one link merge into one).
    pub fn take_downs(&self) -> Vec<LinkDown> {
        self.state
            .peers
            .borrow()
            .iter()
            .filter_map(|p| p.take_down())
            .collect()
    }

    /// A snapshot of this core's counters.
    pub fn counters(&self) -> LinkCounters {
        let peers = self.state.peers.borrow();
        let queued = peers.iter().map(|p| p.queued());
        let (messages, bytes) = queued.fold((0, 0), |(m, b), (pm, pb)| (m + pm, b + pb));
        self.state.counters.snapshot(messages as u64, bytes as u64)
    }

    /// Stops this core's links: no more sends (messages still queued are
    /// dropped, like those in flight at a break); within a tick the
    /// writers, the accept loop and every connection end (sockets closed),
    /// and the inbox yields what it holds, then `None`. Returns at once; the tasks
    /// only end if the executor keeps running (see [`LinkHandle::shutdown`]).
    pub fn stop(&self) {
        self.state.stopped.set(true);
        for p in self.state.peers.borrow().iter() {
            p.wake.notify();
        }
        for s in self.state.stop_signals.borrow().iter() {
            s.notify();
        }
    }

    /// Stops this core's links and waits until every link task has ended
    /// and closed its sockets, at most [`constants::SHUTDOWN_TIMEOUT`].
    /// Returns how many tasks were still running then (0: a clean stop).
    /// Call it before the executor exits: a task left behind when an
    /// executor ends may never run again, keeping its socket open.
    pub async fn shutdown(&self) -> usize {
        self.stop();
        let deadline = std::time::Instant::now() + constants::SHUTDOWN_TIMEOUT;
        while self.state.tasks.get() > 0 && std::time::Instant::now() < deadline {
            glommio::timer::sleep(constants::TICK).await;
        }
        self.state.tasks.get()
    }
}
