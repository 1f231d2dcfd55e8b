//! A deterministic world for the shards: fake clock, fake WAL per shard
//! (appends, group fsyncs that make a prefix durable, crashes that lose the
//! rest, snapshots), a fake network (FIFO per ordered shard pair, random
//! interleaving across pairs, messages to a crashed shard lost), fake
//! sockets, and clients. A model built from the durable records checks the
//! product's promises as events happen.
//!
//! Everything random comes from one seeded [`Rng`]; a run is a pure function
//! of its seed.
//!
//! Files by concern: [`rng`] (the seeded generator), [`storage`] (the fake
//! WAL and its faults, log truncation behind snapshots), [`history`] (the
//! fake history store), [`net`] (sockets and the peer network), [`client`]
//! (simulated devices), [`live`] (issue 17: devices changing messages), [`checker`] (the ledger and its invariants),
//! [`push`] (the fake gateway), [`cluster`] (the shard replicated on three
//! nodes with Raft, for the cluster simulation), [`world`] (composition, step loop, chaos,
//! crash and restart) and [`scripted`] (helpers for scripted scenarios).

#![allow(dead_code)]

mod checker;
mod client;
mod cluster;
mod history;
mod live;
mod net;
mod push;
mod rng;
mod scripted;
mod storage;
mod world;

pub use checker::*;
pub use client::*;
pub use cluster::*;
pub use history::*;
pub use net::*;
pub use push::*;
pub use rng::*;
#[allow(unused_imports)] // only the scripted scenarios use them
pub use scripted::{scripted_node, ScriptedNode};
pub use storage::*;
pub use world::*;
