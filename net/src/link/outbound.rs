//! The sending side of a core's links: one bounded queue per peer node
//! and one writer task per peer that connects (with backoff), shakes
//! hands, and writes whatever is queued as one batch per turn.
//!
//! A writer's turn: sleep until something is queued (the first `send` into
//! an empty queue raises the peer's [`Signal`]) or until a keepalive or
//! the idle-timeout check is due, take up to `BATCH_BYTES_MAX` of queued
//! payload into frames, write them with one `write_all`. An idle link's
//! writer therefore wakes about once per keepalive interval, not per tick. While that write waits (the peer is slow), senders keep
//! queueing up to the bound, then get `SendError::Full`. A link is declared
//! broken when a write fails or when nothing (not even a keepalive) has
//! come back from the peer for `idle_timeout`; the writer then reconnects
//! and keeps every message not yet taken from the queue.
//!
//! The peer's address is the node's [`super::PeerBook`] entry: every
//! connect uses the address the link holds then, which the core's tick
//! updates from the book ([`Peer::move_to`]). A move cuts a backoff delay
//! short and ends a connection to the old address (reported like any
//! break: what was written on it may be lost).

use super::backoff::Backoff;
use super::codec::{self, FrameEncoder, Hello, Status};
use super::constants::{BATCH_BYTES_MAX, REPLY_BYTES, TICK, VERSION};
use super::counters::add;
use super::{CoreId, CoreState, LinkConfig, NodeId, PeerAddr, SendError};
use crate::sync::{with_timeout, Signal};
use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a peer refused this node's handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The peer belongs to another cluster.
    #[error("it belongs to cluster {theirs:#034x}, this node to {ours:#034x}")]
    WrongCluster {
        /// This node's cluster.
        ours: u128,
        /// The peer's cluster.
        theirs: u128,
    },
    /// Another node listens at the peer's address.
    #[error("it is node {theirs}, not node {expected}")]
    WrongNode {
        /// The node this link is for.
        expected: NodeId,
        /// The node that answered.
        theirs: NodeId,
    },
    /// The peer speaks another protocol version.
    #[error("it speaks link protocol version {theirs}, this node {ours}")]
    Version {
        /// This node's version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// The peer does not accept this core's id.
    #[error("it does not accept source core {core}")]
    BadCore {
        /// This core.
        core: CoreId,
    },
}

/// Why a link is not up, as kept in [`PeerStatus::last_error`] and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkFailure {
    /// The TCP connection could not be made.
    #[error("cannot connect to node {node} at {addr}: {reason}")]
    Connect {
        /// The peer.
        node: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// Connected, but no handshake reply within the handshake timeout.
    #[error("node {node} at {addr}: no handshake reply within {timeout:?}")]
    HandshakeTimeout {
        /// The peer.
        node: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
    /// The peer refused the handshake.
    #[error("node {node} at {addr} refused the link: {refusal}")]
    Refused {
        /// The peer.
        node: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        refusal: Refusal,
    },
    /// The peer sent bytes that are not the link protocol.
    #[error("node {node} at {addr} broke the link protocol: {error}")]
    Protocol {
        /// The peer.
        node: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// What was wrong.
        error: codec::CodecError,
    },
    /// An established link broke (I/O error, peer closed, or silent for
    /// the idle timeout).
    #[error("link to node {node} at {addr} broke: {reason}")]
    Broken {
        /// The peer.
        node: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },
}

/// The state of one core's link to one peer node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer.
    pub node: NodeId,
    /// Its address (the book's, as this core last applied it).
    pub addr: SocketAddr,
    /// Whether a connection is established now.
    pub connected: bool,
    /// Generation of the current (or last) connection; 0 before the first.
    pub generation: u64,
    /// Connections established so far.
    pub connections: u64,
    /// The peer's core count, learnt at the first handshake.
    pub remote_cores: Option<u16>,
    /// The last reason the link was down (kept after it is up again).
    pub last_error: Option<LinkFailure>,
    /// Messages queued for the peer now.
    pub queued_messages: usize,
    /// Payload bytes queued for the peer now.
    pub queued_bytes: usize,
}

/// A notice that a link broke: messages sent to `node` before it may have
/// been lost (at most once, never duplicated); messages queued after it go
/// out on the next connection, in order. Several breaks between two
/// [`super::LinkHandle::take_downs`] merge into one notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDown {
    /// The peer.
    pub node: NodeId,
    /// Generation of the last connection that broke.
    pub generation: u64,
    /// Breaks merged into this notice.
    pub breaks: u64,
    /// Messages written on the broken connections: each may or may not
    /// have been delivered.
    pub messages_written: u64,
    /// Of those, messages in writes that failed.
    pub messages_in_failed_writes: u64,
    /// Why the last one broke.
    pub reason: LinkFailure,
}

/// One queued message.
struct Outgoing {
    dest_core: CoreId,
    kind: u8,
    payload: Bytes,
}

/// One core's link to one peer: its queue and state.
pub(crate) struct Peer {
    pub(crate) node: NodeId,
    /// Where to connect next (the book's address; see [`Peer::move_to`]).
    addr: Cell<SocketAddr>,
    queue: RefCell<VecDeque<Outgoing>>,
    queued_bytes: Cell<usize>,
    /// Wakes the writer: raised by a send into an empty queue, by stop and
    /// by the keepalive reader when the connection ends.
    pub(crate) wake: Signal,
    connected: Cell<bool>,
    generation: Cell<u64>,
    connections: Cell<u64>,
    remote_cores: Cell<Option<u16>>,
    last_error: RefCell<Option<LinkFailure>>,
    down: RefCell<Option<LinkDown>>,
}

impl Peer {
    pub(crate) fn new(p: PeerAddr) -> Peer {
        Peer {
            node: p.node,
            addr: Cell::new(p.addr),
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            wake: Signal::default(),
            connected: Cell::new(false),
            generation: Cell::new(0),
            connections: Cell::new(0),
            remote_cores: Cell::new(None),
            last_error: RefCell::new(None),
            down: RefCell::new(None),
        }
    }

    pub(crate) fn enqueue(
        &self,
        config: &LinkConfig,
        dest_core: CoreId,
        kind: u8,
        payload: Bytes,
    ) -> Result<(), SendError> {
        let mut queue = self.queue.borrow_mut();
        let bytes = self.queued_bytes.get();
        if queue.len() >= config.queue_messages_max
            || bytes + payload.len() > config.queue_bytes_max
        {
            return Err(SendError::Full {
                node: self.node,
                messages: queue.len(),
                bytes,
            });
        }
        self.queued_bytes.set(bytes + payload.len());
        let was_empty = queue.is_empty();
        queue.push_back(Outgoing {
            dest_core,
            kind,
            payload,
        });
        drop(queue);
        // A writer only sleeps on an empty queue (it checks, then waits,
        // with no await between), so only the first send needs to wake it.
        if was_empty {
            self.wake.notify();
        }
        Ok(())
    }

    /// Points the link at `addr` if it differs from the current address,
    /// and wakes the writer: one waiting to reconnect tries `addr` at once,
    /// one connected to the old address ends that connection.
    pub(crate) fn move_to(&self, addr: SocketAddr) {
        if self.addr.get() == addr {
            return;
        }
        tracing::info!(peer = self.node.0, from = %self.addr.get(), to = %addr,
            "node link: the peer's address changed");
        self.addr.set(addr);
        self.wake.notify();
    }

    pub(crate) fn queued(&self) -> (usize, usize) {
        (self.queue.borrow().len(), self.queued_bytes.get())
    }

    pub(crate) fn status(&self) -> PeerStatus {
        let (queued_messages, queued_bytes) = self.queued();
        PeerStatus {
            node: self.node,
            addr: self.addr.get(),
            connected: self.connected.get(),
            generation: self.generation.get(),
            connections: self.connections.get(),
            remote_cores: self.remote_cores.get(),
            last_error: self.last_error.borrow().clone(),
            queued_messages,
            queued_bytes,
        }
    }

    pub(crate) fn take_down(&self) -> Option<LinkDown> {
        self.down.borrow_mut().take()
    }

    fn record_down(&self, generation: u64, written: u64, failed: u64, reason: LinkFailure) {
        let mut down = self.down.borrow_mut();
        let d = down.get_or_insert(LinkDown {
            node: self.node,
            generation,
            breaks: 0,
            messages_written: 0,
            messages_in_failed_writes: 0,
            reason: reason.clone(),
        });
        d.generation = generation;
        d.breaks += 1;
        d.messages_written += written;
        d.messages_in_failed_writes += failed;
        d.reason = reason;
    }

    /// A generation above every earlier one of this link, and (as long as
    /// the wall clock does not step back across a restart) above those of
    /// this node's earlier lives: microseconds since the epoch.
    fn next_generation(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let g = now.max(self.generation.get() + 1);
        self.generation.set(g);
        g
    }

    /// A break of the connection to `addr`.
    fn failure(&self, addr: SocketAddr, reason: String) -> LinkFailure {
        LinkFailure::Broken {
            node: self.node,
            addr,
            reason,
        }
    }

    /// Moves queued messages into `encoder`, up to [`BATCH_BYTES_MAX`] of
    /// payload (at least one message); drops and counts those for a core
    /// the peer does not have. Returns how many were encoded.
    fn take_batch(&self, encoder: &mut FrameEncoder, state: &CoreState, cores: u16) -> u64 {
        let mut queue = self.queue.borrow_mut();
        let mut taken_bytes = 0;
        let mut encoded = 0;
        while let Some(m) = queue.front() {
            if encoded > 0 && taken_bytes + m.payload.len() > BATCH_BYTES_MAX {
                break;
            }
            let Some(m) = queue.pop_front() else { break };
            taken_bytes += m.payload.len();
            if m.dest_core.0 >= cores {
                add(&state.counters.misrouted, 1);
                continue;
            }
            encoder.push(m.dest_core, state.core, m.kind, &m.payload);
            encoded += 1;
        }
        self.queued_bytes.set(self.queued_bytes.get() - taken_bytes);
        encoded
    }
}

/// A connection that passed the handshake.
struct Established {
    stream: glommio::net::TcpStream,
    /// The address connected to.
    addr: SocketAddr,
    generation: u64,
    cores: u16,
}

/// How a connection ended.
enum End {
    Stopped,
    Broken {
        failure: LinkFailure,
        written: u64,
        failed: u64,
    },
}

/// The writer task of one link: connect, serve, reconnect with backoff,
/// until the core's links stop.
pub(crate) async fn run_peer(state: Rc<CoreState>, peer: Rc<Peer>) {
    let config = &state.config;
    let mix = (u64::from(state.core.0) << 32 | u64::from(peer.node.0))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut backoff = Backoff::new(
        config.backoff_initial,
        config.backoff_max,
        config.seed ^ mix,
    );
    let mut encoder = FrameEncoder::new();
    let mut first = true;
    let mut tried = peer.addr.get();
    while !state.stopped() {
        if !first && peer.addr.get() != tried {
            // The peer moved: try its new address at once.
            backoff.reset();
        } else if !first {
            // Sleeps the whole delay; a stop raises `wake`, and so does a
            // move (a send too: it changes nothing here, the queue is kept
            // for the next link).
            let until = Instant::now() + backoff.next_delay();
            while !state.stopped() && Instant::now() < until && peer.addr.get() == tried {
                with_timeout(
                    until.saturating_duration_since(Instant::now()),
                    peer.wake.wait(),
                )
                .await;
                add(&state.counters.writer_wakeups, 1);
            }
            if state.stopped() {
                break;
            }
        }
        first = false;
        tried = peer.addr.get();
        let link = match super::unless_stopped(&state, handshake(&state, &peer)).await {
            None => break,
            Some(Ok(link)) => link,
            Some(Err(failure)) => {
                add(&state.counters.connect_failures, 1);
                note_failure(&state, &peer, failure);
                continue;
            }
        };
        backoff.reset();
        if peer.connections.get() > 0 {
            add(&state.counters.reconnects, 1);
        }
        add(&peer.connections, 1);
        peer.remote_cores.set(Some(link.cores));
        peer.connected.set(true);
        add(&state.counters.links_up, 1);
        tracing::debug!(
            core = state.core.0,
            peer = peer.node.0,
            generation = link.generation,
            "link up"
        );
        let generation = link.generation;
        let end = run_connection(&state, &peer, link, &mut encoder).await;
        peer.connected.set(false);
        state
            .counters
            .links_up
            .set(state.counters.links_up.get() - 1);
        match end {
            End::Stopped => break,
            End::Broken {
                failure,
                written,
                failed,
            } => {
                add(&state.counters.link_breaks, 1);
                add(&state.counters.messages_in_failed_writes, failed);
                peer.record_down(generation, written, failed, failure.clone());
                note_failure(&state, &peer, failure);
            }
        }
    }
}

/// Keeps `failure` as the link's last error; logs it at warn when it
/// differs from the previous one (a peer down for an hour logs once, not
/// at every attempt).
fn note_failure(state: &CoreState, peer: &Peer, failure: LinkFailure) {
    let mut last = peer.last_error.borrow_mut();
    if last.as_ref() != Some(&failure) {
        tracing::warn!(core = state.core.0, error = %failure, "node link down");
    }
    *last = Some(failure);
}

/// Connects and shakes hands within the handshake timeout.
async fn handshake(state: &CoreState, peer: &Peer) -> Result<Established, LinkFailure> {
    let (node, addr) = (peer.node, peer.addr.get());
    let timeout = state.config.handshake_timeout;
    let connect = with_timeout(timeout, glommio::net::TcpStream::connect(addr)).await;
    let mut stream = match connect {
        None => {
            return Err(LinkFailure::HandshakeTimeout {
                node,
                addr,
                timeout,
            })
        }
        Some(Err(e)) => {
            return Err(LinkFailure::Connect {
                node,
                addr,
                reason: e.to_string(),
            })
        }
        Some(Ok(stream)) => stream,
    };
    // Batches are written whole; Nagle would only delay the tail of one.
    let _ = stream.set_nodelay(true);
    let hello = Hello {
        cluster_id: state.config.cluster_id,
        source_node: state.config.node,
        source_core: state.core,
        dest_node: node,
        generation: peer.next_generation(),
    };
    let exchange = async {
        stream.write_all(&codec::encode_hello(&hello)).await?;
        let mut reply = [0u8; REPLY_BYTES];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = match with_timeout(timeout, exchange).await {
        None => {
            return Err(LinkFailure::HandshakeTimeout {
                node,
                addr,
                timeout,
            })
        }
        Some(Err(e)) => return Err(peer.failure(addr, format!("during the handshake: {e}"))),
        Some(Ok(reply)) => reply,
    };
    let reply =
        codec::decode_reply(&reply).map_err(|error| LinkFailure::Protocol { node, addr, error })?;
    let refusal = match reply.status {
        Status::Accepted if reply.cluster_id != hello.cluster_id => Refusal::WrongCluster {
            ours: hello.cluster_id,
            theirs: reply.cluster_id,
        },
        Status::Accepted if reply.node != node => Refusal::WrongNode {
            expected: node,
            theirs: reply.node,
        },
        Status::Accepted => {
            return Ok(Established {
                stream,
                addr,
                generation: hello.generation,
                cores: reply.cores,
            })
        }
        Status::VersionMismatch => Refusal::Version {
            ours: VERSION,
            theirs: reply.version,
        },
        Status::WrongCluster => Refusal::WrongCluster {
            ours: hello.cluster_id,
            theirs: reply.cluster_id,
        },
        Status::WrongNode => Refusal::WrongNode {
            expected: node,
            theirs: reply.node,
        },
        Status::BadCore => Refusal::BadCore { core: state.core },
    };
    add(&state.counters.refusals_received, 1);
    Err(LinkFailure::Refused {
        node,
        addr,
        refusal,
    })
}

/// What the keepalive reader learnt about the peer.
struct Heard {
    at: Cell<Instant>,
    closed: RefCell<Option<String>>,
}

impl Heard {
    /// When the peer will have been silent for `idle`, unless heard before.
    fn deadline(&self, idle: Duration) -> Instant {
        self.at.get() + idle
    }

    /// Why the link should be given up, if it should.
    fn problem(&self, idle: Duration) -> Option<String> {
        if let Some(reason) = self.closed.borrow().as_ref() {
            return Some(reason.clone());
        }
        let silent = self.at.get().elapsed();
        (silent >= idle).then(|| format!("nothing heard from the peer for {silent:?}"))
    }
}

/// Serves one established connection until it breaks or the links stop.
async fn run_connection(
    state: &Rc<CoreState>,
    peer: &Rc<Peer>,
    link: Established,
    encoder: &mut FrameEncoder,
) -> End {
    let config = &state.config;
    let addr = link.addr;
    let (reader, mut writer) = link.stream.split();
    let heard = Rc::new(Heard {
        at: Cell::new(Instant::now()),
        closed: RefCell::new(None),
    });
    // Cancelled when dropped, at the end of this function.
    let _reader = glommio::spawn_local(read_keepalives(
        reader,
        heard.clone(),
        state.clone(),
        peer.clone(),
    ));
    let mut last_write = Instant::now();
    let mut written = 0;
    loop {
        if peer.queue.borrow().is_empty() {
            // Nothing to write: sleep until a send, a stop or the end of
            // the connection raises `wake`, or a keepalive or the idle
            // check is due. A send wakes this task, but it only runs once
            // the sending task yields, so everything queued in that turn
            // goes out in the write below (the batching of docs/LINKS.md).
            let due =
                (last_write + config.keepalive_interval).min(heard.deadline(config.idle_timeout));
            let sleep = due.saturating_duration_since(Instant::now());
            with_timeout(sleep, peer.wake.wait()).await;
            add(&state.counters.writer_wakeups, 1);
        }
        if state.stopped() {
            return End::Stopped;
        }
        let moved = (peer.addr.get() != addr)
            .then(|| format!("the peer's address changed to {}", peer.addr.get()));
        if let Some(reason) = moved.or_else(|| heard.problem(config.idle_timeout)) {
            return End::Broken {
                failure: peer.failure(addr, reason),
                written,
                failed: 0,
            };
        }
        encoder.clear();
        let n = peer.take_batch(encoder, state, link.cores);
        if n == 0 {
            if last_write.elapsed() < config.keepalive_interval {
                continue;
            }
            encoder.keepalive();
        }
        let frames = {
            encoder.finish();
            encoder.frames()
        };
        let bytes = encoder.finish();
        let write = async { writer.write_all(bytes).await.map_err(|e| e.to_string()) };
        let watch = async {
            loop {
                glommio::timer::sleep(TICK).await;
                if state.stopped() {
                    return Err("links stopped".to_string());
                }
                if let Some(reason) = heard.problem(config.idle_timeout) {
                    return Err(reason);
                }
            }
        };
        match futures_lite::future::or(write, watch).await {
            Ok(()) => {
                let c = &state.counters;
                add(&c.frames_out, frames);
                add(&c.bytes_out, bytes.len() as u64);
                add(&c.messages_out, n);
                written += n;
                last_write = Instant::now();
            }
            Err(_) if state.stopped() => return End::Stopped,
            Err(reason) => {
                return End::Broken {
                    failure: peer.failure(addr, reason),
                    written: written + n,
                    failed: n,
                }
            }
        }
    }
}

/// Reads what the accepting side sends back: keepalives only. Records when
/// the peer was last heard and why the connection ended.
async fn read_keepalives(
    mut reader: futures::io::ReadHalf<glommio::net::TcpStream>,
    heard: Rc<Heard>,
    state: Rc<CoreState>,
    peer: Rc<Peer>,
) {
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 512];
    let reason = loop {
        match reader.read(&mut chunk).await {
            Ok(0) => break "the peer closed the connection".to_string(),
            Err(e) => break e.to_string(),
            Ok(n) => {
                heard.at.set(Instant::now());
                buf.extend_from_slice(&chunk[..n]);
                match drain_keepalives(&mut buf) {
                    Ok(()) => continue,
                    Err(reason) => {
                        add(&state.counters.protocol_errors, 1);
                        break reason;
                    }
                }
            }
        }
    };
    *heard.closed.borrow_mut() = Some(reason);
    peer.wake.notify();
}

/// Consumes whole keepalive frames; anything else is a protocol error.
fn drain_keepalives(buf: &mut BytesMut) -> Result<(), String> {
    loop {
        match codec::split_frame(buf) {
            Ok(Some(body)) if body.is_empty() => continue,
            Ok(Some(body)) => {
                return Err(format!(
                    "the acceptor sent a {}-byte frame body",
                    body.len()
                ))
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}
