//! The web app in a real browser: `courierd` (started by the test kit)
//! serves the app at `/`; headless Chromium (Debian's `chromium`, installed
//! on first use by `scripts/install-chromium`) driven by playwright-core
//! runs tools/web/app/test/browser.test.mjs against it — a bad token, alice
//! and bob chatting in a channel and a DM, read state across two tabs,
//! kill -9 and restart with both tabs open (banner, exact catch-up, a send
//! made during the outage stored once), a reload resuming from the cursors
//! kept in IndexedDB, scroll-back through 500 messages.
//! First it checks that the committed build (tools/web/app/dist, embedded
//! in the daemon) matches the sources.
//!
//! Set `COURIER_SCREENSHOTS=DIR` to keep screenshots of the main screens.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use courier_tools::testkit::web::{chromium_bin, run_node, web_dir, Control};
use courier_tools::testkit::ServerProcess;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The browser suite must finish within this (it takes about 15 s).
const SUITE_DEADLINE: Duration = Duration::from_secs(240);

#[test]
fn the_committed_web_app_build_matches_its_sources() {
    let web = web_dir().unwrap();
    let run = run_node(
        &web.join("app"),
        &["build.mjs", "--check"],
        &[],
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(
        run.success,
        "{}\n(rebuild with scripts/build-web and commit tools/web/app/dist)",
        run.output
    );
}

#[test]
fn the_web_app_works_in_a_real_browser() {
    let web = web_dir().unwrap();
    let chromium = chromium_bin().unwrap();
    let server = ServerProcess::spawn_temp(2).unwrap();
    let ws = server.url();
    let app = ws.replacen("ws://", "http://", 1);
    let admin = server.admin_token().unwrap();
    let server = Arc::new(Mutex::new(server));
    let control = Control::start(server.clone()).unwrap();
    let mut env = vec![
        ("COURIER_APP_URL", app),
        ("COURIER_URL", ws),
        ("COURIER_ADMIN_TOKEN", admin),
        ("COURIER_CONTROL_URL", control.url().to_owned()),
        ("COURIER_CHROMIUM_BIN", chromium.display().to_string()),
    ];
    if let Ok(dir) = std::env::var("COURIER_SCREENSHOTS") {
        env.push(("COURIER_SCREENSHOTS", dir));
    }
    let run = run_node(
        &web.join("app"),
        &["--test", "--test-reporter=spec", "test/browser.test.mjs"],
        &env,
        SUITE_DEADLINE,
    )
    .unwrap();
    eprintln!("{}\n(browser tests took {:?})", run.output, run.took);
    let log = server.lock().map(|s| s.log_tail(30)).unwrap_or_default();
    assert!(
        run.success,
        "the browser tests failed:\n{}\ncourierd log:\n{log}",
        run.output
    );
    assert!(run.output.contains("pass 6"), "{}", run.output);
    assert!(run.output.contains("skipped 0"), "{}", run.output);
}
