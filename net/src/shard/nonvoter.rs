//! Cluster mode on a node that is **not a voter** of the data path (a
//! node beyond the replication factor: nodes 4 and 5 of a five-node
//! cluster with replication factor 3). It hosts no Raft group and no state
//! shard, only each core's edge: it holds client connections and routes
//! them to the state shards on the primary like any node's edge
//! (docs/CLUSTER.md, "Clients on any node").
//!
//! A voter knows each group's leader from its own replica; a non-voter
//! learns it from **leader hints**: every tick ([`crate::shard::replica::RAFT_TICK`])
//! every voter's core sends the same core of each other registered node
//! that is not a voter its group's leader and term as its replica knows
//! them ([`LINK_KIND_LEADER_HINT`]: version `1` (u8), leader (u64 LE, 0:
//! none), term (u64 LE)). The non-voter takes a hint of a higher term, or
//! of its term naming a leader when it knows none, and forgets a leader no
//! hint has named for [`LEADER_HINT_EXPIRY`] (every voter down or cut
//! off). It takes client sessions once, for every group, the leader
//! itself sent a hint (it knows this node's address: replies from a
//! primary that has not learnt it yet from the registry would be
//! dropped, and the request never answered). Once a leader is forgotten,
//! messages for its group go nowhere (counted), as on a voter whose group
//! has no leader, and the edge's repair rules apply unchanged.
//! Hints to a node whose link is down queue at most
//! [`HINTS_QUEUED_MAX`] messages.
//!
//! Must never: run a Raft group, append a record, or take a leader from a
//! hint of an older term.

use super::edge::Routes;
use super::ShardCtx;
use crate::cluster::replicas::ReplicaStart;
use crate::cluster::NodeView;
use crate::link::{self, CoreId, Inbox};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Link message kind of a leader hint (voter → non-voter).
pub const LINK_KIND_LEADER_HINT: u8 = 9;
/// Version byte of a leader hint.
const HINT_VERSION: u8 = 1;
/// Version, leader, term.
const HINT_BYTES: usize = 17;
/// A leader no hint named for this long is forgotten: two election
/// timeouts, so a live leader's hints (ten a second from each voter)
/// always arrive in time.
pub const LEADER_HINT_EXPIRY: Duration = Duration::from_secs(2);
/// A hint is not queued for a node whose link already holds this many
/// messages (it is down, or far behind): hints are sent again every tick.
pub const HINTS_QUEUED_MAX: usize = 8;

/// A group's leader as a voter's replica knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderHint {
    /// Raft node id of the leader (0: none known).
    pub leader: u64,
    /// The group's term.
    pub term: u64,
}

/// Why a leader hint could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HintError {
    /// Not [`HINT_BYTES`] long.
    #[error("leader hint of {0} bytes, expected {HINT_BYTES}")]
    Length(usize),
    /// Another version (another build).
    #[error("leader hint version {0}, this node reads {HINT_VERSION}")]
    Version(u8),
}

impl LeaderHint {
    /// The hint's link payload.
    pub fn encode(&self) -> [u8; HINT_BYTES] {
        let mut out = [0u8; HINT_BYTES];
        out[0] = HINT_VERSION;
        out[1..9].copy_from_slice(&self.leader.to_le_bytes());
        out[9..17].copy_from_slice(&self.term.to_le_bytes());
        out
    }

    /// Reads a hint; checked, never panics.
    pub fn decode(bytes: &[u8]) -> Result<LeaderHint, HintError> {
        let b: &[u8; HINT_BYTES] = bytes
            .try_into()
            .map_err(|_| HintError::Length(bytes.len()))?;
        if b[0] != HINT_VERSION {
            return Err(HintError::Version(b[0]));
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        Ok(LeaderHint {
            leader: word(1),
            term: word(9),
        })
    }
}

/// What a non-voter knows of one group's leader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Known {
    /// Leader (0: none).
    pub(crate) leader: u64,
    /// Highest term heard.
    pub(crate) term: u64,
    /// When a hint last named `leader` (None: never).
    pub(crate) heard: Option<Instant>,
    /// The leader itself sent a hint naming itself in this term: it knows
    /// this node's address, so its replies to this node's edges are not
    /// dropped for want of one.
    pub(crate) confirmed: bool,
}

impl Known {
    /// Takes `hint`, sent by node `from`, if it is news (module docs);
    /// returns whether the leader changed.
    pub(crate) fn take(&mut self, from: u64, hint: LeaderHint, now: Instant) -> bool {
        if hint.term < self.term {
            return false;
        }
        let before = self.leader;
        if hint.term > self.term {
            self.term = hint.term;
            self.leader = hint.leader;
            self.heard = (hint.leader != 0).then_some(now);
            self.confirmed = false;
        } else if hint.leader != 0 && (self.leader == 0 || self.leader == hint.leader) {
            self.leader = hint.leader;
            self.heard = Some(now);
        }
        if self.leader != before {
            self.confirmed = false;
        }
        if hint.leader != 0 && hint.leader == self.leader && from == self.leader {
            self.confirmed = true;
        }
        self.leader != before
    }

    /// Forgets a leader not named for [`LEADER_HINT_EXPIRY`]; returns
    /// whether it did.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let stale = self
            .heard
            .is_some_and(|at| now.saturating_duration_since(at) >= LEADER_HINT_EXPIRY);
        if self.leader != 0 && stale {
            self.leader = 0;
            self.heard = None;
            self.confirmed = false;
            return true;
        }
        false
    }
}

/// Starts this core as a non-voter's: its links, its edge, and the task
/// that reads the links (peer messages and leader hints).
pub(super) fn attach(
    ctx: &Rc<ShardCtx>,
    start: ReplicaStart,
    view: Arc<NodeView>,
) -> anyhow::Result<()> {
    let (links, inbox) = start.links.start()?;
    let shards = ctx.peer_out.len() as u16;
    let routes = Routes::new(view.node, &start.voters, shards, links, view)?;
    ctx.attach_edge(routes)?;
    glommio::spawn_local(receiver(ctx.clone(), inbox)).detach();
    tracing::info!(
        shard = ctx.id.0,
        voters = ?start.voters,
        "non-voter: this node holds client connections only (not a voter of the data path)"
    );
    Ok(())
}

async fn receiver(ctx: Rc<ShardCtx>, inbox: Inbox) {
    while let Some(m) = inbox.recv().await {
        if m.new_session {
            ctx.on_link_session(m.from_node, m.from_core);
        }
        match m.kind {
            super::edge::LINK_KIND_PEER => ctx.on_link_peer(&m),
            LINK_KIND_LEADER_HINT => ctx.on_leader_hint(&m),
            kind => tracing::debug!(
                shard = ctx.id.0,
                node = m.from_node.0,
                kind,
                "non-voter: link message for a voter; dropped"
            ),
        }
    }
}

impl ShardCtx {
    /// A voter's tick: its group's leader and term to every registered
    /// node that is not a voter (module docs).
    pub(super) fn send_leader_hints(&self) {
        let Some(edge) = self.edge.get() else {
            return;
        };
        let routes = &edge.routes;
        let Some(me) = routes.view().cores.get(usize::from(self.id.0)) else {
            return;
        };
        let hint = LeaderHint {
            leader: me.leader.load(Ordering::SeqCst),
            term: me.term.load(Ordering::SeqCst),
        }
        .encode();
        for peer in routes.links.book().entries() {
            let node = u64::from(peer.node.0);
            if node == routes.node || routes.voters.contains(&node) {
                continue;
            }
            let backed_up = routes
                .links
                .status(peer.node)
                .is_some_and(|s| !s.connected && s.queued_messages >= HINTS_QUEUED_MAX);
            if backed_up {
                continue;
            }
            let sent = routes.links.send(
                peer.node,
                CoreId(self.id.0),
                LINK_KIND_LEADER_HINT,
                bytes::Bytes::copy_from_slice(&hint),
            );
            if let Err(e) = sent {
                tracing::debug!(shard = self.id.0, node, error = %e, "leader hint not queued");
            }
        }
    }

    /// A leader hint from a voter (non-voters only): updates this core's
    /// group in the node view; the edge's tick acts on a change.
    fn on_leader_hint(&self, m: &link::Inbound) {
        let Some(edge) = self.edge.get() else {
            return;
        };
        if !edge.routes.voters.contains(&u64::from(m.from_node.0)) {
            tracing::warn!(
                shard = self.id.0,
                node = m.from_node.0,
                "leader hint from a node that is not a voter; dropped"
            );
            return;
        }
        match LeaderHint::decode(&m.payload) {
            Ok(hint) => {
                let mut known = edge.known.get();
                if known.take(u64::from(m.from_node.0), hint, Instant::now()) {
                    tracing::info!(
                        shard = self.id.0,
                        leader = known.leader,
                        term = known.term,
                        "non-voter: group leader learnt from a hint"
                    );
                }
                edge.known.set(known);
                self.publish_known(edge, known);
            }
            Err(e) => {
                tracing::warn!(shard = self.id.0, node = m.from_node.0, error = %e, "undecodable leader hint; dropped")
            }
        }
    }

    /// Whether this core takes `Hello`s now (see `Edge::open`); true
    /// where there is no edge (single-node mode; in cluster mode before
    /// the edge exists the gateway refuses on its own).
    pub(crate) fn sessions_open(&self) -> bool {
        self.edge.get().is_none_or(|edge| edge.open.get())
    }

    /// Each tick on a non-voter: opens the edge to sessions once every
    /// group's leader is known; forgets a leader no hint named lately.
    pub(super) fn expire_leader(&self) {
        let Some(edge) = self.edge.get() else {
            return;
        };
        if edge.routes.is_voter() {
            return;
        }
        let view = edge.routes.view();
        let known_everywhere = view.cores.iter().all(|c| {
            c.leader.load(Ordering::SeqCst) != 0 && c.leader_confirmed.load(Ordering::SeqCst)
        });
        if !edge.open.get() && known_everywhere {
            edge.open.set(true);
            tracing::info!(
                shard = self.id.0,
                "non-voter: every group's leader is known and knows this node; accepting client sessions"
            );
        }
        let mut known = edge.known.get();
        if known.expire(Instant::now()) {
            tracing::warn!(shard = self.id.0, term = known.term, "non-voter: no leader hint for {LEADER_HINT_EXPIRY:?}; the group's leader is unknown");
            edge.known.set(known);
            self.publish_known(edge, known);
        }
    }

    fn publish_known(&self, edge: &super::edge::Edge, known: Known) {
        if let Some(me) = edge.routes.view().cores.get(usize::from(self.id.0)) {
            me.leader.store(known.leader, Ordering::SeqCst);
            me.term.store(known.term, Ordering::SeqCst);
            me.leader_confirmed.store(known.confirmed, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_round_trip_and_bad_ones_are_typed() {
        let hint = LeaderHint { leader: 3, term: 7 };
        assert_eq!(LeaderHint::decode(&hint.encode()), Ok(hint));
        let bytes = hint.encode();
        for n in 0..HINT_BYTES {
            assert_eq!(LeaderHint::decode(&bytes[..n]), Err(HintError::Length(n)));
        }
        let mut other = bytes;
        other[0] = 2;
        assert_eq!(LeaderHint::decode(&other), Err(HintError::Version(2)));
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(LeaderHint::decode(&long), Err(HintError::Length(18)));
    }

    #[test]
    fn a_newer_term_wins_an_older_one_never_does_and_silence_forgets() {
        let t0 = Instant::now();
        let mut k = Known::default();
        assert!(k.take(9, LeaderHint { leader: 2, term: 5 }, t0));
        assert_eq!((k.leader, k.term), (2, 5));
        // An old leader's hint (a lower term) changes nothing.
        assert!(!k.take(9, LeaderHint { leader: 1, term: 4 }, t0));
        // A follower that knows no leader in the same term changes nothing.
        assert!(!k.take(9, LeaderHint { leader: 0, term: 5 }, t0));
        // Another node in the same term is not taken over the known one.
        assert!(!k.take(9, LeaderHint { leader: 3, term: 5 }, t0));
        assert_eq!(k.leader, 2);
        // An election: term 6 without a leader yet, then node 3.
        assert!(k.take(9, LeaderHint { leader: 0, term: 6 }, t0));
        assert_eq!(k.leader, 0);
        assert!(k.take(9, LeaderHint { leader: 3, term: 6 }, t0));
        assert_eq!((k.leader, k.term), (3, 6));
        // Refreshed by hints naming it; forgotten after the expiry.
        let later = t0 + LEADER_HINT_EXPIRY / 2;
        assert!(!k.take(9, LeaderHint { leader: 3, term: 6 }, later));
        assert!(!k.expire(t0 + LEADER_HINT_EXPIRY));
        assert!(k.expire(later + LEADER_HINT_EXPIRY));
        assert_eq!((k.leader, k.term), (0, 6));
        assert!(!k.expire(later + LEADER_HINT_EXPIRY * 2));
        // The same term's leader is learnt again.
        assert!(k.take(9, LeaderHint { leader: 3, term: 6 }, later));
        assert!(!k.confirmed, "only node 3 itself confirms it");
        assert!(!k.take(3, LeaderHint { leader: 3, term: 6 }, later));
        assert!(k.confirmed);
        // A new term's leader is unconfirmed until it speaks.
        assert!(k.take(2, LeaderHint { leader: 1, term: 7 }, later));
        assert!(!k.confirmed);
        assert!(!k.take(1, LeaderHint { leader: 1, term: 7 }, later));
        assert!(k.confirmed);
        // The leader's own first hint of a new term confirms at once.
        assert!(k.take(3, LeaderHint { leader: 3, term: 8 }, later));
        assert!(k.confirmed);
    }
}
