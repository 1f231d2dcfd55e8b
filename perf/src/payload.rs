//! Message bodies: filler text of a chosen size, and bodies stamped with
//! the intended send time so a receiver on any load thread can compute
//! end-to-end latency (all threads share [`crate::clock::now_ns`]).
//!
//! A stamped body is `"{tag}:{intended_ns}:"` followed by filler up to the
//! requested size; `tag` is a scenario-defined number (e.g. the rate step).

use std::cell::Cell;

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = crate::clock::now_ns();
    let id = std::thread::current().id();
    let h = format!("{id:?}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    (t ^ h) | 1
}

fn next_u64() -> u64 {
    RNG.with(|r| {
        // xorshift64*
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A fresh random `client_msg_id`.
pub fn client_msg_id() -> u128 {
    (u128::from(next_u64()) << 64) | u128::from(next_u64())
}

/// `n` bytes of ASCII filler.
pub fn filler(n: usize) -> String {
    const TEXT: &[u8] = b"the quick brown fox jumps over the lazy dog ";
    (0..n).map(|i| TEXT[i % TEXT.len()] as char).collect()
}

/// A body of (at least) `size` bytes carrying `tag` and `intended_ns`.
pub fn stamped(tag: u32, intended_ns: u64, size: usize) -> String {
    let mut s = format!("{tag}:{intended_ns}:");
    if s.len() < size {
        s.push_str(&filler(size - s.len()));
    }
    s
}

/// Reads back what [`stamped`] wrote.
pub fn parse_stamp(body: &str) -> Option<(u32, u64)> {
    let mut parts = body.splitn(3, ':');
    let tag = parts.next()?.parse().ok()?;
    let ns = parts.next()?.parse().ok()?;
    Some((tag, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_at_any_size() {
        for size in [0, 10, 100, 1000] {
            let b = stamped(7, 123_456_789, size);
            assert!(b.len() >= size);
            assert_eq!(parse_stamp(&b), Some((7, 123_456_789)));
        }
        assert_eq!(parse_stamp("hello"), None);
        assert_ne!(client_msg_id(), client_msg_id());
        assert_eq!(filler(5).len(), 5);
    }
}
