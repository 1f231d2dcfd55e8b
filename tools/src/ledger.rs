//! A ledger checker for end-to-end durability tests, in the manner of
//! Jepsen's: writers send messages whose bodies say who wrote them, the
//! ledger records what was attempted, acknowledged, refused or left
//! undecided, and after every restart (or whenever you like) it compares a
//! full read of every conversation, from seq 1, with that history.
//!
//! # What is checked
//! A [`Ledger::check`] of a full read fails with a [`Violation`] for:
//! - an acknowledged message that is missing ([`Violation::AckedMissing`]),
//!   or stored at another seq than its ack said ([`Violation::AckMismatch`]);
//! - a message stored twice ([`Violation::Duplicate`]);
//! - a message nobody sent, a body that is not the sender's, a message in
//!   the wrong conversation or by the wrong sender ([`Violation::Unexpected`],
//!   [`Violation::ContentMismatch`]);
//! - seqs that are not exactly `1, 2, …, head` ([`Violation::Gap`],
//!   [`Violation::Reorder`]);
//! - a message someone saw (delivered live, or in an earlier read) that is
//!   missing or different now ([`Violation::SeenMissing`]);
//! - a message whose send was refused outright ([`Violation::RefusedPresent`])
//!   or that was absent in an earlier read and came back without being sent
//!   again ([`Violation::Resurrected`]).
//!
//! Recorded as they happen: two acks for one message that disagree
//! ([`Violation::AckChanged`]), two messages acknowledged at the same seq
//! ([`Violation::AckCollision`]), and a live delivery that contradicts what
//! was seen before.
//!
//! A send whose outcome is unknown (timeout, dropped connection,
//! `Unavailable`, a crash) is *indeterminate*: it may be stored at most once,
//! and once seen it must stay.
//!
//! # Use
//! ```text
//! let mut ledger = Ledger::new(seed);
//! let w = ledger.add_writer(user);
//! ledger.watch(conversation);
//! let p = ledger.plan(w, conversation);            // body + client_msg_id
//! match client.send_with_id(p.conversation, p.client_msg_id, &Outgoing::text(&p.body)).await {
//!     Ok(ack) => ledger.acked(p.key, ack.seq),
//!     Err(e) if e.is_transient() => ledger.indeterminate(p.key),
//!     Err(_) => ledger.refused(p.key),
//! }
//! for key in ledger.unresolved(w) { let p = ledger.retry(key); … }   // same key, same id
//! let reads = read_all(&mut client, ledger.conversations()).await?;
//! let report = ledger.check(&reads);
//! assert!(report.is_clean(), "{report}");
//! ```
//!
//! The ledger is plain data (no I/O, no clock); [`read_conversation`] and
//! [`read_all`] are the only async parts and work over any [`Requester`].
//! Bounded by what the test sends: one small entry per planned message and
//! one per (conversation, seq) observed.

use crate::error::ClientError;
use crate::requester::Requester;
use courier_core::api::{ClientMsgId, ConversationId, HistoryAnchor, Message, Seq, UserId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Messages per `History` page the readers ask for (the protocol's page maximum).
pub const READ_PAGE_MESSAGES: u32 = 100;

/// Pages one [`read_conversation`] reads at most (10M messages): a bound,
/// not a target.
pub const READ_PAGES_MAX: u64 = 100_000;

/// Violations a report prints at most (it counts all of them).
const REPORT_VIOLATIONS_SHOWN: usize = 20;

/// Counters of a key fit in 48 bits (the rest of the id is the run and writer).
const COUNTER_MAX: u64 = (1 << 48) - 1;

/// A writer: one sender (user) of ledger messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriterId(pub u16);

/// The identity of one logical message: (writer, counter). Every attempt
/// to send it (retries included) uses the same body and `client_msg_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Who sends it.
    pub writer: WriterId,
    /// The writer's counter, from 1.
    pub counter: u64,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}#{}", self.writer.0, self.counter)
    }
}

/// One attempt to send: what to put on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The message's identity.
    pub key: Key,
    /// Where it goes.
    pub conversation: ConversationId,
    /// The idempotency key (the same for every attempt of `key`).
    pub client_msg_id: ClientMsgId,
    /// The body (the same for every attempt of `key`).
    pub body: String,
}

/// How a message was observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Delivered live to a subscribed connection.
    Live,
    /// Returned by an earlier full read.
    Read,
}

/// A broken promise, with what was expected and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An acknowledged message is not in its conversation.
    AckedMissing {
        /// The message.
        key: Key,
        /// Its conversation.
        conversation: ConversationId,
        /// The seq its ack named.
        acked: Seq,
    },
    /// An acknowledged message is stored at another seq than acknowledged.
    AckMismatch {
        /// The message.
        key: Key,
        /// Its conversation.
        conversation: ConversationId,
        /// The seq its ack named.
        acked: Seq,
        /// Where it is.
        stored: Seq,
    },
    /// Two acks of the same message (a retry) named different seqs.
    AckChanged {
        /// The message.
        key: Key,
        /// The first ack.
        first: Seq,
        /// A later ack.
        then: Seq,
    },
    /// Two different messages were acknowledged at the same seq.
    AckCollision {
        /// The conversation.
        conversation: ConversationId,
        /// The seq.
        seq: Seq,
        /// The message acknowledged first.
        first: Key,
        /// The other one.
        then: Key,
    },
    /// One message is stored more than once.
    Duplicate {
        /// The message.
        key: Key,
        /// Where it was found (conversation, seq), in read order.
        at: Vec<(ConversationId, Seq)>,
    },
    /// A stored message nobody sent (or not in this conversation).
    Unexpected {
        /// The conversation.
        conversation: ConversationId,
        /// Where.
        seq: Seq,
        /// Why it is not ours.
        why: String,
    },
    /// A message that is ours but differs from what was sent.
    ContentMismatch {
        /// The message.
        key: Key,
        /// The conversation.
        conversation: ConversationId,
        /// Where.
        seq: Seq,
        /// Which field and how.
        detail: String,
    },
    /// The read skipped seqs (or stopped short of the head).
    Gap {
        /// The conversation.
        conversation: ConversationId,
        /// The seq that should have come next.
        expected: Seq,
        /// What came instead (the head, if the read stopped short).
        got: Seq,
    },
    /// A seq came again or went backwards.
    Reorder {
        /// The conversation.
        conversation: ConversationId,
        /// The seq before it.
        previous: Seq,
        /// The seq that came.
        got: Seq,
    },
    /// A message seen before (live or in an earlier read) is missing or
    /// different now.
    SeenMissing {
        /// The conversation.
        conversation: ConversationId,
        /// Where it was seen.
        seq: Seq,
        /// What was seen there.
        seen: Key,
        /// How it was seen.
        source: Source,
        /// What is there now (`None`: nothing).
        now: Option<Key>,
    },
    /// A message whose only send was refused exists.
    RefusedPresent {
        /// The message.
        key: Key,
        /// The conversation.
        conversation: ConversationId,
        /// Where.
        seq: Seq,
    },
    /// A message absent from an earlier read reappeared with no new attempt.
    Resurrected {
        /// The message.
        key: Key,
        /// The conversation.
        conversation: ConversationId,
        /// Where.
        seq: Seq,
    },
    /// A watched conversation was not part of the read.
    NotRead {
        /// The conversation.
        conversation: ConversationId,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Violation::*;
        match self {
            AckedMissing {
                key,
                conversation,
                acked,
            } => write!(
                f,
                "acknowledged {key} missing: acked at conversation {} seq {}",
                conversation.0, acked.0
            ),
            AckMismatch {
                key,
                conversation,
                acked,
                stored,
            } => write!(
                f,
                "{key} in conversation {}: acked seq {}, stored at seq {}",
                conversation.0, acked.0, stored.0
            ),
            AckChanged { key, first, then } => {
                write!(f, "{key} acked at seq {} and then at seq {}", first.0, then.0)
            }
            AckCollision {
                conversation,
                seq,
                first,
                then,
            } => write!(
                f,
                "conversation {} seq {} acked for both {first} and {then}",
                conversation.0, seq.0
            ),
            Duplicate { key, at } => {
                let at: Vec<String> = at.iter().map(|(c, s)| format!("{}:{}", c.0, s.0)).collect();
                write!(f, "{key} stored {} times at {}", at.len(), at.join(", "))
            }
            Unexpected {
                conversation,
                seq,
                why,
            } => write!(
                f,
                "unexpected message at conversation {} seq {}: {why}",
                conversation.0, seq.0
            ),
            ContentMismatch {
                key,
                conversation,
                seq,
                detail,
            } => write!(
                f,
                "{key} at conversation {} seq {} differs: {detail}",
                conversation.0, seq.0
            ),
            Gap {
                conversation,
                expected,
                got,
            } => write!(
                f,
                "gap in conversation {}: expected seq {}, got {}",
                conversation.0, expected.0, got.0
            ),
            Reorder {
                conversation,
                previous,
                got,
            } => write!(
                f,
                "reorder in conversation {}: seq {} after {}",
                conversation.0, got.0, previous.0
            ),
            SeenMissing {
                conversation,
                seq,
                seen,
                source,
                now,
            } => {
                let how = match source {
                    Source::Live => "delivered live",
                    Source::Read => "read earlier",
                };
                let now = now.map_or("nothing".to_owned(), |k| k.to_string());
                write!(
                    f,
                    "{seen} {how} at conversation {} seq {}, now {now} is there",
                    conversation.0, seq.0
                )
            }
            RefusedPresent {
                key,
                conversation,
                seq,
            } => write!(
                f,
                "{key} was refused but is stored at conversation {} seq {}",
                conversation.0, seq.0
            ),
            Resurrected {
                key,
                conversation,
                seq,
            } => write!(
                f,
                "{key} was absent from an earlier read and reappeared at conversation {} seq {} without a new attempt",
                conversation.0, seq.0
            ),
            NotRead { conversation } => {
                write!(f, "conversation {} was not read", conversation.0)
            }
        }
    }
}

/// The outcome of one [`Ledger::check`], with figures for a test's output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Conversations read.
    pub conversations: usize,
    /// Messages read in all.
    pub messages: u64,
    /// Acknowledged messages found where their ack said.
    pub acked: u64,
    /// Messages with an unknown outcome found stored (once).
    pub indeterminate_present: u64,
    /// Messages with an unknown outcome not stored.
    pub indeterminate_absent: u64,
    /// Every violation: those recorded since the ledger began, then this read's.
    pub violations: Vec<Violation>,
}

impl CheckReport {
    /// True when nothing was violated.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// True if some violation matches `pred`.
    pub fn has(&self, pred: impl Fn(&Violation) -> bool) -> bool {
        self.violations.iter().any(pred)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} conversations, {} messages ({} acked, {} indeterminate stored, {} indeterminate absent), {} violations",
            self.conversations,
            self.messages,
            self.acked,
            self.indeterminate_present,
            self.indeterminate_absent,
            self.violations.len()
        )?;
        for v in self.violations.iter().take(REPORT_VIOLATIONS_SHOWN) {
            write!(f, "\n  - {v}")?;
        }
        if self.violations.len() > REPORT_VIOLATIONS_SHOWN {
            write!(
                f,
                "\n  … and {} more",
                self.violations.len() - REPORT_VIOLATIONS_SHOWN
            )?;
        }
        Ok(())
    }
}

/// What is known about one planned message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Attempted; it may or may not be stored.
    Maybe,
    /// Acknowledged at this seq: it must be stored there.
    Acked(Seq),
    /// Its only attempt was refused: it must never be stored.
    Refused,
}

#[derive(Clone, Debug)]
struct Entry {
    conversation: ConversationId,
    outcome: Outcome,
    /// Attempts made so far.
    attempts: u32,
    /// Attempts in flight (sent, no verdict yet).
    in_flight: u32,
    /// A full read showed it absent, and nothing was attempted since.
    absent_since_read: bool,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    key: Key,
    source: Source,
}

/// The history of a test run and the checker (see the module docs).
#[derive(Clone, Debug)]
pub struct Ledger {
    run: u64,
    body_bytes: usize,
    writers: Vec<(UserId, u64)>,
    conversations: BTreeSet<ConversationId>,
    entries: BTreeMap<Key, Entry>,
    /// Every (conversation, seq) observed, with what was there.
    seen: BTreeMap<ConversationId, BTreeMap<Seq, Seen>>,
    /// Acks by position, to catch two messages acked at one seq.
    acked_at: BTreeMap<(ConversationId, Seq), Key>,
    /// Violations recorded as they happened (not by a read).
    recorded: Vec<Violation>,
}

impl Ledger {
    /// An empty ledger. `run` (e.g. the test's seed) goes into every body
    /// and id, so messages of different runs never match.
    pub fn new(run: u64) -> Ledger {
        Ledger {
            run,
            body_bytes: 0,
            writers: Vec::new(),
            conversations: BTreeSet::new(),
            entries: BTreeMap::new(),
            seen: BTreeMap::new(),
            acked_at: BTreeMap::new(),
            recorded: Vec::new(),
        }
    }

    /// Pads every body to at least `bytes` (deterministic filler), for tests
    /// that need volume.
    pub fn with_body_bytes(mut self, bytes: usize) -> Ledger {
        self.body_bytes = bytes;
        self
    }

    /// Registers a writer sending as `user`.
    pub fn add_writer(&mut self, user: UserId) -> WriterId {
        let id = u16::try_from(self.writers.len()).expect("at most 65,536 writers");
        self.writers.push((user, 0));
        WriterId(id)
    }

    /// Adds a conversation to the set every check must read.
    pub fn watch(&mut self, conversation: ConversationId) {
        self.conversations.insert(conversation);
    }

    /// The watched conversations.
    pub fn conversations(&self) -> Vec<ConversationId> {
        self.conversations.iter().copied().collect()
    }

    /// The user of a writer.
    pub fn user(&self, writer: WriterId) -> UserId {
        self.writers[usize::from(writer.0)].0
    }

    /// A new message of `writer` for `conversation`, recorded as attempted
    /// (in flight) from now on.
    pub fn plan(&mut self, writer: WriterId, conversation: ConversationId) -> Planned {
        self.watch(conversation);
        let slot = &mut self.writers[usize::from(writer.0)];
        slot.1 += 1;
        assert!(slot.1 <= COUNTER_MAX, "writer counter overflow");
        let key = Key {
            writer,
            counter: slot.1,
        };
        self.entries.insert(
            key,
            Entry {
                conversation,
                outcome: Outcome::Maybe,
                attempts: 1,
                in_flight: 1,
                absent_since_read: false,
            },
        );
        self.planned(key, conversation)
    }

    /// Another attempt of `key` (same conversation, body and id): after an
    /// unknown outcome, or to check that a repeated send of an acknowledged
    /// message returns the same ack.
    pub fn retry(&mut self, key: Key) -> Planned {
        let entry = self.entries.get_mut(&key).expect("retry of an unknown key");
        entry.attempts += 1;
        entry.in_flight += 1;
        entry.absent_since_read = false;
        if entry.outcome == Outcome::Refused {
            // A new attempt may store it after all.
            entry.outcome = Outcome::Maybe;
        }
        let conversation = entry.conversation;
        self.planned(key, conversation)
    }

    fn planned(&self, key: Key, conversation: ConversationId) -> Planned {
        Planned {
            key,
            conversation,
            client_msg_id: self.client_msg_id(key),
            body: self.body(key, conversation),
        }
    }

    fn client_msg_id(&self, key: Key) -> ClientMsgId {
        (u128::from(self.run | 1) << 64)
            | (u128::from(key.writer.0) << 48)
            | u128::from(key.counter)
    }

    fn body(&self, key: Key, conversation: ConversationId) -> String {
        let mut body = format!(
            "ledger {:016x} w{} n{} c{}",
            self.run, key.writer.0, key.counter, conversation.0
        );
        if body.len() < self.body_bytes {
            body.push(' ');
            let fill = b"abcdefghijklmnopqrstuvwxyz0123456789";
            let mut i = (key.counter as usize).wrapping_add(usize::from(key.writer.0));
            while body.len() < self.body_bytes {
                body.push(char::from(fill[i % fill.len()]));
                i = i.wrapping_add(7);
            }
        }
        body
    }

    /// Parses a body written by this ledger: `Some((key, conversation))`.
    fn parse(&self, body: &str) -> Option<(Key, ConversationId)> {
        let mut words = body.split(' ');
        if words.next()? != "ledger" {
            return None;
        }
        let run = u64::from_str_radix(words.next()?, 16).ok()?;
        if run != self.run {
            return None;
        }
        let writer = words.next()?.strip_prefix('w')?.parse().ok()?;
        let counter = words.next()?.strip_prefix('n')?.parse().ok()?;
        let conversation = words.next()?.strip_prefix('c')?.parse().ok()?;
        Some((
            Key {
                writer: WriterId(writer),
                counter,
            },
            ConversationId(conversation),
        ))
    }

    /// The attempt of `key` was acknowledged at `seq`.
    pub fn acked(&mut self, key: Key, seq: Seq) {
        let entry = self.entries.get_mut(&key).expect("ack of an unknown key");
        entry.in_flight = entry.in_flight.saturating_sub(1);
        let conversation = entry.conversation;
        match entry.outcome {
            Outcome::Acked(first) if first != seq => {
                self.recorded.push(Violation::AckChanged {
                    key,
                    first,
                    then: seq,
                });
                return;
            }
            Outcome::Acked(_) => return,
            Outcome::Maybe | Outcome::Refused => entry.outcome = Outcome::Acked(seq),
        }
        match self.acked_at.get(&(conversation, seq)) {
            Some(&first) if first != key => self.recorded.push(Violation::AckCollision {
                conversation,
                seq,
                first,
                then: key,
            }),
            Some(_) => {}
            None => {
                self.acked_at.insert((conversation, seq), key);
            }
        }
    }

    /// The attempt of `key` ended without a verdict (timeout, dropped
    /// connection, `Unavailable`, the server was killed).
    pub fn indeterminate(&mut self, key: Key) {
        let entry = self.entries.get_mut(&key).expect("unknown key");
        entry.in_flight = entry.in_flight.saturating_sub(1);
    }

    /// The attempt of `key` was refused outright (e.g. `NotFound`,
    /// `Invalid`, `RateLimited`). If it was the only attempt, the message
    /// must never be stored; after earlier attempts with unknown outcomes it
    /// stays possible.
    pub fn refused(&mut self, key: Key) {
        let entry = self.entries.get_mut(&key).expect("unknown key");
        entry.in_flight = entry.in_flight.saturating_sub(1);
        if entry.outcome == Outcome::Maybe && entry.attempts == 1 && entry.in_flight == 0 {
            entry.outcome = Outcome::Refused;
        }
    }

    /// Every attempt still in flight ended without a verdict (e.g. the
    /// server was killed and the sending tasks were dropped).
    pub fn abandon_in_flight(&mut self) {
        for entry in self.entries.values_mut() {
            entry.in_flight = 0;
        }
    }

    /// Messages of `writer` whose outcome is unknown and nothing is in
    /// flight for them: what a client would retry.
    pub fn unresolved(&self, writer: WriterId) -> Vec<Key> {
        self.entries
            .range(
                Key { writer, counter: 0 }..=Key {
                    writer,
                    counter: u64::MAX,
                },
            )
            .filter(|(_, e)| e.outcome == Outcome::Maybe && e.in_flight == 0)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Messages of `writer` that were acknowledged (for re-sends that must
    /// return the same ack).
    pub fn acknowledged(&self, writer: WriterId) -> Vec<(Key, Seq)> {
        self.entries
            .range(
                Key { writer, counter: 0 }..=Key {
                    writer,
                    counter: u64::MAX,
                },
            )
            .filter_map(|(k, e)| match e.outcome {
                Outcome::Acked(seq) => Some((*k, seq)),
                _ => None,
            })
            .collect()
    }

    /// Counts of planned messages: (acknowledged, unknown outcome, refused).
    pub fn totals(&self) -> (u64, u64, u64) {
        let mut t = (0, 0, 0);
        for e in self.entries.values() {
            match e.outcome {
                Outcome::Acked(_) => t.0 += 1,
                Outcome::Maybe => t.1 += 1,
                Outcome::Refused => t.2 += 1,
            }
        }
        t
    }

    /// Checks one message against what was sent: ours, in the right
    /// conversation, with the body and sender of its key. `Err` says why not.
    fn identify(&self, m: &Message) -> Result<Key, Violation> {
        let unexpected = |why: String| Violation::Unexpected {
            conversation: m.conversation,
            seq: m.seq,
            why,
        };
        let Some((key, conversation)) = self.parse(&m.body) else {
            let mut shown: String = m.body.chars().take(60).collect();
            if shown.len() < m.body.len() {
                shown.push('…');
            }
            return Err(unexpected(format!(
                "body {shown:?} was not written by this ledger"
            )));
        };
        let Some(entry) = self.entries.get(&key) else {
            return Err(unexpected(format!("{key} was never attempted")));
        };
        if entry.conversation != m.conversation || conversation != m.conversation {
            return Err(unexpected(format!(
                "{key} was sent to conversation {}",
                entry.conversation.0
            )));
        }
        let mismatch = |detail: String| Violation::ContentMismatch {
            key,
            conversation: m.conversation,
            seq: m.seq,
            detail,
        };
        if m.body != self.body(key, conversation) {
            return Err(mismatch("body differs from the one sent".into()));
        }
        let user = self.user(key.writer);
        if m.sender != user {
            return Err(mismatch(format!(
                "sender {} instead of {}",
                m.sender.0, user.0
            )));
        }
        if m.client_msg_id != self.client_msg_id(key) {
            return Err(mismatch(format!(
                "client_msg_id {:#x} instead of {:#x}",
                m.client_msg_id,
                self.client_msg_id(key)
            )));
        }
        Ok(key)
    }

    /// A message delivered live. It must be one of ours, and it is from now
    /// on required at that place in every later read. Returns a violation
    /// found at once (it is also kept for the next report).
    pub fn delivered(&mut self, m: &Message) -> Option<Violation> {
        let violation = match self.identify(m) {
            Err(v) => Some(v),
            Ok(key) => {
                let at = self.seen.entry(m.conversation).or_default();
                match at.get(&m.seq) {
                    Some(prev) if prev.key != key => Some(Violation::SeenMissing {
                        conversation: m.conversation,
                        seq: m.seq,
                        seen: prev.key,
                        source: prev.source,
                        now: Some(key),
                    }),
                    Some(_) => None,
                    None => {
                        at.insert(
                            m.seq,
                            Seen {
                                key,
                                source: Source::Live,
                            },
                        );
                        None
                    }
                }
            }
        };
        if let Some(v) = &violation {
            self.recorded.push(v.clone());
        }
        violation
    }

    /// Checks a full read: for every watched conversation, every message
    /// from seq 1 in ascending order and the head reported with it. What it
    /// finds stays required in later reads. A watched conversation missing
    /// from `reads` is a violation ([`Violation::NotRead`]).
    pub fn check(&mut self, reads: &BTreeMap<ConversationId, (Vec<Message>, Seq)>) -> CheckReport {
        let mut report = self.check_partial(reads);
        for conversation in &self.conversations {
            if !reads.contains_key(conversation) {
                report.violations.push(Violation::NotRead {
                    conversation: *conversation,
                });
            }
        }
        report
    }

    /// [`Ledger::check`] of only the conversations in `reads` (e.g. the
    /// ones written lately, when reading everything every time is too slow).
    pub fn check_partial(
        &mut self,
        reads: &BTreeMap<ConversationId, (Vec<Message>, Seq)>,
    ) -> CheckReport {
        let mut report = CheckReport {
            conversations: reads.len(),
            ..CheckReport::default()
        };
        let mut v = Vec::new();
        // Where every key was found.
        let mut found: BTreeMap<Key, Vec<(ConversationId, Seq)>> = BTreeMap::new();
        let mut stored: BTreeMap<(ConversationId, Seq), Key> = BTreeMap::new();
        for (&conversation, (messages, head)) in reads {
            let mut previous = Seq(0);
            for m in messages {
                report.messages += 1;
                if m.conversation != conversation {
                    v.push(Violation::Unexpected {
                        conversation,
                        seq: m.seq,
                        why: format!(
                            "a read of this conversation returned a message of conversation {}",
                            m.conversation.0
                        ),
                    });
                    continue;
                }
                if m.seq.0 <= previous.0 {
                    v.push(Violation::Reorder {
                        conversation,
                        previous,
                        got: m.seq,
                    });
                } else if m.seq.0 != previous.0 + 1 {
                    v.push(Violation::Gap {
                        conversation,
                        expected: Seq(previous.0 + 1),
                        got: m.seq,
                    });
                }
                previous = previous.max(m.seq);
                match self.identify(m) {
                    Err(e) => v.push(e),
                    Ok(key) => {
                        found.entry(key).or_default().push((conversation, m.seq));
                        stored.entry((conversation, m.seq)).or_insert(key);
                    }
                }
            }
            if head.0 > previous.0 {
                v.push(Violation::Gap {
                    conversation,
                    expected: Seq(previous.0 + 1),
                    got: *head,
                });
            }
        }
        for (key, at) in &found {
            if at.len() > 1 {
                v.push(Violation::Duplicate {
                    key: *key,
                    at: at.clone(),
                });
            }
        }
        for (key, entry) in &self.entries {
            if !reads.contains_key(&entry.conversation) {
                continue;
            }
            let here = found.get(key).and_then(|at| at.first()).map(|&(_, s)| s);
            match (entry.outcome, here) {
                (Outcome::Acked(acked), None) => v.push(Violation::AckedMissing {
                    key: *key,
                    conversation: entry.conversation,
                    acked,
                }),
                (Outcome::Acked(acked), Some(stored)) if stored != acked => {
                    v.push(Violation::AckMismatch {
                        key: *key,
                        conversation: entry.conversation,
                        acked,
                        stored,
                    })
                }
                (Outcome::Acked(_), Some(_)) => report.acked += 1,
                (Outcome::Refused, Some(seq)) => v.push(Violation::RefusedPresent {
                    key: *key,
                    conversation: entry.conversation,
                    seq,
                }),
                (Outcome::Refused, None) => {}
                (Outcome::Maybe, Some(_)) => report.indeterminate_present += 1,
                (Outcome::Maybe, None) => report.indeterminate_absent += 1,
            }
            if let (Some(seq), true) = (here, entry.absent_since_read && entry.in_flight == 0) {
                v.push(Violation::Resurrected {
                    key: *key,
                    conversation: entry.conversation,
                    seq,
                });
            }
        }
        for (conversation, at) in &self.seen {
            if !reads.contains_key(conversation) {
                continue;
            }
            for (seq, seen) in at {
                let now = stored.get(&(*conversation, *seq)).copied();
                if now != Some(seen.key) {
                    v.push(Violation::SeenMissing {
                        conversation: *conversation,
                        seq: *seq,
                        seen: seen.key,
                        source: seen.source,
                        now,
                    });
                }
            }
        }
        // What this read found is required from now on; what it did not
        // find may only come back through a new attempt.
        for (&(conversation, seq), &key) in &stored {
            self.seen
                .entry(conversation)
                .or_default()
                .entry(seq)
                .or_insert(Seen {
                    key,
                    source: Source::Read,
                });
        }
        for (key, entry) in self.entries.iter_mut() {
            if reads.contains_key(&entry.conversation) {
                entry.absent_since_read = entry.in_flight == 0 && !found.contains_key(key);
            }
        }
        report.violations = self.recorded.clone();
        report.violations.extend(v);
        report
    }
}

/// Reads a whole conversation from seq 1 with `History After` pages, up to
/// the head the server reports. Returns the messages and the last head.
/// Stops (without an error) if a page comes back empty before the head:
/// the checker reports that as a gap.
pub async fn read_conversation<R: Requester>(
    r: &mut R,
    conversation: ConversationId,
) -> Result<(Vec<Message>, Seq), ClientError> {
    let mut messages: Vec<Message> = Vec::new();
    let mut last = Seq(0);
    for _ in 0..READ_PAGES_MAX {
        let page = r
            .history(conversation, HistoryAnchor::After(last), READ_PAGE_MESSAGES)
            .await?;
        let head = page.head;
        let Some(newest) = page.messages.last().map(|m| m.seq) else {
            return Ok((messages, head));
        };
        messages.extend(page.messages);
        // A page that does not move forward would loop: let the checker see it.
        if newest.0 <= last.0 {
            return Ok((messages, head));
        }
        last = newest;
        if last.0 >= head.0 {
            return Ok((messages, head));
        }
    }
    Ok((messages, last))
}

/// Reads every conversation of `conversations` (see [`read_conversation`]).
pub async fn read_all<R: Requester>(
    r: &mut R,
    conversations: &[ConversationId],
) -> Result<BTreeMap<ConversationId, (Vec<Message>, Seq)>, ClientError> {
    let mut reads = BTreeMap::new();
    for &c in conversations {
        reads.insert(c, read_conversation(r, c).await?);
    }
    Ok(reads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_core::api::{Broadcast, Millis};

    const A: ConversationId = ConversationId(100);
    const B: ConversationId = ConversationId(200);
    const ANN: UserId = UserId(1);
    const BOB: UserId = UserId(2);

    fn message(l: &Ledger, p: &Planned, seq: u64) -> Message {
        Message {
            conversation: p.conversation,
            seq: Seq(seq),
            sender: l.user(p.key.writer),
            client_msg_id: p.client_msg_id,
            ts: Millis(seq),
            body: p.body.clone(),
            mentions: vec![],
            broadcast: Broadcast::None,
            change: None,
            live: Default::default(),
            thread: None,
        }
    }

    /// A ledger with two writers; `n` messages to A alternating writers,
    /// all acknowledged at 1..=n; returns the honest stored history.
    fn honest(n: u64) -> (Ledger, Vec<Planned>, Vec<Message>) {
        let mut l = Ledger::new(7);
        let w = [l.add_writer(ANN), l.add_writer(BOB)];
        l.watch(B);
        let mut planned = Vec::new();
        let mut stored = Vec::new();
        for i in 0..n {
            let p = l.plan(w[(i % 2) as usize], A);
            l.acked(p.key, Seq(i + 1));
            stored.push(message(&l, &p, i + 1));
            planned.push(p);
        }
        (l, planned, stored)
    }

    fn reads(a: Vec<Message>) -> BTreeMap<ConversationId, (Vec<Message>, Seq)> {
        let head = Seq(a.iter().map(|m| m.seq.0).max().unwrap_or(0));
        [(A, (a, head)), (B, (vec![], Seq(0)))]
            .into_iter()
            .collect()
    }

    /// Feeds a doctored history; the report must name `expected` (and, for
    /// the honest one, nothing).
    fn check(
        doctor: impl FnOnce(&mut Ledger, &[Planned], &mut Vec<Message>),
        expected: impl Fn(&Violation) -> bool,
    ) {
        let (mut l, planned, mut stored) = honest(6);
        doctor(&mut l, &planned, &mut stored);
        let report = l.check(&reads(stored));
        assert!(report.has(&expected), "not caught: {report}");
    }

    #[test]
    fn an_honest_history_is_clean_and_counted() {
        let (mut l, _, stored) = honest(6);
        let report = l.check(&reads(stored.clone()));
        assert!(report.is_clean(), "{report}");
        assert_eq!((report.messages, report.acked), (6, 6));
        // The same read again is still clean.
        assert!(l.check(&reads(stored)).is_clean());
    }

    #[test]
    fn doctored_histories_are_caught() {
        // An acknowledged message lost (an ack before fsync, then a crash).
        check(
            |_, _, s| {
                s.pop();
            },
            |v| matches!(v, Violation::AckedMissing { acked: Seq(6), .. }),
        );
        // A duplicate (a retry that skipped dedup).
        check(
            |l, p, s| {
                let m = message(l, &p[2], 7);
                s.push(m);
            },
            |v| matches!(v, Violation::Duplicate { at, .. } if at.len() == 2),
        );
        // A message nobody sent.
        check(
            |_, _, s| {
                let mut m = s[0].clone();
                m.seq = Seq(7);
                m.body = "hello from nowhere".into();
                s.push(m);
            },
            |v| matches!(v, Violation::Unexpected { seq: Seq(7), .. }),
        );
        // A gap: seq 3 missing (seq 4 follows 2).
        check(
            |_, _, s| {
                s.remove(2);
            },
            |v| {
                matches!(
                    v,
                    Violation::Gap {
                        expected: Seq(3),
                        got: Seq(4),
                        ..
                    }
                )
            },
        );
        // A reorder: 2 and 3 swapped.
        check(
            |_, _, s| s.swap(1, 2),
            |v| matches!(v, Violation::Reorder { .. }),
        );
        // Stored at another seq than acked (both renumbered).
        check(
            |_, _, s| {
                s.swap(3, 4);
                s[3].seq = Seq(4);
                s[4].seq = Seq(5);
            },
            |v| {
                matches!(
                    v,
                    Violation::AckMismatch {
                        acked: Seq(5),
                        stored: Seq(4),
                        ..
                    }
                )
            },
        );
        // Another sender or body under our key.
        check(
            |_, _, s| s[0].sender = UserId(99),
            |v| matches!(v, Violation::ContentMismatch { .. }),
        );
        check(
            |_, _, s| s[1].body.push('!'),
            |v| {
                matches!(
                    v,
                    Violation::Unexpected { .. } | Violation::ContentMismatch { .. }
                )
            },
        );
        // A message in the wrong conversation.
        check(
            |l, p, s| {
                let mut m = message(l, &p[0], 7);
                m.conversation = A;
                let mut planned_b = p[0].clone();
                planned_b.conversation = B;
                m.body = l.body(planned_b.key, B);
                s.push(m);
            },
            |v| matches!(v, Violation::Unexpected { .. }),
        );
    }

    #[test]
    fn the_head_beyond_the_read_is_a_gap() {
        let (mut l, _, stored) = honest(3);
        let mut r = reads(stored);
        r.get_mut(&A).unwrap().1 = Seq(5);
        let report = l.check(&r);
        assert!(
            report.has(|v| matches!(
                v,
                Violation::Gap {
                    expected: Seq(4),
                    got: Seq(5),
                    ..
                }
            )),
            "{report}"
        );
    }

    #[test]
    fn live_deliveries_must_survive_a_restart() {
        let mut l = Ledger::new(3);
        let w = l.add_writer(ANN);
        let p1 = l.plan(w, A);
        let p2 = l.plan(w, A);
        // p2's ack was lost, but an observer saw it live.
        l.acked(p1.key, Seq(1));
        l.indeterminate(p2.key);
        assert_eq!(l.delivered(&message(&l, &p2, 2)), None);
        let report = l.check(&reads(vec![message(&l, &p1, 1)]));
        assert!(
            report.has(|v| matches!(
                v,
                Violation::SeenMissing {
                    seq: Seq(2),
                    source: Source::Live,
                    now: None,
                    ..
                }
            )),
            "{report}"
        );
    }

    #[test]
    fn indeterminate_sends_may_appear_once_and_then_must_stay() {
        let mut l = Ledger::new(3);
        let w = l.add_writer(ANN);
        let p1 = l.plan(w, A);
        let p2 = l.plan(w, A);
        let p3 = l.plan(w, A);
        l.abandon_in_flight();
        assert_eq!(l.unresolved(w), vec![p1.key, p2.key, p3.key]);
        // p1 made it, p2 and p3 did not: clean.
        let report = l.check(&reads(vec![message(&l, &p1, 1)]));
        assert!(report.is_clean(), "{report}");
        assert_eq!(
            (report.indeterminate_present, report.indeterminate_absent),
            (1, 2)
        );
        // p3 retried and acked; p1 vanished; p2 reappeared without a retry.
        let r3 = l.retry(p3.key);
        l.acked(r3.key, Seq(2));
        let report = l.check(&reads(vec![message(&l, &p3, 2), message(&l, &p2, 3)]));
        assert!(
            report.has(|v| matches!(
                v,
                Violation::SeenMissing {
                    seq: Seq(1),
                    source: Source::Read,
                    ..
                }
            )),
            "{report}"
        );
        assert!(
            report.has(|v| matches!(v, Violation::Resurrected { key, .. } if *key == p2.key)),
            "{report}"
        );
    }

    #[test]
    fn disagreeing_acks_and_refused_sends_are_caught() {
        let mut l = Ledger::new(3);
        let w = l.add_writer(ANN);
        let p1 = l.plan(w, A);
        l.acked(p1.key, Seq(1));
        let again = l.retry(p1.key);
        assert_eq!(again, p1, "a retry is the same message");
        l.acked(p1.key, Seq(2)); // a second message: dedup skipped
        let p2 = l.plan(w, A);
        l.acked(p2.key, Seq(1)); // two messages acked at one seq
        let p3 = l.plan(w, A);
        l.refused(p3.key);
        let report = l.check(&reads(vec![
            message(&l, &p1, 1),
            message(&l, &p1, 2),
            message(&l, &p3, 3),
        ]));
        for (name, want) in [
            (
                "ack changed",
                &(|v: &Violation| matches!(v, Violation::AckChanged { .. }))
                    as &dyn Fn(&Violation) -> bool,
            ),
            ("collision", &|v| {
                matches!(v, Violation::AckCollision { .. })
            }),
            ("duplicate", &|v| matches!(v, Violation::Duplicate { .. })),
            ("refused present", &|v| {
                matches!(v, Violation::RefusedPresent { .. })
            }),
            ("acked missing", &|v| {
                matches!(v, Violation::AckedMissing { .. })
            }),
        ] {
            assert!(report.has(want), "{name} not caught: {report}");
        }
    }

    #[test]
    fn bodies_and_ids_are_unique_and_parse_back() {
        let mut l = Ledger::new(0xfeed).with_body_bytes(300);
        let w = [l.add_writer(ANN), l.add_writer(BOB)];
        let mut ids = BTreeSet::new();
        let mut bodies = BTreeSet::new();
        for i in 0..100 {
            let p = l.plan(w[i % 2], if i % 3 == 0 { A } else { B });
            assert!(p.body.len() >= 300);
            assert_eq!(l.parse(&p.body), Some((p.key, p.conversation)));
            assert!(ids.insert(p.client_msg_id));
            assert!(bodies.insert(p.body));
        }
        // Another run's bodies are not ours.
        let other = Ledger::new(0xbeef);
        assert_eq!(
            other.parse(&l.body(
                Key {
                    writer: w[0],
                    counter: 1
                },
                A
            )),
            None
        );
    }
}
