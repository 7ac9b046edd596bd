//! What the launcher and the workers read from DynamoDB, counted from the
//! emulator's answers by the recording test proxy (`ScannedCount` of each
//! Query and Scan, the items of each BatchGetItem, one per GetItem that
//! found one):
//!
//! - **Shards**: a collection of `BENCH_SHARD_ITEMS` (default 20,000) over
//!   4 shards, launched with the release `plus launch --shards 4` and each
//!   shard run by the real worker with its RunTask's environment; then the
//!   same 4 shards without their id ranges (the hash partition every shard
//!   used before, each reading the whole collection), for comparison.
//! - **Monitor**: one `plus monitor --once` over a table holding
//!   `BENCH_ITEMS` collection items (default 100,000), 10,000 finished jobs
//!   and 20 unfinished ones.
//!
//! `cargo bench -p plus-launcher --bench reads`

use std::{
    process::{Command, Stdio},
    time::Instant,
};

use plus_jobs::{Backend, BackendConfig, Job, JobStatus};
use plus_testkit::{create_ecs, default_security_group, default_subnet, FaultProxy, Moto};
use serde_json::{json, Map, Value};

const PLUS: &str = env!("CARGO_BIN_EXE_plus");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Items read by the DynamoDB calls the proxy saw since `from` (an index
/// into its exchanges), by operation.
fn reads(proxy: &FaultProxy) -> Vec<(&'static str, u64)> {
    let mut out = Vec::new();
    for op in ["Query", "Scan", "BatchGetItem", "GetItem"] {
        let mut n = 0;
        for (_, answer) in proxy.exchanges(&format!("DynamoDB:{op}")) {
            let a: Value = serde_json::from_str(&answer).unwrap_or_default();
            n += match op {
                "Query" | "Scan" => a["ScannedCount"].as_u64().unwrap_or(0),
                "BatchGetItem" => a["Responses"].as_object().map_or(0, |t| {
                    t.values()
                        .map(|v| v.as_array().map_or(0, Vec::len) as u64)
                        .sum()
                }),
                _ => u64::from(a.get("Item").is_some()),
            };
        }
        // "DynamoDB:GetItem" is also in "DynamoDB:BatchGetItem"'s name.
        if op == "GetItem" {
            n = proxy
                .exchanges("DynamoDB:GetItem")
                .iter()
                .filter(|(q, _)| !q.contains("RequestItems"))
                .filter(|(_, a)| a.contains("\"Item\""))
                .count() as u64;
        }
        out.push((op, n));
    }
    out
}

fn total(r: &[(&str, u64)]) -> u64 {
    r.iter().map(|(_, n)| n).sum()
}

struct Setup {
    aws: plus_jobs::backend::AwsConfig,
    cluster: String,
    task_definition: String,
    subnet: String,
    sg: String,
}

impl Setup {
    fn plus(&self, proxy: &FaultProxy, args: &[&str]) -> Value {
        let out = Command::new(PLUS)
            .args(["--backend", "aws"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("PLUS_USER", "bench")
            .env("AWS_REGION", &self.aws.region)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .env("DYNAMO_TABLE", &self.aws.table)
            .env("DYNAMO_STREAMS_TABLE", &self.aws.streams_table)
            .env("PRIMARY_BUCKET", &self.aws.bucket)
            .env("ECS_CLUSTER", &self.cluster)
            .env("TASK_DEFINITION", &self.task_definition)
            .env("SUBNETS", &self.subnet)
            .env("SECURITY_GROUPS", &self.sg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }
}

/// Runs the real worker of each RunTask the proxy saw, all at once.
async fn run_workers(proxy: &FaultProxy, dir: &std::path::Path) {
    let mut children = Vec::new();
    for body in proxy.bodies("ECS:RunTask") {
        let body: Value = serde_json::from_str(&body).unwrap();
        let mut env: Vec<(String, String)> = body["overrides"]["containerOverrides"][0]
            ["environment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_owned(),
                    e["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        env.extend([
            ("AWS_ENDPOINT_URL".into(), proxy.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("PATH".into(), std::env::var("PATH").unwrap()),
            (
                "PLUS_WORK_DIR".into(),
                dir.join("work").display().to_string(),
            ),
        ]);
        let mut child = tokio::process::Command::new(PLUS)
            .arg("worker")
            .env_clear()
            .envs(env)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        children.push(tokio::spawn(async move { child.wait().await }));
    }
    for c in children {
        assert!(c.await.unwrap().unwrap().success());
    }
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::main]
async fn main() {
    let moto = Moto::shared();
    let aws = moto.provision().await;
    let (cluster, task_definition) = create_ecs(&aws).await;
    let setup = Setup {
        cluster,
        task_definition,
        subnet: default_subnet(&moto.endpoint).await,
        sg: default_security_group(&moto.endpoint).await,
        aws: aws.clone(),
    };
    // Bulk writes go straight to the emulator (BatchWriteItem, 25 a call).
    let direct = plus_jobs::backend::AwsConfig {
        endpoint_url: Some(moto.emulator.clone()),
        ..aws.clone()
    };
    let backend = Backend::open(&BackendConfig::Aws(direct)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // ---- Shards
    let n = env_usize("BENCH_SHARD_ITEMS", 20_000);
    let owner = "bench/collections/sharded";
    let items: Vec<_> = (0..n)
        .map(|i| object(json!({"object_id": format!("s-{i:07}"), "owner": owner, "n": i})))
        .collect();
    backend.jobs.put_objects(&items).await.unwrap();
    let script = dir.path().join("echo.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nwhile IFS= read -r line; do echo '{}'; done\n",
    )
    .unwrap();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let t = Instant::now();
    let launched = setup.plus(
        &proxy,
        &[
            "launch",
            "--collection",
            owner,
            script.to_str().unwrap(),
            "--streaming",
            "--shards",
            "4",
            "--json",
        ],
    );
    let launch_reads = total(&reads(&proxy));
    run_workers(&proxy, dir.path()).await;
    let took = t.elapsed();
    let ranged = reads(&proxy);
    let parent = launched["job_id"].as_str().unwrap().to_owned();
    let mut sizes = Vec::new();
    let mut shards: Vec<Job> = Vec::new();
    for i in 0..4 {
        let shard = backend
            .jobs
            .get_job(&format!("{parent}-s{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(shard.status(), JobStatus::Succeeded, "{}", shard.error);
        sizes.push(shard.progress.as_ref().map_or(0, |p| p.succeeded));
        shards.push(shard);
    }

    // The same shards without ranges: the hash partition of before.
    let hashed_proxy = FaultProxy::start(&moto.endpoint).await;
    let stores = plus_jobs::contract::AwsSettings {
        region: aws.region.clone(),
        table: aws.table.clone(),
        streams_table: aws.streams_table.clone(),
        bucket: aws.bucket.clone(),
        endpoint_url: None,
        event_bus: None,
    };
    let t = Instant::now();
    let mut children = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let copy = Job {
            object_id: format!("{parent}-hash{i}"),
            status: JobStatus::Initializing as i32,
            shard_after: String::new(),
            shard_until: String::new(),
            progress: None,
            attempt: None,
            attempts: Vec::new(),
            started_at: String::new(),
            completed_at: String::new(),
            lease: String::new(),
            heartbeat_at: String::new(),
            fargate_task_arn: String::new(),
            exit_code: None,
            log_key: String::new(),
            output_prefix: String::new(),
            ..shard.clone()
        };
        backend.jobs.create_job(&copy).await.unwrap();
        let mut env = plus_launcher::runner::worker_env(&copy, &stores).unwrap();
        env.extend([
            ("AWS_ENDPOINT_URL".into(), hashed_proxy.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("PATH".into(), std::env::var("PATH").unwrap()),
            (
                "PLUS_WORK_DIR".into(),
                dir.path().join("work").display().to_string(),
            ),
        ]);
        let mut child = tokio::process::Command::new(PLUS)
            .arg("worker")
            .env_clear()
            .envs(env)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        children.push(tokio::spawn(async move { child.wait().await }));
    }
    for c in children {
        assert!(c.await.unwrap().unwrap().success());
    }
    let hashed_took = t.elapsed();
    let hashed = reads(&hashed_proxy);

    println!("## shards: {n} items over 4 shards (streaming, no-op script)");
    println!(
        "| partition | items read from DynamoDB | per item | wall time (launch + 4 workers) |"
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| id ranges (now) | {} (launch {launch_reads}) | {:.3} | {:.2} s |",
        total(&ranged),
        total(&ranged) as f64 / n as f64,
        took.as_secs_f64()
    );
    println!(
        "| hash, every shard reads all (before) | {} | {:.3} | {:.2} s (workers only) |",
        total(&hashed),
        total(&hashed) as f64 / n as f64,
        hashed_took.as_secs_f64()
    );
    println!("shard sizes (items): {sizes:?}; reads by call: {ranged:?}");

    // ---- Monitor
    let n_items = env_usize("BENCH_ITEMS", 100_000);
    let n_done = env_usize("BENCH_DONE_JOBS", 10_000);
    let n_active = env_usize("BENCH_ACTIVE_JOBS", 20);
    let t = Instant::now();
    let other = "bench/collections/big";
    let items: Vec<_> = (0..n_items)
        .map(|i| object(json!({"object_id": format!("b-{i:07}"), "owner": other, "n": i})))
        .collect();
    for chunk in items.chunks(5000) {
        backend.jobs.put_objects(chunk).await.unwrap();
    }
    let now = plus_jobs::Timestamp::now().to_string();
    let done: Vec<_> = (0..n_done)
        .map(|i| {
            object(json!({
                "object_id": format!("done-{i:06}"), "object_type": "PlusScriptJob",
                "owner": "bench/jobs", "username": "bench", "status": "SUCCEEDED",
                "run_mode": "RUN_SCRIPT", "created_at": now, "updated_at": now,
                "completed_at": now, "attempt": 1, "exit_code": 0
            }))
        })
        .collect();
    for chunk in done.chunks(5000) {
        backend.jobs.put_objects(chunk).await.unwrap();
    }
    for i in 0..n_active {
        let job = Job {
            status: JobStatus::Running as i32,
            fargate_task_arn: format!(
                "arn:aws:ecs:{}:123456789012:task/{}/{i:032x}",
                aws.region, setup.cluster
            ),
            lease: format!("lease-{i}"),
            started_at: now.clone(),
            heartbeat_at: now.clone(),
            attempt: Some(1),
            ..plus_jobs::job::new_job(
                &plus_jobs::JobId::parse(format!("active-{i:03}")).unwrap(),
                "bench",
                plus_jobs::RunMode::RunScript,
                plus_jobs::Timestamp::now(),
            )
        };
        backend.jobs.create_job(&job).await.unwrap();
    }
    let written = t.elapsed();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let t = Instant::now();
    let out = setup.plus(&proxy, &["monitor", "--once", "--json"]);
    let took = t.elapsed();
    let monitor = reads(&proxy);
    println!(
        "## monitor: one pass over {n_items} collection items, {n_done} finished jobs, {n_active} unfinished (written in {:.1} s)",
        written.as_secs_f64()
    );
    println!("| items read per pass | by call | wall time (whole process) | settled |");
    println!("|---:|---|---:|---:|");
    println!(
        "| {} | {monitor:?} | {:.1} ms | {} |",
        total(&monitor),
        took.as_secs_f64() * 1000.0,
        out["settled"].as_array().map_or(0, Vec::len)
    );
}
