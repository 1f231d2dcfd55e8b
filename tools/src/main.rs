//! `courier`: the command-line client of Courier (see docs/CLI.md).
//!
//! Exit codes: 0 ok, 1 the server rejected the request (or another
//! failure), 2 usage error, 3 cannot reach the server.
#![deny(clippy::unwrap_used)]

mod cli;

use clap::Parser;
use cli::args::Cli;
use cli::commands::{describe_error, exit_code, run};

fn main() {
    let cli = Cli::parse(); // usage errors exit with code 2
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("courier: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(run(cli));
    let code = match result {
        Ok(()) => 0,
        Err(e) if e.is::<cli::output::StdoutClosed>() => 0,
        Err(e) => {
            let code = exit_code(&e);
            let text = describe_error(&e);
            if json {
                eprintln!(
                    "{}",
                    serde_json::json!({ "error": format!("{e:#}"), "exit": code })
                );
            } else {
                eprintln!("courier: error: {text}");
            }
            code
        }
    };
    // Do not wait for background tasks (a connection driver) to wind down.
    runtime.shutdown_background();
    std::process::exit(code);
}
