//! The worker lifecycle benchmark: the real `plus-worker` binary runs a
//! no-op job (load, claim, run, record) against `moto_server`, and the same
//! steps run in a Python/boto3 worker (`bench/boto3_worker.py`) for
//! comparison. Reports whole-process wall time, the worker's peak RSS and
//! the DynamoDB requests per job (counted by a proxy in front of the
//! emulator).
//!
//! `cargo bench -p plus-worker --bench lifecycle` (set `BENCH_JOBS` for
//! more or fewer jobs; default 20).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use plus_jobs::{
    backend::AwsConfig, job::new_job, Backend, BackendConfig, JobId, JobStatus, RunMode, Script,
    Timestamp,
};
use plus_testkit::{FaultProxy, Moto};

const WORKER: &str = env!("CARGO_BIN_EXE_plus-worker");

fn env_for(aws: &AwsConfig, endpoint: &str, job_id: &str) -> Vec<(String, String)> {
    vec![
        ("RUN_MODE".into(), "RUN_SCRIPT".into()),
        ("JOB_ID".into(), job_id.into()),
        ("USERNAME".into(), "bench".into()),
        ("REGION".into(), aws.region.clone()),
        ("DYNAMO_TABLE".into(), aws.table.clone()),
        ("DYNAMO_STREAMS_TABLE".into(), aws.streams_table.clone()),
        ("PRIMARY_BUCKET".into(), aws.bucket.clone()),
        ("AWS_ENDPOINT_URL".into(), endpoint.into()),
        ("ACCESS_KEY".into(), "testing".into()),
        ("SECRET_KEY".into(), "testing".into()),
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("RUST_LOG".into(), "warn".into()),
    ]
}

async fn new_job_record(backend: &Backend) -> String {
    let mut job = new_job(
        &JobId::generate(),
        "bench",
        RunMode::RunScript,
        Timestamp::now(),
    );
    job.script = Some(Script {
        source: "#!/bin/sh\necho done\n".into(),
        ..Script::default()
    });
    backend.jobs.create_job(&job).await.unwrap();
    job.object_id
}

fn run(program: &[&str], env: &[(String, String)]) -> Duration {
    let t = Instant::now();
    let status = Command::new(program[0])
        .args(&program[1..])
        .env_clear()
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("the worker starts");
    let took = t.elapsed();
    assert!(status.success(), "{program:?} failed: {status}");
    took
}

fn summary(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(times[times.len() / 2]),
        ms(times.iter().sum::<Duration>() / times.len() as u32),
    )
}

#[tokio::main]
async fn main() {
    let jobs: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let moto = Moto::shared();
    let aws = moto.provision().await;
    let backend = Backend::open(&BackendConfig::Aws(aws.clone()))
        .await
        .unwrap();
    let proxy = FaultProxy::start(&moto.endpoint).await;

    // DynamoDB requests per job, counted through the proxy.
    let id = new_job_record(&backend).await;
    proxy.reset();
    let env = env_for(&aws, &proxy.endpoint, &id);
    tokio::task::spawn_blocking(move || run(&[WORKER], &env))
        .await
        .unwrap();
    let seen = proxy.seen();
    let dynamo: Vec<&String> = seen.iter().filter(|s| s.starts_with("DynamoDB:")).collect();
    assert_eq!(
        backend.jobs.get_job(&id).await.unwrap().unwrap().status(),
        JobStatus::Succeeded
    );

    // Wall time and peak RSS, straight to the emulator.
    let mut ours = Vec::new();
    for _ in 0..jobs {
        let id = new_job_record(&backend).await;
        let env = env_for(&aws, &moto.endpoint, &id);
        ours.push(
            tokio::task::spawn_blocking(move || run(&[WORKER], &env))
                .await
                .unwrap(),
        );
    }
    // The worker's own peak RSS, from GNU time (a child of this process
    // would carry this process's memory at exec into its peak).
    let rss_mib = {
        let id = new_job_record(&backend).await;
        let env = env_for(&aws, &moto.endpoint, &id);
        let report = tempfile::NamedTempFile::new().unwrap();
        let out = plus_testkit::peak_rss::spawn(WORKER, &env, report.path())
            .wait_with_output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        plus_testkit::peak_rss::mib(report.path())
    };

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/boto3_worker.py");
    let mut theirs = Vec::new();
    for _ in 0..jobs {
        let id = new_job_record(&backend).await;
        let mut env = env_for(&aws, &moto.endpoint, &id);
        env.push(("HOME".into(), std::env::var("HOME").unwrap_or_default()));
        theirs.push(
            tokio::task::spawn_blocking(move || run(&["python3", script], &env))
                .await
                .unwrap(),
        );
    }

    let (our_median, our_mean) = summary(ours);
    let (their_median, their_mean) = summary(theirs);
    println!("worker lifecycle, no-op script, {jobs} jobs each, against moto_server on loopback");
    println!("| worker | median wall time | mean wall time |");
    println!("|---|---|---|");
    println!("| plus-worker (Rust) | {our_median:.1} ms | {our_mean:.1} ms |");
    println!(
        "| Python/boto3 (bench/boto3_worker.py) | {their_median:.1} ms | {their_mean:.1} ms |"
    );
    println!(
        "ratio (median): {:.3} (target at most 0.1)",
        our_median / their_median
    );
    println!("plus-worker peak RSS: {rss_mib:.1} MiB (target under 20 MiB)");
    println!(
        "DynamoDB requests per job: {} ({})",
        dynamo.len(),
        dynamo
            .iter()
            .map(|s| s.trim_start_matches("DynamoDB:"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
