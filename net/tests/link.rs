//! Node links end to end (courier_net::link, docs/LINKS.md): real sockets on
//! 127.0.0.1, several "nodes" in one process, each core a glommio executor
//! started here. Two and three nodes exchange messages; FIFO per core pair
//! under load; backpressure when a peer does not read; reconnect after a
//! peer restarts; handshake refusals; a cut link (blackhole, reset) through
//! the test kit's proxy, then heal; a peer learnt after start through the
//! peer book, then followed to a new address. Also replays the `link_frames` fuzz
//! corpus. Messages carry (sequence number, source node, source core), so
//! every receiver checks order, gaps and duplicates itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../fuzz/harness/link.rs"]
mod link_harness;

use bytes::Bytes;
use courier_net::link::{
    self, CoreId, Inbound, Inbox, LinkConfig, LinkCounters, LinkDown, LinkFailure, LinkHandle,
    NodeId, PeerAddr, PeerBook, Refusal, SendError,
};
use courier_tools::proxy::Proxy;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLUSTER: u128 = 0x00c0_ffee_0000_0000_0000_0000_0000_c0de;

/// How long any node of a test may run before the test fails.
const NODE_DEADLINE: Duration = Duration::from_secs(90);

/// A loopback port bound with SO_REUSEPORT (never listening), so nodes
/// can be configured with each other's addresses before they start.
fn reserve() -> (SocketAddr, socket2::Socket) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (addr, socket)
}

/// A node's config with test timings: fast reconnects, a fixed jitter
/// seed.
fn config(
    cluster: u128,
    node: u32,
    cores: u16,
    listen: SocketAddr,
    peers: &[(u32, SocketAddr)],
) -> LinkConfig {
    let peers = peers
        .iter()
        .map(|&(n, addr)| PeerAddr {
            node: NodeId(n),
            addr,
        })
        .collect();
    let mut c = LinkConfig::new(cluster, NodeId(node), cores, listen, peers);
    c.seed = u64::from(node);
    // Generous against a loaded machine stalling an executor; the proxy
    // test shortens them (`fast_failure_detection`).
    c.keepalive_interval = Duration::from_millis(200);
    c.idle_timeout = Duration::from_secs(2);
    c.handshake_timeout = Duration::from_secs(2);
    c.backoff_initial = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c
}

/// Keepalive 100 ms, idle timeout 600 ms, handshake timeout 800 ms: a cut
/// link is given up within a second.
fn fast_failure_detection(mut c: LinkConfig) -> LinkConfig {
    c.keepalive_interval = Duration::from_millis(100);
    c.idle_timeout = Duration::from_millis(600);
    c.handshake_timeout = Duration::from_millis(800);
    c
}

/// Starts a node: one executor per core, each running
/// `script(core, handle, inbox)`; the core's links shut down (every task
/// ended, sockets closed) when it returns.
fn start_node<F, Fut, R>(config: LinkConfig, script: F) -> Vec<ExecutorJoinHandle<R>>
where
    F: Fn(CoreId, LinkHandle, Inbox) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = R> + 'static,
    R: Send + 'static,
{
    start_node_with_book(config, script).1
}

/// [`start_node`], also returning the node's peer book.
fn start_node_with_book<F, Fut, R>(
    config: LinkConfig,
    script: F,
) -> (PeerBook, Vec<ExecutorJoinHandle<R>>)
where
    F: Fn(CoreId, LinkHandle, Inbox) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = R> + 'static,
    R: Send + 'static,
{
    let node_id = config.node;
    let node = link::build(config).unwrap();
    let book = node.book.clone();
    let handles = node
        .cores
        .into_iter()
        .enumerate()
        .map(|(k, core)| {
            let script = script.clone();
            LocalExecutorBuilder::new(Placement::Unbound)
                .name(&format!("node{node_id}-core{k}"))
                .spawn(move || async move {
                    let (handle, inbox) = core.start().unwrap();
                    let result = script(CoreId(k as u16), handle.clone(), inbox).await;
                    let left = handle.shutdown().await;
                    assert_eq!(left, 0, "link tasks still running after shutdown");
                    result
                })
                .unwrap()
        })
        .collect();
    (book, handles)
}

/// Joins every core of every node, failing the test if one panicked or
/// they do not all finish within [`NODE_DEADLINE`].
fn join<R: Send + 'static>(handles: Vec<ExecutorJoinHandle<R>>) -> Vec<R> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let results: Vec<R> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let _ = tx.send(results);
    });
    rx.recv_timeout(NODE_DEADLINE).unwrap_or_else(|e| {
        panic!("a node core failed or did not finish within {NODE_DEADLINE:?} ({e})")
    })
}

/// A test message: sequence number, source node and core, padded.
fn payload(seq: u64, node: NodeId, core: CoreId, len: usize) -> Bytes {
    let mut b = Vec::with_capacity(len.max(14));
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&node.0.to_le_bytes());
    b.extend_from_slice(&core.0.to_le_bytes());
    b.resize(len.max(14), 0xA5);
    Bytes::from(b)
}

/// Reads a test message back, checking that the link's view of the
/// source matches what the sender wrote.
fn seq_of(m: &Inbound) -> u64 {
    let p = &m.payload;
    assert_eq!(
        u32::from_le_bytes(p[8..12].try_into().unwrap()),
        m.from_node.0
    );
    assert_eq!(
        u16::from_le_bytes(p[12..14].try_into().unwrap()),
        m.from_core.0
    );
    u64::from_le_bytes(p[0..8].try_into().unwrap())
}

/// Sends, waiting (a millisecond at a time) while the queue is full.
async fn send_retrying(h: &LinkHandle, node: NodeId, core: CoreId, p: Bytes) {
    loop {
        match h.send(node, core, 7, p.clone()) {
            Ok(()) => return,
            Err(SendError::Full { .. }) => glommio::timer::sleep(Duration::from_millis(1)).await,
            Err(e) => panic!("send to node {node} core {core}: {e}"),
        }
    }
}

/// Counts this core in and waits until `of` cores have come.
async fn barrier(count: &AtomicU64, of: u64) {
    count.fetch_add(1, Ordering::SeqCst);
    while count.load(Ordering::SeqCst) < of {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

/// Every (node, core) of a full mesh exchanges `per_pair` messages with
/// every core of every other node; each receiver checks it got exactly
/// 0..per_pair from each source, in order.
fn check_exchange(
    nodes: u32,
    cores: u16,
    per_pair: u64,
    len: usize,
) -> (Vec<LinkCounters>, Duration) {
    let reserved: Vec<_> = (0..nodes).map(|_| reserve()).collect();
    let addrs: Vec<(u32, SocketAddr)> = reserved
        .iter()
        .enumerate()
        .map(|(i, r)| (i as u32 + 1, r.0))
        .collect();
    let started = Instant::now();
    let all_cores = u64::from(nodes) * u64::from(cores);
    let (received_all, counted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut handles = Vec::new();
    for &(node, addr) in &addrs {
        let peers: Vec<_> = addrs.iter().copied().filter(|&(n, _)| n != node).collect();
        let dests: Vec<(NodeId, CoreId)> = peers
            .iter()
            .flat_map(|&(n, _)| (0..cores).map(move |c| (NodeId(n), CoreId(c))))
            .collect();
        let sources = dests.len() as u64;
        let (received_all, counted) = (received_all.clone(), counted.clone());
        handles.extend(start_node(
            config(CLUSTER, node, cores, addr, &peers),
            move |core, h, inbox| {
                let dests = dests.clone();
                let (received_all, counted) = (received_all.clone(), counted.clone());
                async move {
                    let receiver = glommio::spawn_local(async move {
                        let mut next: HashMap<(NodeId, CoreId), u64> = HashMap::new();
                        for _ in 0..per_pair * sources {
                            let m = inbox.recv().await.expect("inbox closed early");
                            let seq = seq_of(&m);
                            let want = next.entry((m.from_node, m.from_core)).or_insert(0);
                            assert_eq!(
                                seq, *want,
                                "from {}:{} to core {core}",
                                m.from_node, m.from_core
                            );
                            *want += 1;
                        }
                        assert_eq!(next.len() as u64, sources);
                        assert!(next.values().all(|&n| n == per_pair));
                    });
                    // Refused at once: an unknown node, an oversized payload.
                    let unknown = h.send(NodeId(99), CoreId(0), 1, Bytes::new());
                    assert_eq!(unknown, Err(SendError::UnknownNode(NodeId(99))));
                    let huge = Bytes::from(vec![0; link::constants::PAYLOAD_BYTES_MAX + 1]);
                    let huge_len = huge.len();
                    let too_large = h.send(dests[0].0, CoreId(0), 1, huge);
                    assert_eq!(too_large, Err(SendError::TooLarge { len: huge_len }));
                    // Queued, then dropped by the writer once the handshake
                    // says the peer has no such core.
                    h.send(dests[0].0, CoreId(cores + 5), 1, Bytes::new())
                        .unwrap();
                    for seq in 0..per_pair {
                        for &(node, dest) in &dests {
                            send_retrying(&h, node, dest, payload(seq, h.node(), h.core(), len))
                                .await;
                        }
                    }
                    receiver.await;
                    // Every core reads its counters once all have received
                    // everything, and stops only after all have read them.
                    barrier(&received_all, all_cores).await;
                    let counters = h.counters();
                    barrier(&counted, all_cores).await;
                    counters
                }
            },
        ));
    }
    let counters = join(handles);
    let elapsed = started.elapsed();
    drop(reserved);
    (counters, elapsed)
}

#[test]
fn two_nodes_exchange_messages() {
    let (counters, _) = check_exchange(2, 2, 2_000, 32);
    for c in &counters {
        // Each core sent 2,000 to each of 2 remote cores and got as many.
        assert_eq!(c.messages_out, 4_000, "{c:?}");
        assert_eq!(c.messages_delivered, 4_000, "{c:?}");
        assert_eq!(c.link_breaks, 0, "{c:?}");
        assert_eq!(c.stale_dropped, 0, "{c:?}");
        assert_eq!(c.misrouted, 1, "{c:?}");
    }
    let forwarded: u64 = counters.iter().map(|c| c.messages_forwarded).sum();
    let read: u64 = counters.iter().map(|c| c.messages_in).sum();
    assert_eq!(read, 16_000);
    // Every connection carries messages for both cores of its node, so
    // whichever core accepted it forwarded exactly half of them.
    assert_eq!(forwarded, read / 2);
}

#[test]
fn three_nodes_exchange_messages() {
    let (counters, _) = check_exchange(3, 2, 1_000, 100);
    for c in &counters {
        assert_eq!(c.messages_out, 4_000, "{c:?}");
        assert_eq!(c.messages_delivered, 4_000, "{c:?}");
        assert!(c.frames_out > 0 && c.bytes_out > 4_000 * 100, "{c:?}");
    }
}

/// One node's two cores send 50,000 sequenced messages to each core of
/// another node (200,000 in all, each core pair FIFO), and print the rate.
#[test]
fn fifo_per_core_pair_under_load_and_throughput() {
    for (per_pair, len) in [(50_000u64, 100usize), (5_000, 16 * 1024)] {
        let (a, a_keep) = reserve();
        let (b, b_keep) = reserve();
        let total = per_pair * 4;
        // Sender cores that have their link up; receiver cores done.
        let (ready, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (r, d) = (ready.clone(), done.clone());
        let sender = start_node(
            config(CLUSTER, 1, 2, a, &[(2, b)]),
            move |_core, h, _inbox| {
                let (ready, done) = (r.clone(), d.clone());
                async move {
                    // The clock starts once both cores' links are up.
                    while !h.status(NodeId(2)).unwrap().connected {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                    barrier(&ready, 2).await;
                    let started = Instant::now();
                    for seq in 0..per_pair {
                        for dest in [CoreId(0), CoreId(1)] {
                            send_retrying(
                                &h,
                                NodeId(2),
                                dest,
                                payload(seq, h.node(), h.core(), len),
                            )
                            .await;
                        }
                    }
                    while done.load(Ordering::SeqCst) < 2 {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                    (started, h.counters())
                }
            },
        );
        let d = done.clone();
        let receiver = start_node(
            config(CLUSTER, 2, 2, b, &[(1, a)]),
            move |core, _h, inbox| {
                let done = d.clone();
                async move {
                    let mut next = [0u64; 2];
                    for _ in 0..per_pair * 2 {
                        let m = inbox.recv().await.expect("inbox closed early");
                        assert_eq!(m.from_node, NodeId(1));
                        let seq = seq_of(&m);
                        let want = &mut next[usize::from(m.from_core.0)];
                        assert_eq!(
                            seq, *want,
                            "from core {} to core {core}: reordered, lost or duplicated",
                            m.from_core
                        );
                        *want += 1;
                    }
                    let last = Instant::now();
                    done.fetch_add(1, Ordering::SeqCst);
                    last
                }
            },
        );
        let last = join(receiver).into_iter().max().unwrap();
        let sender = join(sender);
        let started = sender.iter().map(|(s, _)| *s).min().unwrap();
        let secs = last.duration_since(started).as_secs_f64();
        let mb = (total * len as u64) as f64 / 1e6;
        let frames: u64 = sender.iter().map(|(_, c)| c.frames_out).sum();
        let messages: u64 = sender.iter().map(|(_, c)| c.messages_out).sum();
        assert_eq!(messages, total);
        println!(
            "link throughput: {total} messages of {len} B over loopback, 2 nodes × 2 cores, in {secs:.3} s: {:.0} messages/s, {:.1} MB/s of payload ({frames} frames, {:.1} messages per frame)",
            total as f64 / secs,
            mb / secs,
            total as f64 / frames as f64
        );
        drop((a_keep, b_keep));
    }
}

/// A peer that does not drain its inbox fills the socket and then the
/// sender's queue: `send` fails with `Full`, the queue stays at its bound
/// and the link stays up (the blocked peer still sends keepalives); once
/// the peer reads, every accepted message arrives in order.
#[test]
fn backpressure_when_the_peer_does_not_read() {
    const QUEUE: usize = 200;
    const LEN: usize = 16 * 1024;
    let (a, a_keep) = reserve();
    let (b, b_keep) = reserve();
    let go = Arc::new(AtomicBool::new(false));
    let expected = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let mut ca = config(CLUSTER, 1, 2, a, &[(2, b)]);
    ca.queue_messages_max = QUEUE;
    let mut cb = config(CLUSTER, 2, 2, b, &[(1, a)]);
    cb.inbox_capacity = 32;
    cb.forward_capacity = 32;
    let (g, e, r) = (go.clone(), expected.clone(), received.clone());
    let receiver = start_node(cb, move |core, _h, inbox| {
        let (go, expected, received) = (g.clone(), e.clone(), r.clone());
        async move {
            while !go.load(Ordering::SeqCst) {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            let mut next = u64::from(core.0);
            loop {
                let want = expected.load(Ordering::SeqCst);
                if want > 0 && received.load(Ordering::SeqCst) == want {
                    // Keep the links up until the sender has read its counters.
                    while go.load(Ordering::SeqCst) {
                        glommio::timer::sleep(Duration::from_millis(5)).await;
                    }
                    return;
                }
                let Some(Some(m)) =
                    courier_net::sync::with_timeout(Duration::from_millis(20), inbox.recv()).await
                else {
                    continue;
                };
                assert_eq!(seq_of(&m), next, "core {core}");
                next += 2;
                received.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let (g, e, r) = (go.clone(), expected.clone(), received.clone());
    let sender = start_node(ca, move |core, h, _inbox| {
        let (go, expected, received) = (g.clone(), e.clone(), r.clone());
        async move {
            if core != CoreId(0) {
                return None;
            }
            let mut seq = 0u64;
            let mut full = None;
            while full.is_none() {
                // In steps, so the writer can drain into the socket between.
                let before = seq;
                let (e, c) = fill(&h, &mut seq, 100_000);
                if seq == before || seq > 20_000 {
                    full = Some((e, c));
                } else {
                    glommio::timer::sleep(Duration::from_millis(2)).await;
                }
            }
            let (full, during) = full.unwrap();
            // Longer than the idle timeout: a blocked peer is not a dead one.
            glommio::timer::sleep(Duration::from_millis(900)).await;
            let status = h.status(NodeId(2)).unwrap();
            // Still refused at once (the kernel may have taken a little more).
            let (again, _) = fill(&h, &mut seq, (2 * QUEUE) as u64);
            go.store(true, Ordering::SeqCst);
            let total = seq + 500;
            while seq < total {
                send_retrying(
                    &h,
                    NodeId(2),
                    CoreId((seq % 2) as u16),
                    payload(seq, h.node(), h.core(), LEN),
                )
                .await;
                seq += 1;
            }
            expected.store(total, Ordering::SeqCst);
            while received.load(Ordering::SeqCst) < total {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            let after = h.counters();
            go.store(false, Ordering::SeqCst);
            Some((full, again, status, during, after))
        }
    });
    join(receiver);
    let (full, again, status, during, after) = join(sender).into_iter().flatten().next().unwrap();
    assert_eq!(
        full,
        SendError::Full {
            node: NodeId(2),
            messages: QUEUE,
            bytes: QUEUE * LEN
        }
    );
    assert!(matches!(again, SendError::Full { .. }), "{again:?}");
    assert!(
        status.connected,
        "the link must stay up while the peer is slow: {status:?}"
    );
    assert!(status.queued_messages <= QUEUE, "{status:?}");
    assert_eq!(during.queue_messages, QUEUE as u64, "{during:?}");
    assert!(during.queue_full >= 1, "{during:?}");
    assert!(after.queue_full >= 2, "{after:?}");
    assert_eq!(after.link_breaks, 0, "{after:?}");
    assert_eq!(
        received.load(Ordering::SeqCst),
        expected.load(Ordering::SeqCst)
    );
    drop((a_keep, b_keep));
}

/// Sends 16 KiB messages to node 2 (alternating its cores) until the
/// queue refuses one; returns the refusal and the counters at that moment.
/// Fails after `limit` sends without a refusal.
fn fill(h: &LinkHandle, seq: &mut u64, limit: u64) -> (SendError, LinkCounters) {
    const LEN: usize = 16 * 1024;
    let start = *seq;
    loop {
        assert!(
            *seq - start < limit,
            "no backpressure after {} messages of {LEN} B",
            *seq - start
        );
        let p = payload(*seq, h.node(), h.core(), LEN);
        match h.send(NodeId(2), CoreId((*seq % 2) as u16), 1, p) {
            Ok(()) => *seq += 1,
            Err(e) => return (e, h.counters()),
        }
    }
}

/// What a receiving node saw from each (source core, destination core):
/// the sequence numbers in arrival order.
type Seen = Arc<Mutex<HashMap<(u16, u16), Vec<u64>>>>;

/// A receiving node's core: records every message until `done`.
fn recording_receiver(
    seen: Seen,
    done: Arc<AtomicBool>,
    quota: Option<Arc<AtomicU64>>,
) -> impl Fn(CoreId, LinkHandle, Inbox) -> std::pin::Pin<Box<dyn Future<Output = LinkCounters>>>
       + Send
       + Clone
       + 'static {
    move |core, h, inbox| {
        let (seen, done, quota) = (seen.clone(), done.clone(), quota.clone());
        Box::pin(async move {
            while !done.load(Ordering::SeqCst) {
                if let Some(q) = &quota {
                    if q.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                }
                let Some(Some(m)) =
                    courier_net::sync::with_timeout(Duration::from_millis(20), inbox.recv()).await
                else {
                    continue;
                };
                let seq = seq_of(&m);
                seen.lock()
                    .unwrap()
                    .entry((m.from_core.0, core.0))
                    .or_default()
                    .push(seq);
                if let Some(q) = &quota {
                    let _ =
                        q.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                }
            }
            h.counters()
        })
    }
}

/// A sending node's core: sends `per_core` sequenced messages, alternating
/// between the two destination cores, `burst` at a time with a millisecond
/// pause; notes the first seq sent after `healed` is set; waits for `done`.
#[allow(clippy::type_complexity)]
fn paced_sender(
    dest: NodeId,
    per_core: u64,
    burst: u64,
    healed: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> impl Fn(
    CoreId,
    LinkHandle,
    Inbox,
) -> std::pin::Pin<Box<dyn Future<Output = (LinkCounters, Vec<LinkDown>, u64)>>>
       + Send
       + Clone
       + 'static {
    move |_core, h, _inbox| {
        let (healed, done) = (healed.clone(), done.clone());
        Box::pin(async move {
            let mut first_after_heal = u64::MAX;
            let mut downs = Vec::new();
            for seq in 0..per_core {
                if first_after_heal == u64::MAX && healed.load(Ordering::SeqCst) {
                    first_after_heal = seq;
                }
                send_retrying(
                    &h,
                    dest,
                    CoreId((seq % 2) as u16),
                    payload(seq, h.node(), h.core(), 64),
                )
                .await;
                if seq % burst == 0 {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                    downs.extend(h.take_downs());
                }
            }
            while !done.load(Ordering::SeqCst) {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            downs.extend(h.take_downs());
            (h.counters(), downs, first_after_heal)
        })
    }
}

/// Waits until messages from both sending cores have arrived since the
/// call (at most 30 s).
fn wait_for_progress(seen: &Seen) {
    let count = |src: u16| -> usize {
        let s = seen.lock().unwrap();
        (0..2u16)
            .map(|dst| s.get(&(src, dst)).map_or(0, Vec::len))
            .sum()
    };
    let before = [count(0), count(1)];
    let deadline = Instant::now() + Duration::from_secs(30);
    while (0..2).any(|src| count(src as u16) == before[src]) {
        assert!(
            Instant::now() < deadline,
            "no messages arrive through the proxy"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Checks what a receiver saw from a paced sender: for each core pair,
/// strictly increasing (FIFO, no duplicates); the last message arrived;
/// nothing sent after `first_after_heal` is missing; and everything
/// missing is covered by the link-down notices' "possibly lost" counts.
fn check_seen(seen: &Seen, per_core: u64, sender: &[(LinkCounters, Vec<LinkDown>, u64)]) -> u64 {
    let seen = seen.lock().unwrap();
    let mut missing_total = 0;
    for (src, (_, downs, first_after_heal)) in sender.iter().enumerate() {
        let mut missing = 0;
        for dst in 0..2u16 {
            let got = seen.get(&(src as u16, dst)).cloned().unwrap_or_default();
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "core {src} → {dst}: out of order or duplicated"
            );
            let expected: Vec<u64> = (0..per_core).filter(|s| s % 2 == u64::from(dst)).collect();
            assert_eq!(
                got.last(),
                expected.last(),
                "core {src} → {dst}: the last message is missing"
            );
            let tail: Vec<u64> = got
                .iter()
                .copied()
                .filter(|&s| s >= *first_after_heal)
                .collect();
            let expected_tail: Vec<u64> = expected
                .iter()
                .copied()
                .filter(|&s| s >= *first_after_heal)
                .collect();
            assert_eq!(
                tail, expected_tail,
                "core {src} → {dst}: messages after the heal are missing"
            );
            missing += expected.len() - got.len();
        }
        let possibly_lost: u64 = downs.iter().map(|d| d.messages_written).sum();
        assert!(
            missing as u64 <= possibly_lost,
            "core {src}: {missing} missing but only {possibly_lost} reported possibly lost"
        );
        missing_total += missing as u64;
    }
    missing_total
}

/// The receiving node stops (its links close) and starts again on the same
/// port; the sender reconnects, keeps what was queued meanwhile, and the
/// receiver's two lives together saw each core pair in order, without
/// duplicates, with every loss reported to the sender.
#[test]
fn reconnect_after_the_peer_restarts() {
    const PER_CORE: u64 = 20_000;
    let (a, a_keep) = reserve();
    let (b, b_keep) = reserve();
    let seen: Seen = Arc::default();
    let healed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let sender = start_node(
        config(CLUSTER, 1, 2, a, &[(2, b)]),
        paced_sender(NodeId(2), PER_CORE, 20, healed.clone(), done.clone()),
    );
    // First life: stops after 3,000 messages.
    let first = start_node(
        config(CLUSTER, 2, 2, b, &[(1, a)]),
        recording_receiver(
            seen.clone(),
            Arc::new(AtomicBool::new(false)),
            Some(Arc::new(AtomicU64::new(3_000))),
        ),
    );
    let first = join(first);
    assert!(first.iter().map(|c| c.messages_delivered).sum::<u64>() >= 3_000);
    std::thread::sleep(Duration::from_millis(300));
    let second = start_node(
        config(CLUSTER, 2, 2, b, &[(1, a)]),
        recording_receiver(seen.clone(), done.clone(), None),
    );
    // The sender has reconnected once messages arrive in the second life.
    wait_for_progress(&seen);
    healed.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let s = seen.lock().unwrap();
        let last = |src: u16, dst: u16| s.get(&(src, dst)).and_then(|v| v.last().copied());
        if (0..2)
            .all(|src| last(src, 0) == Some(PER_CORE - 2) && last(src, 1) == Some(PER_CORE - 1))
        {
            break;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    done.store(true, Ordering::SeqCst);
    let sender = join(sender);
    join(second);
    let missing = check_seen(&seen, PER_CORE, &sender);
    for (c, downs, first_after_heal) in &sender {
        assert!(c.reconnects >= 1, "{c:?}");
        assert!(!downs.is_empty());
        assert!(
            *first_after_heal < PER_CORE,
            "the heal came after the last send; make the run longer"
        );
    }
    println!(
        "restart: {missing} of {} messages lost (all reported possibly lost)",
        2 * PER_CORE
    );
    drop((a_keep, b_keep));
}

/// A node of another cluster, and a node with another id than expected,
/// refuse the handshake; both sides count it, the connector keeps a clear
/// error and its queued message, and nothing is delivered.
#[test]
fn handshake_refused_for_a_wrong_cluster_or_node() {
    let (a, a_keep) = reserve();
    let (other_cluster, oc_keep) = reserve();
    let (node2, n2_keep) = reserve();
    let done = Arc::new(AtomicBool::new(false));
    let idle = |done: Arc<AtomicBool>| {
        move |_core, h: LinkHandle, inbox: Inbox| {
            let done = done.clone();
            async move {
                while !done.load(Ordering::SeqCst) {
                    if let Some(Some(m)) =
                        courier_net::sync::with_timeout(Duration::from_millis(20), inbox.recv())
                            .await
                    {
                        panic!("a refused peer delivered {m:?}");
                    }
                }
                h.counters()
            }
        }
    };
    let b = start_node(
        config(CLUSTER + 1, 2, 1, other_cluster, &[]),
        idle(done.clone()),
    );
    let c = start_node(config(CLUSTER, 2, 1, node2, &[]), idle(done.clone()));
    // Node 1 thinks node 2 is at the other cluster's address and node 3 at
    // node 2's.
    let a_handles = start_node(
        config(CLUSTER, 1, 1, a, &[(2, other_cluster), (3, node2)]),
        move |_core, h, _inbox| async move {
            h.send(NodeId(2), CoreId(0), 1, Bytes::from_static(b"hello"))
                .unwrap();
            h.send(NodeId(3), CoreId(0), 1, Bytes::from_static(b"hello"))
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let s2 = h.status(NodeId(2)).unwrap();
                let s3 = h.status(NodeId(3)).unwrap();
                let refused = |s: &link::PeerStatus| {
                    matches!(s.last_error, Some(LinkFailure::Refused { .. }))
                };
                if (refused(&s2) && refused(&s3)) || Instant::now() > deadline {
                    // A few more attempts, to see the backoff keep trying.
                    glommio::timer::sleep(Duration::from_millis(300)).await;
                    return (
                        h.status(NodeId(2)).unwrap(),
                        h.status(NodeId(3)).unwrap(),
                        h.counters(),
                    );
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        },
    );
    let (s2, s3, counters) = join(a_handles).pop().unwrap();
    done.store(true, Ordering::SeqCst);
    let b = join(b).pop().unwrap();
    let c = join(c).pop().unwrap();

    let Some(LinkFailure::Refused { node, refusal, .. }) = &s2.last_error else {
        panic!("{s2:?}")
    };
    assert_eq!(*node, NodeId(2));
    assert_eq!(
        *refusal,
        Refusal::WrongCluster {
            ours: CLUSTER,
            theirs: CLUSTER + 1
        }
    );
    let text = s2.last_error.as_ref().unwrap().to_string();
    assert_eq!(
        text,
        format!("node 2 at {other_cluster} refused the link: it belongs to cluster {:#034x}, this node to {:#034x}", CLUSTER + 1, CLUSTER)
    );
    let Some(LinkFailure::Refused { refusal, .. }) = &s3.last_error else {
        panic!("{s3:?}")
    };
    assert_eq!(
        *refusal,
        Refusal::WrongNode {
            expected: NodeId(3),
            theirs: NodeId(2)
        }
    );
    assert_eq!(
        s3.last_error.as_ref().unwrap().to_string(),
        format!("node 3 at {node2} refused the link: it is node 2, not node 3")
    );
    for s in [&s2, &s3] {
        assert!(!s.connected && s.connections == 0, "{s:?}");
        assert_eq!(s.queued_messages, 1, "the message waits for a link: {s:?}");
    }
    assert!(
        counters.refusals_received >= 4,
        "the link keeps retrying: {counters:?}"
    );
    // Failures also count attempts made before the peers listened.
    assert!(
        counters.connect_failures >= counters.refusals_received,
        "{counters:?}"
    );
    assert!(b.refusals_sent >= 2 && c.refusals_sent >= 2, "{b:?} {c:?}");
    assert_eq!(b.messages_in + c.messages_in, 0);
    drop((a_keep, oc_keep, n2_keep));
}

/// Through the test kit's proxy: the link is blackholed (longer than the
/// idle timeout, so the sender gives the connection up and its new ones are
/// held), healed, then every connection is reset and healed again. After
/// the heal everything arrives; per core pair the receiver saw an
/// increasing sequence (FIFO, nothing duplicated); what is missing was
/// written on connections reported broken.
#[test]
fn cut_link_through_the_proxy_then_heal() {
    const PER_CORE: u64 = 30_000;
    let (a, a_keep) = reserve();
    let (b, b_keep) = reserve();
    let proxy = Proxy::start(b).unwrap();
    let seen: Seen = Arc::default();
    let healed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = start_node(
        fast_failure_detection(config(CLUSTER, 2, 2, b, &[])),
        recording_receiver(seen.clone(), done.clone(), None),
    );
    let sender = start_node(
        fast_failure_detection(config(CLUSTER, 1, 2, a, &[(2, proxy.addr())])),
        paced_sender(NodeId(2), PER_CORE, 10, healed.clone(), done.clone()),
    );
    // Each fault hits links that carry messages: wait until both sending
    // cores' messages are arriving (again).
    wait_for_progress(&seen);
    proxy.blackhole();
    std::thread::sleep(Duration::from_millis(1_500));
    proxy.heal();
    wait_for_progress(&seen);
    proxy.reset_all();
    std::thread::sleep(Duration::from_millis(100));
    wait_for_progress(&seen);
    healed.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let s = seen.lock().unwrap();
        let last = |src: u16, dst: u16| s.get(&(src, dst)).and_then(|v| v.last().copied());
        if (0..2)
            .all(|src| last(src, 0) == Some(PER_CORE - 2) && last(src, 1) == Some(PER_CORE - 1))
        {
            break;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    done.store(true, Ordering::SeqCst);
    let sender = join(sender);
    let receiver = join(receiver);
    let missing = check_seen(&seen, PER_CORE, &sender);
    for (c, _, first_after_heal) in &sender {
        // The blackhole (idle timeout) and the reset each broke the link.
        assert!(c.link_breaks >= 2, "{c:?}");
        assert!(c.reconnects >= 2, "{c:?}");
        assert!(
            *first_after_heal < PER_CORE,
            "the heal came after the last send; make the run longer"
        );
    }
    let stats = proxy.stats();
    assert!(stats.resets >= 2, "{stats:?}");
    let stale: u64 = receiver.iter().map(|c| c.stale_dropped).sum();
    println!("proxy cut: {missing} of {} messages lost (all reported possibly lost), {stale} dropped as stale, proxy {stats:?}", 2 * PER_CORE);
    drop((a_keep, b_keep));
}

/// The committed seeds of the `link_frames` fuzz target, replayed with the
/// target's own checks (fuzz/harness/link.rs).
/// An idle link's writer sleeps until there is work: over a quiet second
/// it wakes about once per keepalive interval (200 ms here), not every
/// 10 ms tick; then a burst queued in one turn still goes out in one
/// write (one frame), and arrives in order.
#[test]
fn an_idle_link_sleeps_and_a_burst_is_one_write() {
    const BURST: u64 = 1_000;
    let (a, a_keep) = reserve();
    let (b, b_keep) = reserve();
    let receiver = start_node(
        config(CLUSTER, 2, 1, b, &[]),
        |_core, _h, inbox| async move {
            for seq in 0..BURST {
                let m = inbox.recv().await.unwrap();
                assert_eq!(seq_of(&m), seq);
            }
        },
    );
    let sender = start_node(
        config(CLUSTER, 1, 1, a, &[(2, b)]),
        |core, h, _inbox| async move {
            let up = Instant::now();
            while !h.status(NodeId(2)).unwrap().connected {
                assert!(up.elapsed() < Duration::from_secs(30), "link not up");
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            let before = h.counters();
            let quiet = Instant::now();
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let idle = (h.counters(), quiet.elapsed());
            // The whole burst is queued in this turn, before the writer runs.
            for seq in 0..BURST {
                h.send(NodeId(2), CoreId(0), 7, payload(seq, NodeId(1), core, 64))
                    .unwrap();
            }
            while h.counters().messages_out < BURST {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            (before, idle, h.counters())
        },
    );
    join(receiver);
    let (before, (idle, quiet), after) = join(sender).pop().unwrap();
    let wakeups = idle.writer_wakeups - before.writer_wakeups;
    // One per keepalive interval (200 ms) over `quiet`, plus slack for
    // idle checks and a stalled executor; a 10 ms tick would give ~100.
    let allowed = quiet.as_millis() as u64 / 200 + 5;
    assert!(
        wakeups <= allowed,
        "{wakeups} writer wake-ups in {quiet:?} idle (at most {allowed})"
    );
    let keepalives = idle.frames_out - before.frames_out;
    assert!(
        keepalives >= 2,
        "keepalives still written while idle: {keepalives}"
    );
    assert_eq!(idle.link_breaks, 0, "{idle:?}");
    assert_eq!(after.messages_out - idle.messages_out, BURST, "{after:?}");
    // The burst's frame, and at most one keepalive after it.
    let frames = after.frames_out - idle.frames_out;
    assert!(frames <= 2, "a burst of {BURST} took {frames} frames");
    drop((a_keep, b_keep));
}

#[test]
fn link_frames_fuzz_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/link_frames");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 5, "{} seeds", paths.len());
    let decoded: usize = paths
        .iter()
        .map(|p| link_harness::link_frames(&std::fs::read(p).unwrap()))
        .sum();
    assert!(
        decoded >= 5,
        "the well-formed seeds must decode ({decoded} messages)"
    );
}

/// A core that already serves its bound of accepted connections closes a
/// new one at once; the connector reports the failed handshake and retries.
#[test]
fn accepted_connections_are_bounded_per_core() {
    let (a, a_keep) = reserve();
    let (b, b_keep) = reserve();
    // Both sender cores have their status; then the receiver has its counters.
    let checked = Arc::new(AtomicU64::new(0));
    let counted = Arc::new(AtomicBool::new(false));
    let mut cb = config(CLUSTER, 2, 1, b, &[]);
    cb.accepted_connections_max = 1;
    let (ch, co) = (checked.clone(), counted.clone());
    let receiver = start_node(cb, move |_core, h, _inbox| {
        let (checked, counted) = (ch.clone(), co.clone());
        async move {
            while checked.load(Ordering::SeqCst) < 2 {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            let counters = h.counters();
            counted.store(true, Ordering::SeqCst);
            counters
        }
    });
    // Two cores, so two connections to node 2's single core.
    let (ch, co) = (checked.clone(), counted.clone());
    let sender = start_node(
        config(CLUSTER, 1, 2, a, &[(2, b)]),
        move |_core, h, _inbox| {
            let (checked, counted) = (ch.clone(), co.clone());
            async move {
                glommio::timer::sleep(Duration::from_millis(800)).await;
                let status = h.status(NodeId(2)).unwrap();
                checked.fetch_add(1, Ordering::SeqCst);
                while !counted.load(Ordering::SeqCst) {
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                }
                status
            }
        },
    );
    let statuses = join(sender);
    let counters = join(receiver).pop().unwrap();
    let connected = statuses.iter().filter(|s| s.connected).count();
    assert_eq!(connected, 1, "{statuses:?}");
    let refused = statuses.iter().find(|s| !s.connected).unwrap();
    let Some(LinkFailure::Broken { reason, .. }) = &refused.last_error else {
        panic!("{refused:?}")
    };
    assert!(reason.starts_with("during the handshake"), "{reason}");
    assert_eq!(counters.accepted_open, 1, "{counters:?}");
    assert!(
        counters.accept_over_limit >= 2,
        "the other link keeps retrying: {counters:?}"
    );
    drop((a_keep, b_keep));
}

/// The fuzz target's checks on seeded mutations of its seeds (bit flips,
/// truncations, splices, random bytes, re-checksummed frames), so every
/// test run fuzzes a little even where cargo-fuzz is not installed.
#[test]
fn link_frames_mutated_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/link_frames");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let mut state = 0x5eed_u64;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut decoded = 0;
    for round in 0..200_000 {
        let mut data = seeds[round % seeds.len()].clone();
        for _ in 0..1 + next() % 4 {
            let at = if data.is_empty() {
                0
            } else {
                (next() as usize) % data.len()
            };
            match next() % 5 {
                0 if !data.is_empty() => data[at] ^= 1 << (next() % 8),
                1 => data.truncate(at),
                2 => data
                    .splice(
                        at..at,
                        seeds[(next() as usize) % seeds.len()].iter().copied(),
                    )
                    .for_each(drop),
                3 => data.insert(at, next() as u8),
                _ if data.len() >= 8 => {
                    // Make the first frame's checksum right again, so the
                    // mutation reaches the message parser.
                    let len = u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
                    if 8 + len <= data.len() {
                        let crc = crc32c::crc32c(&data[8..8 + len]);
                        data[4..8].copy_from_slice(&crc.to_le_bytes());
                    }
                }
                _ => {}
            }
        }
        decoded += link_harness::link_frames(&data);
    }
    assert!(
        decoded > 10_000,
        "mutations that still decode: {decoded} messages"
    );
}

/// A paced sender ([`paced_sender`]) on a node that starts without knowing
/// `dest`: a send to it is refused (`UnknownNode`) and the core counts
/// itself in `refused`; once the node's book learns `dest` (set by the test
/// thread), the core's tick starts the link and the paced sends begin.
/// Also returns the address the link ended on.
#[allow(clippy::type_complexity)]
fn learning_sender(
    dest: NodeId,
    per_core: u64,
    refused: Arc<AtomicU64>,
    healed: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> impl Fn(
    CoreId,
    LinkHandle,
    Inbox,
) -> std::pin::Pin<
    Box<dyn Future<Output = ((LinkCounters, Vec<LinkDown>, u64), SocketAddr)>>,
> + Send
       + Clone
       + 'static {
    let paced = paced_sender(dest, per_core, 20, healed, done);
    move |core, h, inbox| {
        let (paced, refused) = (paced.clone(), refused.clone());
        Box::pin(async move {
            let early = h.send(dest, CoreId(0), 7, payload(0, h.node(), core, 64));
            assert_eq!(early, Err(SendError::UnknownNode(dest)));
            assert!(h.status(dest).is_none());
            refused.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(30);
            while h.status(dest).is_none() {
                assert!(Instant::now() < deadline, "the book's new peer got no link");
                glommio::timer::sleep(Duration::from_millis(2)).await;
            }
            let result = paced(core, h.clone(), inbox).await;
            (result, h.status(dest).unwrap().addr)
        })
    }
}

/// A node starts knowing no peer; the test thread adds the receiver to its
/// peer book, and its cores connect and deliver. The receiver then stops
/// and comes back on another port; the book is told the new address and
/// the links follow it: everything sent after that arrives, in order, and
/// every loss is reported (as at any break).
#[test]
fn a_peer_learnt_after_start_and_moved_is_followed() {
    const PER_CORE: u64 = 10_000;
    let (a, a_keep) = reserve();
    let (b1, b1_keep) = reserve();
    let (b2, b2_keep) = reserve();
    let seen: Seen = Arc::default();
    let refused = Arc::new(AtomicU64::new(0));
    let healed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (book, sender) = start_node_with_book(
        config(CLUSTER, 1, 2, a, &[]),
        learning_sender(
            NodeId(2),
            PER_CORE,
            refused.clone(),
            healed.clone(),
            done.clone(),
        ),
    );
    let first = start_node(
        config(CLUSTER, 2, 2, b1, &[(1, a)]),
        recording_receiver(
            seen.clone(),
            Arc::new(AtomicBool::new(false)),
            Some(Arc::new(AtomicU64::new(2_000))),
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "the sender's cores did not start"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // Learnt from another thread, after start.
    assert_eq!(book.set(NodeId(2), b1), Ok(true));
    let first = join(first);
    assert!(first.iter().map(|c| c.messages_delivered).sum::<u64>() >= 2_000);
    // The receiver's second life listens elsewhere; nothing listens at b1.
    let second = start_node(
        config(CLUSTER, 2, 2, b2, &[(1, a)]),
        recording_receiver(seen.clone(), done.clone(), None),
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(book.set(NodeId(2), b2), Ok(true));
    wait_for_progress(&seen);
    healed.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let s = seen.lock().unwrap();
        let last = |src: u16, dst: u16| s.get(&(src, dst)).and_then(|v| v.last().copied());
        if (0..2)
            .all(|src| last(src, 0) == Some(PER_CORE - 2) && last(src, 1) == Some(PER_CORE - 1))
        {
            break;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    done.store(true, Ordering::SeqCst);
    let results = join(sender);
    join(second);
    let sender: Vec<_> = results.iter().map(|(r, _)| r.clone()).collect();
    let missing = check_seen(&seen, PER_CORE, &sender);
    for ((c, _, first_after_heal), addr) in &results {
        assert_eq!(*addr, b2, "the link did not follow the move");
        assert!(c.reconnects >= 1, "{c:?}");
        assert!(*first_after_heal < PER_CORE, "make the run longer");
    }
    println!(
        "learnt and moved: {missing} of {} messages lost (all reported)",
        2 * PER_CORE
    );
    drop((a_keep, b1_keep, b2_keep));
}

/// A live link whose peer's address changes in the book (here: to a proxy
/// in front of the same peer, as `--peer-advertise` would route it) ends
/// its connection to the old address and reconnects through the new one;
/// the break is reported with the move as its reason, and everything sent
/// after the move arrives, in order.
#[test]
fn a_live_link_moved_to_a_proxy_reconnects_through_it() {
    const PER_CORE: u64 = 20_000;
    let (a, a_keep) = reserve();
    let (b, b_keep) = reserve();
    let proxy = Proxy::start(b).unwrap();
    let seen: Seen = Arc::default();
    let healed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = start_node(
        config(CLUSTER, 2, 2, b, &[]),
        recording_receiver(seen.clone(), done.clone(), None),
    );
    let (book, sender) = start_node_with_book(
        config(CLUSTER, 1, 2, a, &[(2, b)]),
        paced_sender(NodeId(2), PER_CORE, 10, healed.clone(), done.clone()),
    );
    wait_for_progress(&seen);
    assert_eq!(proxy.stats().accepted, 0, "connected directly first");
    assert_eq!(book.set(NodeId(2), proxy.addr()), Ok(true));
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.stats().accepted < 2 {
        assert!(
            Instant::now() < deadline,
            "the links did not move to the proxy"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_for_progress(&seen);
    healed.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let s = seen.lock().unwrap();
        let last = |src: u16, dst: u16| s.get(&(src, dst)).and_then(|v| v.last().copied());
        if (0..2)
            .all(|src| last(src, 0) == Some(PER_CORE - 2) && last(src, 1) == Some(PER_CORE - 1))
        {
            break;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    done.store(true, Ordering::SeqCst);
    let sender = join(sender);
    join(receiver);
    let missing = check_seen(&seen, PER_CORE, &sender);
    let moved = format!("the peer's address changed to {}", proxy.addr());
    for (c, downs, first_after_heal) in &sender {
        assert!(c.reconnects >= 1, "{c:?}");
        assert!(
            downs.iter().any(|d| d.reason.to_string().contains(&moved)),
            "{downs:?}"
        );
        assert!(*first_after_heal < PER_CORE, "make the run longer");
    }
    let stats = proxy.stats();
    assert!(stats.accepted >= 2 && stats.bytes > 0, "{stats:?}");
    println!(
        "moved to a proxy: {missing} of {} messages lost (all reported), proxy {stats:?}",
        2 * PER_CORE
    );
    drop((a_keep, b_keep));
}
