//! The HTTP API end to end: real `plus serve` processes on free loopback
//! ports, real workers running real scripts on the local backend.

mod http_support;

use std::time::Duration;

use http_support::{plus, request, Server};
use serde_json::{json, Value};

const SLOW_HELLO: &str = "#!/bin/sh\necho \"hello $PLUS_USERNAME\"\nfor i in 1 2 3; do echo \"step $i\"; sleep 0.2; done\necho 'oops' >&2\necho '{\"steps\": 3}' > \"$PLUS_RESULT_FILE\"\n";

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn id_of(v: &Value) -> String {
    v["object_id"].as_str().unwrap().to_owned()
}

#[test]
fn a_job_launched_over_http_runs_to_succeeded_and_its_output_arrives_incrementally() {
    let home = home();
    let server = Server::start(home.path(), "alice", &[]);
    let a = server.call(
        "POST",
        "/jobs",
        Some(&json!({ "script": { "source": SLOW_HELLO }, "params": { "who": "http" } })),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = id_of(&a.body);
    assert_eq!(a.header("location"), Some(format!("/jobs/{id}").as_str()));

    // Follow the events the way a frontend does, until the status is final.
    let mut after = "0".to_owned();
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let final_status = loop {
        let a = server.call("GET", &format!("/jobs/{id}/events?after={after}"), None);
        assert_eq!(a.status, 200, "{:?}", a.body);
        for e in a.body["events"].as_array().unwrap() {
            let seq: u64 = e["seq"].as_str().unwrap().parse().unwrap();
            assert!(
                seq > after.parse::<u64>().unwrap(),
                "events come after `after`"
            );
            if e["kind"] == "stdout" || e["kind"] == "stderr" {
                lines.extend(e["data"].as_str().unwrap().lines().map(str::to_owned));
            }
        }
        after = a.body["next_after"].as_str().unwrap().to_owned();
        let status = a.body["status"].as_str().unwrap().to_owned();
        if matches!(status.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED") {
            assert_eq!(
                a.header("retry-after"),
                None,
                "a finished job needs no polling"
            );
            break status;
        }
        let hint: u64 = a.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=5).contains(&hint));
        assert!(std::time::Instant::now() < deadline, "the job never ended");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(final_status, "SUCCEEDED");
    for want in ["hello alice", "step 1", "step 2", "step 3", "oops"] {
        assert!(lines.iter().any(|l| l == want), "{want:?} in {lines:?}");
    }
    let pos = |s: &str| lines.iter().position(|l| l == s).unwrap();
    assert!(pos("step 1") < pos("step 2") && pos("step 2") < pos("step 3"));

    // Nothing new after the end: an empty page, then 304 for the same ask.
    let path = format!("/jobs/{id}/events?after={after}");
    let a = server.call("GET", &path, None);
    assert_eq!(a.body["events"], json!([]));
    let etag = a.header("etag").unwrap().to_owned();
    let again = server.get_with(&path, &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.raw.is_empty());

    let job = server.call("GET", &format!("/jobs/{id}"), None);
    assert_eq!(job.body["status"], "SUCCEEDED");
    assert_eq!(job.body["exit_code"], 0);
    assert_eq!(job.body["result"], json!({ "steps": 3 }));
    assert_eq!(job.body["params"], json!({ "who": "http" }));
    assert!(job.body["completed_at"].as_str().unwrap().ends_with('Z'));
    let etag = job.header("etag").unwrap().to_owned();
    let again = server.get_with(&format!("/jobs/{id}"), &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);

    let list = server.call("GET", "/jobs", None);
    assert_eq!(list.body["jobs"][0]["object_id"], id.as_str());
}

#[test]
fn without_a_valid_token_the_server_answers_401_and_does_nothing() {
    let home = home();
    let server = Server::start(home.path(), "alice", &[]);
    let launch = json!({ "script": { "source": "echo hi" } }).to_string();
    for headers in [
        vec![],
        vec![("Authorization", "Bearer not-the-token")],
        vec![("Authorization", "Basic YWxpY2U6eA==")],
    ] {
        let mut h = headers.clone();
        h.push(("Content-Type", "application/json"));
        for (method, path, body) in [
            ("GET", "/jobs", None),
            ("POST", "/jobs", Some(launch.as_str())),
            ("GET", "/jobs/some-id", None),
            ("GET", "/jobs/some-id/events?after=0", None),
            ("POST", "/jobs/some-id/cancel", None),
        ] {
            let a = request(&server.addr, method, path, &h, body);
            assert_eq!(a.status, 401, "{method} {path} with {headers:?}");
            assert_eq!(a.body["code"], "unauthenticated");
            assert_eq!(a.header("www-authenticate"), Some("Bearer realm=\"plus\""));
        }
    }
    let list = server.call("GET", "/jobs", None);
    assert_eq!(list.status, 200);
    assert_eq!(
        list.body["jobs"],
        json!([]),
        "the refused launches wrote nothing"
    );
    // A token from another start of the server is no good either.
    let other = Server::start(home.path(), "alice", &[]);
    assert_ne!(other.token, server.token);
    let a = request(
        &other.addr,
        "GET",
        "/jobs",
        &[("Authorization", &format!("Bearer {}", server.token))],
        None,
    );
    assert_eq!(a.status, 401);
}

#[test]
fn another_users_job_is_404_and_never_listed() {
    let home = home();
    // Bob launches a job with the CLI on the same machine.
    let out = plus(home.path(), "bob")
        .args(["--json", "launch", "--id", "bobs-job"])
        .arg(write_script(
            home.path(),
            "bob.sh",
            "#!/bin/sh\necho \"bob's secret\"\n",
        ))
        .output()
        .unwrap();
    succeeded(&out);
    let server = Server::start(home.path(), "alice", &[]);
    for (method, path) in [
        ("GET", "/jobs/bobs-job"),
        ("GET", "/jobs/bobs-job/events?after=0"),
        ("POST", "/jobs/bobs-job/cancel"),
    ] {
        let a = server.call(method, path, None);
        assert_eq!(a.status, 404, "{method} {path}");
        let missing = server.call(method, &path.replace("bobs-job", "no-such-job"), None);
        assert_eq!(missing.status, 404);
        // Word for word what a job that does not exist gets.
        assert_eq!(
            a.body["message"].as_str().unwrap().replace("bobs-job", "X"),
            missing.body["message"]
                .as_str()
                .unwrap()
                .replace("no-such-job", "X")
        );
        assert!(!String::from_utf8_lossy(&a.raw).contains("secret"));
    }
    assert_eq!(server.call("GET", "/jobs", None).body["jobs"], json!([]));
    // Bob's job went on untouched by alice's cancel.
    let bob = Server::start(home.path(), "bob", &[]);
    let job = bob.wait_for_job("bobs-job", Duration::from_secs(60), |j| {
        j["status"] == "SUCCEEDED"
    });
    assert!(job.get("cancel_requested").is_none());
}

#[test]
fn cancel_over_http_stops_a_running_job() {
    let home = home();
    let server = Server::start(home.path(), "alice", &[]);
    let a = server.call(
        "POST",
        "/jobs",
        Some(&json!({ "script": { "source": "#!/bin/sh\necho started\nsleep 60\necho never\n" } })),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = id_of(&a.body);
    server.wait_for_job(&id, Duration::from_secs(30), |j| j["status"] == "RUNNING");
    let a = server.call("POST", &format!("/jobs/{id}/cancel"), None);
    assert_eq!(a.status, 200, "{:?}", a.body);
    // A RUNNING job is cancelled by its worker, which holds the lease: the
    // answer carries the request, not an end written over the worker.
    assert_eq!(a.body["status"], "RUNNING", "{:?}", a.body);
    assert_eq!(a.body["cancel_requested"], true, "{:?}", a.body);
    let asked = std::time::Instant::now();
    let job = server.wait_for_job(&id, Duration::from_secs(30), |j| j["status"] == "CANCELLED");
    // The local runner wakes the worker: it ends within seconds, not a
    // heartbeat later, and it is the worker's own end (its log is stored).
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    assert!(job["completed_at"].is_string());
    assert_eq!(job["cancel_requested"], true);
    assert!(
        job["log_key"].as_str().is_some_and(|k| !k.is_empty()),
        "{job}"
    );
    let again = server.call("POST", &format!("/jobs/{id}/cancel"), None);
    assert_eq!(again.status, 409);
    assert!(again.body["message"]
        .as_str()
        .unwrap()
        .contains("nothing to cancel"));
}

#[test]
fn serve_listens_on_loopback_only_and_stops_on_sigterm() {
    let home = home();
    let out = plus(home.path(), "alice")
        .args(["serve", "--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");

    let mut server = Server::start(home.path(), "alice", &[]);
    assert!(server.url.starts_with("http://127.0.0.1:"));
    let page = request(&server.addr, "GET", "/", &[], None);
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.raw).contains("<title>plus jobs</title>"));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server
        .wait_exit(Duration::from_secs(10))
        .expect("plus serve stops on SIGTERM");
    assert!(exit.success(), "{exit:?}");
}

/// Asserts a `plus` command succeeded, with its stderr when not.
fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_script(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn another_users_action_is_404_like_a_missing_one_and_nothing_runs() {
    let home = home();
    let script = write_script(
        home.path(),
        "bobact.sh",
        "#!/bin/sh\necho \"bob's action\"\n",
    );
    for args in [
        vec!["action", "put", "bobact"],
        vec!["collection", "import", "bob/collections/x"],
    ] {
        let file = if args[0] == "action" {
            script.clone()
        } else {
            write_script(home.path(), "items.jsonl", "{\"id\":\"bobitem1\"}\n")
        };
        succeeded(
            &plus(home.path(), "bob")
                .args(args)
                .arg(file)
                .output()
                .unwrap(),
        );
    }
    let server = Server::start(home.path(), "alice", &[]);
    let launch = |id: &str| {
        let a = server.call("POST", "/jobs", Some(&json!({ "action_id": id })));
        assert_eq!(a.status, 404, "{id}: {:?}", a.body);
        a.body["message"].as_str().unwrap().replace(id, "X")
    };
    let missing = launch("no-such-action");
    assert_eq!(launch("bobact"), missing, "another user's action");
    assert_eq!(launch("bobitem1"), missing, "not an action");
    assert_eq!(server.call("GET", "/jobs", None).body["jobs"], json!([]));
}

#[test]
fn a_connection_that_sends_half_a_request_is_closed_within_seconds() {
    use std::io::{Read, Write};
    let home = home();
    let server = Server::start(home.path(), "alice", &[]);
    let mut half = std::net::TcpStream::connect(&server.addr).unwrap();
    half.write_all(b"GET /jobs HTTP/1.1\r\nHost: localhost\r\nX-Partial: ")
        .unwrap();
    half.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    // EOF (or a reset) ends the read; a timeout would be an error too, so
    // the elapsed time tells them apart.
    let _ = half.read_to_end(&mut rest);
    let held = started.elapsed();
    assert!(
        held < Duration::from_secs(15),
        "the half-open connection was held for {held:?}"
    );
    // The server still answers everyone else.
    assert_eq!(server.call("GET", "/jobs", None).status, 200);
}
