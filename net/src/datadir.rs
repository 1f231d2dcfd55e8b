//! The data directory: `MANIFEST` (format version, shard count, node id), a
//! `LOCK` held for the daemon's lifetime, the admin token, `INSTANCE` (the
//! directory's identity, made at its first cluster-mode start), `CLUSTER`
//! (only in cluster mode: which cluster and node the directory belongs to)
//! and one `shard-K/` directory per shard for its WAL.
//!
//! The shard count is fixed when the directory is created: conversations and
//! users are placed on shards by id, so starting with another count would put
//! them on the wrong shard. That is refused with a clear error; re-sharding is
//! an explicit offline operation, never an accident.
//!
//! A directory belongs to one mode for life. A cluster-mode start writes
//! `CLUSTER` before `MANIFEST`, so a directory with a manifest and no
//! `CLUSTER` was made by a single-node start (cluster mode refuses it: its
//! data has one copy and no cluster knows it), and a directory with
//! `CLUSTER` is refused by a single-node start (serving it alone would
//! acknowledge with one copy). Opening is two steps: [`LockedDir::lock`]
//! takes the lock and reads what is there; [`LockedDir::finish`] creates
//! what is missing once the caller (single-node: [`DataDir::open`];
//! cluster mode: `crate::cluster`) has decided the directory may be used.
use anyhow::{bail, Context};
use courier_cluster::{ClusterId, NodeId};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// On-disk format version of the data directory as a whole.
pub const FORMAT_VERSION: u32 = 1;

/// Name of the cluster record in a cluster-mode data directory.
pub const CLUSTER_FILE: &str = "CLUSTER";

/// Name of the directory's identity file ([`LockedDir::instance`]).
pub const INSTANCE_FILE: &str = "INSTANCE";

/// The parsed manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Format version.
    pub format_version: u32,
    /// Shards (fixed for the directory's life).
    pub shard_count: u16,
    /// This node's id: 1 in single-node mode, `--node-id` in cluster mode.
    pub node_id: u32,
}

impl Manifest {
    fn render(&self) -> String {
        format!(
            "# Courier data directory manifest. Do not edit.\nformat_version = {}\nshard_count = {}\nnode_id = {}\n",
            self.format_version, self.shard_count, self.node_id
        )
    }

    fn parse(text: &str) -> anyhow::Result<Manifest> {
        let mut format_version = None;
        let mut shard_count = None;
        let mut node_id = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .with_context(|| format!("bad manifest line {line:?}"))?;
            let value = value.trim();
            match key.trim() {
                "format_version" => format_version = Some(value.parse()?),
                "shard_count" => shard_count = Some(value.parse()?),
                "node_id" => node_id = Some(value.parse()?),
                other => bail!("unknown manifest key {other:?}"),
            }
        }
        Ok(Manifest {
            format_version: format_version.context("manifest lacks format_version")?,
            shard_count: shard_count.context("manifest lacks shard_count")?,
            node_id: node_id.context("manifest lacks node_id")?,
        })
    }
}

/// What `CLUSTER` records: the cluster and node a cluster-mode data
/// directory belongs to. Written once, atomically, right after the node
/// first joined, before anything else is created in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterRecord {
    /// Cluster name (the etcd key prefix).
    pub cluster: String,
    /// Cluster identity (from etcd).
    pub cluster_id: ClusterId,
    /// This node's id.
    pub node_id: NodeId,
}

impl ClusterRecord {
    fn render(&self) -> String {
        format!(
            "# Courier cluster membership of this data directory. Do not edit.\ncluster = {}\ncluster_id = {}\nnode_id = {}\n",
            self.cluster, self.cluster_id, self.node_id
        )
    }

    fn parse(text: &str) -> Result<ClusterRecord, String> {
        let (mut cluster, mut cluster_id, mut node_id) = (None, None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("bad line {line:?}"))?;
            let value = value.trim();
            let number = |what: &str| format!("{what} {value:?} is not a number");
            match key.trim() {
                "cluster" => cluster = Some(value.to_owned()),
                "cluster_id" => {
                    cluster_id = Some(ClusterId(value.parse().map_err(|_| number("cluster_id"))?))
                }
                "node_id" => node_id = Some(NodeId(value.parse().map_err(|_| number("node_id"))?)),
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        Ok(ClusterRecord {
            cluster: cluster.ok_or("no cluster")?,
            cluster_id: cluster_id.ok_or("no cluster_id")?,
            node_id: node_id.ok_or("no node_id")?,
        })
    }
}

/// How the admin token is settled when a directory is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminToken {
    /// Single-node: `admin.token` in the directory is the token (written,
    /// mode 0600, on first start).
    Local,
    /// Cluster mode: the cluster-wide token's sha256, from etcd.
    Cluster([u8; 32]),
}

/// A data directory that is locked and read, but not yet created or
/// checked against a shard count (see the module docs).
pub struct LockedDir {
    root: PathBuf,
    lock: File,
    manifest: Option<Manifest>,
    cluster: Option<ClusterRecord>,
}

impl LockedDir {
    /// Creates `root` if needed, takes its lock (refusing a directory
    /// another courierd holds) and reads `MANIFEST` and `CLUSTER` if they
    /// exist.
    pub fn lock(root: &Path) -> anyhow::Result<LockedDir> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating data directory {}", root.display()))?;
        // Absolute from here on: the WAL opens directories through glommio,
        // which does not resolve relative paths against the working directory.
        let root = std::fs::canonicalize(root)
            .with_context(|| format!("resolving data directory {}", root.display()))?;
        let lock = lock(&root.join("LOCK"))?;
        let manifest_path = root.join("MANIFEST");
        let manifest = if manifest_path.exists() {
            let text = std::fs::read_to_string(&manifest_path)
                .with_context(|| format!("reading {}", manifest_path.display()))?;
            let manifest = Manifest::parse(&text)
                .with_context(|| format!("parsing {}", manifest_path.display()))?;
            if manifest.format_version != FORMAT_VERSION {
                bail!(
                    "{} has format version {}, this courierd reads {}",
                    manifest_path.display(),
                    manifest.format_version,
                    FORMAT_VERSION
                );
            }
            Some(manifest)
        } else {
            None
        };
        let cluster_path = root.join(CLUSTER_FILE);
        let cluster = match std::fs::read_to_string(&cluster_path) {
            Ok(text) => Some(ClusterRecord::parse(&text).map_err(|reason| {
                anyhow::anyhow!("parsing {}: {reason}", cluster_path.display())
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", cluster_path.display())),
        };
        Ok(LockedDir {
            root,
            lock,
            manifest,
            cluster,
        })
    }

    /// The directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cluster this directory belongs to, if it was used in cluster mode.
    pub fn cluster(&self) -> Option<&ClusterRecord> {
        self.cluster.as_ref()
    }

    /// Whether the directory was used before (it has a manifest).
    pub fn is_used(&self) -> bool {
        self.manifest.is_some()
    }

    /// Writes `CLUSTER` (temp file, fsync, rename, fsync the directory).
    pub fn record_cluster(&mut self, record: ClusterRecord) -> anyhow::Result<()> {
        write_atomically(&self.root, CLUSTER_FILE, record.render().as_bytes(), 0o644)?;
        self.cluster = Some(record);
        Ok(())
    }

    /// sha256 of the secret in `admin.token`, writing a fresh token (mode
    /// 0600) first if there is none; the flag says whether it was written.
    pub fn admin_token(&self) -> anyhow::Result<([u8; 32], bool)> {
        admin_token(&self.root)
    }

    /// sha256 of the secret in `admin.token`, if the file exists.
    pub fn existing_admin_token(&self) -> anyhow::Result<Option<[u8; 32]>> {
        if self.admin_token_path().exists() {
            admin_token(&self.root).map(|(hash, _)| Some(hash))
        } else {
            Ok(None)
        }
    }

    /// Removes `admin.token` (and fsyncs the directory).
    pub fn remove_admin_token(&self) -> anyhow::Result<()> {
        let path = self.admin_token_path();
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        File::open(&self.root)?.sync_all()?;
        Ok(())
    }

    /// Where the admin token lives.
    pub fn admin_token_path(&self) -> PathBuf {
        self.root.join("admin.token")
    }

    /// The directory's identity: 32 hex digits in `INSTANCE`, made (random,
    /// written atomically) the first time it is asked for. A cluster node
    /// registers it so that its restart after `kill -9` can take over its
    /// previous registration at once: only the process holding this
    /// directory's lock has it. A copied data directory would share it —
    /// never run two copies of one node's directory.
    pub fn instance(&self) -> anyhow::Result<String> {
        let path = self.root.join(INSTANCE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let id = text.trim();
                if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("{} is damaged: expected 32 hex digits", path.display());
                }
                Ok(id.to_owned())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 16];
                getrandom::getrandom(&mut bytes)
                    .map_err(|e| anyhow::anyhow!("no randomness for the instance id: {e}"))?;
                let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                write_atomically(
                    &self.root,
                    INSTANCE_FILE,
                    format!("{id}\n").as_bytes(),
                    0o644,
                )?;
                Ok(id)
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Checks the shard count against the manifest (or writes the manifest,
    /// with `node_id`, on first start), creates the shard directories and
    /// settles the admin token.
    pub fn finish(self, shards: u16, node_id: u32, admin: AdminToken) -> anyhow::Result<DataDir> {
        let root = &self.root;
        let (manifest, created) = match self.manifest {
            Some(manifest) => {
                if manifest.shard_count != shards {
                    bail!(
                        "{} was created with {} shards but --shards is {shards}; data is placed by \
                         shard, so start with --shards {} (re-sharding is an offline tool)",
                        root.display(),
                        manifest.shard_count,
                        manifest.shard_count
                    );
                }
                (manifest, false)
            }
            None => {
                let manifest = Manifest {
                    format_version: FORMAT_VERSION,
                    shard_count: shards,
                    node_id,
                };
                write_atomically(root, "MANIFEST", manifest.render().as_bytes(), 0o644)?;
                (manifest, true)
            }
        };
        for k in 0..manifest.shard_count {
            let dir = root.join(format!("shard-{k}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let (admin_token_hash, admin_token_written) = match admin {
            AdminToken::Local => admin_token(root)?,
            AdminToken::Cluster(hash) => (hash, false),
        };
        Ok(DataDir {
            root: self.root,
            _lock: self.lock,
            manifest,
            cluster: self.cluster,
            admin_token_hash,
            created,
            admin_token_written,
        })
    }
}

/// An opened, locked data directory.
pub struct DataDir {
    root: PathBuf,
    /// Held open: the advisory lock lives as long as this file.
    _lock: File,
    /// The manifest.
    pub manifest: Manifest,
    /// The cluster the directory belongs to (cluster mode only).
    pub cluster: Option<ClusterRecord>,
    /// sha256 of the admin secret.
    pub admin_token_hash: [u8; 32],
    /// True if this start created the directory.
    pub created: bool,
    /// True if this start wrote a new admin token.
    pub admin_token_written: bool,
}

impl DataDir {
    /// Opens (creating on first start) and locks `root` for `shards` shards,
    /// in single-node mode: a directory that belongs to a cluster is
    /// refused.
    pub fn open(root: &Path, shards: u16) -> anyhow::Result<DataDir> {
        let locked = LockedDir::lock(root)?;
        if let Some(record) = locked.cluster() {
            bail!(
                "{} belongs to cluster `{}` (cluster id {}) as node {}; a single-node start would \
                 serve its data with one copy. Start it in cluster mode (--etcd URL --node-id {} \
                 --peer-listen HOST:PORT --cluster {}), or use another --data-dir",
                locked.root().display(),
                record.cluster,
                record.cluster_id,
                record.node_id,
                record.node_id,
                record.cluster
            );
        }
        locked.finish(shards, 1, AdminToken::Local)
    }

    /// The directory of shard `k`'s WAL.
    pub fn shard_dir(&self, k: u16) -> PathBuf {
        self.root.join(format!("shard-{k}"))
    }

    /// Where the admin token lives.
    pub fn admin_token_path(&self) -> PathBuf {
        self.root.join("admin.token")
    }
}

fn lock(path: &Path) -> anyhow::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let holder = std::fs::read_to_string(path).unwrap_or_default();
        bail!(
            "data directory is in use by another courierd ({}: {})",
            path.display(),
            holder.trim()
        );
    }
    file.set_len(0)?;
    writeln!(file, "pid {}", std::process::id())?;
    Ok(file)
}

/// Reads the admin token (writing a fresh one, mode 0600, if absent) and
/// returns sha256 of its secret.
fn admin_token(root: &Path) -> anyhow::Result<([u8; 32], bool)> {
    let path = root.join("admin.token");
    let (text, written) = match std::fs::read_to_string(&path) {
        Ok(text) => (text, false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            getrandom::getrandom(&mut secret)
                .map_err(|e| anyhow::anyhow!("reading OS randomness: {e}"))?;
            let text = courier_proto::token::format_admin(&secret) + "\n";
            write_atomically(root, "admin.token", text.as_bytes(), 0o600)?;
            (text, true)
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    match courier_proto::token::parse(text.trim()) {
        Ok(courier_core::api::Credential::Admin(secret)) => {
            Ok((Sha256::digest(secret).into(), written))
        }
        _ => bail!("{} does not hold an admin token (ca1_…)", path.display()),
    }
}

/// temp file → fsync → rename → fsync directory.
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &target).with_context(|| format!("renaming to {}", target.display()))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_start_creates_and_second_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let a = DataDir::open(&root, 2).unwrap();
        assert!(a.created && a.admin_token_written);
        let mode = std::fs::metadata(a.admin_token_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let hash = a.admin_token_hash;
        drop(a);
        let b = DataDir::open(&root, 2).unwrap();
        assert!(!b.created && !b.admin_token_written);
        assert_eq!(b.admin_token_hash, hash);
        assert!(root.join("shard-1").is_dir());
    }

    #[test]
    fn refuses_other_shard_count_and_second_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let a = DataDir::open(dir.path(), 2).unwrap();
        let err = DataDir::open(dir.path(), 2).err().unwrap();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(a);
        let err = DataDir::open(dir.path(), 3).err().unwrap();
        assert!(err.to_string().contains("created with 2 shards"), "{err}");
    }

    fn record() -> ClusterRecord {
        ClusterRecord {
            cluster: "prod".into(),
            cluster_id: ClusterId(u128::MAX - 1),
            node_id: NodeId(3),
        }
    }

    #[test]
    fn cluster_record_round_trips_and_rejects_junk() {
        assert_eq!(ClusterRecord::parse(&record().render()), Ok(record()));
        assert!(ClusterRecord::parse("cluster = a\nnode_id = 1\n").is_err());
        assert!(ClusterRecord::parse("cluster = a\ncluster_id = x\nnode_id = 1\n").is_err());
        assert!(ClusterRecord::parse("colour = blue\n").is_err());
    }

    #[test]
    fn a_cluster_dir_keeps_its_record_and_refuses_single_node_mode() {
        let dir = tempfile::tempdir().unwrap();
        let mut locked = LockedDir::lock(dir.path()).unwrap();
        assert!(locked.cluster().is_none() && !locked.is_used());
        locked.record_cluster(record()).unwrap();
        let data = locked.finish(2, 3, AdminToken::Cluster([4; 32])).unwrap();
        assert_eq!(data.admin_token_hash, [4; 32]);
        assert!(!data.admin_token_path().exists(), "no token of its own");
        assert_eq!(data.manifest.node_id, 3);
        drop(data);
        let again = LockedDir::lock(dir.path()).unwrap();
        assert_eq!(again.cluster(), Some(&record()));
        assert!(again.is_used());
        drop(again);
        let err = DataDir::open(dir.path(), 2).err().unwrap().to_string();
        assert!(err.contains("belongs to cluster `prod`"), "{err}");
        assert!(err.contains("--node-id 3"), "{err}");
    }

    #[test]
    fn admin_token_is_written_once_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let locked = LockedDir::lock(dir.path()).unwrap();
        assert_eq!(locked.existing_admin_token().unwrap(), None);
        let (hash, written) = locked.admin_token().unwrap();
        assert!(written);
        assert_eq!(locked.admin_token().unwrap(), (hash, false));
        assert_eq!(locked.existing_admin_token().unwrap(), Some(hash));
        locked.remove_admin_token().unwrap();
        assert_eq!(locked.existing_admin_token().unwrap(), None);
    }

    #[test]
    fn manifest_round_trips_and_rejects_junk() {
        let m = Manifest {
            format_version: 1,
            shard_count: 4,
            node_id: 1,
        };
        assert_eq!(Manifest::parse(&m.render()).unwrap(), m);
        assert!(Manifest::parse("format_version = 1\n").is_err());
        assert!(Manifest::parse("what = 1\n").is_err());
    }
}
