//! Hash maps with a keyed, deterministic hasher.
//!
//! The shard's maps hash keys that clients influence (names,
//! `client_msg_id`s), so the hash is keyed SipHash-1-3 (the `siphasher`
//! crate; the same function std's `RandomState` uses) with keys derived
//! from [`crate::ShardConfig::entropy`] (fresh per start in production,
//! seeded in simulations) to keep collision floods out. Given the key, hashing is
//! deterministic, and iteration order never reaches an output anyway: every
//! output that lists map contents sorts them or comes from a `BTreeMap`.

use std::hash::BuildHasher;

use sha2::{Digest, Sha256};
use siphasher::sip::SipHasher13;

/// Map keyed with the shard's [`HashState`].
pub type Map<K, V> = hashbrown::HashMap<K, V, HashState>;

/// Set keyed with the shard's [`HashState`].
pub type Set<K> = hashbrown::HashSet<K, HashState>;

/// Builds keyed SipHash-1-3 hashers; two 64-bit keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashState {
    k0: u64,
    k1: u64,
}

impl HashState {
    /// A state keyed from 32 entropy bytes (through sha256, so any
    /// structure in the bytes does not carry into the keys).
    pub fn new(entropy: &[u8; 32]) -> HashState {
        let digest = Sha256::new()
            .chain_update(b"courier-hash-keys")
            .chain_update(entropy)
            .finalize();
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&digest[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        HashState {
            k0: word(0),
            k1: word(1),
        }
    }

    /// An empty map with this state.
    pub fn map<K, V>(self) -> Map<K, V> {
        hashbrown::HashMap::with_hasher(self)
    }

    /// An empty set with this state.
    pub fn set<K>(self) -> Set<K> {
        hashbrown::HashSet::with_hasher(self)
    }
}

impl BuildHasher for HashState {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(state: HashState, value: impl std::hash::Hash) -> u64 {
        state.hash_one(value)
    }

    #[test]
    fn deterministic_for_a_key_and_keyed() {
        let a = HashState::new(&[1; 32]);
        let b = HashState::new(&[2; 32]);
        assert_eq!(hash_of(a, "general"), hash_of(a, "general"));
        assert_ne!(hash_of(a, "general"), hash_of(b, "general"));
        assert_ne!(hash_of(a, 1u64), hash_of(a, 2u64));
        assert_ne!(hash_of(a, "ab"), hash_of(a, "ba"));
        assert_ne!(hash_of(a, (1u64, 2u128)), hash_of(a, (2u64, 1u128)));
    }

    #[test]
    fn low_bits_spread_for_counters() {
        let s = HashState::new(&[7; 32]);
        let mut buckets = [0u32; 16];
        for i in 0..1600u64 {
            buckets[(hash_of(s, i) & 15) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n > 50), "{buckets:?}");
    }
}
