//! What every run prints: the machine it ran on, its parameters, a human
//! table, and (with `--json`) one JSON object as the last line of stdout.
//!
//! Latencies are always hdrhistogram p50/p90/p99/p999/max (microsecond
//! values, 3 significant digits), plus a percentile distribution that
//! `scripts/plot-latency` turns into a PNG.

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::path::Path;

/// Highest value a latency histogram records: 100 s in microseconds.
pub const LATENCY_US_MAX: u64 = 100_000_000;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("constant, valid histogram bounds")
}

/// Records nanoseconds into a microsecond histogram (saturating).
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    let _ = h.record((ns / 1000).clamp(1, LATENCY_US_MAX));
}

/// Percentiles drawn in the distribution plots.
const PLOT_PERCENTILES: &[f64] = &[
    0.0, 10.0, 25.0, 50.0, 75.0, 80.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.75, 99.9, 99.95, 99.99,
    99.995, 99.999, 100.0,
];

/// p50/p90/p99/p999/max of a microsecond histogram, in milliseconds.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": q(0.50),
        "p90_ms": q(0.90),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "max_ms": h.max() as f64 / 1000.0,
        "mean_ms": h.mean() / 1000.0,
        "distribution": PLOT_PERCENTILES
            .iter()
            .map(|p| json!([p, h.value_at_percentile(*p) as f64 / 1000.0]))
            .collect::<Vec<_>>(),
    })
}

/// One table row of latency figures.
pub fn latency_row(label: &str, h: &Histogram<u64>) -> Vec<String> {
    let q = |p: f64| format!("{:.3}", h.value_at_quantile(p) as f64 / 1000.0);
    vec![
        label.to_owned(),
        h.len().to_string(),
        q(0.50),
        q(0.90),
        q(0.99),
        q(0.999),
        format!("{:.3}", h.max() as f64 / 1000.0),
    ]
}

/// Header matching [`latency_row`].
pub const LATENCY_HEADER: &[&str] = &[
    "", "count", "p50 ms", "p90 ms", "p99 ms", "p999 ms", "max ms",
];

/// Prints an aligned table.
pub fn table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    println!("\n{title}");
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 0 {
                s.push_str(&format!("{:<w$}", c, w = width[i]));
            } else {
                s.push_str(&format!("  {:>w$}", c, w = width[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|s| (*s).to_owned()).collect());
    line(width.iter().map(|w| "-".repeat(*w)).collect());
    for row in rows {
        line(row.clone());
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The file system (type, device, mount point) holding `path`.
pub fn filesystem_of(path: &Path) -> Value {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mounts = read("/proc/mounts");
    let mut best: Option<(usize, &str, &str, &str)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let (dev, mnt, fstype) = (f[0], f[1], f[2]);
        if path.starts_with(mnt) && best.is_none_or(|b| mnt.len() > b.0) {
            best = Some((mnt.len(), dev, mnt, fstype));
        }
    }
    match best {
        Some((_, dev, mnt, fstype)) => {
            json!({"path": path.display().to_string(), "type": fstype, "device": dev, "mount": mnt})
        }
        None => json!({"path": path.display().to_string(), "type": "unknown"}),
    }
}

/// Writes of 4 KiB + `fdatasync` timed by [`disk_probe`].
const DISK_PROBE_WRITES: usize = 200;

/// The disk as it is right now: latency of a 4 KiB overwrite of a
/// preallocated file + `fdatasync` (what one WAL group commit costs at
/// least), in a scratch file next to `dir`. Other work on the machine moves
/// this figure a lot; every result depends on it.
pub fn disk_probe(dir: &Path) -> Value {
    use std::os::unix::fs::FileExt;
    let run = || -> std::io::Result<Vec<f64>> {
        let path = dir.join(format!(".courier-bench-disk-probe-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let block = vec![0x5Au8; 4096];
        for i in 0..256u64 {
            file.write_all_at(&block, i * 4096)?;
        }
        file.sync_all()?;
        let mut lat = Vec::with_capacity(DISK_PROBE_WRITES);
        for i in 0..DISK_PROBE_WRITES {
            let t = crate::clock::now_ns();
            file.write_all_at(&block, (i as u64 % 256) * 4096)?;
            file.sync_data()?;
            lat.push((crate::clock::now_ns() - t) as f64 / 1e6);
        }
        drop(file);
        std::fs::remove_file(&path)?;
        lat.sort_by(f64::total_cmp);
        Ok(lat)
    };
    match run() {
        Ok(lat) => {
            let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
            json!({"write_4k_fdatasync_ms": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": q(1.0)}})
        }
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// Facts about the machine: cores, CPU model, kernel, memory, load, and a
/// probe of the disk's fsync latency where the data lives.
pub fn machine(data_path: &Path) -> Value {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": model,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "loadavg_at_start": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "fs": filesystem_of(data_path),
        "disk": disk_probe(data_path),
    })
}

/// Prints the machine block of the human report.
pub fn print_machine(m: &Value) {
    let d = &m["disk"]["write_4k_fdatasync_ms"];
    println!(
        "machine: {} cores ({}), {} GiB, kernel {}, load {}, data on {} ({}), 4 KiB write+fdatasync p50 {} ms p99 {} ms",
        m["cores"],
        m["cpu"].as_str().unwrap_or(""),
        m["memory_gib"],
        m["kernel"].as_str().unwrap_or(""),
        m["loadavg_at_start"].as_str().unwrap_or(""),
        m["fs"]["type"].as_str().unwrap_or(""),
        m["fs"]["device"].as_str().unwrap_or(""),
        d["p50"].as_f64().map_or("?".into(), |v| format!("{v:.3}")),
        d["p99"].as_f64().map_or("?".into(), |v| format!("{v:.3}")),
    );
}

/// The whole-run JSON object.
pub fn envelope(scenario: &str, machine: Value, params: Value, results: Value) -> Value {
    json!({
        "scenario": scenario,
        "harness": format!("courier-bench {}", env!("CARGO_PKG_VERSION")),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "machine": machine,
        "loadavg_at_end": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "params": params,
        "results": results,
    })
}

/// Prints the JSON line when asked.
pub fn emit(json_out: bool, value: &Value) {
    if json_out {
        println!("{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_json_has_every_percentile() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            record_ns(&mut h, v * 1000);
        }
        let j = latency_json(&h);
        assert_eq!(j["count"], 1000);
        assert!((j["p50_ms"].as_f64().unwrap() - 0.5).abs() < 0.01);
        assert!((j["max_ms"].as_f64().unwrap() - 1.0).abs() < 0.01);
        assert_eq!(
            j["distribution"].as_array().unwrap().len(),
            PLOT_PERCENTILES.len()
        );
    }
}
