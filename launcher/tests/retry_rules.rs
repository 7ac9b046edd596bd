//! Retry rules through the real `plus` binary on the local backend: a
//! script whose exit a RETRY rule matches runs again as its next attempt
//! (the following `plus` relaunches it; `plus monitor` does for a launch
//! nobody follows), an exit no rule matches stays FAILED, and bad rules
//! are refused before anything is written.

use std::{
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use serde_json::Value;

const PLUS: &str = env!("CARGO_BIN_EXE_plus");

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn plus(&self, args: &[&str]) -> Output {
        std::process::Command::new(PLUS)
            .args(args)
            .env_remove("DYNAMO_TABLE")
            .env_remove("PLUS_BACKEND")
            .env("PLUS_HOME", self.dir.path().join("home"))
            .env("PLUS_USER", "alice")
            .env("PLUS_HEARTBEAT_SECONDS", "0.2")
            .env("PLUS_GRACE_SECONDS", "2")
            .env("PLUS_FLUSH_MILLIS", "50")
            .env("PLUS_WORK_DIR", self.dir.path().join("work"))
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.plus(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn script(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = self.json(&["status", id, "--json"]);
            if job["status"] == want {
                return job;
            }
            assert!(Instant::now() < deadline, "job never {want}: {job}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails with `code` on its first attempt, succeeds on its second.
const FLAKY: &str = "#!/bin/sh\necho \"attempt $PLUS_ATTEMPT\"\nif [ \"$PLUS_ATTEMPT\" = 2 ]; then exit 0; fi\nexit ${CODE:-3}\n";

#[test]
fn a_retry_rule_runs_a_failed_script_again_as_its_next_attempt() {
    let home = Home::new();
    let script = home.script("flaky.sh", FLAKY);
    let out = home.plus(&[
        "run",
        script.to_str().unwrap(),
        "--retry-on-exit-code",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(job["attempt"], 2, "{job}");
    assert_eq!(job["retry"][0]["on_exit_code"], "3");
    let first = &job["attempts"][0];
    assert_eq!(first["status"], "INTERRUPTED", "{job}");
    assert_eq!(first["exit_code"], 3, "{job}");
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .contains("a retry rule tries it again as attempt 2"),
        "{job}"
    );
    let logs = text(
        &home
            .plus(&["logs", job["object_id"].as_str().unwrap()])
            .stdout,
    );
    assert!(
        logs.contains("attempt 1") && logs.contains("attempt 2"),
        "{logs}"
    );
}

#[test]
fn an_exit_no_rule_matches_stays_failed() {
    let home = Home::new();
    let script = home.script("flaky.sh", &FLAKY.replace("${CODE:-3}", "4"));
    let out = home.plus(&[
        "run",
        script.to_str().unwrap(),
        "--retry-on-exit-code",
        "3",
        "--retry",
        "exit=4,action=EXIT",
        "--retry",
        "exit=*",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "FAILED", "{job}");
    assert_eq!(job["attempt"], 1, "the EXIT rule came first: {job}");
}

#[test]
fn a_launch_nobody_follows_is_relaunched_by_the_monitor() {
    let home = Home::new();
    let script = home.script("flaky.sh", FLAKY);
    let launched = home.json(&[
        "launch",
        script.to_str().unwrap(),
        "--retry",
        "exit=3,action=retry",
        "--json",
    ]);
    let id = launched["job_id"].as_str().unwrap();
    let job = home.wait_status(id, "INTERRUPTED");
    assert!(
        job["error"].as_str().unwrap().contains("retry rule"),
        "{job}"
    );
    home.json(&["monitor", "--once", "--json"]);
    let job = home.wait_status(id, "SUCCEEDED");
    assert_eq!(job["attempt"], 2, "{job}");
}

#[test]
fn bad_rules_are_refused_before_anything_is_written() {
    let home = Home::new();
    let script = home.script("flaky.sh", FLAKY);
    let s = script.to_str().unwrap();
    let refusal = |args: &[&str]| {
        let out = home.plus(&[&["launch", s], args].concat());
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let e = refusal(&["--retry-on-exit-code", "3*1"]);
    assert!(e.contains("on_exit_code \"3*1\" has '*'"), "{e}");
    let e = refusal(&["--retry", "exit=3,action=again"]);
    assert!(e.contains("action \"again\" is not RETRY or EXIT"), "{e}");
    let e = refusal(&["--retry", "code=3"]);
    assert!(e.contains("unknown key \"code\""), "{e}");
    let six: Vec<&str> = ["--retry-on-exit-code", "1"].repeat(6);
    let e = refusal(&six);
    assert!(e.contains("at most 5"), "{e}");
    let list = home.json(&["list", "--json"]);
    assert_eq!(list["jobs"], serde_json::json!([]), "nothing was written");
}
