//! Job State Change events, end to end.
//!
//! - AWS (against `moto_server`, which has EventBridge with SQS targets):
//!   a rule on the bus `EVENT_BUS` names sends `source: plus-worker` to an
//!   SQS queue; the real `plus` launches and cancels, and the real worker
//!   runs the task's environment; every transition arrives on the queue
//!   with its detail, whoever wrote it (launcher or worker). A bus the
//!   role may not publish to (an `AccessDeniedException` injected by the
//!   test proxy, which the emulator cannot produce) costs the job nothing.
//! - Local: `plus serve` streams the caller's own changes as server-sent
//!   events (`GET /events`), and resumes from `Last-Event-ID`.

mod http_support;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    process::Output,
    time::{Duration, Instant},
};

use http_support::Server;
use plus_jobs::backend::AwsConfig;
use plus_testkit::{create_ecs, default_security_group, default_subnet, Fault, FaultProxy, Moto};
use serde_json::{json, Value};

const PLUS: &str = env!("CARGO_BIN_EXE_plus");

struct Aws {
    aws: AwsConfig,
    cluster: String,
    task_definition: String,
    subnet: String,
    security_group: String,
    proxy: FaultProxy,
    bus: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    dir: tempfile::TempDir,
}

impl Aws {
    /// Tables, a cluster, a bus and a queue that receives what a rule on
    /// the bus matches: `source: plus-worker`.
    async fn new() -> Aws {
        let moto = Moto::shared();
        let aws = moto.provision().await;
        let (cluster, task_definition) = create_ecs(&aws).await;
        let sdk = aws.sdk_config().await;
        let suffix = aws.table.trim_start_matches("jobs-").to_owned();
        let bus = format!("plus-{suffix}");
        let events = aws_sdk_eventbridge::Client::new(&sdk);
        events.create_event_bus().name(&bus).send().await.unwrap();
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("q-{suffix}"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        events
            .put_rule()
            .name("plus-jobs")
            .event_bus_name(&bus)
            .event_pattern(json!({ "source": ["plus-worker"] }).to_string())
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("plus-jobs")
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(queue_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        Aws {
            proxy: FaultProxy::start(&moto.endpoint).await,
            subnet: default_subnet(&moto.endpoint).await,
            security_group: default_security_group(&moto.endpoint).await,
            aws,
            cluster,
            task_definition,
            bus,
            sqs,
            queue_url,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn plus(&self, args: &[&str]) -> Output {
        self.plus_with(args, &[])
    }

    fn plus_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        std::process::Command::new(PLUS)
            .args(["--backend", "aws"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("PLUS_USER", "alice")
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
            .env("EVENT_BUS", &self.bus)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    fn launch(&self, script: &str) -> String {
        self.launch_with(script, &[])
    }

    fn launch_with(&self, script: &str, env: &[(&str, &str)]) -> String {
        let path = self.dir.path().join(format!("s{}.sh", script.len()));
        std::fs::write(&path, script).unwrap();
        let out = self.plus_with(&["launch", path.to_str().unwrap(), "--json"], env);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["job_id"].as_str().unwrap().to_owned()
    }

    /// The environment job `id`'s task was started with, as the container
    /// would see it (plus the emulator's address and the role's keys).
    async fn task_env(&self, id: &str) -> Vec<(String, String)> {
        let backend = plus_jobs::Backend::open(&plus_jobs::BackendConfig::Aws(self.aws.clone()))
            .await
            .unwrap();
        let job = backend.jobs.get_job(id).await.unwrap().unwrap();
        let ecs = aws_sdk_ecs::Client::new(&self.aws.sdk_config().await);
        let task = ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(&job.fargate_task_arn)
            .send()
            .await
            .unwrap()
            .tasks
            .unwrap()
            .remove(0);
        let mut env: Vec<(String, String)> = task.overrides.unwrap().container_overrides()[0]
            .environment()
            .iter()
            .map(|kv| (kv.name().unwrap().into(), kv.value().unwrap().into()))
            .collect();
        env.push(("AWS_ENDPOINT_URL".into(), self.proxy.endpoint.clone()));
        env.push(("AWS_ACCESS_KEY_ID".into(), "testing".into()));
        env.push(("AWS_SECRET_ACCESS_KEY".into(), "testing".into()));
        env.push(("PATH".into(), std::env::var("PATH").unwrap()));
        env.push((
            "PLUS_WORK_DIR".into(),
            self.dir.path().join("work").display().to_string(),
        ));
        env
    }

    /// Runs the worker with `env`; its exit status and its log.
    fn worker(&self, env: &[(String, String)]) -> (std::process::ExitStatus, String) {
        let out = std::process::Command::new(PLUS)
            .arg("worker")
            .env_clear()
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
        (out.status, log)
    }

    /// The details that reached the queue, until `done` holds of them all
    /// (within 30 s).
    async fn details_until(&self, seen: &mut Vec<Value>, done: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(seen) {
            assert!(
                Instant::now() < deadline,
                "the events never arrived; got {seen:#?}"
            );
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for m in out.messages() {
                let event: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                assert_eq!(event["source"], "plus-worker");
                assert_eq!(event["detail-type"], "Job State Change");
                seen.push(event["detail"].clone());
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The statuses `id` went through, in the order the events arrived.
fn statuses(details: &[Value], id: &str) -> Vec<String> {
    details
        .iter()
        .filter(|d| d["job_id"] == id)
        .map(|d| d["status"].as_str().unwrap().to_owned())
        .collect()
}

fn detail<'a>(details: &'a [Value], id: &str, status: &str) -> &'a Value {
    details
        .iter()
        .find(|d| d["job_id"] == id && d["status"] == status)
        .unwrap_or_else(|| panic!("no {status} event of {id} in {details:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_reaches_the_bus_from_whoever_made_it() {
    let t = Aws::new().await;
    let mut seen = Vec::new();

    // Launcher: INITIALIZING; worker: RUNNING, then SUCCEEDED with its
    // exit code and usage.
    let ok = t.launch("echo hi\n");
    let env = t.task_env(&ok).await;
    assert!(
        env.contains(&("EVENT_BUS".into(), t.bus.clone())),
        "the launcher tells the worker where to publish: {env:?}"
    );
    let (status, _) = t.worker(&env);
    assert!(status.success());
    t.details_until(&mut seen, |d| statuses(d, &ok).len() == 3)
        .await;
    assert_eq!(
        statuses(&seen, &ok),
        ["INITIALIZING", "RUNNING", "SUCCEEDED"]
    );
    let end = detail(&seen, &ok, "SUCCEEDED");
    assert_eq!(end["username"], "alice");
    assert_eq!(end["previous_status"], "RUNNING");
    assert_eq!(end["attempt"], 1);
    assert_eq!(end["exit_code"], 0);
    // The event carries the end the record shows.
    let record: Value = serde_json::from_slice(&t.plus(&["status", &ok, "--json"]).stdout).unwrap();
    assert!(
        record["completed_at"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{record}"
    );
    assert!(
        record["usage"]["vcpu_seconds"].as_f64().is_some(),
        "{record}"
    );
    assert_eq!(end["completed_at"], record["completed_at"], "{end}");
    assert_eq!(end["usage"], record["usage"], "{end}");
    assert_eq!(detail(&seen, &ok, "INITIALIZING")["previous_status"], "");

    // A script that fails: FAILED with the exit code and the error.
    let bad = t.launch("exit 3\n");
    let (status, _) = t.worker(&t.task_env(&bad).await);
    assert!(!status.success());
    t.details_until(&mut seen, |d| statuses(d, &bad).contains(&"FAILED".into()))
        .await;
    let failed = detail(&seen, &bad, "FAILED");
    assert_eq!(failed["exit_code"], 3);
    assert_eq!(failed["error"], "the script exited with code 3");

    // A launch whose RunTask fails for good: FAILED, from the launcher.
    let missing = r#"{"tasks":[],"failures":[{"arn":"arn:aws:ecs:us-east-1:123456789012:cluster/x","reason":"MISSING"}]}"#;
    t.proxy
        .inject("ECS:RunTask", Fault::Respond(200, missing.into()));
    let path = t.dir.path().join("never.sh");
    std::fs::write(&path, "echo never\n").unwrap();
    let out = t.plus(&["launch", path.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    t.details_until(&mut seen, |d| {
        d.iter()
            .any(|e| e["status"] == "FAILED" && e["error"].as_str().unwrap().contains("MISSING"))
    })
    .await;

    // A cancel: CANCELLED from INITIALIZING.
    let cancelled = t.launch("sleep 100\n");
    let out = t.plus(&["cancel", &cancelled]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    t.details_until(&mut seen, |d| {
        statuses(d, &cancelled).contains(&"CANCELLED".into())
    })
    .await;
    assert_eq!(
        detail(&seen, &cancelled, "CANCELLED")["previous_status"],
        "INITIALIZING"
    );

    // Admission: over the vCPU limit a launch is QUEUED (from the
    // launcher, with the reason), and the dispatcher of a monitor pass
    // admits it once capacity frees (QUEUED -> INITIALIZING).
    let one = [
        ("PLUS_MAX_VCPUS", "0.25"),
        ("PLUS_DEFAULT_TASK_VCPUS", "0.25"),
    ];
    let holder = t.launch_with("sleep 100\n", &one);
    let waiting = t.launch_with("echo later\n", &one);
    t.details_until(&mut seen, |d| {
        statuses(d, &waiting).contains(&"QUEUED".into())
    })
    .await;
    let queued = detail(&seen, &waiting, "QUEUED");
    assert!(
        queued["queue_reason"]
            .as_str()
            .unwrap()
            .contains("vCPUs in use"),
        "{queued}"
    );
    assert!(t.plus(&["cancel", &holder]).status.success());
    let out = t.plus_with(&["monitor", "--once"], &one);
    assert!(out.status.success(), "{}", text(&out.stderr));
    t.details_until(&mut seen, |d| {
        statuses(d, &waiting).contains(&"INITIALIZING".into())
    })
    .await;
    assert_eq!(
        detail(&seen, &waiting, "INITIALIZING")["previous_status"],
        "QUEUED"
    );

    // An interruption: the worker's task is told to stop (SIGTERM).
    let long = t.launch("sleep 100\n");
    let env = t.task_env(&long).await;
    let mut child = std::process::Command::new(PLUS)
        .arg("worker")
        .env_clear()
        .envs(env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    t.details_until(&mut seen, |d| {
        statuses(d, &long).contains(&"RUNNING".into())
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
    t.details_until(&mut seen, |d| {
        statuses(d, &long).contains(&"INTERRUPTED".into())
    })
    .await;
    assert_eq!(
        detail(&seen, &long, "INTERRUPTED")["previous_status"],
        "RUNNING"
    );

    // Each (job, status, attempt) arrived once.
    let mut count: HashMap<String, usize> = HashMap::new();
    for d in &seen {
        *count
            .entry(format!("{} {} {}", d["job_id"], d["status"], d["attempt"]))
            .or_default() += 1;
    }
    assert!(count.values().all(|n| *n == 1), "{count:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_that_refuses_events_costs_the_job_nothing() {
    let t = Aws::new().await;
    let id = t.launch("echo fine\n");
    let env = t.task_env(&id).await;
    // The task role may not publish (as real AWS answers a missing
    // events:PutEvents grant; the emulator has no IAM checks).
    let denied = r#"{"__type":"AccessDeniedException","message":"User is not authorized to perform: events:PutEvents"}"#;
    for _ in 0..2 {
        t.proxy
            .inject("AWSEvents:PutEvents", Fault::Respond(400, denied.into()));
    }
    let started = Instant::now();
    let (status, log) = t.worker(&env);
    assert!(status.success(), "{log}");
    assert_eq!(t.proxy.pending_faults(), 0, "both publishes were refused");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "a refused publish is not retried for long: {:?}",
        started.elapsed()
    );
    assert!(
        log.contains("could not be published") && log.contains("AccessDeniedException"),
        "{log}"
    );
    let out = t.plus(&["status", &id, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "SUCCEEDED");
}

/// A `GET /events` stream of `server`, read line by line.
struct Stream {
    lines: BufReader<TcpStream>,
}

impl Stream {
    fn open(server: &Server, last_event_id: Option<&str>) -> Stream {
        let mut tcp = TcpStream::connect(&server.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut req = format!(
            "GET /events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n",
            server.addr, server.token
        );
        if let Some(id) = last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).unwrap();
        let mut lines = BufReader::new(tcp);
        let mut status = String::new();
        lines.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        Stream { lines }
    }

    /// The next event: (event, id, data).
    fn next(&mut self) -> (String, String, Value) {
        let (mut event, mut id, mut data) = (String::new(), String::new(), Value::Null);
        loop {
            let mut line = String::new();
            assert!(
                self.lines.read_line(&mut line).unwrap() > 0,
                "the stream ended"
            );
            let line = line.trim_end();
            if let Some(v) = line.strip_prefix("event: ") {
                event = v.to_owned();
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = serde_json::from_str(v).unwrap();
            } else if line.is_empty() && !event.is_empty() {
                return (event, id, data);
            }
        }
    }

    /// The statuses of job `id` until it reaches `last`, and every other
    /// job id seen meanwhile.
    fn statuses_until(&mut self, id: &str, last: &str) -> (Vec<String>, Vec<String>) {
        let (mut mine, mut others) = (Vec::new(), Vec::new());
        loop {
            let (event, _, data) = self.next();
            assert_eq!(event, "job-state-change");
            let status = data["status"].as_str().unwrap().to_owned();
            if data["job_id"] == id {
                mine.push(status.clone());
                if status == last {
                    return (mine, others);
                }
            } else {
                others.push(data["job_id"].as_str().unwrap().to_owned());
            }
        }
    }
}

#[test]
fn plus_serve_streams_the_callers_own_changes_and_resumes_from_the_last_id() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), "alice", &[]);
    let mut stream = Stream::open(&server, None);
    let (ready, from, _) = stream.next();
    assert_eq!(ready, "ready");

    // Bob's job in the same folder: never on alice's stream.
    let script = home.path().join("hi.sh");
    std::fs::write(&script, "echo hi\n").unwrap();
    let out = http_support::plus(home.path(), "bob")
        .args(["run", script.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bobs: Value = serde_json::from_slice(&out.stdout).unwrap();

    let a = server.call(
        "POST",
        "/jobs",
        Some(&json!({ "script": { "source": "echo hi\n" } })),
    );
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = a.body["object_id"].as_str().unwrap().to_owned();
    let (mine, others) = stream.statuses_until(&id, "SUCCEEDED");
    assert_eq!(mine, ["INITIALIZING", "RUNNING", "SUCCEEDED"]);
    assert!(
        others.is_empty(),
        "another user's job on the stream: {others:?} ({bobs})"
    );

    // A client that reconnects with the id it had gets what it missed.
    let mut again = Stream::open(&server, Some(&from));
    let (ready, _, _) = again.next();
    assert_eq!(ready, "ready");
    let (replayed, _) = again.statuses_until(&id, "SUCCEEDED");
    assert_eq!(replayed, mine);

    // Without a token: 401, nothing streamed.
    let a = http_support::request(&server.addr, "GET", "/events", &[], None);
    assert_eq!(a.status, 401);
}
