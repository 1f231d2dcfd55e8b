//! A watching session: the exactly-once, in-order stream of messages of a
//! user's conversations, across reconnects, server restarts, dropped events
//! and client restarts.
//!
//! The algorithm (docs/PROTOCOL.md, "Recovery"): connect → `Hello` →
//! `Welcome` (the server has now subscribed the connection to all of the
//! user's conversations, so live events flow) → `Sync` with the cursor and
//! the known read cursor of every tracked conversation → apply the reply
//! (inline messages, or `truncated` → page the rest with `History After`;
//! read cursors other devices moved meanwhile come back as
//! [`SessionEvent::ReadCursor`]) while live events queue up → then apply
//! live events, dropping duplicates and repairing gaps.
//! Whenever the connection ends (or the event queue overflowed), reconnect
//! with backoff and do it again. All the bookkeeping is a [`Tracker`]; this
//! module only performs its I/O.
//!
//! Optionally the cursors are kept in a [`CursorFile`], written at most every
//! [`CURSOR_SAVE_INTERVAL`] and on [`Session::save_cursors`]. The file only
//! ever records messages already returned by [`Session::next`] before the
//! current call, so after a crash a restarted session repeats at most the
//! messages of the last interval and never skips one.

use crate::client::{Client, ClientOptions, Notice};
use crate::constants::{CURSOR_SAVE_INTERVAL, HISTORY_PAGE};
use crate::cursor_file::CursorFile;
use crate::error::ClientError;
use crate::requester::{Outgoing, Requester, SendAck};
use crate::tracker::{Backlog, Tracker};
use crate::Incoming;
use courier_core::api::{
    ConversationId, ConversationInfo, Event, HistoryAnchor, Message, NotifyReason, Reject, Seq,
    UserId,
};
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use tokio::time::Instant;

/// Options of a [`Session`].
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Connection and retry options. A session retries reconnects forever
    /// once it has connected; `client.retry_deadline` bounds the *first*
    /// connection and each request.
    pub client: ClientOptions,
    /// Deliver only these conversations (all of the user's when `None`).
    pub filter: Option<Vec<ConversationId>>,
    /// Deliver all history first instead of only what is new.
    pub from_start: bool,
    /// Keep cursors in this file and resume from it.
    pub cursor_file: Option<PathBuf>,
    /// A conversation first seen while running (joined, a new DM) starts
    /// with at most this many of its newest messages (ignored with
    /// `from_start`, which delivers everything).
    pub new_conversation_backlog: u64,
}

impl SessionOptions {
    /// Options delivering every conversation's new messages, without a
    /// cursor file.
    pub fn new(client: ClientOptions) -> SessionOptions {
        SessionOptions {
            client,
            filter: None,
            from_start: false,
            cursor_file: None,
            new_conversation_backlog: u64::from(HISTORY_PAGE),
        }
    }
}

/// What [`Session::next`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// The next message of its conversation: each message exactly once, in
    /// seq order per conversation.
    Message(Message),
    /// Every gap known after the latest (re)connection is repaired: what
    /// follows is live. `generation` counts connections.
    CaughtUp {
        /// Connection generation (1 for the first).
        generation: u64,
    },
    /// The user joined or was added to a conversation.
    Joined(ConversationInfo),
    /// The user left or was removed from a conversation.
    Left(ConversationId),
    /// The user's read cursor moved (from any device).
    ReadCursor {
        /// The conversation.
        conversation: ConversationId,
        /// New cursor.
        seq: Seq,
    },
    /// An in-app notification.
    Notify {
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        seq: Seq,
        /// Why.
        reason: NotifyReason,
    },
    /// A user of the workspace changed their profile (issue 16, part 5):
    /// a cached profile older than `version` is stale
    /// ([`crate::ProfileCache::on_changed`]).
    ProfileChanged {
        /// The user.
        user: UserId,
        /// The profile's new version.
        version: u64,
    },
    /// Someone else types in a watched conversation (issue 17, part 4):
    /// show it for `courier_core::constants::TYPING_EXPIRY_MS`.
    Typing {
        /// The conversation.
        conversation: ConversationId,
        /// Who types.
        user: UserId,
    },
    /// A watched user's presence (`Request::WatchPresence`).
    Presence {
        /// The user.
        user: UserId,
        /// Their presence now.
        presence: courier_core::api::Presence,
    },
}

/// The watching session (see the module docs).
#[derive(Debug)]
pub struct Session {
    client: Client,
    tracker: Tracker,
    options: SessionOptions,
    user: UserId,
    /// Connection generation whose `Sync` has been applied.
    synced: u64,
    /// Generation for which `CaughtUp` was yielded.
    caught_up: u64,
    /// The event stream overflowed: re-sync on the same connection.
    resync: bool,
    /// Other events waiting to be returned (at most one at a time).
    passthrough: Option<SessionEvent>,
    /// Read cursors a `Sync` moved, to be returned as `ReadCursor`: at most
    /// one per conversation of one reply (bounded by SYNC_CURSORS_MAX), as
    /// `next` returns them all before it syncs again.
    read_moves: VecDeque<(ConversationId, Seq)>,
    dirty: bool,
    saved_at: Instant,
    /// History fetches that made no progress in a row (a server bug guard).
    stalls: u32,
}

impl Session {
    /// Connects (within `options.client.retry_deadline`), loads the cursor
    /// file if any, and learns where each conversation starts. The first
    /// [`Session::next`] then syncs.
    pub async fn open(options: SessionOptions) -> Result<Session, ClientError> {
        let client = Client::new(options.client.clone());
        Session::with_client(client, options).await
    }

    /// [`Session::open`] on a client set up by the caller (e.g. with a
    /// notice callback).
    pub async fn with_client(
        mut client: Client,
        options: SessionOptions,
    ) -> Result<Session, ClientError> {
        let welcome = client.connect().await?;
        let user = welcome.user.ok_or_else(|| {
            ClientError::Rejected(Reject::Invalid(
                "watching needs a user token, not the admin token".to_owned(),
            ))
        })?;
        let backlog = if options.from_start {
            Backlog::All
        } else {
            Backlog::Newest(options.new_conversation_backlog)
        };
        let filter: Option<HashSet<ConversationId>> =
            options.filter.as_ref().map(|f| f.iter().copied().collect());
        let mut tracker = Tracker::new(filter, backlog);
        let mut resumed = false;
        if let Some(path) = &options.cursor_file {
            if let Some(file) = CursorFile::load(path)? {
                if file.user != user {
                    return Err(ClientError::CursorFile {
                        path: path.clone(),
                        reason: format!(
                            "belongs to user {}, but the token is user {}",
                            file.user.0, user.0
                        ),
                    });
                }
                if !options.from_start {
                    for (c, s) in file.cursors {
                        tracker.track(c, s);
                    }
                    resumed = true;
                }
            }
        }
        if !options.from_start && !resumed {
            // Start at the present: everything up to each head counts as seen.
            for info in client.list_conversations().await? {
                if info.member {
                    tracker.track(info.id, info.head);
                    tracker.on_read_cursor(info.id, info.read);
                }
            }
        }
        // From now on the session outlives any outage.
        client.set_retry_deadline(None);
        Ok(Session {
            client,
            tracker,
            options,
            user,
            synced: 0,
            caught_up: 0,
            resync: false,
            passthrough: None,
            read_moves: VecDeque::new(),
            dirty: false,
            saved_at: Instant::now(),
            stalls: 0,
        })
    }

    /// The session's user.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The recovery state (cursors, counters).
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The underlying client, for other requests.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Calls `f` on every reconnect and retry.
    pub fn on_notice(&mut self, f: impl FnMut(Notice<'_>) + Send + 'static) {
        self.client.on_notice(f);
    }

    /// Sends a message (fresh `client_msg_id`, retried with the same id).
    /// It comes back through [`Session::next`] like every other message.
    pub async fn send(
        &mut self,
        conversation: ConversationId,
        message: &Outgoing,
    ) -> Result<SendAck, ClientError> {
        self.client.send(conversation, message).await
    }

    /// Writes the cursor file now (if the session has one).
    pub fn save_cursors(&mut self) -> Result<(), ClientError> {
        if let Some(path) = &self.options.cursor_file {
            CursorFile {
                user: self.user,
                cursors: self.tracker.cursors(),
            }
            .save(path)?;
        }
        self.dirty = false;
        self.saved_at = Instant::now();
        Ok(())
    }

    fn maybe_save(&mut self) -> Result<(), ClientError> {
        if self.dirty && self.saved_at.elapsed() >= CURSOR_SAVE_INTERVAL {
            self.save_cursors()?;
        }
        Ok(())
    }

    /// The next message or event. Waits as long as needed, reconnecting and
    /// re-syncing by itself; returns an error only for permanent failures
    /// (bad or revoked token, a server that breaks the protocol, a cursor
    /// file that cannot be written).
    pub async fn next(&mut self) -> Result<SessionEvent, ClientError> {
        loop {
            // Everything returned before this call has been handled by the
            // caller: it may go into the cursor file now.
            self.maybe_save()?;
            if let Some(m) = self.tracker.pop_ready() {
                self.dirty = true;
                return Ok(SessionEvent::Message(m));
            }
            if let Some(e) = self.passthrough.take() {
                return Ok(e);
            }
            if let Some((conversation, seq)) = self.read_moves.pop_front() {
                return Ok(SessionEvent::ReadCursor { conversation, seq });
            }
            match self.step().await {
                Ok(Some(event)) => return Ok(event),
                Ok(None) => {}
                Err(e) if e.is_transient() => {
                    self.client.disconnect();
                    self.client.pause_after(e, None).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One unit of work; `Ok(None)` when it produced nothing to return yet.
    async fn step(&mut self) -> Result<Option<SessionEvent>, ClientError> {
        if self.client.connection().is_none() {
            self.client.connect_forever().await?;
        }
        if self.client.generation() != self.synced || self.resync {
            self.sync().await?;
            return Ok(None);
        }
        if let Some((conversation, after)) = self.tracker.next_repair() {
            self.repair(conversation, after).await?;
            return Ok(None);
        }
        if self.caught_up != self.synced {
            self.caught_up = self.synced;
            return Ok(Some(SessionEvent::CaughtUp {
                generation: self.synced,
            }));
        }
        let save_in = CURSOR_SAVE_INTERVAL.saturating_sub(self.saved_at.elapsed());
        let Some(events) = self.client.events() else {
            return Ok(None);
        };
        let incoming = if self.dirty {
            match tokio::time::timeout(save_in, events.next()).await {
                Ok(incoming) => incoming,
                Err(_) => return Ok(None), // time to save the cursors
            }
        } else {
            events.next().await
        };
        match incoming {
            None => {
                let reason = match events.close_reason() {
                    // An undecodable event may have been a message: a new
                    // connection and a Sync recover it.
                    Some(ClientError::Protocol(p)) => ClientError::Closed {
                        code: None,
                        reason: format!("protocol error: {p}"),
                    },
                    Some(reason) => reason,
                    None => ClientError::Closed {
                        code: None,
                        reason: "connection ended".to_owned(),
                    },
                };
                Err(reason)
            }
            Some(Incoming::Lagged { .. }) => {
                self.resync = true;
                Ok(None)
            }
            Some(Incoming::Event(event)) => Ok(self.on_event(event)),
        }
    }

    fn on_event(&mut self, event: Event) -> Option<SessionEvent> {
        match event {
            Event::Message(m) => {
                self.tracker.on_message(m);
                None
            }
            Event::Joined(info) => {
                self.tracker.observe_head(info.id, info.head);
                self.tracker.on_read_cursor(info.id, info.read);
                Some(SessionEvent::Joined(info))
            }
            Event::Left { conversation } => {
                self.tracker.forget(conversation);
                self.dirty = true;
                Some(SessionEvent::Left(conversation))
            }
            Event::ReadCursor { conversation, seq } => {
                self.tracker.on_read_cursor(conversation, seq);
                Some(SessionEvent::ReadCursor { conversation, seq })
            }
            Event::Notify {
                conversation,
                seq,
                reason,
            } => Some(SessionEvent::Notify {
                conversation,
                seq,
                reason,
            }),
            Event::ProfileChanged { user, version } => {
                Some(SessionEvent::ProfileChanged { user, version })
            }
            Event::Typing { conversation, user } => self
                .tracker
                .wants(conversation)
                .then_some(SessionEvent::Typing { conversation, user }),
            Event::Presence { user, presence } => Some(SessionEvent::Presence { user, presence }),
        }
    }

    async fn sync(&mut self) -> Result<(), ClientError> {
        let generation = self.client.generation();
        // With the read cursors known: the server answers any that another
        // device moved meanwhile, even where no message came.
        let (cursors, reads) = self.tracker.sync_cursors();
        let sent: std::collections::HashMap<ConversationId, Seq> =
            cursors.iter().copied().collect();
        let reply = self.client.sync(cursors, reads).await?;
        if self.client.generation() != generation {
            // Reconnected while asking: the new subscription needs its own Sync.
            return Ok(());
        }
        for gone in reply.gone {
            self.tracker.forget(gone);
            self.dirty = true;
        }
        for entry in reply.changed {
            let cursor = sent.get(&entry.info.id).copied().unwrap_or(Seq(0));
            if !entry.info.member {
                continue;
            }
            let id = entry.info.id;
            if let Some(seq) = self.tracker.on_sync(cursor, entry) {
                self.read_moves.push_back((id, seq));
            }
        }
        self.synced = generation;
        self.resync = false;
        Ok(())
    }

    async fn repair(
        &mut self,
        conversation: ConversationId,
        after: Seq,
    ) -> Result<(), ClientError> {
        let page = match self
            .client
            .history(conversation, HistoryAnchor::After(after), HISTORY_PAGE)
            .await
        {
            Ok(page) => page,
            Err(ClientError::Rejected(Reject::NotFound)) => {
                // Left or removed meanwhile: nothing more to deliver.
                self.tracker.forget(conversation);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.tracker
            .on_history_after(conversation, after, page.messages, page.head);
        if self.tracker.last(conversation) == Some(after)
            && self.tracker.next_repair() == Some((conversation, after))
        {
            self.stalls += 1;
            if self.stalls >= 3 {
                return Err(ClientError::Protocol(format!(
                    "History After {} of conversation {} returned nothing new while its head is {}",
                    after.0,
                    conversation.0,
                    self.tracker.head(conversation).map_or(0, |s| s.0)
                )));
            }
        } else {
            self.stalls = 0;
        }
        Ok(())
    }
}
