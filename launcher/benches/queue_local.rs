//! The local queue under a burst: `BENCH_JOBS` (default 200) `plus launch`
//! processes started at once with `PLUS_MAX_RUNNING=2`, against the same
//! jobs run one after another with `plus run` (a plain sequential loop).
//!
//! Reported: the time to drain the burst (first launch to the last job
//! ended), the most scripts that ran at once (from the start and end times
//! each script appends to a shared log) and the most `plus worker`
//! processes seen at once (sampling `/proc` every 5 ms), the statuses the
//! jobs ended in, and the sequential loop's time.
//!
//! `cargo bench -p plus-launcher --bench queue_local`

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

const PLUS: &str = env!("CARGO_BIN_EXE_plus");
const MAX_RUNNING: usize = 2;

struct Home {
    dir: PathBuf,
    log: PathBuf,
}

impl Home {
    fn new(root: &Path, name: &str) -> Home {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("runs.log");
        std::fs::write(&log, "").unwrap();
        // Scripts run as another, unprivileged user.
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
        Home { dir, log }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(PLUS);
        cmd.env_remove("DYNAMO_TABLE")
            .env_remove("PLUS_BACKEND")
            .env_remove("PLUS_WORKER_BIN")
            .env("PLUS_HOME", self.dir.join("home"))
            .env("PLUS_USER", "bench")
            .env("PLUS_MAX_RUNNING", MAX_RUNNING.to_string())
            .env("PLUS_WORK_DIR", self.dir.join("work"))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    /// Job `n`'s script: logs its start, works for a moment, logs its end.
    fn script(&self, n: usize) -> PathBuf {
        let path = self.dir.join(format!("job-{n}.sh"));
        let log = self.log.display();
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"start {n} $(date +%s.%N)\" >> '{log}'\nsleep 0.2\necho \"end {n} $(date +%s.%N)\" >> '{log}'\n"
            ),
        )
        .unwrap();
        path
    }

    fn statuses(&self) -> Vec<String> {
        let out = self
            .cmd()
            .args(["list", "--limit", "0", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let jobs = v.as_array().or_else(|| v["jobs"].as_array()).unwrap();
        jobs.iter()
            .map(|j| j["status"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// The most scripts that ran at once, from the log's starts and ends.
    fn most_at_once(&self) -> i32 {
        let text = std::fs::read_to_string(&self.log).unwrap();
        let mut events: Vec<(f64, i32)> = text
            .lines()
            .map(|l| {
                let parts: Vec<&str> = l.split_whitespace().collect();
                (
                    parts[2].parse().unwrap(),
                    if parts[0] == "start" { 1 } else { -1 },
                )
            })
            .collect();
        events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let (mut now, mut most) = (0, 0);
        for (_, d) in events {
            now += d;
            most = most.max(now);
        }
        most
    }
}

/// How many `plus worker` processes run now.
fn workers_now() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let mut args = c.split(|b| *b == 0);
                let exe = args.next().unwrap_or_default();
                exe.ends_with(b"/plus") && args.next() == Some(b"worker")
            })
        })
        .count()
}

fn main() {
    let jobs: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let root = tempfile::tempdir().unwrap();
    // Scripts run as another user: the directories must be theirs to enter.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // The burst.
    let burst = Home::new(root.path(), "burst");
    let scripts: Vec<PathBuf> = (0..jobs).map(|n| burst.script(n)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let most_workers = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, most) = (stop.clone(), most_workers.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                most.fetch_max(workers_now(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let t = Instant::now();
    let launches: Vec<_> = scripts
        .iter()
        .map(|s| {
            burst
                .cmd()
                .args(["launch", s.to_str().unwrap(), "--json"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut refused = 0;
    for l in launches {
        let out = l.wait_with_output().unwrap();
        if !out.status.success() {
            refused += 1;
            eprintln!("launch failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let launched_in = t.elapsed();
    let statuses = loop {
        let s = burst.statuses();
        if s.len() == jobs
            && s.iter()
                .all(|s| matches!(s.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED"))
        {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(1800),
            "the queue never drained"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let drained = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let succeeded = statuses.iter().filter(|s| *s == "SUCCEEDED").count();

    // The same jobs one after another.
    let seq = Home::new(root.path(), "sequential");
    let scripts: Vec<PathBuf> = (0..jobs).map(|n| seq.script(n)).collect();
    let t = Instant::now();
    for s in &scripts {
        let out = seq
            .cmd()
            .args(["run", s.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(out.success());
    }
    let sequential = t.elapsed();

    println!("local queue: {jobs} jobs (each script: sleep 0.2), PLUS_MAX_RUNNING={MAX_RUNNING}");
    println!(
        "  burst: {jobs} launches returned in {:.2} s ({refused} refused); drained in {:.2} s",
        launched_in.as_secs_f64(),
        drained.as_secs_f64()
    );
    println!(
        "  ended: {succeeded} SUCCEEDED of {jobs}; most scripts at once {}; most `plus worker` processes at once {}",
        burst.most_at_once(),
        most_workers.load(Ordering::Relaxed)
    );
    println!(
        "  sequential loop of `plus run`: {:.2} s; burst/sequential {:.2}",
        sequential.as_secs_f64(),
        drained.as_secs_f64() / sequential.as_secs_f64()
    );
}
