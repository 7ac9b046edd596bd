//! The `plus` CLI on the local backend, run as a real process: it launches a
//! real worker (`plus worker`) and follows it.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::{Duration, Instant},
};

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

    fn cmd(&self, user: &str, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(PLUS);
        cmd.args(args)
            .env_remove("DYNAMO_TABLE")
            .env("PLUS_HOME", self.dir.path().join("home"))
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

    fn json(&self, args: &[&str]) -> Value {
        let out = self.plus(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn script(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A folder the script may write whatever user it runs as (a root
    /// worker runs scripts as 65534).
    fn shared(&self) -> PathBuf {
        let shared = self.dir.path().join("shared");
        if !shared.exists() {
            std::fs::create_dir(&shared).unwrap();
            std::fs::set_permissions(
                &shared,
                std::os::unix::fs::PermissionsExt::from_mode(0o1777),
            )
            .unwrap();
        }
        shared
    }

    fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = self.json(&["status", id, "--json"]);
            if job["status"] == want {
                return job;
            }
            assert!(Instant::now() < deadline, "job never reached {want}: {job}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hello() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello.sh"))
}

#[test]
fn plus_run_streams_output_and_records_the_job() {
    let home = Home::new();
    let out = home.plus(&["run", hello().to_str().unwrap(), "--param", "name=world"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("hello from job")
            && stdout.contains("params: {\"name\":\"world\"}")
            && stdout.ends_with("done\n"),
        "{stdout}"
    );
    assert!(
        stderr.contains("● RUNNING") && stderr.contains("SUCCEEDED in"),
        "{stderr}"
    );

    let list = home.json(&["list", "--json"]);
    let jobs = list["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    let id = jobs[0]["object_id"].as_str().unwrap().to_owned();
    let job = home.json(&["status", &id, "--json"]);
    assert_eq!(job["status"], "SUCCEEDED");
    assert_eq!(job["exit_code"], 0);
    assert_eq!(job["result"], serde_json::json!({"steps": 3, "ok": true}));
    assert_eq!(job["owner"], "alice/jobs");

    let logs = home.plus(&["logs", &id]);
    assert!(text(&logs.stdout).contains("working... step 3 of 3"));
    let events = home.json(&["events", &id, "--json"]);
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"status"));
    assert!(kinds.contains(&"stdout"));
    let human = text(&home.plus(&["status", &id]).stdout);
    assert!(human.contains("status      SUCCEEDED"), "{human}");
}

#[test]
fn plus_run_exits_1_with_the_reason_when_the_script_fails() {
    let home = Home::new();
    let script = home.script("fail.sh", "echo trying\nexit 4\n");
    let out = home.plus(&["run", script.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("FAILED") && stderr.contains("the script exited with code 4"),
        "{stderr}"
    );
    assert!(stderr.contains("full log: plus logs"), "{stderr}");
}

#[test]
fn plus_run_on_a_missing_file_says_so_and_writes_nothing() {
    let home = Home::new();
    let out = home.plus(&["run", "no/such/script.sh"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the script no/such/script.sh cannot be read"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was launched"), "{stderr}");
    assert_eq!(
        home.json(&["list", "--json"])["jobs"],
        serde_json::json!([])
    );
}

#[test]
fn launch_json_prints_the_id_and_the_detached_job_finishes() {
    let home = Home::new();
    let launched = home.json(&["launch", hello().to_str().unwrap(), "--json"]);
    let id = launched["job_id"].as_str().unwrap();
    assert_eq!(launched["status"], "INITIALIZING");
    let follow = home.plus(&["events", id, "--follow"]);
    assert!(follow.status.success(), "{}", text(&follow.stderr));
    assert!(text(&follow.stdout).contains("done"));
    assert_eq!(home.json(&["status", id, "--json"])["status"], "SUCCEEDED");
}

#[test]
fn a_launch_retried_with_the_same_id_runs_once() {
    let home = Home::new();
    let count = home.shared().join("count");
    let script = home.script("count.sh", &format!("echo x >> {}\n", count.display()));
    let first = home.json(&[
        "launch",
        script.to_str().unwrap(),
        "--id",
        "job-fixed-1",
        "--json",
    ]);
    let again = home.json(&[
        "launch",
        script.to_str().unwrap(),
        "--id",
        "job-fixed-1",
        "--json",
    ]);
    assert_eq!(first["created"], true);
    assert_eq!(again["created"], false);
    home.wait_status("job-fixed-1", "SUCCEEDED");
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "x\n");
}

#[test]
fn ctrl_c_interrupts_the_job_and_retry_resumes_it() {
    use std::os::unix::process::CommandExt;
    let home = Home::new();
    let script = home.script(
        "resumable.sh",
        "if [ \"$PLUS_ATTEMPT\" = 1 ]; then echo first-attempt; sleep 30; fi\necho attempt $PLUS_ATTEMPT done\n",
    );
    let child = home
        .cmd(
            "alice",
            &["run", script.to_str().unwrap(), "--max-attempts", "3"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Wait for the script to be running, then press Ctrl-C (SIGINT to the
    // foreground process group, as a terminal does).
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let list = home.json(&["list", "--json"]);
        if let Some(job) = list["jobs"].as_array().unwrap().first() {
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
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("resume it: plus retry"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        home.json(&["status", &id, "--json"])["status"],
        "INTERRUPTED"
    );

    let retry = home.plus(&["retry", &id, "--wait"]);
    assert!(retry.status.success(), "{}", text(&retry.stderr));
    assert!(text(&retry.stdout).contains("attempt 2 done"));
    let job = home.json(&["status", &id, "--json"]);
    assert_eq!(job["status"], "SUCCEEDED");
    assert_eq!(job["attempt"], 2);
}

#[test]
fn cancel_stops_a_running_job() {
    let home = Home::new();
    let script = home.script("long.sh", "echo started\nsleep 30\n");
    let id = home.json(&["launch", script.to_str().unwrap(), "--json"])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    home.wait_status(&id, "RUNNING");
    let out = home.plus(&["cancel", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let follow = home.plus(&["events", &id, "--follow"]);
    assert_eq!(follow.status.code(), Some(1));
    assert_eq!(home.json(&["status", &id, "--json"])["status"], "CANCELLED");
    let again = home.plus(&["cancel", &id]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("already ended (CANCELLED)"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn other_users_jobs_are_not_found() {
    let home = Home::new();
    let id = home.json(&["launch", hello().to_str().unwrap(), "--json"])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = home.cmd("bob", &["status", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("job {id} was not found")),
        "{}",
        text(&out.stderr)
    );
    let bobs = home.cmd("bob", &["list", "--json"]).output().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&bobs.stdout).unwrap()["jobs"],
        serde_json::json!([])
    );
    home.wait_status(&id, "SUCCEEDED");
}

#[test]
fn a_worker_that_dies_before_claiming_leaves_the_job_failed_not_initializing() {
    let home = Home::new();
    let broken = home.script(
        "broken-worker.sh",
        "#!/bin/sh\necho 'plus-worker: the image is broken' >&2\nexit 7\n",
    );
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = home
        .cmd("alice", &["run", hello().to_str().unwrap()])
        .env("PLUS_WORKER_BIN", &broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let list = home.json(&["list", "--json"]);
    let job = &list["jobs"][0];
    assert_eq!(job["status"], "FAILED");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("the worker exited with code 7 while the job was INITIALIZING"),
        "{error}"
    );
    assert!(error.contains("the image is broken"), "{error}");
}

#[test]
fn a_worker_that_cannot_start_fails_the_job_with_the_reason() {
    let home = Home::new();
    let out = home
        .cmd("alice", &["run", hello().to_str().unwrap()])
        .env("PLUS_WORKER_BIN", "/no/such/worker")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("the worker could not be started"),
        "{}",
        text(&out.stderr)
    );
    let list = home.json(&["list", "--json"]);
    assert_eq!(list["jobs"][0]["status"], "FAILED");
}

/// A RUNNING job (one attempt) whose worker was killed outright, so nobody
/// writes for it: its id and its record.
fn a_job_whose_worker_was_killed(home: &Home) -> (String, Value) {
    let script = home.script("long.sh", "echo started\nsleep 30\n");
    let id = home.json(&[
        "launch",
        script.to_str().unwrap(),
        "--json",
        "--max-attempts",
        "1",
    ])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = home.wait_status(&id, "RUNNING");
    // The lease is `local:{host}:{pid}`: kill that worker outright.
    let pid: i32 = job["lease"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while nix::sys::signal::kill(pid, None).is_ok() {
        assert!(Instant::now() < deadline, "the worker did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    (id, job)
}

#[test]
fn the_monitor_settles_a_job_whose_worker_was_killed() {
    let home = Home::new();
    let (id, _) = a_job_whose_worker_was_killed(&home);
    assert_eq!(
        home.json(&["status", &id, "--json"])["status"],
        "RUNNING",
        "nobody wrote for the dead worker"
    );
    let report = home.json(&["monitor", "--once", "--json"]);
    assert_eq!(report["settled"][0]["job_id"], id.as_str(), "{report}");
    let job = home.json(&["status", &id, "--json"]);
    assert_eq!(job["status"], "FAILED");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("died while the job was RUNNING"),
        "{job}"
    );
}

/// `plus --user bob action put ID` with a script and a default param.
fn bob_stores_an_action(home: &Home, id: &str) {
    let script = home.script(
        "bobact.sh",
        "#!/bin/sh\necho \"bob's action with $PLUS_PARAMS\"\n",
    );
    let out = home
        .cmd(
            "bob",
            &[
                "action",
                "put",
                id,
                script.to_str().unwrap(),
                "-p",
                "who=bob",
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `plus --user USER collection import OWNER` of `lines`.
fn import(home: &Home, user: &str, owner: &str, lines: &str, json: bool) -> Output {
    let file = home.script("items.jsonl", lines);
    let mut args = vec!["collection", "import", owner, file.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    home.cmd(user, &args).output().unwrap()
}

#[test]
fn another_users_action_reads_as_missing_and_nothing_is_written() {
    let home = Home::new();
    bob_stores_an_action(&home, "bobact");
    let out = import(
        &home,
        "bob",
        "bob/collections/x",
        "{\"id\":\"bobitem1\"}\n",
        false,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("imported 1 item into bob/collections/x"),
        "{}",
        text(&out.stderr)
    );
    let refusal = |id: &str| {
        let out = home.plus(&["launch", "--action", id, "--wait"]);
        assert_eq!(out.status.code(), Some(2), "{id}: {}", text(&out.stderr));
        text(&out.stderr).replace(id, "X")
    };
    let missing = refusal("no-such-action");
    assert!(missing.contains("was not found"), "{missing}");
    assert_eq!(refusal("bobact"), missing, "another user's action");
    assert_eq!(refusal("bobitem1"), missing, "not an action");
    assert_eq!(
        home.json(&["list", "--json"])["jobs"],
        serde_json::json!([]),
        "nothing was written"
    );
    let out = home.plus(&["action", "get", "bobact"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out.stdout).contains("bob's action"));
    // Bob's own action still runs with its default params.
    let out = home
        .cmd("bob", &["launch", "--action", "bobact", "--wait", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn another_users_collection_is_refused_before_anything_is_written() {
    let home = Home::new();
    let out = home.plus(&[
        "launch",
        "--collection",
        "bob/collections/x",
        hello().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "collection bob/collections/x was not found among yours: your collections are named alice/collections/NAME"
        ),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        home.json(&["list", "--json"])["jobs"],
        serde_json::json!([])
    );
}

#[test]
fn an_import_never_replaces_another_object_and_names_each_refused_line() {
    let home = Home::new();
    let alices = home.json(&["launch", hello().to_str().unwrap(), "--json"])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    home.wait_status(&alices, "SUCCEEDED");
    bob_stores_an_action(&home, "bobact");
    let out = import(
        &home,
        "bob",
        "bob/collections/x",
        "{\"id\":\"bobitem1\",\"n\":1}\n",
        false,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let lines = format!(
        "{{\"id\":\"{alices}\"}}\n{{\"id\":\"bobact\"}}\n{{\"id\":\"bobitem1\",\"n\":2}}\n{{\"id\":\"fresh\"}}\n"
    );
    let out = import(&home, "bob", "bob/collections/y", &lines, false);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (line, id) in [(1, alices.as_str()), (2, "bobact"), (3, "bobitem1")] {
        assert!(
            stderr.contains(&format!("line {line}: item {id} was not imported")),
            "{stderr}"
        );
    }
    let out = import(&home, "bob", "bob/collections/y", &lines, true);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["imported"], 1, "{report}");
    assert_eq!(
        report["refused"],
        serde_json::json!([
            {"line": 1, "id": alices},
            {"line": 2, "id": "bobact"},
            {"line": 3, "id": "bobitem1"}
        ])
    );
    // Nothing else changed.
    let job = home.json(&["status", &alices, "--json"]);
    assert_eq!(
        (job["status"].as_str(), job["owner"].as_str()),
        (Some("SUCCEEDED"), Some("alice/jobs"))
    );
    let action = home
        .cmd("bob", &["action", "get", "bobact", "--json"])
        .output()
        .unwrap();
    assert!(action.status.success(), "{}", text(&action.stderr));
    let x = home
        .cmd("bob", &["collection", "list", "bob/collections/x"])
        .output()
        .unwrap();
    let item: Value = serde_json::from_slice(&x.stdout).unwrap();
    assert_eq!(
        (item["object_id"].as_str(), item["n"].as_i64()),
        (Some("bobitem1"), Some(1))
    );
    let y = home
        .cmd("bob", &["collection", "list", "bob/collections/y"])
        .output()
        .unwrap();
    assert_eq!(text(&y.stdout).lines().count(), 1, "only the fresh item");

    // A bad line after a refused one names both.
    let out = import(
        &home,
        "bob",
        "bob/collections/y",
        "{\"id\":\"bobact\"}\nnot json\n",
        false,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 2 is not a valid item")
            && stderr
                .contains("1 refused because their ids belong to other objects: line 1 (bobact)"),
        "{stderr}"
    );
    // Another user's collection path, and system object types.
    let out = import(
        &home,
        "bob",
        "alice/collections/x",
        "{\"id\":\"z\"}\n",
        false,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("collection alice/collections/x was not found among yours"),
        "{}",
        text(&out.stderr)
    );
    for kind in ["PlusScriptJob", "Action", "Schedule"] {
        let line = format!("{{\"id\":\"s-{kind}\",\"object_type\":\"{kind}\"}}\n");
        let out = import(&home, "bob", "bob/collections/z", &line, false);
        assert_eq!(out.status.code(), Some(2), "{kind}");
        assert!(
            text(&out.stderr).contains("reserved"),
            "{}",
            text(&out.stderr)
        );
    }
    let z = home
        .cmd("bob", &["collection", "list", "bob/collections/z"])
        .output()
        .unwrap();
    assert_eq!(text(&z.stdout), "");
}

#[test]
fn params_are_json_only_when_they_read_back_unchanged() {
    let home = Home::new();
    let script = home.script("params.sh", "#!/bin/sh\necho \"$PLUS_PARAMS\"\n");
    let out = home.plus(&[
        "run",
        script.to_str().unwrap(),
        "-p",
        "i=9007199254740993",
        "-p",
        "id=12345678901234567890",
        "-p",
        "v=1.10",
        "-p",
        "c=1e5",
        "-p",
        "n=3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let params: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(
        params,
        serde_json::json!({
            "i": "9007199254740993",
            "id": "12345678901234567890",
            "v": "1.10",
            "c": "1e5",
            "n": 3
        })
    );
    for (args, says) in [
        (&["-p", "=v"][..], "has no name before '='"),
        (&["-p", "a=1", "-p", "a=2"][..], "is given twice"),
    ] {
        let mut all = vec!["run", script.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = home.plus(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
    assert_eq!(
        home.json(&["list", "--json"])["jobs"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the refused runs wrote nothing"
    );
}

#[test]
fn the_monitor_skips_a_record_it_cannot_read_and_settles_the_rest() {
    let home = Home::new();
    let (id, job) = a_job_whose_worker_was_killed(&home);
    // A record nobody can read, next to it (ids sort before and after it).
    let mut bad = job.as_object().unwrap().clone();
    bad.insert("params".into(), Value::String("not a map".into()));
    let db = home
        .dir
        .path()
        .join("home")
        .join(plus_jobs::backend::LOCAL_DB_FILE);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use plus_jobs::JobStore;
        let store = plus_jobs::store::sqlite::SqliteStore::open(&db).unwrap();
        for bad_id in ["0-unreadable", "zzzz-unreadable"] {
            let mut object = bad.clone();
            object.insert("object_id".into(), Value::String(bad_id.into()));
            store.put_objects(&[object]).await.unwrap();
        }
    });
    let out = home.plus(&["monitor", "--once", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let settled = report["settled"].as_array().unwrap();
    assert_eq!(settled.len(), 1, "{report}");
    assert_eq!(settled[0]["job_id"], id.as_str());
    assert!(
        text(&out.stderr).contains("0-unreadable"),
        "the skipped record is reported: {}",
        text(&out.stderr)
    );
    assert_eq!(home.json(&["status", &id, "--json"])["status"], "FAILED");
}

/// The local backend refuses the numbers DynamoDB cannot keep too, so a
/// launch that works locally works on AWS: exit 2 naming the param and the
/// range, and nothing is written.
#[test]
fn a_param_outside_dynamodbs_numbers_is_refused_locally_too() {
    let home = Home::new();
    let script = home.script("never.sh", "#!/bin/sh\necho never\n");
    for (param, names) in [
        ("threshold=1e-300", "params.threshold = 1e-300"),
        ("threshold=1e+200", "params.threshold = 1e+200"),
    ] {
        for command in ["launch", "run"] {
            let out = home.plus(&[command, script.to_str().unwrap(), "-p", param]);
            assert_eq!(out.status.code(), Some(2), "{command} {param}");
            let stderr = text(&out.stderr);
            assert!(
                stderr.contains(&format!(
                    "{names} cannot be stored: DynamoDB keeps numbers from 1E-130 to 9.99E+125"
                )),
                "{stderr}"
            );
        }
    }
    assert_eq!(
        home.json(&["list", "--json"])["jobs"],
        serde_json::json!([]),
        "nothing was written"
    );
}

/// A 30-item collection whose items wait for `gate` (the script polls for
/// the file), launched with `--shards 3`: the parent's id once every
/// shard is RUNNING. Each item that gets past the gate appends its id to
/// `ran`.
fn three_running_shards(home: &Home, gate: &Path, ran: &Path) -> String {
    let lines: String = (0..30)
        .map(|i| format!("{{\"object_id\": \"item-{i:02}\", \"n\": {i}}}\n"))
        .collect();
    let owner = "alice/collections/sharded";
    let out = import(home, "alice", owner, &lines, false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = home.script(
        "gated.sh",
        &format!(
            "#!/bin/sh\ncat >/dev/null\nwhile [ ! -e {gate} ]; do sleep 0.05; done\necho \"$PLUS_ITEM_ID\" >> {ran} || exit 7\necho '{{}}'\n",
            gate = gate.display(),
            ran = ran.display()
        ),
    );
    let launched = home.json(&[
        "launch",
        "--collection",
        owner,
        script.to_str().unwrap(),
        "--shards",
        "3",
        "--json",
    ]);
    let id = launched["job_id"].as_str().unwrap().to_owned();
    for i in 0..3 {
        home.wait_status(&format!("{id}-s{i}"), "RUNNING");
    }
    id
}

#[test]
fn cancelling_a_sharded_job_cancels_every_shard_and_a_shard_retried_alone_runs_its_range() {
    let home = Home::new();
    let (gate, ran) = (home.shared().join("gate"), home.shared().join("ran"));
    let id = three_running_shards(&home, &gate, &ran);
    assert_eq!(home.json(&["status", &id, "--json"])["status"], "RUNNING");

    let out = home.plus(&["cancel", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for i in 0..3 {
        home.wait_status(&format!("{id}-s{i}"), "CANCELLED");
    }
    home.wait_status(&id, "CANCELLED");
    assert!(!ran.exists(), "no item ran past the gate");

    // Nothing to resume: the parent says how to run a shard again, and a
    // shard run again on its own runs that shard's items only.
    let out = home.plus(&["retry", &id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("none of its shards is INTERRUPTED: retry a finished shard on its own"),
        "{}",
        text(&out.stderr)
    );
    let s1 = home.json(&["status", &format!("{id}-s1"), "--json"]);
    let (after, until) = (
        s1["shard_after"].as_str().unwrap().to_owned(),
        s1["shard_until"].as_str().unwrap().to_owned(),
    );
    let copy = home.json(&["retry", &format!("{id}-s1"), "--json"]);
    std::fs::write(&gate, "").unwrap();
    let copy = home.wait_status(copy["job_id"].as_str().unwrap(), "SUCCEEDED");
    let mut ran: Vec<String> = std::fs::read_to_string(&ran)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    ran.sort();
    let range: Vec<String> = (0..30)
        .map(|i| format!("item-{i:02}"))
        .filter(|item| *item > after && *item <= until)
        .collect();
    assert!(!range.is_empty() && range.len() < 30, "{after}..{until}");
    assert_eq!(
        ran, range,
        "the copy ran shard 1's items, each once: {copy}"
    );
    assert_eq!(home.json(&["status", &id, "--json"])["status"], "CANCELLED");
}

#[test]
fn retrying_a_sharded_job_relaunches_its_interrupted_shard_and_the_parent_succeeds() {
    let home = Home::new();
    let (gate, ran) = (home.shared().join("gate"), home.shared().join("ran"));
    let id = three_running_shards(&home, &gate, &ran);

    // Stop the middle shard's worker as ECS or Spot would (SIGTERM); the
    // lease is `local:{host}:{pid}`.
    let s1 = format!("{id}-s1");
    let shard = home.json(&["status", &s1, "--json"]);
    let pid: i32 = shard["lease"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    home.wait_status(&s1, "INTERRUPTED");
    std::fs::write(&gate, "").unwrap();
    for i in [0, 2] {
        home.wait_status(&format!("{id}-s{i}"), "SUCCEEDED");
    }
    home.wait_status(&id, "INTERRUPTED");

    let out = home.plus(&["retry", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let parent = home.wait_status(&id, "SUCCEEDED");
    assert_eq!(parent["progress"]["succeeded"], 30, "{parent}");
    let attempts: Vec<Value> = (0..3)
        .map(|i| home.json(&["status", &format!("{id}-s{i}"), "--json"])["attempt"].clone())
        .collect();
    assert_eq!(
        attempts,
        [json!(1), json!(2), json!(1)],
        "only the interrupted shard ran again"
    );
    let mut ran: Vec<String> = std::fs::read_to_string(&ran)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    ran.sort();
    let all: Vec<String> = (0..30).map(|i| format!("item-{i:02}")).collect();
    assert_eq!(ran, all, "every item ran to completion exactly once");
}
