//! The storage layer: the only place that touches files. Every operation goes
//! through here so that errors get their context (operation + path), short
//! writes become errors, and tests can inject faults ([`crate::Faults`]).
//!
//! Glommio pitfalls handled here: `DmaFile::create` opens write-only, so files
//! that are read back are opened read+write through `OpenOptions`; the first
//! direct-I/O file opened on a device must be non-empty (glommio issues
//! 605/670), so [`Storage::probe_direct_io`] opens a non-empty probe file
//! before anything else; tmpfs silently loses `O_DIRECT`, so it is refused.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    rc::Rc,
};

use glommio::io::{Directory, DmaBuffer, DmaFile, OpenOptions, ReadResult};

use crate::{
    constants::{BLOCK_BYTES, PROBE_FILE_NAME},
    options::{FaultPoint, Faults, SyncMode},
    Error, Result,
};

/// File operations with fault injection and error context.
#[derive(Debug)]
pub(crate) struct Storage {
    faults: Option<Faults>,
}

impl Storage {
    pub(crate) fn new(faults: Option<Faults>) -> Storage {
        Storage { faults }
    }

    fn inject(&self, point: FaultPoint, op: &'static str, path: &Path) -> Result<()> {
        match &self.faults {
            Some(faults) => faults.check(point).map_err(|e| Error::io(op, path, e)),
            None => Ok(()),
        }
    }

    /// Open an existing file for direct reads and writes.
    pub(crate) async fn open_rw(&self, path: &Path) -> Result<Rc<DmaFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(|e| Error::io("open", path, e))?;
        Ok(Rc::new(file))
    }

    /// Open an existing file for direct reads and writes that complete only
    /// once durable (`O_DSYNC`).
    pub(crate) async fn open_rw_dsync(&self, path: &Path) -> Result<Rc<DmaFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .dma_open(path)
            .await
            .map_err(|e| Error::io("open", path, e))?;
        Ok(Rc::new(file))
    }

    /// Open the active segment for appending in the given mode.
    pub(crate) async fn open_active(&self, path: &Path, sync: SyncMode) -> Result<Rc<DmaFile>> {
        match sync {
            SyncMode::Fdatasync => self.open_rw(path).await,
            SyncMode::Dsync => self.open_rw_dsync(path).await,
        }
    }

    /// Open an existing file for direct reads.
    pub(crate) async fn open_read(&self, path: &Path) -> Result<Rc<DmaFile>> {
        let file = OpenOptions::new()
            .read(true)
            .dma_open(path)
            .await
            .map_err(|e| Error::io("open", path, e))?;
        Ok(Rc::new(file))
    }

    /// Create (or truncate) a file for direct reads and writes.
    pub(crate) async fn create_rw(&self, path: &Path) -> Result<Rc<DmaFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(path)
            .await
            .map_err(|e| Error::io("create", path, e))?;
        Ok(Rc::new(file))
    }

    /// Write all of `buf` at `pos`; a short write is an error. `point` names
    /// the fault-injection point, if the write has one.
    pub(crate) async fn write_all(
        &self,
        point: Option<FaultPoint>,
        file: &DmaFile,
        path: &Path,
        buf: DmaBuffer,
        pos: u64,
    ) -> Result<()> {
        assert_eq!(pos % BLOCK_BYTES, 0, "unaligned direct write position");
        assert_eq!(
            buf.len() as u64 % BLOCK_BYTES,
            0,
            "unaligned direct write length"
        );
        if let Some(point) = point {
            self.inject(point, "write", path)?;
        }
        let len = buf.len();
        let written = file
            .write_at(buf, pos)
            .await
            .map_err(|e| Error::io("write", path, e))?;
        if written != len {
            // Direct writes to preallocated space are not expected to be short;
            // treat it like the failure it most likely hides (ENOSPC, EIO).
            return Err(Error::io(
                "write",
                path,
                std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write at {pos}: {written} of {len} bytes"),
                ),
            ));
        }
        Ok(())
    }

    /// Write all of a shared buffer at `pos` (no fault point; used for
    /// zero-filling).
    pub(crate) async fn write_all_shared(
        &self,
        file: &DmaFile,
        path: &Path,
        buf: Rc<DmaBuffer>,
        pos: u64,
    ) -> Result<()> {
        assert_eq!(pos % BLOCK_BYTES, 0, "unaligned direct write position");
        assert_eq!(
            buf.len() as u64 % BLOCK_BYTES,
            0,
            "unaligned direct write length"
        );
        let len = buf.len();
        let written = file
            .write_rc_at(buf, pos)
            .await
            .map_err(|e| Error::io("write", path, e))?;
        if written != len {
            return Err(Error::io(
                "write",
                path,
                std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write at {pos}: {written} of {len} bytes"),
                ),
            ));
        }
        Ok(())
    }

    /// `fdatasync` a file.
    pub(crate) async fn sync(&self, point: FaultPoint, file: &DmaFile, path: &Path) -> Result<()> {
        self.inject(point, "fdatasync", path)?;
        file.fdatasync()
            .await
            .map_err(|e| Error::io("fdatasync", path, e))
    }

    /// In `O_DSYNC` mode the sync is part of the write; tests can still fail it.
    pub(crate) fn inject_sync_fault(&self, path: &Path) -> Result<()> {
        self.inject(FaultPoint::SegmentSync, "fdatasync", path)
    }

    /// Preallocate `bytes` for a file (the file size becomes `bytes`).
    pub(crate) async fn preallocate(
        &self,
        point: FaultPoint,
        file: &DmaFile,
        path: &Path,
        bytes: u64,
    ) -> Result<()> {
        self.inject(point, "fallocate", path)?;
        file.pre_allocate(bytes, false)
            .await
            .map_err(|e| Error::io("fallocate", path, e))
    }

    /// Read `len` bytes at the aligned position `pos` (fewer at end of file).
    pub(crate) async fn read(
        &self,
        file: &DmaFile,
        path: &Path,
        pos: u64,
        len: u64,
    ) -> Result<ReadResult> {
        assert_eq!(pos % BLOCK_BYTES, 0, "unaligned direct read position");
        assert_eq!(len % BLOCK_BYTES, 0, "unaligned direct read length");
        file.read_at_aligned(pos, len as usize)
            .await
            .map_err(|e| Error::io("read", path, e))
    }

    /// Length of a file in bytes.
    pub(crate) async fn file_size(&self, file: &DmaFile, path: &Path) -> Result<u64> {
        file.file_size()
            .await
            .map_err(|e| Error::io("stat", path, e))
    }

    /// Cut a file to `len` bytes (torn-tail repair of a history segment).
    pub(crate) async fn truncate(&self, file: &DmaFile, path: &Path, len: u64) -> Result<()> {
        file.truncate(len)
            .await
            .map_err(|e| Error::io("truncate", path, e))
    }

    /// Read many `(position, length)` ranges of one file at once: glommio
    /// merges neighbours (up to `merge_bytes`, fetching at most `amp_bytes`
    /// nobody asked for) and issues the reads concurrently. Results come back
    /// in the order asked; a range past the end of the file is an error.
    pub(crate) async fn read_many(
        &self,
        file: &Rc<DmaFile>,
        path: &Path,
        ranges: Vec<(u64, usize)>,
        merge_bytes: usize,
        amp_bytes: usize,
    ) -> Result<Vec<ReadResult>> {
        use futures_lite::StreamExt;
        use glommio::io::{MergedBufferLimit, ReadAmplificationLimit};
        let wanted = ranges.len();
        let mut results: Vec<Option<ReadResult>> = vec![None; wanted];
        let iovs = futures_lite::stream::iter(
            ranges
                .iter()
                .copied()
                .enumerate()
                .map(|(i, (pos, len))| Indexed { i, pos, len }),
        );
        let mut stream = file.read_many(
            iovs,
            MergedBufferLimit::Custom(merge_bytes),
            ReadAmplificationLimit::Custom(amp_bytes),
        );
        while let Some(item) = stream.next().await {
            let (iov, data) = item.map_err(|e| Error::io("read", path, e))?;
            if data.len() != iov.len {
                return Err(Error::io(
                    "read",
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "short read at {}: {} of {} bytes",
                            iov.pos,
                            data.len(),
                            iov.len
                        ),
                    ),
                ));
            }
            results[iov.i] = Some(data);
        }
        results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| {
                    Error::io(
                        "read",
                        path,
                        std::io::Error::other("read_many lost a range"),
                    )
                })
            })
            .collect()
    }

    /// `fsync` the directory, making creations, renames and deletions durable.
    pub(crate) async fn sync_dir(&self, dir: &Directory, path: &Path) -> Result<()> {
        self.inject(FaultPoint::DirSync, "fsync directory", path)?;
        dir.sync()
            .await
            .map_err(|e| Error::io("fsync directory", path, e))
    }

    /// Rename `from` to `to` (same directory).
    pub(crate) async fn rename(&self, file: &DmaFile, from: &Path, to: &Path) -> Result<()> {
        file.rename(to)
            .await
            .map_err(|e| Error::io("rename", from, e))
    }

    /// Delete a file without blocking the executor.
    pub(crate) async fn remove(&self, path: &Path) -> Result<()> {
        let owned = path.to_path_buf();
        glommio::executor()
            .spawn_blocking(move || std::fs::remove_file(owned))
            .await
            .map_err(|e| Error::io("remove", path, e))
    }

    /// Refuse file systems without direct I/O and defuse glommio's I/O-poll
    /// probe: write (once) a non-empty probe file in `dir`, check it opens with
    /// `O_DIRECT`, then open and read it through glommio before any other file.
    pub(crate) async fn probe_direct_io(&self, dir: &Path) -> Result<()> {
        let probe = dir.join(PROBE_FILE_NAME);
        let probe_for_thread = probe.clone();
        let dir_for_thread = dir.to_path_buf();
        glommio::executor()
            .spawn_blocking(move || prepare_probe(&dir_for_thread, &probe_for_thread))
            .await?;
        let file = self.open_read(&probe).await?;
        let data = self.read(&file, &probe, 0, BLOCK_BYTES).await?;
        if data.len() as u64 != BLOCK_BYTES || data.iter().any(|&b| b != PROBE_BYTE) {
            return Err(Error::DirectIoUnsupported {
                path: dir.to_path_buf(),
                reason: format!(
                    "direct read of {} returned unexpected data",
                    probe.display()
                ),
            });
        }
        drop(data);
        Rc::try_unwrap(file)
            .map_err(|_| {
                Error::io(
                    "close",
                    &probe,
                    std::io::Error::other("probe file still shared"),
                )
            })?
            .close()
            .await
            .map_err(|e| Error::io("close", &probe, e))
    }
}

const PROBE_BYTE: u8 = 0x5A;

/// Blocking part of the direct-I/O probe (runs on glommio's blocking pool).
fn prepare_probe(dir: &Path, probe: &Path) -> Result<()> {
    let fs_type = statfs_type(dir)?;
    // tmpfs and ramfs accept O_DIRECT opens on some kernels but bypass nothing,
    // and glommio then quietly turns direct I/O off: refuse them by type.
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    if fs_type == TMPFS_MAGIC || fs_type == RAMFS_MAGIC {
        return Err(Error::DirectIoUnsupported {
            path: dir.to_path_buf(),
            reason: format!("file system type {fs_type:#x} is tmpfs/ramfs"),
        });
    }
    let wanted = vec![PROBE_BYTE; BLOCK_BYTES as usize];
    let current = std::fs::read(probe).ok();
    if current.as_deref() != Some(&wanted[..]) {
        let tmp = dir.join(format!("{PROBE_FILE_NAME}{}", crate::format::TEMP_SUFFIX));
        std::fs::write(&tmp, &wanted).map_err(|e| Error::io("write", &tmp, e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, probe).map_err(|e| Error::io("rename", &tmp, e))?;
        sync_dir_blocking(dir)?;
    }
    let c_path = CString::new(probe.as_os_str().as_bytes())
        .map_err(|_| Error::io("open", probe, std::io::Error::other("path contains NUL")))?;
    // SAFETY: c_path is a valid NUL-terminated string; the fd is closed below.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECT | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) {
            return Err(Error::DirectIoUnsupported {
                path: dir.to_path_buf(),
                reason: "open(O_DIRECT) failed with EINVAL".to_string(),
            });
        }
        return Err(Error::io("open O_DIRECT", probe, err));
    }
    // SAFETY: fd was returned by open above and is not used after this.
    unsafe { libc::close(fd) };
    Ok(())
}

/// `fsync` a directory with plain blocking calls.
pub(crate) fn sync_dir_blocking(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

fn statfs_type(dir: &Path) -> Result<i64> {
    let c_path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::io("statfs", dir, std::io::Error::other("path contains NUL")))?;
    // SAFETY: statfs writes into the zeroed struct we own; c_path is valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(Error::io("statfs", dir, std::io::Error::last_os_error()));
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// Name of the file system type of `dir` as the kernel reports it (`ext4`…),
/// for benchmark reports. Returns the magic number in hex when unknown.
pub fn fs_type_name(dir: &Path) -> String {
    match statfs_type(dir) {
        Ok(0xEF53) => "ext4".to_string(),
        Ok(0x5846_5342) => "xfs".to_string(),
        Ok(0x9123_683E) => "btrfs".to_string(),
        Ok(0x0102_1994) => "tmpfs".to_string(),
        Ok(other) => format!("{other:#x}"),
        Err(e) => format!("unknown ({e})"),
    }
}

/// One range of [`Storage::read_many`], remembering its place in the request.
#[derive(Debug, Clone, Copy)]
struct Indexed {
    i: usize,
    pos: u64,
    len: usize,
}

impl glommio::io::IoVec for Indexed {
    fn pos(&self) -> u64 {
        self.pos
    }

    fn size(&self) -> usize {
        self.len
    }
}

/// Paths of a log directory.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub(crate) dir: PathBuf,
}

impl Paths {
    pub(crate) fn segment(&self, number: u64) -> PathBuf {
        self.dir.join(crate::format::segment_file_name(number))
    }

    pub(crate) fn segment_tmp(&self, number: u64) -> PathBuf {
        self.dir.join(format!(
            "{}{}",
            crate::format::segment_file_name(number),
            crate::format::TEMP_SUFFIX
        ))
    }

    pub(crate) fn snapshot(&self, lsn: u64) -> PathBuf {
        self.dir.join(crate::format::snapshot_file_name(lsn))
    }

    pub(crate) fn install(&self, lsn: u64) -> PathBuf {
        self.dir.join(crate::format::install_file_name(lsn))
    }

    pub(crate) fn install_tmp(&self, lsn: u64) -> PathBuf {
        self.dir.join(format!(
            "{}{}",
            crate::format::install_file_name(lsn),
            crate::format::TEMP_SUFFIX
        ))
    }

    pub(crate) fn snapshot_tmp(&self, lsn: u64) -> PathBuf {
        self.dir.join(format!(
            "{}{}",
            crate::format::snapshot_file_name(lsn),
            crate::format::TEMP_SUFFIX
        ))
    }
}

/// The names of the entries of `dir` (created first if `create`), read on a
/// blocking thread so the executor never waits on the directory.
pub(crate) async fn file_names(dir: &Path, create: bool) -> Result<Vec<String>> {
    let owned = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || -> std::io::Result<Vec<String>> {
            if create {
                std::fs::create_dir_all(&owned)?;
            }
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&owned)? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            Ok(names)
        })
        .await
        .map_err(|e| Error::io("read directory", dir, e))
}
