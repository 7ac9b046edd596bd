//! A burst on a simulated Fargate: `BENCH_JOBS` (default 1,000) short jobs
//! launched by 4 concurrent `plus launch` loops against an account with 6
//! vCPUs, on the AWS backend.
//!
//! The simulated Fargate is `moto_server` (which stores clusters and tasks
//! but runs nothing, and has no quota, rate or failures) behind the test
//! proxy, whose hooks play ECS's part:
//! - the vCPU quota: a RunTask that would take the running tasks over 6
//!   vCPUs is answered as ECS does (`failures: [{reason: "You've reached
//!   the limit on the number of vCPUs you can run concurrently"}]`);
//! - the rate: RunTask is a token bucket of 20 calls refilled at 20 a
//!   second; beyond it the answer is a `ThrottlingException`;
//! - transient start failures: 2 % of RunTasks are answered "Capacity is
//!   unavailable at this time" and 3 % of started tasks stop before their
//!   container starts (`TaskFailedToStart`, `ResourceInitializationError`
//!   with an i/o timeout);
//! - a started task runs the real worker (`plus worker`) with the task's
//!   environment (its container overrides, plus the emulator's address and
//!   credentials as the task role would give them) and is "running" until
//!   that process exits;
//! - when a task stops, ECS's "ECS Task State Change" event is delivered at
//!   once to the launcher's event handler (the code the launcher Lambda
//!   runs, [`Launcher::settle_task_event`], in this process), as
//!   EventBridge would within seconds.
//!   No `plus monitor` runs unless the queue stalls for 10 s (then one
//!   pass, counted and reported).
//!
//! Reported: that every job ended SUCCEEDED (none FAILED for capacity), the
//! most vCPUs running at once, RunTasks refused for the quota and the rate,
//! tasks started per job attempt (never more than one), the time to drain,
//! the median time from a task's end (capacity freed) to the next task's
//! start, and DynamoDB and ECS requests per job.
//!
//! `cargo bench -p plus-launcher --bench fargate_sim` (`BENCH_JOBS=100` for
//! a quick run).

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use plus_jobs::backend::AwsConfig;
use plus_launcher::{ops::monitor::event::EcsEvent, Launcher};
use plus_testkit::{
    create_ecs, default_security_group, default_subnet, FaultProxy, Hooks, Moto, ProxyOptions,
};
use serde_json::{json, Value};

const PLUS: &str = env!("CARGO_BIN_EXE_plus");
const QUOTA_VCPUS: f64 = 6.0;
const RATE_PER_S: f64 = 20.0;
const LAUNCHERS: usize = 4;
/// Per mille of RunTasks refused "Capacity is unavailable".
const CAPACITY_REFUSALS: u64 = 20;
/// Per mille of started tasks that stop before their container starts.
const START_FAILURES: u64 = 30;

/// What the simulated Fargate knows.
#[derive(Default)]
struct Sim {
    /// vCPUs of the tasks running now, by task ARN.
    running: HashMap<String, f64>,
    /// The most vCPUs running at once.
    peak_vcpus: f64,
    /// RunTask's token bucket: tokens, and when it was last filled.
    tokens: f64,
    filled: Option<Instant>,
    /// Answers already given, by client token (RunTask is idempotent).
    answered: HashMap<String, String>,
    /// vCPUs reserved for a RunTask being forwarded, by client token.
    reserved: HashMap<String, f64>,
    /// Tasks started per (job, attempt).
    starts: HashMap<(String, String), u32>,
    refused_quota: u32,
    refused_rate: u32,
    refused_capacity: u32,
    failed_to_start: u32,
    /// When a task ended while jobs were still waiting to start.
    freed: VecDeque<Instant>,
    /// Capacity freed -> next task started, in ms.
    refill_ms: Vec<f64>,
    /// Jobs whose worker exited 0.
    workers_ok: usize,
    workers_failed: usize,
    /// A small pseudo-random sequence (no dependency for one dice).
    seed: u64,
}

impl Sim {
    fn dice(&mut self) -> u64 {
        // xorshift64*
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) % 1000
    }

    fn running_vcpus(&self) -> f64 {
        self.running.values().sum::<f64>() + self.reserved.values().sum::<f64>()
    }
}

/// The env list of a RunTask's (or an event's) container overrides.
fn overrides_env(request: &Value) -> Vec<(String, String)> {
    request["overrides"]["containerOverrides"][0]["environment"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|kv| {
                    (
                        kv["name"].as_str().unwrap_or_default().to_owned(),
                        kv["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn env_value<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// A RunTask's vCPUs: its `cpu` override, else the task definition's 0.25.
fn task_vcpus(request: &Value) -> f64 {
    request["overrides"]["cpu"]
        .as_str()
        .and_then(|c| c.parse::<f64>().ok())
        .map_or(0.25, |units| units / 1024.0)
}

struct Bench {
    sim: Mutex<Sim>,
    /// Jobs not started yet (launched or not): capacity freed while this is
    /// above zero counts towards the refill time.
    unstarted: Mutex<usize>,
    /// The launcher the event handler runs (set once the proxy is up).
    handler: OnceLock<Launcher>,
    endpoint: OnceLock<String>,
    cluster_arn: OnceLock<String>,
    work: PathBuf,
}

impl Bench {
    /// The proxy's RunTask hook: quota, rate and capacity refusals.
    fn intercept(&self, target: &str, body: &[u8]) -> Option<(u16, String)> {
        if target != "ECS:RunTask" {
            return None;
        }
        let request: Value = serde_json::from_slice(body).unwrap_or_default();
        let token = request["clientToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut sim = self.sim.lock().unwrap();
        if let Some(answer) = sim.answered.get(&token) {
            return Some((200, answer.clone()));
        }
        let now = Instant::now();
        let elapsed = sim.filled.map_or(RATE_PER_S, |t| {
            now.duration_since(t).as_secs_f64() * RATE_PER_S
        });
        sim.tokens = (sim.tokens + elapsed).min(RATE_PER_S);
        sim.filled = Some(now);
        if sim.tokens < 1.0 {
            sim.refused_rate += 1;
            return Some((
                400,
                json!({"__type": "ThrottlingException", "message": "Rate exceeded"}).to_string(),
            ));
        }
        sim.tokens -= 1.0;
        let vcpus = task_vcpus(&request);
        let failure = |reason: &str| {
            Some((
                200,
                json!({"tasks": [], "failures": [{"reason": reason}]}).to_string(),
            ))
        };
        if sim.running_vcpus() + vcpus > QUOTA_VCPUS + 1e-9 {
            sim.refused_quota += 1;
            return failure(
                "You've reached the limit on the number of vCPUs you can run concurrently",
            );
        }
        if sim.dice() < CAPACITY_REFUSALS {
            sim.refused_capacity += 1;
            return failure("Capacity is unavailable at this time. Please try again later or in a different availability zone");
        }
        sim.reserved.insert(token, vcpus);
        let reserved = sim.running_vcpus();
        sim.peak_vcpus = sim.peak_vcpus.max(reserved);
        None
    }

    /// The proxy's answer hook: a task the emulator started starts running
    /// (or fails to start).
    fn observe(self: &Arc<Self>, target: &str, body: &[u8], answer: &[u8]) {
        if target != "ECS:RunTask" {
            return;
        }
        let request: Value = serde_json::from_slice(body).unwrap_or_default();
        let token = request["clientToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let answer_json: Value = serde_json::from_slice(answer).unwrap_or_default();
        let mut sim = self.sim.lock().unwrap();
        let vcpus = sim.reserved.remove(&token).unwrap_or(0.0);
        let Some(task_arn) = answer_json["tasks"][0]["taskArn"].as_str() else {
            return;
        };
        sim.answered
            .insert(token, String::from_utf8_lossy(answer).into_owned());
        sim.running.insert(task_arn.to_owned(), vcpus);
        if let Some(freed) = sim.freed.pop_front() {
            sim.refill_ms.push(freed.elapsed().as_secs_f64() * 1000.0);
        }
        let env = overrides_env(&request);
        let key = (
            env_value(&env, "JOB_ID").to_owned(),
            request["tags"]
                .as_array()
                .and_then(|tags| tags.iter().find(|t| t["key"] == "plus:attempt"))
                .and_then(|t| t["value"].as_str())
                .unwrap_or_default()
                .to_owned(),
        );
        *sim.starts.entry(key).or_default() += 1;
        let fails = sim.dice() < START_FAILURES;
        drop(sim);
        if !fails {
            *self.unstarted.lock().unwrap() -= 1;
        }
        let bench = self.clone();
        let task_arn = task_arn.to_owned();
        tokio::spawn(async move { bench.run_task(task_arn, env, fails).await });
    }

    /// A task's life: the worker runs (or the task fails to start), then
    /// the task stops and its event is handled.
    async fn run_task(self: Arc<Self>, task_arn: String, env: Vec<(String, String)>, fails: bool) {
        let container = if fails {
            // The task never got its container: ENI or secrets timeouts.
            tokio::time::sleep(Duration::from_millis(50)).await;
            json!({"name": "worker", "lastStatus": "STOPPED"})
        } else {
            let work = self
                .work
                .join(task_arn.rsplit('/').next().unwrap_or("task"));
            let endpoint = self.endpoint.get().unwrap().clone();
            let status = tokio::process::Command::new(PLUS)
                .arg("worker")
                .env_clear()
                .envs(env.iter().cloned())
                .env("AWS_ENDPOINT_URL", endpoint)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("PLUS_WORK_DIR", &work)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await
                .expect("start plus worker");
            let _ = std::fs::remove_dir_all(&work);
            let code = status.code().unwrap_or(137);
            {
                let mut sim = self.sim.lock().unwrap();
                if code == 0 {
                    sim.workers_ok += 1;
                } else {
                    sim.workers_failed += 1;
                }
            }
            json!({"name": "worker", "exitCode": code, "lastStatus": "STOPPED"})
        };
        {
            let mut sim = self.sim.lock().unwrap();
            sim.running.remove(&task_arn);
            if fails {
                sim.failed_to_start += 1;
            }
            if *self.unstarted.lock().unwrap() > 0 {
                sim.freed.push_back(Instant::now());
            }
        }
        let (stop_code, reason) = if fails {
            (
                "TaskFailedToStart",
                "ResourceInitializationError: failed to configure ENI: attachment timed out: dial tcp 10.0.0.1:443: i/o timeout",
            )
        } else {
            (
                "EssentialContainerExited",
                "Essential container in task exited",
            )
        };
        let event = json!({
            "version": "0",
            "id": task_arn.rsplit('/').next().unwrap_or_default(),
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": "123456789012",
            "time": "2026-12-01T00:00:00Z",
            "region": "us-east-1",
            "resources": [task_arn],
            "detail": {
                "clusterArn": self.cluster_arn.get().unwrap(),
                "taskArn": task_arn,
                "startedBy": "plus-launcher",
                "lastStatus": "STOPPED",
                "desiredStatus": "STOPPED",
                "stopCode": stop_code,
                "stoppedReason": reason,
                "containers": [container],
                "overrides": {"containerOverrides": [{
                    "name": "worker",
                    "environment": env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                }]},
            }
        });
        let event = EcsEvent::parse(&event)
            .expect("an ECS event")
            .expect("a well-formed ECS event");
        if let Err(e) = self.handler.get().unwrap().settle_task_event(&event).await {
            eprintln!("the event of {task_arn} was not settled: {e}");
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let jobs: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(jobs));
}

async fn run(jobs: usize) {
    let moto = Moto::shared();
    let aws = moto.provision().await;
    let (cluster, task_definition) = create_ecs(&aws).await;
    let subnet = default_subnet(&moto.endpoint).await;
    let security_group = default_security_group(&moto.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let bench = Arc::new(Bench {
        sim: Mutex::new(Sim {
            tokens: RATE_PER_S,
            seed: 0x5eed_1234_abcd_ef01,
            ..Sim::default()
        }),
        unstarted: Mutex::new(jobs),
        handler: OnceLock::new(),
        endpoint: OnceLock::new(),
        cluster_arn: OnceLock::new(),
        work: dir.path().join("work"),
    });
    let (b1, b2) = (bench.clone(), bench.clone());
    let hooks = Hooks {
        intercept: Some(Arc::new(move |t: &str, body: &[u8]| b1.intercept(t, body))),
        observe: Some(Arc::new(move |t: &str, body: &[u8], answer: &[u8]| {
            b2.observe(t, body, answer)
        })),
    };
    let proxy = FaultProxy::start_with_hooks(&moto.endpoint, ProxyOptions::TEST, hooks).await;
    bench.endpoint.set(proxy.endpoint.clone()).unwrap();
    bench
        .cluster_arn
        .set(format!(
            "arn:aws:ecs:us-east-1:123456789012:cluster/{cluster}"
        ))
        .unwrap();

    let vars: Vec<(String, String)> = vec![
        ("PLUS_USER".into(), "bench".into()),
        ("PLUS_MAX_VCPUS".into(), QUOTA_VCPUS.to_string()),
        ("AWS_REGION".into(), aws.region.clone()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_ENDPOINT_URL".into(), proxy.endpoint.clone()),
        ("DYNAMO_TABLE".into(), aws.table.clone()),
        ("DYNAMO_STREAMS_TABLE".into(), aws.streams_table.clone()),
        ("PRIMARY_BUCKET".into(), aws.bucket.clone()),
        ("ECS_CLUSTER".into(), cluster.clone()),
        ("TASK_DEFINITION".into(), task_definition.clone()),
        ("SUBNETS".into(), subnet),
        ("SECURITY_GROUPS".into(), security_group),
    ];
    let get = |k: &str| {
        vars.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    let (handler_aws, settings) = plus_launcher::aws::settings_from(get).unwrap();
    let handler_aws = AwsConfig {
        endpoint_url: Some(proxy.endpoint.clone()),
        static_keys: Some(("testing".into(), "testing".into())),
        ..handler_aws
    };
    let handler = plus_launcher::aws::launcher_with(handler_aws, settings)
        .await
        .unwrap()
        .with_limits(plus_launcher::ops::admission::Limits {
            max_vcpus: Some(QUOTA_VCPUS),
            ..Default::default()
        });
    let _ = bench.handler.set(handler);

    let script = dir.path().join("job.sh");
    std::fs::write(&script, "sleep 1\necho done\n").unwrap();
    eprintln!(
        "{jobs} jobs of 1 vCPU, {LAUNCHERS} launchers, a {QUOTA_VCPUS}-vCPU quota, RunTask at {RATE_PER_S}/s"
    );
    let started = Instant::now();
    let mut loops = Vec::new();
    for l in 0..LAUNCHERS {
        let count = jobs / LAUNCHERS + usize::from(l < jobs % LAUNCHERS);
        let (vars, script) = (vars.clone(), script.clone());
        loops.push(std::thread::spawn(move || {
            let mut statuses: HashMap<String, usize> = HashMap::new();
            for _ in 0..count {
                let out = std::process::Command::new(PLUS)
                    .args(["--backend", "aws", "launch"])
                    .arg(&script)
                    .args(["--cpu", "1024", "--memory", "2048", "--json"])
                    .env_clear()
                    .envs(vars.iter().cloned())
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .output()
                    .unwrap();
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
                    panic!("plus launch: {}", String::from_utf8_lossy(&out.stderr))
                });
                *statuses
                    .entry(v["status"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            statuses
        }));
    }
    let mut at_launch: HashMap<String, usize> = HashMap::new();
    for l in loops {
        for (k, n) in l.join().unwrap() {
            *at_launch.entry(k).or_default() += n;
        }
    }
    let launched_in = started.elapsed();
    eprintln!(
        "launched in {:.1} s: {at_launch:?}",
        launched_in.as_secs_f64()
    );

    // Drain: wait for every job to end; a monitor pass only if nothing
    // moved for 10 s (the safety net; counted). The polling reads the
    // emulator directly, so the request counts are the system's own.
    let direct: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| {
            let v = if k == "AWS_ENDPOINT_URL" {
                moto.endpoint.clone()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    let mut monitor_passes = 0;
    let mut last = (usize::MAX, Instant::now());
    let final_jobs = loop {
        let out = std::process::Command::new(PLUS)
            .args(["--backend", "aws", "list", "--json", "--limit", "0"])
            .env_clear()
            .envs(direct.iter().cloned())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let listed = v["jobs"].as_array().cloned().unwrap_or_default();
        let open = listed
            .iter()
            .filter(|j| {
                !matches!(
                    j["status"].as_str(),
                    Some("SUCCEEDED" | "FAILED" | "CANCELLED")
                )
            })
            .count();
        if open == 0 && listed.len() >= jobs {
            break listed;
        }
        if open != last.0 {
            last = (open, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(10) {
            monitor_passes += 1;
            eprintln!("{open} jobs open and nothing moved for 10 s: one monitor pass");
            let _ = std::process::Command::new(PLUS)
                .args(["--backend", "aws", "monitor", "--once"])
                .env_clear()
                .envs(vars.iter().cloned())
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .output();
            last.1 = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let drained = started.elapsed();

    let mut by_status: HashMap<String, usize> = HashMap::new();
    let mut attempts: HashMap<i64, usize> = HashMap::new();
    for j in &final_jobs {
        *by_status
            .entry(j["status"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
        *attempts
            .entry(j["attempt"].as_i64().unwrap_or(1))
            .or_default() += 1;
    }
    let seen = proxy.seen();
    let count = |prefix: &str| seen.iter().filter(|s| s.starts_with(prefix)).count();
    let mut sim = bench.sim.lock().unwrap();
    let twice = sim.starts.values().filter(|n| **n > 1).count();
    let refill = median(&mut sim.refill_ms);
    println!("jobs: {jobs} launched by {LAUNCHERS} concurrent `plus launch` loops");
    println!("status at launch: {at_launch:?}");
    println!("ended: {by_status:?}; attempts: {attempts:?}");
    println!(
        "time to drain: {:.1} s (launches done after {:.1} s); monitor passes needed: {monitor_passes}",
        drained.as_secs_f64(),
        launched_in.as_secs_f64()
    );
    println!(
        "most vCPUs running at once: {} of {QUOTA_VCPUS}; RunTask refused for the quota: {}, for the rate: {}, for capacity (injected): {}; tasks that failed to start (injected): {}",
        sim.peak_vcpus, sim.refused_quota, sim.refused_rate, sim.refused_capacity, sim.failed_to_start
    );
    println!(
        "tasks started: {}; (job, attempt) started more than once: {twice}; workers exited 0: {}, otherwise: {}",
        sim.starts.values().sum::<u32>(),
        sim.workers_ok,
        sim.workers_failed
    );
    println!(
        "capacity freed -> next task started: median {refill:.0} ms over {} starts",
        sim.refill_ms.len()
    );
    println!(
        "requests per job: DynamoDB {:.1}, ECS {:.2} (RunTask {:.2}), S3 {:.1}",
        count("DynamoDB:") as f64 / jobs as f64,
        count("ECS:") as f64 / jobs as f64,
        count("ECS:RunTask") as f64 / jobs as f64,
        count("S3:") as f64 / jobs as f64,
    );
}
