//! Work waits instead of failing, on the AWS backend, through the real
//! `plus` binary against `moto_server`: a launch over `PLUS_MAX_VCPUS` is
//! QUEUED and starts no task; a RunTask refused for capacity, quota or
//! throttling leaves the job QUEUED (never FAILED); `plus monitor --once`
//! starts queued jobs once capacity frees; two dispatchers at once start
//! each job once.
//!
//! The emulator never runs out of capacity, never reaches a quota and never
//! throttles: a fault proxy in front of it answers RunTask as ECS does in
//! those cases (`failures: [{reason}]` in a 200 answer for capacity and
//! the vCPU quota, a `ThrottlingException` for the rate) and counts the
//! RunTask requests that reach it.

use std::{process::Output, time::Instant};

use plus_jobs::{backend::AwsConfig, Backend, BackendConfig, Expect, Job, JobStatus, Timestamp};
use plus_testkit::{create_ecs, default_security_group, default_subnet, Fault, FaultProxy, Moto};
use serde_json::Value;

const PLUS: &str = env!("CARGO_BIN_EXE_plus");

struct Aws {
    aws: AwsConfig,
    cluster: String,
    task_definition: String,
    backend: Backend,
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
        Aws {
            subnet: default_subnet(&moto.endpoint).await,
            security_group: default_security_group(&moto.endpoint).await,
            aws,
            cluster,
            task_definition,
            backend,
            proxy,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, max_vcpus: &str, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(PLUS);
        cmd.args(["--backend", "aws"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("PLUS_USER", "alice")
            .env("PLUS_MAX_VCPUS", max_vcpus)
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
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        cmd
    }

    fn plus(&self, max_vcpus: &str, args: &[&str]) -> Output {
        self.cmd(max_vcpus, args).output().unwrap()
    }

    /// Launches a 1-vCPU job under a budget of `max_vcpus`; returns the
    /// launch's answer.
    fn launch(&self, max_vcpus: &str) -> Value {
        let script = self.dir.path().join("job.sh");
        std::fs::write(&script, "echo hi\n").unwrap();
        let args = [
            "launch",
            script.to_str().unwrap(),
            "--cpu",
            "1024",
            "--memory",
            "2048",
            "--json",
        ];
        let out = self.plus(max_vcpus, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    async fn job(&self, id: &str) -> Job {
        self.backend.jobs.get_job(id).await.unwrap().unwrap()
    }

    /// Ends job `id` as its worker would, freeing its capacity.
    async fn finish(&self, id: &str) {
        let patch = Job {
            status: JobStatus::Succeeded as i32,
            completed_at: Timestamp::now().to_string(),
            ..Job::default()
        };
        let expect = Expect::status([JobStatus::Initializing, JobStatus::Running]);
        self.backend
            .jobs
            .update_job(id, &expect, &patch)
            .await
            .unwrap();
    }

    fn run_tasks(&self) -> usize {
        self.proxy
            .seen()
            .iter()
            .filter(|s| *s == "ECS:RunTask")
            .count()
    }
}

fn id_of(launched: &Value) -> String {
    launched["job_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_over_the_vcpu_budget_waits_and_the_monitor_starts_it() {
    let t = Aws::new().await;
    let first = t.launch("1");
    assert_eq!(first["status"], "INITIALIZING");
    let second = t.launch("1");
    assert_eq!(second["status"], "QUEUED");
    assert_eq!(t.run_tasks(), 1, "a queued launch starts no task");
    let queued = t.job(&id_of(&second)).await;
    assert_eq!(queued.queue_reason, "1 of 1 vCPUs in use; next in line");
    assert!(queued.fargate_task_arn.is_empty());

    // Nothing frees: the monitor leaves it waiting.
    let out = t.plus("1", &["monitor", "--once", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.job(&id_of(&second)).await.status(), JobStatus::Queued);
    assert_eq!(t.run_tasks(), 1);

    // The first job ends: the next monitor pass starts the queued one.
    t.finish(&id_of(&first)).await;
    let out = t.plus("1", &["monitor", "--once", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("admitted from the queue"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let started = t.job(&id_of(&second)).await;
    assert_eq!(started.status(), JobStatus::Initializing);
    assert!(started.fargate_task_arn.starts_with("arn:aws:ecs:"));
    assert!(started.queue_reason.is_empty(), "{}", started.queue_reason);
    assert_eq!(t.run_tasks(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtask_refused_for_capacity_or_throttled_leaves_the_job_queued() {
    let t = Aws::new().await;
    // ECS's answers when Fargate has no room or the account's vCPU quota is
    // reached (a 200 with `failures`), and when RunTask's rate is exceeded
    // (ThrottlingException): injected by the proxy, as the emulator cannot.
    let capacity = r#"{"tasks":[],"failures":[{"reason":"Capacity is unavailable at this time. Please try again later or in a different availability zone"}]}"#;
    let quota = r#"{"tasks":[],"failures":[{"reason":"You've reached the limit on the number of vCPUs you can run concurrently"}]}"#;
    // More refusals than the launcher's (and the SDK's) retries take.
    t.proxy.inject_n("ECS:RunTask", Fault::Throttle, 3);
    t.proxy
        .inject_n("ECS:RunTask", Fault::Respond(200, capacity.into()), 2);
    t.proxy
        .inject_n("ECS:RunTask", Fault::Respond(200, quota.into()), 30);
    let launched = t.launch("6");
    assert!(
        t.proxy.pending_faults() > 0,
        "it gave up before the faults ran out"
    );
    t.proxy.clear_faults();
    assert_eq!(launched["status"], "QUEUED", "never FAILED for capacity");
    let job = t.job(&id_of(&launched)).await;
    assert_eq!(job.status(), JobStatus::Queued);
    assert!(
        job.queue_reason
            .contains("You've reached the limit on the number of vCPUs"),
        "{}",
        job.queue_reason
    );
    assert!(job.error.is_empty(), "{}", job.error);

    // Room again: the monitor's dispatch starts it.
    let out = t.plus("6", &["monitor", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = t.job(&id_of(&launched)).await;
    assert_eq!(job.status(), JobStatus::Initializing);
    assert!(job.fargate_task_arn.starts_with("arn:aws:ecs:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_at_once_start_each_queued_job_once() {
    let t = Aws::new().await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(id_of(&t.launch("2")));
    }
    assert_eq!(t.run_tasks(), 2);
    for id in &ids[..2] {
        t.finish(id).await;
    }
    // Two monitors at once, each with room for everything.
    let started = Instant::now();
    let a = t.cmd("100", &["monitor", "--once"]).spawn().unwrap();
    let b = t.cmd("100", &["monitor", "--once"]).spawn().unwrap();
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
    }
    let mut tasks = Vec::new();
    for id in &ids[2..] {
        let job = t.job(id).await;
        assert_eq!(job.status(), JobStatus::Initializing, "{id}");
        tasks.push(job.fargate_task_arn);
    }
    assert_eq!(
        t.run_tasks(),
        6,
        "each of the 4 queued jobs was started once (plus the first 2), in {:?}",
        started.elapsed()
    );
    let tokens: std::collections::HashSet<String> = t
        .proxy
        .bodies("ECS:RunTask")
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap()["clientToken"].to_string())
        .collect();
    assert_eq!(tokens.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_job_whose_task_never_started_is_started_by_the_monitor() {
    let t = Aws::new().await;
    // A dispatcher that wrote QUEUED -> INITIALIZING and then died before
    // RunTask leaves this record: INITIALIZING, no task, long admitted
    // (the monitor below is told to wait years before failing a start).
    let id = plus_jobs::JobId::generate();
    let then = Timestamp::parse("2026-01-01T00:00:00.000Z").unwrap();
    let mut job = plus_jobs::job::new_job(&id, "alice", plus_jobs::RunMode::RunScript, then);
    job.script = Some(plus_jobs::Script {
        source: "echo hi\n".into(),
        ..plus_jobs::Script::default()
    });
    t.backend.jobs.create_job(&job).await.unwrap();

    let args = ["monitor", "--once", "--start-timeout", "999999999"];
    let out = t.plus("6", &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = t.job(id.as_str()).await;
    assert_eq!(
        job.status(),
        JobStatus::Initializing,
        "not FAILED: {}",
        job.error
    );
    assert!(job.fargate_task_arn.starts_with("arn:aws:ecs:"));
    assert_eq!(t.run_tasks(), 1);
}
