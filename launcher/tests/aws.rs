//! The launcher's AWS backend against `moto_server`: `plus launch --backend
//! aws` writes the record and calls RunTask; the test then reads the task's
//! overrides back with DescribeTasks and runs the real worker with exactly
//! that environment (the emulator cannot run a container, so the test closes
//! that loop). Throttling and "Capacity is unavailable" cannot be made to
//! happen in the emulator: a fault proxy in front of it injects them.

use std::{
    process::Output,
    time::{Duration, Instant},
};

use aws_sdk_ecs::types::Task;
use plus_jobs::{backend::AwsConfig, Backend, BackendConfig, Expect, Job, JobStatus};
use plus_testkit::{create_ecs, default_security_group, default_subnet, Fault, FaultProxy, Moto};
use serde_json::{json, Value};

const PLUS: &str = env!("CARGO_BIN_EXE_plus");

struct Aws {
    aws: AwsConfig,
    cluster: String,
    task_definition: String,
    backend: Backend,
    ecs: aws_sdk_ecs::Client,
    /// Everything ECS goes through this proxy: it injects the faults the
    /// emulator cannot produce and turns the emulator's numeric container
    /// `cpu` into the string ECS returns.
    proxy: FaultProxy,
    subnet: String,
    security_group: String,
    dir: tempfile::TempDir,
}

impl Aws {
    async fn new() -> Aws {
        let moto = Moto::shared();
        let aws = moto.provision().await;
        let (cluster, task_definition) = create_ecs(&aws).await;
        let backend = Backend::open(&BackendConfig::Aws(aws.clone()))
            .await
            .unwrap();
        let proxy = FaultProxy::start(&moto.endpoint).await;
        let via_proxy = AwsConfig {
            endpoint_url: Some(proxy.endpoint.clone()),
            ..aws.clone()
        };
        let ecs = aws_sdk_ecs::Client::new(&via_proxy.sdk_config().await);
        let subnet = default_subnet(&moto.endpoint).await;
        let security_group = default_security_group(&moto.endpoint).await;
        Aws {
            aws,
            cluster,
            task_definition,
            backend,
            ecs,
            proxy,
            subnet,
            security_group,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn plus(&self, args: &[&str]) -> Output {
        self.plus_as("alice", args)
    }

    fn plus_as(&self, user: &str, args: &[&str]) -> Output {
        std::process::Command::new(PLUS)
            .args(["--backend", "aws"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("PLUS_USER", user)
            .env("AWS_REGION", &self.aws.region)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_ENDPOINT_URL", &self.proxy.endpoint)
            .env("DYNAMO_TABLE", &self.aws.table)
            .env("DYNAMO_STREAMS_TABLE", &self.aws.streams_table)
            .env("PRIMARY_BUCKET", &self.aws.bucket)
            .env("ECS_CLUSTER", &self.cluster)
            .env("TASK_DEFINITION", &self.task_definition)
            .env("SUBNETS", &self.subnet)
            .env("SECURITY_GROUPS", &self.security_group)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    }

    fn launch(&self, args: &[&str]) -> Value {
        let out = self.plus(&[&["launch"], args, &["--json"]].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn script(&self, text: &str) -> String {
        let path = self.dir.path().join(format!("s{}.sh", uuid_like()));
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    async fn job(&self, id: &str) -> Job {
        self.backend.jobs.get_job(id).await.unwrap().unwrap()
    }

    async fn task(&self, arn: &str) -> Task {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(arn)
            .include(aws_sdk_ecs::types::TaskField::Tags)
            .send()
            .await
            .unwrap();
        out.tasks
            .unwrap()
            .into_iter()
            .next()
            .expect("the task exists")
    }

    /// What the container would do: the real worker with exactly the
    /// task's environment (plus the emulator's address and the role's
    /// credentials). `plus worker` is the plus-worker binary's code (see
    /// the worker crate).
    async fn run_worker(&self, mut env: Vec<(String, String)>) -> std::process::ExitStatus {
        env.push(("AWS_ENDPOINT_URL".into(), self.proxy.endpoint.clone()));
        env.push(("AWS_ACCESS_KEY_ID".into(), "testing".into()));
        env.push(("AWS_SECRET_ACCESS_KEY".into(), "testing".into()));
        env.push(("PATH".into(), std::env::var("PATH").unwrap()));
        env.push((
            "PLUS_WORK_DIR".into(),
            self.dir.path().join("work").display().to_string(),
        ));
        tokio::process::Command::new(PLUS)
            .arg("worker")
            .env_clear()
            .envs(env)
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .unwrap()
    }

    async fn tasks(&self) -> usize {
        let mut n = 0;
        for status in [
            aws_sdk_ecs::types::DesiredStatus::Running,
            aws_sdk_ecs::types::DesiredStatus::Stopped,
        ] {
            let out = self
                .ecs
                .list_tasks()
                .cluster(&self.cluster)
                .desired_status(status)
                .send()
                .await
                .unwrap();
            n += out.task_arns.unwrap_or_default().len();
        }
        n
    }
}

fn uuid_like() -> String {
    format!("{:?}", Instant::now())
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

fn env_of(task: &Task) -> Vec<(String, String)> {
    let overrides = task.overrides.as_ref().expect("overrides");
    let container = overrides
        .container_overrides()
        .iter()
        .find(|c| c.name() == Some("worker"))
        .expect("the worker's overrides");
    container
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap().to_owned(),
                kv.value().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launched_task_carries_the_contract_and_its_worker_runs_the_job() {
    let t = Aws::new().await;
    let script =
        t.script("echo hello from fargate\necho '{\"ok\": true}' > \"$PLUS_RESULT_FILE\"\n");
    let launched = t.launch(&[&script, "--cpu", "512", "--memory", "1024"]);
    let id = launched["job_id"].as_str().unwrap();
    let job = t.job(id).await;
    assert_eq!(job.status(), JobStatus::Initializing);
    assert!(
        job.fargate_task_arn.starts_with("arn:aws:ecs:"),
        "{}",
        job.fargate_task_arn
    );

    let task = t.task(&job.fargate_task_arn).await;
    let env = env_of(&task);
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "RUN_MODE",
            "JOB_ID",
            "USERNAME",
            "REGION",
            "DYNAMO_TABLE",
            "DYNAMO_STREAMS_TABLE",
            "PRIMARY_BUCKET"
        ]
    );
    assert!(env.contains(&("JOB_ID".into(), id.into())));
    assert!(
        !format!("{task:?}").contains("testing"),
        "no credentials in the task's overrides"
    );
    assert_eq!(task.overrides.as_ref().unwrap().cpu(), Some("512"));
    assert_eq!(task.overrides.as_ref().unwrap().memory(), Some("1024"));
    assert_eq!(task.started_by(), Some("plus-launcher"));
    let tags: Vec<(String, String)> = task
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().into(), t.value().unwrap().into()))
        .collect();
    assert!(
        tags.contains(&("plus:job-id".into(), id.into()))
            && tags.contains(&("plus:username".into(), "alice".into())),
        "{tags:?}"
    );

    assert!(t.run_worker(env).await.success());
    let done = t.job(id).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    let status = t.plus(&["status", id, "--json"]);
    let v: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["result"], serde_json::json!({"ok": true}));
    let logs = t.plus(&["logs", id, "--attempt", "1"]);
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout),
        "hello from fargate\n"
    );
    let logs = String::from_utf8_lossy(&t.plus(&["logs", id]).stdout).into_owned();
    assert!(
        logs.starts_with("== attempt 1 (SUCCEEDED, ") && logs.ends_with("==\nhello from fargate\n"),
        "{logs}"
    );
}

/// A script over the 32 KiB a DynamoDB record holds inline is stored in
/// the bucket as `jobs/{id}/script`; the task's worker reads it back whole
/// and runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_over_32_kib_is_stored_in_the_bucket_and_its_worker_runs_it_whole() {
    let t = Aws::new().await;
    let padding = "# padding line to make the script large\n".repeat(1_000);
    let body = format!("#!/bin/sh\n{padding}echo \"ran $(wc -c < \"$0\") bytes\"\n");
    assert!(body.len() > 32 * 1024);
    let id = t.launch(&[&t.script(&body)])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = t.job(&id).await;
    let script = job.script.as_ref().expect("a script");
    assert_eq!(script.s3_key, format!("jobs/{id}/script"), "{script:?}");
    assert!(
        script.source.is_empty(),
        "not inline: {} bytes",
        script.source.len()
    );

    let task = t.task(&job.fargate_task_arn).await;
    assert!(t.run_worker(env_of(&task)).await.success());
    assert_eq!(t.job(&id).await.status(), JobStatus::Succeeded);
    let logs = t.plus(&["logs", &id, "--attempt", "1"]);
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout),
        format!("ran {} bytes\n", body.len())
    );
}

/// `plus collection import` on DynamoDB: a bad line after more than one
/// BatchWriteItem's worth (25) of good ones keeps every line before it,
/// names the bad line, and writes nothing after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_with_a_bad_line_keeps_the_lines_before_it_and_names_it() {
    let t = Aws::new().await;
    let mut lines: String = (1..=30)
        .map(|i| format!("{{\"id\":\"city-{i}\",\"n\":{i}}}\n"))
        .collect();
    lines.push_str("{\"id\": \"city-31\", \"n\": \n");
    lines.push_str("{\"id\":\"city-32\"}\n");
    let file = t.script(&lines);
    let out = t.plus(&["collection", "import", "alice/collections/cities", &file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 31 is not a valid item")
            && stderr.contains("The 30 items before it were imported"),
        "{stderr}"
    );
    let listed = t.plus(&["collection", "list", "alice/collections/cities"]);
    assert!(listed.status.success());
    let mut ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| {
            let item: Value = serde_json::from_str(l).unwrap();
            item["object_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    let mut expected: Vec<String> = (1..=30).map(|i| format!("city-{i}")).collect();
    expected.sort();
    assert_eq!(
        ids, expected,
        "the 30 lines before the bad one, nothing after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_launches_ask_for_fargate_spot_capacity() {
    // The emulator places only FARGATE launch types, so the proxy answers
    // the Spot RunTask itself and the test checks what was asked for.
    let t = Aws::new().await;
    let (proxy, via) = (&t.proxy, &t);
    let arn = "arn:aws:ecs:us-east-1:123456789012:task/plus/0123456789abcdef0123456789abcdef";
    proxy.inject(
        "ECS:RunTask",
        Fault::Respond(
            200,
            format!(r#"{{"tasks":[{{"taskArn":"{arn}"}}],"failures":[]}}"#),
        ),
    );
    let id = via.launch(&[&via.script("echo hi\n"), "--spot"])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body: Value = serde_json::from_str(&proxy.bodies("ECS:RunTask")[0]).unwrap();
    assert_eq!(
        body["capacityProviderStrategy"][0]["capacityProvider"],
        "FARGATE_SPOT"
    );
    assert!(body.get("launchType").is_none());
    assert_eq!(body["clientToken"].as_str().unwrap().len(), 36);
    assert_eq!(t.job(&id).await.fargate_task_arn, arn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_launch_makes_one_record_and_one_task() {
    let t = Aws::new().await;
    let script = t.script("echo once\n");
    let a = t.launch(&[&script, "--id", "same-job-1"]);
    let b = t.launch(&[&script, "--id", "same-job-1"]);
    assert_eq!(
        (a["created"].clone(), b["created"].clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    assert_eq!(t.tasks().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_sizes_are_refused_before_anything_is_written() {
    let t = Aws::new().await;
    let script = t.script("echo never\n");
    let out = t.plus(&["launch", &script, "--cpu", "256", "--memory", "4096"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "--memory 4096 MiB is not valid with --cpu 256: choose one of 512, 1024, 2048 MiB"
        ),
        "{stderr}"
    );
    let out = t.plus(&["launch", &script, "--storage", "500"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("21 to 200 GiB"));
    let list: Value = serde_json::from_slice(&t.plus(&["list", "--json"]).stdout).unwrap();
    assert_eq!(list["jobs"], serde_json::json!([]));
    assert_eq!(t.tasks().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_capacity_errors_are_retried_other_failures_fail_the_job() {
    let t = Aws::new().await;
    let (proxy, via) = (&t.proxy, &t);
    let capacity = r#"{"tasks":[],"failures":[{"reason":"Capacity is unavailable at this time. Please try again later or in a different availability zone"}]}"#;
    proxy.inject_n("ECS:RunTask", Fault::Throttle, 2);
    proxy.inject_n("ECS:RunTask", Fault::Respond(200, capacity.into()), 2);
    let script = via.script("echo hi\n");
    let launched = via.launch(&[&script]);
    assert_eq!(proxy.pending_faults(), 0);
    let job = t.job(launched["job_id"].as_str().unwrap()).await;
    assert!(job.fargate_task_arn.starts_with("arn:aws:ecs:"));
    assert_eq!(
        proxy.seen().iter().filter(|s| *s == "ECS:RunTask").count(),
        5
    );

    // A failure that retrying cannot fix fails the job with the reason.
    let missing = r#"{"tasks":[],"failures":[{"arn":"arn:aws:ecs:us-east-1:123456789012:cluster/x","reason":"MISSING"}]}"#;
    proxy.inject("ECS:RunTask", Fault::Respond(200, missing.into()));
    let out = via.plus(&["launch", &script, "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("RunTask failed: MISSING"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&t.plus(&["list", "--json"]).stdout).unwrap();
    let failed = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["status"] == "FAILED")
        .expect("the job is FAILED, not INITIALIZING");
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("RunTask failed: MISSING"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_settles_stopped_tasks_and_relaunches_interrupted_jobs() {
    let t = Aws::new().await;
    let script = t.script("echo hi\n");
    // A task stopped by someone before its worker wrote anything.
    let id = t.launch(&[&script])["job_id"].as_str().unwrap().to_owned();
    let job = t.job(&id).await;
    t.ecs
        .stop_task()
        .cluster(&t.cluster)
        .task(&job.fargate_task_arn)
        .reason("Task stopped by user")
        .send()
        .await
        .unwrap();
    // An interrupted job (its worker wrote INTERRUPTED on SIGTERM).
    let id2 = t.launch(&[&script, "--max-attempts", "2"])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first_task = t.job(&id2).await.fargate_task_arn;
    let patch = Job {
        status: JobStatus::Interrupted as i32,
        ..Job::default()
    };
    t.backend
        .jobs
        .update_job(&id2, &Expect::status([JobStatus::Initializing]), &patch)
        .await
        .unwrap();

    let out = t.plus(&["monitor", "--once", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let settled = report["settled"].as_array().unwrap();
    assert_eq!(settled.len(), 2, "{report}");

    let stopped = t.job(&id).await;
    assert_eq!(stopped.status(), JobStatus::Failed);
    // The emulator sets no stop code (ECS would say UserInitiated, which the
    // unit tests of `classify` cover); either way the job ends FAILED with
    // the reason instead of staying INITIALIZING.
    assert!(
        stopped.error.contains("without recording an end"),
        "{}",
        stopped.error
    );

    let relaunched = t.job(&id2).await;
    assert_eq!(relaunched.status(), JobStatus::Initializing);
    assert_eq!(relaunched.attempt, Some(2));
    assert_ne!(
        relaunched.fargate_task_arn, first_task,
        "a new task for the new attempt"
    );

    // Out of attempts: the next interruption fails the job.
    t.backend
        .jobs
        .update_job(&id2, &Expect::status([JobStatus::Initializing]), &patch)
        .await
        .unwrap();
    assert!(t.plus(&["monitor", "--once"]).status.success());
    let failed = t.job(&id2).await;
    assert_eq!(failed.status(), JobStatus::Failed);
    assert!(
        failed.error.contains("2 attempts are used up"),
        "{}",
        failed.error
    );
}

/// What ECS itself says, which the emulator cannot: DescribeTasks answers
/// one job's task in `failures` as MISSING (ECS forgot it), and another's
/// as STOPPED with the stop code `SpotInterruption`. The first job ends
/// FAILED with a sentence instead of staying RUNNING; the second runs
/// again as attempt 2 on a new task, its first attempt recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_fails_a_job_whose_task_vanished_and_relaunches_a_spot_interrupted_one() {
    let t = Aws::new().await;
    let script = t.script("echo hi\n");
    let vanished = t.launch(&[&script])["job_id"].as_str().unwrap().to_owned();
    let spot = t.launch(&[&script, "--max-attempts", "2"])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Both were running, their workers silent since (a lost task is only
    // given up once its heartbeat is stale).
    for id in [&vanished, &spot] {
        let patch = Job {
            status: JobStatus::Running as i32,
            heartbeat_at: "2026-01-01T00:00:00.000Z".into(),
            ..Job::default()
        };
        t.backend
            .jobs
            .update_job(id, &Expect::status([JobStatus::Initializing]), &patch)
            .await
            .unwrap();
    }
    let vanished_task = t.job(&vanished).await.fargate_task_arn;
    let spot_task = t.job(&spot).await.fargate_task_arn;
    let answer = json!({
        "tasks": [{
            "taskArn": spot_task,
            "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED",
            "stopCode": "SpotInterruption",
            "stoppedReason": "Your Spot Task was interrupted.",
            "containers": [{"name": "worker", "lastStatus": "STOPPED", "exitCode": 143}],
        }],
        "failures": [{"arn": vanished_task, "reason": "MISSING"}],
    });
    t.proxy
        .inject("ECS:DescribeTasks", Fault::Respond(200, answer.to_string()));

    let out = t.plus(&["monitor", "--once", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.proxy.pending_faults(), 0, "the pass described the tasks");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let of = |id: &str| {
        report["settled"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["job_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} is settled: {report}"))
    };

    assert_eq!(of(&vanished)["action"], "failed", "{report}");
    let gone = t.job(&vanished).await;
    assert_eq!(gone.status(), JobStatus::Failed);
    assert!(
        gone.error.contains("its ECS task is gone") && gone.error.contains("recorded no end"),
        "{}",
        gone.error
    );
    assert!(!gone.completed_at.is_empty());

    assert_eq!(of(&spot)["action"], "relaunched", "{report}");
    let again = t.job(&spot).await;
    assert_eq!(again.status(), JobStatus::Initializing, "{again:?}");
    assert_eq!(again.attempt, Some(2));
    assert_ne!(
        again.fargate_task_arn, spot_task,
        "a new task runs attempt 2"
    );
    assert_eq!(again.attempts.len(), 1, "{:?}", again.attempts);
    assert_eq!(again.attempts[0].status(), JobStatus::Interrupted);
    assert!(
        again.attempts[0]
            .error
            .contains("Spot task was interrupted"),
        "{:?}",
        again.attempts[0]
    );
}

/// A live task whose worker stopped beating (stuck, or cut off from
/// DynamoDB) is stopped, not left running and not failed at once: the
/// stopped task is settled by its event or the next pass. A task that
/// stays INITIALIZING past `--start-timeout` is stopped and its job FAILED
/// with the reason. A fresh job is left alone. (The emulator moves a task
/// one state towards STOPPED on each DescribeTasks, so one pass is run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_stops_a_stuck_worker_and_a_task_that_never_started() {
    let t = Aws::new().await;
    let script = t.script("echo hi\n");
    let launch = || t.launch(&[&script])["job_id"].as_str().unwrap().to_owned();
    let (stuck, never, fresh) = (launch(), launch(), launch());
    let long_ago = "2026-01-01T00:00:00.000Z";
    let running_but_silent = Job {
        status: JobStatus::Running as i32,
        heartbeat_at: long_ago.into(),
        ..Job::default()
    };
    let launched_long_ago = Job {
        updated_at: long_ago.into(),
        ..Job::default()
    };
    for (id, patch) in [(&stuck, running_but_silent), (&never, launched_long_ago)] {
        t.backend
            .jobs
            .update_job(id, &Expect::status([JobStatus::Initializing]), &patch)
            .await
            .unwrap();
    }
    assert_eq!(t.job(&never).await.updated_at, long_ago);

    let out = t.plus(&["monitor", "--once", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let settled = report["settled"].as_array().unwrap();
    let of = |id: &str| {
        settled
            .iter()
            .find(|s| s["job_id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(settled.len(), 2, "the fresh job is left alone: {report}");

    assert_eq!(of(&stuck)["action"], "stopped", "{report}");
    let reason = of(&stuck)["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("heartbeat is") && reason.contains("stuck or cut off"),
        "{reason}"
    );
    let stuck_job = t.job(&stuck).await;
    assert_eq!(
        t.task(&stuck_job.fargate_task_arn).await.last_status(),
        Some("STOPPED")
    );
    assert_eq!(
        stuck_job.status(),
        JobStatus::Running,
        "the stopped task settles it, not the pass that stopped it"
    );

    assert_eq!(of(&never)["action"], "failed", "{report}");
    let never_job = t.job(&never).await;
    assert_eq!(never_job.status(), JobStatus::Failed);
    assert!(
        never_job.error.contains("did not start within 600 s"),
        "{}",
        never_job.error
    );
    assert_eq!(
        t.task(&never_job.fargate_task_arn).await.last_status(),
        Some("STOPPED")
    );
    assert_eq!(t.job(&fresh).await.status(), JobStatus::Initializing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_writes_cancelled_and_stops_the_task() {
    let t = Aws::new().await;
    let id = t.launch(&[&t.script("sleep 100\n")])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = t.plus(&["cancel", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = t.job(&id).await;
    assert_eq!(job.status(), JobStatus::Cancelled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.task(&job.fargate_task_arn).await.last_status() != Some("STOPPED") {
        assert!(Instant::now() < deadline, "the task was not stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_image_registers_one_task_definition_and_reuses_it() {
    let t = Aws::new().await;
    let script = t.script("echo hi\n");
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/plus-worker:with-ffmpeg";
    let a = t.launch(&[&script, "--image", image])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = t.launch(&[&script, "--image", image])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let registered = t
        .proxy
        .seen()
        .iter()
        .filter(|s| *s == "ECS:RegisterTaskDefinition")
        .count();
    assert_eq!(
        registered, 1,
        "registered once, then found and reused by the next launcher"
    );
    let (ta, tb) = (
        t.task(&t.job(&a).await.fargate_task_arn).await,
        t.task(&t.job(&b).await.fargate_task_arn).await,
    );
    assert_eq!(ta.task_definition_arn(), tb.task_definition_arn());
    assert!(
        ta.task_definition_arn()
            .unwrap()
            .contains(":task-definition/plus-worker-"),
        "{:?}",
        ta.task_definition_arn()
    );
    let def = t
        .ecs
        .describe_task_definition()
        .task_definition(ta.task_definition_arn().unwrap())
        .send()
        .await
        .unwrap();
    let containers = def.task_definition().unwrap().container_definitions();
    assert_eq!(containers[0].image(), Some(image));
}

/// A param DynamoDB cannot keep is refused by the launch itself, with
/// exit 2 and a sentence that names the param and DynamoDB's range; no
/// record is written and no task started. By the params rule (a value is
/// JSON only when it reads back unchanged) `1e200` and a 39-digit integer
/// are not numbers but their exact text, so they launch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_param_outside_dynamodbs_numbers_is_refused_before_anything_is_written() {
    let t = Aws::new().await;
    let script = t.script("echo never\n");
    for (param, names) in [
        ("threshold=1e-300", "params.threshold = 1e-300"),
        ("threshold=1e+200", "params.threshold = 1e+200"),
        (
            r#"limits={"max": [1, 1e200]}"#,
            "params.limits.max[1] = 1e+200",
        ),
    ] {
        let out = t.plus(&["launch", &script, "-p", param]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{param}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{names} cannot be stored: DynamoDB keeps numbers from 1E-130 to 9.99E+125"
            )),
            "{param}: {stderr}"
        );
    }
    let list: Value = serde_json::from_slice(&t.plus(&["list", "--json"]).stdout).unwrap();
    assert_eq!(list["jobs"], serde_json::json!([]), "no record was written");
    assert_eq!(t.tasks().await, 0, "no task was started");
    assert!(
        !t.proxy.seen().iter().any(|s| s == "ECS:RunTask"),
        "RunTask was never called"
    );

    let digits = "123456789012345678901234567890123456789";
    let launched = t.launch(&[
        &script,
        "-p",
        &format!("big={digits}"),
        "-p",
        "text=1e200",
        "-p",
        "ratio=0.25",
    ]);
    let id = launched["job_id"].as_str().unwrap();
    let status: Value = serde_json::from_slice(&t.plus(&["status", id, "--json"]).stdout).unwrap();
    assert_eq!(
        status["params"],
        serde_json::json!({"big": digits, "text": "1e200", "ratio": 0.25}),
        "{status}"
    );
    assert_eq!(t.tasks().await, 1);
}

/// A username with a character ECS refuses in a tag (`'`) still launches
/// on the emulator behind the validating proxy (which refuses, as ECS
/// does, a tag outside `[\p{L}\p{Z}\p{N}_.:/=+\-@]*`): the tag carries
/// `_` in its place while the worker's environment and the record keep the
/// real name, the job runs to SUCCEEDED, and `plus list` and `plus status`
/// as that user show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_named_darcy_launches_and_runs_to_succeeded() {
    let t = Aws::new().await;
    let user = "d'arcy@example.com";
    let script = t.script("echo hello d\\'arcy\n");
    let out = t.plus_as(user, &["launch", &script, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let launched: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = launched["job_id"].as_str().unwrap();
    let job = t.job(id).await;
    assert_eq!(job.username, user);
    assert!(
        job.fargate_task_arn.starts_with("arn:aws:ecs:"),
        "the emulator accepted the RunTask: {job:?}"
    );

    let bodies = t.proxy.bodies("ECS:RunTask");
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        plus_testkit::validate::check_json("ECS:RunTask", bodies[0].as_bytes()),
        Vec::<String>::new(),
        "ECS would accept the RunTask: {}",
        bodies[0]
    );
    let task = t.task(&job.fargate_task_arn).await;
    let tags: Vec<(&str, &str)> = task
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert!(
        tags.contains(&("plus:username", "d_arcy@example.com")),
        "{tags:?}"
    );
    let env = env_of(&task);
    assert!(env.contains(&("USERNAME".into(), user.into())), "{env:?}");

    assert!(t.run_worker(env).await.success());
    assert_eq!(t.job(id).await.status(), JobStatus::Succeeded);

    let list: Value = serde_json::from_slice(&t.plus_as(user, &["list", "--json"]).stdout).unwrap();
    let jobs = list["jobs"].as_array().unwrap();
    assert!(
        jobs.len() == 1 && jobs[0]["object_id"] == id && jobs[0]["status"] == "SUCCEEDED",
        "{list}"
    );
    let status: Value =
        serde_json::from_slice(&t.plus_as(user, &["status", id, "--json"]).stdout).unwrap();
    assert_eq!(status["status"], "SUCCEEDED", "{status}");
    assert_eq!(status["username"], user, "{status}");
    let logs = t.plus_as(user, &["logs", id, "--attempt", "1"]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hello d'arcy\n");

    let alice: Value = serde_json::from_slice(&t.plus(&["list", "--json"]).stdout).unwrap();
    assert_eq!(
        alice["jobs"],
        serde_json::json!([]),
        "alice does not see it"
    );
}

/// One monitor pass over more unfinished jobs than DescribeTasks takes at
/// once (100 tasks a call) asks in batches of at most 100, covers every
/// task once, and settles every job whose task stopped. The 130 tasks are
/// real RunTask results; their records are written through the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_monitor_pass_describes_130_tasks_in_batches_of_100_and_settles_them_all() {
    use aws_sdk_ecs::types::{AwsVpcConfiguration, LaunchType, NetworkConfiguration};
    const JOBS: usize = 130;
    let t = Aws::new().await;
    // Set up straight on the emulator, so the proxy sees only the monitor.
    let ecs = aws_sdk_ecs::Client::new(&t.aws.sdk_config().await);
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder()
                .subnets(&t.subnet)
                .security_groups(&t.security_group)
                .build()
                .unwrap(),
        )
        .build();
    let mut arns = Vec::new();
    while arns.len() < JOBS {
        let out = ecs
            .run_task()
            .cluster(&t.cluster)
            .task_definition(&t.task_definition)
            .launch_type(LaunchType::Fargate)
            .network_configuration(network.clone())
            .count(10)
            .send()
            .await
            .unwrap();
        arns.extend(out.tasks().iter().filter_map(|t| t.task_arn.clone()));
    }
    assert_eq!(arns.len(), JOBS);
    let mut ids = Vec::new();
    for arn in &arns {
        let mut job = plus_jobs::job::new_job(
            &plus_jobs::JobId::generate(),
            "alice",
            plus_jobs::RunMode::RunScript,
            plus_jobs::Timestamp::now(),
        );
        job.script = Some(plus_jobs::Script {
            source: "echo hi\n".into(),
            ..plus_jobs::Script::default()
        });
        job.fargate_task_arn = arn.clone();
        t.backend.jobs.create_job(&job).await.unwrap();
        ecs.stop_task()
            .cluster(&t.cluster)
            .task(arn)
            .reason("Task stopped by user")
            .send()
            .await
            .unwrap();
        ids.push(job.object_id);
    }

    let out = t.plus(&["monitor", "--once", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batches: Vec<Vec<String>> = t
        .proxy
        .bodies("ECS:DescribeTasks")
        .iter()
        .map(|b| {
            let body: Value = serde_json::from_str(b).unwrap();
            serde_json::from_value(body["tasks"].clone()).unwrap()
        })
        .collect();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, [100, 30], "DescribeTasks takes at most 100 tasks");
    let mut described: Vec<String> = batches.concat();
    described.sort();
    let mut want = arns.clone();
    want.sort();
    assert_eq!(described, want, "every task is described once");

    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let settled = report["settled"].as_array().unwrap();
    assert_eq!(settled.len(), JOBS, "{report}");
    for id in &ids {
        let job = t.job(id).await;
        assert_eq!(job.status(), JobStatus::Failed, "{id}");
        assert!(
            job.error.contains("without recording an end"),
            "{}",
            job.error
        );
    }
}
