//! A job's life through the real `plus` binary on the local backend: what a
//! launch refuses before writing, the name a person gives a job, Ctrl-C on
//! `plus run`, a quick local cancel, the monitor's attempts, and how errors
//! read (also with `--json`).

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use serde_json::Value;

mod http_support;

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

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(PLUS);
        cmd.args(args)
            .env_remove("DYNAMO_TABLE")
            .env_remove("PLUS_BACKEND")
            .env("PLUS_HOME", self.dir.path().join("home"))
            .env("PLUS_USER", "alice")
            .env("PLUS_HEARTBEAT_SECONDS", "0.2")
            .env("PLUS_GRACE_SECONDS", "2")
            .env("PLUS_FLUSH_MILLIS", "50")
            .env("PLUS_WORK_DIR", self.dir.path().join("work"))
            .current_dir(self.dir.path());
        cmd
    }

    fn plus(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
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

    fn jobs(&self) -> Vec<Value> {
        self.json(&["list", "--json"])["jobs"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn wait_for(&self, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = self.json(&["status", id, "--json"]);
            if ok(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "job never {what}: {job}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_status(&self, id: &str, want: &str) -> Value {
        self.wait_for(id, want, |job| job["status"] == want)
    }

    fn launch(&self, args: &[&str]) -> String {
        let out = self.json(&[&["launch"], args, &["--json"]].concat());
        out["job_id"].as_str().unwrap().to_owned()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn refused(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

fn hello() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello.sh"))
}

#[test]
fn launch_checks_refuse_before_anything_is_written() {
    let home = Home::new();
    let script = home.script("act.sh", "#!/bin/sh\necho action ran\n");
    let put = home.plus(&["action", "put", "greet", script.to_str().unwrap()]);
    assert!(put.status.success(), "{}", text(&put.stderr));

    let missing = refused(&home.plus(&["launch", "--action", "nope"]));
    assert!(
        missing.contains("action nope was not found") && missing.contains("plus action put nope"),
        "{missing}"
    );
    let with_script =
        refused(&home.plus(&["launch", "--action", "greet", hello().to_str().unwrap()]));
    assert!(
        with_script.contains("an action brings its own script") && with_script.contains("hello.sh"),
        "{with_script}"
    );
    let with_args = refused(&home.plus(&["launch", "--action", "greet", "--", "a", "b"]));
    assert!(
        with_args.contains("an action brings its own script, interpreter and arguments"),
        "{with_args}"
    );
    let big = "x".repeat(100_000);
    let params: Vec<String> = (0..4).map(|i| format!("p{i}={big}")).collect();
    let mut args = vec!["run", hello().to_str().unwrap()];
    for p in &params {
        args.extend(["--param", p.as_str()]);
    }
    let too_big = refused(&home.plus(&args));
    assert!(
        too_big.contains("the params are 391 KiB as JSON")
            && too_big.contains("put big data in a file")
            && !too_big.contains("Argument list too long"),
        "{too_big}"
    );
    assert_eq!(home.jobs(), Vec::<Value>::new(), "nothing was written");
    // Params that fit still run.
    let fits = format!("p={}", "y".repeat(90_000));
    let out = home.plus(&["run", hello().to_str().unwrap(), "--param", &fits]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_name_is_stored_shown_and_copied_by_retry() {
    let home = Home::new();
    let out = home.plus(&[
        "run",
        hello().to_str().unwrap(),
        "--name",
        "nightly report",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["name"], "nightly report");
    let id = job["object_id"].as_str().unwrap();
    let again = home.json(&["retry", id, "--json"]);
    let copy = again["job_id"].as_str().unwrap();
    assert_ne!(copy, id);
    assert_eq!(
        home.json(&["status", copy, "--json"])["name"],
        "nightly report"
    );
    let launched = home.launch(&[hello().to_str().unwrap(), "--name", "other"]);
    assert_eq!(home.json(&["status", &launched, "--json"])["name"], "other");
    home.wait_status(&launched, "SUCCEEDED");
    home.wait_status(copy, "SUCCEEDED");

    let before = home.jobs().len();
    let long = "n".repeat(201);
    let too_long = refused(&home.plus(&["launch", hello().to_str().unwrap(), "--name", &long]));
    assert!(
        too_long.contains("the name is 201 characters long") && too_long.contains("at most 200"),
        "{too_long}"
    );
    let control = refused(&home.plus(&["launch", hello().to_str().unwrap(), "--name", "a\tb"]));
    assert!(control.contains("control character"), "{control}");
    assert_eq!(home.jobs().len(), before, "nothing was written");
}

/// `plus run SCRIPT` in its own process group, pressed Ctrl-C on (SIGINT to
/// the group, as a terminal does) once the script printed `first-attempt`:
/// the job's id and how `plus run` ended.
fn run_and_press_ctrl_c(home: &Home, script: &Path) -> (String, Output) {
    use std::os::unix::process::CommandExt;
    let before: Vec<Value> = home.jobs();
    let child = home
        .cmd(&["run", script.to_str().unwrap(), "--max-attempts", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        if let Some(job) = home.jobs().iter().find(|j| !before.contains(j)) {
            let id = job["object_id"].as_str().unwrap().to_owned();
            let events = home.json(&["events", &id, "--json"]);
            if events.to_string().contains("first-attempt") {
                break id;
            }
        }
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    (id, child.wait_with_output().unwrap())
}

fn duration_line(home: &Home, id: &str) -> String {
    let out = text(&home.plus(&["status", id]).stdout);
    out.lines()
        .find(|l| l.starts_with("duration"))
        .unwrap_or_else(|| panic!("no duration: {out}"))
        .to_owned()
}

#[test]
fn ctrl_c_stops_the_job_for_good_until_plus_retry_resumes_it() {
    let home = Home::new();
    let script = home.script(
        "resumable.sh",
        "if [ \"$PLUS_ATTEMPT\" = 1 ]; then echo first-attempt; sleep 30; fi\necho attempt $PLUS_ATTEMPT done\n",
    );
    let (id, out) = run_and_press_ctrl_c(&home, &script);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!("job {id} stopped by you"))
            && stderr.contains(&format!("plus retry {id}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Spot") && !stderr.contains("StopTask") && !stderr.contains("deploy"),
        "{stderr}"
    );
    let job = home.json(&["status", &id, "--json"]);
    assert_eq!(job["status"], "INTERRUPTED");
    assert_eq!(job["stopped_by_user"], true, "{job}");
    assert!(!job["error"].as_str().unwrap().contains("Spot"), "{job}");

    // The monitor leaves a person's stop alone.
    let report = home.json(&["monitor", "--once", "--json"]);
    assert_eq!(report["settled"], serde_json::json!([]), "{report}");
    let job = home.json(&["status", &id, "--json"]);
    assert_eq!(job["status"], "INTERRUPTED");
    assert_eq!(job["attempt"], 1);

    // Its clock stopped when it was interrupted.
    let first = duration_line(&home, &id);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(duration_line(&home, &id), first);

    let retry = home.plus(&["retry", &id, "--wait"]);
    assert!(retry.status.success(), "{}", text(&retry.stderr));
    assert!(text(&retry.stdout).contains("attempt 2 done"));
    let job = home.json(&["status", &id, "--json"]);
    assert_eq!(job["status"], "SUCCEEDED");
    assert_eq!(job["attempt"], 2);
    assert_ne!(job["stopped_by_user"], true, "{job}");
}

#[test]
fn cancelling_an_interrupted_job_does_not_say_it_never_ran() {
    let home = Home::new();
    let script = home.script("stop.sh", "echo first-attempt\nsleep 30\n");
    let (id, out) = run_and_press_ctrl_c(&home, &script);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let cancel = home.plus(&["cancel", &id]);
    assert!(cancel.status.success(), "{}", text(&cancel.stderr));
    let job = home.json(&["status", &id, "--json"]);
    assert_eq!(job["status"], "CANCELLED");
    let error = job["error"].as_str().unwrap();
    assert!(!error.contains("before it ran"), "{error}");
    assert!(error.contains("INTERRUPTED"), "{error}");
}

#[test]
fn a_local_cancel_ends_the_job_within_seconds_not_a_heartbeat() {
    let home = Home::new();
    let script = home.script("long.sh", "echo \"pid $$\"\nsleep 60\n");
    // A slow heartbeat: the cancel must not wait for it.
    let out = home
        .cmd(&["launch", script.to_str().unwrap(), "--json"])
        .env("PLUS_HEARTBEAT_SECONDS", "30")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid: i32 = loop {
        let events = home.json(&["events", &id, "--json"]);
        let pid = events["events"].as_array().unwrap().iter().find_map(|e| {
            e["data"]
                .as_str()?
                .lines()
                .find_map(|l| l.strip_prefix("pid ")?.parse().ok())
        });
        if let Some(pid) = pid {
            break pid;
        }
        assert!(Instant::now() < deadline, "the script never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(home.json(&["status", &id, "--json"])["status"], "RUNNING");

    let out = home.plus(&["cancel", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let returned = Instant::now();
    let deadline = returned + Duration::from_secs(3);
    loop {
        let job = home.json(&["status", &id, "--json"]);
        if job["status"] == "CANCELLED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} 3 s after plus cancel returned",
            job["status"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let script_pid = nix::unistd::Pid::from_raw(pid);
    while nix::sys::signal::kill(script_pid, None).is_ok() {
        assert!(Instant::now() < deadline, "the script is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The one JSON object a `--json` command printed on stderr.
fn json_error(out: &Output) -> Value {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    serde_json::from_str(stderr.trim()).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

#[test]
fn json_errors_are_one_object_with_the_error_and_a_hint() {
    let home = Home::new();
    let missing = json_error(&home.plus(&["status", "no-such-job", "--json"]));
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("job no-such-job was not found"),
        "{missing}"
    );
    assert!(
        missing["hint"].as_str().unwrap().contains("plus list"),
        "{missing}"
    );
    let refused = json_error(&home.plus(&["launch", "--action", "nope", "--json"]));
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("action nope was not found"),
        "{refused}"
    );
    assert!(refused.get("hint").is_some(), "{refused}");
    let unparsed = json_error(&home.plus(&["list", "--no-such-flag", "--json"]));
    assert!(
        unparsed["error"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag")
            && unparsed["hint"].as_str().unwrap().contains("plus --help"),
        "{unparsed}"
    );
    // Without --json the same error is a sentence.
    let out = home.plus(&["status", "no-such-job"]);
    assert!(text(&out.stderr).starts_with("plus: job no-such-job was not found"));
}

#[test]
fn an_unusable_home_or_a_damaged_store_is_named_with_the_fix() {
    let home = Home::new();
    // Even root cannot make a folder under a file.
    let file = home.script("a-file", "not a folder\n");
    let unusable = file.join("home");
    let out = home
        .cmd(&["list"])
        .env("PLUS_HOME", &unusable)
        .output()
        .unwrap();
    let stderr = refused(&out);
    assert!(
        stderr.contains(&format!(
            "the local store folder {} cannot be created",
            unusable.display()
        )) && stderr.contains("set PLUS_HOME"),
        "{stderr}"
    );

    let damaged = home.dir.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    let store = damaged.join("plus.sqlite3");
    std::fs::write(&store, "these are my notes, not a database\n".repeat(200)).unwrap();
    let out = home
        .cmd(&["list", "--json"])
        .env("PLUS_HOME", &damaged)
        .output()
        .unwrap();
    let err = json_error(&out);
    let error = err["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "the local store {} is not a SQLite database",
            store.display()
        )) && error.contains("move it away"),
        "{err}"
    );
    assert!(
        std::fs::read_to_string(&store)
            .unwrap()
            .starts_with("these are my notes"),
        "the file is left as it was"
    );
}

#[test]
fn the_empty_list_hint_holds_outside_the_repository() {
    let home = Home::new();
    let out = home.plus(&["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no jobs for alice yet") && stderr.contains("plus run"),
        "{stderr}"
    );
    for word in stderr.split_whitespace() {
        let word = word.trim_matches(|c: char| "`,:;()".contains(c));
        if word.contains('/') {
            assert!(
                home.dir.path().join(word).exists(),
                "the hint names {word}, which is not there: {stderr}"
            );
        }
    }
}

#[test]
fn serve_takes_a_host_name() {
    use std::io::BufRead;
    let home = Home::new();
    let mut child = home
        .cmd(&["serve", "--addr", "localhost:0", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let started: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{e}: {line:?} {}", text(&out.stderr)));
    let addr: std::net::SocketAddr = started["addr"].as_str().unwrap().parse().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{started}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_on_aws_needs_only_the_tables_settings() {
    let moto = plus_testkit::Moto::shared();
    let aws = moto.provision().await;
    let dir = tempfile::tempdir().unwrap();
    let plus = |args: &[&str]| {
        std::process::Command::new(PLUS)
            .args(["--backend", "aws"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("PLUS_USER", "alice")
            .env("AWS_REGION", &aws.region)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("DYNAMO_TABLE", &aws.table)
            .env("DYNAMO_STREAMS_TABLE", &aws.streams_table)
            .env("PRIMARY_BUCKET", &aws.bucket)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = plus(&["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["jobs"], serde_json::json!([]));
    let out = plus(&["status", "nope"]);
    assert!(
        text(&out.stderr).contains("job nope was not found"),
        "{}",
        text(&out.stderr)
    );
    // Launching still needs (and names) the ECS settings.
    std::fs::write(dir.path().join("s.sh"), "echo hi\n").unwrap();
    let out = plus(&["launch", "s.sh"]);
    let stderr = refused(&out);
    assert!(
        stderr.contains("ECS_CLUSTER is not set") && stderr.contains("SUBNETS is not set"),
        "{stderr}"
    );
}

#[test]
fn the_monitor_records_the_attempt_of_a_worker_that_died_without_a_word() {
    let home = Home::new();
    let script = home.script("long.sh", "echo started\nsleep 30\n");
    let id = home.launch(&[script.to_str().unwrap(), "--max-attempts", "1"]);
    let running = home.wait_status(&id, "RUNNING");
    let task = running["fargate_task_arn"].as_str().unwrap().to_owned();
    // The lease is `local:{host}:{pid}`: kill that worker outright.
    let lease = running["lease"].as_str().unwrap();
    let pid: i32 = lease.rsplit(':').next().unwrap().parse().unwrap();
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while nix::sys::signal::kill(pid, None).is_ok() {
        assert!(Instant::now() < deadline, "the worker did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = home.json(&["monitor", "--once", "--json"]);
    assert_eq!(report["settled"][0]["job_id"], id.as_str(), "{report}");
    let job = home.json(&["status", &id, "--json"]);
    assert_eq!(job["status"], "FAILED");
    let attempts = job["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{job}");
    let a = &attempts[0];
    assert_eq!(a["attempt"], 1, "{a}");
    assert_eq!(a["task"], task.as_str(), "{a}");
    assert_eq!(a["status"], "FAILED", "{a}");
    assert_eq!(a["started_at"], running["started_at"], "{a}");
    assert!(
        a["ended_at"].as_str().unwrap() >= running["started_at"].as_str().unwrap(),
        "{a}"
    );
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("died while the job was RUNNING"),
        "{a}"
    );
}

#[test]
fn a_worker_that_dies_before_claiming_leaves_an_attempt_that_never_started() {
    let home = Home::new();
    let broken = home.script("broken-worker.sh", "#!/bin/sh\nexit 7\n");
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = home
        .cmd(&["run", hello().to_str().unwrap()])
        .env("PLUS_WORKER_BIN", &broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let job = &home.jobs()[0];
    assert_eq!(job["status"], "FAILED");
    let a = &job["attempts"][0];
    assert_eq!(a["attempt"], 1, "{job}");
    assert_eq!(a["status"], "FAILED", "{job}");
    assert!(a.get("started_at").is_none_or(|s| s == ""), "{job}");
    assert!(
        a["error"].as_str().unwrap().contains("exited with code 7"),
        "{job}"
    );
}

#[test]
fn the_http_launch_body_takes_a_name_and_gets_the_same_checks() {
    let home = Home::new();
    let server = http_support::Server::start(&home.dir.path().join("home"), "alice", &[]);
    let body = serde_json::json!({"script": {"source": "echo hi"}, "name": "from the page"});
    let launched = server.call("POST", "/jobs", Some(&body));
    assert_eq!(launched.status, 201, "{:?}", launched.body);
    let id = launched.body["object_id"].as_str().unwrap().to_owned();
    let job = server.wait_for_job(&id, Duration::from_secs(30), |j| j["status"] == "SUCCEEDED");
    assert_eq!(job["name"], "from the page");
    let bad = serde_json::json!({"script": {"source": "echo hi"}, "name": "two\nlines"});
    let refused = server.call("POST", "/jobs", Some(&bad));
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert!(
        refused.body.to_string().contains("control character"),
        "{:?}",
        refused.body
    );
    let big = serde_json::json!({"script": {"source": "echo hi"}, "params": {"blob": "z".repeat(150_000)}});
    let refused = server.call("POST", "/jobs", Some(&big));
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert!(
        refused.body.to_string().contains("put big data in a file"),
        "{:?}",
        refused.body
    );
    assert_eq!(home.jobs().len(), 1, "nothing more was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_refused_launches_start_no_task_and_a_stopped_task_leaves_its_attempt() {
    use plus_jobs::{Backend, BackendConfig, JobStatus};
    let moto = plus_testkit::Moto::shared();
    let aws = moto.provision().await;
    let (cluster, task_definition) = plus_testkit::create_ecs(&aws).await;
    let subnet = plus_testkit::default_subnet(&moto.endpoint).await;
    let security_group = plus_testkit::default_security_group(&moto.endpoint).await;
    // ECS answers through the proxy (it makes the emulator's answers read
    // as ECS's).
    let proxy = plus_testkit::FaultProxy::start(&moto.endpoint).await;
    let via_proxy = plus_jobs::backend::AwsConfig {
        endpoint_url: Some(proxy.endpoint.clone()),
        ..aws.clone()
    };
    let ecs = aws_sdk_ecs::Client::new(&via_proxy.sdk_config().await);
    let backend = Backend::open(&BackendConfig::Aws(aws.clone()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.sh");
    std::fs::write(&script, "echo hi\n").unwrap();
    let plus = |args: &[&str]| {
        std::process::Command::new(PLUS)
            .args(["--backend", "aws"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("PLUS_USER", "alice")
            .env("AWS_REGION", &aws.region)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .env("DYNAMO_TABLE", &aws.table)
            .env("DYNAMO_STREAMS_TABLE", &aws.streams_table)
            .env("PRIMARY_BUCKET", &aws.bucket)
            .env("ECS_CLUSTER", &cluster)
            .env("TASK_DEFINITION", &task_definition)
            .env("SUBNETS", &subnet)
            .env("SECURITY_GROUPS", &security_group)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let tasks = || async {
        ecs.list_tasks()
            .cluster(&cluster)
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
            .send()
            .await
            .unwrap()
            .task_arns
            .unwrap_or_default()
            .len()
    };

    let missing = refused(&plus(&["launch", "--action", "nope"]));
    assert!(missing.contains("plus action put nope"), "{missing}");
    let big = format!("p={}", "x".repeat(110_000));
    let too_big = refused(&plus(&["launch", "s.sh", "--param", &big]));
    assert!(too_big.contains("KiB"), "{too_big}");
    assert_eq!(tasks().await, 0, "no task was started");
    let list: Value = serde_json::from_slice(&plus(&["list", "--json"]).stdout).unwrap();
    assert_eq!(list["jobs"], serde_json::json!([]));

    // A task stopped before its worker wrote a word.
    let out = plus(&["launch", "s.sh", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let task = backend
        .jobs
        .get_job(&id)
        .await
        .unwrap()
        .unwrap()
        .fargate_task_arn;
    ecs.stop_task()
        .cluster(&cluster)
        .task(&task)
        .reason("Task stopped by user")
        .send()
        .await
        .unwrap();
    let out = plus(&["monitor", "--once", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job = backend.jobs.get_job(&id).await.unwrap().unwrap();
    assert_eq!(job.status(), JobStatus::Failed);
    assert_eq!(job.attempts.len(), 1, "{job:?}");
    let a = &job.attempts[0];
    assert_eq!((a.attempt, a.task.as_str()), (1, task.as_str()));
    assert_eq!(a.status, JobStatus::Failed as i32);
    assert!(a.started_at.is_empty(), "no worker claimed it: {a:?}");
    assert!(!a.ended_at.is_empty() && a.error == job.error, "{a:?}");
}

/// A script over the 32 KiB a record holds inline is stored as
/// `jobs/{id}/script` and the worker reads it back whole.
#[test]
fn a_script_over_32_kib_is_stored_apart_and_run_whole() {
    let home = Home::new();
    let padding = "# padding line to make the script large\n".repeat(1_000);
    let body = format!("#!/bin/sh\n{padding}echo \"ran $(wc -c < \"$0\") bytes\"\n");
    let script = home.script("big.sh", &body);
    let id = home.launch(&[script.to_str().unwrap()]);
    let job = home.wait_status(&id, "SUCCEEDED");
    assert_eq!(
        job["script"]["s3_key"],
        format!("jobs/{id}/script"),
        "{job}"
    );
    assert!(job["script"].get("source").is_none(), "{job}");
    let logs = home.plus(&["logs", &id, "--attempt", "1"]);
    assert_eq!(text(&logs.stdout), format!("ran {} bytes\n", body.len()));
}
