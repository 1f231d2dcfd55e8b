//! `courier-net`: the body of Courier — the thread-per-core runtime that
//! drives `courier-core` shards and `courier-wal` logs, the WebSocket
//! gateway, the HTTP health and metrics endpoints, and the `courierd` daemon.
//!
//! Each shard is one glommio executor pinned to a core. It owns a core state
//! machine, a WAL, a listener on the shared port (SO_REUSEPORT) and the
//! sockets the kernel gave that listener. Shards share nothing but bounded
//! lock-free channels (glommio shared channels, one per ordered pair of
//! shards, built before the executors start) and a board of published metrics.
//!
//! This crate must never decide what the core decides (ordering, membership,
//! authorization, what to deliver); never send a client anything about a
//! record before the core says so, which it does only after the record is
//! durable; never hold a lock on the data path; never let a queue grow
//! without a bound.
//!
//! # Layout
//! - [`server`]: data directory, executors, shard channels, start/stop.
//! - [`shard`]: one shard's runtime — inputs in, effects out.
//! - [`gateway`]: accept, HTTP front door, WebSocket reader/writer, outboxes.
//! - [`datadir`]: manifest, lock, admin token, cluster record.
//! - [`cluster`]: cluster mode — flags, joining the etcd control plane at
//!   start, the node's [`cluster::Mode`] (admin token hash, session
//!   refusal, `GET /admin/cluster`).
//! - [`limits`]: per-connection and per-user rate limits.
//! - [`link`]: node-to-node links (TCP between cluster nodes, docs/LINKS.md).
//! - [`listener`]: listening sockets whose accept is ended from outside
//!   (never re-polled under a timeout: that leaks waker references).
//! - [`http`]: request-head routing (pure).
//! - [`web`]: the web app's files, embedded (served at `GET /`).
//! - [`sync`]: generic async helpers ([`sync::Signal`], [`sync::with_timeout`]).
//! - [`config`], [`constants`], [`metrics`], [`signals`].
//! - `failpoints` (only with the `failpoints` feature): crash points and
//!   broken-on-purpose modes for reliability tests.
#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod backup;
pub mod cluster;
pub mod config;
pub mod constants;
pub mod datadir;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod link;
pub mod listener;
pub mod metrics;
pub mod push;
pub mod server;
pub mod shard;
pub mod signals;
pub mod sync;
pub mod web;
