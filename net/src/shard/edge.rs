//! Cluster mode's **edge**: on every core of every node, a connection-only
//! `courier_core::Shard` that holds the client sockets this core accepted
//! and forwards everything else to the state shards, wherever their
//! group's leader runs — so a client may connect to any node
//! (docs/CLUSTER.md, "Clients on any node").
//!
//! Addresses. State shard `s` (`0..S`, S = cores: one Raft group per
//! core) lives on core `s` of the node leading group `s`. The edges come
//! after them, by node id, voters or not: the edge of core `c` of node
//! `n` is `S + (n − 1)·S + c`, for node ids `1..=`[`Routes::edge_nodes`]
//! (at most [`EDGE_NODES_MAX`], and what the 16-bit shard address space
//! leaves: `SHARD_COUNT_MAX / S − 1`). [`Routes::locate`] turns an
//! address into (node, core); a message for another node crosses the node link as
//! [`LINK_KIND_PEER`] (`version 1 (u8), from (u16), to (u16)`, then the
//! `PeerMsg` wire form), FIFO per (source core, destination core) like
//! every link message.
//!
//! Lost messages. The peer protocol assumes messages between two shards
//! are lost only when one of them restarts, which its `Restarted` then
//! repairs. Across nodes a message can also be lost when a link breaks,
//! and an edge's messages go nowhere while no leader is known. So the
//! runtime hands a shard a `Restarted` on its peer's behalf (the core
//! treats it as "messages between us may have been lost"):
//! - **a new inbound session** (the first message of a new connection of
//!   a peer core, [`crate::link::Inbound::new_session`]): before that
//!   message, the local state shard hears it from the sending core's edge
//!   (it forgets that edge's sessions and interest) and the local edge
//!   hears it from the sending core's state shard if that node leads it
//!   (the edge subscribes and registers its sessions again);
//! - **an outbound break** (`LinkHandle::take_downs`, each tick): the edge
//!   hears it from every state shard led by that node, and re-sends;
//! - **a leader change** of a group (the node view, each tick): the edge
//!   hears it from that state shard, and re-sends to the new leader.
//!
//! The state shard forgets only on an inbound session start, which comes
//! before anything the edge re-sends (those travel on that session or a
//! later one); the edge re-sends on every event, which is idempotent.
//!
//! Must never: append a record, hold a message for later, or block.

use super::{now_ms, Dest, ShardCtx};
use crate::cluster::NodeView;
use crate::constants::REQUESTS_IN_FLIGHT_PER_CONN_MAX;
use crate::gateway::Conn;
use crate::link::{self, CoreId, LinkHandle};
use crate::metrics::M;
use courier_core::api::{Input, PeerMsg, PeerWireError, Reject, ReqId, ShardId, UnavailableCause};
use courier_core::{Shard, ShardConfig};
use courier_proto::close;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Link message kind of a peer message between shards of two nodes.
pub const LINK_KIND_PEER: u8 = 4;
/// Version byte of [`LINK_KIND_PEER`] frames.
const PEER_FRAME_VERSION: u8 = 1;
/// Version, from, to.
const PEER_FRAME_HEADER_BYTES: usize = 5;

/// Why a [`LINK_KIND_PEER`] payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PeerFrameError {
    /// Shorter than the header.
    #[error("peer frame of {0} bytes, shorter than its {PEER_FRAME_HEADER_BYTES}-byte header")]
    Short(usize),
    /// Another version (another build).
    #[error("peer frame version {0}, this node reads {PEER_FRAME_VERSION}")]
    Version(u8),
    /// The message itself.
    #[error("peer frame: {0}")]
    Message(#[from] PeerWireError),
}

/// A peer message's link payload: the header, then `msg`'s wire form.
pub fn encode_peer(from: ShardId, to: ShardId, msg: &PeerMsg) -> Result<Vec<u8>, PeerWireError> {
    let body = msg.encode()?;
    let mut out = Vec::with_capacity(PEER_FRAME_HEADER_BYTES + body.len());
    out.push(PEER_FRAME_VERSION);
    out.extend_from_slice(&from.0.to_le_bytes());
    out.extend_from_slice(&to.0.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The (from, to, message) of a [`LINK_KIND_PEER`] payload; checked,
/// never panics.
pub fn decode_peer(bytes: &[u8]) -> Result<(ShardId, ShardId, PeerMsg), PeerFrameError> {
    if bytes.len() < PEER_FRAME_HEADER_BYTES {
        return Err(PeerFrameError::Short(bytes.len()));
    }
    if bytes[0] != PEER_FRAME_VERSION {
        return Err(PeerFrameError::Version(bytes[0]));
    }
    let from = u16::from_le_bytes([bytes[1], bytes[2]]);
    let to = u16::from_le_bytes([bytes[3], bytes[4]]);
    let msg = PeerMsg::decode(&bytes[PEER_FRAME_HEADER_BYTES..])?;
    Ok((ShardId(from), ShardId(to), msg))
}

/// Node ids that may hold client connections (edges): `1..=` this, or
/// fewer where the shard address space is smaller (see the module docs).
/// Every state shard counts this many nodes' edges (a `Restarted` or a
/// profile change goes to each address), so it is kept modest.
pub const EDGE_NODES_MAX: u16 = 64;

/// Where every shard of the cluster is, as this node knows it.
pub(crate) struct Routes {
    /// This node.
    pub(crate) node: u64,
    /// The cluster's voters, ascending (fixed for the cluster).
    pub(crate) voters: Vec<u64>,
    /// State shards = cores per node (one group per core).
    pub(crate) shards: u16,
    /// Node ids `1..=edge_nodes` have edge addresses.
    edge_nodes: u16,
    /// This core's links.
    pub(crate) links: LinkHandle,
    /// Each group's leader as this node knows it.
    view: Arc<NodeView>,
}

impl Routes {
    /// Routes for `node` in a cluster whose data path has `voters` (any
    /// order; `node` need not be one). Fails when a voter's or this
    /// node's id has no edge address.
    pub(crate) fn new(
        node: u64,
        voters: &[u64],
        shards: u16,
        links: LinkHandle,
        view: Arc<NodeView>,
    ) -> anyhow::Result<Routes> {
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        voters.dedup();
        let edge_nodes = Routes::edge_nodes(shards);
        if let Some(bad) = voters
            .iter()
            .chain([&node])
            .find(|n| **n == 0 || **n > u64::from(edge_nodes))
        {
            anyhow::bail!(
                "node id {bad} cannot hold client connections: with {shards} cores per node, \
                 node ids 1..={edge_nodes} can (each node's cores get shard addresses \
                 by node id; see docs/CLUSTER.md, \"Clients on any node\")"
            );
        }
        Ok(Routes {
            node,
            voters,
            shards,
            edge_nodes,
            links,
            view,
        })
    }

    /// How many node ids have edge addresses with `shards` cores per node.
    pub(crate) fn edge_nodes(shards: u16) -> u16 {
        let shards = shards.max(1);
        let by_space = (courier_core::constants::SHARD_COUNT_MAX / shards).saturating_sub(1);
        by_space.min(EDGE_NODES_MAX)
    }

    /// Edge shards in the cluster.
    pub(crate) fn edges(&self) -> u16 {
        self.edge_nodes * self.shards
    }

    /// Whether this node is a voter of the data path (else it holds
    /// client connections only).
    pub(crate) fn is_voter(&self) -> bool {
        self.voters.contains(&self.node)
    }

    /// The edge of `core` of `node` (None: no such address).
    pub(crate) fn edge_id(&self, node: u64, core: u16) -> Option<ShardId> {
        edge_address(self.shards, self.edge_nodes, node, core)
    }

    /// The node's replication view.
    pub(crate) fn view(&self) -> &Arc<NodeView> {
        &self.view
    }

    /// The leader of group `s` as this node knows it (None: unknown).
    pub(crate) fn leader(&self, s: u16) -> Option<u64> {
        let leader = self
            .view
            .cores
            .get(usize::from(s))?
            .leader
            .load(Ordering::SeqCst);
        (leader != 0).then_some(leader)
    }

    /// The (node, core) of address `to`: a state shard at its group's
    /// leader, an edge at its node. None: no leader known, or not an
    /// address of this cluster.
    pub(crate) fn locate(&self, to: ShardId) -> Option<(u64, u16)> {
        if to.0 < self.shards {
            return Some((self.leader(to.0)?, to.0));
        }
        edge_place(self.shards, self.edge_nodes, to)
    }
}

/// The address of `core`'s edge on `node` with `shards` cores per node
/// and node ids `1..=edge_nodes` (None: no such address).
fn edge_address(shards: u16, edge_nodes: u16, node: u64, core: u16) -> Option<ShardId> {
    let node = u16::try_from(node)
        .ok()
        .filter(|n| (1..=edge_nodes).contains(n))?;
    (core < shards).then(|| ShardId(shards + (node - 1) * shards + core))
}

/// The (node, core) of edge address `to` (None: not an edge address).
fn edge_place(shards: u16, edge_nodes: u16, to: ShardId) -> Option<(u64, u16)> {
    let e = to.0.checked_sub(shards)?;
    let node = e / shards + 1;
    (node <= edge_nodes).then_some((u64::from(node), e % shards))
}

/// One core's edge: its shard and what it last acted on.
pub(crate) struct Edge {
    /// Its address.
    pub(crate) id: ShardId,
    /// The connection-only shard.
    pub(crate) core: RefCell<Shard>,
    /// Where everything is.
    pub(crate) routes: Routes,
    /// Per group, the leader the edge last re-sent its state to.
    leaders: RefCell<Vec<u64>>,
    /// The primary (group 0's leader) has moved away from a known node at
    /// least once: from then on a state shard's start means a failover
    /// (what it dropped un-started is lost). Not at the cluster's first
    /// start, when the other groups' leaders move to the primary and start
    /// after requests to its started shards may already be in flight.
    failed_over: Cell<bool>,
    /// Requests forwarded so far (their sequence numbers, from 1).
    forwarded: Cell<u64>,
    /// A non-voter's knowledge of this core's group leader, from leader
    /// hints (`nonvoter`); unused on a voter (its replica knows).
    pub(crate) known: Cell<super::nonvoter::Known>,
    /// `Hello`s are taken: at once on a voter; on a non-voter once every
    /// group's leader was learnt (`nonvoter`), so that a first request
    /// does not go nowhere.
    pub(crate) open: Cell<bool>,
    /// One of the edge's messages found no place (no leader known) when
    /// `forwarded` was this (0: none since requests were last answered):
    /// the next leader change answers the requests up to it — not those
    /// forwarded later, which may have found a leader.
    lost: Cell<u64>,
}

impl ShardCtx {
    /// Cluster mode: builds this core's edge once the voters are known,
    /// tells the (un-started) state shard how many edges there are, and
    /// starts the edge. Sessions are accepted from now on.
    pub(super) fn attach_edge(self: &Rc<Self>, routes: Routes) -> anyhow::Result<()> {
        let shards = routes.shards;
        let id = routes
            .edge_id(routes.node, self.id.0)
            .ok_or_else(|| anyhow::anyhow!("core {} has no edge address", self.id.0))?;
        let mut entropy = [0u8; 32];
        getrandom::getrandom(&mut entropy)
            .map_err(|e| anyhow::anyhow!("shard {}: reading OS randomness: {e}", self.id.0))?;
        let config = ShardConfig {
            shard: id,
            shard_count: shards,
            edges: routes.edges(),
            admin_token_hash: *self.mode.admin_token_hash(),
            entropy,
            notify: self.config.notify,
            edit_window_ms: self.config.edit_window_ms,
        };
        self.core.borrow_mut().set_edges(routes.edges());
        let edge = Rc::new(Edge {
            id,
            core: RefCell::new(Shard::new(config)),
            leaders: RefCell::new(vec![0; usize::from(shards)]),
            failed_over: Cell::new(false),
            forwarded: Cell::new(0),
            lost: Cell::new(0),
            known: Cell::new(Default::default()),
            open: Cell::new(routes.is_voter()),
            routes,
        });
        if self.edge.set(edge.clone()).is_err() {
            anyhow::bail!("edge attached twice");
        }
        let mut effects = Vec::new();
        edge.core.borrow_mut().start(now_ms(), &mut effects);
        for effect in effects {
            self.execute(effect, id);
        }
        self.drain_pending();
        tracing::info!(
            shard = self.id.0,
            edge = id.0,
            "edge: accepting client sessions"
        );
        Ok(())
    }

    /// The shard that holds this core's new connections: the edge in
    /// cluster mode (None until it is attached), the core's shard in
    /// single-node mode.
    pub(crate) fn session_shard(&self) -> Option<ShardId> {
        match (self.edge.get(), self.mode.view()) {
            (Some(edge), _) => Some(edge.id),
            (None, Some(_)) => None,
            (None, None) => Some(self.id),
        }
    }

    /// Carries a core's message from `from` (this core's state shard or
    /// edge) to `to`: on this node through the cross-core channels, to
    /// another node over its link; dropped (and counted) when `to` has no
    /// known place (the peer repairs it: see the module docs).
    pub(super) fn route_peer(self: &Rc<Self>, from: ShardId, to: ShardId, msg: PeerMsg) {
        let Some(edge) = self.edge.get() else {
            return self.local_peer(from, to, msg);
        };
        let routes = &edge.routes;
        // A state shard's messages to state shards stay on this node (the
        // primary hosts every group it started; one not started yet holds
        // them until it starts).
        let place = if from.0 < routes.shards && to.0 < routes.shards {
            Some((routes.node, to.0))
        } else {
            routes.locate(to)
        };
        let Some((node, core)) = place else {
            if from == edge.id {
                edge.lost.set(edge.forwarded.get());
            }
            self.count(M::peer_link_dropped_total, 1);
            return;
        };
        if node == routes.node {
            return self.local_peer(from, to, msg);
        }
        let dest = link::NodeId(node as u32);
        if to.0 >= routes.shards && routes.links.book().get(dest).is_none() {
            // The edge of a node id no node registered (a state shard's
            // `Restarted` or profile change goes to every edge address).
            return;
        }
        let bytes = match encode_peer(from, to, &msg) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(shard = self.id.0, from = from.0, to = to.0, error = %e, "edge: peer message has no wire form; dropped");
                self.count(M::peer_link_dropped_total, 1);
                return;
            }
        };
        match routes
            .links
            .send(dest, CoreId(core), LINK_KIND_PEER, bytes.into())
        {
            Ok(()) => self.count(M::peer_link_sent_total, 1),
            Err(e) => {
                tracing::debug!(shard = self.id.0, to = to.0, error = %e, "edge: peer message not queued");
                self.count(M::peer_link_dropped_total, 1);
            }
        }
    }

    /// Which of this core's shards address `to` is (None: neither).
    pub(super) fn dest_of(&self, to: ShardId) -> Option<Dest> {
        if to == self.id {
            return Some(Dest::State);
        }
        match self.edge.get() {
            Some(edge) if edge.id == to => Some(Dest::Edge),
            _ => None,
        }
    }

    /// A peer message for one of this core's shards.
    pub(super) fn submit_peer(self: &Rc<Self>, from: ShardId, to: ShardId, msg: PeerMsg) {
        match self.dest_of(to) {
            Some(dest) => {
                self.state_shard_restarted(dest, from, &msg);
                self.pending
                    .borrow_mut()
                    .push_back((dest, Input::Peer { from, msg }));
                self.drain_pending();
            }
            None => {
                tracing::warn!(
                    shard = self.id.0,
                    from = from.0,
                    to = to.0,
                    "edge: peer message for a shard not on this core; dropped"
                );
                self.count(M::peer_link_dropped_total, 1);
            }
        }
    }

    /// A state shard's own `Restarted` reaching this core's edge after its
    /// group failed over (it started as the new primary): the requests the
    /// edge forwarded before may have been dropped by it, un-started;
    /// answer them now.
    pub(super) fn state_shard_restarted(&self, dest: Dest, from: ShardId, msg: &PeerMsg) {
        let Some(edge) = self.edge.get() else {
            return;
        };
        let state_shard = from.0 < edge.routes.shards;
        if dest == Dest::Edge && state_shard && edge.failed_over.get() && msg.is_restarted() {
            self.fail_over_requests(edge, u64::MAX);
        }
    }

    /// A [`LINK_KIND_PEER`] message from another node.
    pub(super) fn on_link_peer(self: &Rc<Self>, m: &link::Inbound) {
        let Some(edge) = self.edge.get() else {
            return;
        };
        match decode_peer(&m.payload) {
            Ok((from, to, msg)) => {
                let sender = u64::from(m.from_node.0);
                let known = from.0 < edge.routes.shards
                    || edge.routes.edge_id(sender, m.from_core.0) == Some(from);
                if !known {
                    tracing::warn!(
                        shard = self.id.0,
                        node = sender,
                        from = from.0,
                        "edge: peer message from an address that node does not hold; dropped"
                    );
                    self.count(M::peer_link_dropped_total, 1);
                    return;
                }
                self.count(M::peer_link_received_total, 1);
                self.submit_peer(from, to, msg);
            }
            Err(e) => {
                tracing::warn!(shard = self.id.0, node = m.from_node.0, error = %e, "edge: undecodable peer message; dropped");
                self.count(M::peer_link_dropped_total, 1);
            }
        }
    }

    /// The first message of a new connection from core `from_core` of
    /// `node` is about to be handled: what that core sent here before may
    /// have been lost (module docs).
    pub(super) fn on_link_session(self: &Rc<Self>, node: link::NodeId, from_core: CoreId) {
        let Some(edge) = self.edge.get() else {
            return;
        };
        let node = u64::from(node.0);
        let mut resets = Vec::new();
        if let Some(their_edge) = edge.routes.edge_id(node, from_core.0) {
            if self.started.get() {
                resets.push((Dest::State, their_edge));
            }
        }
        if edge.routes.leader(from_core.0) == Some(node) {
            resets.push((Dest::Edge, ShardId(from_core.0)));
        }
        self.inject_restarts(resets);
    }

    /// Each tick: the edge's own tick, then a `Restarted` to the edge on
    /// behalf of every state shard whose leader changed, or whose node's
    /// link from this core broke (module docs).
    pub(super) fn edge_tick(self: &Rc<Self>) {
        let Some(edge) = self.edge.get() else {
            return;
        };
        let routes = &edge.routes;
        let downs = routes.links.take_downs();
        let broken: Vec<u64> = downs.iter().map(|d| u64::from(d.node.0)).collect();
        // A break with nothing written on the broken connections (e.g. a
        // handshake that failed) lost no message: it re-sends, but fails
        // no request.
        let lossy: Vec<u64> = downs
            .iter()
            .filter(|d| d.messages_written > 0)
            .map(|d| u64::from(d.node.0))
            .collect();
        let mut resets = Vec::new();
        // Requests up to this sequence number are answered (0: none).
        let mut fail = 0u64;
        {
            let mut leaders = edge.leaders.borrow_mut();
            for s in 0..routes.shards {
                let now = routes.leader(s).unwrap_or(0);
                let seen = &mut leaders[usize::from(s)];
                if now != *seen || (now != 0 && broken.contains(&now)) {
                    // The primary moved away from a known node (or the
                    // link to it broke); or a leader is known again after
                    // a message of this edge found none.
                    let moved = now != *seen || lossy.contains(&now);
                    let primary_moved = s == 0 && *seen != 0 && moved;
                    if primary_moved {
                        edge.failed_over.set(true);
                    }
                    if primary_moved {
                        fail = u64::MAX;
                    }
                    fail = fail.max(edge.lost.get());
                    *seen = now;
                    resets.push((Dest::Edge, ShardId(s)));
                }
            }
        }
        if fail > 0 {
            edge.lost.set(0);
            self.fail_over_requests(edge, fail);
        }
        self.pending
            .borrow_mut()
            .push_back((Dest::Edge, Input::Tick));
        self.inject_restarts(resets);
    }

    /// Cluster mode: records a request a connection forwards (false: the
    /// connection has [`REQUESTS_IN_FLIGHT_PER_CONN_MAX`] in flight, refuse
    /// it). Single-node mode tracks nothing.
    pub(crate) fn track_request(&self, conn: &Conn, req: ReqId) -> bool {
        let Some(edge) = self.edge.get() else {
            return true;
        };
        let mut in_flight = conn.in_flight.borrow_mut();
        if in_flight.len() >= REQUESTS_IN_FLIGHT_PER_CONN_MAX {
            return false;
        }
        let seq = edge.forwarded.get() + 1;
        edge.forwarded.set(seq);
        in_flight.insert(req, seq);
        true
    }

    /// Whether the core's reply to `req` on `conn` goes out: yes in
    /// single-node mode, for a `Hello` (before `Welcome`) and for a request
    /// still in flight; no for one already answered when the primary
    /// changed (a late answer).
    pub(crate) fn answers_in_flight(&self, conn: &Conn, req: ReqId) -> bool {
        if self.edge.get().is_none() {
            return true;
        }
        let removed = conn.in_flight.borrow_mut().remove(&req).is_some();
        removed || !conn.authed.get()
    }

    /// The primary moved away from a known node or this core's link to it
    /// broke; or a leader became known after a message of this edge found
    /// none; or, once the primary failed over, a state shard started (it
    /// dropped what reached it un-started): what the connections of this
    /// core's edge forwarded (up to sequence number `upto`) may never be
    /// answered. Each such request is answered now with `Unavailable`
    /// (cause `PeerTimeout`: it may have taken effect; a `Send` retried
    /// with the same `client_msg_id` gets its first ack), so clients retry
    /// at once instead of after their request timeout.
    fn fail_over_requests(&self, edge: &Edge, upto: u64) {
        let conns: Vec<Rc<Conn>> = self
            .conns
            .borrow()
            .values()
            .filter(|c| c.id.shard() == edge.id)
            .cloned()
            .collect();
        let mut failed = 0u64;
        for c in conns {
            let reqs: Vec<ReqId> = {
                let mut in_flight = c.in_flight.borrow_mut();
                let at_risk: Vec<ReqId> = in_flight
                    .iter()
                    .filter(|(_, seq)| **seq <= upto)
                    .map(|(req, _)| *req)
                    .collect();
                for req in &at_risk {
                    in_flight.remove(req);
                }
                at_risk
            };
            if !c.authed.get() {
                // Its Hello is in flight (the only request before the
                // Welcome): end the connection with 4011 so the client
                // connects again at once, here or on another node.
                if !reqs.is_empty() {
                    c.close(
                        close::NOT_SERVING,
                        "the cluster's primary changed during the Hello; connect again",
                    );
                    failed += 1;
                }
                continue;
            }
            for req in reqs {
                let refused = Reject::unavailable(
                    UnavailableCause::PeerTimeout,
                    "the cluster's primary changed while this request was on its way; \
                     retry (a send with the same client_msg_id)",
                );
                self.reply_now(&c, req, &Err(refused));
                failed += 1;
            }
        }
        if failed > 0 {
            self.count(M::requests_failed_over_total, failed);
            tracing::info!(
                shard = self.id.0,
                requests = failed,
                "edge: requests in flight answered Unavailable: the primary changed"
            );
        }
    }

    fn inject_restarts(self: &Rc<Self>, resets: Vec<(Dest, ShardId)>) {
        if resets.is_empty() {
            self.drain_pending();
            return;
        }
        self.count(M::peer_resets_total, resets.len() as u64);
        {
            let mut pending = self.pending.borrow_mut();
            for (dest, from) in resets {
                let msg = PeerMsg::restarted();
                pending.push_back((dest, Input::Peer { from, msg }));
            }
        }
        self.drain_pending();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_addressed_by_node_id_within_the_shard_address_space() {
        assert_eq!(Routes::edge_nodes(1), EDGE_NODES_MAX);
        assert_eq!(Routes::edge_nodes(2), EDGE_NODES_MAX);
        assert_eq!(Routes::edge_nodes(16), 63, "1,024 / 16 − 1");
        assert_eq!(Routes::edge_nodes(512), 1);
        assert_eq!(Routes::edge_nodes(1024), 0);
        let (shards, nodes) = (2, Routes::edge_nodes(2));
        assert_eq!(edge_address(shards, nodes, 1, 0), Some(ShardId(2)));
        assert_eq!(edge_address(shards, nodes, 1, 1), Some(ShardId(3)));
        assert_eq!(edge_address(shards, nodes, 4, 1), Some(ShardId(9)));
        assert_eq!(edge_address(shards, nodes, 0, 0), None);
        assert_eq!(edge_address(shards, nodes, 65, 0), None);
        assert_eq!(edge_address(shards, nodes, 3, 2), None, "no core 2");
        let last = edge_address(shards, nodes, 64, 1).unwrap();
        assert!(u32::from(last.0) < u32::from(courier_core::constants::SHARD_COUNT_MAX));
        for node in 1..=u64::from(nodes) {
            for core in 0..shards {
                let at = edge_address(shards, nodes, node, core).unwrap();
                assert_eq!(edge_place(shards, nodes, at), Some((node, core)));
            }
        }
        assert_eq!(edge_place(shards, nodes, ShardId(1)), None, "a state shard");
        assert_eq!(edge_place(shards, nodes, ShardId(2 + 64 * 2)), None);
    }

    #[test]
    fn peer_frames_round_trip_and_bad_ones_are_typed() {
        let msg = PeerMsg::restarted();
        let bytes = encode_peer(ShardId(3), ShardId(9), &msg).unwrap();
        let (from, to, back) = decode_peer(&bytes).unwrap();
        assert_eq!((from, to, back), (ShardId(3), ShardId(9), msg));
        for n in 0..PEER_FRAME_HEADER_BYTES {
            assert!(matches!(decode_peer(&bytes[..n]), Err(PeerFrameError::Short(k)) if k == n));
        }
        assert!(matches!(
            decode_peer(&bytes[..PEER_FRAME_HEADER_BYTES]),
            Err(PeerFrameError::Message(_))
        ));
        let mut other = bytes.clone();
        other[0] = 2;
        assert!(matches!(
            decode_peer(&other),
            Err(PeerFrameError::Version(2))
        ));
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 1);
        assert!(matches!(decode_peer(&cut), Err(PeerFrameError::Message(_))));
    }
}
