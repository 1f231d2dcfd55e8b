//! Baselines in the same run: the `send` and `e2e` workloads expressed for
//! NATS JetStream and Redis Streams, run against a `nats-server` /
//! `redis-server` the harness starts on 127.0.0.1 with its data in a
//! temporary directory (and stops). Peers that are not installed are
//! skipped with a message saying so (`scripts/install-baselines` installs
//! the Debian packages).
//!
//! Both peers are spoken to directly over their text protocols (RESP2,
//! NATS client protocol), with the same thread-per-core load generator and
//! the same per-connection discipline as the Courier client, so the client
//! side costs the same for every system and no third-party client library
//! adds buffering or threads of its own. The mapping:
//!
//! | Courier | Redis | NATS JetStream |
//! | --- | --- | --- |
//! | conversation | stream `conv:{i}` | stream `conv_{i}` on subject `conv.{i}`, file storage |
//! | `Send` → `SendAck` | `XADD conv:{i} * b BODY` → id | `PUB conv.{i} REPLY BODY` → PubAck |
//! | live delivery to members | `XREAD BLOCK 0 STREAMS conv:{i} LAST` per reader | one push consumer per reader (deliver new, ack none) |
//!
//! Durability (see docs/PERFORMANCE.md): Redis with `appendfsync always`
//! writes and fsyncs the AOF before replying, once per event-loop turn —
//! the same promise as Courier's group commit. NATS 2.9 has no setting
//! that fsyncs before the PubAck (see [`nats`]).

pub mod nats;
pub mod redis;
pub mod resp;

use crate::server::Common;
use anyhow::{bail, Context};
use clap::ValueEnum;
use serde_json::Value;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A peer system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// NATS JetStream (`nats-server`).
    Nats,
    /// Redis Streams (`redis-server`).
    Redis,
}

impl Peer {
    /// Key in the JSON results.
    pub fn key(self) -> &'static str {
        match self {
            Peer::Nats => "nats",
            Peer::Redis => "redis",
        }
    }

    /// Row label.
    pub fn label(self, fsync: redis::Fsync) -> String {
        match self {
            Peer::Nats => "nats-jetstream (2.9 default sync)".to_owned(),
            Peer::Redis => format!("redis (appendfsync {fsync})"),
        }
    }

    /// The server binary.
    pub fn binary(self) -> &'static str {
        match self {
            Peer::Nats => "nats-server",
            Peer::Redis => "redis-server",
        }
    }

    /// Its path, if installed.
    pub fn find(self) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .chain([
                "/usr/sbin".into(),
                "/usr/bin".into(),
                "/usr/local/bin".into(),
            ])
            .map(|d| d.join(self.binary()))
            .find(|p| p.is_file())
    }

    /// Why it is skipped.
    pub fn missing_reason(self) -> String {
        format!(
            "{} is not installed (run scripts/install-baselines)",
            self.binary()
        )
    }
}

/// A peer server process with its temporary data directory.
pub struct PeerServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data directory.
    pub dir: tempfile::TempDir,
}

impl PeerServer {
    /// Starts `binary args…` (args may use `{port}` and `{dir}`), and waits
    /// until it accepts TCP connections.
    pub fn start(binary: &Path, args: &[String], common: &Common) -> anyhow::Result<PeerServer> {
        let root = common.data_root();
        let dir = tempfile::Builder::new()
            .prefix("courier-bench-peer-")
            .tempdir_in(&root)?;
        let port = free_port()?;
        let subst = |a: &String| {
            a.replace("{port}", &port.to_string())
                .replace("{dir}", &dir.path().display().to_string())
        };
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut command = Command::new(binary);
        // SAFETY: prctl is async-signal-safe; the peer dies with the harness.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .args(args.iter().map(subst))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = PeerServer { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "{} exited with {status}: {}",
                    binary.display(),
                    std::fs::read_to_string(server.dir.path().join("server.log"))
                        .unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                server.stop();
                bail!(
                    "{} did not accept connections within 20 s",
                    binary.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Runs the `send` workload against `peer`; `None` if it is not installed.
pub fn send(
    peer: Peer,
    args: &crate::send::SendArgs,
    common: &Common,
    fsync: redis::Fsync,
) -> anyhow::Result<Option<Value>> {
    let Some(binary) = peer.find() else {
        return Ok(None);
    };
    match peer {
        Peer::Redis => redis::send(&binary, args, common, fsync).map(Some),
        Peer::Nats => nats::send(&binary, args, common).map(Some),
    }
}

/// A started peer for the e2e sweep (one server for every step).
pub enum E2eRunner {
    /// Redis Streams.
    Redis(redis::E2e),
    /// NATS JetStream.
    Nats(nats::E2e),
}

impl E2eRunner {
    /// Starts the peer (and creates its streams).
    pub fn new(
        peer: Peer,
        binary: &Path,
        args: &crate::e2e::E2eArgs,
        common: &Common,
        fsync: redis::Fsync,
    ) -> anyhow::Result<E2eRunner> {
        Ok(match peer {
            Peer::Redis => E2eRunner::Redis(redis::E2e::new(binary, args, common, fsync)?),
            Peer::Nats => E2eRunner::Nats(nats::E2e::new(binary, args, common)?),
        })
    }

    /// One fixed-rate step.
    pub fn step(&mut self, rate: f64, secs: f64) -> anyhow::Result<crate::e2e::Step> {
        match self {
            E2eRunner::Redis(r) => r.step(rate, secs),
            E2eRunner::Nats(n) => n.step(rate, secs),
        }
    }
}
