//! The history store on a real disk directory under glommio: appends and
//! reads across many segments and conversations checked against an
//! in-memory model; crashes (drop without sync, torn and damaged tails);
//! injected write/sync/seal failures are sticky; retention deletes files
//! and reads report where history now starts; idempotent replay; and the
//! in-memory summary stays within its formula for 1M entries.
#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeMap, path::Path};

use common::{run, temp_dir, Rng};
use courier_wal::{
    history::{Appended, HistoryMemory, HistoryOptions, HistoryStore, Page},
    Error, FaultPoint, Faults, HistoryRejection,
};

/// Expected history: conversation → (seq, source, payload), ascending.
type Model = BTreeMap<u64, Vec<(u64, u64, Vec<u8>)>>;

fn payload_of(conversation: u64, seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (conversation * 31 + seq * 7 + i as u64) as u8)
        .collect()
}

/// Append `count` messages over `conversations` (seeded), syncing now and
/// then; the model gets every appended message. Returns the last source.
async fn fill(
    store: &HistoryStore,
    model: &mut Model,
    rng: &mut Rng,
    count: u64,
    conversations: u64,
    source: &mut u64,
) {
    for _ in 0..count {
        let c = rng.below(conversations) + 1;
        let entries = model.entry(c).or_default();
        let seq = entries.last().map_or(1, |e| e.0 + 1 + rng.below(2));
        let len = rng.below(300) as usize;
        *source += 1;
        let bytes = payload_of(c, seq, len);
        assert_eq!(
            store.append(c, seq, *source, &bytes).unwrap(),
            Appended::Staged
        );
        entries.push((seq, *source, bytes));
        if rng.below(100) == 0 {
            store.sync().await.unwrap();
        }
    }
    assert_eq!(store.sync().await.unwrap(), *source);
}

fn entries(page: Page) -> Vec<(u64, u64, Vec<u8>)> {
    match page {
        Page::Entries(es) => es
            .into_iter()
            .map(|e| (e.seq, e.source, e.payload.to_vec()))
            .collect(),
        Page::StartsAt { first_seq } => panic!("unexpected StartsAt {first_seq}"),
    }
}

/// Random forward and newest-first pages of every conversation match the model.
async fn check_reads(store: &HistoryStore, model: &Model, rng: &mut Rng) {
    for (&c, expected) in model {
        let last = expected.last().unwrap().0;
        let from = rng.below(last + 2);
        let max = 1 + rng.below(50);
        let want: Vec<_> = expected
            .iter()
            .filter(|e| e.0 >= from)
            .take(max as usize)
            .cloned()
            .collect();
        assert_eq!(
            entries(store.read(c, from, max, u64::MAX).await.unwrap()),
            want,
            "read conv {c} from {from}"
        );
        let before = rng.below(last + 2);
        let want: Vec<_> = expected
            .iter()
            .rev()
            .filter(|e| e.0 < before)
            .take(max as usize)
            .cloned()
            .collect();
        assert_eq!(
            entries(store.read_before(c, before, max, u64::MAX).await.unwrap()),
            want,
            "read_before conv {c} {before}"
        );
    }
}

fn files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(ext)
        })
        .count()
}

#[test]
fn appends_and_reads_across_segments_match_the_model_and_survive_reopen() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let options = HistoryOptions::small_for_tests(64 * 1024);
        let (store, recovered) = HistoryStore::open(&path, 3, options.clone()).await.unwrap();
        assert_eq!(recovered.durable_source, 0);
        let (mut model, mut rng, mut source) = (Model::new(), Rng::new(7), 0);
        fill(&store, &mut model, &mut rng, 20_000, 150, &mut source).await;
        assert!(
            files(&path, ".idx") >= 20,
            "only {} segments sealed",
            files(&path, ".idx")
        );
        check_reads(&store, &model, &mut rng).await;
        // max_bytes bounds a page but never returns nothing.
        let (&c, expected) = model
            .iter()
            .find(|(_, es)| es.len() > 3 && es[0].2.len() > 10)
            .unwrap();
        let one = entries(store.read(c, 0, 100, 1).await.unwrap());
        assert_eq!(one, expected[..1].to_vec());
        store.close().await.unwrap();
        drop(store);

        let (store, recovered) = HistoryStore::open(&path, 3, options).await.unwrap();
        assert_eq!(recovered.durable_source, source);
        assert_eq!(recovered.truncated_tail, None);
        assert_eq!(recovered.conversations, model.len() as u64);
        check_reads(&store, &model, &mut rng).await;
        fill(&store, &mut model, &mut rng, 3_000, 150, &mut source).await;
        check_reads(&store, &model, &mut rng).await;
    });
}

/// Every message of the model with source above `after`, in source order.
fn by_source(model: &Model, after: u64) -> Vec<(u64, u64, u64, Vec<u8>)> {
    let mut all: Vec<_> = model
        .iter()
        .flat_map(|(&c, es)| es.iter().map(move |e| (c, e.0, e.1, e.2.clone())))
        .filter(|e| e.2 > after)
        .collect();
    all.sort_by_key(|e| e.2);
    all
}

/// Scans from `after` in chunks of at most `max` entries, as a replica
/// copying a peer's store does.
async fn scan_all(store: &HistoryStore, after: u64, max: u64) -> Vec<(u64, u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = after;
    loop {
        let chunk = store.scan(at, max, 4096).await.unwrap();
        assert!(chunk.len() as u64 <= max);
        let Some(last) = chunk.last() else {
            return out;
        };
        at = last.source;
        out.extend(
            chunk
                .into_iter()
                .map(|e| (e.conversation, e.seq, e.source, e.payload)),
        );
    }
}

#[test]
fn a_scan_returns_every_durable_message_above_a_source_in_order_across_segments() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let options = HistoryOptions::small_for_tests(64 * 1024);
        let (store, _) = HistoryStore::open(&path, 3, options.clone()).await.unwrap();
        let (mut model, mut rng, mut source) = (Model::new(), Rng::new(11), 0);
        fill(&store, &mut model, &mut rng, 5_000, 40, &mut source).await;
        assert!(files(&path, ".idx") >= 5);
        store.drop_before(1, 3).unwrap();
        // Staged, not durable: a scan does not see it.
        source += 1;
        store.append(2, 1_000_000, source, b"staged").unwrap();
        for after in [0, 1, 777, 2_500, 4_999, 5_000] {
            assert_eq!(
                scan_all(&store, after, 97).await,
                by_source(&model, after),
                "after {after}"
            );
        }
        store.sync().await.unwrap();
        model
            .entry(2)
            .or_default()
            .push((1_000_000, source, b"staged".to_vec()));
        assert_eq!(scan_all(&store, 4_990, 3).await, by_source(&model, 4_990));
        // A byte budget smaller than one payload still returns one entry.
        assert_eq!(store.scan(0, 100, 0).await.unwrap().len(), 1);
        store.close().await.unwrap();
        drop(store);
        let (store, _) = HistoryStore::open(&path, 3, options).await.unwrap();
        assert_eq!(scan_all(&store, 0, 1_000).await, by_source(&model, 0));
    });
}

#[test]
fn replay_after_reopen_is_idempotent_and_caller_mistakes_are_typed() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let options = HistoryOptions::small_for_tests(64 * 1024);
        let (store, _) = HistoryStore::open(&path, 0, options.clone()).await.unwrap();
        for seq in 1..=500u64 {
            store
                .append(
                    seq % 5,
                    seq / 5 + 1,
                    seq,
                    &payload_of(seq % 5, seq / 5 + 1, 100),
                )
                .unwrap();
        }
        assert_eq!(store.sync().await.unwrap(), 500);
        drop(store);
        let (store, recovered) = HistoryStore::open(&path, 0, options).await.unwrap();
        assert_eq!(recovered.durable_source, 500);
        // The log replays from the durable source: what the store has is skipped.
        for seq in 400..=500u64 {
            let outcome = store
                .append(
                    seq % 5,
                    seq / 5 + 1,
                    seq,
                    &payload_of(seq % 5, seq / 5 + 1, 100),
                )
                .unwrap();
            assert_eq!(outcome, Appended::Duplicate);
        }
        let rejection = |r: Result<Appended, Error>| match r {
            Err(Error::HistoryRejected { rejection, .. }) => rejection,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert_eq!(
            rejection(store.append(1, 5, 501, b"x")),
            HistoryRejection::SeqNotIncreasing { last_seq: 100 }
        );
        assert_eq!(
            rejection(store.append(1, 200, 499, b"x")),
            HistoryRejection::SourceDecreasing { highest: 500 }
        );
        assert_eq!(
            rejection(store.append(1, 0, 501, b"x")),
            HistoryRejection::SeqZero
        );
        assert!(matches!(
            rejection(store.append(1, 200, 501, &vec![0; 2 << 20])),
            HistoryRejection::PayloadTooLarge { .. }
        ));
        assert_eq!(store.append(1, 101, 501, b"new").unwrap(), Appended::Staged);
        assert_eq!(store.sync().await.unwrap(), 501);
        let page = entries(store.read_before(1, u64::MAX, 2, u64::MAX).await.unwrap());
        assert_eq!(page.iter().map(|e| e.0).collect::<Vec<_>>(), vec![101, 100]);
        assert_eq!(page[0].2, b"new");
    });
}

/// Fill a store with syncs at known points; returns the model and the
/// durable source after each sync.
async fn fill_with_checkpoints(
    store: &HistoryStore,
    model: &mut Model,
    syncs: u64,
    per_sync: u64,
) -> Vec<u64> {
    let mut durable = Vec::new();
    let mut source = store.durable_source();
    let mut rng = Rng::new(source + 11);
    for _ in 0..syncs {
        for _ in 0..per_sync {
            let c = rng.below(20) + 1;
            let e = model.entry(c).or_default();
            let seq = e.last().map_or(1, |l| l.0 + 1);
            source += 1;
            let bytes = payload_of(c, seq, rng.below(200) as usize);
            store.append(c, seq, source, &bytes).unwrap();
            e.push((seq, source, bytes));
        }
        durable.push(store.sync().await.unwrap());
    }
    durable
}

/// The model restricted to sources at or below `durable`.
fn durable_part(model: &Model, durable: u64) -> Model {
    model
        .iter()
        .map(|(&c, es)| {
            (
                c,
                es.iter()
                    .filter(|e| e.1 <= durable)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, es)| !es.is_empty())
        .collect()
}

async fn check_exact(store: &HistoryStore, model: &Model) {
    for (&c, expected) in model {
        assert_eq!(
            entries(store.read(c, 1, 100_000, u64::MAX).await.unwrap()),
            *expected,
            "conversation {c}"
        );
    }
}

fn active_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

#[test]
fn a_crash_keeps_everything_durable_and_a_torn_tail_never_reappears() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let options = HistoryOptions::small_for_tests(1 << 20);
        let (store, _) = HistoryStore::open(&path, 0, options.clone()).await.unwrap();
        let mut model = Model::new();
        let durable = fill_with_checkpoints(&store, &mut model, 6, 40).await;
        // Staged but never synced: a crash loses it.
        store.append(1, 10_000, 100_000, b"lost").unwrap();
        drop(store);
        let (store, recovered) = HistoryStore::open(&path, 0, options.clone()).await.unwrap();
        assert_eq!(recovered.durable_source, *durable.last().unwrap());
        check_exact(&store, &model).await;
        drop(store);

        // A torn last sync: cut the active segment anywhere inside it.
        let seg = active_segment(&path);
        let original = std::fs::read(&seg).unwrap();
        let before_last = durable[durable.len() - 2];
        let mut cuts = 0;
        for cut in (4096..original.len()).step_by(97) {
            std::fs::write(&seg, &original[..cut]).unwrap();
            let (store, recovered) = HistoryStore::open(&path, 0, options.clone()).await.unwrap();
            let got = recovered.durable_source;
            assert!(got <= *durable.last().unwrap());
            check_exact(&store, &durable_part(&model, got)).await;
            if got >= before_last {
                cuts += 1;
            }
            // The cut is repaired: new entries follow the durable ones, and reopen agrees.
            let seq = durable_part(&model, got)
                .get(&99)
                .map_or(1, |e| e.last().unwrap().0 + 1);
            store.append(99, seq, got + 1, b"after").unwrap();
            assert_eq!(store.sync().await.unwrap(), got + 1);
            drop(store);
            let (store, recovered) = HistoryStore::open(&path, 0, options.clone()).await.unwrap();
            assert_eq!(recovered.durable_source, got + 1);
            assert_eq!(recovered.truncated_tail, None);
            drop(store);
            std::fs::write(&seg, &original).unwrap();
        }
        assert!(cuts > 0);
    });
}

#[test]
fn damage_before_durable_entries_is_refused_with_file_and_offset() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let options = HistoryOptions::small_for_tests(1 << 20);
        let (store, _) = HistoryStore::open(&path, 0, options.clone()).await.unwrap();
        let mut model = Model::new();
        fill_with_checkpoints(&store, &mut model, 4, 30).await;
        drop(store);
        let seg = active_segment(&path);
        let original = std::fs::read(&seg).unwrap();
        // Damage in the first sync's entries: later syncs prove it was durable.
        let mut damaged = original.clone();
        damaged[4096 + 60] ^= 0xFF;
        std::fs::write(&seg, &damaged).unwrap();
        match HistoryStore::open(&path, 0, options.clone()).await {
            Err(Error::Corrupt {
                segment, offset, ..
            }) => {
                assert_eq!(segment, seg);
                assert_eq!(offset, 4096);
            }
            other => panic!("expected Corrupt, got {:?}", other.map(|(_, r)| r)),
        }
        // Damage inside the newest sync only: a torn tail, cut and reported.
        let mut damaged = original.clone();
        let last_entry = original.len() - 4096;
        let at = (last_entry..original.len())
            .rev()
            .find(|&i| original[i] != 0)
            .unwrap();
        damaged[at] ^= 0xFF;
        std::fs::write(&seg, &damaged).unwrap();
        let (_, recovered) = HistoryStore::open(&path, 0, options.clone()).await.unwrap();
        let torn = recovered.truncated_tail.expect("a torn tail");
        assert_eq!(torn.segment, seg);
        assert!(torn.offset < at as u64);
        // A damaged sealed index is refused too.
        let (store, _) = HistoryStore::open(&path, 0, HistoryOptions::small_for_tests(64 * 1024))
            .await
            .unwrap();
        fill_with_checkpoints(&store, &mut model, 10, 100).await;
        drop(store);
        let idx = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "idx"))
            .unwrap();
        let mut bytes = std::fs::read(&idx).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&idx, &bytes).unwrap();
        match HistoryStore::open(&path, 0, options).await {
            Err(Error::Corrupt {
                segment, offset: 0, ..
            }) => assert_eq!(segment, idx),
            other => panic!("expected Corrupt, got {:?}", other.map(|(_, r)| r)),
        }
    });
}

fn check_fault(point: FaultPoint, skip: u64) {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let faults = Faults::new();
        let mut options = HistoryOptions::small_for_tests(64 * 1024);
        options.faults = Some(faults.clone());
        let (store, _) = HistoryStore::open(&path, 0, options.clone()).await.unwrap();
        let mut model = Model::new();
        let durable = *fill_with_checkpoints(&store, &mut model, 3, 50)
            .await
            .last()
            .unwrap();
        faults.fail_once(point, skip, libc::EIO);
        // Enough to fill a segment, so a seal happens too.
        let outcome = fill_until_failure(&store, &mut model).await;
        match outcome {
            Error::Failed { cause } => match cause.as_ref() {
                Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::EIO)),
                other => panic!("{point:?}: unexpected cause {other}"),
            },
            other => panic!("{point:?}: unexpected {other}"),
        }
        let durable_after = store.durable_source();
        assert!(durable_after >= durable);
        faults.clear();
        // Sticky: nothing more is accepted, even with the fault gone; reads
        // of what was durable go on (a full disk stops writes, not reads).
        assert!(matches!(
            store.append(1, 1_000_000, u64::MAX - 1, b"x"),
            Err(Error::Failed { .. })
        ));
        assert!(matches!(store.sync().await, Err(Error::Failed { .. })));
        let before_reopen = entries(store.read(1, 1, 10, 1 << 20).await.unwrap());
        drop(store);
        let (store, recovered) =
            HistoryStore::open(&path, 0, HistoryOptions::small_for_tests(64 * 1024))
                .await
                .unwrap();
        let after_reopen = entries(store.read(1, 1, 10, 1 << 20).await.unwrap());
        assert!(
            !before_reopen.is_empty() && after_reopen.starts_with(&before_reopen),
            "{point:?}: what was readable after the failure is what a reopen finds"
        );
        assert!(
            recovered.durable_source >= durable_after,
            "{point:?}: lost durable entries"
        );
        check_exact(&store, &durable_part(&model, recovered.durable_source)).await;
    });
}

async fn fill_until_failure(store: &HistoryStore, model: &mut Model) -> Error {
    let mut source = store.durable_source();
    for round in 0..1000u64 {
        for _ in 0..50 {
            let c = round % 7 + 1;
            let e = model.entry(c).or_default();
            let seq = e.last().map_or(1, |l| l.0 + 1);
            source += 1;
            let bytes = payload_of(c, seq, 200);
            store.append(c, seq, source, &bytes).unwrap();
            e.push((seq, source, bytes));
        }
        if let Err(e) = store.sync().await {
            return e;
        }
    }
    panic!("the injected fault never fired");
}

#[test]
fn a_failed_write_is_sticky() {
    check_fault(FaultPoint::HistoryWrite, 0);
    check_fault(FaultPoint::HistoryWrite, 7);
}

#[test]
fn a_failed_fdatasync_is_sticky() {
    check_fault(FaultPoint::HistorySync, 0);
    check_fault(FaultPoint::HistorySync, 5);
}

/// A seal is four faultable steps: write and sync the index file, write
/// and sync the next segment's header. Each one failing is sticky, and a
/// reopen recovers whatever step was reached.
#[test]
fn a_failed_seal_is_sticky_at_every_step() {
    for skip in 0..4 {
        check_fault(FaultPoint::HistorySeal, skip);
    }
}

#[test]
fn retention_deletes_files_and_reads_say_where_history_starts() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let options = HistoryOptions::small_for_tests(64 * 1024);
        let (store, _) = HistoryStore::open(&path, 0, options.clone()).await.unwrap();
        let (mut model, mut rng, mut source) = (Model::new(), Rng::new(3), 0);
        fill(&store, &mut model, &mut rng, 5_000, 10, &mut source).await;
        let before = files(&path, ".seg");
        assert!(before > 8);
        let report = store.apply_retention(Some(3)).await.unwrap();
        assert_eq!(report.segments_deleted as usize, before - 4);
        assert_eq!(files(&path, ".seg"), 4);
        assert_eq!(files(&path, ".idx"), 3);
        for (&c, expected) in &model {
            let first_seq = match store.read(c, 1, 10, u64::MAX).await.unwrap() {
                Page::StartsAt { first_seq } => first_seq,
                Page::Entries(es) => {
                    panic!("conversation {c}: old entries still readable: {}", es.len())
                }
            };
            assert!(first_seq > expected[0].0);
            let rest: Vec<_> = expected
                .iter()
                .filter(|e| e.0 >= first_seq)
                .cloned()
                .collect();
            assert_eq!(
                entries(store.read(c, first_seq, 100_000, u64::MAX).await.unwrap()),
                rest
            );
            assert!(
                matches!(store.read_before(c, first_seq, 10, u64::MAX).await.unwrap(), Page::StartsAt { first_seq: s } if s == first_seq)
            );
        }
        // Per conversation: drop_before answers StartsAt at once (after sync)…
        let c = 4;
        let cut = model[&c][model[&c].len() - 10].0;
        store.drop_before(c, cut).unwrap();
        store.sync().await.unwrap();
        assert!(
            matches!(store.read(c, cut - 1, 5, u64::MAX).await.unwrap(), Page::StartsAt { first_seq } if first_seq == cut)
        );
        assert!(
            matches!(store.read_before(c, cut, 5, u64::MAX).await.unwrap(), Page::StartsAt { first_seq } if first_seq == cut)
        );
        let page = entries(store.read_before(c, cut + 3, 50, u64::MAX).await.unwrap());
        assert!(page.iter().all(|e| e.0 >= cut && e.0 < cut + 3));
        // …and a segment whose conversations are all dropped is deleted whole.
        for (&c, es) in &model {
            store.drop_before(c, es.last().unwrap().0 + 1).unwrap();
        }
        // New conversations fill new segments, sealing the old ones' successors.
        for i in 1..=1_000u64 {
            store
                .append(1_000 + i % 10, i / 10 + 1, 1_000_000 + i, &[1; 200])
                .unwrap();
        }
        store.sync().await.unwrap();
        let report = store.apply_retention(None).await.unwrap();
        assert!(report.segments_deleted >= 3, "{report:?}");
        drop(store);
        // Retention points survive a reopen.
        let (store, _) = HistoryStore::open(&path, 0, options).await.unwrap();
        assert!(matches!(
            store.read(c, cut, 5, u64::MAX).await.unwrap(),
            Page::StartsAt { .. }
        ));
    });
}

#[test]
fn summary_memory_for_1m_entries_over_10k_conversations_stays_within_its_formula() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        const CONVERSATIONS: u64 = 10_000;
        const ENTRIES: u64 = 1_000_000;
        let options = HistoryOptions::small_for_tests(8 << 20);
        let (store, _) = HistoryStore::open(&path, 0, options).await.unwrap();
        let mut seqs = vec![0u64; CONVERSATIONS as usize];
        let mut rng = Rng::new(5);
        for source in 1..=ENTRIES {
            let c = rng.below(CONVERSATIONS);
            seqs[c as usize] += 1;
            store
                .append(c, seqs[c as usize], source, &[7u8; 16])
                .unwrap();
            if source % 10_000 == 0 {
                store.sync().await.unwrap();
            }
        }
        store.sync().await.unwrap();
        let m: HistoryMemory = store.memory();
        assert_eq!(m.conversations, CONVERSATIONS);
        assert!(m.sealed_segments >= 6, "{m:?}");
        // Per sealed segment: a fixed header plus one 8-byte fence per 85
        // conversations in it; per conversation: one table slot.
        let fences = CONVERSATIONS.div_ceil(85) as usize;
        let per_segment = HistoryMemory::SEALED_FIXED_BYTES + 8 * fences;
        assert!(
            m.sealed_summary_bytes <= m.sealed_segments as usize * per_segment,
            "{m:?}"
        );
        let slot = 8 + 24 + 1;
        assert!(
            m.table_bytes <= 2 * CONVERSATIONS as usize * slot + 16 * slot,
            "{m:?}"
        );
        // Well under today's 8 bytes per message, and not per message at all.
        assert!(
            m.summary_bytes() < ENTRIES as usize,
            "{m:?}: one byte per message or more"
        );
        eprintln!("memory after {ENTRIES} entries over {CONVERSATIONS} conversations: {m:?}");
        // The active segment's index is bounded by the segment: ≤ 16 bytes per
        // entry in it plus a map slot per conversation in it.
        assert!(
            m.active_index_bytes
                <= m.active_entries as usize * 16 * 2 + 2 * CONVERSATIONS as usize * 64,
            "{m:?}"
        );
    });
}

#[test]
fn reads_running_during_syncs_and_seals_see_every_durable_entry() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (store, _) = HistoryStore::open(&path, 0, HistoryOptions::small_for_tests(64 * 1024))
            .await
            .unwrap();
        let writer = {
            let store = store.clone();
            glommio::spawn_local(async move {
                for source in 1..=12_000u64 {
                    let (c, seq) = (source % 3 + 1, source / 3 + 1);
                    store
                        .append(c, seq, source, &payload_of(c, seq, (seq % 97) as usize))
                        .unwrap();
                    if source % 40 == 0 {
                        store.sync().await.unwrap();
                    }
                }
                store.sync().await.unwrap();
            })
        };
        let mut pages = 0;
        while store.durable_source() < 12_000 {
            let durable = store.durable_source();
            for c in 1..=3u64 {
                // Every seq of c whose source is durable must be in the page.
                let newest = (1..=durable)
                    .rev()
                    .find(|s| s % 3 + 1 == c)
                    .map_or(0, |s| s / 3 + 1);
                let page = entries(store.read_before(c, u64::MAX, 300, u64::MAX).await.unwrap());
                if newest == 0 {
                    continue;
                }
                assert!(
                    page[0].0 >= newest,
                    "conversation {c}: newest {} < durable {newest}",
                    page[0].0
                );
                for (i, e) in page.iter().enumerate() {
                    assert_eq!(e.0, page[0].0 - i as u64, "gap in conversation {c}");
                    assert_eq!(e.2, payload_of(c, e.0, (e.0 % 97) as usize));
                }
                // Conversation 1's first seq is 2 (source 3); the others start at 1.
                let first = if c == 1 { 2 } else { 1 };
                let from = newest.saturating_sub(250).max(first);
                let page = entries(store.read(c, from, 300, u64::MAX).await.unwrap());
                assert!(page.len() as u64 > newest - from, "conversation {c}: forward page misses durable entries: from {from} newest {newest} got {} first {:?} last {:?}", page.len(), page.first().map(|e| e.0), page.last().map(|e| e.0));
                for (i, e) in page.iter().enumerate() {
                    assert_eq!(e.0, from + i as u64, "gap in conversation {c}");
                }
                pages += 1;
            }
            glommio::yield_if_needed().await;
        }
        writer.await;
        assert!(pages > 10, "only {pages} pages raced the writer");
    });
}

#[test]
fn replaying_from_durable_source_inclusive_restores_a_source_cut_in_half() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let options = HistoryOptions::small_for_tests(1 << 20);
        let (store, _) = HistoryStore::open(&path, 0, options.clone()).await.unwrap();
        for source in 1..=9u64 {
            store
                .append(source, 1, source, &payload_of(source, 1, 100))
                .unwrap();
        }
        store.sync().await.unwrap();
        let size_before = std::fs::metadata(active_segment(&path)).unwrap().len();
        // One log position carrying five messages (a Raft entry with a batch).
        let batch: Vec<(u64, u64)> = (1..=5u64).map(|c| (c, 2)).collect();
        for &(c, seq) in &batch {
            store.append(c, seq, 10, &payload_of(c, seq, 100)).unwrap();
        }
        assert_eq!(store.sync().await.unwrap(), 10);
        drop(store);
        // Cut inside the third message of source 10 (entries are 160 bytes).
        let seg = active_segment(&path);
        let bytes = std::fs::read(&seg).unwrap();
        let first_of_batch = 4096 + 9 * 160;
        assert!(size_before as usize >= first_of_batch);
        std::fs::write(&seg, &bytes[..first_of_batch + 2 * 160 + 50]).unwrap();
        let (store, recovered) = HistoryStore::open(&path, 0, options).await.unwrap();
        assert_eq!(
            recovered.durable_source, 10,
            "two entries of source 10 survived"
        );
        assert!(recovered.truncated_tail.is_some());
        // Replay from durable_source inclusive: the two it has are skipped.
        let outcomes: Vec<Appended> = batch
            .iter()
            .map(|&(c, seq)| store.append(c, seq, 10, &payload_of(c, seq, 100)).unwrap())
            .collect();
        assert_eq!(
            outcomes,
            [
                Appended::Duplicate,
                Appended::Duplicate,
                Appended::Staged,
                Appended::Staged,
                Appended::Staged
            ]
        );
        store.sync().await.unwrap();
        for c in 1..=5u64 {
            let page = entries(store.read(c, 1, 10, u64::MAX).await.unwrap());
            assert_eq!(
                page,
                vec![
                    (1, c, payload_of(c, 1, 100)),
                    (2, 10, payload_of(c, 2, 100))
                ]
            );
        }
    });
}
