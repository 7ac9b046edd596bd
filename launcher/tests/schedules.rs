//! Schedules through the real `plus` binary. On the emulator: `plus
//! schedule create` writes the record and an EventBridge Scheduler
//! schedule whose target input, sent to the launcher's handler exactly as
//! EventBridge would (the scheduled time filled in), launches one job, and
//! a repeated delivery launches nothing more; pause disables it; delete
//! removes both. Locally: `plus serve` fires a due schedule, and after a
//! restart catches up one missed firing and says so.

use std::{
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use plus_testkit::Moto;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const PLUS: &str = env!("CARGO_BIN_EXE_plus");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Aws {
    aws: plus_jobs::backend::AwsConfig,
    group: String,
    dir: tempfile::TempDir,
}

impl Aws {
    fn plus(&self, args: &[&str]) -> Output {
        std::process::Command::new(PLUS)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PLUS_BACKEND", "aws")
            .env("PLUS_USER", "alice")
            .env("AWS_REGION", &self.aws.region)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env(
                "AWS_ENDPOINT_URL",
                self.aws.endpoint_url.as_deref().unwrap(),
            )
            .env("DYNAMO_TABLE", &self.aws.table)
            .env("DYNAMO_STREAMS_TABLE", &self.aws.streams_table)
            .env("PRIMARY_BUCKET", &self.aws.bucket)
            .env("PLUS_SCHEDULE_GROUP", &self.group)
            .env(
                "PLUS_SCHEDULER_ROLE_ARN",
                "arn:aws:iam::123456789012:role/plus-scheduler",
            )
            .env(
                "PLUS_LAUNCHER_ARN",
                "arn:aws:lambda:us-east-1:123456789012:function:plus-launcher",
            )
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_on_aws_is_an_eventbridge_schedule_whose_input_launches_once() {
    let moto = Moto::shared();
    let aws = moto.provision().await;
    let sdk = aws.sdk_config().await;
    let scheduler = aws_sdk_scheduler::Client::new(&sdk);
    let group = format!("plus-worker-{}", uuid::Uuid::now_v7().simple());
    scheduler
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .unwrap();
    let env = Aws {
        aws: aws.clone(),
        group: group.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(env.dir.path().join("report.sh"), "echo report\n").unwrap();

    // A wrong expression is refused with the fix, before anything is written.
    let out = env.plus(&[
        "schedule",
        "create",
        "nightly",
        "--rate",
        "30 seconds",
        "report.sh",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("use rate(1 minute) or more"),
        "{}",
        text(&out.stderr)
    );
    let out = env.plus(&[
        "schedule",
        "create",
        "nightly",
        "--cron",
        "0 9 * * MON *",
        "report.sh",
    ]);
    assert!(
        text(&out.stderr).contains("exactly one of day-of-month"),
        "{}",
        text(&out.stderr)
    );
    let out = env.plus(&[
        "schedule",
        "create",
        "nightly",
        "--rate",
        "1 day",
        "--timezone",
        "Mars/Olympus",
        "report.sh",
    ]);
    assert!(text(&out.stderr).contains("IANA"), "{}", text(&out.stderr));
    let listed = scheduler
        .list_schedules()
        .group_name(&group)
        .send()
        .await
        .unwrap();
    assert!(listed.schedules().is_empty(), "nothing was created");

    let out = env.plus(&[
        "--json",
        "schedule",
        "create",
        "nightly",
        "--cron",
        "0 2 * * ? *",
        "--timezone",
        "Europe/Paris",
        "report.sh",
        "--param",
        "n=3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["expression"], "cron(0 2 * * ? *)");
    assert_eq!(created["state"], "ENABLED");
    let aws_name = created["aws_name"].as_str().unwrap().to_owned();

    // The schedule as EventBridge Scheduler holds it.
    let got = scheduler
        .get_schedule()
        .name(&aws_name)
        .group_name(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(got.schedule_expression(), Some("cron(0 2 * * ? *)"));
    assert_eq!(got.schedule_expression_timezone(), Some("Europe/Paris"));
    let target = got.target().unwrap();
    assert_eq!(
        target.arn(),
        "arn:aws:lambda:us-east-1:123456789012:function:plus-launcher"
    );
    assert_eq!(
        target.role_arn(),
        "arn:aws:iam::123456789012:role/plus-scheduler"
    );
    let input: Value = serde_json::from_str(target.input().unwrap()).unwrap();
    assert_eq!(
        input,
        json!({"op": "launch", "username": "alice", "schedule": "nightly", "scheduled_time": "<aws.scheduler.scheduled-time>"})
    );

    // EventBridge fills in the scheduled time and invokes the launcher with
    // exactly that input; a repeated delivery finds the job.
    let delivered: Value = serde_json::from_str(
        &target
            .input()
            .unwrap()
            .replace("<aws.scheduler.scheduled-time>", "2030-01-31T01:00:00Z"),
    )
    .unwrap();
    let (cluster, task_definition) = plus_testkit::create_ecs(&aws).await;
    let subnet = plus_testkit::default_subnet(&moto.endpoint).await;
    let vars = std::collections::HashMap::from([
        ("AWS_REGION", aws.region.clone()),
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("DYNAMO_TABLE", aws.table.clone()),
        ("DYNAMO_STREAMS_TABLE", aws.streams_table.clone()),
        ("PRIMARY_BUCKET", aws.bucket.clone()),
        ("ECS_CLUSTER", cluster),
        ("TASK_DEFINITION", task_definition),
        ("SUBNETS", subnet),
    ]);
    let (config, settings) = plus_launcher::aws::settings_from(|k| vars.get(k).cloned()).unwrap();
    let config = plus_jobs::backend::AwsConfig {
        static_keys: aws.static_keys.clone(),
        ..config
    };
    let launcher = plus_launcher::aws::launcher_with(config, settings)
        .await
        .unwrap();
    let first = plus_launcher::json_api::handle(&launcher, delivered.clone())
        .await
        .unwrap();
    assert_eq!(first["created"], true, "{first}");
    let again = plus_launcher::json_api::handle(&launcher, delivered)
        .await
        .unwrap();
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["job_id"], first["job_id"]);
    let jobs = launcher.list("alice", None, None, 100).await.unwrap().items;
    assert_eq!(jobs.len(), 1, "one job: {jobs:?}");
    assert_eq!(jobs[0].object_id, first["job_id"].as_str().unwrap());
    assert_eq!(jobs[0].name, "nightly");
    assert_eq!(jobs[0].script.as_ref().unwrap().source, "echo report\n");
    let params = plus_jobs::job::job_json(&jobs[0])["params"].clone();
    assert_eq!(params, json!({"n": 3}));
    let shown: Value =
        serde_json::from_slice(&env.plus(&["--json", "schedule", "show", "nightly"]).stdout)
            .unwrap();
    assert_eq!(shown["last_job_id"], first["job_id"]);

    // Another user neither sees nor fires it.
    let theirs = plus_launcher::json_api::handle(
        &launcher,
        json!({"op": "launch", "username": "mallory", "schedule": "nightly", "scheduled_time": "2030-01-31T01:00:00Z"}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(theirs.contains("not found"), "{theirs}");

    // Pause: the EventBridge schedule is disabled.
    let out = env.plus(&["schedule", "pause", "nightly"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = scheduler
        .get_schedule()
        .name(&aws_name)
        .group_name(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(got.state().map(|s| s.as_str()), Some("DISABLED"));

    // Delete removes both the record and the EventBridge schedule.
    let out = env.plus(&["schedule", "delete", "nightly"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let gone = scheduler
        .get_schedule()
        .name(&aws_name)
        .group_name(&group)
        .send()
        .await;
    assert!(gone.is_err(), "the EventBridge schedule is gone");
    let out = env.plus(&["schedule", "show", "nightly"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("was not found"),
        "{}",
        text(&out.stderr)
    );
    let listed: Value =
        serde_json::from_slice(&env.plus(&["--json", "schedule", "list"]).stdout).unwrap();
    assert_eq!(listed["schedules"], json!([]));
}

struct Local {
    dir: tempfile::TempDir,
}

impl Local {
    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(PLUS);
        c.args(args)
            .env_remove("DYNAMO_TABLE")
            .env_remove("PLUS_BACKEND")
            .env_remove("PLUS_WORKER_BIN")
            .env("PLUS_HOME", self.dir.path().join("home"))
            .env("PLUS_USER", "alice")
            .env("PLUS_WORK_DIR", self.dir.path().join("work"))
            // Test-only: every rate fires each second, looked at each 100 ms.
            .env("PLUS_SCHEDULE_TEST_RATE_MS", "1000")
            .env("PLUS_SCHEDULE_TICK_MS", "100")
            .current_dir(self.dir.path());
        c
    }

    fn plus(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn jobs(&self) -> Vec<Value> {
        let out = self.plus(&["--json", "list", "--limit", "0"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v.get("jobs")
            .and_then(Value::as_array)
            .or_else(|| v.as_array())
            .cloned()
            .unwrap_or_default()
    }

    /// `plus serve` until a stderr line contains `needle` (at most 60 s);
    /// returns the process and the lines read.
    async fn serve_until(&self, needle: &str) -> (tokio::process::Child, Vec<String>) {
        let mut child =
            tokio::process::Command::from(self.cmd(&["serve", "--addr", "127.0.0.1:0", "--json"]))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !seen.iter().any(|l: &String| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, lines.next_line()).await {
                Ok(Ok(Some(line))) => seen.push(line),
                other => panic!("no {needle:?} from plus serve ({other:?}): {seen:#?}"),
            }
        }
        // Keep draining, so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (child, seen)
    }
}

async fn stop(mut child: tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plus_serve_fires_due_schedules_and_catches_up_one_missed_firing() {
    let local = Local {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(local.dir.path().join("tick.sh"), "echo tick\n").unwrap();
    let out = local.plus(&[
        "schedule", "create", "tick", "--rate", "1 minute", "tick.sh",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("plus serve"),
        "{}",
        text(&out.stderr)
    );
    let list = text(&local.plus(&["schedule", "list"]).stdout);
    assert!(
        list.contains("tick") && list.contains("rate(1 minute)"),
        "{list}"
    );
    assert!(local.jobs().is_empty(), "nothing fired yet");

    let (server, seen) = local.serve_until("schedule tick fired for").await;
    let fired = seen.iter().find(|l| l.contains("fired for")).unwrap();
    let job_id = fired.rsplit("job ").next().unwrap().trim().to_owned();
    // The job ran, like any launch.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = local.plus(&["--json", "status", &job_id]);
        let job: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if job["status"] == "SUCCEEDED" {
            assert_eq!(job["name"], "tick");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fired job never succeeded: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(server).await;

    // While nothing serves, firings are missed; a restart fires one of
    // them, says so, and skips (and counts) the earlier ones. Time has to
    // pass here for firings to be missed.
    let before = local.jobs().len();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (server, seen) = local.serve_until("caught up 1 missed firing").await;
    let said = seen.iter().find(|l| l.contains("caught up")).unwrap();
    assert!(said.contains("skipped"), "{said}");
    // Pause it, then count: the catch-up launched one job, not one per
    // missed firing.
    let out = local.plus(&["schedule", "pause", "tick"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    stop(server).await;
    let after = local.jobs().len();
    assert!(
        after > before && after - before <= 2,
        "{before} jobs before, {after} after: the missed firings were not all launched"
    );
    let shown: Value =
        serde_json::from_slice(&local.plus(&["--json", "schedule", "show", "tick"]).stdout)
            .unwrap();
    assert_eq!(shown["state"], "DISABLED");

    let out = local.plus(&["schedule", "delete", "tick"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = local.plus(&["schedule", "show", "tick"]);
    assert!(
        text(&out.stderr).contains("was not found"),
        "{}",
        text(&out.stderr)
    );
}
