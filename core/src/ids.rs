//! Id layout and placement: which shard owns a workspace, user or
//! conversation.
//!
//! Every 64-bit id is `[placement slot:16][allocating shard:16][counter:32]`
//! (most significant first):
//!
//! - the **slot** decides placement: [`shard_of`] is `slot % shard_count`,
//!   the one function that maps an id to its shard. Placement can change
//!   (more shards, several nodes) by changing this function and moving
//!   data, without changing any id;
//! - the **allocating shard** and its **counter** make the id unique
//!   without coordination: only the shard whose WAL records the id's
//!   creation allocates it, and its counter is restored on replay from those
//!   records ([`IdAllocator::observe`]).
//!
//! Any shard may allocate an id for any slot, so the workspace shard that
//! checks a user name's uniqueness allocates the user's id with a slot that
//! spreads users over all shards. A DM's slot is derived from its
//! workspace and sorted member set ([`dm_slot`]), so the owner of "the DM of
//! these people" is known before the DM exists; that owner keeps a directory
//! from member set to id, which makes opening a DM idempotent.
//!
//! Failure contract: allocation fails (returns `None`) only when a shard's
//! 32-bit counter is exhausted.

use sha2::{Digest, Sha256};

use crate::types::{ConversationId, ShardId, UserId, WorkspaceId};

/// Number of placement slots.
pub const SLOT_COUNT: u32 = 1 << 16;

/// Something placed on a shard by its id.
pub trait Placed: Copy {
    /// The raw 64-bit id.
    fn raw(self) -> u64;
}

impl Placed for WorkspaceId {
    fn raw(self) -> u64 {
        self.0
    }
}

impl Placed for UserId {
    fn raw(self) -> u64 {
        self.0
    }
}

impl Placed for ConversationId {
    fn raw(self) -> u64 {
        self.0
    }
}

/// The shard that owns `id` when the node runs `shard_count` shards.
/// Stable for a fixed shard count; with [`shard_of_slot`], the only
/// placement function.
pub fn shard_of(id: impl Placed, shard_count: u16) -> ShardId {
    shard_of_slot(slot_of(id.raw()), shard_count)
}

/// The shard that owns the ids placed on `slot` (for ids about to be
/// allocated on a chosen slot).
pub fn shard_of_slot(slot: u16, shard_count: u16) -> ShardId {
    assert!(shard_count >= 1, "shard_count must be positive");
    ShardId(slot % shard_count)
}

/// Assembles an id from its parts.
pub fn compose(slot: u16, allocator: ShardId, counter: u32) -> u64 {
    (u64::from(slot) << 48) | (u64::from(allocator.0) << 32) | u64::from(counter)
}

/// The placement slot of an id.
pub fn slot_of(id: u64) -> u16 {
    (id >> 48) as u16
}

/// The shard that allocated an id.
pub fn allocator_of(id: u64) -> ShardId {
    ShardId((id >> 32) as u16)
}

/// The allocating shard's counter value in an id.
pub fn counter_of(id: u64) -> u32 {
    id as u32
}

/// A 64-bit mixer (splitmix64's finalizer): spreads consecutive inputs over
/// all output bits.
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A slot spread over all shards, chosen from `seed` (e.g. a counter).
pub fn spread_slot(seed: u64) -> u16 {
    mix64(seed) as u16
}

/// A slot, chosen from `seed`, that [`shard_of`] maps to `shard`.
pub fn slot_on_shard(seed: u64, shard: ShardId, shard_count: u16) -> u16 {
    assert!(shard.0 < shard_count, "shard out of range");
    let count = u32::from(shard_count);
    // Slots mapping to `shard` are shard, shard + count, ...; pick one.
    let choices = (SLOT_COUNT - 1 - u32::from(shard.0)) / count + 1;
    let k = (mix64(seed) % u64::from(choices)) as u32;
    let slot = k * count + u32::from(shard.0);
    debug_assert!(slot < SLOT_COUNT);
    debug_assert_eq!(shard_of_slot(slot as u16, shard_count), shard);
    slot as u16
}

/// The placement slot of the DM / group DM of `members` (sorted, unique) in
/// `workspace`: the same for every requester, so every request to open it
/// reaches the same owner.
pub fn dm_slot(workspace: WorkspaceId, members: &[UserId]) -> u16 {
    assert!(
        members.windows(2).all(|w| w[0] < w[1]),
        "DM members must be sorted and unique"
    );
    let mut hasher = Sha256::new();
    hasher.update(b"courier-dm");
    hasher.update(workspace.0.to_le_bytes());
    for member in members {
        hasher.update(member.0.to_le_bytes());
    }
    let digest = hasher.finalize();
    u16::from_le_bytes([digest[0], digest[1]])
}

/// Allocates ids on one shard. The counter is restored from the records
/// that carry allocated ids (and from snapshots), never persisted alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdAllocator {
    shard: ShardId,
    next: u64,
}

impl IdAllocator {
    /// A fresh allocator; counter 0 is never used, so no id is 0.
    pub fn new(shard: ShardId) -> IdAllocator {
        IdAllocator { shard, next: 1 }
    }

    /// The next counter value (for snapshots).
    pub fn next_counter(&self) -> u64 {
        self.next
    }

    /// Restores the counter (from a snapshot).
    pub fn set_next_counter(&mut self, next: u64) {
        assert!(next >= 1);
        self.next = next;
    }

    /// Allocates an id placed on `slot`, or `None` when the counter space
    /// is exhausted.
    pub fn allocate(&mut self, slot: u16) -> Option<u64> {
        let counter = u32::try_from(self.next).ok()?;
        self.next += 1;
        Some(compose(slot, self.shard, counter))
    }

    /// Notes an id seen in a record: ids this shard allocated move the
    /// counter past them, so replay restores the allocator.
    pub fn observe(&mut self, id: u64) {
        if allocator_of(id) == self.shard {
            self.next = self.next.max(u64::from(counter_of(id)) + 1);
        }
    }

    /// The counter the next allocation would use, as a raw seed for slot
    /// choices (deterministic: restored with the counter).
    pub fn seed(&self) -> u64 {
        self.next ^ (u64::from(self.shard.0) << 40)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_parts(slot: u16, allocator: u16, counter: u32) {
        let id = compose(slot, ShardId(allocator), counter);
        assert_eq!(slot_of(id), slot);
        assert_eq!(allocator_of(id), ShardId(allocator));
        assert_eq!(counter_of(id), counter);
    }

    #[test]
    fn parts_roundtrip() {
        check_parts(0, 0, 0);
        check_parts(u16::MAX, u16::MAX, u32::MAX);
        check_parts(7, 3, 12345);
        check_parts(65535, 0, 1);
    }

    #[test]
    fn shard_of_is_slot_mod_count() {
        let id = ConversationId(compose(10, ShardId(1), 5));
        assert_eq!(shard_of(id, 1), ShardId(0));
        assert_eq!(shard_of(id, 3), ShardId(1));
        assert_eq!(shard_of(id, 4), ShardId(2));
        assert_eq!(shard_of(id, 16), ShardId(10));
    }

    #[test]
    fn slot_on_shard_maps_back() {
        for count in [1u16, 2, 3, 7, 8, 1000, 1024] {
            for shard in [0, count / 2, count - 1] {
                for seed in 0..200u64 {
                    let slot = slot_on_shard(seed, ShardId(shard), count);
                    let id = UserId(compose(slot, ShardId(0), 1));
                    assert_eq!(shard_of(id, count), ShardId(shard));
                }
            }
        }
    }

    #[test]
    fn spread_slot_spreads() {
        let mut hits = [0u32; 4];
        for seed in 0..4000u64 {
            hits[usize::from(spread_slot(seed) % 4)] += 1;
        }
        assert!(hits.iter().all(|&h| h > 800), "{hits:?}");
    }

    #[test]
    fn dm_slot_is_deterministic_and_member_sensitive() {
        let ws = WorkspaceId(9);
        let a = dm_slot(ws, &[UserId(1), UserId(2)]);
        assert_eq!(a, dm_slot(ws, &[UserId(1), UserId(2)]));
        let others = [
            dm_slot(ws, &[UserId(1), UserId(3)]),
            dm_slot(WorkspaceId(10), &[UserId(1), UserId(2)]),
            dm_slot(ws, &[UserId(1), UserId(2), UserId(3)]),
        ];
        assert!(others.iter().any(|&s| s != a));
    }

    #[test]
    fn allocator_unique_and_restored_by_observe() {
        let mut a = IdAllocator::new(ShardId(2));
        let x = a.allocate(5).expect("id");
        let y = a.allocate(5).expect("id");
        assert_ne!(x, y);
        let mut b = IdAllocator::new(ShardId(2));
        b.observe(x);
        b.observe(y);
        b.observe(compose(1, ShardId(3), 999)); // another shard's: ignored
        let z = b.allocate(5).expect("id");
        assert!(z != x && z != y);
        assert_eq!(b.next_counter(), a.next_counter() + 1);
    }

    #[test]
    fn allocator_exhaustion_is_none() {
        let mut a = IdAllocator::new(ShardId(0));
        a.set_next_counter(u64::from(u32::MAX));
        assert!(a.allocate(0).is_some());
        assert!(a.allocate(0).is_none());
    }
}
