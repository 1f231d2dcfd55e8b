//! The TypeScript SDK (tools/web/sdk) against a real `courierd`: runs its
//! node test suite (`node --test`: unit tests, then the recovery cases of
//! the Rust client's tests against the daemon — live delivery, catch-up
//! after a network drop with History repair, a lost ack retried with the
//! same client message id, kill -9 and restart, a cursor file, read cursors
//! across devices, a bad token) with the daemon's URL, its admin token and
//! a control endpoint that kills and restarts it.
//!
//! Node 18+ and npm must be installed; the npm packages are installed on
//! first use from the committed lock file (`scripts/install-web-deps`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use courier_tools::testkit::web::{run_node, web_dir, Control};
use courier_tools::testkit::ServerProcess;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The whole node suite must finish within this (it takes a few seconds).
const SUITE_DEADLINE: Duration = Duration::from_secs(180);

#[test]
fn the_typescript_sdk_passes_its_tests_against_a_real_server() {
    let web = web_dir().unwrap();
    let server = ServerProcess::spawn_temp(2).unwrap();
    let url = server.url();
    let admin = server.admin_token().unwrap();
    let server = Arc::new(Mutex::new(server));
    let control = Control::start(server.clone()).unwrap();
    let run = run_node(
        &web.join("sdk"),
        &[
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            "test/unit.test.mjs",
            "test/server.test.mjs",
        ],
        &[
            ("COURIER_URL", url),
            ("COURIER_ADMIN_TOKEN", admin),
            ("COURIER_CONTROL_URL", control.url().to_owned()),
        ],
        SUITE_DEADLINE,
    )
    .unwrap();
    eprintln!("{}\n(node --test took {:?})", run.output, run.took);
    let log = server.lock().map(|s| s.log_tail(30)).unwrap_or_default();
    assert!(
        run.success,
        "the SDK's node tests failed:\n{}\ncourierd log:\n{log}",
        run.output
    );
    // Every test ran and passed: 11 unit tests and 8 against the daemon (the
    // quickstart example of docs/CLIENTS.md among them), none skipped.
    let count = |what: &str| {
        run.output
            .lines()
            .find_map(|l| l.trim_start_matches('ℹ').trim().strip_prefix(what))
            .and_then(|n| n.trim().parse::<u32>().ok())
    };
    assert_eq!(count("tests "), Some(19), "{}", run.output);
    assert_eq!(count("pass "), Some(19), "{}", run.output);
    assert_eq!(count("skipped "), Some(0), "{}", run.output);
}
