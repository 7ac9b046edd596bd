//! Work waits instead of failing, on the local backend, through the real
//! `plus` binary: with `PLUS_MAX_RUNNING=2` only two workers run at once,
//! the others are QUEUED with their reason and place, and each starts as
//! soon as a running job ends, with no command run in between; a higher
//! `--priority` goes first; a QUEUED job cancels at once.

use std::{
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use serde_json::Value;

const PLUS: &str = env!("CARGO_BIN_EXE_plus");

struct Home {
    dir: tempfile::TempDir,
    max_running: u32,
}

impl Home {
    fn new(max_running: u32) -> Home {
        let home = Home {
            dir: tempfile::tempdir().unwrap(),
            max_running,
        };
        // Scripts run as another, unprivileged user: the runs log must be
        // theirs to append to.
        std::fs::write(home.log(), "").unwrap();
        std::fs::set_permissions(
            home.log(),
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .unwrap();
        home
    }

    fn plus(&self, args: &[&str]) -> Output {
        std::process::Command::new(PLUS)
            .args(args)
            .env_remove("DYNAMO_TABLE")
            .env_remove("PLUS_BACKEND")
            .env_remove("PLUS_WORKER_BIN")
            .env("PLUS_HOME", self.dir.path().join("home"))
            .env("PLUS_USER", "alice")
            .env("PLUS_MAX_RUNNING", self.max_running.to_string())
            .env("PLUS_HEARTBEAT_SECONDS", "0.2")
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

    /// The shared log every job's script writes `start N` / `end N` to,
    /// each with a timestamp.
    fn log(&self) -> PathBuf {
        self.dir.path().join("runs.log")
    }

    fn gate(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("gate-{n}"))
    }

    fn open(&self, n: usize) {
        std::fs::write(self.gate(n), "").unwrap();
    }

    /// A script that logs its start, waits for its gate file (at most 60 s),
    /// then logs its end.
    fn gated_script(&self, n: usize) -> PathBuf {
        let path = self.dir.path().join(format!("job-{n}.sh"));
        let log = self.log().display().to_string();
        let gate = self.gate(n).display().to_string();
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"start {n} $(date +%s.%N)\" >> '{log}'\ni=0\nwhile [ ! -e '{gate}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\necho \"end {n} $(date +%s.%N)\" >> '{log}'\n"
            ),
        )
        .unwrap();
        path
    }

    /// Launches job `n` (its gated script) with extra flags; returns its
    /// id and the status the launch reported.
    fn launch(&self, n: usize, extra: &[&str]) -> (String, String) {
        let script = self.gated_script(n);
        let args = [&["launch", script.to_str().unwrap()], extra, &["--json"]].concat();
        let out = self.json(&args);
        (
            out["job_id"].as_str().unwrap().to_owned(),
            out["status"].as_str().unwrap().to_owned(),
        )
    }

    fn status(&self, id: &str) -> Value {
        self.json(&["status", id, "--json"])
    }

    /// The lines of the runs log (`start N ...`, `end N ...`).
    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits, reading only the runs log (no `plus` command), until `ok`.
    fn wait_runs(&self, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let runs = self.runs();
            if ok(&runs) {
                return runs;
            }
            assert!(Instant::now() < deadline, "never {what}: {runs:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job = self.status(id);
            if job["status"] == want {
                return job;
            }
            assert!(Instant::now() < deadline, "job never {want}: {job}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Home {
    /// Opens every gate, so no script outlives a failed test for long.
    fn drop(&mut self) {
        for n in 0..20 {
            let _ = std::fs::write(self.gate(n), "");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn count(runs: &[String], word: &str) -> usize {
    runs.iter()
        .filter(|l| l.starts_with(&format!("{word} ")))
        .count()
}

/// The most jobs that ran at once, walking the log's starts and ends in
/// time order.
fn most_at_once(runs: &[String]) -> i32 {
    let mut events: Vec<(f64, i32)> = runs
        .iter()
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            let at: f64 = parts[2].parse().unwrap();
            (at, if parts[0] == "start" { 1 } else { -1 })
        })
        .collect();
    // An end and a start at the same instant: the end first.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0, 0);
    for (_, delta) in events {
        now += delta;
        most = most.max(now);
    }
    most
}

/// The order jobs started in.
fn start_order(runs: &[String]) -> Vec<usize> {
    runs.iter()
        .filter_map(|l| l.strip_prefix("start "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

fn started(runs: &[String], n: usize) -> bool {
    start_order(runs).contains(&n)
}

#[test]
fn two_run_at_once_and_the_queue_drains_on_its_own() {
    let home = Home::new(2);
    let mut jobs = Vec::new();
    for n in 0..6 {
        jobs.push(home.launch(n, &[]));
    }
    let launched: Vec<&str> = jobs.iter().map(|(_, s)| s.as_str()).collect();
    assert!(
        launched[..2].iter().all(|s| *s != "QUEUED")
            && launched[2..].iter().all(|s| *s == "QUEUED"),
        "{launched:?}"
    );
    let runs = home.wait_runs("started two jobs", |r| count(r, "start") >= 2);
    assert_eq!(start_order(&runs), vec![0, 1]);

    // The waiting ones say why, and their place in the line.
    let places = [
        "next in line",
        "1 job ahead",
        "2 jobs ahead",
        "3 jobs ahead",
    ];
    for ((id, _), place) in jobs[2..].iter().zip(places) {
        let job = home.status(id);
        assert_eq!(job["status"], "QUEUED", "{job}");
        let reason = job["queue_reason"].as_str().unwrap_or_default();
        assert_eq!(
            reason,
            format!("2 of 2 workers running on this machine (PLUS_MAX_RUNNING); {place}"),
        );
    }
    let list = home.plus(&["list"]);
    assert!(
        text(&list.stdout).contains("QUEUED: 2 of 2 workers running on this machine"),
        "{}",
        text(&list.stdout)
    );
    let status = home.plus(&["status", &jobs[5].0]);
    assert!(
        text(&status.stdout).contains(
            "waiting     2 of 2 workers running on this machine (PLUS_MAX_RUNNING); 3 jobs ahead"
        ),
        "{}",
        text(&status.stdout)
    );
    // Still two, however long one looks.
    assert_eq!(count(&home.runs(), "start"), 2);

    // Open the gates one by one: each job that ends frees one worker, and
    // the next in line starts on its own (no command is run meanwhile;
    // only the runs log is read). Two admitted in one pass would start
    // their scripts in either order, so one slot frees at a time.
    for n in 0..6 {
        home.open(n);
        let next = n + 2;
        let runs = home.wait_runs("the next in line started", |r| {
            count(r, "end") == n + 1 && (next >= 6 || started(r, next))
        });
        let expected: Vec<usize> = (0..(next + 1).min(6)).collect();
        assert_eq!(start_order(&runs), expected, "first come, first served");
    }
    let runs = home.runs();
    assert_eq!(count(&runs, "start"), 6, "{runs:?}");
    assert!(most_at_once(&runs) <= 2, "more than 2 at once: {runs:?}");
    for (id, _) in &jobs {
        let job = home.wait_status(id, "SUCCEEDED");
        assert!(job.get("queue_reason").is_none(), "{job}");
    }
}

#[test]
fn a_higher_priority_starts_before_earlier_jobs() {
    let home = Home::new(1);
    let (first, status) = home.launch(0, &[]);
    assert_ne!(status, "QUEUED");
    home.wait_runs("started the first job", |r| started(r, 0));
    for n in 1..=2 {
        home.open(n);
        assert_eq!(home.launch(n, &[]).1, "QUEUED");
    }
    home.open(3);
    let (urgent, status) = home.launch(3, &["--priority", "5"]);
    assert_eq!(status, "QUEUED");
    assert_eq!(home.status(&urgent)["priority"], 5);
    assert!(
        home.status(&urgent)["queue_reason"]
            .as_str()
            .unwrap()
            .ends_with("next in line"),
        "the later job with priority 5 is first in line"
    );

    home.open(0);
    let runs = home.wait_runs("ran all four", |r| count(r, "end") == 4);
    assert_eq!(start_order(&runs), vec![0, 3, 1, 2]);
    assert!(most_at_once(&runs) <= 1, "{runs:?}");
    home.wait_status(&first, "SUCCEEDED");
}

#[test]
fn a_queued_job_cancels_at_once_and_never_runs() {
    let home = Home::new(1);
    let (running, _) = home.launch(0, &[]);
    home.wait_runs("started the first job", |r| started(r, 0));
    home.open(1);
    let (queued, status) = home.launch(1, &[]);
    assert_eq!(status, "QUEUED");
    let (after, _) = home.launch(2, &[]);
    home.open(2);

    let out = home.plus(&["cancel", &queued]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("job {queued} is CANCELLED")),
        "{}",
        text(&out.stderr)
    );
    let job = home.status(&queued);
    assert_eq!(job["status"], "CANCELLED");
    assert_eq!(job["error"], "cancelled on request before it ran");
    assert!(job.get("queue_reason").is_none(), "{job}");
    // The one behind it moved up.
    home.open(0);
    let runs = home.wait_runs("ran the others", |r| count(r, "end") == 2);
    assert_eq!(
        start_order(&runs),
        vec![0, 2],
        "the cancelled job never ran"
    );
    home.wait_status(&running, "SUCCEEDED");
    home.wait_status(&after, "SUCCEEDED");
    assert_eq!(home.status(&queued)["status"], "CANCELLED");
}

#[test]
fn a_bad_limit_is_named_with_its_fix() {
    let home = Home::new(2);
    let out = std::process::Command::new(PLUS)
        .args(["list"])
        .env_remove("DYNAMO_TABLE")
        .env("PLUS_HOME", home.dir.path().join("home"))
        .env("PLUS_USER", "alice")
        .env("PLUS_MAX_RUNNING", "two")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PLUS_MAX_RUNNING is \"two\": expected a whole number of jobs"),
        "{stderr}"
    );
}
