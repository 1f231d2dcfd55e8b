//! `courier-core`: the deterministic, sans-IO brain of Courier.
//!
//! A node runs one [`Shard`] per core. A shard is a state machine: the
//! runtime feeds it [`api::Input`]s (client frames already decoded, messages
//! from other shards, "the WAL is durable up to LSN n", time) and carries
//! out the [`api::Effect`]s it returns (append this record, send this to
//! shard 3, deliver this event to these sockets, read these records back).
//! It never touches a socket, a file, a clock, a thread or a random source,
//! so the whole server runs inside a seeded simulation (`core/tests/sim`)
//! that checks the product's promises on thousands of schedules and crashes.
//!
//! The design in brief:
//!
//! - **Placement.** Every id carries a placement slot; [`ids::shard_of`]
//!   maps it to the shard that owns the entity. A conversation's owner
//!   sequences it; a user's home shard holds their credentials, cursors and
//!   devices; a workspace's shard holds its name directories. Ids are unique
//!   without coordination (allocating shard + counter, restored on replay).
//! - **Persist, then act.** Every state change is one [`record::Record`]
//!   appended to the shard's own WAL and applied by the same function live
//!   and on replay. Acks, live events, and messages to other shards that
//!   depend on a record wait for `Durable`. Readers see durable state only.
//! - **Derived state converges.** The user → conversations index on the
//!   home shard is derived from the owners: kept current by their messages
//!   and replaced wholesale by a membership round from every owner at every
//!   start, so a crash between two shards' records heals on restart.
//! - **One authorization function** ([`auth::authorize`]) guards every read,
//!   subscription, sync, history and send at the owner; denial is
//!   indistinguishable from nonexistence.
//! - **Interest, not membership, drives fanout.** Owners keep a bitset of
//!   shards with subscribed sessions; a message costs one cross-shard hop
//!   per interested shard, carrying one shared `Arc<Event>`.
//! - **Everything is bounded**: see [`constants`].
//!
//! # Layout
//!
//! | module | what |
//! | --- | --- |
//! | [`api`] | the contract with the runtime: inputs, effects, `PeerMsg`, pushes; re-exports `types`, so every public path is `api::X` |
//! | `types` | the vocabulary every module imports: ids, requests, responses, rejects, events (below `peer`, so `api` ↔ `peer` is no cycle) |
//! | [`constants`] | every limit, with compile-time checks of their relations |
//! | [`ids`] | id layout, placement (`shard_of`), allocation, DM slots |
//! | [`record`] | the WAL records (rkyv) and their kind bytes |
//! | `state` | the persistent entities and `State::apply` |
//! | [`snapshot`] | versioned snapshot encoding, restore |
//! | [`auth`] | the authorization function, secret hashing |
//! | `shard` | [`Shard`]: the composition of the parts below; recovery, input dispatch, one `on_peer` arm per role |
//! | `commit` | `Ctx`: the commit machinery every role gets (`commit`, `after_durable`, durability queue, `send_peer`, placement helpers) |
//! | `config` | [`ShardConfig`], [`NotifyConfig`], [`Metrics`] |
//! | `pending` | `PendingTable`: bounded pending work with a deadline index and incarnation tickets |
//! | `conn` | `ConnRole`, connection-shard role: sessions, routing, subscriptions, delivery |
//! | `home` | `HomeRole`, home-shard role: tokens, devices, cursors, preferences, derived lists |
//! | `owner` | `OwnerRole`, owner role: membership, sequencer, history, interest, summaries |
//! | `directory` | `WorkspaceRole`, workspace role: name directories, two-shard creations |
//! | `gather` | `GatherRole`: `Sync`, `Boot`, `ListConversations` scatter-gathers |
//! | `peer` | the cross-shard protocol: one struct per message in `peer::<role>`, one enum per receiving role |
//! | `notifier` | `NotifierRole`: the hand-off, the home-side decision, the push outbox |
//! | [`notify`] | notification candidates and the decision table (pure) |
//! | [`live`] | issue 17: how a change event (edit, delete, reaction) changes the message it targets (pure; the owner and clients apply the same rule) |
//! | [`text`] | name and body checks, the size estimates that byte budgets use |
//! | `people` | issue 16's handlers for every role: profiles, `GetUsers`, the directory, member lists |
//! | `settings` | issue 16, part 4: channel settings as sequenced events; a rename's two-shard name claim (`O` ⇄ `W`) |
//! | `roles` | workspace roles and deactivation: `SetRole` through `H` and `W`, the repair rounds |
//! | [`profile`] | profile checks, updates, expiry, sort keys (pure) |
//! | `dirindex` | the workspace directory's sorted index with prefix search |
//! | `cache`, `bitset`, `hash` | recent-message cache, shard sets, keyed hashing |

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod api;
mod around;
pub mod auth;
mod bitset;
mod cache;
mod changes;
mod commit;
mod config;
mod conn;
pub mod constants;
mod directory;
mod dirindex;
mod gather;
mod hash;
mod home;
pub mod ids;
mod invites;
pub mod live;
mod notifier;
pub mod notify;
mod owner;
mod peer;
mod pending;
mod people;
mod pins;
pub mod profile;
pub mod record;
mod roles;
mod settings;
mod shard;
pub mod snapshot;
mod state;
pub mod text;
mod threads;
// The types cross nodes as peer messages (`peer::wire`, rkyv); rkyv's derive
// generates a public resolver enum per data-carrying enum whose named
// variant fields have no docs. Every hand-written item in `types` is
// documented (review it there; the lint cannot tell the two apart).
#[allow(missing_docs)]
mod types;

pub use config::{Metrics, NotifyConfig, PushMode, ShardConfig};
pub use shard::{ReplayError, Shard};
pub use snapshot::RestoreError;
