//! The receiving side of a core's links: the accept loop on the shared
//! peer port, one reader task per accepted connection (handshake check,
//! frames, forward of each message to its destination core), and the
//! core's [`Inbox`].
//!
//! Ordering: a connection's reader hands its messages over one at a time,
//! in frame order, each to its destination core's bounded channel (or this
//! core's own inbox queue); each channel is FIFO, so the messages of one
//! (source core, destination core) pair stay in order across the forward.
//! When a forward channel is full the reader waits, which stops it reading
//! the socket: a slow destination core slows its senders down through TCP,
//! and nothing here buffers more than one frame per connection.

use super::codec::{self, CodecError, Hello, Reply, Status};
use super::constants::{CORES_MAX, HANDSHAKE_BYTES, INBOX_SOURCES_MAX, TICK, VERSION};
use super::counters::add;
use super::{unless_stopped, CoreId, CoreState, Envelope, NodeId};
use crate::sync::with_timeout;
use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::FutureExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

/// Bytes read from a socket per read call.
const READ_CHUNK: usize = 64 * 1024;

/// A message for this core, as the layer above receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The sending node.
    pub from_node: NodeId,
    /// The sending core of that node.
    pub from_core: CoreId,
    /// The sender's kind byte.
    pub kind: u8,
    /// The sender's bytes (a slice of the frame they came in).
    pub payload: Bytes,
    /// The first message this inbox delivers from a new connection of its
    /// source core (the first ever, or one after a reconnect): what that
    /// core sent on its earlier connection to this core may have been
    /// lost, and nothing of the new one was delivered before this. The
    /// layer above acts on it before the message (docs/LINKS.md).
    pub new_session: bool,
}

/// One core's incoming messages, from every node and every core, FIFO per
/// (source node, source core). Bounded by `LinkConfig::inbox_capacity`;
/// while it is full, the connections feeding it stop being read.
pub struct Inbox {
    rx: LocalReceiver<Envelope>,
    order: RefCell<SourceOrder>,
    state: Rc<CoreState>,
}

impl Inbox {
    /// The next message; `None` once the links are stopped and everything
    /// already queued for this core has been received.
    pub async fn recv(&self) -> Option<Inbound> {
        loop {
            let env = self.rx.recv().await?;
            let admit = self
                .order
                .borrow_mut()
                .admit(env.from_node, env.from_core, env.generation);
            let new_session = match admit {
                Admit::Stale => {
                    add(&self.state.counters.stale_dropped, 1);
                    continue;
                }
                Admit::Untracked => {
                    add(&self.state.counters.untracked_sources, 1);
                    true // untracked: every message may start a session
                }
                Admit::Deliver { new_session } => new_session,
            };
            add(&self.state.counters.messages_delivered, 1);
            return Some(Inbound {
                from_node: env.from_node,
                from_core: env.from_core,
                kind: env.kind,
                payload: env.payload,
                new_session,
            });
        }
    }
}

/// What [`SourceOrder::admit`] says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// In order: deliver it (`new_session`: the first from a newer
    /// connection of its source core than any delivered before).
    Deliver {
        /// A newer generation than the last delivered, or the first.
        new_session: bool,
    },
    /// A newer connection of its source core has already delivered: it
    /// was overtaken (it raced a reconnect through another accepting
    /// core), and delivering it would break FIFO. Drop it.
    Stale,
    /// Deliver it, but its source is beyond the tracking bound.
    Untracked,
}

/// The newest connection generation delivered per (source node, source
/// core), at most [`INBOX_SOURCES_MAX`] of them.
#[derive(Debug, Default)]
struct SourceOrder {
    latest: HashMap<(NodeId, CoreId), u64>,
}

impl SourceOrder {
    fn admit(&mut self, node: NodeId, core: CoreId, generation: u64) -> Admit {
        let room = self.latest.len() < INBOX_SOURCES_MAX;
        match self.latest.get_mut(&(node, core)) {
            Some(g) if generation < *g => Admit::Stale,
            Some(g) => {
                let new_session = generation > *g;
                *g = generation;
                Admit::Deliver { new_session }
            }
            None if room => {
                self.latest.insert((node, core), generation);
                Admit::Deliver { new_session: true }
            }
            None => Admit::Untracked,
        }
    }
}

/// Where a reader puts a message: this core's inbox or another core's.
struct Routes {
    local: Rc<LocalSender<Envelope>>,
    forward: Vec<Option<ConnectedSender<Envelope>>>,
}

/// Spawns the forward receivers and the accept loop; returns the inbox.
pub(crate) fn start(
    state: Rc<CoreState>,
    listener: crate::listener::Listener,
    forward_to: Vec<Option<SharedSender<Envelope>>>,
    forward_from: Vec<Option<SharedReceiver<Envelope>>>,
) -> Inbox {
    let (tx, rx) = local_channel::new_bounded(state.config.inbox_capacity);
    let tx = Rc::new(tx);
    for receiver in forward_from.into_iter().flatten() {
        super::spawn(&state, pump(state.clone(), receiver, tx.clone()));
    }
    super::spawn(&state, accept_side(state.clone(), listener, forward_to, tx));
    Inbox {
        rx,
        order: RefCell::new(SourceOrder::default()),
        state,
    }
}

/// Moves what another core forwarded into this core's inbox, in order.
async fn pump(
    state: Rc<CoreState>,
    receiver: SharedReceiver<Envelope>,
    tx: Rc<LocalSender<Envelope>>,
) {
    let Some(receiver) = unless_stopped(&state, receiver.connect()).await else {
        return;
    };
    // Woken only by a message or the stop, never by a timer: every poll of
    // a pending receive leaves a waker with glommio until a message comes
    // (`crate::listener` has the story).
    let stop = state.stop_signal();
    while !state.stopped() {
        let next = futures_lite::future::or(async { Some(receiver.recv().await) }, async {
            stop.wait().await;
            None
        });
        match next.await {
            None => continue,
            Some(None) => break,
            Some(Some(env)) => {
                if !matches!(unless_stopped(&state, tx.send(env)).await, Some(Ok(()))) {
                    break;
                }
            }
        }
    }
}

/// Connects the forward channels, then accepts until the links stop.
async fn accept_side(
    state: Rc<CoreState>,
    listener: crate::listener::Listener,
    forward_to: Vec<Option<SharedSender<Envelope>>>,
    local: Rc<LocalSender<Envelope>>,
) {
    let mut forward = Vec::with_capacity(forward_to.len());
    for sender in forward_to {
        forward.push(match sender {
            Some(s) => match unless_stopped(&state, s.connect()).await {
                Some(connected) => Some(connected),
                None => return,
            },
            None => None,
        });
    }
    let routes = Rc::new(Routes { local, forward });
    // The pending accept is awaited alone (`crate::listener`): a task that
    // only sleeps closes the listener at stop, which ends it.
    let listener = Rc::new(listener);
    {
        let (watch, listener) = (state.clone(), listener.clone());
        super::spawn(&state, async move {
            while !watch.stopped() {
                glommio::timer::sleep(TICK).await;
            }
            listener.close();
        });
    }
    loop {
        let result = listener.accept().await;
        if state.stopped() {
            break;
        }
        match result {
            Ok(_)
                if state.counters.accepted_open.get()
                    >= state.config.accepted_connections_max as u64 =>
            {
                add(&state.counters.accept_over_limit, 1);
                tracing::warn!(core = state.core.0, "too many node links; closed a new one");
            }
            Ok(stream) => {
                add(&state.counters.accepted_open, 1);
                let (state, routes) = (state.clone(), routes.clone());
                super::spawn(&state.clone(), async move {
                    serve(state.clone(), routes, stream).await;
                    state
                        .counters
                        .accepted_open
                        .set(state.counters.accepted_open.get() - 1);
                });
            }
            Err(e) => {
                tracing::warn!(core = state.core.0, error = %e, "peer accept failed");
                glommio::timer::sleep(TICK).await;
            }
        }
    }
}

/// The verdict on a handshake: accept, refuse with a reason, or hang up
/// on bytes that are not a link peer's at all.
enum Verdict {
    Accept(Hello),
    Refuse(Status, String),
    HangUp(CodecError),
}

fn judge(state: &CoreState, bytes: &[u8; HANDSHAKE_BYTES]) -> Verdict {
    let config = &state.config;
    let hello = match codec::decode_hello(bytes) {
        Ok(hello) => hello,
        Err(CodecError::Version { got }) => {
            return Verdict::Refuse(
                Status::VersionMismatch,
                format!("it speaks link protocol version {got}, this node {VERSION}"),
            )
        }
        Err(e) => return Verdict::HangUp(e),
    };
    if hello.cluster_id != config.cluster_id {
        let why = format!(
            "it belongs to cluster {:#034x}, this node to {:#034x}",
            hello.cluster_id, config.cluster_id
        );
        return Verdict::Refuse(Status::WrongCluster, why);
    }
    if hello.dest_node != config.node {
        let why = format!(
            "it expected node {}, this is node {}",
            hello.dest_node, config.node
        );
        return Verdict::Refuse(Status::WrongNode, why);
    }
    if hello.source_core.0 >= CORES_MAX {
        let why = format!("source core {} is out of range", hello.source_core);
        return Verdict::Refuse(Status::BadCore, why);
    }
    Verdict::Accept(hello)
}

/// One accepted connection: handshake, then frames until it ends.
async fn serve(state: Rc<CoreState>, routes: Rc<Routes>, mut stream: glommio::net::TcpStream) {
    let from = stream.peer_addr().ok();
    let timeout = state.config.handshake_timeout;
    let mut bytes = [0u8; HANDSHAKE_BYTES];
    match unless_stopped(&state, with_timeout(timeout, stream.read_exact(&mut bytes)))
        .await
        .flatten()
    {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            return tracing::debug!(?from, error = %e, "peer connection closed before its handshake")
        }
        None => {
            return tracing::debug!(
                ?from,
                "no handshake within the timeout, or the links stopped"
            )
        }
    }
    let (status, hello) = match judge(&state, &bytes) {
        Verdict::Accept(hello) => (Status::Accepted, Some(hello)),
        Verdict::Refuse(status, why) => {
            add(&state.counters.refusals_sent, 1);
            tracing::warn!(core = state.core.0, ?from, reason = %why, "refused a node link");
            (status, None)
        }
        Verdict::HangUp(e) => {
            add(&state.counters.refusals_sent, 1);
            return tracing::warn!(core = state.core.0, ?from, error = %e, "not a node link; closed");
        }
    };
    let reply = codec::encode_reply(&Reply {
        version: VERSION,
        status,
        cluster_id: state.config.cluster_id,
        node: state.config.node,
        cores: state.config.cores,
    });
    let sent = with_timeout(timeout, stream.write_all(&reply)).await;
    let Some(hello) = hello else { return };
    if !matches!(sent, Some(Ok(()))) {
        return;
    }
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.split();
    // Cancelled when dropped, at the end of this function.
    let _keepalives = glommio::spawn_local(send_keepalives(writer, state.clone()));
    if let Err(reason) = read_frames(&state, &routes, &hello, reader).await {
        tracing::info!(core = state.core.0, peer = hello.source_node.0, peer_core = hello.source_core.0, %reason, "node link closed");
    }
}

/// Writes an empty frame every keepalive interval, so the connecting side
/// can tell a quiet or busy acceptor from a dead one.
async fn send_keepalives(
    mut writer: futures::io::WriteHalf<glommio::net::TcpStream>,
    state: Rc<CoreState>,
) {
    let mut frame = codec::FrameEncoder::new();
    frame.keepalive();
    let bytes = frame.finish().to_vec();
    while !state.stopped() {
        glommio::timer::sleep(state.config.keepalive_interval).await;
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Reads frames and routes their messages until the connection ends (an
/// error says why, `Ok` is a clean close or a stop).
async fn read_frames(
    state: &CoreState,
    routes: &Routes,
    hello: &Hello,
    mut reader: futures::io::ReadHalf<glommio::net::TcpStream>,
) -> Result<(), String> {
    let idle = state.config.idle_timeout;
    let last_heard = Cell::new(Instant::now());
    let mut buf = BytesMut::new();
    loop {
        let old = buf.len();
        buf.resize(old + READ_CHUNK, 0);
        let watch = async {
            loop {
                glommio::timer::sleep(TICK).await;
                if state.stopped() {
                    return Ok(0);
                }
                if last_heard.get().elapsed() >= idle {
                    return Err(format!("nothing heard from the peer for {idle:?}"));
                }
            }
        };
        let read = reader
            .read(&mut buf[old..])
            .map(|r| r.map_err(|e| e.to_string()));
        let n = futures_lite::future::or(read, watch).await?;
        buf.truncate(old + n);
        if n == 0 {
            return Ok(());
        }
        last_heard.set(Instant::now());
        add(&state.counters.bytes_in, n as u64);
        while let Some(body) =
            codec::split_frame(&mut buf).map_err(|e| protocol(state, e.to_string()))?
        {
            add(&state.counters.frames_in, 1);
            let messages = codec::decode_body(&body).map_err(|e| protocol(state, e.to_string()))?;
            for m in messages {
                if m.source_core != hello.source_core {
                    let why = format!(
                        "message from core {} on core {}'s link",
                        m.source_core, hello.source_core
                    );
                    return Err(protocol(state, why));
                }
                add(&state.counters.messages_in, 1);
                if m.dest_core.0 >= state.config.cores {
                    add(&state.counters.misrouted, 1);
                    continue;
                }
                let env = Envelope {
                    from_node: hello.source_node,
                    from_core: hello.source_core,
                    generation: hello.generation,
                    kind: m.kind,
                    payload: m.payload,
                };
                match unless_stopped(state, route(state, routes, m.dest_core, env)).await {
                    Some(routed) => routed?,
                    None => return Ok(()),
                }
            }
        }
    }
}

fn protocol(state: &CoreState, why: String) -> String {
    add(&state.counters.protocol_errors, 1);
    why
}

/// Hands one message to its core, waiting while that core's channel is full.
async fn route(
    state: &CoreState,
    routes: &Routes,
    dest: CoreId,
    env: Envelope,
) -> Result<(), String> {
    if dest == state.core {
        return routes
            .local
            .send(env)
            .await
            .map_err(|_| "this core's inbox is closed".to_string());
    }
    let Some(Some(sender)) = routes.forward.get(usize::from(dest.0)) else {
        return Err(format!("no channel to core {dest}"));
    };
    sender
        .send(env)
        .await
        .map_err(|_| format!("core {dest}'s inbox is closed"))?;
    add(&state.counters.messages_forwarded, 1);
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The inbox's ordering rule, without sockets.
    use super::*;

    #[test]
    fn an_older_generation_after_a_newer_one_is_stale() {
        let mut order = SourceOrder::default();
        let (a, b) = ((NodeId(1), CoreId(0)), (NodeId(1), CoreId(1)));
        let check = |order: &mut SourceOrder, (n, c): (NodeId, CoreId), g, expected| {
            assert_eq!(order.admit(n, c, g), expected, "{n}:{c} generation {g}");
        };
        let (new, same) = (
            Admit::Deliver { new_session: true },
            Admit::Deliver { new_session: false },
        );
        check(&mut order, a, 10, new);
        check(&mut order, a, 10, same);
        // Another source core is independent.
        check(&mut order, b, 5, new);
        // A reconnect: generation 11 starts a session, then a late message
        // of 10 (overtaken through another accepting core) is dropped.
        check(&mut order, a, 11, new);
        check(&mut order, a, 10, Admit::Stale);
        check(&mut order, a, 11, same);
        check(&mut order, b, 4, Admit::Stale);
    }

    #[test]
    fn sources_beyond_the_bound_are_delivered_untracked() {
        let mut order = SourceOrder::default();
        for i in 0..INBOX_SOURCES_MAX {
            let (node, core) = (NodeId((i / 1024) as u32), CoreId((i % 1024) as u16));
            assert_eq!(
                order.admit(node, core, 1),
                Admit::Deliver { new_session: true }
            );
        }
        assert_eq!(
            order.admit(NodeId(u32::MAX), CoreId(0), 1),
            Admit::Untracked
        );
        assert_eq!(order.latest.len(), INBOX_SOURCES_MAX);
    }
}
