//! `courier-bench fanout-loader` (hidden): one load-generator *process* of
//! `fanout --cluster N` (`fanout_cluster.rs`), which starts several so that
//! no process needs more open files than the machine allows one process
//! (the whole point: 100,000 members on a machine whose per-process limit
//! is 20,000 files).
//!
//! A loader logs its members in, spread over the cluster's nodes, records
//! the arrival time (`CLOCK_MONOTONIC`, the same clock in every process of
//! this machine) of every posted message at every member, and reports them
//! to its parent when told to stop. Everything between parent and loader
//! is one line of text at a time:
//!
//! - parent → loader (stdin): one credential (`cu1_…`) per member, then
//!   `go`; later `stop`. End of input also means stop (the parent is gone).
//! - loader → parent (stdout), see [`Report`]: `connected N` once every
//!   member is welcomed, `delivered N` (every [`PROGRESS`] while it
//!   changes), and after `stop`: one `arrivals K BASE D…` per message
//!   (arrival times as nanoseconds after BASE, the first arrival), `errors
//!   N TEXT`, `usage CPU_NS RSS_KIB`, `done`. A failure is `failed TEXT` and exit status 1.
//!
//! Member `i` of a loader whose first member is receiver `first` of the
//! run connects to node `(first + i) mod nodes` from source address
//! `127.0.0.(2 + (first + i) mod ips)` ([`node_of`], [`source_ip`]), so the
//! nodes' shares differ by at most one whatever the loaders' split.
//!
//! Bounds: at most [`LOADER_CONNECTIONS_MAX`] members per loader; login
//! attempts in flight per thread `--connect-in-flight`; arrivals kept are
//! one `u64` per (member, message), at most `--messages` ≤
//! [`MESSAGES_MAX`] per member; a stdin line at most [`LINE_BYTES_MAX`].

use crate::client::Session;
use crate::clock::{now_ns, PreciseTimer};
use crate::pool;
use courier_core::api::{Credential, Event};
use courier_proto::{decode_server, ServerFrame};
use std::cell::RefCell;
use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Most members one loader process connects: the open-file limit of this
/// machine is 20,000 per process; the rest is the runtime's own files.
pub const LOADER_CONNECTIONS_MAX: usize = 19_000;

/// Most messages a run posts (arrivals are kept per member and message).
pub const MESSAGES_MAX: usize = 1_000;

/// Longest stdin line a loader accepts (a credential is 100 bytes).
pub const LINE_BYTES_MAX: usize = 1_024;

/// How often a loader reports its deliveries while they change.
pub const PROGRESS: std::time::Duration = std::time::Duration::from_millis(100);

/// Time allowed for one member's connect + upgrade + Hello/Welcome, from
/// the moment its login may start.
const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `courier-bench fanout-loader`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Client addresses of the cluster's nodes (IP:PORT,…), in node order.
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<SocketAddr>,
    /// This loader's number (for its messages).
    #[arg(long)]
    pub index: usize,
    /// Index of this loader's first member among the run's receivers.
    #[arg(long)]
    pub first: usize,
    /// Messages the sender posts (arrivals are recorded for 0..messages).
    #[arg(long)]
    pub messages: usize,
    /// Source addresses 127.0.0.2… to spread connections over.
    #[arg(long, default_value_t = 1)]
    pub source_ips: usize,
    /// Login attempts in flight per thread.
    #[arg(long, default_value_t = 256)]
    pub connect_in_flight: usize,
    /// Threads (one tokio current-thread runtime each).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// One line a loader writes to its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Every member is welcomed.
    Connected(usize),
    /// Deliveries recorded so far.
    Delivered(u64),
    /// Arrival times of message `k`, ascending (absolute ns).
    Arrivals(usize, Vec<u64>),
    /// Connections that failed after login: count and the first reason.
    Errors(usize, String),
    /// The loader's own CPU time (ns) and resident memory (KiB) at the end.
    Usage(u64, u64),
    /// Everything is reported.
    Done,
    /// The loader failed (it exits 1).
    Failed(String),
}

impl Report {
    /// The line (without its newline).
    pub fn encode(&self) -> String {
        match self {
            Report::Connected(n) => format!("connected {n}"),
            Report::Delivered(n) => format!("delivered {n}"),
            Report::Arrivals(k, at) => {
                let mut s = format!("arrivals {k}");
                if let Some(&base) = at.first() {
                    s.push_str(&format!(" {base}"));
                    for t in at {
                        s.push_str(&format!(" {}", t - base));
                    }
                }
                s
            }
            Report::Errors(n, first) => format!("errors {n} {}", one_line(first)),
            Report::Usage(cpu_ns, rss_kib) => format!("usage {cpu_ns} {rss_kib}"),
            Report::Done => "done".to_owned(),
            Report::Failed(e) => format!("failed {}", one_line(e)),
        }
    }

    /// Reads a line back (an error names what is wrong).
    pub fn parse(line: &str) -> Result<Report, String> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let number = |s: &str| -> Result<u64, String> {
            s.parse()
                .map_err(|_| format!("bad number {s:?} in {word:?} line"))
        };
        match word {
            "connected" => Ok(Report::Connected(number(rest)? as usize)),
            "delivered" => Ok(Report::Delivered(number(rest)?)),
            "arrivals" => {
                let mut parts = rest.split(' ').filter(|p| !p.is_empty());
                let k = number(parts.next().unwrap_or(""))? as usize;
                let Some(base) = parts.next() else {
                    return Ok(Report::Arrivals(k, Vec::new()));
                };
                let base = number(base)?;
                let at = parts
                    .map(|d| number(d).map(|d| base + d))
                    .collect::<Result<Vec<u64>, String>>()?;
                Ok(Report::Arrivals(k, at))
            }
            "errors" => {
                let (n, first) = rest.split_once(' ').unwrap_or((rest, ""));
                Ok(Report::Errors(number(n)? as usize, first.to_owned()))
            }
            "usage" => {
                let (cpu, rss) = rest.split_once(' ').unwrap_or((rest, ""));
                Ok(Report::Usage(number(cpu)?, number(rss)?))
            }
            "done" => Ok(Report::Done),
            "failed" => Ok(Report::Failed(rest.to_owned())),
            _ => Err(format!("unknown loader line {:?}", truncate(line, 80))),
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The node receiver `global` of the run connects to.
pub fn node_of(global: usize, nodes: usize) -> usize {
    global % nodes.max(1)
}

/// The source address receiver `global` connects from.
pub fn source_ip(global: usize, ips: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        2 + (global % ips.clamp(1, 250)) as u8,
    ))
}

fn emit(report: &Report) {
    let mut out = std::io::stdout().lock();
    // A parent that is gone cannot be told; the loader stops at end of input.
    let _ = writeln!(out, "{}", report.encode());
    let _ = out.flush();
}

/// Runs a loader (the hidden subcommand): exits 1 after `failed` on error.
pub fn run(args: &Args) -> anyhow::Result<()> {
    match run_inner(args) {
        Ok(()) => Ok(()),
        Err(e) => {
            emit(&Report::Failed(format!("loader {}: {e:#}", args.index)));
            Err(e)
        }
    }
}

/// One line of at most [`LINE_BYTES_MAX`] bytes.
pub fn read_line(input: &mut impl BufRead, line: &mut String) -> std::io::Result<usize> {
    Read::take(input, LINE_BYTES_MAX as u64).read_line(line)
}

/// Reads credentials until `go`.
fn read_members(input: &mut impl BufRead) -> anyhow::Result<Vec<Credential>> {
    let mut members = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = read_line(input, &mut line)?;
        if n == 0 {
            anyhow::bail!(
                "stdin ended before `go` ({} credentials read)",
                members.len()
            );
        }
        let text = line.trim();
        if text == "go" {
            return Ok(members);
        }
        if members.len() >= LOADER_CONNECTIONS_MAX {
            anyhow::bail!("more than {LOADER_CONNECTIONS_MAX} members for one loader");
        }
        members.push(
            courier_proto::token::parse(text)
                .map_err(|e| anyhow::anyhow!("credential {}: {e}", members.len()))?,
        );
    }
}

/// Shared between the loader's threads and its stdin watcher.
#[derive(Default)]
struct Flags {
    stop: AtomicBool,
    failed: AtomicBool,
    connected: AtomicUsize,
    delivered: AtomicU64,
}

/// What one thread recorded.
#[derive(Default)]
struct Seen {
    arrivals: Vec<Vec<u64>>,
    errors: usize,
    first_error: Option<String>,
}

fn run_inner(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(!args.nodes.is_empty(), "no nodes");
    anyhow::ensure!(
        args.messages <= MESSAGES_MAX,
        "--messages {} > {MESSAGES_MAX}",
        args.messages
    );
    let members = read_members(&mut std::io::stdin().lock())?;
    crate::server::raise_nofile(members.len() as u64 + 200)?;
    let flags = Arc::new(Flags::default());
    {
        let flags = flags.clone();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut line = String::new();
                let mut input = std::io::stdin().lock();
                loop {
                    line.clear();
                    match read_line(&mut input, &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line.trim() == "stop" => break,
                        Ok(_) => {}
                    }
                }
                flags.stop.store(true, Ordering::SeqCst);
            })?;
    }
    let threads = args.threads.clamp(1, 64);
    let seen = pool::run(threads, |t| {
        let (members, flags) = (&members, flags.clone());
        async move {
            let r = thread(args, members, t, threads, &flags).await;
            if r.is_err() {
                flags.failed.store(true, Ordering::SeqCst);
            }
            r
        }
    })?;
    let mut arrivals = vec![Vec::new(); args.messages];
    let (mut errors, mut first_error) = (0, None);
    for s in seen {
        for (k, a) in s.arrivals.into_iter().enumerate() {
            arrivals[k].extend(a);
        }
        errors += s.errors;
        first_error = first_error.or(s.first_error);
    }
    for (k, mut a) in arrivals.into_iter().enumerate() {
        a.sort_unstable();
        emit(&Report::Arrivals(k, a));
    }
    emit(&Report::Errors(errors, first_error.unwrap_or_default()));
    let rss = crate::server::proc_rss_kib(std::process::id()).unwrap_or(0);
    emit(&Report::Usage(crate::server::self_cpu_ns(), rss));
    emit(&Report::Done);
    Ok(())
}

/// One load thread: logs its share in, reports `connected` when the last
/// thread is done, records arrivals until told to stop.
async fn thread(
    args: &Args,
    members: &[Credential],
    t: usize,
    threads: usize,
    flags: &Flags,
) -> anyhow::Result<Seen> {
    let mine = pool::share(members.len(), threads, t);
    let seen = Rc::new(RefCell::new(Seen {
        arrivals: vec![Vec::new(); args.messages],
        ..Seen::default()
    }));
    let gate = Rc::new(tokio::sync::Semaphore::new(args.connect_in_flight.max(1)));
    let logged_in = Rc::new(std::cell::Cell::new(0usize));
    let failed = Rc::new(RefCell::new(Vec::<String>::new()));
    let mut tasks = Vec::with_capacity(mine.len());
    for i in mine.clone() {
        let global = args.first + i;
        let addr = args.nodes[node_of(global, args.nodes.len())];
        let ip = source_ip(global, args.source_ips);
        let credential = members[i].clone();
        let (gate, logged_in, failed, seen) = (
            gate.clone(),
            logged_in.clone(),
            failed.clone(),
            seen.clone(),
        );
        tasks.push(tokio::task::spawn_local(async move {
            let login = {
                let _permit = gate.acquire().await;
                tokio::time::timeout(LOGIN_TIMEOUT, Session::login(addr, Some(ip), &credential))
                    .await
            };
            match login {
                Ok(Ok(session)) => {
                    logged_in.set(logged_in.get() + 1);
                    receive(session, seen).await;
                }
                Ok(Err(e)) => failed
                    .borrow_mut()
                    .push(format!("member {global} to {addr} from {ip}: {e:#}")),
                Err(_) => failed.borrow_mut().push(format!(
                    "member {global} to {addr} from {ip}: no Welcome within {LOGIN_TIMEOUT:?}"
                )),
            }
        }));
    }
    let timer = PreciseTimer::new()?;
    let mut reported = now_ns();
    while logged_in.get() + failed.borrow().len() < mine.len() {
        timer.sleep_until(now_ns() + 10_000_000).await?;
        if flags.failed.load(Ordering::SeqCst) || flags.stop.load(Ordering::SeqCst) {
            anyhow::bail!(
                "stopped while connecting ({} of {})",
                logged_in.get(),
                mine.len()
            );
        }
        if t == 0 && now_ns() - reported > 5_000_000_000 {
            reported = now_ns();
            eprintln!(
                "loader {}: thread 0 connected {} of {}",
                args.index,
                logged_in.get(),
                mine.len()
            );
        }
    }
    if let Some(e) = failed.borrow().first() {
        anyhow::bail!(
            "{} of {} logins failed; first: {e}",
            failed.borrow().len(),
            mine.len()
        );
    }
    if flags.connected.fetch_add(mine.len(), Ordering::SeqCst) + mine.len() == members.len() {
        emit(&Report::Connected(members.len()));
    }
    watch(t, flags, &seen, &timer).await?;
    for task in tasks {
        task.abort();
    }
    let out = std::mem::take(&mut *seen.borrow_mut());
    Ok(out)
}

/// Until `stop`: counts this thread's deliveries into the shared total and
/// (thread 0) reports the total every [`PROGRESS`] while it changes.
async fn watch(
    t: usize,
    flags: &Flags,
    seen: &Rc<RefCell<Seen>>,
    timer: &PreciseTimer,
) -> anyhow::Result<()> {
    let mut counted = 0u64;
    let mut last_report = 0u64;
    while !flags.stop.load(Ordering::SeqCst) {
        if flags.failed.load(Ordering::SeqCst) {
            anyhow::bail!("another load thread failed");
        }
        timer
            .sleep_until(now_ns() + PROGRESS.as_nanos() as u64)
            .await?;
        let got: u64 = seen.borrow().arrivals.iter().map(|a| a.len() as u64).sum();
        flags.delivered.fetch_add(got - counted, Ordering::SeqCst);
        counted = got;
        if t == 0 {
            let total = flags.delivered.load(Ordering::SeqCst);
            if total != last_report {
                last_report = total;
                emit(&Report::Delivered(total));
            }
        }
    }
    Ok(())
}

/// A member's connection: records the arrival time of each posted message.
async fn receive(mut session: Session, seen: Rc<RefCell<Seen>>) {
    loop {
        let read = session
            .conn
            .read(&mut session.reader, |bytes| {
                if let Ok(ServerFrame::Event(Event::Message(m))) = decode_server(bytes) {
                    if let Some((k, _)) = crate::payload::parse_stamp(&m.body) {
                        let now = now_ns();
                        if let Some(v) = seen.borrow_mut().arrivals.get_mut(k as usize) {
                            v.push(now);
                        }
                    }
                }
            })
            .await;
        if let Err(e) = read {
            let mut s = seen.borrow_mut();
            s.errors += 1;
            if s.first_error.is_none() {
                s.first_error = Some(format!("member connection: {e}"));
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_reads_back_as_written() {
        let reports = [
            Report::Connected(16_667),
            Report::Delivered(1_666_700),
            Report::Arrivals(
                3,
                vec![1_000_000_000_000, 1_000_000_000_500, 1_000_000_090_000],
            ),
            Report::Arrivals(7, Vec::new()),
            Report::Errors(2, "member connection: reset by peer".into()),
            Report::Errors(0, String::new()),
            Report::Usage(12_345_678_901, 52_292),
            Report::Done,
            Report::Failed("loader 2: 3 of 9 logins failed; first: refused".into()),
        ];
        for r in reports {
            let line = r.encode();
            assert!(!line.contains('\n'), "{line:?}");
            assert_eq!(Report::parse(&line), Ok(r));
        }
    }

    #[test]
    fn a_newline_in_an_error_cannot_split_the_line() {
        let line = Report::Failed("first\nsecond".into()).encode();
        assert_eq!(
            Report::parse(&line),
            Ok(Report::Failed("first second".into()))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_report() {
        assert!(Report::parse("connected lots").is_err());
        assert!(Report::parse("arrivals 1 10 x").is_err());
        assert!(Report::parse("hello").is_err());
        assert!(Report::parse("").is_err());
    }

    #[test]
    fn members_spread_evenly_over_nodes_and_addresses() {
        let mut per_node = [0usize; 6];
        for g in 0..99_999 {
            per_node[node_of(g, 6)] += 1;
        }
        assert_eq!(per_node, [16_667, 16_667, 16_667, 16_666, 16_666, 16_666]);
        assert_eq!(source_ip(0, 6), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_ip(13, 6), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(source_ip(13, 0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    }

    #[test]
    fn credentials_are_read_until_go() {
        let token = courier_proto::token::format_user(courier_core::api::UserId(9), 4, &[7; 32]);
        let mut input = std::io::Cursor::new(format!("{token}\n{token}\ngo\nstop\n"));
        assert_eq!(read_members(&mut input).unwrap().len(), 2);
        let mut cut = std::io::Cursor::new(format!("{token}\n"));
        assert!(read_members(&mut cut).is_err());
        let mut bad = std::io::Cursor::new("cu1_zz\ngo\n");
        assert!(read_members(&mut bad).is_err());
    }
}
