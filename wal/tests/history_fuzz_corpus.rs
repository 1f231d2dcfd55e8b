//! Replays the committed fuzz corpus of the history store's decoders
//! (`fuzz/corpus/history_index`) through the exact check the
//! `history_index` fuzz target runs (`fuzz/harness/history.rs`), plus
//! every single-byte damage of the first 256 bytes and truncations of each
//! seed: the decoders never panic and what decodes re-encodes.

#[path = "../../fuzz/harness/history.rs"]
mod harness;

use std::path::Path;

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/history_index");
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| match entry {
            Ok(entry) => std::fs::read(entry.path()).unwrap_or_default(),
            Err(e) => panic!("{}: {e}", dir.display()),
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn history_index_corpus() {
    let inputs = corpus();
    assert!(inputs.len() >= 4, "the seed corpus is missing");
    for input in &inputs {
        harness::decoders(input);
        for at in 0..input.len().min(256) {
            let mut damaged = input.clone();
            damaged[at] ^= 0x5A;
            harness::decoders(&damaged);
        }
        for cut in [0, 1, 47, 48, 4095, input.len() / 2] {
            harness::decoders(&input[..cut.min(input.len())]);
        }
    }
}

#[test]
fn the_seeds_reach_past_the_checksums() {
    use courier_wal::history::format::{
        check_entry_header, decode_dir_block, EntryCheck, IndexHeader,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/history_index");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
    let entries = read("segment-entries");
    assert!(matches!(
        check_entry_header(&entries, entries.len() as u64),
        EntryCheck::Plausible(_)
    ));
    assert!(IndexHeader::decode(&read("index-header")).is_ok());
    assert!(decode_dir_block(&read("directory-block")).is_ok());
}
