//! A small growable bitset of shard ids: a conversation's interested shards,
//! a home shard's completed membership rounds.

use crate::types::ShardId;

/// Set of shard ids; empty costs no allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardSet {
    words: Vec<u64>,
}

impl ShardSet {
    /// The empty set.
    pub fn new() -> ShardSet {
        ShardSet { words: Vec::new() }
    }

    /// Adds a shard; returns whether it was absent (a 0→1 transition).
    pub fn insert(&mut self, shard: ShardId) -> bool {
        let (word, bit) = (usize::from(shard.0) / 64, shard.0 % 64);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let absent = self.words[word] & (1 << bit) == 0;
        self.words[word] |= 1 << bit;
        absent
    }

    /// Removes a shard; returns whether it was present.
    pub fn remove(&mut self, shard: ShardId) -> bool {
        let (word, bit) = (usize::from(shard.0) / 64, shard.0 % 64);
        let Some(w) = self.words.get_mut(word) else {
            return false;
        };
        let present = *w & (1 << bit) != 0;
        *w &= !(1 << bit);
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
        present
    }

    /// Whether the shard is in the set.
    pub fn contains(&self, shard: ShardId) -> bool {
        let (word, bit) = (usize::from(shard.0) / 64, shard.0 % 64);
        self.words.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    /// Number of shards in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The shards in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            (0..64u16)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| ShardId(i as u16 * 64 + b))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_and_order() {
        let mut s = ShardSet::new();
        assert!(s.is_empty());
        assert!(s.insert(ShardId(70)));
        assert!(!s.insert(ShardId(70)));
        assert!(s.insert(ShardId(3)));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![ShardId(3), ShardId(70)]);
        assert_eq!(s.len(), 2);
        assert!(s.remove(ShardId(70)));
        assert!(!s.remove(ShardId(70)));
        assert!(!s.remove(ShardId(500)));
        assert!(s.contains(ShardId(3)) && !s.contains(ShardId(70)));
        assert!(s.remove(ShardId(3)));
        assert!(s.is_empty());
        assert_eq!(s, ShardSet::new());
    }
}
