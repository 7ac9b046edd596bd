//! The live page in a real browser: `plus serve` with real workers, and
//! headless Chromium (Debian's `chromium`) driven by playwright-core from
//! `launcher/tests/browser/live_page.mjs`. Screenshots are saved under
//! `target/tmp/http_browser/`.

mod http_support;

use std::{path::Path, process::Command};

use http_support::Server;
use serde_json::json;

const BROWSER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// What the test needs, each missing piece named with its fix.
fn check_prerequisites() {
    let mut missing = Vec::new();
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node is not installed: apt-get install -y nodejs npm".to_owned());
    }
    if !Path::new(&chromium()).exists() {
        missing.push(format!(
            "{} does not exist: apt-get install -y chromium (or set CHROMIUM to a Chromium binary)",
            chromium()
        ));
    }
    if !Path::new(BROWSER_DIR)
        .join("node_modules/playwright-core")
        .exists()
    {
        missing.push(format!(
            "playwright-core is not installed: run `npm ci` in {BROWSER_DIR}"
        ));
    }
    assert!(
        missing.is_empty(),
        "the browser test cannot run (scripts/test.sh installs all of this):\n  - {}",
        missing.join("\n  - ")
    );
}

#[test]
fn the_live_page_shows_a_job_reach_succeeded_with_its_output_and_cancels_another() {
    check_prerequisites();
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), "alice", &[]);
    let script = "#!/bin/sh\necho 'hello from the live page test'\nfor i in 1 2 3 4 5; do echo \"step $i of 5\"; sleep 0.4; done\necho 'a warning' >&2\necho '{\"steps\": 5}' > \"$PLUS_RESULT_FILE\"\necho done\n";
    let a = server.call(
        "POST",
        "/jobs",
        Some(&json!({ "script": { "source": script } })),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    let job = a.body["object_id"].as_str().unwrap().to_owned();
    let a = server.call(
        "POST",
        "/jobs",
        Some(&json!({ "script": { "source": "#!/bin/sh\necho started\nsleep 120\n" } })),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    let long = a.body["object_id"].as_str().unwrap().to_owned();

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("http_browser");
    std::fs::create_dir_all(&shots).unwrap();
    let lines = [
        "hello from the live page test",
        "step 1 of 5",
        "step 5 of 5",
        "done",
    ];
    let out = Command::new("node")
        .arg("live_page.mjs")
        .current_dir(BROWSER_DIR)
        .env("PLUS_URL", &server.url)
        .env("PLUS_TOKEN", &server.token)
        .env("PLUS_JOB", &job)
        .env("PLUS_JOB_LINES", lines.join("\n"))
        .env("PLUS_LONG_JOB", &long)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", chromium())
        .output()
        .expect("run node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "the browser test failed: {stderr}");
    for name in [
        "live-page-succeeded.png",
        "live-page-list.png",
        "live-page-cancelled.png",
    ] {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        eprintln!("screenshot: {}", shots.join(name).display());
    }
    // What the page showed is what the API says.
    let j = server.call("GET", &format!("/jobs/{job}"), None);
    assert_eq!(j.body["status"], "SUCCEEDED");
    let l = server.call("GET", &format!("/jobs/{long}"), None);
    assert_eq!(l.body["status"], "CANCELLED");
}
