//! `courierd`: the Courier daemon. See `courier_net` for what it is made of
//! and docs/OPERATIONS.md for how to run it.

use clap::Parser;
use courier_net::config::{Args, Config, LogFormat};
use courier_net::server::Node;
use std::io::Write;

fn main() {
    // A panic is a programmer error (an assertion): take the whole node down
    // rather than leave the other shards running without this one. The log
    // on restart recovers everything that was acknowledged.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let args = Args::parse();
    let config = match Config::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("courierd: {e:#}");
            std::process::exit(2);
        }
    };
    init_logging(config.log_format);
    raise_fd_limit();
    let node = match Node::start(config) {
        Ok(node) => node,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("courierd: {e:#}");
            std::process::exit(1);
        }
    };
    let stop = node.stop.clone();
    if let Err(e) = courier_net::signals::on_terminate(move || stop.request(0)) {
        eprintln!("courierd: installing signal handlers: {e}");
        std::process::exit(1);
    }
    tracing::info!(addr = %node.addr, "serving");
    // One machine-readable line on stdout for scripts and tests.
    println!("courierd ready listen={}", node.addr);
    let _ = std::io::stdout().flush();
    let code = node.wait();
    tracing::info!(code, "exiting");
    std::process::exit(code);
}

/// Every connection is a file descriptor: raise the soft RLIMIT_NOFILE to
/// the hard limit (what an unprivileged process may do) and say what we got.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim = wanted;
            }
        }
    }
    tracing::info!(open_files_max = lim.rlim_cur, "file descriptor limit");
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COURIER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
