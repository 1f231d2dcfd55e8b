//! Replays the committed corpus of the `raft_records` fuzz target
//! (fuzz/corpus/raft_records) with the fuzzer's own checks
//! (`fuzz/harness/raft.rs`), and pins what recovery makes of the named
//! seeds: every crasher a fuzzer finds is added to the corpus.
#![allow(clippy::unwrap_used)]

#[path = "../../../fuzz/harness/raft.rs"]
mod harness;

use std::path::Path;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/raft_records");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn raft_records_corpus_replays_with_the_expected_outcomes() {
    let inputs = corpus();
    assert!(inputs.len() >= 10, "corpus has {} files", inputs.len());
    let expected: &[(&str, Option<usize>)] = &[
        ("stream-single-node", Some(1)),
        ("stream-compacted", Some(1)),
        ("stream-torn-snapshot", Some(1)),
        ("stream-torn-checkpoint-after-deleted-prefix", Some(1)),
        ("stream-replaced-by-leader-snapshot", Some(1)),
        ("stream-commit-beyond-log", Some(1)),
        ("stream-stale-gap-before-checkpoint", Some(1)),
        ("stream-torn-snapshot-then-more", Some(1)),
        ("stream-headless-chunk", Some(1)),
        ("stream-orphan", None),
        ("stream-gap", None),
        ("stream-not-a-voter", None),
    ];
    for (name, data) in &inputs {
        harness::records(data);
        if let Some((_, want)) = expected.iter().find(|(n, _)| n == name) {
            assert_eq!(harness::recover(data), *want, "{name}");
        }
    }
    for (name, _) in expected {
        assert!(
            inputs.iter().any(|(n, _)| n == name),
            "{name} missing from the corpus"
        );
    }
}

/// A seeded stand-in for a fuzzing campaign that runs with the suite:
/// 20,000 mutations of the corpus (bit flips, byte changes, cuts,
/// splices) through the same checks.
#[test]
fn mutated_corpus_inputs_never_panic() {
    use rand::{Rng, SeedableRng};
    let inputs = corpus();
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let mut recovered = 0;
    for _ in 0..20_000 {
        let mut data = inputs[rng.gen_range(0..inputs.len())].1.clone();
        for _ in 0..rng.gen_range(1..4) {
            match rng.gen_range(0..4) {
                0 if !data.is_empty() => {
                    let i = rng.gen_range(0..data.len());
                    data[i] ^= 1 << rng.gen_range(0..8);
                }
                1 if !data.is_empty() => {
                    let i = rng.gen_range(0..data.len());
                    data[i] = rng.gen();
                }
                2 => data.truncate(rng.gen_range(0..=data.len())),
                _ => {
                    let other = &inputs[rng.gen_range(0..inputs.len())].1;
                    let at = rng.gen_range(0..=data.len());
                    data.splice(at..at, other.iter().copied());
                }
            }
        }
        harness::records(&data);
        if harness::recover(&data).is_some() {
            recovered += 1;
        }
    }
    assert!(
        recovered > 100,
        "mutations should still recover sometimes ({recovered})"
    );
}
