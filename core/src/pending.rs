//! [`PendingTable`]: the one bounded table of work waiting for another
//! shard (or the WAL) to answer — hellos, watch waiters, history reads, DM
//! creations, scatter-gathers.
//!
//! Every entry has a key (an id the table allocates, or a key the caller
//! chooses, such as a connection), a value and optionally a deadline. The
//! table:
//!
//! - refuses to grow past its capacity (`insert*` returns `Err(Full)`; the
//!   caller answers `Unavailable`, cause `Overloaded`);
//! - keeps a deadline index, so [`PendingTable::expire`] costs
//!   O(expired · log n), not a scan of the whole table every tick; expired
//!   entries come back in key order (the order the tables used before they
//!   shared this type, which the simulation's schedules depend on);
//! - turns its ids into [`Ticket`]s stamped with the shard's incarnation
//!   and back ([`PendingTable::id_of`]), so an answer addressed to an
//!   earlier start of the shard, whose counters began at the same values,
//!   finds nothing.

use std::collections::{BTreeMap, BTreeSet};

use crate::peer::Ticket;
use crate::types::Millis;

/// The table is at its capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// One entry.
#[derive(Debug)]
struct Entry<T> {
    /// When it expires (`None`: never; the answer always comes, e.g. a WAL
    /// read).
    deadline: Option<Millis>,
    /// The caller's data.
    value: T,
}

/// A bounded table of pending work keyed by `K` (an allocated `u64` id by
/// default), with a deadline index. See the module doc.
#[derive(Debug)]
pub(crate) struct PendingTable<T, K = u64> {
    /// The entries (at most `capacity`).
    entries: BTreeMap<K, Entry<T>>,
    /// (deadline, key) of every entry that has a deadline.
    deadlines: BTreeSet<(Millis, K)>,
    /// The next id [`PendingTable::insert`] allocates (u64 keys only).
    next_id: u64,
    /// The most entries held at once (a `PENDING_*_MAX` constant).
    capacity: usize,
    /// The owning shard's incarnation, stamped on tickets.
    incarnation: u64,
}

impl<T, K: Ord + Copy> PendingTable<T, K> {
    /// An empty table holding at most `capacity` entries, for the shard
    /// incarnation `incarnation`.
    pub(crate) fn new(capacity: usize, incarnation: u64) -> Self {
        PendingTable {
            entries: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            next_id: 1,
            capacity,
            incarnation,
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether an insert would be refused.
    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    /// Adds an entry under a key the caller chose. An entry already under
    /// `key` is replaced.
    pub(crate) fn insert_at(
        &mut self,
        key: K,
        deadline: Option<Millis>,
        value: T,
    ) -> Result<(), Full> {
        if !self.entries.contains_key(&key) && self.is_full() {
            return Err(Full);
        }
        self.remove(key);
        if let Some(d) = deadline {
            self.deadlines.insert((d, key));
        }
        self.entries.insert(key, Entry { deadline, value });
        Ok(())
    }

    /// The entry under `key`.
    pub(crate) fn get(&self, key: K) -> Option<&T> {
        self.entries.get(&key).map(|e| &e.value)
    }

    /// The entry under `key`, mutably (its deadline stays).
    pub(crate) fn get_mut(&mut self, key: K) -> Option<&mut T> {
        self.entries.get_mut(&key).map(|e| &mut e.value)
    }

    /// Removes and returns the entry under `key`.
    pub(crate) fn remove(&mut self, key: K) -> Option<T> {
        let e = self.entries.remove(&key)?;
        if let Some(d) = e.deadline {
            self.deadlines.remove(&(d, key));
        }
        Some(e.value)
    }

    /// Removes and returns every entry whose deadline is at or before
    /// `now`, in key order.
    pub(crate) fn expire(&mut self, now: Millis) -> Vec<(K, T)> {
        let mut expired = Vec::new();
        while let Some(&(d, key)) = self.deadlines.first() {
            if d > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(e) = self.entries.remove(&key) {
                expired.push((key, e.value));
            }
        }
        expired.sort_unstable_by_key(|(k, _)| *k);
        expired
    }
}

impl<T> PendingTable<T, u64> {
    /// Adds an entry under a fresh id (ids start at 1 and never repeat in
    /// an incarnation).
    pub(crate) fn insert(&mut self, deadline: Option<Millis>, value: T) -> Result<u64, Full> {
        if self.is_full() {
            return Err(Full);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.insert_at(id, deadline, value)?;
        Ok(id)
    }

    /// The ticket another shard answers `id` with.
    pub(crate) fn ticket(&self, id: u64) -> Ticket {
        Ticket {
            incarnation: self.incarnation,
            id,
        }
    }

    /// The id a ticket names, if it was issued by this incarnation (an
    /// answer to an earlier start of the shard is `None`).
    pub(crate) fn id_of(&self, ticket: Ticket) -> Option<u64> {
        (ticket.incarnation == self.incarnation).then_some(ticket.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fresh_and_capacity_is_enforced() {
        let mut t: PendingTable<&str> = PendingTable::new(2, 7);
        assert_eq!(t.insert(None, "a"), Ok(1));
        assert_eq!(t.insert(None, "b"), Ok(2));
        assert_eq!(t.insert(None, "c"), Err(Full));
        assert_eq!(t.remove(1), Some("a"));
        assert_eq!(t.insert(None, "d"), Ok(3), "ids are not reused");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn expiry_takes_only_due_entries_in_key_order() {
        let mut t: PendingTable<u32, u64> = PendingTable::new(10, 0);
        t.insert_at(5, Some(Millis(20)), 50).unwrap();
        t.insert_at(3, Some(Millis(30)), 30).unwrap();
        t.insert_at(9, Some(Millis(10)), 90).unwrap();
        t.insert_at(1, None, 10).unwrap();
        assert!(t.expire(Millis(9)).is_empty());
        assert_eq!(t.expire(Millis(30)), vec![(3, 30), (5, 50), (9, 90)]);
        assert_eq!(t.len(), 1, "an entry without a deadline stays");
        assert_eq!(t.get(1), Some(&10));
    }

    #[test]
    fn removed_and_replaced_entries_do_not_expire() {
        let mut t: PendingTable<u32, u64> = PendingTable::new(10, 0);
        t.insert_at(1, Some(Millis(5)), 1).unwrap();
        t.insert_at(2, Some(Millis(5)), 2).unwrap();
        assert_eq!(t.remove(1), Some(1));
        t.insert_at(2, Some(Millis(50)), 22).unwrap();
        assert!(t.expire(Millis(10)).is_empty());
        assert_eq!(t.expire(Millis(50)), vec![(2, 22)]);
    }

    #[test]
    fn tickets_of_another_incarnation_find_nothing() {
        let mut t: PendingTable<()> = PendingTable::new(4, 11);
        let id = t.insert(Some(Millis(1)), ()).unwrap();
        let ticket = t.ticket(id);
        assert_eq!(t.id_of(ticket), Some(id));
        let stale = Ticket {
            incarnation: 10,
            id,
        };
        assert_eq!(t.id_of(stale), None);
    }
}
