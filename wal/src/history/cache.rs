//! A bounded cache of decoded index parts (directory blocks and one
//! conversation's positions in one segment), least recently used out, at
//! most [`HISTORY_INDEX_CACHE_BYTES`]. Paging back through a conversation
//! walks its segment chain from the newest each time; the cache keeps those
//! walks in memory instead of re-reading 4 KiB per segment per page.

use std::{
    collections::{BTreeMap, HashMap},
    mem::size_of,
    rc::Rc,
};

use crate::constants::HISTORY_INDEX_CACHE_BYTES;

use super::format::{DirEntry, Position};

/// What is cached under a key.
#[derive(Clone)]
pub(crate) enum Cached {
    /// A decoded directory block.
    Dir(Rc<[DirEntry]>),
    /// A conversation's positions in one segment.
    Positions(Rc<[Position]>),
}

impl Cached {
    fn bytes(&self) -> usize {
        match self {
            Cached::Dir(d) => d.len() * size_of::<DirEntry>(),
            Cached::Positions(p) => p.len() * size_of::<Position>(),
        }
    }
}

/// `(segment, directory block or conversation, is_positions)`.
pub(crate) type Key = (u64, u64, bool);

/// Per cached part: the part, its recency stamp, its size.
const ENTRY_OVERHEAD_BYTES: usize = 96;

#[derive(Default)]
pub(crate) struct IndexCache {
    map: HashMap<Key, (Cached, u64)>,
    by_age: BTreeMap<u64, Key>,
    bytes: usize,
    clock: u64,
}

impl IndexCache {
    pub(crate) fn get(&mut self, key: Key) -> Option<Cached> {
        let (value, stamp) = self.map.get_mut(&key)?;
        self.by_age.remove(stamp);
        self.clock += 1;
        *stamp = self.clock;
        self.by_age.insert(self.clock, key);
        Some(value.clone())
    }

    /// Cache `value` unless it is larger than a quarter of the bound.
    pub(crate) fn put(&mut self, key: Key, value: Cached) {
        let bytes = value.bytes() + ENTRY_OVERHEAD_BYTES;
        if bytes > HISTORY_INDEX_CACHE_BYTES / 4 {
            return;
        }
        self.remove(key);
        while self.bytes + bytes > HISTORY_INDEX_CACHE_BYTES {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.remove(oldest);
        }
        self.clock += 1;
        self.by_age.insert(self.clock, key);
        self.map.insert(key, (value, self.clock));
        self.bytes += bytes;
        assert!(self.bytes <= HISTORY_INDEX_CACHE_BYTES);
    }

    fn remove(&mut self, key: Key) {
        if let Some((value, stamp)) = self.map.remove(&key) {
            self.by_age.remove(&stamp);
            self.bytes -= value.bytes() + ENTRY_OVERHEAD_BYTES;
        }
    }

    /// Drop everything of a deleted segment.
    pub(crate) fn forget_segment(&mut self, segment: u64) {
        let keys: Vec<Key> = self
            .map
            .keys()
            .filter(|k| k.0 == segment)
            .copied()
            .collect();
        for key in keys {
            self.remove(key);
        }
    }

    /// Bytes held (parts plus bookkeeping), at most [`HISTORY_INDEX_CACHE_BYTES`].
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(n: usize) -> Cached {
        let p = Position {
            seq: 1,
            offset: 4096,
            bytes: 64,
        };
        Cached::Positions(vec![p; n].into())
    }

    #[test]
    fn stays_within_its_bound_and_evicts_the_least_recently_used() {
        let mut cache = IndexCache::default();
        let part = HISTORY_INDEX_CACHE_BYTES / 16 / size_of::<Position>();
        for i in 0..100u64 {
            cache.put((1, i, true), positions(part));
            assert!(cache.bytes() <= HISTORY_INDEX_CACHE_BYTES);
            // Keep part 0 hot: it must survive every eviction.
            assert!(cache.get((1, 0, true)).is_some(), "hot part evicted at {i}");
        }
        assert!(cache.get((1, 1, true)).is_none(), "the coldest part stays");
        cache.put((9, 0, true), positions(HISTORY_INDEX_CACHE_BYTES));
        assert!(
            cache.get((9, 0, true)).is_none(),
            "oversized parts are not cached"
        );
        cache.forget_segment(1);
        assert_eq!(cache.bytes(), 0);
    }
}
