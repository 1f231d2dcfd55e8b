//! Hash maps with a keyed, deterministic hasher.
//!
//! The shard's maps hash keys that clients influence (names,
//! `client_msg_id`s), so the hash is keyed with bytes from
//! [`crate::ShardConfig::entropy`] (fresh per start in production, seeded in
//! simulations) to keep collision floods out. Given the key, hashing is
//! deterministic, and iteration order never reaches an output anyway: every
//! output that lists map contents sorts them or comes from a `BTreeMap`.

use std::hash::{BuildHasher, Hasher};

use sha2::{Digest, Sha256};

/// Map keyed with the shard's [`HashState`].
pub type Map<K, V> = hashbrown::HashMap<K, V, HashState>;

/// Set keyed with the shard's [`HashState`].
pub type Set<K> = hashbrown::HashSet<K, HashState>;

/// Builds [`KeyedHasher`]s; two 64-bit keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashState {
    k0: u64,
    k1: u64,
}

const PI0: u64 = 0x243f_6a88_85a3_08d3;
const PI1: u64 = 0x1319_8a2e_0370_7344;

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
            k1: word(1) | 1,
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
    type Hasher = KeyedHasher;

    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher {
            acc: self.k0,
            k1: self.k1,
        }
    }
}

/// A folded-multiply hasher (the construction of foldhash / wyhash).
#[derive(Clone, Debug)]
pub struct KeyedHasher {
    acc: u64,
    k1: u64,
}

fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for KeyedHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.acc = folded_multiply(self.acc ^ i, self.k1 ^ PI0);
    }

    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn finish(&self) -> u64 {
        folded_multiply(self.acc ^ PI1, self.k1.rotate_left(23) | 1)
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
