//! Running the `courier` CLI against a test server, for the CLI's
//! end-to-end tests (live.rs, threads.rs, around.rs): a command with a
//! clean environment (its own config file, the server's URL, `--json`),
//! and its JSON lines.
#![allow(dead_code)] // each test file uses a part of it
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use courier_tools::testkit::ServerProcess;
use serde_json::Value;
use std::process::{Command, Output, Stdio};

/// A `courier` command against `server` with a clean environment.
pub fn courier(server: &ServerProcess, token: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_courier"));
    cmd.env_remove("COURIER_TOKEN")
        .env(
            "COURIER_CONFIG",
            server.data_dir().with_file_name("cli-config.toml"),
        )
        .env("COURIER_SERVER", server.url())
        .args(["--token", token, "--json"])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

pub fn run(server: &ServerProcess, token: &str, args: &[&str]) -> (Option<i32>, Vec<Value>) {
    let out: Output = courier(server, token, args).output().unwrap();
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status.code(), rows)
}

pub fn run_ok(server: &ServerProcess, token: &str, args: &[&str]) -> Vec<Value> {
    let (code, rows) = run(server, token, args);
    assert_eq!(code, Some(0), "courier {args:?}");
    rows
}

pub fn id(v: &Value) -> String {
    v.as_str().unwrap().to_owned()
}
