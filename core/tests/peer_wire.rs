//! The wire form of cross-shard messages (`PeerMsg::encode` / `decode`),
//! which carries them to shards on other nodes: the committed corpus of the
//! `peer_msg` fuzz target (one real message of each kind the simulation
//! sends, written by it with `COURIER_PEER_CORPUS=DIR`) decodes and
//! round-trips, and seeded mutations of it (bit flips, byte changes, cuts,
//! splices) never panic the decoder — the fuzzer's checks, shared source
//! (`fuzz/harness/peer.rs`). The simulation itself passes every peer
//! message it sends through the wire form (`support/world.rs`).
#![allow(clippy::unwrap_used)]

#[path = "../../fuzz/harness/peer.rs"]
mod harness;

use std::path::Path;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/peer_msg");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_is_a_message_that_round_trips() {
    let seeds = corpus();
    assert!(seeds.len() >= 40, "corpus has {} seeds", seeds.len());
    for (name, data) in &seeds {
        assert!(harness::peer_msg(data), "{name} does not decode");
    }
    // Each role's messages are represented.
    for role in [
        "conn-",
        "owner-",
        "home-",
        "workspace-",
        "gather-",
        "notifier-",
    ] {
        assert!(
            seeds.iter().any(|(n, _)| n.starts_with(role)),
            "no {role}* seed"
        );
    }
}

/// SplitMix64: the mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mutated_seeds_never_panic_the_decoder() {
    let seeds = corpus();
    let mut rng = Rng(19);
    let (mut decoded, runs) = (0, 50_000);
    for _ in 0..runs {
        let mut data = seeds[rng.below(seeds.len())].1.clone();
        for _ in 0..1 + rng.below(3) {
            match rng.below(4) {
                0 if data.len() > 1 => {
                    let i = 1 + rng.below(data.len() - 1);
                    data[i] ^= 1 << rng.below(8);
                }
                1 if data.len() > 1 => {
                    let i = 1 + rng.below(data.len() - 1);
                    data[i] = rng.next() as u8;
                }
                2 => data.truncate(rng.below(data.len() + 1)),
                _ => {
                    let other = &seeds[rng.below(seeds.len())].1;
                    let at = rng.below(data.len() + 1);
                    data.splice(at..at, other.iter().copied());
                }
            }
        }
        if harness::peer_msg(&data) {
            decoded += 1;
        }
    }
    // Validation refuses most damaged archives, yet some mutations (a flipped
    // bit in an id or a text byte) are still messages: both paths ran.
    eprintln!("{decoded} of {runs} mutations decoded");
    assert!(
        decoded > 0 && decoded < runs,
        "{decoded} of {runs} mutations decoded"
    );
}
