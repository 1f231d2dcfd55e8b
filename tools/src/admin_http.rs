//! The HTTP admin surface of `courierd`, as a client: `GET /admin/cluster`
//! with the admin token (`Authorization: Bearer ca1_…`), parsed into a
//! [`ClusterReport`] (what `courier admin cluster status` calls), and
//! `POST /admin/backup` (what `courier admin backup DIR` calls).
//!
//! Plain HTTP/1.1 on the server's client port (the same `ws://HOST:PORT`
//! URL as the WebSocket), one request per connection; the reply is read to
//! its end, bounded by [`RESPONSE_BYTES_MAX`]. The document's fields are
//! documented in docs/OPERATIONS.md ("Cluster status"); unknown fields are
//! ignored, so a newer server stays readable.

use crate::error::ClientError;
use courier_core::api::Reject;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest reply read (a placement of 65,536 shards × 7 replicas is about
/// 8 MiB of JSON).
pub const RESPONSE_BYTES_MAX: usize = 32 << 20;

/// What a server says about its cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode")]
pub enum ClusterReport {
    /// The server runs in single-node mode (no `--etcd`): not a cluster.
    #[serde(rename = "single-node")]
    SingleNode,
    /// The server is a cluster node.
    #[serde(rename = "cluster")]
    Cluster(Box<ClusterView>),
}

/// A cluster node's view of its cluster (its last read of etcd).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// Cluster name (etcd key prefix).
    pub cluster: String,
    /// Cluster id (a 128-bit number as a decimal string).
    pub cluster_id: String,
    /// Shards, fixed at creation.
    pub shard_count: u32,
    /// Replicas per shard, fixed at creation.
    pub replication_factor: u8,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// The node that answered.
    pub answered_by: u32,
    /// Whether that node's last etcd request worked.
    pub etcd_connected: bool,
    /// Its last etcd error, while disconnected.
    pub etcd_error: Option<String>,
    /// Whether its registry key is live.
    pub registered: bool,
    /// The controller, if one is elected.
    pub controller: Option<u32>,
    /// Whether the answering node serves client sessions (it is the
    /// primary and every core is ready).
    pub serving_clients: bool,
    /// Replication state (`"raft"`; `"not built"` from older servers).
    pub replication: String,
    /// The primary as the answering node knows it (the leader of its core
    /// 0's group), if known.
    #[serde(default)]
    pub primary: Option<u32>,
    /// The primary's registered client address, if known.
    #[serde(default)]
    pub primary_client_addr: Option<String>,
    /// The answering node's Raft group per core (empty from older servers).
    #[serde(default)]
    pub cores: Vec<CoreRow>,
    /// Live nodes, plus placement nodes missing from the registry.
    pub nodes: Vec<NodeRow>,
    /// The placement, once the controller wrote one.
    pub placement: Option<PlacementView>,
}

/// One node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRow {
    /// Node id.
    pub node_id: u32,
    /// Registered under a live lease.
    pub alive: bool,
    /// Client address (None for a node that is not alive).
    pub client_addr: Option<String>,
    /// Peer address (None for a node that is not alive).
    pub peer_addr: Option<String>,
    /// Shard cores.
    pub cores: Option<u16>,
    /// Registration time, ms since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// Holds the controller election.
    pub controller: bool,
    /// Is the primary, as the answering node knows it.
    #[serde(default)]
    pub primary: bool,
    /// Serves client sessions: known for the answering node only (None
    /// for the others).
    #[serde(default)]
    pub serving: Option<bool>,
}

/// One core of the answering node: the Raft group it hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreRow {
    /// Core number (= group).
    pub core: u32,
    /// The group's leader as known there (None while unknown).
    pub leader: Option<u64>,
    /// The group's current term.
    pub term: u64,
    /// Highest Raft index known committed.
    pub committed: u64,
    /// Highest Raft index applied.
    pub applied: u64,
    /// Leads its group and has applied everything before its term: may
    /// serve.
    pub ready: bool,
}

/// The placement map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementView {
    /// 1 for the first placement, +1 per change.
    pub epoch: u64,
    /// One row per shard.
    pub shards: Vec<ShardRow>,
}

/// One shard's replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRow {
    /// Shard number.
    pub shard: u32,
    /// Replica nodes; the first is the preferred leader.
    pub replicas: Vec<u32>,
    /// Raft leader (None until Raft exists).
    pub leader: Option<u32>,
    /// Raft term (None until Raft exists).
    pub term: Option<u64>,
    /// Entries the slowest replica is behind the leader (None until Raft
    /// exists).
    pub commit_lag: Option<u64>,
}

/// `GET /admin/cluster` on `server` (a `ws://HOST:PORT[/path]` URL) with
/// the admin token `token`, within `timeout`. A 401 is
/// [`Reject::Unauthenticated`]; a user token is refused here as
/// [`Reject::NotAdmin`] without asking.
pub async fn cluster_status(
    server: &str,
    token: &str,
    timeout: Duration,
) -> Result<ClusterReport, ClientError> {
    let reply = exchange(server, token, "GET /admin/cluster", "", timeout).await?;
    parse_reply(&reply)
}

/// `POST /admin/backup` on `server` with the admin token: the server copies
/// its data directory into `dir` (an absolute path on the server's
/// machine, absent or empty) while it keeps serving, and answers with the
/// backup's report (docs/OPERATIONS.md, "Backup while serving"). Waits up
/// to `timeout`.
pub async fn backup(
    server: &str,
    token: &str,
    dir: &std::path::Path,
    timeout: Duration,
) -> Result<serde_json::Value, ClientError> {
    let dir = dir
        .to_str()
        .filter(|d| !d.contains(['\r', '\n']))
        .ok_or_else(|| ClientError::Protocol(format!("unusable directory name {dir:?}")))?;
    let header = format!("X-Courier-Backup-Dir: {dir}\r\n");
    let reply = exchange(server, token, "POST /admin/backup", &header, timeout).await?;
    let (code, body) = split_reply(&reply, "/admin/backup")?;
    match code {
        200 => serde_json::from_str(body.trim()).map_err(|e| {
            ClientError::Protocol(format!("/admin/backup sent an unreadable report: {e}"))
        }),
        401 => Err(ClientError::Rejected(Reject::Unauthenticated)),
        _ => Err(ClientError::Protocol(format!(
            "/admin/backup answered HTTP {code}: {}",
            body.trim()
        ))),
    }
}

/// One HTTP/1.1 request (`request`: method and path; `headers`: extra
/// header lines, each ending in CRLF) with the admin token, on the
/// server's client port; the whole reply, bounded by
/// [`RESPONSE_BYTES_MAX`], within `timeout`.
async fn exchange(
    server: &str,
    token: &str,
    request: &str,
    headers: &str,
    timeout: Duration,
) -> Result<Vec<u8>, ClientError> {
    if !token.starts_with("ca1_") {
        return Err(ClientError::Rejected(Reject::NotAdmin));
    }
    let url = crate::normalize_url(server)?;
    let authority = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| ClientError::Connect {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let request = format!(
            "{request} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
             {headers}Accept: application/json\r\nConnection: close\r\n\r\n"
        );
        let lost = |e: std::io::Error| ClientError::Closed {
            code: None,
            reason: format!("reading the reply to {request}: {e}"),
        };
        stream.write_all(request.as_bytes()).await.map_err(lost)?;
        let mut reply = Vec::new();
        let limit = u64::try_from(RESPONSE_BYTES_MAX + 1).unwrap_or(u64::MAX);
        (&mut stream)
            .take(limit)
            .read_to_end(&mut reply)
            .await
            .map_err(lost)?;
        Ok::<_, ClientError>(reply)
    };
    let reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout(timeout))??;
    if reply.len() > RESPONSE_BYTES_MAX {
        return Err(ClientError::Protocol(format!(
            "reply to {request} over {RESPONSE_BYTES_MAX} bytes"
        )));
    }
    Ok(reply)
}

/// The status code and body of a whole HTTP reply.
fn split_reply(reply: &[u8], what: &str) -> Result<(u16, String), ClientError> {
    let text = String::from_utf8_lossy(reply);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(ClientError::Protocol(format!(
            "incomplete HTTP reply from {what}"
        )));
    };
    let code: u16 = head
        .lines()
        .next()
        .and_then(|status| status.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("bad HTTP status line in {head:?}")))?;
    Ok((code, body.to_owned()))
}

/// Parses a whole HTTP reply to `GET /admin/cluster`.
pub fn parse_reply(reply: &[u8]) -> Result<ClusterReport, ClientError> {
    let (code, body) = split_reply(reply, "/admin/cluster")?;
    match code {
        200 => serde_json::from_str(body.trim()).map_err(|e| {
            ClientError::Protocol(format!("/admin/cluster sent an unreadable document: {e}"))
        }),
        401 => Err(ClientError::Rejected(Reject::Unauthenticated)),
        404 => Err(ClientError::Protocol(
            "the server has no /admin/cluster (a courierd older than cluster mode?)".into(),
        )),
        _ => Err(ClientError::Protocol(format!(
            "/admin/cluster answered HTTP {code}: {}",
            body.trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(code: &str, body: &str) -> Vec<u8> {
        format!("HTTP/1.1 {code}\r\nContent-Type: application/json\r\n\r\n{body}").into_bytes()
    }

    #[test]
    fn parses_both_modes_and_refusals() {
        assert_eq!(
            parse_reply(&http("200 OK", "{\"mode\":\"single-node\"}\n")).unwrap(),
            ClusterReport::SingleNode
        );
        let doc = r#"{"mode":"cluster","cluster":"c","cluster_id":"340282366920938463463374607431768211455",
            "shard_count":2,"replication_factor":1,"created_at_ms":1,"answered_by":1,
            "etcd_connected":true,"etcd_error":null,"registered":true,"controller":1,
            "serving_clients":false,"replication":"not built","future_field":7,
            "nodes":[{"node_id":1,"alive":true,"client_addr":"a:1","peer_addr":"a:2","cores":2,
                      "started_at_ms":5,"controller":true}],
            "placement":{"epoch":1,"shards":[{"shard":0,"replicas":[1],"leader":null,"term":null,"commit_lag":null}]}}"#;
        let ClusterReport::Cluster(view) = parse_reply(&http("200 OK", doc)).unwrap() else {
            panic!("expected a cluster");
        };
        assert_eq!(view.nodes[0].client_addr.as_deref(), Some("a:1"));
        assert_eq!(view.placement.unwrap().shards[0].replicas, vec![1]);
        assert!(matches!(
            parse_reply(&http("401 Unauthorized", "{}")),
            Err(ClientError::Rejected(Reject::Unauthenticated))
        ));
        assert!(matches!(
            parse_reply(&http("404 Not Found", "")),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            parse_reply(b"HTTP/1.1 200"),
            Err(ClientError::Protocol(_))
        ));
    }
}
