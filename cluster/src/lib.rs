//! Courier's cluster control plane, on etcd.
//!
//! A Courier cluster agrees on a few facts that change rarely: its identity
//! and fixed parameters (shard count, replication factor), which nodes are
//! alive and where they listen, and which nodes hold each shard's replicas
//! (the placement, with an epoch). This crate keeps those facts in etcd and
//! gives a node a [`ClusterAgent`] that joins the cluster, keeps the node
//! registered under a lease, takes part in the controller election (etcd's
//! election API) and, while controller, writes placements. The design and
//! the key layout are in `docs/CLUSTER.md`.
//!
//! What it must never do:
//! - **decide anything about shard data.** Consensus on messages, terms,
//!   leader election *within* a shard and failure detection for shard
//!   replicas are Raft's (a later issue). The placement says where replicas
//!   *should* be; it is not a lock and grants no right to acknowledge.
//! - **block a shard core.** The agent runs on its own thread with its own
//!   single-threaded tokio runtime; the core reads [`ClusterStatus`]
//!   snapshots and never waits on etcd.
//! - **stop service because etcd is away.** A node that loses etcd keeps
//!   the last placement (reported with `etcd_connected: false`) and
//!   reconnects; only membership and placement changes wait for etcd.
//! - **invent consensus.** Every agreement goes through an etcd
//!   transaction (create-if-absent, compare-and-swap fenced by the election
//!   key), never through our own timing arguments.
//!
//! # Layout
//!
//! - [`types`]: the stored values (config, node, placement) and the status.
//! - [`keys`]: the etcd key layout.
//! - [`placement`]: the pure placement function.
//! - [`controller`]: the pure "is a placement due" decision.
//! - [`control`]: etcd operations ([`ControlPlane`]).
//! - [`agent`]: the node's agent thread ([`ClusterAgent`]).
//! - [`constants`]: limits and default timings.
//! - [`error`]: the error type.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod agent;
pub mod constants;
pub mod control;
pub mod controller;
pub mod error;
pub mod keys;
pub mod placement;
pub mod types;

pub use agent::{AgentConfig, ClusterAgent, Departure, NodeSpec, Timing};
pub use control::{
    ControlPlane, ControllerFence, Joined, KeepAlive, NodeEvent, NodeWatch, Versioned,
};
pub use controller::{ControllerState, DecideParams};
pub use error::{Error, Result};
pub use placement::compute_placement;
pub use types::{
    ClusterConfig, ClusterId, ClusterParams, ClusterStatus, NodeId, NodeInfo, Placement,
};
