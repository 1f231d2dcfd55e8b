//! Measures the history store on a real disk: append throughput (entries/s,
//! MB/s) with a sync every 1000 appends, then the latency of 100-entry
//! newest-first pages of old parts of random conversations, the reopen
//! time, and the index size against the data size.
//!
//! `cargo run --release -p courier-wal --example history_measure -- DIR [ENTRIES] [CONVERSATIONS] [PAYLOAD]`
//! (defaults 2000000, 10000, 200). DIR must be on a disk file system (O_DIRECT)
//! and is left in place for inspection.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use courier_wal::history::{HistoryOptions, HistoryStore, Page};
use glommio::{LocalExecutorBuilder, Placement};

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .map_or(default, |a| a.parse().unwrap())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn files_bytes(dir: &std::path::Path, ext: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// xorshift64*: deterministic load.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

async fn measure(dir: std::path::PathBuf, entries: u64, conversations: u64, payload: usize) {
    let (store, _) = HistoryStore::open(&dir, 0, HistoryOptions::recommended())
        .await
        .unwrap();
    let mut seqs = vec![0u64; conversations as usize];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let body = vec![0x5Au8; payload];
    let mut syncs = Vec::new();
    let started = Instant::now();
    for source in 1..=entries {
        let c = rng.below(conversations);
        seqs[c as usize] += 1;
        store.append(c, seqs[c as usize], source, &body).unwrap();
        if source % 1000 == 0 {
            let t = Instant::now();
            store.sync().await.unwrap();
            syncs.push(t.elapsed());
        }
    }
    store.sync().await.unwrap();
    let took = started.elapsed().as_secs_f64();
    syncs.sort();
    println!(
        "sync of 1000 appends: p50 {:?} p99 {:?} max {:?} (the slowest ones seal a segment)",
        percentile(&syncs, 0.5),
        percentile(&syncs, 0.99),
        syncs[syncs.len() - 1]
    );
    let data = files_bytes(&dir, "seg");
    let index = files_bytes(&dir, "idx");
    println!(
        "append: {entries} entries of {payload} B over {conversations} conversations in {took:.2} s: {:.0} entries/s, {:.1} MB/s payload, {:.1} MB/s written",
        entries as f64 / took,
        (entries * payload as u64) as f64 / took / 1e6,
        data as f64 / took / 1e6
    );
    println!(
        "disk: segments {:.1} MB, index files {:.1} MB ({:.1} % of segments)",
        data as f64 / 1e6,
        index as f64 / 1e6,
        100.0 * index as f64 / data as f64
    );
    println!("memory: {:?}", store.memory());
    let mut latencies = Vec::new();
    for _ in 0..2000 {
        let c = rng.below(conversations);
        let last = seqs[c as usize];
        // An old page: before a seq in the oldest half of the conversation.
        let before = 100 + rng.below((last / 2).max(1));
        let t = Instant::now();
        let page = store.read_before(c, before, 100, 1 << 20).await.unwrap();
        latencies.push(t.elapsed());
        match page {
            Page::Entries(es) => assert_eq!(es.len() as u64, 100.min(before - 1)),
            Page::StartsAt { .. } => panic!("nothing was dropped"),
        }
    }
    latencies.sort();
    println!(
        "read_before 100 entries, old page, 2000 random conversations: p50 {:?} p99 {:?} max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    // Scrolling back: five consecutive older pages of one conversation.
    let mut latencies = Vec::new();
    for _ in 0..400 {
        let c = rng.below(conversations);
        let mut before = seqs[c as usize] + 1;
        for _ in 0..5 {
            let t = Instant::now();
            let page = store.read_before(c, before, 100, 1 << 20).await.unwrap();
            latencies.push(t.elapsed());
            match page {
                Page::Entries(es) if !es.is_empty() => before = es[es.len() - 1].seq,
                _ => break,
            }
        }
    }
    latencies.sort();
    println!(
        "read_before 100 entries, scrolling back 5 pages in 400 random conversations: p50 {:?} p99 {:?} max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    println!("memory after reads: {:?}", store.memory());
    store.close().await.unwrap();
    drop(store);
    let t = Instant::now();
    let (store, recovered) = HistoryStore::open(&dir, 0, HistoryOptions::recommended())
        .await
        .unwrap();
    println!(
        "reopen: {:?} ({} segments, {} entries scanned in the active one, durable source {})",
        t.elapsed(),
        recovered.segments,
        recovered.active_entries,
        recovered.durable_source
    );
    drop(store);
}

fn main() {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: history_measure DIR [ENTRIES] [CONVERSATIONS] [PAYLOAD]"),
    );
    let (entries, conversations, payload) =
        (arg(2, 2_000_000), arg(3, 10_000), arg(4, 200) as usize);
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || measure(dir, entries, conversations, payload))
        .unwrap()
        .join()
        .unwrap();
}
