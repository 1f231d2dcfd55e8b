//! Courier's client library and the home of the `courier` CLI.
//!
//! A client speaks the wire protocol of `courierd` (WebSocket, one
//! flatbuffers frame per binary message; see docs/PROTOCOL.md) and keeps the
//! promise the server makes on its side: every message of a conversation
//! reaches the client exactly once and in order, across dropped
//! connections, server restarts and client restarts.
//!
//! # Layout
//! Three layers, each usable on its own:
//! - [`Connection`] (`connection.rs`): one WebSocket — `Hello`/`Welcome`,
//!   request/response correlation by request id with a bounded number in
//!   flight, timeouts, pings, a bounded [`Events`] stream, and pacing to
//!   the request budget the server states ([`pacer`]).
//! - [`Client`] (`client.rs`): reconnects with exponential backoff and
//!   jitter ([`Backoff`]), retries idempotent requests, and sends messages
//!   with a random `client_msg_id` that every retry reuses.
//! - [`Session`] (`session.rs`): the watcher — `Sync` after every
//!   (re)connect, duplicate drop, gap repair with `History After`, optional
//!   [`CursorFile`]; it yields [`SessionEvent::Message`] exactly once, in
//!   order, per conversation. Its logic is the sans-IO [`Tracker`]
//!   (`tracker.rs`), tested without any network.
//!
//! Every typed request is a method of the [`Requester`] trait, implemented
//! by both [`Connection`] and [`Client`]; the people requests (profiles,
//! lookups, directory, members) are the [`People`] trait's, implemented for
//! every requester, and [`ProfileCache`] keeps profiles by version and
//! turns ids into names. Errors are [`ClientError`] values;
//! nothing a server sends makes the library panic. [`testkit`] starts and
//! kills real `courierd` processes for end-to-end tests; [`ledger`] checks
//! what such tests sent against what the server kept (acknowledged messages
//! present once, at their seq, gap-free; nothing seen ever lost); [`proxy`]
//! is a fault-injecting TCP proxy (pass, blackhole, reset, heal) to put
//! between processes. [`admin_http`] reads the server's HTTP admin surface
//! (`GET /admin/cluster`, for `courier admin cluster status`).
//!
//! # Bounds
//! Requests in flight per connection ([`constants::IN_FLIGHT_MAX_DEFAULT`]),
//! events buffered per connection ([`constants::EVENT_QUEUE_MAX_DEFAULT`];
//! overflow drops events and reports [`Incoming::Lagged`], which a session
//! answers with a re-sync), out-of-order messages buffered per conversation
//! ([`constants::PENDING_PER_CONVERSATION_MAX`]), server frame size
//! ([`constants::SERVER_FRAME_BYTES_MAX`]).
//!
//! # Runtime
//! The library runs on tokio; a current-thread runtime is enough. A
//! [`Connection`] spawns one driver task per socket.
#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod admin_http;
pub mod backoff;
pub mod client;
pub mod connection;
pub mod constants;
pub mod cursor_file;
pub mod error;
pub mod ledger;
pub mod pacer;
pub mod people;
pub mod proxy;
pub mod requester;
pub mod session;
pub mod testkit;
pub mod tracker;
#[cfg(feature = "wal")]
pub mod walinspect;

pub use backoff::Backoff;
pub use client::{is_idempotent, new_client_msg_id, Client, ClientOptions, Notice};
pub use connection::{
    normalize_url, redeem_invite, server_list, ConnectOptions, Connection, Events, Incoming,
    Welcome,
};
pub use cursor_file::CursorFile;
pub use error::{describe_reject, is_permanent_close, ClientError};
pub use people::{DirectoryPage, MemberPage, People, ProfileCache};
pub use requester::{HistoryPage, IssuedToken, Outgoing, Requester, SendAck, SyncReply};
pub use session::{Session, SessionEvent, SessionOptions};
pub use tracker::{Backlog, Tracker, TrackerStats, Verdict};

/// The protocol's domain types, re-exported so users of this crate need not
/// depend on `courier-core` themselves.
pub use courier_core::api;
/// The token text form (`cu1_…`, `ca1_…`).
pub use courier_proto::token;
