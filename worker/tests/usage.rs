//! Usage, cost and metrics through the real worker binary: each attempt's
//! vCPU-seconds and GiB-seconds (task size x claim to end) on the attempt
//! and summed on the record, the cost estimate, and the CloudWatch
//! Embedded Metric Format record on stdout.

mod support;

use plus_jobs::{Expect, Job, JobStatus, RunMode, TaskResources, Timestamp, Usage};
use serde_json::{json, Value};
use support::{Run, World};

/// Seconds from `from` to `to` (RFC 3339).
fn seconds(from: &str, to: &str) -> f64 {
    Timestamp::parse(to)
        .unwrap()
        .since(Timestamp::parse(from).unwrap())
        .as_secs_f64()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.0015
}

fn usage(u: &Option<Usage>) -> Usage {
    u.expect("usage is recorded")
}

fn sized(cpu: u32, memory: u32) -> impl FnOnce(&mut Job) {
    move |j| {
        j.resources = Some(TaskResources {
            cpu,
            memory,
            ..TaskResources::default()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_usage_is_its_task_size_times_its_claim_to_end_time() {
    let w = World::local().await;
    let job = w.job_with("sleep 1\n", sized(1024, 2048)).await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(done.attempts.len(), 1);
    let a = &done.attempts[0];
    let ran = seconds(&a.started_at, &a.ended_at);
    assert!(ran >= 1.0, "{ran}");
    let total = usage(&done.usage);
    assert!(close(total.vcpu_seconds, ran), "{total:?} vs {ran} s");
    assert!(close(total.gib_seconds, 2.0 * ran), "{total:?} vs {ran} s");
    assert_eq!(total.cost_usd, 0.0, "nothing is billed locally");
    assert_eq!(a.usage.as_ref(), Some(&total), "one attempt: its own usage");

    // `plus status --json` and `plus list --json` print the record as is.
    let v = plus_jobs::job::job_json(&done);
    assert!(v["usage"]["vcpu_seconds"].as_f64().unwrap() >= 1.0, "{v}");

    // No resources and nothing from the task: the smallest Fargate task.
    let job = w.job("sleep 0.2\n").await;
    let (_, done) = w.run_with(&job, &[]).await;
    let ran = seconds(&done.attempts[0].started_at, &done.attempts[0].ended_at);
    let total = usage(&done.usage);
    assert!(
        close(total.vcpu_seconds, 0.25 * ran),
        "{total:?} vs {ran} s"
    );
    assert!(close(total.gib_seconds, 0.5 * ran), "{total:?} vs {ran} s");

    // PLUS_TASK_CPU / PLUS_TASK_MEMORY say what the task has; the job's
    // own resources win where set.
    let job = w.job_with("sleep 0.2\n", sized(0, 4096)).await;
    let (_, done) = w
        .run_with(
            &job,
            &[("PLUS_TASK_CPU", "2048"), ("PLUS_TASK_MEMORY", "8192")],
        )
        .await;
    let ran = seconds(&done.attempts[0].started_at, &done.attempts[0].ended_at);
    let total = usage(&done.usage);
    assert!(close(total.vcpu_seconds, 2.0 * ran), "{total:?} vs {ran} s");
    assert!(close(total.gib_seconds, 4.0 * ran), "{total:?} vs {ran} s");
}

/// What the launcher's relaunch writes: INTERRUPTED -> INITIALIZING with
/// the next attempt.
async fn relaunch(w: &World, job: &Job, attempt: u32) {
    let patch = Job {
        status: JobStatus::Initializing as i32,
        attempt: Some(attempt),
        updated_at: Timestamp::now().to_string(),
        ..Job::default()
    };
    w.backend
        .jobs
        .update_job(
            &job.object_id,
            &Expect::status([JobStatus::Interrupted]),
            &patch,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaunched_jobs_usage_sums_its_attempts_each_shown_on_its_own() {
    let w = World::local().await;
    let job = w
        .job_with(
            "#!/bin/sh\necho \"attempt $PLUS_ATTEMPT\"\n[ \"$PLUS_ATTEMPT\" = 1 ] && exec sleep 60\nsleep 0.5\n",
            sized(1024, 2048),
        )
        .await;
    let id = job.object_id.clone();
    let child = w.spawn(&job, &[]);
    w.wait_for_output(&id, "attempt 1").await;
    support::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let (run, stopped) = w.ended(&job, child).await;
    assert_eq!(run.code, Some(143), "{run:?}");
    let first = usage(&stopped.usage);
    assert!(
        first.vcpu_seconds > 0.0,
        "an interrupted attempt counts too"
    );

    relaunch(&w, &job, 2).await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(done.attempts.len(), 2);
    let mut sum = 0.0;
    for a in &done.attempts {
        let ran = seconds(&a.started_at, &a.ended_at);
        let own = usage(&a.usage);
        assert!(
            close(own.vcpu_seconds, ran),
            "attempt {}: {own:?} vs {ran} s",
            a.attempt
        );
        assert!(
            close(own.gib_seconds, 2.0 * ran),
            "attempt {}: {own:?}",
            a.attempt
        );
        sum += own.vcpu_seconds;
    }
    assert_eq!(
        usage(&done.attempts[0].usage),
        first,
        "the first attempt's is kept"
    );
    let total = usage(&done.usage);
    assert!(close(total.vcpu_seconds, sum), "{total:?} vs {sum}");
    assert!(close(total.gib_seconds, 2.0 * sum), "{total:?} vs {sum}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_the_cost_follows_the_prices_and_spot() {
    let w = World::aws().await;
    // Prices chosen so the cost reads back as seconds: $1 per vCPU-second,
    // $0.5 per GB-second; Spot a tenth of that.
    let prices = "vcpu_hour=3600,gb_hour=1800,spot_vcpu_hour=360,spot_gb_hour=180";
    let job = w.job_with("sleep 0.3\n", sized(1024, 2048)).await;
    let (run, done) = w.run_with(&job, &[("PLUS_FARGATE_PRICES", prices)]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let total = usage(&done.usage);
    assert!(total.vcpu_seconds >= 0.3, "{total:?}");
    // A short task is billed Fargate's one-minute minimum: 1 vCPU and
    // 2 GB for 60 s at $1 per vCPU-second and $0.5 per GB-second.
    assert!(
        (total.cost_usd - (60.0 + 0.5 * 120.0)).abs() < 1e-6,
        "{total:?}"
    );

    let job = w
        .job_with("sleep 0.3\n", |j| {
            j.resources = Some(TaskResources {
                cpu: 1024,
                memory: 2048,
                spot: true,
                ..TaskResources::default()
            })
        })
        .await;
    let (_, done) = w.run_with(&job, &[("PLUS_FARGATE_PRICES", prices)]).await;
    let total = usage(&done.usage);
    assert!((total.cost_usd - 12.0).abs() < 1e-6, "{total:?}");

    // The table's own prices: a real, tiny estimate.
    let job = w.job_with("true\n", sized(1024, 2048)).await;
    let (_, done) = w.run_with(&job, &[]).await;
    let total = usage(&done.usage);
    // One minute of 1 vCPU and 2 GB in us-east-1: $0.04937 / 60.
    assert!((total.cost_usd - 0.04937 / 60.0).abs() < 1e-6, "{total:?}");
}

/// The one EMF record among the worker's stdout lines.
fn emf(run: &Run) -> Value {
    let records: Vec<Value> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(records.len(), 1, "one EMF record: {}", run.stdout);
    records.into_iter().next().unwrap()
}

/// Checks `v` against the EMF specification and this worker's promises;
/// returns the record.
fn check_emf(v: &Value, run_mode: &str, status: &str) {
    let aws = &v["_aws"];
    assert!(aws["Timestamp"].is_i64(), "{v}");
    let now_ms = Timestamp::now().unix_micros() / 1000;
    let at = i128::from(aws["Timestamp"].as_i64().unwrap());
    assert!(at <= now_ms && at > now_ms - 120_000, "{v}");
    let directives = aws["CloudWatchMetrics"].as_array().unwrap();
    assert_eq!(directives.len(), 1, "{v}");
    let d = &directives[0];
    assert_eq!(d["Namespace"], "PlusWorker");
    assert_eq!(d["Dimensions"], json!([["RunMode", "Status"]]));
    let units: Vec<(String, String)> = d["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap().to_owned(),
                m["Unit"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("JobDuration", "Seconds"),
        ("QueueWait", "Seconds"),
        ("ItemsSucceeded", "Count"),
        ("ItemsFailed", "Count"),
        ("CostUSD", "None"),
    ];
    assert_eq!(
        units,
        want.map(|(n, u)| (n.to_owned(), u.to_owned())).to_vec()
    );
    for (name, _) in want {
        assert!(v[name].is_number(), "{name} is a top-level number: {v}");
    }
    assert_eq!(v["RunMode"], run_mode);
    assert_eq!(v["Status"], status);
    assert!(
        v.get("fields").is_none(),
        "not nested under tracing's fields"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_succeeded_script_prints_one_emf_record() {
    let w = World::local().await;
    let job = w.job_with("sleep 0.5\n", sized(1024, 2048)).await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let v = emf(&run);
    check_emf(&v, "RUN_SCRIPT", "SUCCEEDED");
    let a = &done.attempts[0];
    let ran = seconds(&a.started_at, &a.ended_at);
    assert!(
        close(v["JobDuration"].as_f64().unwrap(), ran),
        "{v} vs {ran}"
    );
    assert!(v["JobDuration"].as_f64().unwrap() >= 0.5, "{v}");
    let waited = seconds(&done.created_at, &a.started_at);
    assert!(
        close(v["QueueWait"].as_f64().unwrap(), waited),
        "{v} vs {waited}"
    );
    assert_eq!(v["ItemsSucceeded"], 0);
    assert_eq!(v["ItemsFailed"], 0);
    assert_eq!(v["CostUSD"], 0.0);
    assert_eq!(v["job_id"], done.object_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_with_failures_counts_its_items_in_the_emf_record() {
    let w = World::local().await;
    let owner = format!("alice/collections/c{}", std::process::id());
    let objects: Vec<_> = (0..10)
        .map(|i| {
            let mut o = serde_json::Map::new();
            o.insert("object_id".into(), json!(format!("item-{i:05}")));
            o.insert("owner".into(), json!(owner));
            o
        })
        .collect();
    w.backend.jobs.put_objects(&objects).await.unwrap();
    let job = w
        .job_with(
            "#!/bin/sh\ncat >/dev/null\ncase $PLUS_ITEM_ID in *3|*5|*7) exit 4;; esac\necho '{}'\n",
            |j| {
                j.run_mode = RunMode::RunCollection as i32;
                j.collection_owner = owner.clone();
            },
        )
        .await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(done.status(), JobStatus::Failed, "{run:?}");
    let v = emf(&run);
    check_emf(&v, "RUN_COLLECTION", "FAILED");
    assert_eq!(v["ItemsSucceeded"], 7, "{v}");
    assert_eq!(v["ItemsFailed"], 3, "{v}");
}
