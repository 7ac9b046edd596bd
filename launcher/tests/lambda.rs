//! The real `plus-lambda` binary end to end: a small stand-in for the Lambda
//! Runtime API (the few routes a runtime uses) feeds it invocations, and the
//! launcher behind it talks to `moto_server`. Proves the packaging, not only
//! the handler, and measures the init time.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    routing::{get, post},
    Router,
};
use plus_jobs::{Backend, BackendConfig, JobStatus};
use plus_testkit::{create_ecs, default_security_group, default_subnet, FaultProxy, Moto};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const LAMBDA: &str = env!("CARGO_BIN_EXE_plus-lambda");

#[derive(Clone)]
struct RuntimeApi {
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    first_poll: Arc<Mutex<Option<Instant>>>,
    results: mpsc::UnboundedSender<(String, String, Value)>,
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    api.first_poll
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    loop {
        if let Some((id, event)) = api.events.lock().unwrap().pop_front() {
            let mut headers = HeaderMap::new();
            headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            let deadline = (std::time::SystemTime::now() + Duration::from_secs(60))
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis();
            headers.insert(
                "lambda-runtime-deadline-ms",
                deadline.to_string().parse().unwrap(),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:plus"
                    .parse()
                    .unwrap(),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793".parse().unwrap(),
            );
            return (headers, event.to_string());
        }
        // No more invocations: hold the long poll, as Lambda does.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST .../invocation/{id}/response` and `.../{id}/error`.
async fn outcome(
    State(api): State<RuntimeApi>,
    Path((id, kind)): Path<(String, String)>,
    body: String,
) -> &'static str {
    let _ = api.results.send((
        id,
        kind,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ));
    "{}"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_serves_operations_through_the_runtime_api() {
    let moto = Moto::shared();
    let aws = moto.provision().await;
    let (cluster, task_definition) = create_ecs(&aws).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let subnet = default_subnet(&moto.endpoint).await;
    let sg = default_security_group(&moto.endpoint).await;

    // A job whose worker died without a word an hour ago and whose task ECS
    // no longer knows: the monitor operation must settle it.
    let backend = Backend::open(&BackendConfig::Aws(aws.clone()))
        .await
        .unwrap();
    let lost = plus_jobs::Job {
        status: JobStatus::Running as i32,
        fargate_task_arn: format!(
            "arn:aws:ecs:{}:123456789012:task/{cluster}/0123456789abcdef",
            aws.region
        ),
        lease: "lost-worker".into(),
        started_at: "2026-01-01T00:00:00.000Z".into(),
        heartbeat_at: "2026-01-01T00:00:00.000Z".into(),
        ..plus_jobs::job::new_job(
            &plus_jobs::JobId::parse("lambda-lost-1").unwrap(),
            "alice",
            plus_jobs::RunMode::RunScript,
            plus_jobs::Timestamp::parse("2026-01-01T00:00:00.000Z").unwrap(),
        )
    };
    backend.jobs.create_job(&lost).await.unwrap();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        events: Arc::new(Mutex::new(VecDeque::from([
            (
                "req-1".to_owned(),
                json!({"op": "launch", "username": "alice", "script": "echo hi", "job_id": "lambda-job-1"}),
            ),
            (
                "req-2".to_owned(),
                json!({"op": "status", "username": "alice", "job_id": "lambda-job-1"}),
            ),
            (
                "req-3".to_owned(),
                json!({"op": "status", "username": "mallory", "job_id": "lambda-job-1"}),
            ),
            ("req-4".to_owned(), json!({"op": "monitor"})),
        ]))),
        first_poll: Arc::default(),
        results: tx,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(outcome))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let started = Instant::now();
    let mut child = tokio::process::Command::new(LAMBDA)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "plus")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "group")
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
        .env("SECURITY_GROUPS", &sg)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let mut results = Vec::new();
    while results.len() < 4 {
        let r = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("the function answers")
            .unwrap();
        results.push(r);
    }
    let init = api.first_poll.lock().unwrap().unwrap() - started;
    child.kill().await.unwrap();

    assert_eq!(results[0].0, "req-1");
    assert_eq!(results[0].1, "response", "{:?}", results[0]);
    assert_eq!(results[0].2["job_id"], "lambda-job-1");
    assert_eq!(results[1].2["status"], "INITIALIZING");
    assert!(results[1].2["fargate_task_arn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:ecs:"));
    assert_eq!(results[2].1, "error");
    assert!(
        results[2].2.to_string().contains("was not found"),
        "{:?}",
        results[2]
    );
    assert_eq!(results[3].1, "response");
    let settled = results[3].2["settled"].as_array().expect("a list");
    let lost = settled
        .iter()
        .find(|s| s["job_id"] == "lambda-lost-1")
        .unwrap_or_else(|| panic!("the lost job is settled: {settled:?}"));
    assert_eq!(lost["action"], "failed", "{lost}");
    assert!(
        lost["reason"]
            .as_str()
            .unwrap()
            .contains("ECS task is gone"),
        "{lost}"
    );
    assert!(
        settled.iter().all(|s| s["job_id"] != "lambda-job-1"),
        "the job just launched is left alone: {settled:?}"
    );
    assert_eq!(
        backend
            .jobs
            .get_job("lambda-lost-1")
            .await
            .unwrap()
            .unwrap()
            .status(),
        JobStatus::Failed
    );
    assert_eq!(
        backend
            .jobs
            .get_job("lambda-job-1")
            .await
            .unwrap()
            .unwrap()
            .status(),
        JobStatus::Initializing
    );
    eprintln!("REPORT plus-lambda init (process start to first poll of the Runtime API): {init:?}");
}

/// A stand-in Lambda Runtime API on port 0, and the queue it serves.
async fn runtime_api() -> (
    RuntimeApi,
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<(String, String, Value)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        events: Arc::default(),
        first_poll: Arc::default(),
        results: tx,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(outcome))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (api, addr, rx)
}

/// Invokes the function once with `event` and returns (kind, answer).
async fn invoke(
    api: &RuntimeApi,
    rx: &mut mpsc::UnboundedReceiver<(String, String, Value)>,
    id: &str,
    event: Value,
) -> (String, Value) {
    api.events.lock().unwrap().push_back((id.to_owned(), event));
    let (got, kind, answer) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("the function answers")
        .unwrap();
    assert_eq!(got, id);
    (kind, answer)
}

/// An "ECS Task State Change" event for a STOPPED task, in the shape of
/// AWS's documented example (ECS developer guide, "Amazon ECS task state
/// change events"): the emulator sends no ECS events, so the test invokes
/// the function with the event EventBridge would deliver.
fn stopped_event(
    region: &str,
    cluster_arn: &str,
    task_arn: &str,
    job_id: &str,
    stop_code: &str,
    stopped_reason: &str,
    container: Value,
) -> Value {
    json!({
        "version": "0",
        "id": "3317b2af-7005-947d-b652-f55e762e571a",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "123456789012",
        "time": "2026-12-01T11:30:00Z",
        "region": region,
        "resources": [task_arn],
        "detail": {
            "attachments": [],
            "availabilityZone": format!("{region}a"),
            "clusterArn": cluster_arn,
            "containers": [container],
            "createdAt": "2026-12-01T11:20:00.000Z",
            "launchType": "FARGATE",
            "cpu": "256",
            "memory": "512",
            "desiredStatus": "STOPPED",
            "group": "family:plus-worker",
            "lastStatus": "STOPPED",
            "overrides": {
                "containerOverrides": [{
                    "name": "worker",
                    "environment": [
                        {"name": "RUN_MODE", "value": "RUN_SCRIPT"},
                        {"name": "JOB_ID", "value": job_id}
                    ]
                }]
            },
            "startedBy": "plus-launcher",
            "stopCode": stop_code,
            "stoppedAt": "2026-12-01T11:29:58.000Z",
            "stoppedReason": stopped_reason,
            "stoppingAt": "2026-12-01T11:29:50.000Z",
            "taskArn": task_arn,
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/plus-worker:1",
            "updatedAt": "2026-12-01T11:29:58.000Z",
            "version": 5
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_tasks_event_settles_its_job_in_one_invocation() {
    let moto = Moto::shared();
    let aws = moto.provision().await;
    let (cluster, task_definition) = create_ecs(&aws).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let subnet = default_subnet(&moto.endpoint).await;
    let sg = default_security_group(&moto.endpoint).await;
    let backend = Backend::open(&BackendConfig::Aws(aws.clone()))
        .await
        .unwrap();
    let (api, addr, mut rx) = runtime_api().await;
    let mut child = tokio::process::Command::new(LAMBDA)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "plus")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "group")
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
        .env("SECURITY_GROUPS", &sg)
        // Room for two default-sized tasks: a third launch waits.
        .env("PLUS_MAX_VCPUS", "0.5")
        .env("PLUS_DEFAULT_TASK_VCPUS", "0.25")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let cluster_arn = format!("arn:aws:ecs:{}:123456789012:cluster/{cluster}", aws.region);
    let task_of = |id: &'static str| {
        let jobs = backend.jobs.clone();
        async move { jobs.get_job(id).await.unwrap().unwrap().fargate_task_arn }
    };
    for id in ["ev-spot", "ev-oom"] {
        let (kind, out) = invoke(&api, &mut rx, id, json!({"op": "launch", "username": "alice", "script": "echo hi", "job_id": id, "max_attempts": 3})).await;
        assert_eq!(kind, "response", "{out}");
    }

    // Fargate Spot took the task back: relaunched as attempt 2 at once.
    let spot_task = task_of("ev-spot").await;
    assert!(spot_task.starts_with("arn:aws:ecs:"), "{spot_task}");
    let spot = stopped_event(
        &aws.region,
        &cluster_arn,
        &spot_task,
        "ev-spot",
        "SpotInterruption",
        "Your Spot Task was interrupted.",
        json!({"name": "worker", "exitCode": 143, "lastStatus": "STOPPED"}),
    );
    let (kind, out) = invoke(&api, &mut rx, "e-1", spot.clone()).await;
    assert_eq!(kind, "response", "{out}");
    assert_eq!(out["settled"]["action"], "relaunched", "{out}");
    let job = backend.jobs.get_job("ev-spot").await.unwrap().unwrap();
    assert_eq!(job.attempt, Some(2), "{job:?}");
    assert_eq!(job.status(), JobStatus::Initializing);
    assert_ne!(job.fargate_task_arn, spot_task, "a new task runs attempt 2");
    assert_eq!(job.attempts.len(), 1, "attempt 1 is recorded: {job:?}");

    // A second delivery of the same event changes nothing.
    let (kind, out) = invoke(&api, &mut rx, "e-2", spot).await;
    assert_eq!(kind, "response", "{out}");
    assert!(
        out["ignored"].as_str().unwrap().contains("earlier task"),
        "{out}"
    );
    let again = backend.jobs.get_job("ev-spot").await.unwrap().unwrap();
    assert_eq!(again.attempt, Some(2));
    assert_eq!(again.fargate_task_arn, job.fargate_task_arn);

    // Another cluster's task: ignored, the job is left alone.
    let other = stopped_event(
        &aws.region,
        "arn:aws:ecs:us-east-1:123456789012:cluster/someone-else",
        &job.fargate_task_arn,
        "ev-spot",
        "EssentialContainerExited",
        "Essential container in task exited",
        json!({"name": "worker", "exitCode": 1}),
    );
    let (_, out) = invoke(&api, &mut rx, "e-3", other).await;
    assert!(
        out["ignored"].as_str().unwrap().contains("another cluster"),
        "{out}"
    );
    assert_eq!(
        backend
            .jobs
            .get_job("ev-spot")
            .await
            .unwrap()
            .unwrap()
            .status(),
        JobStatus::Initializing
    );

    // A task someone else started (a service's, say): ignored.
    let mut foreign = stopped_event(
        &aws.region,
        &cluster_arn,
        &job.fargate_task_arn,
        "ev-spot",
        "EssentialContainerExited",
        "Essential container in task exited",
        json!({"name": "worker", "exitCode": 1}),
    );
    foreign["detail"]["startedBy"] = json!("ecs-svc/1234567890123456789");
    let (_, out) = invoke(&api, &mut rx, "e-3b", foreign).await;
    assert!(
        out["ignored"]
            .as_str()
            .unwrap()
            .contains("not plus-launcher"),
        "{out}"
    );

    // Out of memory: FAILED with the reason that says what to fix.
    let oom = stopped_event(
        &aws.region,
        &cluster_arn,
        &task_of("ev-oom").await,
        "ev-oom",
        "EssentialContainerExited",
        "Essential container in task exited",
        json!({"name": "worker", "exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage", "lastStatus": "STOPPED"}),
    );
    let (_, out) = invoke(&api, &mut rx, "e-4", oom).await;
    assert_eq!(out["settled"]["action"], "failed", "{out}");
    let job = backend.jobs.get_job("ev-oom").await.unwrap().unwrap();
    assert_eq!(job.status(), JobStatus::Failed);
    assert!(job.error.contains("more --memory"), "{}", job.error);

    // Capacity freed by a task whose job ended on its own (the worker wrote
    // SUCCEEDED, then the task stopped) goes to the queue at that event.
    for id in ["ev-done", "ev-waits"] {
        let (kind, out) = invoke(
            &api,
            &mut rx,
            id,
            json!({"op": "launch", "username": "alice", "script": "echo hi", "job_id": id}),
        )
        .await;
        assert_eq!(kind, "response", "{out}");
    }
    let waits = backend.jobs.get_job("ev-waits").await.unwrap().unwrap();
    assert_eq!(waits.status(), JobStatus::Queued, "{waits:?}");
    let done_task = task_of("ev-done").await;
    let patch = plus_jobs::Job {
        status: JobStatus::Succeeded as i32,
        completed_at: plus_jobs::Timestamp::now().to_string(),
        ..plus_jobs::Job::default()
    };
    backend
        .jobs
        .update_job(
            "ev-done",
            &plus_jobs::Expect::status([JobStatus::Initializing]),
            &patch,
        )
        .await
        .unwrap();
    let done = stopped_event(
        &aws.region,
        &cluster_arn,
        &done_task,
        "ev-done",
        "EssentialContainerExited",
        "Essential container in task exited",
        json!({"name": "worker", "exitCode": 0, "lastStatus": "STOPPED"}),
    );
    let (_, out) = invoke(&api, &mut rx, "e-5", done).await;
    assert!(
        out["ignored"]
            .as_str()
            .unwrap()
            .contains("already SUCCEEDED"),
        "{out}"
    );
    assert_eq!(out["started"], json!(["ev-waits"]), "{out}");
    let started = backend.jobs.get_job("ev-waits").await.unwrap().unwrap();
    assert_eq!(started.status(), JobStatus::Initializing);
    assert!(started.fargate_task_arn.starts_with("arn:aws:ecs:"));

    // A task that fails at once can stop before its launcher has written the
    // task's ARN on the record: the event waits for that write instead of
    // being dropped (which would leave the job to the monitor's next pass).
    let early = plus_jobs::Job {
        object_id: "ev-early".into(),
        fargate_task_arn: String::new(),
        attempts: Vec::new(),
        ..started.clone()
    };
    backend.jobs.create_job(&early).await.unwrap();
    let early_task =
        format!("{cluster_arn}/0f1e2d3c4b5a69788796a5b4c3d2e1f0").replace(":cluster/", ":task/");
    let late_write = {
        let (jobs, arn) = (backend.jobs.clone(), early_task.clone());
        tokio::spawn(async move {
            // The launcher's write after RunTask answered, a moment late.
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            let patch = plus_jobs::Job {
                fargate_task_arn: arn,
                ..plus_jobs::Job::default()
            };
            jobs.update_job(
                "ev-early",
                &plus_jobs::Expect::status([JobStatus::Initializing]),
                &patch,
            )
            .await
            .unwrap();
        })
    };
    let failed_to_start = stopped_event(
        &aws.region,
        &cluster_arn,
        &early_task,
        "ev-early",
        "TaskFailedToStart",
        "ResourceInitializationError: failed to configure ENI: attachment timed out: dial tcp 10.0.0.1:443: i/o timeout",
        json!({"name": "worker", "lastStatus": "STOPPED"}),
    );
    let (kind, out) = invoke(&api, &mut rx, "e-6", failed_to_start).await;
    late_write.await.unwrap();
    assert_eq!(kind, "response", "{out}");
    assert_eq!(out["settled"]["action"], "relaunched", "{out}");
    let early = backend.jobs.get_job("ev-early").await.unwrap().unwrap();
    assert_eq!(early.attempt, Some(2), "{early:?}");
    assert_ne!(early.fargate_task_arn, early_task);
    child.kill().await.unwrap();
}

/// A schedule made through the function is an EventBridge Scheduler
/// schedule whose target input, delivered to the function as EventBridge
/// would (the scheduled time filled in), launches one job however often it
/// is delivered; deleting it removes the EventBridge schedule too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedules_target_input_launches_one_job_through_the_function() {
    let moto = Moto::shared();
    let aws = moto.provision().await;
    let (cluster, task_definition) = create_ecs(&aws).await;
    let subnet = default_subnet(&moto.endpoint).await;
    let sg = default_security_group(&moto.endpoint).await;
    let scheduler = aws_sdk_scheduler::Client::new(&aws.sdk_config().await);
    let group = format!("plus-worker-{}", uuid::Uuid::now_v7().simple());
    scheduler
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .unwrap();
    let backend = Backend::open(&BackendConfig::Aws(aws.clone()))
        .await
        .unwrap();
    let (api, addr, mut rx) = runtime_api().await;
    let function_arn = "arn:aws:lambda:us-east-1:123456789012:function:plus-launcher";
    let mut child = tokio::process::Command::new(LAMBDA)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "plus-launcher")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "group")
        .env("AWS_REGION", &aws.region)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("DYNAMO_TABLE", &aws.table)
        .env("DYNAMO_STREAMS_TABLE", &aws.streams_table)
        .env("PRIMARY_BUCKET", &aws.bucket)
        .env("ECS_CLUSTER", &cluster)
        .env("TASK_DEFINITION", &task_definition)
        .env("SUBNETS", &subnet)
        .env("SECURITY_GROUPS", &sg)
        .env("PLUS_SCHEDULE_GROUP", &group)
        .env(
            "PLUS_SCHEDULER_ROLE_ARN",
            "arn:aws:iam::123456789012:role/plus-scheduler",
        )
        .env("PLUS_LAUNCHER_ARN", function_arn)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let (kind, created) = invoke(&api, &mut rx, "s-1", json!({"op": "schedule_create", "username": "alice", "name": "hourly", "expression": "rate(1 hour)", "launch": {"script": "echo hourly", "params": {"n": 3}}})).await;
    assert_eq!(kind, "response", "{created}");
    let aws_name = created["aws_name"].as_str().unwrap().to_owned();
    let got = scheduler
        .get_schedule()
        .name(&aws_name)
        .group_name(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(got.schedule_expression(), Some("rate(1 hour)"));
    let target = got.target().unwrap();
    assert_eq!(target.arn(), function_arn);
    let delivered: Value = serde_json::from_str(
        &target
            .input()
            .unwrap()
            .replace("<aws.scheduler.scheduled-time>", "2030-01-31T09:00:00Z"),
    )
    .unwrap();
    let (kind, first) = invoke(&api, &mut rx, "s-2", delivered.clone()).await;
    assert_eq!(kind, "response", "{first}");
    assert_eq!(first["created"], true, "{first}");
    let (kind, again) = invoke(&api, &mut rx, "s-3", delivered).await;
    assert_eq!(kind, "response", "{again}");
    assert_eq!(
        again["created"], false,
        "a repeated delivery launches nothing"
    );
    assert_eq!(again["job_id"], first["job_id"]);
    let jobs = backend
        .jobs
        .list_jobs("alice/jobs", None, 100)
        .await
        .unwrap()
        .items;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].object_id, first["job_id"].as_str().unwrap());
    assert!(
        jobs[0].fargate_task_arn.starts_with("arn:aws:ecs:"),
        "its task was started"
    );

    let (kind, out) = invoke(
        &api,
        &mut rx,
        "s-4",
        json!({"op": "schedule_delete", "username": "alice", "name": "hourly"}),
    )
    .await;
    assert_eq!(kind, "response", "{out}");
    assert!(scheduler
        .get_schedule()
        .name(&aws_name)
        .group_name(&group)
        .send()
        .await
        .is_err());
    child.kill().await.unwrap();
}
