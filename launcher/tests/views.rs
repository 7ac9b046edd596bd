//! What `plus` shows about a job, run as a real process on the local
//! backend: `logs` (every attempt, or one), `status` (name, attempts,
//! outputs, result, shards), `results`, `outputs` (and downloading them),
//! `events` of a sharded parent, and `list`.
//!
//! Where a test needs a job with several attempts, it writes the record and
//! the blobs through the store API the way the worker does (attempt 1's log
//! at `jobs/{id}/log.txt`, attempt N's at `jobs/{id}/attempts/{N}/log.txt`,
//! each ended attempt in `attempts`): a real relaunch needs a worker that
//! records attempts, which these tests do not depend on.

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use plus_jobs::{blob, job::new_job, Backend, BackendConfig, JobId, JobStatus, RunMode, Timestamp};
use serde_json::{json, Value};

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

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn cmd(&self, user: &str, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(PLUS);
        cmd.args(args)
            .env_remove("DYNAMO_TABLE")
            .env("PLUS_HOME", self.home())
            .env("PLUS_USER", user)
            .env("PLUS_HEARTBEAT_SECONDS", "0.2")
            .env("PLUS_GRACE_SECONDS", "2")
            .env("PLUS_FLUSH_MILLIS", "50")
            .env("PLUS_WORK_DIR", self.dir.path().join("work"))
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        cmd
    }

    fn plus(&self, args: &[&str]) -> Output {
        self.cmd("alice", args).output().unwrap()
    }

    /// `plus ARGS` that must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.plus(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn script(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `f` with the stores `plus` uses.
    fn stores<F, Fut>(&self, f: F)
    where
        F: FnOnce(Backend) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let backend = Backend::open(&BackendConfig::Local {
                dir: self.home(),
                bucket: "plus-primary".into(),
            })
            .await
            .unwrap();
            f(backend).await;
        });
    }

    /// `plus collection import OWNER` of `n` items `{"n": i}`.
    fn collection(&self, owner: &str, n: usize) {
        let lines: String = (0..n)
            .map(|i| format!("{{\"object_id\":\"item{i:02}\",\"n\":{i}}}\n"))
            .collect();
        let file = self.script("items.jsonl", &lines);
        self.ok(&["collection", "import", owner, file.to_str().unwrap()]);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hello() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello.sh"))
}

/// A finished collection job of alice's with two attempts (the first
/// INTERRUPTED), two output files and per-item results.
fn two_attempt_job(home: &Home, id: &str) {
    let id = id.to_owned();
    home.stores(|b| async move {
        let mut job = new_job(
            &JobId::parse(id.clone()).unwrap(),
            "alice",
            RunMode::RunCollection,
            Timestamp::now(),
        );
        job.name = "nightly report".into();
        job.status = JobStatus::Succeeded as i32;
        job.attempt = Some(2);
        job.started_at = "2026-12-01T10:01:02.000Z".into();
        job.completed_at = "2026-12-01T10:02:30.000Z".into();
        job.exit_code = Some(0);
        job.log_key = format!("jobs/{id}/attempts/2/log.txt");
        job.output_prefix = blob::output_prefix(&id);
        job.attempts = vec![
            plus_proto::Attempt {
                attempt: 1,
                task: "local:111".into(),
                started_at: "2026-12-01T10:01:02.000Z".into(),
                ended_at: "2026-12-01T10:01:09.000Z".into(),
                status: JobStatus::Interrupted as i32,
                exit_code: Some(143),
                error: "the task was stopped (Spot interruption)".into(),
                log_key: blob::log_key(&id),
            },
            plus_proto::Attempt {
                attempt: 2,
                task: "local:222".into(),
                started_at: "2026-12-01T10:02:00.000Z".into(),
                ended_at: "2026-12-01T10:02:30.000Z".into(),
                status: JobStatus::Succeeded as i32,
                exit_code: Some(0),
                error: String::new(),
                log_key: format!("jobs/{id}/attempts/2/log.txt"),
            },
        ];
        b.jobs.create_job(&job).await.unwrap();
        for (key, body) in [
            (blob::log_key(&id), "first try\n"),
            (format!("jobs/{id}/attempts/2/log.txt"), "second try\n"),
            (
                format!("{}report.csv", blob::output_prefix(&id)),
                "a,b\n1,2\n",
            ),
            (format!("{}sub/notes.txt", blob::output_prefix(&id)), "hi"),
            (
                blob::results_key(&id),
                "{\"id\":\"a\",\"ok\":true}\n{\"id\":\"b\",\"ok\":false}\n",
            ),
        ] {
            b.blobs
                .put_bytes(&key, body.as_bytes().to_vec(), "text/plain")
                .await
                .unwrap();
        }
    });
}

#[test]
fn logs_show_every_attempt_under_a_header_or_the_one_asked_for() {
    let home = Home::new();
    two_attempt_job(&home, "job-two");
    assert_eq!(
        home.ok(&["logs", "job-two"]),
        "== attempt 1 (INTERRUPTED, 10:01:02 to 10:01:09, exit code 143) ==\nfirst try\n\
         == attempt 2 (SUCCEEDED, 10:02:00 to 10:02:30, exit code 0) ==\nsecond try\n"
    );
    assert_eq!(
        home.ok(&["logs", "job-two", "--attempt", "1"]),
        "first try\n"
    );
    assert_eq!(
        home.ok(&["logs", "job-two", "--attempt", "2"]),
        "second try\n"
    );
    let out = home.plus(&["logs", "job-two", "--attempt", "3"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("job job-two has no attempt 3: its attempts are 1, 2"),
        "{stderr}"
    );

    // A job run for real has one attempt, under its header.
    let run = home.plus(&["run", hello().to_str().unwrap(), "--id", "job-real"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let log = home.ok(&["logs", "job-real"]);
    assert!(log.starts_with("== attempt 1 (SUCCEEDED, "), "{log}");
    assert!(log.contains("working... step 3 of 3"), "{log}");
    let only = home.ok(&["logs", "job-real", "--attempt", "1"]);
    assert!(
        !only.contains("== attempt") && only.contains("step 3 of 3"),
        "{only}"
    );
}

#[test]
fn status_shows_the_name_attempts_outputs_and_where_the_results_are() {
    let home = Home::new();
    two_attempt_job(&home, "job-two");
    let out = home.ok(&["status", "job-two"]);
    assert!(out.contains("name        nightly report"), "{out}");
    let attempts = out
        .lines()
        .skip_while(|l| !l.starts_with("attempts"))
        .take(3)
        .collect::<Vec<_>>();
    assert_eq!(attempts.len(), 3, "{out}");
    for (line, want) in attempts[1..].iter().zip([
        [
            "1",
            "local:111",
            "10:01:09",
            "INTERRUPTED",
            "143",
            "the task was stopped",
        ],
        ["2", "local:222", "10:02:30", "SUCCEEDED", "0", ""],
    ]) {
        for w in want {
            assert!(line.contains(w), "{w:?} missing in {line:?}\n{out}");
        }
    }
    assert!(out.contains("report.csv") && out.contains("8 B"), "{out}");
    assert!(
        out.contains("sub/notes.txt") && out.contains("2 B"),
        "{out}"
    );
    assert!(out.contains("plus results job-two"), "{out}");
    assert!(out.contains("plus outputs job-two --download DIR"), "{out}");

    // A script's result and outputs, for real.
    let script = home.script(
        "out.sh",
        "echo 'a,b' > \"$PLUS_OUTPUT_DIR/table.csv\"\necho '{\"rows\": 1}' > \"$PLUS_RESULT_FILE\"\n",
    );
    let run = home.plus(&["run", script.to_str().unwrap(), "--id", "job-out"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = home.ok(&["status", "job-out"]);
    assert!(out.contains("table.csv") && out.contains("4 B"), "{out}");
    assert!(out.contains("result      {\"rows\":1}"), "{out}");

    // A long result is cut, with the command that prints all of it.
    let long = home.script(
        "long.sh",
        &format!(
            "echo '{{\"text\": \"{}\"}}' > \"$PLUS_RESULT_FILE\"\n",
            "x".repeat(1000)
        ),
    );
    let run = home.plus(&["run", long.to_str().unwrap(), "--id", "job-long"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = home.ok(&["status", "job-long"]);
    let line = out.lines().find(|l| l.starts_with("result")).unwrap();
    assert!(
        line.len() < 400 && line.ends_with("… (all of it: plus status job-long --json)"),
        "{line}"
    );
    assert!(out.contains("attempts"), "{out}");
}

#[test]
fn results_stream_and_outputs_list_and_download_into_the_folder_only() {
    let home = Home::new();
    two_attempt_job(&home, "job-two");
    assert_eq!(
        home.ok(&["results", "job-two"]),
        "{\"id\":\"a\",\"ok\":true}\n{\"id\":\"b\",\"ok\":false}\n"
    );
    let listed = home.ok(&["outputs", "job-two"]);
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAME", "SIZE"],
            vec!["report.csv", "8", "B"],
            vec!["sub/notes.txt", "2", "B"]
        ],
        "{listed}"
    );
    assert_eq!(
        home.json(&["outputs", "job-two", "--json"]),
        json!({ "files": [
            { "name": "report.csv", "size": 8 },
            { "name": "sub/notes.txt", "size": 2 },
        ] })
    );

    let dir = home.dir.path().join("down");
    home.ok(&["outputs", "job-two", "--download", dir.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(dir.join("report.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("sub/notes.txt")).unwrap(),
        "hi"
    );

    // A link in the folder never lets a download write outside it.
    let outside = home.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let trap = home.dir.path().join("trap");
    std::fs::create_dir(&trap).unwrap();
    std::os::unix::fs::symlink(&outside, trap.join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.join("stolen.csv"), trap.join("report.csv")).unwrap();
    let out = home.plus(&["outputs", "job-two", "--download", trap.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing was written outside the folder: {stderr}"
    );

    // A job with none says so.
    let plain = home.script("plain.sh", "echo hi\n");
    let run = home.plus(&["run", plain.to_str().unwrap(), "--id", "job-plain"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = home.plus(&["outputs", "job-plain"]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("job job-plain has no output files"),
        "{}",
        text(&out.stderr)
    );
    let out = home.plus(&["results", "job-plain"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no per-item results") && stderr.contains("plus status job-plain"),
        "{stderr}"
    );
}

#[test]
fn a_sharded_job_shows_its_shards_logs_events_and_results() {
    let home = Home::new();
    home.collection("alice/collections/nums", 6);
    let script = home.script("item.sh", "#!/bin/sh\necho \"item $PLUS_ITEM_ID\"\n");
    let out = home.plus(&[
        "launch",
        "--collection",
        "alice/collections/nums",
        script.to_str().unwrap(),
        "--shards",
        "2",
        "--id",
        "fan",
        "--wait",
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("✔ job fan SUCCEEDED in "), "{stderr}");

    let status = home.ok(&["status", "fan"]);
    for shard in ["fan-s0", "fan-s1"] {
        let line = status
            .lines()
            .find(|l| l.contains(shard))
            .unwrap_or_else(|| panic!("{status}"));
        assert!(line.contains("SUCCEEDED"), "{line}");
    }
    assert!(status.contains("6 ok, 0 failed of 6"), "{status}");
    assert!(status.contains("plus results fan"), "{status}");

    let results = home.ok(&["results", "fan"]);
    assert_eq!(results.lines().count(), 6, "{results}");
    let lines: Vec<Value> = results
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|l| l.is_object()), "{results}");

    // Each item's output is in its result line.
    assert_eq!(results.matches("item item").count(), 6, "{results}");

    let logs = home.ok(&["logs", "fan"]);
    let s0 = logs
        .find("== shard 0 fan-s0 (SUCCEEDED) ==\n== attempt 1 (SUCCEEDED, ")
        .unwrap_or_else(|| panic!("{logs}"));
    let s1 = logs
        .find("== shard 1 fan-s1 (SUCCEEDED) ==\n== attempt 1 (SUCCEEDED, ")
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(s0 < s1);

    let events = home.ok(&["events", "fan"]);
    let ended: Vec<&str> = events
        .lines()
        .filter(|l| l.ends_with(" SUCCEEDED"))
        .collect();
    assert_eq!(ended.len(), 2, "{events}");
    assert!(
        ended.iter().any(|l| l.starts_with("fan-s0 "))
            && ended.iter().any(|l| l.starts_with("fan-s1 ")),
        "{events}"
    );
    assert!(events.lines().all(|l| l.starts_with("fan-s")), "{events}");
    let json = home.json(&["events", "fan", "--json"]);
    let all = json["events"].as_array().unwrap();
    assert!(all.len() >= 4, "{json}");
    let marked = all.iter().all(|e| {
        e["stream_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("fan-s"))
    });
    assert!(marked, "{json}");
}

/// `n` finished jobs of alice's (ids `job-00`.. sort oldest first), written
/// through the store.
fn many_jobs(home: &Home, n: usize, name: impl Fn(usize) -> String + 'static) {
    home.stores(|b| async move {
        for i in 0..n {
            let mut job = new_job(
                &JobId::parse(format!("job-{i:02}")).unwrap(),
                "alice",
                RunMode::RunScript,
                Timestamp::now(),
            );
            job.status = JobStatus::Succeeded as i32;
            job.name = name(i);
            b.jobs.create_job(&job).await.unwrap();
        }
    });
}

#[test]
fn list_says_what_it_left_out_and_limit_0_shows_all() {
    let home = Home::new();
    let out = home.plus(&["list"]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("no jobs for alice yet"),
        "{}",
        text(&out.stderr)
    );

    many_jobs(&home, 25, |i| {
        if i == 3 {
            "weekly report".into()
        } else {
            String::new()
        }
    });
    let out = home.plus(&["list"]);
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 21, "{stdout}");
    assert!(
        text(&out.stderr).contains("5 more; use --limit"),
        "{}",
        text(&out.stderr)
    );
    let out = home.plus(&["list", "--limit", "0"]);
    assert_eq!(text(&out.stdout).lines().count(), 26);
    assert!(!text(&out.stderr).contains("more"), "{}", text(&out.stderr));
    let out = home.plus(&["list", "--limit", "24"]);
    assert!(
        text(&out.stderr).contains("1 more; use --limit"),
        "{}",
        text(&out.stderr)
    );

    let out = home.plus(&["list", "--status", "running"]);
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no RUNNING jobs"), "{stderr}");
    assert!(!stderr.contains("yet"), "{stderr}");

    let all = home.ok(&["list", "--limit", "0"]);
    let header = all.lines().next().unwrap();
    assert!(header.contains("NAME"), "{header}");
    let row = all.lines().find(|l| l.starts_with("job-03 ")).unwrap();
    assert!(row.contains("weekly report"), "{row}");
}

#[test]
fn list_columns_line_up_with_long_ids_and_names_actions() {
    let home = Home::new();
    home.stores(|b| async move {
        let long = "a-very-long-job-id-that-is-longer-than-any-uuid-0123456789-s12";
        for (id, mode, action) in [
            ("short", RunMode::RunScript, ""),
            (long, RunMode::RunCollection, ""),
            ("act-1", RunMode::RunAction, "resize"),
        ] {
            let mut job = new_job(&JobId::parse(id).unwrap(), "alice", mode, Timestamp::now());
            job.action_id = action.into();
            b.jobs.create_job(&job).await.unwrap();
        }
    });
    let out = home.ok(&["list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let col = |l: &str, word: &str| l.find(word).unwrap_or_else(|| panic!("{word} in {l}"));
    let status_at = col(lines[0], "STATUS");
    for l in &lines[1..] {
        assert_eq!(col(l, "INITIALIZING"), status_at, "{out}");
    }
    let act = lines.iter().find(|l| l.starts_with("act-1")).unwrap();
    assert!(act.contains("action:resize"), "{out}");
}

/// The frames `plus` drew on a terminal: `args` run under `script(1)` (a
/// pseudo-terminal, so the bar shows), its output split where the bar
/// redraws.
fn on_a_terminal(home: &Home, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let command = std::iter::once(PLUS)
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = home.cmd("alice", &[]);
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    for (k, v) in env {
        script.env(k, v);
    }
    script.current_dir(cmd.get_current_dir().unwrap());
    let _ = &mut cmd;
    let out = script.output().expect(
        "script(1) from util-linux runs a command on a pseudo-terminal: install util-linux",
    );
    assert!(out.status.success(), "{}", text(&out.stdout));
    text(&out.stdout)
        .split(['\r', '\n'])
        .flat_map(|l| l.split("\x1b[2K"))
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_progress_bar_shows_a_sane_rate_and_is_full_when_every_item_is_done() {
    let home = Home::new();
    home.collection("alice/collections/slow", 32);
    let script = home.script("slow.sh", "#!/bin/sh\nsleep 0.1\necho ok\n");
    let frames = on_a_terminal(
        &home,
        &[
            "launch",
            "--collection",
            "alice/collections/slow",
            script.to_str().unwrap(),
            "--wait",
        ],
        &[("PLUS_CONCURRENCY", "2")],
    );
    let bars: Vec<&String> = frames
        .iter()
        .filter(|f| f.contains(" items") && !f.starts_with('●'))
        .collect();
    assert!(bars.len() >= 2, "the bar was drawn: {frames:#?}");
    for f in &bars {
        assert!(!f.contains("0/0 items"), "{f}");
        // A rate has at most one decimal.
        for word in f.split_whitespace().filter(|w| w.ends_with("/s")) {
            let number = word.trim_end_matches("/s").trim_end_matches(')');
            let decimals = number.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(
                decimals <= 1 && number.parse::<f64>().is_ok(),
                "{word} in {f}"
            );
        }
        // A bar at N/N is full; one short of its total says when it ends.
        if let Some(counts) = f
            .split_whitespace()
            .find(|w| w.contains('/') && !w.ends_with("/s"))
        {
            let (done, total) = counts.split_once('/').unwrap();
            if done == total {
                assert!(f.starts_with(&format!("[{}]", "█".repeat(30))), "{f}");
            } else if f.contains("/s") {
                assert!(f.contains("ETA "), "{f}");
            }
        }
    }
    assert!(
        bars.iter().any(|f| f.contains("32/32 items")),
        "the total shows: {bars:#?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.contains("32 of 32 items done: 32 succeeded")),
        "{frames:#?}"
    );
}

#[test]
fn following_a_sharded_job_follows_its_shards_to_the_end() {
    let home = Home::new();
    home.collection("alice/collections/nums", 6);
    let script = home.script(
        "item.sh",
        "#!/bin/sh\nsleep 0.2\necho \"item $PLUS_ITEM_ID\"\n",
    );
    home.ok(&[
        "launch",
        "--collection",
        "alice/collections/nums",
        script.to_str().unwrap(),
        "--shards",
        "2",
        "--id",
        "fan",
        "--json",
    ]);
    let out = home.plus(&["events", "fan", "--follow"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for shard in ["fan-s0", "fan-s1"] {
        assert!(stderr.contains(&format!("● {shard} SUCCEEDED")), "{stderr}");
    }
    assert!(stderr.contains("✔ job fan SUCCEEDED in "), "{stderr}");
}
