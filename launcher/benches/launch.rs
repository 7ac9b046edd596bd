//! The launch benchmark: whole-process time of `plus launch --backend aws`
//! against `moto_server`, beside a Python/boto3 script doing the same
//! PutItem + RunTask (`bench/boto3_launch.py`), and the init time of the
//! `plus-lambda` binary (process start to its first poll of the Lambda
//! Runtime API).
//!
//! `cargo bench -p plus-launcher --bench launch` (`BENCH_RUNS`, default 20).

use std::{
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use plus_testkit::{create_ecs, default_security_group, default_subnet, FaultProxy, Moto};

const PLUS: &str = env!("CARGO_BIN_EXE_plus");
const LAMBDA: &str = env!("CARGO_BIN_EXE_plus-lambda");

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let moto = Moto::shared();
    let aws = moto.provision().await;
    let (cluster, task_definition) = create_ecs(&aws).await;
    let subnet = default_subnet(&moto.endpoint).await;
    let sg = default_security_group(&moto.endpoint).await;
    // The Rust SDK refuses one field the emulator gets wrong (see testkit),
    // so `plus` goes through the proxy: one extra loopback hop, counted
    // against it.
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let script = std::env::temp_dir().join("plus-bench-launch.sh");
    std::fs::write(&script, "echo hi\n").unwrap();
    let env = |endpoint: &str| {
        vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".to_owned(), std::env::var("HOME").unwrap_or_default()),
            ("AWS_REGION".to_owned(), aws.region.clone()),
            ("AWS_ACCESS_KEY_ID".to_owned(), "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "testing".to_owned()),
            ("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned()),
            ("DYNAMO_TABLE".to_owned(), aws.table.clone()),
            ("DYNAMO_STREAMS_TABLE".to_owned(), aws.streams_table.clone()),
            ("PRIMARY_BUCKET".to_owned(), aws.bucket.clone()),
            ("ECS_CLUSTER".to_owned(), cluster.clone()),
            ("TASK_DEFINITION".to_owned(), task_definition.clone()),
            ("SUBNETS".to_owned(), subnet.clone()),
            ("SECURITY_GROUPS".to_owned(), sg.clone()),
            ("PLUS_USER".to_owned(), "bench".to_owned()),
        ]
    };
    let ours_env = env(&proxy.endpoint);
    let theirs_env = env(&moto.endpoint);
    let script_path = script.display().to_string();
    let (ours, theirs, init) = tokio::task::spawn_blocking(move || {
        let ours: Vec<Duration> = (0..runs)
            .map(|_| {
                timed(
                    Command::new(PLUS)
                        .args(["--backend", "aws", "launch", &script_path, "--json"])
                        .env_clear()
                        .envs(ours_env.clone()),
                )
            })
            .collect();
        let boto = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/boto3_launch.py");
        let theirs: Vec<Duration> = (0..runs)
            .map(|_| {
                timed(
                    Command::new("python3")
                        .args([boto, &script_path])
                        .env_clear()
                        .envs(theirs_env.clone()),
                )
            })
            .collect();
        // Lambda init: from spawn to the runtime's first connection.
        let init: Vec<Duration> = (0..runs.min(10))
            .map(|_| {
                let api = TcpListener::bind("127.0.0.1:0").unwrap();
                let t = Instant::now();
                let mut child = Command::new(LAMBDA)
                    .env_clear()
                    .envs(ours_env.clone())
                    .env(
                        "AWS_LAMBDA_RUNTIME_API",
                        api.local_addr().unwrap().to_string(),
                    )
                    .env("AWS_LAMBDA_FUNCTION_NAME", "plus")
                    .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                    .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                let _conn = api.accept().unwrap();
                let took = t.elapsed();
                let _ = child.kill();
                let _ = child.wait();
                took
            })
            .collect();
        (ours, theirs, init)
    })
    .await
    .unwrap();
    let (o, b) = (median(ours), median(theirs));
    println!("launch (PutItem + RunTask) against moto_server, {runs} runs each, median whole-process time");
    println!("| launcher | median |");
    println!("|---|---|");
    println!("| plus launch --backend aws (Rust) | {o:.1} ms |");
    println!("| bench/boto3_launch.py (Python/boto3) | {b:.1} ms |");
    println!("ratio: {:.3} (target at most 0.2)", o / b);
    println!(
        "plus-lambda init (start to first Runtime API poll), median of {}: {:.1} ms",
        runs.min(10),
        median(init)
    );
}
