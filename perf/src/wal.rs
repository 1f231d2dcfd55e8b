//! `courier-bench wal`: durable append throughput and append-to-durable
//! latency of one `courier-wal` shard on one core, then the raw limit of the
//! same device measured in the same run (plain O_DIRECT `pwrite` +
//! `fdatasync` of the same bytes in the same batch sizes on a preallocated,
//! zero-filled file), and the ratio between the two.
//!
//! Back-of-the-envelope (measured on the 2-core dev VM, ext4 on virtio):
//! an O_DIRECT overwrite + fdatasync costs ~41 µs for 4 KiB and ~57 µs for
//! 36 KiB. With 256 closed-loop appenders, the writer's batches alternate
//! between the appenders woken by the previous fsync (~128 records of 288
//! bytes on disk ≈ 36 KiB), so the device allows ~128 / 57 µs ≈ 2.2M
//! records/s. One core spends ~0.3–0.5 µs per record (task wake-up, append
//! copy, CRC, waiter bookkeeping), which overlaps the I/O, so expect
//! ~1–2M durable records/s — well above the 300K/s target — and a ratio to
//! raw of 0.7–0.9, the gap being CPU work that does not hide behind the
//! fsync and the background zero-filling of the next segment.

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

/// Options of `courier-bench wal`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Concurrent appenders, closed loop: append, wait until durable, repeat.
    #[arg(long, default_value_t = 256)]
    appenders: u64,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 256)]
    record_bytes: u64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
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
    /// Open loop instead: offer this many records per second from one pacer
    /// and measure latency from each record's intended send time (no
    /// coordinated omission). `--appenders` is then ignored.
    #[arg(long)]
    rate: Option<u64>,
    /// How the WAL makes a batch durable: `fdatasync` (write, then
    /// fdatasync) or `dsync` (O_DSYNC writes).
    #[arg(long, value_enum, default_value_t = Sync::Fdatasync)]
    sync: Sync,
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

/// What the WAL phase measured.
struct WalResult {
    elapsed: Duration,
    delta: Delta,
    latency_ns: Histogram<u64>,
}

/// Counter differences over the measured window.
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
}

/// What the raw phase measured.
struct RawResult {
    elapsed: Duration,
    batches: u64,
    records_per_batch: f64,
    write_bytes: u64,
    latency_ns: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Bytes a record with this payload occupies in a segment (32-byte header,
/// padded to 16), as `courier_wal::format` lays it out.
fn on_disk_bytes(payload: u64) -> u64 {
    courier_wal::format::record_bytes(payload)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.appenders == 0 || args.seconds <= 0.0 {
        bail!("--appenders and --seconds must be positive");
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
        "courier-bench wal: {mode}, {}-byte records, sync {:?}, {:.1} s measured after {:.1} s warm-up, {} MiB segments, data in {}",
        args.record_bytes,
        args.sync,
        args.seconds,
        args.warmup_seconds,
        args.segment_mib,
        data.display()
    );
    println!("machine: {}", machine.human);

    let wal_dir = data.join("shard-0");
    let wal = {
        let args = args.clone();
        LocalExecutorBuilder::new(Placement::Fixed(args.cpu))
            .name("bench-wal")
            .spawn(move || async move { wal_phase(&args, &wal_dir).await })
            .map_err(|e| anyhow::anyhow!("starting the glommio executor: {e}"))?
            .join()
            .map_err(|e| anyhow::anyhow!("executor failed: {e}"))??
    };
    let d = wal.delta;
    let secs = wal.elapsed.as_secs_f64();
    let records_per_sec = d.records as f64 / secs;
    let fsyncs_per_sec = d.batches as f64 / secs;
    let records_per_fsync = d.records as f64 / d.batches.max(1) as f64;
    let (p50, p99, p999, max) = percentiles_us(&wal.latency_ns);
    println!(
        "wal: {records_per_sec:.0} durable records/s, {fsyncs_per_sec:.0} fsyncs/s, {records_per_fsync:.1} records/fsync \
         (max {}), {:.1} KiB written per batch, write {:.0} µs + fdatasync {:.0} µs per batch, {} segment rolls",
        d.batch_records_max,
        d.bytes_written as f64 / d.batches.max(1) as f64 / 1024.0,
        d.write_ns as f64 / d.batches.max(1) as f64 / 1000.0,
        d.fsync_ns as f64 / d.batches.max(1) as f64 / 1000.0,
        d.rolls,
    );
    println!("     append-to-durable latency: p50 {p50:.0} µs, p99 {p99:.0} µs, p999 {p999:.0} µs, max {max:.0} µs");

    let raw = raw_phase(data, args, records_per_fsync)?;
    let raw_secs = raw.elapsed.as_secs_f64();
    let raw_fsyncs_per_sec = raw.batches as f64 / raw_secs;
    let raw_records_per_sec = raw_fsyncs_per_sec * raw.records_per_batch;
    let (raw_p50, raw_p99, _, _) = percentiles_us(&raw.latency_ns);
    let ratio = records_per_sec / raw_records_per_sec;
    println!(
        "raw: pwrite+fdatasync of {:.1} KiB per batch ({:.1} records): {raw_fsyncs_per_sec:.0} batches/s = \
         {raw_records_per_sec:.0} records/s, batch latency p50 {raw_p50:.0} µs, p99 {raw_p99:.0} µs",
        raw.write_bytes as f64 / 1024.0,
        raw.records_per_batch
    );
    println!("ratio to raw: {ratio:.2}");
    if !(0.2..=1.5).contains(&ratio) {
        println!(
            "warning: a ratio this far from 1 usually means the device was shared with other work during one of \
             the two phases; rerun on a quiet machine"
        );
    }
    if args.json {
        let line = serde_json::json!({
            "bench": "wal",
            "mode": if args.rate.is_some() { "open" } else { "closed" },
            "appenders": args.appenders,
            "rate": args.rate,
            "record_bytes": args.record_bytes,
            "sync": format!("{:?}", args.sync).to_lowercase(),
            "seconds": secs,
            "records_per_sec": records_per_sec,
            "fsyncs_per_sec": fsyncs_per_sec,
            "records_per_fsync": records_per_fsync,
            "p50_us": p50,
            "p99_us": p99,
            "p999_us": p999,
            "max_us": max,
            "raw_records_per_sec": raw_records_per_sec,
            "raw_fsyncs_per_sec": raw_fsyncs_per_sec,
            "raw_batch_bytes": raw.write_bytes,
            "ratio_to_raw": ratio,
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

async fn wal_phase(args: &Args, dir: &Path) -> anyhow::Result<WalResult> {
    let mut options = WalOptions::recommended();
    options.segment_bytes = args.segment_mib * 1024 * 1024;
    options.sync = match args.sync {
        Sync::Fdatasync => SyncMode::Fdatasync,
        Sync::Dsync => SyncMode::Dsync,
    };
    let (wal, _) = Wal::open(dir, 0, options)
        .await
        .context("opening the WAL")?;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup_seconds);
    let end = measure_from + Duration::from_secs_f64(args.seconds);
    let latency = Rc::new(RefCell::new(histogram()));

    // Counter snapshots at the window edges, taken by a timer task.
    let window = {
        let wal = wal.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(measure_from.saturating_duration_since(Instant::now())).await;
            let (a, at_a) = (wal.counters(), Instant::now());
            glommio::timer::sleep(end.saturating_duration_since(Instant::now())).await;
            let (b, at_b) = (wal.counters(), Instant::now());
            (Delta::between(&a, &b), at_b - at_a)
        })
    };
    match args.rate {
        None => closed_loop(&wal, args, measure_from, end, &latency).await?,
        Some(rate) => open_loop(&wal, args, rate, measure_from, end, &latency).await?,
    }
    let (delta, elapsed) = window.await;
    wal.close().await.context("closing the WAL")?;
    let latency_ns = latency.replace(histogram());
    Ok(WalResult {
        elapsed,
        delta,
        latency_ns,
    })
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

async fn closed_loop(
    wal: &Wal,
    args: &Args,
    measure_from: Instant,
    end: Instant,
    latency: &Rc<RefCell<Histogram<u64>>>,
) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..args.appenders)
        .map(|task| {
            let wal = wal.clone();
            let latency = latency.clone();
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
                    if sent >= measure_from {
                        let ns = sent.elapsed().as_nanos() as u64;
                        latency.borrow_mut().saturating_record(ns);
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
    measure_from: Instant,
    end: Instant,
    latency: &Rc<RefCell<Histogram<u64>>>,
) -> anyhow::Result<()> {
    // Records in flight with their intended send times, oldest first
    // (bounded by what the WAL queue accepts).
    let outstanding: Rc<RefCell<VecDeque<(Lsn, Instant)>>> = Rc::default();
    let pacing_done = Rc::new(Cell::new(false));
    let watcher = {
        let (wal, outstanding, pacing_done, latency) = (
            wal.clone(),
            outstanding.clone(),
            pacing_done.clone(),
            latency.clone(),
        );
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
                            if intended >= measure_from {
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

/// Plain O_DIRECT pwrite + fdatasync of the WAL's batch shape on a
/// preallocated, zero-filled file (the same preparation WAL segments get),
/// on a plain thread with blocking syscalls.
fn raw_phase(data: &Path, args: &Args, records_per_batch: f64) -> anyhow::Result<RawResult> {
    const BLOCK: u64 = 4096;
    let file_bytes = args.segment_mib * 1024 * 1024;
    let logical =
        ((records_per_batch * on_disk_bytes(args.record_bytes) as f64).round() as u64).max(16);
    let path = data.join("raw-device-limit.dat");
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: plain syscalls on a file descriptor we own and close at the end;
    // the buffer is allocated with the alignment and size we pass.
    unsafe {
        let fd = libc::open(
            c_path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_DIRECT | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 {
            bail!(
                "open {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        let max_span = (logical + 2 * BLOCK).div_ceil(BLOCK) * BLOCK;
        let chunk = 1024 * 1024;
        let layout =
            std::alloc::Layout::from_size_align(max_span.max(chunk) as usize, BLOCK as usize)?;
        let buf = std::alloc::alloc_zeroed(layout);
        if buf.is_null() {
            bail!("out of memory");
        }
        let result = (|| {
            if libc::fallocate(fd, 0, 0, file_bytes as i64) != 0 {
                bail!("fallocate: {}", std::io::Error::last_os_error());
            }
            let mut pos = 0;
            while pos < file_bytes {
                if libc::pwrite(fd, buf as *const libc::c_void, chunk as usize, pos as i64)
                    != chunk as isize
                {
                    bail!("zero-fill: {}", std::io::Error::last_os_error());
                }
                pos += chunk;
            }
            if libc::fdatasync(fd) != 0 {
                bail!("fdatasync: {}", std::io::Error::last_os_error());
            }
            std::ptr::write_bytes(buf, 0x5A, max_span as usize);
            let mut latency = histogram();
            let mut tail = BLOCK;
            let mut batches = 0u64;
            let mut written = 0u64;
            let started = Instant::now();
            let end = started + Duration::from_secs_f64(args.seconds);
            while Instant::now() < end {
                let from = tail / BLOCK * BLOCK;
                let to = (tail + logical).div_ceil(BLOCK) * BLOCK;
                if to > file_bytes {
                    tail = BLOCK;
                    continue;
                }
                let t0 = Instant::now();
                let len = (to - from) as usize;
                if libc::pwrite(fd, buf as *const libc::c_void, len, from as i64) != len as isize {
                    bail!("pwrite: {}", std::io::Error::last_os_error());
                }
                if libc::fdatasync(fd) != 0 {
                    bail!("fdatasync: {}", std::io::Error::last_os_error());
                }
                latency.saturating_record(t0.elapsed().as_nanos() as u64);
                tail += logical;
                batches += 1;
                written += len as u64;
            }
            Ok(RawResult {
                elapsed: started.elapsed(),
                batches,
                records_per_batch,
                write_bytes: written / batches.max(1),
                latency_ns: latency,
            })
        })();
        std::alloc::dealloc(buf, layout);
        libc::close(fd);
        let _ = std::fs::remove_file(&path);
        result
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
