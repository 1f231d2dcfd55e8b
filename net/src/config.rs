//! `courierd` configuration: command-line flags, environment variables
//! (`COURIER_*`) and an optional TOML file, in that order of precedence,
//! over documented defaults. The result is a validated [`Config`].

use crate::cluster::{ClusterArgs, ClusterSettings};
use crate::constants;
use anyhow::{bail, Context};
use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Command line of `courierd`. Every flag also reads `COURIER_<NAME>`.
#[derive(Parser, Debug, Default)]
#[command(
    name = "courierd",
    version,
    about = "Courier messaging server (thread-per-core)"
)]
pub struct Args {
    /// TOML config file (flags and env override it).
    #[arg(long, env = "COURIER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (created on first start) [default: ./data].
    #[arg(long, env = "COURIER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address for WebSocket clients, /healthz and /metrics [default: 127.0.0.1:7070].
    #[arg(long, env = "COURIER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Number of shards (one executor each) [default: number of CPUs]. Fixed
    /// for a data directory once created.
    #[arg(long, env = "COURIER_SHARDS")]
    pub shards: Option<u16>,
    /// Pin each shard's thread to a CPU [default: true when shards ≤ CPUs].
    #[arg(long, env = "COURIER_PIN")]
    pub pin: Option<bool>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "COURIER_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Bytes queued for one socket before it is cut off as a slow consumer.
    #[arg(long, env = "COURIER_OUTBOX_BYTES_MAX")]
    pub outbox_bytes_max: Option<usize>,
    /// Seconds of silence after which a connection is closed.
    #[arg(long, env = "COURIER_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds allowed between connecting and a successful Hello.
    #[arg(long, env = "COURIER_PREAUTH_TIMEOUT_SECS")]
    pub preauth_timeout_secs: Option<u64>,
    /// Connections per shard at most.
    #[arg(long, env = "COURIER_CONNECTIONS_PER_SHARD_MAX")]
    pub connections_per_shard_max: Option<usize>,
    /// WAL segment size in MiB (only for newly created segments).
    #[arg(long, env = "COURIER_SEGMENT_MIB")]
    pub segment_mib: Option<u64>,
    /// Records in a shard's log between two snapshots.
    #[arg(long, env = "COURIER_SNAPSHOT_EVERY_RECORDS")]
    pub snapshot_every_records: Option<u64>,
    /// Requests per second per connection (bursts of twice that); 0 = off.
    #[arg(long, env = "COURIER_RATE_CONN_PER_SEC")]
    pub rate_conn_per_sec: Option<u32>,
    /// Requests per second per user on each shard; 0 = off.
    #[arg(long, env = "COURIER_RATE_USER_PER_SEC")]
    pub rate_user_per_sec: Option<u32>,
    /// Requests per second per workspace on each shard, paced (not
    /// refused) beyond it; 0 = off.
    #[arg(long, env = "COURIER_RATE_WORKSPACE_PER_SEC")]
    pub rate_workspace_per_sec: Option<u32>,
    /// Push gateway URL (HTTP POST of JSON); unset = in-app notifications only.
    #[arg(long, env = "COURIER_PUSH_URL")]
    pub push_url: Option<String>,
    /// Send pushes without the message preview.
    #[arg(long, env = "COURIER_PUSH_REDACT_PREVIEW")]
    pub push_redact_preview: Option<bool>,
    /// Milliseconds between the in-app notification and the push for a user
    /// active elsewhere [default: 30000].
    #[arg(long, env = "COURIER_PUSH_GRACE_MS")]
    pub push_grace_ms: Option<u64>,
    /// `@channel`/`@here` notify only in conversations up to this many members [default: 1000].
    #[arg(long, env = "COURIER_BROADCAST_MEMBERS_MAX")]
    pub broadcast_members_max: Option<u32>,
    /// How long after posting a message its author (or an admin) may edit
    /// it, seconds (issue 17) [default: 86400].
    #[arg(long, env = "COURIER_EDIT_WINDOW_SECS")]
    pub edit_window_secs: Option<u64>,
    /// Cluster mode (`--etcd` and the flags that go with it).
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Whether pushes go through a gateway.
fn push_mode(gateway: bool) -> courier_core::PushMode {
    if gateway {
        courier_core::PushMode::Gateway
    } else {
        courier_core::PushMode::Off
    }
}

/// The edit window in ms from `edit_window_secs` (default
/// `EDIT_WINDOW_MS_DEFAULT`; saturating: a huge value means "always").
fn edit_window_ms(secs: Option<u64>) -> u64 {
    secs.map_or(courier_core::constants::EDIT_WINDOW_MS_DEFAULT, |s| {
        s.saturating_mul(1_000)
    })
}

/// The config file's shape; every field optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct File {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    shards: Option<u16>,
    pin: Option<bool>,
    log_format: Option<String>,
    outbox_bytes_max: Option<usize>,
    idle_timeout_secs: Option<u64>,
    preauth_timeout_secs: Option<u64>,
    connections_per_shard_max: Option<usize>,
    segment_mib: Option<u64>,
    snapshot_every_records: Option<u64>,
    rate_conn_per_sec: Option<u32>,
    rate_user_per_sec: Option<u32>,
    rate_workspace_per_sec: Option<u32>,
    push_url: Option<String>,
    push_redact_preview: Option<bool>,
    push_grace_ms: Option<u64>,
    broadcast_members_max: Option<u32>,
    edit_window_secs: Option<u64>,
    etcd: Option<String>,
    node_id: Option<u32>,
    peer_listen: Option<SocketAddr>,
    advertise: Option<SocketAddr>,
    peer_advertise: Option<SocketAddr>,
    replication_factor: Option<u8>,
    cluster_shards: Option<u32>,
    cluster: Option<String>,
}

impl File {
    /// Reads and parses the config file, if one is given.
    fn read(path: Option<&std::path::Path>) -> anyhow::Result<File> {
        let Some(path) = path else {
            return Ok(File::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// The cluster-mode keys, as flags would give them.
    fn cluster_args(&mut self) -> ClusterArgs {
        ClusterArgs {
            etcd: self.etcd.take(),
            node_id: self.node_id.take(),
            peer_listen: self.peer_listen.take(),
            advertise: self.advertise.take(),
            peer_advertise: self.peer_advertise.take(),
            replication_factor: self.replication_factor.take(),
            cluster_shards: self.cluster_shards.take(),
            cluster: self.cluster.take(),
        }
    }
}

/// How logs are written (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated daemon configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address (port 0 picks a free port; the ready line says which).
    pub listen: SocketAddr,
    /// Shard count requested (checked against the manifest).
    pub shards: u16,
    /// Pin shard threads to CPUs.
    pub pin: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Per-socket outbound byte bound.
    pub outbox_bytes_max: usize,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Pre-authentication deadline.
    pub preauth_timeout: Duration,
    /// Connections per shard at most.
    pub connections_per_shard_max: usize,
    /// WAL segment size in bytes.
    pub segment_bytes: u64,
    /// Records in a shard's log between two snapshots.
    pub snapshot_every_records: u64,
    /// Requests per second per connection (0 = unlimited).
    pub rate_conn_per_sec: u32,
    /// Requests per second per user per shard (0 = unlimited).
    pub rate_user_per_sec: u32,
    /// Requests per second per workspace per shard, paced beyond it (0 =
    /// unlimited).
    pub rate_workspace_per_sec: u32,
    /// Push gateway URL, if any.
    pub push_url: Option<String>,
    /// Leave the preview out of pushes.
    pub push_redact_preview: bool,
    /// Notification settings handed to every shard's core.
    pub notify: courier_core::NotifyConfig,
    /// The edit window handed to every shard's core, ms (issue 17).
    pub edit_window_ms: u64,
    /// Cluster mode (`--etcd`), or None for single-node mode.
    pub cluster: Option<ClusterSettings>,
}

impl Config {
    /// Merges flags/env over the file over defaults and validates.
    pub fn load(args: Args) -> anyhow::Result<Config> {
        let mut file = File::read(args.config.as_deref())?;
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070)));
        let cluster = ClusterSettings::from_args(args.cluster.or(file.cluster_args()), listen)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = args
            .shards
            .or(file.shards)
            .unwrap_or_else(|| u16::try_from(cpus).unwrap_or(constants::SHARDS_MAX));
        if shards == 0 || shards > constants::SHARDS_MAX {
            bail!("shards must be 1..={}, got {shards}", constants::SHARDS_MAX);
        }
        let log_format = match args.log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("log_format must be text or json, got {other:?}"),
        };
        let outbox_bytes_max = args
            .outbox_bytes_max
            .or(file.outbox_bytes_max)
            .unwrap_or(constants::OUTBOX_BYTES_MAX_DEFAULT);
        let frame_max = courier_proto::constants::SERVER_FRAME_BYTES_MAX;
        if outbox_bytes_max < frame_max {
            bail!("outbox_bytes_max must be at least one server frame ({frame_max} bytes)");
        }
        let idle = args
            .idle_timeout_secs
            .or(file.idle_timeout_secs)
            .map_or(constants::IDLE_TIMEOUT_DEFAULT, Duration::from_secs);
        let preauth = args
            .preauth_timeout_secs
            .or(file.preauth_timeout_secs)
            .map_or(constants::PREAUTH_TIMEOUT_DEFAULT, Duration::from_secs);
        if idle < Duration::from_secs(1) || preauth < Duration::from_secs(1) {
            bail!("idle_timeout_secs and preauth_timeout_secs must be at least 1");
        }
        let segment_mib = segment_mib(args.segment_mib.or(file.segment_mib))?;
        let snapshot_every_records =
            snapshot_every_records(args.snapshot_every_records.or(file.snapshot_every_records))?;
        let push_url = args.push_url.or(file.push_url);
        if let Some(url) = &push_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("push_url must be an http:// or https:// URL, got {url:?}");
            }
        }
        let grace_ms = args
            .push_grace_ms
            .or(file.push_grace_ms)
            .unwrap_or(courier_core::constants::PUSH_GRACE_MS_DEFAULT);
        if grace_ms > courier_core::constants::PUSH_GRACE_MS_MAX {
            bail!(
                "push_grace_ms must be at most {}",
                courier_core::constants::PUSH_GRACE_MS_MAX
            );
        }
        let broadcast_members_max = args
            .broadcast_members_max
            .or(file.broadcast_members_max)
            .unwrap_or(courier_core::constants::BROADCAST_MEMBERS_DEFAULT);
        if broadcast_members_max > courier_core::constants::BROADCAST_MEMBERS_MAX {
            bail!(
                "broadcast_members_max must be at most {}",
                courier_core::constants::BROADCAST_MEMBERS_MAX
            );
        }
        let notify = courier_core::NotifyConfig {
            push: push_mode(push_url.is_some()),
            grace_ms,
            broadcast_members_max,
        };
        Ok(Config {
            push_redact_preview: args
                .push_redact_preview
                .or(file.push_redact_preview)
                .unwrap_or(false),
            push_url,
            notify,
            edit_window_ms: edit_window_ms(args.edit_window_secs.or(file.edit_window_secs)),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("data")),
            listen,
            cluster,
            shards,
            pin: args.pin.or(file.pin).unwrap_or(usize::from(shards) <= cpus),
            log_format,
            outbox_bytes_max,
            idle_timeout: idle,
            preauth_timeout: preauth,
            connections_per_shard_max: args
                .connections_per_shard_max
                .or(file.connections_per_shard_max)
                .unwrap_or(constants::CONNECTIONS_PER_SHARD_MAX_DEFAULT),
            segment_bytes: segment_mib * 1024 * 1024,
            snapshot_every_records,
            rate_conn_per_sec: args
                .rate_conn_per_sec
                .or(file.rate_conn_per_sec)
                .unwrap_or(constants::RATE_CONN_PER_SEC_DEFAULT),
            rate_user_per_sec: args
                .rate_user_per_sec
                .or(file.rate_user_per_sec)
                .unwrap_or(constants::RATE_USER_PER_SEC_DEFAULT),
            rate_workspace_per_sec: args
                .rate_workspace_per_sec
                .or(file.rate_workspace_per_sec)
                .unwrap_or(constants::RATE_WORKSPACE_PER_SEC_DEFAULT),
        })
    }
}

/// `segment_mib`, defaulted and checked.
fn segment_mib(given: Option<u64>) -> anyhow::Result<u64> {
    let segment_mib = given.unwrap_or(64);
    let segment_range = constants::SEGMENT_MIB_MIN..=constants::SEGMENT_MIB_MAX;
    if !segment_range.contains(&segment_mib) {
        bail!(
            "segment_mib must be {}..={} (a segment holds the largest WAL record and stays within the WAL's maximum), got {segment_mib}",
            constants::SEGMENT_MIB_MIN,
            constants::SEGMENT_MIB_MAX
        );
    }
    Ok(segment_mib)
}

/// `snapshot_every_records`, defaulted and checked.
fn snapshot_every_records(given: Option<u64>) -> anyhow::Result<u64> {
    let n = given.unwrap_or(constants::SNAPSHOT_EVERY_RECORDS);
    if n < constants::SNAPSHOT_EVERY_RECORDS_MIN {
        bail!(
            "snapshot_every_records must be at least {}, got {n}",
            constants::SNAPSHOT_EVERY_RECORDS_MIN
        );
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nshards = 3\nlog_format = \"json\"\n",
        )
        .unwrap();
        let config = Config::load(Args {
            config: Some(path.clone()),
            shards: Some(2),
            ..Args::default()
        })
        .unwrap();
        assert_eq!(config.shards, 2);
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.outbox_bytes_max, constants::OUTBOX_BYTES_MAX_DEFAULT);
        assert_eq!(
            config.edit_window_ms,
            courier_core::constants::EDIT_WINDOW_MS_DEFAULT
        );
        std::fs::write(&path, "edit_window_secs = 60\n").unwrap();
        let from_file = |edit_window_secs| {
            Config::load(Args {
                config: Some(path.clone()),
                edit_window_secs,
                ..Args::default()
            })
            .unwrap()
            .edit_window_ms
        };
        assert_eq!(from_file(None), 60_000, "the file's edit window");
        assert_eq!(from_file(Some(5)), 5_000, "the flag wins");
    }

    #[test]
    fn cluster_keys_come_from_the_file_and_flags_override_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "etcd = \"http://10.0.0.10:2379\"\nnode_id = 4\npeer_listen = \"10.0.0.4:7071\"\ncluster_shards = 64\n",
        )
        .unwrap();
        let config = Config::load(Args {
            config: Some(path.clone()),
            cluster: ClusterArgs {
                node_id: Some(5),
                ..ClusterArgs::default()
            },
            ..Args::default()
        })
        .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.node_id, courier_cluster::NodeId(5));
        assert_eq!(cluster.shard_count, 64);
        assert_eq!(cluster.endpoints, vec!["http://10.0.0.10:2379"]);
        // No cluster key anywhere: single-node mode.
        assert!(Config::load(Args::default()).unwrap().cluster.is_none());
        // A cluster key in the file without etcd is refused like the flag.
        std::fs::write(&path, "node_id = 4\n").unwrap();
        let err = Config::load(Args {
            config: Some(path),
            ..Args::default()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("--node-id only applies in cluster mode"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "shardz = 3\n").unwrap();
        let err = Config::load(Args {
            config: Some(path),
            ..Args::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("shardz"), "{err:#}");
        let err = Config::load(Args {
            shards: Some(0),
            ..Args::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("shards"));
        let err = Config::load(Args {
            log_format: Some("xml".into()),
            ..Args::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("log_format"));
        // Segment sizes the WAL cannot open are refused here, not at start.
        for mib in [0, 1, 1025, 4096] {
            let err = Config::load(Args {
                segment_mib: Some(mib),
                ..Args::default()
            })
            .unwrap_err();
            assert!(
                err.to_string().contains("segment_mib must be 2..=1024"),
                "{err}"
            );
        }
        for mib in [2, 1024] {
            let config = Config::load(Args {
                segment_mib: Some(mib),
                ..Args::default()
            })
            .unwrap();
            let mut options = courier_wal::WalOptions::recommended();
            options.segment_bytes = config.segment_bytes;
            options.validate().unwrap();
        }
    }
}
