//! [`ControlPlane`]: the control plane's etcd operations, one method per
//! thing the cluster agrees on. Each unary request has a deadline
//! (`request_timeout`) so an unreachable etcd turns into
//! [`Error::Timeout`] instead of a hang; only [`ControlPlane::campaign`]
//! (which waits for leadership by design) and watches have none.
//!
//! Every write that must happen at most once, or only by the current
//! controller, is one etcd transaction:
//! - the cluster config: `create_revision(config) == 0` → put;
//! - a node key: `create_revision(node) == 0` → put under the node's lease;
//! - the placement: the writer's election key still exists with its
//!   creation revision (fencing a deposed controller) **and** the placement
//!   is unchanged since it was read (`mod_revision`), and the new epoch is
//!   the old one + 1.

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchStream,
};
use serde::de::DeserializeOwned;

use crate::constants::{NODES_MAX, VALUE_BYTES_MAX};
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::types::{
    hex_encode_32, now_ms, ClusterConfig, ClusterId, ClusterParams, NodeId, NodeInfo, Placement,
};

/// A value read from etcd with the revision of its last write (what a
/// compare-and-swap compares).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// etcd's `mod_revision` of the key when read.
    pub mod_revision: i64,
}

/// How [`ControlPlane::create_or_join`] found the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joined {
    /// This call created the cluster (wrote its config).
    Created,
    /// The cluster existed; this node joins it.
    Existing,
}

/// Proof of holding the controller election: etcd's leader key. Writes
/// fenced with it fail once the key is gone (lease expired or revoked,
/// resigned), so a deposed controller can never overwrite the placement.
#[derive(Clone, Debug)]
pub struct ControllerFence {
    leader: etcd_client::LeaderKey,
}

impl ControllerFence {
    /// The election key, `/courier/<cluster>/controller/<lease hex>`.
    pub fn key(&self) -> String {
        String::from_utf8_lossy(self.leader.key()).into_owned()
    }

    /// The lease the election key lives under.
    pub fn lease(&self) -> i64 {
        self.leader.lease()
    }
}

/// A change in the node registry, from [`NodeWatch::next`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// A node registered.
    Joined(NodeInfo),
    /// A node's key was deleted: its lease expired or was revoked, or it
    /// left.
    Left(NodeId),
}

/// A watch on `/courier/<cluster>/nodes/`, from
/// [`ControlPlane::watch_nodes`]. Reads etcd's stream only when asked
/// (etcd-client buffers a bounded number of responses), so a slow
/// consumer holds no unbounded queue.
pub struct NodeWatch {
    stream: WatchStream,
    keys: Keys,
    pending: std::collections::VecDeque<NodeEvent>,
}

impl NodeWatch {
    /// The next join or leave. Fails when the watch is cancelled by etcd
    /// (e.g. compaction past its revision) or the connection is lost; the
    /// caller then lists [`ControlPlane::nodes`] again and re-watches.
    pub async fn next(&mut self) -> Result<NodeEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let op = "watch nodes";
            let response = self
                .stream
                .message()
                .await
                .map_err(|source| Error::Etcd { op, source })?
                .ok_or_else(|| Error::Etcd {
                    op,
                    source: etcd_client::Error::WatchError("watch stream ended".into()),
                })?;
            if response.canceled() {
                return Err(Error::Etcd {
                    op,
                    source: etcd_client::Error::WatchError(format!(
                        "watch cancelled by etcd: {}",
                        response.cancel_reason()
                    )),
                });
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => {
                        let info: NodeInfo = parse(kv)?;
                        self.pending.push_back(NodeEvent::Joined(info));
                    }
                    EventType::Delete => {
                        if let Some(node_id) = self.keys.node_id_of(kv.key()) {
                            self.pending.push_back(NodeEvent::Left(node_id));
                        }
                    }
                }
            }
        }
    }
}

/// A lease keep-alive stream, from [`ControlPlane::keep_alive`].
pub struct KeepAlive {
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    lease: i64,
    node_id: NodeId,
    timeout: Duration,
}

impl KeepAlive {
    /// Renews the lease once; returns the TTL etcd granted. Fails with
    /// [`Error::LeaseLost`] when the lease no longer exists.
    pub async fn renew(&mut self) -> Result<Duration> {
        let op = "lease keep-alive";
        let exchange = async {
            self.keeper.keep_alive().await?;
            self.stream.message().await
        };
        let response = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => {
                return Err(Error::Timeout {
                    op,
                    timeout: self.timeout,
                })
            }
            Ok(Err(source)) => return Err(Error::Etcd { op, source }),
            Ok(Ok(None)) => {
                return Err(Error::Etcd {
                    op,
                    source: etcd_client::Error::LeaseKeepAliveError(
                        "keep-alive stream ended".into(),
                    ),
                })
            }
            Ok(Ok(Some(response))) => response,
        };
        if response.ttl() <= 0 {
            return Err(Error::LeaseLost {
                node_id: self.node_id,
                lease: self.lease,
            });
        }
        Ok(Duration::from_secs(response.ttl().unsigned_abs()))
    }
}

/// A connection to etcd scoped to one cluster's keys. Cheap to clone
/// (etcd-client's channels are shared).
#[derive(Clone)]
pub struct ControlPlane {
    client: Client,
    keys: Keys,
    cluster: String,
    request_timeout: Duration,
}

impl ControlPlane {
    /// Prepares a connection to `endpoints` (`http://HOST:PORT`) for the
    /// cluster named `cluster`. The connection is lazy: this succeeds while
    /// etcd is down, and requests then fail with [`Error::Timeout`] or
    /// [`Error::Etcd`] until it is up (etcd-client reconnects by itself).
    pub async fn connect(
        endpoints: &[String],
        cluster: &str,
        request_timeout: Duration,
    ) -> Result<ControlPlane> {
        let keys = Keys::new(cluster).map_err(|reason| Error::InvalidParams { reason })?;
        if endpoints.is_empty() {
            return Err(Error::InvalidParams {
                reason: "no etcd endpoint given".into(),
            });
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(request_timeout)
            .with_keep_alive(request_timeout, request_timeout)
            .with_keep_alive_while_idle(true);
        let connect = Client::connect(endpoints, Some(options));
        let client = match tokio::time::timeout(request_timeout, connect).await {
            Err(_) => {
                return Err(Error::Timeout {
                    op: "connect",
                    timeout: request_timeout,
                })
            }
            Ok(Err(source)) => {
                return Err(Error::Etcd {
                    op: "connect",
                    source,
                })
            }
            Ok(Ok(client)) => client,
        };
        Ok(ControlPlane {
            client,
            keys,
            cluster: cluster.to_string(),
            request_timeout,
        })
    }

    /// The cluster's key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    async fn call<T>(
        &self,
        op: &'static str,
        request: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.request_timeout, request).await {
            Err(_) => Err(Error::Timeout {
                op,
                timeout: self.request_timeout,
            }),
            Ok(Err(source)) => Err(Error::Etcd { op, source }),
            Ok(Ok(value)) => Ok(value),
        }
    }

    async fn get_one<T: DeserializeOwned>(
        &self,
        op: &'static str,
        key: String,
    ) -> Result<Option<Versioned<T>>> {
        let mut kv = self.client.kv_client();
        let response = self.call(op, kv.get(key, None)).await?;
        response
            .kvs()
            .first()
            .map(|kv| {
                Ok(Versioned {
                    value: parse(kv)?,
                    mod_revision: kv.mod_revision(),
                })
            })
            .transpose()
    }

    /// The cluster's config, if the cluster exists.
    pub async fn config(&self) -> Result<Option<ClusterConfig>> {
        let config: Option<Versioned<ClusterConfig>> =
            self.get_one("get config", self.keys.config()).await?;
        if let Some(config) = &config {
            config.value.validate().map_err(|reason| Error::Corrupt {
                key: self.keys.config(),
                reason,
            })?;
        }
        Ok(config.map(|c| c.value))
    }

    /// Creates the cluster with `params` if it does not exist (exactly one
    /// of any number of concurrent callers succeeds: a create-if-absent
    /// transaction), else joins it; returns the config etcd holds.
    ///
    /// `recorded` is the cluster id in this node's data directory (None for
    /// a fresh node). A node with a recorded id never creates a cluster:
    /// [`Error::ClusterMissing`] if etcd has none, and
    /// [`Error::ClusterIdMismatch`] if etcd's id differs.
    pub async fn create_or_join(
        &self,
        params: &ClusterParams,
        recorded: Option<ClusterId>,
    ) -> Result<(ClusterConfig, Joined)> {
        params
            .validate()
            .map_err(|reason| Error::InvalidParams { reason })?;
        let existing = if let Some(recorded) = recorded {
            let Some(config) = self.config().await? else {
                return Err(Error::ClusterMissing {
                    cluster: self.cluster.clone(),
                    recorded,
                });
            };
            if config.cluster_id != recorded {
                return Err(Error::ClusterIdMismatch {
                    cluster: self.cluster.clone(),
                    recorded,
                    found: config.cluster_id,
                });
            }
            config
        } else {
            let cluster_id = ClusterId::random().map_err(|e| Error::Agent {
                reason: format!("no random source for the cluster id: {e}"),
            })?;
            let config = ClusterConfig {
                cluster_id,
                shard_count: params.shard_count,
                replication_factor: params.replication_factor,
                created_at_ms: now_ms(),
                admin_token_sha256: hex_encode_32(&params.admin_token_sha256),
            };
            let json = to_json(&config)?;
            let key = self.keys.config();
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.clone(), json, None)])
                .or_else([TxnOp::get(key.clone(), None)]);
            let mut kv = self.client.kv_client();
            let response = self.call("create config", kv.txn(txn)).await?;
            if response.succeeded() {
                tracing::info!(cluster = %self.cluster, cluster_id = %cluster_id,
                    shard_count = config.shard_count, replication_factor = config.replication_factor,
                    "created the cluster");
                return Ok((config, Joined::Created));
            }
            let existing: ClusterConfig =
                first_get(&response.op_responses())?.ok_or_else(|| Error::Corrupt {
                    key: key.clone(),
                    reason: "vanished during creation".into(),
                })?;
            existing
                .validate()
                .map_err(|reason| Error::Corrupt { key, reason })?;
            existing
        };
        if (existing.shard_count, existing.replication_factor)
            != (params.shard_count, params.replication_factor)
        {
            tracing::warn!(cluster = %self.cluster,
                requested_shards = params.shard_count, requested_replication = params.replication_factor,
                shards = existing.shard_count, replication = existing.replication_factor,
                "joining an existing cluster: its parameters win over this node's");
        }
        tracing::info!(cluster = %self.cluster, cluster_id = %existing.cluster_id, "joined the cluster");
        Ok((existing, Joined::Existing))
    }

    /// Grants a lease of `ttl` (rounded up to whole seconds, at least 1).
    pub async fn grant_lease(&self, ttl: Duration) -> Result<i64> {
        let seconds = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .unwrap_or(i64::MAX)
            .max(1);
        let mut lease = self.client.lease_client();
        Ok(self
            .call("grant lease", lease.grant(seconds, None))
            .await?
            .id())
    }

    /// Revokes a lease: its keys (registration, election) go at once.
    pub async fn revoke_lease(&self, lease: i64) -> Result<()> {
        let mut client = self.client.lease_client();
        self.call("revoke lease", client.revoke(lease))
            .await
            .map(|_| ())
    }

    /// Remaining time-to-live of a lease; None when it no longer exists.
    pub async fn lease_remaining(&self, lease: i64) -> Result<Option<Duration>> {
        let mut client = self.client.lease_client();
        let ttl = self
            .call("lease time-to-live", client.time_to_live(lease, None))
            .await?
            .ttl();
        Ok((ttl > 0).then(|| Duration::from_secs(ttl.unsigned_abs())))
    }

    /// Opens a keep-alive stream for `lease` (held by `node_id`).
    pub async fn keep_alive(&self, node_id: NodeId, lease: i64) -> Result<KeepAlive> {
        let mut client = self.client.lease_client();
        let (keeper, stream) = self
            .call("open lease keep-alive", client.keep_alive(lease))
            .await?;
        Ok(KeepAlive {
            keeper,
            stream,
            lease,
            node_id,
            timeout: self.request_timeout,
        })
    }

    /// Registers `info` under `lease`, unless a live node holds the id:
    /// then [`Error::DuplicateNode`] with that node's registration. (A key
    /// already held by this same lease — a retried request — is success.)
    /// A registration with the same [`NodeInfo::instance`] is a previous
    /// run of this node's own data directory — the caller holds that
    /// directory's lock, so that run is dead — and its lease is revoked and
    /// the registration made at once, instead of after the lease's TTL.
    pub async fn register(&self, info: &NodeInfo, lease: i64) -> Result<()> {
        match self.register_once(info, lease).await {
            Err(Error::DuplicateNode { holder, .. })
                if info.instance.is_some() && holder.instance == info.instance =>
            {
                if let Some(stale) = self.own_stale_lease(info).await? {
                    if stale != lease {
                        tracing::warn!(node_id = %info.node_id, lease = format_args!("{stale:x}"),
                            started_at_ms = holder.started_at_ms,
                            "taking over the registration of a previous run of this data directory");
                        // It may have expired meanwhile; if etcd refused,
                        // the registration below fails and is retried.
                        if let Err(e) = self.revoke_lease(stale).await {
                            tracing::debug!(error = %e, "revoking the stale lease");
                        }
                    }
                }
                self.register_once(info, lease).await
            }
            other => other,
        }
    }

    async fn register_once(&self, info: &NodeInfo, lease: i64) -> Result<()> {
        let key = self.keys.node(info.node_id);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                to_json(info)?,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let mut kv = self.client.kv_client();
        let response = self.call("register node", kv.txn(txn)).await?;
        if response.succeeded() {
            tracing::info!(cluster = %self.cluster, node_id = %info.node_id, lease = format_args!("{lease:x}"),
                client_addr = %info.client_addr, peer_addr = %info.peer_addr, "registered");
            return Ok(());
        }
        let responses = response.op_responses();
        let held = get_kvs(&responses)
            .first()
            .map(|kv| (kv.lease(), parse::<NodeInfo>(kv)));
        match held {
            Some((holder_lease, _)) if holder_lease == lease => Ok(()),
            Some((_, holder)) => Err(Error::DuplicateNode {
                node_id: info.node_id,
                holder: Box::new(holder?),
            }),
            // Expired between the compare and the get: let the caller retry.
            None => Err(Error::Etcd {
                op: "register node",
                source: etcd_client::Error::InvalidArgs(
                    "node key expired during registration; retry".into(),
                ),
            }),
        }
    }

    /// The lease of `info`'s node key if the registration there carries
    /// `info`'s instance (read and checked in one get, so another node's
    /// registration is never revoked).
    async fn own_stale_lease(&self, info: &NodeInfo) -> Result<Option<i64>> {
        let mut kv = self.client.kv_client();
        let response = self
            .call("get node", kv.get(self.keys.node(info.node_id), None))
            .await?;
        let Some(held) = response.kvs().first() else {
            return Ok(None);
        };
        let holder = parse::<NodeInfo>(held)?;
        let ours = info.instance.is_some() && holder.instance == info.instance;
        Ok(ours.then(|| held.lease()))
    }

    /// The lease a node's registration lives under, if the node is
    /// registered (lets tests and tools revoke a node's session).
    pub async fn node_lease(&self, node_id: NodeId) -> Result<Option<i64>> {
        let mut kv = self.client.kv_client();
        let response = self
            .call("get node", kv.get(self.keys.node(node_id), None))
            .await?;
        Ok(response.kvs().first().map(KeyValue::lease))
    }

    /// The live nodes, ascending by id (at most [`NODES_MAX`]; more is
    /// reported as corrupt).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let mut kv = self.client.kv_client();
        let options = GetOptions::new()
            .with_prefix()
            .with_limit(NODES_MAX as i64 + 1);
        let response = self
            .call("list nodes", kv.get(self.keys.nodes(), Some(options)))
            .await?;
        if response.kvs().len() > NODES_MAX {
            return Err(Error::Corrupt {
                key: self.keys.nodes(),
                reason: format!("more than {NODES_MAX} nodes"),
            });
        }
        let mut nodes = response
            .kvs()
            .iter()
            .map(parse::<NodeInfo>)
            .collect::<Result<Vec<_>>>()?;
        nodes.sort_by_key(|n| n.node_id);
        Ok(nodes)
    }

    /// Watches the registry from now on (list with [`ControlPlane::nodes`]
    /// first to know the starting set).
    pub async fn watch_nodes(&self) -> Result<NodeWatch> {
        let mut client = self.client.watch_client();
        let options = WatchOptions::new().with_prefix();
        let stream = self
            .call(
                "watch nodes",
                client.watch(self.keys.nodes(), Some(options)),
            )
            .await?;
        Ok(NodeWatch {
            stream,
            keys: self.keys.clone(),
            pending: Default::default(),
        })
    }

    /// The placement, if the controller has written one.
    pub async fn placement(&self) -> Result<Option<Versioned<Placement>>> {
        self.get_one("get placement", self.keys.placement()).await
    }

    /// Writes `next` in place of `previous` (None: no placement yet), only
    /// if the placement is unchanged since `previous` was read and `fence`
    /// still holds the controller election. `next.epoch` must be
    /// `previous.epoch + 1` (1 for the first). Fails with
    /// [`Error::NotController`] or [`Error::PlacementConflict`].
    pub async fn write_placement(
        &self,
        fence: &ControllerFence,
        previous: Option<&Versioned<Placement>>,
        next: &Placement,
    ) -> Result<Versioned<Placement>> {
        let expected_epoch = previous.map_or(1, |p| p.value.epoch + 1);
        if next.epoch != expected_epoch {
            return Err(Error::InvalidParams {
                reason: format!("placement epoch {} must be {expected_epoch}", next.epoch),
            });
        }
        let key = self.keys.placement();
        let unchanged = match previous {
            Some(p) => Compare::mod_revision(key.clone(), CompareOp::Equal, p.mod_revision),
            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        };
        let fenced = Compare::create_revision(
            fence.leader.key().to_vec(),
            CompareOp::Equal,
            fence.leader.rev(),
        );
        let txn = Txn::new()
            .when([fenced, unchanged])
            .and_then([TxnOp::put(key.clone(), to_json(next)?, None)])
            .or_else([
                TxnOp::get(fence.leader.key().to_vec(), None),
                TxnOp::get(key.clone(), None),
            ]);
        let mut kv = self.client.kv_client();
        let response = self.call("write placement", kv.txn(txn)).await?;
        if response.succeeded() {
            let mod_revision = response.header().map_or(0, |h| h.revision());
            tracing::info!(cluster = %self.cluster, epoch = next.epoch, "placement written");
            return Ok(Versioned {
                value: next.clone(),
                mod_revision,
            });
        }
        let responses = response.op_responses();
        let gets: Vec<&etcd_client::GetResponse> = responses
            .iter()
            .filter_map(|r| match r {
                TxnOpResponse::Get(get) => Some(get),
                _ => None,
            })
            .collect();
        let fence_alive = gets.first().is_some_and(|g| {
            g.kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() == fence.leader.rev())
        });
        if !fence_alive {
            return Err(Error::NotController { key: fence.key() });
        }
        let found = gets
            .get(1)
            .and_then(|g| g.kvs().first())
            .map(parse::<Placement>)
            .transpose()?;
        Err(Error::PlacementConflict {
            expected: previous.map(|p| p.value.epoch),
            found: found.map(|p| p.epoch),
        })
    }

    /// Campaigns for controller as `node_id` under `lease`; returns when
    /// elected (may wait indefinitely: no deadline). Cancel by dropping
    /// the future; etcd then withdraws the candidacy.
    pub async fn campaign(&self, node_id: NodeId, lease: i64) -> Result<ControllerFence> {
        let mut election = self.client.election_client();
        let mut response = election
            .campaign(self.keys.controller(), node_id.0.to_string(), lease)
            .await
            .map_err(|source| Error::Etcd {
                op: "campaign",
                source,
            })?;
        let leader = response.take_leader().ok_or_else(|| Error::Etcd {
            op: "campaign",
            source: etcd_client::Error::ElectError("campaign answered without a leader key".into()),
        })?;
        tracing::info!(cluster = %self.cluster, node_id = %node_id, "elected controller");
        Ok(ControllerFence { leader })
    }

    /// Gives up the controller role (the next candidate takes it).
    pub async fn resign(&self, fence: &ControllerFence) -> Result<()> {
        let mut election = self.client.election_client();
        let options = etcd_client::ResignOptions::new().with_leader(fence.leader.clone());
        self.call("resign", election.resign(Some(options)))
            .await
            .map(|_| ())
    }

    /// The current controller and the lease its election key lives under,
    /// if any (the candidate with the oldest key, as etcd's election API
    /// defines the leader).
    pub async fn controller(&self) -> Result<Option<(NodeId, i64)>> {
        let mut kv = self.client.kv_client();
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let prefix = format!("{}/", self.keys.controller());
        let response = self
            .call("get controller", kv.get(prefix.clone(), Some(options)))
            .await?;
        let Some(kv) = response.kvs().first() else {
            return Ok(None);
        };
        let node_id = std::str::from_utf8(kv.value())
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Corrupt {
                key: prefix,
                reason: "election value is not a node id".into(),
            })?;
        Ok(Some((NodeId(node_id), kv.lease())))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    // These plain structs always serialize; the error path exists so a
    // future field that cannot is reported rather than written as garbage.
    serde_json::to_vec(value).map_err(|e| Error::InvalidParams {
        reason: format!("cannot serialize: {e}"),
    })
}

fn parse<T: DeserializeOwned>(kv: &KeyValue) -> Result<T> {
    let key = String::from_utf8_lossy(kv.key()).into_owned();
    if kv.value().len() > VALUE_BYTES_MAX {
        return Err(Error::Corrupt {
            key,
            reason: format!("value larger than {VALUE_BYTES_MAX} bytes"),
        });
    }
    serde_json::from_slice(kv.value()).map_err(|e| Error::Corrupt {
        key,
        reason: e.to_string(),
    })
}

fn get_kvs(responses: &[TxnOpResponse]) -> Vec<KeyValue> {
    responses
        .iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(get) => Some(get.kvs().to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn first_get<T: DeserializeOwned>(responses: &[TxnOpResponse]) -> Result<Option<T>> {
    get_kvs(responses).first().map(parse).transpose()
}
