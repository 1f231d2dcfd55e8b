//! `courier-bench wal`: durable append throughput and append-to-durable
//! latency of one `courier-wal` shard on one core, and the raw limit of the
//! same device measured in the same run: plain O_DIRECT `pwrite` +
//! `fdatasync` of the same bytes in the same batch sizes on a preallocated,
//! zero-filled file. WAL and raw slices alternate (`--rounds`), so both see
//! the same device conditions; the ratio reported is the median of the
//! per-round ratios.
//!
//! Back-of-the-envelope (2-vCPU dev VM, ext4 on virtio, measured with a C
//! loop while the disk was quiet): an O_DIRECT overwrite + fdatasync costs
//! ~41 µs for 4 KiB and ~80–90 µs for 72 KiB. With 256 closed-loop
//! appenders every batch carries the ~256 records woken by the previous
//! fsync (256 × 288 bytes on disk ≈ 72 KiB), so the device allows
//! ~256 / 85 µs ≈ 3M records/s. The writer cannot start a batch before all
//! woken appenders have run (one core, FIFO scheduling), so the ~0.4–0.5 µs
//! of CPU per record (task wake-up, append copy, CRC, waiter bookkeeping,
//! the bench's own clock reads) adds ~110–130 µs per batch in series with
//! the I/O, and glommio's io_uring path (writes and fsyncs handed to
//! io-wq workers) costs more than the raw syscalls: expect ~0.7–1.1M
//! durable records/s (well above the 300K/s target) and a ratio to raw
//! around 0.3–0.4 on this VM. See docs/PERFORMANCE.md for the measured
//! figures and where the time goes.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use courier_wal::{Counters, Error, Lsn, SyncMode, Wal, WalOptions};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

const BLOCK: u64 = 4096;

/// Options of `courier-bench wal`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Concurrent appenders, closed loop: append, wait until durable, repeat.
    #[arg(long, default_value_t = 256)]
    appenders: u64,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 256)]
    record_bytes: u64,
    /// Measured seconds of WAL traffic (the raw slices take as long again).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// WAL/raw alternations the measured time is split into.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 1.0)]
    warmup_seconds: f64,
    /// Where to put the data (a fresh subdirectory is created and removed).
    /// Default: the current directory, or /tmp if that is tmpfs.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Segment size in MiB.
    #[arg(long, default_value_t = 64)]
    segment_mib: u64,
    /// How the WAL makes a batch durable: `fdatasync` (write, then
    /// fdatasync) or `dsync` (O_DSYNC writes).
    #[arg(long, value_enum, default_value_t = Sync::Fdatasync)]
    sync: Sync,
    /// Open loop instead: offer this many records per second from one pacer
    /// and measure latency from each record's intended send time (no
    /// coordinated omission). `--appenders` is then ignored.
    #[arg(long)]
    rate: Option<u64>,
    /// CPU the WAL executor is pinned to.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// `--sync` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    Fdatasync,
    Dsync,
}

/// Counter differences over one WAL slice.
#[derive(Default, Clone, Copy)]
struct Delta {
    records: u64,
    batches: u64,
    bytes_written: u64,
    fsync_ns: u64,
    write_ns: u64,
    rolls: u64,
    batch_records_max: u64,
}

impl Delta {
    fn between(a: &Counters, b: &Counters) -> Delta {
        Delta {
            records: b.records_durable - a.records_durable,
            batches: b.batches - a.batches,
            bytes_written: b.bytes_written - a.bytes_written,
            fsync_ns: b.fsync_ns_total - a.fsync_ns_total,
            write_ns: b.write_ns_total - a.write_ns_total,
            rolls: b.segments_rolled - a.segments_rolled,
            batch_records_max: b.batch_records_max,
        }
    }

    fn add(&mut self, o: &Delta) {
        self.records += o.records;
        self.batches += o.batches;
        self.bytes_written += o.bytes_written;
        self.fsync_ns += o.fsync_ns;
        self.write_ns += o.write_ns;
        self.rolls += o.rolls;
        self.batch_records_max = self.batch_records_max.max(o.batch_records_max);
    }
}

/// One raw slice: batches of `logical` bytes written and synced.
struct RawSlice {
    secs: f64,
    batches: u64,
    written: u64,
    latency_ns: Histogram<u64>,
}

/// One WAL slice and the raw slice that followed it.
struct Round {
    wal: Delta,
    wal_secs: f64,
    records_per_batch: f64,
    raw: RawSlice,
}

impl Round {
    fn wal_rate(&self) -> f64 {
        self.wal.records as f64 / self.wal_secs
    }

    fn raw_rate(&self) -> f64 {
        self.raw.batches as f64 * self.records_per_batch / self.raw.secs
    }
}

struct Outcome {
    rounds: Vec<Round>,
    latency_ns: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.appenders == 0 || args.seconds <= 0.0 || args.rounds == 0 {
        bail!("--appenders, --seconds and --rounds must be positive");
    }
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            let cwd = std::env::current_dir()?;
            if courier_wal::fs_type_name(&cwd) == "tmpfs" {
                PathBuf::from("/tmp")
            } else {
                cwd
            }
        }
    };
    if courier_wal::fs_type_name(&base) == "tmpfs" {
        bail!(
            "{} is tmpfs (no O_DIRECT); pass --dir on a disk file system",
            base.display()
        );
    }
    let data = base.join(format!("courier-bench-wal-{}", std::process::id()));
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let result = measure(&args, &data);
    let _ = std::fs::remove_dir_all(&data);
    result
}

fn measure(args: &Args, data: &Path) -> anyhow::Result<()> {
    let machine = describe_machine(data);
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate} records/s"),
        None => format!("{} closed-loop appenders", args.appenders),
    };
    println!(
        "courier-bench wal: {mode}, {}-byte records, sync {:?}, {:.1} s measured in {} rounds after {:.1} s warm-up, \
         {} MiB segments, data in {}",
        args.record_bytes,
        args.sync,
        args.seconds,
        args.rounds,
        args.warmup_seconds,
        args.segment_mib,
        data.display()
    );
    println!("machine: {}", machine.human);

    let outcome = {
        let args = args.clone();
        let data = data.to_path_buf();
        LocalExecutorBuilder::new(Placement::Fixed(args.cpu))
            .name("bench-wal")
            .spawn(move || async move { bench(&args, &data).await })
            .map_err(|e| anyhow::anyhow!("starting the glommio executor: {e}"))?
            .join()
            .map_err(|e| anyhow::anyhow!("executor failed: {e}"))??
    };

    let mut total = Delta::default();
    let (mut wal_secs, mut raw_records, mut raw_secs, mut raw_batches, mut raw_written) =
        (0.0, 0.0, 0.0, 0, 0);
    let mut raw_latency = histogram();
    let mut ratios = Vec::new();
    for (i, round) in outcome.rounds.iter().enumerate() {
        total.add(&round.wal);
        wal_secs += round.wal_secs;
        raw_records += round.raw.batches as f64 * round.records_per_batch;
        raw_secs += round.raw.secs;
        raw_batches += round.raw.batches;
        raw_written += round.raw.written;
        raw_latency
            .add(&round.raw.latency_ns)
            .expect("same histogram bounds");
        let ratio = round.wal_rate() / round.raw_rate();
        ratios.push(ratio);
        println!(
            "round {i}: wal {:.0} records/s ({:.1} records/fsync), raw {:.0} records/s, ratio {ratio:.2}",
            round.wal_rate(),
            round.records_per_batch,
            round.raw_rate()
        );
    }
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    let batches = total.batches.max(1) as f64;
    let records_per_sec = total.records as f64 / wal_secs;
    let fsyncs_per_sec = total.batches as f64 / wal_secs;
    let records_per_fsync = total.records as f64 / batches;
    let (p50, p99, p999, max) = percentiles_us(&outcome.latency_ns);
    let raw_records_per_sec = raw_records / raw_secs;
    let raw_fsyncs_per_sec = raw_batches as f64 / raw_secs;
    let (raw_p50, raw_p99, _, _) = percentiles_us(&raw_latency);
    println!(
        "wal: {records_per_sec:.0} durable records/s, {fsyncs_per_sec:.0} fsyncs/s, {records_per_fsync:.1} records/fsync \
         (max {}), {:.1} KiB written per batch, write {:.0} µs + fdatasync {:.0} µs per batch, {} segment rolls",
        total.batch_records_max,
        total.bytes_written as f64 / batches / 1024.0,
        total.write_ns as f64 / batches / 1000.0,
        total.fsync_ns as f64 / batches / 1000.0,
        total.rolls,
    );
    println!("     append-to-durable latency: p50 {p50:.0} µs, p99 {p99:.0} µs, p999 {p999:.0} µs, max {max:.0} µs");
    println!(
        "raw: pwrite+fdatasync of {:.1} KiB per batch: {raw_fsyncs_per_sec:.0} batches/s = {raw_records_per_sec:.0} \
         records/s, batch latency p50 {raw_p50:.0} µs, p99 {raw_p99:.0} µs",
        raw_written as f64 / raw_batches.max(1) as f64 / 1024.0,
    );
    println!(
        "ratio to raw: {ratio:.2} (median of {} rounds)",
        ratios.len()
    );
    if args.json {
        let line = serde_json::json!({
            "bench": "wal",
            "mode": if args.rate.is_some() { "open" } else { "closed" },
            "appenders": args.appenders,
            "rate": args.rate,
            "record_bytes": args.record_bytes,
            "sync": format!("{:?}", args.sync).to_lowercase(),
            "seconds": wal_secs,
            "rounds": args.rounds,
            "records_per_sec": records_per_sec,
            "fsyncs_per_sec": fsyncs_per_sec,
            "records_per_fsync": records_per_fsync,
            "p50_us": p50,
            "p99_us": p99,
            "p999_us": p999,
            "max_us": max,
            "raw_records_per_sec": raw_records_per_sec,
            "raw_fsyncs_per_sec": raw_fsyncs_per_sec,
            "ratio_to_raw": ratio,
            "ratios_per_round": ratios,
            "cores": machine.cores,
            "cpu": machine.cpu,
            "kernel": machine.kernel,
            "fs_type": machine.fs_type,
        });
        println!("{line}");
    }
    Ok(())
}

fn percentiles_us(h: &Histogram<u64>) -> (f64, f64, f64, f64) {
    let us = |ns: u64| ns as f64 / 1000.0;
    (
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.max()),
    )
}

/// The whole measurement, inside the pinned executor: warm-up, then rounds
/// of a WAL slice followed by a raw slice (on glommio's blocking pool while
/// the executor waits, so the two never overlap).
async fn bench(args: &Args, data: &Path) -> anyhow::Result<Outcome> {
    let mut options = WalOptions::recommended();
    options.segment_bytes = args.segment_mib * 1024 * 1024;
    options.sync = match args.sync {
        Sync::Fdatasync => SyncMode::Fdatasync,
        Sync::Dsync => SyncMode::Dsync,
    };
    let (wal, _) = Wal::open(&data.join("shard-0"), 0, options)
        .await
        .context("opening the WAL")?;
    let raw_path = data.join("raw-device-limit.dat");
    let file_bytes = args.segment_mib * 1024 * 1024;
    let raw = {
        let path = raw_path.clone();
        glommio::executor()
            .spawn_blocking(move || RawFile::create(&path, file_bytes))
            .await?
    };

    let latency = Rc::new(RefCell::new(histogram()));
    let warmup = Duration::from_secs_f64(args.warmup_seconds);
    drive(&wal, args, Instant::now() + warmup, None).await?;
    let slice = Duration::from_secs_f64(args.seconds / f64::from(args.rounds));
    let mut rounds = Vec::new();
    for _ in 0..args.rounds {
        let (before, started) = (wal.counters(), Instant::now());
        drive(&wal, args, started + slice, Some(&latency)).await?;
        let (after, ended) = (wal.counters(), Instant::now());
        let delta = Delta::between(&before, &after);
        let records_per_batch = delta.records as f64 / delta.batches.max(1) as f64;
        let logical = ((records_per_batch
            * courier_wal::format::record_bytes(args.record_bytes) as f64)
            .round() as u64)
            .max(16);
        let raw_slice = glommio::executor()
            .spawn_blocking(move || raw.run(logical, slice))
            .await?;
        rounds.push(Round {
            wal: delta,
            wal_secs: (ended - started).as_secs_f64(),
            records_per_batch,
            raw: raw_slice,
        });
    }
    wal.close().await.context("closing the WAL")?;
    raw.close();
    let _ = std::fs::remove_file(&raw_path);
    let latency_ns = latency.replace(histogram());
    Ok(Outcome { rounds, latency_ns })
}

/// Append, or wait for room and retry; any other error ends the bench.
async fn append(wal: &Wal, payload: &[u8]) -> Result<Lsn, Error> {
    loop {
        match wal.append(1, payload) {
            Ok(lsn) => return Ok(lsn),
            Err(Error::Backpressure { .. }) => wal.wait_for_room(1, payload.len() as u64).await?,
            Err(e) => return Err(e),
        }
    }
}

/// Offer load until `end` (closed or open loop), recording latencies if asked.
async fn drive(
    wal: &Wal,
    args: &Args,
    end: Instant,
    latency: Option<&Rc<RefCell<Histogram<u64>>>>,
) -> anyhow::Result<()> {
    match args.rate {
        None => closed_loop(wal, args, end, latency).await,
        Some(rate) => open_loop(wal, args, rate, end, latency).await,
    }
}

async fn closed_loop(
    wal: &Wal,
    args: &Args,
    end: Instant,
    latency: Option<&Rc<RefCell<Histogram<u64>>>>,
) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..args.appenders)
        .map(|task| {
            let wal = wal.clone();
            let latency = latency.cloned();
            let mut payload = vec![0xC5u8; args.record_bytes as usize];
            glommio::spawn_local(async move {
                let mut n: u64 = 0;
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        return Ok::<(), Error>(());
                    }
                    let stamp = (task << 40 | n).to_le_bytes();
                    let k = stamp.len().min(payload.len());
                    payload[..k].copy_from_slice(&stamp[..k]);
                    let lsn = append(&wal, &payload).await?;
                    wal.wait_durable(lsn).await?;
                    if let Some(latency) = &latency {
                        latency
                            .borrow_mut()
                            .saturating_record(sent.elapsed().as_nanos() as u64);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.context("appender failed")?;
    }
    Ok(())
}

async fn open_loop(
    wal: &Wal,
    args: &Args,
    rate: u64,
    end: Instant,
    latency: Option<&Rc<RefCell<Histogram<u64>>>>,
) -> anyhow::Result<()> {
    // Records in flight with their intended send times, oldest first
    // (bounded by what the WAL queue accepts).
    let outstanding: Rc<RefCell<VecDeque<(Lsn, Instant)>>> = Rc::default();
    let pacing_done = Rc::new(Cell::new(false));
    let watcher = {
        let (wal, outstanding, pacing_done) =
            (wal.clone(), outstanding.clone(), pacing_done.clone());
        let latency = latency.cloned();
        glommio::spawn_local(async move {
            loop {
                let front = outstanding.borrow().front().copied();
                match front {
                    Some((lsn, _)) => {
                        wal.wait_durable(lsn).await?;
                        let now = Instant::now();
                        let durable = wal.durable_lsn();
                        let mut q = outstanding.borrow_mut();
                        while let Some(&(lsn, intended)) = q.front() {
                            if lsn > durable {
                                break;
                            }
                            q.pop_front();
                            if let Some(latency) = &latency {
                                latency
                                    .borrow_mut()
                                    .saturating_record((now - intended).as_nanos() as u64);
                            }
                        }
                    }
                    None if pacing_done.get() => return Ok::<(), Error>(()),
                    None => glommio::timer::sleep(Duration::from_micros(50)).await,
                }
            }
        })
    };
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let payload = vec![0xC5u8; args.record_bytes as usize];
    let mut sent: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = ((now - start).as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let intended = start + interval.mul_f64(sent as f64);
            let lsn = append(wal, &payload).await?;
            outstanding.borrow_mut().push_back((lsn, intended));
            sent += 1;
        }
        glommio::timer::sleep(Duration::from_micros(100)).await;
    }
    pacing_done.set(true);
    watcher.await.context("watcher failed")?;
    Ok(())
}

/// A preallocated, zero-filled O_DIRECT file (prepared like a WAL segment)
/// for the raw limit: plain blocking syscalls, no io_uring.
#[derive(Clone, Copy)]
struct RawFile {
    fd: i32,
    file_bytes: u64,
}

/// A block-aligned heap buffer for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: u64, fill: u8) -> anyhow::Result<AlignedBuf> {
        let layout = std::alloc::Layout::from_size_align(len as usize, BLOCK as usize)?;
        // SAFETY: the layout has a non-zero size (callers pass >= one block).
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            bail!("out of memory");
        }
        // SAFETY: ptr points to layout.size() writable bytes.
        unsafe { std::ptr::write_bytes(ptr, fill, layout.size()) };
        Ok(AlignedBuf { ptr, layout })
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

fn os_error(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", std::io::Error::last_os_error())
}

impl RawFile {
    fn create(path: &Path, file_bytes: u64) -> anyhow::Result<RawFile> {
        let c_path = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: valid NUL-terminated path; the fd is owned by RawFile.
        let fd = unsafe {
            libc::open(
                c_path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_DIRECT | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            return Err(os_error(&format!("open {}", path.display())));
        }
        let file = RawFile { fd, file_bytes };
        // SAFETY: plain syscalls on our fd with a buffer of the length passed.
        unsafe {
            if libc::fallocate(fd, 0, 0, file_bytes as i64) != 0 {
                return Err(os_error("fallocate"));
            }
            let chunk = (1024 * 1024).min(file_bytes);
            let zeros = AlignedBuf::new(chunk, 0)?;
            let mut pos = 0;
            while pos < file_bytes {
                let len = chunk.min(file_bytes - pos) as usize;
                if libc::pwrite(fd, zeros.ptr as *const libc::c_void, len, pos as i64)
                    != len as isize
                {
                    return Err(os_error("zero-fill"));
                }
                pos += len as u64;
            }
            if libc::fdatasync(fd) != 0 {
                return Err(os_error("fdatasync"));
            }
        }
        Ok(file)
    }

    /// Write the WAL's batch shape for `duration`: each batch appends
    /// `logical` bytes after the previous one and writes the block-aligned
    /// span covering them (rewriting the partial block like the WAL does),
    /// then fdatasyncs.
    fn run(self, logical: u64, duration: Duration) -> anyhow::Result<RawSlice> {
        let max_span = (logical + 2 * BLOCK).div_ceil(BLOCK) * BLOCK;
        let buf = AlignedBuf::new(max_span, 0x5A)?;
        let mut latency = histogram();
        let mut tail = BLOCK;
        let (mut batches, mut written) = (0u64, 0u64);
        let started = Instant::now();
        while started.elapsed() < duration {
            let from = tail / BLOCK * BLOCK;
            let to = (tail + logical).div_ceil(BLOCK) * BLOCK;
            if to > self.file_bytes {
                tail = BLOCK;
                continue;
            }
            let len = (to - from) as usize;
            let t0 = Instant::now();
            // SAFETY: buf holds max_span >= len bytes; fd is open.
            unsafe {
                if libc::pwrite(self.fd, buf.ptr as *const libc::c_void, len, from as i64)
                    != len as isize
                {
                    return Err(os_error("pwrite"));
                }
                if libc::fdatasync(self.fd) != 0 {
                    return Err(os_error("fdatasync"));
                }
            }
            latency.saturating_record(t0.elapsed().as_nanos() as u64);
            tail += logical;
            batches += 1;
            written += len as u64;
        }
        Ok(RawSlice {
            secs: started.elapsed().as_secs_f64(),
            batches,
            written,
            latency_ns: latency,
        })
    }

    fn close(self) {
        // SAFETY: closing the fd we opened; not used afterwards.
        unsafe { libc::close(self.fd) };
    }
}

/// Facts about the machine and the data directory.
struct MachineFacts {
    human: String,
    cores: usize,
    cpu: String,
    kernel: String,
    fs_type: String,
}

fn describe_machine(data: &Path) -> MachineFacts {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let fs_type = courier_wal::fs_type_name(data);
    MachineFacts {
        human: format!("{cores} cores ({cpu}), Linux {kernel}, data on {fs_type}"),
        cores,
        cpu,
        kernel,
        fs_type,
    }
}
