//! Negative controls for the ledger checker (`courier_tools::ledger`),
//! without a network: a small in-memory model of a server — per
//! conversation a durable log and a volatile tail, dedup by
//! `(sender, client_msg_id)`, group "fsyncs" that make the tail durable,
//! crashes that lose the tail — driven by a seeded random schedule of
//! writers sending, retrying unknown outcomes with the same id, re-sending
//! acknowledged messages, observers receiving live events, and crashes
//! followed by a full read and a check.
//!
//! The honest model must pass every seed. Each broken model must be caught
//! on every seed, by the violation that names its bug: acking before the
//! fsync loses acknowledged messages, skipping dedup duplicates them,
//! delivering before the fsync shows messages that a crash then loses, a
//! recovery that drops a durable record loses acknowledged messages.
//!
//! `COURIER_LEDGER_SEEDS=N` runs N seeds (default 100).
#![allow(clippy::unwrap_used)]

use courier_core::api::{Broadcast, ConversationId, Message, Millis, Seq, UserId};
use courier_tools::ledger::{CheckReport, Key, Ledger, Planned, Violation, WriterId};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Honest,
    AckBeforeFsync,
    SkipDedup,
    DeliverBeforeFsync,
    RecoveryDropsLastRecord,
}

/// xorshift64*: small, seeded, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Conv {
    durable: Vec<Message>,
    tail: Vec<Message>,
}

struct Model {
    mode: Mode,
    convs: BTreeMap<ConversationId, Conv>,
    /// Sends waiting for their fsync: (key, conversation, seq).
    waiting: Vec<(Key, ConversationId, Seq)>,
}

impl Model {
    fn head(&self, c: ConversationId) -> u64 {
        let conv = &self.convs[&c];
        (conv.durable.len() + conv.tail.len()) as u64
    }

    /// A send arrives. Returns the ack if the model answers at once.
    fn send(&mut self, ledger: &mut Ledger, p: &Planned, sender: UserId) -> Option<Seq> {
        let conv = self.convs.get_mut(&p.conversation).unwrap();
        if self.mode != Mode::SkipDedup {
            let same = |m: &&Message| m.sender == sender && m.client_msg_id == p.client_msg_id;
            if let Some(m) = conv.durable.iter().find(same) {
                return Some(m.seq);
            }
            if let Some(m) = conv.tail.iter().find(same) {
                self.waiting.push((p.key, p.conversation, m.seq));
                return None;
            }
        }
        let seq = Seq((conv.durable.len() + conv.tail.len()) as u64 + 1);
        let m = Message {
            conversation: p.conversation,
            seq,
            sender,
            client_msg_id: p.client_msg_id,
            ts: Millis(seq.0),
            body: p.body.clone(),
            mentions: vec![],
            broadcast: Broadcast::None,
            change: None,
            live: Default::default(),
            thread: None,
        };
        if self.mode == Mode::DeliverBeforeFsync {
            ledger.delivered(&m);
        }
        conv.tail.push(m);
        if self.mode == Mode::AckBeforeFsync {
            return Some(seq);
        }
        self.waiting.push((p.key, p.conversation, seq));
        None
    }

    /// Makes every tail durable, then acks and delivers.
    fn fsync(&mut self, ledger: &mut Ledger) {
        for conv in self.convs.values_mut() {
            for m in conv.tail.drain(..) {
                if self.mode != Mode::DeliverBeforeFsync {
                    ledger.delivered(&m);
                }
                conv.durable.push(m);
            }
        }
        for (key, _, seq) in self.waiting.drain(..) {
            ledger.acked(key, seq);
        }
    }

    /// Loses every tail — or, with `after_fsync`, crashes right after the
    /// tail became durable, before any ack or delivery; the waiting sends
    /// never hear back either way.
    fn crash(&mut self, ledger: &mut Ledger, after_fsync: bool) {
        for conv in self.convs.values_mut() {
            if after_fsync {
                let tail: Vec<Message> = conv.tail.drain(..).collect();
                conv.durable.extend(tail);
            }
            conv.tail.clear();
            if self.mode == Mode::RecoveryDropsLastRecord {
                conv.durable.pop();
            }
        }
        for (key, _, _) in self.waiting.drain(..) {
            ledger.indeterminate(key);
        }
    }

    fn read_all(&self) -> BTreeMap<ConversationId, (Vec<Message>, Seq)> {
        self.convs
            .iter()
            .map(|(c, conv)| (*c, (conv.durable.clone(), Seq(conv.durable.len() as u64))))
            .collect()
    }
}

/// Runs one seed; returns every check's report.
fn run(mode: Mode, seed: u64) -> Vec<CheckReport> {
    const STEPS: u64 = 600;
    let mut rng = Rng::new(seed);
    let mut ledger = Ledger::new(seed);
    let users = [UserId(11), UserId(12), UserId(13)];
    let writers: Vec<WriterId> = users.iter().map(|u| ledger.add_writer(*u)).collect();
    let convs = [ConversationId(1), ConversationId(2)];
    let mut model = Model {
        mode,
        convs: convs.iter().map(|c| (*c, Conv::default())).collect(),
        waiting: Vec::new(),
    };
    for c in convs {
        ledger.watch(c);
    }
    let mut reports = Vec::new();
    for step in 0..STEPS {
        let w = rng.below(writers.len() as u64) as usize;
        let writer = writers[w];
        let roll = rng.below(100);
        let planned = if roll < 45 {
            let c = convs[rng.below(convs.len() as u64) as usize];
            Some(ledger.plan(writer, c))
        } else if roll < 55 {
            ledger.unresolved(writer).first().map(|k| ledger.retry(*k))
        } else if roll < 62 {
            let acked = ledger.acknowledged(writer);
            (!acked.is_empty())
                .then(|| acked[rng.below(acked.len() as u64) as usize].0)
                .map(|k| ledger.retry(k))
        } else {
            None
        };
        if let Some(p) = planned {
            if let Some(seq) = model.send(&mut ledger, &p, users[w]) {
                ledger.acked(p.key, seq);
            }
        } else if roll < 90 {
            model.fsync(&mut ledger);
        } else if roll < 96 || step + 1 == STEPS {
            let after_fsync = rng.below(2) == 0;
            model.crash(&mut ledger, after_fsync);
            reports.push(ledger.check(&model.read_all()));
        }
    }
    assert!(convs.iter().any(|c| model.head(*c) > 0));
    reports
}

fn seeds() -> u64 {
    std::env::var("COURIER_LEDGER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

/// Every seed of `mode` must end with a report matching `caught`.
fn must_catch(mode: Mode, caught: impl Fn(&Violation) -> bool) {
    for seed in 0..seeds() {
        let reports = run(mode, seed);
        let last = reports.last().unwrap();
        assert!(
            last.has(&caught),
            "{mode:?} not caught by seed {seed} (COURIER_LEDGER_SEEDS): {last}"
        );
    }
}

#[test]
fn the_honest_model_passes_every_seed() {
    let mut checks = 0;
    let mut acked = 0;
    let mut indeterminate_present = 0;
    for seed in 0..seeds() {
        for report in run(Mode::Honest, seed) {
            assert!(report.is_clean(), "seed {seed}: {report}");
            checks += 1;
            acked += report.acked;
            indeterminate_present += report.indeterminate_present;
        }
    }
    // The schedule really exercises what the checker looks at.
    assert!(checks > seeds() * 5, "{checks} checks");
    assert!(acked > 0 && indeterminate_present > 0);
}

#[test]
fn acking_before_fsync_is_caught() {
    // Lost acknowledged messages; a re-send of one is then stored anew
    // under another seq than its first ack.
    must_catch(Mode::AckBeforeFsync, |v| {
        matches!(
            v,
            Violation::AckedMissing { .. }
                | Violation::AckMismatch { .. }
                | Violation::AckChanged { .. }
        )
    });
}

#[test]
fn skipping_dedup_is_caught() {
    must_catch(Mode::SkipDedup, |v| {
        matches!(
            v,
            Violation::Duplicate { .. } | Violation::AckChanged { .. }
        )
    });
}

#[test]
fn delivering_before_fsync_is_caught() {
    must_catch(Mode::DeliverBeforeFsync, |v| {
        matches!(v, Violation::SeenMissing { .. })
    });
}

#[test]
fn a_recovery_that_drops_a_durable_record_is_caught() {
    must_catch(Mode::RecoveryDropsLastRecord, |v| {
        matches!(
            v,
            Violation::AckedMissing { .. } | Violation::SeenMissing { .. }
        )
    });
}
