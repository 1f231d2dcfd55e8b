//! The web app's committed build: courierd embeds tools/web/app/dist
//! (net/src/web.rs), so the test checks that it matches the sources
//! (`node build.mjs --check`; rebuild with `scripts/build-web`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use courier_tools::testkit::web::{run_node, web_dir};
use std::time::Duration;

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
