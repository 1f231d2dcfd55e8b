//! A loop-mounted ext4 image for the full-disk tests, shared by
//! `wal/tests/enospc.rs` and `net/tests/enospc.rs` (included with
//! `#[path]`). Needs root, a free loop device and the right to mount.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop-mounted ext4 image; unmounted and detached on drop.
pub struct LoopMount {
    image_dir: tempfile::TempDir,
    mount_point: PathBuf,
    device: Option<String>,
    mounted: bool,
}

/// Why a [`LoopMount`] could not be set up.
#[derive(Debug)]
pub enum MountError {
    /// `mkfs.ext4` is missing or failed: a broken test machine, never a
    /// reason to skip.
    Mkfs(String),
    /// No loop device, or no right to mount (e.g. an unprivileged
    /// container), or the image could not be created.
    Mount(String),
}

impl std::fmt::Display for MountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountError::Mkfs(e) => write!(f, "mkfs.ext4: {e}"),
            MountError::Mount(e) => write!(f, "loop mount: {e}"),
        }
    }
}

fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl LoopMount {
    /// A fresh `size_mib` MiB ext4 (`-m 0`: no reserved blocks) mounted
    /// under a temporary directory created in `parent`.
    pub fn new(parent: &Path, size_mib: u64) -> Result<LoopMount, MountError> {
        let setup = |e: std::io::Error| MountError::Mount(e.to_string());
        let image_dir = tempfile::tempdir_in(parent).map_err(setup)?;
        let image = image_dir.path().join("fs.img");
        let mount_point = image_dir.path().join("mnt");
        std::fs::create_dir(&mount_point).map_err(setup)?;
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(size_mib * 1024 * 1024))
            .map_err(setup)?;
        let mut guard = LoopMount {
            image_dir,
            mount_point,
            device: None,
            mounted: false,
        };
        let image = image.to_string_lossy().into_owned();
        sh("mkfs.ext4", &["-q", "-F", "-m", "0", "-b", "4096", &image])
            .map_err(MountError::Mkfs)?;
        let device = sh("losetup", &["--find", "--show", &image]).map_err(MountError::Mount)?;
        guard.device = Some(device.clone());
        sh("mount", &[&device, &guard.mount_point.to_string_lossy()]).map_err(MountError::Mount)?;
        guard.mounted = true;
        Ok(guard)
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if self.mounted {
            let point = self.mount_point.to_string_lossy().into_owned();
            if let Err(e) = sh("umount", &[&point]) {
                eprintln!("umount failed ({e}); detaching lazily");
                let _ = sh("umount", &["-l", &point]);
            }
        }
        if let Some(device) = &self.device {
            if let Err(e) = sh("losetup", &["-d", device]) {
                eprintln!("losetup -d {device} failed: {e}");
            }
        }
        let _ = &self.image_dir; // removed by its own drop, after the unmount
    }
}
