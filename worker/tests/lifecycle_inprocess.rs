//! `lifecycle::execute` driven in-process, one job per mode, on the local
//! store (SQLite and a folder): no worker process, the shutdown token is a
//! parameter. Each case reads the record back as a frontend would.

mod support;

use std::{sync::Arc, time::Duration};

use plus_jobs::{job::ACTION_OBJECT_TYPE, Action, Expect, Job, JobStatus, RunMode, Script};
use plus_worker::{lifecycle, Config, Outcome};
use serde_json::{json, Value};
use support::World;
use tokio_util::sync::CancellationToken;

const LEASE: &str = "local:inprocess:1";

/// Runs `job` in this process until it ends or `shutdown` fires.
async fn execute(w: &World, job: &Job, shutdown: CancellationToken) -> Outcome {
    let config = Config::from_vars(w.env_for(job)).expect("the test environment is valid");
    lifecycle::execute(config, w.backend.clone(), LEASE.into(), shutdown).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_script_succeeds_with_its_result() {
    let w = World::local().await;
    let job = w
        .job_with(
            "#!/bin/sh\necho \"hi $PLUS_RUN_MODE\"\necho '{\"answer\": 42}' > \"$PLUS_RESULT_FILE\"\n",
            |_| {},
        )
        .await;
    let outcome = execute(&w, &job, CancellationToken::new()).await;
    assert_eq!(outcome, Outcome::Succeeded);
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(done.lease, LEASE);
    assert_eq!(
        serde_json::to_value(&done.result).unwrap(),
        json!({"answer": 42.0})
    );
    assert!(w.log(&done).await.contains("hi RUN_SCRIPT\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_action_succeeds_with_merged_params() {
    let w = World::local().await;
    let action = Action {
        object_id: "greet".into(),
        object_type: ACTION_OBJECT_TYPE.into(),
        owner: "alice/actions".into(),
        script: Some(Script {
            source: "#!/bin/sh\necho \"$PLUS_PARAMS\" > \"$PLUS_RESULT_FILE\"\n".into(),
            ..Script::default()
        }),
        params: Some(serde_json::from_value(json!({"who": "world", "n": 1})).unwrap()),
        ..Action::default()
    };
    let Value::Object(object) = serde_json::to_value(&action).unwrap() else {
        unreachable!()
    };
    w.backend.jobs.put_objects(&[object]).await.unwrap();
    let job = w
        .job_with("", |j| {
            j.run_mode = RunMode::RunAction as i32;
            j.script = None;
            j.action_id = "greet".into();
            j.params = Some(serde_json::from_value(json!({"n": 2})).unwrap());
        })
        .await;
    let outcome = execute(&w, &job, CancellationToken::new()).await;
    assert_eq!(outcome, Outcome::Succeeded);
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    assert_eq!(
        serde_json::to_value(&done.result).unwrap(),
        json!({"who": "world", "n": 2.0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_collection_succeeds_with_progress_and_results() {
    let w = World::local().await;
    let owner = "alice/collections/numbers";
    let items: Vec<_> = (0..25)
        .map(|i| {
            let mut o = serde_json::Map::new();
            o.insert("object_id".into(), json!(format!("item-{i:03}")));
            o.insert("owner".into(), json!(owner));
            o.insert("n".into(), json!(i));
            o
        })
        .collect();
    w.backend.jobs.put_objects(&items).await.unwrap();
    let job = w
        .job_with("#!/bin/sh\ncat\n", |j| {
            j.run_mode = RunMode::RunCollection as i32;
            j.collection_owner = owner.into();
        })
        .await;
    let outcome = execute(&w, &job, CancellationToken::new()).await;
    assert_eq!(outcome, Outcome::Succeeded);
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    let progress = done.progress.clone().expect("progress is recorded");
    assert_eq!(
        (progress.total, progress.succeeded, progress.failed),
        (25, 25, 0)
    );
    assert_eq!(progress.checkpoint, "item-024");
    let result = serde_json::to_value(&done.result).unwrap();
    assert_eq!(result["succeeded"], json!(25.0), "{result}");
    let key = result["results_key"].as_str().unwrap();
    let body = w.backend.blobs.get_bytes(key).await.unwrap().unwrap();
    let lines = plus_worker::modes::collection::results::parse_lines(&body);
    assert_eq!(lines.len(), 25);
    assert!(lines.iter().all(|(_, ok)| *ok));
    assert_eq!(lines[0].0, "item-000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_token_saves_the_job_as_interrupted() {
    let w = Arc::new(World::local().await);
    let job = w.job("echo started\nsleep 30\n").await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (w, job, shutdown) = (w.clone(), job.clone(), shutdown.clone());
        async move { execute(&w, &job, shutdown).await }
    });
    w.wait_for_output(&job.object_id, "started").await;
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the worker stops within its grace period")
        .unwrap();
    assert_eq!(outcome, Outcome::Interrupted);
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Interrupted);
    assert!(done.error.contains("SIGTERM"), "{}", done.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_the_work_and_writes_nothing_more() {
    let w = Arc::new(World::local().await);
    let job = w.job("echo started\nsleep 30\n").await;
    let running = tokio::spawn({
        let (w, job) = (w.clone(), job.clone());
        async move { execute(&w, &job, CancellationToken::new()).await }
    });
    w.wait_for_output(&job.object_id, "started").await;
    let taken = Job {
        lease: "local:someone-else:2".into(),
        ..Job::default()
    };
    w.backend
        .jobs
        .update_job(
            &job.object_id,
            &Expect::status([JobStatus::Running]).with_lease(LEASE),
            &taken,
        )
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the worker stops within its grace period")
        .unwrap();
    let Outcome::NotClaimable(why) = outcome else {
        panic!("expected NotClaimable, got {outcome:?}")
    };
    assert!(why.contains("was taken over while it ran"), "{why}");
    let after = w.get(&job.object_id).await;
    assert_eq!(after.status(), JobStatus::Running);
    assert_eq!(after.lease, "local:someone-else:2");
    assert!(after.completed_at.is_empty());
}
