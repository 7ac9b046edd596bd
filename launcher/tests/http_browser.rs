//! The live page in a real browser: `plus serve` with real workers, and
//! headless Chromium (Debian's `chromium`) driven by playwright-core from
//! `launcher/tests/browser/live_page.mjs`. Screenshots of every state, at
//! desktop and phone width, are saved under `target/tmp/http_browser/`.

mod http_support;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use http_support::{plus, Server};
use plus_jobs::{
    event::stream_event,
    job::{jobs_owner, JobId, Timestamp},
    store::sqlite::SqliteStore,
    EventKind, Job, JobStatus, JobStore, RunMode, Script,
};
use serde_json::json;

const BROWSER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

/// The screenshots the browser test saves: each state at 1280 px, and at
/// 390 px (`-phone`) where a phone layout matters.
const SCREENSHOTS: &[&str] = &[
    "live-page-list.png",
    "live-page-list-phone.png",
    "live-page-running.png",
    "live-page-running-phone.png",
    "live-page-succeeded.png",
    "live-page-succeeded-phone.png",
    "live-page-succeeded-dark.png",
    "live-page-failed.png",
    "live-page-failed-phone.png",
    "live-page-sharded.png",
    "live-page-sharded-phone.png",
    "live-page-cancelled.png",
    "live-page-queued.png",
    "live-page-queued-phone.png",
];

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// What the test needs, each missing piece named with its fix.
fn check_prerequisites() {
    let mut missing = Vec::new();
    if Command::new("node").arg("--version").output().is_err() {
        missing.push(
            "node is not on PATH: run scripts/test.sh, which puts node >= 20 from .venv-test/ first on PATH (Debian 12's nodejs is too old)"
                .to_owned(),
        );
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

/// `plus` as alice on the server's home, like a second terminal.
fn plus_cli(server: &Server, args: &[&str]) -> serde_json::Value {
    let out = plus(&server.home, "alice")
        .env("PLUS_MAX_RUNNING", "8")
        .args(args)
        .output()
        .expect("run plus");
    assert!(
        out.status.success(),
        "plus {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Imports `count` items into `owner`; the ones in `failing` make the
/// per-item script below fail.
fn import_items(server: &Server, dir: &Path, owner: &str, count: usize, failing: &[usize]) {
    let lines: String = (0..count)
        .map(|i| format!("{}\n", json!({ "id": format!("{owner}-{i:03}").replace('/', "-"), "n": i, "fail": failing.contains(&i) })))
        .collect();
    let file = dir.join(format!("{}.jsonl", owner.replace('/', "-")));
    std::fs::write(&file, lines).unwrap();
    plus_cli(
        server,
        &[
            "--json",
            "collection",
            "import",
            owner,
            file.to_str().unwrap(),
        ],
    );
}

/// One collection item: item `n` answers after `n` x 0.15 s (or fails).
/// With every item started at once (`PLUS_CONCURRENCY` above the item
/// count), the worker knows the total from the start and the items finish
/// one by one, so the progress bar moves steadily.
const PER_ITEM: &str = r#"#!/bin/sh
item=$(cat)
n=$(echo "$item" | sed 's/.*"n":\([0-9]*\).*/\1/')
sleep "$(printf '%d.%02d' $((n * 15 / 100)) $((n * 15 % 100)))"
case "$item" in *'"fail":true'*) echo 'this item is refused' >&2; exit 1;; esac
echo "{\"ok\": \"$PLUS_ITEM_ID\"}"
"#;

/// A job that ran twice: attempt 1 was interrupted (Spot), attempt 2
/// failed. A local run cannot be interrupted by Spot on cue, so the record,
/// its output and each attempt's log are written through the store and the
/// blob folder, where and as the worker writes them.
fn store_a_job_with_two_attempts(home: &Path, name: &str) -> String {
    let id = JobId::generate().to_string();
    let day = &Timestamp::now().to_string()[..10];
    let at = |time: &str| format!("{day}T{time}Z");
    let bucket = home.join("blobs/plus-primary");
    let logs = [
        "loading 2,000 rows\nrow 1,000 written\n",
        "loading 2,000 rows\nresuming at row 1,000\nerror: the upstream API answered 503 for row 1,412\n",
    ];
    for (n, text) in logs.iter().enumerate() {
        let dir = bucket.join(format!("jobs/{id}/attempts/{}", n + 1));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("log.txt"), text).unwrap();
    }
    let attempt =
        |n: u32, started: &str, ended: &str, status: JobStatus, exit: Option<i32>, error: &str| {
            plus_proto::Attempt {
                attempt: n,
                task: format!("local:{id}:{n}"),
                started_at: at(started),
                ended_at: at(ended),
                status: status as i32,
                exit_code: exit,
                error: error.into(),
                log_key: format!("jobs/{id}/attempts/{n}/log.txt"),
                usage: None,
            }
        };
    let error = "the script exited with code 1: see the last lines of its output";
    let job = Job {
        object_id: id.clone(),
        object_type: "PlusScriptJob".into(),
        owner: jobs_owner("alice"),
        username: "alice".into(),
        name: name.into(),
        status: JobStatus::Failed as i32,
        run_mode: RunMode::RunScript as i32,
        script: Some(Script {
            s3_key: format!("jobs/{id}/script"),
            interpreter: "python3".into(),
            args: vec!["--since".into(), "yesterday".into()],
            ..Script::default()
        }),
        created_at: at("08:14:02.410"),
        updated_at: at("08:32:41.905"),
        started_at: at("08:32:10.220"),
        completed_at: at("08:32:41.900"),
        fargate_task_arn: format!("local:{id}:2"),
        attempt: Some(2),
        max_attempts: Some(2),
        exit_code: Some(1),
        error: error.into(),
        log_key: format!("jobs/{id}/attempts/2/log.txt"),
        attempts: vec![
            attempt(
                1,
                "08:14:05.120",
                "08:31:40.003",
                JobStatus::Interrupted,
                None,
                "the task was stopped (Fargate Spot interruption); relaunched as attempt 2",
            ),
            attempt(
                2,
                "08:32:10.220",
                "08:32:41.900",
                JobStatus::Failed,
                Some(1),
                error,
            ),
        ],
        ..Job::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&home.join("plus.sqlite3")).unwrap();
        store.create_job(&job).await.unwrap();
        let mut events = Vec::new();
        let mut after = 0;
        for (kind, data) in [
            (EventKind::Status, "RUNNING"),
            (
                EventKind::Stdout,
                "loading 2,000 rows\nresuming at row 1,000",
            ),
            (
                EventKind::Stderr,
                "error: the upstream API answered 503 for row 1,412",
            ),
            (EventKind::Status, "FAILED"),
        ] {
            let e = stream_event(&id, kind, data.into(), 7, after);
            after = e.seq;
            events.push(e);
        }
        store.append_events(&events).await.unwrap();
    });
    id
}

#[test]
fn the_live_page_shows_progress_attempts_outputs_and_shards_at_desktop_and_phone_width() {
    check_prerequisites();
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(
        home.path(),
        "alice",
        &[("PLUS_MAX_RUNNING", "8"), ("PLUS_CONCURRENCY", "150")],
    );
    let files = tempfile::tempdir().unwrap();

    // A job that prints, leaves two files and a result, and succeeds.
    let script = "#!/bin/sh\necho 'hello from the live page test'\nfor i in 1 2 3 4 5; do echo \"step $i of 5\"; sleep 0.3; done\necho 'a warning' >&2\necho '<img src=x onerror=alert(1)> stays text'\nprintf 'city,visits\\nOslo,3\\nLima,5\\n' > \"$PLUS_OUTPUT_DIR/report.csv\"\nmkdir -p \"$PLUS_OUTPUT_DIR/charts\"\necho 'two cities' > \"$PLUS_OUTPUT_DIR/charts/summary.txt\"\necho '{\"steps\": 5, \"cities\": [\"Oslo\", \"Lima\"]}' > \"$PLUS_RESULT_FILE\"\necho done\n";
    let a = server.call(
        "POST",
        "/jobs",
        Some(&json!({ "script": { "source": script } })),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    let job = a.body["object_id"].as_str().unwrap().to_owned();

    // A sharded collection: 3 shards over 30 items.
    import_items(&server, files.path(), "alice/collections/cities", 30, &[]);
    let per_item = files.path().join("per-item.sh");
    std::fs::write(&per_item, PER_ITEM).unwrap();
    let sharded = plus_cli(
        &server,
        &[
            "--json",
            "launch",
            "--collection",
            "alice/collections/cities",
            per_item.to_str().unwrap(),
            "--shards",
            "3",
        ],
    );
    let parent = sharded["job_id"].as_str().unwrap().to_owned();

    // A failed job with two attempts (written through the store).
    let failed_name = "nightly import";
    let failed = store_a_job_with_two_attempts(home.path(), failed_name);

    // A collection of 120 items, 2 of which fail: the browser test launches
    // a job over it (with the failures tolerated) when it wants to watch
    // one run.
    import_items(
        &server,
        files.path(),
        "alice/collections/photos",
        120,
        &[3, 7],
    );
    // A job that runs until it is cancelled.
    let a = server.call(
        "POST",
        "/jobs",
        Some(&json!({ "script": { "source": "#!/bin/sh\necho started\nsleep 120\n" } })),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    let long = a.body["object_id"].as_str().unwrap().to_owned();

    let shots: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("http_browser");
    std::fs::create_dir_all(&shots).unwrap();
    for name in SCREENSHOTS {
        let _ = std::fs::remove_file(shots.join(name));
    }
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
        .env("PLUS_COLLECTION", "alice/collections/photos")
        .env("PLUS_PER_ITEM", PER_ITEM)
        .env("PLUS_SHARDED_JOB", &parent)
        .env("PLUS_FAILED_JOB", &failed)
        .env("PLUS_FAILED_NAME", failed_name)
        .env("PLUS_BIN", http_support::PLUS)
        .env("PLUS_HOME", &server.home)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", chromium())
        .output()
        .expect("run node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "the browser test failed: {stderr}");
    for name in SCREENSHOTS {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        eprintln!("screenshot: {}", shots.join(name).display());
    }
    // What the page showed is what the API says.
    let j = server.call("GET", &format!("/jobs/{job}"), None);
    assert_eq!(j.body["status"], "SUCCEEDED");
    let c = server.call("GET", "/jobs?q=&status=SUCCEEDED&page_size=100", None);
    let photos = c.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["collection_owner"] == "alice/collections/photos")
        .expect("the collection job the page watched");
    assert_eq!(photos["progress"]["total"], 120, "{photos}");
    assert_eq!(photos["progress"]["failed"], 2, "{photos}");
    let l = server.call("GET", &format!("/jobs/{long}"), None);
    assert_eq!(l.body["status"], "CANCELLED");
}
