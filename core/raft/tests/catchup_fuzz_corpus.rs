//! Replays the committed corpus of the `catchup_msgs` fuzz target
//! (fuzz/corpus/catchup_msgs) with the fuzzer's own checks
//! (`fuzz/harness/catchup.rs`): every seed decodes as the message it is
//! named after, and 20,000 seeded mutations of the corpus never panic.
#![allow(clippy::unwrap_used)]

#[path = "../../../fuzz/harness/catchup.rs"]
mod harness;

use std::path::Path;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/catchup_msgs");
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
fn catchup_msgs_corpus_decodes_as_named() {
    use courier_raft::replica::{catchup, fetch};
    let inputs = corpus();
    assert!(inputs.len() >= 12, "corpus has {} files", inputs.len());
    for (name, data) in &inputs {
        assert!(harness::messages(data) >= 1, "{name} decodes as nothing");
        let ok = match name.as_str() {
            n if n.starts_with("snapshot-request") => {
                catchup::decode_snapshot_request(data).is_ok()
            }
            n if n.starts_with("snapshot-reply") => catchup::decode_snapshot_reply(data).is_ok(),
            n if n.starts_with("history-request") => catchup::decode_history_request(data).is_ok(),
            n if n.starts_with("history-reply") => catchup::decode_history_reply(data).is_ok(),
            n if n.starts_with("fetch-request") => fetch::decode_request(data).is_ok(),
            n if n.starts_with("fetch-reply") => fetch::decode_reply(data).is_ok(),
            _ => true,
        };
        assert!(ok, "{name} does not decode as its kind");
    }
}

/// A seeded stand-in for a fuzzing campaign that runs with the suite:
/// 20,000 mutations of the corpus (bit flips, byte changes, cuts,
/// splices) through the same checks.
#[test]
fn mutated_catchup_msgs_never_panic() {
    use rand::{Rng, SeedableRng};
    let inputs = corpus();
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let mut decoded = 0;
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
        if harness::messages(&data) > 0 {
            decoded += 1;
        }
    }
    assert!(
        decoded > 100,
        "mutations should still decode sometimes ({decoded})"
    );
}
