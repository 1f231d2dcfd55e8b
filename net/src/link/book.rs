//! The peer address book: which address each peer node is reached on,
//! shared by every core of a node and updated from any thread (the cluster
//! mode's registry follower, `crate::cluster::peers::follow`, or a test).
//!
//! A writer task reads its peer's address from the book at every
//! (re)connect; each core's wake-up timer notices a new book version within
//! a tick, starts a link to every node it did not know (a peer learnt after
//! start), and points a link whose peer moved (a node restarted on another
//! port) at the new address, cutting its backoff short and ending a
//! connection to the old one.
//!
//! Bounded: at most [`PEER_BOOK_NODES_MAX`] nodes; an entry is never
//! removed (a node that left the registry may come back; its links keep
//! retrying the last address known). Reading it takes a read lock held for
//! a lookup; nothing here waits on I/O.
//!
//! Must never: hold its lock across anything but a map lookup or update;
//! grow past its bound.

use super::{NodeId, PeerAddr};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Most nodes a book holds (the control plane's registry holds at most as
/// many: `courier_cluster::constants::NODES_MAX`).
pub const PEER_BOOK_NODES_MAX: usize = 4096;

/// Why the book refused an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerBookError {
    /// The book is at its bound and `node` is not in it.
    #[error("peer address book full ({max} nodes): node {node} not added", max = PEER_BOOK_NODES_MAX)]
    Full {
        /// The node refused.
        node: NodeId,
    },
}

/// The shared peer address book (see the module docs). Cheap to clone;
/// every clone is the same book.
#[derive(Clone, Debug, Default)]
pub struct PeerBook {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: RwLock<BTreeMap<NodeId, SocketAddr>>,
    /// Raised after every change, so a core notices one with one atomic
    /// load per tick.
    version: AtomicU64,
}

impl PeerBook {
    /// An empty book.
    pub fn new() -> PeerBook {
        PeerBook::default()
    }

    /// A book holding `peers` (at most [`PEER_BOOK_NODES_MAX`]; the last
    /// address of a node listed twice wins).
    pub fn with(peers: &[PeerAddr]) -> Result<PeerBook, PeerBookError> {
        let book = PeerBook::new();
        for p in peers {
            book.set(p.node, p.addr)?;
        }
        Ok(book)
    }

    /// Records `addr` for `node`. Returns whether anything changed (a new
    /// node or a new address); links follow within a tick.
    pub fn set(&self, node: NodeId, addr: SocketAddr) -> Result<bool, PeerBookError> {
        let mut entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.get(&node) == Some(&addr) {
            return Ok(false);
        }
        if !entries.contains_key(&node) && entries.len() >= PEER_BOOK_NODES_MAX {
            return Err(PeerBookError::Full { node });
        }
        entries.insert(node, addr);
        drop(entries);
        self.inner.version.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    /// The address known for `node`.
    pub fn get(&self, node: NodeId) -> Option<SocketAddr> {
        self.read().get(&node).copied()
    }

    /// Every entry, ascending by node.
    pub fn entries(&self) -> Vec<PeerAddr> {
        self.read()
            .iter()
            .map(|(&node, &addr)| PeerAddr { node, addr })
            .collect()
    }

    /// Changes so far (0 for a book never changed).
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::SeqCst)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<NodeId, SocketAddr>> {
        // A writer cannot panic while holding the lock (a map insert), but
        // a poisoned lock still holds a consistent map.
        self.inner
            .entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn set_reports_changes_and_raises_the_version() {
        let book = PeerBook::with(&[PeerAddr {
            node: NodeId(2),
            addr: addr(1),
        }])
        .unwrap();
        let v = book.version();
        assert_eq!(book.set(NodeId(2), addr(1)), Ok(false));
        assert_eq!(book.version(), v);
        assert_eq!(book.set(NodeId(2), addr(5)), Ok(true));
        assert_eq!(book.set(NodeId(3), addr(6)), Ok(true));
        assert_eq!(book.version(), v + 2);
        assert_eq!(book.get(NodeId(2)), Some(addr(5)));
        assert_eq!(book.get(NodeId(4)), None);
        let nodes: Vec<u32> = book.entries().iter().map(|p| p.node.0).collect();
        assert_eq!(nodes, vec![2, 3]);
        // A clone is the same book.
        let clone = book.clone();
        clone.set(NodeId(4), addr(7)).unwrap();
        assert_eq!(book.get(NodeId(4)), Some(addr(7)));
    }

    #[test]
    fn the_book_is_bounded_but_known_nodes_still_move() {
        let book = PeerBook::new();
        for n in 0..PEER_BOOK_NODES_MAX as u32 {
            book.set(NodeId(n), addr(1)).unwrap();
        }
        let over = NodeId(PEER_BOOK_NODES_MAX as u32);
        assert_eq!(
            book.set(over, addr(1)),
            Err(PeerBookError::Full { node: over })
        );
        assert_eq!(book.get(over), None);
        assert_eq!(book.set(NodeId(7), addr(2)), Ok(true));
    }
}
